//! The simulated world's traffic, as CloudWatch's `AWS/ApplicationELB` metrics report it
//! (what [`Aws::metric_data`] answers `GetMetricData` from):
//!
//! - every switch point (and every listener added by hand) receives a steady load of its
//!   own ([`rps`]), split among its target groups by its forward weights over time
//!   ([`Aws::weight_history`]): a group's `RequestCount` in a period is the integral of
//!   `rps × its share` over the period (up to now);
//! - the group's targets registered during the period answer by their image's
//!   [`Behaviour`], each an equal share of the requests: 5xx at its
//!   [`Behaviour::error_rate`], response times exponentially distributed around its
//!   [`Behaviour::mean_latency_s`] (so `pNN` and `TC(T:)` are read off one closed-form
//!   distribution, a mixture over the targets, and agree);
//! - counts are the expected values plus a normal approximation of the binomial noise, drawn
//!   from a hash of (seed, target group, statistic, period): the same question always gets
//!   the same answer, and reading metrics moves no draw of the scheduler's PRNG;
//! - a period with no request has no datapoint (AWS publishes none).
//!
//! Time: the world's clock is in milliseconds, CloudWatch's periods and datapoints in epoch
//! seconds.

use crate::world::{Aws, Behaviour};
use greenlight_core::analysis::fetch::ALB_NAMESPACE;
use greenlight_core::analysis::target_group_dimension;
use greenlight_core::Epoch;

/// The requests per second a switch point (or a listener added by hand) receives: 20 to
/// 100, fixed per listener.
pub fn rps(key: &str) -> f64 {
    20.0 + (hash(&[fnv(key)]) % 81) as f64
}

/// What one target group served in one period.
struct Served {
    requests: f64,
    /// (error rate, mean latency) of each target that served in the period.
    targets: Vec<(f64, f64)>,
}

impl Served {
    fn error_rate(&self) -> f64 {
        mean(self.targets.iter().map(|t| t.0)).unwrap_or(Behaviour::Healthy.error_rate())
    }

    /// The share of requests slower than `t` seconds.
    fn slower_than(&self, t: f64) -> f64 {
        mean(self.targets.iter().map(|(_, m)| (-t.max(0.0) / m).exp()))
            .unwrap_or((-t.max(0.0) / Behaviour::Healthy.mean_latency_s()).exp())
    }

    /// The `q` quantile (0..1) of the response times (bisection on the mixture's CDF).
    fn quantile(&self, q: f64) -> f64 {
        let target = 1.0 - q.clamp(0.0, 0.999_999);
        let (mut lo, mut hi) = (0.0_f64, 60.0_f64);
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if self.slower_than(mid) > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

impl Aws {
    /// The target group (ARN) whose CloudWatch `TargetGroup` dimension is `dimension`.
    fn target_group_of(&self, dimension: &str) -> Option<String> {
        self.target_groups
            .keys()
            .find(|arn| target_group_dimension(arn) == dimension)
            .cloned()
    }

    /// What `target_group` served in `[from_ms, to_ms)` (capped at now).
    fn served(&self, target_group: &str, from_ms: u64, to_ms: u64) -> Served {
        let to_ms = to_ms.min(self.now_ms);
        let mut requests = 0.0;
        for (key, history) in &self.weight_history {
            let rate = rps(key);
            for (i, (at, weights)) in history.iter().enumerate() {
                let until = history.get(i + 1).map_or(self.now_ms, |(next, _)| *next);
                let (a, b) = ((*at).max(from_ms), until.min(to_ms));
                if b <= a {
                    continue;
                }
                let total: u32 = weights.iter().map(|(_, w)| u32::from(*w)).sum();
                let mine: u32 = weights
                    .iter()
                    .filter(|(tg, _)| tg == target_group)
                    .map(|(_, w)| u32::from(*w))
                    .sum();
                if total > 0 && mine > 0 {
                    requests += rate * (b - a) as f64 / 1000.0 * f64::from(mine) / f64::from(total);
                }
            }
        }
        let targets = self
            .target_groups
            .get(target_group)
            .map(|tg| {
                tg.targets
                    .iter()
                    .filter(|(id, t)| {
                        let instance = self.instances.get(*id);
                        t.registered_ms < to_ms
                            && t.deregistered_ms.is_none_or(|d| d > from_ms)
                            && instance.is_some_and(|i| i.terminated_ms.is_none_or(|d| d > from_ms))
                    })
                    .map(|(id, _)| {
                        let behaviour = self
                            .instances
                            .get(id)
                            .and_then(|i| self.images.get(&i.ami))
                            .map_or(Behaviour::Healthy, |i| i.behaviour);
                        (behaviour.error_rate(), behaviour.mean_latency_s())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Served { requests, targets }
    }

    /// `GetMetricData`: each query's datapoints `(period start, value)` for the periods in
    /// `[start, end)` in which its target group had requests (none for other namespaces).
    pub fn metric_data(
        &self,
        queries: &[greenlight_adapters::StatQuery],
        start: Epoch,
        end: Epoch,
    ) -> Vec<Vec<(Epoch, f64)>> {
        queries.iter().map(|q| self.series(q, start, end)).collect()
    }

    fn series(&self, query: &greenlight_adapters::StatQuery, start: Epoch, end: Epoch) -> Vec<(Epoch, f64)> {
        if query.namespace != ALB_NAMESPACE {
            return Vec::new();
        }
        let Some(tg) = query
            .dimensions
            .iter()
            .find(|(k, _)| k == "TargetGroup")
            .and_then(|(_, v)| self.target_group_of(v))
        else {
            return Vec::new();
        };
        let period = query.period_s.max(1);
        let mut points = Vec::new();
        let mut p = start.div_ceil(period) * period;
        while p < end {
            let served = self.served(&tg, p * 1000, (p + period) * 1000);
            let n = served.requests.round();
            if n >= 1.0 {
                let noise = |what: &str, share: f64| {
                    let z = normal(self.metric_seed, &tg, what, p);
                    (n * share + z * (n * share * (1.0 - share)).sqrt())
                        .round()
                        .clamp(0.0, n)
                };
                let value = match (query.metric_name.as_str(), query.stat.as_str()) {
                    ("RequestCount", "Sum") | ("TargetResponseTime", "SampleCount") => Some(n),
                    ("HTTPCode_Target_5XX_Count", "Sum") => Some(noise("5xx", served.error_rate())),
                    ("TargetResponseTime", stat) => {
                        if let Some(t) = stat.strip_prefix("TC(").and_then(|s| s.strip_suffix(":)")) {
                            t.parse::<f64>()
                                .ok()
                                .map(|t| noise(&format!("slow>{t}"), served.slower_than(t)))
                        } else if let Some(q) = stat.strip_prefix('p') {
                            q.parse::<f64>().ok().map(|q| served.quantile(q / 100.0))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                if let Some(value) = value {
                    points.push((p, value));
                }
            }
            p += period;
        }
        points
    }

    /// Whether the next `GetMetricData` call fails (throttled), counting it.
    pub fn metric_read_fails(&mut self) -> bool {
        self.metric_reads += 1;
        let fails = self.metric_fault_pct > 0
            && hash(&[self.metric_seed, 0x6d65_7472_6963, self.metric_reads]) % 100 < self.metric_fault_pct;
        if fails {
            self.metric_faults += 1;
        }
        fails
    }
}

/// A standard normal draw from a hash of (seed, target group, statistic, period).
fn normal(seed: u64, target_group: &str, what: &str, period: Epoch) -> f64 {
    let h1 = hash(&[seed, fnv(target_group), fnv(what), period]);
    let h2 = hash(&[h1, 0x9e37_79b9]);
    let u1 = ((h1 >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// splitmix64 over the words.
fn hash(words: &[u64]) -> u64 {
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    for w in words {
        x ^= *w;
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x = z ^ (z >> 31);
    }
    x
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Image, Target, Timings};
    use greenlight_adapters::StatQuery;
    use greenlight_core::decide::ImageFacts;

    const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s-a/1";
    const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s-b/2";

    fn world(green: Behaviour) -> Aws {
        let mut aws = Aws::new(
            0,
            Timings {
                pending_ms: 0,
                health_check_ms: 0,
            },
        );
        aws.metric_seed = 7;
        for (ami, behaviour) in [("ami-blue", Behaviour::Healthy), ("ami-green", green)] {
            let facts = ImageFacts {
                owner: "1".into(),
                available: true,
                tags: Default::default(),
            };
            aws.images.insert(ami.into(), Image { facts, behaviour });
        }
        for (tg, ami) in [(TG_A, "ami-blue"), (TG_B, "ami-green")] {
            let ids = aws.run_instances(ami, 2, Default::default());
            let group = aws.target_groups.entry(tg.into()).or_default();
            for id in ids {
                group.targets.insert(id, Target::new(0));
            }
        }
        aws.set_listener("l", vec![(TG_A.into(), 100), (TG_B.into(), 0)]);
        aws.now_ms = 120_000;
        aws.set_listener("l", vec![(TG_A.into(), 90), (TG_B.into(), 10)]);
        aws.now_ms = 600_000;
        aws
    }

    fn query(tg: &str, metric: &str, stat: &str) -> StatQuery {
        StatQuery {
            namespace: ALB_NAMESPACE.into(),
            metric_name: metric.into(),
            dimensions: vec![
                ("LoadBalancer".into(), "app/sim/1".into()),
                ("TargetGroup".into(), target_group_dimension(tg)),
            ],
            stat: stat.into(),
            period_s: 60,
        }
    }

    #[test]
    fn requests_follow_the_weights_over_time_and_periods_without_requests_have_no_datapoint() {
        let aws = world(Behaviour::Healthy);
        let rate = rps("l");
        let green = aws.metric_data(&[query(TG_B, "RequestCount", "Sum")], 0, 600);
        assert_eq!(
            green[0].first().map(|p| p.0),
            Some(120),
            "no green requests before 120 s"
        );
        assert_eq!(green[0].len(), 8);
        assert_eq!(green[0][0].1, (rate * 6.0).round());
        let blue = aws.metric_data(&[query(TG_A, "RequestCount", "Sum")], 0, 120);
        assert_eq!(blue[0], [(0, (rate * 60.0).round()), (60, (rate * 60.0).round())]);
        // Asked twice, the same answer.
        assert_eq!(green, aws.metric_data(&[query(TG_B, "RequestCount", "Sum")], 0, 600));
    }

    #[test]
    fn an_erroring_release_answers_with_more_5xx_and_a_slow_one_slower() {
        let erroring = world(Behaviour::Erroring);
        let errors = |aws: &Aws, tg| -> f64 {
            aws.metric_data(&[query(tg, "HTTPCode_Target_5XX_Count", "Sum")], 120, 600)[0]
                .iter()
                .map(|p| p.1)
                .sum()
        };
        let requests = |aws: &Aws, tg| -> f64 {
            aws.metric_data(&[query(tg, "RequestCount", "Sum")], 120, 600)[0]
                .iter()
                .map(|p| p.1)
                .sum()
        };
        let green_rate = errors(&erroring, TG_B) / requests(&erroring, TG_B);
        let blue_rate = errors(&erroring, TG_A) / requests(&erroring, TG_A);
        assert!(
            green_rate > 0.05 && blue_rate < 0.02,
            "green {green_rate}, blue {blue_rate}"
        );

        let slow = world(Behaviour::Slow);
        let p99 = slow.metric_data(&[query(TG_A, "TargetResponseTime", "p99")], 120, 180)[0][0].1;
        assert!((p99 - 0.1 * 100f64.ln()).abs() < 1e-6, "{p99}");
        let stat = format!("TC({:.6}:)", p99 * 1.2);
        let slower = |tg| {
            slow.metric_data(&[query(tg, "TargetResponseTime", &stat)], 120, 600)[0]
                .iter()
                .map(|p| p.1)
                .sum::<f64>()
        };
        let share_green = slower(TG_B) / requests(&slow, TG_B);
        let share_blue = slower(TG_A) / requests(&slow, TG_A);
        assert!(
            share_green > 0.04 && share_blue < 0.01,
            "green {share_green}, blue {share_blue}"
        );
    }
}
