//! The statistical canary judge (`provider.judge`): canary against stable on the same window,
//! Kayenta-style, instead of a hand-tuned threshold.
//!
//! A Mann–Whitney U test (statrs, matching scipy's asymptotic method with continuity
//! correction; checked against scipy in `tests/fixtures/mwu.json`) says whether the canary's
//! samples are shifted; an effect-size tolerance says whether the shift matters. The outcome is
//! `High` or `Low` when both hold, else `Pass`; which of them fails the metric depends on the
//! `direction` that is bad (`increase` for latency and errors).
//!
//! Pure: samples in, judgement out. The runner gathers samples from the proxies' latency
//! histograms and request counts, or from two Prometheus queries.

use serde::{Deserialize, Serialize};
use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::Alternative;

/// Samples per version fed to the test: beyond this, a sample is thinned to evenly spaced
/// quantiles (the distribution is kept; the test's cost, quadratic in statrs, stays bounded).
pub const MAX_SAMPLES: usize = 2_000;
/// Defaults of a judge metric: a shift must be significant at 5 % and above 10 % (relative,
/// latency) or 1 point (absolute, error rates) to count.
pub const DEFAULT_ALPHA: f64 = 0.05;
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_ERROR_TOLERANCE: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The canary is bad when it is higher (latency, errors).
    #[default]
    Increase,
    /// The canary is bad when it is lower (throughput, conversions).
    Decrease,
    /// Any significant difference is bad.
    Either,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Pass,
    High,
    Low,
}

impl Outcome {
    /// The measured value conditions see: 0 pass, 1 high, -1 low.
    pub fn score(self) -> f64 {
        match self {
            Outcome::Pass => 0.0,
            Outcome::High => 1.0,
            Outcome::Low => -1.0,
        }
    }
}

impl Direction {
    /// The condition a judge metric gets when it has none: the bad direction fails.
    pub fn default_condition(self) -> &'static str {
        match self {
            Direction::Increase => "result <= 0",
            Direction::Decrease => "result >= 0",
            Direction::Either => "result == 0",
        }
    }

    fn alternative(self) -> Alternative {
        match self {
            Direction::Increase => Alternative::Greater,
            Direction::Decrease => Alternative::Less,
            Direction::Either => Alternative::TwoSided,
        }
    }
}

/// How the effect size is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// (canary median − stable median) / stable median: for latencies (medians, like the
    /// rank test, are not moved by a few outliers).
    Relative,
    /// canary mean − stable mean: for rates such as errors (0/1 samples, where the mean is
    /// the rate).
    Absolute,
}

impl Effect {
    pub fn default_tolerance(self) -> f64 {
        match self {
            Effect::Relative => DEFAULT_TOLERANCE,
            Effect::Absolute => DEFAULT_ERROR_TOLERANCE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub outcome: Outcome,
    pub p_value: f64,
    pub effect: f64,
    pub canary_mean: f64,
    pub stable_mean: f64,
    pub n_canary: usize,
    pub n_stable: usize,
}

impl std::fmt::Display for Judgement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: canary mean {:.4} vs stable {:.4}, effect {:+.3}, p = {:.4} (n {}/{})",
            self.outcome,
            self.canary_mean,
            self.stable_mean,
            self.effect,
            self.p_value,
            self.n_canary,
            self.n_stable
        )
    }
}

/// Judges `canary` against `stable`. Too few samples (< 2 each) or non-finite values are
/// errors, never a pass.
pub fn judge(
    canary: &[f64],
    stable: &[f64],
    direction: Direction,
    effect: Effect,
    tolerance: f64,
    alpha: f64,
) -> Result<Judgement, String> {
    if canary.len() < 2 || stable.len() < 2 {
        return Err(format!(
            "too few samples to judge (canary {}, stable {})",
            canary.len(),
            stable.len()
        ));
    }
    if canary.iter().chain(stable).any(|v| !v.is_finite()) {
        return Err("samples include NaN or Inf".into());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mc, ms) = (mean(canary), mean(stable));
    let size = match effect {
        Effect::Absolute => mc - ms,
        Effect::Relative => {
            let (a, b) = (median(canary), median(stable));
            if b.abs() > f64::EPSILON {
                (a - b) / b.abs()
            } else {
                a - b
            }
        }
    };
    let (u, p) = mannwhitneyu(
        canary,
        stable,
        MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
        direction.alternative(),
    )
    .map_err(|e| format!("Mann–Whitney U: {e}"))?;
    // Which way the canary lies comes from the ranks, as the p-value does (U above half of
    // n1·n2: the canary tends higher); the effect size must agree and exceed the tolerance.
    let half = (canary.len() * stable.len()) as f64 / 2.0;
    let outcome = match (p < alpha, u > half) {
        (true, true) if size > tolerance => Outcome::High,
        (true, false) if size < -tolerance => Outcome::Low,
        _ => Outcome::Pass,
    };
    Ok(Judgement {
        outcome,
        p_value: p,
        effect: size,
        canary_mean: mc,
        stable_mean: ms,
        n_canary: canary.len(),
        n_stable: stable.len(),
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n % 2 {
        1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Expands weighted values (`(value, count)`, any order) into at most [`MAX_SAMPLES`]
/// samples: all of them when few, else evenly spaced quantiles of the whole.
pub fn samples(weighted: &[(f64, u64)]) -> Vec<f64> {
    let mut w: Vec<(f64, u64)> = weighted.iter().copied().filter(|(_, n)| *n > 0).collect();
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = w.iter().map(|(_, n)| n).sum();
    let take = (total as usize).min(MAX_SAMPLES);
    let mut out = Vec::with_capacity(take);
    let (mut i, mut seen) = (0usize, 0u64);
    for k in 0..take {
        // The rank of the k-th of `take` evenly spaced picks among `total`.
        let rank = ((k as f64 + 0.5) * total as f64 / take as f64) as u64;
        while seen + w[i].1 <= rank {
            seen += w[i].1;
            i += 1;
        }
        out.push(w[i].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential latencies with mean `mean`.
    fn latencies(seed: &mut u64, n: usize, mean: f64) -> Vec<f64> {
        (0..n).map(|_| -mean * (1.0 - lcg(seed)).ln()).collect()
    }

    #[test]
    fn p_values_match_scipy() {
        #[derive(Deserialize)]
        struct Case {
            x: Vec<f64>,
            y: Vec<f64>,
            greater: f64,
            less: f64,
            two_sided: f64,
        }
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../tests/fixtures/mwu.json")).unwrap();
        assert!(!cases.is_empty());
        for (i, c) in cases.iter().enumerate() {
            for (direction, want) in [
                (Direction::Increase, c.greater),
                (Direction::Decrease, c.less),
                (Direction::Either, c.two_sided),
            ] {
                let j = judge(&c.x, &c.y, direction, Effect::Relative, 0.0, 0.05).unwrap();
                assert!(
                    (j.p_value - want).abs() < 1e-9,
                    "case {i} {direction:?}: {} vs scipy {want}",
                    j.p_value
                );
            }
        }
    }

    #[test]
    fn identical_distributions_rarely_fail_and_a_20_percent_shift_is_caught() {
        // Deterministic (seeded); enough trials that the rate is measured to about ±0.5 %.
        let (trials, n, alpha) = (1000, 300, DEFAULT_ALPHA);
        let mut seed = 42;
        let mut false_high = 0;
        let mut caught = 0;
        for _ in 0..trials {
            let stable = latencies(&mut seed, n, 0.1);
            let same = latencies(&mut seed, n, 0.1);
            let slower = latencies(&mut seed, n, 0.12);
            let j = judge(
                &same,
                &stable,
                Direction::Increase,
                Effect::Relative,
                DEFAULT_TOLERANCE,
                alpha,
            );
            if j.unwrap().outcome == Outcome::High {
                false_high += 1;
            }
            let j = judge(
                &slower,
                &stable,
                Direction::Increase,
                Effect::Relative,
                DEFAULT_TOLERANCE,
                alpha,
            );
            if j.unwrap().outcome == Outcome::High {
                caught += 1;
            }
        }
        let fpr = false_high as f64 / trials as f64;
        eprintln!(
            "judge at n = {n}, tolerance {DEFAULT_TOLERANCE}, alpha {alpha}: false-positive rate {fpr}, true-positive rate {}",
            caught as f64 / trials as f64
        );
        // The rate is itself measured: it may not exceed alpha by more than three standard
        // errors of the estimate (a judge that really fails 8 % of identical canaries does).
        let margin = 3.0 * (alpha * (1.0 - alpha) / trials as f64).sqrt();
        assert!(
            fpr <= alpha + margin,
            "false-positive rate {fpr} above alpha {alpha} (+{margin:.3} for sampling)"
        );
        let tpr = caught as f64 / trials as f64;
        assert!(
            tpr > 0.3,
            "true-positive rate {tpr} for a 20 % shift at n = {n}"
        );
    }

    #[test]
    fn direction_decides_what_fails_and_odd_input_is_an_error() {
        let low = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.01, 0.99];
        let high: Vec<f64> = low.iter().map(|v| v * 2.0).collect();
        let j = judge(&high, &low, Direction::Either, Effect::Relative, 0.1, 0.05).unwrap();
        assert_eq!(j.outcome, Outcome::High);
        let j = judge(&low, &high, Direction::Either, Effect::Relative, 0.1, 0.05).unwrap();
        assert_eq!(j.outcome, Outcome::Low);
        // A shift below the tolerance passes however significant.
        let j = judge(
            &high,
            &low,
            Direction::Increase,
            Effect::Relative,
            2.0,
            0.05,
        )
        .unwrap();
        assert_eq!(j.outcome, Outcome::Pass);
        assert!(judge(
            &[1.0],
            &low,
            Direction::Increase,
            Effect::Relative,
            0.1,
            0.05
        )
        .is_err());
        assert!(judge(
            &[1.0, f64::NAN],
            &low,
            Direction::Increase,
            Effect::Relative,
            0.1,
            0.05
        )
        .is_err());
    }

    #[test]
    fn weighted_samples_are_thinned_to_quantiles() {
        assert_eq!(samples(&[(2.0, 2), (1.0, 1)]), vec![1.0, 2.0, 2.0]);
        let many = samples(&[(1.0, 9_000), (5.0, 1_000)]);
        assert_eq!(many.len(), MAX_SAMPLES);
        let fives = many.iter().filter(|&&v| v == 5.0).count();
        assert_eq!(fives, MAX_SAMPLES / 10, "proportions kept");
        assert!(samples(&[]).is_empty());
    }
}
