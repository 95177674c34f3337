// Small pieces every screen uses: the data hook (re-reads on live updates), times, digests,
// marks, the action dialog (a reason is required), the chart wrapper, errors.
import { h, createContext } from "preact";
import { useState, useEffect, useContext, useRef } from "preact/hooks";
import htm from "htm";
import { api } from "../lib/api.js";
import { time, shortDigest } from "../lib/format.js";

export const html = htm.bind(h);

/** `{ me, tick, live, navigate }`: who is signed in, and a counter bumped on each update. */
export const Ctx = createContext({ me: null, tick: 0 });
export const useCtx = () => useContext(Ctx);

/** Reads `path` (or several) now and again on every live update, and every `every` ms if
 * given (for what changes without an event: proxies, probes). */
export function useData(paths, deps = [], { every } = {}) {
  const { tick } = useCtx();
  const [beat, setBeat] = useState(0);
  useEffect(() => {
    if (!every) return undefined;
    // Like the live stream, nothing is read while the tab is hidden.
    const t = setInterval(() => !document.hidden && setBeat((b) => b + 1), every);
    return () => clearInterval(t);
  }, [every]);
  const list = Array.isArray(paths) ? paths : [paths];
  const key = [list.join("|"), ...deps].join("#");
  const [state, setState] = useState({ key: null, data: null, error: null });
  useEffect(() => {
    let gone = false;
    Promise.all(list.map((p) => (p ? api(p) : Promise.resolve(null))))
      .then((data) => !gone && setState({ key, data: Array.isArray(paths) ? data : data[0], error: null }))
      // A failed refresh keeps this key's last data beside the error, never another key's.
      .catch((error) => !gone && setState((s) => ({ key, data: s.key === key ? s.data : null, error })));
    return () => {
      gone = true;
    };
  }, [key, tick, beat]);
  // Data read for another route is not shown under this one.
  if (state.key !== key) return { data: null, error: null, loading: true };
  return { data: state.data, error: state.error, loading: false };
}

export function Time({ ms }) {
  const t = time(ms);
  return html`<time datetime=${t.utc} title=${t.utc ? `${t.utc} (UTC)` : ""}>${t.local}</time>`;
}

/** A shortened digest; the button copies the full value. */
export function Digest({ value }) {
  const [copied, setCopied] = useState(false);
  if (!value) return html`<span>—</span>`;
  const copy = () =>
    navigator.clipboard?.writeText(value).then(
      () => {
        setCopied(true);
        setTimeout(() => setCopied(false), 1200);
      },
      () => {},
    );
  return html`<span class="digest" title=${value}><code>${shortDigest(value)}</code>
    <button class="copy" type="button" aria-label=${`copy ${value}`} onClick=${copy}>${copied ? "copied" : "copy"}</button></span>`;
}

const MARKS = { done: "✓", running: "●", pending: "○", failed: "✗", paused: "‖", action: "▸", skipped: "↷", cancelled: "⊘" };
export function Mark({ mark }) {
  return html`<span class=${`mark mark-${mark}`} role="img" aria-label=${mark}>${MARKS[mark] ?? "?"}</span>`;
}

export function Phase({ phase }) {
  return html`<span class=${`phase phase-${phase}`}>${phase}</span>`;
}

export function ErrorLine({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message ?? String(error)}</p>`;
}

/**
 * An action button that opens a dialog asking for the reason; nothing is sent without one.
 * `onDone(view)` gets the rollout's new view.
 */
export function ActionButton({ rollout, action, label, onDone, danger, disabled, why }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const input = useRef(null);
  useEffect(() => {
    if (open) input.current?.focus();
  }, [open]);
  const path = action === "promoteFull" ? `api/v1/rollouts/${encodeURIComponent(rollout)}/promote?full=true` : `api/v1/rollouts/${encodeURIComponent(rollout)}/${action}`;
  async function submit(e) {
    e.preventDefault();
    if (!reason.trim()) {
      setError(new Error("a reason is required: it is recorded with your name on the timeline"));
      return;
    }
    setBusy(true);
    try {
      const v = await api(path, { method: "POST", body: { reason: reason.trim() } });
      setOpen(false);
      setReason("");
      setError(null);
      onDone?.(v);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return html`<span class="action">
    <button type="button" class=${danger ? "danger" : ""} data-action=${action} onClick=${() => setOpen(!open)} aria-expanded=${open} disabled=${disabled} title=${why}>${label}</button>
    ${open &&
    html`<form class="dialog" onSubmit=${submit} aria-label=${`${label} ${rollout}`}>
      <label>Reason for “${label}” (recorded with your name)
        <input ref=${input} name="reason" value=${reason} maxlength="1000" onInput=${(e) => setReason(e.target.value)} />
      </label>
      <button type="submit" disabled=${busy}>${label} ${rollout}</button>
      <button type="button" onClick=${() => setOpen(false)}>cancel</button>
      <${ErrorLine} error=${error} />
    </form>`}
  </span>`;
}

/** A uPlot chart; `series` as uPlot wants them, `data` columns (x first, seconds). */
export function Chart({ title, series, data, height = 220, scales, hooks }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !globalThis.uPlot || !data?.[0]?.length) return;
    const width = Math.max(280, box.current.clientWidth || 600);
    const u = new globalThis.uPlot({ width, height, series, scales, axes: axes(series), hooks }, data, box.current);
    return () => u.destroy();
  }, [JSON.stringify(data), JSON.stringify(series.map((s) => s.label))]);
  return html`<figure class="chart"><figcaption>${title}</figcaption><div ref=${box} role="img" aria-label=${title}></div>
    ${!data?.[0]?.length && html`<p class="muted">no data yet</p>`}</figure>`;
}

function axes(series) {
  const out = [{}];
  const seen = new Set();
  for (const s of series.slice(1)) {
    if (!s.scale || seen.has(s.scale)) continue;
    seen.add(s.scale);
    out.push({ scale: s.scale, side: seen.size === 1 ? 3 : 1, label: s.scale, grid: { show: seen.size === 1 } });
  }
  return out;
}

/** Tabs with buttons; `tabs` is [[id, label]]. As the ARIA tabs pattern: only the current tab
 * is in the tab order, and the arrow keys (Home, End) move between tabs. */
export function Tabs({ tabs, current, onPick }) {
  const key = (e, i) => {
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = tabs[(to + tabs.length) % tabs.length][0];
    onPick(next);
    // After the re-render, focus follows the selection.
    requestAnimationFrame(() => document.querySelector(`.tabs [data-tab="${next}"]`)?.focus());
  };
  return html`<div class="tabs" role="tablist">${tabs.map(
    ([id, label], i) => html`<button role="tab" type="button" data-tab=${id} aria-selected=${id === current} tabindex=${id === current ? 0 : -1} onClick=${() => onPick(id)} onKeyDown=${(e) => key(e, i)}>${label}</button>`,
  )}</div>`;
}

/** Saves bytes or text as a file the user downloads (the object URL lives only for the click). */
export function saveFile(data, name, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 0);
}

/** May the signed-in caller send `action`? (The server decides; this only hides buttons.) */
export function may(me, action) {
  const need = action === "approve" ? "approve" : "operate";
  return (me?.permissions ?? []).includes(need);
}
