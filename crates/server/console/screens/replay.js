// 7. Replay / verify for this promotion: replay a recorded decision (prefilled with this run's),
// the outcomes run here, and the determinism figures.
import { useState } from "preact/hooks";
import { html, useData, useCtx, ErrorLine, Time, may } from "./widgets.js";
import { useRun, RunHeader } from "./run.js";
import { api } from "../lib/api.js";

export function Replay({ route }) {
  const { me, refresh } = useCtx();
  const r = useRun(route);
  const q = route.generation ? `?generation=${route.generation}` : "";
  const index = useData(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/evidence/index${q}`);
  const totals = useData("api/v1/replays");
  const recorded = useData(`api/v1/replays?rollout=${encodeURIComponent(route.rollout)}`);
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
      refresh();
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
      ${mine > 0 && html`<p>Just now: ${mine} replayed, ${matching} match, ${mine - matching} mismatch.</p>`}
      <table data-testid="replays"><thead><tr><th>decision</th><th>when</th><th>result</th><th>differing fields</th></tr></thead><tbody>
        ${(recorded.data?.items ?? []).map((x) => html`<tr class=${x.matched ? "" : "bad"}><td>${x.decision}</td><td><${Time} ms=${x.atMs} /></td><td>${x.matched ? "match" : "MISMATCH"}</td><td>${x.differences.join("; ") || "—"}</td></tr>`)}
      </tbody></table>
    </section>
    <section aria-labelledby="prom-h"><h2 id="prom-h">Determinism of this promotion</h2>
      ${recorded.data && html`<p data-testid="promotion-determinism">${recorded.data.total} replays of its decisions, ${recorded.data.matches} match, ${recorded.data.mismatches} mismatch${recorded.data.matchRate !== null ? ` (match rate ${(recorded.data.matchRate * 100).toFixed(1)} %)` : ""}.</p>`}
    </section>
    <section aria-labelledby="det-h"><h2 id="det-h">Determinism of every replay on this control plane</h2>
      ${t && html`<p>${t.total} replayed, ${t.matches} match, ${t.mismatches} mismatch${t.matchRate !== null ? ` (${(t.matchRate * 100).toFixed(1)} %)` : ""}.</p>`}
    </section>
  </article>`;
}
