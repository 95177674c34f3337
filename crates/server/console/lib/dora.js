// DORA's four keys recomputed in the browser from the events a receipt names (pure; a port of
// crates/core/src/dora.rs `compute`, held to the server's figures by a golden test). The
// definitions, times and rounding are the Rust's: times to the millisecond as jq's `ms`
// reads them, an event counting when its time is in [since, until).

export const DAY_MS = 86_400_000;
// The types as crates/core/src/events.rs names them (a test compares the two).
export const TYPES = {
  upgraded: "dev.cdevents.service.upgraded.0.3.0",
  rolledback: "dev.cdevents.service.rolledback.0.3.0",
  detected: "dev.cdevents.incident.detected.0.3.0",
  resolved: "dev.cdevents.incident.resolved.0.3.0",
  merged: "dev.cdevents.change.merged.0.2.0",
  step: "dev.vireo.rollout.step.0.1.0",
};

/** `YYYY-MM-DDTHH:MM:SS[.fff…]…` → ms, as the jq prelude's `ms` (null when unreadable). */
export function ms(t) {
  if (typeof t !== "string" || t.length < 20) return null;
  const base = Date.parse(`${t.slice(0, 19)}Z`);
  if (Number.isNaN(base)) return null;
  let frac = 0;
  if (t[19] === ".") {
    const digits = /^[0-9]*/.exec(t.slice(20))[0].slice(0, 3);
    frac = Number(digits.padEnd(3, "0"));
  }
  return base + frac;
}

const time = (e) => ms(e.time);
const ref = (e) => `${e.source}#${e.id}`;
const at = (e, path) => {
  let v = e.data;
  for (const p of path) v = v?.[p];
  return typeof v === "string" ? v : null;
};
const commitOf = (e) => at(e, ["subject", "content", "commit"]) ?? at(e, ["commit"]);
const mean = (v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
const median = (s) => (s.length === 0 ? null : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2);

/** The four keys over `events` in window `{since, until}` (ms), as the server's `/api/v1/dora`. */
export function compute(events, w) {
  const of = (ty) => events.filter((e) => e.type === ty);
  const inWin = (e) => {
    const t = time(e);
    return t !== null && t >= w.since && t < w.until;
  };
  const releases = of(TYPES.upgraded).filter(inWin);
  const days = (w.until - w.since) / DAY_MS;
  const deployFrequency = { perDay: releases.length / days, releases: releases.length, events: releases.map(ref) };

  const merges = of(TYPES.merged)
    .map((e) => ({ c: commitOf(e), t: time(e), e }))
    .filter((m) => m.c !== null && m.t !== null);
  const leads = [];
  const leadRefs = [];
  for (const r of releases) {
    const t = time(r);
    if (t === null) continue;
    const commit = commitOf(r);
    let merged = null;
    for (const m of merges) if (m.c === commit && (merged === null || m.t < merged.t)) merged = m;
    let start;
    if (merged) {
      leadRefs.push(ref(merged.e));
      start = merged.t;
    } else {
      start = ms(at(r, ["subject", "content", "commitTime"]));
    }
    if (start !== null && start !== undefined) {
      leads.push(t - start);
      leadRefs.push(ref(r));
    }
  }
  leads.sort((a, b) => a - b);
  const leadTime = { meanMs: mean(leads), medianMs: median(leads), releases: leads.length, events: leadRefs };

  const total = [...new Set(of(TYPES.step).filter(inWin).filter((e) => at(e, ["to"]) === "Progressing").map((e) => e.subject).filter((s) => typeof s === "string"))].sort();
  const back = of(TYPES.rolledback)
    .map((e) => ({ r: at(e, ["subject", "content", "release"]), e }))
    .filter((b) => b.r !== null);
  const failed = total.filter((r) => back.some((b) => b.r === r));
  const changeFailureRate = {
    rate: total.length ? failed.length / total.length : null,
    failed: failed.length,
    total: total.length,
    events: back.filter((b) => failed.includes(b.r)).map((b) => ref(b.e)),
  };

  const resolutions = of(TYPES.resolved)
    .map((e) => ({ id: at(e, ["subject", "id"]), t: time(e), e }))
    .filter((r) => r.id !== null && r.t !== null);
  const repairs = [];
  const repairRefs = [];
  for (const d of of(TYPES.detected).filter(inWin)) {
    const id = at(d, ["subject", "id"]);
    const t = time(d);
    if (id === null || t === null) continue;
    let best = null;
    for (const r of resolutions) if (r.id === id && r.t >= t && (best === null || r.t < best.t)) best = r;
    if (best) {
      repairs.push(best.t - t);
      repairRefs.push(ref(d), ref(best.e));
    }
  }
  const mttr = { meanMs: mean(repairs), resolved: repairs.length, events: repairRefs };
  return { window: w, deployFrequency, leadTime, changeFailureRate, mttr };
}

/** The figure a key is shown by (and compared on). */
export function figure(key, r) {
  switch (key) {
    case "deployFrequency":
      return r.deployFrequency.perDay;
    case "leadTime":
      return r.leadTime.meanMs;
    case "changeFailureRate":
      return r.changeFailureRate.rate;
    case "mttr":
      return r.mttr.meanMs;
  }
  return null;
}

/** Whether two reports agree on every figure and on the events behind them. */
export function agree(a, b) {
  const close = (x, y) => (x === null || x === undefined ? y === null || y === undefined : Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x)));
  const keys = ["deployFrequency", "leadTime", "changeFailureRate", "mttr"];
  const diffs = [];
  for (const k of keys) {
    if (!close(figure(k, a), figure(k, b))) diffs.push(`${k}: ${figure(k, a)} vs ${figure(k, b)}`);
    const ea = [...(a[k].events ?? [])].sort().join(" ");
    const eb = [...(b[k].events ?? [])].sort().join(" ");
    if (ea !== eb) diffs.push(`${k}: different events`);
  }
  if (!close(a.leadTime.medianMs, b.leadTime.medianMs)) diffs.push("leadTime median");
  return diffs;
}

/** The jq command of a receipt with the window filled in, as the server's `command`. */
export function command(query, w) {
  return query.replaceAll("SINCE_MS", String(w.since)).replaceAll("UNTIL_MS", String(w.until));
}
