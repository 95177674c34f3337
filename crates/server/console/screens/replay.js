// 7. Replay / verify for this promotion: replay a recorded decision (prefilled with this run's),
// the outcomes run here, and the determinism figures.
import { useState } from "preact/hooks";
import { html, useData, useCtx, ErrorLine, may } from "./widgets.js";
import { useRun, RunHeader } from "./run.js";
import { api } from "../lib/api.js";

export function Replay({ route }) {
  const { me } = useCtx();
  const r = useRun(route);
  const q = route.generation ? `?generation=${route.generation}` : "";
  const index = useData(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/evidence/index${q}`);
  const totals = useData("api/v1/replays");
  const decisions = (index.data?.items ?? []).filter((i) => i.decision).map((i) => i.decision);
  const [chosen, setChosen] = useState(route.arg ?? "");
  const [outcomes, setOutcomes] = useState([]);
  const [error, setError] = useState(null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const decision = chosen || decisions[0] || "";
  async function replay(ids) {
    setError(null);
    try {
      const out = [];
      for (const id of ids) out.push({ id, at: Date.now(), outcome: await api("api/v1/replays", { method: "POST", body: { decisionId: id } }) });
      setOutcomes([...out, ...outcomes]);
    } catch (e) {
      setError(e);
    }
  }
  const t = totals.data;
  const mine = outcomes.length;
  const matching = outcomes.filter((o) => o.outcome.result === "match").length;
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} />
    <section aria-labelledby="replay-h"><h2 id="replay-h">Replay a decision</h2>
      <form onSubmit=${(e) => {
        e.preventDefault();
        replay([decision]);
      }}>
        <label>Decision <select value=${decision} onChange=${(e) => setChosen(e.target.value)}>${decisions.map((d) => html`<option>${d}</option>`)}</select></label>
        ${may(me, "operate") && html`<button type="submit" disabled=${!decision}>Replay</button>
          <button type="button" onClick=${() => replay(decisions)} disabled=${!decisions.length}>Replay all ${decisions.length} of this run</button>`}
      </form>
      <${ErrorLine} error=${error ?? index.error} />
      ${mine > 0 && html`<p>This promotion here: ${mine} replayed, ${matching} match, ${mine - matching} mismatch (${((matching / mine) * 100).toFixed(1)} %).</p>`}
      <table data-testid="replays"><thead><tr><th>decision</th><th>result</th><th>differing fields</th></tr></thead><tbody>
        ${outcomes.map((o) => {
          const ok = o.outcome.result === "match";
          return html`<tr class=${ok ? "" : "bad"}><td>${o.id}</td><td>${ok ? "match" : "MISMATCH"}</td><td>${o.outcome.differences.join("; ") || "—"}</td></tr>`;
        })}
      </tbody></table>
      <p class="muted">The replays run before this visit are counted below; a list of them by rollout is not in the API yet.</p>
    </section>
    <section aria-labelledby="det-h"><h2 id="det-h">Determinism (all replays on this control plane)</h2>
      ${t && html`<p>${t.total} replayed, ${t.matches} match, ${t.mismatches} mismatch${t.matchRate !== null ? ` (${(t.matchRate * 100).toFixed(1)} %)` : ""}.</p>`}
    </section>
  </article>`;
}
