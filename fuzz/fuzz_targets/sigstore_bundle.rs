//! Sigstore bundles (v0.3), as `vireo verify --bundle` reads them, with a fixed key and no
//! trusted root (the checks before the root still run).
#![no_main]
use std::sync::OnceLock;

fn key() -> &'static [u8] {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        vireo_evidence::keys::SigningKey::generate()
            .unwrap()
            .public()
            .to_pem()
    })
    .as_bytes()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vireo_evidence::sigstore_bundle::verify(data, key(), None, b"artifact");
});
