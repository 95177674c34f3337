// The console end to end in a real browser: Debian's chromium driven by playwright-core,
// against real `vireo demo` processes (control plane, proxy, stable and canary backends and
// simulated users in one process, on loopback). One healthy demo and one faulty, side by side.
//
//   node --test tests/browser/          (scripts/test.sh runs it after `cargo build`)
//
// Screenshots of every screen go to target/browser-shots/ (SHOTS to change), with
// metrics.json: the page's load time and JS heap on the demo, and the console's size.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { localInput } from "../../crates/server/console/lib/format.js";

const DAY = 86400000;

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const vireo = join(root, "target/debug/vireo");
const shots = process.env.SHOTS ?? join(root, "target/browser-shots");
mkdirSync(shots, { recursive: true });
const metrics = {};

/** Starts `vireo demo` and resolves with its console URL (token in the fragment) once it is up. */
function demo(scenario, speed) {
  const dir = mkdtempSync(join(tmpdir(), `vireo-browser-${scenario}-`));
  const child = spawn(vireo, ["demo", "--scenario", scenario, "--speed", String(speed), "--data-dir", join(dir, "data")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo ${scenario} did not print its console URL:\n${out}`)), 60000);
    const read = (d) => {
      out += d;
      // Up to the line's end: output arrives in chunks, and a URL cut mid-way must not match.
      const m = /console \(logged in as admin\): (http:\/\/\S+)\s/.exec(out);
      if (m) {
        clearTimeout(timer);
        const url = new URL(m[1]);
        resolve({ child, dir, url: m[1], base: `${url.origin}/`, token: url.hash.replace("#token=", ""), log: () => out });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`demo ${scenario} exited ${code}:\n${out}`)));
  });
  return ready;
}

async function apiGet(d, path, token = d.token) {
  const r = await fetch(d.base + path, { headers: { authorization: `Bearer ${token}` } });
  assert.ok(r.ok, `${path}: ${r.status}`);
  return (r.headers.get("content-type") ?? "").includes("json") ? r.json() : new Uint8Array(await r.arrayBuffer());
}

let browser;
let healthy;
let faulty;
before(async () => {
  // One after the other: each takes the default ports when free, the next one other ports.
  healthy = await demo("healthy", 20);
  faulty = await demo("faulty", 20);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});
/** The console's files as the binary embeds them (all but its tests and the vendoring notes). */
function consoleSize() {
  const dir = join(root, "crates/server/console");
  let raw = 0;
  let gz = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== "test") walk(p);
      } else if (e.name !== "VENDORED.md") {
        const b = readFileSync(p);
        raw += b.length;
        gz += gzipSync(b, { level: 9 }).length;
      }
    }
  };
  walk(dir);
  return { bytes: raw, gzipBytes: gz };
}

after(async () => {
  metrics.console = consoleSize();
  await browser?.close();
  for (const d of [healthy, faulty]) d?.child.kill("SIGTERM");
  writeFileSync(join(shots, "metrics.json"), JSON.stringify(metrics, null, 2) + "\n");
});

/** A page that fails the test on any script error or CSP violation. */
async function open(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.problems = problems;
  await page.goto(url);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

test("a healthy rollout watched live to Completed, steered, verified and recomputed", { timeout: 240000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await open(context, healthy.url);
  // Signed in from the fragment; the token leaves the address bar.
  await page.getByTestId("who").waitFor();
  assert.match(await page.getByTestId("who").textContent(), /admin/);
  assert.ok(!page.url().includes("token="), page.url());
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    return { loadMs: n.loadEventEnd - n.startTime, domContentLoadedMs: n.domContentLoadedEventEnd - n.startTime, transferBytes: performance.getEntriesByType("resource").reduce((a, r) => a + (r.transferSize || 0), n.transferSize || 0) };
  });
  metrics.load = nav;

  // Releases, then the run, watched live (no reload) until Completed.
  await page.locator('tr[data-rollout="checkout"]').waitFor();
  await shot(page, "1-releases");
  await page.locator('tr[data-rollout="checkout"] a').first().click();
  await page.waitForURL(/#\/rollouts\/checkout$/);
  await page.locator('[data-stage="step-0"][data-mark="done"]').waitFor({ timeout: 60000 });
  await shot(page, "2-run-progressing");
  await page.locator(".run-header .phase-Completed").waitFor({ timeout: 120000 });
  await page.locator('[data-stage="end"][data-mark="done"]').waitFor();
  await shot(page, "2-run-completed");
  // The health banner is GET …/health: the fleet against those expected, each Prometheus probed.
  const h = await apiGet(healthy, "api/v1/rollouts/checkout/health");
  assert.ok(h.proxies.connected >= 1 && h.proxies.expected >= h.proxies.connected, JSON.stringify(h));
  await page.getByTestId("health").getByText(`${h.proxies.connected} of ${h.proxies.expected} prox`).waitFor();
  for (const p of h.prometheus) await page.getByTestId("health-prometheus").filter({ hasText: p.address }).waitFor();
  // The chart draws the fleet's own canary and stable figures, sampled as reports arrived.
  const slo = await apiGet(healthy, "api/v1/slo/checkout");
  assert.ok(slo.backends.canary?.length > 3 && slo.backends.stable?.length > 3, JSON.stringify(slo).slice(0, 300));
  await page.getByText("canary success ratio (60 s)").waitFor();

  // Only what the phase allows: at Completed, a rollback.
  const actions = await page.locator("[data-action]").evaluateAll((bs) => bs.map((b) => b.dataset.action));
  assert.deepEqual(actions, ["rollback"]);

  // Step detail by deep link, and a reload lands on the same screen.
  await page.goto(`${healthy.base}#/rollouts/checkout/step/run-1`);
  await page.getByRole("heading", { name: /Analysis run 1/ }).waitFor();
  await page.reload();
  await page.getByRole("heading", { name: /Analysis run 1/ }).waitFor();
  assert.equal(await page.locator('section.metric[data-metric="success-rate"] table.measurements tbody tr').count(), 3);
  assert.match(await page.locator('section.metric[data-metric="success-rate"] table.measurements tbody tr').first().textContent(), /proxies: success-rate over 3s/);
  await shot(page, "3-step-detail");
  // Its evidence: the sealed statement's log entry, summarised (key id, statement, receipt).
  await page.getByRole("tab", { name: "Evidence" }).click();
  await page.getByRole("button", { name: /^open entry/ }).first().click();
  await page.getByTestId("entry-summary").filter({ hasText: "in a tree of" }).waitFor();
  assert.doesNotMatch(await page.getByTestId("entry-summary").textContent(), /malformed|not base64|not a JSON/);
  // Its logs: this generation's own events in the run's time, none of the flag's evaluations.
  await page.getByRole("tab", { name: "Logs" }).click();
  await page.locator("ol.log li").first().waitFor();
  const logged = await page.locator("ol.log li code").allTextContents();
  assert.ok(logged.length > 0 && !logged.some((t) => t.includes("flag.evaluated")), logged.join(", "));
  // Its artifacts: the route table in force and, for the second run, the diff from 5 % to 25 %.
  await page.goto(`${healthy.base}#/rollouts/checkout/step/run-2`);
  await page.getByRole("tab", { name: "Artifacts" }).click();
  // The tab is in the deep link: a reload opens it again.
  await page.waitForURL(/step\/run-2\/artifacts$/);
  await page.reload();
  const diff = page.getByTestId("route-diff");
  await diff.locator("tr", { hasText: "split.backends[0].weight" }).filter({ hasText: "25" }).waitFor();
  await shot(page, "3-step-artifacts");
  // Arrow keys move between tabs (the ARIA tabs pattern).
  await page.getByRole("tab", { name: "Artifacts" }).focus();
  await page.keyboard.press("ArrowRight");
  await page.locator('[role="tab"][data-tab="evidence"][aria-selected="true"]').waitFor();
  await page.waitForURL(/run-2\/evidence$/);

  // A checkpoint's detail: the gate, with the VSA it sealed.
  await page.goto(`${healthy.base}#/rollouts/checkout`);
  await page.locator('[data-stage="gate"] a').click();
  await page.getByTestId("checkpoint").filter({ hasText: "Gate: done" }).waitFor();
  await page.getByText("checkout.g1.gate").first().waitFor();
  await shot(page, "3-checkpoint-gate");

  // Deploy stage view: the targets table lists the demo's proxy with its own figures.
  await page.goto(`${healthy.base}#/rollouts/checkout/stage`);
  await page.locator("tr[data-proxy]").first().waitFor();
  assert.match(await page.getByTestId("proxy-success").first().textContent(), /%/);
  await shot(page, "4-deploy-stage");

  // Rollback preview = the armed envelope (digest as logged, log index, migration, flag).
  await page.goto(`${healthy.base}#/rollouts/checkout/rollback`);
  await page.getByTestId("preview-armed").waitFor();
  const preview = await apiGet(healthy, "api/v1/rollouts/checkout/rollback");
  const index = await apiGet(healthy, "api/v1/rollouts/checkout/evidence/index");
  const envelope = index.items.find((i) => i.kind === "rollback");
  assert.equal(preview.envelopeDigest, envelope.digest);
  const armedText = await page.getByTestId("preview-armed").textContent();
  assert.match(armedText, new RegExp(`armed, log entry ${envelope.logIndex}`));
  assert.ok((await page.getByTestId("preview-armed").locator(".digest").getAttribute("title")) === envelope.digest);
  assert.match(await page.getByTestId("preview-migration").textContent(), /down-migration/);
  assert.match(await page.getByTestId("preview-flag").textContent(), /new-checkout/);
  assert.equal(await page.getByTestId("preview-version").textContent(), "v1");
  await shot(page, "5-rollback-preview");

  // Evidence: this run's bundle verified in the page; a tampered copy fails naming the file.
  await page.goto(`${healthy.base}#/rollouts/checkout/evidence`);
  // Items by checkpoint: every logged item under its group, the analysis runs' together.
  await page.locator('[data-testid="evidence-items"] tbody[data-group="Analysis runs"]').waitFor();
  assert.equal(await page.locator('[data-testid="evidence-items"] tbody tr:not(.group)').count(), index.items.length);
  await page.getByTestId("verify-run").click();
  const result = page.getByTestId("verify-result");
  await result.waitFor({ timeout: 30000 });
  assert.equal(await result.getAttribute("data-ok"), "true", await result.textContent());
  assert.match(await page.getByTestId("witness").textContent(), /first visit|unchanged|consistent/);
  await shot(page, "6-evidence-verified");
  const bundle = await apiGet(healthy, "api/v1/rollouts/checkout/evidence");
  const tar = Buffer.from(gunzipSync(bundle));
  const at = tar.indexOf(Buffer.from('"payload":"'));
  assert.ok(at > 0, "an envelope in the bundle");
  tar[at + 20] = tar[at + 20] === 0x41 ? 0x42 : 0x41; // one byte of a payload
  const tampered = join(healthy.dir, "tampered.tar.gz");
  writeFileSync(tampered, gzipSync(tar));
  await page.getByTestId("bundle-file").setInputFiles(tampered);
  await page.locator('[data-testid="verify-result"][data-ok="false"]').waitFor({ timeout: 30000 });
  const failed = await page.locator('[data-testid="verify-result"] tr.bad').first().textContent();
  assert.match(failed, /envelopes\/\S+\.dsse\.json/, failed);
  await shot(page, "6-evidence-tampered");
  // The untouched bundle dropped on the page verifies again.
  const drop = await page.evaluateHandle((b64) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], "bundle.tar.gz", { type: "application/gzip" }));
    return dt;
  }, Buffer.from(bundle).toString("base64"));
  await page.getByTestId("bundle-drop").dispatchEvent("drop", { dataTransfer: drop });
  await page.locator('[data-testid="verify-result"][data-ok="true"]').waitFor({ timeout: 30000 });
  // The witness, on the next visit, proves the log only grew.
  await page.reload();
  await page.getByTestId("witness").waitFor();
  assert.equal(await page.getByTestId("witness").getAttribute("data-ok"), "true", await page.getByTestId("witness").textContent());

  // An action without a reason is refused in the page and nothing is sent; with one, it is
  // recorded with the actor and the reason.
  await page.goto(`${healthy.base}#/rollouts/checkout`);
  await page.locator('[data-action="rollback"]').click();
  await page.getByRole("button", { name: "Roll back checkout" }).click();
  await page.getByText("a reason is required").waitFor();
  let timeline = await apiGet(healthy, "api/v1/rollouts/checkout/timeline");
  assert.ok(!timeline.entries.some((e) => e.input?.Action), "nothing was sent without a reason");
  await page.getByLabel(/Reason for/).fill("checkout p95 regression reported by support");
  await page.getByRole("button", { name: "Roll back checkout" }).click();
  await page.locator('[data-stage^="action-"]').waitFor({ timeout: 20000 });
  assert.match(await page.locator('[data-stage^="action-"]').textContent(), /token:admin.*checkout p95 regression/);
  timeline = await apiGet(healthy, "api/v1/rollouts/checkout/timeline");
  const act = timeline.entries.find((e) => e.input?.Action === "rollback");
  assert.equal(act.by, "token:admin");
  // The envelope's flag toggle is a marker on the canary chart, with who did it.
  await page.getByTestId("flag-markers").filter({ hasText: "new-checkout disabled by" }).waitFor({ timeout: 20000 });
  assert.equal(act.reason, "checkout p95 regression reported by support");
  await page.locator(".run-header .phase-RolledBack").waitFor({ timeout: 30000 });
  await shot(page, "2-run-rolled-back");

  // Replay this promotion's decisions.
  await page.goto(`${healthy.base}#/rollouts/checkout/replay`);
  await page.getByRole("button", { name: /Replay all/ }).click();
  await page.locator('[data-testid="replays"] tbody tr').first().waitFor();
  assert.equal(await page.locator('[data-testid="replays"] tr.bad').count(), 0);
  await shot(page, "7-replay");
  await page.goto(`${healthy.base}#/rollouts/checkout/schedule`);
  await page.getByRole("heading", { name: "Schedule" }).waitFor();
  await page.getByRole("heading", { name: "The gate's checks so far" }).waitFor();
  // The demo's rollout had no schedule: no check, and the form says how to set one.
  assert.match(await page.locator("article.run").innerText(), /No check yet|passed/);
  await shot(page, "8-schedule");

  // DORA: a figure's receipt recomputed in the page agrees with the server.
  await page.goto(`${healthy.base}#/dora`);
  await page.getByTestId("dora-deployFrequency").waitFor();
  for (const key of ["deployFrequency", "changeFailureRate"]) {
    await page.locator(`[data-key="${key}"] button`, { hasText: "Receipt" }).click();
    await page.getByTestId(`recompute-${key}`).click();
    const got = page.getByTestId(`recomputed-${key}`);
    await got.waitFor({ timeout: 20000 });
    assert.equal(await got.getAttribute("data-agrees"), "true", await got.textContent());
  }
  // A receipt's event opens by its source#id (one receipt is open at a time: reopen it).
  await page.locator('[data-key="deployFrequency"] button', { hasText: "Receipt" }).click();
  const first = page.getByTestId("receipt-deployFrequency").locator("button.ref").first();
  await first.click();
  await page.getByTestId("receipt-deployFrequency").locator("pre").filter({ hasText: "service.upgraded" }).waitFor();
  await shot(page, "9-dora");
  // A custom period: the figures are the API's for the same window (to the minute).
  await page.getByLabel("Period").selectOption("0");
  const from = localInput(Date.now() - DAY), to = localInput(Date.now() + 3600000);
  await page.getByTestId("dora-since").fill(from);
  await page.getByTestId("dora-until").fill(to);
  const iso = (v) => new Date(Date.parse(v)).toISOString();
  const custom = await apiGet(healthy, `api/v1/dora?since=${encodeURIComponent(iso(from))}&until=${encodeURIComponent(iso(to))}`);
  await page.locator('[data-key="deployFrequency"] .muted').filter({ hasText: `${custom.deployFrequency.releases} releases` }).waitFor();
  // Counted before the page reads them: the page can only show as many or more.
  const ev = await apiGet(healthy, "api/v1/flags/new-checkout/evaluations?bucketS=60");
  const total = ev.buckets.reduce((a, b) => a + Object.values(b.variants).reduce((x, y) => x + y, 0), 0);
  assert.ok(total > 0, JSON.stringify(ev).slice(0, 300));
  await page.goto(`${healthy.base}#/flags`);
  await page.locator('tr[data-flag="new-checkout"]').waitFor();
  // The rollback's envelope disabled the flag: the toggle says by whom; the share chart counts
  // what the API counts.
  await page.getByTestId("flag-last-change").filter({ hasText: "disabled by" }).waitFor();
  // The chart renders before its data arrives: wait for the buckets, not the title.
  await page.locator('[data-testid="flag-shares-new-checkout"]:not([data-buckets="0"])').waitFor();
  // (The demo's users keep evaluating it, so the count the page shows has only grown.)
  const shown = Number(/; (\d+) evaluations\)/.exec(await page.getByText(/share of evaluations per variant/).textContent())?.[1]);
  assert.ok(shown >= total, `${shown} shown, ${total} counted before`);
  await shot(page, "10-flags");

  // Memory after the tour (Chromium's JS heap, from the DevTools protocol).
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  const m = Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((x) => [x.name, x.value]));
  metrics.memory = { jsHeapUsedBytes: m.JSHeapUsedSize, jsHeapTotalBytes: m.JSHeapTotalSize, nodes: m.Nodes };
  // The phone width: the run screen still lays out.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${healthy.base}#/rollouts/checkout`);
  await page.locator(".run-header").waitFor();
  await shot(page, "2-run-phone");
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("a faulty rollout aborts and the page says which measurement failed", { timeout: 180000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await open(context, faulty.url);
  await page.getByTestId("who").waitFor();
  await page.goto(`${faulty.base}#/rollouts/checkout`);
  await page.locator(".run-header .phase-Aborted").waitFor({ timeout: 120000 });
  await page.getByTestId("why-failed").filter({ hasText: "success condition" }).waitFor({ timeout: 10000 });
  const why = await page.getByTestId("why-failed").textContent();
  assert.match(why, /(success-rate|p95-latency) measured [0-9.]+ against its success condition result/, why);
  await page.locator('[data-stage="end"][data-mark="failed"]').waitFor();
  await shot(page, "2-run-aborted");
  assert.deepEqual(page.problems, []);
  await context.close();
});

async function apiPost(d, path, body) {
  const r = await fetch(d.base + path, { method: "POST", headers: { authorization: `Bearer ${d.token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  assert.ok(r.ok, `${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

test("the deploy stage view's continue waits for the step's criteria and says what is missing", { timeout: 90000 }, async () => {
  // A rollout of its own on the faulty demo's proxy, held in an analysis that measures once an
  // hour: its weight is applied, its analysis still running.
  const checkout = await apiGet(faulty, "api/v1/rollouts/checkout");
  await apiPost(faulty, "api/v1/analysistemplates", {
    apiVersion: "vireo.dev/v1alpha1", kind: "AnalysisTemplate", metadata: { name: "hourly" },
    spec: { args: [{ name: "route" }, { name: "backend", value: "canary" }], metrics: [{ name: "success-rate", interval: "1h", count: 3, successCondition: "result >= 0.99", provider: { proxy: { metric: "success-rate" } } }] },
  });
  const { stable, canary, split } = checkout.spec;
  await apiPost(faulty, "api/v1/rollouts", {
    apiVersion: "vireo.dev/v1alpha1", kind: "Rollout", metadata: { name: "staged" },
    spec: { route: "staged", stable, canary, split, strategy: { canary: { steps: [{ setWeight: 10 }, { analysis: { templates: [{ templateName: "hourly" }] } }, { setWeight: 100 }] } } },
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await open(context, faulty.url);
  await page.getByTestId("who").waitFor();
  await page.goto(`${faulty.base}#/rollouts/staged/stage`);
  const why = page.getByTestId("continue-why");
  await why.filter({ hasText: "analysis running" }).waitFor({ timeout: 30000 });
  assert.equal(await page.locator('[data-action="promote"]').isDisabled(), true);
  assert.equal(await page.locator('[data-action="pause"]').isDisabled(), false);
  await shot(page, "4-deploy-stage-waiting");
  // Re-run the step from the rollback / re-run screen: a second run, the reason on the timeline.
  await page.goto(`${faulty.base}#/rollouts/staged/rollback`);
  await page.locator('input[name="scope"][value="rerun"]').check();
  await page.locator('[data-action="rerun"]').click();
  await page.getByLabel(/Reason for “Re-run the step”/).fill("measure again after the fix");
  await page.getByRole("button", { name: "Re-run the step staged" }).click();
  await page.waitForURL(/#\/rollouts\/staged$/);
  await page.getByText("measure again after the fix").first().waitFor();
  await page.locator('[data-stage="step-1"]').getByRole("link", { name: "run 1" }).waitFor();
  const rerun = await apiGet(faulty, "api/v1/rollouts/staged");
  assert.equal(rerun.status.analysisRuns.length, 2, JSON.stringify(rerun.status.analysisRuns));
  assert.equal(rerun.status.analysisRuns[1].phase, "Running");
  await page.goto(`${faulty.base}#/rollouts/staged/stage`);
  await why.filter({ hasText: "analysis running" }).waitFor({ timeout: 30000 });
  // Abort from the stage view, with a reason.
  await page.locator('[data-action="abort"]').click();
  await page.getByLabel(/Reason for “Abort”/).fill("held for the test");
  await page.getByRole("button", { name: "Abort staged" }).click();
  await page.locator(".run-header .phase-Aborted").waitFor({ timeout: 30000 });
  assert.equal(await page.locator('[data-action="promote"]').count(), 0);
  // Applied again once settled (drained, canary stopped), it is generation 2; generation 1's
  // evidence still verifies in the browser.
  for (let i = 0; i < 60 && !(await apiGet(faulty, "api/v1/rollouts/staged")).status.settled; i++) await new Promise((r) => setTimeout(r, 500));
  await apiPost(faulty, "api/v1/rollouts", {
    apiVersion: "vireo.dev/v1alpha1", kind: "Rollout", metadata: { name: "staged" },
    spec: { route: "staged", stable, canary, split, strategy: { canary: { steps: [{ setWeight: 10 }, { setWeight: 100 }] } } },
  });
  await page.goto(`${faulty.base}#/rollouts/staged/g/1/evidence`);
  await page.getByTestId("verify-run").filter({ hasText: "generation 1" }).click();
  const verified = page.getByTestId("verify-result");
  await verified.waitFor({ timeout: 30000 });
  assert.equal(await verified.getAttribute("data-ok"), "true", await verified.textContent());
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("a viewer sees everything and no action button", { timeout: 60000 }, async () => {
  const r = await fetch(`${faulty.base}api/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${faulty.token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "auditor", role: "viewer" }),
  });
  const created = await r.json();
  assert.equal(r.status, 201, JSON.stringify(created));
  const { token } = created;
  const context = await browser.newContext();
  const page = await open(context, `${faulty.base}#/rollouts/checkout?token=${token}`);
  await page.getByTestId("who").waitFor();
  assert.match(await page.getByTestId("who").textContent(), /read-only/);
  await page.locator(".run-header").waitFor();
  await page.locator('[data-stage="gate"]').waitFor();
  assert.equal(await page.locator("[data-action]").count(), 0);
  await page.goto(`${faulty.base}#/rollouts/checkout/rollback`);
  await page.getByTestId("rollback-preview").waitFor();
  assert.equal(await page.locator("[data-action]").count(), 0);
  await shot(page, "viewer-run");
  assert.deepEqual(page.problems, []);
  await context.close();
});
