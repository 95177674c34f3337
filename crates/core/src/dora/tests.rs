use serde_json::{json, Value};

use super::*;
use crate::events::event;

const SRC: &str = "/vireo/t/rollouts/x";

fn step(release: &str, time: &str) -> CloudEvent {
    let mut e = event(
        format!("{release}.step"),
        SRC.into(),
        ROLLOUT_STEP,
        0,
        release,
        json!({"to": "Progressing"}),
    );
    e.time = Some(time.into());
    e
}

/// A scripted week: known merges, releases, a rollback and incidents, plus events outside the
/// window that must not count.
fn history() -> Vec<CloudEvent> {
    vec![
        cd(
            CHANGE_MERGED,
            "/scm",
            "m1",
            "2026-11-01T10:00:00Z",
            "pr-1",
            json!({"commit": "c1"}),
        ),
        step("a.g1", "2026-11-02T09:00:00Z"),
        cd(
            SERVICE_UPGRADED,
            SRC,
            "u1",
            "2026-11-02T10:00:00Z",
            "a",
            json!({"commit": "c1", "release": "a.g1"}),
        ),
        cd(
            CHANGE_MERGED,
            "/scm",
            "m2",
            "2026-11-03T00:00:00Z",
            "pr-2",
            json!({"commit": "c2"}),
        ),
        cd(
            CHANGE_MERGED,
            "/scm",
            "m2b",
            "2026-11-03T01:00:00Z",
            "pr-2b",
            json!({"commit": "c2"}),
        ),
        step("b.g1", "2026-11-03T05:00:00Z"),
        cd(
            SERVICE_UPGRADED,
            SRC,
            "u2",
            "2026-11-03T06:00:00.500Z",
            "b",
            json!({"commit": "c2", "release": "b.g1"}),
        ),
        step("c.g1", "2026-11-04T11:00:00Z"),
        cd(
            SERVICE_UPGRADED,
            SRC,
            "u3",
            "2026-11-04T12:00:00Z",
            "c",
            json!({"commit": "c3", "commitTime": "2026-11-04T00:00:00Z", "release": "c.g1"}),
        ),
        step("d.g1", "2026-11-05T00:00:00Z"),
        cd(
            SERVICE_ROLLEDBACK,
            SRC,
            "r1",
            "2026-11-05T01:00:00Z",
            "d",
            json!({"release": "d.g1"}),
        ),
        cd(
            INCIDENT_DETECTED,
            SRC,
            "i1",
            "2026-11-05T01:00:00Z",
            "d.g1.incident",
            json!({}),
        ),
        cd(
            INCIDENT_RESOLVED,
            SRC,
            "i2",
            "2026-11-05T01:30:00Z",
            "d.g1.incident",
            json!({}),
        ),
        cd(
            INCIDENT_DETECTED,
            "/pager",
            "p1",
            "2026-11-06T00:00:00Z",
            "INC-7",
            json!({}),
        ),
        cd(
            INCIDENT_RESOLVED,
            "/pager",
            "p2",
            "2026-11-06T02:00:00Z",
            "INC-7",
            json!({}),
        ),
        cd(
            INCIDENT_DETECTED,
            "/pager",
            "p3",
            "2026-11-07T00:00:00Z",
            "INC-8",
            json!({}),
        ),
        // Outside the window.
        step("e.g1", "2026-10-30T00:00:00Z"),
        cd(
            SERVICE_ROLLEDBACK,
            SRC,
            "r0",
            "2026-10-30T01:00:00Z",
            "e",
            json!({"release": "e.g1"}),
        ),
        cd(
            SERVICE_UPGRADED,
            SRC,
            "u9",
            "2026-11-09T00:00:00Z",
            "f",
            json!({"commit": "c1"}),
        ),
    ]
}

fn week() -> Window {
    Window::parse(
        Some("2026-11-01T00:00:00Z"),
        Some("2026-11-08T00:00:00Z"),
        0,
    )
    .unwrap()
}

#[test]
fn every_figure_equals_the_hand_computed_value() {
    let r = compute(&history(), &week());
    assert_eq!(r.deploy_frequency.value.releases, 3);
    assert!((r.deploy_frequency.value.per_day - 3.0 / 7.0).abs() < 1e-12);
    // 24 h, 6 h 0.5 s (the earliest merge of c2), 12 h (provenance time: no merge of c3).
    let lead = &r.lead_time.value;
    assert_eq!(lead.releases, 3);
    assert_eq!(
        lead.mean_ms,
        Some((86_400_000.0 + 21_600_500.0 + 43_200_000.0) / 3.0)
    );
    assert_eq!(lead.median_ms, Some(43_200_000.0));
    let cfr = &r.change_failure_rate.value;
    assert_eq!((cfr.failed, cfr.total, cfr.rate), (1, 4, Some(0.25)));
    assert_eq!(r.mttr.value.resolved, 2);
    assert_eq!(
        r.mttr.value.mean_ms,
        Some((1_800_000.0 + 7_200_000.0) / 2.0)
    );
    assert_eq!(r.change_failure_rate.events, vec![format!("{SRC}#r1")]);
    assert!(r.lead_time.events.contains(&"/scm#m2".to_string()));
    assert!(!r.lead_time.events.contains(&"/scm#m2b".to_string()));
}

/// The receipts' jq programs recompute every figure from the exported log (JSON Lines).
#[test]
fn the_receipt_queries_recompute_the_figures_with_jq() {
    let jq = std::process::Command::new("jq").arg("--version").output();
    assert!(
        jq.is_ok_and(|o| o.status.success()),
        "jq is needed to check the DORA receipts: apt-get install jq (scripts/ensure-deps.sh does)"
    );
    let w = week();
    let events = history();
    let r = compute(&events, &w);
    let dir = std::env::temp_dir().join(format!("vireo-dora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("events.jsonl"), lines).unwrap();
    let run = |q: &str| -> Value {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command(q, &w))
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{q}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let close = |a: &Value, b: Option<f64>| match (a.as_f64(), b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
        (None, None) => a.is_null(),
        _ => false,
    };
    let f = run(&r.deploy_frequency.query);
    assert!(close(&f, Some(r.deploy_frequency.value.per_day)), "{f}");
    let l = run(&r.lead_time.query);
    assert!(close(&l["mean"], r.lead_time.value.mean_ms), "{l}");
    assert!(close(&l["median"], r.lead_time.value.median_ms), "{l}");
    let c = run(&r.change_failure_rate.query);
    assert!(close(&c["rate"], r.change_failure_rate.value.rate), "{c}");
    assert_eq!(c["failed"], 1);
    let m = run(&r.mttr.query);
    assert!(close(&m["mean"], r.mttr.value.mean_ms), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn times_read_as_the_jq_prelude_reads_them() {
    assert_eq!(ms("2026-11-01T00:00:00Z"), Some(1_793_491_200_000));
    assert_eq!(ms("2026-11-01T00:00:00.5Z"), Some(1_793_491_200_500));
    assert_eq!(ms("2026-11-01T00:00:00.123456Z"), Some(1_793_491_200_123));
    // Too short for jq's `ms` (no zone): unreadable there, so unreadable here.
    assert_eq!(ms("2026-11-01T00:00:00"), None);
}

#[test]
fn a_summary_is_the_period_the_one_before_and_weeks_each_computed_alone() {
    let events = history();
    // Two weeks ending where the history's week ends: the previous period is the two weeks
    // before, the weeks are the two seven-day windows, oldest first.
    let w = Window::parse(
        Some("2026-10-25T00:00:00Z"),
        Some("2026-11-08T00:00:00Z"),
        0,
    )
    .unwrap();
    let s = summary(&events, &w, 2);
    assert_eq!(s.period, compute(&events, &w));
    assert_eq!(s.previous.window.until, w.since);
    assert_eq!(s.previous.window.since, w.since - 14 * DAY_MS);
    assert_eq!(s.weeks.len(), 2);
    assert_eq!(s.weeks[1], compute(&events, &week()));
    assert_eq!(s.weeks[0].window.until, week().since);
    assert_eq!(s.weeks[0].deploy_frequency.value.releases, 0);
    assert_eq!(s.weeks[1].deploy_frequency.value.releases, 3);
    // Bounded, and never a window before the epoch.
    assert_eq!(summary(&events, &w, 1_000).weeks.len(), MAX_WEEKS);
    let early = Window {
        since: 0,
        until: DAY_MS,
    };
    assert_eq!(summary(&events, &early, 3).weeks.len(), 1);
}
