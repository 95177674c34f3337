//! Evidence bundles: `vireo evidence export` writes one, `vireo verify` checks one offline.
//!
//! Layout (`shared/spec/evidence.md`): `manifest.json` (every other file with its SHA-256),
//! `timeline.json`, `envelopes/NNN-STAGE.dsse.json` (the logged bytes: RFC 8785 JSON of the
//! envelope, so the leaf hash can be recomputed from the file), `receipts/NNN-STAGE.tlog-proof`,
//! `checkpoint`, `keys/signing.pub`, `keys/log.pub`, `inputs/DECISION.json` (what replay
//! needs). The manifest must itself be canonical JSON, so that no byte of any file can change
//! without a check failing.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dsse::{self, Envelope};
use super::keys::PublicKey;
use super::note::{Checkpoint, Receipt};
use super::{canonical, sha256_hex, CHECKPOINT_V1};

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub rollout: String,
    pub generation: u64,
    pub origin: String,
    /// Path → SHA-256 (hex) of every file but the manifest.
    pub files: BTreeMap<String, String>,
}

/// The files of a bundle, by path (a `BTreeMap` so archives are reproducible).
pub type Files = BTreeMap<String, Vec<u8>>;

/// Adds the manifest and writes the files as a gzipped tar.
pub fn write(
    mut files: Files,
    rollout: &str,
    generation: u64,
    origin: &str,
    out: impl std::io::Write,
) -> Result<(), String> {
    let manifest = Manifest {
        version: 1,
        rollout: rollout.to_string(),
        generation,
        origin: origin.to_string(),
        files: files
            .iter()
            .map(|(p, b)| (p.clone(), sha256_hex(b)))
            .collect(),
    };
    files.insert(
        MANIFEST.into(),
        canonical(&manifest).map_err(|e| e.to_string())?,
    );
    write_files(&files, out)
}

/// Writes `files` as they are (a manifest among them or not) as a gzipped tar: [`write`]'s
/// archive format, and the way tests make bundles that are wrong on purpose.
pub fn write_files(files: &Files, out: impl std::io::Write) -> Result<(), String> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes.as_slice())
            .map_err(|e| format!("{path}: {e}"))?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Reads a gzipped tar into memory (bounded: bundles are small; 256 MiB is a corrupt one).
pub fn read(input: impl Read) -> Result<Files, String> {
    const LIMIT: u64 = 256 << 20;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input).take(LIMIT));
    let mut files = Files::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a gzipped tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a gzipped tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad path in the archive: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        if files.insert(path.clone(), bytes).is_some() {
            return Err(format!("{path}: appears twice in the archive"));
        }
    }
    Ok(files)
}

/// One row of `vireo verify`'s table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Envelopes, receipts and chain links checked.
    pub envelopes: usize,
}

impl Report {
    /// `vireo verify`'s table: one line per check.
    pub fn table(&self) -> String {
        let width = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(5);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:width$}  {}  {}\n",
                c.check,
                if c.ok { "ok  " } else { "FAIL" },
                c.detail
            ));
        }
        out
    }
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The first failure, as `file: reason`.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }
}

/// Keys to verify with; `None` takes the bundle's own (`keys/*.pub`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub signing: Option<PublicKey>,
    pub log: Option<PublicKey>,
}

/// Checks a bundle: manifest, keys, checkpoint signature, every envelope's signature, every
/// receipt against the checkpoint, the checkpoint hash chain, and the replay inputs.
pub fn verify(files: &Files, trust: &Trust) -> Report {
    let mut checks = Vec::new();
    let mut push = |check: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check {
            check: check.to_string(),
            ok,
            detail,
        });
    };
    let manifest = check_manifest(files);
    let manifest_ok = manifest
        .as_ref()
        .map(|_| "every file listed and intact".to_string());
    push("manifest", manifest_ok.map_err(|e| e.clone()));
    let key = |given: Option<PublicKey>, path: &str| -> Result<(PublicKey, String), String> {
        if let Some(k) = given {
            return Ok((
                k,
                "pinned by the verifier (not taken from the bundle)".into(),
            ));
        }
        let pem = files
            .get(path)
            .ok_or_else(|| format!("{path}: missing (or pass the key)"))?;
        let pem = std::str::from_utf8(pem).map_err(|_| format!("{path}: not text"))?;
        let k = PublicKey::from_pem(pem).map_err(|e| format!("{path}: {e}"))?;
        Ok((k, format!("from {path} (pin it with --key/--log-key)")))
    };
    let signing = key(trust.signing, "keys/signing.pub");
    let log = key(trust.log, "keys/log.pub");
    push(
        "signing key",
        signing
            .as_ref()
            .map(|(_, d)| d.clone())
            .map_err(|e| e.clone()),
    );
    push(
        "log key",
        log.as_ref().map(|(_, d)| d.clone()).map_err(|e| e.clone()),
    );
    let (Ok((signing, _)), Ok((log, _)), Ok(manifest)) = (signing, log, manifest) else {
        return Report {
            checks,
            envelopes: 0,
        };
    };

    let checkpoint = files
        .get("checkpoint")
        .ok_or_else(|| "checkpoint: missing".to_string())
        .and_then(|b| String::from_utf8(b.clone()).map_err(|_| "checkpoint: not text".into()))
        .and_then(|note| {
            Checkpoint::open(&note, &manifest.origin, &log).map_err(|e| format!("checkpoint: {e}"))
        });
    push(
        "checkpoint signature",
        checkpoint
            .as_ref()
            .map(|cp| format!("{} at size {}", cp.origin, cp.size))
            .map_err(|e| e.clone()),
    );

    let envelopes: Vec<(&String, &Vec<u8>)> = files
        .iter()
        .filter(|(p, _)| p.starts_with("envelopes/") && p.ends_with(".dsse.json"))
        .collect();
    let mut statements = Vec::new();
    let mut sig_result = Ok(());
    let mut receipt_result = Ok(());
    for (path, bytes) in &envelopes {
        match open_envelope(path, bytes, &signing) {
            Ok(s) => statements.push((path.to_string(), (*bytes).clone(), s)),
            Err(e) => {
                sig_result = sig_result.and(Err(e));
            }
        }
        let receipt_path = path
            .replacen("envelopes/", "receipts/", 1)
            .replace(".dsse.json", ".tlog-proof");
        let receipt = files
            .get(&receipt_path)
            .ok_or_else(|| format!("{receipt_path}: missing"))
            .and_then(|b| std::str::from_utf8(b).map_err(|_| format!("{receipt_path}: not text")))
            .and_then(|t| Receipt::parse(t).map_err(|e| format!("{receipt_path}: {e}")))
            .and_then(|r| {
                let cp = r
                    .verify(bytes, &manifest.origin, &log)
                    .map_err(|e| format!("{receipt_path}: {e}"))?;
                match &checkpoint {
                    Ok(c) if c.size < cp.size => Err(format!(
                        "{receipt_path}: proves against a tree of {} entries, newer than the bundle's checkpoint ({})",
                        cp.size, c.size
                    )),
                    _ => Ok(()),
                }
            });
        if let Err(e) = receipt {
            receipt_result = receipt_result.and(Err(e));
        }
    }
    let n = envelopes.len();
    push(
        "envelope signatures",
        sig_result.map(|_| format!("{n} DSSE envelopes signed by {}", &signing.keyid()[..16])),
    );
    push(
        "inclusion receipts",
        receipt_result.map(|_| format!("{n} receipts lead to the signed checkpoint")),
    );
    push("checkpoint chain", check_chain(&statements, &manifest));
    push("replay inputs", check_inputs(files, &statements));
    Report {
        checks,
        envelopes: n,
    }
}

fn check_manifest(files: &Files) -> Result<Manifest, String> {
    let bytes = files
        .get(MANIFEST)
        .ok_or_else(|| format!("{MANIFEST}: missing"))?;
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("{MANIFEST}: not a bundle manifest ({e})"))?;
    if manifest.version != 1 {
        return Err(format!(
            "{MANIFEST}: bundle version {} (this vireo reads version 1)",
            manifest.version
        ));
    }
    if canonical(&manifest).ok().as_deref() != Some(bytes.as_slice()) {
        return Err(format!(
            "{MANIFEST}: not in canonical form (RFC 8785): it was edited"
        ));
    }
    for (path, want) in &manifest.files {
        let got = files
            .get(path)
            .ok_or_else(|| format!("{path}: listed in the manifest but missing"))?;
        if &sha256_hex(got) != want {
            return Err(format!(
                "{path}: SHA-256 differs from {MANIFEST}'s (one of the two was altered)"
            ));
        }
    }
    if let Some(extra) = files
        .keys()
        .find(|p| *p != MANIFEST && !manifest.files.contains_key(*p))
    {
        return Err(format!("{extra}: not listed in the manifest"));
    }
    Ok(manifest)
}

fn open_envelope(path: &str, bytes: &[u8], key: &PublicKey) -> Result<Value, String> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("{path}: not a DSSE envelope ({e})"))?;
    let payload =
        dsse::verify(&env, &[*key], 1, &[dsse::IN_TOTO]).map_err(|e| format!("{path}: {e}"))?;
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("{path}: payload is not JSON ({e})"))?;
    if statement["_type"] != super::STATEMENT_TYPE {
        return Err(format!("{path}: payload is not an in-toto Statement v1"));
    }
    Ok(statement)
}

/// Checkpoint statements must be numbered 1, 2, … in file order, each `previous` naming the
/// SHA-256 of the one before (the first's is null), all of the manifest's rollout.
fn check_chain(statements: &[(String, Vec<u8>, Value)], m: &Manifest) -> Result<String, String> {
    let mut previous: Option<String> = None;
    let mut count = 0u64;
    for (path, bytes, s) in statements {
        if s["predicateType"] != CHECKPOINT_V1 {
            continue;
        }
        let p = &s["predicate"];
        count += 1;
        if p["rollout"] != m.rollout.as_str() || p["generation"] != m.generation {
            return Err(format!(
                "{path}: belongs to another rollout than the manifest's"
            ));
        }
        if p["sequence"] != count {
            return Err(format!(
                "{path}: checkpoint sequence {} where {count} was expected (reordered, dropped or duplicated)",
                p["sequence"]
            ));
        }
        let want = previous.as_deref().map_or(Value::Null, Value::from);
        if p["previous"] != want {
            return Err(format!(
                "{path}: `previous` does not match the checkpoint before it"
            ));
        }
        previous = Some(sha256_hex(bytes));
    }
    if count == 0 {
        return Err("no checkpoint statements in the bundle".into());
    }
    Ok(format!(
        "{count} checkpoints, each chained to the one before"
    ))
}

/// `inputs/ID.json` must be exactly the predicate of the signed statement with that decision.
fn check_inputs(files: &Files, statements: &[(String, Vec<u8>, Value)]) -> Result<String, String> {
    let mut n = 0;
    for (path, bytes) in files.iter().filter(|(p, _)| p.starts_with("inputs/")) {
        let id = path.trim_start_matches("inputs/").trim_end_matches(".json");
        let recorded: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("{path}: not JSON ({e})"))?;
        let signed = statements
            .iter()
            .map(|(_, _, s)| &s["predicate"])
            .find(|p| p["decisionId"] == id)
            .ok_or_else(|| format!("{path}: no signed verdict with decision id {id:?}"))?;
        if &recorded != signed {
            return Err(format!("{path}: differs from the signed statement"));
        }
        n += 1;
    }
    Ok(format!(
        "{n} recorded decisions match their signed statements"
    ))
}
