//! The event sink: `--event-sink URL` posts `application/cloudevents-batch+json` batches in
//! `seq` order from a durable cursor (kept in the store), advanced only after a 2xx; failures
//! back off (0.2 s doubling to 30 s) and retry, so every event arrives at least once, across
//! restarts of either side.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use vireo_core::events::CloudEvent;
use vireo_store::events::{self, Stored};

/// What the sink loop last saw, for the health banner (the lag itself is read from the store:
/// the cursor against the log).
#[derive(Debug, Default)]
pub struct SinkStatus {
    pub url: String,
    state: Mutex<SinkState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkState {
    /// When a batch was last acknowledged (2xx).
    pub delivered_at_ms: Option<u64>,
    /// The last failure, while failing: the sink's answer or why it could not be reached.
    pub error: Option<String>,
    /// Since when it has been failing.
    pub failing_since_ms: Option<u64>,
}

impl SinkStatus {
    pub fn new(url: &str) -> SinkStatus {
        SinkStatus {
            url: url.to_string(),
            state: Mutex::default(),
        }
    }

    pub fn state(&self) -> SinkState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The counter name of this sink's cursor in the store.
    pub fn cursor(&self) -> String {
        cursor(&self.url)
    }

    fn delivered(&self, now: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = SinkState {
            delivered_at_ms: Some(now),
            error: None,
            failing_since_ms: None,
        };
    }

    /// Records a failure. Its text (the HTTP client's) names the URL, which may carry the
    /// sink's credentials: they are taken out before anyone can read it.
    fn failed(&self, error: &str, now: u64) {
        let error = error.replace(&self.url, &redact(&self.url));
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.error = Some(error);
        s.failing_since_ms.get_or_insert(now);
    }
}

/// A URL as a viewer may see it: scheme, host and port. User-info (a password), the path
/// (webhook URLs carry their secret there) and the query (a token) are left out.
pub fn redact(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => {
            let host = u
                .authority()
                .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
            let hidden = if u.path().len() > 1 || u.query().is_some() {
                "/…"
            } else {
                "/"
            };
            format!("{}://{host}{hidden}", u.scheme_str().unwrap_or("http"))
        }
        Err(_) => "(not a URL)".into(),
    }
}

fn cursor(url: &str) -> String {
    format!("event_sink {url}")
}

/// Pushes every event, in order, to `status.url`, from where it left off (the cursor is
/// stored in `counters` under `event_sink <url>`), and says how it goes in `status`. Runs
/// until the runtime stops.
pub async fn run_sink(
    db: PathBuf,
    status: Arc<SinkStatus>,
    clock: Arc<dyn vireo_core::clock::Clock>,
) {
    let url = status.url.clone();
    let cursor = cursor(&url);
    let client = crate::prometheus::client();
    let mut backoff = Duration::from_millis(200);
    let mut conn: Option<Connection> = None;
    // The next page (read on a blocking thread, on the sink's own connection).
    let read = |conn: Option<Connection>, db: PathBuf, cursor: String| {
        tokio::task::spawn_blocking(move || {
            (|| -> Result<(Connection, Vec<Stored>), String> {
                let conn = match conn {
                    Some(c) => c,
                    None => events::open(&db).map_err(|e| e.to_string())?,
                };
                let page = events::sink_page(&conn, &cursor, SINK_PAGE)?;
                Ok((conn, page))
            })()
        })
    };
    loop {
        let (c, events) = match read(conn.take(), db.clone(), cursor.clone()).await {
            Ok(Ok((c, events))) => (c, events),
            Ok(Err(e)) => {
                tracing::warn!("event sink: cannot read the log: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("event sink: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if events.is_empty() {
            conn = Some(c);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let last = events.last().map_or(0, |s| s.seq);
        let body: Vec<&CloudEvent> = events.iter().map(|s| &s.event).collect();
        let body = serde_json::to_vec(&body).unwrap_or_default();
        match post(&client, &url, body).await {
            Ok(()) => {
                status.delivered(clock.now_ms());
                backoff = Duration::from_millis(200);
                let name = cursor.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let r = events::save_cursor(&c, &name, last);
                    (c, r)
                })
                .await;
                match saved {
                    Ok((c, Ok(_))) => conn = Some(c),
                    Ok((c, Err(e))) => {
                        conn = Some(c);
                        tracing::warn!(
                            "event sink: cannot save the cursor ({e}); events may be sent again"
                        );
                    }
                    Err(e) => tracing::warn!("event sink: {e}"),
                }
            }
            Err(e) => {
                conn = Some(c);
                status.failed(&e, clock.now_ms());
                tracing::warn!(sink = %url, "event sink: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Events per batch sent to the sink.
const SINK_PAGE: u64 = 2_000;

async fn post(
    client: &crate::prometheus::HttpClient,
    url: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let answer = client
        .post(
            url,
            "application/cloudevents-batch+json",
            bytes::Bytes::from(body),
            vireo_http::Limits::new(Duration::from_secs(10), 1 << 20),
        )
        .await
        .map_err(|e| e.to_string())?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!("the sink answered {}", answer.status))
    }
}
