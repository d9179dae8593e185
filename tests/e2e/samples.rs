//! Every file in `events/` is real-shaped (parses as the `aws_lambda_events` type of its
//! shape: an EventBridge event, an S3 event notification, a CloudWatch alarm's Lambda action,
//! or a step input) and means what its README row says.

use aws_lambda_events::cloudwatch_alarms::CloudWatchMetricAlarm;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use greenlight_core::announce;
use greenlight_core::inbound::{parse, parse_manifest, parse_scheduled, EventTarget, Inbound, Shape, MANIFEST_PREFIX};
use greenlight_core::plan::StepInput;
use serde_json::Value;
use std::path::PathBuf;

/// The fields S3 documents for every record of an event notification ("Event message
/// structure"; aws_lambda_events' `s3` feature would turn on `bytes/serde` under the whole
/// SDK, so its shape is written out here).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct S3Record {
    event_version: String,
    event_source: String,
    aws_region: String,
    event_time: String,
    event_name: String,
    user_identity: Value,
    request_parameters: Value,
    response_elements: Value,
    s3: S3Entity,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct S3Entity {
    s3_schema_version: String,
    configuration_id: String,
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct S3Bucket {
    name: String,
    arn: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct S3Object {
    key: String,
    size: u64,
    e_tag: String,
    sequencer: String,
}

#[derive(serde::Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

fn events_dir() -> PathBuf {
    greenlight_local::emulator::repo_root().join("events")
}

#[test]
fn every_sample_event_parses_as_documented() {
    // file → what greenlight makes of it.
    let expected: &[(&str, &str)] = &[
        ("image-published.json", "image checkout v2.4.0"),
        ("image-published-retry.json", "image checkout v2.4.0 attempt 2"),
        ("image-published-hold.json", "image checkout v2.5.0 on_failure hold"),
        ("imagebuilder-image-available.json", "imagebuilder checkout 2.5.0/1"),
        ("imagebuilder-image-failed.json", "ignored"),
        ("ec2-ami-available.json", "ami ami-0a1b2c3d4e5f60718"),
        ("ec2-ami-failed.json", "ignored"),
        (
            "s3-notification-manifest-created.json",
            "manifests releases/checkout/v2.7.0+build.5.json",
        ),
        ("s3-notification-path-escape.json", "rejected: not a plain path"),
        ("cloudwatch-alarm-action-alarm.json", "alarm checkout-5xx ALARM"),
        ("cloudwatch-alarm-action-ok.json", "alarm checkout-5xx OK"),
        ("s3-release-manifest-created.json", "manifest checkout v2.6.0"),
        ("s3-manifest-path-escape.json", "rejected: not a plain path"),
        ("rollback-requested.json", "rollback checkout by alice@example.com"),
        (
            "rollback-requested-to-version.json",
            "rollback checkout to v2.3.1 by runbook:checkout-sev2",
        ),
        ("abort-requested.json", "abort checkout by alice@example.com"),
        ("promote-requested.json", "promote checkout by bob@example.com"),
        ("cloudwatch-alarm-state-change-alarm.json", "alarm checkout-5xx ALARM"),
        ("cloudwatch-alarm-state-change-ok.json", "alarm checkout-5xx OK"),
        (
            "scheduled-reconcile.json",
            "reconcile run 8d1f6a2e-5b3c-4e7d-9a10-2c4b6e8f0a13",
        ),
        (
            "deployment-state-changed.json",
            "announced checkout verified -> shifting at 50 %",
        ),
        (
            "dynamodb-stream-deployment-batch.json",
            "stream batch of 3 -> verified, shifting",
        ),
        ("step-input.json", "step input"),
        ("step-input-after-error.json", "step input with error"),
        ("hook-payload.json", "hook checks traffic_shifted at 10% call 2"),
    ];
    let mut files: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = expected.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every sample in events/ needs a row here (and in events/README.md)"
    );

    for (file, want) in expected {
        let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let got = if file.starts_with("hook-payload") {
            // What a lifecycle hook receives (a Lambda function's event, a webhook's body).
            let payload: greenlight_core::hook::Payload = serde_json::from_value(value).unwrap();
            assert_eq!(
                payload.invocation_id,
                format!("{}/traffic_shifted/10/checks/2", payload.deploy_id),
                "{file}"
            );
            format!(
                "hook {} {} at {}% call {}",
                payload.hook,
                payload.stage.as_str(),
                payload.weight,
                payload.call
            )
        } else if file.starts_with("step-input") {
            let input: StepInput = serde_json::from_value(value).unwrap();
            format!("step input{}", if input.error.is_some() { " with error" } else { "" })
        } else if file.starts_with("dynamodb-stream") {
            // What the pipe hands announce-deployments: stream records as DynamoDB Streams
            // writes them.
            let records = value.as_array().expect("a batch is an array");
            for record in records {
                assert_eq!(record["eventSource"], "aws:dynamodb", "{file}");
                assert_eq!(record["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES", "{file}");
                assert!(record["dynamodb"]["SequenceNumber"].is_string(), "{file}");
                assert!(announce::passes_filter(record), "{file}: the pipe's filter keeps it");
            }
            let phases: Vec<String> = announce::enrich(&value)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .iter()
                .map(|e| e.phase.to_string())
                .collect();
            format!("stream batch of {} -> {}", records.len(), phases.join(", "))
        } else if value["detail-type"] == announce::DETAIL_TYPE {
            let typed: EventBridgeEvent<announce::DeploymentStateChanged> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(typed.source, announce::SOURCE);
            let d = typed.detail;
            format!(
                "announced {} {} -> {} at {} %",
                d.service,
                d.previous_phase.map(|p| p.to_string()).unwrap_or_default(),
                d.phase,
                d.green_weight
            )
        } else {
            // Real-shaped: the type aws_lambda_events has for its shape accepts it.
            match Shape::of(&value) {
                Shape::EventBridge => {
                    let typed: EventBridgeEvent<Value> =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert!(!typed.source.is_empty());
                }
                Shape::S3Notification => {
                    let typed: S3Notification = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert_eq!(typed.records.len(), 1, "{file}");
                }
                Shape::AlarmAction => {
                    let typed: CloudWatchMetricAlarm =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert_eq!(typed.source.as_deref(), Some("aws.cloudwatch"), "{file}");
                }
                Shape::S3TestEvent => panic!("{file}: no sample of S3's test event"),
            }
            if let Ok(run) = parse_scheduled(&value) {
                assert_eq!(EventTarget::of(&value), EventTarget::ReconcileServices, "{file}");
                let got = format!("reconcile run {}", run.event_id);
                assert_eq!(&got, want, "{file}");
                continue;
            }
            match parse(&value, MANIFEST_PREFIX) {
                Ok(Inbound::Image(r)) if r.on_failure.is_some() => format!(
                    "image {} {} on_failure {}",
                    r.service,
                    r.version,
                    r.on_failure.unwrap().as_str()
                ),
                Ok(Inbound::Image(r)) if r.attempt > 1 => {
                    format!("image {} {} attempt {}", r.service, r.version, r.attempt)
                }
                Ok(Inbound::Image(r)) => format!("image {} {}", r.service, r.version),
                Ok(Inbound::ImageBuilder {
                    image_name, version, ..
                }) => format!("imagebuilder {image_name} {version}"),
                Ok(Inbound::Manifest { service, version, .. }) => format!("manifest {service} {version}"),
                Ok(Inbound::Manifests(records)) => {
                    let keys: Vec<String> = records
                        .iter()
                        .map(|r| r.as_ref().map_or_else(|e| e.to_string(), |m| m.key.clone()))
                        .collect();
                    format!("manifests {}", keys.join(" "))
                }
                Ok(Inbound::Ami { ami }) => format!("ami {ami}"),
                Ok(Inbound::Rollback(r)) => match &r.to_version {
                    Some(v) => format!("rollback {} to {v} by {}", r.service, r.requested_by),
                    None => format!("rollback {} by {}", r.service, r.requested_by),
                },
                Ok(Inbound::Alarm(a)) => format!("alarm {} {}", a.alarm_name, a.state),
                Ok(Inbound::Steer(r)) => {
                    let action = format!("{:?}", r.action).to_lowercase();
                    format!("{action} {} by {}", r.service, r.requested_by)
                }
                Ok(Inbound::Ignored(_)) => "ignored".into(),
                Err(e) if e.to_string().contains("not a plain path") => "rejected: not a plain path".into(),
                Err(e) => format!("rejected: {e}"),
            }
        };
        assert_eq!(&got, want, "{file}");
    }
}

/// The bus sample is what the pipe's enrichment makes of the stream sample's last record.
#[test]
fn the_deployment_event_sample_is_the_stream_samples_last_change() {
    let read = |file: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(events_dir().join(file)).unwrap()).unwrap()
    };
    let announced = announce::enrich(&read("dynamodb-stream-deployment-batch.json")).unwrap();
    let event = read("deployment-state-changed.json");
    assert_eq!(
        serde_json::to_value(announced.last().unwrap()).unwrap(),
        event["detail"]
    );
}

/// The alarm's two forms in `events/` are one transition (the same state timestamp): one
/// rollback request, whichever arrives.
#[test]
fn the_alarm_samples_in_both_forms_are_one_request() {
    let alarm = |file: &str| {
        let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
        match parse(&serde_json::from_str(&text).unwrap(), MANIFEST_PREFIX) {
            Ok(Inbound::Alarm(a)) => a,
            other => panic!("{file}: {other:?}"),
        }
    };
    let (bridged, direct) = (
        alarm("cloudwatch-alarm-state-change-alarm.json"),
        alarm("cloudwatch-alarm-action-alarm.json"),
    );
    assert_eq!(bridged.event_id, direct.event_id);
    assert_eq!(
        (bridged.alarm_name, bridged.state, bridged.previous_state),
        (direct.alarm_name, direct.state, direct.previous_state)
    );
}

#[test]
fn sample_manifest_parses() {
    let body = std::fs::read(events_dir().join("manifests/checkout/v2.6.0.json")).unwrap();
    let request = parse_manifest(&body, "checkout", "v2.6.0").unwrap();
    assert_eq!(request.ami, "ami-0f1e2d3c4b5a69788");
    assert_eq!(request.requested_by, "release-bot");
}
