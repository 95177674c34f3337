//! The web console and the health check.
//!
//! The console is static files (`crates/server/console/`, ES modules with no build step; see
//! ARCHITECTURE.md) compiled into the binary: it works offline and needs nothing beside
//! `vireo serve`. `/` is its page; everything else is under `/ui/`. Every URL the page uses is
//! relative (`ui/app.js`, `api/v1/…`) and its screens are `#/…` routes, so it works behind a
//! reverse proxy under any sub-path. The files hold no data: the page reads the API with the
//! token the user gives it, so they are public (`vireo_auth::policy`).
//!
//! Responses carry a strong ETag (so a reload revalidates in one round trip and an upgrade is
//! seen at once: `no-cache`, not a max-age) and a Content-Security-Policy that admits only this
//! origin's scripts and the page's one inline script, the import map, by its hash.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use vireo_engine::driver::Handle;

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../console/", $path)) as &[u8])),*]
    };
}

/// Every file the console serves, by its path under `console/` (a test checks that this is
/// every file there but the tests and the vendoring notes).
pub const ASSETS: &[(&str, &[u8])] = assets![
    "index.html",
    "app.js",
    "style.css",
    "lib/api.js",
    "lib/format.js",
    "lib/storyline.js",
    "lib/routes.js",
    "lib/verify.js",
    "lib/dora.js",
    "screens/releases.js",
    "screens/run.js",
    "screens/step.js",
    "screens/evidence.js",
    "screens/rollback.js",
    "screens/replay.js",
    "screens/schedule.js",
    "screens/dora.js",
    "screens/flags.js",
    "screens/widgets.js",
    "vendor/preact.mjs",
    "vendor/preact-hooks.mjs",
    "vendor/htm.mjs",
    "vendor/uPlot.iife.min.js",
    "vendor/uPlot.min.css",
    "vendor/licenses/preact.LICENSE",
    "vendor/licenses/htm.LICENSE",
    "vendor/licenses/uplot.LICENSE",
];

/// The total size of the console's files (what the closing note calls its bundle size).
pub fn bundle_bytes() -> usize {
    ASSETS.iter().map(|(_, b)| b.len()).sum()
}

struct Served {
    path: &'static str,
    bytes: &'static [u8],
    etag: HeaderValue,
}

fn served() -> &'static [Served] {
    static SERVED: OnceLock<Vec<Served>> = OnceLock::new();
    SERVED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, bytes)| {
                let digest = Sha256::digest(bytes);
                let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                Served {
                    path,
                    bytes,
                    etag: HeaderValue::from_str(&format!("\"{tag}\"")).expect("hex is a header"),
                }
            })
            .collect()
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

/// The page's policy: scripts from this origin and the import map (by hash); styles from this
/// origin (uPlot sets inline styles on its elements, which `style-src-attr` allows); data only
/// from this origin's API; no framing.
fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let page = std::str::from_utf8(ASSETS[0].1).expect("index.html is UTF-8");
        let open = r#"<script type="importmap">"#;
        let map = page
            .split_once(open)
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(map, _)| map)
            .expect("index.html has an import map");
        let hash = vireo_evidence::dsse::b64(&Sha256::digest(map.as_bytes()));
        HeaderValue::from_str(&format!(
            "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
             style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ))
        .expect("the policy is a header")
    })
}

fn respond(s: &Served, request: &HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, s.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if s.path == "index.html" {
        h.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == s.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(s.path)),
    );
    (h, s.bytes).into_response()
}

async fn index(request: HeaderMap) -> Response {
    respond(&served()[0], &request)
}

async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    match served()
        .iter()
        .find(|s| s.path == path && s.path != "index.html")
    {
        Some(s) => respond(s, &request),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no console file {path:?}\n"),
        )
            .into_response(),
    }
}
