// Unit tests of the console's verifier (node --test): RFC 6962 Merkle proofs against the
// transparency-dev vectors the Rust verifier also passes, canonical JSON, base64 and the tar
// reader. The whole-bundle checks are compared with `vireo verify` by golden.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  b64decode, b64encode, canonical, verifyInclusion, verifyConsistency, untar, parseReceipt,
  parseCheckpoint, table,
} from "../lib/verify.js";

const here = dirname(fileURLToPath(import.meta.url));
const vectors = join(here, "../../../evidence/tests/vectors/merkle");

function cases(kind) {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith(".json")) out.push({ name: path, v: JSON.parse(readFileSync(path, "utf8")) });
    }
  };
  walk(join(vectors, kind));
  return out;
}

const hashes = (list) => (list ?? []).map(b64decode);

test("inclusion proofs: every transparency-dev vector", async () => {
  const all = cases("inclusion");
  assert.ok(all.length >= 5);
  for (const { name, v } of all) {
    const run = verifyInclusion(b64decode(v.leafHash), v.leafIdx, v.treeSize, hashes(v.proof), b64decode(v.root));
    if (v.wantErr) await assert.rejects(run, name);
    else await run;
  }
});

test("consistency proofs: every transparency-dev vector", async () => {
  const all = cases("consistency");
  assert.ok(all.length >= 5);
  for (const { name, v } of all) {
    const run = verifyConsistency(v.size1, v.size2, hashes(v.proof), b64decode(v.root1), b64decode(v.root2));
    if (v.wantErr) await assert.rejects(run, name);
    else await run;
  }
});

test("canonical JSON is RFC 8785's: sorted keys, ECMAScript numbers, no whitespace", () => {
  assert.equal(canonical({ b: 1, a: [true, null, "é\n"], c: { z: 1e21, y: 0.1 } }),
    '{"a":[true,null,"é\\n"],"b":1,"c":{"y":0.1,"z":1e+21}}');
  // UTF-16 code-unit order (RFC 8785 §3.2.3): an astral character (a surrogate pair, D83D…)
  // sorts before U+E000, unlike in code-point order.
  assert.equal(canonical({ "\uE000": 2, "\u{1F600}": 1 }), '{"\u{1F600}":1,"\uE000":2}');
});

test("base64: standard and URL-safe, padded or not; neither is refused", () => {
  const bytes = Uint8Array.from([0xfb, 0xff, 0x01]);
  assert.equal(b64encode(bytes), "+/8B");
  for (const s of ["+/8B", "-_8B"]) assert.deepEqual(b64decode(s), bytes);
  assert.deepEqual(b64decode("YQ"), Uint8Array.from([0x61]));
  assert.deepEqual(b64decode("YQ=="), Uint8Array.from([0x61]));
  for (const bad of ["Y", "YQ=", "+_8B", "a b", "YQ==="]) assert.equal(b64decode(bad), null, bad);
});

test("tar: files by path, long names, a duplicate refused", () => {
  const block = (name, body, type = "0") => {
    const h = new Uint8Array(512);
    h.set(new TextEncoder().encode(name).subarray(0, 100));
    h.set(new TextEncoder().encode(body.length.toString(8).padStart(11, "0") + "\0"), 124);
    h[156] = type.charCodeAt(0);
    const data = new Uint8Array(Math.ceil(body.length / 512) * 512);
    data.set(new TextEncoder().encode(body));
    return [h, data];
  };
  const long = "inputs/" + "x".repeat(120) + ".json";
  const parts = [...block("a.txt", "hello"), ...block("././@LongLink", long + "\0", "L"), ...block("ignored", "{}"), new Uint8Array(1024)];
  const tar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { tar.set(p, at); at += p.length; }
  const files = untar(tar);
  assert.deepEqual([...files.keys()], ["a.txt", long]);
  assert.equal(new TextDecoder().decode(files.get("a.txt")), "hello");
  const twice = new Uint8Array([...block("a", "1")[0], ...block("a", "1")[1], ...block("a", "2")[0], ...block("a", "2")[1], ...new Uint8Array(1024)]);
  assert.throws(() => untar(twice), /a: appears twice/);
});

test("receipts and checkpoints parse as the Rust reader does", () => {
  const root = b64encode(new Uint8Array(32));
  const r = parseReceipt(`c2sp.org/tlog-proof@v1\nextra x\nindex 3\n${root}\n\nlog\n4\n${root}\n\n— log AAAA\n`);
  assert.equal(r.index, 3n);
  assert.equal(r.proof.length, 1);
  assert.throws(() => parseReceipt("c2sp.org/tlog-proof@v1\nindex x\n\n"), /expected `index N`/);
  assert.throws(() => parseCheckpoint("log\nmany\nroot\n"), /tree size in decimal/);
  assert.equal(parseCheckpoint(`log\n7\n${root}\n`).size, 7n);
  assert.equal(table({ checks: [{ check: "manifest", ok: false, detail: "x: y" }] }), "manifest  FAIL  x: y\n");
});
