//! The data of attestations the gate decides on: DSSE envelopes as they sit in the log, and
//! the facts of a provenance check. Plain data, recorded in the gate's input so the decision
//! can be replayed; signing, verifying and the check itself are `vireo-evidence`'s.

use serde::{Deserialize, Serialize};

/// A DSSE v1 envelope (secure-systems-lab/dsse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// An unauthenticated hint; verification never trusts it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    pub sig: String,
}

/// One envelope on file, with where it sits in the transparency log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    pub log_index: u64,
    pub envelope: Envelope,
}

/// Everything the provenance check decides on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceFacts {
    pub image: Option<String>,
    /// Trusted keys as SPKI PEM (the keys themselves, not paths: replay needs no files).
    pub trusted_keys: Vec<String>,
    pub builders: Vec<String>,
    /// Every envelope on file whose subject has the image's digest.
    pub attestations: Vec<Attestation>,
}
