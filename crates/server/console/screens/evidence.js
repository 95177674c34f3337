// 6. Evidence timeline: the run's log entries by checkpoint (sealed or pending), the bundle's
// export, verification in the browser (lib/verify.js: vireo verify's checks and verdicts, keys
// optionally pinned), and the log witness: the last checkpoint this browser saw, proven
// consistent with the current one on every visit.
import { useState, useEffect } from "preact/hooks";
import { html, useData, Time, Digest, ErrorLine, saveFile } from "./widgets.js";
import { useRun, RunHeader } from "./run.js";
import { api, bytes } from "../lib/api.js";
import { readBundle, verifyBundle, verifyConsistency, parseCheckpoint, openCheckpoint, publicKeyFromPem, b64decode, hex, entrySummary } from "../lib/verify.js";

/** Opens a log entry (with its receipt) in place: the API needs the token, a link would not send it. */
export function EntryButton({ index }) {
  const [entry, setEntry] = useState(null);
  const [error, setError] = useState(null);
  const open = () =>
    entry ? setEntry(null) : api(`api/v1/log/entries/${index}`).then(setEntry, setError);
  const sum = entry && entrySummary(entry);
  return html`<span><button type="button" onClick=${open}>${entry ? "close" : "open"} entry ${index}</button>
    ${entry && html`<dl class="facts" data-testid="entry-summary">
        <div><dt>signed by key</dt><dd>${sum.keyIds.join(", ") || "—"}</dd></div>
        <div><dt>payload</dt><dd>${sum.payloadType ?? "—"}${sum.predicateType ? html` · <code>${sum.predicateType}</code>` : ""}</dd></div>
        <div><dt>subjects</dt><dd>${sum.statementError ?? (sum.subjects.join("; ") || "—")}</dd></div>
        <div><dt>receipt</dt><dd>${sum.receiptError ?? `index ${sum.receiptIndex} in a tree of ${sum.treeSize} (${sum.proofHashes} proof hashes), checkpoint ${sum.origin}`}</dd></div>
      </dl>
      <button type="button" onClick=${() => saveFile(JSON.stringify(entry.envelope, null, 2), `entry-${index}.dsse.json`, "application/json")}>save the envelope</button>
      <details><summary>the entry as served</summary><pre class="entry">${JSON.stringify(entry, null, 2)}</pre></details>`}<${ErrorLine} error=${error} /></span>`;
}

function Checks({ result, testid }) {
  return html`<table class="checks" data-testid=${testid} data-ok=${String(result.ok)}>
    <caption>${result.ok ? "Verified: every check passed" : "NOT verified"} (${result.envelopes} envelopes)</caption>
    <thead><tr><th>check</th><th>result</th><th>detail</th></tr></thead>
    <tbody>${result.checks.map((c) => html`<tr class=${c.ok ? "" : "bad"} data-check=${c.check}><td>${c.check}</td><td>${c.ok ? "ok" : "FAIL"}</td><td>${c.detail}</td></tr>`)}</tbody>
  </table>`;
}

function Verifier({ rollout, generation }) {
  const [result, setResult] = useState(null);
  const [over, setOver] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [pins, setPins] = useState({ signing: "", log: "" });
  async function check(get, label) {
    setBusy(label);
    setError(null);
    setResult(null);
    try {
      const files = await readBundle(await get());
      const trust = {};
      if (pins.signing.trim()) trust.signing = pins.signing.trim();
      if (pins.log.trim()) trust.log = pins.log.trim();
      const r = await verifyBundle(files, trust);
      setResult(r);
      // The log key of this server's own bundle, once it verified: the witness checks
      // checkpoint signatures with it. A dropped file never replaces it (it may come from
      // another control plane, or be forged with keys of its own).
      const pub = files.get("keys/log.pub");
      if (r.ok && pub && label === "run") localStorage.setItem("vireo-witness-log-key", new TextDecoder().decode(pub));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  const thisRun = () => bytes(`api/v1/rollouts/${encodeURIComponent(rollout)}/evidence?generation=${generation}`);
  const fromFile = (file) => () => file.arrayBuffer().then((b) => new Uint8Array(b));
  return html`<section aria-labelledby="verify-h"><h2 id="verify-h">Verify a bundle in the browser</h2>
    <p class="muted">The same checks as <code>vireo verify</code>, offline, with WebCrypto: nothing is sent anywhere.</p>
    <div class="verify-controls">
      <button type="button" data-testid="verify-run" onClick=${() => check(thisRun, "run")} disabled=${busy}>Verify generation ${generation}'s bundle</button>
      <label class=${`drop${over ? " over" : ""}`} data-testid="bundle-drop"
        onDragOver=${(e) => { e.preventDefault(); setOver(true); }} onDragLeave=${() => setOver(false)}
        onDrop=${(e) => { e.preventDefault(); setOver(false); const f = e.dataTransfer?.files?.[0]; if (f) check(fromFile(f), "file"); }}>or drop a bundle file here, or pick one (.tar.gz)
        <input type="file" accept=".gz,.tgz,application/gzip" data-testid="bundle-file" onChange=${(e) => e.target.files[0] && check(fromFile(e.target.files[0]), "file")} /></label>
      <details><summary>Pin keys (optional)</summary>
        <label>signing key (PEM)<textarea rows="3" value=${pins.signing} onInput=${(e) => setPins({ ...pins, signing: e.target.value })}></textarea></label>
        <label>log key (PEM)<textarea rows="3" value=${pins.log} onInput=${(e) => setPins({ ...pins, log: e.target.value })}></textarea></label>
      </details>
    </div>
    ${busy && html`<p role="status">verifying…</p>`}
    <${ErrorLine} error=${error} />
    ${result && html`<${Checks} result=${result} testid="verify-result" />`}
  </section>`;
}

/** The witness: remember (size, root) per log; prove the current checkpoint extends it. */
export async function witness(storage = localStorage) {
  const text = new TextDecoder().decode(await bytes("api/v1/log/checkpoint"));
  const body = text.slice(0, text.indexOf("\n\n") + 1);
  const parsed = parseCheckpoint(body);
  // Sizes are u64 (BigInt); kept as decimal strings in storage and compared as BigInt.
  const cp = { ...parsed, size: BigInt(parsed.size) };
  let signed = "signature not checked (verify a bundle once to learn the log key)";
  const pem = storage.getItem("vireo-witness-log-key");
  if (pem) {
    await openCheckpoint(text, parsed.origin, await publicKeyFromPem(pem));
    signed = "signature checked with the log key of the last verified bundle";
  }
  const key = `vireo-witness:${cp.origin}`;
  const stored = JSON.parse(storage.getItem(key) ?? "null");
  const seen = stored && { ...stored, size: BigInt(stored.size) };
  let verdict;
  if (!seen) verdict = { ok: true, detail: `first visit: remembering size ${cp.size}` };
  else if (seen.size > cp.size) verdict = { ok: false, detail: `the log shrank: it was ${seen.size} entries, it is ${cp.size}` };
  else if (seen.size === cp.size) {
    verdict = hex(b64decode(seen.root)) === hex(cp.root) ? { ok: true, detail: `unchanged at size ${cp.size}` } : { ok: false, detail: `same size ${cp.size}, different root: the log was rewritten` };
  } else {
    const p = await api(`api/v1/log/consistency?from=${seen.size}&to=${cp.size}`);
    try {
      await verifyConsistency(seen.size, cp.size, p.proof.map(b64decode), b64decode(seen.root), cp.root);
      verdict = { ok: true, detail: `consistent: size ${seen.size} → ${cp.size} is an append-only extension` };
    } catch (e) {
      verdict = { ok: false, detail: `NOT consistent with what this browser saw at size ${seen.size}: ${e.message}` };
    }
  }
  if (verdict.ok) storage.setItem(key, JSON.stringify({ size: String(cp.size), root: btoa(String.fromCharCode(...cp.root)), at: Date.now() }));
  return { ...verdict, origin: cp.origin, size: String(cp.size), signed, since: seen?.at };
}

function Witness() {
  const [w, setW] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    witness().then(setW, setError);
  }, []);
  return html`<section aria-labelledby="witness-h"><h2 id="witness-h">Log witness</h2>
    ${w && html`<p data-testid="witness" data-ok=${String(w.ok)} class=${w.ok ? "" : "bad"}>${w.ok ? "✓" : "✗"} ${w.origin}: ${w.detail}. ${w.signed}.
      ${w.since ? html` Last seen <${Time} ms=${w.since} />.` : ""}</p>`}
    <${ErrorLine} error=${error} /></section>`;
}

/** Log entries grouped by the checkpoint they belong to, in log order (an analysis run's
 * statements together). */
function groups(items) {
  const out = [];
  for (const i of items) {
    const title = i.stage.startsWith("analysis-") ? "Analysis runs" : i.stage;
    const last = out[out.length - 1];
    if (last && last[0] === title) last[1].push(i);
    else out.push([title, [i]]);
  }
  return out;
}

export function Evidence({ route }) {
  const r = useRun(route);
  const q = route.generation ? `?generation=${route.generation}` : "";
  const index = useData(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/evidence/index${q}`);
  const [exportError, setExportError] = useState(null);
  if (!r.view) return html`<${ErrorLine} error=${r.error} />`;
  const items = index.data?.items ?? [];
  const stages = ["InputsMaterialized", "GateEval", "Progressing", "PostDeployVerify", "Sealed", "Completed"];
  const present = new Set(items.map((i) => i.stage));
  const pending = r.view.status.settled ? [] : stages.filter((s) => !present.has(s));
  async function exportBundle() {
    try {
      const b = await bytes(`api/v1/rollouts/${encodeURIComponent(route.rollout)}/evidence?generation=${r.view.status.generation}`);
      saveFile(b, `${route.rollout}.g${r.view.status.generation}.bundle.tar.gz`, "application/gzip");
    } catch (e) {
      setExportError(e);
    }
  }
  return html`<article class="run">
    <${RunHeader} view=${r.view} route=${route} earlier=${r.earlier} />
    <section aria-labelledby="items-h"><h2 id="items-h">Evidence items</h2>
      <p>${items.length} in the log (tree size ${index.data?.treeSize ?? "…"})${pending.length ? `; pending until sealing: ${pending.join(", ")}` : ""}.
        <button type="button" data-testid="export-bundle" onClick=${exportBundle}>Export generation ${r.view.status.generation}'s bundle</button></p>
      <${ErrorLine} error=${index.error ?? exportError} />
      <div class="scroll"><table data-testid="evidence-items"><thead><tr><th>log index</th><th>time</th><th>checkpoint</th><th>kind</th><th>decision</th><th>digest</th><th>state</th><th></th></tr></thead>
        ${groups(items).map(([title, rows]) => html`<tbody data-group=${title}><tr class="group"><th colspan="8" scope="rowgroup">${title}</th></tr>
          ${rows.map((i) => html`<tr><td>${i.logIndex}</td><td><${Time} ms=${i.atMs} /></td><td>${i.stage}</td><td>${i.kind}</td><td>${i.decision ?? "—"}</td>
            <td><${Digest} value=${i.digest} /></td><td>${i.sealed ? "sealed" : "pending"}</td><td><${EntryButton} index=${i.logIndex} /></td></tr>`)}</tbody>`)}
      </table></div>
    </section>
    <${Verifier} rollout=${route.rollout} generation=${r.view.status.generation} />
    <${Witness} />
  </article>`;
}
