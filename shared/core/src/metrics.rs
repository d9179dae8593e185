//! Deployment metrics as CloudWatch Embedded Metric Format (EMF) lines.
//!
//! A committed decision can reach a milestone: green became healthy, traffic went back to the
//! previous version, or the deployment ended. [`milestones`] compares a deployment before and
//! after one decision and renders one EMF line per milestone reached, with the service as a
//! dimension. Pure: the caller prints the lines (a Lambda function's stdout goes to CloudWatch
//! Logs, which extracts the metrics). Each milestone is reached by exactly one committed
//! write, so a redelivered event never counts twice.
//!
//! Metrics (namespace [`NAMESPACE`]):
//! - `TimeToHealthy` (Seconds): deployment start → every green target healthy and smoke-tested;
//! - `TimeToRevert` (Milliseconds): the rollback event's own time → traffic back, and
//!   `ReceiptToRevert` (Milliseconds): its receipt → traffic back (greenlight's own share);
//! - `DeploymentDuration` (Seconds) and `Deployments` (Count), also by `outcome`
//!   (`succeeded` or `aborted`).

use crate::model::Deployment;
use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every greenlight metric.
pub const NAMESPACE: &str = "greenlight";

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    /// A CloudWatch unit: `Seconds`, `Milliseconds`, `Count`.
    pub unit: &'static str,
    pub value: u64,
}

/// The EMF lines for what `after` reached that `before` (the same deployment before the
/// decision, or None for a new one) had not. `timestamp_ms` is when the decision committed.
pub fn milestones(before: Option<&Deployment>, after: &Deployment, timestamp_ms: u64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut emit = |dimensions: &[&str], metrics: &[Metric], properties: Vec<(&str, Value)>| {
        lines.push(emf_line(after, dimensions, metrics, properties, timestamp_ms));
    };
    if let (None, Some(healthy_at)) = (before.and_then(|b| b.healthy_at), after.healthy_at) {
        let metric = Metric {
            name: "TimeToHealthy",
            unit: "Seconds",
            value: healthy_at.saturating_sub(after.created_at),
        };
        emit(&["service"], &[metric], vec![]);
    }
    let traffic_back = |d: Option<&Deployment>| d.and_then(|d| d.revert.as_ref()).and_then(|r| r.traffic_back_at_ms);
    if let (None, Some(revert)) = (traffic_back(before), after.revert.as_ref()) {
        if let (Some(to_revert), Some(from_receipt)) = (revert.time_to_revert_ms(), revert.receipt_to_revert_ms()) {
            let metrics = [
                Metric {
                    name: "TimeToRevert",
                    unit: "Milliseconds",
                    value: to_revert,
                },
                Metric {
                    name: "ReceiptToRevert",
                    unit: "Milliseconds",
                    value: from_receipt,
                },
            ];
            let properties = vec![
                ("trigger", json!(revert.trigger)),
                ("requested_by", json!(revert.requested_by)),
                ("back_to", json!(revert.back_to)),
            ];
            emit(&["service"], &metrics, properties);
        }
    }
    let ended = |d: Option<&Deployment>| d.is_some_and(|d| d.phase.is_terminal());
    if !ended(before) && ended(Some(after)) {
        let metrics = [
            Metric {
                name: "DeploymentDuration",
                unit: "Seconds",
                value: after.updated_at.saturating_sub(after.created_at),
            },
            Metric {
                name: "Deployments",
                unit: "Count",
                value: 1,
            },
        ];
        emit(
            &["service", "outcome"],
            &metrics,
            vec![("outcome", json!(after.phase.name()))],
        );
    }
    lines
}

/// One EMF document of a deployment: metrics under dimension sets `[service]` and, when more
/// are given, `[service, ...]`, with the deployment's identity as searchable properties.
fn emf_line(
    dep: &Deployment,
    dimensions: &[&str],
    metrics: &[Metric],
    mut properties: Vec<(&str, Value)>,
    timestamp_ms: u64,
) -> String {
    properties.extend([("deploy_id", json!(dep.deploy_id)), ("version", json!(dep.version))]);
    emf_document(&dep.service, dimensions, metrics, properties, timestamp_ms)
}

/// One EMF document of `service`: metrics under dimension sets `[service]` and, when more are
/// given, `[service, ...]`, plus searchable properties. (The fleet audit's counts use it too.)
pub fn emf_document(
    service: &str,
    dimensions: &[&str],
    metrics: &[Metric],
    properties: Vec<(&str, Value)>,
    timestamp_ms: u64,
) -> String {
    let mut dimension_sets = vec![json!(["service"])];
    if dimensions.len() > 1 {
        dimension_sets.push(json!(dimensions));
    }
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("service".into(), json!(service));
    for (key, value) in properties {
        doc.insert(key.into(), value);
    }
    for metric in metrics {
        doc.insert(metric.name.into(), json!(metric.value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Phase, RevertRecord};

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "deploy_id": "d-1", "service": "web", "version": "v2", "ami": "ami-1", "gen": 1,
            "source": "greenlight", "requested_by": "ci", "reason": null, "blue": null, "green_tg": "tg-b",
            "green_instances": [], "phase": {"phase": "verifying", "weight": 0, "polls": 0}, "max_weight": 0,
            "created_at": 1000, "updated_at": 1000, "healthy_at": null, "revert": null, "rollback": false,
            "timeline": []
        }))
        .expect("a deployment")
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).expect("EMF lines are JSON")
    }

    /// The metric names a line declares, each with its value in the document.
    fn declared(doc: &Value) -> Vec<(String, u64)> {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().unwrap().to_string();
                let value = doc[&name].as_u64().expect("each declared metric has a value");
                (name, value)
            })
            .collect()
    }

    #[test]
    fn green_becoming_healthy_emits_time_to_healthy_once() {
        let before = deployment();
        let mut after = before.clone();
        after.healthy_at = Some(1042);
        let lines = milestones(Some(&before), &after, 1_042_000);
        assert_eq!(lines.len(), 1);
        let doc = parse(&lines[0]);
        assert_eq!(declared(&doc), vec![("TimeToHealthy".into(), 42)]);
        assert_eq!(doc["service"], "web");
        assert_eq!(doc["_aws"]["Timestamp"], 1_042_000);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["service"]]));
        // The next decision on an already-healthy deployment reaches nothing new.
        assert!(milestones(Some(&after), &after, 1_043_000).is_empty());
    }

    #[test]
    fn traffic_back_emits_time_to_revert_from_the_event_and_from_receipt() {
        let mut before = deployment();
        before.revert = Some(RevertRecord {
            trigger: crate::model::Trigger::Alarm,
            requested_by: "alarm:web-5xx".into(),
            reason: "5xx".into(),
            event_id: "e-1".into(),
            event_time_ms: 5_000,
            received_at_ms: 5_600,
            back_to: "v1".into(),
            traffic_back_at_ms: None,
        });
        let mut after = before.clone();
        after.revert.as_mut().unwrap().traffic_back_at_ms = Some(5_650);
        let lines = milestones(Some(&before), &after, 5_700);
        assert_eq!(lines.len(), 1);
        let doc = parse(&lines[0]);
        assert_eq!(
            declared(&doc),
            vec![("TimeToRevert".into(), 650), ("ReceiptToRevert".into(), 50)]
        );
        assert_eq!(doc["trigger"], "alarm");
        assert_eq!(doc["back_to"], "v1");
        assert!(milestones(Some(&after), &after, 5_800).is_empty());
    }

    #[test]
    fn an_ending_emits_duration_and_a_count_by_outcome() {
        for (phase, outcome) in [
            (Phase::Succeeded, "succeeded"),
            (Phase::Aborted { reason: "gate".into() }, "aborted"),
        ] {
            let before = deployment();
            let mut after = before.clone();
            after.phase = phase;
            after.updated_at = 1300;
            let lines = milestones(Some(&before), &after, 1_300_000);
            assert_eq!(lines.len(), 1, "{outcome}");
            let doc = parse(&lines[0]);
            assert_eq!(
                declared(&doc),
                vec![("DeploymentDuration".into(), 300), ("Deployments".into(), 1)]
            );
            assert_eq!(doc["outcome"], outcome);
            assert_eq!(
                doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["service"], ["service", "outcome"]])
            );
            assert!(milestones(Some(&after), &after, 1_400_000).is_empty());
        }
    }

    #[test]
    fn a_new_deployment_reaches_nothing_yet() {
        assert!(milestones(None, &deployment(), 0).is_empty());
    }
}
