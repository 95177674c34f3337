//! `vireo-kubesim`: the Kubernetes API simulator, standalone.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Serves a simulated Kubernetes API on loopback and writes a kubeconfig for it, so that
/// kubectl and Vireo's controller can be tried without a cluster.
///
/// Example:
///   vireo-kubesim --kubeconfig /tmp/kubesim.yaml &
///   kubectl --kubeconfig /tmp/kubesim.yaml apply -f crds/
///   kubectl --kubeconfig /tmp/kubesim.yaml get rollouts
///
/// What it does and does not emulate is listed in crates/kubesim/src/lib.rs.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write the kubeconfig (server address and token).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The bearer token clients must send.
    #[arg(long, default_value = "kubesim-admin")]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sim = vireo_kubesim::start(vireo_kubesim::Options {
        listen: args.listen,
        token: args.token,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    sim.write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("cannot write {}", args.kubeconfig.display()))?;
    eprintln!(
        "kubesim: serving {} ; kubeconfig written to {}\n  try: kubectl --kubeconfig {} get namespaces",
        sim.url(),
        args.kubeconfig.display(),
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
