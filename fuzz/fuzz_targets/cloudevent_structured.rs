//! CloudEvents in structured and batched mode, as `POST /api/v1/events` takes them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match v {
        serde_json::Value::Array(items) => {
            for item in items {
                let _ = vireo_core::events::CloudEvent::from_json(item);
            }
        }
        one => {
            if let Ok(mut e) = vireo_core::events::CloudEvent::from_json(one) {
                e.normalize_time(1_700_000_000_000);
            }
        }
    }
});
