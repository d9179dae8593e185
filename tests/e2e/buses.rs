//! Commands only from the command bus: greenlight's own commands (`ImagePublished`,
//! `RollbackRequested`, `AbortRequested`, `PromoteRequested`) are routed only by the rules on
//! greenlight's command bus, whose policy names who may publish each; the same command
//! published on the account's default bus, where many principals may publish, reaches no
//! function and changes nothing: the default bus's rule for greenlight's source only records
//! it (in AWS a log group; here a queue nothing delivers from).

use greenlight_core::inbound::{RuleBus, COMMANDS, IMAGE_PUBLISHED, SOURCE};
use greenlight_core::model::PhaseName;
use greenlight_e2e::{quick, started, App, Env};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump;
use serde_json::{json, Value};
use std::time::Duration;

/// Everything a command could change: the ledger's history and pointers, the service's
/// instances (with their states) and the listener's weights.
async fn world(env: &Env) -> (Value, Vec<(String, String)>, Vec<(&'static str, u8)>) {
    let history = env.local.ports.ledger.history(&env.service).await.expect("history");
    let pointers = env.ledger(None).await.service;
    let mut instances: Vec<(String, String)> = env
        .service_instances()
        .await
        .into_iter()
        .map(|i| (i.instance_id, i.state.as_str().to_string()))
        .collect();
    instances.sort();
    let ledger = json!({"history": serde_json::to_value(&history).unwrap(),
                        "pointers": serde_json::to_value(&pointers).unwrap()});
    (ledger, instances, env.weights().await)
}

/// Publishes every greenlight command about the env's service on the default bus; each is
/// caught by the default bus's rule and none is delivered to a function.
async fn every_command_on_the_default_bus_is_ignored(env: &Env, ami: &str) {
    let who = json!({"service": env.service, "reason": "from the default bus", "requested_by": "mallory"});
    for command in COMMANDS {
        let detail = if command == IMAGE_PUBLISHED {
            json!({"service": env.service, "version": "v3", "ami": ami, "requested_by": "mallory"})
        } else {
            who.clone()
        };
        pump::publish_on(&env.local, RuleBus::Default, SOURCE, command, &detail)
            .await
            .expect("publish on the default bus");
    }
    let mut ignored: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ignored.len() < COMMANDS.len() && tokio::time::Instant::now() < deadline {
        ignored.extend(
            pump::ignored_commands(&env.local, Duration::from_secs(1))
                .await
                .expect("ignored commands"),
        );
    }
    let mut types: Vec<&str> = ignored.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    types.sort();
    let mut want = COMMANDS.to_vec();
    want.sort();
    assert_eq!(types, want, "the default bus's rule records each command: {ignored:?}");
    for event in &ignored {
        assert_eq!(event["source"], SOURCE, "{event}");
        assert_eq!(event["detail"]["service"], json!(env.service), "{event}");
    }
    let delivered = pump::pump_once(&env.local, Duration::from_secs(2)).await.expect("pump");
    assert!(
        delivered.is_empty(),
        "a command on the default bus reached a function: {delivered:?}"
    );
}

#[tokio::test]
async fn a_command_on_the_default_bus_changes_nothing_and_the_same_on_the_command_bus_acts() {
    let env = Env::new("buses", quick).await;
    let ami = env.image("v2", App::Healthy).await;
    let before = world(&env).await;
    assert_eq!(before.2, [("a", 100)]);

    // Deploy, roll back, abort, promote, all on the default bus: no deployment in the
    // ledger, no instance launched, the listener as it was.
    every_command_on_the_default_bus_is_ignored(&env, &ami).await;
    assert_eq!(world(&env).await, before);
    assert!(env.local.ports.ledger.history(&env.service).await.unwrap().is_empty());

    // The same ImagePublished on the command bus deploys.
    let detail = json!({"service": env.service, "version": "v2", "ami": ami, "requested_by": "ci"});
    pump::publish_on(&env.local, RuleBus::Command, SOURCE, IMAGE_PUBLISHED, &detail)
        .await
        .expect("publish on the command bus");
    let id = started(&env.deliver(1).await[0]);
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.weights().await, [("b", 100)]);
    // A command on the command bus is no ignored command.
    let ignored = pump::ignored_commands(&env.local, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(ignored.is_empty(), "{ignored:?}");

    // With v2 live, a rollback (and every other command) on the default bus still changes
    // nothing.
    let live = world(&env).await;
    every_command_on_the_default_bus_is_ignored(&env, &ami).await;
    assert_eq!(world(&env).await, live);
}
