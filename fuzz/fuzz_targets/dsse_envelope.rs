//! DSSE envelopes (attestation uploads, bundles' envelopes): parsed and checked against a key.
#![no_main]
use std::sync::OnceLock;
use vireo_evidence::keys::{PublicKey, SigningKey};

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap().public().clone())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<vireo_evidence::dsse::Envelope>(data) else {
        return;
    };
    let _ = vireo_evidence::dsse::verify(
        &envelope,
        std::slice::from_ref(key()),
        1,
        &["application/vnd.in-toto+json"],
    );
});
