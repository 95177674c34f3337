#!/usr/bin/env python3
"""Generate SYNTHETIC managed-key Sigstore bundle v0.3 fixtures (Rekor v1 style) for local tests.
Not fetched from anywhere: built to mirror the conformance construction (custom tlog key in
trusted_root.json), but with a 7-leaf tree (entry at index 4) so the inclusion proof is non-trivial,
plus an inclusionPromise (SET) like cosign writes. Run: python3 gen_synthetic.py OUTDIR"""
import sys, os, json, base64, hashlib, copy
from cryptography.hazmat.primitives import serialization, hashes
from cryptography.hazmat.primitives.asymmetric import ec

B64 = lambda b: base64.b64encode(b).decode()
def jcs(o): return json.dumps(o, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()
def spki(k): return k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
def pem(k): return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
def sign(k, msg): return k.sign(msg, ec.ECDSA(hashes.SHA256()))
def leaf_hash(b): return hashlib.sha256(b'\x00' + b).digest()
def node(l, r): return hashlib.sha256(b'\x01' + l + r).digest()
def mth(leaves):  # RFC 6962 2.1, leaves = leaf hashes
    if len(leaves) == 1: return leaves[0]
    k = 1
    while k * 2 < len(leaves): k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))
def path(m, leaves):  # RFC 6962 2.1.1 audit path
    if len(leaves) == 1: return []
    k = 1
    while k * 2 < len(leaves): k *= 2
    if m < k: return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]
def pae(t, p): return b"DSSEv1 %d %s %d %s" % (len(t), t, len(p), p)

ORIGIN = "rekor.test - 1234567890"; NAME = "rekor.test"
INTEGRATED = 1735689600  # 2025-01-01T00:00:00Z
TREE, IDX, GLOBAL_IDX = 7, 4, 1000004

def checkpoint(log_key, size, root, signer=None, root_in_note=None):
    note = "%s\n%d\n%s\n" % (ORIGIN, size, B64(root_in_note or root))
    hint = hashlib.sha256(spki(log_key)).digest()[:4]
    sig = sign(signer or log_key, note.encode())
    return note + "\n\u2014 %s %s\n" % (NAME, B64(hint + sig))

def build(kind, user_key, log_key, artifact, mut=()):
    log_id = hashlib.sha256(spki(log_key)).digest()
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"publicKey": {"hint": B64(hashlib.sha256(spki(user_key)).digest())}}}
    if kind == "hashedrekord":
        signed = artifact if "bad-signature" not in mut else artifact + b"x"
        sig = sign(user_key, signed)
        body_digest = hashlib.sha256(artifact if "body-hash-mismatch" not in mut else artifact + b"y").hexdigest()
        body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": body_digest}},
            "signature": {"content": B64(sig), "publicKey": {"content": B64(pem(user_key))}}}}
        bundle["messageSignature"] = {"messageDigest": {"algorithm": "SHA2_256", "digest": B64(hashlib.sha256(artifact).digest())},
                                      "signature": B64(sig)}
        kv = {"kind": "hashedrekord", "version": "0.0.1"}
    else:
        stmt = {"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "a.txt", "digest": {"sha256": hashlib.sha256(artifact).hexdigest()}}],
                "predicateType": "https://example.com/test", "predicate": {}}
        payload = json.dumps(stmt, separators=(',', ':')).encode()
        ptype = "application/vnd.in-toto+json"
        sig = sign(user_key, pae(ptype.encode(), payload) if "bad-signature" not in mut else payload)
        env = {"payload": B64(payload), "payloadType": ptype, "signatures": [{"sig": B64(sig), "keyid": ""}]}
        body = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
            "envelope": {"payloadType": ptype, "signatures": [{"publicKey": B64(pem(user_key)), "sig": B64(B64(sig).encode())}]},
            "hash": {"algorithm": "sha256", "value": hashlib.sha256(jcs(env)).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload if "body-hash-mismatch" not in mut else payload + b"y").hexdigest()}}}}
        bundle["dsseEnvelope"] = env
        kv = {"kind": "intoto", "version": "0.0.2"}
        if kind == "dsse":  # Rekor dsse v0.0.1 body (what sigstore-go / cosign v3 log for DSSE)
            body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(jcs(env)).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload if "body-hash-mismatch" not in mut else payload + b"y").hexdigest()},
                "signatures": [{"signature": B64(sig), "verifier": B64(pem(user_key))}]}}
            kv = {"kind": "dsse", "version": "0.0.1"}
    body_raw = jcs(body)
    leaves = [leaf_hash(b"other leaf %d" % i) for i in range(TREE)]
    leaves[IDX] = leaf_hash(body_raw)
    root = mth(leaves); proof = path(IDX, leaves)
    if "bad-inclusion-proof" in mut: proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    other = ec.generate_private_key(ec.SECP256R1())
    cp = checkpoint(log_key, TREE, root,
                    signer=other if "bad-checkpoint-sig" in mut else None,
                    root_in_note=hashlib.sha256(b"not the root").digest() if "checkpoint-root-mismatch" in mut else None)
    set_payload = jcs({"body": B64(body_raw), "integratedTime": INTEGRATED, "logID": log_id.hex(), "logIndex": GLOBAL_IDX})
    tle = {"logIndex": str(GLOBAL_IDX), "logId": {"keyId": B64(log_id)}, "kindVersion": kv,
           "integratedTime": str(INTEGRATED),
           "inclusionPromise": {"signedEntryTimestamp": B64(sign(log_key, set_payload))},
           "inclusionProof": {"logIndex": str(IDX), "rootHash": B64(root), "treeSize": str(TREE),
                              "hashes": [B64(h) for h in proof], "checkpoint": {"envelope": cp}},
           "canonicalizedBody": B64(body_raw)}
    bundle["verificationMaterial"]["tlogEntries"] = [tle]
    bundle["verificationMaterial"]["timestampVerificationData"] = {"rfc3161Timestamps": []}
    # reorder so content comes after verificationMaterial
    out = {"mediaType": bundle["mediaType"], "verificationMaterial": bundle["verificationMaterial"]}
    for k in ("messageSignature", "dsseEnvelope"):
        if k in bundle: out[k] = bundle[k]
    return out

def trusted_root(log_key):
    return {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.test", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": B64(spki(log_key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                     "validFor": {"start": "2020-01-01T00:00:00Z"}},
                       "logId": {"keyId": B64(hashlib.sha256(spki(log_key)).digest())}}],
            "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}

CASES = [  # name, kind, mutations, why
    ("hashedrekord-happy-path", "hashedrekord", (), "PASS: valid everything"),
    ("hashedrekord-bad-signature_fail", "hashedrekord", ("bad-signature",), "FAIL: messageSignature is over artifact+'x' (logged consistently, so only the signature check catches it)"),
    ("hashedrekord-wrong-key_fail", "hashedrekord", ("wrong-key",), "FAIL: key.pub is a different P-256 key than the signer"),
    ("hashedrekord-artifact-mismatch_fail", "hashedrekord", ("artifact-mismatch",), "FAIL: artifact file differs from what was signed"),
    ("hashedrekord-body-hash-mismatch_fail", "hashedrekord", ("body-hash-mismatch",), "FAIL: tlog body spec.data.hash.value != sha256(artifact) (proof/checkpoint valid for that body)"),
    ("hashedrekord-bad-inclusion-proof_fail", "hashedrekord", ("bad-inclusion-proof",), "FAIL: inclusionProof.hashes[1] has a flipped bit -> computed root != rootHash"),
    ("hashedrekord-bad-checkpoint-sig_fail", "hashedrekord", ("bad-checkpoint-sig",), "FAIL: checkpoint signed by a key not in trusted root (key hint still claims the trusted key)"),
    ("hashedrekord-checkpoint-root-mismatch_fail", "hashedrekord", ("checkpoint-root-mismatch",), "FAIL: checkpoint correctly signed but its root line != inclusionProof.rootHash"),
    ("hashedrekord-untrusted-log_fail", "hashedrekord", ("untrusted-log",), "FAIL: trusted_root.json holds a different Rekor key (logId not found)"),
    ("dsse-happy-path", "intoto", (), "PASS: valid DSSE logged as Rekor intoto/0.0.2 (cosign v2 attest-blob style), 7-leaf tree"),
    ("dsse-bad-signature_fail", "intoto", ("bad-signature",), "FAIL: DSSE sig is over raw payload, not PAE"),
    ("dsse-artifact-mismatch_fail", "intoto", ("artifact-mismatch",), "FAIL: artifact sha256 not in statement subjects"),
    ("dsse-payload-hash-mismatch_fail", "intoto", ("body-hash-mismatch",), "FAIL: tlog body payloadHash != sha256(payload)"),
    ("dsse-bad-inclusion-proof_fail", "intoto", ("bad-inclusion-proof",), "FAIL: flipped bit in inclusion proof hash"),
    ("dsse-bad-checkpoint-sig_fail", "intoto", ("bad-checkpoint-sig",), "FAIL: checkpoint signed by wrong key"),
    ("dsse001-happy-path", "dsse", (), "PASS: DSSE bundle logged as Rekor dsse/0.0.1 (sigstore-go / cosign v3 style)"),
    ("dsse001-payload-hash-mismatch_fail", "dsse", ("body-hash-mismatch",), "FAIL: dsse body spec.payloadHash != sha256(payload)"),
    ("dsse001-wrong-key_fail", "dsse", ("wrong-key",), "FAIL: key.pub is not the signer"),
]

if __name__ == "__main__":
    outdir = sys.argv[1]
    artifact = open(os.path.join(os.path.dirname(__file__), "..", "_raw", "a.txt"), "rb").read()
    user = ec.generate_private_key(ec.SECP256R1()); log = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    for name, kind, mut, why in CASES:
        d = os.path.join(outdir, name); os.makedirs(d, exist_ok=True)
        b = build(kind, user, log, artifact, mut)
        open(os.path.join(d, "bundle.sigstore.json"), "w").write(json.dumps(b, indent=2) + "\n")
        open(os.path.join(d, "key.pub"), "wb").write(pem(other if "wrong-key" in mut else user))
        open(os.path.join(d, "trusted_root.json"), "w").write(json.dumps(trusted_root(other if "untrusted-log" in mut else log), indent=2) + "\n")
        open(os.path.join(d, "a.txt"), "wb").write(artifact if "artifact-mismatch" not in mut else artifact + b"tampered\n")
        open(os.path.join(d, "README"), "w").write("SYNTHETIC (tools/gen_synthetic.py). " + why + "\n")
