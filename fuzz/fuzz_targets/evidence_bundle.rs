//! Evidence bundles (`.tar.gz`), as `vireo verify` reads them: unpacked, then every check.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(files) = vireo_evidence::bundle::read(data) {
        let trust = vireo_evidence::bundle::Trust {
            signing: None,
            log: None,
        };
        let report = vireo_evidence::bundle::verify(&files, &trust);
        let _ = report.table();
    }
});
