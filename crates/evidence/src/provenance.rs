//! SLSA Provenance v1: writing it for a release (`vireo attest provenance`) and checking it at
//! the gate.
//!
//! The gate's check is a pure function of [`ProvenanceFacts`]: the canary image, the trust
//! config (keys and builder allow-list) and every envelope on file for the image's digest. The
//! facts travel in the gate's recorded input and its VSA, so replay re-runs this same function
//! on the same bytes. Choices where the spec is silent:
//! - no `provenance` trust config in `control.yaml` means the gate does not require
//!   provenance (as Sigstore's policy-controller enforces only where a policy applies); the
//!   VSA then says so (`provenance: null`);
//! - envelopes are indexed by their subjects' digests when uploaded and are not judged then:
//!   an untrusted or mis-built attestation is on file and the gate names why it does not count;
//! - one passing attestation is enough; otherwise the reason lists why each candidate failed.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::dsse::{self, Envelope};
use super::keys::PublicKey;
use super::{canonical, rfc3339, sha256_hex, statement};

pub const PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// What `vireo attest provenance` says it built: a Cargo workspace at a commit.
pub const BUILD_TYPE: &str = "https://vireo.dev/build/cargo/v1";

/// `name@sha256:<64 hex>` split into the name and the hex digest; `None` unless the reference
/// is by a well-formed SHA-256 digest.
pub fn image_digest(image: &str) -> Option<(&str, &str)> {
    let (name, hex) = image.split_once("@sha256:")?;
    (!name.is_empty() && is_sha256_hex(hex)).then_some((name, hex))
}

/// 64 lower-case hex digits: a SHA-256 digest as image references and statements write it.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The provenance policy of `control.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustConfig {
    /// SPKI PEM files of the builders' Ed25519 keys.
    pub trusted_keys: Vec<std::path::PathBuf>,
    /// `runDetails.builder.id` values accepted (exact match).
    pub builders: Vec<String>,
}

pub use vireo_core::attestation::{Attestation, ProvenanceFacts};

/// The attestation that satisfied the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub log_index: u64,
    /// SHA-256 of the envelope's RFC 8785 form (as it sits in the log).
    pub envelope_sha256: String,
    pub builder: String,
}

/// The gate's provenance verdict: the accepted attestation, or why none is.
pub fn evaluate(f: &ProvenanceFacts) -> Result<Accepted, String> {
    let need = "the provenance gate needs the canary image referenced by digest \
                (name@sha256:<64 hex>)";
    let image = f
        .image
        .as_deref()
        .ok_or_else(|| format!("spec.canary.image is not set: {need}"))?;
    let (_, digest) = image_digest(image).ok_or_else(|| {
        format!("spec.canary.image {image:?} is not referenced by digest: {need}")
    })?;
    let mut keys = Vec::new();
    for pem in &f.trusted_keys {
        keys.push(PublicKey::from_pem(pem).map_err(|e| format!("a trusted provenance key: {e}"))?);
    }
    if f.attestations.is_empty() {
        return Err(format!(
            "no SLSA provenance attests sha256:{digest}; write one with `vireo attest \
             provenance` and upload it with `vireo attest upload`"
        ));
    }
    let mut why = Vec::new();
    for a in &f.attestations {
        match check_one(a, digest, &keys, &f.builders) {
            Ok(accepted) => return Ok(accepted),
            Err(reason) => why.push(format!("provenance at log entry {}: {reason}", a.log_index)),
        }
    }
    Err(why.join("; "))
}

fn check_one(
    a: &Attestation,
    digest: &str,
    keys: &[PublicKey],
    builders: &[String],
) -> Result<Accepted, String> {
    let body = dsse::verify(&a.envelope, keys, 1, &[dsse::IN_TOTO]).map_err(|e| {
        let ids: Vec<&str> = a
            .envelope
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect();
        format!("not signed by a trusted key ({e}; key id hints {ids:?})")
    })?;
    let st: Value =
        serde_json::from_slice(&body).map_err(|e| format!("the payload is not JSON: {e}"))?;
    if st["predicateType"] != PROVENANCE_V1 {
        return Err(format!(
            "predicate type {} is not {PROVENANCE_V1}",
            st["predicateType"]
        ));
    }
    let subjects: Vec<&str> = super::subject_digests(&st).collect();
    if !subjects.contains(&digest) {
        return Err(format!(
            "its subjects {subjects:?} do not include the image's sha256:{digest}"
        ));
    }
    let builder = st["predicate"]["runDetails"]["builder"]["id"]
        .as_str()
        .ok_or("runDetails.builder.id is missing")?;
    if !builders.iter().any(|b| b == builder) {
        return Err(format!(
            "builder {builder:?} is not in the allow-list {builders:?}"
        ));
    }
    let bytes = canonical(&a.envelope).map_err(|e| e.to_string())?;
    Ok(Accepted {
        log_index: a.log_index,
        envelope_sha256: sha256_hex(&bytes),
        builder: builder.to_string(),
    })
}

/// The sha256 digests an uploaded envelope's statement names as subjects, after checking it
/// is an in-toto SLSA Provenance v1 statement (no signature check: that is the gate's).
pub fn subjects(envelope: &Envelope) -> Result<Vec<String>, String> {
    if envelope.payload_type != dsse::IN_TOTO {
        return Err(format!(
            "payloadType {:?} is not {:?}",
            envelope.payload_type,
            dsse::IN_TOTO
        ));
    }
    if envelope.signatures.is_empty() {
        return Err("the envelope has no signatures".into());
    }
    let body = dsse::decode_b64(&envelope.payload).ok_or("payload is not base64")?;
    let st: Value =
        serde_json::from_slice(&body).map_err(|e| format!("payload is not JSON: {e}"))?;
    if st["_type"] != super::STATEMENT_TYPE {
        return Err(format!(
            "payload is not an in-toto Statement v1 (_type {})",
            st["_type"]
        ));
    }
    if st["predicateType"] != PROVENANCE_V1 {
        return Err(format!(
            "predicateType {} is not {PROVENANCE_V1}",
            st["predicateType"]
        ));
    }
    let digests: Vec<String> = super::subject_digests(&st)
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|d| d.to_ascii_lowercase())
        .collect();
    if digests.is_empty() {
        return Err("no subject has a sha256 digest".into());
    }
    Ok(digests)
}

/// One `[[package]]` of a Cargo.lock.
#[derive(Debug, Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

/// Every pin of a Cargo.lock as SLSA ResourceDescriptors: registry crates by checksum
/// (`pkg:cargo/NAME@VERSION`), git crates by commit. Path crates are the build's own source,
/// which the commit covers.
pub fn lockfile_pins(text: &str) -> Result<Vec<Value>, String> {
    let lock: Lockfile = toml::from_str(text).map_err(|e| format!("not a Cargo.lock: {e}"))?;
    let mut pins = Vec::new();
    for p in lock.package {
        let Some(source) = p.source else { continue };
        let uri = format!("pkg:cargo/{}@{}", p.name, p.version);
        if let Some(sum) = p.checksum {
            pins.push(json!({"name": p.name, "uri": uri, "digest": {"sha256": sum}}));
        } else if let Some((_, commit)) =
            source.strip_prefix("git+").and_then(|s| s.rsplit_once('#'))
        {
            pins.push(json!({"name": p.name, "uri": source, "digest": {"gitCommit": commit}}));
        } else {
            return Err(format!(
                "package {} {} from {source} has no checksum or commit to pin",
                p.name, p.version
            ));
        }
    }
    Ok(pins)
}

/// What `vireo attest provenance` is told about a build.
pub struct BuildFacts<'a> {
    /// The image's name (subject name) and its SHA-256 hex digest.
    pub image_name: &'a str,
    pub image_digest: &'a str,
    pub git_commit: &'a str,
    pub repository: &'a str,
    pub builder_id: &'a str,
    /// The lockfile's path (as recorded) and text.
    pub lockfile: (&'a str, &'a str),
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// A SLSA Provenance v1 statement for a build.
pub fn statement_for(b: &BuildFacts) -> Result<Value, String> {
    let commit = b.git_commit.to_ascii_lowercase();
    if !matches!(commit.len(), 40 | 64) || !commit.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "--git-commit {:?} is not a full commit hash (40 or 64 hex digits)",
            b.git_commit
        ));
    }
    let mut deps = vec![json!({
        "uri": format!("git+{}@{commit}", b.repository),
        "digest": {"gitCommit": commit},
    })];
    deps.extend(lockfile_pins(b.lockfile.1).map_err(|e| format!("{}: {e}", b.lockfile.0))?);
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": {"uri": b.repository, "digest": {"gitCommit": commit}},
                "lockfile": {"path": b.lockfile.0, "digest": {"sha256": sha256_hex(b.lockfile.1.as_bytes())}},
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": b.builder_id},
            "metadata": {
                "invocationId": format!("{}@{}", b.builder_id, b.started_ms),
                "startedOn": rfc3339(b.started_ms),
                "finishedOn": rfc3339(b.finished_ms),
            },
        },
    });
    Ok(statement(
        vec![json!({"name": b.image_name, "digest": {"sha256": b.image_digest}})],
        PROVENANCE_V1,
        predicate,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "vireo"
version = "0.1.0"

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f"

[[package]]
name = "pingora"
version = "0.9.0"
source = "git+https://github.com/cloudflare/pingora?rev=abc#0123456789abcdef0123456789abcdef01234567"
"#;

    const IMAGE: &str =
        "reg.example/checkout@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn attest(key: &SigningKey, digest: &str, builder: &str) -> Attestation {
        let st = statement_for(&BuildFacts {
            image_name: "reg.example/checkout",
            image_digest: digest,
            git_commit: "0123456789abcdef0123456789abcdef01234567",
            repository: "https://example.com/checkout",
            builder_id: builder,
            lockfile: ("Cargo.lock", LOCK),
            started_ms: 1,
            finished_ms: 2,
        })
        .unwrap();
        Attestation {
            log_index: 7,
            envelope: dsse::sign(dsse::IN_TOTO, &canonical(&st).unwrap(), key),
        }
    }

    fn facts(key: &SigningKey, attestations: Vec<Attestation>) -> ProvenanceFacts {
        ProvenanceFacts {
            image: Some(IMAGE.into()),
            trusted_keys: vec![key.public().to_pem()],
            builders: vec!["https://ci.example/builder".into()],
            attestations,
        }
    }

    #[test]
    fn lockfile_pins_registry_and_git_crates_and_skips_path_crates() {
        let pins = lockfile_pins(LOCK).unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(pins[0]["uri"], "pkg:cargo/serde@1.0.200");
        assert_eq!(
            pins[1]["digest"]["gitCommit"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert!(lockfile_pins("[[package]]\nname = 1").is_err());
    }

    #[test]
    fn the_gate_accepts_trusted_provenance_for_the_image_and_names_each_failure() {
        let key = SigningKey::generate().unwrap();
        let digest = &IMAGE[IMAGE.len() - 64..];
        let good = attest(&key, digest, "https://ci.example/builder");
        assert_eq!(
            evaluate(&facts(&key, vec![good.clone()]))
                .unwrap()
                .log_index,
            7
        );
        assert_eq!(subjects(&good.envelope).unwrap(), vec![digest.to_string()]);

        let none = evaluate(&facts(&key, vec![])).unwrap_err();
        assert!(
            none.contains("no SLSA provenance attests sha256:bbbb"),
            "{none}"
        );

        let other = attest(&key, &"c".repeat(64), "https://ci.example/builder");
        let err = evaluate(&facts(&key, vec![other])).unwrap_err();
        assert!(
            err.contains("do not include the image's sha256:bbbb"),
            "{err}"
        );

        let stranger = SigningKey::generate().unwrap();
        let untrusted = attest(&stranger, digest, "https://ci.example/builder");
        let err = evaluate(&facts(&key, vec![untrusted])).unwrap_err();
        assert!(err.contains("not signed by a trusted key"), "{err}");

        let rogue = attest(&key, digest, "https://rogue.example/builder");
        let err = evaluate(&facts(&key, vec![rogue])).unwrap_err();
        assert!(err.contains("not in the allow-list"), "{err}");

        let mut by_tag = facts(&key, vec![good]);
        by_tag.image = Some("reg.example/checkout:v2".into());
        assert!(evaluate(&by_tag)
            .unwrap_err()
            .contains("is not referenced by digest"));
    }

    #[test]
    fn a_bad_commit_is_refused() {
        let err = statement_for(&BuildFacts {
            image_name: "x",
            image_digest: &"a".repeat(64),
            git_commit: "main",
            repository: "r",
            builder_id: "b",
            lockfile: ("Cargo.lock", LOCK),
            started_ms: 0,
            finished_ms: 0,
        })
        .unwrap_err();
        assert!(err.contains("--git-commit \"main\""), "{err}");
    }
}
