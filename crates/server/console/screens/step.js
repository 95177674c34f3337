// 3. Step detail: one checkpoint or analysis run — timing, inputs, outputs, every measurement
// (table and chart with its threshold), why it failed, the evidence captured; tabs for the
// step's events (downloadable), the artifacts as applied, and the evidence.
import { html, useData, Time, Digest, ErrorLine, Chart, Tabs, saveFile } from "./widgets.js";
import { useRun, useTemplates, RunHeader } from "./run.js";
import { whyFailed, templateOf, storyline } from "../lib/storyline.js";
import { duration, value, scalar, threshold, policy, jsonDiff } from "../lib/format.js";
import { link } from "../lib/routes.js";
import { EntryButton } from "./evidence.js";

/** Where a measurement came from: the provider and what it asked (a PromQL query, the
 * proxies' metric and window, the judge's pair). */
function providerWords(p = {}) {
  if (p.prometheus) return html`Prometheus <code>${p.prometheus.query}</code>`;
  if (p.proxy) return `proxies: ${p.proxy.metric}${p.proxy.window ? ` over ${p.proxy.window}` : ""}`;
  const [kind, v] = Object.entries(p)[0] ?? ["—", null];
  return v ? html`${kind} <code>${JSON.stringify(v)}</code>` : kind;
}

export function Step({ route }) {
  const r = useRun(route);
  const templates = useTemplates(r.view);
  // The tab is part of the deep link (…/step/run-3/logs), so a reload or a shared link opens it.
  const tab = route.tab ?? "overview";
  const setTab = (t) => {
    location.hash = link(route.rollout, { generation: route.generation, screen: "step", arg: route.arg, tab: t });
  };
  const q = route.generation ? `?generation=${route.generation}` : "";
  const index = useData(r.view ? `api/v1/rollouts/${encodeURIComponent(route.rollout)}/evidence/index${q}` : null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const runId = /^run-(\d+)$/.exec(route.arg ?? "")?.[1];
  const run = (r.view.status.analysisRuns ?? []).find((x) => String(x.run) === runId);
  if (!run) return html`<${Checkpoint} r=${r} route=${route} index=${index.data} />`;
  const tname = templateOf(r.view, run);
  const tpl = templates[tname];
  const why = whyFailed(run, tpl);
  const g = r.view.status.generation;
  // The run's sealed statement is logged at stage `analysis-RUN`.
  const items = (index.data?.items ?? []).filter((i) => i.kind === "analysis" && i.stage === `analysis-${run.run}`);
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} />
    <h2>Analysis run ${run.run} (step ${run.step + 1}): ${run.phase}</h2>
    <${Tabs} tabs=${[["overview", "Overview"], ["logs", "Logs"], ["artifacts", "Artifacts"], ["evidence", "Evidence"]]} current=${tab} onPick=${setTab} />
    ${tab === "overview" && html`<section>
      <dl class="facts">
        <div><dt>start</dt><dd><${Time} ms=${run.startedMs} /></dd></div>
        <div><dt>end</dt><dd>${run.finishedMs ? html`<${Time} ms=${run.finishedMs} />` : "running"}</dd></div>
        <div><dt>duration</dt><dd>${duration((run.finishedMs ?? Date.now()) - run.startedMs)}</dd></div>
        <div><dt>result</dt><dd>${run.phase}</dd></div>
        <div><dt>template</dt><dd>${tname ?? "—"}</dd></div>
        <div><dt>args</dt><dd>${(r.view.spec.strategy?.canary?.steps?.[run.step]?.analysis?.args ?? []).map((a) => `${a.name}=${a.value ?? "…"}`).join(", ") || "—"}</dd></div>
        <div><dt>decision</dt><dd>${items[0]?.decision ?? (run.finishedMs ? "—" : "pending")}</dd></div>
      </dl>
      ${why && html`<p class="why" data-testid="why-failed"><strong>Why it failed:</strong> ${why.sentence}</p>`}
      <p class="message">${run.message}</p>
      ${run.metrics.map((m) => {
        const t = tpl?.spec?.metrics?.find((x) => x.name === m.name);
        const limit = threshold(t?.successCondition);
        const xs = m.measurements.map((x) => x.atMs / 1000);
        const series = [{ label: "time" }, { label: m.name, scale: "value", stroke: "#1a9c5b", points: { show: true } }];
        const data = [xs, m.measurements.map((x) => scalar(x.value))];
        if (limit) {
          series.push({ label: `threshold ${limit.op} ${limit.value}`, scale: "value", stroke: "#b22", dash: [6, 4] });
          data.push(xs.map(() => limit.value));
        }
        return html`<section class="metric" data-metric=${m.name}>
          <h3>${m.name} <small>${m.phase}${m.dryRun ? " (dry run)" : ""}</small></h3>
          ${t && html`<p class="muted">${policy(t)}</p>`}
          <table class="measurements"><thead><tr><th>#</th><th>time</th><th>value</th><th>condition</th><th>provider</th><th>result</th></tr></thead><tbody>
            ${m.measurements.map((x, i) => html`<tr class=${x.phase === "Failed" || x.phase === "Error" ? "bad" : ""}>
              <td>${i + 1}</td><td><${Time} ms=${x.atMs} /></td><td>${value(x.value)}${x.message ? html` <span class="muted">${x.message}</span>` : ""}</td>
              <td><code>${t?.successCondition ?? t?.failureCondition ?? "—"}</code></td>
              <td>${t ? providerWords(t.provider) : "—"}</td><td>${x.phase}</td></tr>`)}
          </tbody></table>
          <${Chart} title=${`${m.name} measurements`} series=${series} data=${data} height=${160} />
        </section>`;
      })}
    </section>`}
    ${tab === "logs" && html`<${StepLogs} rollout=${route.rollout} generation=${g} run=${run} />`}
    ${tab === "artifacts" && html`<section><h3>Rollout spec as applied</h3><pre>${JSON.stringify({ apiVersion: r.view.apiVersion, kind: r.view.kind, metadata: r.view.metadata, spec: r.view.spec }, null, 2)}</pre>
      <h3>Template ${tname}</h3><pre>${tpl ? JSON.stringify(tpl, null, 2) : "—"}</pre>
      <${RouteArtifact} rollout=${route.rollout} generation=${g} at=${run.startedMs} /></section>`}
    ${tab === "evidence" && html`<section><h3>Evidence captured</h3>
      ${!items.length && html`<p>pending: the run's statement is sealed when it ends</p>`}
      <table><thead><tr><th>log index</th><th>kind</th><th>decision</th><th>envelope digest</th><th>sealed</th><th></th></tr></thead><tbody>
      ${items.map((i) => html`<tr><td>${i.logIndex}</td><td>${i.kind}</td><td>${i.decision ?? "—"}</td><td><${Digest} value=${i.digest} /></td><td>${i.sealed ? "sealed" : "pending"}</td>
        <td><${EntryButton} index=${i.logIndex} /> ·
          <a href=${link(route.rollout, { generation: route.generation, screen: "replay", arg: i.decision })}>replay this decision</a></td></tr>`)}
      </tbody></table></section>`}
  </article>`;
}

function StepLogs({ rollout, generation, run }) {
  const since = new Date(run.startedMs - 1000).toISOString();
  const until = new Date((run.finishedMs ?? Date.now()) + 2000).toISOString();
  // This generation's own events (their subject is the release, `NAME.gN`) in the run's time.
  const subject = `${rollout}.g${generation}`;
  const r = useData(`api/v1/events?subject=${encodeURIComponent(subject)}&since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}&limit=1000`);
  const mine = r.data?.events ?? [];
  const download = () =>
    saveFile(mine.map((e) => JSON.stringify(e) + "\n").join(""), `${rollout}.g${generation}.run${run.run}.events.jsonl`, "application/jsonl");
  return html`<section><h3>Events of this step</h3>
    <p><button type="button" onClick=${download}>download (${mine.length} events, JSON Lines)</button>${run.finishedMs ? "" : " · streaming while it runs"}</p>
    <${ErrorLine} error=${r.error} />
    <ol class="log">${mine.map((e) => html`<li><${Time} ms=${Date.parse(e.time)} /> <code>${e.type}</code> ${e.subject ?? ""}</li>`)}</ol></section>`;
}

/** The log stages a storyline row's evidence is filed under. */
const STAGES = {
  inputs: ["InputsMaterialized"],
  gate: ["GateEval", "GateEval-vsa"],
  approval: ["AwaitingApproval"],
  verify: ["PostDeployVerify"],
  sealed: ["Sealed", "rollback-armed"],
  end: ["Completed", "Aborted", "RolledBack"],
};

/** The route in force at `at` (the last one published at or before it) and its diff from the
 * one before (GET …/routes). */
function RouteArtifact({ rollout, generation, at }) {
  const r = useData(`api/v1/rollouts/${encodeURIComponent(rollout)}/routes?generation=${generation}`);
  if (r.error) return html`<${ErrorLine} error=${r.error} />`;
  const items = r.data?.items ?? [];
  let i = -1;
  for (let j = 0; j < items.length; j++) if (at !== undefined && items[j].atMs <= at) i = j;
  if (i < 0) return html`<h3>Route table</h3><p class="muted">none published before this step</p>`;
  const cur = items[i];
  const diff = i > 0 ? jsonDiff(items[i - 1].route, cur.route) : null;
  const w = cur.canaryWeight === null || cur.canaryWeight === undefined ? "promoted: the canary's version as stable" : `canary ${cur.canaryWeight} %`;
  return html`<section data-testid="route-artifact"><h3>Route table published <${Time} ms=${cur.atMs} /> (${w})</h3>
    <pre>${JSON.stringify(cur.route, null, 2)}</pre>
    <h3>Diff from the one before</h3>
    ${diff === null ? html`<p class="muted">the first route of this generation</p>`
      : !diff.length ? html`<p class="muted">no change</p>`
      : html`<table data-testid="route-diff"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead><tbody>
        ${diff.map((d) => html`<tr><td><code>${d.path}</code></td><td><code>${d.before === undefined ? "—" : JSON.stringify(d.before)}</code></td><td><code>${d.after === undefined ? "—" : JSON.stringify(d.after)}</code></td></tr>`)}
      </tbody></table>`}</section>`;
}

/** Step detail of a checkpoint (not an analysis run): its row, its inputs as recorded, and
 * the evidence sealed at it. */
function Checkpoint({ r, route, index }) {
  const { rows, actions } = storyline(r.view, r.timeline);
  const row = [...rows, ...actions].find((x) => x.key === route.arg);
  if (!row) {
    return html`<${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} /><p>No step ${route.arg} in this generation.
      <a href=${link(route.rollout, { generation: route.generation })}>Back to the timeline</a></p>`;
  }
  const stages = STAGES[row.key] ?? [];
  const items = (index?.items ?? []).filter((i) => stages.includes(i.stage));
  // The inputs recorded at this row's time (the gate's verdict with its provenance facts...).
  const entries = (r.timeline?.entries ?? []).filter((e) => row.at !== undefined && e.at_ms === row.at);
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} />
    <h2 data-testid="checkpoint">${row.title}: ${row.mark}</h2>
    <dl class="facts"><div><dt>at</dt><dd>${row.at ? html`<${Time} ms=${row.at} />` : "not yet"}</dd></div>
      ${row.by && html`<div><dt>by</dt><dd>${row.by}</dd></div>`}
      ${row.reason && html`<div><dt>reason</dt><dd>${row.reason}</dd></div>`}</dl>
    <p class="message">${row.detail}</p>
    ${row.at !== undefined && html`<${RouteArtifact} rollout=${route.rollout} generation=${r.view.status.generation} at=${row.at} />`}
    <h3>Inputs recorded</h3>
    ${entries.length ? entries.map((e) => html`<pre>${JSON.stringify(e, null, 2)}</pre>`) : html`<p class="muted">none at this time</p>`}
    <h3>Evidence captured</h3>
    ${!items.length && html`<p>${row.mark === "pending" || row.mark === "running" ? "pending: sealed when the step is reached" : "none logged at this stage"}</p>`}
    ${items.length > 0 && html`<table><thead><tr><th>log index</th><th>kind</th><th>decision</th><th>envelope digest</th><th>sealed</th><th></th></tr></thead><tbody>
      ${items.map((i) => html`<tr><td>${i.logIndex}</td><td>${i.kind}</td><td>${i.decision ?? "—"}</td><td><${Digest} value=${i.digest} /></td><td>${i.sealed ? "sealed" : "pending"}</td>
        <td><${EntryButton} index=${i.logIndex} />${i.decision ? html` · <a href=${link(route.rollout, { generation: route.generation, screen: "replay", arg: i.decision })}>replay this decision</a>` : ""}</td></tr>`)}
    </tbody></table>`}
  </article>`;
}
