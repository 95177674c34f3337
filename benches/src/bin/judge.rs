//! The statistical judge's error rates: false positives on identical latency distributions and
//! true positives for a 20 % latency shift, over seeded trials, at several sample sizes (the
//! native provider feeds up to `judge::MAX_SAMPLES` per version).
//!
//! `cargo run --release -p vireo-benches --bin judge`

use vireo_core::judge::{judge, Direction, Effect, Outcome, DEFAULT_ALPHA, DEFAULT_TOLERANCE};

fn main() {
    let trials = 4000;
    let mut seed = 7u64;
    println!(
        "tolerance {DEFAULT_TOLERANCE}, alpha {DEFAULT_ALPHA}, exponential latencies (mean 100 ms), {trials} trials each\n"
    );
    println!("| samples per version | false positives (identical) | true positives (+20 %) |");
    println!("|---:|---:|---:|");
    for n in [50, 100, 300, 1000, 2000] {
        let (mut fp, mut tp) = (0, 0);
        for _ in 0..trials {
            let stable = exponential(&mut seed, n, 0.100);
            let same = exponential(&mut seed, n, 0.100);
            let slower = exponential(&mut seed, n, 0.120);
            let high = |canary: &[f64]| {
                judge(
                    canary,
                    &stable,
                    Direction::Increase,
                    Effect::Relative,
                    DEFAULT_TOLERANCE,
                    DEFAULT_ALPHA,
                )
                .map(|j| j.outcome == Outcome::High)
                .unwrap_or(false)
            };
            fp += high(&same) as u32;
            tp += high(&slower) as u32;
        }
        println!(
            "| {n} | {:.1} % | {:.1} % |",
            100.0 * fp as f64 / trials as f64,
            100.0 * tp as f64 / trials as f64
        );
    }
}

/// A seeded LCG: the figures are reproducible.
fn uniform(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

fn exponential(seed: &mut u64, n: usize, mean: f64) -> Vec<f64> {
    (0..n).map(|_| -mean * (1.0 - uniform(seed)).ln()).collect()
}
