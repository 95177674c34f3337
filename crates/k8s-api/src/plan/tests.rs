use super::*;

fn observed(stored: Option<Stored>) -> Observed {
    Observed {
        replicas: 4,
        hash: "new".into(),
        stored,
        stable_service: Some("old".into()),
        sets: vec![ObservedSet {
            hash: "old".into(),
            replicas: 4,
            ready: 4,
            deadline: None,
        }],
        dynamic_stable_scale: false,
        scale_down_delay_ms: 30_000,
        abort_scale_down_delay_ms: 30_000,
        now: 1_000_000,
    }
}

fn stored(phase: Phase, weight: u8, settled: bool) -> Option<Stored> {
    Some(Stored {
        stable: "old".into(),
        canary: "new".into(),
        phase,
        weight,
        settled,
    })
}

fn replicas(p: &Plan, hash: &str) -> i32 {
    p.sets
        .iter()
        .find(|s| s.hash == hash)
        .map(|s| s.replicas)
        .unwrap_or(-1)
}

#[test]
fn argo_replica_rule() {
    assert_eq!(canary_replicas(4, 5), 1);
    assert_eq!(canary_replicas(4, 25), 1);
    assert_eq!(canary_replicas(4, 26), 2);
    assert_eq!(canary_replicas(4, 100), 4);
    assert_eq!(canary_replicas(10, 0), 0);
    assert_eq!(stable_replicas(4, 25, false), 4);
    assert_eq!(stable_replicas(4, 25, true), 3);
    assert_eq!(stable_replicas(4, 100, true), 0);
}

#[test]
fn the_first_template_is_stable_at_once() {
    let mut o = observed(None);
    o.stable_service = None;
    o.sets.clear();
    let p = plan(&o);
    assert_eq!(p.apply, None);
    assert_eq!(
        (p.stable_selector.as_str(), p.canary_selector.as_str()),
        ("new", "new")
    );
    assert_eq!(replicas(&p, "new"), 4);
}

#[test]
fn a_new_template_becomes_the_canary_of_the_stable_one() {
    let p = plan(&observed(None));
    assert_eq!(p.apply, Some(("old".into(), "new".into())));
    assert_eq!(replicas(&p, "old"), 4);
    assert_eq!(
        replicas(&p, "new"),
        0,
        "the canary starts when the control plane materializes it"
    );
    assert_eq!(p.stable_selector, "old");
}

#[test]
fn canary_pods_follow_the_weight() {
    for (w, want) in [(5, 1), (25, 1), (50, 2), (100, 4)] {
        let p = plan(&observed(stored(Phase::Progressing, w, false)));
        assert_eq!(p.apply, None);
        assert_eq!(replicas(&p, "new"), want, "weight {w}");
        assert_eq!(replicas(&p, "old"), 4);
        assert_eq!(
            (p.stable_selector.as_str(), p.canary_selector.as_str()),
            ("old", "new")
        );
    }
    let mut o = observed(stored(Phase::Progressing, 50, false));
    o.dynamic_stable_scale = true;
    assert_eq!(replicas(&plan(&o), "old"), 2);
}

#[test]
fn a_promotion_moves_the_stable_selector_and_scales_the_old_down_after_the_delay() {
    let mut o = observed(stored(Phase::Completed, 100, true));
    o.sets.push(ObservedSet {
        hash: "new".into(),
        replicas: 4,
        ready: 4,
        deadline: None,
    });
    let p = plan(&o);
    assert_eq!(p.stable_selector, "new");
    let old = p.sets.iter().find(|s| s.hash == "old").unwrap();
    assert_eq!((old.replicas, old.deadline), (4, Some(1_030_000)));
    assert_eq!(p.wake_at, Some(1_030_000));
    o.sets[0].deadline = Some(1_030_000);
    o.now = 1_030_000;
    assert_eq!(replicas(&plan(&o), "old"), 0);
}

#[test]
fn an_abort_keeps_the_canary_until_drained_then_the_delay() {
    let mut o = observed(stored(Phase::Aborted, 0, false));
    o.sets.push(ObservedSet {
        hash: "new".into(),
        replicas: 1,
        ready: 1,
        deadline: None,
    });
    let p = plan(&o);
    assert_eq!(replicas(&p, "new"), 1, "draining");
    assert_eq!(p.stable_selector, "old");
    o.stored = stored(Phase::Aborted, 0, true);
    let p = plan(&o);
    let c = p.sets.iter().find(|s| s.hash == "new").unwrap();
    assert_eq!((c.replicas, c.deadline), (1, Some(1_030_000)));
    o.sets[1].deadline = Some(1_030_000);
    o.now = 1_030_001;
    assert_eq!(replicas(&plan(&o), "new"), 0);
}

#[test]
fn the_hash_ignores_its_own_label_and_changes_with_the_template() {
    let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "x", "image": "x:1"}]}
    }))
    .unwrap();
    let h = pod_template_hash(&t);
    assert!(
        h.len() >= 8
            && h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{h}"
    );
    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(HASH_LABEL.into(), h.clone());
    assert_eq!(pod_template_hash(&labelled), h);
    let mut v2 = t.clone();
    v2.spec.as_mut().unwrap().containers[0].image = Some("x:2".into());
    assert_ne!(pod_template_hash(&v2), h);
}

#[test]
fn the_canary_starts_as_soon_as_the_engine_has_the_rollout() {
    // The engine materializes the canary in Pending (before the gate and any approval).
    for phase in [Phase::Pending, Phase::GateEval, Phase::AwaitingApproval] {
        assert_eq!(
            replicas(&plan(&observed(stored(phase, 0, false))), "new"),
            1,
            "{phase:?}"
        );
    }
}

#[test]
fn a_template_changed_mid_rollout_waits_for_the_running_canary_to_end() {
    // The engine runs old → new; the user applies "newer" at 25 %.
    let mut o = observed(stored(Phase::Progressing, 25, false));
    o.hash = "newer".into();
    o.sets.push(ObservedSet {
        hash: "new".into(),
        replicas: 1,
        ready: 1,
        deadline: None,
    });
    let p = plan(&o);
    assert!(p.waiting);
    assert_eq!(p.apply, None, "the engine takes one recipe at a time");
    assert_eq!(
        replicas(&p, "new"),
        1,
        "the running canary keeps following its weight"
    );
    assert_eq!(
        (p.stable_selector.as_str(), p.canary_selector.as_str()),
        ("old", "new")
    );
    // Once it completed, the newest template becomes the next canary of it.
    o.stored = stored(Phase::Completed, 100, true);
    let p = plan(&o);
    assert!(!p.waiting);
    assert_eq!(p.apply, Some(("new".into(), "newer".into())));
}

#[test]
fn a_set_in_use_again_loses_its_old_deadline() {
    let mut o = observed(None);
    o.sets[0].deadline = Some(5);
    o.hash = "old".into();
    let p = plan(&o);
    let old = p.sets.iter().find(|s| s.hash == "old").unwrap();
    assert!(old.clear_deadline && old.replicas == 4);
}

#[test]
fn the_stable_service_moves_only_to_ready_pods() {
    // A rollback after the promotion scaled the old set down: the old set comes back, and the
    // Service stays on the new one (which keeps its pods) until the old pods are ready.
    let mut o = observed(stored(Phase::RolledBack, 0, true));
    o.stable_service = Some("new".into());
    o.sets = vec![
        ObservedSet {
            hash: "old".into(),
            replicas: 0,
            ready: 0,
            deadline: None,
        },
        ObservedSet {
            hash: "new".into(),
            replicas: 4,
            ready: 4,
            deadline: Some(1_000_500),
        },
    ];
    o.now = 1_002_000;
    let p = plan(&o);
    assert_eq!(replicas(&p, "old"), 4, "the old set scales back up");
    assert_eq!(p.stable_selector, "new", "held: no old pod is ready");
    assert!(p.holding);
    let serving = p.sets.iter().find(|s| s.hash == "new").unwrap();
    assert_eq!(
        (serving.replicas, serving.deadline),
        (4, None),
        "the serving set keeps its pods past its deadline while held"
    );
    o.sets[0].replicas = 4;
    o.sets[0].ready = 3;
    assert_eq!(plan(&o).stable_selector, "new");
    o.sets[0].ready = 4;
    let p = plan(&o);
    assert_eq!(p.stable_selector, "old", "moved once every pod is ready");
    assert!(!p.holding);

    // As many ready pods as the serving set has is enough: a cluster without room for two
    // full sets may never schedule the last ones while the held set keeps its pods.
    o.sets[1].ready = 2;
    o.sets[0].ready = 2;
    assert_eq!(
        plan(&o).stable_selector,
        "old",
        "as ready as the serving set"
    );
    o.sets[0].ready = 1;
    assert_eq!(
        plan(&o).stable_selector,
        "new",
        "fewer ready than the serving set"
    );
    // A serving set with no ready pod holds nothing back.
    o.sets[1].ready = 0;
    o.sets[0].ready = 0;
    assert_eq!(plan(&o).stable_selector, "old");
}

#[test]
fn a_held_set_keeps_its_pods_and_does_not_raise_the_bar() {
    // With dynamicStableScale the serving set may be small: it keeps what it has (scaling it
    // up would raise the ready count the target must reach while both compete for room), and
    // the target moves once it is as ready.
    let mut o = observed(stored(Phase::RolledBack, 0, true));
    o.stable_service = Some("new".into());
    o.sets = vec![
        ObservedSet {
            hash: "old".into(),
            replicas: 4,
            ready: 1,
            deadline: None,
        },
        ObservedSet {
            hash: "new".into(),
            replicas: 2,
            ready: 2,
            deadline: Some(5),
        },
    ];
    let p = plan(&o);
    assert!(p.holding);
    let held = p.sets.iter().find(|s| s.hash == "new").unwrap();
    assert_eq!((held.replicas, held.deadline), (2, None));
    o.sets[0].ready = 2;
    assert_eq!(plan(&o).stable_selector, "old");
}
