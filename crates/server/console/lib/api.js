// The console's one way to the API. The token comes from the URL fragment (`#token=…`, which
// no server or log sees; moved to this tab's sessionStorage and removed from the address bar)
// or the login form, and goes in an Authorization header on every call, never a cookie (so a
// cross-site page cannot act with it). URLs are relative to the page, for sub-path hosting.

const KEY = "vireo-token";

/** Takes `token=…` out of the fragment (keeping the rest of the route). */
export function takeTokenFromFragment() {
  const h = location.hash.slice(1);
  const m = /(^|[?&])token=([^&]*)/.exec(h);
  if (!m) return;
  let t = m[2];
  try {
    t = decodeURIComponent(t);
  } catch {
    /* not percent-encoded after all: take it as it is */
  }
  sessionStorage.setItem(KEY, t);
  const rest = (h.slice(0, m.index) + h.slice(m.index + m[0].length)).replace(/[?&]$/, "");
  history.replaceState(null, "", location.pathname + location.search + (rest.startsWith("/") ? `#${rest}` : "#/"));
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const fields = (body?.fields ?? []).map((f) => `${f.path}: ${f.reason}`);
    super([body?.error ?? `HTTP ${status}`, ...fields].join("; "));
    this.status = status;
    this.body = body;
  }
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI).toString();
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** JSON in, JSON out; throws ApiError with the server's message and fields. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(url(path), init);
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { error: text };
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

/** Raw bytes (the evidence bundle). */
export async function bytes(path) {
  const r = await fetch(url(path), { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  return new Uint8Array(await r.arrayBuffer());
}

/**
 * Follows the event stream (one per tab) and calls `onEvent(type, event)` for each event.
 * EventSource cannot send an Authorization header, so this reads the SSE body from fetch.
 * It stops while the tab is hidden and resumes from the last id when it is shown again;
 * a dropped stream is retried after 1 s, then up to 30 s. Returns a stop function.
 */
export function follow(onEvent, onState = () => {}) {
  let last = null;
  let controller = null;
  let stopped = false;
  let backoff = 1000;
  let timer = null;

  async function run() {
    if (stopped || document.hidden || controller) return;
    const mine = new AbortController();
    controller = mine;
    const h = headers({ accept: "text/event-stream" });
    if (last !== null) h["last-event-id"] = last;
    try {
      const r = await fetch(url("api/v1/events/stream"), { headers: h, signal: mine.signal });
      if (!r.ok) throw new Error(`event stream: HTTP ${r.status}`);
      onState("live");
      backoff = 1000;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const ev = { type: "message", data: "" };
          for (const line of block.split("\n")) {
            const [field, ...rest] = line.split(":");
            const v = rest.join(":").replace(/^ /, "");
            if (field === "id") ev.id = v;
            else if (field === "event") ev.type = v;
            else if (field === "data") ev.data += (ev.data ? "\n" : "") + v;
          }
          if (ev.id) last = ev.id;
          if (ev.data) {
            let parsed = null;
            try {
              parsed = JSON.parse(ev.data);
            } catch {
              /* keep-alive or a malformed event: nothing to show */
            }
            if (parsed) onEvent(ev.type, parsed);
          }
        }
        if (buffer.length > 1 << 20) throw new Error("event stream: an event over 1 MiB");
      }
      throw new Error("event stream closed");
    } catch (e) {
      // Aborted on purpose (hidden, stopped): whoever aborted it decides what runs next; a
      // newer stream may already be running and must not be disturbed.
      if (mine.signal.aborted) return;
      if (controller === mine) controller = null;
      if (stopped || document.hidden) return onState("paused");
      onState("reconnecting");
      timer = setTimeout(run, backoff);
      backoff = Math.min(backoff * 2, 30000);
    }
  }
  function visibility() {
    if (document.hidden) {
      controller?.abort();
      controller = null;
      clearTimeout(timer);
      onState("paused");
    } else {
      run();
    }
  }
  document.addEventListener("visibilitychange", visibility);
  run();
  return () => {
    stopped = true;
    controller?.abort();
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", visibility);
  };
}
