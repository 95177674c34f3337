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
  parseCheckpoint, table, serdeValue, serdeEqual, entrySummary,
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
    // A mutated proof must fail for a Merkle reason, not because the code broke.
    if (v.wantErr) await assert.rejects(run, /proof|root|index|hash|outside/, name);
    else await run;
  }
});

test("consistency proofs: every transparency-dev vector", async () => {
  const all = cases("consistency");
  assert.ok(all.length >= 5);
  for (const { name, v } of all) {
    const run = verifyConsistency(v.size1, v.size2, hashes(v.proof), b64decode(v.root1), b64decode(v.root2));
    if (v.wantErr) await assert.rejects(run, /proof|root|sizes|hash/, name);
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
  // Stray trailing bits (YR== is "a" to atob) and mixed alphabets: refused, as by the
  // base64 crate's engines.
  for (const bad of ["Y", "YQ=", "+_8B", "a b", "YQ===", "YR==", "YR"]) assert.equal(b64decode(bad), null, bad);
  assert.equal(b64decode("YQ", { padded: true }), null, "PEM bodies need their padding");
});

test("JSON compared as serde_json's Value: number kinds, exact integers, last duplicate", () => {
  const eq = (a, b) => serdeEqual(serdeValue(a), serdeValue(b));
  assert.ok(eq('{"a":[1,2.5,"x",null,true]}', ' { "a" : [ 1 , 2.5 , "x" , null , true ] } '));
  assert.ok(!eq('{"a":5}', '{"a":5.0}'), "an integer is not a float");
  assert.ok(!eq('{"a":9007199254740993}', '{"a":9007199254740992}'), "exact beyond 2^53");
  assert.ok(eq('{"a":1,"a":2}', '{"a":2}'), "the last duplicate wins");
  assert.ok(!eq('{"a":1}', '{"a":1,"b":1}'));
  assert.throws(() => serdeValue("[".repeat(200) + "]".repeat(200)), /recursion limit/);
  assert.throws(() => serdeValue('{"a":1} x'), /trailing/);
});

test("tar: files by path, checksums, long names, pax paths, a duplicate refused", () => {
  const enc = new TextEncoder();
  const block = (name, body, type = "0", { corrupt = false } = {}) => {
    const h = new Uint8Array(512);
    h.set(enc.encode(name).subarray(0, 100));
    h.set(enc.encode("0000644\0"), 100);
    h.set(enc.encode(body.length.toString(8).padStart(11, "0") + "\0"), 124);
    h[156] = type.charCodeAt(0);
    h.set(enc.encode("ustar  \0"), 257); // GNU, as tar-rs's Header::new_gnu writes
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    if (corrupt) h[0] ^= 1;
    const data = new Uint8Array(Math.ceil(body.length / 512) * 512);
    data.set(enc.encode(body));
    return [h, data];
  };
  const tar = (...blocks) => {
    const parts = [...blocks.flat(), new Uint8Array(1024)];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const long = "inputs/" + "x".repeat(120) + ".json";
  const pax = "path=envelopes/real.dsse.json\n";
  const record = `${pax.length + 3} ${pax}`;
  const files = untar(tar(
    block("a.txt", "hello"),
    block("././@LongLink", long + "\0", "L"), block("ignored", "{}"),
    block("envelopes/", "", "5"),
    block("PaxHeaders/x", record, "x"), block("envelopes/shown.dsse.json", "{}"),
  ));
  // A directory is an entry like any other (the manifest then names it as not listed).
  assert.deepEqual([...files.keys()], ["a.txt", long, "envelopes/", "envelopes/real.dsse.json"]);
  assert.equal(new TextDecoder().decode(files.get("a.txt")), "hello");
  assert.throws(() => untar(tar(block("a", "1"), block("a", "2"))), /a: appears twice/);
  assert.throws(() => untar(tar(block("a", "1", "0", { corrupt: true }))), /checksum/);
  assert.throws(() => untar(tar(block("a", "1")).subarray(0, 700)), /ends inside/);
});

test("receipts and checkpoints parse as the Rust reader does", () => {
  const root = b64encode(new Uint8Array(32));
  const r = parseReceipt(`c2sp.org/tlog-proof@v1\nextra x\nindex 3\n${root}\n\nlog\n4\n${root}\n\n— log AAAA\n`);
  assert.equal(r.index, 3n);
  assert.equal(r.proof.length, 1);
  assert.throws(() => parseReceipt("c2sp.org/tlog-proof@v1\nindex x\n\n"), /expected `index N`/);
  // As Rust's str::lines and u64::from_str: a CR before the newline, a leading +.
  assert.equal(parseReceipt(`c2sp.org/tlog-proof@v1\r\nindex +3\r\n${root}\n\nx`).index, 3n);
  // …but a CR that ends the last line without a newline stays (the hash is then not base64).
  assert.throws(() => parseReceipt(`c2sp.org/tlog-proof@v1\nindex 3\n${root}\r\n\nx`), /not a base64/);
  assert.throws(() => parseReceipt("c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n"), /index N/);
  assert.throws(() => parseCheckpoint("log\nmany\nroot\n"), /tree size in decimal/);
  assert.equal(parseCheckpoint(`log\n7\n${root}\n`).size, 7n);
  assert.equal(table({ checks: [{ check: "manifest", ok: false, detail: "x: y" }] }), "manifest  FAIL  x: y\n");
});

test("a log entry's summary: key ids, statement, receipt; a malformed part says so", () => {
  const root = b64encode(new Uint8Array(32));
  const statement = { _type: "https://in-toto.io/Statement/v1", predicateType: "https://vireo.dev/decision/v1", subject: [{ name: "checkout", digest: { sha256: "ab" } }] };
  const entry = {
    index: 3,
    envelope: { payloadType: "application/vnd.in-toto+json", payload: b64encode(new TextEncoder().encode(JSON.stringify(statement))), signatures: [{ keyid: "k1", sig: "" }] },
    receipt: `c2sp.org/tlog-proof@v1\nindex 3\n${root}\n\nvireo/k\n4\n${root}\n\n— vireo/k AAAA\n`,
  };
  const s = entrySummary(entry);
  assert.deepEqual([s.keyIds, s.predicateType, s.subjects, s.receiptIndex, s.treeSize, s.origin, s.proofHashes], [["k1"], "https://vireo.dev/decision/v1", ["checkout sha256:ab"], 3n, 4n, "vireo/k", 1]);
  const bad = entrySummary({ envelope: { payload: "%%" }, receipt: "nope" });
  assert.match(bad.statementError, /not base64/);
  assert.match(bad.receiptError, /malformed proof/);
});
