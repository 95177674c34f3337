//! A Rollout as `POST /api/v1/rollouts` takes it (YAML or JSON).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = vireo_core::spec::Rollout::parse(text) {
            // What the engine derives from an accepted spec must not panic either.
            let _ = vireo_core::rollout::Recipe::of(&r);
            let _ = vireo_core::routes::route(&r, 50);
        }
    }
});
