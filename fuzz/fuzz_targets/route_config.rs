//! The proxy's config and route tables (YAML or JSON): from a file, or from the control
//! plane's long poll.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vireo_types::config::Config::parse(text);
    }
});
