// Evidence bundles verified in the browser: the same checks as `vireo verify`
// (crates/evidence/src/bundle.rs), in the same order, with the same verdicts and the file named
// in every failure. Pure but for WebCrypto (SHA-256, Ed25519) and DecompressionStream (gzip),
// which the browser and Node (>= 20) both have; nothing here touches the page, so Node's test
// runner checks it against golden bundles the Rust tests write (crates/server/tests/console.rs).
//
// Formats (shared/spec/evidence.md): a gzipped tar of `manifest.json` (RFC 8785, every other
// file with its SHA-256), `envelopes/NNN-STAGE.dsse.json` (DSSE, Ed25519), their
// `receipts/NNN-STAGE.tlog-proof` (c2sp tlog-proof: an inclusion proof and a signed note),
// `checkpoint` (a signed note), `keys/signing.pub` and `keys/log.pub` (SPKI PEM),
// `inputs/DECISION.json` and `timeline.json`.

const MANIFEST = "manifest.json";
const IN_TOTO = "application/vnd.in-toto+json";
const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
const CHECKPOINT_V1 = "https://vireo.dev/checkpoint/v1";
const PROOF_HEADER = "c2sp.org/tlog-proof@v1";
/// A bundle larger than this unpacked is a corrupt one (the Rust reader's bound).
export const MAX_BUNDLE = 256 << 20;

const utf8 = new TextEncoder();
// A BOM is a byte like any other: serde refuses it, so the verifier must not drop it.
const fromUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Bytes as text, or null if they are not UTF-8. */
function text(bytes) {
  try {
    return fromUtf8.decode(bytes);
  } catch {
    return null;
  }
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function sha256hex(bytes) {
  return hex(await sha256(bytes));
}

/** Base64 as the Rust verifier takes it: one of the standard or URL-safe alphabets, padded
 * or not — each strict (canonical padding, no stray trailing bits), as the base64 crate's
 * engines are; null when it is none of the four. */
export function b64decode(s, { padded = false } = {}) {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) return null;
  let t = s.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (t.length % 4 === 1) return null;
  t += "=".repeat((4 - (t.length % 4)) % 4);
  let bytes;
  try {
    bytes = Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
  // atob forgives stray bits and mixed alphabets; the engines do not: the input must be
  // exactly what one of them would write for these bytes.
  const std = b64encode(bytes);
  const url = std.replace(/\+/g, "-").replace(/\//g, "_");
  const forms = padded ? [std] : [std, std.replace(/=+$/, ""), url, url.replace(/=+$/, "")];
  return forms.includes(s) ? bytes : null;
}

/** Lines as Rust's `str::lines` gives them: split at `\n`, a `\r` dropped from a line that
 * ended in `\r\n` (not from a last line with no newline), no empty last line for a final
 * newline. */
function lines(s) {
  const out = s.split("\n");
  const last = out.pop();
  const done = out.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  return last === "" ? done : [...done, last];
}

/** Rust's `u64::from_str`: an optional `+`, decimal digits, at most 2^64 − 1; else null. */
function parseU64(t) {
  const m = /^\+?([0-9]{1,20})$/.exec(t ?? "");
  if (!m) return null;
  const n = BigInt(m[1]);
  return n <= 0xffffffffffffffffn ? n : null;
}

export function b64encode(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * JSON parsed as serde_json's `Value` sees it, for comparing two documents as the Rust
 * verifier does: numbers keep their kind — an integer (`5`, within i64/u64) is not the float
 * `5.0`, and integers are exact beyond 2^53 — objects keep the last of duplicate keys. Returns
 * a tagged tree: `{n: "i"|"f", v}` for numbers, arrays, `Map`s, and plain strings/booleans/null.
 * Throws on invalid JSON (nesting beyond 128, serde's limit, included).
 */
export function serdeValue(text) {
  let at = 0;
  const fail = (what) => {
    throw new Error(`${what} at byte ${at}`);
  };
  const ws = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const value = (depth) => {
    if (depth > 128) fail("recursion limit exceeded");
    ws();
    const c = text[at];
    if (c === "{") {
      at++;
      const m = new Map();
      ws();
      if (text[at] === "}") return at++, m;
      for (;;) {
        ws();
        if (text[at] !== '"') fail("expected a key");
        const k = string();
        ws();
        if (text[at++] !== ":") fail("expected `:`");
        m.set(k, value(depth + 1));
        ws();
        if (text[at] === ",") { at++; continue; }
        if (text[at++] === "}") return m;
        fail("expected `,` or `}`");
      }
    }
    if (c === "[") {
      at++;
      const a = [];
      ws();
      if (text[at] === "]") return at++, a;
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[at] === ",") { at++; continue; }
        if (text[at++] === "]") return a;
        fail("expected `,` or `]`");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) return (at += word.length), v;
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at, at + 400));
    if (!m) fail("expected a value");
    at += m[0].length;
    if (!m[2] && !m[3]) {
      const i = BigInt(m[0]);
      if (i >= -(2n ** 63n) && i < 2n ** 64n) return { n: "i", v: i };
    }
    return { n: "f", v: Number(m[0]) };
  };
  const string = () => {
    const start = at;
    at++;
    // Bounded: each pass moves past one character or escape.
    while (at < text.length && text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
    if (at >= text.length) fail("unterminated string");
    at++;
    return JSON.parse(text.slice(start, at));
  };
  const v = value(0);
  ws();
  if (at !== text.length) fail("trailing characters");
  return v;
}

/** `serde_json::Value`'s `==` over [`serdeValue`] trees. */
export function serdeEqual(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => serdeEqual(x, b[i]));
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !serdeEqual(v, b.get(k))) return false;
    return true;
  }
  return a.n === b.n && a.v === b.v;
}

/** RFC 8785 (JCS): ECMAScript's own number and string serialisation, keys sorted by UTF-16
 * code units — which is what JSON.stringify and Array.prototype.sort do. */
export function canonical(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  const keys = Object.keys(v).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

/** Gunzips `bytes` (a Uint8Array), refusing more than `limit` bytes of output. */
export async function gunzip(bytes, limit = MAX_BUNDLE) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const reader = stream.getReader();
  const chunks = [];
  let n = 0;
  // Bounded by `limit`: each pass adds at least one byte or ends.
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > limit) {
      await reader.cancel();
      throw new Error(`larger than ${limit} bytes unpacked`);
    }
    chunks.push(value);
  }
  return concat(...chunks);
}

function cString(field) {
  const end = field.indexOf(0);
  return text(end < 0 ? field : field.subarray(0, end)) ?? "";
}

/** A numeric header field as tar-rs reads it: octal text (NULs and spaces around it), or
 * GNU's base-256 (high bit of the first byte set). An empty field is an error. */
function number(field) {
  if (field[0] & 0x80) {
    let n = BigInt(field[0] & 0x7f);
    for (const b of field.subarray(1)) n = (n << 8n) | BigInt(b);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("a tar header with a size too large");
    return Number(n);
  }
  const s = (text(field) ?? "").replace(/^[\0 ]+/, "").replace(/[\0 ]+$/, "");
  if (!/^[0-7]+$/.test(s)) throw new Error("a tar header with a bad number");
  return parseInt(s, 8);
}

/** The files of a tar archive, by path, as tar-rs's `entries()` gives them: headers'
 * checksums checked; GNU long names and pax `path`/`size` records applied; every other entry
 * (a directory, a link) is a file of its own, as `vireo verify` reads it. */
export function untar(bytes) {
  const files = new Map();
  let at = 0;
  let longName = null;
  let pax = {};
  // Bounded: each pass moves `at` forward by at least one 512-byte block.
  for (;;) {
    if (at === bytes.length) break;
    if (at + 512 > bytes.length) throw new Error("the archive ends inside a header");
    const h = bytes.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (number(h.subarray(148, 156)) !== sum) throw new Error("archive header checksum mismatch");
    const type = String.fromCharCode(h[156]);
    const size = pax.size ?? number(h.subarray(124, 136));
    const start = at + 512;
    if (start + size > bytes.length) throw new Error("the archive ends inside a file");
    const body = bytes.subarray(start, start + size);
    at = start + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = (text(body) ?? "").replace(/\0+$/, "");
      continue;
    }
    if (type === "x") {
      pax = paxRecords(body);
      continue;
    }
    if (type === "g" || type === "K") continue; // global pax, GNU long link target
    const posix = cString(h.subarray(257, 263)) === "ustar";
    const prefix = posix ? cString(h.subarray(345, 500)) : "";
    const path = pax.path ?? longName ?? (prefix ? prefix + "/" : "") + cString(h.subarray(0, 100));
    longName = null;
    pax = {};
    if (files.has(path)) throw new Error(`${path}: appears twice in the archive`);
    files.set(path, body);
  }
  if (longName !== null || Object.keys(pax).length) throw new Error("an extension header with no entry after it");
  return files;
}

/** A pax extended header's `path` and `size`. */
function paxRecords(body) {
  const out = {};
  const t = text(body) ?? "";
  let at = 0;
  // Bounded: each record moves `at` forward by its length (at least 1).
  while (at < t.length) {
    const m = /^([0-9]+) /.exec(t.slice(at, at + 24));
    const len = m ? parseInt(m[1], 10) : 0;
    if (!m || len <= m[0].length) throw new Error("a malformed pax header");
    const record = t.slice(at + m[0].length, at + len - 1);
    const eq = record.indexOf("=");
    const [k, v] = [record.slice(0, eq), record.slice(eq + 1)];
    if (k === "path") out.path = v;
    if (k === "size") {
      if (!/^[0-9]+$/.test(v)) throw new Error("a malformed pax size");
      out.size = parseInt(v, 10);
    }
    at += len;
  }
  return out;
}

/** A bundle file (gzipped tar) as its files; throws with the reason. */
export async function readBundle(bytes) {
  let tar;
  try {
    tar = await gunzip(bytes);
  } catch (e) {
    throw new Error(`not a gzipped tar: ${e.message}`);
  }
  try {
    return untar(tar);
  } catch (e) {
    throw new Error(e.message.includes("appears twice") ? e.message : `not a gzipped tar: ${e.message}`);
  }
}

// --- keys -----------------------------------------------------------------------------------

const SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

/** An Ed25519 public key from SPKI PEM: { raw, der, keyid, key } or a thrown reason. */
export async function publicKeyFromPem(pem) {
  // The first PEM block, as the Rust reader takes it; its body standard base64 with padding.
  const m = /-----BEGIN ([^-\r\n]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!m) throw new Error("not a PEM block");
  if (m[1] !== "PUBLIC KEY") throw new Error(`a ${m[1]} block, not a PUBLIC KEY`);
  const der = b64decode(m[2].replace(/\s+/g, ""), { padded: true });
  if (!der) throw new Error("not a PUBLIC KEY PEM");
  if (der.length !== 44 || !equalBytes(der.subarray(0, 12), SPKI_PREFIX)) {
    throw new Error("a key of another algorithm (Ed25519 expected)");
  }
  let key;
  try {
    key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    throw new Error(`this browser cannot check Ed25519 signatures (${e.message}); use \`vireo verify\``);
  }
  return { raw: der.slice(12), der, keyid: await sha256hex(der), key };
}

async function ed25519Verify(pub, message, sig) {
  if (sig.length !== 64) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, pub.key, sig, message);
  } catch {
    return false;
  }
}

// --- Merkle tree (RFC 9162) -------------------------------------------------------------------

export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

async function nodeHash(l, r) {
  return sha256(concat(Uint8Array.of(1), l, r));
}

function bitLength(x) {
  return x === 0n ? 0 : x.toString(2).length;
}

function popcount(x) {
  return [...x.toString(2)].filter((c) => c === "1").length;
}

function decompose(index, size) {
  const inner = bitLength(index ^ (size - 1n));
  const border = popcount(index >> BigInt(inner));
  return [inner, border];
}

/** RFC 9162 §2.1.3.2; throws with the Rust verifier's reason. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  index = BigInt(index);
  size = BigInt(size);
  if (index >= size) throw new Error(`index ${index} is outside a tree of size ${size}`);
  if (leaf.length !== 32) throw new Error(`a hash of ${leaf.length} bytes; SHA-256 hashes have 32`);
  const [inner, border] = decompose(index, size);
  if (proof.length !== inner + border) {
    throw new Error(`the proof has ${proof.length} hashes; a proof for this position needs ${inner + border}`);
  }
  let h = leaf;
  for (let i = 0; i < inner; i++) {
    h = (index >> BigInt(i)) & 1n ? await nodeHash(proof[i], h) : await nodeHash(h, proof[i]);
  }
  for (const p of proof.slice(inner)) h = await nodeHash(p, h);
  if (!equalBytes(h, root)) throw new Error("the proof does not lead to the expected root");
}

function trailingZeros(x) {
  let n = 0;
  while (x > 0n && (x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/** RFC 9162 §2.1.4.2 (the log witness); throws with the reason. */
export async function verifyConsistency(oldSize, newSize, proof, oldRoot, newRoot) {
  const old = BigInt(oldSize);
  const neu = BigInt(newSize);
  if (old > neu || old === 0n) throw new Error(`sizes ${old} → ${neu} are not a valid consistency range`);
  if (old === neu) {
    if (proof.length) throw new Error(`the proof has ${proof.length} hashes; a proof for this position needs 0`);
    if (!equalBytes(oldRoot, newRoot)) throw new Error("the proof does not lead to the expected root");
    return;
  }
  if (!proof.length) throw new Error("the proof has 0 hashes; a proof for this position needs 1");
  const shift = trailingZeros(old);
  let [inner, border] = decompose(old - 1n, neu);
  inner -= shift;
  const [seed, rest] = old === 1n << BigInt(shift) ? [oldRoot, proof] : [proof[0], proof.slice(1)];
  if (rest.length !== inner + border) {
    throw new Error(`the proof has ${proof.length} hashes; a proof for this position needs ${proof.length - rest.length + inner + border}`);
  }
  const mask = (old - 1n) >> BigInt(shift);
  let h1 = seed;
  let h2 = seed;
  for (let i = 0; i < inner; i++) {
    if ((mask >> BigInt(i)) & 1n) {
      h1 = await nodeHash(rest[i], h1);
      h2 = await nodeHash(rest[i], h2);
    } else {
      h2 = await nodeHash(h2, rest[i]);
    }
  }
  for (const p of rest.slice(inner)) {
    h1 = await nodeHash(p, h1);
    h2 = await nodeHash(p, h2);
  }
  if (!equalBytes(h1, oldRoot) || !equalBytes(h2, newRoot)) {
    throw new Error("the proof does not lead to the expected root");
  }
}

// --- signed notes, checkpoints, receipts (c2sp.org) -------------------------------------------

async function noteKeyId(name, pub) {
  const d = await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a, 0x01), pub.raw));
  return d.slice(0, 4);
}

/** The note's text if `name`'s key `pub` signed it; throws with the reason. */
export async function openNote(note, name, pub) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("malformed note: no blank line before the signatures");
  const body = note.slice(0, split + 1);
  const sigs = note.slice(split + 2);
  if (!sigs || !sigs.endsWith("\n")) {
    throw new Error("malformed note: the signature block must be lines ending in a newline");
  }
  const id = await noteKeyId(name, pub);
  let found = false;
  for (const line of lines(sigs)) {
    if (!line.startsWith("\u2014 ")) throw new Error(`malformed note: signature line ${JSON.stringify(line)}`);
    const rest = line.slice(2);
    const sp = rest.indexOf(" ");
    if (sp < 0) throw new Error(`malformed note: signature line ${JSON.stringify(line)}`);
    const signer = rest.slice(0, sp);
    const blob = b64decode(rest.slice(sp + 1));
    if (!blob || blob.length < 4) throw new Error(`malformed note: signature of ${signer} is not base64`);
    if (signer !== name || !equalBytes(blob.subarray(0, 4), id)) continue;
    if (!(await ed25519Verify(pub, utf8.encode(body), blob.subarray(4)))) {
      throw new Error(`the signature by ${name} does not verify: the note was altered or signed by another key`);
    }
    found = true;
  }
  if (!found) throw new Error(`no signature by ${name} on the note`);
  return body;
}

export function parseCheckpoint(body) {
  const ls = lines(body);
  const origin = ls[0];
  if (!origin) throw new Error("malformed checkpoint: no origin line");
  const size = parseU64(ls[1]);
  if (size === null) {
    throw new Error("malformed checkpoint: the second line must be the tree size in decimal");
  }
  const root = b64decode(ls[2] ?? "");
  if (!root || root.length !== 32) {
    throw new Error("malformed checkpoint: the third line must be a base64 SHA-256 root hash");
  }
  return { origin, size, root };
}

/** A signed checkpoint of log `origin`; throws with the reason. */
export async function openCheckpoint(note, origin, logKey) {
  const cp = parseCheckpoint(await openNote(note, origin, logKey));
  if (cp.origin !== origin) {
    throw new Error(`checkpoint origin is ${JSON.stringify(cp.origin)}; expected ${JSON.stringify(origin)}`);
  }
  return cp;
}

export function parseReceipt(t) {
  const split = t.indexOf("\n\n");
  if (split < 0) throw new Error("malformed proof: no blank line before the checkpoint");
  const ls = lines(t.slice(0, split));
  if (ls[0] !== PROOF_HEADER) throw new Error(`malformed proof: the first line must be ${PROOF_HEADER}`);
  let i = 1;
  if (ls[i]?.startsWith("extra ")) i++;
  const index = ls[i]?.startsWith("index ") ? parseU64(ls[i].slice(6)) : null;
  if (index === null) throw new Error("malformed proof: expected `index N`");
  const proof = ls.slice(i + 1).map((l) => {
    const h = b64decode(l);
    if (!h || h.length !== 32) throw new Error(`malformed proof: ${JSON.stringify(l)} is not a base64 SHA-256 hash`);
    return h;
  });
  return { index, proof, checkpoint: t.slice(split + 2) };
}

async function verifyReceipt(receipt, entry, origin, logKey) {
  const cp = await openCheckpoint(receipt.checkpoint, origin, logKey);
  await verifyInclusion(await leafHash(entry), receipt.index, cp.size, receipt.proof, cp.root);
  return cp;
}

// --- DSSE -------------------------------------------------------------------------------------

function pae(type, body) {
  const t = utf8.encode(type);
  return concat(utf8.encode(`DSSEv1 ${t.length} `), t, utf8.encode(` ${body.length} `), body);
}

async function verifyDsse(env, pub) {
  if (typeof env.payloadType !== "string" || env.payloadType !== IN_TOTO) {
    throw new Error(`payload type ${JSON.stringify(env.payloadType ?? "")} is not accepted here (expected one of ${JSON.stringify([IN_TOTO])})`);
  }
  const body = b64decode(env.payload);
  if (!body) throw new Error("payload is not base64 (standard or URL-safe)");
  const message = pae(env.payloadType, body);
  let valid = 0;
  for (const s of env.signatures) {
    const sig = b64decode(s.sig);
    if (!sig) throw new Error("signature is not base64 (standard or URL-safe)");
    if (!valid && (await ed25519Verify(pub, message, sig))) valid = 1;
  }
  if (valid < 1) throw new Error(`${valid} distinct trusted key(s) signed; 1 required`);
  return body;
}

function isEnvelope(v) {
  return (
    v && typeof v === "object" && !Array.isArray(v) &&
    typeof v.payload === "string" && typeof v.payloadType === "string" &&
    Array.isArray(v.signatures) &&
    v.signatures.every((s) => s && typeof s === "object" && typeof s.sig === "string" &&
      (s.keyid === undefined || typeof s.keyid === "string"))
  );
}

async function openEnvelope(path, bytes, pub) {
  let env;
  try {
    env = JSON.parse(text(bytes));
  } catch (e) {
    throw new Error(`${path}: not a DSSE envelope (${e.message})`);
  }
  if (!isEnvelope(env)) throw new Error(`${path}: not a DSSE envelope (missing or mistyped fields)`);
  let payload;
  try {
    payload = await verifyDsse(env, pub);
  } catch (e) {
    throw new Error(`${path}: ${e.message}`);
  }
  let statement;
  try {
    statement = JSON.parse(text(payload));
  } catch (e) {
    throw new Error(`${path}: payload is not JSON (${e.message})`);
  }
  if (statement?._type !== STATEMENT_TYPE) throw new Error(`${path}: payload is not an in-toto Statement v1`);
  // Exact numbers too, for comparing the recorded inputs as serde does.
  return { statement, value: serdeValue(text(payload)) };
}

// --- the checks -------------------------------------------------------------------------------

const MANIFEST_FIELDS = ["version", "rollout", "generation", "origin", "files"];

async function checkManifest(files) {
  const bytes = files.get(MANIFEST);
  if (!bytes) throw new Error(`${MANIFEST}: missing`);
  let m;
  try {
    m = JSON.parse(text(bytes));
  } catch (e) {
    throw new Error(`${MANIFEST}: not a bundle manifest (${e.message})`);
  }
  const shaped =
    m && typeof m === "object" && !Array.isArray(m) &&
    Object.keys(m).every((k) => MANIFEST_FIELDS.includes(k)) &&
    Number.isInteger(m.version) && m.version >= 0 &&
    typeof m.rollout === "string" && Number.isInteger(m.generation) && m.generation >= 0 &&
    typeof m.origin === "string" && m.files && typeof m.files === "object" && !Array.isArray(m.files) &&
    Object.values(m.files).every((v) => typeof v === "string");
  if (!shaped) throw new Error(`${MANIFEST}: not a bundle manifest (missing, unknown or mistyped fields)`);
  if (m.version !== 1) throw new Error(`${MANIFEST}: bundle version ${m.version} (this vireo reads version 1)`);
  if (canonical(m) !== text(bytes)) {
    throw new Error(`${MANIFEST}: not in canonical form (RFC 8785): it was edited`);
  }
  for (const path of Object.keys(m.files).sort()) {
    const got = files.get(path);
    if (got === undefined) throw new Error(`${path}: listed in the manifest but missing`);
    if ((await sha256hex(got)) !== m.files[path]) {
      throw new Error(`${path}: SHA-256 differs from ${MANIFEST}'s (one of the two was altered)`);
    }
  }
  const extra = [...files.keys()].sort().find((p) => p !== MANIFEST && !Object.hasOwn(m.files, p));
  if (extra) throw new Error(`${extra}: not listed in the manifest`);
  return m;
}

function checkChain(statements, m) {
  let previous = null;
  let count = 0;
  for (const { path, sha, statement } of statements) {
    if (statement.predicateType !== CHECKPOINT_V1) continue;
    const p = statement.predicate ?? {};
    count++;
    if (p.rollout !== m.rollout || p.generation !== m.generation) {
      throw new Error(`${path}: belongs to another rollout than the manifest's`);
    }
    if (p.sequence !== count) {
      throw new Error(`${path}: checkpoint sequence ${JSON.stringify(p.sequence ?? null)} where ${count} was expected (reordered, dropped or duplicated)`);
    }
    if ((p.previous ?? null) !== previous) {
      throw new Error(`${path}: \`previous\` does not match the checkpoint before it`);
    }
    previous = sha;
  }
  if (!count) throw new Error("no checkpoint statements in the bundle");
  return `${count} checkpoints, each chained to the one before`;
}

function fail(why) {
  throw new Error(why);
}

function checkInputs(files, statements) {
  let n = 0;
  for (const path of [...files.keys()].sort().filter((p) => p.startsWith("inputs/"))) {
    // Rust's trim_start_matches / trim_end_matches: every repetition.
    let id = path;
    while (id.startsWith("inputs/")) id = id.slice(7);
    while (id.endsWith(".json")) id = id.slice(0, -5);
    let recorded;
    try {
      recorded = serdeValue(text(files.get(path)) ?? fail("not UTF-8"));
    } catch (e) {
      throw new Error(`${path}: not JSON (${e.message})`);
    }
    const signed = statements.find((s) => s.statement.predicate?.decisionId === id);
    if (signed === undefined) throw new Error(`${path}: no signed verdict with decision id ${JSON.stringify(id)}`);
    const predicate = signed.value instanceof Map ? signed.value.get("predicate") : undefined;
    if (!serdeEqual(recorded, predicate)) throw new Error(`${path}: differs from the signed statement`);
    n++;
  }
  return `${n} recorded decisions match their signed statements`;
}

/**
 * Checks a bundle's files (a Map of path → Uint8Array) as `vireo verify` does. `trust` may pin
 * `{ signing, log }` as SPKI PEM. Returns `{ checks: [{check, ok, detail}], envelopes, ok }`.
 */
export async function verifyBundle(files, trust = {}) {
  const checks = [];
  const push = async (check, run) => {
    try {
      checks.push({ check, ok: true, detail: await run() });
      return true;
    } catch (e) {
      checks.push({ check, ok: false, detail: e.message });
      return false;
    }
  };
  let manifest = null;
  await push("manifest", async () => {
    manifest = await checkManifest(files);
    return "every file listed and intact";
  });
  const key = async (given, path) => {
    if (given) {
      return { pub: await publicKeyFromPem(given), detail: "pinned by the verifier (not taken from the bundle)" };
    }
    const pem = files.get(path);
    if (!pem) throw new Error(`${path}: missing (or pass the key)`);
    const t = text(pem);
    if (t === null) throw new Error(`${path}: not text`);
    try {
      return { pub: await publicKeyFromPem(t), detail: `from ${path} (pin it with --key/--log-key)` };
    } catch (e) {
      throw new Error(`${path}: ${e.message}`);
    }
  };
  let signing = null;
  let log = null;
  await push("signing key", async () => {
    signing = await key(trust.signing, "keys/signing.pub");
    return signing.detail;
  });
  await push("log key", async () => {
    log = await key(trust.log, "keys/log.pub");
    return log.detail;
  });
  if (!signing || !log || !manifest) return report(checks, 0);

  let checkpoint = null;
  await push("checkpoint signature", async () => {
    const bytes = files.get("checkpoint");
    if (!bytes) throw new Error("checkpoint: missing");
    const note = text(bytes);
    if (note === null) throw new Error("checkpoint: not text");
    try {
      checkpoint = await openCheckpoint(note, manifest.origin, log.pub);
    } catch (e) {
      throw new Error(`checkpoint: ${e.message}`);
    }
    return `${checkpoint.origin} at size ${checkpoint.size}`;
  });

  const envelopes = [...files.keys()].sort().filter((p) => p.startsWith("envelopes/") && p.endsWith(".dsse.json"));
  const statements = [];
  let sigError = null;
  let receiptError = null;
  for (const path of envelopes) {
    const bytes = files.get(path);
    try {
      statements.push({ path, sha: await sha256hex(bytes), ...(await openEnvelope(path, bytes, signing.pub)) });
    } catch (e) {
      sigError ??= e.message;
    }
    const receiptPath = path.replace("envelopes/", "receipts/").replaceAll(".dsse.json", ".tlog-proof");
    try {
      const rb = files.get(receiptPath);
      if (!rb) throw new Error(`${receiptPath}: missing`);
      const rt = text(rb);
      if (rt === null) throw new Error(`${receiptPath}: not text`);
      let cp;
      try {
        cp = await verifyReceipt(parseReceipt(rt), bytes, manifest.origin, log.pub);
      } catch (e) {
        throw new Error(`${receiptPath}: ${e.message}`);
      }
      if (checkpoint && checkpoint.size < cp.size) {
        throw new Error(`${receiptPath}: proves against a tree of ${cp.size} entries, newer than the bundle's checkpoint (${checkpoint.size})`);
      }
    } catch (e) {
      receiptError ??= e.message;
    }
  }
  const n = envelopes.length;
  await push("envelope signatures", () => {
    if (sigError) throw new Error(sigError);
    return `${n} DSSE envelopes signed by ${signing.pub.keyid.slice(0, 16)}`;
  });
  await push("inclusion receipts", () => {
    if (receiptError) throw new Error(receiptError);
    return `${n} receipts lead to the signed checkpoint`;
  });
  await push("checkpoint chain", () => checkChain(statements, manifest));
  await push("replay inputs", () => checkInputs(files, statements));
  return report(checks, n);
}

function report(checks, envelopes) {
  return { checks, envelopes, ok: checks.length > 0 && checks.every((c) => c.ok) };
}

/** `vireo verify`'s text table. */
export function table(r) {
  const width = r.checks.length ? Math.max(...r.checks.map((c) => c.check.length)) : 5;
  return r.checks.map((c) => `${c.check.padEnd(width)}  ${c.ok ? "ok  " : "FAIL"}  ${c.detail}\n`).join("");
}

/** What the step detail shows of a log entry (`GET /api/v1/log/entries/N`): the envelope's
 * key ids and payload type, its statement's predicate and subjects, and the receipt's index,
 * tree size and checkpoint origin. Nothing is verified here (the bundle check does that);
 * a malformed part says so instead of throwing. */
export function entrySummary(entry) {
  const env = entry?.envelope ?? {};
  const out = { index: entry?.index, keyIds: (env.signatures ?? []).map((s) => s.keyid ?? "(none)"), payloadType: env.payloadType ?? null };
  try {
    const bytes = b64decode(env.payload ?? "");
    if (!bytes) throw new Error("not base64");
    const st = JSON.parse(new TextDecoder().decode(bytes));
    out.predicateType = st?.predicateType ?? null;
    out.subjects = (st?.subject ?? []).map((s) => `${s.name}${s.digest?.sha256 ? ` sha256:${s.digest.sha256}` : ""}`);
  } catch (e) {
    out.statementError = `the payload is not a JSON statement: ${e.message}`;
  }
  try {
    const r = parseReceipt(entry?.receipt ?? "");
    const cp = parseCheckpoint(r.checkpoint);
    Object.assign(out, { receiptIndex: r.index, treeSize: cp.size, origin: cp.origin, proofHashes: r.proof.length });
  } catch (e) {
    out.receiptError = e.message;
  }
  return out;
}
