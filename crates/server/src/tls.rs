//! TLS for the API (rustls, aws-lc-rs).
//!
//! - `--tls-cert FILE --tls-key FILE`: a certificate chain and its key (PEM). Both files are
//!   watched (modification time, every second); when they change the new pair is loaded and
//!   used for every handshake from then on. Connections already open keep theirs, so nothing
//!   in flight is dropped; a pair that does not load (half-written, mismatched) is logged and
//!   the old one stays.
//! - `--tls auto`: on first start, a local CA and a server certificate it signs (for
//!   `localhost`, `127.0.0.1`, `::1`, this host's name and the listen address) are made in
//!   `DATA_DIR/tls/` (`ca.pem`; keys 0600). Clients trust `ca.pem` (`vireo --ca`,
//!   `vireo-proxy --control-ca`). Later starts reuse them; if one of the files is missing,
//!   all are made again (a new CA, which clients must then be given).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("--tls auto: {0}")]
    Auto(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificate and key files to serve with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no CERTIFICATE in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        file_error(
            &files.key,
            format!(
                "does not match the certificate in {}: {e}",
                files.cert.display()
            ),
        )
    })?;
    Ok(certified)
}

fn modified(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.cert)?, m(&files.key)?))
}

/// The certificate in use, swapped whole when the files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Reloading {
    pub fn open(files: TlsFiles) -> Result<Arc<Reloading>, TlsError> {
        let seen = modified(&files);
        let current = load(&files)?;
        Ok(Arc::new(Reloading {
            files,
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(seen),
        }))
    }

    /// Loads the files again if they changed; `Ok(true)` when a new pair is in use.
    pub fn check(&self) -> Result<bool, TlsError> {
        let now = modified(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || now == *seen {
            return Ok(false);
        }
        let fresh = load(&self.files)?;
        self.current.store(Arc::new(fresh));
        *seen = now;
        Ok(true)
    }

    /// Checks every [`RELOAD_EVERY`] until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut failing = false;
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            match self.check() {
                Ok(true) => {
                    failing = false;
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded; new connections use it");
                }
                Ok(false) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("TLS certificate not reloaded, the previous one stays: {e}");
                }
                Err(_) => {}
            }
        }
    }

    /// The rustls server config over this resolver (HTTP/1.1 only, as the API serves).
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// `--tls auto`: the files in `DATA_DIR/tls/`, made on first start. Returns the server's
/// files and the CA certificate's path.
pub fn auto(data_dir: &Path, listen: SocketAddr) -> Result<(TlsFiles, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let ca_path = dir.join("ca.pem");
    if files.cert.exists() && files.key.exists() && ca_path.exists() {
        return Ok((files, ca_path));
    }
    std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
    let auto_err = |e: rcgen::Error| TlsError::Auto(e.to_string());
    let now = time::OffsetDateTime::now_utc();

    let ca_key = rcgen::KeyPair::generate().map_err(auto_err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(auto_err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Vireo local CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key).map_err(auto_err)?;

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let server_key = rcgen::KeyPair::generate().map_err(auto_err)?;
    let mut server = rcgen::CertificateParams::new(names).map_err(auto_err)?;
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vireo serve");
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - time::Duration::days(1);
    server.not_after = now + time::Duration::days(397);
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(auto_err)?;

    write(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    write(&files.key, &server_key.serialize_pem(), true)?;
    write(&files.cert, &server_cert.pem(), false)?;
    // Last: its presence says the set is complete.
    write(&ca_path, &ca_cert.pem(), false)?;
    tracing::info!(ca = %ca_path.display(), "--tls auto: made a local CA and a server certificate; clients trust the CA");
    Ok((files, ca_path))
}

/// Writes one of the files, 0600 when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let mode = if secret { 0o600 } else { 0o644 };
    vireo_evidence::keys::write_atomic(path, text.as_bytes(), mode).map_err(|e| file_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_makes_a_ca_and_a_certificate_that_load_and_reload() {
        let dir = std::env::temp_dir().join(format!("vireo-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (files, ca) = auto(&dir, "127.0.0.1:8443".parse().unwrap()).unwrap();
        assert!(ca.exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let r = Reloading::open(files.clone()).unwrap();
        assert!(!r.check().unwrap(), "nothing changed");
        // Again: the same files are kept.
        let before = std::fs::read(&files.cert).unwrap();
        auto(&dir, "127.0.0.1:8443".parse().unwrap()).unwrap();
        assert_eq!(std::fs::read(&files.cert).unwrap(), before);

        // A key that does not match its certificate is refused, and the old pair stays.
        let other = dir.join("other");
        let (other_files, _) = auto(&other, "127.0.0.1:1".parse().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(&other_files.key, &files.key).unwrap();
        let e = r.check().unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // The matching pair: reloaded.
        std::fs::copy(&other_files.cert, &files.cert).unwrap();
        assert!(r.check().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
