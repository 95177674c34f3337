//! Offline verification of a standard Sigstore bundle (v0.3) signed with a managed key, as
//! `cosign sign-blob --key K --bundle B` (a message signature, Rekor kind `hashedrekord`) or
//! `cosign attest-blob --key K --bundle B` (a DSSE envelope, Rekor kind `intoto` 0.0.2 or
//! `dsse` 0.0.1) write them: `vireo verify --bundle B --key PUB --trusted-root ROOT ARTIFACT`.
//!
//! Checks, each a row of the report: the bundle's shape; the signature over the artifact (or
//! the DSSE PAE, whose statement must name the artifact's digest); the transparency-log entry's
//! body against the bundle (same signature, key and digests: otherwise a valid proof for some
//! other entry would pass); the log is one the trusted root lists; the RFC 6962 inclusion proof
//! to the root hash; and the checkpoint, signed by that log's key, committing to the same root
//! and size. Without a trusted root the log cannot be authenticated offline, and verification
//! fails saying so.
//!
//! Hand-written because the `sigstore` crate's bundle verifier accepts certificates only; the
//! key handling and signature checks are the crate's (`CosignVerificationKey`), the Merkle
//! proof is [`crate::merkle`]. The shapes are proto3 JSON: 64-bit integers are strings, bytes
//! are standard base64.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};

use super::bundle::{Check, Report};
use super::dsse;

const MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
    #[serde(default)]
    dsse_envelope: Option<dsse::Envelope>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    public_key: Option<Value>,
    #[serde(default)]
    certificate: Option<Value>,
    #[serde(default)]
    x509_certificate_chain: Option<Value>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    log_id: LogId,
    kind_version: KindVersion,
    #[serde(default)]
    inclusion_proof: Option<InclusionProof>,
    canonicalized_body: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Debug, Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionProof {
    /// The index in the log shard's tree (not the entry's global `logIndex`).
    log_index: String,
    root_hash: String,
    tree_size: String,
    #[serde(default)]
    hashes: Vec<String>,
    #[serde(default)]
    checkpoint: Option<CheckpointEnvelope>,
}

#[derive(Debug, Deserialize)]
struct CheckpointEnvelope {
    envelope: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    #[serde(default)]
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Debug, Deserialize)]
struct TrustedRoot {
    #[serde(default)]
    tlogs: Vec<TrustedLog>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedLog {
    #[serde(default)]
    base_url: String,
    public_key: TrustedKey,
    log_id: LogId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedKey {
    #[serde(default)]
    raw_bytes: Option<String>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn spki_der(k: &CosignVerificationKey) -> &[u8] {
    match k {
        CosignVerificationKey::RSA_PSS_SHA256(d)
        | CosignVerificationKey::RSA_PKCS1_SHA256(d)
        | CosignVerificationKey::ECDSA_P256_SHA256_ASN1(d)
        | CosignVerificationKey::ECDSA_P384_SHA384_ASN1(d)
        | CosignVerificationKey::ECDSA_P521_SHA512_ASN1(d)
        | CosignVerificationKey::ED25519(d) => d,
    }
}

/// A PEM given base64-encoded in a log entry body, as its SPKI DER.
fn body_key(b64_pem: Option<&str>) -> Result<Vec<u8>, String> {
    let pem = b64_pem
        .and_then(b64)
        .ok_or("the entry's public key is missing")?;
    let key = CosignVerificationKey::try_from_pem(&pem)
        .map_err(|e| format!("the entry's public key: {e}"))?;
    Ok(spki_der(&key).to_vec())
}

/// What was signed, as the bundle carries it.
enum Content<'a> {
    Message {
        signature: Vec<u8>,
        digest: [u8; 32],
    },
    Dsse {
        env: &'a dsse::Envelope,
        payload: Vec<u8>,
        signature: Vec<u8>,
    },
}

/// Verifies `bundle` (JSON) for `artifact` with the signer's `key` (PEM) and the logs of
/// `trusted_root` (JSON). Never panics on input; every failure names what is wrong.
pub fn verify(bundle: &[u8], key: &[u8], trusted_root: Option<&[u8]>, artifact: &[u8]) -> Report {
    let mut checks = Vec::new();
    let mut add = |check: &str, result: Result<String, String>| {
        let ok = result.is_ok();
        checks.push(Check {
            check: check.into(),
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    };
    let report = |checks| Report {
        checks,
        envelopes: 1,
    };

    let parsed = serde_json::from_slice::<Bundle>(bundle)
        .map_err(|e| format!("not a Sigstore bundle: {e}"))
        .and_then(|b| {
            if !MEDIA_TYPES.contains(&b.media_type.as_str()) {
                return Err(format!(
                    "media type {:?} is not a v0.3 bundle",
                    b.media_type
                ));
            }
            let m = &b.verification_material;
            if m.certificate.is_some()
                || m.x509_certificate_chain.is_some()
                || m.public_key.is_none()
            {
                return Err(
                    "not a managed-key bundle (it carries a certificate, not publicKey)".into(),
                );
            }
            if m.tlog_entries.is_empty() {
                return Err("no transparency-log entry".into());
            }
            Ok(b)
        });
    let b = match parsed {
        Ok(b) => {
            add("bundle", Ok("Sigstore bundle v0.3, managed key".into()));
            b
        }
        Err(e) => {
            add("bundle", Err(e));
            return report(checks);
        }
    };
    let signer = match CosignVerificationKey::try_from_pem(key) {
        Ok(k) => {
            let alg = match &k {
                CosignVerificationKey::RSA_PSS_SHA256(_)
                | CosignVerificationKey::RSA_PKCS1_SHA256(_) => "RSA",
                CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_) => "ECDSA P-256",
                CosignVerificationKey::ECDSA_P384_SHA384_ASN1(_) => "ECDSA P-384",
                CosignVerificationKey::ECDSA_P521_SHA512_ASN1(_) => "ECDSA P-521",
                CosignVerificationKey::ED25519(_) => "Ed25519",
            };
            let id = super::keys::hex(&Sha256::digest(spki_der(&k)));
            add("key", Ok(format!("{alg} key sha256:{}…", &id[..16])));
            k
        }
        Err(e) => {
            add(
                "key",
                Err(format!("--key is not a supported public key PEM: {e}")),
            );
            return report(checks);
        }
    };
    let digest: [u8; 32] = Sha256::digest(artifact).into();

    // The signature, and the artifact it covers.
    let content = match (&b.message_signature, &b.dsse_envelope) {
        (Some(m), None) => b64(&m.signature)
            .ok_or_else(|| "messageSignature.signature is not base64".to_string())
            .and_then(|signature| {
                if let Some(d) = &m.message_digest {
                    if d.algorithm != "SHA2_256" || b64(&d.digest).as_deref() != Some(&digest[..]) {
                        return Err(format!(
                            "the bundle's message digest is not the artifact's sha256 {}",
                            super::keys::hex(&digest)
                        ));
                    }
                }
                signer
                    .verify_signature(Signature::Raw(&signature), artifact)
                    .map_err(|_| {
                        "the signature does not verify over the artifact with --key".to_string()
                    })?;
                Ok(Content::Message { signature, digest })
            }),
        (None, Some(env)) => dsse_content(env, &signer, &digest),
        _ => Err("the bundle must carry exactly one of messageSignature and dsseEnvelope".into()),
    };
    let content = match content {
        Ok(c) => {
            add(
                "signature",
                Ok(match c {
                    Content::Message { .. } => "message signature over the artifact".into(),
                    Content::Dsse { .. } => {
                        "DSSE envelope; its statement names the artifact's sha256".into()
                    }
                }),
            );
            c
        }
        Err(e) => {
            add("signature", Err(e));
            return report(checks);
        }
    };

    let roots: Option<Result<TrustedRoot, String>> = trusted_root.map(|r| {
        serde_json::from_slice(r).map_err(|e| format!("--trusted-root is not a trusted root: {e}"))
    });
    for (i, entry) in b.verification_material.tlog_entries.iter().enumerate() {
        let n = if b.verification_material.tlog_entries.len() > 1 {
            format!(" [{i}]")
        } else {
            String::new()
        };
        let body = match b64(&entry.canonicalized_body) {
            Some(body) => body,
            None => {
                add(
                    &format!("log entry{n}"),
                    Err("canonicalizedBody is not base64".into()),
                );
                continue;
            }
        };
        add(
            &format!("log entry{n}"),
            entry_matches(entry, &body, &content, spki_der(&signer)),
        );
        let log_key = match &roots {
            None => Err("no --trusted-root given: the log's key is unknown, so its checkpoint \
                         cannot be authenticated offline; pass the trusted root (trusted_root.json)"
                .to_string()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(root)) => trusted_log(root, &entry.log_id.key_id),
        };
        let log_key = match log_key {
            Ok((key, url)) => {
                add(
                    &format!("trusted log{n}"),
                    Ok(format!("{url} is in the trusted root")),
                );
                Some(key)
            }
            Err(e) => {
                add(&format!("trusted log{n}"), Err(e));
                None
            }
        };
        let Some(proof) = &entry.inclusion_proof else {
            add(
                &format!("inclusion proof{n}"),
                Err("the entry has no inclusion proof".into()),
            );
            continue;
        };
        let parsed = parse_proof(proof);
        add(
            &format!("inclusion proof{n}"),
            parsed
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|(index, size, root, hashes)| {
                    crate::merkle::verify_inclusion(
                        &crate::merkle::leaf_hash(&body),
                        *index,
                        *size,
                        hashes,
                        root,
                    )
                    .map(|()| format!("leaf {index} of {size} leads to the root hash"))
                    .map_err(|e| format!("the proof does not lead to rootHash: {e}"))
                }),
        );
        if let (Some(key), Ok((_, size, root, _))) = (&log_key, &parsed) {
            add(
                &format!("checkpoint{n}"),
                checkpoint(proof, key, *size, root),
            );
        } else {
            add(
                &format!("checkpoint{n}"),
                Err("not checked: needs a trusted log key and a readable proof".into()),
            );
        }
    }
    report(checks)
}

fn dsse_content<'a>(
    env: &'a dsse::Envelope,
    signer: &CosignVerificationKey,
    digest: &[u8; 32],
) -> Result<Content<'a>, String> {
    let payload = b64(&env.payload).ok_or("dsseEnvelope.payload is not base64")?;
    let [sig] = env.signatures.as_slice() else {
        return Err(format!(
            "the DSSE envelope has {} signatures; one is expected",
            env.signatures.len()
        ));
    };
    let signature = b64(&sig.sig).ok_or("the DSSE signature is not base64")?;
    signer
        .verify_signature(
            Signature::Raw(&signature),
            &dsse::pae(&env.payload_type, &payload),
        )
        .map_err(|_| "the DSSE signature does not verify with --key".to_string())?;
    if env.payload_type != dsse::IN_TOTO {
        return Err(format!(
            "payload type {:?} is not an in-toto statement",
            env.payload_type
        ));
    }
    let st: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    if st["_type"] != super::STATEMENT_TYPE {
        return Err(format!(
            "statement _type {} is not {}",
            st["_type"],
            super::STATEMENT_TYPE
        ));
    }
    let want = super::keys::hex(digest);
    let named = super::subject_digests(&st).any(|d| d == want);
    if !named {
        return Err(format!(
            "no subject of the statement has the artifact's sha256 {want}"
        ));
    }
    Ok(Content::Dsse {
        env,
        payload,
        signature,
    })
}

/// The log entry's body must describe this bundle: the same signature, key and digests.
fn entry_matches(
    entry: &TlogEntry,
    body: &[u8],
    content: &Content,
    key_der: &[u8],
) -> Result<String, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let kv = (
        &entry.kind_version.kind[..],
        &entry.kind_version.version[..],
    );
    if v["kind"] != kv.0 || v["apiVersion"] != kv.1 {
        return Err(format!(
            "the body is {}/{}, the entry says {}/{}",
            v["kind"], v["apiVersion"], kv.0, kv.1
        ));
    }
    let spec = &v["spec"];
    let same_key = |k: Result<Vec<u8>, String>| match k {
        Ok(k) if k == key_der => Ok(()),
        Ok(_) => Err("the entry was logged with another public key".to_string()),
        Err(e) => Err(e),
    };
    let hex_of = |bytes: &[u8]| super::keys::hex(&Sha256::digest(bytes));
    match (kv, content) {
        (("hashedrekord", "0.0.1"), Content::Message { signature, digest }) => {
            let hash = &spec["data"]["hash"];
            if hash["algorithm"] != "sha256" || hash["value"].as_str() != Some(&super::keys::hex(digest)) {
                return Err("the entry records another artifact digest".into());
            }
            if spec["signature"]["content"].as_str().and_then(b64).as_deref() != Some(&signature[..]) {
                return Err("the entry records another signature".into());
            }
            same_key(body_key(spec["signature"]["publicKey"]["content"].as_str()))?;
        }
        (("intoto", "0.0.2"), Content::Dsse { env, payload, signature }) => {
            let c = &spec["content"];
            if c["payloadHash"]["value"].as_str() != Some(&hex_of(payload)) {
                return Err("the entry records another payload hash".into());
            }
            let [s] = c["envelope"]["signatures"].as_array().map(Vec::as_slice).unwrap_or_default() else {
                return Err("the entry's envelope must have one signature".into());
            };
            // Base64 twice: the log stores the base64 text of the signature, base64-encoded.
            let sig = s["sig"].as_str().and_then(b64).and_then(|t| String::from_utf8(t).ok()).and_then(|t| b64(&t));
            if sig.as_deref() != Some(&signature[..]) {
                return Err("the entry records another signature".into());
            }
            if c["envelope"]["payloadType"].as_str().is_some_and(|t| t != env.payload_type) {
                return Err("the entry records another payload type".into());
            }
            same_key(body_key(s["publicKey"].as_str()))?;
        }
        (("dsse", "0.0.1"), Content::Dsse { payload, signature, .. }) => {
            if spec["payloadHash"]["value"].as_str() != Some(&hex_of(payload)) {
                return Err("the entry records another payload hash".into());
            }
            let [s] = spec["signatures"].as_array().map(Vec::as_slice).unwrap_or_default() else {
                return Err("the entry must have one signature".into());
            };
            if s["signature"].as_str().and_then(b64).as_deref() != Some(&signature[..]) {
                return Err("the entry records another signature".into());
            }
            same_key(body_key(s["verifier"].as_str()))?;
        }
        ((kind, version), _) => {
            return Err(format!(
                "log entry kind {kind}/{version} does not fit this bundle (supported: hashedrekord/0.0.1 \
                 for message signatures; intoto/0.0.2 and dsse/0.0.1 for DSSE)"
            ))
        }
    }
    Ok(format!(
        "{}/{} body matches the bundle's signature, key and digest",
        kv.0, kv.1
    ))
}

/// The trusted log with this log id, and its key. The id must be the SHA-256 of the key.
fn trusted_log(
    root: &TrustedRoot,
    key_id: &str,
) -> Result<(CosignVerificationKey, String), String> {
    let log = root
        .tlogs
        .iter()
        .find(|l| l.log_id.key_id == key_id)
        .ok_or_else(|| format!("log {key_id} is not in the trusted root"))?;
    let der = log
        .public_key
        .raw_bytes
        .as_deref()
        .and_then(b64)
        .ok_or("the trusted log's key is missing")?;
    if b64(key_id).as_deref() != Some(&Sha256::digest(&der)[..]) {
        return Err(format!(
            "the trusted root's log id {key_id} is not the SHA-256 of its key"
        ));
    }
    let key = CosignVerificationKey::try_from_der(&der)
        .map_err(|e| format!("the trusted log's key: {e}"))?;
    Ok((key, log.base_url.clone()))
}

type Proof = (u64, u64, Vec<u8>, Vec<crate::merkle::Hash>);

fn parse_proof(p: &InclusionProof) -> Result<Proof, String> {
    let index = p
        .log_index
        .parse()
        .map_err(|_| "inclusionProof.logIndex is not a number")?;
    let size = p
        .tree_size
        .parse()
        .map_err(|_| "inclusionProof.treeSize is not a number")?;
    let root = b64(&p.root_hash)
        .filter(|r| r.len() == 32)
        .ok_or("rootHash is not 32 base64 bytes")?;
    let hashes = p
        .hashes
        .iter()
        .map(|h| b64(h).and_then(|h| <[u8; 32]>::try_from(h).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or("a proof hash is not 32 base64 bytes")?;
    Ok((index, size, root, hashes))
}

/// The checkpoint (a signed note) must be signed by the log's key and commit to the proof's
/// root and size.
fn checkpoint(
    p: &InclusionProof,
    key: &CosignVerificationKey,
    size: u64,
    root: &[u8],
) -> Result<String, String> {
    let text = &p
        .checkpoint
        .as_ref()
        .ok_or("the proof has no checkpoint")?
        .envelope;
    let split = text
        .find("\n\n")
        .ok_or("the checkpoint has no signature block")?;
    let (note, sigs) = (&text[..split + 1], &text[split + 2..]);
    let mut lines = note.lines();
    let origin = lines.next().unwrap_or_default();
    let cp_size: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("the checkpoint's size is unreadable")?;
    let cp_root = lines
        .next()
        .and_then(b64)
        .ok_or("the checkpoint's root is unreadable")?;
    let hint = &Sha256::digest(spki_der(key))[..4];
    let signed = sigs
        .lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .any(|l| {
            let sig = l
                .rsplit_once(' ')
                .and_then(|(_, s)| b64(s))
                .unwrap_or_default();
            sig.len() > 4
                && &sig[..4] == hint
                && key
                    .verify_signature(Signature::Raw(&sig[4..]), note.as_bytes())
                    .is_ok()
        });
    if !signed {
        return Err(format!(
            "no signature on checkpoint {origin:?} verifies with the trusted log's key"
        ));
    }
    if cp_size != size || cp_root != root {
        return Err(format!(
            "checkpoint {origin:?} commits to size {cp_size} and another root than the proof (size {size})"
        ));
    }
    Ok(format!(
        "{origin:?} at size {size}, signed by the trusted log"
    ))
}
