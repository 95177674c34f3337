// 10. Flags: targeting and state, toggles with who and when, evaluation counts; a flag tied to
// a rollout shows that rollout's cohort.
import { useState } from "preact/hooks";
import { html, useData, useCtx, ErrorLine, may } from "./widgets.js";
import { api } from "../lib/api.js";
import { link } from "../lib/routes.js";

export function Flags() {
  const { me, refresh } = useCtx();
  const flags = useData("api/v1/flags");
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
    <${ErrorLine} error=${flags.error ?? error} />
    <div class="scroll"><table data-testid="flags"><thead><tr><th>flag</th><th>state</th><th>variants</th><th>targeting</th><th>cohort</th><th>last change</th><th></th></tr></thead><tbody>
      ${(flags.data?.items ?? []).map((f) => html`<tr data-flag=${f.key}>
        <td><code>${f.key}</code></td><td>${f.enabled ? "enabled" : "disabled"}</td>
        <td>${Object.entries(f.variants ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")} (default ${f.defaultVariant})</td>
        <td>${[...(f.rules ?? []).map((r) => JSON.stringify(r)), f.fraction ? `fraction ${JSON.stringify(f.fraction)}` : ""].filter(Boolean).join("; ") || "—"}</td>
        <td>${f.rollout ? html`<a href=${link(f.rollout)}>${f.rolloutVariant ?? "the other variant"} for the canary cohort of ${f.rollout}</a>` : "—"}</td>
        <td class="muted">in the event log</td>
        <td>${may(me, "operate") && html`<button type="button" onClick=${() => toggle(f.key, !f.enabled)}>${f.enabled ? "Disable" : "Enable"}</button>`}</td></tr>`)}
      ${!(flags.data?.items ?? []).length && html`<tr><td colspan="7" class="muted">no flags</td></tr>`}
    </tbody></table></div>
    ${stats && html`<p class="muted">Evaluation events: ${JSON.stringify(stats)}. The share of evaluations on each variant over time is not in the API yet.</p>`}
  </section>`;
}
