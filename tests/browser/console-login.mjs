// A real-browser check of the console's login (Debian chromium + npm playwright-core): the
// token taken from the URL fragment and removed from the address bar, "who am I", the action
// buttons an admin sees and a viewer does not (a viewer token named `tabs`), the login box
// without a token; a screenshot per role in OUT_DIR.
//   node tests/browser/console-login.mjs http://127.0.0.1:8080 ADMIN_TOKEN VIEWER_TOKEN OUT_DIR
// Run by hand for now (needs a rollout applied); the console issue brings browser tests into CI.
import { chromium } from "playwright-core";
const [base, admin, viewer, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const fail = (m) => { console.error("FAIL: " + m); process.exitCode = 1; };
for (const [name, token, wantButtons] of [["admin", admin, true], ["viewer", viewer, false]]) {
  const page = await browser.newPage();
  await page.goto(`${base}/#token=${token}`);
  await page.waitForFunction(() => document.getElementById("who").textContent.length > 0, null, { timeout: 10000 });
  const who = await page.textContent("#who");
  if (page.url().includes("token=")) fail(`${name}: the token stayed in the address bar: ${page.url()}`);
  if (!who.includes(`token:${name === "admin" ? "admin" : "tabs"}`)) fail(`${name}: who am I says ${who}`);
  await page.waitForSelector("#rows td", { timeout: 10000 });
  await page.waitForFunction(() => !document.getElementById("rows").textContent.includes("loading"), null, { timeout: 10000 });
  const buttons = await page.locator("#rows button").count();
  if (wantButtons && buttons === 0) fail(`${name}: no action buttons`);
  if (!wantButtons && buttons !== 0) fail(`${name}: a viewer sees ${buttons} buttons`);
  await page.screenshot({ path: `${out}/console-${name}.png`, fullPage: true });
  console.log(`${name}: ${who}; ${buttons} buttons`);
  await page.close();
}
// No token: the login box, no data.
const page = await browser.newPage();
await page.goto(base);
await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
console.log("no token: login box shown");
await browser.close();
