//! The real kubectl against a simulator, for tests: the binary `scripts/ensure-deps.sh test`
//! unpacks into `target/tools/bin` (or `$KUBECTL`), a kubeconfig and a cache directory of the
//! test's own, and the repository as the working directory so paths like `crds/` resolve.
//!
//! With `VIREO_KUBECTL_TRANSCRIPT=FILE` every call but the `-o json` ones (the tests' polling)
//! is appended to FILE as a shell session, command and output: the kubectl session a closing
//! note or a bug report shows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// `$KUBECTL`, or `target/tools/bin/kubectl` in the repository.
pub fn binary() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tools/bin/kubectl"))
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
}

impl Kubectl {
    /// kubectl for `sim`, with its kubeconfig and cache under `dir`.
    pub fn for_sim(sim: &crate::Running, dir: &Path) -> std::io::Result<Kubectl> {
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig)?;
        Ok(Kubectl {
            kubeconfig,
            cache: dir.join("kcache"),
        })
    }

    /// Runs kubectl with `stdin`; (success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(binary())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/ensure-deps.sh test (or set KUBECTL)",
                    binary().display()
                )
            });
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        if let Some(path) = std::env::var_os("VIREO_KUBECTL_TRANSCRIPT") {
            if !args.windows(2).any(|w| w == ["-o", "json"]) {
                let entry = format!("$ kubectl {}\n{stdout}{stderr}\n", args.join(" "));
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(entry.as_bytes()));
            }
        }
        (out.status.success(), stdout, stderr)
    }

    /// Runs kubectl and panics with its output unless it succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    pub fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `kubectl ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}
