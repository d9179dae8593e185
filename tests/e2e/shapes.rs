//! The other shapes events arrive in, each delivered as AWS delivers it (to the function
//! `deliver` sends it to): an EC2 `AMI State Change` (the AMI's tags name service and
//! version), an S3 event notification (`Records`, keys form-encoded) sent to start-deployment
//! directly, and a CloudWatch alarm's Lambda action sent to revert-service directly, which is
//! the same rollback request as the alarm's EventBridge event.

use greenlight_core::ids::DeployId;
use greenlight_core::inbound::{SERVICE_TAG, VERSION_TAG};
use greenlight_core::model::{ImageSource, Phase, PhaseName};
use greenlight_e2e::{canary, now_rfc3339, quick, sample_event, started, App, Env};
use greenlight_local::fixture::{self, Spec};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::{deliver, revert_service, start_deployment, RevertOutcome, StartOutcome};
use serde_json::{json, Value};

/// Tags `ami` with `key=value`, as the image pipeline would.
async fn tag(env: &Env, ami: &str, key: &str, value: &str) {
    let tag = aws_sdk_ec2::types::Tag::builder().key(key).value(value).build();
    env.local
        .clients
        .ec2
        .create_tags()
        .resources(ami)
        .tags(tag)
        .send()
        .await
        .unwrap();
}

async fn deliver_now(env: &Env, event: &Value) -> Result<Outcome, String> {
    deliver(&env.local.ports, event).await.map_err(|e| e.to_string())
}

/// Nothing was started for the service: no deployment of `ami` as `version`, nothing in
/// flight, all traffic on the fleet the fixture built, no instance but that fleet's.
async fn nothing_changed(env: &Env, version: &str, ami: &str) {
    let id = DeployId::derive(&env.service, version, ami, 1);
    let state = env.ledger(Some(id.as_str())).await;
    assert!(state.deployment.is_none(), "{:?}", state.deployment);
    assert_eq!(state.service.active, None);
    assert_eq!(state.service.live.expect("live").version, "v1");
    assert_eq!(env.weights().await, [("a", 100)]);
    assert_eq!(
        env.service_instances().await.len(),
        env.world.blue_instances.len(),
        "no instance launched"
    );
}

#[tokio::test]
async fn an_available_ami_tagged_with_service_and_version_deploys_once_however_often_it_arrives() {
    let env = Env::new("ami", quick).await;
    let ami = env.image("v3", App::Healthy).await;
    tag(&env, &ami, SERVICE_TAG, &env.service).await;
    let event = sample_event("ec2-ami-available.json", &[("/detail/ImageId", json!(ami))]);

    let id = started(&deliver_now(&env, &event).await);
    let again = started(&deliver_now(&env, &event).await);

    assert_eq!(again, id, "the same deployment");
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(
        (dep.version.as_str(), dep.ami.as_str(), dep.source),
        ("v3", ami.as_str(), ImageSource::Ec2Ami)
    );
    let live = env.ledger(None).await.service.live.unwrap();
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("v3", ami.as_str()));
    assert_eq!(env.weights().await.len(), 1, "{:?}", env.weights().await);
}

#[tokio::test]
async fn an_ami_without_the_tags_or_that_failed_changes_nothing() {
    let env = Env::new("ami-none", quick).await;
    // The fixture tags the version only: no service, no greenlight release.
    let ami = env.image("v3", App::Healthy).await;
    let available = sample_event("ec2-ami-available.json", &[("/detail/ImageId", json!(ami))]);
    match deliver_now(&env, &available).await {
        Ok(Outcome::Start(StartOutcome::Ignored(why))) => {
            assert!(why.contains(SERVICE_TAG) && why.contains(VERSION_TAG), "{why}")
        }
        other => panic!("expected ignored, got {other:?}"),
    }
    nothing_changed(&env, "v3", &ami).await;

    // Tagged, but the AMI failed: ignored, whatever its tags say.
    tag(&env, &ami, SERVICE_TAG, &env.service).await;
    let failed = sample_event("ec2-ami-failed.json", &[("/detail/ImageId", json!(ami))]);
    match deliver_now(&env, &failed).await {
        Ok(Outcome::Start(StartOutcome::Ignored(why))) => assert!(why.contains("is failed"), "{why}"),
        other => panic!("expected ignored, got {other:?}"),
    }
    nothing_changed(&env, "v3", &ami).await;

    // Tagged with a version that is none: refused with the reason, nothing changed.
    tag(&env, &ami, VERSION_TAG, "latest").await;
    let refused = deliver_now(&env, &available).await.unwrap_err();
    assert!(
        refused.contains("greenlight:version") && refused.contains("latest"),
        "{refused}"
    );
    nothing_changed(&env, "latest", &ami).await;
}

/// An S3 event notification for these (already encoded) keys of the installation's bucket.
fn notification(env: &Env, encoded_keys: &[String]) -> Value {
    let record = sample_event("s3-notification-manifest-created.json", &[])["Records"][0].clone();
    let records: Vec<Value> = encoded_keys
        .iter()
        .map(|key| {
            let mut r = record.clone();
            r["s3"]["bucket"]["name"] = json!(env.local.names.bucket);
            r["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{}", env.local.names.bucket));
            r["s3"]["object"]["key"] = json!(key);
            r
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn an_s3_notification_deploys_the_manifest_its_encoded_key_names() {
    let env = Env::new("s3-notify", quick).await;
    let ami = env.image("v3", App::Healthy).await;
    env.put_manifest(&format!("releases/{}/v3.0.0+build.7.json", env.service), &ami)
        .await;
    let event = notification(&env, &[format!("releases/{}/v3.0.0%2Bbuild.7.json", env.service)]);

    let id = started(&deliver_now(&env, &event).await);

    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(
        (
            dep.version.as_str(),
            dep.ami.as_str(),
            dep.source,
            dep.requested_by.as_str()
        ),
        ("v3.0.0+build.7", ami.as_str(), ImageSource::S3Manifest, "release-bot")
    );
}

#[tokio::test]
async fn an_s3_notification_whose_decoded_key_escapes_the_prefix_is_refused_and_changes_nothing() {
    let env = Env::new("s3-escape", quick).await;
    let ami = env.image("v4", App::Healthy).await;
    // A manifest that would deploy, outside the prefix: reading it would be the escape.
    env.put_manifest(&format!("other/{}/v4.json", env.service), &ami).await;
    let escape = format!("releases/%2E%2E/other/{}/v4.json", env.service);

    let refused = deliver_now(&env, &notification(&env, std::slice::from_ref(&escape)))
        .await
        .unwrap_err();

    assert!(refused.contains("not a plain path"), "{refused}");
    nothing_changed(&env, "v4", &ami).await;

    // Several records: each on its own. The escape is refused (and said), the manifest
    // beside it deploys.
    env.put_manifest(&format!("releases/{}/v4.json", env.service), &ami)
        .await;
    let both = notification(&env, &[escape, format!("releases/{}/v4.json", env.service)]);
    let refused = deliver_now(&env, &both).await.unwrap_err();
    assert!(
        refused.contains("1 of the 2 records") && refused.contains("record 1") && refused.contains("not a plain path"),
        "{refused}"
    );
    let id = DeployId::derive(&env.service, "v4", &ami, 1);
    assert_eq!(env.wait(id.as_str()).await, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v4");
}

/// The current time as CloudWatch writes it in an alarm's Lambda action (`…000+0000`).
fn cloudwatch_now() -> String {
    now_rfc3339().replace('Z', ".000+0000")
}

#[tokio::test]
async fn an_alarms_lambda_action_reverts_like_its_eventbridge_form_and_both_forms_revert_once() {
    let spec = |s: &str| Spec {
        step_wait_s: 120,
        ..canary(s)
    };
    let env = Env::new("alarm-action", spec).await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    let alarm = fixture::alarm_name(&env.service);
    let at = cloudwatch_now();
    let action = sample_event(
        "cloudwatch-alarm-action-alarm.json",
        &[
            ("/alarmData/alarmName", json!(alarm)),
            ("/time", json!(at)),
            ("/alarmData/state/timestamp", json!(at)),
        ],
    );
    // The same transition through EventBridge (its own envelope id), and redelivered.
    let mut bridged = env.alarm_event("eb-1", "ALARM");
    bridged["detail"]["state"]["timestamp"] = json!(at);

    // Each function refuses the other's direct shape, changing nothing.
    let wrong = start_deployment(&env.local.ports, &action)
        .await
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("for revert-service"), "{wrong}");
    let records = notification(&env, &[format!("releases/{}/v9.json", env.service)]);
    let wrong = revert_service(&env.local.ports, &records)
        .await
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("for start-deployment"), "{wrong}");
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    let first = match deliver_now(&env, &action).await {
        Ok(Outcome::Revert(outcome)) => outcome,
        other => panic!("expected revert-service's outcome, got {other:?}"),
    };
    assert!(
        matches!(&first, RevertOutcome::Reverted { deploy_id, .. } if deploy_id == &id),
        "{first:?}"
    );
    assert_eq!(
        env.weights().await,
        [("a", 100)],
        "traffic back when the handler returns"
    );
    let reverted = env.deployment(&id).await;
    for event in [&bridged, &action, &bridged] {
        match deliver_now(&env, event).await {
            Ok(Outcome::Revert(RevertOutcome::Reverted { note, .. } | RevertOutcome::Ignored { why: note })) => {
                assert!(note.contains("already"), "{note}")
            }
            other => panic!("expected the rollback already done, got {other:?}"),
        }
    }

    // Recorded once, as the EventBridge form records it.
    let dep = env.deployment(&id).await;
    assert_eq!(
        dep.revert, reverted.revert,
        "reverted once, by the first form to arrive"
    );
    let record = dep.revert.clone().expect("the rollback is recorded");
    assert_eq!(
        (record.trigger, record.requested_by.as_str(), record.back_to.as_str()),
        (
            greenlight_core::model::Trigger::Alarm,
            format!("alarm:{alarm}").as_str(),
            "v1"
        )
    );
    assert!(
        record
            .reason
            .starts_with(&format!("alarm {alarm} in ALARM: Threshold Crossed")),
        "{}",
        record.reason
    );
    assert!(record.event_id.starts_with("alarm-"), "{}", record.event_id);
    let marks = dep
        .timeline
        .iter()
        .filter(|m| m.note.contains("rolled back by"))
        .count();
    assert_eq!(marks, 1, "{:#?}", dep.timeline);
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    assert!(env.live_instances_of(&id).await.is_empty(), "v2 fleet terminated");
    assert_eq!(env.weights().await, [("a", 100)]);
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");
}
