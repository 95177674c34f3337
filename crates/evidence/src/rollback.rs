//! The rollback envelope (`https://vireo.dev/rollback/v1`): what undoing a release means,
//! signed and logged before the canary gets 100 %, and checked again before it is replayed.
//!
//! The replay runs what the *envelope* says, not what the spec says at replay time: the
//! command that runs is the one that was signed (and its digest must still match it). A
//! signature that no longer verifies (another key, altered bytes) refuses the migration and the
//! flag; traffic goes back regardless, because that needs no authority beyond the abort path.

use serde_json::{json, Value};

use super::dsse::{self, Envelope};
use super::keys::PublicKey;
use super::{log, rfc3339, rollout_subject, seal, statement, EvidenceError, Sealed, Signer};
use crate::provenance::image_digest;
use vireo_core::spec::{DownMigration, Rollout};

pub const ROLLBACK_V1: &str = "https://vireo.dev/rollback/v1";
/// The log entry kind of rollback envelopes.
pub const KIND: &str = "rollback";

/// `previousImage`: the stable image by name and digest (`digest` is null when the stable image
/// is not referenced by digest, or not given: then `name` is the version).
fn previous_image(r: &Rollout) -> Value {
    match r.spec.stable.image.as_deref() {
        Some(image) => match image_digest(image) {
            Some((name, hex)) => json!({"name": name, "digest": {"sha256": hex}}),
            None => json!({"name": image, "digest": null}),
        },
        None => json!({"name": format!("version/{}", r.spec.stable.version), "digest": null}),
    }
}

/// The envelope's predicate for a rollout generation armed at `at_ms`: also what the console
/// previews before the envelope is armed.
pub fn predicate(r: &Rollout, generation: u64, at_ms: u64) -> Value {
    let spec = r.spec.rollback.clone().unwrap_or_default();
    let flag = spec
        .flag
        .as_ref()
        .map(|f| json!({"key": f.key, "disable": f.disable}));
    json!({
        "rollout": r.name(),
        "generation": generation,
        "previousImage": previous_image(r),
        "previousVersion": r.spec.stable.version,
        "downMigration": Value::from(spec.down_migration),
        "flag": flag,
        "armedAt": rfc3339(at_ms),
    })
}

/// Seals the rollback envelope of a rollout generation, inside the caller's transaction.
pub fn record(
    log: &dyn log::Log,
    signer: &Signer,
    r: &Rollout,
    generation: u64,
    at_ms: u64,
) -> Result<Sealed, EvidenceError> {
    let statement = statement(
        vec![rollout_subject(r)?],
        ROLLBACK_V1,
        predicate(r, generation, at_ms),
    );
    seal(
        log,
        signer,
        &log::EntryMeta {
            at_ms,
            rollout: Some(r.name()),
            generation: Some(generation),
            kind: KIND,
            stage: "rollback-armed",
            decision: None,
        },
        &statement,
    )
}

/// What a verified envelope authorizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub migration: DownMigration,
    /// The flag key and the value that disables it.
    pub flag: Option<(String, Value)>,
}

/// Checks a logged rollback envelope before its replay: signed by `key`, a rollback/v1
/// statement for this rollout generation, a migration whose digest matches its command.
pub fn open(entry: &[u8], key: &PublicKey, rollout: &str, generation: u64) -> Result<Plan, String> {
    let env: Envelope =
        serde_json::from_slice(entry).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let body =
        dsse::verify(&env, &[*key], 1, &[dsse::IN_TOTO]).map_err(|e| format!("signature: {e}"))?;
    let st: Value = serde_json::from_slice(&body).map_err(|e| format!("payload: {e}"))?;
    if st["predicateType"] != ROLLBACK_V1 {
        return Err(format!(
            "predicate type {} is not {ROLLBACK_V1}",
            st["predicateType"]
        ));
    }
    let p = &st["predicate"];
    if p["rollout"] != rollout || p["generation"] != generation {
        return Err(format!(
            "the envelope is for {} generation {}, not {rollout:?} generation {generation}",
            p["rollout"], p["generation"]
        ));
    }
    let migration = DownMigration::try_from(p["downMigration"].clone())?;
    let flag = match &p["flag"] {
        Value::Null => None,
        f => Some((
            f["key"].as_str().ok_or("flag.key is missing")?.to_string(),
            f["disable"].clone(),
        )),
    };
    Ok(Plan { migration, flag })
}

/// The newest rollback envelope of a rollout generation, as logged.
pub fn latest(
    log: &dyn log::Log,
    rollout: &str,
    generation: u64,
) -> Result<Option<Vec<u8>>, EvidenceError> {
    Ok(log
        .latest(rollout, generation, KIND)
        .map_err(EvidenceError::Log)?
        .map(|(entry, _)| entry))
}
