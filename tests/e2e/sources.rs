//! The other image-published sources: an EC2 Image Builder image becoming AVAILABLE and a
//! release manifest uploaded to S3 each start a deployment of the right AMI.

use greenlight_e2e::{quick, started, App, Env};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::start_deployment;
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = greenlight_local::emulator::repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[tokio::test]
async fn image_builder_available_event_deploys_the_ami_it_produced() {
    let env = Env::new("imagebuilder", quick).await;
    let ami = env.image("2.0.0", App::Healthy).await;
    let image_arn = format!(
        "arn:aws:imagebuilder:us-east-1:123456789012:image/{}/2.0.0/1",
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

    assert_eq!(env.wait(&id).await, Ending::Done("succeeded".into()));
    let live = env.ledger(None).await.service.live.unwrap();
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("2.0.0", ami.as_str()));
    assert_eq!(env.deployment(&id).await.source, "imagebuilder");
}

#[tokio::test]
async fn release_manifest_in_s3_deploys_the_ami_it_names() {
    let env = Env::new("manifest", quick).await;
    let ami = env.image("v3", App::Healthy).await;
    let key = format!("releases/{}/v3.json", env.service);
    let body = format!(r#"{{"ami": "{ami}", "requested_by": "release-bot"}}"#);
    env.local
        .clients
        .s3
        .put_object()
        .bucket(&env.local.names.bucket)
        .key(&key)
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap();
    let mut event = sample("s3-release-manifest-created.json");
    event["detail"]["bucket"]["name"] = env.local.names.bucket.clone().into();
    event["detail"]["object"]["key"] = key.into();

    let id = started(
        &start_deployment(&env.local.ports, &event)
            .await
            .map(Outcome::Start)
            .map_err(|e| e.to_string()),
    );

    assert_eq!(env.wait(&id).await, Ending::Done("succeeded".into()));
    let dep = env.deployment(&id).await;
    assert_eq!(
        (dep.version.as_str(), dep.ami.as_str(), dep.requested_by.as_str()),
        ("v3", ami.as_str(), "release-bot")
    );
}
