//! `vireo-http`: the one HTTP client every part of Vireo speaks through — the Prometheus
//! provider, the schedule's checks, the event sink, the CLI, the demo's users and the proxy's
//! watch of the control plane.
//!
//! What it adds to hyper-util's pooled client is what each caller used to add by hand, or
//! forgot: a connect timeout, a deadline for the whole exchange, a bound on the answer's size
//! (nothing read from the network is unbounded), and errors that name the URL and say which
//! step failed, with the cause chain (`connection refused`), not just "client error".
//!
//! TLS is rustls (aws-lc-rs), for every caller at once: `https://` URLs are checked against
//! the system's roots, or, given a CA file ([`HttpClient::with_ca`]), against that CA only —
//! what a private control plane (`vireo serve --tls auto`) or an in-house Prometheus needs,
//! and a wrong CA is refused at the handshake.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Bounds on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From sending the request to the last byte of the answer.
    pub timeout: Duration,
    /// The largest answer body accepted.
    pub max_body: usize,
}

impl Limits {
    pub const fn new(timeout: Duration, max_body: usize) -> Limits {
        Limits { timeout, max_body }
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("{url} is unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: the answer is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: reading the answer: {cause}")]
    Body { url: String, cause: String },
}

/// A pooled HTTP/1 client, http and https (cheap to clone: clones share the pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new(Duration::from_secs(5))
    }
}

impl HttpClient {
    /// A client whose connections must be established within `connect_timeout`; https is
    /// checked against the system's root certificates.
    pub fn new(connect_timeout: Duration) -> HttpClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert); // one unusable system certificate is not fatal
        }
        HttpClient::build(connect_timeout, roots)
    }

    /// A client that trusts only the CA certificates in `ca` (PEM) for https, or the system's
    /// roots when `ca` is `None`.
    pub fn with_ca(
        connect_timeout: Duration,
        ca: Option<&std::path::Path>,
    ) -> Result<HttpClient, HttpError> {
        let Some(path) = ca else {
            return Ok(HttpClient::new(connect_timeout));
        };
        let pem = std::fs::read(path).map_err(|e| HttpError::Ca {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        HttpClient::with_ca_pem(connect_timeout, &path.display().to_string(), &pem)
    }

    /// A client that trusts only the CA certificates in `pem` (named `what` in errors), as a
    /// Kubernetes `caBundle` gives them.
    pub fn with_ca_pem(
        connect_timeout: Duration,
        what: &str,
        pem: &[u8],
    ) -> Result<HttpClient, HttpError> {
        let bad = |reason: String| HttpError::Ca {
            path: what.to_string(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad(
                "no certificate in it (expected PEM CERTIFICATE blocks)".into(),
            ));
        }
        Ok(HttpClient::build(connect_timeout, roots))
    }

    fn build(connect_timeout: Duration, roots: rustls::RootCertStore) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        HttpClient {
            inner: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `req` and reads the whole answer within `limits`.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        limits: Limits,
    ) -> Result<Answer, HttpError> {
        let url = req.uri().to_string();
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HttpError::Unreachable {
                    url: url.clone(),
                    cause: cause_chain(&e),
                })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, limits.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge {
                            url: url.clone(),
                            limit: limits.max_body,
                        }
                    } else {
                        HttpError::Body {
                            url: url.clone(),
                            cause: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(limits.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                timeout: limits.timeout,
            })?
    }

    /// Sends `req` and returns the answer's status and its body as it arrives, for streams
    /// (the proxy's watch on the control plane). The head must come within `head_timeout`; the
    /// caller bounds the reads and the size.
    pub async fn open(
        &self,
        req: Request<Full<Bytes>>,
        head_timeout: Duration,
    ) -> Result<(http::StatusCode, hyper::body::Incoming), HttpError> {
        let url = req.uri().to_string();
        let resp = tokio::time::timeout(head_timeout, self.inner.request(req))
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                timeout: head_timeout,
            })?
            .map_err(|e| HttpError::Unreachable {
                url: url.clone(),
                cause: cause_chain(&e),
            })?;
        Ok((resp.status(), resp.into_body()))
    }

    /// `GET url`.
    pub async fn get(&self, url: &str, limits: Limits) -> Result<Answer, HttpError> {
        self.send(request(http::Method::GET, url, None, Bytes::new())?, limits)
            .await
    }

    /// `POST url` with a body of `content_type`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Bytes,
        limits: Limits,
    ) -> Result<Answer, HttpError> {
        self.send(
            request(http::Method::POST, url, Some(content_type), body)?,
            limits,
        )
        .await
    }
}

/// A request with a body (and its content type, when there is one).
pub fn request(
    method: http::Method,
    url: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    b.body(Full::new(body)).map_err(|e| HttpError::Request {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// An error and its causes, `: `-separated (hyper-util's own text is only "client error").
pub fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One connection answered with `answer` (raw bytes) after reading the request head.
    async fn serve_once(answer: &'static [u8], delay: Duration) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let _ = s.write_all(answer).await;
            let _ = s.shutdown().await;
        });
        format!("http://{addr}/x")
    }

    const SHORT: Limits = Limits::new(Duration::from_secs(5), 64);

    #[tokio::test]
    async fn an_answer_is_read_whole() {
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
            Duration::ZERO,
        )
        .await;
        let a = HttpClient::default().get(&url, SHORT).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.headers["x-a"], "b");
        assert_eq!(&a.body[..], b"hello");
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n\
              0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
            Duration::ZERO,
        )
        .await;
        let e = HttpClient::default().get(&url, SHORT).await.unwrap_err();
        assert_eq!(e, HttpError::TooLarge { url, limit: 64 });
    }

    #[tokio::test]
    async fn a_slow_answer_times_out_and_says_when() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        let limits = Limits::new(Duration::from_millis(200), 64);
        let e = HttpClient::default().get(&url, limits).await.unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("200ms"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // bound, then closed: nobody listens there
        let url = format!("http://127.0.0.1:{port}/");
        let e = HttpClient::default().get(&url, SHORT).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("unreachable"), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    /// A CA, and an https server on loopback with a certificate it signed, answering once.
    async fn https_once(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let Ok(mut s) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            }
        });
        (format!("https://127.0.0.1:{}/x", addr.port()), ca_path)
    }

    #[tokio::test]
    async fn https_is_checked_against_the_given_ca_only() {
        let base = std::env::temp_dir().join(format!("vireo-http-tls-{}", std::process::id()));
        let (url, ca) = https_once(&base.join("a")).await;
        let (_, other_ca) = https_once(&base.join("b")).await;
        let good = HttpClient::with_ca(Duration::from_secs(2), Some(&ca)).unwrap();
        let a = good.get(&url, SHORT).await.unwrap();
        assert_eq!(&a.body[..], b"ok");
        let wrong = HttpClient::with_ca(Duration::from_secs(2), Some(&other_ca)).unwrap();
        let e = wrong.get(&url, SHORT).await.unwrap_err().to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
        // The system's roots do not know a private CA either.
        let e = HttpClient::default()
            .get(&url, SHORT)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let path = std::env::temp_dir().join(format!("vireo-http-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = HttpClient::with_ca(Duration::from_secs(1), Some(&path))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no certificate"), "{e}");
        let _ = std::fs::remove_file(&path);
        let e = HttpClient::with_ca(Duration::from_secs(1), Some(&path))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("CA file"), "{e}");
    }
}
