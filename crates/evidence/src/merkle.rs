//! RFC 6962 / RFC 9162 Merkle trees: the transparency log's hashing, proofs and their checks.
//!
//! Pure and byte-exact (the shared vectors of transparency-dev/merkle in
//! `tests/vectors/merkle/` pass unchanged). Leaves are hashed `SHA-256(0x00 ‖ data)`, interior
//! nodes `SHA-256(0x01 ‖ left ‖ right)`, and a tree of `n` leaves splits at the largest power
//! of two below `n`.
//!
//! [`Frontier`] appends in O(log n) and gives the root without touching old leaves: it keeps
//! one hash per set bit of the size (the roots of the perfect subtrees the tree is made of).
//! The proofs take the leaf hashes; the log's store will serve them from persisted nodes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), leaf side first.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    inclusion_proof_with(leaves.len() as u64, index as u64, &mut |lo, hi| {
        root(&leaves[lo as usize..hi as usize])
    })
}

/// The consistency proof from the tree of the first `old` leaves to the whole (RFC 6962
/// §2.1.2).
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Option<Vec<Hash>> {
    consistency_proof_with(old as u64, leaves.len() as u64, &mut |lo, hi| {
        root(&leaves[lo as usize..hi as usize])
    })
}

/// [`inclusion_proof`] for a tree of `size` leaves that is not in memory: `subtree(lo, hi)`
/// gives the hash of leaves `lo..hi`. Every range asked for is either a perfect subtree
/// aligned to its size (a stored node) or a right edge made of O(log n) of them, so a log
/// that persists its complete subtrees answers in O(log² n) lookups.
pub fn inclusion_proof_with(
    size: u64,
    index: u64,
    subtree: &mut impl FnMut(u64, u64) -> Hash,
) -> Option<Vec<Hash>> {
    if index >= size {
        return None;
    }
    let mut proof = Vec::new();
    path(index, 0, size, subtree, &mut proof);
    Some(proof)
}

/// [`consistency_proof`] over `subtree` hashes, as [`inclusion_proof_with`].
pub fn consistency_proof_with(
    old: u64,
    size: u64,
    subtree: &mut impl FnMut(u64, u64) -> Hash,
) -> Option<Vec<Hash>> {
    if old == 0 || old > size {
        return None;
    }
    let mut proof = Vec::new();
    subproof(old, 0, size, true, subtree, &mut proof);
    Some(proof)
}

fn path(
    index: u64,
    lo: u64,
    hi: u64,
    subtree: &mut impl FnMut(u64, u64) -> Hash,
    out: &mut Vec<Hash>,
) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n as usize) as u64;
    if index < lo + k {
        path(index, lo, lo + k, subtree, out);
        out.push(subtree(lo + k, hi));
    } else {
        path(index, lo + k, hi, subtree, out);
        out.push(subtree(lo, lo + k));
    }
}

/// RFC 6962's SUBPROOF(m, D[lo:hi], complete).
fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    subtree: &mut impl FnMut(u64, u64) -> Hash,
    out: &mut Vec<Hash>,
) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(subtree(lo, hi));
        }
        return;
    }
    let k = split(n as usize) as u64;
    if m <= k {
        subproof(m, lo, lo + k, complete, subtree, out);
        out.push(subtree(lo + k, hi));
    } else {
        subproof(m - k, lo + k, hi, false, subtree, out);
        out.push(subtree(lo, lo + k));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has {got} hashes; a proof for this position needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("sizes {old} → {new} are not a valid consistency range")]
    BadSizes { old: u64, new: u64 },
    #[error("a hash of {0} bytes; SHA-256 hashes have 32")]
    HashLength(usize),
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf: &Hash = leaf
        .try_into()
        .map_err(|_| ProofError::HashLength(leaf.len()))?;
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inner + border,
        });
    }
    let mut h = *leaf;
    for (i, p) in proof[..inner].iter().enumerate() {
        h = match (index >> i) & 1 {
            0 => node_hash(&h, p),
            _ => node_hash(p, &h),
        };
    }
    for p in &proof[inner..] {
        h = node_hash(p, &h);
    }
    match h[..] == *root {
        true => Ok(()),
        false => Err(ProofError::RootMismatch),
    }
}

/// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    if old > new || old == 0 {
        // From the empty tree a "proof" proves nothing; like the reference implementation,
        // refuse it rather than accept anything.
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        // Nothing to prove: the roots must simply be equal.
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return match old_root == new_root {
            true => Ok(()),
            false => Err(ProofError::RootMismatch),
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    }
    // The levels below the old tree's rightmost perfect subtree (of 2^shift leaves) are
    // common to both trees; the proof starts above them, with that subtree's root, unless
    // the old tree is that subtree (then its root is the old root).
    let shift = old.trailing_zeros();
    let (inner, border) = decompose(old - 1, new);
    let inner = inner - shift as usize;
    let (seed, rest) = if old == 1 << shift {
        let seed: Hash = old_root
            .try_into()
            .map_err(|_| ProofError::HashLength(old_root.len()))?;
        (seed, proof)
    } else {
        (proof[0], &proof[1..])
    };
    if rest.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() - rest.len() + inner + border,
        });
    }
    let mask = (old - 1) >> shift;
    let (mut h1, mut h2) = (seed, seed);
    for (i, p) in rest[..inner].iter().enumerate() {
        if (mask >> i) & 1 == 1 {
            h1 = node_hash(p, &h1);
            h2 = node_hash(p, &h2);
        } else {
            h2 = node_hash(&h2, p);
        }
    }
    for p in &rest[inner..] {
        h1 = node_hash(p, &h1);
        h2 = node_hash(p, &h2);
    }
    if h1[..] == *old_root && h2[..] == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// How many proof hashes lie inside the subtree shared with the neighbour (`inner`), and how
/// many on the right border above it (RFC 9162's decomposition).
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

/// An append-only tree's right edge: the roots of its perfect subtrees, largest first.
/// Appending is O(log n); the root needs no old leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `peaks[i]` is the root of a perfect subtree; sizes decrease along the vector.
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Merge with as many equal-sized peaks as the new size has trailing ones.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let left = self.peaks.pop().expect("one peak per set bit of the size");
            h = node_hash(&left, &h);
            merges -= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The 8 leaves behind the shared vectors (RFC 6962's CT test tree).
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| leaf_hash(&hex(h)))
        .collect()
    }

    /// Bytes as given (roots and leaf hashes of the wrong length are test cases too).
    fn b64(v: &serde_json::Value) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str()?)
            .ok()
    }

    /// Proof hashes; `None` when one is not a 32-byte hash.
    fn hashes(v: &serde_json::Value) -> Option<Vec<Hash>> {
        match v {
            serde_json::Value::Null => Some(Vec::new()),
            serde_json::Value::Array(a) => a.iter().map(|h| b64(h)?.try_into().ok()).collect(),
            _ => None,
        }
    }

    fn vectors(kind: &str) -> Vec<(String, serde_json::Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/merkle")
            .join(kind);
        let mut out = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((
                        path.display().to_string(),
                        serde_json::from_str(&text).unwrap(),
                    ));
                }
            }
        }
        assert!(out.len() > 50, "{kind}: only {} vectors", out.len());
        out
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            empty_root()[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256 of nothing"
        );
        assert_eq!(
            leaf_hash(b""),
            <[u8; 32]>::try_from(hex(
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
            ))
            .unwrap()
        );
        // RFC 6962 CT tree root of 8 leaves.
        assert_eq!(
            root(&ct_leaves()),
            <[u8; 32]>::try_from(hex(
                "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
            ))
            .unwrap()
        );
    }

    #[test]
    fn inclusion_vectors_pass_and_proofs_we_make_match_them() {
        let leaves = ct_leaves();
        for (file, v) in vectors("inclusion") {
            let want_err = v["wantErr"].as_bool().unwrap_or(false);
            let parsed = (|| {
                Some((
                    v["leafIdx"].as_u64()?,
                    v["treeSize"].as_u64()?,
                    b64(&v["root"])?,
                    b64(&v["leafHash"])?,
                    hashes(&v["proof"])?,
                ))
            })();
            let Some((index, size, root_, leaf, proof)) = parsed else {
                assert!(want_err, "{file}: unreadable but expected to verify");
                continue;
            };
            let got = verify_inclusion(&leaf, index, size, &proof, &root_);
            assert_eq!(got.is_err(), want_err, "{file}: {got:?}");
            if !want_err && size as usize <= leaves.len() && leaves[index as usize][..] == leaf[..]
            {
                let ours = inclusion_proof(&leaves[..size as usize], index as usize).unwrap();
                assert_eq!(ours, proof, "{file}: the proof we would serve");
            }
        }
    }

    #[test]
    fn consistency_vectors_pass_and_proofs_we_make_match_them() {
        let leaves = ct_leaves();
        for (file, v) in vectors("consistency") {
            let want_err = v["wantErr"].as_bool().unwrap_or(false);
            let parsed = (|| {
                Some((
                    v["size1"].as_u64()?,
                    v["size2"].as_u64()?,
                    b64(&v["root1"])?,
                    b64(&v["root2"])?,
                    hashes(&v["proof"])?,
                ))
            })();
            let Some((old, new, r1, r2, proof)) = parsed else {
                assert!(want_err, "{file}: unreadable but expected to verify");
                continue;
            };
            let got = verify_consistency(old, new, &proof, &r1, &r2);
            assert_eq!(got.is_err(), want_err, "{file}: {got:?}");
            if !want_err && old > 0 && old < new && new as usize <= leaves.len() {
                let ours = consistency_proof(&leaves[..new as usize], old as usize).unwrap();
                assert_eq!(ours, proof, "{file}: the proof we would serve");
            }
        }
    }

    #[test]
    fn the_frontier_appends_without_old_leaves_and_agrees_with_the_full_tree() {
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(f.peaks.len(), (i as u64 + 1).count_ones() as usize);
        }
        // Every proof we make verifies against the roots, at every size.
        for n in 1..=40usize {
            let r = root(&leaves[..n]);
            for i in 0..n {
                let p = inclusion_proof(&leaves[..n], i).unwrap();
                verify_inclusion(&leaves[i], i as u64, n as u64, &p, &r).unwrap();
            }
            for m in 1..n {
                let p = consistency_proof(&leaves[..n], m).unwrap();
                verify_consistency(m as u64, n as u64, &p, &root(&leaves[..m]), &r).unwrap();
            }
        }
    }
}
