//! API tokens as stored: a name, a role, the SHA-256 of the secret (never the secret), when
//! it was made, when it expires and when it was revoked. Revoked tokens stay, so `vireo token
//! list` shows who had access and until when.
//!
//! [`Tokens`] has a connection of its own: tokens are written by the API (an admin's request),
//! not by the driver, and rarely. The server keeps the active ones in memory and reloads them
//! after each change it makes.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::StoreError;

/// A token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub hash: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    pub created_by: String,
}

impl TokenRecord {
    /// Usable at `now`: not revoked, not expired.
    pub fn active(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} exists (revoked tokens keep their name; pick another)")]
    Exists(String),
    #[error("no token named {0:?}")]
    NotFound(String),
    #[error("token {0:?} was already revoked")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for TokenError {
    fn from(e: rusqlite::Error) -> Self {
        TokenError::Store(StoreError::Sql(e))
    }
}

pub struct Tokens {
    conn: Connection,
}

impl Tokens {
    /// Opens the token table of the database at `path` (made by `Store::open`).
    pub fn open(path: &Path) -> Result<Tokens, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Tokens { conn })
    }

    pub fn create(&self, record: &TokenRecord) -> Result<(), TokenError> {
        let exists: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM tokens WHERE name = ?1",
                [&record.name],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(TokenError::Exists(record.name.clone()));
        }
        self.conn.execute(
            "INSERT INTO tokens (name, role, hash, created_ms, expires_ms, revoked_ms, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
            params![
                record.name,
                record.role,
                record.hash,
                record.created_ms as i64,
                record.expires_ms.map(|e| e as i64),
                record.created_by
            ],
        )?;
        Ok(())
    }

    pub fn revoke(&self, name: &str, now_ms: u64) -> Result<(), TokenError> {
        let revoked: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT revoked_ms FROM tokens WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match revoked {
            None => Err(TokenError::NotFound(name.into())),
            Some(Some(_)) => Err(TokenError::AlreadyRevoked(name.into())),
            Some(None) => {
                self.conn.execute(
                    "UPDATE tokens SET revoked_ms = ?2 WHERE name = ?1",
                    params![name, now_ms as i64],
                )?;
                Ok(())
            }
        }
    }

    /// Revokes `name` (if it is not already) and renames it `NAME.retired-MS`, freeing the
    /// name; the record stays. Nothing happens when there is no such token.
    pub fn retire(&self, name: &str, now_ms: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?2),
                 name = name || '.retired-' || ?2 WHERE name = ?1",
            params![name, now_ms as i64],
        )?;
        Ok(())
    }

    /// Every token ever made, by name.
    pub fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, role, hash, created_ms, expires_ms, revoked_ms, created_by
             FROM tokens ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenRecord {
                name: r.get(0)?,
                role: r.get(1)?,
                hash: r.get(2)?,
                created_ms: r.get::<_, i64>(3)? as u64,
                expires_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                revoked_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                created_by: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, hash: &str, expires_ms: Option<u64>) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: "viewer".into(),
            hash: hash.into(),
            created_ms: 1000,
            expires_ms,
            revoked_ms: None,
            created_by: "token:admin".into(),
        }
    }

    #[test]
    fn tokens_are_created_listed_and_revoked() {
        let dir = std::env::temp_dir().join(format!("vireo-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::Store::open(&dir).unwrap();
        let t = Tokens::open(store.path()).unwrap();
        t.create(&record("a", "h1", None)).unwrap();
        t.create(&record("b", "h2", Some(5000))).unwrap();
        assert!(matches!(
            t.create(&record("a", "h3", None)),
            Err(TokenError::Exists(_))
        ));
        t.revoke("a", 2000).unwrap();
        assert!(matches!(
            t.revoke("a", 3000),
            Err(TokenError::AlreadyRevoked(_))
        ));
        assert!(matches!(t.revoke("zz", 3000), Err(TokenError::NotFound(_))));
        let all = t.list().unwrap();
        assert_eq!(all.len(), 2);
        assert!(!all[0].active(2500), "revoked");
        assert!(all[1].active(4999));
        assert!(!all[1].active(5000), "expired");
        t.retire("b", 6000).unwrap();
        t.create(&record("b", "h4", None)).unwrap();
        let names: Vec<_> = t.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b", "b.retired-6000"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
