//! The control-plane config source: `vireo-proxy --control URL --proxy-id ID`.
//!
//! Routes come from the control plane as versioned tables over one long-lived stream
//! (`GET /api/v1/proxy/watch?proxy=ID&since=V`: a JSON line per newer table, an empty line as
//! keep-alive); a control plane without it (404) is long-polled instead
//! (`GET /api/v1/proxy/config?proxy=ID&since=V`: 200 with a newer table, or 304 after at most
//! 30 s). Everything else (`listen`, `admin`, timeouts) stays from the local file.
//!
//! A status report (`POST /api/v1/proxy/status`) gives the applied version, the in-flight count
//! of every backend (also ones a new table removed, so the control plane can see a drain
//! finish) and the SLO figures (over 60 s, and over any window the control plane's analyses
//! ask for). It is sent when something changed — at once after a table is applied or refused
//! (which is how a weight change is known to be applied everywhere within about a round trip),
//! when the stream (re)connects, and the moment the last request in flight to a backend no
//! longer routed ends (watched locally every [`DRAIN_CHECK`]) — and otherwise as a keep-alive,
//! as often as the control plane's last answer asked (`report_every_ms`: it spaces reports
//! out as the fleet grows), every second by default.
//!
//! Static stability: when the control plane is unreachable the proxy keeps serving the last
//! table it applied (at start, the local file's routes) and retries with jittered exponential
//! backoff, 100 ms up to 10 s.
//!
//! The wire types are [`vireo_types::wire`], shared with the control plane.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use vireo_http::{HttpClient, Limits};

use crate::admin::slo_report;
use crate::config::Config;
use crate::TableHandle;
pub use vireo_types::wire::{
    encode_query, ConfigUpdate, RejectedTable, StatusReport, MAX_EXTRA_WINDOWS, STATUS_WINDOW,
};

/// How long the control plane may hold a long poll (spec: ≤ 30 s), plus slack.
const POLL_TIMEOUT: Duration = Duration::from_secs(35);
/// A watch stream silent this long (it carries a keep-alive every 15 s) is dead: reconnect.
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// A proxy long-polling because the control plane answered 404 tries the stream again this
/// often (in a rolling upgrade, the 404 came from a replica that predates it).
const STREAM_RETRY: Duration = Duration::from_secs(300);
/// Keep-alive reports when the control plane has not said otherwise.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// The control plane may space reports out this far, no farther.
const HEARTBEAT_MAX: Duration = Duration::from_secs(60);
/// How often requests still in flight to a backend no longer routed are counted, locally,
/// to report the end of a drain the moment it happens.
pub const DRAIN_CHECK: Duration = Duration::from_millis(10);
/// A failed report is sent again after this, doubling up to the keep-alive spacing.
const RETRY_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The largest route table accepted from the control plane (thousands of routes fit).
const MAX_TABLE: usize = 16 << 20;
/// Where to find the control plane, and who this proxy is.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub url: String,
    pub proxy_id: String,
    /// The credential (a token with the `proxy` role).
    pub token: Option<TokenSource>,
    /// Trust only this CA (PEM) for an `https://` control plane; else the system's roots.
    pub ca: Option<std::path::PathBuf>,
}

impl ControlOptions {
    /// The HTTP client for the control plane (its CA loaded).
    pub fn client(&self) -> Result<HttpClient, vireo_http::HttpError> {
        HttpClient::with_ca(Duration::from_secs(2), self.ca.as_deref())
    }
}

/// Where the proxy's token comes from. A file is re-read when it changes (a rotated
/// Kubernetes service-account token, a re-issued Vireo token), without a restart.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Value(String),
    File(std::path::PathBuf),
}

/// The token as last read, and the file's modification time then.
#[derive(Default)]
struct CachedToken {
    modified: Option<std::time::SystemTime>,
    header: Option<http::HeaderValue>,
}

fn bearer(token: &str) -> Result<http::HeaderValue, String> {
    let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .map_err(|_| "the control-plane token has characters a header cannot carry".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

pub struct ControlSource {
    base: String,
    proxy_id: String,
    local: Config,
    table: Arc<TableHandle>,
    client: HttpClient,
    applied: tokio::sync::watch::Sender<u64>,
    /// Bumped when the watch stream (re)connects: the control plane may have lost us.
    connected: tokio::sync::watch::Sender<u64>,
    /// On the watch stream (not the long poll): keep-alive reports as far apart as asked.
    streaming: std::sync::atomic::AtomicBool,
    rejected: std::sync::Mutex<Option<RejectedTable>>,
    slo_windows: std::sync::Mutex<Vec<Duration>>,
    token: Option<TokenSource>,
    cached: std::sync::Mutex<CachedToken>,
}

impl ControlSource {
    /// The `Authorization` value to send, re-reading a token file that changed.
    fn authorization(&self) -> Result<Option<http::HeaderValue>, String> {
        let path = match &self.token {
            None => return Ok(None),
            Some(TokenSource::Value(t)) => return bearer(t).map(Some),
            Some(TokenSource::File(p)) => p,
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("--control-token-file {}: {e}", path.display()))?;
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.modified != Some(modified) || cached.header.is_none() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--control-token-file {}: {e}", path.display()))?;
            cached.header = Some(bearer(&text)?);
            cached.modified = Some(modified);
        }
        Ok(cached.header.clone())
    }

    /// `local` is the file's config: its routes serve until the first table arrives.
    pub fn new(
        opts: ControlOptions,
        client: HttpClient,
        local: Config,
        table: Arc<TableHandle>,
    ) -> Self {
        let (applied, _) = tokio::sync::watch::channel(table.load().version());
        let (connected, _) = tokio::sync::watch::channel(0);
        ControlSource {
            base: opts.url.trim_end_matches('/').to_string(),
            proxy_id: opts.proxy_id,
            local,
            table,
            client,
            applied,
            connected,
            streaming: std::sync::atomic::AtomicBool::new(false),
            rejected: std::sync::Mutex::new(None),
            slo_windows: std::sync::Mutex::new(Vec::new()),
            token: opts.token,
            cached: Default::default(),
        }
    }

    /// Follows the control plane's tables and sends status reports until the task is dropped.
    pub async fn run(self) {
        let this = Arc::new(self);
        tokio::spawn(this.clone().heartbeats());
        this.poll_loop().await;
    }

    async fn poll_loop(&self) {
        let mut since = self.table.load().version();
        let mut backoff = BACKOFF_MIN;
        let mut reachable = true;
        // The stream until the control plane says it has none (404); then the long poll, and
        // the stream again every STREAM_RETRY (one 404 may have been an old replica).
        let mut long_polling_since: Option<tokio::time::Instant> = None;
        loop {
            if long_polling_since.is_some_and(|t| t.elapsed() >= STREAM_RETRY) {
                long_polling_since = None;
            }
            let outcome = if long_polling_since.is_none() {
                match self.watch(&mut since).await {
                    Err(Watch::NotServed) => {
                        self.streaming
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(control = %self.base, "the control plane has no watch stream; long-polling instead");
                        long_polling_since = Some(tokio::time::Instant::now());
                        continue;
                    }
                    Err(Watch::Failed {
                        error,
                        established: false,
                    }) => Err(error),
                    // A stream that was up and ended (the control plane restarting, a proxy in
                    // between closing it) is not an outage: reconnect after a short pause, not
                    // after a backoff that grew over the proxy's whole life.
                    ended => {
                        if let Err(Watch::Failed { error, .. }) = ended {
                            tracing::debug!(control = %self.base, %error, "the watch stream ended; reconnecting");
                        }
                        reachable = true;
                        backoff = BACKOFF_MIN;
                        let jitter = fastrand::u64(..=BACKOFF_MIN.as_millis() as u64);
                        tokio::time::sleep(BACKOFF_MIN + Duration::from_millis(jitter)).await;
                        continue;
                    }
                }
            } else {
                match self.poll(since).await {
                    Ok(Some(update)) => {
                        // A rejected version is not asked for again: the next poll waits for a
                        // newer one.
                        since = update.version;
                        self.apply(update);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            match outcome {
                Ok(()) => {
                    reachable = true;
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    if reachable {
                        tracing::warn!(control = %self.base, error = %e, "control plane unreachable; serving the last table, retrying");
                    }
                    reachable = false;
                    let jitter = fastrand::u64(..=backoff.as_millis() as u64 / 2);
                    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn apply(&self, update: ConfigUpdate) {
        let windows: Vec<Duration> = update
            .slo_windows_s
            .iter()
            .take(MAX_EXTRA_WINDOWS)
            .map(|&w| Duration::from_secs(w.clamp(1, crate::slo::MAX_WINDOW.as_secs())))
            .collect();
        let mut config = self.local.clone();
        config.routes = update.routes;
        match self.table.apply(config, update.version) {
            Ok(()) => {
                *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.slo_windows.lock().unwrap_or_else(|e| e.into_inner()) = windows;
                self.table.metrics().reload(true);
                tracing::info!(
                    version = update.version,
                    "applied route table from the control plane"
                );
                self.applied.send_replace(update.version);
            }
            Err(e) => {
                *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = Some(RejectedTable {
                    version: update.version,
                    error: e.to_string(),
                });
                self.applied.send_modify(|_| {}); // report the refusal at once
                self.table.metrics().reload(false);
                tracing::error!(
                    version = update.version,
                    "control plane sent an invalid table; keeping version {}:\n{e}",
                    self.table.load().version()
                );
            }
        }
    }

    /// One watch stream, applying each table as it comes, until it ends (`Ok`: the control
    /// plane closed it, e.g. at shutdown) or fails.
    async fn watch(&self, since: &mut u64) -> Result<(), Watch> {
        use http_body_util::BodyExt;
        let uri = format!(
            "{}/api/v1/proxy/watch?proxy={}&since={since}",
            self.base,
            encode_query(&self.proxy_id)
        );
        let failed = |error: String| Watch::Failed {
            error,
            established: false,
        };
        let mut req = vireo_http::request(Method::GET, &uri, None, Bytes::new())
            .map_err(|e| failed(e.to_string()))?;
        if let Some(auth) = self.authorization().map_err(failed)? {
            req.headers_mut().insert(http::header::AUTHORIZATION, auth);
        }
        let (status, mut body) = self
            .client
            .open(req, POLL_TIMEOUT)
            .await
            .map_err(|e| failed(e.to_string()))?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(Watch::NotServed),
            other => {
                // An error body is a few hundred bytes; read at most 64 KB of it.
                let said = tokio::time::timeout(
                    Duration::from_secs(5),
                    http_body_util::Limited::new(body, 64 << 10).collect(),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
                return Err(failed(refused(&uri, other, &said)));
            }
        }
        let failed = |error: String| Watch::Failed {
            error,
            established: true,
        };
        // Connected: say so at once, so a control plane that lost track of us counts us again.
        self.streaming
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.connected.send_modify(|n| *n += 1);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = match tokio::time::timeout(STREAM_IDLE, body.frame()).await {
                Err(_) => return Err(failed(format!("{uri}: silent for {STREAM_IDLE:?}"))),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(failed(format!("{uri}: {e}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            // Bounded: every pass consumes a line or stops.
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // keep-alive
                }
                let update: ConfigUpdate = serde_json::from_slice(&line)
                    .map_err(|e| failed(format!("unreadable table from {uri}: {e}")))?;
                *since = update.version;
                self.apply(update);
            }
            if buf.len() > MAX_TABLE {
                return Err(failed(format!(
                    "{uri}: a table line over {MAX_TABLE} bytes"
                )));
            }
        }
    }

    /// One long poll: `Some` with a newer table, `None` when nothing changed.
    async fn poll(&self, since: u64) -> Result<Option<ConfigUpdate>, String> {
        let uri = format!(
            "{}/api/v1/proxy/config?proxy={}&since={since}",
            self.base,
            encode_query(&self.proxy_id)
        );
        let (status, body) = self
            .send(Method::GET, &uri, Bytes::new(), POLL_TIMEOUT)
            .await?;
        match status {
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::OK => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("unreadable table from {uri}: {e}")),
            other => Err(refused(&uri, other, &body)),
        }
    }

    async fn heartbeats(self: Arc<Self>) {
        let mut applied = self.applied.subscribe();
        let mut connected = self.connected.subscribe();
        let mut every = HEARTBEAT_EVERY;
        let mut retry = RETRY_MIN;
        loop {
            let (sent, draining) = self.report().await;
            let wait = match sent {
                Ok(asked) => {
                    retry = RETRY_MIN;
                    // A long-polling proxy keeps the old protocol's second: the control plane
                    // has no stream to tell it is gone, only the reports' silence.
                    every = if self.streaming.load(std::sync::atomic::Ordering::Relaxed) {
                        asked.unwrap_or(HEARTBEAT_EVERY)
                    } else {
                        HEARTBEAT_EVERY
                    };
                    // Jitter (up to a tenth) keeps a fleet that started together from
                    // reporting in lockstep.
                    every + Duration::from_millis(fastrand::u64(..=every.as_millis() as u64 / 10))
                }
                Err(e) => {
                    // What failed may be the news the control plane waits for (a table
                    // applied, a drain ended): try again soon, not a keep-alive later.
                    tracing::debug!(error = %e, "status report failed");
                    let wait = retry;
                    retry = (retry * 2).min(every);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = applied.changed() => {}
                _ = connected.changed() => {}
                () = self.drain_ends(&draining) => {}
            }
        }
    }

    /// Resolves as soon as any of `draining` (backends the last report showed with requests
    /// in flight and no weight) has none left: that is when the control plane may be waiting
    /// for a report. Pending when there are none (a table that starts a drain wakes the
    /// reporter anyway). Counting is local and cheap: the backends' atomics every
    /// [`DRAIN_CHECK`].
    async fn drain_ends(&self, draining: &[(String, String)]) {
        if draining.is_empty() {
            return std::future::pending().await;
        }
        // Bounded by the requests themselves: each has a deadline.
        loop {
            tokio::time::sleep(DRAIN_CHECK).await;
            let seen = self.table.metrics().backends_seen();
            let ended = draining.iter().any(|(route, backend)| {
                !seen
                    .iter()
                    .any(|(r, b, n, _)| r == route && b == backend && *n > 0)
            });
            if ended {
                return;
            }
        }
    }

    /// Sends one report: `Some` with the spacing the control plane asked for, and the backends
    /// it showed draining (no weight in the current table, requests in flight).
    async fn report(&self) -> (Result<Option<Duration>, String>, Vec<(String, String)>) {
        let rejected = self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let windows = self
            .slo_windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let report = status_report(&self.proxy_id, &self.table, rejected, &windows);
        // From the snapshot sent, so that a drain the report shows is one the reporter
        // watches (counted apart, a request ending in between would be missed).
        let table = self.table.load();
        let draining: Vec<(String, String)> = report
            .in_flight
            .iter()
            .flat_map(|(route, backends)| {
                backends
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(backend, _)| (route.clone(), backend.clone()))
            })
            .filter(|(route, backend)| {
                !table
                    .backends()
                    .any(|(r, b)| r == route && b.name() == backend && b.weight() > 0)
            })
            .collect();
        drop(table);
        (self.send_report(&report).await, draining)
    }

    async fn send_report(&self, report: &StatusReport) -> Result<Option<Duration>, String> {
        let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        let uri = format!("{}/api/v1/proxy/status", self.base);
        let (status, body) = self
            .send(Method::POST, &uri, body.into(), Duration::from_secs(5))
            .await?;
        if !status.is_success() {
            return Err(refused(&uri, status, &body));
        }
        // `{"report_every_ms": N}` from a control plane that spaces reports; older ones answer
        // 204 with nothing.
        Ok(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("report_every_ms")?.as_u64())
            .map(|ms| Duration::from_millis(ms).clamp(Duration::from_millis(100), HEARTBEAT_MAX)))
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut req = vireo_http::request(method, uri, Some("application/json"), body)
            .map_err(|e| e.to_string())?;
        if let Some(auth) = self.authorization()? {
            req.headers_mut().insert(http::header::AUTHORIZATION, auth);
        }
        let answer = self
            .client
            .send(req, Limits::new(timeout, MAX_TABLE))
            .await
            .map_err(|e| e.to_string())?;
        Ok((answer.status, answer.body))
    }
}

enum Watch {
    /// The control plane has no watch stream (404): long-poll it.
    NotServed,
    /// `established`: the stream had been answered 200 before it failed.
    Failed { error: String, established: bool },
}

/// An answer that is not what was asked for, with the control plane's own words when it
/// refused the credential.
fn refused(uri: &str, status: StatusCode, body: &[u8]) -> String {
    let said = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string));
    match (status, said) {
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(m)) => format!(
            "{uri}: HTTP {status}: {m} (give the proxy a token with the proxy role: --control-token-file)"
        ),
        (_, Some(m)) => format!("{uri}: HTTP {status}: {m}"),
        (_, None) => format!("{uri}: HTTP {status}"),
    }
}

/// What this proxy reports about itself.
pub fn status_report(
    proxy_id: &str,
    table: &TableHandle,
    rejected: Option<RejectedTable>,
    extra_windows: &[Duration],
) -> StatusReport {
    let mut in_flight: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (route, backend, n, _) in table.metrics().backends_seen() {
        in_flight.entry(route).or_default().insert(backend, n);
    }
    StatusReport {
        proxy: proxy_id.to_string(),
        applied_version: table.load().version(),
        in_flight,
        slo: slo_report(table, STATUS_WINDOW, false),
        slo_windows: extra_windows
            .iter()
            .map(|&w| (w.as_secs(), slo_report(table, w, true)))
            .collect(),
        rejected,
    }
}
