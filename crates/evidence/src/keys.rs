//! Ed25519 keys, on the `sigstore` crate's key types.
//!
//! The control plane holds two: the *signing* key signs DSSE envelopes (statements), the *log*
//! key signs the transparency log's checkpoints. Keeping them apart lets an operator rotate or
//! escrow one without touching the other, and matches what an auditor is given
//! (`keys/signing.pub`, `keys/log.pub` in a bundle). Private keys are PKCS#8 PEM files of mode
//! 0600, public keys SPKI PEM.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};
use sigstore::crypto::signing_key::ed25519::Ed25519Keys;
use sigstore::crypto::signing_key::KeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: not an Ed25519 key ({detail})")]
    Format { what: String, detail: String },
}

fn format_err(what: impl Into<String>, detail: impl ToString) -> KeyError {
    KeyError::Format {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// A public Ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex(&self.0))
    }
}

impl PublicKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        PublicKey(raw)
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => Ok(PublicKey(raw.try_into().expect("32 bytes"))),
            _ => Err(format_err(
                "public key",
                "expected an Ed25519 SubjectPublicKeyInfo",
            )),
        }
    }

    /// An SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = CosignVerificationKey::try_from_pem(pem.as_bytes())
            .map_err(|e| format_err("public key PEM", e))?;
        match key {
            CosignVerificationKey::ED25519(der) => Self::from_spki_der(&der),
            _ => Err(format_err("public key PEM", "a key of another algorithm")),
        }
    }

    pub fn to_spki_der(&self) -> Vec<u8> {
        [&SPKI_PREFIX[..], &self.0[..]].concat()
    }

    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.to_spki_der());
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// The key id put in envelopes: hex SHA-256 of the SPKI DER (as cosign and sigstore-go
    /// compute it for public keys).
    pub fn keyid(&self) -> String {
        hex(&Sha256::digest(self.to_spki_der()))
    }

    /// Whether `sig` is this key's Ed25519 signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        CosignVerificationKey::ED25519(self.to_spki_der())
            .verify_signature(Signature::Raw(sig), msg)
            .is_ok()
    }
}

/// A private Ed25519 key.
#[derive(Clone)]
pub struct SigningKey {
    keys: Ed25519Keys,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.public)
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let keys = Ed25519Keys::new().map_err(|e| format_err("new key", e))?;
        Self::from_keys(keys)
    }

    /// From an RFC 8032 seed (the 32-byte private key), as test vectors give them.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let der = [&PKCS8_PREFIX[..], &seed[..]].concat();
        Self::from_keys(Ed25519Keys::from_pkcs8_der(&der).map_err(|e| format_err("seed", e))?)
    }

    /// A PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let keys =
            Ed25519Keys::from_pem(pem.as_bytes()).map_err(|e| format_err("private key PEM", e))?;
        Self::from_keys(keys)
    }

    fn from_keys(keys: Ed25519Keys) -> Result<Self, KeyError> {
        let der = keys
            .public_key_to_der()
            .map_err(|e| format_err("public part", e))?;
        let public = PublicKey::from_spki_der(&der)?;
        Ok(SigningKey { keys, public })
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use sigstore::crypto::signing_key::Signer;
        sigstore::crypto::signing_key::ed25519::Ed25519Signer::from_ed25519_keys(&self.keys)
            .and_then(|s| s.sign(msg))
            // Signing with a key that parsed cannot fail; a failure here is a broken build.
            .expect("Ed25519 signing with a valid key")
    }

    fn to_pem(&self) -> String {
        self.keys
            .private_key_to_pem()
            .expect("PKCS#8 encoding of a valid key")
            .to_string()
    }

    /// Loads the PKCS#8 PEM at `path`, or creates a new key there (mode 0600, fsynced) with its
    /// public key next to it (`.pub`). Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let key = Self::from_pem(&pem).map_err(|e| match e {
                    KeyError::Format { detail, .. } => {
                        format_err(path.display().to_string(), detail)
                    }
                    other => other,
                })?;
                Ok((key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, key.to_pem().as_bytes()).map_err(io)?;
                std::fs::write(path.with_extension("pub"), key.public.to_pem()).map_err(io)?;
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Writes a private key: created with mode 0600 under a temporary name, fsynced, then renamed,
/// so a crash leaves either no key or a whole one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes `bytes` to `path` so a crash leaves the old file or the whole new one: a temporary
/// file created with `mode`, fsynced, renamed over `path`, the directory fsynced. Keys, tokens
/// and certificates are all written this way.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp); // a leftover keeps its old mode otherwise
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub use vireo_core::digest::hex;

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1_public_key_and_signature() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let seed =
            unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let key = SigningKey::from_seed(&seed.try_into().unwrap()).unwrap();
        assert_eq!(
            hex(key.public().raw()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(hex(&sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        assert!(key.public().verify(b"", &sig));
        assert!(!key.public().verify(b"x", &sig));
    }

    #[test]
    fn keys_are_created_once_with_mode_0600_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vireo-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys/signing.pem");
        let (a, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert_eq!(PublicKey::from_pem(&public).unwrap(), *a.public());
        std::fs::write(&path, "not a key").unwrap();
        let err = SigningKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("signing.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
