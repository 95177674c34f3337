//! The event log: CloudEvents appended to the store, queried, streamed, and pushed to a sink.
//!
//! - Append-only table `events` (`seq` orders it; `(source, id)` is unique, so an ingested
//!   event sent twice is stored once). Transition events are appended in the transition's own
//!   transaction by the store; ingested ones by the API; flag evaluations by [`EvalWriter`].
//! - After a commit the newest `seq` is published on a watch channel. `GET
//!   /api/v1/events/stream` (SSE) followers read the table in `seq` order from the last id
//!   they sent, on their own connection, and wait on that channel when they are caught up: no
//!   event is skipped or sent out of order, however fast others write.
//! - [`EvalWriter`]: flag evaluations never wait on a disk write: they go through a bounded
//!   queue to a writer thread that commits them in batches on its own connection. A full
//!   queue makes the evaluation wait for room (backpressure) and is counted; nothing is dropped.
//! - The sink (`vireo-control`'s `sink`): `--event-sink URL` posts `application/cloudevents-batch+json` batches in
//!   `seq` order from a durable cursor, advanced only after a 2xx; failures back off (0.2 s
//!   doubling to 30 s) and retry, so every event arrives at least once, across restarts of
//!   either side.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use vireo_core::events::CloudEvent;

pub const SCHEMA: &str = "
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    source  TEXT NOT NULL,
    id      TEXT NOT NULL,
    type    TEXT NOT NULL,
    subject TEXT,
    time_ms INTEGER NOT NULL,
    event   TEXT NOT NULL,              -- the CloudEvent, structured JSON
    UNIQUE (source, id)
);
CREATE INDEX events_by_type ON events (type, seq);
CREATE TABLE flags (
    key        TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
";

/// An event as stored: its place in the log and the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    pub seq: u64,
    #[serde(flatten)]
    pub event: CloudEvent,
}

/// What to do with an event whose `(source, id)` is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Ingested events: receivers dedupe on `(source, id)`; the second copy is dropped.
    Skip,
    /// Our own events: a collision is a bug, and fails the transaction loudly.
    Fail,
}

/// Appends events inside the caller's transaction (if any). Returns those appended.
pub fn append(
    conn: &Connection,
    events: &[CloudEvent],
    on_duplicate: OnDuplicate,
) -> rusqlite::Result<Vec<Stored>> {
    Ok(insert(conn, events, on_duplicate)?
        .into_iter()
        .map(|(i, seq)| Stored {
            seq,
            event: events[i].clone(),
        })
        .collect())
}

/// [`append`] without copying the events: the positions of those appended, with their `seq`.
fn insert(
    conn: &Connection,
    events: &[CloudEvent],
    on_duplicate: OnDuplicate,
) -> rusqlite::Result<Vec<(usize, u64)>> {
    let mut insert = conn.prepare_cached(match on_duplicate {
        OnDuplicate::Skip => {
            "INSERT OR IGNORE INTO events (source, id, type, subject, time_ms, event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        }
        OnDuplicate::Fail => {
            "INSERT INTO events (source, id, type, subject, time_ms, event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        }
    })?;
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let json = serde_json::to_string(e)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        let n = insert.execute(params![
            e.source,
            e.id,
            e.ty,
            e.subject,
            e.time_ms() as i64,
            json
        ])?;
        if n == 1 {
            out.push((i, conn.last_insert_rowid() as u64));
        }
    }
    Ok(out)
}

/// The events DORA reads up to `until_ms`: the CD types, and the steps that reached
/// Progressing.
pub fn dora_events(conn: &Connection, until_ms: u64) -> rusqlite::Result<Vec<CloudEvent>> {
    let t = vireo_core::dora::TYPES;
    let mut q = conn.prepare_cached(
        "SELECT event FROM events WHERE type IN (?1, ?2, ?3, ?4, ?5) AND time_ms < ?7
         UNION ALL
         SELECT event FROM events WHERE type = ?6 AND time_ms < ?7
           AND json_extract(event, '$.data.to') = 'Progressing'",
    )?;
    let rows = q.query_map(
        params![t[0], t[1], t[2], t[3], t[4], t[5], until_ms as i64],
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(
            serde_json::from_str(&row?)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        );
    }
    Ok(out)
}

/// One time bucket of a flag's evaluations: how many went to each variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationBucket {
    pub start_ms: u64,
    pub variants: std::collections::BTreeMap<String, u64>,
}

/// Evaluations of the flag whose events come from `source`, at or after `since_ms`, counted
/// per variant in buckets of `bucket_ms` (oldest first, at most `max_buckets`, the newest
/// kept). The `(source, id)` index bounds the scan to this flag's events.
pub fn flag_evaluations(
    conn: &Connection,
    source: &str,
    since_ms: u64,
    bucket_ms: u64,
    max_buckets: usize,
) -> rusqlite::Result<Vec<EvaluationBucket>> {
    let bucket = bucket_ms.max(1) as i64;
    let mut q = conn.prepare_cached(
        "SELECT (time_ms / ?3) * ?3 AS t, COALESCE(json_extract(event, '$.data.variant'), '(none)'),
                COUNT(*)
         FROM events WHERE source = ?1 AND type = ?2 AND time_ms >= ?4
         GROUP BY 1, 2 ORDER BY 1",
    )?;
    let rows = q.query_map(
        params![
            source,
            vireo_core::events::FLAG_EVALUATED,
            bucket,
            since_ms as i64
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    let mut out: Vec<EvaluationBucket> = Vec::new();
    for row in rows {
        let (t, variant, n) = row?;
        let start_ms = t.max(0) as u64;
        if out.last().map(|b| b.start_ms) != Some(start_ms) {
            out.push(EvaluationBucket {
                start_ms,
                variants: Default::default(),
            });
        }
        if let Some(b) = out.last_mut() {
            b.variants.insert(variant, n.max(0) as u64);
        }
    }
    let extra = out.len().saturating_sub(max_buckets);
    out.drain(..extra);
    Ok(out)
}

/// What `GET /api/v1/events` filters on. `after` pages: the `seq` of the last event seen.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The event's `id` (with `source`: one event, as receipts name them `source#id`).
    #[serde(default)]
    pub id: Option<String>,
    /// RFC 3339; events at or after this time.
    #[serde(default)]
    pub since: Option<String>,
    /// RFC 3339; events before this time.
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub limit: Option<u64>,
}

pub const MAX_PAGE: u64 = 10_000;

fn parse_time(what: &str, t: &Option<String>) -> Result<Option<i64>, String> {
    t.as_deref()
        .map(|t| {
            vireo_core::events::parse_time(t)
                .map(|ms| ms as i64)
                .ok_or_else(|| format!("{what}: {t:?} is not an RFC 3339 time"))
        })
        .transpose()
}

/// One page of events matching `f`, in log order.
pub fn query(conn: &Connection, f: &Filter) -> Result<Vec<Stored>, String> {
    let since = parse_time("since", &f.since)?;
    let until = parse_time("until", &f.until)?;
    let limit = f.limit.unwrap_or(1000).clamp(1, MAX_PAGE) as i64;
    // Only the filters given are in the statement, so SQLite can pick an index for them
    // (`type`: events_by_type; `source` + `id`: the unique key) instead of testing every row
    // after `after` against `(? IS NULL OR …)`.
    use rusqlite::types::Value as Sql;
    let mut sql = String::from("SELECT seq, event FROM events WHERE seq > ?");
    let mut args: Vec<Sql> = vec![Sql::Integer(f.after as i64)];
    let text = |v: &Option<String>| v.clone().map(Sql::Text);
    for (clause, value) in [
        (" AND type = ?", text(&f.ty)),
        (" AND source = ?", text(&f.source)),
        (" AND subject = ?", text(&f.subject)),
        (" AND id = ?", text(&f.id)),
        (" AND time_ms >= ?", since.map(Sql::Integer)),
        (" AND time_ms < ?", until.map(Sql::Integer)),
    ] {
        if let Some(v) = value {
            sql.push_str(clause);
            args.push(v);
        }
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(Sql::Integer(limit));
    let mut q = conn.prepare_cached(&sql).map_err(|e| e.to_string())?;
    let rows = q
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, json) = row.map_err(|e| e.to_string())?;
        out.push(Stored {
            seq: seq as u64,
            event: serde_json::from_str(&json).map_err(|e| e.to_string())?,
        });
    }
    Ok(out)
}

/// Tells SSE followers that events up to `seq` are committed (the value only grows: two
/// writers commit in turn and may report out of order).
pub fn publish_latest(latest: &watch::Sender<u64>, seq: u64) {
    latest.send_if_modified(|v| std::mem::replace(v, seq.max(*v)) < seq);
}

/// Counters of the evaluation-event path (exposed in `GET /api/v1/events/stats`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    /// Evaluations that found the queue full and waited for room.
    pub backpressure: AtomicU64,
    pub batches: AtomicU64,
}

/// Queue capacity of evaluation events: about a second of the target rate.
pub const EVAL_QUEUE: usize = 65_536;
const EVAL_BATCH: usize = 4_096;

/// The sending side of the evaluation-event writer.
#[derive(Clone)]
pub struct EvalWriter {
    tx: mpsc::Sender<CloudEvent>,
    pub stats: Arc<EvalStats>,
}

impl EvalWriter {
    /// Starts the writer thread on its own connection to `db`; after each commit the newest
    /// `seq` goes to `latest`.
    pub fn start(db: PathBuf, latest: Arc<watch::Sender<u64>>) -> rusqlite::Result<EvalWriter> {
        let conn = open(&db)?;
        let (tx, mut rx) = mpsc::channel::<CloudEvent>(EVAL_QUEUE);
        let stats = Arc::new(EvalStats::default());
        let counts = stats.clone();
        std::thread::Builder::new()
            .name("vireo-eval-events".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(EVAL_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < EVAL_BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    // Retried until it commits: nothing is dropped.
                    let rows = loop {
                        match write_batch(&conn, &batch) {
                            Ok(rows) => break rows,
                            Err(e) => {
                                tracing::error!(
                                    "cannot write evaluation events: {e}; retrying in 1 s"
                                );
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    };
                    counts
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    counts.batches.fetch_add(1, Ordering::Relaxed);
                    if let Some(max) = rows.iter().map(|(_, seq)| *seq).max() {
                        publish_latest(&latest, max);
                    }
                    batch.clear();
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(EvalWriter { tx, stats })
    }

    /// Queues an evaluation event; waits only when the queue is full (counted).
    pub async fn send(&self, e: CloudEvent) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(e)) => {
                self.stats.backpressure.fetch_add(1, Ordering::Relaxed);
                let _ = self.tx.send(e).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the evaluation-event writer has stopped");
            }
        }
    }

    /// Waits (up to `limit`) until every queued event is committed: called on shutdown.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let s = &self.stats;
            if s.written.load(Ordering::Relaxed) >= s.queued.load(Ordering::Relaxed) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn write_batch(conn: &Connection, batch: &[CloudEvent]) -> rusqlite::Result<Vec<(usize, u64)>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match insert(conn, batch, OnDuplicate::Fail) {
        Ok(stored) => {
            conn.execute_batch("COMMIT")?;
            Ok(stored)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A connection to the store's database with its settings (WAL, fsync on commit).
pub fn open(db: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// The sink's next page: the events after its stored cursor (`counters` row `cursor`), at
/// most `limit`, in `seq` order.
pub fn sink_page(conn: &Connection, cursor: &str, limit: u64) -> Result<Vec<Stored>, String> {
    let after = conn
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [cursor],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(|e| e.to_string())?
        .unwrap_or(0) as u64;
    query(
        conn,
        &Filter {
            after,
            limit: Some(limit),
            ..Filter::default()
        },
    )
}

/// Where a sink stands against the log: the last `seq` it acknowledged, the newest `seq`,
/// and when the oldest event it has not acknowledged happened (its lag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLag {
    pub delivered: u64,
    pub latest: u64,
    pub oldest_undelivered_ms: Option<u64>,
}

/// The sink lag of `cursor` (two indexed reads: the counter, then the log past it).
pub fn sink_lag(conn: &Connection, cursor: &str) -> rusqlite::Result<SinkLag> {
    let delivered = conn
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [cursor],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0)
        .max(0) as u64;
    let latest = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
            r.get::<_, i64>(0)
        })?
        .max(0) as u64;
    let oldest_undelivered_ms = conn
        .query_row(
            "SELECT time_ms FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [delivered as i64],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(|t| t.max(0) as u64);
    Ok(SinkLag {
        delivered,
        latest,
        oldest_undelivered_ms,
    })
}

/// Moves the sink's cursor to `last` (never back).
pub fn save_cursor(conn: &Connection, cursor: &str, last: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
        params![cursor, last as i64],
    )
    .map(|_| ())
}
