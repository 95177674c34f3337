//! What the API shows of a rollout: its status and timeline, built from the stored state
//! and history.

use super::*;
use vireo_api::{EvidenceIndex, EvidenceItem, Generations, RollbackPreview};

impl Driver {
    pub(super) fn view(&self, name: &str) -> Result<RolloutView, ApiError> {
        let stored = self
            .store
            .rollout(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no rollout named {name:?}")))?;
        let history = self.store.history(name)?;
        let runs = self
            .store
            .runs(name)?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        let proxy_errors = self.traffic.refusals(self.clock.now_ms());
        let mut v = view(stored, &history, runs, proxy_errors);
        if let Some(s) = self.store.schedule(name)? {
            let mut j = serde_json::to_value(&s).unwrap_or_default();
            if let Some(note) = self.live.get(name).and_then(|l| l.gate_note.clone()) {
                j["state"] = note.into();
            }
            v.status.schedule = Some(j);
        }
        Ok(v)
    }

    pub(super) fn timeline(&self, name: &str) -> Result<Timeline, ApiError> {
        timeline(&self.store, name, None)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no rollout named {name:?}"))
}

fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The stored generation `generation` of a rollout (`None`: the current one).
fn generation_of(
    store: &Store,
    name: &str,
    generation: Option<u64>,
) -> Result<StoredRollout, ApiError> {
    let stored = match generation {
        None => store.rollout(name)?,
        Some(g) => store
            .generations(name)?
            .into_iter()
            .find(|s| s.generation == g),
    };
    stored.ok_or_else(|| match generation {
        Some(g) => ApiError::NotFound(format!(
            "rollout {name:?} has no generation {g} (GET /api/v1/rollouts/{name}/generations lists them)"
        )),
        None => not_found(name),
    })
}

/// The timeline of a generation (`None`: the current one).
pub(super) fn timeline(
    store: &Store,
    name: &str,
    generation: Option<u64>,
) -> Result<Timeline, ApiError> {
    let stored = generation_of(store, name, generation)?;
    let entries = store
        .history_of(name, Some(stored.generation))?
        .into_iter()
        .map(|h| {
            let (checkpoints, outputs) = h
                .effects
                .into_iter()
                .partition(|e| matches!(e, Effect::Checkpoint { .. }));
            TimelineEntry {
                seq: h.seq,
                at: rfc3339(h.at_ms),
                at_ms: h.at_ms,
                input: h.input,
                by: h.actor,
                reason: h.reason,
                checkpoints,
                outputs,
            }
        })
        .collect();
    Ok(Timeline {
        rollout: name.to_string(),
        generation: stored.generation,
        entries,
    })
}

/// The evidence bundle's files of a generation (`None`: the current one).
pub(super) fn evidence_files(
    store: &Store,
    name: &str,
    generation: Option<u64>,
) -> Result<super::evidence::EvidenceFiles, ApiError> {
    let stored = generation_of(store, name, generation)?;
    Ok(store.evidence_files_of(&stored)?)
}

/// Every route a generation published, rebuilt from its spec and its effects.
pub(super) fn route_history(
    store: &Store,
    name: &str,
    generation: Option<u64>,
) -> Result<vireo_api::RouteHistory, ApiError> {
    let stored = generation_of(store, name, generation)?;
    let mut items = Vec::new();
    for h in store.history_of(name, Some(stored.generation))? {
        for e in &h.effects {
            let (canary_weight, route) = match e {
                Effect::SetCanaryWeight(w) => {
                    (Some(*w), vireo_core::routes::route(&stored.spec, *w))
                }
                Effect::PromoteCanaryToStable => {
                    (None, vireo_core::routes::promoted_route(&stored.spec))
                }
                _ => continue,
            };
            items.push(vireo_api::PublishedRoute {
                seq: h.seq,
                at_ms: h.at_ms,
                canary_weight,
                route,
            });
        }
    }
    Ok(vireo_api::RouteHistory {
        rollout: name.to_string(),
        generation: stored.generation,
        items,
    })
}

/// Every kept generation of a rollout, newest first, each as the API shows a rollout (without
/// the live parts: proxy refusals and the schedule belong to the current one's `GET`).
pub(super) fn generations(store: &Store, name: &str) -> Result<Generations, ApiError> {
    let mut items = Vec::new();
    let current = store.rollout(name)?.map(|r| r.generation);
    for stored in store.generations(name)? {
        let g = Some(stored.generation);
        let earlier = Some(stored.generation) != current;
        let history = store.history_of(name, g)?;
        let runs = store
            .runs_of(name, g)?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        let mut v = view(stored, &history, runs, Vec::new());
        if earlier {
            // Actions go to the current generation: an earlier one accepts none.
            v.status.allowed_actions.clear();
        }
        items.push(v);
    }
    if items.is_empty() {
        return Err(not_found(name));
    }
    Ok(Generations {
        rollout: name.to_string(),
        items,
    })
}

/// What a generation has in the transparency log, against the current checkpoint.
pub(super) fn evidence_index(
    store: &Store,
    name: &str,
    generation: Option<u64>,
) -> Result<EvidenceIndex, ApiError> {
    let stored = generation_of(store, name, generation)?;
    let (parsed, checkpoint) = store.log_checkpoint_parsed().map_err(evidence_disabled)?;
    let tree_size = parsed.size;
    let items = store
        .log_entries_of(name, stored.generation)?
        .into_iter()
        .map(|e| EvidenceItem {
            log_index: e.index,
            at: rfc3339(e.at_ms),
            at_ms: e.at_ms,
            kind: e.kind,
            stage: e.stage,
            decision: e.decision,
            digest: vireo_evidence::sha256_hex(&e.entry),
            sealed: e.index < tree_size,
        })
        .collect();
    Ok(EvidenceIndex {
        rollout: name.to_string(),
        generation: stored.generation,
        tree_size,
        checkpoint,
        items,
    })
}

/// "Evidence is off" is the operator's choice, not a server fault: say so, with the fix.
fn evidence_disabled(e: StoreError) -> ApiError {
    match e {
        StoreError::Evidence(vireo_evidence::EvidenceError::Disabled) => ApiError::Conflict(
            "evidence is disabled on this control plane (no signing key): there is no log to index"
                .into(),
        ),
        other => other.into(),
    }
}

/// What rolling the current generation back would do: the armed envelope's predicate (checked
/// against the signing key), or before it is armed what it will say. `proxies` is left for the
/// caller, who knows the fleet.
pub(super) fn rollback_preview(store: &Store, name: &str) -> Result<RollbackPreview, ApiError> {
    let stored = generation_of(store, name, None)?;
    let g = stored.generation;
    // Armed is the state machine's word (a retry disarms; evidence may be off); the envelope
    // is then the generation's newest, the one this attempt logged when it armed.
    let state_armed = stored.state.rollback.armed;
    let logged = if state_armed {
        store
            .log_entries_of(name, g)?
            .into_iter()
            .rfind(|e| e.kind == vireo_evidence::rollback::KIND)
    } else {
        None
    };
    let (predicate, armed, verified) = match &logged {
        Some(e) => {
            let verified = match store.signer() {
                Some(s) => vireo_evidence::rollback::open(&e.entry, s.signing.public(), name, g)
                    .map(|_| ()),
                None => Err("evidence is disabled on this store (no signing key)".into()),
            };
            let predicate = vireo_evidence::open_entry(&e.entry)
                .map(|st| st["predicate"].clone())
                .unwrap_or_default();
            (predicate, true, Some(verified))
        }
        None => (
            vireo_evidence::rollback::predicate(&stored.spec, g, stored.updated_ms),
            state_armed,
            state_armed.then(|| {
                Err("no rollback envelope was logged (evidence is disabled on this control plane): a rollback moves traffic only".to_string())
            }),
        ),
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    Ok(RollbackPreview {
        rollout: name.to_string(),
        generation: g,
        armed,
        log_index: logged.as_ref().map(|e| e.index),
        envelope_digest: logged
            .as_ref()
            .map(|e| vireo_evidence::sha256_hex(&e.entry)),
        verified,
        previous_image: predicate["previousImage"].clone(),
        previous_version: text(&predicate["previousVersion"]).unwrap_or_default(),
        down_migration: predicate["downMigration"].clone(),
        flag: predicate["flag"].clone(),
        armed_at: if logged.is_some() {
            text(&predicate["armedAt"])
        } else {
            None
        },
        proxies: Vec::new(),
    })
}

/// The API view of a stored rollout (pure: also used by tests).
pub fn view(
    stored: StoredRollout,
    history: &[HistoryEntry],
    runs: Vec<RunView>,
    proxy_errors: Vec<String>,
) -> RolloutView {
    let mut applied_weights: Vec<AppliedWeight> = Vec::new();
    for h in history {
        if let Input::WeightApplied { weight } = h.input {
            if applied_weights.last().map(|a| a.weight) != Some(weight) {
                applied_weights.push(AppliedWeight {
                    weight,
                    applied_ms: h.at_ms,
                });
            }
        }
    }
    let s = &stored.state;
    let abort = s.abort.as_ref();
    RolloutView {
        status: Status {
            phase: s.phase,
            settled: s.is_settled(),
            current_step_index: s.step,
            steps: stored.spec.steps().len(),
            canary_weight: s.canary_weight,
            message: s.message.clone(),
            generation: stored.generation,
            applied_weights,
            abort_to_zero_ms: abort.and_then(|a| a.abort_to_zero_ms()),
            drain_ms: abort.and_then(|a| a.drain_ms()),
            drain_forced: abort.is_some_and(|a| a.forced),
            rollback: s.rollback.replay.as_ref().map(|r| RollbackView {
                reason: r.reason.clone(),
                verified: r.verified.clone(),
                migration: r.migration.clone(),
                flag: r.flag.clone(),
                rto_ms: abort.and_then(|a| a.abort_to_zero_ms()),
                round_trip_ms: r.round_trip_ms(),
            }),
            analysis_runs: runs,
            proxy_errors,
            schedule: None,
            created_ms: stored.created_ms,
            updated_ms: stored.updated_ms,
            applied_by: stored.applied_by,
            allowed_actions: s.allowed_actions(
                &vireo_core::rollout::Recipe::of(&stored.spec),
                stored.updated_ms,
            ),
        },
        rollout: stored.spec,
    }
}
