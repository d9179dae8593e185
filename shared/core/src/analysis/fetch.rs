//! What one evaluation asks CloudWatch (`GetMetricData`) and how the answers become
//! [`Evidence`]: pure, so the adapter only sends the queries.
//!
//! Each metric is a rate counted per metric period and per target group:
//! - `error_rate`: `HTTPCode_Target_5XX_Count` (Sum) among `RequestCount` (Sum);
//! - `latency_pNN`: `TargetResponseTime` samples slower than a threshold (`TC(T:)`, a
//!   trimmed count) among all samples (`SampleCount`); green's threshold is `max_ratio` ×
//!   blue's `pNN` in the first period judged, blue's is that `pNN` itself — so "green no
//!   slower than `max_ratio` × blue" becomes "green's slow share no more than blue's";
//! - a custom metric: its `bad` query (Sum) among its `total` query (Sum), or `RequestCount`.
//!
//! AWS publishes ALB metrics only for periods with requests: a missing datapoint is zero.

use super::types::{Analysis, Baseline, Counts, Evidence, MetricEvidence, MetricQuery, MetricSpec, Real};
use crate::Epoch;

/// The ALB's namespace.
pub const ALB_NAMESPACE: &str = "AWS/ApplicationELB";

/// One statistic of one metric per `period_s`, as `GetMetricData`'s `MetricStat` asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatQuery {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
    /// `Sum`, `SampleCount`, `p99`, `TC(0.25:)`, ...
    pub stat: String,
    pub period_s: u64,
}

/// Whose target group a query is about, by their CloudWatch dimension values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `targetgroup/<name>/<id>`.
    pub target_group: String,
    /// `app/<name>/<id>`.
    pub load_balancer: String,
    pub service: String,
}

impl Subject {
    fn alb(&self, metric_name: &str, stat: &str, period_s: u64) -> StatQuery {
        StatQuery {
            namespace: ALB_NAMESPACE.into(),
            metric_name: metric_name.into(),
            dimensions: vec![
                ("LoadBalancer".into(), self.load_balancer.clone()),
                ("TargetGroup".into(), self.target_group.clone()),
            ],
            stat: stat.into(),
            period_s,
        }
    }

    fn custom(&self, query: &MetricQuery, period_s: u64) -> StatQuery {
        let filled = query.expand(&self.target_group, &self.load_balancer, &self.service);
        StatQuery {
            namespace: filled.namespace,
            metric_name: filled.metric_name,
            dimensions: filled.dimensions.into_iter().collect(),
            stat: "Sum".into(),
            period_s,
        }
    }
}

/// The first round for one target group: for each metric, its `bad` and `total` counts per
/// period, except latency's `bad` (it needs the threshold): its `pNN` instead.
pub fn first_round(analysis: &Analysis, subject: &Subject, period_s: u64) -> Vec<StatQuery> {
    let mut queries = Vec::new();
    for metric in &analysis.metrics {
        match metric {
            MetricSpec::ErrorRate { .. } => {
                queries.push(subject.alb("HTTPCode_Target_5XX_Count", "Sum", period_s));
                queries.push(subject.alb("RequestCount", "Sum", period_s));
            }
            MetricSpec::Latency { percentile, .. } => {
                queries.push(subject.alb("TargetResponseTime", &percentile_stat(percentile.0), period_s));
                queries.push(subject.alb("TargetResponseTime", "SampleCount", period_s));
            }
            MetricSpec::Custom { bad, total, .. } => {
                queries.push(subject.custom(bad, period_s));
                queries.push(match total {
                    Some(total) => subject.custom(total, period_s),
                    None => subject.alb("RequestCount", "Sum", period_s),
                });
            }
        }
    }
    queries
}

/// `p99`, `p99.9`.
fn percentile_stat(percentile: f64) -> String {
    format!("p{}", Real(percentile).0)
}

/// The second round: for each latency metric, the count of samples slower than
/// `thresholds[i]` (seconds) per period, in metric order.
pub fn second_round(subject: &Subject, thresholds: &[f64], period_s: u64) -> Vec<StatQuery> {
    thresholds
        .iter()
        .map(|t| subject.alb("TargetResponseTime", &format!("TC({t:.6}:)"), period_s))
        .collect()
}

/// A series' values per period from `from` to `to` (missing periods are 0).
pub fn per_period(points: &[(Epoch, f64)], from: Epoch, to: Epoch, period_s: u64) -> Vec<f64> {
    let period_s = period_s.max(1);
    let n = (to.saturating_sub(from) / period_s) as usize;
    let mut values = vec![0.0; n];
    for (at, value) in points {
        if *at >= from && *at < to {
            let i = ((at - from) / period_s) as usize;
            if i < n && value.is_finite() {
                values[i] += value;
            }
        }
    }
    values
}

/// Each latency metric's blue percentile: the first period of `first` (blue's first-round
/// answers) with one, in metric order (None: blue has none yet).
pub fn blue_percentiles(analysis: &Analysis, first: &[Vec<f64>]) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for (i, metric) in analysis.metrics.iter().enumerate() {
        if let MetricSpec::Latency { .. } = metric {
            let series = first.get(2 * i).map(Vec::as_slice).unwrap_or(&[]);
            let samples = first.get(2 * i + 1).map(Vec::as_slice).unwrap_or(&[]);
            out.push(
                series
                    .iter()
                    .zip(samples)
                    .find(|(p, n)| **n > 0.0 && **p > 0.0)
                    .map(|(p, _)| *p),
            );
        }
    }
    out
}

/// The latency metrics' `max_ratio`s, in metric order.
pub fn latency_ratios(analysis: &Analysis) -> Vec<f64> {
    analysis
        .metrics
        .iter()
        .filter_map(|m| match m {
            MetricSpec::Latency { max_ratio, .. } => Some(max_ratio.0),
            _ => None,
        })
        .collect()
}

/// One target group's counts per metric: from its first-round series (two per metric) and
/// its second-round series (one per latency metric).
pub fn counts(analysis: &Analysis, first: &[Vec<f64>], second: &[Vec<f64>]) -> Vec<Vec<Counts>> {
    let mut latency = 0;
    analysis
        .metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let empty = Vec::new();
            let total = first.get(2 * i + 1).unwrap_or(&empty);
            let bad = match metric {
                MetricSpec::Latency { .. } => {
                    latency += 1;
                    second.get(latency - 1).unwrap_or(&empty)
                }
                _ => first.get(2 * i).unwrap_or(&empty),
            };
            total
                .iter()
                .enumerate()
                .map(|(p, t)| {
                    let total = t.max(0.0).round() as u64;
                    let bad = bad.get(p).copied().unwrap_or(0.0).max(0.0).round() as u64;
                    Counts {
                        bad: bad.min(total),
                        total,
                    }
                })
                .collect()
        })
        .collect()
}

/// The evidence of one evaluation: green's counts per period and blue's (per period in the
/// same window, or summed before it), with the latency thresholds used.
pub fn evidence(
    analysis: &Analysis,
    green: Vec<Vec<Counts>>,
    blue: Vec<Vec<Counts>>,
    blue_before: bool,
    thresholds: &[(f64, f64)],
    horizon_periods: u32,
) -> Evidence {
    let mut latency = 0;
    let metrics = analysis
        .metrics
        .iter()
        .zip(green.into_iter().zip(blue))
        .map(|(metric, (green, blue))| {
            let thresholds_s = match metric {
                MetricSpec::Latency { .. } => {
                    latency += 1;
                    thresholds.get(latency - 1).map(|(g, b)| (Real::new(*g), Real::new(*b)))
                }
                _ => None,
            };
            MetricEvidence {
                metric: metric.name(),
                tolerance: Real::new(metric.tolerance()),
                green,
                blue: if blue_before {
                    Baseline::Before(Counts::sum(&blue))
                } else {
                    Baseline::SameWindow(blue)
                },
                thresholds_s,
            }
        })
        .collect();
    Evidence {
        metrics,
        horizon_periods: horizon_periods.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis() -> Analysis {
        serde_json::from_value(serde_json::json!({"metrics": [
            {"error_rate": {"tolerance_pp": 0.5}},
            {"latency": {"percentile": 99, "max_ratio": 1.2}}
        ], "period_s": 60}))
        .unwrap()
    }

    fn subject() -> Subject {
        Subject {
            target_group: "targetgroup/a/1".into(),
            load_balancer: "app/web/2".into(),
            service: "checkout".into(),
        }
    }

    #[test]
    fn the_rounds_ask_for_counts_then_slow_requests_past_the_threshold() {
        let first = first_round(&analysis(), &subject(), 60);
        let names: Vec<(&str, &str)> = first
            .iter()
            .map(|q| (q.metric_name.as_str(), q.stat.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("HTTPCode_Target_5XX_Count", "Sum"),
                ("RequestCount", "Sum"),
                ("TargetResponseTime", "p99"),
                ("TargetResponseTime", "SampleCount")
            ]
        );
        assert_eq!(first[0].dimensions[1], ("TargetGroup".into(), "targetgroup/a/1".into()));
        assert_eq!(second_round(&subject(), &[0.25], 60)[0].stat, "TC(0.250000:)");
    }

    #[test]
    fn missing_periods_count_zero_and_the_first_blue_percentile_with_samples_is_taken() {
        assert_eq!(per_period(&[(120, 5.0), (240, 7.0)], 60, 300, 60), [0.0, 5.0, 0.0, 7.0]);
        let first = vec![vec![], vec![], vec![0.0, 0.2, 0.3], vec![0.0, 100.0, 90.0]];
        assert_eq!(blue_percentiles(&analysis(), &first), [Some(0.2)]);
    }

    #[test]
    fn counts_pair_each_metrics_bad_with_its_total() {
        let first = vec![vec![3.0, 1.0], vec![100.0, 50.0], vec![0.2, 0.2], vec![100.0, 50.0]];
        let second = vec![vec![2.0, 9.0]];
        let counts = counts(&analysis(), &first, &second);
        assert_eq!(counts[0], [Counts { bad: 3, total: 100 }, Counts { bad: 1, total: 50 }]);
        assert_eq!(counts[1], [Counts { bad: 2, total: 100 }, Counts { bad: 9, total: 50 }]);
    }
}
