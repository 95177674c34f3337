// Formatting shared by every screen (pure: unit-tested with node --test). Times show in the
// viewer's zone with UTC in the title; digests shorten to 12 hex digits, the full value kept
// for copying; conditions and durations read the way the template wrote them.

/** `12:01:02` (today) or `2 Dec 12:01` in the viewer's zone, and the UTC form for a title. */
export function time(ms, now = Date.now()) {
  if (ms === undefined || ms === null) return { local: "—", utc: "" };
  const d = new Date(ms);
  const sameDay = new Date(now).toDateString() === d.toDateString();
  const local = sameDay
    ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
    : d.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hour12: false });
  return { local, utc: d.toISOString().replace(".000Z", "Z") };
}

/** `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m`, `3 d 4 h`. */
export function duration(ms) {
  if (ms === undefined || ms === null || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} m`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** `sha256:3775864f45c2…` from a digest, an image reference or bare hex. */
export function shortDigest(s) {
  if (!s) return "—";
  const at = s.lastIndexOf("@");
  const d = at >= 0 ? s.slice(at + 1) : s;
  const m = /^(sha256:)?([0-9a-f]{64})$/.exec(d);
  if (!m) return s;
  return `${m[1] ?? ""}${m[2].slice(0, 12)}…`;
}

/** The digest part of an image reference, or null. */
export function imageDigest(image) {
  const m = /@(sha256:[0-9a-f]{64})$/.exec(image ?? "");
  return m ? m[1] : null;
}

/** A measurement's value as text: `{Scalar: 0.99}` → `0.9900`; vectors joined. */
export function value(v) {
  if (v === undefined || v === null) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if ("Scalar" in v) return value(v.Scalar);
  if ("Vector" in v) return `[${v.Vector.map(value).join(", ")}]`;
  return JSON.stringify(v);
}

/** A measurement's number, when it has one. */
export function scalar(v) {
  if (typeof v === "number") return v;
  if (v && typeof v.Scalar === "number") return v.Scalar;
  if (v && Array.isArray(v.Vector) && v.Vector.length === 1) return scalar(v.Vector[0]);
  return null;
}

/** The recipe as a strip: `5 → 25 → 50 → 100 %`. */
export function recipe(steps) {
  const w = (steps ?? []).filter((s) => "setWeight" in s).map((s) => s.setWeight);
  return w.length ? `${w.join(" → ")} %` : "no weight steps";
}

/** One step of a recipe in words. */
export function stepWords(step) {
  if ("setWeight" in step) return `set weight ${step.setWeight} %`;
  if ("pause" in step) return step.pause?.duration ? `pause ${step.pause.duration}` : "pause until resumed";
  if ("analysis" in step) {
    return `analysis (${step.analysis.templates.map((t) => t.templateName).join(", ")})`;
  }
  return JSON.stringify(step);
}

/** A threshold from a condition such as `result >= 0.99` (for drawing it), or null. */
export function threshold(condition) {
  const m = /^\s*result(?:\[0\])?\s*(>=|<=|>|<|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$/.exec(condition ?? "");
  return m ? { op: m[1], value: Number(m[2]) } : null;
}

/**
 * A template metric's policy in words: `success-rate: result >= 0.99 over 2s (proxy
 * success-rate), 3 measurements every 500ms, failure limit 0`.
 */
export function policy(metric) {
  const parts = [];
  if (metric.successCondition) parts.push(`pass when ${metric.successCondition}`);
  if (metric.failureCondition) parts.push(`fail when ${metric.failureCondition}`);
  const p = metric.provider ?? {};
  if (p.proxy) parts.push(`from the proxies' ${p.proxy.metric}${p.proxy.window ? ` over ${p.proxy.window}` : ""}`);
  else if (p.prometheus) parts.push(`from Prometheus: ${p.prometheus.query}`);
  else if (p.job) parts.push("from a job");
  else if (p.web) parts.push(`from ${p.web.url}`);
  const count = metric.count ?? 1;
  parts.push(`${count} measurement${count === 1 ? "" : "s"}${metric.interval ? ` every ${metric.interval}` : ""}`);
  parts.push(`failure limit ${metric.failureLimit ?? 0}`);
  return `${metric.name}: ${parts.join(", ")}`;
}

/** Phases read as marks: done, running, pending, failed. */
export function phaseMark(phase) {
  switch (phase) {
    case "Completed":
      return "done";
    case "Aborted":
    case "RolledBack":
      return "failed";
    case "Pending":
      return "pending";
    default:
      return "running";
  }
}

/** A flag's evaluation buckets (`{startMs, variants: {name: n}}`) as chart columns: x in
 * seconds, then each variant's share in percent, and the total counted. Variants the flag
 * defines come first in its order; others seen (an earlier definition's) after them. */
export function shares(buckets, defined = []) {
  const seen = new Set(defined);
  for (const b of buckets) for (const v of Object.keys(b.variants)) seen.add(v);
  const variants = [...seen];
  const x = buckets.map((b) => b.startMs / 1000);
  let total = 0;
  const columns = variants.map(() => []);
  for (const b of buckets) {
    const n = Object.values(b.variants).reduce((a, c) => a + c, 0);
    total += n;
    variants.forEach((v, i) => columns[i].push(n ? ((b.variants[v] ?? 0) * 100) / n : null));
  }
  return { x, variants, columns, total };
}

/** The leaves that differ between two JSON values, as `{path, before, after}` (`undefined`
 * where a side lacks the leaf). Arrays compare by position: a route's backends keep their
 * order (canary first), so `split.backends[0].weight` names the canary's weight. */
export function jsonDiff(a, b, path = "") {
  const isObj = (x) => x !== null && typeof x === "object";
  if (!isObj(a) || !isObj(b) || Array.isArray(a) !== Array.isArray(b)) {
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [{ path: path || ".", before: a, after: b }];
  }
  const keys = Array.isArray(a) ? [...Array(Math.max(a.length, b.length)).keys()] : [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.flatMap((k) => jsonDiff(a[k], b[k], Array.isArray(a) ? `${path}[${k}]` : path ? `${path}.${k}` : k));
}

/** `ms` as a `datetime-local` input's value (the viewer's zone, to the minute). */
export function localInput(ms) {
  if (!Number.isFinite(ms)) return "";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A flag's targeting in words: its rules in order, then its fraction ("users with plan =
 * "pro" get on; then 10 % get on, 90 % off (by user, 100 buckets)"). */
export function targeting(flag) {
  const v = (x) => JSON.stringify(x);
  const rules = (flag.rules ?? []).map((r) =>
    r.equals !== undefined
      ? `${r.attribute} = ${v(r.equals)} → ${r.variant}`
      : `${r.attribute} in ${(r.in ?? []).map(v).join(", ")} → ${r.variant}`,
  );
  const f = flag.fraction;
  if (f?.variants?.length) {
    const total = f.variants.reduce((a, w) => a + w.weight, 0) || 1;
    const shares = f.variants.map((w) => `${Math.round((w.weight * 1000) / total) / 10} % ${w.variant}`).join(", ");
    rules.push(`${rules.length ? "then " : ""}${shares} (by targeting key, ${f.buckets ?? 100} buckets)`);
  }
  return rules.join("; ");
}
