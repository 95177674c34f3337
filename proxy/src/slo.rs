//! Rolling-window SLO figures per route and backend: requests, failures, latency quantiles.
//!
//! This is what `GET /slo?window=60s` serves and what the control plane's native analysis
//! provider reads, so a canary can be judged with no Prometheus at all.
//!
//! Design: time is cut into slots; each slot holds atomic counters and a log-linear latency
//! histogram. Recording is a handful of relaxed `fetch_add`s on the slot for "now": no lock, no
//! allocation. A reader sums the slots inside the window. Two rings keep memory bounded while
//! covering 10 s … 10 min: 1-second slots for windows up to a minute, 10-second slots beyond.
//!
//! Slot reuse: a slot is tagged with the period it holds. The first writer of a new period swaps
//! the tag to a "resetting" marker, zeroes the slot and publishes the new tag; other writers of
//! that instant wait for the publish (a few nanoseconds, once per slot period) so no count is
//! lost to the reset.
//!
//! Time is passed in (`now_ms`, milliseconds on any monotonic clock), which keeps this module
//! deterministic under test.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::Duration;

pub use vireo_types::slo::{
    bucket_bounds, latency_bucket, LATENCY_BUCKETS, MAX_WINDOW, MIN_WINDOW,
};

const RESETTING: u64 = u64::MAX;
/// How many times a writer waits for another writer's slot reset before giving up on its
/// sample (tens of thousands of yields: only a stalled thread gets here).
const MAX_RESET_WAITS: u32 = 100_000;

struct Slot {
    tag: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    latency: Box<[AtomicU64]>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            tag: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// One ring of time slots of equal length.
struct Ring {
    slot_ms: u64,
    slots: Box<[Slot]>,
}

impl Ring {
    fn new(slot_ms: u64, covers: Duration) -> Self {
        // One extra slot: the current, partly filled one.
        let n = (covers.as_millis() as u64).div_ceil(slot_ms) as usize + 1;
        Ring {
            slot_ms,
            slots: (0..n).map(|_| Slot::new()).collect(),
        }
    }

    /// Tags start at 1 so that a fresh slot (tag 0) never counts as "in the window".
    fn tag_of(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms + 1
    }

    #[inline]
    fn record(&self, now_ms: u64, failed: bool, bucket: usize) {
        let tag = self.tag_of(now_ms);
        let slot = &self.slots[(tag % self.slots.len() as u64) as usize];
        // A reset is a few hundred stores, so waiting for one is short: spin, then yield.
        // The bound only matters if the resetting thread stalls for seconds; the sample is
        // then dropped rather than added into a slot that is still being zeroed.
        let mut waits = 0u32;
        loop {
            let cur = slot.tag.load(Acquire);
            if cur == tag {
                break;
            }
            if cur == RESETTING {
                waits += 1;
                if waits > MAX_RESET_WAITS {
                    return;
                }
                if waits < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if cur > tag {
                // This writer is late by a whole ring turn (descheduled for minutes): its slot
                // period is gone, so the sample falls outside every window.
                return;
            }
            if slot
                .tag
                .compare_exchange(cur, RESETTING, AcqRel, Acquire)
                .is_ok()
            {
                slot.requests.store(0, Relaxed);
                slot.failures.store(0, Relaxed);
                for b in slot.latency.iter() {
                    b.store(0, Relaxed);
                }
                slot.tag.store(tag, Release);
                break;
            }
        }
        slot.requests.fetch_add(1, Relaxed);
        if failed {
            slot.failures.fetch_add(1, Relaxed);
        }
        slot.latency[bucket].fetch_add(1, Relaxed);
    }

    fn sum_into(&self, now_ms: u64, window: Duration, out: &mut Snapshot) {
        let newest = self.tag_of(now_ms);
        let span = (window.as_millis() as u64)
            .div_ceil(self.slot_ms)
            .min(self.slots.len() as u64 - 1)
            .max(1);
        let oldest = newest.saturating_sub(span - 1);
        for slot in self.slots.iter() {
            let tag = slot.tag.load(Acquire);
            if tag == RESETTING || tag < oldest || tag > newest {
                continue;
            }
            out.requests += slot.requests.load(Relaxed);
            out.failures += slot.failures.load(Relaxed);
            for (acc, b) in out.latency.iter_mut().zip(slot.latency.iter()) {
                *acc += b.load(Relaxed);
            }
        }
    }
}

/// Rolling SLO window for one route and backend.
pub struct SloWindow {
    fine: Ring,
    coarse: Ring,
}

impl Default for SloWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl SloWindow {
    pub fn new() -> Self {
        SloWindow {
            fine: Ring::new(1_000, Duration::from_secs(60)),
            coarse: Ring::new(10_000, MAX_WINDOW),
        }
    }

    /// Records one finished request.
    #[inline]
    pub fn record(&self, now_ms: u64, failed: bool, latency: Duration) {
        let bucket = latency_bucket(latency.as_micros() as u64);
        self.fine.record(now_ms, failed, bucket);
        self.coarse.record(now_ms, failed, bucket);
    }

    /// Sums the window ending at `now_ms`. Windows up to 60 s use 1-second slots, longer ones
    /// 10-second slots; the current slot counts in full.
    pub fn snapshot(&self, now_ms: u64, window: Duration) -> Snapshot {
        let mut s = Snapshot::default();
        if window <= Duration::from_secs(60) {
            self.fine.sum_into(now_ms, window, &mut s);
        } else {
            self.coarse.sum_into(now_ms, window, &mut s);
        }
        s
    }
}

/// Summed counts of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub requests: u64,
    pub failures: u64,
    pub latency: Vec<u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            requests: 0,
            failures: 0,
            latency: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl Snapshot {
    /// Successes / requests; `None` with no requests (the analysis side decides what an empty
    /// window means, rather than reading a made-up 1.0 or 0.0).
    pub fn success_ratio(&self) -> Option<f64> {
        // Slots are read without a lock: a failure may be counted before its request.
        let failures = self.failures.min(self.requests);
        (self.requests > 0).then(|| (self.requests - failures) as f64 / self.requests as f64)
    }

    /// The `q` quantile (0..=1) of latency in seconds, interpolated linearly within its bucket;
    /// `None` with no requests.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let (lo, hi) = bucket_bounds(i);
                let into = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * into);
            }
            seen += n;
        }
        Some(bucket_bounds(LATENCY_BUCKETS - 1).1)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_the_window() {
        let w = SloWindow::new();
        let t0 = 1_000_000;
        for i in 0..30u64 {
            // one request per second for 30 s, every third one failing
            w.record(t0 + i * 1000, i % 3 == 0, Duration::from_millis(10));
        }
        let now = t0 + 29_000;
        let s = w.snapshot(now, Duration::from_secs(10));
        assert_eq!((s.requests, s.failures), (10, 3)); // seconds 20..=29: 21, 24, 27 failed
        let s = w.snapshot(now, Duration::from_secs(60));
        assert_eq!((s.requests, s.failures), (30, 10));
        // Long windows read the coarse ring and still see everything.
        let s = w.snapshot(now, Duration::from_secs(600));
        assert_eq!((s.requests, s.failures), (30, 10));
        // Ten minutes later nothing is left.
        let s = w.snapshot(now + 700_000, Duration::from_secs(600));
        assert_eq!(s.requests, 0);
        assert_eq!(s.success_ratio(), None);
    }

    #[test]
    fn slots_are_reused_after_a_ring_turn() {
        let w = SloWindow::new();
        w.record(5_000, true, Duration::from_millis(1));
        // 61 fine slots later the same slot index holds a new period.
        let later = 5_000 + 61_000;
        w.record(later, false, Duration::from_millis(1));
        let s = w.snapshot(later, Duration::from_secs(10));
        assert_eq!((s.requests, s.failures), (1, 0));
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let w = SloWindow::new();
        for ms in 1..=100u64 {
            w.record(10_000, false, Duration::from_millis(ms));
        }
        let s = w.snapshot(10_000, Duration::from_secs(10));
        let p50 = s.latency_quantile(0.5).unwrap();
        let p99 = s.latency_quantile(0.99).unwrap();
        assert!((p50 - 0.050).abs() / 0.050 < 0.07, "p50 {p50}");
        assert!((p99 - 0.099).abs() / 0.099 < 0.07, "p99 {p99}");
        assert_eq!(s.success_ratio(), Some(1.0));
    }

    #[test]
    fn concurrent_writers_lose_nothing_across_slot_resets() {
        // Writers start together and walk the same clock, so they reach every slot boundary
        // at about the same moment: each boundary is a race over who resets the slot.
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 50_000;
        let w = std::sync::Arc::new(SloWindow::new());
        let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (w, start) = (w.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..PER_THREAD {
                        // a new fine slot every 1000 samples: 50 boundaries per writer
                        w.record(100_000 + i, i % 10 == 0, Duration::from_micros(i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = w.snapshot(100_000 + PER_THREAD, Duration::from_secs(60));
        assert_eq!(s.requests, THREADS * PER_THREAD);
        assert_eq!(s.failures, THREADS * PER_THREAD / 10);
        assert_eq!(s.latency.iter().sum::<u64>(), THREADS * PER_THREAD);
    }
}
