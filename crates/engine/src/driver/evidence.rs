//! Evidence writes on the driver's task, which owns the store's writing connection: replays
//! (each recorded) and uploaded attestations (logged). Reads — bundles, the log's checkpoint,
//! entries and proofs, replay totals, DORA's events — go to read-only connections
//! (`Handle::read`).

use super::*;

pub type EvidenceFiles = (vireo_evidence::bundle::Files, u64, String, String);
pub type LogEntry = (vireo_evidence::log::Entry, vireo_evidence::note::Receipt);
pub type Consistency = (
    vireo_evidence::merkle::Hash,
    vireo_evidence::merkle::Hash,
    Vec<vireo_evidence::merkle::Hash>,
);

pub(super) enum Query {
    Replay(String, Reply<Outcome>),
    ReplayAll(Reply<Vec<(String, Outcome)>>),
    Attest(Box<Envelope>, Reply<Result<Filed, String>>),
}

impl Driver {
    pub(super) fn evidence(&mut self, q: Query) {
        let now = self.clock.now_ms();
        let store = &mut self.store;
        match q {
            Query::Replay(decision, reply) => {
                let _ = reply.send((|| {
                    let statement = store.decision(&decision)?.ok_or_else(|| {
                        ApiError::NotFound(format!("no recorded decision {decision:?}"))
                    })?;
                    let outcome = vireo_evidence::replay::replay_statement(&statement)
                        .map_err(ApiError::Internal)?;
                    store.put_replay(&outcome, now)?;
                    Ok(outcome)
                })());
            }
            Query::ReplayAll(reply) => {
                let _ = reply.send((|| {
                    let mut outcomes = Vec::new();
                    for (id, statement) in store.decisions()? {
                        if let Ok(o) = vireo_evidence::replay::replay_statement(&statement) {
                            store.put_replay(&o, now)?;
                            outcomes.push((id, o));
                        }
                    }
                    Ok(outcomes)
                })());
            }
            Query::Attest(envelope, reply) => {
                let _ = reply.send(
                    store
                        .put_attestation(&envelope, now)
                        .map_err(ApiError::from),
                );
            }
        }
    }
}
