//! DSSE v1 envelopes (secure-systems-lab/dsse): the signature wrapper of every statement.
//!
//! Signatures cover the pre-authentication encoding
//! `PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, never the JSON around it, so
//! the envelope's own serialization does not matter. Hand-written because it is a few lines
//! that must be byte-exact; the shared DSSE vectors hold it to that.

use base64::Engine;

use super::keys::{PublicKey, SigningKey};

/// The payload type of in-toto statements.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

pub use vireo_core::attestation::{Envelope, EnvelopeSignature};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("payload type {0:?} is not accepted here (expected one of {1:?})")]
    PayloadType(String, Vec<String>),
    #[error("{0} is not base64 (standard or URL-safe)")]
    Base64(&'static str),
    #[error("{valid} distinct trusted key(s) signed; {threshold} required")]
    Threshold { valid: usize, threshold: usize },
}

/// The bytes a DSSE signature covers. LEN counts bytes, not characters.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Either base64 alphabet, padded or not (the DSSE spec requires accepting both).
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

pub use vireo_core::digest::b64;

/// Signs `body` as `payload_type` with one key.
pub fn sign(payload_type: &str, body: &[u8], key: &SigningKey) -> Envelope {
    Envelope {
        payload: b64(body),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key.public().keyid(),
            sig: b64(&key.sign(&pae(payload_type, body))),
        }],
    }
}

/// Checks an envelope and returns its payload: the payload type must be one of `accepted`,
/// and at least `threshold` *distinct* keys of `trusted` must have signed (a key that signs
/// twice counts once; key ids are hints and are ignored).
pub fn verify(
    envelope: &Envelope,
    trusted: &[PublicKey],
    threshold: usize,
    accepted: &[&str],
) -> Result<Vec<u8>, DsseError> {
    if envelope.payload_type.is_empty() || !accepted.contains(&envelope.payload_type.as_str()) {
        return Err(DsseError::PayloadType(
            envelope.payload_type.clone(),
            accepted.iter().map(|s| s.to_string()).collect(),
        ));
    }
    let body = decode_b64(&envelope.payload).ok_or(DsseError::Base64("payload"))?;
    let message = pae(&envelope.payload_type, &body);
    let mut signed = vec![false; trusted.len()];
    for s in &envelope.signatures {
        let sig = decode_b64(&s.sig).ok_or(DsseError::Base64("signature"))?;
        for (i, key) in trusted.iter().enumerate() {
            if !signed[i] && key.verify(&message, &sig) {
                signed[i] = true;
                break;
            }
        }
    }
    // Equal keys listed twice in `trusted` are one signer.
    let mut keys: Vec<&PublicKey> = trusted
        .iter()
        .zip(&signed)
        .filter_map(|(k, s)| s.then_some(k))
        .collect();
    keys.sort_by_key(|k| *k.raw());
    keys.dedup();
    if keys.len() < threshold.max(1) {
        return Err(DsseError::Threshold {
            valid: keys.len(),
            threshold: threshold.max(1),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_reject_a_changed_payload() {
        let key = SigningKey::generate().unwrap();
        let env = sign(IN_TOTO, b"{\"a\":1}", &key);
        assert_eq!(
            verify(&env, &[*key.public()], 1, &[IN_TOTO]).unwrap(),
            b"{\"a\":1}"
        );
        let mut bad = env.clone();
        bad.payload = b64(b"{\"a\":2}");
        assert!(matches!(
            verify(&bad, &[*key.public()], 1, &[IN_TOTO]),
            Err(DsseError::Threshold { valid: 0, .. })
        ));
        let other = SigningKey::generate().unwrap();
        assert!(verify(&env, &[*other.public()], 1, &[IN_TOTO]).is_err());
        // The same trusted key listed twice is still one signer.
        assert!(verify(&env, &[*key.public(), *key.public()], 2, &[IN_TOTO]).is_err());
    }
}
