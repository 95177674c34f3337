//! Answers rendered for people, shared by the front ends that show them (`vireo dora`, the
//! demo's summary).

use serde_json::Value;

/// A duration in milliseconds, readable (`850 ms`, `42.0 s`, `12.5 min`, `3.2 h`, `2.1 d`).
fn human_ms(ms: f64) -> String {
    match ms {
        m if m < 1_000.0 => format!("{m:.0} ms"),
        m if m < 60_000.0 => format!("{:.1} s", m / 1e3),
        m if m < 3_600_000.0 => format!("{:.1} min", m / 6e4),
        m if m < 86_400_000.0 => format!("{:.1} h", m / 3.6e6),
        m => format!("{:.1} d", m / 8.64e7),
    }
}

/// `vireo dora`'s table.
pub fn dora(v: &Value) -> String {
    let t = |ms: &Value| {
        ms.as_u64()
            .map(vireo_core::digest::rfc3339)
            .unwrap_or_default()
    };
    let dur = |ms: &Value| ms.as_f64().map(human_ms).unwrap_or_else(|| "—".into());
    let f = &v["deployFrequency"];
    let l = &v["leadTime"];
    let c = &v["changeFailureRate"];
    let m = &v["mttr"];
    format!(
        "DORA, {} to {}\n  deploy frequency     {:.2} / day ({} releases)\n  lead time            mean {}, median {} ({} releases)\n  change failure rate  {} ({} of {} releases that started)\n  MTTR                 mean {} ({} incidents resolved)\nreceipts: `vireo dora -o json` lists each figure's events and the jq query that recomputes it\nfrom `vireo events export -o events.jsonl`\n",
        t(&v["window"]["since"]),
        t(&v["window"]["until"]),
        f["perDay"].as_f64().unwrap_or(0.0),
        f["releases"],
        dur(&l["meanMs"]),
        dur(&l["medianMs"]),
        l["releases"],
        c["rate"]
            .as_f64()
            .map(|r| format!("{:.1} %", r * 100.0))
            .unwrap_or_else(|| "—".into()),
        c["failed"],
        c["total"],
        dur(&m["meanMs"]),
        m["resolved"],
    )
}
