//! Health gates: a green that fails ELB health or the smoke test never gets traffic, is
//! terminated, and the ledger says why.

use greenlight_core::model::{Phase, PhaseName};
use greenlight_e2e::{impatient, quick, App, Env};
use greenlight_local::orchestrator::Ending;

async fn assert_aborted_cleanly(env: &Env, id: &str, want_reason: &str) {
    let state = env.ledger(Some(id)).await;
    let dep = state.deployment.as_ref().unwrap();
    match &dep.phase {
        Phase::Aborted { reason } => assert!(reason.contains(want_reason), "reason {reason:?} lacks {want_reason:?}"),
        other => panic!("expected aborted, got {other:?}"),
    }
    assert_eq!(dep.max_weight, 0, "the listener was never asked to move");
    assert_eq!(env.weights().await, [("a", 100)], "traffic stayed on blue");
    assert_eq!(state.service.live.as_ref().unwrap().version, "v1");
    assert_eq!(state.service.active, None, "the service is free again");
    assert!(
        env.live_instances_of(id).await.is_empty(),
        "green terminated, no orphans"
    );
    let green = env.states(&dep.green_instances).await;
    assert!(
        !green.is_empty() && green.values().all(|s| s == "terminated"),
        "{green:?}"
    );
    let blue = env.states(&env.world.blue_instances).await;
    assert!(blue.values().all(|s| s == "running"), "blue untouched: {blue:?}");
}

#[tokio::test]
async fn unhealthy_green_aborts_before_any_traffic() {
    let env = Env::new("unhealthy", impatient).await;
    let ami = env.image("v2", App::Unhealthy).await;
    let (id, ending) = env.deploy("v2", &ami).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    assert_aborted_cleanly(&env, &id, "unhealthy").await;
}

#[tokio::test]
async fn failed_smoke_test_aborts_before_any_traffic() {
    let env = Env::new("smoke", quick).await;
    let ami = env.image("v2", App::SmokeFails).await;
    let (id, ending) = env.deploy("v2", &ami).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    assert_aborted_cleanly(&env, &id, "smoke test failed").await;
    let dep = env.deployment(&id).await;
    let Phase::Aborted { reason } = dep.phase else {
        unreachable!()
    };
    assert!(
        reason.contains("500"),
        "the reason shows what the app answered: {reason}"
    );
}
