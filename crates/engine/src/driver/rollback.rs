//! The rollback envelope on the driver: opening the logged envelope and running its
//! down-migration as a child process (at most once: its start is committed first).

use super::*;

impl Driver {
    /// The rollout generation's logged rollback envelope, verified with our signing key.
    pub(super) fn rollback_plan(
        &self,
        name: &str,
    ) -> Result<vireo_evidence::rollback::Plan, String> {
        let live = self.live.get(name).ok_or("no such rollout")?;
        let generation = live.stored.generation;
        let signer = self
            .store
            .signer()
            .ok_or("evidence is disabled on this store (no signing key)")?;
        let entry = self
            .store
            .rollback_envelope(name, generation)
            .map_err(|e| e.to_string())?
            .ok_or("no rollback envelope was logged for this generation")?;
        vireo_evidence::rollback::open(&entry, signer.signing.public(), name, generation)
    }

    /// Runs the envelope's down-migration as `sh -c COMMAND` (embedded mode); the result comes
    /// back as [`Command::Migration`]. Its start is already committed (at most once).
    pub(super) fn run_down_migration(&mut self, name: &str) {
        use vireo_core::spec::DownMigration;
        let plan = self.rollback_plan(name);
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        let command = match plan {
            Ok(p) => match p.migration {
                DownMigration::Command { command, .. } => command,
                DownMigration::None => {
                    self.queue.push_back((
                        name.to_string(),
                        Input::MigrationFinished {
                            ok: true,
                            detail: "no down-migration in the envelope".into(),
                        },
                    ));
                    return;
                }
            },
            Err(e) => {
                self.queue.push_back((
                    name.to_string(),
                    Input::MigrationFinished {
                        ok: false,
                        detail: format!("not run: {e}"),
                    },
                ));
                return;
            }
        };
        let generation = live.stored.generation;
        let tx = self.tx.clone();
        let rollout = name.to_string();
        tracing::info!(rollout = %name, "running the down-migration: {command}");
        let task = tokio::spawn(async move {
            let (ok, detail) = run_command(&command, &rollout, generation).await;
            let _ = tx
                .send(Command::Migration {
                    rollout,
                    generation,
                    ok,
                    detail,
                })
                .await;
        });
        live.migration = Some(AbortOnDrop(task));
    }
}

/// Runs a down-migration command, bounded by [`MIGRATION_TIMEOUT`]: (succeeded, what happened).
pub(super) async fn run_command(command: &str, rollout: &str, generation: u64) -> (bool, String) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("VIREO_ROLLOUT", rollout)
        .env("VIREO_GENERATION", generation.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills what the command started too.
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot start sh: {e}")),
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let Ok(waited) = tokio::time::timeout(MIGRATION_TIMEOUT, child.wait_with_output()).await else {
        if let Some(pid) = group {
            // SAFETY: kill(2) on the process group we created; no memory is touched.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let limit = humantime::format_duration(MIGRATION_TIMEOUT);
        return (false, format!("killed after {limit}"));
    };
    match waited {
        Err(e) => (false, format!("cannot wait for the command: {e}")),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let status = out.status;
            let mut detail = format!("exited with {status}");
            if !tail.is_empty() {
                detail.push_str(&format!("; stderr: {tail}"));
            }
            (status.success(), detail)
        }
    }
}
