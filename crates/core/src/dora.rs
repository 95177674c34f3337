//! DORA's four keys from the event log — each figure a receipt.
//!
//! Pure: [`compute`] takes the events and a window and returns every figure with the ids of
//! the events it was computed from and a `jq` program that recomputes it from an exported
//! event log (`vireo events export -o events.jsonl`, JSON Lines of CloudEvents):
//! `jq -s --argjson since MS --argjson until MS 'PROGRAM' events.jsonl`. The Rust and the jq
//! compute the same thing the same way (times in milliseconds, UTC `Z` timestamps), and a test
//! holds them to it.
//!
//! Definitions (`shared/spec/events-flags-dora.md`); an event counts when its `time` is in
//! `[since, until)`:
//! - **deploy frequency**: releases (`service.upgraded`: a rollout Completed) per day;
//! - **lead time**: release time − the merge of its commit (`change.merged` with the same
//!   commit, the earliest), else the provenance's build start; mean and median, in ms;
//! - **change failure rate**: releases that reached Progressing (by release id `NAME.gN`) and
//!   were rolled back (`service.rolledback`, whether aborted or rolled back) / those that
//!   reached Progressing;
//! - **MTTR**: mean of `incident.resolved − incident.detected` per incident id
//!   (`data.subject.id`), over incidents detected in the window and resolved.

use serde::Serialize;
use serde_json::Value;

use crate::events::{
    CloudEvent, CHANGE_MERGED, INCIDENT_DETECTED, INCIDENT_RESOLVED, ROLLOUT_STEP,
    SERVICE_ROLLEDBACK, SERVICE_UPGRADED,
};

pub const DAY_MS: u64 = 86_400_000;

/// The event types DORA reads (the store loads only these).
pub const TYPES: [&str; 6] = [
    SERVICE_UPGRADED,
    SERVICE_ROLLEDBACK,
    INCIDENT_DETECTED,
    INCIDENT_RESOLVED,
    CHANGE_MERGED,
    ROLLOUT_STEP,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub since: u64,
    pub until: u64,
}

impl Window {
    /// `since`/`until` as RFC 3339; defaults: the last 30 days up to `now`.
    pub fn parse(since: Option<&str>, until: Option<&str>, now: u64) -> Result<Window, String> {
        let at = |what: &str, t: &str| {
            crate::events::parse_time(t)
                .ok_or_else(|| format!("{what}: {t:?} is not an RFC 3339 time"))
        };
        let until = until
            .map(|t| at("until", t))
            .transpose()?
            .unwrap_or(now + 1);
        let since = since
            .map(|t| at("since", t))
            .transpose()?
            .unwrap_or(until.saturating_sub(30 * DAY_MS));
        if since >= until {
            return Err("since must be before until".into());
        }
        Ok(Window { since, until })
    }

    fn contains(&self, t: u64) -> bool {
        t >= self.since && t < self.until
    }
}

/// One figure and how to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt<T> {
    #[serde(flatten)]
    pub value: T,
    /// Ids (`source` + `id`) of the events it was computed from.
    pub events: Vec<String>,
    /// `jq -s --argjson since MS --argjson until MS 'PROGRAM' events.jsonl`
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frequency {
    pub per_day: f64,
    pub releases: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadTime {
    pub mean_ms: Option<f64>,
    pub median_ms: Option<f64>,
    pub releases: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRate {
    pub rate: Option<f64>,
    pub failed: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mttr {
    pub mean_ms: Option<f64>,
    pub resolved: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub window: Window,
    pub deploy_frequency: Receipt<Frequency>,
    pub lead_time: Receipt<LeadTime>,
    pub change_failure_rate: Receipt<FailureRate>,
    pub mttr: Receipt<Mttr>,
}

/// The jq helpers every program starts with: `ms` reads our timestamps to milliseconds.
/// (The log stores every time as `YYYY-MM-DDTHH:MM:SS.mmmZ`; `ms` also reads shorter fractions
/// and none, and an unreadable time is null, which no window contains.)
const PRELUDE: &str = r#"def ms: if type == "string" and length >= 20 then ((.[0:19] + "Z" | fromdate) * 1000 + (if .[19:20] == "." then ((.[20:] | capture("^(?<f>[0-9]*)").f + "000")[0:3] | tonumber) else 0 end)) else null end; def inwin: (.time | ms) as $t | $t != null and $t >= $since and $t < $until; "#;

fn query(program: &str) -> String {
    format!(
        "jq -s --argjson since SINCE_MS --argjson until UNTIL_MS '{PRELUDE}{}' events.jsonl",
        program.replace('\n', " ")
    )
}

fn event_ref(e: &CloudEvent) -> String {
    format!("{}#{}", e.source, e.id)
}

fn commit_of(e: &CloudEvent) -> Option<&str> {
    let d = e.data.as_ref()?;
    d["subject"]["content"]["commit"]
        .as_str()
        .or_else(|| d["commit"].as_str())
}

fn str_at<'a>(e: &'a CloudEvent, pointer: &str) -> Option<&'a str> {
    e.data.as_ref()?.pointer(pointer)?.as_str()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A timestamp as jq's `ms` reads it (second resolution plus up to three fraction digits).
fn ms(t: &str) -> Option<u64> {
    // As jq's `ms`: a time shorter than `YYYY-MM-DDTHH:MM:SSZ` is unreadable.
    if t.len() < 20 {
        return None;
    }
    let base = humantime::parse_rfc3339_weak(&format!("{}Z", t.get(0..19)?)).ok()?;
    let secs = base.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let frac = match t.get(19..20) {
        Some(".") => {
            let digits: String = t[20..]
                .chars()
                .take_while(char::is_ascii_digit)
                .take(3)
                .collect();
            format!("{digits:0<3}").parse::<u64>().ok()?
        }
        _ => 0,
    };
    Some(secs * 1000 + frac)
}

fn time(e: &CloudEvent) -> Option<u64> {
    ms(e.time.as_deref()?)
}

/// The most weeks [`summary`] computes (a year).
pub const MAX_WEEKS: usize = 53;

/// What the DORA dashboard shows: a period, the period before it (for the deltas), and the
/// trend by week up to the period's end — each a full [`Report`] with its receipts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub period: Report,
    /// The same length, ending where `period` starts.
    pub previous: Report,
    /// Seven-day windows ending at `period.until`, oldest first.
    pub weeks: Vec<Report>,
}

/// The period, the one before it, and `weeks` (at most [`MAX_WEEKS`]) weekly windows ending
/// at the period's end. Each is exactly [`compute`] over its window, so each week's figure
/// has the receipt `GET /api/v1/dora?since&until` would give for it.
pub fn summary(events: &[CloudEvent], w: &Window, weeks: usize) -> Summary {
    let length = w.until - w.since;
    let previous = Window {
        since: w.since.saturating_sub(length),
        until: w.since,
    };
    let week = 7 * DAY_MS;
    let weeks = (1..=weeks.min(MAX_WEEKS) as u64)
        .rev()
        .map(|i| Window {
            since: w.until.saturating_sub(i * week),
            until: w.until.saturating_sub((i - 1) * week),
        })
        .filter(|x| x.since < x.until)
        .map(|x| compute(events, &x))
        .collect();
    Summary {
        period: compute(events, w),
        previous: compute(events, &previous),
        weeks,
    }
}

/// The four keys over `events` (any order, any types; others are ignored).
pub fn compute(events: &[CloudEvent], w: &Window) -> Report {
    let of = |ty: &'static str| events.iter().filter(move |e| e.ty == ty);
    let in_window = |e: &&CloudEvent| time(e).is_some_and(|t| w.contains(t));

    // Deploy frequency.
    let releases: Vec<&CloudEvent> = of(SERVICE_UPGRADED).filter(in_window).collect();
    let days = (w.until - w.since) as f64 / DAY_MS as f64;
    let deploy_frequency = Receipt {
        value: Frequency {
            per_day: releases.len() as f64 / days,
            releases: releases.len(),
        },
        events: releases.iter().map(|e| event_ref(e)).collect(),
        query: query(&format!(
            r#"[.[] | select(.type == "{SERVICE_UPGRADED}" and inwin)] | length / (($until - $since) / {DAY_MS})"#
        )),
    };

    // Lead time.
    let merges: Vec<(&str, u64, &CloudEvent)> = of(CHANGE_MERGED)
        .filter_map(|e| Some((commit_of(e)?, time(e)?, e)))
        .collect();
    let mut leads = Vec::new();
    let mut lead_refs = Vec::new();
    for r in &releases {
        let Some(at) = time(r) else { continue };
        let commit = commit_of(r);
        let merged = merges
            .iter()
            .filter(|(c, _, _)| Some(*c) == commit)
            .min_by_key(|(_, t, _)| *t);
        let start = match merged {
            Some((_, t, e)) => {
                lead_refs.push(event_ref(e));
                Some(*t)
            }
            None => str_at(r, "/subject/content/commitTime").and_then(ms),
        };
        if let Some(start) = start {
            leads.push(at as f64 - start as f64);
            lead_refs.push(event_ref(r));
        }
    }
    leads.sort_by(f64::total_cmp);
    let lead_time = Receipt {
        value: LeadTime {
            mean_ms: mean(&leads),
            median_ms: median(&leads),
            releases: leads.len(),
        },
        events: lead_refs,
        query: query(&format!(
            r#"def commit_of: .data.subject.content.commit // .data.commit;
. as $all
| [$all[] | select(.type == "{CHANGE_MERGED}") | {{c: commit_of, t: (.time | ms)}} | select(.c != null and .t != null)] as $merges
| [$all[] | select(.type == "{SERVICE_UPGRADED}" and inwin)
   | (.time | ms) as $r | commit_of as $c
   | ([$merges[] | select(.c == $c) | .t] | min) as $m
   | (if $m != null then $m else (.data.subject.content.commitTime | ms) end) as $start
   | select($start != null) | $r - $start]
| sort
| {{mean: (if length > 0 then add / length else null end),
   median: (if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end)}}"#
        )),
    };

    // Change failure rate.
    let mut total: Vec<&str> = of(ROLLOUT_STEP)
        .filter(in_window)
        .filter(|e| str_at(e, "/to") == Some("Progressing"))
        .filter_map(|e| e.subject.as_deref())
        .collect();
    total.sort_unstable();
    total.dedup();
    let rolled_back: Vec<(&str, &CloudEvent)> = of(SERVICE_ROLLEDBACK)
        .filter_map(|e| Some((str_at(e, "/subject/content/release")?, e)))
        .collect();
    let mut failed: Vec<&str> = total
        .iter()
        .copied()
        .filter(|r| rolled_back.iter().any(|(b, _)| b == r))
        .collect();
    failed.dedup();
    let change_failure_rate = Receipt {
        value: FailureRate {
            rate: (!total.is_empty()).then(|| failed.len() as f64 / total.len() as f64),
            failed: failed.len(),
            total: total.len(),
        },
        events: rolled_back
            .iter()
            .filter(|(r, _)| failed.contains(r))
            .map(|(_, e)| event_ref(e))
            .collect(),
        query: query(&format!(
            r#". as $all
| ([$all[] | select(.type == "{ROLLOUT_STEP}" and .data.to == "Progressing" and inwin) | .subject] | unique) as $total
| ([$all[] | select(.type == "{SERVICE_ROLLEDBACK}") | .data.subject.content.release] | unique) as $back
| ([$total[] | select(. as $r | any($back[]; . == $r))] | length) as $failed
| {{failed: $failed, total: ($total | length), rate: (if ($total | length) > 0 then $failed / ($total | length) else null end)}}"#
        )),
    };

    // MTTR.
    let resolutions: Vec<(&str, u64, &CloudEvent)> = of(INCIDENT_RESOLVED)
        .filter_map(|e| Some((str_at(e, "/subject/id")?, time(e)?, e)))
        .collect();
    let mut repairs = Vec::new();
    let mut repair_refs = Vec::new();
    for d in of(INCIDENT_DETECTED).filter(in_window) {
        let (Some(id), Some(at)) = (str_at(d, "/subject/id"), time(d)) else {
            continue;
        };
        let resolved = resolutions
            .iter()
            .filter(|(i, t, _)| *i == id && *t >= at)
            .min_by_key(|(_, t, _)| *t);
        if let Some((_, t, e)) = resolved {
            repairs.push(*t as f64 - at as f64);
            repair_refs.push(event_ref(d));
            repair_refs.push(event_ref(e));
        }
    }
    let mttr = Receipt {
        value: Mttr {
            mean_ms: mean(&repairs),
            resolved: repairs.len(),
        },
        events: repair_refs,
        query: query(&format!(
            r#". as $all
| [$all[] | select(.type == "{INCIDENT_RESOLVED}") | {{id: .data.subject.id, t: (.time | ms)}} | select(.id != null and .t != null)] as $res
| [$all[] | select(.type == "{INCIDENT_DETECTED}" and inwin and .data.subject.id != null)
   | (.time | ms) as $d | .data.subject.id as $id
   | ([$res[] | select(.id == $id and .t >= $d) | .t] | min) as $r
   | select($r != null) | $r - $d]
| {{mean: (if length > 0 then add / length else null end), resolved: length}}"#
        )),
    };
    Report {
        window: *w,
        deploy_frequency,
        lead_time,
        change_failure_rate,
        mttr,
    }
}

/// `query` with the window filled in.
pub fn command(q: &str, w: &Window) -> String {
    q.replace("SINCE_MS", &w.since.to_string())
        .replace("UNTIL_MS", &w.until.to_string())
}

/// A CDEvents-shaped event for tests and scripted histories.
pub fn cd(
    ty: &str,
    source: &str,
    id: &str,
    time: &str,
    subject: &str,
    content: Value,
) -> CloudEvent {
    let mut e = crate::events::event(id.into(), source.into(), ty, 0, subject, Value::Null);
    e.time = Some(time.into());
    e.data = Some(serde_json::json!({"subject": {"id": subject, "content": content}}));
    e
}

#[cfg(test)]
mod tests;
