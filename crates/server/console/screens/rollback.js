// 5. Rollback / re-run: choose the scope, preview the impact from the armed rollback envelope
// (GET …/rollback), give a reason, execute; the result shows on the timeline.
import { useState } from "preact/hooks";
import { html, useData, useCtx, Digest, ErrorLine, ActionButton, may } from "./widgets.js";
import { useRun, RunHeader, LABELS } from "./run.js";
import { link } from "../lib/routes.js";

const SCOPES = [
  ["rerun", "Re-run the current step (its analysis again; the weight stays)"],
  ["retry", "Re-run from the start (after an abort)"],
  ["pause", "Pause here"],
  ["abort", "Abort: weight 0, drain the canary"],
  ["rollback", "Roll back to the previous version (replay the envelope)"],
];

export function Rollback({ route }) {
  const { me, refresh } = useCtx();
  const r = useRun(route);
  const preview = useData(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/rollback`);
  const [scope, setScope] = useState("rollback");
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const allowed = r.view.status.allowedActions ?? [];
  const p = preview.data;
  const image = p?.previousImage;
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} />
    <section aria-labelledby="scope-h"><h2 id="scope-h">Scope</h2>
      <fieldset><legend>What to do</legend>
        ${SCOPES.map(([id, label]) => html`<label class="radio"><input type="radio" name="scope" value=${id} checked=${scope === id} onChange=${() => setScope(id)} disabled=${!allowed.includes(id)} />
          ${label}${allowed.includes(id) ? "" : html` <span class="muted">(not in phase ${r.view.status.phase})</span>`}</label>`)}
      </fieldset>
    </section>
    <section aria-labelledby="impact-h" data-testid="rollback-preview"><h2 id="impact-h">Impact</h2>
      <${ErrorLine} error=${preview.error} />
      ${p && html`<dl class="facts">
        <div><dt>envelope</dt><dd data-testid="preview-armed">${p.armed ? html`armed, log entry ${p.logIndex} <${Digest} value=${p.envelopeDigest} />` : "not armed yet (it is sealed before the canary gets 100 %): this is what it will say"}</dd></div>
        <div><dt>signature</dt><dd>${p.verified ? ("Ok" in p.verified ? "verified with this control plane's key" : `does not verify: ${p.verified.Err}`) : "—"}</dd></div>
        <div><dt>traffic</dt><dd data-testid="preview-proxies">${p.proxies.length} prox${p.proxies.length === 1 ? "y" : "ies"} move to weight 0: ${p.proxies.join(", ") || "none connected"}</dd></div>
        <div><dt>previous version</dt><dd data-testid="preview-version">${p.previousVersion}</dd></div>
        <div><dt>previous image</dt><dd>${image?.name ?? "—"} ${image?.digest ? html`<${Digest} value=${`sha256:${image.digest.sha256}`} />` : ""}</dd></div>
        <div><dt>down-migration</dt><dd data-testid="preview-migration">${p.downMigration ? html`<${Digest} value=${p.downMigration.digest} /> <code>${p.downMigration.command}</code>` : "none"}</dd></div>
        <div><dt>flag</dt><dd data-testid="preview-flag">${p.flag ? `${p.flag.key} set to ${JSON.stringify(p.flag.disable?.value ?? p.flag.disable)}` : "none"}</dd></div>
      </dl>`}
      <p class="muted">Only a rollback replays the envelope (migration and flag); pause and abort move traffic only; a re-run moves none. Old evidence is kept; the new decision is appended.</p>
    </section>
    ${may(me, scope) && allowed.includes(scope)
      ? html`<${ActionButton} rollout=${route.rollout} action=${scope} label=${LABELS[scope]} danger=${true} onDone=${() => {
          refresh();
          location.hash = link(route.rollout);
        }} />`
      : html`<p class="muted">${may(me, scope) ? "Pick a scope this phase allows." : "Your role cannot act on rollouts (read-only)."}</p>`}
  </article>`;
}
