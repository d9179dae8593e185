//! reconcile-services, the scheduled reconcile.
//! - Stuck work: a deployment whose trigger committed it and then lost its StartExecution
//!   (the delivery crashed, and was dead-lettered) holds its service until its lease
//!   expires; the next scheduled run resumes it through the normal path, and it rolls out.
//! - Phoenix re-paves: a live fleet older than its limit is replaced by the same release on
//!   fresh instances, through every gate, and can be reverted.
//! - The fleet: a listener edited by hand is reported, then repaired under `repair`; a
//!   stranger registered into live's group is reported and deregistered, never terminated;
//!   a tagged orphan older than the grace is terminated, a younger one left; the findings
//!   are in the ledger and in `greenlight status`.

use async_trait::async_trait;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use greenlight_adapters::{tags, AdapterResult, Orchestrator, Ports};
use greenlight_core::config::{ReconcilePolicy, Remedy};
use greenlight_core::decide::TargetState;
use greenlight_core::finding::{Action, Finding, FindingKind, StrangerWhy};
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
    // A lease long enough that the early run below comes before it expires even on a busy
    // machine (it once expired after 2 s under a full parallel test run).
    let env = Env::alone("reconcile-stuck", |s| Spec { lease_s: 6, ..quick(s) }).await;
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

    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
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

/// Registers `env`'s service again with the reconcile policy `policy` (the pointers stay).
async fn set_policy(env: &Env, policy: ReconcilePolicy) {
    let mut config = env.ledger(None).await.config;
    config.reconcile = policy;
    env.local
        .ports
        .ledger
        .register_service(&config, None)
        .await
        .expect("register again");
}

/// Waits (≤ 20 s) until live's group has every target healthy: the emulator checks them by
/// real HTTP, and a repair never moves traffic to, or strips, a group without one.
pub(crate) async fn live_healthy(env: &Env) {
    let tg = &env.world.config.target_groups[0];
    for _ in 0..80 {
        let targets = env.local.ports.lb.target_health(tg).await.expect("health");
        if !targets.is_empty() && targets.iter().all(|t| t.state == TargetState::Healthy) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("live's targets never became healthy");
}

/// Launches one instance of the live AMI outside any deployment, tagged `tags`.
pub(crate) async fn launch_by_hand(env: &Env, tags: &[(&str, &str)]) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = env
        .local
        .clients
        .ec2
        .run_instances()
        .image_id(&env.world.ami_v1)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&env.world.config.launch.subnet_id)
        .tag_specifications(spec.build())
        .send()
        .await
        .expect("run instances by hand");
    out.instances()[0].instance_id().unwrap().to_string()
}

/// The targets registered in `tg` and not draining.
pub(crate) async fn registered(env: &Env, tg: &str) -> Vec<String> {
    let targets = env.local.ports.lb.target_health(tg).await.expect("health");
    targets
        .into_iter()
        .filter(|t| t.state != TargetState::Draining)
        .map(|t| t.instance_id)
        .collect()
}

fn open_findings(state: &greenlight_core::model::State) -> Vec<Finding> {
    state
        .service
        .findings
        .as_ref()
        .map(|f| f.open.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_listener_edited_by_hand_is_reported_then_repaired_under_repair() {
    let env = Env::alone("reconcile-drift", quick).await;
    live_healthy(&env).await;
    let [a, b] = env.world.config.target_groups.clone();
    env.local
        .ports
        .lb
        .set_traffic(
            &env.world.config.switch.points()[0],
            None,
            &[(a.clone(), 50), (b.clone(), 50)],
        )
        .await
        .expect("edit the listener by hand");

    // Report (the default): recorded, logged, counted; the listener is left as it is.
    let run = reconcile_services(&env.local.ports, &scheduled_run("drift-1"))
        .await
        .unwrap();
    assert_eq!(run.fleet.len(), 1, "{run:?}");
    assert!(run.fleet[0].findings[0].starts_with("drift: "), "{run:?}");
    let state = env.ledger(None).await;
    match open_findings(&state).as_slice() {
        [Finding::Drift {
            weights,
            expected,
            action: Action::Reported,
            ..
        }] => {
            assert_eq!(weights, &vec![(a.clone(), 50), (b.clone(), 50)]);
            assert_eq!(expected, &vec![(a.clone(), 100), (b.clone(), 0)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.weights().await,
        vec![("a", 50), ("b", 50)],
        "report changes nothing"
    );
    let lines = env.local.metrics.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"greenlight\":\"finding\"") && l.contains("\"drift\"")),
        "a finding log line: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"Drift\":1")),
        "the Drift metric: {lines:?}"
    );
    // The same drift again: nothing new to write.
    let gen = state.service.gen;
    reconcile_services(&env.local.ports, &scheduled_run("drift-2"))
        .await
        .unwrap();
    assert_eq!(
        env.ledger(None).await.service.gen,
        gen,
        "unchanged findings are not written again"
    );

    // `greenlight status` shows it.
    let status = crate::cli::cli(&env, &["status", &env.service]).await;
    assert!(status.stdout.contains("FINDING     drift:"), "{status:?}");

    // Repair: the listener back to the ledger's state, as the emulator shows it.
    set_policy(
        &env,
        ReconcilePolicy {
            drift: Remedy::Repair,
            ..ReconcilePolicy::default()
        },
    )
    .await;
    let run = reconcile_services(&env.local.ports, &scheduled_run("drift-3"))
        .await
        .unwrap();
    assert_eq!(run.fleet[0].repairs, 1, "{run:?}");
    assert!(matches!(
        open_findings(&env.ledger(None).await).as_slice(),
        [Finding::Drift {
            action: Action::Repaired,
            ..
        }]
    ));
    let listener = env
        .local
        .clients
        .elb
        .describe_listeners()
        .listener_arns(&env.world.config.switch.points()[0].listener_arn)
        .send()
        .await
        .unwrap();
    let forward = listener.listeners()[0].default_actions()[0].forward_config().unwrap();
    let weights: Vec<(String, i32)> = forward
        .target_groups()
        .iter()
        .map(|t| (t.target_group_arn().unwrap().to_string(), t.weight().unwrap_or(1)))
        .collect();
    assert_eq!(weights, vec![(a.clone(), 100), (b.clone(), 0)]);

    // The next run finds the fleet as the ledger says: the findings are cleared.
    let run = reconcile_services(&env.local.ports, &scheduled_run("drift-4"))
        .await
        .unwrap();
    assert!(run.fleet.is_empty(), "{run:?}");
    assert_eq!(env.ledger(None).await.service.findings, None);
}

#[tokio::test]
async fn a_stranger_registered_into_lives_group_is_deregistered_and_never_terminated() {
    let env = Env::alone("reconcile-stranger", quick).await;
    live_healthy(&env).await;
    let live_tg = env.world.config.target_groups[0].clone();
    let stranger = launch_by_hand(&env, &[("owner", "alice")]).await;
    env.local
        .clients
        .elb
        .register_targets()
        .target_group_arn(&live_tg)
        .targets(TargetDescription::builder().id(&stranger).port(8080).build())
        .send()
        .await
        .expect("register by hand");

    let run = reconcile_services(&env.local.ports, &scheduled_run("stranger-1"))
        .await
        .unwrap();
    assert_eq!(run.fleet.len(), 1, "{run:?}");
    match open_findings(&env.ledger(None).await).as_slice() {
        [Finding::Stranger {
            instance_id,
            target_group,
            managed: false,
            reason: StrangerWhy::NotInAnyRelease,
            action: Action::Reported,
        }] => assert_eq!((instance_id, target_group), (&stranger, &live_tg)),
        other => panic!("{other:?}"),
    }
    assert!(
        registered(&env, &live_tg).await.contains(&stranger),
        "report changes nothing"
    );

    set_policy(
        &env,
        ReconcilePolicy {
            strangers: Remedy::Repair,
            ..ReconcilePolicy::default()
        },
    )
    .await;
    let run = reconcile_services(&env.local.ports, &scheduled_run("stranger-2"))
        .await
        .unwrap();
    assert_eq!(run.fleet[0].repairs, 1, "{run:?}");
    assert!(!registered(&env, &live_tg).await.contains(&stranger), "deregistered");
    let state = env.states(std::slice::from_ref(&stranger)).await[&stranger].clone();
    assert!(
        matches!(state.as_str(), "pending" | "running"),
        "a stranger that is not greenlight's is never terminated: {state}"
    );
    for blue in &env.world.blue_instances {
        assert!(registered(&env, &live_tg).await.contains(blue), "live stays registered");
    }
}

#[tokio::test]
async fn a_tagged_orphan_older_than_the_grace_is_terminated_and_a_younger_one_left() {
    let env = Env::alone("reconcile-orphan", quick).await;
    let orphan = launch_by_hand(
        &env,
        &[
            (tags::MANAGED_BY, tags::MANAGED_BY_VALUE),
            (tags::SERVICE, env.service.as_str()),
            (tags::VERSION, "v1"),
            (tags::DEPLOY_ID, "d-lost"),
        ],
    )
    .await;
    let foreign = launch_by_hand(&env, &[(tags::SERVICE, env.service.as_str())]).await;

    // Younger than the grace (an hour by default): left alone, not even reported.
    let run = reconcile_services(&env.local.ports, &scheduled_run("orphan-1"))
        .await
        .unwrap();
    assert!(run.fleet.is_empty(), "{run:?}");
    let young = env.states(std::slice::from_ref(&orphan)).await[&orphan].clone();
    assert!(matches!(young.as_str(), "pending" | "running"), "{young}");

    set_policy(
        &env,
        ReconcilePolicy {
            orphan_grace_s: 1,
            ..ReconcilePolicy::default()
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let run = reconcile_services(&env.local.ports, &scheduled_run("orphan-2"))
        .await
        .unwrap();
    assert_eq!(run.fleet.len(), 1, "{run:?}");
    let state = env.ledger(None).await;
    match open_findings(&state).as_slice() {
        [Finding::Orphan {
            instance_id,
            deploy_id,
            action: Action::Repaired,
            ..
        }] => assert_eq!((instance_id, deploy_id.as_deref()), (&orphan, Some("d-lost"))),
        other => panic!("{other:?}"),
    }
    let states = env.states(&[orphan.clone(), foreign.clone()]).await;
    assert!(
        matches!(states[&orphan].as_str(), "shutting-down" | "terminated"),
        "{states:?}"
    );
    assert!(
        matches!(states[&foreign].as_str(), "pending" | "running"),
        "not tagged managed-by=greenlight: never terminated: {states:?}"
    );
    for blue in &env.world.blue_instances {
        assert_eq!(
            env.states(std::slice::from_ref(blue)).await[blue],
            "running",
            "live is accounted for"
        );
    }
    let status = crate::cli::cli(&env, &["status", &env.service]).await;
    assert!(status.stdout.contains("FINDING     orphan:"), "{status:?}");
    assert_eq!(
        state.service.findings.as_ref().unwrap().open[0].kind(),
        FindingKind::Orphan
    );
}
