//! The e-processes behind [`super::judge`]: pure arithmetic on counts (no I/O, no clock, no
//! randomness). Every quantity is a Bernoulli rate, `bad` among `total` trials per period.
//!
//! - **Likelihood ratios, mixed** ([`log_likelihood_ratio`], [`log_mean_exp`]): the product over
//!   periods of `(q/p)^x ((1−q)/(1−p))^(n−x)` is a nonnegative (super)martingale under rate `p`,
//!   and so is a uniform mixture over alternatives `q` (Wald's likelihood ratio; the mixture
//!   method of Robbins, "Statistical methods related to the law of the iterated logarithm",
//!   1970). Ville's inequality (1939) bounds the chance it ever reaches `1/δ` by `δ`: the
//!   e-process framework of Ramdas, Grünwald, Vovk and Shafer, "Game-theoretic statistics and
//!   safe anytime-valid inference", Statistical Science 2023.
//! - **Blue's confidence sequence** ([`upper_confidence_bound`], [`lower_confidence_bound`]):
//!   the time-uniform bound obtained by inverting those mixture tests (Howard, Ramdas,
//!   McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
//!   Annals of Statistics 2021; Waudby-Smith and Ramdas, "Estimating means of bounded random
//!   variables by betting", JRSS B 2024): the bound holds at every period at once.
//! - **Green's regression test, scanned for a late change** ([`regression_scan`]): one mixture
//!   e-process per start period, against the null "green's rate ≤ blue's upper bound + the
//!   tolerance", combined by a weighted sum over start periods fixed in advance (half the
//!   weight on the first period, half spread over the other periods of the horizon: see
//!   [`start_weight`]). Each is a test supermartingale that is 1 before it starts, so the sum
//!   is one too and needs no Bonferroni correction (the Shiryaev–Roberts-style e-detector of
//!   Shin, Ramdas and Rinaldo, "E-detectors: a nonparametric framework for sequential change
//!   detection", NEJSDS 2023).
//! - **Green's no-worse test** ([`no_worse_e`]): the mirror image, from the window's first
//!   period, against "green's rate ≥ blue's lower bound + the tolerance".
//! - [`percentile`]: nearest rank, for the latency adapter and the benchmark.

use super::types::Counts;

/// Probabilities are kept within `[PROBABILITY_FLOOR, 1 − PROBABILITY_FLOOR]`.
pub const PROBABILITY_FLOOR: f64 = 1e-9;
/// E-values are stored saturated at this (their logarithms are what is computed).
pub const E_VALUE_CEILING: f64 = 1e300;
/// The confidence sequence's alternatives are `p·(1 − s)` (upper bound) or `p + (1 − p)·s`
/// (lower bound) for `s = 2^-k`, `k = 1..=CONFIDENCE_GRID_POINTS` (0.5 down to 1.5e-5), mixed
/// with uniform weights.
pub const CONFIDENCE_GRID_POINTS: u32 = 16;
/// The regression test's alternatives: `q = m · p0` (at least `p0 + (m − 1)·`[`REGRESSION_FLOOR`]).
pub const REGRESSION_MULTIPLIERS: [f64; 7] = [1.25, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0];
/// The additive floor of the regression alternatives, so that `q > p0` when `p0` is about 0.
pub const REGRESSION_FLOOR: f64 = 1e-4;
/// The no-worse test's alternatives: `q = m · p0`.
pub const NO_WORSE_MULTIPLIERS: [f64; 5] = [0.8, 0.6, 0.4, 0.2, 0.05];
/// Bisection steps of the confidence bounds, on `ln p` (at most 27.6 nats wide: 2^-32 of it).
const BISECTION_STEPS: u32 = 32;

fn clamp_probability(p: f64) -> f64 {
    p.clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
}

/// `ln` of the likelihood ratio of rate `q` against rate `p` for `counts`:
/// `x ln(q/p) + (n − x) ln((1 − q)/(1 − p))` (a term with no trials is 0).
pub fn log_likelihood_ratio(counts: Counts, q: f64, p: f64) -> f64 {
    let (q, p) = (clamp_probability(q), clamp_probability(p));
    let bad = counts.bad.min(counts.total) as f64;
    let good = counts.total.saturating_sub(counts.bad) as f64;
    let mut log = 0.0;
    if bad > 0.0 {
        log += bad * (q.ln() - p.ln());
    }
    if good > 0.0 {
        log += good * ((-q).ln_1p() - (-p).ln_1p());
    }
    log
}

/// `ln(mean(exp(logs)))`, computed without overflow (`−∞` when empty).
pub fn log_mean_exp(logs: &[f64]) -> f64 {
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logs.iter().map(|l| (l - max).exp()).sum();
    max + (sum / logs.len() as f64).ln()
}

/// The e-value from its logarithm, finite (saturated at [`E_VALUE_CEILING`]).
pub fn e_value(log_e: f64) -> f64 {
    if log_e.is_nan() {
        1.0
    } else {
        log_e.exp().min(E_VALUE_CEILING)
    }
}

fn confidence_grid() -> [f64; CONFIDENCE_GRID_POINTS as usize] {
    std::array::from_fn(|k| 0.5f64.powi(k as i32 + 1))
}

/// `ln` of the uniform mixture over the grid of `(q/p)^bad ((1−q)/(1−p))^good`, from each
/// alternative's two log ratios.
fn log_mixture(counts: Counts, log_ratios: impl Fn(f64) -> (f64, f64)) -> f64 {
    let bad = counts.bad.min(counts.total) as f64;
    let good = counts.total.saturating_sub(counts.bad) as f64;
    let logs = confidence_grid().map(|s| {
        let (log_bad, log_good) = log_ratios(s);
        let mut log = 0.0;
        if bad > 0.0 {
            log += bad * log_bad;
        }
        if good > 0.0 {
            log += good * log_good;
        }
        log
    });
    log_mean_exp(&logs)
}

/// `ln` of the mixture e-value against "the rate is at least `p`" (alternatives `p·(1 − s)`
/// below it) for cumulative `counts`. Increasing in `p`.
pub fn log_e_rate_at_least(counts: Counts, p: f64) -> f64 {
    let p = clamp_probability(p);
    // q/p = 1 − s; (1 − q)/(1 − p) = 1 + p·s/(1 − p).
    log_mixture(counts, |s| ((-s).ln_1p(), (p * s / (1.0 - p)).ln_1p()))
}

/// `ln` of the mixture e-value against "the rate is at most `p`" (alternatives
/// `p + (1 − p)·s` above it) for cumulative `counts`. Decreasing in `p`.
pub fn log_e_rate_at_most(counts: Counts, p: f64) -> f64 {
    let p = clamp_probability(p);
    // q/p = 1 + s·(1 − p)/p; (1 − q)/(1 − p) = 1 − s.
    log_mixture(counts, |s| ((s * (1.0 - p) / p).ln_1p(), (-s).ln_1p()))
}

/// Bisection on `ln p` between a rate `inside` the confidence sequence and one `outside` it;
/// the end returned is the one outside (so the bound is rounded outwards).
fn bisect(inside: f64, outside: f64, is_inside: impl Fn(f64) -> bool) -> f64 {
    let (mut inside_log, mut outside_log) = (inside.ln(), outside.ln());
    for _ in 0..BISECTION_STEPS {
        let mid = (inside_log + outside_log) / 2.0;
        if is_inside(mid.exp()) {
            inside_log = mid;
        } else {
            outside_log = mid;
        }
    }
    outside_log.exp()
}

/// The smallest rate considered (the bounds' bisection starts there).
const SMALLEST_RATE: f64 = 1e-12;

/// The upper end of the `1 − δ` confidence sequence of a rate at cumulative `counts`: the
/// largest `p` whose [`log_e_rate_at_least`] stays below `ln(1/δ)` (rounded up). With
/// probability ≥ 1 − δ it is at least the true rate at every period at once (Ville).
pub fn upper_confidence_bound(counts: Counts, delta: f64) -> f64 {
    let level = (1.0 / delta).ln();
    let is_inside = |p: f64| log_e_rate_at_least(counts, p) < level;
    let top = 1.0 - PROBABILITY_FLOOR;
    if counts.total == 0 || is_inside(top) {
        return 1.0;
    }
    // At or below the observed rate every alternative fits worse than p: inside. A guess a
    // few standard errors above it is usually outside, which narrows the bracket.
    let observed = counts.rate().clamp(SMALLEST_RATE, top);
    let guess = (2.0 * observed + 20.0 / counts.total as f64).min(top);
    let outside = if is_inside(guess) { top } else { guess };
    bisect(observed, outside, is_inside)
}

/// The lower end of the `1 − δ` confidence sequence (the mirror of
/// [`upper_confidence_bound`], rounded down; 0 when nothing rules out a rate of 0).
pub fn lower_confidence_bound(counts: Counts, delta: f64) -> f64 {
    let level = (1.0 / delta).ln();
    let is_inside = |p: f64| log_e_rate_at_most(counts, p) < level;
    if counts.total == 0 || is_inside(SMALLEST_RATE) {
        return 0.0;
    }
    let observed = counts.rate().clamp(SMALLEST_RATE, 1.0 - PROBABILITY_FLOOR);
    let guess = (observed / 2.0 - 10.0 / counts.total as f64).max(SMALLEST_RATE);
    let outside = if is_inside(guess) { SMALLEST_RATE } else { guess };
    bisect(observed, outside, is_inside)
}

/// The regression test's alternative for null `p0` and multiplier `m > 1`.
fn regression_alternative(p0: f64, multiplier: f64) -> f64 {
    (multiplier * p0)
        .max(p0 + (multiplier - 1.0) * REGRESSION_FLOOR)
        .min(1.0 - PROBABILITY_FLOOR)
}

/// The weight of the e-process started at period `start` (0-based) in a window of at most
/// `horizon` periods: 1/2 for the first period (a canary's regression starts with green),
/// `1/(2(horizon − 1))` for each later one (a leak that starts late); 0 past the horizon. The
/// weights sum to 1 (a horizon of 1 puts it all on the first period).
pub fn start_weight(start: usize, horizon: usize) -> f64 {
    let horizon = horizon.max(1);
    match start {
        0 if horizon == 1 => 1.0,
        0 => 0.5,
        s if s < horizon => 0.5 / (horizon - 1) as f64,
        _ => 0.0,
    }
}

/// The regression e-process of green's periods, scanned over start periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionScan {
    /// `ln` of the e-value: the [`start_weight`]-weighted sum over start periods (0 without
    /// periods).
    pub log_e: f64,
    /// The start period (index into green's periods) that contributes most to it.
    pub start: usize,
    /// `ln` of the e-value started at the first period alone, unweighted (what a test without
    /// a scan sees).
    pub log_e_from_first: f64,
}

/// Green's regression e-processes: for each start period `s`, the uniform mixture over
/// [`REGRESSION_MULTIPLIERS`] of `∏_{u=s..t} (q/p0_u)^x_u ((1−q)/(1−p0_u))^(n_u−x_u)`, with
/// `q = m·p0_u` and `nulls[u] = p0_u` (blue's upper bound + the tolerance, at period `u`),
/// summed with the weights [`start_weight`] over the `horizon`.
///
/// Why each factor has conditional expectation ≤ 1 when green's rate `p ≤ p0`: for one trial
/// it is `p·q/p0 + (1 − p)(1 − q)/(1 − p0)`, linear in `p`, equal to 1 at `p = p0`, and its
/// slope `q/p0 − (1 − q)/(1 − p0)` is ≥ 0 when `q ≥ p0`; so it is ≤ 1 for every `p ≤ p0`,
/// and a product of such factors (trials independent given the past) is a test
/// supermartingale, as is a mixture of them, and as is the weighted sum over start periods
/// (each term is 1 until its start).
pub fn regression_scan(green: &[Counts], nulls: &[f64], horizon: usize) -> RegressionScan {
    let periods = green.len().min(nulls.len());
    // prefix[k][u]: the sum of alternative k's log factors over periods 0..u.
    let prefix: Vec<Vec<f64>> = REGRESSION_MULTIPLIERS
        .iter()
        .map(|&m| {
            let mut sums = vec![0.0];
            for u in 0..periods {
                let p0 = clamp_probability(nulls[u]);
                let q = regression_alternative(p0, m);
                let factor = if q > p0 {
                    log_likelihood_ratio(green[u], q, p0)
                } else {
                    0.0
                };
                sums.push(sums[u] + factor);
            }
            sums
        })
        .collect();
    let from = |start: usize| -> f64 {
        let logs: Vec<f64> = prefix.iter().map(|sums| sums[periods] - sums[start]).collect();
        log_mean_exp(&logs)
    };
    if periods == 0 {
        return RegressionScan {
            log_e: 0.0,
            start: 0,
            log_e_from_first: 0.0,
        };
    }
    // Started periods contribute weight × their e-value; the periods of the horizon not yet
    // started contribute their weight × 1.
    let mut weighted: Vec<f64> = (0..periods)
        .filter(|&start| start_weight(start, horizon) > 0.0)
        .map(|start| start_weight(start, horizon).ln() + from(start))
        .collect();
    let (start, _) = weighted.iter().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |best, (s, &l)| if l > best.1 { (s, l) } else { best },
    );
    let not_started: f64 = (periods..horizon.max(1)).map(|s| start_weight(s, horizon)).sum();
    if not_started > 0.0 {
        weighted.push(not_started.ln());
    }
    // ln Σ exp(weighted) = ln(mean) + ln(count).
    let log_e = log_mean_exp(&weighted) + (weighted.len() as f64).ln();
    RegressionScan {
        log_e,
        start,
        log_e_from_first: from(0),
    }
}

/// `ln` of green's no-worse e-process from its first period: the uniform mixture over
/// [`NO_WORSE_MULTIPLIERS`] of `∏_u (q/p0_u)^x_u ((1−q)/(1−p0_u))^(n_u−x_u)` with
/// `q = m·p0_u`, `nulls[u] = p0_u` (blue's lower bound + the tolerance). A period whose null is
/// 0 gives no evidence (factor 1). Valid when green's rate `p ≥ p0`: the same linear argument
/// as [`regression_scan`], the slope now ≤ 0 because `q ≤ p0`.
pub fn no_worse_e(green: &[Counts], nulls: &[f64]) -> f64 {
    let periods = green.len().min(nulls.len());
    let logs: Vec<f64> = NO_WORSE_MULTIPLIERS
        .iter()
        .map(|&m| {
            (0..periods)
                .map(|u| {
                    if nulls[u] <= 0.0 {
                        return 0.0;
                    }
                    let p0 = clamp_probability(nulls[u]);
                    log_likelihood_ratio(green[u], m * p0, p0)
                })
                .sum()
        })
        .collect();
    log_mean_exp(&logs)
}

/// The `p`-th percentile (0 < p ≤ 100) of ascending `sorted_samples` by nearest rank: the
/// value at rank ⌈p/100 · n⌉ (NaN when there are no samples).
pub fn percentile(sorted_samples: &[f64], p: f64) -> f64 {
    if sorted_samples.is_empty() {
        return f64::NAN;
    }
    let n = sorted_samples.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted_samples[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(bad: u64, total: u64) -> Counts {
        Counts { bad, total }
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn likelihood_ratios_match_hand_computed_values() {
        // (counts, q, p, ln ratio by hand)
        let table = [
            // 2 ln(0.4/0.2) + 8 ln(0.6/0.8) = 1.386294 − 2.301457
            (counts(2, 10), 0.4, 0.2, -0.915_163),
            // 100 ln(0.99/0.98)
            (counts(0, 100), 0.01, 0.02, 1.015_237),
            // 5 ln(0.5/0.1)
            (counts(5, 5), 0.5, 0.1, 8.047_190),
            (counts(0, 0), 0.3, 0.1, 0.0),
            (counts(3, 10), 0.2, 0.2, 0.0),
        ];
        for (c, q, p, expected) in table {
            let got = log_likelihood_ratio(c, q, p);
            assert!(close(got, expected, 1e-5), "{c:?} q={q} p={p}: {got} vs {expected}");
        }
    }

    #[test]
    fn log_mean_exp_is_the_log_of_the_mean() {
        assert!(close(log_mean_exp(&[0.0, 3f64.ln()]), 2f64.ln(), 1e-12));
        assert!(close(log_mean_exp(&[1000.0, 1000.0]), 1000.0, 1e-9));
        assert_eq!(log_mean_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(e_value(1e6), E_VALUE_CEILING);
        assert!(close(e_value(2f64.ln()), 2.0, 1e-12));
    }

    #[test]
    fn the_confidence_mixture_matches_a_hand_computed_value() {
        // One good trial at p = 0.5: each term is 1 + s, so the mixture is 1 + mean(s), and
        // mean(2^-k, k = 1..16) = (1 − 2^-16)/16.
        let expected = (1.0 + (1.0 - 0.5f64.powi(16)) / 16.0).ln();
        assert!(close(log_e_rate_at_least(counts(0, 1), 0.5), expected, 1e-12));
        // Mirror: one bad trial at p = 0.5 against "at most 0.5".
        assert!(close(log_e_rate_at_most(counts(1, 1), 0.5), expected, 1e-12));
    }

    #[test]
    fn confidence_bounds_bracket_the_rate_and_tighten_with_trials() {
        let delta = 0.0025;
        let mut widths = Vec::new();
        for (bad, total) in [(10, 1_000), (100, 10_000), (1_000, 100_000)] {
            let c = counts(bad, total);
            let (lower, upper) = (lower_confidence_bound(c, delta), upper_confidence_bound(c, delta));
            assert!(lower < 0.01 && 0.01 < upper, "{c:?}: [{lower}, {upper}]");
            // At the bounds the e-value is at the level (400), within the bisection's precision.
            assert!(close(log_e_rate_at_least(c, upper), 400f64.ln(), 1e-6));
            assert!(close(log_e_rate_at_most(c, lower), 400f64.ln(), 1e-6));
            widths.push(upper - lower);
        }
        assert!(widths[0] > widths[1] && widths[1] > widths[2], "{widths:?}");
        assert_eq!(upper_confidence_bound(counts(0, 0), delta), 1.0);
        assert_eq!(lower_confidence_bound(counts(0, 0), delta), 0.0);
        assert_eq!(lower_confidence_bound(counts(0, 1_000), delta), 0.0);
        // 0 of 1 000: the nearest alternative is p/2, so the bound is about 2·ln(400·16)/1000.
        let upper = upper_confidence_bound(counts(0, 1_000), delta);
        assert!(0.015 < upper && upper < 0.02, "{upper}");
        assert_eq!(upper_confidence_bound(counts(5, 5), delta), 1.0);
    }

    #[test]
    fn the_regression_scan_finds_a_change_that_starts_late() {
        let nulls = [0.015; 12];
        let mut green = vec![counts(60, 6_000); 12];
        assert!(regression_scan(&green, &nulls, 20).log_e <= 0.0, "healthy: no evidence");
        for period in green.iter_mut().skip(9) {
            *period = counts(300, 6_000);
        }
        let scan = regression_scan(&green, &nulls, 20);
        assert_eq!(scan.start, 9);
        assert!(scan.log_e > 100.0, "{scan:?}");
        assert!(
            scan.log_e_from_first < scan.log_e,
            "the healthy periods count against the first start"
        );
        // One period, by hand: the mixture of 3 ln m over the multipliers, weighted 1/2, plus
        // the 1/2 of the horizon's other (not started) period.
        let one = regression_scan(&[counts(3, 3)], &[0.015], 2);
        let mixture = log_mean_exp(&REGRESSION_MULTIPLIERS.map(|m| 3.0 * m.ln()));
        let by_hand = (0.5 * mixture.exp() + 0.5).ln();
        assert!(close(one.log_e, by_hand, 1e-9), "{one:?} vs {by_hand}");
        assert!(close(one.log_e_from_first, mixture, 1e-9));
        assert_eq!(regression_scan(&[], &[], 15).log_e, 0.0);
    }

    #[test]
    fn start_weights_sum_to_one_over_the_horizon() {
        for horizon in [1, 2, 15, 20] {
            let sum: f64 = (0..horizon + 5).map(|s| start_weight(s, horizon)).sum();
            assert!(close(sum, 1.0, 1e-12), "{horizon}: {sum}");
        }
        assert_eq!(start_weight(0, 15), 0.5);
        assert_eq!(start_weight(14, 15), 0.5 / 14.0);
        assert_eq!(start_weight(15, 15), 0.0);
    }

    #[test]
    fn a_null_of_zero_still_has_alternatives_above_it() {
        assert!(regression_alternative(0.0, 1.25) > 0.0);
        assert!(regression_scan(&[counts(5, 100)], &[0.0], 1).log_e > 10.0);
        assert_eq!(no_worse_e(&[counts(0, 1_000)], &[0.0]), 0.0, "no evidence possible");
    }

    #[test]
    fn the_no_worse_e_value_matches_a_hand_computed_value() {
        // 0 bad of 100 against 0.02: each term is 100 ln((1 − 0.02m)/0.98).
        let by_hand = log_mean_exp(&NO_WORSE_MULTIPLIERS.map(|m| 100.0 * ((1.0 - 0.02 * m) / 0.98f64).ln()));
        assert!(close(no_worse_e(&[counts(0, 100)], &[0.02]), by_hand, 1e-9));
        assert!(by_hand > 0.0);
    }

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        for (p, expected) in [
            (99.0, 10.0),
            (50.0, 5.0),
            (10.0, 1.0),
            (0.1, 1.0),
            (100.0, 10.0),
            (91.0, 10.0),
            (90.0, 9.0),
        ] {
            assert_eq!(percentile(&samples, p), expected, "p{p}");
        }
        assert!(percentile(&[], 99.0).is_nan());
    }
}
