//! The API client behind `vireo rollout …`: one request per command, answers rendered for
//! people (or as JSON with `-o json`), errors as one line.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use vireo_api::{RolloutList, RolloutView, TemplateApplied};
use vireo_core::spec::BACKGROUND_STEP;
use vireo_http::{HttpClient, HttpError, Limits};

/// How long one API call may take (the API answers at once; nothing here long-polls).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    base: String,
    http: HttpClient,
    /// `Authorization: Bearer …`, when the CLI has a token.
    token: Option<http::HeaderValue>,
}

/// Where the CLI's credential comes from, in order: `--token`, `$VIREO_TOKEN`,
/// `--token-file`/`$VIREO_TOKEN_FILE`, then `./vireo-data/admin.token` when it exists (the
/// token the first `vireo serve` in this directory wrote, so local use needs no set-up).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub token_file: Option<std::path::PathBuf>,
    /// Trust only this CA for an https server.
    pub ca: Option<std::path::PathBuf>,
}

/// The default data dir's admin token, the last place [`Credentials`] looks.
pub const LOCAL_ADMIN_TOKEN: &str = "./vireo-data/admin.token";

impl Credentials {
    /// The token to send, if any. A named file that cannot be read is an error.
    pub fn resolve(&self) -> Result<Option<String>, String> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(t.to_string()));
        }
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            return Ok(Some(t.trim().to_string()));
        }
        Ok(std::fs::read_to_string(LOCAL_ADMIN_TOKEN)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }
}

/// Bundles are the largest answers (every envelope of a rollout); 256 MiB bounds them.
const MAX_ANSWER: usize = 256 << 20;

impl Client {
    pub fn new(server: &str, credentials: &Credentials) -> Result<Client, String> {
        let token = credentials
            .resolve()?
            .map(|t| {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| "the token has characters a header cannot carry".to_string())?;
                v.set_sensitive(true);
                Ok::<_, String>(v)
            })
            .transpose()?;
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            http: HttpClient::with_ca(Duration::from_secs(3), credentials.ca.as_deref())
                .map_err(|e| format!("--ca: {e}"))?,
            token,
        })
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
        let content_type = body.is_some().then_some("application/yaml");
        let mut req = vireo_http::request(
            method,
            &uri,
            content_type,
            Bytes::from(body.unwrap_or_default()),
        )
        .map_err(|e| e.to_string())?;
        if let Some(t) = &self.token {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, t.clone());
        }
        let answer = self
            .http
            .send(req, Limits::new(CALL_TIMEOUT, MAX_ANSWER))
            .await
            .map_err(|e| match e {
                HttpError::Unreachable { cause, .. } => format!(
                    "cannot reach the control plane at {}: {cause} (is `vireo serve` running? set --server or $VIREO_SERVER)",
                    self.base
                ),
                other => other.to_string(),
            })?;
        let (status, body) = (answer.status, answer.body);
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
            StatusCode::UNAUTHORIZED => format!("not authenticated: {message}"),
            StatusCode::FORBIDDEN => format!("forbidden: {message}"),
            StatusCode::CONFLICT => format!("refused: {message}"),
            StatusCode::NOT_FOUND => message,
            StatusCode::BAD_REQUEST => format!("invalid: {message}"),
            other => format!("{uri}: HTTP {other}: {message}"),
        })
    }
}

/// Typed calls: the answers as `vireo-api` defines them.
impl Client {
    /// A GET whose answer is `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let body = self.call_raw(Method::GET, path, None).await?;
        typed(path, &body)
    }

    pub async fn rollout(&self, name: &str) -> Result<RolloutView, String> {
        self.get(&format!("/api/v1/rollouts/{name}")).await
    }

    /// The rollout as this CLI reads it, and the answer exactly as the server sent it (what
    /// `-o json` prints: no field this build does not know is lost).
    pub async fn rollout_and_json(&self, name: &str) -> Result<(RolloutView, Value), String> {
        let path = format!("/api/v1/rollouts/{name}");
        let body = self.call_raw(Method::GET, &path, None).await?;
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((typed(&path, &body)?, json))
    }

    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, String> {
        Ok(self.get::<RolloutList>("/api/v1/rollouts").await?.items)
    }

    /// Applies one document (a Rollout or an AnalysisTemplate, by its `kind`).
    pub async fn apply(&self, doc: String) -> Result<Applied, String> {
        match kind(&doc).as_deref() {
            Some("AnalysisTemplate" | "ClusterAnalysisTemplate") => {
                let path = "/api/v1/analysistemplates";
                let body = self.call_raw(Method::POST, path, Some(doc)).await?;
                Ok(Applied::Template(typed::<TemplateApplied>(path, &body)?))
            }
            _ => {
                let path = "/api/v1/rollouts";
                let body = self.call_raw(Method::POST, path, Some(doc)).await?;
                Ok(Applied::Rollout(Box::new(typed(path, &body)?)))
            }
        }
    }

    /// `POST /api/v1/rollouts/{name}/{action}` (`action` may carry a query: `promote?full=true`),
    /// with the reason the user gave.
    pub async fn act(
        &self,
        name: &str,
        action: &str,
        reason: Option<&str>,
    ) -> Result<RolloutView, String> {
        let path = format!("/api/v1/rollouts/{name}/{action}");
        let body = reason.map(|r| serde_json::json!({ "reason": r }).to_string());
        let body = self.call_raw(Method::POST, &path, body).await?;
        typed(&path, &body)
    }
}

/// What applying a document made.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Rollout(Box<RolloutView>),
    Template(TemplateApplied),
}

fn typed<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!("{path}: the answer is not what this vireo expects ({e}); is the server another version?")
    })
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
pub fn render_status(v: &RolloutView) -> String {
    let s = &v.status;
    let spec = &v.rollout.spec;
    let mut out = format!(
        "Name:      {}\nPhase:     {:?}\nStep:      {}/{}\nCanary:    {} % ({} → {})\nMessage:   {}\n",
        v.rollout.name(),
        s.phase,
        s.current_step_index,
        s.steps,
        s.canary_weight,
        spec.stable.version,
        spec.canary.version,
        s.message,
    );
    if !s.applied_weights.is_empty() {
        let ws: Vec<String> = s
            .applied_weights
            .iter()
            .map(|w| format!("{} %", w.weight))
            .collect();
        out.push_str(&format!("Applied:   {}\n", ws.join(" → ")));
    }
    if let Some(ms) = s.abort_to_zero_ms {
        out.push_str(&format!("Abort:     weight 0 everywhere after {ms} ms"));
        if let Some(d) = s.drain_ms {
            out.push_str(&format!(", canary drained after {d} ms"));
            if s.drain_forced {
                out.push_str(" (forced at the deadline)");
            }
        }
        out.push('\n');
    }
    if let Some(sch) = s.schedule.as_ref().filter(|v| !v.is_null()) {
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
    for e in &s.proxy_errors {
        out.push_str(&format!("Blocked:   {e}\n"));
    }
    for run in &s.analysis_runs {
        let step = match run.step {
            BACKGROUND_STEP => "background".to_string(),
            s => format!("step {s}"),
        };
        let message = match run.message.as_str() {
            "" => String::new(),
            m => format!(" — {m}"),
        };
        out.push_str(&format!(
            "Analysis:  run {} ({step}): {:?}{message}\n",
            run.run, run.phase
        ));
    }
    out
}

/// `vireo rollout list`.
pub fn render_list(items: &[RolloutView]) -> String {
    let mut out = format!(
        "{:<20} {:<18} {:>6} {:>7}  {}\n",
        "NAME", "PHASE", "STEP", "CANARY", "MESSAGE"
    );
    for r in items {
        let s = &r.status;
        out.push_str(&format!(
            "{:<20} {:<18} {:>6} {:>6}%  {}\n",
            r.rollout.name(),
            format!("{:?}", s.phase),
            format!("{}/{}", s.current_step_index, s.steps),
            s.canary_weight,
            s.message
        ));
    }
    out
}

/// One line after an action: where the rollout stands.
pub fn render_acted(name: &str, v: &RolloutView) -> String {
    let s = &v.status;
    format!(
        "rollout/{name}: {:?} (step {}/{}, canary {} %): {}",
        s.phase, s.current_step_index, s.steps, s.canary_weight, s.message
    )
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
