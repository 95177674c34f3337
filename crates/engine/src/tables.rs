//! The route tables the control plane serves to proxies (`GET /api/v1/proxy/config`).
//!
//! One numbered table for the whole fleet: every rollout's route, plus the static routes of
//! `control.yaml`. The driver publishes a new version whenever a route changes; versions come
//! from a durable counter, so they only grow, even across restarts, and a proxy polling with the
//! last version it applied always gets anything newer.
//!
//! The long poll is a `tokio::sync::watch` channel: a request for `since = V` is answered at
//! once when the current version is newer, else when the next one is published, else with 304
//! after the hold time. Thousands of waiting proxies cost one channel subscription each.
//!
//! The watch stream (`GET /api/v1/proxy/watch`) subscribes to the same channel and writes each
//! new table as one JSON line; the line is serialized once per version ([`Tables::line`]), not
//! once per proxy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vireo_types::wire::ConfigUpdate;

/// How long a long poll is held before 304 (spec: ≤ 30 s).
pub const HOLD: Duration = Duration::from_secs(25);

pub struct Tables {
    tx: watch::Sender<Arc<ConfigUpdate>>,
    /// The current table as a JSON line (`\n`-terminated), with its version.
    line: std::sync::Mutex<(u64, bytes::Bytes)>,
}

impl Default for Tables {
    fn default() -> Self {
        let (tx, _) = watch::channel(Arc::new(ConfigUpdate {
            version: 0,
            routes: Vec::new(),
            slo_windows_s: Vec::new(),
        }));
        Tables {
            tx,
            line: std::sync::Mutex::new((0, bytes::Bytes::new())),
        }
    }
}

impl Tables {
    pub fn publish(&self, update: ConfigUpdate) {
        self.tx.send_replace(Arc::new(update));
    }

    pub fn current(&self) -> Arc<ConfigUpdate> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every table published from now on (and the current one).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigUpdate>> {
        self.tx.subscribe()
    }

    /// `update` as one JSON line, serialized once per version however many streams send it.
    pub fn line(&self, update: &ConfigUpdate) -> bytes::Bytes {
        let mut cached = self.line.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != update.version || cached.1.is_empty() {
            let mut text = serde_json::to_vec(update).unwrap_or_default();
            text.push(b'\n');
            *cached = (update.version, text.into());
        }
        cached.1.clone()
    }

    /// The table a proxy that applied `since` should get, waiting up to `hold` for one.
    ///
    /// A proxy *ahead* of us (its `since` is above anything published here: the data dir was
    /// replaced) gets the current table at once, so it does not wait forever for a version
    /// this control plane will take long to reach; version 0 (nothing published yet) is never
    /// sent, so a fresh control plane does not wipe a proxy's routes.
    pub async fn wait_newer(&self, since: u64, hold: Duration) -> Option<Arc<ConfigUpdate>> {
        let mut rx = self.tx.subscribe();
        let fits = |u: &ConfigUpdate| u.version > 0 && u.version != since;
        let wait = async { rx.wait_for(|u| fits(u)).await.map(|u| u.clone()) };
        tokio::time::timeout(hold, wait).await.ok()?.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(version: u64) -> ConfigUpdate {
        ConfigUpdate {
            version,
            routes: Vec::new(),
            slo_windows_s: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_poll_returns_newer_tables_waits_for_the_next_and_times_out() {
        let t = Arc::new(Tables::default());
        let short = Duration::from_millis(50);
        assert!(
            t.wait_newer(0, short).await.is_none(),
            "version 0 is never sent"
        );
        t.publish(table(3));
        assert_eq!(t.wait_newer(0, short).await.unwrap().version, 3);
        assert!(t.wait_newer(3, short).await.is_none());
        assert_eq!(
            t.wait_newer(9, short).await.unwrap().version,
            3,
            "a proxy ahead of us is given our table"
        );
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_newer(3, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.publish(table(4));
        assert_eq!(waiter.await.unwrap().unwrap().version, 4);
    }
}
