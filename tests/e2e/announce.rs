//! Deployment events: every change of a deployment's phase (or of what it waits for) reaches
//! greenlight's events bus exactly once, in order, from the ledger's stream through the pipe
//! and announce-deployments; asserted on the SQS queue behind a rule on the events bus.

use greenlight_core::announce::{check_sequence, DeploymentStateChanged};
use greenlight_core::inbound::PROMOTE_REQUESTED;
use greenlight_core::model::{Phase, PhaseName, Trigger};
use greenlight_e2e::{canary, started, Announced, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::pipe::{self, Enrichment};
use greenlight_local::pump;
use std::time::Duration;

/// `events` announce one deployment's status changes exactly once each, in order: its
/// creation first, each event leaving the phase the one before entered, no status twice in
/// a row, generations increasing; the phases are the timeline's, in its order.
fn assert_each_change_once(env_timeline: &[PhaseName], events: &[DeploymentStateChanged]) {
    if let Err(why) = check_sequence(events) {
        panic!("{why}: {events:#?}");
    }
    let mut timeline = env_timeline.iter();
    for event in events {
        assert!(
            timeline.any(|p| *p == event.phase),
            "{:?} is not in the timeline {env_timeline:?} after the phases before it",
            event.phase
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_phase_change_of_a_canary_and_of_its_rollback_is_announced_once_in_order() {
    // A table of its own: the stack's, with its stream.
    let env = Env::alone("announce", |s| Spec {
        bake_window_s: 120,
        ..canary(s)
    })
    .await;
    let events_pipe = pipe::spawn(&env.local, Enrichment::InProcess).await.expect("the pipe");
    let (v2, v3) = (env.image("v2", App::Healthy).await, env.image("v3", App::Healthy).await);

    // v2 over the fleet the fixture made live, through its canary steps; an engineer's
    // promote ends its bake window, so blue retires now.
    env.publish("v2", &v2).await;
    let v2_id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&v2_id, |p| matches!(p, Phase::Baking { .. })).await;
    let promote = env.request_event(PROMOTE_REQUESTED, "promote-v2", "alice", "bake is long");
    pump::deliver(&env.local.ports, &promote).await.expect("promote");
    // (Its first execution still waits out the bake window: the ledger says it is done.)
    env.wait_for_phase(&v2_id, |p| matches!(p, Phase::Succeeded)).await;

    // v3, rolled back by an engineer in its bake window.
    env.publish("v3", &v3).await;
    let v3_id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&v3_id, |p| matches!(p, Phase::Baking { .. })).await;
    env.rollback("checkout errors up").await;
    env.deliver(1).await;
    env.wait_for_phase(&v3_id, |p| matches!(p, Phase::Aborted { .. })).await;
    assert_eq!(env.weights().await, vec![("b", 100)], "v2 is back");

    let terminal = |events: &Vec<DeploymentStateChanged>| events.last().is_some_and(|e| e.phase.is_terminal());
    let ended = |seen: &Announced| [&v2_id, &v3_id].iter().all(|id| seen.get(*id).is_some_and(terminal));
    let events = env.announced(Duration::from_secs(60), ended).await;
    assert!(ended(&events), "events so far: {events:#?}");
    for id in [&v2_id, &v3_id] {
        let dep = env.deployment(id).await;
        let timeline: Vec<PhaseName> = dep.timeline.iter().map(|m| m.phase).collect();
        let mine = &events[id];
        assert_each_change_once(&timeline, mine);
        // The last event is the ledger's state now.
        let last = mine.last().unwrap();
        assert_eq!((last.phase, last.gen), (dep.phase.kind(), dep.gen), "{mine:#?}");
    }
    // The canary's steps: green's weight as each phase asked for it.
    let weights: Vec<u8> = events[&v2_id].iter().map(|e| e.green_weight).collect();
    for step in [10, 50, 100] {
        assert!(weights.contains(&step), "{weights:?}");
    }
    assert!(events[&v2_id]
        .iter()
        .all(|e| e.previous_version.as_deref() == Some("v1")));
    // The rollback says who triggered it, why, and how fast traffic came back.
    let reverted = events[&v3_id]
        .iter()
        .find(|e| e.phase == PhaseName::Aborting)
        .expect("v3's revert is announced");
    assert_eq!(reverted.trigger, Some(Trigger::Engineer));
    assert_eq!(reverted.previous_phase, Some(PhaseName::Baking));
    assert!(reverted.time_to_revert_ms.is_some_and(|ms| ms < 60_000), "{reverted:?}");
    assert_eq!(reverted.green_weight, 0);
    assert!(events_pipe.dead_letters.lock().unwrap().is_empty());

    // Nothing more: a step delivered again, or a read, announces nothing.
    let extra = pump::announced(&env.local, Duration::from_secs(2))
        .await
        .expect("receive");
    assert!(extra.is_empty(), "{extra:#?}");
}
