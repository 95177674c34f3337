// 8. Schedule: set a start time, window and preconditions for this rollout; where its gate
// stands and the gate's checks so far (GET …/schedule), each precondition's result; cancel.
import { useState } from "preact/hooks";
import { html, useCtx, useData, ErrorLine, Time, may } from "./widgets.js";
import { useRun, RunHeader } from "./run.js";
import { api } from "../lib/api.js";

const OUTCOMES = { unmet: "not met, checked again in 10 s", passed: "passed: the rollout started", missed: "window closed: the gate failed", cancelled: "cancelled: the gate failed" };
const precondition = (p) => Object.entries(p).map(([k, v]) => `${k}: ${v}`).join(", ");

export function Schedule({ route }) {
  const { me, refresh } = useCtx();
  const r = useRun(route);
  const gate = useData(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/schedule`);
  const [form, setForm] = useState({ at: "", window: "2h", prometheus: "", incident: "", analysis: "" });
  const [error, setError] = useState(null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const s = gate.data?.schedule;
  const checks = gate.data?.checks ?? [];
  const name = encodeURIComponent(route.rollout);
  async function save(e) {
    e.preventDefault();
    setError(null);
    const preconditions = [];
    if (form.prometheus) preconditions.push({ prometheusReachable: form.prometheus });
    if (form.incident) preconditions.push({ noOpenIncident: form.incident });
    if (form.analysis) preconditions.push({ analysis: form.analysis });
    try {
      const at = form.at ? new Date(form.at).toISOString().replace(".000Z", "Z") : "";
      await api(`api/v1/rollouts/${name}/schedule`, { method: "POST", body: { at, window: form.window, preconditions } });
      refresh();
    } catch (err) {
      setError(err);
    }
  }
  async function cancel() {
    try {
      await api(`api/v1/rollouts/${name}/schedule`, { method: "DELETE" });
      refresh();
    } catch (err) {
      setError(err);
    }
  }
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} />
    <section aria-labelledby="sched-h"><h2 id="sched-h">Schedule</h2>
      ${s
        ? html`<dl class="facts" data-testid="schedule">
            <div><dt>at</dt><dd>${Number.isFinite(Date.parse(s.at)) ? html`<${Time} ms=${Date.parse(s.at)} />` : s.at}</dd></div><div><dt>window</dt><dd>${s.window}</dd></div>
            <div><dt>preconditions</dt><dd>${(s.preconditions ?? []).map(precondition).join("; ") || "none"}</dd></div></dl>
            ${may(me, "operate") && html`<button type="button" onClick=${cancel}>Cancel the schedule</button>`}`
        : html`<p>No schedule now${checks.length ? " (the gate used it: a schedule is used once)" : ": the rollout starts when applied"}.</p>`}
      ${gate.data?.state && html`<p role="status">Gate: ${gate.data.state}</p>`}
      <h3>The gate's checks so far</h3>
      ${checks.length
        ? html`<table data-testid="gate-checks"><thead><tr><th>when</th><th>outcome</th><th>preconditions</th></tr></thead><tbody>
            ${checks.map((c) => html`<tr data-outcome=${c.outcome}><td><${Time} ms=${c.atMs} /></td>
              <td class=${c.outcome === "passed" ? "good" : c.outcome === "unmet" ? "" : "bad"}>${OUTCOMES[c.outcome] ?? c.outcome}</td>
              <td>${c.results.length ? html`<ul class="refs">${c.results.map((x) => html`<li class=${x.passed ? "good" : "bad"}>${x.passed ? "✓" : "✗"} ${precondition(x.precondition)}${x.reason ? `: ${x.reason}` : ""}</li>`)}</ul>` : "—"}</td></tr>`)}
          </tbody></table>
          ${gate.data.dropped > 0 && html`<p class="muted">${gate.data.dropped} older checks are no longer kept.</p>`}`
        : html`<p class="muted">No check yet${s ? " (the gate checks once the window opens, then every 10 s)" : ""}.</p>`}
      <${ErrorLine} error=${gate.error} />
      ${may(me, "operate") && html`<form class="form" onSubmit=${save}>
        <label>Start at (your time zone) <input type="datetime-local" value=${form.at} onInput=${set("at")} required /></label>
        <label>Window <input value=${form.window} onInput=${set("window")} placeholder="2h" /></label>
        <label>Prometheus reachable (URL) <input value=${form.prometheus} onInput=${set("prometheus")} /></label>
        <label>No open incident (Alertmanager URL) <input value=${form.incident} onInput=${set("incident")} /></label>
        <label>Analysis passes (template) <input value=${form.analysis} onInput=${set("analysis")} /></label>
        <button type="submit">Schedule</button></form>`}
      <${ErrorLine} error=${error} />
    </section>
  </article>`;
}
