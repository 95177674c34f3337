//! Evidence commands: bundle export, the log's checkpoint, entries and consistency proofs,
//! replays, uploaded attestations. Named commands answered from the store on the driver's
//! task, which owns the store's connection.

use super::*;

pub type EvidenceFiles = (vireo_evidence::bundle::Files, u64, String, String);
pub type LogEntry = (vireo_evidence::log::Entry, vireo_evidence::note::Receipt);
pub type Consistency = (
    vireo_evidence::merkle::Hash,
    vireo_evidence::merkle::Hash,
    Vec<vireo_evidence::merkle::Hash>,
);

pub(super) enum Query {
    Files(String, Reply<EvidenceFiles>),
    Checkpoint(Reply<String>),
    Entry(u64, Reply<Option<LogEntry>>),
    Consistency(u64, u64, Reply<Option<Consistency>>),
    Replay(String, Reply<Outcome>),
    ReplayAll(Reply<Vec<(String, Outcome)>>),
    ReplayTotals(Reply<(u64, u64)>),
    Attest(Box<Envelope>, Reply<Result<Filed, String>>),
    DoraEvents(Reply<Vec<CloudEvent>>),
}

impl Driver {
    pub(super) fn evidence(&mut self, q: Query) {
        let now = self.clock.now_ms();
        let store = &mut self.store;
        match q {
            Query::Files(name, reply) => {
                let _ = reply.send(store.evidence_files(&name).map_err(ApiError::from));
            }
            Query::Checkpoint(reply) => {
                let _ = reply.send(store.log_checkpoint().map_err(ApiError::from));
            }
            Query::Entry(index, reply) => {
                let _ = reply.send(store.log_entry(index).map_err(ApiError::from));
            }
            Query::Consistency(from, to, reply) => {
                let _ = reply.send(store.log_consistency(from, to).map_err(ApiError::from));
            }
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
            Query::ReplayTotals(reply) => {
                let _ = reply.send(store.replay_totals().map_err(ApiError::from));
            }
            Query::Attest(envelope, reply) => {
                let _ = reply.send(
                    store
                        .put_attestation(&envelope, now)
                        .map_err(ApiError::from),
                );
            }
            Query::DoraEvents(reply) => {
                let _ = reply.send(store.dora_events().map_err(ApiError::from));
            }
        }
    }
}
