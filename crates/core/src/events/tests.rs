use serde_json::json;

use super::*;

fn valid() -> Value {
    json!({
        "specversion": "1.0", "id": "1", "source": "/ci/pipeline", "type": CHANGE_MERGED,
        "time": "2026-11-20T10:00:00Z", "data": {"commit": "abc"}, "traceparent": "00-x"
    })
}

#[test]
fn a_structured_event_is_accepted_and_each_bad_attribute_is_named() {
    let e = CloudEvent::from_json(valid()).unwrap();
    assert_eq!(e.ty, CHANGE_MERGED);
    assert_eq!(e.extensions["traceparent"], "00-x");
    assert_eq!(e.time_ms(), 1_795_168_800_000);
    let cases: [(&str, Value, &str); 11] = [
        ("time", json!("2026-11-20T10:00:00"), "time"),
        ("seq", json!("7"), "seq"),
        ("id", Value::Null, "id"),
        ("source", json!(""), "source"),
        ("type", json!(3), "type"),
        ("specversion", json!("0.3"), "specversion"),
        ("time", json!("yesterday"), "time"),
        ("subject", json!(1), "subject"),
        ("Bad-Name", json!("x"), "Bad-Name"),
        ("nested", json!({"a": 1}), "nested"),
        ("data_base64", json!("AA=="), "data_base64"),
    ];
    for (attr, value, named) in cases {
        let mut v = valid();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(attr);
        } else {
            v[attr] = value;
        }
        let err = CloudEvent::from_json(v).unwrap_err();
        assert_eq!(err.attribute, named, "{attr}: {err}");
    }
    assert_eq!(
        CloudEvent::from_json(json!([1])).unwrap_err().attribute,
        "event"
    );
    // Any RFC 3339 offset is accepted, and stored as the same instant in UTC.
    let mut v = valid();
    v["time"] = json!("2026-11-20T12:00:00.5+02:00");
    let mut e = CloudEvent::from_json(v).unwrap();
    e.normalize_time(0);
    assert_eq!(e.time.as_deref(), Some("2026-11-20T10:00:00.500Z"));
    let mut untimed = CloudEvent::from_json(
        json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}),
    )
    .unwrap();
    untimed.normalize_time(1_795_168_800_000);
    assert_eq!(untimed.time.as_deref(), Some("2026-11-20T10:00:00.000Z"));
}

#[test]
fn binary_mode_reads_ce_headers_and_the_body_as_data() {
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "42"),
        ("ce-source", "/scm"),
        ("ce-type", CHANGE_MERGED),
        ("ce-subject", "caf%C3%A9"),
        ("content-type", "application/json"),
    ] {
        h.insert(http::HeaderName::from_static(k), v.parse().unwrap());
    }
    let e = from_binary(&h, br#"{"commit":"abc"}"#).unwrap();
    assert_eq!(e.id, "42");
    assert_eq!(e.subject.as_deref(), Some("café"));
    assert_eq!(e.data, Some(json!({"commit": "abc"})));
    h.remove("ce-source");
    assert_eq!(from_binary(&h, b"{}").unwrap_err().attribute, "source");
}

#[test]
fn a_rollback_transition_opens_an_incident_and_the_recovery_closes_it() {
    use crate::rollout::{Action, Input};
    let spec = crate::spec::Rollout::parse(crate::testdata::ROLLOUT).unwrap();
    let recipe = crate::rollout::Recipe::of(&spec);
    let (mut state, _) = RolloutState::new();
    let mut all = Vec::new();
    let mut feed = |state: &mut RolloutState, seq: u64, input: Input| {
        let before = state.clone();
        let fx = state.apply(&recipe, seq * 10, input.clone()).unwrap();
        all.extend(for_transition(&Transition {
            instance: "i",
            rollout: &spec,
            generation: 1,
            seq,
            at_ms: seq * 10,
            input: &input,
            actor: None,
            reason_given: None,
            effects: &fx,
            before: &before,
            after: state,
            commit: None,
        }));
    };
    feed(&mut state, 1, Input::InputsMaterialized);
    feed(
        &mut state,
        2,
        Input::GateEvaluated {
            passed: true,
            needs_approval: false,
            reason: "ok".into(),
            provenance: None,
        },
    );
    feed(&mut state, 3, Input::WeightApplied { weight: 5 });
    feed(&mut state, 4, Input::Action(Action::Abort));
    feed(&mut state, 5, Input::WeightApplied { weight: 0 });
    let types: Vec<&str> = all.iter().map(|e| e.ty.as_str()).collect();
    assert!(types.contains(&SERVICE_ROLLEDBACK), "{types:?}");
    let detected = all.iter().find(|e| e.ty == INCIDENT_DETECTED).unwrap();
    let resolved = all.iter().find(|e| e.ty == INCIDENT_RESOLVED).unwrap();
    assert_eq!(
        detected.data.as_ref().unwrap()["subject"]["id"],
        resolved.data.as_ref().unwrap()["subject"]["id"]
    );
    assert!(resolved.time_ms() > detected.time_ms());
    // Every event is valid CloudEvents, ids are unique per source.
    let mut ids = std::collections::BTreeSet::new();
    for e in &all {
        let back = CloudEvent::from_json(serde_json::to_value(e).unwrap()).unwrap();
        assert_eq!(&back, e);
        assert!(ids.insert((e.source.clone(), e.id.clone())), "{}", e.id);
        assert_eq!(e.source, "/vireo/i/rollouts/checkout");
    }
}
