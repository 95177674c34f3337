// The console's verifier against `vireo verify` on golden bundles (written by the Rust test
// `the_console_verifier_agrees_with_vireo_verify_on_golden_bundles` in crates/store/tests):
//   node crates/server/console/test/golden.mjs DIR
// DIR/cases.json lists each bundle, the keys pinned (or none), and the Rust report. Every
// check must agree on its name and verdict; a passing check's text exactly; a failing check
// must name the same file (the text before the first ": ") and, where the reason is the
// verifier's own words rather than a parser's, say the same. Exit 1 on any disagreement.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readBundle, verifyBundle, table } from "../lib/verify.js";

const dir = process.argv[2];
const cases = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8"));
// Reasons that quote a parser (serde, a PEM reader) differ in wording between the two.
const quotesAParser = (d) => / \((?!one of the two|pin it|reordered)[^)]*\)$/.test(d) || /keys\/[a-z]+\.pub: /.test(d);
const file = (d) => d.split(": ")[0];
let bad = 0;
for (const c of cases) {
  const files = await readBundle(new Uint8Array(readFileSync(join(dir, c.file))));
  const trust = { signing: c.trust.signing ?? undefined, log: c.trust.log ?? undefined };
  const got = await verifyBundle(files, trust);
  const want = c.report.checks;
  const problems = [];
  if (got.checks.length !== want.length) problems.push(`${got.checks.length} checks, want ${want.length}`);
  want.forEach((w, i) => {
    const g = got.checks[i];
    if (!g) return;
    if (g.check !== w.check || g.ok !== w.ok) {
      problems.push(`${w.check}: ${g.check} ${g.ok ? "ok" : "FAIL"} (${g.detail}), want ${w.ok ? "ok" : "FAIL"} (${w.detail})`);
    } else if (g.detail !== w.detail && (w.ok || !quotesAParser(w.detail) || file(g.detail) !== file(w.detail))) {
      problems.push(`${w.check}: says ${JSON.stringify(g.detail)}, vireo verify ${JSON.stringify(w.detail)}`);
    }
  });
  if (got.envelopes !== c.report.envelopes) problems.push(`${got.envelopes} envelopes, want ${c.report.envelopes}`);
  const verdict = got.ok ? "VERIFIED" : `FAILED (${got.checks.find((x) => !x.ok)?.detail})`;
  console.log(`${problems.length ? "DISAGREE" : "agree   "}  ${c.name}: ${verdict}`);
  for (const p of problems) console.log(`            ${p}`);
  if (problems.length) {
    console.log(table(got).replace(/^/gm, "            "));
    bad++;
  }
}
console.log(bad ? `${bad} of ${cases.length} bundles disagree` : `${cases.length} bundles agree`);
process.exitCode = bad ? 1 : 0;
