//! Evidence: what an auditor checks without calling us.
//!
//! Every lifecycle checkpoint, analysis verdict and gate decision becomes an in-toto
//! Statement (RFC 8785 canonical JSON), signed into a DSSE envelope with the control plane's
//! Ed25519 key and appended to a transparency log (RFC 6962 tree in the store, C2SP signed
//! checkpoints and receipts). Checkpoint statements of a rollout are hash-chained through
//! `previous`. Bundles carry all of it plus the keys; `vireo verify` checks a bundle offline
//! and `replay` recomputes a verdict from its recorded inputs.
//!
//! Code map: [`keys`] (Ed25519 on the `sigstore` crate), [`dsse`] (envelopes), [`note`]
//! (C2SP signed notes, checkpoints, receipts), [`log`] (the persisted tree), [`replay`]
//! (recomputing verdicts), [`bundle`] (export and offline verify), [`provenance`] (SLSA
//! provenance and the gate's check of it), [`rollback`] (the rollback envelope). This file builds the
//! statements and seals them; the store calls it inside the transaction that records what
//! a statement attests to, so the two commit together.

pub mod bundle;
pub mod dsse;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod note;
pub mod provenance;
pub mod replay;
pub mod rollback;
pub mod sigstore_bundle;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use keys::{hex, KeyError, SigningKey};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const CHECKPOINT_V1: &str = "https://vireo.dev/checkpoint/v1";
pub const ANALYSIS_V1: &str = "https://vireo.dev/analysis/v1";
pub const VSA_V1: &str = "https://slsa.dev/verification_summary/v1";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the transparency log failed: {0}")]
    Log(#[source] log::LogError),
    #[error("cannot encode a statement: {0}")]
    Json(#[from] serde_json::Error),
    #[error("evidence is not enabled on this store (no signing key)")]
    Disabled,
    #[error("cannot canonicalize a statement (RFC 8785): {0}")]
    Canonical(String),
}

/// The control plane's keys and its log's name.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Signs envelopes (`keys/signing.pem`, or `--signing-key`).
    pub signing: SigningKey,
    /// Signs log checkpoints (`keys/log.pem`).
    pub log: SigningKey,
    /// The log's origin line (and note key name): `vireo/<first 8 bytes of the log key's
    /// SHA-256>`, unique per log key and stable across restarts.
    pub origin: String,
}

impl Signer {
    /// Loads the keys under `<data_dir>/keys/`, creating them on first start; `signing_key`
    /// replaces the signing key with a given PKCS#8 PEM file (which must exist).
    pub fn open(data_dir: &Path, signing_key: Option<&Path>) -> Result<Signer, KeyError> {
        let signing = match signing_key {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                SigningKey::from_pem(&pem).map_err(|e| KeyError::Format {
                    what: path.display().to_string(),
                    detail: e.to_string(),
                })?
            }
            None => SigningKey::load_or_create(&data_dir.join("keys/signing.pem"))?.0,
        };
        let log = SigningKey::load_or_create(&data_dir.join("keys/log.pem"))?.0;
        Ok(Signer::new(signing, log))
    }

    pub fn new(signing: SigningKey, log: SigningKey) -> Signer {
        let origin = format!("vireo/{}", &hex(&Sha256::digest(log.public().raw()))[..16]);
        Signer {
            signing,
            log,
            origin,
        }
    }

    /// The log's current checkpoint, signed.
    pub fn checkpoint(
        &self,
        log: &dyn log::Log,
    ) -> Result<(note::Checkpoint, String), EvidenceError> {
        let size = log.size().map_err(EvidenceError::Log)?;
        let cp = note::Checkpoint {
            origin: self.origin.clone(),
            size,
            root: log.root(size).map_err(EvidenceError::Log)?,
        };
        let signed = cp.sign(&self.log);
        Ok((cp, signed))
    }

    /// A receipt for entry `index` against the current checkpoint.
    pub fn receipt(
        &self,
        log: &dyn log::Log,
        index: u64,
    ) -> Result<Option<note::Receipt>, EvidenceError> {
        let (cp, signed) = self.checkpoint(log)?;
        Ok(log
            .inclusion_proof(index, cp.size)
            .map_err(EvidenceError::Log)?
            .map(|proof| note::Receipt {
                index,
                proof,
                checkpoint: signed,
            }))
    }
}

/// RFC 8785 canonical JSON.
pub fn canonical(value: &impl Serialize) -> Result<Vec<u8>, EvidenceError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| EvidenceError::Canonical(e.to_string()))
}

pub use vireo_core::decision::{analysis_decision, gate_decision_id};
pub use vireo_core::digest::{rfc3339, sha256_hex};

/// An in-toto Statement v1.
pub fn statement(subject: Vec<Value>, predicate_type: &str, predicate: Value) -> Value {
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// The sha256 digests (hex, as written) of a statement's subjects.
pub fn subject_digests(statement: &Value) -> impl Iterator<Item = &str> {
    statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"]["sha256"].as_str())
}

/// The subject of a rollout's statements: the canary image by digest when it is referenced
/// by one (`name@sha256:…`), else the rollout spec itself (by the digest of its RFC 8785 form).
pub fn rollout_subject(spec: &vireo_core::spec::Rollout) -> Result<Value, EvidenceError> {
    if let Some((name, digest)) = spec
        .spec
        .canary
        .image
        .as_deref()
        .and_then(|i| i.split_once("@sha256:"))
    {
        return Ok(json!({"name": name, "digest": {"sha256": digest}}));
    }
    Ok(json!({
        "name": format!("rollout/{}", spec.name()),
        "digest": {"sha256": sha256_hex(&canonical(spec)?)},
    }))
}

/// Where a sealed statement went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub index: u64,
    /// SHA-256 (hex) of the logged envelope bytes.
    pub digest: String,
}

/// Signs a statement and appends its envelope to the log, inside the caller's transaction.
pub fn seal(
    log: &dyn log::Log,
    signer: &Signer,
    meta: &log::EntryMeta,
    statement: &Value,
) -> Result<Sealed, EvidenceError> {
    let envelope = dsse::sign(dsse::IN_TOTO, &canonical(statement)?, &signer.signing);
    let bytes = canonical(&envelope)?;
    let index = log.append(meta, &bytes).map_err(EvidenceError::Log)?;
    Ok(Sealed {
        index,
        digest: sha256_hex(&bytes),
    })
}

/// One lifecycle arrow, as the store saw it.
pub struct CheckpointFacts<'a> {
    pub rollout: &'a vireo_core::spec::Rollout,
    pub generation: u64,
    pub at_ms: u64,
    pub from: &'a str,
    pub to: &'a str,
    pub reason: &'a str,
    /// The state-machine input that caused it (JSON) and who sent it.
    pub input: &'a Value,
    pub actor: Option<&'a str>,
    /// The reason the actor gave (annotated only when given).
    pub reason_given: Option<&'a str>,
    /// The effects the transition asked for (JSON).
    pub effects: &'a Value,
}

/// Seals a checkpoint statement, chained to the rollout generation's previous one.
pub fn record_checkpoint(
    log: &dyn log::Log,
    signer: &Signer,
    f: &CheckpointFacts,
) -> Result<Sealed, EvidenceError> {
    let name = f.rollout.name();
    let previous = log
        .latest(name, f.generation, "checkpoint")
        .map_err(EvidenceError::Log)?;
    let sequence = previous.as_ref().map_or(1, |(_, n)| n + 1);
    let mut annotations = json!({"input": f.input, "actor": f.actor});
    if let Some(why) = f.reason_given {
        annotations["reason"] = json!(why);
    }
    let predicate = json!({
        "rollout": name,
        "generation": f.generation,
        "stage": f.to,
        "sequence": sequence,
        "time": rfc3339(f.at_ms),
        "inputs": [
            {
                "name": "rollout-spec",
                "digest": {"sha256": sha256_hex(&canonical(f.rollout)?)},
            },
            {
                "name": "input",
                "digest": {"sha256": sha256_hex(&canonical(f.input)?)},
                "annotations": annotations,
            },
        ],
        "outputs": {"from": f.from, "to": f.to, "effects": f.effects},
        "verdict": f.reason,
        "previous": previous.map(|(bytes, _)| sha256_hex(&bytes)),
    });
    let statement = statement(vec![rollout_subject(f.rollout)?], CHECKPOINT_V1, predicate);
    seal(
        log,
        signer,
        &log::EntryMeta {
            at_ms: f.at_ms,
            rollout: Some(name),
            generation: Some(f.generation),
            kind: "checkpoint",
            stage: f.to,
            decision: None,
        },
        &statement,
    )
}

/// A metric as an analysis run measured it: what replay needs besides the measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMetric {
    pub template: String,
    pub dry_run: bool,
    pub metric: vireo_core::analysis::Metric,
}

/// Seals an analysis verdict: every measurement with the metric definitions (template
/// digest, query, conditions, limits), so [`replay`] can recompute it.
pub fn record_analysis(
    log: &dyn log::Log,
    signer: &Signer,
    rollout: &vireo_core::spec::Rollout,
    generation: u64,
    at_ms: u64,
    planned: &[PlannedMetric],
    view: &vireo_core::analysis::RunView,
) -> Result<Sealed, EvidenceError> {
    let decision = analysis_decision(rollout.name(), generation, view.run);
    let predicate =
        replay::AnalysisRecord::new(&decision, rollout.name(), generation, planned, view)?;
    let statement = statement(
        vec![rollout_subject(rollout)?],
        ANALYSIS_V1,
        serde_json::to_value(&predicate)?,
    );
    let stage = format!("analysis-{}", view.run);
    seal(
        log,
        signer,
        &log::EntryMeta {
            at_ms,
            rollout: Some(rollout.name()),
            generation: Some(generation),
            kind: "analysis",
            stage: &stage,
            decision: Some(&decision),
        },
        &statement,
    )
}

/// The statement inside a logged envelope (no signature check: the caller has the entry
/// from its own log or has verified it).
pub fn open_entry(entry: &[u8]) -> Option<Value> {
    let env: dsse::Envelope = serde_json::from_slice(entry).ok()?;
    serde_json::from_slice(&dsse::decode_b64(&env.payload)?).ok()
}

/// The gate's decision, as the store saw it.
pub struct GateFacts<'a> {
    pub rollout: &'a vireo_core::spec::Rollout,
    pub generation: u64,
    pub at_ms: u64,
    /// Whether the gate's preconditions (schedule window and checks) held.
    pub passed: bool,
    pub needs_approval: bool,
    pub reason: &'a str,
    /// What the provenance check decided on (`None`: no trust config, not required).
    pub provenance: Option<&'a provenance::ProvenanceFacts>,
    /// The retry this gate decision belongs to (0: the first attempt; analysis run ids keep
    /// growing across retries, so theirs never repeat).
    pub attempt: u32,
}

/// The policy the gate applies, named and digested in its VSA.
pub const GATE_POLICY: &str = "https://vireo.dev/policy/gate/v1";
const GATE_POLICY_TEXT: &str = "pass when the canary image has SLSA provenance v1 for its \
digest, signed by a trusted key, from an allowed builder (when a provenance trust config is \
set), and the schedule's window is open and its preconditions hold (or no schedule is set); \
hold for approval when annotation vireo.dev/approval is \"required\"";

/// Seals the gate's verdict as a SLSA Verification Summary Attestation.
pub fn record_gate(
    log: &dyn log::Log,
    signer: &Signer,
    f: &GateFacts,
) -> Result<Sealed, EvidenceError> {
    let name = f.rollout.name();
    let decision = gate_decision_id(name, f.generation, f.attempt);
    let subject = rollout_subject(f.rollout)?;
    let annotation = f
        .rollout
        .metadata
        .annotations
        .get(vireo_core::spec::APPROVAL_ANNOTATION)
        .cloned();
    // Preconditions are only looked at once provenance holds.
    let accepted = f.provenance.map(provenance::evaluate);
    let preconditions = match &accepted {
        Some(Err(_)) => None,
        _ => Some(f.passed),
    };
    let input_attestations: Vec<Value> = match &accepted {
        Some(Ok(a)) => vec![json!({
            "uri": format!("log/entries/{}", a.log_index),
            "digest": {"sha256": a.envelope_sha256},
        })],
        _ => vec![],
    };
    let predicate = json!({
        "verifier": {"id": "https://vireo.dev/control-plane"},
        "timeVerified": rfc3339(f.at_ms),
        "resourceUri": f.rollout.spec.canary.image.clone()
            .unwrap_or_else(|| format!("rollout/{name}")),
        "policy": {"uri": GATE_POLICY, "digest": {"sha256": sha256_hex(GATE_POLICY_TEXT.as_bytes())}},
        "inputAttestations": input_attestations,
        "verificationResult": if f.passed { "PASSED" } else { "FAILED" },
        "verifiedLevels": [],
        "decisionId": decision,
        "needsApproval": f.needs_approval,
        "reason": f.reason,
        "inputs": {
            "provenance": f.provenance,
            "preconditionsPassed": preconditions,
            "approvalAnnotation": annotation,
        },
    });
    let statement = statement(vec![subject], VSA_V1, predicate);
    seal(
        log,
        signer,
        &log::EntryMeta {
            at_ms: f.at_ms,
            rollout: Some(name),
            generation: Some(f.generation),
            kind: "vsa",
            stage: "GateEval-vsa",
            decision: Some(&decision),
        },
        &statement,
    )
}
