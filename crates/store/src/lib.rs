//! Durable state: SQLite in `<data-dir>/vireo.db`.
//!
//! Durability rule: one transaction per state-machine input. The input, the state it leads to
//! and the checkpoints it produced commit together or not at all, and [`Store::apply`] returns
//! the effects only after the commit, so the driver never acts on a transition that a crash
//! could lose. The journal is WAL with `synchronous=FULL`: a commit returns once the WAL is
//! fsynced, so an acknowledged transition survives `kill -9` and power loss.
//!
//! The recorded inputs make the history checkable: [`vireo_core::rollout::replay`] over them gives
//! back the stored state (the state machine is deterministic). A restarted control plane simply
//! loads the stored state and carries on; no step is applied twice, because a step's effects are
//! only carried out after its transition committed.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use std::sync::Arc;

use vireo_evidence::{self as evidence, merkle, EvidenceError, Signer};

use crate::log::SqlLog;
use vireo_core::analysis::AnalysisTemplate;
use vireo_core::rollout::{Caller, Effect, Input, Millis, Phase, Recipe, Rejected, RolloutState};
use vireo_core::spec::Rollout;

const DB_FILE: &str = "vireo.db";
/// How many attestations per image digest the gate considers.
pub const MAX_CANDIDATES: i64 = 16;
const SCHEMA_VERSION: i64 = 7;

/// From each older schema to the next, in order (index 0 takes version 1 to 2).
const MIGRATIONS: &[&str] = &[
    "
ALTER TABLE inputs ADD COLUMN actor TEXT;
CREATE TABLE schedules (
    rollout    TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
",
    EVIDENCE_SCHEMA,
    ATTESTATIONS_SCHEMA,
    crate::events::SCHEMA,
    AUTH_SCHEMA,
    GENERATIONS_SCHEMA,
];

/// Version 6: who applied a rollout (for four-eyes approval), the reason an actor gave, and
/// API tokens (tokens.rs).
const AUTH_SCHEMA: &str = "
ALTER TABLE inputs ADD COLUMN reason TEXT;
ALTER TABLE rollouts ADD COLUMN applied_by TEXT;
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,  -- sha256 hex of the token; the token itself is never stored
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER,
    created_by TEXT NOT NULL
);
";

/// Version 7: earlier generations of each rollout (the spec and final state a new apply
/// replaced), so the console can show earlier releases. Their inputs, runs and evidence were
/// always kept by generation; only the spec and state were overwritten. Generations replaced
/// before this version have no row here (their inputs remain).
const GENERATIONS_SCHEMA: &str = "
CREATE TABLE generations (
    rollout    TEXT NOT NULL,
    generation INTEGER NOT NULL,
    spec       TEXT NOT NULL,
    state      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    applied_by TEXT,
    PRIMARY KEY (rollout, generation)
);
";

/// Version 4: uploaded attestations (SLSA provenance), by subject digest, for the gate.
const ATTESTATIONS_SCHEMA: &str = "
CREATE TABLE attestations (
    digest      TEXT NOT NULL,     -- a subject's sha256 (hex)
    envelope    TEXT NOT NULL,     -- sha256 of the envelope as logged
    log_index   INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (digest, envelope)
);
CREATE INDEX attestations_by_envelope ON attestations (envelope);
";

/// Version 3: the transparency log and the replays run against it (defined next to the code
/// that uses them, in log.rs).
const EVIDENCE_SCHEMA: &str = crate::log::SCHEMA;

const SCHEMA: &str = "
CREATE TABLE rollouts (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,     -- the Rollout as applied (JSON)
    state      TEXT NOT NULL,     -- RolloutState after input `seq` (JSON)
    generation INTEGER NOT NULL,  -- 1, then +1 each time an ended rollout is applied again
    seq        INTEGER NOT NULL,  -- inputs applied so far in this generation
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE templates (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- Every input the state machine accepted, in order: enough to replay the rollout.
-- Earlier generations stay: nothing a user did is lost.
CREATE TABLE inputs (
    rollout    TEXT NOT NULL,
    generation INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    input      TEXT NOT NULL,
    effects    TEXT NOT NULL,     -- what the state machine asked for (JSON array)
    actor      TEXT,              -- who sent it, for actions (the API caller)
    PRIMARY KEY (rollout, generation, seq)
);
-- Analysis runs as measured so far (JSON), for status and, later, evidence.
CREATE TABLE analysis_runs (
    rollout    TEXT NOT NULL,
    generation INTEGER NOT NULL,
    run        INTEGER NOT NULL,
    view       TEXT NOT NULL,
    PRIMARY KEY (rollout, generation, run)
);
-- Counters that must only grow, across restarts: `table_version` numbers the route tables
-- published to proxies, which poll with the last version they applied.
-- Schedules by rollout name (schedule.rs): consulted at the rollout's gate.
CREATE TABLE schedules (
    rollout    TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- Lifecycle checkpoints, with the input that caused them.
CREATE TABLE timeline (
    rollout    TEXT NOT NULL,
    generation INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    from_phase TEXT NOT NULL,
    to_phase   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (rollout, generation, seq, idx)
);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the data dir {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is unreadable ({0}); the database may come from a newer vireo")]
    Json(#[from] serde_json::Error),
    #[error("the database has schema version {0}; this vireo knows up to {SCHEMA_VERSION}")]
    Schema(i64),
    #[error("cannot seal evidence: {0}")]
    Evidence(#[from] EvidenceError),
    #[error("no rollout named {0:?}")]
    NotFound(String),
    #[error(
        "rollout {name:?} is {phase:?} and not settled yet (an abort drains and stops the canary first); it can be replaced once it has settled (`vireo rollout status {name} --watch`), or abort it first"
    )]
    Busy { name: String, phase: Phase },
}

impl StoreError {
    /// A failure of the database itself (I/O, a full disk, a lock held too long), which a
    /// retry can get past; the others are about the data and would fail again.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        let sql = match self {
            StoreError::Sql(e) => e,
            StoreError::Evidence(EvidenceError::Log(e)) => {
                match e.downcast_ref::<rusqlite::Error>() {
                    Some(e) => e,
                    None => return false,
                }
            }
            _ => return false,
        };
        matches!(
            sql.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            )
        )
    }
}

/// This control plane's instance id, as the database keeps it (none yet on a new one).
fn stored_instance_id(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM counters WHERE name = 'instance_id'",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// An analysis verdict to seal with the input it causes ([`Store::apply_sealed`]).
#[derive(Debug, Clone, Copy)]
pub struct AnalysisSeal<'a> {
    /// What the run measured (templates, dry-run flags, metric definitions).
    pub planned: &'a [evidence::PlannedMetric],
    /// The decided run, every measurement included.
    pub view: &'a vireo_core::analysis::RunView,
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRollout {
    pub spec: Rollout,
    pub state: RolloutState,
    pub generation: u64,
    pub seq: u64,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// Who applied this generation (the API caller), when known.
    pub applied_by: Option<String>,
}

/// A replay as recorded: which decision, when, and what differed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRecord {
    pub decision: String,
    pub at_ms: Millis,
    pub matched: bool,
    pub differences: Vec<String>,
}

/// One checkpoint of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub at_ms: Millis,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// An uploaded attestation as filed: its subjects' digests (hex), where it is in the log, and
/// whether this upload logged it (false: it was already on file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    pub subjects: Vec<String>,
    pub log_index: u64,
    pub new: bool,
}

/// One accepted input and what it caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at_ms: Millis,
    pub input: Input,
    pub effects: Vec<Effect>,
    /// Who sent it (actions through the API); `None` for the driver's own inputs.
    pub actor: Option<String>,
    /// The reason they gave.
    pub reason: Option<String>,
}

pub struct Store {
    conn: Connection,
    signer: Option<Arc<Signer>>,
    path: PathBuf,
    /// Events committed and not yet handed to the live stream.
    appended: Vec<crate::events::Stored>,
    instance: String,
}

impl Store {
    /// Opens (creating if needed) `<dir>/vireo.db`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match version {
            0 => {
                conn.execute_batch(&format!(
                    "BEGIN; {SCHEMA} {EVIDENCE_SCHEMA} {ATTESTATIONS_SCHEMA} {} {AUTH_SCHEMA} {GENERATIONS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
                    crate::events::SCHEMA
                ))?;
            }
            SCHEMA_VERSION => {}
            older @ 1.. if older < SCHEMA_VERSION => {
                // One transaction: a crash mid-migration leaves the old schema, not half of one.
                let steps: String = MIGRATIONS[(older - 1) as usize..].concat();
                conn.execute_batch(&format!(
                    "BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))?;
            }
            newer => return Err(StoreError::Schema(newer)),
        }
        // This control plane's id in event sources: random, made once, kept in the database
        // (two control planes sharing a signing key still name their events apart).
        let id: i64 = match stored_instance_id(&conn)? {
            Some(id) => id,
            None => {
                let id = (fastrand::u64(..) >> 1) as i64;
                conn.execute(
                    "INSERT INTO counters (name, value) VALUES ('instance_id', ?1)",
                    [id],
                )?;
                id
            }
        };
        Ok(Store {
            conn,
            signer: None,
            path: dir.join(DB_FILE),
            appended: Vec::new(),
            instance: format!("{id:016x}"),
        })
    }

    /// A read-only view of the database at `path` (another connection; no migration, no
    /// write: any write fails with SQLite's read-only error). For queries that need not wait
    /// behind the writer: they read what is committed. `signer` is the writer's, for
    /// receipts and checkpoints.
    pub fn open_reader(path: &Path, signer: Option<Arc<Signer>>) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema(version));
        }
        let id = stored_instance_id(&conn)?;
        Ok(Store {
            conn,
            signer,
            path: path.to_path_buf(),
            appended: Vec::new(),
            instance: format!("{:016x}", id.unwrap_or(0)),
        })
    }

    /// Runs `f` on one snapshot of the database (a read transaction), so queries that belong
    /// together — a bundle's entries and the checkpoint they are proved against — agree.
    pub fn snapshot<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self);
        tx.commit()?;
        out
    }

    /// The database file (other connections, such as the evaluation-event writer, open it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This control plane's name in event sources (`/vireo/<instance>/…`): random, made when
    /// the database was, stable across restarts.
    pub fn instance(&self) -> String {
        self.instance.clone()
    }

    /// Events committed since the last call, for the live stream.
    pub fn take_appended(&mut self) -> Vec<crate::events::Stored> {
        std::mem::take(&mut self.appended)
    }

    /// Ingests events (deduplicated on `source` + `id`); returns those that were new.
    pub fn ingest(
        &mut self,
        events: &[vireo_core::events::CloudEvent],
    ) -> Result<Vec<crate::events::Stored>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored = crate::events::append(&tx, events, crate::events::OnDuplicate::Skip)?;
        tx.commit()?;
        self.appended.extend(stored.iter().cloned());
        Ok(stored)
    }

    pub fn events(
        &self,
        filter: &crate::events::Filter,
    ) -> Result<Result<Vec<crate::events::Stored>, String>, StoreError> {
        Ok(crate::events::query(&self.conn, filter))
    }

    /// The events DORA reads: the CD types, and the steps that reached Progressing.
    pub fn dora_events(&self) -> Result<Vec<vireo_core::events::CloudEvent>, StoreError> {
        Ok(crate::events::dora_events(&self.conn, u64::MAX >> 1)?)
    }

    /// Stores a flag definition (JSON), replacing one of the same key, and the event that
    /// says so, in one transaction.
    pub fn put_flag(
        &mut self,
        key: &str,
        spec: &str,
        now: Millis,
        event: vireo_core::events::CloudEvent,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO flags (key, spec, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms",
            params![key, spec, now as i64],
        )?;
        let stored = crate::events::append(&tx, &[event], crate::events::OnDuplicate::Fail)?;
        tx.commit()?;
        self.appended.extend(stored);
        Ok(())
    }

    /// Every flag definition (JSON), by key.
    pub fn flags(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT key, spec FROM flags ORDER BY key")?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The commit a release was built from and its time: the `vireo.dev/commit` annotation
    /// (`vireo.dev/commit-time` for its time), else the provenance the gate accepted.
    fn release_commit(
        conn: &Connection,
        spec: &Rollout,
        generation: u64,
    ) -> Option<(String, Option<String>)> {
        let a = &spec.metadata.annotations;
        if let Some(c) = a.get("vireo.dev/commit") {
            // Kept only when it is a time, and spelled as the log spells times.
            let time = a
                .get("vireo.dev/commit-time")
                .and_then(|t| vireo_core::events::parse_time(t))
                .map(evidence::rfc3339);
            return Some((c.clone(), time));
        }
        let vsa: Vec<u8> = conn
            .query_row(
                "SELECT entry FROM log_entries WHERE rollout = ?1 AND generation = ?2 AND kind = 'vsa'
                 ORDER BY idx DESC LIMIT 1",
                params![spec.name(), generation as i64],
                |r| r.get(0),
            )
            .ok()?;
        let vsa = evidence::open_entry(&vsa)?;
        let uri = vsa["predicate"]["inputAttestations"][0]["uri"].as_str()?;
        let index: i64 = uri.strip_prefix("log/entries/")?.parse().ok()?;
        let entry: Vec<u8> = conn
            .query_row(
                "SELECT entry FROM log_entries WHERE idx = ?1",
                [index],
                |r| r.get(0),
            )
            .ok()?;
        let p = &evidence::open_entry(&entry)?["predicate"];
        let commit = p["buildDefinition"]["externalParameters"]["source"]["digest"]["gitCommit"]
            .as_str()?
            .to_string();
        let time = p["runDetails"]["metadata"]["startedOn"]
            .as_str()
            .map(str::to_string);
        Some((commit, time))
    }

    /// Signs and logs evidence from now on: every checkpoint, gate and analysis verdict is
    /// sealed in the transaction that records it.
    pub fn with_signer(mut self, signer: Arc<Signer>) -> Store {
        self.signer = Some(signer);
        self
    }

    pub fn signer(&self) -> Option<&Arc<Signer>> {
        self.signer.as_ref()
    }

    /// Stores a new rollout, or replaces one that has ended (a new generation; the earlier
    /// one's inputs and timeline stay), in its initial state; returns that state's effects.
    pub fn create_rollout(
        &mut self,
        spec: &Rollout,
        now: Millis,
    ) -> Result<Vec<Effect>, StoreError> {
        self.create_rollout_by(spec, now, None)
    }

    /// [`Store::create_rollout`], recording who applied it.
    pub fn create_rollout_by(
        &mut self,
        spec: &Rollout,
        now: Millis,
        applied_by: Option<&str>,
    ) -> Result<Vec<Effect>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<(String, i64)> = tx
            .query_row(
                "SELECT state, generation FROM rollouts WHERE name = ?1",
                [spec.name()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let mut generation = 1;
        if let Some((state, previous)) = existing {
            let state: RolloutState = serde_json::from_str(&state)?;
            // Ended means nothing left to do: an abort still draining has a canary to stop.
            if !state.is_settled() {
                return Err(StoreError::Busy {
                    name: spec.name().to_string(),
                    phase: state.phase,
                });
            }
            generation = previous + 1;
            // Keep the generation being replaced: its spec and final state.
            tx.execute(
                "INSERT OR REPLACE INTO generations
                     (rollout, generation, spec, state, seq, created_ms, updated_ms, applied_by)
                 SELECT name, generation, spec, state, seq, created_ms, updated_ms, applied_by
                 FROM rollouts WHERE name = ?1",
                [spec.name()],
            )?;
        }
        let (state, effects) = RolloutState::new();
        tx.execute(
            "INSERT OR REPLACE INTO rollouts
                 (name, spec, state, generation, seq, created_ms, updated_ms, applied_by)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6)",
            params![
                spec.name(),
                serde_json::to_string(spec)?,
                serde_json::to_string(&state)?,
                generation,
                now as i64,
                applied_by
            ],
        )?;
        tx.commit()?;
        Ok(effects)
    }

    /// Applies one input to a stored rollout. The input, the new state and its checkpoints are
    /// committed (fsynced) before this returns the effects. A rejected action writes nothing.
    pub fn apply(
        &mut self,
        name: &str,
        now: Millis,
        input: Input,
    ) -> Result<Result<Vec<Effect>, Rejected>, StoreError> {
        self.apply_as(name, now, input, None)
    }

    /// [`Store::apply`], recording who sent the input (an action's caller) and why.
    pub fn apply_as(
        &mut self,
        name: &str,
        now: Millis,
        input: Input,
        caller: Option<&Caller>,
    ) -> Result<Result<Vec<Effect>, Rejected>, StoreError> {
        self.apply_sealed(name, now, input, caller, None)
    }

    /// [`Store::apply_as`], sealing an analysis verdict in the same transaction as the input
    /// it causes (`AnalysisCompleted`): the verdict is in the log, before the checkpoint it
    /// leads to, exactly when the transition is; if it cannot be sealed, nothing is written.
    /// A verdict sealed before (the same run reported again after a restart) keeps its first
    /// record.
    pub fn apply_sealed(
        &mut self,
        name: &str,
        now: Millis,
        input: Input,
        caller: Option<&Caller>,
        seal: Option<AnalysisSeal<'_>>,
    ) -> Result<Result<Vec<Effect>, Rejected>, StoreError> {
        let instance = self.instance();
        let actor = caller.map(|c| c.actor.as_str());
        let reason_given = caller.and_then(|c| c.reason.as_deref());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (spec, state, generation, seq): (String, String, i64, i64) = tx
            .query_row(
                "SELECT spec, state, generation, seq FROM rollouts WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let spec: Rollout = serde_json::from_str(&spec)?;
        let mut state: RolloutState = serde_json::from_str(&state)?;
        let recorded = serde_json::to_string(&input)?;
        let gate = match &input {
            Input::GateEvaluated {
                passed,
                needs_approval,
                reason,
                provenance,
            } => Some((*passed, *needs_approval, reason.clone(), provenance.clone())),
            _ => None,
        };
        let was_armed = state.rollback.armed;
        let before = state.clone();
        let input_copy = input.clone();
        let effects = match state.apply(&Recipe::of(&spec), now, input) {
            Ok(effects) => effects,
            Err(rejected) => return Ok(Err(rejected)), // dropping `tx` rolls back: nothing written
        };
        let seq = seq + 1;
        tx.execute(
            "INSERT INTO inputs (rollout, generation, seq, at_ms, input, effects, actor, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                name,
                generation,
                seq,
                now as i64,
                recorded,
                serde_json::to_string(&effects)?,
                actor,
                reason_given
            ],
        )?;
        let checkpoints = effects.iter().filter_map(|e| match e {
            Effect::Checkpoint { from, to, reason } => Some((from, to, reason)),
            _ => None,
        });
        let recorded: serde_json::Value = serde_json::from_str(&recorded)?;
        let effects_json = serde_json::to_value(&effects)?;
        if let (Some(signer), Some(seal)) = (&self.signer, &seal) {
            let decision = evidence::analysis_decision(name, generation as u64, seal.view.run);
            if crate::log::by_decision(&tx, &decision)?.is_none() {
                evidence::record_analysis(
                    &SqlLog(&tx),
                    signer,
                    &spec,
                    generation as u64,
                    now,
                    seal.planned,
                    seal.view,
                )?;
            }
        }
        if let (Some(signer), Some((passed, needs_approval, reason, provenance))) =
            (&self.signer, gate)
        {
            evidence::record_gate(
                &SqlLog(&tx),
                signer,
                &evidence::GateFacts {
                    rollout: &spec,
                    generation: generation as u64,
                    at_ms: now,
                    passed,
                    needs_approval,
                    reason: &reason,
                    provenance: provenance.as_deref(),
                    attempt: state.attempt,
                },
            )?;
        }
        // Armed in this transaction or not at all: no 100 % without a logged envelope.
        if let (Some(signer), false, true) = (&self.signer, was_armed, state.rollback.armed) {
            evidence::rollback::record(&SqlLog(&tx), signer, &spec, generation as u64, now)?;
        }
        for (idx, (from, to, reason)) in checkpoints.enumerate() {
            if let Some(signer) = &self.signer {
                evidence::record_checkpoint(
                    &SqlLog(&tx),
                    signer,
                    &evidence::CheckpointFacts {
                        rollout: &spec,
                        generation: generation as u64,
                        at_ms: now,
                        from: &format!("{from:?}"),
                        to: &format!("{to:?}"),
                        reason,
                        input: &recorded,
                        actor,
                        reason_given,
                        effects: &effects_json,
                    },
                )?;
            }
            tx.execute(
                "INSERT INTO timeline
                     (rollout, generation, seq, idx, at_ms, from_phase, to_phase, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    name,
                    generation,
                    seq,
                    idx as i64,
                    now as i64,
                    format!("{from:?}"),
                    format!("{to:?}"),
                    reason
                ],
            )?;
        }
        let completed = effects.iter().any(|e| {
            matches!(
                e,
                Effect::Checkpoint {
                    to: Phase::Completed,
                    ..
                }
            )
        });
        let events = vireo_core::events::for_transition(&vireo_core::events::Transition {
            instance: &instance,
            rollout: &spec,
            generation: generation as u64,
            seq: seq as u64,
            at_ms: now,
            input: &input_copy,
            actor,
            reason_given,
            effects: &effects,
            before: &before,
            after: &state,
            commit: completed
                .then(|| Self::release_commit(&tx, &spec, generation as u64))
                .flatten(),
        });
        let appended = crate::events::append(&tx, &events, crate::events::OnDuplicate::Fail)?;
        tx.execute(
            "UPDATE rollouts SET state = ?2, seq = ?3, updated_ms = ?4 WHERE name = ?1",
            params![name, serde_json::to_string(&state)?, seq, now as i64],
        )?;
        tx.commit()?;
        self.appended.extend(appended);
        Ok(Ok(effects))
    }

    pub fn rollout(&self, name: &str) -> Result<Option<StoredRollout>, StoreError> {
        self.conn
            .query_row(
                "SELECT spec, state, generation, seq, created_ms, updated_ms, applied_by FROM rollouts WHERE name = ?1",
                [name],
                read_rollout,
            )
            .optional()?
            .transpose()
    }

    /// Every rollout, by name.
    pub fn rollouts(&self) -> Result<Vec<StoredRollout>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT spec, state, generation, seq, created_ms, updated_ms, applied_by FROM rollouts ORDER BY name",
        )?;
        let rows = stmt.query_map([], read_rollout)?;
        rows.map(|r| r?).collect()
    }

    /// Every generation of a rollout that is kept, newest first: the current one (from
    /// `rollouts`), then the ones it replaced. Empty for an unknown rollout.
    pub fn generations(&self, name: &str) -> Result<Vec<StoredRollout>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT spec, state, generation, seq, created_ms, updated_ms, applied_by
             FROM rollouts WHERE name = ?1
             UNION ALL
             SELECT spec, state, generation, seq, created_ms, updated_ms, applied_by
             FROM generations WHERE rollout = ?1
               AND generation < (SELECT generation FROM rollouts WHERE name = ?1)
             ORDER BY generation DESC",
        )?;
        let rows = stmt.query_map([name], read_rollout)?;
        rows.map(|r| r?).collect()
    }

    /// A rollout's log entries of generation `generation`, in log order (the evidence index).
    pub fn log_entries_of(
        &self,
        name: &str,
        generation: u64,
    ) -> Result<Vec<vireo_evidence::log::Entry>, StoreError> {
        Ok(crate::log::for_rollout(&self.conn, name, generation)?)
    }

    /// The checkpoints of a rollout, in order.
    pub fn timeline(&self, name: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.timeline_of(name, None)
    }

    /// The checkpoints of one generation (`None`: the current one), in order.
    pub fn timeline_of(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at_ms, from_phase, to_phase, reason FROM timeline
             WHERE rollout = ?1 AND generation =
               COALESCE(?2, (SELECT generation FROM rollouts WHERE name = ?1))
             ORDER BY seq, idx",
        )?;
        let rows = stmt.query_map(params![name, generation.map(|g| g as i64)], |r| {
            Ok(Checkpoint {
                seq: r.get::<_, i64>(0)? as u64,
                at_ms: r.get::<_, i64>(1)? as u64,
                from: r.get(2)?,
                to: r.get(3)?,
                reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The accepted inputs of a rollout, in order, with their times: what replay needs.
    pub fn inputs(&self, name: &str) -> Result<Vec<(Millis, Input)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at_ms, input FROM inputs WHERE rollout = ?1
                 AND generation = (SELECT generation FROM rollouts WHERE name = ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map([name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (at, input) = row?;
            Ok((at as u64, serde_json::from_str(&input)?))
        })
        .collect()
    }

    /// The rollout's history: every accepted input with its time and the effects it caused.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_of(name, None)
    }

    /// [`Store::history`] of generation `generation` (`None`: the current one).
    pub fn history_of(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at_ms, input, effects, actor, reason FROM inputs WHERE rollout = ?1
                 AND generation = COALESCE(?2, (SELECT generation FROM rollouts WHERE name = ?1))
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![name, generation.map(|g| g as i64)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, at, input, effects, actor, reason) = row?;
            Ok(HistoryEntry {
                seq: seq as u64,
                at_ms: at as u64,
                input: serde_json::from_str(&input)?,
                effects: serde_json::from_str(&effects)?,
                actor,
                reason,
            })
        })
        .collect()
    }

    /// Records an analysis run's progress (replacing what was stored for it).
    pub fn put_run(
        &mut self,
        name: &str,
        generation: u64,
        run: u64,
        view: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO analysis_runs (rollout, generation, run, view)
             VALUES (?1, ?2, ?3, ?4)",
            params![name, generation as i64, run as i64, view.to_string()],
        )?;
        Ok(())
    }

    /// The analysis runs of a rollout's current generation, oldest first.
    pub fn runs(&self, name: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        self.runs_of(name, None)
    }

    /// [`Store::runs`] of generation `generation` (`None`: the current one).
    pub fn runs_of(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT view FROM analysis_runs WHERE rollout = ?1
                 AND generation = COALESCE(?2, (SELECT generation FROM rollouts WHERE name = ?1))
             ORDER BY run",
        )?;
        let rows = stmt.query_map(params![name, generation.map(|g| g as i64)], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
    }

    fn evidence_signer(&self) -> Result<&Arc<Signer>, StoreError> {
        self.signer
            .as_ref()
            .ok_or(StoreError::Evidence(EvidenceError::Disabled))
    }

    /// The log's current signed checkpoint (the note text).
    pub fn log_checkpoint(&self) -> Result<String, StoreError> {
        Ok(self.log_checkpoint_parsed()?.1)
    }

    /// The log's current checkpoint, and signed (the note text).
    pub fn log_checkpoint_parsed(
        &self,
    ) -> Result<(evidence::note::Checkpoint, String), StoreError> {
        Ok(self.evidence_signer()?.checkpoint(&SqlLog(&self.conn))?)
    }

    /// Files an uploaded provenance envelope under each of its subjects' digests and logs it
    /// (once: uploading the same envelope again finds it). Returns the digests, the log index
    /// and whether it was new. The gate judges it; here it only has to be well-formed.
    pub fn put_attestation(
        &mut self,
        envelope: &evidence::dsse::Envelope,
        now: Millis,
    ) -> Result<Result<Filed, String>, StoreError> {
        let digests = match evidence::provenance::subjects(envelope) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        self.evidence_signer()?;
        let bytes = evidence::canonical(envelope)?;
        let sha = evidence::sha256_hex(&bytes);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT log_index FROM attestations WHERE envelope = ?1 LIMIT 1",
                [&sha],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(index) = known {
            return Ok(Ok(Filed {
                subjects: digests,
                log_index: index as u64,
                new: false,
            }));
        }
        let index = crate::log::append(
            &tx,
            &vireo_evidence::log::EntryMeta {
                at_ms: now,
                rollout: None,
                generation: None,
                kind: "provenance",
                stage: "provenance",
                decision: None,
            },
            &bytes,
        )?;
        for d in &digests {
            tx.execute(
                "INSERT OR IGNORE INTO attestations (digest, envelope, log_index, received_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![d, sha, index as i64, now as i64],
            )?;
        }
        tx.commit()?;
        Ok(Ok(Filed {
            subjects: digests,
            log_index: index,
            new: true,
        }))
    }

    /// The newest envelopes on file for a subject digest (hex; at most [`MAX_CANDIDATES`]),
    /// oldest first. Bounded: uploads are not authenticated, and each candidate is checked and
    /// recorded in the gate's evidence.
    pub fn attestations_for(
        &self,
        digest: &str,
    ) -> Result<Vec<evidence::provenance::Attestation>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT log_index, entry FROM (
                 SELECT a.log_index, e.entry FROM attestations a
                 JOIN log_entries e ON e.idx = a.log_index
                 WHERE a.digest = ?1 ORDER BY a.log_index DESC LIMIT ?2)
             ORDER BY log_index",
        )?;
        let rows = q.query_map(params![digest.to_ascii_lowercase(), MAX_CANDIDATES], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (index, entry) = row?;
            out.push(evidence::provenance::Attestation {
                log_index: index as u64,
                envelope: serde_json::from_slice(&entry)?,
            });
        }
        Ok(out)
    }

    /// The logged rollback envelope of a rollout generation (its bytes as logged).
    pub fn rollback_envelope(
        &self,
        name: &str,
        generation: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(evidence::rollback::latest(
            &SqlLog(&self.conn),
            name,
            generation,
        )?)
    }

    /// Entry `index` with a receipt against the current checkpoint.
    pub fn log_entry(
        &self,
        index: u64,
    ) -> Result<Option<(vireo_evidence::log::Entry, evidence::note::Receipt)>, StoreError> {
        let signer = self.evidence_signer()?;
        let Some(entry) = crate::log::entry(&self.conn, index)? else {
            return Ok(None);
        };
        let receipt = signer
            .receipt(&SqlLog(&self.conn), index)?
            .expect("an entry that exists is inside the current tree");
        Ok(Some((entry, receipt)))
    }

    /// A consistency proof between two sizes, with both roots; `None` for sizes that do not
    /// describe the log (0, decreasing, or beyond its size).
    pub fn log_consistency(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Option<(merkle::Hash, merkle::Hash, Vec<merkle::Hash>)>, StoreError> {
        self.evidence_signer()?;
        let size = crate::log::size(&self.conn)?;
        if from == 0 || from > to || to > size {
            return Ok(None);
        }
        let proof = crate::log::consistency_proof(&self.conn, from, to)?.unwrap_or_default();
        Ok(Some((
            crate::log::root(&self.conn, from)?,
            crate::log::root(&self.conn, to)?,
            proof,
        )))
    }

    /// The files of a rollout's evidence bundle (its current generation), without the manifest.
    pub fn evidence_files(
        &self,
        name: &str,
    ) -> Result<(evidence::bundle::Files, u64, String, String), StoreError> {
        let stored = self
            .rollout(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        self.evidence_files_of(&stored)
    }

    /// [`Store::evidence_files`] of one stored generation (current or kept): its log entries
    /// with receipts against the log's current checkpoint, and its own timeline.
    pub fn evidence_files_of(
        &self,
        stored: &StoredRollout,
    ) -> Result<(evidence::bundle::Files, u64, String, String), StoreError> {
        let signer = self.evidence_signer()?;
        let name = stored.spec.name();
        let entries = crate::log::for_rollout(&self.conn, name, stored.generation)?;
        let (cp, note) = signer.checkpoint(&SqlLog(&self.conn))?;
        let mut files = evidence::bundle::Files::new();
        for (n, e) in entries.iter().enumerate() {
            let stem = format!("{:03}-{}", n + 1, e.stage);
            let receipt = evidence::note::Receipt {
                index: e.index,
                proof: crate::log::inclusion_proof(&self.conn, e.index, cp.size)?
                    .unwrap_or_default(),
                checkpoint: note.clone(),
            };
            files.insert(format!("envelopes/{stem}.dsse.json"), e.entry.clone());
            files.insert(
                format!("receipts/{stem}.tlog-proof"),
                receipt.to_text().into_bytes(),
            );
            if let (Some(id), Some(statement)) = (&e.decision, evidence::open_entry(&e.entry)) {
                files.insert(
                    format!("inputs/{id}.json"),
                    serde_json::to_vec_pretty(&statement["predicate"])?,
                );
            }
        }
        let timeline = serde_json::json!({
            "rollout": name,
            "generation": stored.generation,
            "phase": stored.state.phase,
            "abortToZeroMs": stored.state.abort.as_ref().and_then(|a| a.abort_to_zero_ms()),
            "drainMs": stored.state.abort.as_ref().and_then(|a| a.drain_ms()),
            "rollback": stored.state.rollback.replay.as_ref().map(|r| serde_json::json!({
                "reason": r.reason,
                "verified": r.verified,
                "migration": r.migration,
                "flag": r.flag,
                "rtoMs": stored.state.abort.as_ref().and_then(|a| a.abort_to_zero_ms()),
                "roundTripMs": r.round_trip_ms(),
            })),
            "checkpoints": self.timeline_of(name, Some(stored.generation))?,
        });
        files.insert(
            "timeline.json".into(),
            serde_json::to_vec_pretty(&timeline)?,
        );
        files.insert("checkpoint".into(), note.into_bytes());
        files.insert(
            "keys/signing.pub".into(),
            signer.signing.public().to_pem().into_bytes(),
        );
        files.insert(
            "keys/log.pub".into(),
            signer.log.public().to_pem().into_bytes(),
        );
        Ok((
            files,
            stored.generation,
            signer.origin.clone(),
            name.to_string(),
        ))
    }

    /// The statement sealed under a decision id.
    pub fn decision(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(crate::log::by_decision(&self.conn, id)?.and_then(|e| evidence::open_entry(&e.entry)))
    }

    /// Every recorded decision: (id, statement), in log order.
    pub fn decisions(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        Ok(crate::log::decisions(&self.conn)?
            .into_iter()
            .filter_map(|e| Some((e.decision?, evidence::open_entry(&e.entry)?)))
            .collect())
    }

    /// Records a replay's outcome (for the totals).
    pub fn put_replay(
        &mut self,
        outcome: &evidence::replay::Outcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO replays (decision, at_ms, matched, differences) VALUES (?1, ?2, ?3, ?4)",
            params![
                outcome.decision,
                now as i64,
                outcome.matched(),
                serde_json::to_string(&outcome.differences)?
            ],
        )?;
        Ok(())
    }

    /// Replays so far: (total, matches).
    pub fn replay_totals(&self) -> Result<(u64, u64), StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(matched), 0) FROM replays",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// The replays of a rollout's decisions (any generation), newest first, at most `limit`.
    pub fn replays_for(&self, rollout: &str, limit: u32) -> Result<Vec<ReplayRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.decision, r.at_ms, r.matched, r.differences FROM replays r
             WHERE r.decision IN (SELECT decision FROM log_entries
                                  WHERE rollout = ?1 AND decision IS NOT NULL)
             ORDER BY r.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![rollout, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (decision, at, matched, differences) = row?;
            Ok(ReplayRecord {
                decision,
                at_ms: at as u64,
                matched,
                differences: serde_json::from_str(&differences)?,
            })
        })
        .collect()
    }

    /// Increments a counter and returns its new value, durably: a number handed out is never
    /// handed out again, even after a crash.
    pub fn next(&mut self, counter: &str) -> Result<u64, StoreError> {
        let value: i64 = self.conn.query_row(
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            [counter],
            |r| r.get(0),
        )?;
        Ok(value as u64)
    }

    pub fn put_schedule(
        &mut self,
        name: &str,
        s: &vireo_core::schedule::Schedule,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO schedules (rollout, spec, created_ms) VALUES (?1, ?2, ?3)",
            params![name, serde_json::to_string(s)?, now as i64],
        )?;
        Ok(())
    }

    pub fn schedule(
        &self,
        name: &str,
    ) -> Result<Option<vireo_core::schedule::Schedule>, StoreError> {
        let spec: Option<String> = self
            .conn
            .query_row(
                "SELECT spec FROM schedules WHERE rollout = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(spec.map(|s| serde_json::from_str(&s)).transpose()?)
    }

    /// Removes a rollout's schedule; `true` if there was one.
    pub fn delete_schedule(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM schedules WHERE rollout = ?1", [name])?
            > 0)
    }

    pub fn put_template(&mut self, t: &AnalysisTemplate, now: Millis) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO templates (name, spec, updated_ms) VALUES (?1, ?2, ?3)",
            params![t.metadata.name, serde_json::to_string(t)?, now as i64],
        )?;
        Ok(())
    }

    pub fn template(&self, name: &str) -> Result<Option<AnalysisTemplate>, StoreError> {
        let spec: Option<String> = self
            .conn
            .query_row("SELECT spec FROM templates WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(spec.map(|s| serde_json::from_str(&s)).transpose()?)
    }

    /// SQLite's own consistency check: `true` when the file is sound.
    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(result == "ok")
    }
}

fn read_rollout(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredRollout, StoreError>> {
    let (spec, state): (String, String) = (r.get(0)?, r.get(1)?);
    let (generation, seq): (i64, i64) = (r.get(2)?, r.get(3)?);
    let (created, updated): (i64, i64) = (r.get(4)?, r.get(5)?);
    let applied_by: Option<String> = r.get(6)?;
    Ok((|| {
        Ok(StoredRollout {
            spec: serde_json::from_str(&spec)?,
            state: serde_json::from_str(&state)?,
            generation: generation as u64,
            seq: seq as u64,
            created_ms: created as u64,
            updated_ms: updated as u64,
            applied_by,
        })
    })())
}

pub mod events;
pub mod log;
pub mod tokens;

#[cfg(test)]
mod tests;
