//! The example and load-benchmark backend: `vireo-testkit`'s service on its own runtime.
//!
//! Answers every request with its `--name` (body `hello from NAME`, headers `x-version` and
//! `x-backend`), so a client can see which version served it. `/status/NNN` answers with that
//! status, `/slow?ms=N` after N ms.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Example backend: answers with its name; /status/NNN and /slow?ms=N for testing")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Name to answer with, e.g. stable-v1.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind(&args.listen)?;
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    rt.block_on(async move {
        let _backend = vireo_testkit::spawn_backend(listener, name, false)?;
        // Serves until the process is stopped.
        std::future::pending::<std::io::Result<()>>().await
    })
}
