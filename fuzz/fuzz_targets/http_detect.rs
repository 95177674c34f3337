//! The proxy's per-connection protocol detection (HTTP/1 or the h2c preface) over the first
//! bytes a client sends.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vireo_proxy::detect::classify(data);
    // Every prefix, as bytes arrive one read at a time.
    for n in 0..data.len().min(32) {
        let _ = vireo_proxy::detect::classify(&data[..n]);
    }
});
