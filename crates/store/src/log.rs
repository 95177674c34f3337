//! The transparency log, persisted in the store's SQLite database.
//!
//! Entries are the RFC 8785 JSON of envelopes; leaf hashes and every *complete* subtree hash
//! are stored as they form (`log_nodes(level, idx)`: the node covering leaves
//! `idx·2^level .. (idx+1)·2^level`). An append writes the leaf and the O(1) amortized parents
//! it completes; roots and proofs read O(log² n) stored nodes. Nothing ever recomputes the
//! tree, so appends stay fast as the log grows.
//!
//! Functions take a `Connection` so that the store can append inside the transaction that
//! records what the entry attests to: both commit or neither does. [`SqlLog`] is the
//! evidence crate's [`Log`] seam over such a connection (or transaction).

use rusqlite::{params, Connection, OptionalExtension};

use vireo_evidence::log::{Entry, EntryMeta, Log, LogError};
use vireo_evidence::merkle::{self, Hash};

pub const SCHEMA: &str = "
-- Transparency log entries: RFC 8785 JSON of DSSE envelopes, in log order.
CREATE TABLE log_entries (
    idx        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    rollout    TEXT,
    generation INTEGER,
    kind       TEXT NOT NULL,     -- checkpoint | analysis | vsa | rollback | provenance
    stage      TEXT NOT NULL,     -- file-name friendly label (the lifecycle stage, ...)
    decision   TEXT,              -- decision id, for verdicts that can be replayed
    entry      BLOB NOT NULL
);
CREATE INDEX log_entries_rollout ON log_entries (rollout, generation, idx);
CREATE UNIQUE INDEX log_entries_decision ON log_entries (decision) WHERE decision IS NOT NULL;
-- Complete subtree hashes: level 0 are leaf hashes.
CREATE TABLE log_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- Replays of recorded decisions (`vireo replay`), for the determinism totals.
CREATE TABLE replays (
    id          INTEGER PRIMARY KEY,
    decision    TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    matched     INTEGER NOT NULL,
    differences TEXT NOT NULL
);
";

pub fn size(conn: &Connection) -> rusqlite::Result<u64> {
    // MAX of the rowid is a B-tree lookup; COUNT(*) would scan the table on every append.
    conn.prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn node(conn: &Connection, level: u32, idx: u64) -> rusqlite::Result<Hash> {
    let bytes: Vec<u8> = conn
        .prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2")?
        .query_row(params![level, idx as i64], |r| r.get(0))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            32,
            rusqlite::types::Type::Blob,
            "a stored hash is not 32 bytes".into(),
        )
    })
}

/// Appends an entry; returns its index.
pub fn append(conn: &Connection, meta: &EntryMeta, entry: &[u8]) -> rusqlite::Result<u64> {
    let index = size(conn)?;
    conn.prepare_cached(
        "INSERT INTO log_entries (idx, at_ms, rollout, generation, kind, stage, decision, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        index as i64,
        meta.at_ms as i64,
        meta.rollout,
        meta.generation.map(|g| g as i64),
        meta.kind,
        meta.stage,
        meta.decision,
        entry
    ])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    let mut hash = merkle::leaf_hash(entry);
    let (mut level, mut idx) = (0u32, index);
    insert.execute(params![level, idx as i64, &hash[..]])?;
    // A right child completes its parent: hash upward while the node is a right child.
    while idx & 1 == 1 {
        let left = node(conn, level, idx - 1)?;
        hash = merkle::node_hash(&left, &hash);
        level += 1;
        idx >>= 1;
        insert.execute(params![level, idx as i64, &hash[..]])?;
    }
    Ok(index)
}

/// The hash of leaves `lo..hi`, from stored nodes.
fn subtree(conn: &Connection, lo: u64, hi: u64) -> rusqlite::Result<Hash> {
    let n = hi - lo;
    if n.is_power_of_two() && lo % n == 0 {
        return node(conn, n.trailing_zeros(), lo >> n.trailing_zeros());
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    Ok(merkle::node_hash(
        &subtree(conn, lo, lo + k)?,
        &subtree(conn, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `size` entries.
pub fn root(conn: &Connection, size: u64) -> rusqlite::Result<Hash> {
    if size == 0 {
        Ok(merkle::empty_root())
    } else {
        subtree(conn, 0, size)
    }
}

/// Runs a proof builder over stored nodes, surfacing the first database error.
fn with_nodes<T>(
    conn: &Connection,
    build: impl FnOnce(&mut dyn FnMut(u64, u64) -> Hash) -> T,
) -> rusqlite::Result<T> {
    let mut error = None;
    let out = build(&mut |lo, hi| {
        subtree(conn, lo, hi).unwrap_or_else(|e| {
            error.get_or_insert(e);
            [0; 32]
        })
    });
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub fn inclusion_proof(
    conn: &Connection,
    index: u64,
    size: u64,
) -> rusqlite::Result<Option<Vec<Hash>>> {
    with_nodes(conn, |sub| {
        merkle::inclusion_proof_with(size, index, &mut |lo, hi| sub(lo, hi))
    })
}

pub fn consistency_proof(
    conn: &Connection,
    old: u64,
    size: u64,
) -> rusqlite::Result<Option<Vec<Hash>>> {
    with_nodes(conn, |sub| {
        merkle::consistency_proof_with(old, size, &mut |lo, hi| sub(lo, hi))
    })
}

fn read_entry(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    Ok(Entry {
        index: r.get::<_, i64>(0)? as u64,
        at_ms: r.get::<_, i64>(1)? as u64,
        rollout: r.get(2)?,
        generation: r.get::<_, Option<i64>>(3)?.map(|g| g as u64),
        kind: r.get(4)?,
        stage: r.get(5)?,
        decision: r.get(6)?,
        entry: r.get(7)?,
    })
}

const COLUMNS: &str = "idx, at_ms, rollout, generation, kind, stage, decision, entry";

pub fn entry(conn: &Connection, index: u64) -> rusqlite::Result<Option<Entry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM log_entries WHERE idx = ?1"),
        [index as i64],
        read_entry,
    )
    .optional()
}

pub fn by_decision(conn: &Connection, decision: &str) -> rusqlite::Result<Option<Entry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM log_entries WHERE decision = ?1"),
        [decision],
        read_entry,
    )
    .optional()
}

/// A rollout generation's entries, in log order.
pub fn for_rollout(
    conn: &Connection,
    rollout: &str,
    generation: u64,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM log_entries WHERE rollout = ?1 AND generation = ?2 ORDER BY idx"
    ))?;
    let rows = stmt.query_map(params![rollout, generation as i64], read_entry)?;
    rows.collect()
}

/// Every entry with a decision id, in log order.
pub fn decisions(conn: &Connection) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM log_entries WHERE decision IS NOT NULL ORDER BY idx"
    ))?;
    let rows = stmt.query_map([], read_entry)?;
    rows.collect()
}

/// The newest entry of `kind` of a rollout generation, and how many entries of that kind the
/// generation has.
pub fn latest(
    conn: &Connection,
    rollout: &str,
    generation: u64,
    kind: &str,
) -> rusqlite::Result<Option<(Vec<u8>, u64)>> {
    conn.query_row(
        "SELECT entry, (SELECT COUNT(*) FROM log_entries
                        WHERE rollout = ?1 AND generation = ?2 AND kind = ?3)
         FROM log_entries WHERE rollout = ?1 AND generation = ?2 AND kind = ?3
         ORDER BY idx DESC LIMIT 1",
        params![rollout, generation as i64, kind],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
    )
    .optional()
}

/// The transparency log in this database, as evidence appends to and reads it.
pub struct SqlLog<'a>(pub &'a Connection);

impl Log for SqlLog<'_> {
    fn size(&self) -> Result<u64, LogError> {
        Ok(size(self.0)?)
    }
    fn root(&self, size: u64) -> Result<Hash, LogError> {
        Ok(root(self.0, size)?)
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Option<Vec<Hash>>, LogError> {
        Ok(inclusion_proof(self.0, index, size)?)
    }
    fn append(&self, meta: &EntryMeta, entry: &[u8]) -> Result<u64, LogError> {
        Ok(append(self.0, meta, entry)?)
    }
    fn latest(
        &self,
        rollout: &str,
        generation: u64,
        kind: &str,
    ) -> Result<Option<(Vec<u8>, u64)>, LogError> {
        Ok(latest(self.0, rollout, generation, kind)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c
    }

    fn meta() -> EntryMeta<'static> {
        EntryMeta {
            at_ms: 0,
            rollout: None,
            generation: None,
            kind: "test",
            stage: "test",
            decision: None,
        }
    }

    /// The stored-node roots and proofs equal the in-memory reference at every size.
    #[test]
    fn stored_nodes_give_the_reference_roots_and_proofs() {
        let c = conn();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            let data = i.to_be_bytes();
            assert_eq!(append(&c, &meta(), &data).unwrap(), i as u64);
            leaves.push(merkle::leaf_hash(&data));
            let n = leaves.len() as u64;
            assert_eq!(size(&c).unwrap(), n);
            assert_eq!(root(&c, n).unwrap(), merkle::root(&leaves), "size {n}");
            for idx in [0, n / 2, n - 1] {
                assert_eq!(
                    inclusion_proof(&c, idx, n).unwrap(),
                    merkle::inclusion_proof(&leaves, idx as usize),
                    "inclusion {idx} in {n}"
                );
            }
            for old in [1, n / 3 + 1, n] {
                assert_eq!(
                    consistency_proof(&c, old, n).unwrap(),
                    merkle::consistency_proof(&leaves, old as usize),
                    "consistency {old} → {n}"
                );
            }
        }
        // Roots of older sizes are still answerable (for consistency with old checkpoints).
        assert_eq!(root(&c, 13).unwrap(), merkle::root(&leaves[..13]));
        assert_eq!(inclusion_proof(&c, 70, 70).unwrap(), None);
    }
}
