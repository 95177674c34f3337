// 2. Run timeline (the console's centre) and 4. the deploy stage view.
//
// The header, the health banner, the stage timeline (storyline.js), the canary chart and the
// quick actions: only those the phase allows (`status.allowedActions`, the state machine's own
// answer) and the caller's role permits, each asking for a reason.
import { html, useData, useCtx, Time, Digest, Phase, Mark, ErrorLine, ActionButton, Chart, may } from "./widgets.js";
import { storyline, health, whyFailed, templateOf, templateNames, continueState } from "../lib/storyline.js";
import { duration, imageDigest, recipe, scalar, threshold, policy, stepWords } from "../lib/format.js";
import { link } from "../lib/routes.js";
import { TOGGLED } from "./flags.js";

export const LABELS = { pause: "Pause", resume: "Resume", promote: "Promote", promoteFull: "Promote fully", abort: "Abort", retry: "Retry", approve: "Approve", rollback: "Roll back", rerun: "Re-run the step" };

/** The view of the route's generation: the current one's live view, or an earlier one's. */
export function useRun(route) {
  const name = encodeURIComponent(route.rollout);
  const g = route.generation;
  const q = g ? `?generation=${g}` : "";
  const r = useData([`api/v1/rollouts/${name}`, `api/v1/rollouts/${name}/timeline${q}`, g ? `api/v1/rollouts/${name}/generations` : null]);
  const [current, timeline, gens] = r.data ?? [];
  let view = current;
  if (g && gens && current?.status.generation !== g) view = gens.items.find((x) => x.status.generation === g) ?? null;
  const earlier = Boolean(g && current && current.status.generation !== g);
  return { view, timeline, current, earlier, error: r.error, loading: r.loading };
}

/** The templates a rollout refers to, by name. */
export function useTemplates(view) {
  const names = templateNames(view);
  const r = useData(names.map((n) => `api/v1/analysistemplates/${encodeURIComponent(n)}`));
  const out = {};
  names.forEach((n, i) => {
    if (r.data?.[i]) out[n] = r.data[i];
  });
  return out;
}

export function RunHeader({ view, route, earlier }) {
  const s = view.status;
  const started = s.createdMs;
  const end = s.settled ? s.updatedMs : Date.now();
  return html`<header class="run-header">
    <h1>${view.metadata.name} <small>generation ${s.generation}${earlier ? " (earlier)" : ""}</small> <${Phase} phase=${s.phase} /></h1>
    <dl class="facts">
      <div><dt>canary image</dt><dd><${Digest} value=${imageDigest(view.spec.canary.image) ?? view.spec.canary.image} /></dd></div>
      <div><dt>versions</dt><dd>${view.spec.stable.version} → ${view.spec.canary.version}</dd></div>
      <div><dt>route</dt><dd><code>${view.spec.route}</code></dd></div>
      <div><dt>recipe</dt><dd class="recipe">${recipe(view.spec.strategy?.canary?.steps)}</dd></div>
      <div><dt>step</dt><dd>${Math.min(s.currentStepIndex + 1, s.steps)} / ${s.steps} · canary ${s.canaryWeight} %</dd></div>
      <div><dt>started</dt><dd><${Time} ms=${started} /> by ${s.appliedBy ?? "—"}</dd></div>
      <div><dt>elapsed</dt><dd>${duration(end - started)}</dd></div>
    </dl>
    <p class="message">${s.message}</p>
    <nav class="subnav" aria-label="this run">
      <a href=${link(view.metadata.name, { generation: route.generation })}>Timeline</a>
      ${!earlier && html`<a href=${link(view.metadata.name, { screen: "stage" })}>Deploy stage</a>`}
      ${!earlier && html`<a href=${link(view.metadata.name, { screen: "rollback" })}>Rollback / re-run</a>`}
      <a href=${link(view.metadata.name, { generation: route.generation, screen: "evidence" })}>Evidence</a>
      <a href=${link(view.metadata.name, { generation: route.generation, screen: "replay" })}>Replay</a>
      ${!earlier && html`<a href=${link(view.metadata.name, { screen: "schedule" })}>Schedule</a>`}
    </nav>
  </header>`;
}

function HealthBanner({ view }) {
  const { live } = useCtx();
  const name = view.metadata.name;
  // Also every 5 s: a lost proxy or a Prometheus going down writes no event to wake it.
  const r = useData(`api/v1/rollouts/${encodeURIComponent(name)}/health`, [], { every: 5000 });
  const h = health(view, r.data);
  const stage = link(name, { screen: "stage" });
  return html`<aside class=${`health ${h.problems ? "health-bad" : "health-ok"}`} aria-label="health" data-testid="health">
    <span class=${h.connected < h.expected ? "bad" : ""}><a href=${stage}>${h.connected} of ${h.expected} prox${h.expected === 1 ? "y" : "ies"} connected</a>
      ${h.table !== undefined ? html` · table v${h.table}` : ""}</span>
    ${h.lost.length > 0 && html`<span class="bad" data-testid="health-lost">lost: ${r.data.proxies.lost.map((l, i) => html`${i ? ", " : ""}${l.proxy} (last heartbeat <${Time} ms=${l.lastReportMs} />)`)}</span>`}
    ${h.behind.length > 0 && html`<span><a href=${stage}>${h.behind.length} not on the newest table: ${h.behind.join(", ")}</a></span>`}
    ${[...h.refusing, ...h.errors].map((e) => html`<span class="bad"><a href=${stage}>refusing: ${e}</a></span>`)}
    ${h.stale.length > 0 && html`<span class="bad"><a href=${stage}>heartbeat late: ${h.stale.join(", ")}</a></span>`}
    ${h.sink && html`<details class=${h.sink.bad ? "bad" : ""} data-testid="health-sink"><summary>${h.sink.text}</summary>
      <dl><dt>Sink</dt><dd>${r.data.eventSink.url}</dd><dt>Acknowledged</dt><dd>up to event ${r.data.eventSink.deliveredSeq} of ${r.data.eventSink.latestSeq}</dd>
        <dt>Last delivery</dt><dd><${Time} ms=${r.data.eventSink.deliveredAtMs} /></dd>
        ${r.data.eventSink.failingSinceMs && html`<dt>Failing since</dt><dd><${Time} ms=${r.data.eventSink.failingSinceMs} /></dd>`}</dl></details>`}
    ${h.prometheus.map((p) => html`<span class=${p.ready ? "" : "bad"} data-testid="health-prometheus"><a href=${p.address} target="_blank" rel="noopener noreferrer">${p.text}</a></span>`)}
    ${r.data && !h.problems && html`<span>no refusals, no late heartbeats, every proxy on the newest table</span>`}
    <span title="the event stream's state, also in the top bar">live updates: ${live}</span>
    <${ErrorLine} error=${r.error} />
  </aside>`;
}

export function QuickActions({ view, onDone }) {
  const { me } = useCtx();
  const allowed = (view.status.allowedActions ?? []).filter((a) => may(me, a));
  if (!allowed.length) return null;
  return html`<div class="actions" role="group" aria-label="actions">
    ${allowed.map((a) => html`<${ActionButton} rollout=${view.metadata.name} action=${a} label=${LABELS[a] ?? a} danger=${a === "abort" || a === "rollback"} onDone=${onDone} />`)}
  </div>`;
}

function StageTimeline({ view, timeline, route }) {
  const { rows, actions } = storyline(view, timeline);
  const all = [...rows];
  // Actions go after the last row that happened before them.
  for (const a of actions) {
    let at = all.length;
    for (let i = all.length - 1; i >= 0; i--) {
      if (all[i].at !== undefined && all[i].at <= a.at) {
        at = i + 1;
        break;
      }
    }
    all.splice(at, 0, a);
  }
  return html`<ol class="stages" aria-label="stage timeline">
    ${all.map(
      (r) => html`<li class=${`stage stage-${r.mark}`} data-stage=${r.key} data-mark=${r.mark}>
        <${Mark} mark=${r.mark} />
        <span class="stage-title"><a href=${link(view.metadata.name, { generation: route.generation, screen: "step", arg: r.link ?? r.key })}>${r.title}</a></span>
        <span class="stage-time">${r.at ? html`<${Time} ms=${r.at} />` : ""}</span>
        <span class="stage-detail">${r.by ? html`<strong>${r.by}</strong> ` : ""}${r.detail}
          ${r.earlier?.length > 0 && html`<span class="muted"> (earlier: ${r.earlier.map((n, i) => html`${i ? ", " : ""}<a href=${link(view.metadata.name, { generation: route.generation, screen: "step", arg: `run-${n}` })}>run ${n}</a>`)})</span>`}</span>
      </li>`,
    )}
  </ol>`;
}

/** Weight (stepped), every measurement by metric, thresholds, and actions as markers. */
export function CanaryChart({ view, timeline, templates, slo, toggles = [] }) {
  const s = view.status;
  const t0 = s.createdMs;
  const xs = new Set([t0]);
  // The fleet's own figures per backend (GET /api/v1/slo/ROUTE), for the current generation.
  const backends = Object.entries(slo?.backends ?? {}).filter(([b]) => b === "canary" || b === "stable");
  const sampled = new Map();
  for (const [b, samples] of backends) {
    const m = new Map();
    for (const x of samples) {
      if (x.atMs < t0) continue;
      m.set(x.atMs, x);
      xs.add(x.atMs);
    }
    sampled.set(b, m);
  }
  for (const a of s.appliedWeights) xs.add(a.appliedMs);
  const metrics = new Map();
  for (const run of s.analysisRuns ?? []) {
    const tpl = templates[templateOf(view, run)];
    for (const m of run.metrics) {
      const entry = metrics.get(m.name) ?? { points: new Map(), limit: threshold(tpl?.spec?.metrics?.find((x) => x.name === m.name)?.successCondition) };
      for (const x of m.measurements) {
        const v = scalar(x.value);
        if (v !== null) {
          entry.points.set(x.atMs, v);
          xs.add(x.atMs);
        }
      }
      metrics.set(m.name, entry);
    }
  }
  const actions = (timeline?.entries ?? []).filter((e) => e.input?.Action);
  for (const a of actions) xs.add(a.at_ms);
  const flagAt = new Map();
  for (const e of toggles) {
    const t = Date.parse(e.time);
    if (!Number.isFinite(t) || t < t0) continue;
    flagAt.set(t, `${e.data?.flag} ${e.data?.enabled ? "enabled" : "disabled"} by ${e.data?.actor ?? "?"}`);
    xs.add(t);
  }
  xs.add(s.settled ? s.updatedMs : Date.now());
  const x = [...xs].sort((a, b) => a - b);
  let w = 0;
  const weights = x.map((t) => {
    for (const a of s.appliedWeights) if (a.appliedMs <= t) w = a.weight;
    return w;
  });
  const series = [{ label: "time" }, { label: "canary weight %", scale: "%", stroke: "#2a6fdb", width: 2, paths: globalThis.uPlot?.paths?.stepped?.({ align: 1 }) }];
  const data = [x.map((t) => t / 1000), weights];
  const colors = ["#1a9c5b", "#c77700", "#8a3ffc", "#d12771"];
  let c = 0;
  for (const [name, m] of metrics) {
    const color = colors[c++ % colors.length];
    series.push({ label: name, scale: "value", stroke: color, points: { show: true }, spanGaps: true });
    data.push(x.map((t) => m.points.get(t) ?? null));
    if (m.limit) {
      series.push({ label: `${name} threshold (${m.limit.op} ${m.limit.value})`, scale: "value", stroke: color, dash: [6, 4], width: 1 });
      data.push(x.map(() => m.limit.value));
    }
  }
  const tones = { canary: ["#c0392b", "#e67e22"], stable: ["#2c3e50", "#7f8c8d"] };
  for (const [b, m] of sampled) {
    series.push({ label: `${b} success ratio (60 s)`, scale: "value", stroke: tones[b][0], width: 1.5, spanGaps: true });
    data.push(x.map((t) => m.get(t)?.successRatio ?? null));
    series.push({ label: `${b} p95 s (60 s)`, scale: "value", stroke: tones[b][1], width: 1, dash: [2, 3], spanGaps: true });
    data.push(x.map((t) => m.get(t)?.latencyP95S ?? null));
  }
  series.push({ label: "actions", scale: "%", stroke: "#222", width: 0, points: { show: true, size: 9, fill: "#222" } });
  data.push(x.map((t) => (actions.some((a) => a.at_ms === t) ? weights[x.indexOf(t)] : null)));
  series.push({ label: "flag toggles", scale: "%", stroke: "#8a3ffc", width: 0, points: { show: true, size: 11, fill: "#fff", stroke: "#8a3ffc", width: 2 } });
  data.push(x.map((t, i) => (flagAt.has(t) ? weights[i] : null)));
  return html`<${Chart} title="Canary weight, canary vs stable success and p95, analysis measurements and thresholds" series=${series} data=${data} />
    ${flagAt.size > 0 && html`<ul class="plain muted" data-testid="flag-markers">${[...flagAt].map(([t, what]) => html`<li>◯ <${Time} ms=${t} /> ${what}</li>`)}</ul>`}`;
}

export function Run({ route }) {
  const { refresh } = useCtx();
  const r = useRun(route);
  const templates = useTemplates(r.view);
  // Before any early return: hooks run in the same order on every render.
  const slo = useData(r.view && !r.earlier ? `api/v1/slo/${encodeURIComponent(r.view.spec.route)}?since=${r.view.status.createdMs}` : null);
  // Flag toggles during the run (any flag: a toggle elsewhere can explain a change here).
  const since = r.view ? new Date(r.view.status.createdMs).toISOString() : null;
  const toggles = useData(since ? `api/v1/events?type=${encodeURIComponent(TOGGLED)}&since=${encodeURIComponent(since)}&limit=1000` : null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />${r.loading && html`<p>loading…</p>`}`;
  const failing = [...(r.view.status.analysisRuns ?? [])].reverse().find((x) => ["Failed", "Error", "Inconclusive"].includes(x.phase));
  const why = failing && whyFailed(failing, templates[templateOf(r.view, failing)]);
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} />
    ${!r.earlier && html`<${HealthBanner} view=${r.view} />`}
    ${why && html`<p class="why" data-testid="why-failed" role="status"><strong>Why it failed:</strong> ${why.sentence}
      <a href=${link(route.rollout, { generation: route.generation, screen: "step", arg: `run-${failing.run}` })}> (analysis run ${failing.run})</a></p>`}
    ${!r.earlier && html`<${QuickActions} view=${r.view} onDone=${refresh} />`}
    <${ErrorLine} error=${r.error} />
    <div class="run-body">
      <section aria-labelledby="stages-h"><h2 id="stages-h">Stages</h2><${StageTimeline} view=${r.view} timeline=${r.timeline} route=${route} /></section>
      <section aria-labelledby="chart-h"><h2 id="chart-h">Canary</h2><${CanaryChart} view=${r.view} timeline=${r.timeline} templates=${templates} slo=${slo.data} toggles=${toggles.data?.events} /></section>
    </div>
  </article>`;
}

/** 4. Deploy stage view: the current step's policy, figures, trigger state and the targets. */
export function Stage({ route }) {
  const { refresh } = useCtx();
  const r = useRun(route);
  const templates = useTemplates(r.view);
  const proxies = useData("api/v1/proxies");
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const s = r.view.status;
  const steps = r.view.spec.strategy?.canary?.steps ?? [];
  // The stage: the analysis of the current weight (the next analysis step at or after it).
  let i = Math.min(s.currentStepIndex, steps.length - 1);
  let analysis = null;
  for (let j = i; j < steps.length && !analysis; j++) if (steps[j].analysis) analysis = j;
  const tpl = analysis !== null ? templates[steps[analysis].analysis.templates[0].templateName] : null;
  const run = [...(s.analysisRuns ?? [])].reverse().find((x) => x.step === analysis);
  const table = proxies.data?.tableVersion;
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} />
    <section aria-labelledby="policy-h"><h2 id="policy-h">Step ${i + 1}: ${steps[i] ? stepWords(steps[i]) : "done"}</h2>
      ${tpl ? html`<ul class="policy">${tpl.spec.metrics.map((m) => html`<li>${policy(m)}</li>`)}</ul>` : html`<p class="muted">no analysis at this stage</p>`}
      ${run && html`<table><thead><tr><th>metric</th><th>phase</th><th>last value</th><th>failures / limit</th><th>measurements left</th></tr></thead><tbody>
        ${run.metrics.map((m) => {
          const t = tpl?.spec.metrics.find((x) => x.name === m.name);
          const failures = m.measurements.filter((x) => x.phase === "Failed").length;
          const last = m.measurements[m.measurements.length - 1];
          return html`<tr><td>${m.name}</td><td>${m.phase}</td><td>${last ? scalar(last.value)?.toFixed(4) ?? "—" : "—"}</td>
            <td>${failures} / ${t?.failureLimit ?? 0}</td><td>${Math.max(0, (t?.count ?? 1) - m.measurements.length)}</td></tr>`;
        })}</tbody></table>`}
    </section>
    <section aria-labelledby="targets-h"><h2 id="targets-h">Targets</h2>
      <div class="scroll"><table class="targets"><thead><tr><th>proxy</th><th>table applied / published</th><th>weight served</th><th>in flight (stable / canary)</th>
        <th>success rate (stable / canary)</th><th>p95 (stable / canary)</th><th>last heartbeat</th><th>refusal</th></tr></thead><tbody>
        ${(proxies.data?.items ?? []).map((p) => {
          const route = r.view.spec.route;
          const flight = p.inFlight?.[route] ?? {};
          const slo = p.slo?.routes?.[route] ?? {};
          const pct = (b) => (slo[b]?.successRatio === null || slo[b]?.successRatio === undefined ? "—" : `${(slo[b].successRatio * 100).toFixed(2)} %`);
          const p95 = (b) => (slo[b]?.latencyP95S === null || slo[b]?.latencyP95S === undefined ? "—" : `${Math.round(slo[b].latencyP95S * 1000)} ms`);
          return html`<tr data-proxy=${p.proxy}><td>${p.proxy}</td><td>${p.appliedVersion} / ${table}</td>
            <td>${p.appliedVersion === table ? `${s.canaryWeight} %` : "older table"}</td>
            <td>${flight.stable ?? 0} / ${flight.canary ?? 0}</td>
            <td data-testid="proxy-success">${pct("stable")} / ${pct("canary")}</td><td>${p95("stable")} / ${p95("canary")}</td>
            <td>${p.lastReportMs ? html`<${Time} ms=${p.lastReportMs} />` : "—"}</td>
            <td>${p.rejected ? `table ${p.rejected.version}: ${p.rejected.error}` : "—"}</td></tr>`;
        })}
        ${!(proxies.data?.items ?? []).length && html`<tr><td colspan="8" class="muted">no proxy connected</td></tr>`}
      </tbody></table></div>
      <p class="muted">Each proxy's own figures over its ${proxies.data?.items?.[0]?.slo?.windowS ?? "default"} s window.</p>
    </section>
    <${StageActions} view=${r.view} run=${run} analysis=${analysis} onDone=${refresh} />
  </article>`;
}

/** Pause, continue (disabled until the step's criteria are met, saying what is missing),
 * abort or roll back: those the phase allows and the role may send. */
function StageActions({ view, run, analysis, onDone }) {
  const { me } = useCtx();
  const allowed = (view.status.allowedActions ?? []).filter((a) => may(me, a));
  const go = continueState(view, run, analysis);
  const name = view.metadata.name;
  const button = (a, extra = {}) => html`<${ActionButton} rollout=${name} action=${a} label=${LABELS[a]} danger=${a === "abort" || a === "rollback"} onDone=${onDone} ...${extra} />`;
  if (!allowed.length) return null;
  return html`<div class="actions" role="group" aria-label="stage actions">
    ${allowed.includes("pause") && button("pause")}
    ${go.action && may(me, go.action) && html`${button(go.action, { label: "Continue", disabled: !go.ready, why: go.why })}<span class="muted" data-testid="continue-why">${go.ready ? "criteria met: " : "not yet: "}${go.why}</span>`}
    ${["abort", "rollback"].filter((a) => allowed.includes(a)).map((a) => button(a))}
  </div>`;
}
