//! [`judge`]: evidence to a verdict, by the e-processes of [`super::stats`].
//!
//! The error budget `alpha` is split evenly over the M metrics, and each metric's half-and-half
//! between blue's confidence sequence and green's test (Bonferroni):
//! - blue's bounds are the `1 − alpha/(2M)` confidence sequence (e-value level `2M/alpha`);
//! - **regressed** when green's regression e-value reaches `2M/alpha`: the sum over start
//!   periods of the e-process started there, weighted 1/2 for the first period and
//!   `1/(2(H − 1))` for each other period of the horizon `H = horizon_periods` (a sum of
//!   test supermartingales with weights summing to 1 is one: no Bonferroni factor `H`; a
//!   period past the horizon starts no e-process of its own);
//! - **no worse** (only with `early_pass`) when green's no-worse e-value from the first period
//!   reaches `2M/alpha`.
//!
//! A false abort needs blue's upper bound to fail (≤ alpha/(2M)) or green's test to fire
//! while it holds (≤ alpha/(2M)), per metric: ≤ alpha in all. An early pass of a green worse
//! than the tolerance is bounded the same way by the lower bound and the no-worse test.

use super::stats::{
    e_value, lower_confidence_bound, no_worse_e, regression_scan, upper_confidence_bound, PROBABILITY_FLOOR,
};
use super::types::{Baseline, Counts, Evidence, Judgement, MetricEvidence, MetricVerdict, Policy, Real, Verdict};

/// The verdict on `evidence` under `policy`.
pub fn judge(evidence: &Evidence, policy: &Policy) -> Judgement {
    let metric_count = evidence.metrics.len().max(1) as f64;
    let level = 2.0 * metric_count / policy.alpha;
    let requests = evidence
        .metrics
        .first()
        .map_or(0, |metric| Counts::sum(&metric.green).total);
    let enough = requests >= policy.min_requests;
    let metrics: Vec<MetricVerdict> = evidence
        .metrics
        .iter()
        .map(|metric| {
            let horizon = (evidence.horizon_periods as usize).max(1);
            let mut verdict = judge_metric(metric, level, horizon, policy.early_pass);
            if !enough {
                verdict.verdict = Verdict::Continue;
                verdict.explanation = format!(
                    "only {requests} green requests of the {} needed before a verdict: continue ({})",
                    policy.min_requests, verdict.explanation
                );
            }
            verdict
        })
        .collect();
    let verdict = if metrics.iter().any(|m| m.verdict == Verdict::Regressed) {
        Verdict::Regressed
    } else if policy.early_pass && !metrics.is_empty() && metrics.iter().all(|m| m.verdict == Verdict::NoWorse) {
        Verdict::NoWorse
    } else {
        Verdict::Continue
    };
    Judgement { verdict, metrics }
}

/// Blue's `1 − delta` confidence bounds (lower, upper) as of each of green's periods: over
/// blue's cumulative counts up to that period, or over the counts before the window.
fn blue_bounds(blue: &Baseline, periods: usize, delta: f64) -> Vec<(f64, f64)> {
    let bounds = |c: Counts| (lower_confidence_bound(c, delta), upper_confidence_bound(c, delta));
    match blue {
        Baseline::Before(counts) => vec![bounds(*counts); periods],
        Baseline::SameWindow(by_period) => (0..periods)
            .map(|u| bounds(Counts::sum(&by_period[..(u + 1).min(by_period.len())])))
            .collect(),
    }
}

fn judge_metric(metric: &MetricEvidence, level: f64, horizon: usize, early_pass: bool) -> MetricVerdict {
    let threshold_regressed = level;
    let tolerance = metric.tolerance.0.max(0.0);
    let delta = 1.0 / level;
    let bounds = blue_bounds(&metric.blue, metric.green.len(), delta);
    let null = |bound: f64| (bound + tolerance).min(1.0 - PROBABILITY_FLOOR);
    let upper_nulls: Vec<f64> = bounds.iter().map(|&(_, upper)| null(upper)).collect();
    let lower_nulls: Vec<f64> = bounds.iter().map(|&(lower, _)| null(lower)).collect();
    let scan = regression_scan(&metric.green, &upper_nulls, horizon);
    let log_no_worse = no_worse_e(&metric.green, &lower_nulls);
    let (e_regressed, e_no_worse) = (e_value(scan.log_e), e_value(log_no_worse));
    let verdict = if scan.log_e >= threshold_regressed.ln() {
        Verdict::Regressed
    } else if early_pass && log_no_worse >= level.ln() {
        Verdict::NoWorse
    } else {
        Verdict::Continue
    };
    let green = Counts::sum(&metric.green);
    let blue = match &metric.blue {
        Baseline::Before(counts) => *counts,
        Baseline::SameWindow(by_period) => Counts::sum(by_period),
    };
    let compared = format!(
        "green {:.2}% of {} vs blue {:.2}% of {} (+{:.2} points allowed)",
        green.rate() * 100.0,
        green.total,
        blue.rate() * 100.0,
        blue.total,
        tolerance * 100.0
    );
    let since = if scan.start > 0 {
        format!(" from period {}", scan.start + 1)
    } else {
        String::new()
    };
    let explanation = match verdict {
        Verdict::Regressed => {
            format!("{compared}: e={e_regressed:.1e}{since} ≥ {threshold_regressed:.1e}: regressed")
        }
        Verdict::NoWorse => format!("{compared}: no-worse e={e_no_worse:.1e} ≥ {level:.1e}: no worse"),
        Verdict::Continue if early_pass => format!(
            "{compared}: e={e_regressed:.1e}{since} < {threshold_regressed:.1e} and no-worse e={e_no_worse:.1e} < {level:.1e}: continue"
        ),
        Verdict::Continue => format!("{compared}: e={e_regressed:.1e}{since} < {threshold_regressed:.1e}: continue"),
    };
    MetricVerdict {
        metric: metric.metric.clone(),
        green,
        blue,
        tolerance: Real::new(tolerance),
        e_regressed: Real::new(e_regressed),
        e_no_worse: Real::new(e_no_worse),
        threshold_regressed: Real::new(threshold_regressed),
        threshold_no_worse: Real::new(level),
        verdict,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn counts(bad: u64, total: u64) -> Counts {
        Counts { bad, total }
    }

    fn evidence(green: Vec<Counts>, blue: Baseline, tolerance: f64) -> Evidence {
        Evidence {
            metrics: vec![MetricEvidence {
                metric: "error_rate".into(),
                tolerance: Real(tolerance),
                green,
                blue,
                thresholds_s: None,
            }],
            horizon_periods: 15,
        }
    }

    const CANARY: Policy = Policy {
        alpha: 0.01,
        min_requests: 200,
        early_pass: true,
    };
    const BAKE: Policy = Policy {
        early_pass: false,
        ..CANARY
    };

    #[test]
    fn verdicts_on_hand_made_windows() {
        // (what, green per period, blue, tolerance, policy, verdict)
        let table = [
            (
                "5% against 1% in three periods",
                vec![counts(30, 600); 3],
                Baseline::SameWindow(vec![counts(54, 5_400); 3]),
                0.005,
                CANARY,
                Verdict::Regressed,
            ),
            (
                "the same rates",
                vec![counts(6, 600); 3],
                Baseline::SameWindow(vec![counts(54, 5_400); 3]),
                0.005,
                CANARY,
                Verdict::Continue,
            ),
            (
                "5% against 1% with too few requests",
                vec![counts(5, 100)],
                Baseline::SameWindow(vec![counts(54, 5_400)]),
                0.005,
                CANARY,
                Verdict::Continue,
            ),
            (
                "no errors in 20 000 against 5%",
                vec![counts(0, 10_000); 2],
                Baseline::Before(counts(500, 10_000)),
                0.0,
                CANARY,
                Verdict::NoWorse,
            ),
            (
                "no early pass in the bake window",
                vec![counts(0, 10_000); 2],
                Baseline::Before(counts(500, 10_000)),
                0.0,
                BAKE,
                Verdict::Continue,
            ),
            (
                "a leak in the bake window's last period",
                [vec![counts(60, 6_000); 9], vec![counts(300, 6_000)]].concat(),
                Baseline::Before(counts(600, 60_000)),
                0.005,
                BAKE,
                Verdict::Regressed,
            ),
        ];
        for (what, green, blue, tolerance, policy, expected) in table {
            let judgement = judge(&evidence(green, blue, tolerance), &policy);
            assert_eq!(judgement.verdict, expected, "{what}: {judgement:#?}");
            assert_eq!(judgement.metrics[0].verdict, expected, "{what}");
        }
    }

    #[test]
    fn every_field_is_filled_and_explained() {
        let judgement = judge(
            &evidence(
                vec![counts(30, 600); 3],
                Baseline::SameWindow(vec![counts(54, 5_400); 3]),
                0.005,
            ),
            &CANARY,
        );
        let m = &judgement.metrics[0];
        assert_eq!(m.metric, "error_rate");
        assert_eq!((m.green, m.blue), (counts(90, 1_800), counts(162, 16_200)));
        assert_eq!(m.tolerance, Real(0.005));
        // One metric, alpha 0.01: 2/0.01 = 200 on each side.
        assert_eq!(m.threshold_no_worse, Real(200.0));
        assert_eq!(m.threshold_regressed, Real(200.0));
        assert!(m.e_regressed.0 >= 200.0 && m.e_no_worse.0 < 1.0, "{m:#?}");
        assert!(
            m.explanation
                .starts_with("green 5.00% of 1800 vs blue 1.00% of 16200 (+0.50 points allowed): e="),
            "{}",
            m.explanation
        );
        assert!(m.explanation.ends_with("≥ 2.0e2: regressed"), "{}", m.explanation);

        let few = judge(
            &evidence(
                vec![counts(5, 100)],
                Baseline::SameWindow(vec![counts(54, 5_400)]),
                0.005,
            ),
            &CANARY,
        );
        assert!(
            few.metrics[0]
                .explanation
                .starts_with("only 100 green requests of the 200 needed"),
            "{}",
            few.metrics[0].explanation
        );
    }

    #[test]
    fn identical_counts_never_regress_nor_pass_early_when_worse() {
        // A/A, exactly: green's counts are blue's, period after period, for 60 periods.
        let mut green = Vec::new();
        for _ in 0..60 {
            green.push(counts(10, 1_000));
            let judgement = judge(
                &evidence(green.clone(), Baseline::SameWindow(green.clone()), 0.0),
                &CANARY,
            );
            assert_ne!(judgement.verdict, Verdict::Regressed, "period {}", green.len());
        }
        // Green just beyond the tolerance (1.6% against 1% + 0.5 points) never passes early.
        let mut worse = Vec::new();
        let mut blue = Vec::new();
        for _ in 0..60 {
            worse.push(counts(16, 1_000));
            blue.push(counts(10, 1_000));
            let judgement = judge(
                &evidence(worse.clone(), Baseline::SameWindow(blue.clone()), 0.005),
                &CANARY,
            );
            assert_ne!(judgement.verdict, Verdict::NoWorse, "period {}", worse.len());
        }
    }

    #[test]
    fn random_a_a_canaries_rarely_regress() {
        // 200 seeded A/A canaries of 15 periods at 1%, 600 green and 5 400 blue trials a
        // period, judged after every period: the bound is alpha = 1%, so 2 at most on average.
        let mut rng = Rng::new(7);
        let mut draw = |n: u64| counts((0..n).filter(|_| rng.next_u64().is_multiple_of(100)).count() as u64, n);
        let mut aborted = 0;
        for _ in 0..200 {
            let (mut green, mut blue) = (Vec::new(), Vec::new());
            for _ in 0..15 {
                green.push(draw(600));
                blue.push(draw(5_400));
                let judgement = judge(
                    &evidence(green.clone(), Baseline::SameWindow(blue.clone()), 0.0),
                    &CANARY,
                );
                if judgement.verdict == Verdict::Regressed {
                    aborted += 1;
                    break;
                }
            }
        }
        assert!(aborted <= 2, "{aborted} of 200 A/A canaries aborted");
    }

    #[test]
    fn more_bad_events_never_lower_the_regression_e_value() {
        let blue = Baseline::SameWindow(vec![counts(54, 5_400); 2]);
        let mut last = 0.0;
        for bad in [0, 3, 6, 10, 20, 40] {
            let judgement = judge(&evidence(vec![counts(bad, 600); 2], blue.clone(), 0.005), &CANARY);
            let e = judgement.metrics[0].e_regressed.0;
            assert!(e >= last, "{bad}: {e} < {last}");
            last = e;
        }
    }

    #[test]
    fn one_regressed_metric_decides_and_every_metric_must_pass_early() {
        let fine = MetricEvidence {
            metric: "latency_p99".into(),
            tolerance: Real(0.0),
            green: vec![counts(0, 10_000); 2],
            blue: Baseline::Before(counts(500, 10_000)),
            thresholds_s: None,
        };
        let mut both = evidence(vec![counts(0, 10_000); 2], Baseline::Before(counts(500, 10_000)), 0.0);
        both.metrics.push(fine.clone());
        assert_eq!(judge(&both, &CANARY).verdict, Verdict::NoWorse);
        both.metrics[0].green = vec![counts(5_000, 10_000); 2];
        assert_eq!(judge(&both, &CANARY).verdict, Verdict::Regressed);
        both.metrics[0].green = vec![counts(500, 10_000); 2];
        assert_eq!(judge(&both, &CANARY).verdict, Verdict::Continue);
        // Two metrics: each level doubles (4/alpha = 400).
        assert_eq!(judge(&both, &CANARY).metrics[1].threshold_no_worse, Real(400.0));
    }
}
