//! A small, fast HTTP/1.1 backend for the example and the load benchmarks.
//!
//! Answers every request with its `--name` (body and `x-backend` header), so a client can see
//! which version served it. `/status/NNN` answers with that status, `/slow?ms=N` after N ms.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

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
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    let body = Bytes::from(format!("{name}\n"));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(answer(name, body, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer<B>(name: &'static str, body: Bytes, req: Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if path == "/slow" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100u64);
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-backend", hyper::header::HeaderValue::from_static(name));
    resp
}
