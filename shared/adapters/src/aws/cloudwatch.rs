//! CloudWatch: which of a service's alarms are in ALARM now.

use super::error::aws_error;
use crate::AdapterResult;
use async_trait::async_trait;

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
}
