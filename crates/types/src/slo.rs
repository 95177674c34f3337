//! The SLO histogram layout and window bounds, shared by the proxy that records and the
//! control plane that reads heartbeats.
//!
//! A heartbeat's `latency_histogram` is sparse `(bucket, count)` pairs; the bucket indices
//! mean what [`latency_bucket`] and [`bucket_bounds`] say here, on both sides of the wire.

use std::time::Duration;

/// Latency histogram resolution: sub-buckets per power of two. 8 gives ≤ 9 % relative bucket
/// width; quantiles interpolate inside a bucket, as Prometheus' `histogram_quantile` does.
const SUB_BUCKETS: u32 = 8;
/// Octaves above 1 µs covered before the overflow bucket: 2^27 µs ≈ 134 s.
const OCTAVES: u32 = 27;
/// Index 0 holds [0, 1 µs); the last index is the overflow bucket.
pub const LATENCY_BUCKETS: usize = (OCTAVES * SUB_BUCKETS) as usize + 2;

/// Shortest and longest windows served (spec: 10 s – 10 min).
pub const MIN_WINDOW: Duration = Duration::from_secs(10);
pub const MAX_WINDOW: Duration = Duration::from_secs(600);

/// Maps a latency in microseconds to its histogram bucket.
#[inline]
pub fn latency_bucket(us: u64) -> usize {
    if us == 0 {
        return 0;
    }
    let octave = 63 - us.leading_zeros(); // floor(log2(us))
    if octave >= OCTAVES {
        return LATENCY_BUCKETS - 1;
    }
    // The SUB_BUCKETS bits below the leading one pick the sub-bucket.
    let sub = if octave >= 3 {
        (us >> (octave - 3)) & u64::from(SUB_BUCKETS - 1)
    } else {
        (us << (3 - octave)) & u64::from(SUB_BUCKETS - 1)
    } as u32;
    1 + (octave * SUB_BUCKETS + sub) as usize
}

/// The `[lower, upper)` latency range of a bucket, in seconds.
pub fn bucket_bounds(index: usize) -> (f64, f64) {
    if index == 0 {
        return (0.0, 1e-6);
    }
    if index >= LATENCY_BUCKETS - 1 {
        let top = (1u64 << OCTAVES) as f64 * 1e-6;
        return (top, top);
    }
    let i = (index - 1) as u32;
    let (octave, sub) = (i / SUB_BUCKETS, i % SUB_BUCKETS);
    let base = (1u64 << octave) as f64;
    let step = base / f64::from(SUB_BUCKETS);
    let lo = base + step * f64::from(sub);
    (lo * 1e-6, (lo + step) * 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_contain_their_values() {
        let mut prev = 0;
        for us in [
            0u64, 1, 2, 3, 7, 8, 9, 15, 16, 100, 999, 1000, 1_000_000, 60_000_000,
        ] {
            let b = latency_bucket(us);
            assert!(b >= prev, "bucket of {us} went down");
            prev = b;
            let (lo, hi) = bucket_bounds(b);
            let s = us as f64 * 1e-6;
            assert!(lo <= s && s < hi, "{us}us not in bucket {b} [{lo},{hi})");
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn bucket_width_is_within_resolution() {
        for b in 9..LATENCY_BUCKETS - 1 {
            let (lo, hi) = bucket_bounds(b);
            assert!((hi - lo) / lo <= 1.0 / 8.0 + 1e-9, "bucket {b}: {lo}..{hi}");
        }
    }
}
