//! One deployment per service: a new image mid-rollout under each policy (reject, queue,
//! supersede), two images racing for the lease, and a crashed holder's lease expiring.

use async_trait::async_trait;
use greenlight_adapters::{AdapterResult, Orchestrator, Ports};
use greenlight_core::config::NewImagePolicy;
use greenlight_core::model::{Phase, PhaseName};
use greenlight_e2e::{canary, image_published, quick, started, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::{start_deployment, StartOutcome};
use serde_json::json;
use std::sync::Arc;

/// v2 deploying and held at its 10 % canary step (for two minutes) under `policy`.
async fn v2_at_ten_percent(prefix: &str, policy: NewImagePolicy) -> (Env, String) {
    let env = Env::new(prefix, |s| Spec {
        step_wait_s: 120,
        on_new_image: policy,
        ..canary(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    (env, id)
}

fn queued(result: &Result<Outcome, String>) -> (String, String) {
    match result {
        Ok(Outcome::Start(StartOutcome::Queued { deploy_id, note, .. })) => (deploy_id.clone(), note.clone()),
        other => panic!("expected a queued deployment, got {other:?}"),
    }
}

#[tokio::test]
async fn new_image_mid_rollout_policy_reject_refuses_it() {
    let (env, v2) = v2_at_ten_percent("policy-reject", NewImagePolicy::Reject).await;
    let ami = env.image("v3", App::Healthy).await;
    env.publish("v3", &ami).await;
    let err = env.deliver(1).await.remove(0).expect_err("refused");
    assert!(err.contains(&format!("already has deployment {v2} in flight")), "{err}");
    let state = env.ledger(None).await;
    assert_eq!(
        (state.service.active.as_deref(), state.service.queued.is_none()),
        (Some(v2.as_str()), true)
    );
    assert_eq!(
        env.weights().await,
        [("a", 90), ("b", 10)],
        "v2's canary goes on untouched"
    );
}

#[tokio::test]
async fn new_image_mid_rollout_policy_queue_starts_it_when_the_current_ends() {
    let env = Env::new("policy-queue", |s| Spec {
        on_new_image: NewImagePolicy::Queue,
        ..canary(s)
    })
    .await;
    let (ami2, ami3) = (env.image("v2", App::Healthy).await, env.image("v3", App::Healthy).await);
    env.publish("v2", &ami2).await;
    let v2 = started(&env.deliver(1).await[0]);
    env.publish("v3", &ami3).await;
    let (v3, note) = queued(&env.deliver(1).await[0]);
    assert!(note.contains(&format!("starts when {v2} ends")), "{note}");

    assert_eq!(
        env.wait(&v2).await,
        Ending::Done(PhaseName::Succeeded),
        "v2 finishes first"
    );
    assert_eq!(env.wait(&v3).await, Ending::Done(PhaseName::Succeeded), "then v3 runs");
    let state = env.ledger(Some(&v3)).await;
    assert_eq!(state.service.live.as_ref().unwrap().version, "v3");
    assert_eq!(state.service.queued, None);
    assert_eq!(state.deployment.unwrap().blue.unwrap().version, "v2", "v3 replaced v2");
    assert_eq!(env.weights().await.len(), 1);
}

#[tokio::test]
async fn new_image_mid_rollout_policy_supersede_aborts_the_current_then_starts_it() {
    let (env, v2) = v2_at_ten_percent("policy-supersede", NewImagePolicy::Supersede).await;
    let ami = env.image("v3", App::Healthy).await;
    env.publish("v3", &ami).await;
    let (v3, note) = queued(&env.deliver(1).await[0]);
    assert!(note.contains("superseded by v3"), "{note}");
    // v2 is aborted and cleaned up first; then v3 goes through the same gates and canary.
    let v3_dep = env
        .wait_for_phase(&v3, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    let v2_dep = env.deployment(&v2).await;
    match &v2_dep.phase {
        Phase::Aborted { reason } => assert!(reason.contains("superseded by v3"), "{reason}"),
        other => panic!("v2 should be aborted, is {other:?}"),
    }
    assert!(env.live_instances_of(&v2).await.is_empty(), "v2's fleet terminated");
    assert_eq!(v3_dep.blue.unwrap().version, "v1", "v3 replaces v1: v2 never went live");
    assert!(v3_dep.created_at >= v2_dep.updated_at, "v3 started after v2 ended");
    assert_eq!(
        env.ledger(None).await.service.active.as_deref(),
        Some(v3.as_str()),
        "v3 holds the service"
    );
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)], "v3's canary, v2 nowhere");
    let green: Vec<String> = env
        .live_instances_of(&v3)
        .await
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(green.len(), 2);
}

/// An orchestrator whose executions never run: the deployment's holder "crashed".
struct Dead;

#[async_trait]
impl Orchestrator for Dead {
    async fn start(&self, _: &str, _: &serde_json::Value) -> AdapterResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn two_images_racing_for_one_service_one_holds_the_lease() {
    let env = Env::new("lease-race", |s| Spec {
        on_new_image: NewImagePolicy::Reject,
        ..quick(s)
    })
    .await;
    let ports = Ports {
        orchestrator: Arc::new(Dead),
        ..env.local.ports.clone()
    };
    let (ami2, ami3) = (env.image("v2", App::Healthy).await, env.image("v3", App::Healthy).await);
    let event = |v: &str, ami: &str| image_published(json!({"service": env.service, "version": v, "ami": ami}));
    let (e2, e3) = (event("v2", &ami2), event("v3", &ami3));

    let (a, b) = tokio::join!(start_deployment(&ports, &e2), start_deployment(&ports, &e3));

    let results = [a, b];
    let winners: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(StartOutcome::Started(out)) => Some(out.deploy_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one starts: {results:?}");
    let loser = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the other is refused");
    assert!(loser.to_string().contains("in flight"), "{loser}");
    assert_eq!(
        env.ledger(None).await.service.active.as_deref(),
        Some(winners[0].as_str())
    );
    assert_eq!(env.local.ports.ledger.history(&env.service).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_crashed_holders_lease_expires_and_the_next_deployment_proceeds() {
    // A lease of 10 s: the image and the first refused delivery below fit in it on a loaded
    // machine (with 2 s, a run with 16 test threads queued v3 already, 2026-12-07).
    let env = Env::new("lease-expiry", |s| Spec {
        lease_s: 10,
        on_new_image: NewImagePolicy::Reject,
        ..quick(s)
    })
    .await;
    let crashed = Ports {
        orchestrator: Arc::new(Dead),
        ..env.local.ports.clone()
    };
    let ami2 = env.image("v2", App::Healthy).await;
    let stuck = match start_deployment(
        &crashed,
        &image_published(json!({"service": env.service, "version": "v2", "ami": ami2})),
    )
    .await
    .unwrap()
    {
        StartOutcome::Started(out) => out.deploy_id,
        other => panic!("{other:?}"),
    };
    let ami3 = env.image("v3", App::Healthy).await;
    // While the lease holds, even policy reject applies.
    env.publish("v3", &ami3).await;
    assert!(env.deliver(1).await.remove(0).unwrap_err().contains("in flight"));

    // Then past the lease the stuck deployment took (it never renews it).
    let lease_until = env
        .ledger(None)
        .await
        .service
        .lease_until
        .expect("the stuck deployment's lease");
    let now = env.local.ports.clock.now();
    tokio::time::sleep(std::time::Duration::from_secs(lease_until.saturating_sub(now) + 1)).await;
    env.publish("v3", &ami3).await;
    let (v3, note) = queued(&env.deliver(1).await[0]);
    assert!(note.contains("lease expired"), "{note}");

    assert_eq!(env.wait(&v3).await, Ending::Done(PhaseName::Succeeded));
    match env.deployment(&stuck).await.phase {
        Phase::Aborted { reason } => assert!(reason.contains("lease expired"), "{reason}"),
        other => panic!("the stuck deployment should be aborted, is {other:?}"),
    }
    let state = env.ledger(None).await;
    assert_eq!(state.service.live.unwrap().version, "v3");
    assert_eq!(
        (state.service.active, state.service.lease_until),
        (None, None),
        "no lock left behind"
    );
}
