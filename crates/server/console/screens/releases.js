// 1. Releases: every rollout and every kept generation, newest first, filterable by phase and
// name. A row opens its run.
import { useState } from "preact/hooks";
import { html, useData, Time, Digest, Phase, ErrorLine } from "./widgets.js";
import { duration, imageDigest } from "../lib/format.js";
import { link } from "../lib/routes.js";

const PHASES = ["Pending", "InputsMaterialized", "GateEval", "AwaitingApproval", "Progressing", "Paused", "PostDeployVerify", "Sealed", "Completed", "Aborted", "RolledBack"];

export function Releases() {
  const list = useData("api/v1/rollouts");
  const names = (list.data?.items ?? []).map((r) => r.metadata.name);
  const gens = useData(names.map((n) => `api/v1/rollouts/${encodeURIComponent(n)}/generations`));
  const [phase, setPhase] = useState("");
  const [name, setName] = useState("");
  const rows = (gens.data ?? [])
    .flatMap((g) => g?.items ?? [])
    .filter((r) => !phase || r.status.phase === phase)
    .filter((r) => !name || r.metadata.name.includes(name))
    .sort((a, b) => b.status.createdMs - a.status.createdMs);
  return html`<section aria-labelledby="releases-h">
    <h1 id="releases-h">Releases</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Phase <select value=${phase} onChange=${(e) => setPhase(e.target.value)}>
        <option value="">any</option>${PHASES.map((p) => html`<option>${p}</option>`)}</select></label>
      <label>Name <input type="search" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    </form>
    <${ErrorLine} error=${list.error ?? gens.error} />
    <div class="scroll"><table class="releases">
      <thead><tr><th>rollout</th><th>gen</th><th>versions</th><th>images (stable → canary)</th><th>phase</th><th>weight</th><th>started</th><th>duration</th><th>started by</th></tr></thead>
      <tbody>
        ${rows.map((r) => {
          const s = r.status;
          const current = (list.data?.items ?? []).find((x) => x.metadata.name === r.metadata.name)?.status.generation === s.generation;
          const href = link(r.metadata.name, { generation: current ? null : s.generation });
          return html`<tr data-rollout=${r.metadata.name} data-generation=${s.generation}>
            <td><a href=${href}>${r.metadata.name}</a></td>
            <td>${s.generation}${current ? "" : html` <span class="muted">(earlier)</span>`}</td>
            <td>${r.spec.stable.version} → ${r.spec.canary.version}</td>
            <td><${Digest} value=${imageDigest(r.spec.stable.image)} /> → <${Digest} value=${imageDigest(r.spec.canary.image)} /></td>
            <td><${Phase} phase=${s.phase} /></td>
            <td><span class="bar" aria-label=${`${s.canaryWeight} %`}><span style=${`width:${s.canaryWeight}%`}></span></span> ${s.canaryWeight} %</td>
            <td><${Time} ms=${s.createdMs} /></td>
            <td>${duration((s.settled ? s.updatedMs : Date.now()) - s.createdMs)}</td>
            <td>${s.appliedBy ?? "—"}</td>
          </tr>`;
        })}
        ${!rows.length && html`<tr><td colspan="9" class="muted">${list.loading ? "loading…" : "no rollouts yet: vireo rollout apply -f rollout.yaml"}</td></tr>`}
      </tbody>
    </table></div>
  </section>`;
}
