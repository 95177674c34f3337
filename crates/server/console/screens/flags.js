// 10. Flags: targeting and state, toggles with who and when, evaluation counts; a flag tied to
// a rollout shows that rollout's cohort.
import { useState } from "preact/hooks";
import { html, useData, useCtx, ErrorLine, Chart, Time, may } from "./widgets.js";
import { api } from "../lib/api.js";
import { link } from "../lib/routes.js";
import { shares, targeting } from "../lib/format.js";

/** The event a toggle writes (`vireo_core::events::FLAG_TOGGLED`). */
export const TOGGLED = "dev.vireo.flag.toggled.0.1.0";
const COLOURS = ["#2a6fdb", "#d9822b", "#3a9d5d", "#9b59b6", "#c0392b"];

/** The flag's toggles, newest first: who, when, to what (its `dev.vireo.flag.toggled` events). */
function Toggles({ events }) {
  const toggles = [...events].reverse();
  if (!toggles.length) return html`<span class="muted">never toggled</span>`;
  const [last, ...older] = toggles;
  const line = (e) => html`${e.data.enabled ? "enabled" : "disabled"} by ${e.data.actor ?? "?"} <${Time} ms=${Date.parse(e.time)} />`;
  return html`<span data-testid="flag-last-change">${line(last)}</span>
    ${older.length > 0 && html`<details><summary>${older.length} earlier</summary><ul class="plain">${older.slice(0, 20).map((e) => html`<li>${line(e)}</li>`)}</ul></details>`}`;
}

/** The share of evaluations on each variant, per minute over the last hour. */
function Shares({ flag }) {
  const r = useData(`api/v1/flags/${encodeURIComponent(flag.key)}/evaluations?bucketS=60`);
  const variants = Object.keys(flag.variants ?? {});
  const s = shares(r.data?.buckets ?? [], variants);
  return html`<div data-testid=${`flag-shares-${flag.key}`} data-buckets=${s.x.length}>
    <${ErrorLine} error=${r.error} />
    <${Chart} title=${`${flag.key}: share of evaluations per variant, per minute (last hour; ${s.total} evaluations)`} height=${140}
      series=${[{ label: "minute" }, ...s.variants.map((v, i) => ({ label: `${v} %`, scale: "%", stroke: COLOURS[i % COLOURS.length] }))]}
      scales=${{ "%": { range: [0, 100] } }} data=${[s.x, ...s.columns]} /></div>`;
}

export function Flags() {
  const { me, refresh } = useCtx();
  const flags = useData("api/v1/flags");
  // Every flag's toggles in one read (their subject is the flag's key).
  const toggled = useData(`api/v1/events?type=${encodeURIComponent(TOGGLED)}&limit=1000`);
  const [error, setError] = useState(null);
  async function toggle(key, on) {
    try {
      await api(`api/v1/flags/${encodeURIComponent(key)}/${on ? "enable" : "disable"}`, { method: "POST" });
      refresh();
    } catch (e) {
      setError(e);
    }
  }
  const stats = flags.data?.evaluationEvents;
  return html`<section aria-labelledby="flags-h"><h1 id="flags-h">Flags</h1>
    <${ErrorLine} error=${flags.error ?? toggled.error ?? error} />
    <div class="scroll"><table data-testid="flags"><thead><tr><th>flag</th><th>state</th><th>variants</th><th>targeting</th><th>cohort</th><th>last change</th><th></th></tr></thead><tbody>
      ${(flags.data?.items ?? []).map((f) => html`<tr data-flag=${f.key}>
        <td><code>${f.key}</code></td><td>${f.enabled ? "enabled" : "disabled"}</td>
        <td>${Object.entries(f.variants ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")} (default ${f.defaultVariant})</td>
        <td>${targeting(f) || "—"}</td>
        <td>${f.rollout ? html`<a href=${link(f.rollout)}>${f.rolloutVariant ?? "the other variant"} for the canary cohort of ${f.rollout}</a>` : "—"}</td>
        <td><${Toggles} events=${(toggled.data?.events ?? []).filter((e) => e.subject === f.key)} /></td>
        <td>${may(me, "operate") && html`<button type="button" onClick=${() => toggle(f.key, !f.enabled)}>${f.enabled ? "Disable" : "Enable"}</button>`}</td></tr>`)}
      ${!(flags.data?.items ?? []).length && html`<tr><td colspan="7" class="muted">no flags</td></tr>`}
    </tbody></table></div>
    ${(flags.data?.items ?? []).map((f) => html`<${Shares} flag=${f} />`)}
    ${stats && html`<p class="muted">Evaluation events recorded: ${JSON.stringify(stats)} (the shares count what was recorded).</p>`}
  </section>`;
}
