//! A crash at every AWS call: each invocation of a scenario crashed right after each of its calls.
//!
//! A scenario is a list of deliveries: an event to a handler (start-deployment,
//! revert-service, steer-deployment), then the steps of every execution it started, as they
//! route. The test drives the steps itself, one at a time (the handlers' orchestrator only
//! records StartExecution), so it knows exactly which invocation it crashes.
//!
//! A crash-free run counts each invocation's AWS calls. Then, for every invocation i and every
//! k in 1..=calls(i) where call k is the first or a write (a crash right after a read leaves
//! AWS as the crash right after the call before it: `chaos::READ_ONLY_CALLS`), a fresh
//! service runs the same scenario with invocation i crashing right after call k
//! (`greenlight_adapters::chaos::crashing`: the call takes effect, the handler gets an
//! error, nothing after it reaches AWS), the same event or step input is delivered to
//! the same handler again, and the rest of the scenario runs as it routes. The end state
//! (listener weights, registered targets, instances and their tags, ledger pointers and
//! records, S3 reports, how each execution and delivery ended, and what the listener and the
//! target groups were right after each event's handler returned: an abort or a rollback acts
//! at once), normalised so that runs in different services compare, must equal the crash-free
//! run's, with no duplicate instance (exactly `count` launched per deployment) and no orphan
//! (nothing running outside the live fleet).
//!
//! Invocations of a scenario's setup (before `Driver::act`), and those after `Driver::settle`,
//! are not crashed: another scenario crashes the same handlers in the same phases (a
//! reconcile's resumed execution and an analysed canary's launch are the canary rollout's). check-health runs once green is healthy
//! (read through uncounted ports), so every run makes the same invocations.

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use greenlight_adapters::chaos::{crashing, only_reads, Tripwire};
use greenlight_adapters::{tags, AdapterError, AdapterResult, Orchestrator, Ports};
use greenlight_core::announce;
use greenlight_core::config::{ReconcilePolicy, Remedy, ServiceConfig};
use greenlight_core::decide::{HealthReport, TargetState};
use greenlight_core::inbound::{ABORT_REQUESTED, PROMOTE_REQUESTED, ROLLBACK_REQUESTED};
use greenlight_core::model::{Deployment, Phase, PhaseName, Release};
use greenlight_core::plan::{Step, StepInput, StepOutput};
use greenlight_e2e::{image_published, quick, sample_event, unique, App, Env};
use greenlight_local::emulator::Emulator;
use greenlight_local::fixture::{alarm_name, Spec, OIDC_CLIENT_SECRET};
use greenlight_local::hooks::{serve_as_lambda, Answer, HookServer};
use greenlight_local::pipe::StreamReader;
use greenlight_local::{Local, Names};
use greenlight_steps::{reconcile_services, revert_service, run_step, start_deployment, steer_deployment, StepError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Runs in flight at once, over every scenario of this file (each scenario has an emulator
/// of its own, which serves one request at a time; most of a run is waiting for instances
/// and health checks).
const PARALLEL: usize = 8;
static SLOTS: Semaphore = Semaphore::const_new(PARALLEL);
/// Runs of one scenario in flight or waiting for a slot at once: the scenarios' runs take
/// turns instead of the first to queue its crash points taking every slot until it is done.
const PER_SWEEP: usize = 4;
/// The longest wait the driver sleeps before a step. Longer waits (a canary step, the bake
/// window) only come where a scenario pauses the execution and wakes it later.
const MAX_WAIT_S: u64 = 3;
/// One run's limit.
const RUN_LIMIT: Duration = Duration::from_secs(150);

// ---------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------

type Script = for<'a> fn(&'a mut Driver) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A scenario: the service it runs on and what is delivered to it.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// The service name's prefix (each run has its own service).
    prefix: &'static str,
    /// Each run on a ledger table of its own: a scenario that runs reconcile-services, which
    /// looks at every service in its table (the other runs' too, on a shared one).
    own_table: bool,
    spec: fn(&str) -> Spec,
    script: Script,
}

/// v2 over v1 through canary steps 50 → 100, no bake window: every pipeline step, to success.
/// At 50 % a Lambda hook (`traffic_shifted`) answers `IN_PROGRESS`, then `SUCCEEDED` a second
/// later: a crash right after a hook's call calls it again with the same invocation id.
const CANARY_ROLLOUT: Scenario = Scenario {
    name: "canary rollout to success",
    prefix: "crash-canary",
    own_table: false,
    spec: |s| Spec {
        canary_steps: vec![50, 100],
        step_wait_s: 0,
        bake_window_s: 0,
        max_polls: 60,
        hooks: vec![greenlight_core::hook::Hook {
            name: "checks".into(),
            stage: greenlight_core::hook::Stage::TrafficShifted,
            lambda: Some(format!(
                "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-{s}"
            )),
            webhook: None,
            callback_delay_s: 1,
            timeout_s: 120,
            on_timeout: greenlight_core::hook::OnTimeout::Rollback,
            request_timeout_s: 10,
        }],
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let hook = HookServer::start(vec![Answer::in_progress("warming"), Answer::succeeded()])
                .await
                .expect("a hook");
            let endpoint = d.env.local.sdk.endpoint_url().expect("an endpoint").to_string();
            serve_as_lambda(&endpoint, &format!("greenlight-hook-{}", d.env.service), &hook)
                .await
                .expect("serve the hook");
            d.act();
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.run_started().await;
            let calls: Vec<u64> = hook.payloads().iter().filter_map(|p| p["call"].as_u64()).collect();
            assert!(
                calls.contains(&1) && calls.contains(&2),
                "the hook was called twice: {calls:?}"
            );
        })
    },
};

/// v2 live and baking; its alarm fires: revert-service's fast path, then the clean-up
/// execution it starts, then the deployment's own execution waking after the bake window.
const ALARM_IN_BAKE: Scenario = Scenario {
    name: "alarm revert during the bake window",
    prefix: "crash-alarm",
    own_table: false,
    // Green is deregistered once the stale-write fence has passed (I26) and terminated a
    // drain later: a drain of a few seconds keeps those two runs apart whatever second the
    // first lands in (event times have 1 s resolution).
    spec: |s| Spec {
        bake_window_s: 120,
        deregistration_delay_s: 3,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.run_until(0, |_, out| out.phase == PhaseName::Baking).await;
            d.act();
            let alarm = d.env.alarm_event("alarm-1", "ALARM");
            d.revert(alarm).await;
            d.run_started().await;
            d.resume(0).await;
        })
    },
};

/// v2 succeeded and v1 is retired; an engineer rolls back: v1's image is deployed again
/// through the gates (revert-service's slow path, then the rollback's whole execution). No
/// deregistration delay: the canary scenario waits for draining, this one is long enough.
const ROLLBACK_AFTER_RETIRE: Scenario = Scenario {
    name: "engineer rollback after blue was retired",
    prefix: "crash-rollback",
    own_table: false,
    spec: |s| Spec {
        bake_window_s: 0,
        deregistration_delay_s: 0,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.run_started().await;
            d.act();
            // Handled in the second of its `time`, as a prompt delivery is.
            d.at_the_start_of_a_second().await;
            let rollback = d
                .env
                .request_event(ROLLBACK_REQUESTED, "rollback-1", "alice", "v2 corrupts carts");
            d.revert(rollback).await;
            d.run_started().await;
        })
    },
};

/// v2's canary at 50 %; an engineer aborts it: steer-deployment, the follow-up execution
/// that cleans up, then the deployment's own execution waking after the canary step's wait.
const ABORT_IN_CANARY: Scenario = Scenario {
    name: "engineer abort during the canary",
    prefix: "crash-abort",
    own_table: false,
    // No drain: abort-deployment deregisters and terminates green in its one run at the
    // fence, whatever second it lands in. (With a 3 s drain a loaded machine once ran the
    // fence's run past the drain, one invocation where the crash-free run had two; the
    // alarm revert's and the two-listener sweeps keep the fence's run and the drain's apart.)
    spec: |s| Spec {
        canary_steps: vec![50, 100],
        step_wait_s: 300,
        bake_window_s: 0,
        deregistration_delay_s: 0,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.run_until(0, |step, _| step == Step::ShiftTraffic).await;
            d.act();
            let abort = d
                .env
                .request_event(ABORT_REQUESTED, "abort-1", "alice", "canary looks wrong");
            d.steer(abort).await;
            d.run_started().await;
            d.resume(0).await;
        })
    },
};

/// v2's canary pauses at 50 % for an approval; an engineer approves it: steer-deployment,
/// the follow-up execution that moves green to 100 % and on to success, then the
/// deployment's own execution waking after the pause's wait (it finds the deployment done).
const APPROVED_PAUSE: Scenario = Scenario {
    name: "engineer approves a paused canary",
    prefix: "crash-pause",
    own_table: false,
    spec: |s| Spec {
        canary_steps: vec![50, 100],
        pauses: vec![50],
        pause_timeout_s: 3600,
        step_wait_s: 0,
        bake_window_s: 0,
        deregistration_delay_s: 0,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            // The pause: shift-traffic at 50 % routes to itself after the pause's long wait.
            d.run_until(0, |step, out| step == Step::ShiftTraffic && out.wait_s > 60)
                .await;
            d.act();
            let approve = d
                .env
                .request_event(PROMOTE_REQUESTED, "approve-1", "carol", "50% looks right");
            d.steer(approve).await;
            d.run_started().await;
            d.resume(0).await;
        })
    },
};

/// v2's canary at 50 % holds instead of reverting (`on_failure: hold`); its alarm fires:
/// revert-service freezes it (no listener change); an engineer then rolls back: the listener
/// change, the clean-up execution, then the deployment's own execution waking after the
/// canary step's wait (it finds the deployment ended).
const HELD_THEN_ROLLED_BACK: Scenario = Scenario {
    name: "alarm holds a canary, then an engineer rolls back",
    prefix: "crash-hold",
    own_table: false,
    spec: |s| Spec {
        canary_steps: vec![50, 100],
        step_wait_s: 300,
        bake_window_s: 0,
        deregistration_delay_s: 0,
        on_failure: greenlight_core::config::OnFailure::Hold,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.run_until(0, |step, _| step == Step::ShiftTraffic).await;
            d.act();
            let alarm = d.env.alarm_event("alarm-1", "ALARM");
            d.revert(alarm).await;
            let rollback = d
                .env
                .request_event(ROLLBACK_REQUESTED, "rollback-1", "alice", "the alarm was right");
            d.revert(rollback).await;
            d.run_started().await;
            d.resume(0).await;
        })
    },
};

/// v2's image event committed its deployment and lost its StartExecution (that delivery
/// crashed and was dead-lettered): nothing moves it. Its lease runs out; the scheduled
/// reconcile resumes it in a follow-up execution, which rolls out to success.
const STUCK_RESUMED: Scenario = Scenario {
    name: "stuck deployment resumed by the scheduled reconcile",
    prefix: "crash-stuck",
    own_table: true,
    spec: |s| Spec {
        lease_s: 1,
        bake_window_s: 0,
        deregistration_delay_s: 0,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let event = d.image_event("v2").await;
            d.start(event).await;
            d.lose_started();
            tokio::time::sleep(Duration::from_secs(2)).await;
            d.act();
            let run = sample_event(
                "scheduled-reconcile.json",
                &[("/id", json!(format!("run-{}", d.env.service)))],
            );
            d.reconcile(run).await;
            // A lease of 1 s made the lease's renewals land on whichever steps crossed a
            // second boundary, a count that differed between runs on a loaded machine (a
            // retire-blue with one commit more in the crash-free run). The registration's
            // lease is lengthened now that it has expired: the next step renews it once, in
            // every run, and none after.
            let mut config = d.env.ledger(None).await.config;
            config.lease_s = 900;
            (d.env.local.ports.ledger)
                .register_service(&config, None)
                .await
                .expect("register again");
            // The resumed execution's steps are the canary rollout's, which that scenario
            // crashes; here they only have to bring the deployment to its end.
            d.settle();
            d.run_started().await;
        })
    },
};

/// A service whose registration repairs drift and strangers, orphans after a second: its
/// listener edited by hand (50/50), a stranger (untagged, not greenlight's) registered into
/// live's group, a tagged orphan (no deployment) older than the grace. The scheduled
/// reconcile repairs all three (listener back to live, the stranger deregistered and left
/// running, the orphan terminated); the next scheduled run finds the fleet as the ledger
/// says and clears the findings.
const FLEET_REPAIR: Scenario = Scenario {
    name: "fleet audit repairing drift, a stranger and an orphan",
    prefix: "crash-fleet",
    own_table: true,
    spec: |s| Spec {
        deregistration_delay_s: 0,
        reconcile: ReconcilePolicy {
            drift: Remedy::Repair,
            strangers: Remedy::Repair,
            orphan_grace_s: 1,
        },
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            crate::reconcile::live_healthy(&d.env).await;
            let config = d.env.world.config.clone();
            let [a, b] = config.target_groups.clone();
            d.env
                .local
                .ports
                .lb
                .set_traffic(&config.switch.points()[0], None, &[(a.clone(), 50), (b, 50)])
                .await
                .expect("edit the listener by hand");
            let stranger = crate::reconcile::launch_by_hand(&d.env, &[("owner", "alice")]).await;
            d.env
                .local
                .clients
                .elb
                .register_targets()
                .target_group_arn(&a)
                .targets(TargetDescription::builder().id(&stranger).port(8080).build())
                .send()
                .await
                .expect("register a stranger by hand");
            let service = d.env.service.clone();
            let orphan = crate::reconcile::launch_by_hand(
                &d.env,
                &[
                    (tags::MANAGED_BY, tags::MANAGED_BY_VALUE),
                    (tags::SERVICE, service.as_str()),
                ],
            )
            .await;
            d.by_hand.insert(stranger.clone(), "a stranger");
            d.by_hand.insert(orphan.clone(), "an orphan");
            // Older than the grace (1 s; launch times have 1 s resolution).
            tokio::time::sleep(Duration::from_secs(2)).await;
            d.act();
            let run = sample_event(
                "scheduled-reconcile.json",
                &[("/id", json!(format!("run-{}", d.env.service)))],
            );
            d.reconcile(run).await;
            let next = sample_event(
                "scheduled-reconcile.json",
                &[("/id", json!(format!("run-2-{}", d.env.service)))],
            );
            d.reconcile(next).await;
            // What every run must end with (the sweep compares the rest).
            let forwarding: Vec<_> = d.env.weights().await.into_iter().filter(|(_, w)| *w > 0).collect();
            assert_eq!(forwarding, vec![("a", 100)], "the listener repaired");
            assert!(!crate::reconcile::registered(&d.env, &a).await.contains(&stranger));
            let states = d.env.states(&[stranger.clone(), orphan.clone()]).await;
            assert!(
                matches!(states[&stranger].as_str(), "pending" | "running"),
                "a stranger is never terminated: {states:?}"
            );
            assert!(
                matches!(states[&orphan].as_str(), "shutting-down" | "terminated"),
                "{states:?}"
            );
        })
    },
};

/// A service with two listeners (the first with an authenticate-oidc action before its
/// forward, both forwards sticky): v2's canary 50 → 100, every step a crash target; at 50 %
/// an engineer rolls back (revert-service's fast path: both listeners at once), then the
/// clean-up execution and the deployment's own waking after the canary step's wait. Both
/// listeners must end on v1 with their frames exactly as before and the secret still held.
const TWO_POINTS_CANARY_REVERT: Scenario = Scenario {
    name: "two-listener canary then an engineer's rollback",
    prefix: "crash-points",
    own_table: false,
    spec: |s| Spec {
        canary_steps: vec![50, 100],
        step_wait_s: 300,
        bake_window_s: 0,
        deregistration_delay_s: 3,
        extra_listeners: 1,
        oidc: true,
        stickiness_s: Some(2),
        // The rollback's redelivery after a crash must come before the fence whatever the
        // load (at 2 s it once came after it and deregistered green earlier than the
        // crash-free run).
        max_invocation_s: 8,
        ..quick(s)
    },
    script: |d| {
        Box::pin(async move {
            let before = d.env.point_frames().await;
            let event = d.image_event("v2").await;
            // start-deployment is the canary rollout's; launching with two listeners is not.
            d.start(event).await;
            d.act();
            d.run_until(0, |step, _| step == Step::ShiftTraffic).await;
            d.at_the_start_of_a_second().await;
            let rollback = d
                .env
                .request_event(ROLLBACK_REQUESTED, "rollback-1", "alice", "canary looks wrong");
            d.revert(rollback).await;
            // The clean-up execution runs once green's drain is over: its one abort-deployment
            // deregisters and terminates green whatever time it lands at (a loaded machine
            // delays it by seconds; a run whose first try came before the drain's end, and
            // another's after it, would make different calls).
            let id = d.executions[0].at.deploy_id.clone();
            let dep = d.env.deployment(&id).await;
            let Phase::Aborting { drain_until, .. } = dep.phase else {
                panic!("the rollback recorded an abort: {:?}", dep.phase)
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            tokio::time::sleep(Duration::from_secs(drain_until.saturating_sub(now) + 1)).await;
            d.run_started().await;
            d.resume(0).await;
            // What every run must end with (the sweep compares the rest).
            let weights = d.env.every_point_weights().await;
            assert_eq!(weights, [[("a", 100)], [("a", 100)]], "both listeners back on v1");
            assert_eq!(d.env.point_frames().await, before, "the frames as they were");
            let secrets = stored_client_secrets(&d.env).await;
            let first = &d.env.world.listener_arns[0];
            assert_eq!(
                secrets[first],
                json!([OIDC_CLIENT_SECRET]),
                "the listener keeps its secret"
            );
        })
    },
};

/// The custom metric the analysed canary is judged on: `Checkout/Failures` among
/// `Checkout/Requests` per target group, put into CloudWatch before the run (one datapoint a
/// second from 10 s ago to 3 minutes ahead), so every run sees the same metrics whatever its
/// timing: green fails 30 % of 1000 requests a second, blue 1 %.
fn analysed(service: &str) -> Spec {
    let query = |metric: &str| {
        json!({"namespace": "Checkout", "metric_name": metric,
                                       "dimensions": {"TargetGroup": "${target_group}"}})
    };
    Spec {
        canary_steps: vec![50, 100],
        // check-health runs 2 s after green got its 50 %, so the step's first evaluation
        // always has complete metric periods: every run makes the same invocations.
        step_wait_s: 2,
        bake_window_s: 0,
        // No drain: abort-deployment deregisters and terminates green in its one run at the
        // fence, whatever second it lands in (a loaded machine once ran it past a 3 s drain
        // and made one invocation of two).
        deregistration_delay_s: 0,
        analysis: Some(
            serde_json::from_value(json!({
                "metrics": [{"custom": {"name": "failures", "bad": query("Failures"),
                                        "total": query("Requests"), "tolerance_pp": 0.5}}],
                "period_s": 1, "lag_s": 0, "max_step_s": 60, "min_requests": 100
            }))
            .expect("a valid analysis"),
        ),
        ..quick(service)
    }
}

/// Puts the custom metric of [`analysed`] for both target groups.
async fn put_checkout_metrics(env: &Env) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let [blue, green] = env.world.config.target_groups.clone();
    for (tg, failures) in [(blue, 10.0), (green, 300.0)] {
        let dimension = Dimension::builder()
            .name("TargetGroup")
            .value(greenlight_core::analysis::target_group_dimension(&tg))
            .build();
        let datum = |metric: &str, at: i64, value: f64| {
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(dimension.clone())
                .timestamp(DateTime::from_secs(at))
                .value(value)
                .build()
        };
        let data: Vec<MetricDatum> = (now - 10..now + 180)
            .flat_map(|at| [datum("Failures", at, failures), datum("Requests", at, 1000.0)])
            .collect();
        for chunk in data.chunks(500) {
            env.local
                .clients
                .cloudwatch
                .put_metric_data()
                .namespace("Checkout")
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .expect("put the checkout metrics");
        }
    }
}

/// v2's canary judged by analysis on a custom metric: at its first step (50 %) green fails
/// 30 % against blue's 1 %: the verdict reverts it through the alarm's path, then the
/// deployment's own execution cleans green up.
const ANALYSED_CANARY_REVERT: Scenario = Scenario {
    name: "analysed canary reverted by its verdict",
    prefix: "crash-judged",
    own_table: false,
    spec: analysed,
    script: |d| {
        Box::pin(async move {
            put_checkout_metrics(&d.env).await;
            let event = d.image_event("v2").await;
            d.start(event).await;
            // Starting, launching and the health gate are the canary rollout's: crashed from
            // the first shift on, where analysis judges.
            d.run_until(0, |step, _| step == Step::CheckHealth).await;
            d.act();
            d.resume(0).await;
            d.run_started().await;
            // What every run must end with (the sweep compares the rest).
            assert_eq!(d.env.weights().await, [("a", 100)], "traffic back on v1");
            let id = d.executions[0].at.deploy_id.clone();
            let dep = d.env.deployment(&id).await;
            assert_eq!(dep.max_weight, 50, "never past the judged step");
            assert_eq!(dep.revert.as_ref().map(|r| r.requested_by.as_str()), Some("analysis"));
        })
    },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_an_analysed_canary_reverted_by_its_verdict_changes_nothing_in_the_end() {
    sweep(ANALYSED_CANARY_REVERT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_two_listener_canary_and_rollback_changes_nothing_in_the_end() {
    sweep(TWO_POINTS_CANARY_REVERT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_canary_rollout_changes_nothing_in_the_end() {
    sweep(CANARY_ROLLOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_an_alarm_revert_changes_nothing_in_the_end() {
    sweep(ALARM_IN_BAKE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_rollback_redeployment_changes_nothing_in_the_end() {
    sweep(ROLLBACK_AFTER_RETIRE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_an_engineers_abort_changes_nothing_in_the_end() {
    sweep(ABORT_IN_CANARY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_an_approved_pause_changes_nothing_in_the_end() {
    sweep(APPROVED_PAUSE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_held_canary_rolled_back_changes_nothing_in_the_end() {
    sweep(HELD_THEN_ROLLED_BACK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_reconcile_resuming_stuck_work_changes_nothing_in_the_end() {
    sweep(STUCK_RESUMED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_a_fleet_repair_changes_nothing_in_the_end() {
    sweep(FLEET_REPAIR).await;
}

// ---------------------------------------------------------------------------------------
// Regression tests: crash points the sweeps once found ending differently, each replayed
// alone. The doc says what was wrong and how it was fixed; the name says what holds now.
// ---------------------------------------------------------------------------------------

/// The canary's first retire-blue (bake window over) crashes right after committing
/// `Retiring`, before DeregisterTargets. Found by the sweep: its redelivery came while blue
/// "drained" (now < `drain_until`), `decide` ignored `RetireDue` in `Retiring` until then
/// and, once it was over, terminated blue without deregistering it (its targets never
/// drained, left registered). Fixed: decide re-issues DeregisterTargets (idempotent) on
/// every `RetireDue` in `Retiring` (I8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_blue_crashed_after_recording_retiring_still_deregisters_blue_before_terminating_it() {
    crash_once(CANARY_ROLLOUT, "retire-blue", 0, "ledger.commit").await;
}

/// The canary's last retire-blue crashes right after committing `Succeeded`, before the
/// report's PutObject. Found by the sweep: its redelivery found the deployment succeeded,
/// `decide` ignored `RetireDue` there and no one wrote the report, ever (abort-deployment
/// after `Aborted` too). Fixed: a step of the deployment's executions that finds it ended
/// re-issues `WriteReport` (an idempotent PutObject).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_crashed_after_recording_its_end_still_writes_its_report() {
    crash_once(CANARY_ROLLOUT, "retire-blue", 1, "ledger.commit").await;
}

/// steer-deployment's abort crashes right after committing `Aborting` (before its listener
/// change, DeregisterTargets and the `<id>-abort` StartExecution). Found by the sweep: the
/// redelivered AbortRequested found the deployment aborting and `decide` said "already
/// aborting" with no effects, so traffic stayed 50 % on green and nothing cleaned up until
/// the deployment's own execution woke after the canary step's wait (300 s here). Fixed:
/// decide re-applies the abort's effects and the follow-up execution on `AbortRequested` in
/// `Aborting` (all idempotent; StartExecution of the same name is "already started") (I20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_crashed_after_recording_it_puts_traffic_back_at_once_when_redelivered() {
    crash_once(ABORT_IN_CANARY, "steer-deployment", 0, "ledger.commit").await;
}

/// revert-service (alarm, bake window) crashes right after committing the rollback (its fast
/// path already put traffic back), before its clean-up and the `<id>-revert` StartExecution.
/// Found by the sweep: the redelivered alarm found the rollback recorded and did nothing, so
/// green stayed running until the deployment's own execution woke after the bake window
/// (120 s here, an hour by default). Fixed: a revert that finds the rollback recorded while
/// the deployment is still aborting re-issues the clean-up and the follow-up execution (I13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_revert_crashed_after_recording_it_starts_the_clean_up_when_redelivered() {
    crash_once(ALARM_IN_BAKE, "revert-service", 0, "ledger.commit").await;
}

/// revert-service's slow path (v1 retired: redeploy v1's image) crashes right after
/// committing the rollback deployment, before its StartExecution. Found by the sweep: the
/// redelivered RollbackRequested found that deployment holding the service and rolled *it*
/// back (v2, the version the engineer rolled back from, stayed live). Fixed: decide's revert
/// recognises the deployment whose id derives from this event's id
/// (`DeployId::derive_rollback`), changes nothing and makes sure its execution runs (I14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_request_redelivered_after_its_redeployment_was_recorded_only_makes_sure_it_runs() {
    crash_once(ROLLBACK_AFTER_RETIRE, "revert-service", 0, "ledger.commit").await;
}

// ---------------------------------------------------------------------------------------
// The sweep: a crash-free run, then one run per crash point
// ---------------------------------------------------------------------------------------

/// Where a run crashes: invocation `invocation` (0-based, redeliveries not counted), right
/// after its call `k` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CrashPoint {
    invocation: usize,
    k: usize,
}

/// What a run left.
struct RunResult {
    trace: Vec<Invocation>,
    hit: Option<Hit>,
    state: EndState,
}

/// An emulator of the scenario's own (moto slows down as its state grows, and one emulator
/// uses one core) and an installation on it that every run of the scenario shares.
async fn installation(scenario: &Scenario) -> (Emulator, Local) {
    let log = std::env::temp_dir().join(format!(
        "greenlight-e2e-{}-emulator-{}.log",
        scenario.prefix,
        std::process::id()
    ));
    let emulator = Emulator::start(Some(log)).unwrap_or_else(|e| panic!("cannot start an emulator: {e}"));
    // The ledger's stream on: each run reads the deployment events its writes announced.
    let names = Names {
        ledger_stream: true,
        ..Names::isolated(&unique(scenario.prefix))
    };
    let local = Local::connect(&emulator.endpoint, names).await.expect("connect");
    (emulator, local)
}

/// Runs `scenario` on a fresh service of `local`, crashing at `crash` if given.
async fn run(scenario: Scenario, local: Local, crash: Option<CrashPoint>) -> RunResult {
    let _slot = SLOTS.acquire().await.expect("the semaphore is never closed");
    let mut d = Driver::new(&scenario, &local, crash).await;
    if tokio::time::timeout(RUN_LIMIT, (scenario.script)(&mut d))
        .await
        .is_err()
    {
        panic!("{} ({crash:?}) did not end within {RUN_LIMIT:?}", scenario.name);
    }
    let state = end_state(&d).await;
    d.tear_down().await;
    RunResult {
        trace: d.trace,
        hit: d.hit,
        state,
    }
}

/// The crash-free run, checked on its own: every invariant holds, everything ends.
async fn baseline(scenario: Scenario, local: &Local) -> RunResult {
    let base = run(scenario, local.clone(), None).await;
    assert!(
        base.state.violations.is_empty(),
        "{}: the crash-free run breaks invariants:\n{}",
        scenario.name,
        base.state.violations.join("\n")
    );
    let unfinished: Vec<&String> = base
        .state
        .lines
        .iter()
        .filter(|l| (l.starts_with("execution") && !l.contains("): done: ")) || l.contains(": error: "))
        .collect();
    assert!(
        unfinished.is_empty(),
        "{}: the crash-free run did not end cleanly: {unfinished:#?}\n{}",
        scenario.name,
        base.state.lines.join("\n")
    );
    base
}

/// The crash points of a crash-free run: for every invocation after the setup, its first call
/// and every call that writes. A crash right after a read leaves AWS as the crash right after
/// the call before it did ([`only_reads`]), so those runs would only repeat another point.
fn crash_points(base: &RunResult) -> Vec<CrashPoint> {
    base.trace
        .iter()
        .enumerate()
        .filter(|(_, inv)| !inv.setup)
        .flat_map(|(invocation, inv)| {
            (1..=inv.calls.len())
                .filter(|&k| k == 1 || !only_reads(inv.calls[k - 1]))
                .map(move |k| CrashPoint { invocation, k })
        })
        .collect()
}

/// The crash-free run, then every crash point, `PER_SWEEP` runs at a time (`PARALLEL` over
/// all sweeps); fails with every crash point whose end differs.
async fn sweep(scenario: Scenario) {
    let clock = Instant::now();
    let (_emulator, local) = installation(&scenario).await;
    let base = Arc::new(baseline(scenario, &local).await);
    let points = crash_points(&base);
    let mut per_handler: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for inv in base.trace.iter().filter(|inv| !inv.setup) {
        let entry = per_handler.entry(inv.handler).or_default();
        entry.0 += 1;
        entry.1 += inv.calls.len();
    }
    let per_handler: Vec<String> = per_handler
        .iter()
        .map(|(handler, (invocations, calls))| format!("{handler} {calls} ({invocations} invocations)"))
        .collect();
    println!(
        "crash sweep '{}': {} crash points ({} calls) over {} invocations: {}",
        scenario.name,
        points.len(),
        base.trace
            .iter()
            .filter(|inv| !inv.setup)
            .map(|inv| inv.calls.len())
            .sum::<usize>(),
        base.trace.iter().filter(|inv| !inv.setup).count(),
        per_handler.join(", ")
    );
    for (n, inv) in base.trace.iter().enumerate().filter(|(_, inv)| !inv.setup) {
        println!("    {}. {}: {}", n + 1, inv.label, inv.calls.join(", "));
    }
    let turns = Arc::new(Semaphore::new(PER_SWEEP));
    let runs: Vec<_> = points
        .iter()
        .map(|&point| {
            let (turns, local) = (turns.clone(), local.clone());
            let base = base.clone();
            let crash_run = async move {
                let _turn = turns.acquire_owned().await.expect("the semaphore is never closed");
                run_and_judge(&scenario, &local, &base, point).await
            };
            (point, tokio::spawn(crash_run))
        })
        .collect();
    let mut failures = Vec::new();
    for (point, handle) in runs {
        let verdict = match handle.await {
            Ok(verdict) => verdict,
            Err(e) => Err(Mismatch::Broken(format!(
                "{}: the run panicked: {e}",
                describe(&scenario, &base, point)
            ))),
        };
        match verdict {
            Ok(()) => {}
            Err(Mismatch::Differs { head, lines }) => failures.push(format!(
                "{head}; the end differs from the crash-free run's (- crash-free, + crashed):\n{}",
                lines.join("\n")
            )),
            Err(Mismatch::Broken(why) | Mismatch::Diverged(why)) => failures.push(why),
        }
    }
    println!(
        "crash sweep '{}': {} of {} crash points end as the crash-free run, {} fail ({:.0?})",
        scenario.name,
        points.len() - failures.len(),
        points.len(),
        failures.len(),
        clock.elapsed(),
    );
    assert!(
        failures.is_empty(),
        "{} of {} crash points of '{}' end differently:\n\n{}",
        failures.len(),
        points.len(),
        scenario.name,
        failures.join("\n\n")
    );
}

/// One crash point of `scenario`, named by the handler (or its label's prefix), which of
/// its invocations after the setup (0 = the first) and the call: the crash-free run, then
/// the crash run; fails if they end differently.
async fn crash_once(scenario: Scenario, label: &str, nth: usize, call: &str) {
    let (_emulator, local) = installation(&scenario).await;
    let base = baseline(scenario, &local).await;
    let (invocation, inv) = base
        .trace
        .iter()
        .enumerate()
        .filter(|(_, inv)| !inv.setup && inv.label.starts_with(label))
        .nth(nth)
        .unwrap_or_else(|| panic!("'{}' has no invocation #{nth} of {label}", scenario.name));
    let k = 1 + inv
        .calls
        .iter()
        .position(|c| *c == call)
        .unwrap_or_else(|| panic!("{} makes no {call} call: {:?}", inv.label, inv.calls));
    let point = CrashPoint { invocation, k };
    match run_and_judge(&scenario, &local, &base, point).await {
        Ok(()) => {}
        Err(Mismatch::Differs { head, lines }) => panic!(
            "{head}; the end differs from the crash-free run's (- crash-free, + crashed):\n{}",
            lines.join("\n")
        ),
        Err(Mismatch::Broken(why) | Mismatch::Diverged(why)) => panic!("{why}"),
    }
}

/// "scenario …, invocation 3 of 9 (revert-service), crash after call 2 of 10 (lb.set_traffic)".
fn describe(scenario: &Scenario, base: &RunResult, point: CrashPoint) -> String {
    let inv = &base.trace[point.invocation];
    format!(
        "scenario '{}', invocation {} of {} ({}), crash after call {} of {} ({})",
        scenario.name,
        point.invocation + 1,
        base.trace.len(),
        inv.label,
        point.k,
        inv.calls.len(),
        inv.calls[point.k - 1]
    )
}

/// Why a crash run does not count as ending like the crash-free run.
enum Mismatch {
    /// It ended differently: the lines only one run has (`  - ` crash-free, `  + ` crashed).
    Differs { head: String, lines: Vec<String> },
    /// It did not crash where it should have, or did not end.
    Broken(String),
    /// Its invocations went another way before the crash point, so the point was not
    /// exercised: e.g. on a loaded machine a clean-up run came so late that it both
    /// deregistered and terminated green, one invocation where the crash-free run had two.
    /// The point is run again (at most [`DIVERGED_RETRIES`] times), and must then be reached
    /// and end as the crash-free run.
    Diverged(String),
}

/// How many more times a crash point whose run went another way before reaching it is run.
const DIVERGED_RETRIES: usize = 2;

/// Runs crash `point` of `scenario` and judges it, running it again while its invocations went
/// another way before reaching the point ([`Mismatch::Diverged`]).
async fn run_and_judge(
    scenario: &Scenario,
    local: &Local,
    base: &RunResult,
    point: CrashPoint,
) -> Result<(), Mismatch> {
    let mut verdict = judge(scenario, base, point, &run(*scenario, local.clone(), Some(point)).await);
    for _ in 0..DIVERGED_RETRIES {
        if !matches!(verdict, Err(Mismatch::Diverged(_))) {
            break;
        }
        verdict = judge(scenario, base, point, &run(*scenario, local.clone(), Some(point)).await);
    }
    verdict
}

/// Ok when the crash run hit its crash point and ended as the crash-free run.
fn judge(scenario: &Scenario, base: &RunResult, point: CrashPoint, outcome: &RunResult) -> Result<(), Mismatch> {
    let mut head = describe(scenario, base, point);
    let want = &base.trace[point.invocation];
    match outcome.trace.get(point.invocation) {
        Some(got) if got.label == want.label => {}
        got => {
            return Err(Mismatch::Diverged(format!(
                "{head}: the run went another way before the crash point (invocation {} was {:?})",
                point.invocation + 1,
                got.map(|g| &g.label)
            )))
        }
    }
    match &outcome.hit {
        // Calls made concurrently (an alarm's claim and listener change) may end in another order.
        Some(Hit::Crashed { call }) if *call != want.calls[point.k - 1] => head += &format!(" (crashed on {call})"),
        Some(Hit::Crashed { .. }) => {}
        Some(Hit::Missed { calls }) => {
            return Err(Mismatch::Broken(format!(
                "{head}: not reached, the invocation made {} call(s): {calls:?}",
                calls.len()
            )))
        }
        None => return Err(Mismatch::Broken(format!("{head}: the crash point was never armed"))),
    }
    if outcome.state != base.state {
        return Err(Mismatch::Differs {
            head,
            lines: diff(&base.state, &outcome.state),
        });
    }
    Ok(())
}

/// The lines only one of the two states has: `  - ` the crash-free run's, `  + ` the other's.
fn diff(want: &EndState, got: &EndState) -> Vec<String> {
    let all = |s: &EndState| -> Vec<String> {
        let violations = s.violations.iter().map(|v| format!("violation: {v}"));
        s.lines.iter().cloned().chain(violations).collect()
    };
    let (want, got) = (all(want), all(got));
    let mut out: Vec<String> = want
        .iter()
        .filter(|l| !got.contains(l))
        .map(|l| format!("  - {l}"))
        .collect();
    out.extend(got.iter().filter(|l| !want.contains(l)).map(|l| format!("  + {l}")));
    if out.is_empty() && want != got {
        // The same lines, in another order or counted differently: show the first place.
        let at = want
            .iter()
            .zip(&got)
            .position(|(w, g)| w != g)
            .unwrap_or(want.len().min(got.len()));
        out.push(format!(
            "  line {at} differs (the same lines otherwise): - {:?} + {:?}",
            want.get(at),
            got.get(at)
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// What a handler is given.
#[derive(Debug, Clone)]
enum Delivery {
    Start(Value),
    Revert(Value),
    Steer(Value),
    Reconcile(Value),
    Step(Step, StepInput),
}

impl Delivery {
    fn handler(&self) -> &'static str {
        match self {
            Delivery::Start(_) => "start-deployment",
            Delivery::Revert(_) => "revert-service",
            Delivery::Steer(_) => "steer-deployment",
            Delivery::Reconcile(_) => "reconcile-services",
            Delivery::Step(step, _) => step.name(),
        }
    }

    /// Runs the handler on `ports`; a step's output.
    async fn to(&self, ports: &Ports) -> Result<Option<StepOutput>, StepError> {
        match self {
            Delivery::Start(event) => start_deployment(ports, event).await.map(|_| None),
            Delivery::Revert(event) => revert_service(ports, event).await.map(|_| None),
            Delivery::Steer(event) => steer_deployment(ports, event).await.map(|_| None),
            Delivery::Reconcile(event) => reconcile_services(ports, event).await.map(|_| None),
            Delivery::Step(step, input) => run_step(ports, *step, input).await.map(Some),
        }
    }
}

/// One handler invocation of a run (its redelivery after a crash is not another one).
#[derive(Debug, Clone)]
struct Invocation {
    handler: &'static str,
    /// The handler and, for a step, its execution (`check-health [E1]`).
    label: String,
    /// The AWS calls it made, in order.
    calls: Vec<&'static str>,
    /// Made during the scenario's setup (before `act`, or after `settle`): not a crash target.
    setup: bool,
}

/// What became of the armed crash point.
#[derive(Debug)]
enum Hit {
    Crashed {
        call: &'static str,
    },
    /// The invocation made fewer calls than the crash point's.
    Missed {
        calls: Vec<&'static str>,
    },
}

/// Records StartExecution (a name starts once, like Step Functions) and runs nothing: the
/// driver runs the executions.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, StepOutput)>>);

impl Recorder {
    fn started(&self) -> Vec<(String, StepOutput)> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl Orchestrator for Recorder {
    async fn start(&self, name: &str, input: &Value) -> AdapterResult<()> {
        let first: StepOutput = serde_json::from_value(input.clone())
            .map_err(|e| AdapterError::Invalid(format!("execution input: {e}")))?;
        let mut started = self.0.lock().unwrap();
        if !started.iter().any(|(n, _)| n == name) {
            started.push((name.to_string(), first));
        }
        Ok(())
    }
}

/// An event delivered, and right after.
struct Delivered {
    handler: &'static str,
    result: Result<(), String>,
    /// What an abort or a rollback promises at once, when the handler returned: the switch
    /// point's weights, and who is registered (not draining) in each target group.
    right_after: Vec<String>,
}

/// An execution the driver runs.
struct Execution {
    name: String,
    /// `E<n>` in the order started, plus the name's suffix after the deploy id (`-revert`).
    label: String,
    /// The last step's output (at first: the execution's input).
    at: StepOutput,
    previous: Step,
    /// The error a failed step sends to abort-deployment (Step Functions' `Catch`).
    error: Option<Value>,
    run: Run,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    New,
    /// Waiting (a Wait state) until the scenario wakes it.
    Paused,
    Ended(String),
}

/// Runs a scenario on its own service, counting (or crashing) every invocation's AWS calls.
struct Driver {
    env: Env,
    /// The service's ports, with an orchestrator that only records.
    ports: Ports,
    recorder: Arc<Recorder>,
    crash: Option<CrashPoint>,
    setup: bool,
    trace: Vec<Invocation>,
    hit: Option<Hit>,
    executions: Vec<Execution>,
    /// Each event delivered (after a crash: its redelivery), how its handler ended and what
    /// it left right after.
    deliveries: Vec<Delivered>,
    /// Executions whose StartExecution a scenario lost: never run.
    lost: BTreeSet<String>,
    /// Instances the scenario launched by hand (not greenlight's deployments), with their
    /// role (`a stranger`, `an orphan`): reported by role in the end state.
    by_hand: BTreeMap<String, &'static str>,
    /// The ledger's stream from before the run: the deployment events its writes announce.
    stream: tokio::sync::Mutex<StreamReader>,
}

/// The wall clock set back by `ms`.
struct SetBack {
    ms: u64,
}

impl greenlight_adapters::Clock for SetBack {
    fn now_ms(&self) -> u64 {
        greenlight_adapters::SystemClock.now_ms().saturating_sub(self.ms)
    }
}

impl Driver {
    async fn new(scenario: &Scenario, local: &Local, crash: Option<CrashPoint>) -> Driver {
        let env = if scenario.own_table {
            let endpoint = local.sdk.endpoint_url().expect("a local endpoint").to_string();
            let names = Names::with_own_table(&unique(scenario.prefix));
            let own = Local::connect(&endpoint, names).await.expect("connect");
            Env::on(&own, scenario.prefix, scenario.spec).await
        } else {
            Env::on(local, scenario.prefix, scenario.spec).await
        };
        let recorder = Arc::new(Recorder::default());
        let ports = Ports {
            orchestrator: recorder.clone(),
            ..env.local.ports.clone()
        };
        let stream = StreamReader::latest(&env.local).await.expect("the ledger's stream");
        Driver {
            stream: tokio::sync::Mutex::new(stream),
            env,
            ports,
            recorder,
            crash,
            setup: true,
            trace: Vec::new(),
            hit: None,
            executions: Vec::new(),
            deliveries: Vec::new(),
            lost: BTreeSet::new(),
            by_hand: BTreeMap::new(),
        }
    }

    /// Terminates the service's instances once the run is read: the emulator health-checks,
    /// and runs an app for, every running instance until it stops.
    async fn tear_down(&self) {
        let mut running: Vec<String> = self
            .env
            .service_instances()
            .await
            .into_iter()
            .filter(|i| settled(i.state.as_str()) == "running")
            .map(|i| i.instance_id)
            .collect();
        let by_hand: Vec<String> = self.by_hand.keys().cloned().collect();
        for (id, state) in self.env.states(&by_hand).await {
            if settled(&state) == "running" && !running.contains(&id) {
                running.push(id);
            }
        }
        if !running.is_empty() {
            let ec2 = &self.env.local.clients.ec2;
            let terminated = ec2.terminate_instances().set_instance_ids(Some(running)).send().await;
            terminated.expect("terminate the run's instances");
        }
    }

    /// From here on, invocations are crash targets.
    fn act(&mut self) {
        self.setup = false;
    }

    /// From here on, invocations are not crash targets again: they are steps another
    /// scenario crashes the same way (a resumed execution's pipeline is the canary rollout's).
    fn settle(&mut self) {
        self.setup = true;
    }

    /// Sleeps until just after the next whole second (event times have 1 s resolution).
    async fn at_the_start_of_a_second(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
        tokio::time::sleep(Duration::from_millis(1010) - into).await;
    }

    /// An `ImagePublished` event for a new healthy image of `version`.
    async fn image_event(&self, version: &str) -> Value {
        let ami = self.env.image(version, App::Healthy).await;
        image_published(json!({"service": self.env.service, "version": version, "ami": ami, "requested_by": "e2e"}))
    }

    async fn start(&mut self, event: Value) {
        self.event(Delivery::Start(event)).await;
    }

    async fn revert(&mut self, event: Value) {
        self.event(Delivery::Revert(event)).await;
    }

    async fn steer(&mut self, event: Value) {
        self.event(Delivery::Steer(event)).await;
    }

    async fn reconcile(&mut self, event: Value) {
        self.event(Delivery::Reconcile(event)).await;
    }

    /// The executions started so far never reach Step Functions (the StartExecution was
    /// lost): they are never run.
    fn lose_started(&mut self) {
        for (name, _) in self.recorder.started() {
            if !self.executions.iter().any(|e| e.name == name) {
                self.lost.insert(name);
            }
        }
    }

    async fn event(&mut self, delivery: Delivery) {
        let handler = delivery.handler();
        let result = self.invoke(delivery, String::new()).await;
        let config = &self.env.world.config;
        let lb = &self.env.local.ports.lb;
        let mut right_after = Vec::new();
        for (n, point) in config.switch.points().iter().enumerate() {
            let weights = lb.traffic(point).await.expect("traffic");
            right_after.push(format!("switch point {n} forwards: {}", forwards(config, &weights)));
        }
        let versions: BTreeMap<String, String> = (self.env.service_instances().await.into_iter())
            .map(|i| (i.instance_id, i.tags.get(tags::VERSION).cloned().unwrap_or_default()))
            .collect();
        for tg in &config.target_groups {
            let targets = lb.target_health(tg).await.expect("target health");
            let mut registered: Vec<&str> = (targets.iter())
                .filter(|t| t.state != TargetState::Draining)
                .map(|t| versions.get(&t.instance_id).map_or("?", String::as_str))
                .collect();
            registered.sort();
            right_after.push(format!("registered in {}: {}", role(config, tg), registered.join(", ")));
        }
        self.deliveries.push(Delivered {
            handler,
            result: result.map(|_| ()).map_err(|e| e.to_string()),
            right_after,
        });
    }

    /// One invocation: counted, or crashed at the armed call and then delivered again (with
    /// a fresh wire) as Lambda or Step Functions would after a crash.
    async fn invoke(&mut self, delivery: Delivery, context: String) -> Result<Option<StepOutput>, StepError> {
        let index = self.trace.len();
        let armed = self.crash.filter(|c| c.invocation == index && !self.setup).map(|c| c.k);
        let wire = armed.map_or_else(Tripwire::counting, Tripwire::crash_after);
        let first_try = Instant::now();
        let result = delivery.to(&crashing(&self.ports, wire.clone())).await;
        let calls = wire.calls();
        self.trace.push(Invocation {
            handler: delivery.handler(),
            label: format!("{}{context}", delivery.handler()),
            calls: calls.clone(),
            setup: self.setup,
        });
        let Some(k) = armed else { return result };
        if !wire.tripped() {
            self.hit = Some(Hit::Missed { calls });
            return result;
        }
        self.hit = Some(Hit::Crashed { call: calls[k - 1] });
        // Delivered again at once: on a clock set back by the crashed try's run time, so that
        // what the redelivery decides does not depend on how long a loaded machine took to
        // reach the crash (the stale-write fence counts from the first decision; a slow try
        // once let the redelivery of an alarm's revert deregister green right away, where
        // the crash-free run leaves that to the clean-up execution).
        let mut again = crashing(&self.ports, Tripwire::counting());
        again.clock = Arc::new(SetBack {
            ms: first_try.elapsed().as_millis() as u64,
        });
        delivery.to(&again).await
    }

    /// Takes in the executions started since the last look.
    fn collect_started(&mut self) {
        for (name, first) in self.recorder.started() {
            if self.executions.iter().any(|e| e.name == name) || self.lost.contains(&name) {
                continue;
            }
            let suffix = name.strip_prefix(first.deploy_id.as_str()).unwrap_or("?").to_string();
            self.executions.push(Execution {
                label: format!("E{}{suffix}", self.executions.len() + 1),
                name,
                at: first,
                previous: Step::StartDeployment,
                error: None,
                run: Run::New,
            });
        }
    }

    /// Runs every execution started and not run yet to its end, in the order started.
    async fn run_started(&mut self) {
        loop {
            self.collect_started();
            let Some(index) = self.executions.iter().position(|e| e.run == Run::New) else {
                return;
            };
            self.run(index, None, false).await;
        }
    }

    /// Runs execution `index` (0 = the first started) until `pause` says so after a step;
    /// it then waits until [`Driver::resume`].
    async fn run_until(&mut self, index: usize, pause: fn(Step, &StepOutput) -> bool) {
        self.collect_started();
        self.run(index, Some(pause), false).await;
        let exec = &self.executions[index];
        assert_eq!(exec.run, Run::Paused, "{} ended before its pause", exec.label);
    }

    /// Wakes a paused execution: its wait is over; it runs on to its end.
    async fn resume(&mut self, index: usize) {
        self.run(index, None, true).await;
    }

    /// Interprets the plan as the local orchestrator does (route, wait, step; a failed step
    /// goes to abort-deployment with its error), without its retries: a crashed step is
    /// delivered again by `invoke`.
    async fn run(&mut self, index: usize, pause: Option<fn(Step, &StepOutput) -> bool>, mut woken: bool) {
        loop {
            let exec = &mut self.executions[index];
            let next = match exec.at.next_step() {
                Ok(next) => next,
                Err(why) => {
                    exec.run = Run::Ended(format!("failed: {why}"));
                    return;
                }
            };
            if !exec.previous.allows(next) {
                exec.run = Run::Ended(format!(
                    "failed: unplanned route {} -> {}",
                    exec.previous.name(),
                    exec.at.next
                ));
                return;
            }
            let Some(step) = next else {
                exec.run = Run::Ended(format!("done: {}", exec.at.phase));
                return;
            };
            let wait = if woken { 0 } else { exec.at.wait_s.min(MAX_WAIT_S) };
            woken = false;
            let input = StepInput {
                service: exec.at.service.clone(),
                deploy_id: exec.at.deploy_id.clone(),
                error: exec.error.take(),
            };
            let context = format!(" [{}]", exec.label);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if step == Step::CheckHealth {
                self.wait_for_green(&input.deploy_id).await;
            }
            let result = self.invoke(Delivery::Step(step, input), context).await;
            let exec = &mut self.executions[index];
            match result {
                Ok(out) => exec.at = out.expect("a step has an output"),
                Err(e) if step == Step::AbortDeployment => {
                    exec.run = Run::Ended(format!("failed: abort-deployment: {e}"));
                    return;
                }
                Err(e) => {
                    exec.error = Some(json!({"Error": "StepFailed", "Cause": format!("{}: {e}", step.name())}));
                    exec.at = StepOutput {
                        next: Step::AbortDeployment.name().into(),
                        wait_s: 0,
                        ..exec.at.clone()
                    };
                }
            }
            exec.previous = step;
            if pause.is_some_and(|p| p(step, &exec.at)) {
                exec.run = Run::Paused;
                return;
            }
        }
    }

    /// Waits (30 s at most) until every green target of `deploy_id` is healthy, so that
    /// check-health decides on the first look in every run (no poll count that depends on
    /// timing); reads through the uncounted ports.
    async fn wait_for_green(&self, deploy_id: &str) {
        let dep = self.env.deployment(deploy_id).await;
        if !matches!(dep.phase, Phase::Verifying { .. }) || dep.green_instances.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let targets = self.env.local.ports.lb.target_health(&dep.green_tg).await;
            let targets = targets.expect("target health");
            if (HealthReport { targets, smoke: vec![] }).all_healthy(&dep.green_instances) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The end state
// ---------------------------------------------------------------------------------------

/// A run's end, normalised so that runs on different services compare: one self-describing
/// line per fact, instance ids, ARNs and deploy ids replaced by roles (target group `a` is
/// the fixture's first, blue at the start) and deployment labels (`v2`, `v1 (rollback)`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct EndState {
    lines: Vec<String>,
    /// Invariants broken: a duplicate instance, an orphan, a missing tag, a held lease.
    violations: Vec<String>,
}

/// A fixture target group's role: `a` (blue at the start) or `b`.
fn role(config: &ServiceConfig, tg: &str) -> &'static str {
    match config.target_groups.iter().position(|t| t == tg) {
        Some(0) => "a",
        Some(1) => "b",
        _ => "another target group",
    }
}

/// Forward weights by role: `a=90 b=10`.
fn forwards(config: &ServiceConfig, weights: &[(String, u8)]) -> String {
    let weights: Vec<String> = weights
        .iter()
        .map(|(tg, w)| format!("{}={w}", role(config, tg)))
        .collect();
    weights.join(" ")
}

/// The client secrets each authenticate-oidc action of the env's listeners and rules holds
/// (the emulator's record), by ARN (`null` for a point without one).
async fn stored_client_secrets(env: &Env) -> Value {
    let endpoint = env.local.sdk.endpoint_url().expect("a local endpoint");
    let body = greenlight_e2e::http_get(&format!("{endpoint}/_greenlight/client-secrets")).await;
    let secrets: Value = serde_json::from_str(&body).expect("client secrets JSON");
    secrets["stored"].clone()
}

/// `pending`/`running` → `running`, `shutting-down`/`terminated` → `terminated`.
fn settled(state: &str) -> &str {
    match state {
        "pending" => "running",
        "shutting-down" => "terminated",
        other => other,
    }
}

async fn end_state(d: &Driver) -> EndState {
    let env = &d.env;
    let config = &env.world.config;
    let lb = &env.local.ports.lb;
    let role = |tg: &str| role(config, tg);
    // Deregistered targets drain for the deregistration delay, then are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    for tg in &config.target_groups {
        while Instant::now() < deadline {
            let draining = lb.target_health(tg).await.expect("target health");
            if !draining.iter().any(|t| t.state.as_str() == "draining") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let pointers = env.ledger(None).await.service;
    let history = env.local.ports.ledger.history(&env.service).await.expect("history");
    let label = |dep: &Deployment| match dep.rollback {
        true => format!("{} (rollback)", dep.version),
        false => dep.version.clone(),
    };
    let deployments: BTreeMap<&str, &Deployment> = history.iter().map(|d| (d.deploy_id.as_str(), d)).collect();
    let named = |id: &str| {
        deployments
            .get(id)
            .map(|d| label(d))
            .unwrap_or_else(|| format!("unknown {id}"))
    };
    let scrub = |text: &str| {
        let mut text = text.to_string();
        for (id, dep) in &deployments {
            text = text.replace(id, &format!("<{}>", label(dep)));
        }
        text.replace(&env.service, "<service>")
    };
    let mut lines = Vec::new();
    let mut violations = Vec::new();

    // Instances and their tags: whose each one is.
    let instances = env.service_instances().await;
    let mut whose: BTreeMap<&str, String> = BTreeMap::new();
    for i in &instances {
        let tag = |key: &str| i.tags.get(key).map(String::as_str);
        let id = i.instance_id.as_str();
        if let Some(role) = d.by_hand.get(id) {
            whose.insert(id, format!("{role} (by hand)"));
            continue;
        }
        let (who, version) = match tag(tags::DEPLOY_ID) {
            Some(deploy_id) => match deployments.get(deploy_id) {
                Some(dep) => (label(dep), dep.version.as_str()),
                None => {
                    violations.push(format!(
                        "an instance is tagged with deploy id {deploy_id}, in no ledger record"
                    ));
                    ("unknown".into(), "?")
                }
            },
            None if env.world.blue_instances.iter().any(|b| b == id) => ("v1 (fixture)".into(), "v1"),
            None => {
                violations.push(format!(
                    "an instance {} is not tagged {}",
                    settled(i.state.as_str()),
                    tags::DEPLOY_ID
                ));
                ("untagged".into(), "?")
            }
        };
        if tag(tags::MANAGED_BY) != Some(tags::MANAGED_BY_VALUE) {
            violations.push(format!("an instance of {who} is not tagged managed-by=greenlight"));
        }
        if tag(tags::SERVICE) != Some(env.service.as_str()) {
            violations.push(format!("an instance of {who} is not tagged with its service"));
        }
        if tag(tags::VERSION) != Some(version) {
            violations.push(format!(
                "an instance of {who} is tagged version {:?}",
                tag(tags::VERSION)
            ));
        }
        whose.insert(id, who);
    }
    for (id, role) in &d.by_hand {
        whose.entry(id.as_str()).or_insert_with(|| format!("{role} (by hand)"));
    }
    let who = |id: &str| whose.get(id).cloned().unwrap_or_else(|| "not the service's".into());

    // The switch points (weights, frames, the client secrets they hold) and the target groups.
    let frames = env.point_frames().await;
    let secrets = stored_client_secrets(env).await;
    for (n, point) in config.switch.points().iter().enumerate() {
        let weights = lb.traffic(point).await.expect("traffic");
        lines.push(format!("switch point {n} forwards: {}", forwards(config, &weights)));
        lines.push(format!("switch point {n} frame: {:?}", frames[n]));
        lines.push(format!("switch point {n} client secrets: {}", secrets[point.arn()]));
    }
    // Test routes still open (by count: deploy ids differ from run to run).
    let routes = lb
        .test_routes(&config.switch.points()[0].listener_arn)
        .await
        .expect("test routes");
    lines.push(format!("test routes open: {}", routes.len()));
    for tg in &config.target_groups {
        let mut targets: Vec<String> = lb
            .target_health(tg)
            .await
            .expect("target health")
            .iter()
            .map(|t| format!("{} {}", who(&t.instance_id), t.state.as_str()))
            .collect();
        targets.sort();
        lines.push(format!("targets in {}: {}", role(tg), targets.join(", ")));
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in &instances {
        *counts
            .entry(format!("{} {}", who(&i.instance_id), settled(i.state.as_str())))
            .or_default() += 1;
    }
    lines.extend(counts.iter().map(|(k, n)| format!("instances {k}: {n}")));
    // What was launched by hand: its state (a stranger is never terminated) and where it is
    // registered (not draining).
    let by_hand: Vec<String> = d.by_hand.keys().cloned().collect();
    let states = env.states(&by_hand).await;
    let mut hand_lines = Vec::new();
    for (id, what) in &d.by_hand {
        let mut groups = Vec::new();
        for tg in &config.target_groups {
            let targets = lb.target_health(tg).await.expect("target health");
            if targets
                .iter()
                .any(|t| t.instance_id == *id && t.state != TargetState::Draining)
            {
                groups.push(role(tg));
            }
        }
        let state = states.get(id).map_or("unknown", |s| settled(s));
        hand_lines.push(format!("{what} by hand: {state}, registered in {groups:?}"));
    }
    // By role, not by instance id (ids differ from run to run).
    hand_lines.sort();
    lines.extend(hand_lines);

    // The ledger: pointers, the alarm's alias, every deployment, its report.
    let release = |r: &Release| {
        let from = r
            .deploy_id
            .as_deref()
            .map(named)
            .unwrap_or_else(|| "the fixture".into());
        format!(
            "{} of {from} in {}, {} instances",
            r.version,
            role(&r.target_group),
            r.instance_ids.len()
        )
    };
    lines.push(format!("live: {:?}", pointers.live.as_ref().map(release)));
    lines.push(format!("warm: {:?}", pointers.warm.as_ref().map(release)));
    lines.push(format!("active: {:?}", pointers.active.as_deref().map(named)));
    lines.push(format!("lease held: {}", pointers.lease_until.is_some()));
    lines.push(format!("queued: {:?}", pointers.queued.as_ref().map(|q| &q.version)));
    lines.push(format!("attention: {:?}", pointers.attention.as_deref().map(scrub)));
    let findings = pointers.findings.as_ref().map(|f| {
        let kinds: Vec<String> = f
            .open
            .iter()
            .map(|finding| format!("{} {:?}", finding.kind().as_str(), finding.action()))
            .collect();
        (kinds, f.more, f.repaired_at.is_some())
    });
    lines.push(format!("fleet findings (kinds, more, repaired): {findings:?}"));
    let last_revert = pointers
        .last_revert
        .as_ref()
        .map(|r| format!("{} -> {} by {}", r.from, r.back_to, named(&r.deploy_id)));
    lines.push(format!("last revert: {last_revert:?}"));
    lines.push(format!(
        "revert plan: {}, claim: {}",
        pointers.revert_plan.is_some(),
        pointers.revert_claim.is_some()
    ));
    let alias = env
        .ledger_item(&format!("ALARM#{}", alarm_name(&env.service)), "SERVICE")
        .await
        .unwrap_or_default();
    lines.push(format!(
        "alarm alias: revert plan {}, claim {}",
        alias.contains_key("revert_plan"),
        alias.contains_key("claim_event")
    ));
    // The deployment events the run's writes announced (the pipe's enrichment over the
    // ledger's stream): each change once, in order, the same whatever crashed.
    let records = d.stream.lock().await.drain().await.expect("the ledger's stream");
    let pk = format!("SVC#{}", env.service);
    let mine: Vec<Value> = records
        .into_iter()
        .filter(|r| r["dynamodb"]["Keys"]["pk"]["S"] == pk.as_str())
        .collect();
    let mut announced: BTreeMap<String, Vec<announce::DeploymentStateChanged>> = BTreeMap::new();
    for event in announce::enrich(&Value::Array(mine)).expect("the run's stream records") {
        announced.entry(event.deploy_id.clone()).or_default().push(event);
    }
    // In the ledger's order (deploy ids differ from run to run).
    for id in announced.keys().filter(|id| !deployments.contains_key(id.as_str())) {
        violations.push(format!("an event announced deployment {id}, in no ledger record"));
    }
    for (id, events) in history
        .iter()
        .filter_map(|d| Some((&d.deploy_id, announced.get(&d.deploy_id)?)))
    {
        let chain: Vec<String> = events
            .iter()
            .map(|e| match e.waiting {
                Some(w) => format!("{} ({w:?}) at {} %", e.phase, e.green_weight),
                None => format!("{} at {} %", e.phase, e.green_weight),
            })
            .collect();
        lines.push(format!("deployment {} announced: {}", named(id), chain.join(", ")));
        if let Err(why) = announce::check_sequence(events) {
            violations.push(format!("deployment {}: {why}: {chain:?}", named(id)));
        }
    }
    for dep in &history {
        let now = announce::status(dep);
        let last = announced
            .get(&dep.deploy_id)
            .and_then(|e| e.last())
            .map(|e| (e.phase, e.waiting));
        if last != Some((now.phase, now.waiting)) {
            violations.push(format!(
                "deployment {} is {} ({:?}) but its last event announced {last:?}",
                label(dep),
                now.phase,
                now.waiting
            ));
        }
    }
    for dep in &history {
        let name = label(dep);
        let phase = match &dep.phase {
            // A verdict's numbers depend on how many metric periods the run's timing saw.
            Phase::Aborted { reason } if reason.starts_with("rolled back by analysis") => {
                format!("aborted: {}", reason.split(" green ").next().unwrap_or(reason))
            }
            Phase::Aborted { reason } => format!("aborted: {}", scrub(reason)),
            other => other.name().to_string(),
        };
        lines.push(format!("deployment {name}: {phase}"));
        let revert = dep.revert.as_ref().map(|r| {
            format!(
                "{} by {} back to {}, traffic back recorded: {}",
                r.trigger,
                scrub(&r.requested_by),
                r.back_to,
                r.traffic_back_at_ms.is_some()
            )
        });
        lines.push(format!("deployment {name}: revert {revert:?}"));
        // Each hook's calls at each point and how it ended (a crash after a call calls it again
        // with the same number: the record must not count it twice).
        for hook in &dep.hooks {
            let ended = hook.ended.as_ref().map(|e| match e {
                greenlight_core::hook::HookEnd::Succeeded { .. } => "succeeded".to_string(),
                greenlight_core::hook::HookEnd::Failed { reason, .. } => format!("failed: {}", scrub(reason)),
                greenlight_core::hook::HookEnd::TimedOut { action, .. } => format!("timed out: {}", action.as_str()),
            });
            lines.push(format!(
                "deployment {name}: hook {} at {} {}%: {} calls, {ended:?}",
                hook.hook,
                hook.stage.as_str(),
                hook.weight,
                hook.calls
            ));
        }
        lines.push(format!(
            "deployment {name}: {} green, max weight {}, healthy: {}, promoted by {:?}",
            dep.green_instances.len(),
            dep.max_weight,
            dep.healthy_at.is_some(),
            dep.promoted_by
        ));
        let key = format!(
            "{}{}/{}.json",
            greenlight_steps::lambda::REPORT_PREFIX,
            env.service,
            dep.deploy_id
        );
        let report = env.local.ports.store.get(&env.local.names.bucket, &key).await.ok();
        let outcome = report
            .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
            .map(|r| r["outcome"].as_str().unwrap_or("unreadable").to_string());
        lines.push(format!("deployment {name}: report {outcome:?}"));
        // No duplicate: one fleet of `count` per deployment, ever (terminated ones included).
        let launched = instances
            .iter()
            .filter(|i| i.tags.get(tags::DEPLOY_ID) == Some(&dep.deploy_id))
            .count();
        let never_launched = launched == 0 && dep.green_instances.is_empty();
        if launched != config.launch.count as usize && !never_launched {
            violations.push(format!(
                "deployment {name}: {launched} instances launched, not {}",
                config.launch.count
            ));
        }
    }

    // No orphan: what runs is the live fleet, all of it.
    let running: BTreeSet<&str> = instances
        .iter()
        .filter(|i| settled(i.state.as_str()) == "running")
        .map(|i| i.instance_id.as_str())
        .collect();
    let live: BTreeSet<&str> = pointers
        .live
        .iter()
        .flat_map(|r| r.instance_ids.iter().map(String::as_str))
        .collect();
    for orphan in running.difference(&live) {
        violations.push(format!(
            "orphan: an instance of {} runs outside the live fleet",
            who(orphan)
        ));
    }
    for gone in live.difference(&running) {
        violations.push(format!("an instance of the live fleet ({}) is not running", who(gone)));
    }
    if pointers.active.is_some() || pointers.lease_until.is_some() || pointers.queued.is_some() {
        violations.push("the service is still held (active, lease or queued)".into());
    }
    if pointers.revert_claim.is_some() {
        violations.push("a revert claim is left on the pointers".into());
    }

    // How every execution and delivery ended.
    for exec in &d.executions {
        let name = exec
            .name
            .strip_prefix(exec.at.deploy_id.as_str())
            .map(|suffix| format!("{}{suffix}", named(&exec.at.deploy_id)))
            .unwrap_or_else(|| exec.name.clone());
        let run = match &exec.run {
            Run::New => "never run",
            Run::Paused => "paused",
            Run::Ended(how) => how,
        };
        lines.push(format!("execution {} ({name}): {run}", exec.label));
    }
    for (n, delivered) in d.deliveries.iter().enumerate() {
        let result = match &delivered.result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {}", scrub(e)),
        };
        lines.push(format!("delivery {} to {}: {result}", n + 1, delivered.handler));
        for fact in &delivered.right_after {
            lines.push(format!("right after delivery {}, {fact}", n + 1));
        }
    }
    EndState { lines, violations }
}
