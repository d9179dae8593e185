//! Approval pauses (`"pause"` in `canary_steps`, issue 20): green verified at a step waits
//! there, its traffic unchanged, until an engineer's `greenlight promote` approves it (then
//! the rest of the canary still applies), or until the registration's `pause_timeout_s`,
//! then its `on_pause_timeout`. Asserted on the emulator's listener, the ledger and the CLI.

use crate::cli::cli;
use greenlight_core::config::OnPauseTimeout;
use greenlight_core::model::{Deployment, PauseEnd, Phase};
use greenlight_e2e::{canary, started, App, Env};
use greenlight_local::fixture::Spec;
use std::time::Duration;

/// Canary 10 → 50 → 100 with a pause after 10 %.
fn paused_at_10(service: &str, timeout_s: u64, on_timeout: OnPauseTimeout) -> Spec {
    Spec {
        pauses: vec![10],
        pause_timeout_s: timeout_s,
        on_pause_timeout: on_timeout,
        ..canary(service)
    }
}

/// Publishes v2 and waits until green waits in its pause at 10 %; the deploy id.
async fn deploy_until_paused(env: &Env) -> (String, Deployment) {
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dep = env.deployment(&id).await;
        if dep.waiting_pause(10).is_some() {
            return (id, dep);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never paused: {:?}",
            dep.phase
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_pause_holds_green_at_its_step_until_greenlight_promote_approves_it() {
    let env = Env::new("paused", |s| paused_at_10(s, 600, OnPauseTimeout::Abort)).await;
    let (id, dep) = deploy_until_paused(&env).await;
    assert_eq!(dep.phase, Phase::Verified { weight: 10 });
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    // Still there a while later: nothing moves without an approval.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.deployment(&id).await.phase, Phase::Verified { weight: 10 });
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);
    let status = cli(&env, &["status", &env.service]).await;
    assert_eq!(status.code, 0, "{status:#?}");
    assert!(
        status.stdout.contains("PAUSED    at 10%") && status.stdout.contains("greenlight promote"),
        "status says who it waits for: {}",
        status.stdout
    );
    assert!(status.stdout.contains("10% → pause → 50% → 100%"), "{}", status.stdout);
    let json = cli(&env, &["status", &env.service, "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
    assert_eq!(json["deployment"]["paused"]["weight"], 10, "{json}");
    assert_eq!(json["deployment"]["paused"]["on_timeout"], "abort", "{json}");

    // The approval, as an engineer gives it: the CLI publishes PromoteRequested.
    let approve = cli(&env, &["promote", &env.service, "--reason", "10% looks good"]).await;
    assert_eq!(approve.code, 0, "{approve:#?}");
    env.deliver(1).await.remove(0).expect("approved");
    let dep = env.wait_for_phase(&id, |p| *p == Phase::Succeeded).await;
    assert_eq!(env.weights().await, [("b", 100)]);
    assert!(dep.promoted_by.is_none(), "an approval is not a promotion");
    assert!(
        matches!(&dep.pauses[..], [p] if matches!(&p.ended, Some(PauseEnd::Approved { reason, .. }) if reason == "10% looks good")),
        "{:?}",
        dep.pauses
    );
    let notes: Vec<&str> = dep.timeline.iter().map(|m| m.note.as_str()).collect();
    assert!(
        notes.iter().any(|n| n.contains("10% -> 50%")),
        "the 50 % step still ran after the approval: {notes:#?}"
    );
    let approved_at = notes
        .iter()
        .position(|n| n.contains("pause at 10% approved by"))
        .expect("approval noted");
    let shifted_at = notes.iter().position(|n| n.contains("10% -> 50%")).unwrap();
    assert!(approved_at < shifted_at, "{notes:#?}");
    // The report (written as the approval's execution ends) says who approved the pause, and why.
    let approval = format!("{id}-approve-10");
    assert_eq!(
        env.wait(&approval).await,
        greenlight_local::orchestrator::Ending::Done(greenlight_core::model::PhaseName::Succeeded)
    );
    let report = env.report(&id).await;
    assert_eq!(report["pauses"][0]["ended"]["reason"], "10% looks good", "{report}");
    assert_eq!(report["pauses"][0]["ended"]["by"], "approved", "{report}");
}

#[tokio::test]
async fn a_pause_nobody_approves_aborts_at_its_deadline_with_traffic_back_on_blue() {
    let env = Env::new("paused-late", |s| paused_at_10(s, 3, OnPauseTimeout::Abort)).await;
    let (id, _) = deploy_until_paused(&env).await;
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Aborted { .. })).await;
    let Phase::Aborted { reason } = &dep.phase else {
        unreachable!()
    };
    assert!(reason.contains("the pause at 10% was not approved within"), "{reason}");
    assert!(
        matches!(
            dep.pauses[0].ended,
            Some(PauseEnd::TimedOut {
                action: OnPauseTimeout::Abort,
                ..
            })
        ),
        "{:?}",
        dep.pauses
    );
    assert_eq!(env.weights().await, [("a", 100)], "traffic back on blue");
    assert!(env.live_instances_of(&id).await.is_empty(), "green terminated");
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");
}

#[tokio::test]
async fn a_pause_that_times_out_with_continue_goes_on_through_the_rest_of_the_canary() {
    let env = Env::new("paused-on", |s| paused_at_10(s, 2, OnPauseTimeout::Continue)).await;
    let (id, _) = deploy_until_paused(&env).await;
    let dep = env.wait_for_phase(&id, |p| *p == Phase::Succeeded).await;
    assert!(
        matches!(
            dep.pauses[0].ended,
            Some(PauseEnd::TimedOut {
                action: OnPauseTimeout::Continue,
                ..
            })
        ),
        "{:?}",
        dep.pauses
    );
    assert_eq!(env.weights().await, [("b", 100)]);
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v2");
}
