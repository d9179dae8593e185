//! The `analysis` section: canary analysis by Monte Carlo, pure (no emulator, no Lambda
//! build). Seeded request streams (`greenlight_core::rng`, one seed per run) are reduced to
//! counts per metric period the way the adapter reduces CloudWatch's, judged by
//! `greenlight_core::analysis::judge` after every period, and the same streams are judged by
//! two peers: a Flagger-style fixed-threshold check with a failed-check budget, and a
//! Kayenta-style fixed-horizon Mann–Whitney U comparison.

use greenlight_core::analysis::{
    judge, percentile, regression_scan, upper_confidence_bound, Baseline, Counts, Evidence, MetricEvidence, Policy,
    Real, Verdict, PROBABILITY_FLOOR,
};
use greenlight_core::rng::Rng;

/// The error budget.
pub const ALPHA: f64 = 0.01;
/// Requests per second to the service, and green's share in a canary step.
pub const TOTAL_RPS: u64 = 100;
pub const CANARY_WEIGHT_PCT: u64 = 10;
/// The metric period (seconds).
pub const PERIOD_S: u64 = 60;
/// The error rate's tolerance (a fraction: 0.5 points).
pub const TOLERANCE: f64 = 0.005;
/// The latency metric: green's requests slower than `MAX_RATIO` × blue's p99.
pub const LATENCY_PERCENTILE: f64 = 99.0;
pub const MAX_RATIO: f64 = 1.2;
pub const MIN_REQUESTS: u64 = 200;
/// A canary step: `max_step_s` 900 s, 15 periods.
pub const CANARY_PERIODS: usize = 15;
/// The bake window: 20 periods at 100 %, blue's baseline the 10 periods before.
pub const BAKE_PERIODS: usize = 20;
pub const BASELINE_PERIODS: usize = 10;
/// The leak starts after this many healthy bake periods.
pub const LEAK_AFTER: usize = 10;
/// Blue's response times: lognormal, median 50 ms, σ 0.5 (p99 ≈ 160 ms).
pub const MEDIAN_S: f64 = 0.050;
pub const SIGMA: f64 = 0.5;
pub const BLUE_ERROR_RATE: f64 = 0.01;
/// Flagger: request-success-rate ≥ 99 %, request-duration p99 ≤ 500 ms, `threshold: 5`.
pub const FLAGGER_MAX_ERROR_RATE: f64 = 0.01;
pub const FLAGGER_MAX_P99_S: f64 = 0.5;
pub const FLAGGER_THRESHOLD: u32 = 5;
/// Kayenta: one comparison after this many periods (per-period values, one-sided U test).
pub const KAYENTA_PERIODS: usize = 5;

/// How a version serves requests.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    error_rate: f64,
    /// Every response time multiplied by this (1: blue's).
    slowdown: f64,
}

const HEALTHY: Behaviour = Behaviour {
    error_rate: BLUE_ERROR_RATE,
    slowdown: 1.0,
};

/// One kind of run.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A canary step at 10 %: green and blue in the same periods; green serves as given.
    Canary(Behaviour),
    /// The bake window: green at 100 % against blue's counts before it; green healthy, then
    /// serving as given from period `LEAK_AFTER + 1` (or healthy throughout: A/A).
    Bake { leak: Option<Behaviour> },
}

/// A scenario of the section.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    kind: Kind,
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// A/A: the share of runs reverted must stay ≤ alpha.
    FalseAborts,
    /// At least `share` of the runs reverted within `periods` periods (of the onset).
    Detection { share: f64, periods: f64 },
    /// No target: reported.
    Reported,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "A/A canary",
        kind: Kind::Canary(HEALTHY),
        target: Target::FalseAborts,
    },
    Scenario {
        name: "errors: green 5 %, blue 1 %",
        kind: Kind::Canary(Behaviour {
            error_rate: 0.05,
            slowdown: 1.0,
        }),
        target: Target::Detection {
            share: 0.95,
            periods: 3.0,
        },
    },
    Scenario {
        name: "latency: green ×1.5",
        kind: Kind::Canary(Behaviour {
            error_rate: BLUE_ERROR_RATE,
            slowdown: 1.5,
        }),
        target: Target::Detection {
            share: 0.95,
            periods: 5.0,
        },
    },
    Scenario {
        name: "A/A bake window",
        kind: Kind::Bake { leak: None },
        target: Target::FalseAborts,
    },
    Scenario {
        name: "bake-window leak: 5 % errors after 10 periods",
        kind: Kind::Bake {
            leak: Some(Behaviour {
                error_rate: 0.05,
                slowdown: 1.0,
            }),
        },
        target: Target::Reported,
    },
];

/// The methods compared, in the table's order.
pub const METHODS: [&str; 4] = [
    "greenlight",
    "greenlight, no scan (first period only)",
    "Flagger-style",
    "Kayenta-style",
];

/// What one method did over a scenario's runs.
#[derive(Debug, Clone, Default)]
pub struct MethodFigures {
    pub runs: usize,
    /// Periods (since the onset, for a leak) until reverted, one per reverted run.
    pub reverted_after: Vec<f64>,
    /// Periods until the first early pass (NoWorse), one per run that had one.
    pub passed_after: Vec<f64>,
}

/// One scenario's figures, by method (in [`METHODS`]' order).
#[derive(Debug, Clone)]
pub struct ScenarioFigures {
    pub name: &'static str,
    pub description: String,
    target: Target,
    pub methods: Vec<MethodFigures>,
}

/// Everything the section measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub canaries: usize,
    pub scenarios: Vec<ScenarioFigures>,
    pub seconds: f64,
}

/// A seeded source of uniform and normal draws.
struct Draws {
    rng: Rng,
    spare_normal: Option<f64>,
}

impl Draws {
    fn new(seed: u64) -> Draws {
        Draws {
            rng: Rng::new(seed),
            spare_normal: None,
        }
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, both draws used).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let radius = (-2.0 * u.ln()).sqrt();
        let angle = std::f64::consts::TAU * v;
        self.spare_normal = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

/// One period of one version's requests: its errors and its response times (in the order
/// served: sorting them all would cost most of the section's time in a debug build).
struct Period {
    errors: Counts,
    latencies_s: Vec<f64>,
}

impl Period {
    fn serve(draws: &mut Draws, requests: u64, behaviour: Behaviour) -> Period {
        let mut bad = 0;
        let mut latencies_s = Vec::with_capacity(requests as usize);
        for _ in 0..requests {
            if draws.uniform() < behaviour.error_rate {
                bad += 1;
            }
            latencies_s.push(MEDIAN_S * behaviour.slowdown * (SIGMA * draws.normal()).exp());
        }
        Period {
            errors: Counts { bad, total: requests },
            latencies_s,
        }
    }

    /// Requests slower than `threshold_s`.
    fn slower_than(&self, threshold_s: f64) -> Counts {
        Counts {
            bad: self.latencies_s.iter().filter(|&&l| l > threshold_s).count() as u64,
            total: self.latencies_s.len() as u64,
        }
    }

    fn p99(&self) -> f64 {
        nearest_rank(&mut self.latencies_s.clone(), LATENCY_PERCENTILE)
    }
}

/// The `p`-th percentile of `samples` by nearest rank, as `stats::percentile` computes it on
/// sorted samples, by selection instead of a sort (reorders `samples`).
fn nearest_rank(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    *samples.select_nth_unstable_by(index, f64::total_cmp).1
}

/// The evidence of the two metrics (error rate, latency), as the adapter builds it.
fn evidence(green: &[Period], blue: Baseline, blue_latency: Baseline, threshold_s: f64, horizon: usize) -> Evidence {
    let green_errors = green.iter().map(|p| p.errors).collect();
    let green_slow = green.iter().map(|p| p.slower_than(threshold_s)).collect();
    Evidence {
        metrics: vec![
            MetricEvidence {
                metric: "error_rate".into(),
                tolerance: Real(TOLERANCE),
                green: green_errors,
                blue,
                thresholds_s: None,
            },
            MetricEvidence {
                metric: "latency_p99".into(),
                tolerance: Real(0.0),
                green: green_slow,
                blue: blue_latency,
                thresholds_s: Some((Real(threshold_s), Real(threshold_s / MAX_RATIO))),
            },
        ],
        horizon_periods: horizon as u32,
    }
}

/// Whether green's regression e-process started at the first period only (no scan) reaches
/// `2M/alpha`, with the nulls `judge` uses.
fn regressed_without_scan(evidence: &Evidence) -> bool {
    let level = 2.0 * evidence.metrics.len() as f64 / ALPHA;
    evidence.metrics.iter().any(|metric| {
        let upper =
            |c: Counts| (upper_confidence_bound(c, 1.0 / level) + metric.tolerance.0).min(1.0 - PROBABILITY_FLOOR);
        let nulls: Vec<f64> = match &metric.blue {
            Baseline::Before(c) => vec![upper(*c); metric.green.len()],
            Baseline::SameWindow(blue) => (1..=metric.green.len())
                .map(|u| upper(Counts::sum(&blue[..u])))
                .collect(),
        };
        regression_scan(&metric.green, &nulls, evidence.horizon_periods as usize).log_e_from_first >= level.ln()
    })
}

/// The upper tail of the standard normal, `P(Z > z)` (erfc by Numerical Recipes' Chebyshev
/// fit, fractional error < 1.2e-7).
pub fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// The one-sided Mann–Whitney U test that `green`'s values are larger than `blue`'s: the
/// p-value by the normal approximation with the tie correction (no continuity correction);
/// 1 when every value is tied.
pub fn mann_whitney_greater(green: &[f64], blue: &[f64]) -> f64 {
    let (n1, n2) = (green.len() as f64, blue.len() as f64);
    if green.is_empty() || blue.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = green
        .iter()
        .map(|&v| (v, true))
        .chain(blue.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut green_ranks, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let tied = (j - i + 1) as f64;
        ties += tied * tied * tied - tied;
        green_ranks += rank * all[i..=j].iter().filter(|(_, green)| *green).count() as f64;
        i = j + 1;
    }
    let u = green_ranks - n1 * (n1 + 1.0) / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    normal_upper_tail((u - n1 * n2 / 2.0) / variance.sqrt())
}

/// Kayenta-style: each metric's per-period values of green against blue's; fails when either
/// is significantly larger at alpha.
fn kayenta_fails(green: &[Period], blue: &[Period]) -> bool {
    let rates = |ps: &[Period]| ps.iter().map(|p| p.errors.rate()).collect::<Vec<_>>();
    let p99s = |ps: &[Period]| ps.iter().map(Period::p99).collect::<Vec<_>>();
    mann_whitney_greater(&rates(green), &rates(blue)) < ALPHA || mann_whitney_greater(&p99s(green), &p99s(blue)) < ALPHA
}

/// Flagger-style: one interval's check fails when the error rate or the p99 is over its fixed
/// maximum.
fn flagger_check_fails(green: &Period) -> bool {
    green.errors.rate() > FLAGGER_MAX_ERROR_RATE || green.p99() > FLAGGER_MAX_P99_S
}

/// What the four methods did in one run: the period (1-based, since the start) each reverted
/// at, and greenlight's first early pass.
#[derive(Debug, Default)]
struct RunOutcome {
    reverted_at: [Option<usize>; 4],
    passed_at: Option<usize>,
}

fn canary_run(seed: u64, green_behaviour: Behaviour, compare_scan: bool) -> RunOutcome {
    let mut draws = Draws::new(seed);
    let green_requests = TOTAL_RPS * CANARY_WEIGHT_PCT / 100 * PERIOD_S;
    let blue_requests = TOTAL_RPS * (100 - CANARY_WEIGHT_PCT) / 100 * PERIOD_S;
    let policy = Policy {
        alpha: ALPHA,
        min_requests: MIN_REQUESTS,
        early_pass: true,
    };
    let (mut green, mut blue) = (Vec::new(), Vec::new());
    let mut threshold_s = 0.0;
    let mut blue_slow = Vec::new();
    let mut failed_checks = 0;
    let mut outcome = RunOutcome::default();
    for period in 1..=CANARY_PERIODS {
        green.push(Period::serve(&mut draws, green_requests, green_behaviour));
        blue.push(Period::serve(&mut draws, blue_requests, HEALTHY));
        if period == 1 {
            threshold_s = MAX_RATIO * blue[0].p99();
        }
        blue_slow.push(blue[period - 1].slower_than(threshold_s / MAX_RATIO));
        let evidence = evidence(
            &green,
            Baseline::SameWindow(blue.iter().map(|p| p.errors).collect()),
            Baseline::SameWindow(blue_slow.clone()),
            threshold_s,
            CANARY_PERIODS,
        );
        if outcome.reverted_at[0].is_none() {
            match judge(&evidence, &policy).verdict {
                Verdict::Regressed => outcome.reverted_at[0] = Some(period),
                Verdict::NoWorse => {
                    outcome.passed_at.get_or_insert(period);
                }
                Verdict::Continue => {}
            }
        }
        if compare_scan && outcome.reverted_at[1].is_none() && regressed_without_scan(&evidence) {
            outcome.reverted_at[1] = Some(period);
        }
        if flagger_check_fails(&green[period - 1]) {
            failed_checks += 1;
        }
        if failed_checks >= FLAGGER_THRESHOLD && outcome.reverted_at[2].is_none() {
            outcome.reverted_at[2] = Some(period);
        }
        if period == KAYENTA_PERIODS && kayenta_fails(&green, &blue) {
            outcome.reverted_at[3] = Some(period);
        }
    }
    outcome
}

fn bake_run(seed: u64, leak: Option<Behaviour>) -> RunOutcome {
    let mut draws = Draws::new(seed);
    let requests = TOTAL_RPS * PERIOD_S;
    let before: Vec<Period> = (0..BASELINE_PERIODS)
        .map(|_| Period::serve(&mut draws, requests, HEALTHY))
        .collect();
    // Blue's p99 over the whole baseline sets the latency threshold.
    let mut all: Vec<f64> = before.iter().flat_map(|p| p.latencies_s.iter().copied()).collect();
    let threshold_s = MAX_RATIO * nearest_rank(&mut all, LATENCY_PERCENTILE);
    let blue_errors = Counts::sum(&before.iter().map(|p| p.errors).collect::<Vec<_>>());
    let blue_slow = Counts::sum(
        &before
            .iter()
            .map(|p| p.slower_than(threshold_s / MAX_RATIO))
            .collect::<Vec<_>>(),
    );
    let policy = Policy {
        alpha: ALPHA,
        min_requests: MIN_REQUESTS,
        early_pass: false,
    };
    let mut green = Vec::new();
    let mut failed_checks = 0;
    let mut outcome = RunOutcome::default();
    for period in 1..=BAKE_PERIODS {
        let behaviour = match leak {
            Some(leaking) if period > LEAK_AFTER => leaking,
            _ => HEALTHY,
        };
        green.push(Period::serve(&mut draws, requests, behaviour));
        let evidence = evidence(
            &green,
            Baseline::Before(blue_errors),
            Baseline::Before(blue_slow),
            threshold_s,
            BAKE_PERIODS,
        );
        if outcome.reverted_at[0].is_none() && judge(&evidence, &policy).verdict == Verdict::Regressed {
            outcome.reverted_at[0] = Some(period);
        }
        if outcome.reverted_at[1].is_none() && regressed_without_scan(&evidence) {
            outcome.reverted_at[1] = Some(period);
        }
        if flagger_check_fails(&green[period - 1]) {
            failed_checks += 1;
        }
        if failed_checks >= FLAGGER_THRESHOLD && outcome.reverted_at[2].is_none() {
            outcome.reverted_at[2] = Some(period);
        }
        // Kayenta-style in a bake window: consecutive fixed windows of 5 periods, each against
        // blue's baseline periods.
        if period % KAYENTA_PERIODS == 0
            && outcome.reverted_at[3].is_none()
            && kayenta_fails(&green[period - KAYENTA_PERIODS..], &before)
        {
            outcome.reverted_at[3] = Some(period);
        }
    }
    outcome
}

/// Runs every scenario: `canaries` A/A canary runs, a tenth as many (at least 100) of each
/// other scenario.
pub fn measure(canaries: usize, progress: &crate::Progress) -> Figures {
    let started = std::time::Instant::now();
    let mut scenarios = Vec::new();
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let runs = match scenario.kind {
            Kind::Canary(_) if matches!(scenario.target, Target::FalseAborts) => canaries,
            _ => (canaries / 10).max(100),
        };
        progress.say(&format!("analysis: {} ({runs} runs)", scenario.name));
        let onset = match scenario.kind {
            Kind::Bake { leak: Some(_) } => LEAK_AFTER,
            _ => 0,
        };
        let mut methods = vec![
            MethodFigures {
                runs,
                ..Default::default()
            };
            METHODS.len()
        ];
        for run in 0..runs {
            let seed = (index as u64) << 32 | run as u64;
            let outcome = match scenario.kind {
                Kind::Canary(green) => canary_run(seed, green, !matches!(scenario.target, Target::FalseAborts)),
                Kind::Bake { leak } => bake_run(seed, leak),
            };
            for (method, at) in methods.iter_mut().zip(outcome.reverted_at) {
                if let Some(at) = at {
                    // A revert before the onset of a leak is a false abort: counted at 0 (or less).
                    method.reverted_after.push(at as f64 - onset as f64);
                }
            }
            if let Some(at) = outcome.passed_at {
                methods[0].passed_after.push(at as f64);
            }
        }
        if matches!(scenario.kind, Kind::Canary(_)) && matches!(scenario.target, Target::FalseAborts) {
            methods[1].runs = 0; // not measured: the scan's cost is in detection time
        }
        scenarios.push(ScenarioFigures {
            name: scenario.name,
            description: describe(scenario.kind),
            target: scenario.target,
            methods,
        });
    }
    Figures {
        canaries,
        scenarios,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn describe(kind: Kind) -> String {
    let green_rps = TOTAL_RPS * CANARY_WEIGHT_PCT / 100;
    let shown = |b: Behaviour| format!("{:.0} % errors, response times ×{}", b.error_rate * 100.0, b.slowdown);
    match kind {
        Kind::Canary(green) => format!(
            "canary at {CANARY_WEIGHT_PCT} %: green {green_rps} rps ({}), blue {} rps; {CANARY_PERIODS} periods",
            shown(green),
            TOTAL_RPS - green_rps
        ),
        Kind::Bake { leak: None } => format!(
            "bake window: green {TOTAL_RPS} rps healthy for {BAKE_PERIODS} periods against blue's {BASELINE_PERIODS} periods before"
        ),
        Kind::Bake { leak: Some(b) } => format!(
            "bake window: green {TOTAL_RPS} rps, healthy for {LEAK_AFTER} periods then {} until period {BAKE_PERIODS}, against blue's {BASELINE_PERIODS} periods before",
            shown(b)
        ),
    }
}

/// `min / median / 95th / max` by nearest rank.
fn distribution(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{} / {} / {} / {}",
        sorted[0],
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0),
        sorted[sorted.len() - 1]
    )
}

fn percent(part: usize, whole: usize) -> String {
    format!("{:.2} %", 100.0 * part as f64 / whole.max(1) as f64)
}

/// The section's Markdown.
pub fn section(figures: &Figures) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Monte Carlo, `greenlight-bench --only analysis --canaries {}` ({:.0} s on this machine, a debug build). \
         {TOTAL_RPS} requests/s, metric period {PERIOD_S} s, alpha {ALPHA}, error-rate tolerance {} points, \
         latency: p{LATENCY_PERCENTILE} with max_ratio {MAX_RATIO}, min_requests {MIN_REQUESTS}; \
         blue serves {:.0} % errors and lognormal response times (median {:.0} ms, σ {SIGMA}). \
         Each run is judged after every period; *reverted* counts runs with a revert at any period, \
         *periods* are the periods until it (since the onset, for the leak: 0 or less is before it) as \
         min / median / 95th percentile / max.\n",
        figures.canaries,
        figures.seconds,
        TOLERANCE * 100.0,
        BLUE_ERROR_RATE * 100.0,
        MEDIAN_S * 1000.0
    );
    let _ = writeln!(
        out,
        "| scenario | method | runs | reverted | periods until reverted | early passes (periods) | target |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|---|---|");
    for scenario in &figures.scenarios {
        for (name, method) in METHODS.iter().zip(&scenario.methods) {
            if method.runs == 0 {
                continue;
            }
            let reverted = method.reverted_after.len();
            let early = if *name == METHODS[0] && !method.passed_after.is_empty() {
                format!(
                    "{} ({})",
                    percent(method.passed_after.len(), method.runs),
                    distribution(&method.passed_after)
                )
            } else if *name == METHODS[0] {
                "0".into()
            } else {
                "–".into()
            };
            let target = match scenario.target {
                Target::FalseAborts => {
                    let rate = reverted as f64 / method.runs as f64;
                    if rate <= ALPHA {
                        format!("≤ {} %: met", ALPHA * 100.0)
                    } else {
                        format!("≤ {} %: **missed**", ALPHA * 100.0)
                    }
                }
                Target::Detection { share, periods } => {
                    let within = method
                        .reverted_after
                        .iter()
                        .filter(|&&p| p >= 1.0 && p <= periods)
                        .count();
                    let met = within as f64 >= share * method.runs as f64;
                    format!(
                        "≥ {:.0} % within {periods} periods: {} ({})",
                        share * 100.0,
                        if met { "met" } else { "**missed**" },
                        percent(within, method.runs)
                    )
                }
                Target::Reported => format!(
                    "none; reverted before the onset (a false abort): {}",
                    percent(method.reverted_after.iter().filter(|&&p| p < 1.0).count(), method.runs)
                ),
            };
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {early} | {target} |",
                scenario.name,
                method.runs,
                percent(reverted, method.runs),
                distribution(&method.reverted_after)
            );
        }
    }
    let _ = writeln!(out, "\nScenarios:\n");
    for scenario in &figures.scenarios {
        let _ = writeln!(out, "- **{}**: {}.", scenario.name, scenario.description);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_matches_hand_computed_p_values() {
        // Complete separation, 5 against 5: U = 25, mean 12.5, sd √(25·11/12) = 4.787, z = 2.611.
        let p = mann_whitney_greater(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((p - 0.004_51).abs() < 1e-4, "{p}");
        // The other way round: z = −2.611.
        let q = mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!((q - 0.995_49).abs() < 1e-4, "{q}");
        // Ties: green [1, 2, 2], blue [2, 3]: ranks 1, 3, 3 | 3, 5; U = 7 − 6 = 1, mean 3,
        // variance 6/12 · (6 − (27 − 3)/20) = 2.4, z = −2/√2.4 = −1.291.
        let t = mann_whitney_greater(&[1.0, 2.0, 2.0], &[2.0, 3.0]);
        assert!((t - 0.901_6).abs() < 1e-3, "{t}");
        assert_eq!(mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
    }

    #[test]
    fn the_normal_tail_matches_its_table() {
        for (z, tail) in [(0.0, 0.5), (1.959_964, 0.025), (2.326_348, 0.01), (-1.644_854, 0.95)] {
            assert!((normal_upper_tail(z) - tail).abs() < 1e-6, "{z}");
        }
    }

    #[test]
    fn selection_agrees_with_the_sorted_percentile() {
        let mut draws = Draws::new(1);
        let mut samples: Vec<f64> = (0..601).map(|_| draws.normal()).collect();
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [50.0, 90.0, 99.0, 99.9] {
            assert_eq!(nearest_rank(&mut samples, p), percentile(&sorted, p), "p{p}");
        }
    }

    #[test]
    fn a_seeded_run_replays() {
        let a = canary_run(3, HEALTHY, true);
        let b = canary_run(3, HEALTHY, true);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
