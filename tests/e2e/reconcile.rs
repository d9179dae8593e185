//! reconcile-services, the scheduled reconcile.
//! - Stuck work: a deployment whose trigger committed it and then lost its StartExecution
//!   (the delivery crashed, and was dead-lettered) holds its service until its lease
//!   expires; the next scheduled run resumes it through the normal path, and it rolls out.
//! - Phoenix re-paves: a live fleet older than its limit is replaced by the same release on
//!   fresh instances, through every gate, and can be reverted.

use async_trait::async_trait;
use greenlight_adapters::{AdapterResult, Orchestrator, Ports};
use greenlight_core::model::{ImageSource, Phase, PhaseName};
use greenlight_e2e::{image_published, quick, sample_event, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::reconcile::ReconcileKind;
use greenlight_steps::{reconcile_services, start_deployment, StartOutcome};
use serde_json::json;
use std::sync::Arc;

/// An orchestrator whose StartExecution is lost (the delivery crashed right before it).
struct Lost;

#[async_trait]
impl Orchestrator for Lost {
    async fn start(&self, _: &str, _: &serde_json::Value) -> AdapterResult<()> {
        Ok(())
    }
}

fn scheduled_run(id: &str) -> serde_json::Value {
    sample_event("scheduled-reconcile.json", &[("/id", json!(id))])
}

#[tokio::test]
async fn a_deployment_whose_execution_never_started_is_resumed_once_its_lease_expires() {
    let env = Env::alone("reconcile-stuck", |s| Spec { lease_s: 2, ..quick(s) }).await;
    let lost = Ports {
        orchestrator: Arc::new(Lost),
        ..env.local.ports.clone()
    };
    let ami = env.image("v2", App::Healthy).await;
    let event = image_published(json!({"service": env.service, "version": "v2", "ami": ami}));
    let stuck = match start_deployment(&lost, &event).await.unwrap() {
        StartOutcome::Started(out) => out.deploy_id,
        other => panic!("{other:?}"),
    };

    // While the lease holds, the run leaves it alone: its execution may just be late.
    let early = reconcile_services(&env.local.ports, &scheduled_run("run-early"))
        .await
        .unwrap();
    assert!(early.actions.is_empty(), "{early:?}");
    assert_eq!(env.deployment(&stuck).await.phase, Phase::Launching);
    assert!(env.live_instances_of(&stuck).await.is_empty(), "no green launched");

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let run = reconcile_services(&env.local.ports, &scheduled_run("run-late"))
        .await
        .unwrap();
    assert_eq!(run.services, 1);
    assert_eq!(run.actions.len(), 1, "{run:?}");
    let action = &run.actions[0];
    assert_eq!(
        (action.deploy_id.as_str(), action.phase),
        (stuck.as_str(), PhaseName::Launching)
    );
    assert!(action.note.contains("resumed (1 of 3)"), "{}", action.note);

    // The resumed execution rolls out: green live, blue retired, the service free.
    let dep = env.deployment(&stuck).await;
    let resumed = dep
        .last_resume
        .as_ref()
        .expect("the resume is recorded")
        .execution
        .clone();
    assert!(resumed.starts_with(&format!("{stuck}-resume-")), "{resumed}");
    assert_eq!(env.wait(&resumed).await, Ending::Done(PhaseName::Succeeded));
    let state = env.ledger(Some(&stuck)).await;
    assert_eq!(state.service.live.as_ref().unwrap().version, "v2");
    assert_eq!((state.service.active, state.service.lease_until), (None, None));
    let timeline = &state.deployment.unwrap().timeline;
    assert!(
        timeline
            .iter()
            .any(|m| m.note.contains("lease expired") && m.phase == PhaseName::Launching),
        "{timeline:?}"
    );
    assert_eq!(env.weights().await, vec![("b", 100)], "all traffic on green");

    // A later run finds nothing to do.
    let later = reconcile_services(&env.local.ports, &scheduled_run("run-after"))
        .await
        .unwrap();
    assert!(later.actions.is_empty(), "{later:?}");
}

#[tokio::test]
async fn a_reconcile_run_refuses_anything_but_its_schedule_and_changes_nothing() {
    let env = Env::alone("reconcile-bad", quick).await;
    let before = env.ledger(None).await;
    let image = image_published(json!({"service": env.service, "version": "v2", "ami": "ami-0123456789abcdef0"}));
    let err = reconcile_services(&env.local.ports, &image).await.unwrap_err();
    assert!(err.to_string().contains("Scheduled Event"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(env.ledger(None).await, before);
}

#[tokio::test]
async fn a_fleet_older_than_its_limit_is_repaved_through_the_gates_and_can_be_reverted() {
    let env = Env::alone("reconcile-repave", |s| Spec {
        max_instance_age_s: Some(3600),
        live_age_s: 2 * 3600,
        bake_window_s: 120,
        ..quick(s)
    })
    .await;
    let old_fleet = env.world.blue_instances.clone();
    let run = reconcile_services(&env.local.ports, &scheduled_run("run-repave"))
        .await
        .unwrap();
    assert_eq!(run.actions.len(), 1, "{run:?}");
    let action = &run.actions[0];
    assert_eq!(action.kind, ReconcileKind::Repave);
    assert!(action.note.contains("phoenix re-pave"), "{}", action.note);
    let id = action.deploy_id.clone();

    // The same release, on fresh instances, through every gate; the old fleet stays warm.
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
    assert_eq!(
        (dep.source, dep.version.as_str(), dep.ami.as_str()),
        (ImageSource::Repave, "v1", env.world.ami_v1.as_str())
    );
    assert!(dep.healthy_at.is_some(), "green passed its gates");
    assert!(
        dep.green_instances.iter().all(|i| !old_fleet.contains(i)),
        "fresh instances"
    );
    assert_eq!(env.weights().await, vec![("b", 100)]);
    let state = env.ledger(None).await;
    assert_eq!(
        state.service.live.as_ref().unwrap().deploy_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(state.service.warm.as_ref().unwrap().instance_ids, old_fleet);
    // A duplicate or a later run starts nothing more while it is in flight.
    let again = reconcile_services(&env.local.ports, &scheduled_run("run-repave-2"))
        .await
        .unwrap();
    assert!(again.actions.is_empty(), "{again:?}");

    // Revertible like any deployment: one listener change back to the old fleet.
    env.rollback("the re-paved fleet misbehaves").await;
    let reverted = env.deliver(1).await.remove(0).expect("revert");
    assert!(matches!(reverted, Outcome::Revert(_)), "{reverted:?}");
    assert_eq!(env.weights().await, vec![("a", 100)]);
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    let state = env.ledger(Some(&id)).await;
    assert_eq!(state.service.live.as_ref().unwrap().instance_ids, old_fleet);
    assert!(state.deployment.unwrap().revert.is_some());
    // The old fleet is still too old, but its re-pave ran and was reverted: not retried
    // until a deployment replaces it (a loop of re-paves would undo the engineer's call).
    let after = reconcile_services(&env.local.ports, &scheduled_run("run-repave-3"))
        .await
        .unwrap();
    assert!(after.actions.is_empty(), "{after:?}");
    assert!(after.refused.iter().any(|r| r.contains("not retried")), "{after:?}");
}
