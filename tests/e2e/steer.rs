//! Engineers steer the deployment in flight (`AbortRequested`, `PromoteRequested` through
//! EventBridge to steer-deployment): abort puts traffic back and cleans up at once; promote
//! skips the remaining canary steps and the bake window but never the health gates.

use greenlight_core::inbound::{SteerAction, ABORT_REQUESTED, PROMOTE_REQUESTED, SOURCE};
use greenlight_core::model::{Phase, PhaseName};
use greenlight_e2e::{canary, started, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::pump::{self, Outcome};
use serde_json::json;

/// A canary whose steps and bake window are far longer than the test: only a promotion can
/// finish it in time.
fn slow_canary(service: &str) -> Spec {
    Spec {
        step_wait_s: 300,
        bake_window_s: 3600,
        ..canary(service)
    }
}

/// Publishes `detail_type` for the env's service and delivers it; the outcome.
async fn steer(env: &Env, detail_type: &str, requested_by: &str) -> Result<Outcome, String> {
    let detail = json!({"service": env.service, "reason": "e2e says so", "requested_by": requested_by});
    pump::publish(&env.local, SOURCE, detail_type, &detail)
        .await
        .expect("publish");
    env.deliver(1).await.remove(0)
}

/// Starts v2 and waits until its canary has green at 10 %; the deploy id.
async fn canary_at_10(env: &Env) -> String {
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    id
}

#[tokio::test]
async fn promote_skips_the_remaining_canary_steps_and_the_bake_window() {
    let env = Env::new("promote", slow_canary).await;
    let id = canary_at_10(&env).await;
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    let outcome = steer(&env, PROMOTE_REQUESTED, "bob").await.expect("promoted");
    let Outcome::Steer(outcome) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (outcome.deploy_id.as_str(), outcome.action),
        (id.as_str(), SteerAction::Promote)
    );

    // Done long before the next 300 s canary step or the 3600 s bake window.
    let dep = env.wait_for_phase(&id, |p| *p == Phase::Succeeded).await;
    assert_eq!(dep.promoted_by.as_deref(), Some("bob"));
    assert_eq!(env.weights().await, [("b", 100)]);
    let phases: Vec<&str> = dep.timeline.iter().map(|m| m.note.as_str()).collect();
    assert!(
        !phases.iter().any(|n| n.contains("-> 50%")),
        "the 50 % step was skipped: {phases:#?}"
    );
    assert!(phases.iter().any(|n| n.contains("promoted by bob")), "{phases:#?}");
    assert!(dep.healthy_at.is_some(), "gates passed at 100 % too");
    let blue = env.states(&env.world.blue_instances).await;
    assert!(
        blue.values().all(|s| s == "terminated"),
        "v1 retired without baking: {blue:?}"
    );
}

#[tokio::test]
async fn abort_puts_traffic_back_and_cleans_up_now_and_is_refused_once_green_is_live() {
    let env = Env::new("abort", slow_canary).await;
    let id = canary_at_10(&env).await;

    let outcome = steer(&env, ABORT_REQUESTED, "alice").await.expect("aborted");
    let Outcome::Steer(outcome) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(outcome.phase, PhaseName::Aborting);
    // The listener change is made by the request itself.
    assert_eq!(env.weights().await, [("a", 100)]);
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Aborted { .. })).await;
    assert!(
        matches!(&dep.phase, Phase::Aborted { reason } if reason.contains("aborted by alice")),
        "{:?}",
        dep.phase
    );
    assert!(env.live_instances_of(&id).await.is_empty(), "green terminated");
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");

    // Nothing in flight now: both requests are refused and change nothing.
    for detail_type in [ABORT_REQUESTED, PROMOTE_REQUESTED] {
        let before = env.ledger(None).await;
        let refused = steer(&env, detail_type, "alice").await.unwrap_err();
        assert!(refused.contains("no deployment in flight"), "{refused}");
        assert_eq!(env.ledger(None).await.service, before.service);
    }
}

#[tokio::test]
async fn abort_during_the_bake_window_is_refused_with_the_way_out() {
    let env = Env::new("abort-bake", |s| Spec {
        bake_window_s: 3600,
        ..greenlight_e2e::quick(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
    let before = env.ledger(Some(&id)).await;

    let refused = steer(&env, ABORT_REQUESTED, "alice").await.unwrap_err();
    assert!(refused.contains("too late to abort; roll back instead"), "{refused}");
    assert_eq!(env.ledger(Some(&id)).await, before, "nothing changed");
    assert_eq!(env.weights().await, [("b", 100)]);
}
