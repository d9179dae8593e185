//! At-least-once delivery: duplicate events start one deployment, every handler re-run
//! after success changes nothing, and a launch that crashed after RunInstances is
//! completed by redelivery without a second fleet.

use async_trait::async_trait;
use greenlight_adapters::{AdapterResult, LaunchRequest, Orchestrator, Ports};
use greenlight_core::decide::ImageRequest;
use greenlight_core::model::PhaseName;
use greenlight_core::plan::{Step, StepInput};
use greenlight_e2e::{image_published, quick, started, App, Env};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::{run_step, start_deployment, StartOutcome};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn duplicate_image_events_start_one_deployment() {
    let env = Env::new("duplicate", quick).await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    env.publish("v2", &ami).await;
    let results = env.deliver(2).await;
    let (first, second) = (started(&results[0]), started(&results[1]));
    assert_eq!(first, second, "both events map to one deployment");
    assert_eq!(env.wait(&first).await, Ending::Done(PhaseName::Succeeded));
    let history = env.local.ports.ledger.history(&env.service).await.unwrap();
    assert_eq!(history.len(), 1, "one deployment in the ledger");
    let green = env.live_instances_of(&first).await;
    assert_eq!(green.len(), 2, "one fleet of 2 launched, not two: {green:?}");
}

/// Everything a re-run could change: ledger items (with generations), listener, instances.
async fn snapshot(env: &Env, id: &str) -> String {
    let state = env.ledger(Some(id)).await;
    let dep = state.deployment.clone().unwrap();
    let mut ids = env.world.blue_instances.clone();
    ids.extend(dep.green_instances.clone());
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        state.service,
        dep,
        env.weights().await,
        env.states(&ids).await
    )
}

#[tokio::test]
async fn every_handler_rerun_after_success_changes_nothing() {
    let env = Env::new("rerun", quick).await;
    let ami = env.image("v2", App::Healthy).await;
    let (id, ending) = env.deploy("v2", &ami).await;
    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    let before = snapshot(&env, &id).await;

    let event = image_published(json!({"service": env.service, "version": "v2", "ami": ami}));
    let again = start_deployment(&env.local.ports, &event)
        .await
        .expect("duplicate start is not an error");
    assert!(
        matches!(again, StartOutcome::Started(ref out) if out.deploy_id == id && out.next == "end"),
        "{again:?}"
    );
    let input = StepInput {
        service: env.service.clone(),
        deploy_id: id.clone(),
        error: None,
    };
    for step in [
        Step::LaunchGreen,
        Step::CheckHealth,
        Step::ShiftTraffic,
        Step::Finalize,
        Step::RetireBlue,
    ] {
        let out = run_step(&env.local.ports, step, &input)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", step.name()));
        assert_eq!(out.next, "end", "{} re-run routes nowhere", step.name());
    }
    // abort-deployment after success (a late Catch): nothing to abort, the execution ends.
    let abort = run_step(&env.local.ports, Step::AbortDeployment, &input)
        .await
        .unwrap_or_else(|e| panic!("abort-deployment: {e}"));
    assert_eq!(abort.next, "end", "{}", abort.note);

    assert_eq!(snapshot(&env, &id).await, before, "re-runs changed the world");
}

/// An orchestrator that records start requests and runs nothing (the test drives steps).
struct Paused;

#[async_trait]
impl Orchestrator for Paused {
    async fn start(&self, _: &str, _: &serde_json::Value) -> AdapterResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn launch_crashed_after_run_instances_is_completed_by_redelivery() {
    let env = Env::new("crashlaunch", quick).await;
    let ports = Ports {
        orchestrator: Arc::new(Paused),
        ..env.local.ports.clone()
    };
    let ami = env.image("v2", App::Healthy).await;
    let request = ImageRequest {
        service: env.service.clone(),
        version: "v2".into(),
        ami: ami.clone(),
        source: greenlight_core::model::ImageSource::Greenlight,
        requested_by: "e2e".into(),
        reason: None,
        attempt: 1,
        rollback_of: None,
        repave_of: None,
        on_failure: None,
    };
    let id = request.deploy_id();
    let event = image_published(json!({"service": env.service, "version": "v2", "ami": ami}));
    start_deployment(&ports, &event).await.expect("start");

    // The first delivery of launch-green "crashed" right after RunInstances returned.
    let crashed = ports
        .fleet
        .launch(&LaunchRequest {
            service: env.service.clone(),
            deploy_id: id.to_string(),
            version: "v2".into(),
            ami: ami.clone(),
            client_token: id.client_token(0),
            launch: env.world.config.launch.clone(),
        })
        .await
        .expect("launch");
    assert_eq!(
        env.deployment(id.as_str()).await.green_instances,
        Vec::<String>::new(),
        "the crash left no record"
    );

    // Redelivery: the same token returns the same instances; they are recorded and registered.
    let input = StepInput {
        service: env.service.clone(),
        deploy_id: id.to_string(),
        error: None,
    };
    let out = run_step(&ports, Step::LaunchGreen, &input).await.expect("launch-green");
    assert_eq!(out.next, "check-health");
    let dep = env.deployment(id.as_str()).await;
    assert_eq!(
        dep.green_instances, crashed,
        "the crashed launch's instances were adopted"
    );
    run_step(&ports, Step::LaunchGreen, &input)
        .await
        .expect("launch-green again");
    let running = env.live_instances_of(id.as_str()).await;
    assert_eq!(running.len(), 2, "still one fleet: {running:?}");
    let registered = ports.lb.target_health(&dep.green_tg).await.unwrap();
    let mut registered: Vec<String> = registered.into_iter().map(|t| t.instance_id).collect();
    registered.sort();
    let mut want = crashed.clone();
    want.sort();
    assert_eq!(registered, want, "green registered in the idle target group");
}

#[tokio::test]
async fn racing_deliveries_of_one_event_start_one_deployment() {
    let env = Env::new("race", quick).await;
    let ports = Ports {
        orchestrator: Arc::new(Paused),
        ..env.local.ports.clone()
    };
    let ami = env.image("v2", App::Healthy).await;
    let event = image_published(json!({"service": env.service, "version": "v2", "ami": ami}));

    // Three concurrent deliveries race for the same conditional writes.
    let (a, b, c) = tokio::join!(
        start_deployment(&ports, &event),
        start_deployment(&ports, &event),
        start_deployment(&ports, &event)
    );

    let ids: Vec<String> = [a, b, c]
        .into_iter()
        .map(|r| started(&r.map(Outcome::Start).map_err(|e| e.to_string())))
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "one deployment id: {ids:?}");
    let history = env.local.ports.ledger.history(&env.service).await.unwrap();
    assert_eq!(history.len(), 1, "one deployment in the ledger");
    assert_eq!(history[0].phase.name(), "launching");
    let state = env.ledger(None).await;
    assert_eq!(
        state.service.active.as_deref(),
        Some(ids[0].as_str()),
        "the service holds that one"
    );
}
