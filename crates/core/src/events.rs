//! Events: every state change as a CloudEvents 1.0 event (structured JSON mode).
//!
//! Pure: the event type, its validation (what `POST /api/v1/events` accepts, each refusal
//! naming the attribute), and the mapping from a committed rollout transition to the events it
//! makes. The store appends them in the transition's own transaction (`eventlog` serves them,
//! streams them and pushes them to a sink).
//!
//! CD concepts use CDEvents types and the CDEvents data shape (`{context, subject}`) so CDEvents
//! consumers read them unchanged; Vireo's own (`dev.vireo.*`) carry plain data. Hand-written
//! rather than the `cloudevents-sdk` crate: the structured format is one flat JSON object, and
//! what the spec needs beyond it (attribute-named errors, CDEvents shapes) is ours anyway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::rollout::{Effect, Input, Phase, RolloutState};

pub const SERVICE_UPGRADED: &str = "dev.cdevents.service.upgraded.0.3.0";
pub const SERVICE_ROLLEDBACK: &str = "dev.cdevents.service.rolledback.0.3.0";
pub const INCIDENT_DETECTED: &str = "dev.cdevents.incident.detected.0.3.0";
pub const INCIDENT_RESOLVED: &str = "dev.cdevents.incident.resolved.0.3.0";
pub const CHANGE_MERGED: &str = "dev.cdevents.change.merged.0.2.0";
pub const ROLLOUT_STEP: &str = "dev.vireo.rollout.step.0.1.0";
pub const ANALYSIS_COMPLETED: &str = "dev.vireo.analysis.completed.0.1.0";
pub const FLAG_TOGGLED: &str = "dev.vireo.flag.toggled.0.1.0";
/// A flag's definition was created or replaced.
pub const FLAG_DEFINED: &str = "dev.vireo.flag.defined.0.1.0";
pub const FLAG_EVALUATED: &str = "dev.vireo.flag.evaluated.0.1.0";
/// The CDEvents spec version our CD events' `data.context.version` names.
const CDEVENTS_VERSION: &str = "0.4.1";

/// A CloudEvent in structured JSON mode. Extension attributes are kept as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

/// Why an event was refused: the attribute, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{attribute}: {reason}")]
pub struct EventError {
    pub attribute: String,
    pub reason: String,
}

fn refuse(attribute: &str, reason: impl Into<String>) -> EventError {
    EventError {
        attribute: attribute.into(),
        reason: reason.into(),
    }
}

const CONTEXT: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
];

impl CloudEvent {
    /// Checks a structured-mode event (CloudEvents 1.0 §3 and the JSON format): required
    /// attributes present and non-empty strings, `specversion` 1.0, `time` RFC 3339, extension
    /// names lower-case alphanumerics, extension values strings, integers or booleans, at most
    /// one of `data` and `data_base64`.
    pub fn from_json(v: Value) -> Result<CloudEvent, EventError> {
        let Value::Object(map) = v else {
            return Err(refuse("event", "must be a JSON object"));
        };
        for attr in ["specversion", "id", "source", "type"] {
            match map.get(attr) {
                None => return Err(refuse(attr, "is required")),
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => return Err(refuse(attr, "must be a non-empty string")),
            }
        }
        if map["specversion"] != "1.0" {
            return Err(refuse("specversion", "must be \"1.0\""));
        }
        for attr in [
            "time",
            "subject",
            "datacontenttype",
            "dataschema",
            "data_base64",
        ] {
            match map.get(attr) {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(refuse(attr, "must be a string")),
            }
        }
        if let Some(Value::String(t)) = map.get("time") {
            if parse_time(t).is_none() {
                return Err(refuse(
                    "time",
                    format!("{t:?} is not an RFC 3339 timestamp"),
                ));
            }
        }
        if map.contains_key("seq") {
            return Err(refuse(
                "seq",
                "is reserved: the event API puts each event's log position there",
            ));
        }
        if map.contains_key("data") && map.contains_key("data_base64") {
            return Err(refuse(
                "data_base64",
                "an event carries data or data_base64, not both",
            ));
        }
        for (name, value) in &map {
            if CONTEXT.contains(&name.as_str()) || name == "data_base64" {
                continue;
            }
            check_extension(name, value)?;
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| refuse("event", e.to_string()))
    }

    /// The event's time in milliseconds (0 when it has none or it is unreadable).
    pub fn time_ms(&self) -> u64 {
        self.time.as_deref().and_then(parse_time).unwrap_or(0)
    }

    /// How the log stores times: UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ` (the same instant, one
    /// spelling, so queries and DORA's jq receipts compare them as they are); an event without
    /// `time` gets the time it was received.
    pub fn normalize_time(&mut self, received_ms: u64) {
        let ms = self
            .time
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(received_ms);
        self.time = Some(crate::digest::rfc3339(ms));
    }
}

/// An RFC 3339 timestamp (any offset) in milliseconds since the epoch.
pub fn parse_time(t: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

fn check_extension(name: &str, value: &Value) -> Result<(), EventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(refuse(
            name,
            "is not a valid attribute name (lower-case letters and digits only)",
        ));
    }
    match value {
        Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
            Ok(())
        }
        _ => Err(refuse(
            name,
            "an extension attribute must be a string, a 32-bit integer or a boolean",
        )),
    }
}

/// A CloudEvent from binary HTTP mode: `ce-*` headers carry the attributes, the body is `data`.
pub fn from_binary(headers: &http::HeaderMap, body: &[u8]) -> Result<CloudEvent, EventError> {
    let mut map = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| refuse(attr, "the header value is not text"))?;
        let decoded = percent_decode(value);
        map.insert(attr.to_string(), Value::String(decoded));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    map.insert("datacontenttype".into(), content_type.into());
    if !body.is_empty() {
        if content_type.starts_with("application/json") || content_type.ends_with("+json") {
            let data = serde_json::from_slice(body)
                .map_err(|e| refuse("data", format!("is not JSON: {e}")))?;
            map.insert("data".into(), data);
        } else {
            // Bytes stay bytes (the JSON format's data_base64).
            map.insert("data_base64".into(), crate::digest::b64(body).into());
        }
    }
    CloudEvent::from_json(Value::Object(map))
}

/// Header values of binary mode are percent-encoded where they are not printable ASCII.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &bytes[i + 1..i + 3];
            let hex = std::str::from_utf8(hex)
                .ok()
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where our events come from: `/vireo/<instance>/rollouts/<name>`.
pub fn rollout_source(instance: &str, rollout: &str) -> String {
    format!("/vireo/{instance}/rollouts/{rollout}")
}

pub fn flag_source(instance: &str, key: &str) -> String {
    format!("/vireo/{instance}/flags/{key}")
}

/// An event of ours: `time`, `subject`, `datacontenttype` always set.
pub fn event(
    id: String,
    source: String,
    ty: &str,
    at_ms: u64,
    subject: &str,
    data: Value,
) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id,
        source,
        ty: ty.into(),
        time: Some(crate::digest::rfc3339(at_ms)),
        subject: Some(subject.into()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        data: Some(data),
        data_base64: None,
        extensions: BTreeMap::new(),
    }
}

/// CDEvents' data shape: the event's context and its subject.
fn cdevent_data(ce: &CloudEvent, subject_id: &str, content: Value) -> Value {
    json!({
        "context": {
            "version": CDEVENTS_VERSION,
            "id": ce.id,
            "source": ce.source,
            "type": ce.ty,
            "timestamp": ce.time,
        },
        "subject": {"id": subject_id, "source": ce.source, "content": content},
    })
}

/// What a committed transition tells the event log.
pub struct Transition<'a> {
    pub instance: &'a str,
    pub rollout: &'a crate::spec::Rollout,
    pub generation: u64,
    /// The input's sequence number in this generation (events ids are derived from it).
    pub seq: u64,
    pub at_ms: u64,
    pub input: &'a Input,
    pub actor: Option<&'a str>,
    /// The reason the actor gave, if any.
    pub reason_given: Option<&'a str>,
    pub effects: &'a [Effect],
    pub before: &'a RolloutState,
    pub after: &'a RolloutState,
    /// The release's commit and its time, when provenance told us (for lead time).
    pub commit: Option<(String, Option<String>)>,
}

/// The incident a backed-out rollout generation opens (one per generation).
pub fn incident_id(rollout: &str, generation: u64) -> String {
    format!("{rollout}.g{generation}.incident")
}

/// The events one committed transition makes, in order.
pub fn for_transition(t: &Transition) -> Vec<CloudEvent> {
    let name = t.rollout.name();
    let release = format!("{name}.g{}", t.generation);
    let mut out = Out {
        source: rollout_source(t.instance, name),
        prefix: format!("{release}.{}", t.seq),
        release: release.clone(),
        at_ms: t.at_ms,
        events: Vec::new(),
    };
    let canary = &t.rollout.spec.canary;
    let artifact = canary
        .image
        .clone()
        .unwrap_or_else(|| format!("version/{}", canary.version));
    let env = json!({"id": "vireo"});
    // A gate that fails ends a release before any user saw it: no rollback, no incident.
    let served = t.before.phase != Phase::GateEval;
    for e in t.effects {
        let Effect::Checkpoint { from, to, reason } = e else {
            continue;
        };
        let mut data = json!({
            "rollout": name, "generation": t.generation, "from": from, "to": to,
            "reason": reason, "step": t.after.step, "canaryWeight": t.after.canary_weight,
            "actor": t.actor, "input": t.input,
        });
        if let Some(why) = t.reason_given {
            data["actorReason"] = json!(why);
        }
        out.plain(ROLLOUT_STEP, data);
        match to {
            Phase::Completed => {
                let (commit, commit_time) = t.commit.clone().unzip();
                out.cd(
                    SERVICE_UPGRADED,
                    name,
                    json!({
                        "environment": env, "artifactId": artifact, "version": canary.version,
                        "release": release, "commit": commit, "commitTime": commit_time.flatten(),
                    }),
                );
            }
            Phase::Aborted | Phase::RolledBack if served => {
                out.cd(
                    SERVICE_ROLLEDBACK,
                    name,
                    json!({"environment": env, "artifactId": artifact, "release": release, "reason": reason}),
                );
                out.cd(
                    INCIDENT_DETECTED,
                    &incident_id(name, t.generation),
                    json!({"description": reason, "environment": env, "service": {"id": name}, "release": release}),
                );
            }
            _ => {}
        }
    }
    if let Input::WeightApplied { weight } = t.input {
        if t.before.canary_weight != t.after.canary_weight || t.after.phase.is_backing_out() {
            out.plain(
                ROLLOUT_STEP,
                json!({"rollout": name, "generation": t.generation, "canaryWeight": weight,
                       "applied": true, "step": t.after.step, "phase": t.after.phase}),
            );
        }
        // Every proxy is off the bad version: the incident this generation opened is over.
        let zero = |s: &RolloutState| s.abort.as_ref().is_some_and(|a| a.zero_at.is_some());
        if t.after.phase.is_backing_out() && !zero(t.before) && zero(t.after) {
            out.cd(
                INCIDENT_RESOLVED,
                &incident_id(name, t.generation),
                json!({"environment": env, "service": {"id": name}, "release": release,
                       "resolution": "every proxy back on the previous version"}),
            );
        }
    }
    if let Input::AnalysisCompleted {
        run,
        verdict,
        message,
    } = t.input
    {
        out.plain(
            ANALYSIS_COMPLETED,
            json!({"rollout": name, "generation": t.generation, "run": run, "verdict": verdict,
                   "message": message,
                   "decisionId": crate::decision::analysis_decision(name, t.generation, *run)}),
        );
    }
    out.events
}

/// Events of one transition: ids `<release>.<seq>.<n>`, one source, one time.
struct Out {
    source: String,
    prefix: String,
    release: String,
    at_ms: u64,
    events: Vec<CloudEvent>,
}

impl Out {
    fn plain(&mut self, ty: &str, data: Value) -> &mut CloudEvent {
        let id = format!("{}.{}", self.prefix, self.events.len() + 1);
        let e = event(id, self.source.clone(), ty, self.at_ms, &self.release, data);
        self.events.push(e);
        self.events.last_mut().expect("just pushed")
    }

    /// A CDEvent: its data carries the event's own context and the subject.
    fn cd(&mut self, ty: &str, subject_id: &str, content: Value) {
        let e = self.plain(ty, Value::Null);
        e.data = Some(cdevent_data(e, subject_id, content));
    }
}

#[cfg(test)]
mod tests;
