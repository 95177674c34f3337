// The run as one storyline (pure: unit-tested with node --test). From a rollout's view
// (spec + status) and its timeline, the stage rows in lifecycle order — inputs, gate,
// approval, each recipe step, post-deploy verification, sealing, the end — each with its time,
// a mark (done, running, pending, failed) and what it links to; the user's actions in between,
// with who and why; and "why it failed" in one sentence.

import { duration } from "./format.js";

const checkpointsOf = (e) => (e.checkpoints ?? []).map((c) => c.Checkpoint).filter(Boolean);
const inputKind = (input) => (typeof input === "string" ? input : Object.keys(input ?? {})[0]);

/** The first checkpoint entering `phase`, as `{at, entry}`. */
function entered(entries, phase) {
  for (const e of entries) {
    const c = checkpointsOf(e).find((c) => c.to === phase);
    if (c) return { at: e.at_ms, entry: e, reason: c.reason };
  }
  return null;
}

/**
 * Rows: `{key, title, detail, at, mark, link, by, reason}`. `key` is stable (a deep link's
 * target: `inputs`, `gate`, `approval`, `step-N`, `verify`, `sealed`, `end`, `action-SEQ`).
 */
export function storyline(view, timeline) {
  const all = timeline?.entries ?? [];
  // A retry starts the lifecycle again: the rows tell the current attempt (its runs too);
  // the actions list keeps every attempt's.
  const retry = all.findLastIndex((e) => e.input?.Action === "retry");
  const entries = retry >= 0 ? all.slice(retry) : all;
  const since = retry >= 0 ? all[retry].at_ms : -Infinity;
  const status = view.status;
  const steps = view.spec?.strategy?.canary?.steps ?? [];
  const runs = (status.analysisRuns ?? []).filter((r) => r.startedMs >= since);
  const phase = status.phase;
  const ended = ["Completed", "Aborted", "RolledBack"].includes(phase);
  const failedEnd = phase === "Aborted" || phase === "RolledBack";
  const rows = [];

  const inputs = entered(entries, "InputsMaterialized");
  rows.push({
    key: "inputs",
    title: "Inputs materialized",
    detail: inputs ? "spec, images and templates recorded" : "",
    at: inputs?.at,
    mark: inputs ? "done" : failedEnd ? "failed" : "running",
  });

  const gate = entries.find((e) => inputKind(e.input) === "GateEvaluated");
  const g = gate?.input?.GateEvaluated;
  rows.push({
    key: "gate",
    title: "Gate",
    detail: g ? g.reason : entered(entries, "GateEval") ? "evaluating" : "",
    at: gate?.at_ms,
    mark: g ? (g.passed ? "done" : "failed") : entered(entries, "GateEval") && !ended ? "running" : "pending",
  });

  const awaiting = entered(entries, "AwaitingApproval");
  if (awaiting || g?.needs_approval) {
    const approved = entries.find((e) => e.input?.Action === "approve");
    rows.push({
      key: "approval",
      title: "Approval",
      detail: approved ? `approved by ${approved.by ?? "someone"}` : "waiting for an approver",
      at: approved?.at_ms,
      by: approved?.by,
      reason: approved?.reason,
      mark: approved ? "done" : phase === "AwaitingApproval" ? "running" : ended ? "failed" : "pending",
    });
  }

  // Weight steps: applied when the WeightApplied entry for that weight came after the step
  // began. The status's index says which step is current.
  const current = status.currentStepIndex;
  const applied = entries.filter((e) => inputKind(e.input) === "WeightApplied");
  steps.forEach((step, i) => {
    const row = { key: `step-${i}`, title: `Step ${i + 1}`, detail: "", mark: "pending" };
    if ("setWeight" in step) {
      const w = step.setWeight;
      const a = applied.find((e) => e.input.WeightApplied.weight === w);
      row.title = `Canary ${w} %`;
      row.detail = a ? "every connected proxy applied it" : "";
      row.at = a?.at_ms;
    } else if ("pause" in step) {
      row.title = step.pause?.duration ? `Pause ${step.pause.duration}` : "Pause until resumed";
    } else if ("analysis" in step) {
      const run = [...runs].reverse().find((r) => r.step === i);
      row.title = `Analysis (${step.analysis.templates.map((t) => t.templateName).join(", ")})`;
      if (run) {
        row.run = run.run;
        row.detail = run.message;
        row.at = run.startedMs;
        row.link = `run-${run.run}`;
        // Runs of this step a re-run (or an inconclusive resume) replaced, oldest first.
        row.earlier = runs.filter((r) => r.step === i && r.run !== run.run).map((r) => r.run);
      }
      row.mark = runMark(run, ended);
      if (row.mark === "running" && phase === "Paused") row.mark = "paused";
      // Passed over by a promote: no run for a step the rollout is past.
      if (!run && i < current) {
        row.mark = "skipped";
        row.detail = "skipped (promoted)";
      }
    }
    if (row.mark === "pending") {
      if (i < current) row.mark = "done";
      else if (i === current && !ended) row.mark = phase === "Paused" ? "paused" : "running";
      else if (i === current && failedEnd) row.mark = "failed";
    }
    rows.push(row);
  });

  // Background analysis (`canary.analysis`): its runs are neither a step's nor the
  // verification's (their step is past the recipe and the verification's index).
  const background = runs.filter((r) => r.step > steps.length);
  if (view.spec?.strategy?.canary?.analysis) {
    const run = background[background.length - 1];
    rows.push({
      key: "background",
      title: `Background analysis (${view.spec.strategy.canary.analysis.templates.map((t) => t.templateName).join(", ")})`,
      detail: run?.message ?? "starts with its step",
      at: run?.startedMs,
      run: run?.run,
      link: run ? `run-${run.run}` : undefined,
      earlier: background.slice(0, -1).map((r) => r.run),
      mark: run ? runMark(run, ended) : ended ? "skipped" : "pending",
    });
  }

  const verify = entered(entries, "PostDeployVerify");
  const sealedAt = entered(entries, "Sealed");
  if (verify || view.spec?.strategy?.canary?.postDeployVerify) {
    // The verification run's step is the recipe's length (a background run's is usize::MAX).
    const run = [...runs].reverse().find((r) => r.step === steps.length);
    rows.push({
      key: "verify",
      title: "Post-deploy verify",
      detail: run?.message ?? (view.spec?.strategy?.canary?.postDeployVerify ? "" : "nothing to verify (no postDeployVerify in the spec)"),
      at: verify?.at,
      run: run?.run,
      link: run ? `run-${run.run}` : undefined,
      // Without a run, reaching Sealed means it passed, whatever happened after (a rollback).
      mark: run ? runMark(run, ended) : verify ? (sealedAt || (ended && !failedEnd) || phase === "Sealed" ? "done" : ended ? "failed" : "running") : "pending",
    });
  }

  const sealed = sealedAt;
  if (!failedEnd || sealed) {
    rows.push({
      key: "sealed",
      title: "Sealed",
      detail: sealed ? "evidence sealed in the log" : "",
      at: sealed?.at,
      mark: sealed ? "done" : "pending",
    });
  }

  const end = failedEnd ? entered(entries, phase) ?? entered(entries, "Aborted") : entered(entries, "Completed");
  rows.push({
    key: "end",
    title: failedEnd ? (phase === "RolledBack" ? "Rolled back" : "Aborted") : "Completed",
    detail: end?.reason ?? (failedEnd ? status.message : ""),
    at: end?.at,
    mark: end ? (failedEnd ? "failed" : "done") : "pending",
  });

  // The user's actions, each with who and why, at their place in time.
  const actions = entries
    .filter((e) => inputKind(e.input) === "Action")
    .map((e) => ({
      key: `action-${e.seq}`,
      title: `${e.input.Action}`,
      detail: e.reason ? `“${e.reason}”` : "no reason given",
      at: e.at_ms,
      by: e.by,
      reason: e.reason,
      mark: "action",
    }));
  return { rows, actions };
}

/** A run's mark: a run still "Running" on an ended rollout was cancelled by its end. */
function runMark(run, ended) {
  if (!run) return "pending";
  if (run.phase === "Successful") return "done";
  if (["Failed", "Error", "Inconclusive"].includes(run.phase)) return "failed";
  if (ended) return "cancelled";
  return run.phase === "Pending" ? "pending" : "running";
}

/** The first failing measurement of a run and its condition, in one sentence (or null). */
export function whyFailed(run, template) {
  if (!run || !["Failed", "Error", "Inconclusive"].includes(run.phase)) return null;
  for (const m of run.metrics ?? []) {
    const bad = (m.measurements ?? []).find((x) => x.phase === "Failed" || x.phase === "Error");
    if (!bad) continue;
    const t = template?.spec?.metrics?.find((x) => x.name === m.name);
    const condition = t?.successCondition
      ? `its success condition ${t.successCondition}`
      : t?.failureCondition
        ? `its failure condition ${t.failureCondition}`
        : "its condition";
    const v = bad.value === undefined ? null : valueText(bad.value);
    const what = bad.phase === "Error" ? `could not be measured (${bad.message ?? "error"})` : `measured ${v} against ${condition}`;
    const limit = t ? ` (failure limit ${t.failureLimit ?? 0})` : "";
    return { metric: m.name, at: bad.atMs, sentence: `${m.name} ${what}${limit}.` };
  }
  return { metric: null, at: run.finishedMs, sentence: run.message };
}

function valueText(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if (v && typeof v.Scalar === "number") return valueText(v.Scalar);
  return JSON.stringify(v);
}

/** Which template a run used (the analysis step's first template), for its conditions. */
export function templateOf(view, run) {
  const canary = view.spec?.strategy?.canary ?? {};
  const steps = canary.steps ?? [];
  const step = steps[run.step];
  if (step?.analysis) return step.analysis.templates[0]?.templateName;
  if (run.step === steps.length) return canary.postDeployVerify?.templates?.[0]?.templateName ?? null;
  return canary.analysis?.templates?.[0]?.templateName ?? null;
}

/** Every template a rollout refers to: steps, background analysis, post-deploy verification. */
export function templateNames(view) {
  const canary = view?.spec?.strategy?.canary ?? {};
  const lists = [...(canary.steps ?? []).filter((s) => s.analysis).map((s) => s.analysis.templates), canary.analysis?.templates ?? [], canary.postDeployVerify?.templates ?? []];
  return [...new Set(lists.flat().map((t) => t.templateName))];
}

/** Health banner facts from the rollout and `GET …/health`: each a sentence, and whether it
 * is a problem. A sink more than 30 s behind, a lost, stale, refusing or lagging proxy, or an
 * unready Prometheus is one. */
export function health(view, h) {
  const p = h?.proxies ?? { connected: 0, expected: 0, lost: [], refusing: [], stale: [], behind: [] };
  const sink = h?.eventSink;
  const sinkLine = !sink
    ? null
    : sink.error
      ? { bad: true, text: `event sink failing: ${sink.error} (${sink.latestSeq - sink.deliveredSeq} events waiting)` }
      : sink.lagMs !== undefined && sink.lagMs !== null
        ? { bad: sink.lagMs > 30000, text: `event sink ${sink.latestSeq - sink.deliveredSeq} events behind (oldest ${duration(sink.lagMs)} ago)` }
        : { bad: false, text: "event sink caught up" };
  const facts = {
    connected: p.connected,
    expected: p.expected,
    table: p.tableVersion,
    lost: p.lost.map((l) => l.proxy),
    behind: p.behind,
    refusing: p.refusing.map((r) => `${r.proxy}: table ${r.version}: ${r.error}`),
    stale: p.stale,
    errors: view?.status?.proxyErrors ?? [],
    sink: sinkLine,
    prometheus: (h?.prometheus ?? []).map((x) => ({ address: x.address, ready: x.ready, text: x.ready ? `Prometheus ${x.address} ready` : x.error ?? `Prometheus ${x.address} not ready` })),
  };
  facts.problems = facts.lost.length + facts.behind.length + facts.refusing.length + facts.stale.length + facts.errors.length + (sinkLine?.bad ? 1 : 0) + facts.prometheus.filter((x) => !x.ready).length;
  return facts;
}

/** The deploy stage view's "continue": which action it sends (`resume` after a pause by
 * hand, else `promote` past the current step) and whether the step's criteria are met — its
 * weight applied by every proxy, no proxy refusing the table, and the stage's analysis (when
 * it is the current step) Successful. `why` says what is still missing. A rollout the state
 * machine would not continue has no continue at all (`action` null). */
export function continueState(view, run, analysisStep) {
  const s = view?.status ?? {};
  const allowed = s.allowedActions ?? [];
  const action = allowed.includes("resume") ? "resume" : allowed.includes("promote") ? "promote" : null;
  if (!action) return { action: null, ready: false, why: "" };
  const applied = s.appliedWeights ?? [];
  const last = applied[applied.length - 1];
  if (!last || last.weight !== s.canaryWeight) return { action, ready: false, why: `waiting for every proxy to apply ${s.canaryWeight} %` };
  if ((s.proxyErrors ?? []).length) return { action, ready: false, why: `proxies refuse the table: ${s.proxyErrors.join("; ")}` };
  if (analysisStep === s.currentStepIndex) {
    if (!run) return { action, ready: false, why: "the stage's analysis has not started" };
    if (run.phase !== "Successful") {
      const taken = Math.min(...run.metrics.map((m) => m.measurements.length));
      return { action, ready: false, why: `analysis ${run.phase.toLowerCase()}: ${Number.isFinite(taken) ? taken : 0} measurements taken per metric` };
    }
  }
  return { action, ready: true, why: `${s.canaryWeight} % applied by every proxy${analysisStep === s.currentStepIndex ? "; analysis successful" : ""}` };
}
