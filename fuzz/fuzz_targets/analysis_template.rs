//! An AnalysisTemplate (Vireo's or Argo's), as `POST /api/v1/analysistemplates` takes it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = vireo_core::analysis::AnalysisTemplate::parse(text) {
            let _ = t.resolve_args(&[]);
        }
    }
});
