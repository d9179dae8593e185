//! Bad input gets a clear error and changes nothing: downgrades, malformed events,
//! unknown services, images that do not exist or belong to another account.

use greenlight_core::model::PhaseName;
use greenlight_e2e::{image_published, quick, App, Env};
use greenlight_local::orchestrator::Ending;
use greenlight_steps::start_deployment;
use serde_json::{json, Value};

/// What a refusal must not change: the service record, the history, the listener.
async fn world_snapshot(env: &Env) -> String {
    let state = env.ledger(None).await;
    let history = env.local.ports.ledger.history(&env.service).await.unwrap();
    format!("{:?}\n{:?}\n{:?}", state.service, history, env.weights().await)
}

#[tokio::test]
async fn older_image_than_live_is_refused_through_eventbridge() {
    let env = Env::new("downgrade", quick).await;
    let before = world_snapshot(&env).await;
    let old = env.image("v0.9", App::Healthy).await;
    env.publish("v0.9", &old).await;
    let result = env.deliver(1).await.remove(0);
    let err = result.expect_err("a downgrade must be refused");
    assert!(err.contains("older than the live version v1"), "{err}");
    assert!(err.contains("rollback"), "the error says what to do instead: {err}");
    assert_eq!(world_snapshot(&env).await, before);
}

/// Found as a new user: pre-release identifiers compared as strings put `rc.10` before
/// `rc.2`, so publishing rc.10 over a live rc.2 was refused as a downgrade.
#[tokio::test]
async fn release_candidate_10_deploys_over_a_live_release_candidate_2() {
    let env = Env::new("semver-rc", quick).await;
    let rc2 = env.image("2.0.0-rc.2", App::Healthy).await;
    let (_, ending) = env.deploy("2.0.0-rc.2", &rc2).await;
    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    let rc10 = env.image("2.0.0-rc.10", App::Healthy).await;

    let (id, ending) = env.deploy("2.0.0-rc.10", &rc10).await;

    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    let state = env.ledger(Some(&id)).await;
    let live = state.service.live.expect("live release");
    assert_eq!(
        (live.version.as_str(), live.ami.as_str()),
        ("2.0.0-rc.10", rc10.as_str())
    );
    // And rc.3 (after rc.10 as strings) is a downgrade: going back is a rollback's business.
    let rc3 = env.image("2.0.0-rc.3", App::Healthy).await;
    let before = world_snapshot(&env).await;
    env.publish("2.0.0-rc.3", &rc3).await;
    let err = env.deliver(1).await.remove(0).expect_err("rc.3 is older than rc.10");
    assert!(err.contains("older than the live version 2.0.0-rc.10"), "{err}");
    assert_eq!(world_snapshot(&env).await, before);
}

#[tokio::test]
async fn malformed_events_unknown_services_and_foreign_images_are_rejected() {
    let env = Env::new("badinput", quick).await;
    let before = world_snapshot(&env).await;
    let foreign = env
        .local
        .clients
        .ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images
        .unwrap_or_default()
        .into_iter()
        .find_map(|i| i.image_id)
        .expect("the emulator ships Amazon-owned images");
    let good = env.image("v2", App::Healthy).await;
    let foreign_refusal = format!("which {}'s AMI policy does not allow", env.service);
    let cases: Vec<(Value, &str)> = vec![
        (json!("not an object"), "expected a JSON object"),
        (
            json!({"source": "greenlight", "detail-type": "ImagePublished"}),
            "missing object field detail",
        ),
        (
            image_published(json!({"service": env.service, "version": "v2"})),
            "missing field `ami`",
        ),
        (
            image_published(json!({"service": env.service, "version": "v2", "ami": "ami-../../x"})),
            "invalid AMI id",
        ),
        (
            image_published(json!({"service": "no-such-service", "version": "v2", "ami": good})),
            "is not registered",
        ),
        (
            image_published(json!({"service": env.service, "version": "v2", "ami": "ami-0000000000000dead"})),
            "was not found",
        ),
        (
            image_published(json!({"service": env.service, "version": "v2", "ami": foreign})),
            &foreign_refusal,
        ),
    ];
    for (event, want) in cases {
        let err = start_deployment(&env.local.ports, &event)
            .await
            .expect_err(want)
            .to_string();
        assert!(err.contains(want), "{event}: {err:?} should contain {want:?}");
    }
    assert_eq!(world_snapshot(&env).await, before, "rejections changed the world");
}

#[tokio::test]
async fn no_deployment_starts_while_an_alarm_of_the_service_is_in_alarm() {
    let env = Env::new("preflight", quick).await;
    let alarm = greenlight_local::fixture::alarm_name(&env.service);
    let set = |state: aws_sdk_cloudwatch::types::StateValue| {
        let cloudwatch = env.local.clients.cloudwatch.clone();
        let alarm = alarm.clone();
        async move {
            cloudwatch
                .set_alarm_state()
                .alarm_name(alarm)
                .state_value(state)
                .state_reason("test")
                .send()
                .await
                .unwrap();
        }
    };
    let before = world_snapshot(&env).await;
    let ami = env.image("v2", App::Healthy).await;
    set(aws_sdk_cloudwatch::types::StateValue::Alarm).await;
    env.publish("v2", &ami).await;
    let err = env
        .deliver(1)
        .await
        .remove(0)
        .expect_err("refused while the alarm fires");
    assert!(err.contains(&format!("while its alarm {alarm} is in ALARM")), "{err}");
    assert_eq!(world_snapshot(&env).await, before, "nothing changed");

    set(aws_sdk_cloudwatch::types::StateValue::Ok).await;
    let (_, ending) = env.deploy("v2", &ami).await;
    assert_eq!(
        ending,
        greenlight_local::orchestrator::Ending::Done(PhaseName::Succeeded)
    );
}
