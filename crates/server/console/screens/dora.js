// 9. DORA dashboard: the four keys for a period with the delta against the previous period, a
// weekly trend, and every figure as a receipt — the events behind it, the jq program with a
// copyable command, and a recomputation in the browser (lib/dora.js) that must agree.
import { useState } from "preact/hooks";
import { html, useData, ErrorLine, Chart } from "./widgets.js";
import { api } from "../lib/api.js";
import { compute, agree, command, figure, TYPES, DAY_MS } from "../lib/dora.js";
import { duration, localInput } from "../lib/format.js";

const KEYS = [
  ["deployFrequency", "Deploy frequency", (r) => `${r.deployFrequency.perDay.toFixed(2)} / day`, (r) => `${r.deployFrequency.releases} releases`, true],
  ["leadTime", "Lead time for changes", (r) => duration(r.leadTime.meanMs), (r) => `median ${duration(r.leadTime.medianMs)}, ${r.leadTime.releases} releases`, false],
  ["changeFailureRate", "Change failure rate", (r) => (r.changeFailureRate.rate === null ? "—" : `${(r.changeFailureRate.rate * 100).toFixed(1)} %`), (r) => `${r.changeFailureRate.failed} of ${r.changeFailureRate.total}`, false],
  ["mttr", "Time to restore", (r) => duration(r.mttr.meanMs), (r) => `${r.mttr.resolved} incidents`, false],
];

const iso = (ms) => new Date(ms).toISOString();

/** Every event DORA reads (all pages of each type). */
export async function doraEvents() {
  const out = [];
  for (const ty of Object.values(TYPES)) {
    let after = 0;
    for (let page = 0; page < 100; page++) {
      const r = await api(`api/v1/events?type=${encodeURIComponent(ty)}&after=${after}&limit=10000`);
      out.push(...r.events);
      if (!r.events.length || r.next === null) break;
      after = r.next;
      if (r.events.length < 10000) break;
    }
  }
  return out;
}

/** A receipt's `source#id`, opened in place (GET /api/v1/events?source&id). */
function EventRef({ name: r }) {
  const [event, setEvent] = useState(null);
  const [error, setError] = useState(null);
  const cut = r.lastIndexOf("#");
  const open = () =>
    event
      ? setEvent(null)
      : api(`api/v1/events?source=${encodeURIComponent(r.slice(0, cut))}&id=${encodeURIComponent(r.slice(cut + 1))}&limit=1`).then((x) => setEvent(x.events[0] ?? { missing: r }), setError);
  return html`<button type="button" class="ref" onClick=${open} aria-expanded=${Boolean(event)}>${r}</button>
    ${event && html`<pre>${JSON.stringify(event, null, 2)}</pre>`}<${ErrorLine} error=${error} />`;
}

function delta(now, before, higherIsBetter) {
  if (now === null || before === null || now === undefined || before === undefined) return html`<span class="muted">no previous figure</span>`;
  if (before === 0) return html`<span class="muted">previous 0</span>`;
  const d = ((now - before) / Math.abs(before)) * 100;
  const good = higherIsBetter ? d >= 0 : d <= 0;
  return html`<span class=${good ? "good" : "bad"}>${d >= 0 ? "▲" : "▼"} ${Math.abs(d).toFixed(0)} % vs previous period</span>`;
}

export function Dora() {
  // A preset (days back from now) or, with 0, the custom window.
  const [days, setDays] = useState(30);
  const [until] = useState(() => Date.now() + 1);
  const [custom, setCustom] = useState(() => ({ since: until - 30 * DAY_MS, until }));
  const w = days ? { since: until - days * DAY_MS, until } : custom;
  const valid = Number.isFinite(w.since) && Number.isFinite(w.until) && w.since < w.until;
  // One read: the period, the one before it (the deltas) and eight weeks (the trend).
  const r = useData(valid ? `api/v1/dora/summary?since=${encodeURIComponent(iso(w.since))}&until=${encodeURIComponent(iso(w.until))}&weeks=8` : null, [w.since, w.until]);
  const [open, setOpen] = useState(null);
  const [check, setCheck] = useState(null);
  const [error, setError] = useState(null);
  const report = r.data?.period;
  const before = r.data?.previous;
  const weekly = r.data?.weeks ?? [];
  async function recompute(key) {
    setCheck({ key, busy: true });
    try {
      const events = await doraEvents();
      const mine = compute(events, w);
      const diffs = agree(mine, report).filter((d) => d.startsWith(key));
      setCheck({ key, mine, diffs, n: events.length });
    } catch (e) {
      setError(e);
      setCheck(null);
    }
  }
  return html`<section aria-labelledby="dora-h"><h1 id="dora-h">DORA</h1>
    <div class="period"><label>Period <select value=${days} onChange=${(e) => setDays(Number(e.target.value))}>
      ${[7, 30, 90].map((d) => html`<option value=${d}>last ${d} days</option>`)}<option value="0">custom…</option></select></label>
      ${!days && html`<label>from <input type="datetime-local" data-testid="dora-since" value=${localInput(custom.since)} onChange=${(e) => setCustom({ ...custom, since: Date.parse(e.target.value) })} /></label>
        <label>to <input type="datetime-local" data-testid="dora-until" value=${localInput(custom.until)} onChange=${(e) => setCustom({ ...custom, until: Date.parse(e.target.value) })} /></label>
        <span class="muted">(your time zone; the previous period is as long, just before)</span>`}</div>
    ${!valid && html`<p class="bad" role="alert">The period must start before it ends.</p>`}
    <${ErrorLine} error=${r.error ?? error} />
    ${report && html`<div class="keys">${KEYS.map(([key, title, show, sub, higher]) => html`<article class="key" data-key=${key}>
      <h2>${title}</h2><p class="figure" data-testid=${`dora-${key}`}>${show(report)}</p><p class="muted">${sub(report)}</p>
      <p>${before && delta(figure(key, report), figure(key, before), higher)}</p>
      <${Chart} title=${`${title}, by week`} height=${120} series=${[{ label: "week" }, { label: title, scale: "v", stroke: "#2a6fdb", points: { show: true } }]}
        data=${[weekly.map((x) => x.window.until / 1000), weekly.map((x) => figure(key, x))]} />
      <button type="button" onClick=${() => setOpen(open === key ? null : key)} aria-expanded=${open === key}>Receipt</button>
      ${open === key && html`<div class="receipt" data-testid=${`receipt-${key}`}>
        <p>${report[key].events.length} events (open one to read it):</p>
        <ul class="refs">${report[key].events.map((e) => html`<li><${EventRef} name=${e} /></li>`)}</ul>
        <p>Recompute from an export: <code class="cmd">vireo events export -o events.jsonl && ${command(report[key].query, w)}</code>
          <button type="button" onClick=${() => navigator.clipboard?.writeText(`vireo events export -o events.jsonl && ${command(report[key].query, w)}`)}>copy</button></p>
        <button type="button" data-testid=${`recompute-${key}`} onClick=${() => recompute(key)}>Recompute in the browser</button>
        ${check?.key === key && check.busy && html`<p role="status">recomputing…</p>`}
        ${check?.key === key && check.mine && html`<p data-testid=${`recomputed-${key}`} data-agrees=${String(!check.diffs.length)} class=${check.diffs.length ? "bad" : "good"}>
          From ${check.n} events in this browser: ${show(check.mine)} — ${check.diffs.length ? `disagrees: ${check.diffs.join("; ")}` : "agrees with the server"}.</p>`}
      </div>`}
    </article>`)}</div>`}
  </section>`;
}
