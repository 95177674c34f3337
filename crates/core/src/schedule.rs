//! Schedules: start a rollout at a time, within a window, only when its preconditions hold
//! (`POST /api/v1/rollouts/{name}/schedule`).
//!
//! A schedule is kept by rollout name and consulted at the rollout's gate (`GateEval`): the
//! gate waits for `at`, then checks the preconditions every [`RECHECK`] until they all hold
//! (the gate passes) or the window closes (the gate fails, with the last reason; nothing was
//! ever routed to the canary). Deleting the schedule while the gate waits fails the gate
//! ("schedule cancelled"). Schedule first, then apply the rollout; a rollout already past its
//! gate is not held back.
//!
//! [`next_step`] is the pure part (what to do at a given time); the engine checks the HTTP
//! preconditions (`vireo-control`'s `precondition` module) and runs the `analysis` ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rollout::Millis;

/// How often unmet preconditions are checked again.
pub const RECHECK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// RFC 3339 start time, e.g. `2026-11-23T02:00:00Z`.
    pub at: String,
    /// How long after `at` the rollout may still start, e.g. `2h`.
    pub window: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
}

/// One thing that must hold for the rollout to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Precondition {
    /// Prometheus at this URL answers `/-/ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_reachable: Option<String>,
    /// Alertmanager at this URL has no active, unsilenced alert (no open incident).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_open_incident: Option<String>,
    /// This AnalysisTemplate, run with the rollout's args, is Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
}

/// A schedule with its times parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub opens: Millis,
    pub closes: Millis,
}

impl Schedule {
    /// Parses and checks the times and preconditions; errors name the field.
    pub fn window(&self) -> Result<Window, crate::spec::SpecError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, reason: String| {
            errors.push(crate::spec::FieldError {
                path: path.into(),
                reason,
            })
        };
        let opens = humantime::parse_rfc3339_weak(&self.at)
            .map_err(|e| err("at", format!("{:?} is not an RFC 3339 time: {e}", self.at)))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as Millis);
        let length = humantime::parse_duration(&self.window)
            .map_err(|e| {
                err(
                    "window",
                    format!("{:?} is not a duration: {e}", self.window),
                )
            })
            .ok();
        for (i, p) in self.preconditions.iter().enumerate() {
            let set = [
                p.prometheus_reachable.is_some(),
                p.no_open_incident.is_some(),
                p.analysis.is_some(),
            ];
            if set.iter().filter(|&&s| s).count() != 1 {
                err(
                    &format!("preconditions[{i}]"),
                    "set exactly one of prometheusReachable, noOpenIncident, analysis".into(),
                );
            }
            for (field, url) in [
                ("prometheusReachable", &p.prometheus_reachable),
                ("noOpenIncident", &p.no_open_incident),
            ] {
                if url.as_deref().is_some_and(|u| !u.starts_with("http://")) {
                    err(
                        &format!("preconditions[{i}].{field}"),
                        "must be an http:// URL".into(),
                    );
                }
            }
        }
        match (opens, length, errors.is_empty()) {
            (Some(opens), Some(length), true) => Ok(Window {
                opens,
                closes: opens.saturating_add(crate::rollout::millis(length)),
            }),
            _ => Err(crate::spec::SpecError { errors }),
        }
    }
}

/// What the gate does at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Not yet open: wait until then.
    WaitUntil(Millis),
    /// Open: check the preconditions.
    Check,
    /// Closed without the preconditions holding.
    Missed,
}

pub fn next_step(w: &Window, now: Millis) -> Next {
    if now < w.opens {
        Next::WaitUntil(w.opens)
    } else if now <= w.closes {
        Next::Check
    } else {
        Next::Missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_open_and_close() {
        let s = Schedule {
            at: "2026-11-23T02:00:00Z".into(),
            window: "1h".into(),
            preconditions: vec![],
        };
        let w = s.window().unwrap();
        assert_eq!(w.closes - w.opens, 3_600_000);
        assert_eq!(next_step(&w, w.opens - 1), Next::WaitUntil(w.opens));
        assert_eq!(next_step(&w, w.opens), Next::Check);
        assert_eq!(next_step(&w, w.closes), Next::Check);
        assert_eq!(next_step(&w, w.closes + 1), Next::Missed);
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let s = Schedule {
            at: "tomorrow".into(),
            window: "soon".into(),
            preconditions: vec![Precondition {
                prometheus_reachable: Some("ftp://x".into()),
                no_open_incident: None,
                analysis: Some("t".into()),
            }],
        };
        let e = s.window().unwrap_err().to_string();
        for want in [
            "at: ",
            "window: ",
            "preconditions[0]: set exactly one",
            "preconditions[0].prometheusReachable",
        ] {
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }
}
