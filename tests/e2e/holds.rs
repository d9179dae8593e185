//! Hold instead of revert (`on_failure: hold`, issue 20): a failure freezes the deployment
//! where it is, green's traffic and both fleets untouched, the service needing attention,
//! until an engineer decides. Asserted on the emulator's listener and instances, the ledger
//! and the CLI.

use crate::cli::cli;
use greenlight_core::config::OnFailure;
use greenlight_core::model::{Deployment, HoldAction, HoldCause, Phase, PhaseName};
use greenlight_e2e::{canary, quick, started, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::RevertOutcome;
use std::time::Duration;

/// Waits until deployment `id` is held (its `n`-th hold); the deployment.
async fn wait_held(env: &Env, id: &str, n: usize) -> Deployment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dep = env.deployment(id).await;
        if dep.held().is_some() && dep.holds.len() == n {
            return dep;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never held (hold {n}): {:?}, holds {:?}",
            dep.phase,
            dep.holds
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_alarm_during_a_canary_holds_it_frozen_until_greenlight_rollback() {
    let env = Env::new("hold-alarm", |s| Spec {
        step_wait_s: 120,
        on_failure: OnFailure::Hold,
        ..canary(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    // The alarm: frozen, not reverted. Its plan was never the alarm's to flip.
    env.alarm("alarm-1", "ALARM").await;
    let outcome = env.deliver(1).await.remove(0);
    assert!(
        matches!(&outcome, Ok(Outcome::Revert(RevertOutcome::Held { deploy_id, .. })) if *deploy_id == id),
        "{outcome:?}"
    );
    let dep = wait_held(&env, &id, 1).await;
    let hold = dep.held().unwrap();
    assert_eq!((hold.cause, hold.weight), (HoldCause::Alarm, 10));
    assert!(dep.revert.is_none(), "not rolled back");
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)], "traffic as it was");
    let green: Vec<String> = dep.green_instances.clone();
    let states = env.states(&green).await;
    assert!(states.values().all(|s| s == "running"), "green kept: {states:?}");
    let blue = env.states(&env.world.blue_instances).await;
    assert!(blue.values().all(|s| s == "running"), "blue kept: {blue:?}");
    let state = env.ledger(None).await;
    let attention = state.service.attention.expect("the service needs attention");
    assert!(attention.contains("greenlight rollback"), "{attention}");

    // Another alarm changes nothing; nor does time.
    env.alarm("alarm-2", "ALARM").await;
    let again = env.deliver(1).await.remove(0);
    assert!(
        matches!(again, Ok(Outcome::Revert(RevertOutcome::Ignored { .. }))),
        "{again:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);
    assert_eq!(env.deployment(&id).await.holds.len(), 1);

    // What the engineer sees.
    let status = cli(&env, &["status", &env.service]).await;
    assert!(
        status.stdout.contains("HELD      at 10%") && status.stdout.contains("alarm failed"),
        "{}",
        status.stdout
    );
    let json = cli(&env, &["status", &env.service, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
    assert_eq!(json["deployment"]["held"]["cause"], "alarm", "{json}");
    assert_eq!(json["deployment"]["on_failure"], "hold", "{json}");

    // The engineer rolls back: traffic on blue, green cleaned up, the hold ended.
    let rollback = cli(&env, &["rollback", &env.service, "--reason", "alarm confirmed"]).await;
    assert_eq!(rollback.code, 0, "{rollback:#?}");
    env.deliver(1).await.remove(0).expect("rolled back");
    assert_eq!(env.weights().await, [("a", 100)]);
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    let dep = env.deployment(&id).await;
    assert_eq!(
        dep.holds[0].ended.as_ref().map(|e| e.action),
        Some(HoldAction::RolledBack)
    );
    assert!(env.live_instances_of(&id).await.is_empty(), "green terminated");
    let state = env.ledger(None).await;
    assert_eq!(state.service.attention, None);
    assert_eq!(state.service.live.unwrap().version, "v1");
}

#[tokio::test]
async fn a_failed_gate_holds_green_untouched_promote_retries_the_gate_and_abort_ends_it() {
    let env = Env::new("hold-gate", quick).await;
    let ami = env.image("v2", App::SmokeFails).await;
    // The release asks for hold (the registration says revert).
    let detail = serde_json::json!({
        "service": env.service, "version": "v2", "ami": ami, "requested_by": "ci", "on_failure": "hold"
    });
    greenlight_local::pump::publish(
        &env.local,
        greenlight_core::inbound::SOURCE,
        greenlight_core::inbound::IMAGE_PUBLISHED,
        &detail,
    )
    .await
    .expect("published");
    let id = started(&env.deliver(1).await[0]);
    let dep = wait_held(&env, &id, 1).await;
    let hold = dep.held().unwrap();
    assert_eq!((hold.cause, hold.weight), (HoldCause::Gate, 0));
    assert!(hold.reason.contains("smoke test failed"), "{}", hold.reason);
    assert!(
        matches!(dep.phase, Phase::Verifying { weight: 0, .. }),
        "{:?}",
        dep.phase
    );
    // The deployment's execution ended: nothing polls a held deployment.
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Verifying));
    assert_eq!(env.weights().await, [("a", 100)], "green never weighted");
    let states = env.states(&dep.green_instances).await;
    assert!(
        states.values().all(|s| s == "running"),
        "green kept to inspect: {states:?}"
    );

    // `deploy --watch` would have stopped here: the watch ends on a hold, exit 1.
    let watch = cli(&env, &["status", &env.service, "--watch"]).await;
    assert_eq!(watch.code, 1, "{watch:#?}");
    assert!(watch.stdout.contains("is HELD at 0%"), "{}", watch.stdout);

    // Promote: the hold ends, the gate runs again and, still failing, holds again.
    let promote = cli(&env, &["promote", &env.service, "--reason", "flaky smoke test?"]).await;
    assert_eq!(promote.code, 0, "{promote:#?}");
    env.deliver(1).await.remove(0).expect("released");
    let dep = wait_held(&env, &id, 2).await;
    assert_eq!(
        dep.holds[0].ended.as_ref().map(|e| e.action),
        Some(HoldAction::Promoted)
    );
    assert_eq!(env.weights().await, [("a", 100)]);

    // Abort: green terminated, v1 still live, the service free and not needing attention.
    let abort = cli(&env, &["abort", &env.service, "--reason", "smoke really fails"]).await;
    assert_eq!(abort.code, 0, "{abort:#?}");
    env.deliver(1).await.remove(0).expect("aborted");
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Aborted { .. })).await;
    assert_eq!(dep.holds[1].ended.as_ref().map(|e| e.action), Some(HoldAction::Aborted));
    assert!(env.live_instances_of(&id).await.is_empty(), "green terminated");
    let state = env.ledger(None).await;
    assert_eq!((state.service.active, state.service.attention), (None, None));
    assert_eq!(state.service.live.unwrap().version, "v1");
    // The report (written as the abort's execution ends) says what froze it twice and who
    // decided what.
    assert_eq!(env.wait(&format!("{id}-abort")).await, Ending::Done(PhaseName::Aborted));
    let report = env.report(&id).await;
    assert_eq!(report["on_failure"], "hold", "{report}");
    assert_eq!(report["holds"][0]["cause"], "gate", "{report}");
    assert_eq!(report["holds"][0]["ended"]["action"], "promoted", "{report}");
    assert_eq!(report["holds"][1]["ended"]["action"], "aborted", "{report}");
}
