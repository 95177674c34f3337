//! The split algorithm: which backend of a route a request goes to.
//!
//! This module is the normative implementation of `shared/spec/proxy.md` § "Split algorithm",
//! and the only one in the project: the control plane's flag evaluator imports it so that "the
//! users in the canary" means the same thing to the proxy and to a feature flag.
//!
//! It is pure and allocation-free on the decision path: a [`Split`] is compiled once per config
//! (cumulative bucket ends and cumulative weights), and a decision is one XXH3-64 hash plus a
//! search over at most a handful of backends.
//!
//! ```text
//! h      = XXH3_64(seed 0, salt ":" key)
//! bucket = h mod buckets
//! end_i  = floor(buckets * (w_1 + ... + w_i) / W)      backend i owns [end_{i-1}, end_i)
//! ```
//!
//! Because ranges are laid out in listed order from bucket 0, raising the weight of the first
//! backend (the canary, by convention) only moves buckets from the others into it: a user admitted
//! at 5 % stays admitted at 25, 50 and 100 % (monotonic cohorts).

use twox_hash::XxHash3_64;

/// Largest number of buckets a split may have (spec: `1..=10000`).
pub const MAX_BUCKETS: u32 = 10_000;

/// Keys longer than this are hashed through a heap buffer instead of the stack one. User ids are
/// short; the limit only decides where the `salt ":" key` bytes are assembled.
const STACK_KEY_BYTES: usize = 256;

/// `XXH3_64(seed 0, salt ":" key) mod buckets`.
///
/// `buckets` must be at least 1 (a compiled [`Split`] guarantees it).
#[inline]
pub fn bucket(salt: &[u8], key: &[u8], buckets: u32) -> u32 {
    debug_assert!(buckets >= 1);
    (hash_key(salt, key) % u64::from(buckets)) as u32
}

/// `XXH3_64(seed 0, salt ":" key)`. The one-shot hash over a contiguous buffer is several times
/// faster than the streaming hasher for short inputs, so the bytes are assembled on the stack.
#[inline]
pub fn hash_key(salt: &[u8], key: &[u8]) -> u64 {
    let len = salt.len() + 1 + key.len();
    if len <= STACK_KEY_BYTES {
        let mut buf = [0u8; STACK_KEY_BYTES];
        buf[..salt.len()].copy_from_slice(salt);
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(key);
        XxHash3_64::oneshot(&buf[..len])
    } else {
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(salt);
        buf.push(b':');
        buf.extend_from_slice(key);
        XxHash3_64::oneshot(&buf)
    }
}

/// Why a set of weights cannot be compiled into a split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a split needs at least one backend")]
    NoBackends,
    #[error("buckets must be 1..={MAX_BUCKETS}, got {0}")]
    Buckets(u32),
    #[error("at least one backend needs a weight above 0")]
    AllZero,
}

/// A compiled split: the bucket range and the weight range of every backend, in listed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    buckets: u32,
    /// `bucket_ends[i]` = `end_i`; backend `i` owns buckets `[end_{i-1}, end_i)`.
    bucket_ends: Box<[u32]>,
    /// Cumulative weights, for weighted random picks: backend `i` owns `[cum_{i-1}, cum_i)` of `W`.
    weight_ends: Box<[u64]>,
}

impl Split {
    /// Compiles relative weights (Gateway API semantics: weight / sum, 0 = no traffic).
    pub fn new(buckets: u32, weights: &[u32]) -> Result<Self, SplitError> {
        if weights.is_empty() {
            return Err(SplitError::NoBackends);
        }
        if buckets == 0 || buckets > MAX_BUCKETS {
            return Err(SplitError::Buckets(buckets));
        }
        let mut weight_ends = Vec::with_capacity(weights.len());
        let mut acc = 0u64;
        for &w in weights {
            acc += u64::from(w);
            weight_ends.push(acc);
        }
        let total = acc;
        if total == 0 {
            return Err(SplitError::AllZero);
        }
        let bucket_ends = weight_ends
            .iter()
            // floor(buckets * cum / W); u64 holds 10_000 * (u32::MAX * n) for any sane n.
            .map(|&cum| (u64::from(buckets) * cum / total) as u32)
            .collect();
        Ok(Split {
            buckets,
            bucket_ends,
            weight_ends: weight_ends.into_boxed_slice(),
        })
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    pub fn len(&self) -> usize {
        self.bucket_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bucket_ends.is_empty()
    }

    /// The bucket range `[start, end)` owned by backend `index`.
    pub fn bucket_range(&self, index: usize) -> std::ops::Range<u32> {
        let start = if index == 0 {
            0
        } else {
            self.bucket_ends[index - 1]
        };
        start..self.bucket_ends[index]
    }

    /// The backend owning `bucket` (`bucket < buckets`).
    #[inline]
    pub fn backend_for_bucket(&self, bucket: u32) -> usize {
        // The last end is always `buckets`, so any in-range bucket finds an owner. Backends are
        // few (two in a canary), so a linear scan beats a binary search.
        self.bucket_ends
            .iter()
            .position(|&end| bucket < end)
            .unwrap_or(self.bucket_ends.len() - 1)
    }

    /// The backend for a request whose split key is `key`.
    #[inline]
    pub fn backend_for_key(&self, salt: &[u8], key: &[u8]) -> usize {
        self.backend_for_bucket(bucket(salt, key, self.buckets))
    }

    /// Weighted random pick: `r` is a uniformly random `u64`; backend `i` is picked with
    /// probability `w_i / W`.
    #[inline]
    pub fn backend_for_random(&self, r: u64) -> usize {
        let total = *self.weight_ends.last().expect("non-empty by construction");
        // Multiply-shift maps r uniformly onto [0, total) without modulo bias worth speaking of.
        let point = ((u128::from(r) * u128::from(total)) >> 64) as u64;
        self.weight_ends
            .iter()
            .position(|&end| point < end)
            .unwrap_or(self.weight_ends.len() - 1)
    }

    /// The first backend with a weight above 0 (`on_missing_key: first`).
    pub fn first_weighted(&self) -> usize {
        let mut prev = 0;
        for (i, &end) in self.weight_ends.iter().enumerate() {
            if end > prev {
                return i;
            }
            prev = end;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_from_the_spec_reference() {
        // xxhash.xxh3_64_intdigest(b"") == 0x2D06800538D394C2 (XXH3 published test value).
        assert_eq!(XxHash3_64::oneshot(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn ranges_follow_listed_order_and_floor() {
        let s = Split::new(100, &[5, 95]).unwrap();
        assert_eq!(s.bucket_range(0), 0..5);
        assert_eq!(s.bucket_range(1), 5..100);
        // floor(10 * 1/3) = 3, floor(10 * 2/3) = 6, last end is always `buckets`.
        let s = Split::new(10, &[1, 1, 1]).unwrap();
        assert_eq!(
            (0..3).map(|i| s.bucket_range(i)).collect::<Vec<_>>(),
            vec![0..3, 3..6, 6..10]
        );
    }

    #[test]
    fn zero_weight_backends_own_nothing() {
        let s = Split::new(100, &[0, 100]).unwrap();
        assert!(s.bucket_range(0).is_empty());
        assert!((0..100).all(|b| s.backend_for_bucket(b) == 1));
        assert!((0..10_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .all(|r| s.backend_for_random(r) == 1));
        assert_eq!(s.first_weighted(), 1);
    }

    #[test]
    fn rejects_what_cannot_split() {
        assert_eq!(Split::new(100, &[]), Err(SplitError::NoBackends));
        assert_eq!(Split::new(0, &[1]), Err(SplitError::Buckets(0)));
        assert_eq!(Split::new(10_001, &[1]), Err(SplitError::Buckets(10_001)));
        assert_eq!(Split::new(100, &[0, 0]), Err(SplitError::AllZero));
    }

    #[test]
    fn long_keys_hash_like_short_ones() {
        let key = vec![b'k'; 1000];
        let mut joined = b"salt:".to_vec();
        joined.extend_from_slice(&key);
        assert_eq!(hash_key(b"salt", &key), XxHash3_64::oneshot(&joined));
    }

    #[test]
    fn random_pick_extremes_stay_in_range() {
        let s = Split::new(100, &[5, 95]).unwrap();
        assert_eq!(s.backend_for_random(0), 0);
        assert_eq!(s.backend_for_random(u64::MAX), 1);
    }
}
