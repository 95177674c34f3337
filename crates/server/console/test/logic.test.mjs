// Unit tests of the console's pure logic (node --test): formatting, routes, the storyline and
// "why it failed", and DORA's recomputation against the Rust's definitions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { duration, shortDigest, imageDigest, value, scalar, recipe, threshold, policy, time, shares, jsonDiff, localInput, targeting } from "../lib/format.js";
import { parseRoute, link } from "../lib/routes.js";
import { storyline, whyFailed, health, templateOf, templateNames, continueState } from "../lib/storyline.js";
import { compute, agree, command, ms, TYPES } from "../lib/dora.js";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

test("formatting: durations, digests, values, recipes, conditions", () => {
  assert.equal(duration(850), "850 ms");
  assert.equal(duration(12_340), "12.3 s");
  assert.equal(duration(245_000), "4 m 05 s");
  assert.equal(duration(3 * 3600_000 + 60_000), "3 h 01 m");
  assert.equal(duration(null), "—");
  const hex = "3775864f45c2ba1133f5afd30788d3d74b3b6f992b2f482562df30516cea23cb";
  assert.equal(shortDigest(`demo/checkout@sha256:${hex}`), "sha256:3775864f45c2…");
  assert.equal(shortDigest(hex), "3775864f45c2…");
  assert.equal(shortDigest("v2"), "v2");
  assert.equal(imageDigest(`x@sha256:${hex}`), `sha256:${hex}`);
  assert.equal(imageDigest("x:latest"), null);
  assert.equal(value({ Scalar: 0.99 }), "0.9900");
  assert.equal(value({ Vector: [1, 0.5] }), "[1, 0.5000]");
  assert.equal(scalar({ Vector: [{ Scalar: 2 }] }), 2);
  assert.equal(scalar("x"), null);
  assert.equal(recipe([{ setWeight: 5 }, { pause: {} }, { setWeight: 25 }, { setWeight: 100 }]), "5 → 25 → 100 %");
  assert.deepEqual(threshold("result >= 0.99"), { op: ">=", value: 0.99 });
  assert.deepEqual(threshold("result[0] < 0.25"), { op: "<", value: 0.25 });
  assert.equal(threshold("result > 1 && result < 2"), null);
  assert.equal(
    policy({ name: "success-rate", successCondition: "result >= 0.99", count: 3, interval: "500ms", failureLimit: 0, provider: { proxy: { metric: "success-rate", window: "1m" } } }),
    "success-rate: pass when result >= 0.99, from the proxies' success-rate over 1m, 3 measurements every 500ms, failure limit 0",
  );
  assert.equal(time(Date.UTC(2026, 11, 2, 10, 0, 0)).utc, "2026-12-02T10:00:00Z");
});

test("routes: every screen has a deep link that parses back", () => {
  assert.deepEqual(parseRoute(""), { screen: "releases" });
  assert.deepEqual(parseRoute("#/dora"), { screen: "dora" });
  assert.deepEqual(parseRoute("#/rollouts/checkout"), { screen: "run", rollout: "checkout", generation: null, arg: null });
  for (const [opts, want] of [
    [{}, { screen: "run", generation: null, arg: null }],
    [{ generation: 2 }, { screen: "run", generation: 2, arg: null }],
    [{ generation: 2, screen: "step", arg: "run-3" }, { screen: "step", generation: 2, arg: "run-3" }],
    [{ screen: "evidence" }, { screen: "evidence", generation: null, arg: null }],
    [{ screen: "step", arg: "run-3", tab: "logs" }, { screen: "step", generation: null, arg: "run-3", tab: "logs" }],
  ]) {
    assert.deepEqual(parseRoute(link("shop/a b", opts)), { rollout: "shop/a b", ...want });
  }
});

const spec = {
  metadata: { name: "checkout" },
  spec: { strategy: { canary: { steps: [{ setWeight: 5 }, { analysis: { templates: [{ templateName: "slo" }] } }, { setWeight: 50 }] } } },
};
const cp = (from, to, reason = "") => ({ Checkpoint: { from, to, reason } });
const run1 = (phase, measurements) => ({ run: 1, step: 1, phase, startedMs: 30, finishedMs: 40, message: "m", metrics: [{ name: "success-rate", phase, measurements }] });

test("storyline: lifecycle order, marks, pending steps, actions with who and why", () => {
  const timeline = {
    entries: [
      { seq: 1, at_ms: 10, input: "InputsMaterialized", checkpoints: [cp("Pending", "InputsMaterialized"), cp("InputsMaterialized", "GateEval")] },
      { seq: 2, at_ms: 20, input: { GateEvaluated: { passed: true, needs_approval: false, reason: "ok" } }, checkpoints: [cp("GateEval", "Progressing")] },
      { seq: 3, at_ms: 25, input: { WeightApplied: { weight: 5 } }, checkpoints: [] },
      { seq: 4, at_ms: 35, input: { Action: "pause" }, by: "token:alice", reason: "look", checkpoints: [cp("Progressing", "Paused")] },
    ],
  };
  const view = { ...spec, status: { phase: "Paused", currentStepIndex: 1, analysisRuns: [run1("Running", [])], proxyErrors: [] } };
  const { rows, actions } = storyline(view, timeline);
  assert.deepEqual(rows.map((r) => [r.key, r.mark]), [
    ["inputs", "done"],
    ["gate", "done"],
    ["step-0", "done"],
    ["step-1", "paused"],
    ["step-2", "pending"],
    ["sealed", "pending"],
    ["end", "pending"],
  ]);
  assert.equal(rows[2].at, 25);
  assert.deepEqual(actions.map((a) => [a.title, a.by, a.reason]), [["pause", "token:alice", "look"]]);
});

test("storyline: an abort marks the current step and the end failed", () => {
  const timeline = { entries: [{ seq: 9, at_ms: 50, input: { AnalysisCompleted: { run: 1, verdict: "Failed", message: "x" } }, checkpoints: [cp("Progressing", "Aborted", "analysis failed")] }] };
  const view = { ...spec, status: { phase: "Aborted", currentStepIndex: 1, analysisRuns: [run1("Failed", [])], message: "analysis failed" } };
  const { rows } = storyline(view, timeline);
  const by = Object.fromEntries(rows.map((r) => [r.key, r]));
  assert.equal(by["step-1"].mark, "failed");
  assert.equal(by.end.mark, "failed");
  assert.equal(by.end.title, "Aborted");
  assert.equal(by.end.detail, "analysis failed");
  assert.equal(by.sealed, undefined, "no seal row for an abort that sealed nothing");
});

test("storyline: a re-run step names its earlier runs; background analysis has its own row", () => {
  const bg = { ...spec, spec: { strategy: { canary: { ...spec.spec.strategy.canary, analysis: { templates: [{ templateName: "bg" }] } } } } };
  const run = (n, step, phase) => ({ run: n, step, phase, startedMs: 30 + n, message: `run ${n}`, metrics: [] });
  const view = { ...bg, status: { phase: "Progressing", currentStepIndex: 1, analysisRuns: [run(1, 1, "Running"), run(1000, 18446744073709551615, "Running"), run(2, 1, "Running")] } };
  const by = Object.fromEntries(storyline(view, { entries: [] }).rows.map((r) => [r.key, r]));
  assert.equal(by["step-1"].link, "run-2");
  assert.deepEqual(by["step-1"].earlier, [1]);
  assert.equal(by.background.link, "run-1000");
  assert.equal(by.background.mark, "running");
  assert.deepEqual(by.background.earlier, []);
  assert.equal(storyline({ ...spec, status: { ...view.status } }, { entries: [] }).rows.some((r) => r.key === "background"), false);
});

test("storyline: a rollback after sealing keeps a run-less verification done", () => {
  const timeline = {
    entries: [
      { seq: 1, at_ms: 60, input: { WeightApplied: { weight: 100 } }, checkpoints: [cp("Progressing", "PostDeployVerify"), cp("PostDeployVerify", "Sealed")] },
      { seq: 2, at_ms: 70, input: { Action: "rollback" }, by: "token:bob", reason: "p95", checkpoints: [cp("Sealed", "RolledBack", "rollback requested by user")] },
    ],
  };
  const view = { ...spec, status: { phase: "RolledBack", currentStepIndex: 3, analysisRuns: [run1("Successful", [])], message: "rolled back" } };
  const by = Object.fromEntries(storyline(view, timeline).rows.map((r) => [r.key, r]));
  assert.equal(by.verify.mark, "done");
  assert.equal(by.sealed.mark, "done");
  assert.equal(by.end.mark, "failed");
});

test("why it failed: the first failing measurement and its condition", () => {
  const tpl = { spec: { metrics: [{ name: "success-rate", successCondition: "result >= 0.99", failureLimit: 0 }] } };
  const run = run1("Failed", [
    { atMs: 1, phase: "Successful", value: { Scalar: 1 } },
    { atMs: 2, phase: "Failed", value: { Scalar: 0.8123 } },
  ]);
  const why = whyFailed(run, tpl);
  assert.equal(why.metric, "success-rate");
  assert.equal(why.at, 2);
  assert.equal(why.sentence, "success-rate measured 0.8123 against its success condition result >= 0.99 (failure limit 0).");
  assert.equal(whyFailed(run1("Successful", []), tpl), null);
  const error = run1("Error", [{ atMs: 3, phase: "Error", message: "prometheus unreachable" }]);
  assert.match(whyFailed(error, tpl).sentence, /could not be measured \(prometheus unreachable\)/);
});

test("health: every problem of the banner counts, a caught-up sink and ready Prometheus do not", () => {
  const body = {
    proxies: { connected: 2, expected: 3, tableVersion: 4, lost: [{ proxy: "p3", lostAtMs: 1, lastReportMs: 0 }], refusing: [{ proxy: "p2", version: 3, error: "bad" }], stale: ["p1"], behind: ["p2"] },
    eventSink: { url: "http://s/", deliveredSeq: 10, latestSeq: 14, lagMs: 45000 },
    prometheus: [{ address: "http://prom:9090", ready: false, error: "Prometheus at http://prom:9090 is not reachable: refused" }, { address: "http://ok:9090", ready: true }],
  };
  const h = health({ status: { proxyErrors: ["p2: bad table"] } }, body);
  assert.equal(`${h.connected} of ${h.expected}`, "2 of 3");
  assert.deepEqual(h.lost, ["p3"]);
  assert.deepEqual(h.refusing, ["p2: table 3: bad"]);
  assert.equal(h.sink.text, "event sink 4 events behind (oldest 45.0 s ago)");
  assert.equal(h.sink.bad, true);
  assert.equal(h.prometheus[0].text, "Prometheus at http://prom:9090 is not reachable: refused");
  // lost, behind, refusing, stale, the rollout's proxy error, the sink, one Prometheus.
  assert.equal(h.problems, 7);
  const fine = health({ status: {} }, { proxies: { connected: 1, expected: 1, tableVersion: 4, lost: [], refusing: [], stale: [], behind: [] }, eventSink: { url: "u", deliveredSeq: 5, latestSeq: 5 }, prometheus: [{ address: "a", ready: true }] });
  assert.equal(fine.problems, 0);
  assert.equal(fine.sink.text, "event sink caught up");
  assert.equal(health(null, { ...body, eventSink: { ...body.eventSink, error: "the sink answered 503 Service Unavailable" } }).sink.text, "event sink failing: the sink answered 503 Service Unavailable (4 events waiting)");
});

test("continue: only once the weight is applied everywhere and the stage's analysis succeeded", () => {
  const view = (over) => ({ status: { allowedActions: ["pause", "promote", "abort"], canaryWeight: 25, currentStepIndex: 4, appliedWeights: [{ weight: 5 }, { weight: 25 }], ...over } });
  const run = (phase, n) => ({ phase, metrics: [{ measurements: Array(n).fill({}) }, { measurements: Array(n + 1).fill({}) }] });
  assert.deepEqual(continueState(view({ allowedActions: ["abort"] }), null, 5), { action: null, ready: false, why: "" });
  assert.equal(continueState(view({ appliedWeights: [{ weight: 5 }] }), null, 5).why, "waiting for every proxy to apply 25 %");
  assert.match(continueState(view({ proxyErrors: ["p1: bad"] }), null, 5).why, /refuse the table: p1: bad/);
  // A pause before the stage's analysis: the weight applied is the step's criterion.
  assert.equal(continueState(view(), null, 5).ready, true);
  // At the analysis step: not before it succeeded.
  assert.equal(continueState(view(), null, 4).why, "the stage's analysis has not started");
  assert.equal(continueState(view(), run("Running", 2), 4).why, "analysis running: 2 measurements taken per metric");
  assert.equal(continueState(view(), run("Successful", 3), 4).ready, true);
  assert.equal(continueState(view({ allowedActions: ["resume"] }), run("Successful", 3), 4).action, "resume");
});

test("shares: each bucket's variants as percentages of that bucket, defined variants first", () => {
  const s = shares([{ startMs: 60000, variants: { on: 1, off: 3 } }, { startMs: 120000, variants: { off: 2, old: 2 } }], ["on", "off"]);
  assert.deepEqual(s.variants, ["on", "off", "old"]);
  assert.deepEqual(s.x, [60, 120]);
  assert.deepEqual(s.columns, [[25, 0], [75, 50], [0, 50]]);
  assert.equal(s.total, 8);
  assert.deepEqual(shares([], ["on"]).columns, [[]]);
});

test("jsonDiff: the leaves that changed, by path", () => {
  const a = { name: "r", split: { backends: [{ name: "canary", weight: 5 }, { name: "stable", weight: 95 }] } };
  const b = { name: "r", split: { backends: [{ name: "canary", weight: 25 }, { name: "stable", weight: 75 }] } };
  assert.deepEqual(jsonDiff(a, b), [
    { path: "split.backends[0].weight", before: 5, after: 25 },
    { path: "split.backends[1].weight", before: 95, after: 75 },
  ]);
  const promoted = { name: "r", split: { backends: [{ name: "stable", weight: 100 }] } };
  assert.deepEqual(jsonDiff(b, promoted).map((d) => d.path), ["split.backends[0].name", "split.backends[0].weight", "split.backends[1]"]);
  assert.deepEqual(jsonDiff(a, a), []);
  assert.deepEqual(jsonDiff(null, { x: 1 }), [{ path: ".", before: null, after: { x: 1 } }]);
});

test("localInput: a datetime-local value that reads back as the same minute", () => {
  const ms = Date.UTC(2026, 11, 3, 7, 5, 42);
  const v = localInput(ms);
  assert.match(v, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/);
  assert.equal(Date.parse(v), ms - 42000);
  assert.equal(localInput(NaN), "");
});

test("targeting: rules in order, then the fraction as shares", () => {
  const f = { rules: [{ attribute: "plan", equals: "pro", variant: "on" }, { attribute: "country", in: ["DE", "FR"], variant: "off" }], fraction: { buckets: 100, variants: [{ variant: "on", weight: 1 }, { variant: "off", weight: 9 }] } };
  assert.equal(targeting(f), 'plan = "pro" → on; country in "DE", "FR" → off; then 10 % on, 90 % off (by targeting key, 100 buckets)');
  assert.equal(targeting({}), "");
});

test("dora: the event types are the Rust's", () => {
  const rust = readFileSync(join(here, "../../../core/src/events.rs"), "utf8");
  for (const t of Object.values(TYPES)) assert.ok(rust.includes(`"${t}"`), `${t} is not in crates/core/src/events.rs`);
});

const ev = (type, time, data, extra = {}) => ({ specversion: "1.0", id: `${type}-${time}-${JSON.stringify(data).length}`, source: "/t", type, time, data, ...extra });

test("dora: the four keys by their definitions, and agree() sees a difference", () => {
  const w = { since: Date.parse("2026-11-01T00:00:00Z"), until: Date.parse("2026-11-03T00:00:00Z") };
  const events = [
    ev(TYPES.merged, "2026-10-31T23:00:00Z", { commit: "c1" }),
    ev(TYPES.upgraded, "2026-11-01T01:00:00.500Z", { subject: { content: { commit: "c1" } } }),
    ev(TYPES.upgraded, "2026-11-02T00:00:00Z", { subject: { content: { commit: "c2", commitTime: "2026-11-01T22:00:00Z" } } }),
    ev(TYPES.upgraded, "2026-11-04T00:00:00Z", { subject: { content: { commit: "c3" } } }),
    ev(TYPES.step, "2026-11-01T00:10:00Z", { to: "Progressing" }, { subject: "a.g1" }),
    ev(TYPES.step, "2026-11-01T00:20:00Z", { to: "Progressing" }, { subject: "b.g1" }),
    ev(TYPES.rolledback, "2026-11-01T00:30:00Z", { subject: { content: { release: "b.g1" } } }),
    ev(TYPES.detected, "2026-11-01T05:00:00Z", { subject: { id: "i1" } }),
    ev(TYPES.resolved, "2026-11-01T05:30:00Z", { subject: { id: "i1" } }),
  ];
  const r = compute(events, w);
  assert.equal(r.deployFrequency.releases, 2);
  assert.equal(r.deployFrequency.perDay, 1);
  assert.equal(r.leadTime.releases, 2);
  assert.equal(r.leadTime.meanMs, (2 * 3600_000 + 500 + 2 * 3600_000) / 2);
  assert.equal(r.changeFailureRate.rate, 0.5);
  assert.equal(r.mttr.meanMs, 30 * 60_000);
  assert.deepEqual(agree(r, structuredClone(r)), []);
  const other = structuredClone(r);
  other.mttr.meanMs += 1;
  assert.deepEqual(agree(r, other).map((d) => d.split(":")[0]), ["mttr"]);
  assert.equal(ms("2026-11-01T00:00:00.5Z"), Date.parse("2026-11-01T00:00:00.500Z"));
  assert.equal(ms("garbage"), null);
  assert.equal(command("jq --argjson since SINCE_MS --argjson until UNTIL_MS", w), `jq --argjson since ${w.since} --argjson until ${w.until}`);
});

test("storyline: after a retry the rows tell the new attempt; a verify run is the recipe's length", () => {
  const s = { metadata: { name: "c" }, spec: { strategy: { canary: { steps: [{ setWeight: 5 }, { analysis: { templates: [{ templateName: "slo" }] } }, { setWeight: 100 }], postDeployVerify: { templates: [{ templateName: "verify" }] }, analysis: { templates: [{ templateName: "bg" }] } } } } };
  const timeline = {
    entries: [
      { seq: 1, at_ms: 10, input: "InputsMaterialized", checkpoints: [cp("Pending", "InputsMaterialized"), cp("InputsMaterialized", "GateEval")] },
      { seq: 2, at_ms: 20, input: { GateEvaluated: { passed: false, needs_approval: false, reason: "window closed" } }, checkpoints: [cp("GateEval", "Aborted", "gate failed")] },
      { seq: 3, at_ms: 30, input: { Action: "retry" }, by: "bob", reason: "window open", checkpoints: [cp("Aborted", "Pending")] },
      { seq: 4, at_ms: 40, input: "InputsMaterialized", checkpoints: [cp("Pending", "InputsMaterialized"), cp("InputsMaterialized", "GateEval")] },
      { seq: 5, at_ms: 50, input: { GateEvaluated: { passed: true, needs_approval: false, reason: "ok" } }, checkpoints: [cp("GateEval", "Progressing")] },
      { seq: 6, at_ms: 60, input: { Action: "promoteFull" }, by: "bob", checkpoints: [] },
      { seq: 7, at_ms: 70, input: { WeightApplied: { weight: 100 } }, checkpoints: [cp("Progressing", "PostDeployVerify")] },
    ],
  };
  const runs = [
    { run: 1, step: 1.8446744073709552e19, phase: "Running", startedMs: 55, metrics: [] },
    { run: 2, step: 3, phase: "Running", startedMs: 75, metrics: [] },
  ];
  const view = { ...s, status: { phase: "PostDeployVerify", currentStepIndex: 3, analysisRuns: runs } };
  const { rows, actions } = storyline(view, timeline);
  const by = Object.fromEntries(rows.map((r) => [r.key, r]));
  assert.equal(by.gate.mark, "done", "the retried gate, not the first attempt's");
  assert.equal(by.gate.at, 50);
  assert.equal(by["step-1"].mark, "skipped");
  assert.equal(by.verify.run, 2, "the verification run, not the background one");
  assert.equal(by.verify.mark, "running");
  assert.deepEqual(actions.map((a) => a.title), ["retry", "promoteFull"]);
  assert.equal(templateOf(view, runs[1]), "verify");
  assert.equal(templateOf(view, runs[0]), "bg");
  assert.deepEqual(templateNames(view).sort(), ["bg", "slo", "verify"]);
  // Ended with the verification unfinished: cancelled, not running.
  const ended = storyline({ ...view, status: { ...view.status, phase: "Aborted" } }, timeline);
  assert.equal(ended.rows.find((r) => r.key === "verify").mark, "cancelled");
});
