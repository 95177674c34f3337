//! Analysis conditions (Argo's expression language) evaluated against a measured value: the
//! first line is the condition, the rest the value (a number, or numbers separated by
//! commas for a vector result).
#![no_main]
use vireo_core::analysis::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (condition, value) = text.split_once('\n').unwrap_or((text, "0.5"));
    let numbers: Vec<f64> = value
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let value = match numbers.as_slice() {
        [one] => Value::Scalar(*one),
        _ => Value::Vector(numbers),
    };
    let _ = vireo_core::analysis::condition(condition, &value);
    let mut args = std::collections::BTreeMap::new();
    args.insert("route".to_string(), "checkout".to_string());
    let _ = vireo_core::analysis::render(condition, &args);
});
