//! The config file source: hot reload on file change and on SIGHUP.
//!
//! Change detection polls the file's bytes once a second rather than using inotify: Kubernetes
//! ConfigMap volumes update through a symlink swap that inotify watchers on the file miss, and
//! editors replace files by rename. Reading a small file once a second costs nothing.
//!
//! A new file is parsed, validated and compiled before anything changes; if any step fails, the
//! old table keeps serving, the error is logged with its field path and
//! `vireo_config_reloads_total{result="error"}` goes up. Settings that belong to the process
//! rather than the table (`listen`, `admin`, `threads`, `shutdown_grace`, metric buckets,
//! `upstream_max_connections`, `header_read_timeout`, `transparent`) need a restart; a reload that changes them
//! applies the routes and says so in the log, and the running table keeps the values the
//! process runs with (so `/config` shows what is true, including the command line's
//! `--listen`, `--admin` and `--transparent`, which a reload must not undo).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::TableHandle;

pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads one config file into a [`TableHandle`].
pub struct FileSource {
    path: PathBuf,
    table: Arc<TableHandle>,
    /// The bytes last looked at (applied or rejected), so one bad file is reported once.
    last_seen: Vec<u8>,
    /// The file's own settings last applied (before the command line's), for telling which
    /// restart-only settings the file changed.
    file: Option<Config>,
    version: u64,
}

/// What a reload attempt did.
#[derive(Debug, PartialEq)]
pub enum ReloadOutcome {
    Unchanged,
    Applied { version: u64 },
    Rejected(ConfigError),
}

impl FileSource {
    /// `initial` is the text the running table was built from (version 1).
    pub fn new(path: PathBuf, initial: Vec<u8>, table: Arc<TableHandle>) -> Self {
        let file = std::str::from_utf8(&initial)
            .ok()
            .and_then(|t| Config::parse(t).ok());
        FileSource {
            path,
            table,
            last_seen: initial,
            file,
            version: 1,
        }
    }

    /// Re-reads the file. With `force` (SIGHUP) an unchanged file is applied again, which
    /// re-resolves backend host names.
    pub fn reload(&mut self, force: bool) -> ReloadOutcome {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                // A file caught mid-replace reads as missing; report it once per distinct state.
                let marker = format!("\0unreadable: {e}").into_bytes();
                if marker == self.last_seen && !force {
                    return ReloadOutcome::Unchanged;
                }
                self.last_seen = marker;
                return self.reject(ConfigError {
                    errors: vec![crate::config::FieldError {
                        path: String::new(),
                        reason: format!("cannot read {}: {e}", self.path.display()),
                    }],
                });
            }
        };
        if bytes == self.last_seen && !force {
            return ReloadOutcome::Unchanged;
        }
        self.last_seen = bytes.clone();
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return self.reject(ConfigError {
                    errors: vec![crate::config::FieldError {
                        path: String::new(),
                        reason: format!("not UTF-8: {e}"),
                    }],
                })
            }
        };
        let config = match Config::parse(&text) {
            Ok(c) => c,
            Err(e) => return self.reject(e),
        };
        let running = keep_restart_only(self.table.load().config(), config.clone());
        let version = self.version + 1;
        if let Err(e) = self.table.apply(running, version) {
            return self.reject(e);
        }
        self.version = version;
        self.table.metrics().reload(true);
        if let Some(old) = self.file.replace(config.clone()) {
            warn_restart_only(&old, &config);
        }
        tracing::info!(version, path = %self.path.display(), "config reloaded");
        ReloadOutcome::Applied { version }
    }

    fn reject(&self, e: ConfigError) -> ReloadOutcome {
        self.table.metrics().reload(false);
        tracing::error!(path = %self.path.display(), "config rejected, keeping version {}:\n{e}", self.version);
        ReloadOutcome::Rejected(e)
    }

    /// Polls the file and listens for SIGHUP until the task is dropped.
    pub async fn run(mut self) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; file polling only");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            self.reload(force);
        }
    }
}

/// `new` with the settings only a restart changes taken from the running config.
fn keep_restart_only(running: &Config, new: Config) -> Config {
    Config {
        listen: running.listen.clone(),
        admin: running.admin.clone(),
        threads: running.threads,
        shutdown_grace: running.shutdown_grace,
        metrics: running.metrics.clone(),
        upstream_max_connections: running.upstream_max_connections,
        transparent: running.transparent,
        header_read_timeout: running.header_read_timeout,
        ..new
    }
}

fn warn_restart_only(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    if old.threads != new.threads {
        changed.push("threads");
    }
    if old.shutdown_grace != new.shutdown_grace {
        changed.push("shutdown_grace");
    }
    if old.metrics != new.metrics {
        changed.push("metrics");
    }
    if old.upstream_max_connections != new.upstream_max_connections {
        changed.push("upstream_max_connections");
    }
    if old.transparent != new.transparent {
        changed.push("transparent");
    }
    if old.header_read_timeout != new.header_read_timeout {
        changed.push("header_read_timeout");
    }
    if !changed.is_empty() {
        tracing::warn!(
            fields = ?changed,
            "these settings take effect at the next restart; routes were applied now"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    const BASE: &str = "listen: 127.0.0.1:4140\nadmin: 127.0.0.1:4191\nroutes:\n  - name: r\n    split:\n      backends: [ { name: b, addrs: [127.0.0.1:1], weight: WEIGHT } ]\n";

    #[test]
    fn applies_changes_rejects_bad_files_and_counts_both() {
        let dir = std::env::temp_dir().join(format!("vireo-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.yaml");
        let first = BASE.replace("WEIGHT", "1");
        std::fs::write(&path, &first).unwrap();
        let metrics = Metrics::new(&[1.0]);
        let table =
            Arc::new(TableHandle::new(Config::parse(&first).unwrap(), 1, metrics.clone()).unwrap());
        let mut src = FileSource::new(path.clone(), first.into_bytes(), table.clone());

        assert_eq!(src.reload(false), ReloadOutcome::Unchanged);
        std::fs::write(&path, BASE.replace("WEIGHT", "2")).unwrap();
        assert_eq!(src.reload(false), ReloadOutcome::Applied { version: 2 });
        assert_eq!(table.load().version(), 2);

        std::fs::write(&path, BASE.replace("WEIGHT", "-2")).unwrap();
        match src.reload(false) {
            ReloadOutcome::Rejected(e) => assert_eq!(
                e.errors[0].to_string(),
                "routes[0].split.backends[0].weight: must be >= 0"
            ),
            other => panic!("{other:?}"),
        }
        // the bad file is reported once, and version 2 keeps serving
        assert_eq!(src.reload(false), ReloadOutcome::Unchanged);
        assert_eq!(table.load().version(), 2);
        assert_eq!(
            (metrics.reload_count(true), metrics.reload_count(false)),
            (1, 1)
        );

        // SIGHUP re-applies even an unchanged good file
        std::fs::write(&path, BASE.replace("WEIGHT", "3")).unwrap();
        assert_eq!(src.reload(false), ReloadOutcome::Applied { version: 3 });
        assert_eq!(src.reload(true), ReloadOutcome::Applied { version: 4 });

        // Restart-only settings stay as the process runs them: a new listen address in the
        // file is not where the proxy listens until it restarts.
        std::fs::write(&path, BASE.replace("WEIGHT", "5").replace("4140", "4999")).unwrap();
        assert_eq!(src.reload(false), ReloadOutcome::Applied { version: 5 });
        assert_eq!(table.load().config().listen, "127.0.0.1:4140");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
