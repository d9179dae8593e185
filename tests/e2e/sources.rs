//! The other image-published sources: an EC2 Image Builder image becoming AVAILABLE (its
//! build number part of the release) and a release manifest uploaded to S3 each start a
//! deployment of the right AMI.

use greenlight_core::model::{ImageSource, PhaseName};
use greenlight_e2e::{quick, started, App, Env};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::start_deployment;
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = greenlight_local::emulator::repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Publishes build `build` of recipe version `version` as Image Builder would (an AMI tagged
/// with the image's ARN, then the AVAILABLE event) and waits for the deployment it starts.
async fn image_builder_build(env: &Env, version: &str, build: u32) -> (String, String, Ending) {
    let ami = env.image(&format!("{version}-{build}"), App::Healthy).await;
    let image_arn = format!(
        "arn:aws:imagebuilder:us-east-1:123456789012:image/{}/{version}/{build}",
        env.service
    );
    let tag = aws_sdk_ec2::types::Tag::builder()
        .key("Ec2ImageBuilderArn")
        .value(&image_arn)
        .build();
    env.local
        .clients
        .ec2
        .create_tags()
        .resources(&ami)
        .tags(tag)
        .send()
        .await
        .unwrap();
    let mut event = sample("imagebuilder-image-available.json");
    event["resources"][0] = image_arn.into();

    let id = started(
        &start_deployment(&env.local.ports, &event)
            .await
            .map(Outcome::Start)
            .map_err(|e| e.to_string()),
    );
    let ending = env.wait(&id).await;
    (id, ami, ending)
}

#[tokio::test]
async fn image_builder_available_event_deploys_the_ami_it_produced() {
    let env = Env::new("imagebuilder", quick).await;

    let (id, ami, ending) = image_builder_build(&env, "2.0.0", 1).await;

    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    let live = env.ledger(None).await.service.live.unwrap();
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("2.0.0/1", ami.as_str()));
    assert_eq!(env.deployment(&id).await.source, ImageSource::ImageBuilder);
}

/// Found as a new user: the build number was dropped, so a rebuild of the live recipe
/// version (a patched base image) was refused as "version reused with another AMI".
#[tokio::test]
async fn image_builder_rebuild_of_the_live_version_deploys_as_a_newer_release() {
    let env = Env::new("ib-rebuild", quick).await;
    let (_, _, first) = image_builder_build(&env, "2.0.0", 1).await;
    assert_eq!(first, Ending::Done(PhaseName::Succeeded));

    let (id, ami, rebuild) = image_builder_build(&env, "2.0.0", 2).await;

    assert_eq!(rebuild, Ending::Done(PhaseName::Succeeded));
    let state = env.ledger(Some(&id)).await;
    let live = state.service.live.expect("live release");
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("2.0.0/2", ami.as_str()));
    assert_eq!(
        state.deployment.expect("deployment").blue.expect("blue").version,
        "2.0.0/1"
    );
    assert_eq!(
        env.weights().await.len(),
        1,
        "all traffic on one group: {:?}",
        env.weights().await
    );
}

#[tokio::test]
async fn release_manifest_in_s3_deploys_the_ami_it_names() {
    let env = Env::new("manifest", quick).await;
    let ami = env.image("v3", App::Healthy).await;
    let key = format!("releases/{}/v3.json", env.service);
    env.put_manifest(&key, &ami).await;
    let mut event = sample("s3-release-manifest-created.json");
    event["detail"]["bucket"]["name"] = env.local.names.bucket.clone().into();
    event["detail"]["object"]["key"] = key.into();

    let id = started(
        &start_deployment(&env.local.ports, &event)
            .await
            .map(Outcome::Start)
            .map_err(|e| e.to_string()),
    );

    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(
        (dep.version.as_str(), dep.ami.as_str(), dep.requested_by.as_str()),
        ("v3", ami.as_str(), "release-bot")
    );
}
