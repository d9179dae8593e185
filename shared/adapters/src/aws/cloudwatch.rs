//! CloudWatch: which of a service's alarms are in ALARM now, and the metric data canary
//! analysis judges (`GetMetricData`, every page).

use super::error::aws_error;
use crate::{AdapterError, AdapterResult, StatQuery};
use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_smithy_types::DateTime;
use greenlight_core::Epoch;
use std::collections::HashMap;

/// The services' CloudWatch alarms.
pub struct CloudWatchAlarms {
    pub client: aws_sdk_cloudwatch::Client,
}

#[async_trait]
impl crate::Alarms for CloudWatchAlarms {
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>> {
        let mut firing = Vec::new();
        // DescribeAlarms takes at most 100 names a call.
        for chunk in names.chunks(100) {
            let out = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                .send()
                .await
                .map_err(|e| aws_error("cloudwatch", "DescribeAlarms", e))?;
            // The state is checked here too: the request's StateValue filter is not applied
            // together with AlarmNames everywhere (moto ignores it).
            let alarm = Some(&aws_sdk_cloudwatch::types::StateValue::Alarm);
            let metric = out
                .metric_alarms()
                .iter()
                .filter(|a| a.state_value() == alarm)
                .filter_map(|a| a.alarm_name());
            let composite = out
                .composite_alarms()
                .iter()
                .filter(|a| a.state_value() == alarm)
                .filter_map(|a| a.alarm_name());
            firing.extend(metric.chain(composite).map(str::to_string));
        }
        Ok(firing)
    }

    async fn metric_data(
        &self,
        queries: &[StatQuery],
        start: Epoch,
        end: Epoch,
    ) -> AdapterResult<Vec<Vec<(Epoch, f64)>>> {
        let mut series: Vec<Vec<(Epoch, f64)>> = vec![Vec::new(); queries.len()];
        // GetMetricData takes at most 500 queries a call; each answer may come in pages.
        for (chunk_at, chunk) in queries.chunks(500).enumerate() {
            let built: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| query(&format!("q{i}"), q))
                .collect();
            let mut next_token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(built.clone()))
                    .start_time(DateTime::from_secs(start as i64))
                    .end_time(DateTime::from_secs(end as i64))
                    .scan_by(ScanBy::TimestampAscending)
                    .set_next_token(next_token.clone())
                    .send()
                    .await
                    .map_err(|e| aws_error("cloudwatch", "GetMetricData", e))?;
                let by_id: HashMap<&str, usize> = (0..chunk.len())
                    .map(|i| (built[i].id(), i))
                    .filter_map(|(id, i)| id.map(|id| (id, i)))
                    .collect();
                for result in out.metric_data_results() {
                    let Some(i) = result.id().and_then(|id| by_id.get(id)) else {
                        return Err(AdapterError::Invalid(format!(
                            "GetMetricData answered an id it was not asked: {:?}",
                            result.id()
                        )));
                    };
                    let points = result
                        .timestamps()
                        .iter()
                        .zip(result.values())
                        .map(|(t, v)| (t.secs().max(0) as Epoch, *v));
                    series[chunk_at * 500 + i].extend(points);
                }
                next_token = out.next_token().map(str::to_string);
                if next_token.is_none() {
                    break;
                }
            }
        }
        for points in &mut series {
            points.sort_by_key(|(t, _)| *t);
        }
        Ok(series)
    }
}

/// One `MetricStat` query.
fn query(id: &str, q: &StatQuery) -> MetricDataQuery {
    let dimensions = q
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let metric = Metric::builder()
        .namespace(&q.namespace)
        .metric_name(&q.metric_name)
        .set_dimensions(Some(dimensions))
        .build();
    let stat = MetricStat::builder()
        .metric(metric)
        .period(q.period_s.clamp(1, i32::MAX as u64) as i32)
        .stat(&q.stat)
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(stat)
        .return_data(true)
        .build()
}
