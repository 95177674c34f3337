// 8. Schedule: set a start time, window and preconditions for this rollout; where its gate
// stands (status.schedule.state: the gate's latest check); cancel.
import { useState } from "preact/hooks";
import { html, useCtx, ErrorLine, may } from "./widgets.js";
import { useRun, RunHeader } from "./run.js";
import { api } from "../lib/api.js";

export function Schedule({ route }) {
  const { me, refresh } = useCtx();
  const r = useRun(route);
  const [form, setForm] = useState({ at: "", window: "2h", prometheus: "", incident: "", analysis: "" });
  const [error, setError] = useState(null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const s = r.view.status.schedule;
  const name = encodeURIComponent(route.rollout);
  async function save(e) {
    e.preventDefault();
    setError(null);
    const preconditions = [];
    if (form.prometheus) preconditions.push({ prometheusReachable: form.prometheus });
    if (form.incident) preconditions.push({ noOpenIncident: form.incident });
    if (form.analysis) preconditions.push({ analysis: form.analysis });
    try {
      const at = form.at ? new Date(form.at).toISOString().replace(".000Z", "Z") : "";
      await api(`api/v1/rollouts/${name}/schedule`, { method: "POST", body: { at, window: form.window, preconditions } });
      refresh();
    } catch (err) {
      setError(err);
    }
  }
  async function cancel() {
    try {
      await api(`api/v1/rollouts/${name}/schedule`, { method: "DELETE" });
      refresh();
    } catch (err) {
      setError(err);
    }
  }
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} />
    <section aria-labelledby="sched-h"><h2 id="sched-h">Schedule</h2>
      ${s
        ? html`<dl class="facts" data-testid="schedule">
            <div><dt>at</dt><dd>${s.at}</dd></div><div><dt>window</dt><dd>${s.window}</dd></div>
            <div><dt>preconditions</dt><dd>${(s.preconditions ?? []).map((p) => Object.entries(p).map(([k, v]) => `${k}: ${v}`).join(", ")).join("; ") || "none"}</dd></div>
            <div><dt>gate's checks so far</dt><dd>${s.state ?? "not checked yet"}</dd></div></dl>
            ${may(me, "operate") && html`<button type="button" onClick=${cancel}>Cancel the schedule</button>`}`
        : html`<p>No schedule: the rollout starts when applied.</p>`}
      <p class="muted">Only the gate's latest check is kept in the API (a history of checks is not yet).</p>
      ${may(me, "operate") && html`<form class="form" onSubmit=${save}>
        <label>Start at (your time zone) <input type="datetime-local" value=${form.at} onInput=${set("at")} required /></label>
        <label>Window <input value=${form.window} onInput=${set("window")} placeholder="2h" /></label>
        <label>Prometheus reachable (URL) <input value=${form.prometheus} onInput=${set("prometheus")} /></label>
        <label>No open incident (Alertmanager URL) <input value=${form.incident} onInput=${set("incident")} /></label>
        <label>Analysis passes (template) <input value=${form.analysis} onInput=${set("analysis")} /></label>
        <button type="submit">Schedule</button></form>`}
      <${ErrorLine} error=${error} />
    </section>
  </article>`;
}
