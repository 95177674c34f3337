//! C2SP signed notes: the log's checkpoints and receipts as bundles and the API carry them.
#![no_main]
use std::sync::OnceLock;
use vireo_evidence::keys::SigningKey;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = vireo_evidence::note::Checkpoint::parse(text);
    let _ = vireo_evidence::note::Receipt::parse(text);
    let _ = vireo_evidence::note::Checkpoint::open(text, "vireo", key().public());
});
