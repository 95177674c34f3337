//! C2SP formats of the transparency log: signed notes (`c2sp.org/signed-note`), checkpoints
//! (`c2sp.org/tlog-checkpoint`) and inclusion receipts (`c2sp.org/tlog-proof@v1`).
//!
//! Hand-written: they are short line formats that must match the specs byte for byte so that
//! other tools (Go's `golang.org/x/mod/sumdb/note`, `transparency-dev`) read them.

use sha2::{Digest, Sha256};

use super::dsse::{b64, decode_b64};
use super::keys::{PublicKey, SigningKey};
use crate::merkle::{self, Hash};

/// Signature type byte of Ed25519 note keys.
const ED25519_TYPE: u8 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("no signature by {0} on the note")]
    Unsigned(String),
    #[error("the signature by {0} does not verify: the note was altered or signed by another key")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("malformed proof: {0}")]
    Proof(String),
    #[error("checkpoint origin is {got:?}; expected {want:?}")]
    Origin { got: String, want: String },
    #[error(transparent)]
    Merkle(#[from] merkle::ProofError),
}

/// A note key: a name (the log's origin, by convention) and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key: PublicKey,
}

impl NoteVerifier {
    /// The 4-byte key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]`.
    pub fn id(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([b'\n', ED25519_TYPE]);
        h.update(self.key.raw());
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The verifier key string of Go's `note` package: `name+hexid+base64(0x01 ‖ key)`.
    pub fn vkey(&self) -> String {
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(self.key.raw());
        format!(
            "{}+{}+{}",
            self.name,
            super::keys::hex(&self.id()),
            b64(&typed)
        )
    }
}

/// Signs `text` (which must end in a newline) as a note.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    debug_assert!(text.ends_with('\n') && !text.contains("\n\n"));
    let verifier = NoteVerifier {
        name: name.to_string(),
        key: *key.public(),
    };
    let mut blob = verifier.id().to_vec();
    blob.extend_from_slice(&key.sign(text.as_bytes()));
    format!("{text}\n\u{2014} {name} {}\n", b64(&blob))
}

/// Checks a signed note against one verifier and returns its text. Signatures by other keys
/// are ignored (a note may carry cosignatures); the verifier's own must be there and valid.
pub fn open_note<'a>(note: &'a str, verifier: &NoteVerifier) -> Result<&'a str, NoteError> {
    let split = note
        .find("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the signature block must be lines ending in a newline".into(),
        ));
    }
    let id = verifier.id();
    let mut found = false;
    for line in sigs.lines() {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| NoteError::Malformed(format!("signature line {line:?}")))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| NoteError::Malformed(format!("signature line {line:?}")))?;
        let blob = decode_b64(sig)
            .filter(|b| b.len() >= 4)
            .ok_or_else(|| NoteError::Malformed(format!("signature of {name} is not base64")))?;
        if name != verifier.name || blob[..4] != id {
            continue;
        }
        if !verifier.key.verify(text.as_bytes(), &blob[4..]) {
            return Err(NoteError::BadSignature(verifier.name.clone()));
        }
        found = true;
    }
    if found {
        Ok(text)
    } else {
        Err(NoteError::Unsigned(verifier.name.clone()))
    }
}

/// A tree head: `origin`, size and root (the body of a checkpoint note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, b64(&self.root))
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::Checkpoint(m.to_string());
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line must be the tree size in decimal"))?;
        let root = lines
            .next()
            .and_then(decode_b64)
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or_else(|| bad("the third line must be a base64 SHA-256 root hash"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.to_text(), &self.origin, key)
    }

    /// Verifies a signed checkpoint note with the log's key (the origin names the key).
    pub fn open(note: &str, origin: &str, key: &PublicKey) -> Result<Checkpoint, NoteError> {
        let verifier = NoteVerifier {
            name: origin.to_string(),
            key: *key,
        };
        let cp = Checkpoint::parse(open_note(note, &verifier)?)?;
        if cp.origin != origin {
            return Err(NoteError::Origin {
                got: cp.origin,
                want: origin.to_string(),
            });
        }
        Ok(cp)
    }
}

/// The header line of a `c2sp.org/tlog-proof@v1` receipt.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An inclusion receipt: the entry's index, its audit path and the signed checkpoint it leads
/// to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl Receipt {
    pub fn to_text(&self) -> String {
        let mut s = format!("{PROOF_HEADER}\nindex {}\n", self.index);
        for h in &self.proof {
            s.push_str(&b64(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(text: &str) -> Result<Receipt, NoteError> {
        let bad = |m: String| NoteError::Proof(m);
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint".into()))?;
        let mut lines = head.lines();
        if lines.next() != Some(PROOF_HEADER) {
            return Err(bad(format!("the first line must be {PROOF_HEADER}")));
        }
        let mut line = lines.next();
        // An `extra` line (opaque to us) may precede the index.
        if line.is_some_and(|l| l.starts_with("extra ")) {
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| bad("expected `index N`".into()))?;
        let proof = lines
            .map(|l| {
                decode_b64(l)
                    .and_then(|h| Hash::try_from(h.as_slice()).ok())
                    .ok_or_else(|| bad(format!("{l:?} is not a base64 SHA-256 hash")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Receipt {
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Checks that `entry` (the logged bytes) is in the log: the checkpoint is signed by the
    /// log key and the audit path leads from the entry's leaf hash to its root.
    pub fn verify(
        &self,
        entry: &[u8],
        origin: &str,
        log_key: &PublicKey,
    ) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint::open(&self.checkpoint, origin, log_key)?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(entry),
            self.index,
            cp.size,
            &self.proof,
            &cp.root,
        )?;
        Ok(cp)
    }
}
