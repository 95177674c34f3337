//! What the auth layer adds to a request: the same trivial route served through axum with
//! and without `vireo_server::auth::authorize`, called in process (no sockets), with a valid
//! API token (hash, cache lookup, role check) and, for scale, with none (the 401 path).
//! Also the token hash alone. `cargo bench -p vireo-benches --bench auth`.

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;
use vireo_auth::Role;
use vireo_server::auth::{authorize, AuthConfig, AuthState};

fn routers() -> (Router, Router, String) {
    let dir = std::env::temp_dir().join(format!("vireo-auth-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = vireo_store::Store::open(&dir).unwrap();
    let auth = Arc::new(
        AuthState::new(
            &AuthConfig::default(),
            store.path(),
            vireo_http::HttpClient::default(),
            false,
            Arc::new(vireo_core::clock::SystemClock),
        )
        .unwrap(),
    );
    let (token, _) = auth.issue("bench", Role::Viewer, None, "bench").unwrap();
    let plain = Router::new().route("/api/v1/whoami", get(|| async { "ok" }));
    let guarded = plain
        .clone()
        .layer(axum::middleware::from_fn_with_state(auth, authorize));
    (plain, guarded, token)
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut b = Request::get("/api/v1/whoami").header("host", "127.0.0.1:8080");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

fn auth_layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (plain, guarded, token) = routers();
    let mut g = c.benchmark_group("auth_layer");
    g.bench_function("without_layer", |b| {
        b.iter(|| {
            rt.block_on(plain.clone().oneshot(request(Some(&token))))
                .unwrap()
        })
    });
    g.bench_function("token_accepted", |b| {
        b.iter(|| {
            rt.block_on(guarded.clone().oneshot(request(Some(&token))))
                .unwrap()
        })
    });
    g.bench_function("no_credential_401", |b| {
        b.iter(|| rt.block_on(guarded.clone().oneshot(request(None))).unwrap())
    });
    g.finish();
    c.bench_function("token_hash", |b| {
        b.iter(|| vireo_auth::token::hash(black_box(&token)))
    });
}

criterion_group!(benches, auth_layer);
criterion_main!(benches);
