//! The Prometheus analysis provider: PromQL over Prometheus's HTTP API (`/api/v1/query`,
//! `/api/v1/query_range`), on hyper.
//!
//! Results follow Argo: a scalar is a number, an instant vector is the list of its samples'
//! values, a range query's matrix is every point of every series. Everything that can go wrong
//! — Prometheus down or slow (the provider's `timeout`, default 30 s), an HTTP or PromQL error,
//! an unparseable answer — is an `Err` (an Error measurement), never a value. What the numbers
//! mean (an empty vector, NaN) is the conditions' business; see `Metric::assess`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

use vireo_core::analysis::{PrometheusProvider, RangeQuery, Value};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a query gave no value: the runner records it as an Error measurement's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrometheusError {
    /// The provider's `rangeQuery` is not Argo's shape.
    #[error("{0}")]
    Range(String),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("Prometheus at {base}: {source}")]
    Http {
        base: String,
        #[source]
        source: vireo_http::HttpError,
    },
    #[error("Prometheus at {base} (HTTP {status}): {source}")]
    Answer {
        base: String,
        status: u16,
        #[source]
        source: AnswerError,
    },
}

/// What is wrong with an answer that arrived.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("not a Prometheus API answer ({reason}): {start}")]
    NotPrometheus { reason: String, start: String },
    #[error("query failed: {kind} {message}")]
    Failed { kind: String, message: String },
    #[error("answer without data")]
    NoData,
    #[error("sample value {value:?}: {reason}")]
    Sample { value: String, reason: String },
    #[error("the query returned a string, not a number")]
    StringResult,
}

pub use vireo_http::HttpClient;

/// Prometheus answers are bounded (a range query over many series can be large, not endless).
const MAX_ANSWER: usize = 32 << 20;

/// The client the control plane's outbound calls share (Prometheus, schedule checks, the event
/// sink), once [`set_outbound_client`] configured it (`caFile` in control.yaml); else one that
/// trusts the system's roots.
static OUTBOUND: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();

/// Sets the outbound client (first call wins: one control plane per process).
pub fn set_outbound_client(client: HttpClient) {
    let _ = OUTBOUND.set(client);
}

pub fn client() -> HttpClient {
    OUTBOUND
        .get_or_init(|| HttpClient::new(Duration::from_secs(5)))
        .clone()
}

/// Runs the provider's query (args already substituted) at `now_s` (Unix seconds).
pub async fn query(
    http: &HttpClient,
    p: &PrometheusProvider,
    now_s: f64,
) -> Result<Value, PrometheusError> {
    let base = p.address.trim_end_matches('/');
    let url = match &p.range_query {
        None => format!(
            "{base}/api/v1/query?query={}&time={now_s:.3}",
            vireo_types::wire::encode_query(&p.query)
        ),
        Some(r) => {
            let (start, end, step) = range(r, now_s).map_err(PrometheusError::Range)?;
            format!(
                "{base}/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
                vireo_types::wire::encode_query(&p.query)
            )
        }
    };
    let mut req = http::Request::get(&url);
    for h in &p.headers {
        req = req.header(&h.key, &h.value);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| PrometheusError::Request {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let timeout = p
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let answer = http
        .send(req, vireo_http::Limits::new(timeout, MAX_ANSWER))
        .await
        .map_err(|source| PrometheusError::Http {
            base: base.to_string(),
            source,
        })?;
    parse(&answer.body).map_err(|source| PrometheusError::Answer {
        base: base.to_string(),
        status: answer.status.as_u16(),
        source,
    })
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Scalar((f64, String)),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

#[derive(Deserialize)]
struct Series {
    values: Vec<(f64, String)>,
}

/// Prometheus's JSON answer → a value (pure; the fixtures in the tests are real answers).
pub fn parse(body: &[u8]) -> Result<Value, AnswerError> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| AnswerError::NotPrometheus {
        reason: e.to_string(),
        start: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    })?;
    if a.status != "success" {
        return Err(AnswerError::Failed {
            kind: a.error_type.unwrap_or_default(),
            message: a.error.unwrap_or_default(),
        });
    }
    let number = |s: &str| -> Result<f64, AnswerError> {
        // Prometheus writes NaN, +Inf and -Inf as such; Rust's parser reads them too.
        s.parse::<f64>().map_err(|e| AnswerError::Sample {
            value: s.to_string(),
            reason: e.to_string(),
        })
    };
    match a.data.ok_or(AnswerError::NoData)? {
        Data::Scalar((_, v)) => Ok(Value::Scalar(number(&v)?)),
        Data::Vector(samples) => samples
            .iter()
            .map(|s| number(&s.value.1))
            .collect::<Result<_, _>>()
            .map(Value::Vector),
        Data::Matrix(series) => series
            .iter()
            .flat_map(|s| s.values.iter())
            .map(|(_, v)| number(v))
            .collect::<Result<_, _>>()
            .map(Value::Vector),
        Data::String(_) => Err(AnswerError::StringResult),
    }
}

/// Argo's range: `start`/`end` as `now()` or `now() - DURATION`, `step` a duration.
fn range(r: &RangeQuery, now_s: f64) -> Result<(f64, f64, String), String> {
    let at = |text: &str| -> Result<f64, String> {
        let t = text.replace(' ', "");
        let rest = t
            .strip_prefix("now()")
            .ok_or_else(|| format!("rangeQuery time {text:?}: use now() or now() - DURATION"))?;
        if rest.is_empty() {
            return Ok(now_s);
        }
        let d = rest
            .strip_prefix('-')
            .ok_or_else(|| format!("rangeQuery time {text:?}: use now() or now() - DURATION"))?;
        let d =
            humantime::parse_duration(d).map_err(|e| format!("rangeQuery time {text:?}: {e}"))?;
        Ok(now_s - d.as_secs_f64())
    };
    let step = humantime::parse_duration(&r.step)
        .map_err(|e| format!("rangeQuery step {:?}: {e}", r.step))?;
    if step.is_zero() {
        return Err("rangeQuery step must be above 0".into());
    }
    Ok((
        at(&r.start)?,
        at(&r.end)?,
        format!("{}", step.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_values() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"0.1"},"value":[1700000000.1,"0.25"]},{"metric":{},"value":[1700000000.1,"NaN"]}]}}"#;
        match parse(vector).unwrap() {
            Value::Vector(v) => {
                assert_eq!(v[0], 0.25);
                assert!(v[1].is_nan());
            }
            other => panic!("{other:?}"),
        }
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(empty).unwrap(), Value::Vector(vec![]));
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}"#;
        assert_eq!(parse(scalar).unwrap(), Value::Scalar(f64::INFINITY));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"2"]]}]}}"#;
        assert_eq!(parse(matrix).unwrap(), Value::Vector(vec![1.0, 2.0]));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert!(parse(error)
            .unwrap_err()
            .to_string()
            .contains("bad_data parse error"));
        assert!(matches!(
            parse(b"<html>502</html>"),
            Err(AnswerError::NotPrometheus { .. })
        ));
    }

    #[test]
    fn range_times_follow_argo() {
        let r = RangeQuery {
            start: "now() - 5m".into(),
            end: "now()".into(),
            step: "30s".into(),
        };
        assert_eq!(range(&r, 1000.0).unwrap(), (700.0, 1000.0, "30".into()));
        let bad = RangeQuery {
            start: "yesterday".into(),
            ..r
        };
        assert!(range(&bad, 1000.0).unwrap_err().contains("now()"));
    }
}
