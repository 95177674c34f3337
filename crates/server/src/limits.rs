//! Limits on what one caller can hold open or send at once.
//!
//! | limit | value | answer |
//! |---|---|---|
//! | request body | 1 MiB ([`crate::BODY_LIMIT`]) | 413 |
//! | request head: time | 30 s ([`crate::HEADER_READ_TIMEOUT`]; slowloris) | connection closed |
//! | request head: size | hyper's (≈ 400 KiB, 100 fields) | 431 |
//! | connections | the open-file limit less 512, at most 65 536 ([`crate::connection_slots`]) | new ones closed |
//! | TLS handshake | 10 s | connection closed |
//! | event streams (SSE) per principal | [`MAX_STREAMS`] | 429 |
//! | long polls per proxy id | [`MAX_POLLS`] | 429 |
//! | events per ingest batch | [`MAX_BATCH`] | 413 |
//!
//! Streams count per principal (a person's browser tabs, a tool), long polls per proxy id:
//! a fleet may share one proxy token, and one proxy needs one poll (a few during a restart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub const MAX_STREAMS: usize = 16;
pub const MAX_POLLS: usize = 4;
pub const MAX_BATCH: usize = 1000;

/// Counts what each key holds open; a [`Held`] gives its slot back when dropped.
#[derive(Default)]
pub struct Gauge {
    held: Mutex<HashMap<String, usize>>,
}

pub struct Held {
    gauge: Arc<Gauge>,
    key: String,
}

impl Gauge {
    /// A slot for `key`, or `None` when it already holds `max`.
    pub fn try_hold(self: &Arc<Self>, key: &str, max: usize) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            gauge: self.clone(),
            key: key.to_string(),
        })
    }
}

impl Gauge {
    /// How many slots `key` holds now.
    pub fn held(&self, key: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.gauge.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// What the server's handlers share for limits.
#[derive(Default)]
pub struct Limits {
    pub streams: Arc<Gauge>,
    pub polls: Arc<Gauge>,
    /// Watch streams open per proxy id (also counted in `polls`): when the last one closes,
    /// the proxy is disconnected.
    pub watches: Arc<Gauge>,
}

/// 429 with what was exceeded.
pub fn too_many(message: String) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_key_and_given_back() {
        let g = Arc::new(Gauge::default());
        let a1 = g.try_hold("a", 2).unwrap();
        let _a2 = g.try_hold("a", 2).unwrap();
        assert!(g.try_hold("a", 2).is_none());
        assert!(g.try_hold("b", 2).is_some());
        drop(a1);
        assert!(g.try_hold("a", 2).is_some());
    }
}
