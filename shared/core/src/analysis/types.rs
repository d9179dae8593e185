//! The vocabulary of canary analysis: the registration's [`Analysis`], the evidence one
//! evaluation brings ([`Evidence`]), the verdicts ([`Judgement`], [`MetricVerdict`]) and what
//! the ledger keeps ([`AnalysisRecord`], [`Evaluation`]); the metric windows and dimension
//! values. Below every other module of `analysis` (each imports from here, none from its
//! parent).
use crate::Epoch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An `f64` that is `Eq` (by bits) so ledger records containing it stay `Eq`. Serialised as
/// a plain JSON number.
#[derive(Debug, Clone, Copy, Default, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Real(pub f64);

impl PartialEq for Real {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Real {}

impl Real {
    /// A finite value (NaN becomes 0, infinities the largest finite values).
    pub fn new(value: f64) -> Real {
        if value.is_nan() {
            Real(0.0)
        } else {
            Real(value.clamp(f64::MIN, f64::MAX))
        }
    }
}

/// The metric period of the AWS/ApplicationELB namespace (seconds).
pub const AWS_METRIC_PERIOD_S: u64 = 60;
/// At most this many metrics per registration.
pub const MAX_METRICS: usize = 5;
/// At most this many evaluations kept per deployment (the oldest "continue" ones go first;
/// decisions are always kept).
pub const MAX_EVALUATIONS: usize = 60;
/// The placeholders a custom metric's dimension values may use.
pub const PLACEHOLDERS: [&str; 3] = ["${target_group}", "${load_balancer}", "${service}"];

/// What a registration declares under `"analysis"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// What to compare (1..=[`MAX_METRICS`]).
    pub metrics: Vec<MetricSpec>,
    /// The chance of stopping a healthy release (a false abort), however often the test
    /// looks; also the chance of an early promotion of a release that is worse than the
    /// tolerance. Between 0.0001 and 0.2; default 0.01.
    #[serde(default = "default_alpha")]
    pub alpha: Real,
    /// Green requests (per window) before any verdict; default 200.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The metric period (seconds): AWS publishes ALB metrics every 60 s; the local
    /// emulator can be told a shorter one. Default 60.
    #[serde(default = "default_period_s")]
    pub period_s: u64,
    /// How far behind real time the metrics may be (seconds): periods newer than this are
    /// not judged yet. Default 60 (ALB metrics arrive a minute or more late).
    #[serde(default = "default_lag_s")]
    pub lag_s: u64,
    /// The longest a canary step waits for a verdict (seconds); then it is inconclusive.
    /// Default 900.
    #[serde(default = "default_max_step_s")]
    pub max_step_s: u64,
    /// What an inconclusive canary step does.
    #[serde(default)]
    pub inconclusive: Inconclusive,
    /// Through the bake window green has all the traffic, so it is compared with blue's
    /// traffic over this long (seconds) before green took all of it. Default 600.
    #[serde(default = "default_baseline_s")]
    pub baseline_s: u64,
}

fn default_alpha() -> Real {
    Real(0.01)
}
fn default_min_requests() -> u64 {
    200
}
fn default_period_s() -> u64 {
    AWS_METRIC_PERIOD_S
}
fn default_lag_s() -> u64 {
    60
}
fn default_max_step_s() -> u64 {
    900
}
fn default_baseline_s() -> u64 {
    600
}

/// What an inconclusive canary step does (no evidence either way by `max_step_s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconclusive {
    /// Traffic back to blue, green terminated: the cautious default.
    #[default]
    Abort,
    /// Go on to the next step (never when the metrics could not be read: that aborts).
    Continue,
    /// Stay at this weight, judge no more, and wait for an engineer's promote, rollback or
    /// abort.
    Hold,
}

impl Inconclusive {
    pub fn name(self) -> &'static str {
        match self {
            Inconclusive::Abort => "abort",
            Inconclusive::Continue => "continue",
            Inconclusive::Hold => "hold",
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricSpec {
    /// `HTTPCode_Target_5XX_Count / RequestCount`: green's may exceed blue's by at most
    /// `tolerance_pp` percentage points.
    ErrorRate { tolerance_pp: Real },
    /// `TargetResponseTime`: green's requests slower than `max_ratio` × blue's `percentile`
    /// may be no more frequent than blue's requests slower than that percentile.
    Latency { percentile: Real, max_ratio: Real },
    /// A custom rate: `bad / total` per target group (total defaults to the ALB's
    /// `RequestCount`); green's may exceed blue's by at most `tolerance_pp` points.
    Custom {
        name: String,
        bad: MetricQuery,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<MetricQuery>,
        tolerance_pp: Real,
    },
}

/// A CloudWatch metric (`Sum` per period) whose dimension values may name a target group
/// (`${target_group}`: `targetgroup/<name>/<id>`), the load balancer (`${load_balancer}`:
/// `app/<name>/<id>`) or the service (`${service}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric_name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

impl MetricSpec {
    /// The metric's name in verdicts (`error_rate`, `latency_p99`, or the custom name).
    pub fn name(&self) -> String {
        match self {
            MetricSpec::ErrorRate { .. } => "error_rate".into(),
            MetricSpec::Latency { percentile, .. } => format!("latency_p{}", percentile.0),
            MetricSpec::Custom { name, .. } => name.clone(),
        }
    }

    /// The tolerance as a fraction of trials (0.005 for 0.5 points; 0 for latency, whose
    /// tolerance is in its threshold).
    pub fn tolerance(&self) -> f64 {
        match self {
            MetricSpec::ErrorRate { tolerance_pp } | MetricSpec::Custom { tolerance_pp, .. } => tolerance_pp.0 / 100.0,
            MetricSpec::Latency { .. } => 0.0,
        }
    }
}

impl Analysis {
    /// Its problems, one line each (a registration with any is refused, nothing written).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.metrics.is_empty() || self.metrics.len() > MAX_METRICS {
            problems.push(format!("analysis.metrics must list 1 to {MAX_METRICS} metrics"));
        }
        if !(0.0001..=0.2).contains(&self.alpha.0) {
            problems.push("analysis.alpha must be between 0.0001 and 0.2 (e.g. 0.01)".into());
        }
        if !(1..=1_000_000_000).contains(&self.min_requests) {
            problems.push("analysis.min_requests must be between 1 and 1000000000".into());
        }
        if !(1..=3600).contains(&self.period_s) {
            problems.push(
                "analysis.period_s must be between 1 and 3600 seconds (AWS publishes ALB metrics every 60)".into(),
            );
        }
        if self.lag_s > 3600 {
            problems.push("analysis.lag_s must be at most 3600 seconds".into());
        }
        if self.max_step_s < self.period_s + self.lag_s || self.max_step_s > 86_400 {
            problems.push(
                "analysis.max_step_s must be at least period_s + lag_s (a step must see one complete metric period) and at most 86400 seconds"
                    .into(),
            );
        }
        if self.baseline_s < self.period_s || self.baseline_s > 86_400 {
            problems.push("analysis.baseline_s must be at least one period_s and at most 86400 seconds".into());
        }
        let mut names = Vec::new();
        for (i, metric) in self.metrics.iter().enumerate() {
            let at = format!("analysis.metrics[{i}]");
            match metric {
                MetricSpec::ErrorRate { tolerance_pp } => {
                    if !(0.0..=50.0).contains(&tolerance_pp.0) {
                        problems.push(format!(
                            "{at}.error_rate.tolerance_pp must be between 0 and 50 percentage points (e.g. 0.5)"
                        ));
                    }
                }
                MetricSpec::Latency { percentile, max_ratio } => {
                    if !(50.0..=99.9).contains(&percentile.0) {
                        problems.push(format!("{at}.latency.percentile must be between 50 and 99.9 (e.g. 99)"));
                    }
                    if !(1.0..=10.0).contains(&max_ratio.0) {
                        problems.push(format!(
                            "{at}.latency.max_ratio must be between 1 and 10 (e.g. 1.2: green may be 20% slower)"
                        ));
                    }
                }
                MetricSpec::Custom {
                    name,
                    bad,
                    total,
                    tolerance_pp,
                } => {
                    let valid_name = !name.is_empty()
                        && name.len() <= 64
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !valid_name {
                        problems.push(format!("{at}.custom.name must be 1-64 letters, digits, '_' or '-'"));
                    }
                    if !(0.0..=100.0).contains(&tolerance_pp.0) {
                        problems.push(format!(
                            "{at}.custom.tolerance_pp must be between 0 and 100 percentage points"
                        ));
                    }
                    for (which, query) in [("bad", Some(bad)), ("total", total.as_ref())] {
                        if let Some(query) = query {
                            problems.extend(query.problems(&format!("{at}.custom.{which}")));
                        }
                    }
                }
            }
            let name = metric.name();
            if names.contains(&name) {
                problems.push(format!("{at}: metric {name} is listed twice"));
            }
            names.push(name);
        }
        problems
    }
}

impl MetricQuery {
    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.namespace.is_empty() || self.namespace.len() > 255 {
            problems.push(format!("{at}.namespace must be 1-255 characters"));
        }
        if self.metric_name.is_empty() || self.metric_name.len() > 255 {
            problems.push(format!("{at}.metric_name must be 1-255 characters"));
        }
        if self.dimensions.len() > 30 {
            problems.push(format!("{at}.dimensions: at most 30"));
        }
        for (key, value) in &self.dimensions {
            for unknown in unknown_placeholders(value) {
                problems.push(format!(
                    "{at}.dimensions.{key}: unknown placeholder {unknown} (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
        }
        problems
    }

    /// The query with its placeholders replaced.
    pub fn expand(&self, target_group: &str, load_balancer: &str, service: &str) -> MetricQuery {
        let fill = |v: &str| {
            v.replace("${target_group}", target_group)
                .replace("${load_balancer}", load_balancer)
                .replace("${service}", service)
        };
        MetricQuery {
            namespace: self.namespace.clone(),
            metric_name: self.metric_name.clone(),
            dimensions: self.dimensions.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        }
    }
}

/// Every `${...}` in `value` that is not one of [`PLACEHOLDERS`] (an unclosed `${` counts).
fn unknown_placeholders(value: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let tail = &rest[start..];
        match tail.find('}') {
            Some(end) => {
                let placeholder = &tail[..=end];
                if !PLACEHOLDERS.contains(&placeholder) {
                    unknown.push(placeholder.to_string());
                }
                rest = &tail[end + 1..];
            }
            None => {
                unknown.push(tail.to_string());
                break;
            }
        }
    }
    unknown
}

/// The CloudWatch `TargetGroup` dimension of a target group ARN (`targetgroup/<name>/<id>`).
pub fn target_group_dimension(arn: &str) -> String {
    arn.find("targetgroup/")
        .map(|i| arn[i..].to_string())
        .unwrap_or_else(|| arn.to_string())
}

/// The CloudWatch `LoadBalancer` dimension (`app/<name>/<id>`) of a load balancer, listener
/// or rule ARN.
pub fn load_balancer_dimension(arn: &str) -> String {
    let parts: Vec<&str> = arn.split('/').collect();
    match parts.iter().position(|p| *p == "app") {
        Some(i) if parts.len() >= i + 3 => parts[i..i + 3].join("/"),
        _ => arn.to_string(),
    }
}

/// Bad events among trials in one metric period of one target group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub bad: u64,
    pub total: u64,
}

impl Counts {
    /// The sum of `periods`.
    pub fn sum(periods: &[Counts]) -> Counts {
        periods.iter().fold(Counts::default(), |a, c| Counts {
            bad: a.bad + c.bad,
            total: a.total + c.total,
        })
    }

    /// bad / total (0 without trials).
    pub fn rate(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.bad as f64 / self.total as f64
        }
    }
}

/// What green is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Blue, in the same periods as green (a canary step: both behind the same listener).
    SameWindow(Vec<Counts>),
    /// Blue, before green took all the traffic (the bake window), summed.
    Before(Counts),
}

/// One metric's evidence in the window judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricEvidence {
    /// [`MetricSpec::name`].
    pub metric: String,
    /// [`MetricSpec::tolerance`]: green's rate may exceed blue's by this (a fraction).
    pub tolerance: Real,
    /// Green, one entry per complete metric period of the window, oldest first.
    pub green: Vec<Counts>,
    pub blue: Baseline,
    /// For latency: the threshold (seconds) green's requests were counted against, and
    /// blue's (`threshold / max_ratio`, blue's percentile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds_s: Option<(Real, Real)>,
}

/// Everything fetched for one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub metrics: Vec<MetricEvidence>,
    /// The most periods this window can have (the canary step's `max_step_s` or the bake
    /// window, in periods): a test that scans for a change starting at any period spends
    /// its `alpha` over this many start points.
    pub horizon_periods: u32,
}

/// How [`judge`] decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The error budget of the whole evaluation (split over metrics and sides inside).
    pub alpha: f64,
    /// Green requests (trials of the first metric) before any verdict.
    pub min_requests: u64,
    /// True in a canary step: clear evidence that green is no worse ends the step early.
    /// False in the bake window, which only watches for regressions until it ends.
    pub early_pass: bool,
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Green is worse than blue beyond the tolerance: revert.
    Regressed,
    /// Green is clearly within the tolerance: go on.
    NoWorse,
    /// Not enough evidence either way yet.
    Continue,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::NoWorse => "no worse",
            Verdict::Continue => "continue",
        }
    }
}

/// One metric's verdict, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricVerdict {
    pub metric: String,
    pub green: Counts,
    pub blue: Counts,
    /// A fraction (0.005 = 0.5 points).
    pub tolerance: Real,
    /// The e-value against "green is within tolerance" (large: evidence of a regression).
    pub e_regressed: Real,
    /// The e-value against "green is worse than the tolerance" (large: evidence it is not).
    pub e_no_worse: Real,
    /// What an e-value must reach for its decision (1/alpha split over metrics, sides and
    /// scanned start points).
    pub threshold_regressed: Real,
    pub threshold_no_worse: Real,
    pub verdict: Verdict,
    /// Why, in a sentence (e.g. "green 5.1% of 612 vs blue 1.0% of 5 488 (+0.5 points
    /// allowed): e = 1.2e6 ≥ 200").
    pub explanation: String,
}

/// The outcome of [`judge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub metrics: Vec<MetricVerdict>,
}

/// What the step brought to the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observation {
    /// The window judged (`from`..`to`, seconds) and what was fetched for it.
    Fetched { from: Epoch, to: Epoch, evidence: Evidence },
    /// No complete metric period in the window yet.
    TooEarly,
    /// The metrics could not be read (why): never taken as evidence that green is fine.
    Unavailable { why: String },
}

/// One evaluation, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub at: Epoch,
    /// Green's weight when judged (100 in the bake window).
    pub weight: u8,
    /// The window judged (seconds); 0..0 when nothing could be fetched.
    pub from: Epoch,
    pub to: Epoch,
    pub verdict: Verdict,
    /// What greenlight did about it (`revert`, `next step`, `wait`, `hold`, ...).
    pub action: String,
    pub metrics: Vec<MetricVerdict>,
    /// Why there is no verdict (metrics unavailable, too early, too few requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The analysis state of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// When green got its current weight (the start of the window judged).
    pub since: Epoch,
    /// Green's weight since then.
    pub weight: u8,
    /// When the next evaluation is due.
    pub next_at: Epoch,
    /// Set when an inconclusive step holds (waiting for an engineer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<Epoch>,
    /// Every evaluation, oldest first (at most [`MAX_EVALUATIONS`]).
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
}

impl AnalysisRecord {
    /// Appends `evaluation`, dropping the oldest one that only waited past
    /// [`MAX_EVALUATIONS`] (every evaluation that acted is kept: it explains what happened).
    pub fn push(&mut self, evaluation: Evaluation) {
        self.evaluations.push(evaluation);
        while self.evaluations.len() > MAX_EVALUATIONS {
            let drop = self.evaluations.iter().position(|e| e.action == "wait").unwrap_or(0);
            self.evaluations.remove(drop);
        }
    }
}

/// The complete metric periods of a window that began at `since`, as of `now`: from the
/// first period boundary at or after `since` to the last boundary at or before
/// `now - lag_s`. None while there is no complete period.
pub fn window(since: Epoch, now: Epoch, period_s: u64, lag_s: u64) -> Option<(Epoch, Epoch)> {
    let period_s = period_s.max(1);
    let start = since.div_ceil(period_s) * period_s;
    let end = (now.saturating_sub(lag_s) / period_s) * period_s;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_only_complete_periods_older_than_the_lag() {
        assert_eq!(window(100, 100, 60, 0), None);
        assert_eq!(window(100, 179, 60, 0), None);
        assert_eq!(window(100, 180, 60, 0), Some((120, 180)));
        assert_eq!(window(120, 239, 60, 60), None);
        assert_eq!(window(120, 250, 60, 60), Some((120, 180)));
        assert_eq!(window(120, 300, 60, 60), Some((120, 240)));
        assert_eq!(window(0, 10, 1, 0), Some((0, 10)));
    }

    #[test]
    fn placeholders_outside_the_known_three_are_named() {
        assert!(unknown_placeholders("${target_group}").is_empty());
        assert_eq!(unknown_placeholders("a-${target}-${service}"), ["${target}"]);
        assert_eq!(unknown_placeholders("x${load_balancer"), ["${load_balancer"]);
    }

    #[test]
    fn dimensions_come_from_the_arns() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/73e2d6bc24d8a067";
        assert_eq!(target_group_dimension(tg), "targetgroup/checkout-a/73e2d6bc24d8a067");
        let listener =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2";
        assert_eq!(load_balancer_dimension(listener), "app/web/50dc6c495c0c9188");
    }

    #[test]
    fn a_registration_with_an_unknown_placeholder_or_a_tolerance_out_of_range_is_refused() {
        let analysis: Analysis = serde_json::from_value(serde_json::json!({
            "metrics": [
                {"error_rate": {"tolerance_pp": 75}},
                {"latency": {"percentile": 99, "max_ratio": 0.5}},
                {"custom": {"name": "failures", "tolerance_pp": 1,
                            "bad": {"namespace": "App", "metric_name": "Failures",
                                    "dimensions": {"TargetGroup": "${target_groups}"}}}}
            ]
        }))
        .unwrap();
        let problems = analysis.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("tolerance_pp"));
        assert!(problems[1].contains("max_ratio"));
        assert!(problems[2].contains("${target_groups}"));
    }

    #[test]
    fn evaluations_past_the_limit_drop_the_oldest_undecided_first() {
        let mut record = AnalysisRecord::default();
        let eval = |at, verdict| Evaluation {
            at,
            weight: 10,
            from: 0,
            to: 0,
            verdict,
            action: if verdict == Verdict::Continue {
                "wait"
            } else {
                "next step"
            }
            .into(),
            metrics: vec![],
            note: None,
        };
        record.push(eval(0, Verdict::NoWorse));
        for at in 1..=(MAX_EVALUATIONS as u64) {
            record.push(eval(at, Verdict::Continue));
        }
        assert_eq!(record.evaluations.len(), MAX_EVALUATIONS);
        assert_eq!(record.evaluations[0].at, 0, "a decision is kept");
        assert_eq!(record.evaluations[1].at, 2, "the oldest undecided went");
    }
}
