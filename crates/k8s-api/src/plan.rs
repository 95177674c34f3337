//! What the controller should make of the world, as a pure function of what it observed: which
//! ReplicaSets run how many pods, which pod-template hash each Service selects, and whether
//! the control plane needs a new rollout. The reconciler ([`vireo-k8s`]) reads the world,
//! calls [`plan`], and writes the difference; being a function of observations only, a plan
//! is the same after a restart (level-triggered).
//!
//! The replica rule is Argo Rollouts': the canary runs `ceil(weight × replicas / 100)` pods;
//! the stable keeps all `replicas` until the promotion, unless `dynamicStableScale` shrinks it
//! to the rest. The scale-down delays are deadlines written on the ReplicaSet (an annotation,
//! as Argo's `scale-down-deadline`), so they survive a restart of the controller.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use vireo_core::rollout::{Millis, Phase};

/// The label that pins pods, ReplicaSets and Service selectors to one template (Argo's name,
/// so dashboards and queries written for Argo keep working).
pub const HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Milliseconds since the epoch after which a ReplicaSet is scaled to zero.
pub const SCALE_DOWN_DEADLINE: &str = "vireo.dev/scale-down-deadline";
/// Default for both `scaleDownDelaySeconds` and `abortScaleDownDelaySeconds` (Argo's).
pub const DEFAULT_SCALE_DOWN_DELAY_S: i32 = 30;

/// A stable hash of a pod template: FNV-1a (32 bit) over its canonical JSON, written with
/// Kubernetes' safe alphabet (no vowels, so no words). Argo hashes Go's in-memory form, which
/// cannot be reproduced outside Go, so the values differ from Argo's.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let mut t = template.clone();
    // The hash label is ours to add; it must not change the hash.
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    // serde_json's maps are ordered by key: the text is canonical.
    let value = serde_json::to_value(&t).unwrap_or_default();
    let text = value.to_string();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    safe_encode(&h.to_string())
}

/// Kubernetes' `rand.SafeEncodeString`: each character mapped onto an alphabet without vowels.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Argo's rule: the canary's pods for a weight.
pub fn canary_replicas(replicas: i32, weight: u8) -> i32 {
    let r = i64::from(replicas.max(0));
    ((r * i64::from(weight) + 99) / 100) as i32
}

/// The stable's pods while a canary holds `weight`.
pub fn stable_replicas(replicas: i32, weight: u8, dynamic: bool) -> i32 {
    if dynamic {
        (replicas.max(0) - canary_replicas(replicas, weight)).max(0)
    } else {
        replicas.max(0)
    }
}

/// What the control plane's store says about the rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The pod-template hash the stored rollout treats as stable, and the canary's.
    pub stable: String,
    pub canary: String,
    pub phase: Phase,
    pub weight: u8,
    /// Ended with nothing left to do (drained after an abort).
    pub settled: bool,
}

/// One ReplicaSet the controller owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSet {
    pub hash: String,
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    pub deadline: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// The hash of `spec.template` now.
    pub hash: String,
    pub stored: Option<Stored>,
    /// The hash the stable Service selects today, if it selects one of our ReplicaSets.
    pub stable_service: Option<String>,
    pub sets: Vec<ObservedSet>,
    pub dynamic_stable_scale: bool,
    pub scale_down_delay_ms: Millis,
    pub abort_scale_down_delay_ms: Millis,
    pub now: Millis,
}

/// One ReplicaSet as it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct SetPlan {
    pub hash: String,
    pub replicas: i32,
    /// Write this scale-down deadline (the ReplicaSet still runs `replicas` until then).
    pub deadline: Option<Millis>,
    /// The set is in use again (stable, or the running canary): remove a deadline left from an
    /// earlier scale-down, so that a later one starts its delay afresh.
    pub clear_deadline: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Give the control plane a rollout from `stable` to `canary` (both hashes).
    pub apply: Option<(String, String)>,
    pub sets: Vec<SetPlan>,
    /// The hash each Service selects.
    pub stable_selector: String,
    pub canary_selector: String,
    /// The earliest deadline still to come: reconcile again then.
    pub wake_at: Option<Millis>,
    /// `spec.template` changed while the engine still runs the previous canary: the new
    /// template waits until that one has ended (completed, or aborted and drained).
    pub waiting: bool,
    /// The stable Service stays where it is until the new stable's pods are ready.
    pub holding: bool,
    /// While holding: the new stable's ready pods, and how many it needs to take the traffic.
    pub hold_ready: (i32, i32),
}

/// The plan for one Rollout.
pub fn plan(o: &Observed) -> Plan {
    // A running canary of an older template keeps being driven until it ends; the newest
    // template becomes the next canary then (the engine takes one recipe at a time).
    let running = o
        .stored
        .as_ref()
        .filter(|s| s.canary != o.hash && !(s.phase.is_terminal() && s.settled));
    if let Some(r) = running {
        let mut older = o.clone();
        older.hash = r.canary.clone();
        let mut p = plan(&older);
        p.waiting = true;
        // The newest template's set, if one was made, is neither stable nor running.
        return p;
    }
    let mut p = Plan {
        apply: None,
        sets: Vec::new(),
        stable_selector: o.hash.clone(),
        canary_selector: o.hash.clone(),
        wake_at: None,
        waiting: false,
        holding: false,
        hold_ready: (0, 0),
    };
    let stable = match &o.stored {
        // The stored rollout knows; once it completed, its canary is the stable.
        Some(s) if s.phase == Phase::Completed => s.canary.clone(),
        Some(s) => s.stable.clone(),
        None => o.stable_service.clone().unwrap_or_else(|| o.hash.clone()),
    };
    let stored_current = o.stored.as_ref().filter(|s| s.canary == o.hash);
    if stable != o.hash && stored_current.is_none() {
        // A new template: the control plane runs it as the canary of the stable one.
        p.apply = Some((stable.clone(), o.hash.clone()));
    }
    p.stable_selector = stable.clone();
    p.canary_selector = o.hash.clone();

    // Pods per hash for what the store says now.
    let (stable_n, canary_n, canary_done) = match stored_current {
        None if stable == o.hash => (o.replicas, o.replicas, false),
        // Not yet in the store: the canary starts when the control plane materializes it.
        None => (o.replicas, 0, false),
        Some(s) => match s.phase {
            Phase::Completed => (o.replicas, o.replicas, false),
            // The canary keeps what it has until drained (below).
            Phase::Aborted | Phase::RolledBack => (o.replicas, 0, true),
            _ => {
                // From `Pending` on (the engine materializes the canary first, then gates and
                // waits for approval): at least one canary pod, so there is something to judge.
                let c = canary_replicas(o.replicas, s.weight).max(1);
                (
                    stable_replicas(o.replicas, s.weight, o.dynamic_stable_scale),
                    c,
                    false,
                )
            }
        },
    };
    let observed = |hash: &str| o.sets.iter().find(|s| s.hash == hash);
    let wake = |at: Millis, p: &mut Plan| {
        p.wake_at = Some(p.wake_at.map_or(at, |w: Millis| w.min(at)));
    };
    if stable == o.hash {
        p.sets.push(SetPlan {
            hash: stable.clone(),
            replicas: o.replicas,
            deadline: None,
            clear_deadline: true,
        });
    } else {
        p.sets.push(SetPlan {
            hash: stable.clone(),
            replicas: stable_n,
            deadline: None,
            clear_deadline: true,
        });
        // The canary: after an abort it keeps its pods until drained plus the delay.
        let settled = stored_current.is_some_and(|s| s.settled);
        let canary = if canary_done {
            let keep = observed(&o.hash).map_or(0, |s| s.replicas);
            match (settled, observed(&o.hash).and_then(|s| s.deadline)) {
                (false, _) => SetPlan {
                    hash: o.hash.clone(),
                    replicas: keep,
                    deadline: None,
                    clear_deadline: false,
                },
                (true, None) => {
                    let at = o.now + o.abort_scale_down_delay_ms;
                    wake(at, &mut p);
                    SetPlan {
                        hash: o.hash.clone(),
                        replicas: keep,
                        deadline: Some(at),
                        clear_deadline: false,
                    }
                }
                (true, Some(at)) if o.now < at => {
                    wake(at, &mut p);
                    SetPlan {
                        hash: o.hash.clone(),
                        replicas: keep,
                        deadline: None,
                        clear_deadline: false,
                    }
                }
                (true, Some(_)) => SetPlan {
                    hash: o.hash.clone(),
                    replicas: 0,
                    deadline: None,
                    clear_deadline: false,
                },
            }
        } else {
            SetPlan {
                hash: o.hash.clone(),
                replicas: canary_n,
                deadline: None,
                clear_deadline: true,
            }
        };
        p.sets.push(canary);
        if canary_done {
            // Traffic is back on the stable: the canary Service follows the canary still,
            // so its last requests drain where they were.
            p.canary_selector = o.hash.clone();
        }
    }
    // Every other ReplicaSet (an older stable after a promotion, an abandoned canary): down
    // after the promotion delay.
    for s in &o.sets {
        if p.sets.iter().any(|x| x.hash == s.hash) {
            continue;
        }
        let plan = match s.deadline {
            _ if s.replicas == 0 => SetPlan {
                hash: s.hash.clone(),
                replicas: 0,
                deadline: None,
                clear_deadline: false,
            },
            None => {
                let at = o.now + o.scale_down_delay_ms;
                wake(at, &mut p);
                SetPlan {
                    hash: s.hash.clone(),
                    replicas: s.replicas,
                    deadline: Some(at),
                    clear_deadline: false,
                }
            }
            Some(at) if o.now < at => {
                wake(at, &mut p);
                SetPlan {
                    hash: s.hash.clone(),
                    replicas: s.replicas,
                    deadline: None,
                    clear_deadline: false,
                }
            }
            Some(_) => SetPlan {
                hash: s.hash.clone(),
                replicas: 0,
                deadline: None,
                clear_deadline: false,
            },
        };
        p.sets.push(plan);
    }
    hold_until_ready(o, &mut p);
    p
}

/// Traffic moves to a set only once it can take it. A stable whose pods are still starting —
/// a rollback to a set that was scaled down after the promotion, a promotion whose last pods
/// are not ready — leaves the stable Service on the set that serves now, which keeps the pods
/// it has meanwhile; the ReplicaSet's readiness changing brings the next pass (the controller
/// watches its ReplicaSets). Argo Rollouts waits for the stable to be available the same way.
///
/// "Can take it" is: as many ready pods as the serving set has now, or all the set is meant
/// to run. Not every pod: a serving set that was already small (with `dynamicStableScale`) or
/// failing must not keep traffic from a set that is no worse. The serving set is not scaled up
/// while held, which would raise that bar as it waits. In a cluster without room for the
/// second set's pods the hold lasts until there is room, as a Deployment's rolling update with
/// `maxUnavailable: 0` does; the condition `StableReady=False` says how many pods are ready.
fn hold_until_ready(o: &Observed, p: &mut Plan) {
    let Some(serving) = o
        .stable_service
        .as_ref()
        .filter(|s| **s != p.stable_selector)
    else {
        return;
    };
    let want = p
        .sets
        .iter()
        .find(|s| s.hash == p.stable_selector)
        .map_or(0, |s| s.replicas);
    let ready = |hash: &str| {
        o.sets
            .iter()
            .find(|s| s.hash == hash)
            .map_or(0, |s| s.ready)
    };
    if want == 0 || ready(&p.stable_selector) >= want.min(ready(serving)) {
        return;
    }
    p.stable_selector = serving.clone();
    p.holding = true;
    let has = o
        .sets
        .iter()
        .find(|s| s.hash == *serving)
        .map_or(0, |s| s.replicas);
    if let Some(set) = p.sets.iter_mut().find(|s| s.hash == *serving) {
        set.replicas = set.replicas.max(has);
        set.deadline = None;
        set.clear_deadline = true;
    }
}

#[cfg(test)]
mod tests;
