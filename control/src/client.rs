//! The API client behind `vireo rollout …`: one request per command, answers rendered for
//! people (or as JSON with `-o json`), errors as one line.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use serde_json::Value;

/// How long one API call may take (the API answers at once; nothing here long-polls).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(server: &str) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Client {
            base: server.trim_end_matches('/').to_string(),
            http: HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
        }
    }

    /// Sends a request; a 2xx answer's JSON body, or the server's error as one line.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, String> {
        let body = self.call_raw(method, path, body).await?;
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// [`Client::call`] for answers that are not JSON (bundles, checkpoints).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Bytes, String> {
        let uri = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&uri);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/yaml");
        }
        req = req.header("x-vireo-actor", actor());
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{uri}: {e}"))?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                format!(
                    "cannot reach the control plane at {}: {} (is `vireo serve` running? set --server or $VIREO_SERVER)",
                    self.base,
                    source_chain(&e)
                )
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{uri}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{uri}: no answer within {CALL_TIMEOUT:?}"))??;
        if status.is_success() {
            return Ok(body);
        }
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(match status {
            StatusCode::CONFLICT => format!("refused: {message}"),
            StatusCode::NOT_FOUND => message,
            StatusCode::BAD_REQUEST => format!("invalid: {message}"),
            other => format!("{uri}: HTTP {other}: {message}"),
        })
    }
}

/// Who this CLI acts as: `$VIREO_ACTOR`, else `$USER@hostname`.
pub fn actor() -> String {
    if let Ok(a) = std::env::var("VIREO_ACTOR") {
        if !a.is_empty() {
            return a;
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    match host.trim() {
        "" => user,
        h => format!("{user}@{h}"),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Splits a file into its YAML documents (`---` lines), skipping empty ones.
pub fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().expect("never empty");
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// The `kind` of a document, if it has one.
pub fn kind(doc: &str) -> Option<String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).ok()?;
    v.get("kind")?.as_str().map(str::to_string)
}

/// A rollout's status for people.
pub fn render_status(v: &Value) -> String {
    let s = &v["status"];
    let name = v["metadata"]["name"].as_str().unwrap_or("?");
    let mut out = format!(
        "Name:      {name}\nPhase:     {}\nStep:      {}/{}\nCanary:    {} % ({} → {})\nMessage:   {}\n",
        s["phase"].as_str().unwrap_or("?"),
        s["currentStepIndex"],
        s["steps"],
        s["canaryWeight"],
        v["spec"]["stable"]["version"].as_str().unwrap_or("?"),
        v["spec"]["canary"]["version"].as_str().unwrap_or("?"),
        s["message"].as_str().unwrap_or(""),
    );
    if let Some(ws) = s["appliedWeights"].as_array().filter(|w| !w.is_empty()) {
        let ws: Vec<String> = ws.iter().map(|w| format!("{} %", w["weight"])).collect();
        out.push_str(&format!("Applied:   {}\n", ws.join(" → ")));
    }
    if let Some(ms) = s["abortToZeroMs"].as_u64() {
        out.push_str(&format!("Abort:     weight 0 everywhere after {ms} ms"));
        if let Some(d) = s["drainMs"].as_u64() {
            out.push_str(&format!(", canary drained after {d} ms"));
            if s["drainForced"].as_bool() == Some(true) {
                out.push_str(" (forced at the deadline)");
            }
        }
        out.push('\n');
    }
    if let Some(sch) = s.get("schedule").filter(|v| !v.is_null()) {
        out.push_str(&format!(
            "Schedule:  at {} within {}{}\n",
            sch["at"].as_str().unwrap_or("?"),
            sch["window"].as_str().unwrap_or("?"),
            sch["state"]
                .as_str()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        ));
    }
    for e in s["proxyErrors"].as_array().into_iter().flatten() {
        out.push_str(&format!("Blocked:   {}\n", e.as_str().unwrap_or("?")));
    }
    for run in s["analysisRuns"].as_array().into_iter().flatten() {
        let step = match run["step"].as_u64() {
            Some(s) if s == vireo_core::rollout::BACKGROUND_STEP as u64 => "background".to_string(),
            Some(s) => format!("step {s}"),
            None => "?".into(),
        };
        out.push_str(&format!(
            "Analysis:  run {} ({step}): {}{}\n",
            run["run"],
            run["phase"].as_str().unwrap_or("?"),
            run["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// `vireo rollout list`.
pub fn render_list(v: &Value) -> String {
    let mut out = format!(
        "{:<20} {:<18} {:>6} {:>7}  {}\n",
        "NAME", "PHASE", "STEP", "CANARY", "MESSAGE"
    );
    for r in v["items"].as_array().into_iter().flatten() {
        let s = &r["status"];
        out.push_str(&format!(
            "{:<20} {:<18} {:>6} {:>6}%  {}\n",
            r["metadata"]["name"].as_str().unwrap_or("?"),
            s["phase"].as_str().unwrap_or("?"),
            format!("{}/{}", s["currentStepIndex"], s["steps"]),
            s["canaryWeight"],
            s["message"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_documents_and_kinds() {
        let text = "# templates first\n---\nkind: AnalysisTemplate\nmetadata: {name: a}\n---\n\nkind: Rollout\n---\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(kind(&docs[0]).as_deref(), Some("AnalysisTemplate"));
        assert_eq!(kind(&docs[1]).as_deref(), Some("Rollout"));
        assert_eq!(kind("[1, 2"), None);
    }
}
