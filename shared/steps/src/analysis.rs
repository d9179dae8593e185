//! What shift-traffic and retire-blue observe for canary analysis: green's and blue's
//! metrics over the window judged, fetched with `GetMetricData` (the queries and their
//! reading are the core's, `greenlight_core::analysis::fetch`).
//!
//! A failed fetch is an observation too ([`Observation::Unavailable`]): the decision never
//! takes missing data for evidence that green is fine.

use greenlight_adapters::{Ports, StatQuery};
use greenlight_core::analysis::fetch::{self, Subject};
use greenlight_core::analysis::{
    load_balancer_dimension, target_group_dimension, window, Analysis, Counts, Observation,
};
use greenlight_core::judging::{analysis_due, analysis_of, analysis_windows};
use greenlight_core::model::{Phase, State};
use greenlight_core::Epoch;

/// The analysis observation the deployment's decision needs now, if one is due.
pub async fn observe_analysis(ports: &Ports, state: &State) -> Option<Observation> {
    let config = &state.config;
    let dep = state.deployment.as_ref()?;
    let analysis = analysis_of(config, dep)?;
    let now = ports.clock.now();
    if analysis_due(config, dep, now).is_none_or(|due| due > now) {
        // Not due (or held): the decision looks at nothing, so nothing is fetched.
        return Some(Observation::TooEarly);
    }
    let (since, before) = analysis_windows(config, dep)?;
    let Some((from, to)) = window(since, now, analysis.period_s, analysis.lag_s) else {
        return Some(Observation::TooEarly);
    };
    let blue = dep.blue.as_ref()?;
    let load_balancer = config
        .switch
        .points()
        .first()
        .map(|p| load_balancer_dimension(p.arn()))
        .unwrap_or_default();
    let subject = |tg: &str| Subject {
        target_group: target_group_dimension(tg),
        load_balancer: load_balancer.clone(),
        service: config.service.clone(),
    };
    let blue_window = match before {
        Some((b_from, b_to)) => {
            let period = analysis.period_s.max(1);
            let (b_from, b_to) = (b_from.div_ceil(period) * period, b_to / period * period);
            if b_to <= b_from {
                return Some(Observation::Unavailable {
                    why: "no complete metric period of blue before green took all the traffic".into(),
                });
            }
            (b_from, b_to)
        }
        None => (from, to),
    };
    let horizon_s = match dep.phase {
        Phase::Baking { .. } => config.bake_window_s,
        _ => analysis.max_step_s,
    };
    let horizon_periods = (horizon_s / analysis.period_s.max(1)).clamp(1, u32::MAX as u64) as u32;
    let fetched = fetch_evidence(
        ports,
        analysis,
        (&subject(&dep.green_tg), (from, to)),
        (&subject(&blue.target_group), blue_window),
        before.is_some(),
        horizon_periods,
    )
    .await;
    Some(match fetched {
        Ok(evidence) => Observation::Fetched { from, to, evidence },
        Err(why) => Observation::Unavailable { why },
    })
}

/// Both rounds of queries for green and blue, read into evidence.
async fn fetch_evidence(
    ports: &Ports,
    analysis: &Analysis,
    (green, green_window): (&Subject, (Epoch, Epoch)),
    (blue, blue_window): (&Subject, (Epoch, Epoch)),
    blue_before: bool,
    horizon_periods: u32,
) -> Result<greenlight_core::analysis::Evidence, String> {
    let period = analysis.period_s;
    let (green_first, blue_first) = rounds(
        ports,
        (&fetch::first_round(analysis, green, period), green_window),
        (&fetch::first_round(analysis, blue, period), blue_window),
        period,
    )
    .await?;
    // Latency: green's threshold is max_ratio × blue's percentile, blue's the percentile.
    let percentiles = fetch::blue_percentiles(analysis, &blue_first);
    let ratios = fetch::latency_ratios(analysis);
    let thresholds: Vec<Option<(f64, f64)>> = percentiles
        .iter()
        .zip(&ratios)
        .map(|(p, ratio)| p.map(|p| (p * ratio, p)))
        .collect();
    let (mut green_second, mut blue_second) = (Vec::new(), Vec::new());
    if !thresholds.is_empty() {
        let green_t: Vec<f64> = thresholds.iter().map(|t| t.map_or(f64::MAX, |t| t.0)).collect();
        let blue_t: Vec<f64> = thresholds.iter().map(|t| t.map_or(f64::MAX, |t| t.1)).collect();
        (green_second, blue_second) = rounds(
            ports,
            (&fetch::second_round(green, &green_t, period), green_window),
            (&fetch::second_round(blue, &blue_t, period), blue_window),
            period,
        )
        .await?;
    }
    let mut green_counts = fetch::counts(analysis, &green_first, &green_second);
    let mut blue_counts = fetch::counts(analysis, &blue_first, &blue_second);
    // A latency metric without blue's percentile has no threshold: no evidence either way.
    let mut latency = 0;
    for (i, metric) in analysis.metrics.iter().enumerate() {
        if let greenlight_core::analysis::MetricSpec::Latency { .. } = metric {
            if thresholds.get(latency).is_some_and(Option::is_none) {
                for counts in [&mut green_counts[i], &mut blue_counts[i]] {
                    counts.iter_mut().for_each(|c| *c = Counts::default());
                }
            }
            latency += 1;
        }
    }
    let thresholds: Vec<(f64, f64)> = thresholds.iter().map(|t| t.unwrap_or((0.0, 0.0))).collect();
    Ok(fetch::evidence(
        analysis,
        green_counts,
        blue_counts,
        blue_before,
        &thresholds,
        horizon_periods,
    ))
}

/// Green's and blue's queries of one round, each over its window: one `GetMetricData` call
/// when the windows are the same (a canary step: both groups behind one listener), else one
/// per window (the bake window judges blue's traffic before green took it all).
async fn rounds(
    ports: &Ports,
    (green, green_window): (&[StatQuery], (Epoch, Epoch)),
    (blue, blue_window): (&[StatQuery], (Epoch, Epoch)),
    period: u64,
) -> Result<(Vec<Vec<f64>>, Vec<Vec<f64>>), String> {
    if green_window != blue_window {
        let green = series(ports, green, green_window, period).await?;
        return Ok((green, series(ports, blue, blue_window, period).await?));
    }
    let both: Vec<StatQuery> = green.iter().chain(blue).cloned().collect();
    let mut green_series = series(ports, &both, green_window, period).await?;
    let blue_series = green_series.split_off(green.len().min(green_series.len()));
    Ok((green_series, blue_series))
}

/// Each query's values per period of `(from, to)`.
async fn series(
    ports: &Ports,
    queries: &[StatQuery],
    (from, to): (Epoch, Epoch),
    period: u64,
) -> Result<Vec<Vec<f64>>, String> {
    let points = ports
        .alarms
        .metric_data(queries, from, to)
        .await
        .map_err(|e| e.to_string())?;
    Ok(points.iter().map(|p| fetch::per_period(p, from, to, period)).collect())
}
