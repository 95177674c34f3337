//! The transparency log as evidence sees it: a seam, [`Log`], that the store implements over
//! its database (inside the transaction that records what an entry attests to, so both commit
//! or neither does), and the entries' metadata.
//!
//! Keeping the SQL out of this crate keeps evidence checkable without a database: `vireo
//! verify` links it with nothing but keys, hashes and bundles.

use crate::merkle::Hash;

/// A log backend's failure, kept whole so the store can tell a busy database from bad data.
pub type LogError = Box<dyn std::error::Error + Send + Sync>;

/// What an entry is about, for finding it again (bundles, replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta<'a> {
    pub at_ms: u64,
    pub rollout: Option<&'a str>,
    pub generation: Option<u64>,
    pub kind: &'a str,
    pub stage: &'a str,
    pub decision: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub at_ms: u64,
    pub rollout: Option<String>,
    pub generation: Option<u64>,
    pub kind: String,
    pub stage: String,
    pub decision: Option<String>,
    pub entry: Vec<u8>,
}

/// An append-only RFC 6962 log of envelope bytes.
pub trait Log {
    /// How many entries the log has.
    fn size(&self) -> Result<u64, LogError>;
    /// The root of the tree of the first `size` entries.
    fn root(&self, size: u64) -> Result<Hash, LogError>;
    /// The inclusion proof of entry `index` in the tree of `size` entries; `None` if out of range.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Option<Vec<Hash>>, LogError>;
    /// Appends an entry; returns its index.
    fn append(&self, meta: &EntryMeta, entry: &[u8]) -> Result<u64, LogError>;
    /// The newest entry of `kind` of a rollout generation, and how many of that kind it has.
    fn latest(
        &self,
        rollout: &str,
        generation: u64,
        kind: &str,
    ) -> Result<Option<(Vec<u8>, u64)>, LogError>;
}
