//! The HTTP preconditions of a schedule (`prometheusReachable`, `noOpenIncident`), checked at
//! the gate. The rules (windows, what a precondition is) are `vireo_core::schedule`; this is
//! the I/O.

use std::time::Duration;

use vireo_core::schedule::Precondition;

/// Checks the HTTP preconditions (the driver runs `analysis` ones through the runner).
pub async fn check_http(
    http: &crate::prometheus::HttpClient,
    p: &Precondition,
) -> Result<(), String> {
    if let Some(url) = &p.prometheus_reachable {
        return prometheus_ready(http, url, Duration::from_secs(10)).await;
    }
    if let Some(url) = &p.no_open_incident {
        let uri = format!(
            "{}/api/v2/alerts?active=true&silenced=false&inhibited=false",
            url.trim_end_matches('/')
        );
        let (status, body) = get(http, &uri)
            .await
            .map_err(|e| format!("Alertmanager at {url} is not reachable: {e}"))?;
        if status != 200 {
            return Err(format!("{uri}: HTTP {status}"));
        }
        let alerts: Vec<serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| format!("{uri}: not an Alertmanager alert list: {e}"))?;
        return match alerts.len() {
            0 => Ok(()),
            n => Err(format!("{n} open alerts at {url}")),
        };
    }
    Ok(())
}

/// Prometheus at `url` answers `GET /-/ready` with 200 within `timeout` (the gate's
/// `prometheusReachable`, and the health banner's probe).
pub async fn prometheus_ready(
    http: &crate::prometheus::HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<(), String> {
    let (status, _) = get_within(
        http,
        &format!("{}/-/ready", url.trim_end_matches('/')),
        timeout,
    )
    .await
    .map_err(|e| format!("Prometheus at {url} is not reachable: {e}"))?;
    match status {
        200 => Ok(()),
        s => Err(format!("Prometheus at {url} is not ready (HTTP {s})")),
    }
}

async fn get(
    http: &crate::prometheus::HttpClient,
    uri: &str,
) -> Result<(u16, bytes::Bytes), String> {
    get_within(http, uri, Duration::from_secs(10)).await
}

async fn get_within(
    http: &crate::prometheus::HttpClient,
    uri: &str,
    timeout: Duration,
) -> Result<(u16, bytes::Bytes), String> {
    let answer = http
        .get(uri, vireo_http::Limits::new(timeout, 1 << 20))
        .await
        .map_err(|e| e.to_string())?;
    Ok((answer.status.as_u16(), answer.body))
}
