//! Rollbacks while the previous fleet is warm: an engineer's `RollbackRequested` or the
//! service's CloudWatch alarm going to ALARM puts traffic back on the previous version with
//! one listener change, during a canary or the bake window; the bad fleet is then drained
//! and terminated. Repeated, late and irrelevant triggers change nothing.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use greenlight_adapters::{AdapterError, AdapterResult, Ledger, LoadBalancer, Ports, RevertKey};
use greenlight_core::config::ServiceConfig;
use greenlight_core::config::Switch;
use greenlight_core::decide::RevertRequest;
use greenlight_core::decide::TargetHealth;
use greenlight_core::model::{self, Deployment, ImageSource, Phase, PhaseName};
use greenlight_core::model::{Release, RevertPlan, State};
use greenlight_core::plan::{Step, StepInput};
use greenlight_core::switch::{Frame, SeenAction};
use greenlight_e2e::{canary, quick, started, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::{revert_service, run_step, RevertOutcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug)]
enum Stage {
    /// Green at 10 %, waiting before the next check.
    Canary,
    /// Green live at 100 %, blue warm.
    Bake,
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Engineer,
    Alarm,
}

/// A service with v2 deploying, stopped at `stage` (the waits are long enough to act in).
async fn deploying(prefix: &str, stage: Stage) -> (Env, String) {
    let spec = |s: &str| match stage {
        Stage::Canary => Spec {
            step_wait_s: 120,
            ..canary(s)
        },
        Stage::Bake => Spec {
            bake_window_s: 120,
            ..quick(s)
        },
    };
    let env = Env::new(prefix, spec).await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    match stage {
        Stage::Canary => {
            env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
                .await;
            assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);
        }
        Stage::Bake => {
            env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
            assert_eq!(env.weights().await, [("b", 100)]);
            assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v2");
        }
    }
    (env, id)
}

async fn trigger(env: &Env, trigger: Trigger) -> RevertOutcome {
    match trigger {
        Trigger::Engineer => env.rollback("checkout errors up").await,
        Trigger::Alarm => env.alarm("alarm-1", "ALARM").await,
    }
    match env.deliver(1).await.remove(0) {
        Ok(Outcome::Revert(outcome)) => outcome,
        other => panic!("expected revert-service's outcome, got {other:?}"),
    }
}

/// A `RollbackRequested` event from alice, as EventBridge delivers it.
pub(crate) fn rollback_event(env: &Env, id: &str) -> serde_json::Value {
    let mut event = greenlight_e2e::image_published(serde_json::json!({}));
    event["detail-type"] = "RollbackRequested".into();
    event["id"] = id.into();
    event["time"] = greenlight_e2e::now_rfc3339().into();
    event["detail"] = serde_json::json!({"service": env.service, "reason": "errors", "requested_by": "alice"});
    event
}

/// Traffic on v1 at once; then the clean-up leaves green terminated and v1 live and serving.
async fn assert_rolled_back(env: &Env, id: &str, by: &str) -> Deployment {
    assert_eq!(
        env.weights().await,
        [("a", 100)],
        "all traffic back on v1 when the handler returns"
    );
    let state = env.ledger(Some(id)).await;
    assert_eq!(state.service.live.as_ref().unwrap().version, "v1");
    assert_eq!(state.service.warm, None);
    let record = state
        .deployment
        .unwrap()
        .revert
        .expect("the ledger records the rollback");
    assert_eq!((record.back_to.as_str(), record.requested_by.as_str()), ("v1", by));
    let ms = record.time_to_revert_ms().expect("time-to-revert recorded");
    assert!(ms < 60_000, "time-to-revert {ms} ms");

    let cleanup = format!("{id}-revert");
    assert_eq!(env.wait(&cleanup).await, Ending::Done(PhaseName::Aborted));
    let dep = env.deployment(id).await;
    match &dep.phase {
        Phase::Aborted { reason } => assert!(reason.contains(&format!("rolled back by {by}")), "{reason}"),
        other => panic!("expected aborted, got {other:?}"),
    }
    assert!(env.live_instances_of(id).await.is_empty(), "v2 fleet terminated");
    let blue = env.states(&env.world.blue_instances).await;
    assert!(blue.values().all(|s| s == "running"), "v1 keeps serving: {blue:?}");
    let registered = env
        .local
        .ports
        .lb
        .target_health(&env.world.config.target_groups[0])
        .await
        .unwrap();
    assert_eq!(
        registered.len(),
        env.world.blue_instances.len(),
        "v1 still registered: {registered:?}"
    );
    assert_eq!(env.ledger(None).await.service.active, None, "the service is free again");
    let notes: Vec<&str> = dep.timeline.iter().map(|m| m.note.as_str()).collect();
    assert!(notes.iter().any(|n| n.starts_with("traffic back on v1")), "{notes:#?}");
    dep
}

#[tokio::test]
async fn engineer_rollback_during_canary() {
    let (env, id) = deploying("rb-canary", Stage::Canary).await;
    let outcome = trigger(&env, Trigger::Engineer).await;
    assert!(
        matches!(&outcome, RevertOutcome::Reverted { deploy_id, .. } if deploy_id == &id),
        "{outcome:?}"
    );
    assert_rolled_back(&env, &id, "alice").await;
}

#[tokio::test]
async fn engineer_rollback_during_bake() {
    let (env, id) = deploying("rb-bake", Stage::Bake).await;
    trigger(&env, Trigger::Engineer).await;
    assert_rolled_back(&env, &id, "alice").await;
}

#[tokio::test]
async fn alarm_during_canary() {
    let (env, id) = deploying("alarm-canary", Stage::Canary).await;
    trigger(&env, Trigger::Alarm).await;
    let alarm = format!("alarm:{}-5xx", env.service);
    let dep = assert_rolled_back(&env, &id, &alarm).await;
    assert_eq!(dep.revert.unwrap().trigger, model::Trigger::Alarm);
}

#[tokio::test]
async fn alarm_during_bake() {
    let (env, id) = deploying("alarm-bake", Stage::Bake).await;
    trigger(&env, Trigger::Alarm).await;
    let alarm = format!("alarm:{}-5xx", env.service);
    assert_rolled_back(&env, &id, &alarm).await;
}

#[tokio::test]
async fn duplicate_alarm_reverts_once_and_ok_after_alarm_changes_nothing() {
    let (env, id) = deploying("alarm-dup", Stage::Canary).await;
    // Delivered directly, so the redelivery below is the very same event (same id), however
    // far the revert's clean-up has got by then.
    let alarm = env.alarm_event("alarm-1", "ALARM");
    revert_service(&env.local.ports, &alarm).await.expect("reverted");
    let first = env.deployment(&id).await;

    // The same event delivered again, and the alarm firing again: nothing new. Whether the
    // revert's clean-up execution has ended by then (the deployment no longer in flight) or
    // not, the answer says the event already reverted it.
    let again = revert_service(&env.local.ports, &alarm).await.unwrap();
    assert!(
        matches!(&again, RevertOutcome::Reverted { note, .. } | RevertOutcome::Ignored { why: note }
            if note.contains("already")),
        "{again:?}"
    );
    env.alarm("alarm-2", "ALARM").await;
    env.deliver(1).await;
    // Back to OK: EventBridge does not even forward it (the rule matches ALARM); delivered
    // anyway, it is ignored.
    let ok = revert_service(&env.local.ports, &env.alarm_event("alarm-3", "OK"))
        .await
        .unwrap();
    assert!(
        matches!(&ok, RevertOutcome::Ignored { why } if why.contains("is OK")),
        "{ok:?}"
    );

    let after = env.deployment(&id).await;
    assert_eq!(after.revert, first.revert, "reverted once, by the first event");
    let rolled_back_marks = after
        .timeline
        .iter()
        .filter(|m| m.note.contains("rolled back by"))
        .count();
    assert_eq!(rolled_back_marks, 1, "{:#?}", after.timeline);
    assert_eq!(env.weights().await, [("a", 100)]);
}

#[tokio::test]
async fn triggers_that_concern_nothing_change_nothing() {
    let (env, id) = deploying("rb-noop", Stage::Canary).await;
    let before = (env.deployment(&id).await, env.weights().await);

    // An alarm no service registered.
    let mut stranger = env.alarm_event("alarm-x", "ALARM");
    stranger["detail"]["alarmName"] = "someone-elses-alarm".into();
    let outcome = revert_service(&env.local.ports, &stranger).await.unwrap();
    assert!(matches!(&outcome, RevertOutcome::Ignored { why } if why.contains("registered for no service")));
    // A rollback event from before this deployment started (delivered late, out of order).
    let mut late = rollback_event(&env, "rb-late");
    late["time"] = "2020-01-01T00:00:00Z".into();
    let outcome = revert_service(&env.local.ports, &late).await.unwrap();
    assert!(
        matches!(&outcome, RevertOutcome::Reverted { note, .. } if note.contains("predates")),
        "{outcome:?}"
    );
    // A rollback to a version that was never live.
    late["time"] = greenlight_e2e::now_rfc3339().into();
    late["detail"]["to_version"] = "v0.5".into();
    let err = revert_service(&env.local.ports, &late).await.unwrap_err().to_string();
    assert!(err.contains("never recorded it live (recorded: v1)"), "{err}");

    assert_eq!((env.deployment(&id).await, env.weights().await), before);
}

fn redeploying(result: Result<Outcome, String>) -> (String, String) {
    match result {
        Ok(Outcome::Revert(RevertOutcome::Redeploying { deploy_id, version, .. })) => (deploy_id, version),
        other => panic!("expected a redeployment, got {other:?}"),
    }
}

/// v2 deployed over v1 and v1 retired: nothing warm any more.
async fn v2_live_v1_retired(prefix: &str) -> (Env, String) {
    let env = Env::new(prefix, quick).await;
    let ami = env.image("v2", App::Healthy).await;
    let (v2, ending) = env.deploy("v2", &ami).await;
    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    assert!(env
        .states(&env.world.blue_instances)
        .await
        .values()
        .all(|s| s == "terminated"));
    (env, v2)
}

#[tokio::test]
async fn rollback_after_the_old_fleet_was_retired_redeploys_it_through_the_gates() {
    let (env, v2) = v2_live_v1_retired("rb-slow").await;
    env.rollback("v2 corrupts carts").await;
    let (rollback, version) = redeploying(env.deliver(1).await.remove(0));
    assert_eq!(version, "v1");
    assert_eq!(env.wait(&rollback).await, Ending::Done(PhaseName::Succeeded));

    let state = env.ledger(Some(&rollback)).await;
    let dep = state.deployment.clone().unwrap();
    assert!(
        dep.rollback && dep.source == ImageSource::Rollback && dep.requested_by == "alice",
        "{dep:?}"
    );
    assert_eq!(
        (dep.version.as_str(), dep.ami.as_str()),
        ("v1", env.world.ami_v1.as_str()),
        "v1's image again"
    );
    assert!(dep.healthy_at.is_some(), "through the same health gates");
    let live = state.service.live.unwrap();
    assert_eq!(
        (live.version.as_str(), live.deploy_id.as_deref()),
        ("v1", Some(rollback.as_str()))
    );
    assert_eq!(env.weights().await, [("a", 100)], "traffic on the new v1 fleet");
    assert!(
        env.live_instances_of(&v2).await.is_empty(),
        "v2 retired after the bake window"
    );
    let last = state.service.last_revert.expect("recorded for loop protection");
    assert_eq!((last.from.as_str(), last.back_to.as_str()), ("v2", "v1"));
}

#[tokio::test]
async fn rollback_to_a_named_version_and_to_an_unknown_one() {
    let (env, _) = v2_live_v1_retired("rb-named").await;
    let ami3 = env.image("v3", App::Healthy).await;
    assert_eq!(env.deploy("v3", &ami3).await.1, Ending::Done(PhaseName::Succeeded));
    let event = |to: &str| {
        let mut e = rollback_event(&env, &format!("rb-{to}"));
        e["detail"]["to_version"] = to.into();
        e
    };
    // Never live: refused, nothing changes.
    let before = env.ledger(None).await.service;
    let err = revert_service(&env.local.ports, &event("v0.5"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("never recorded it live (recorded: v1, v2, v3)"), "{err}");
    assert_eq!(env.ledger(None).await.service, before);
    // v1, two versions back: redeployed.
    let outcome = revert_service(&env.local.ports, &event("v1")).await.unwrap();
    let RevertOutcome::Redeploying { deploy_id, version, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(version, "v1");
    assert_eq!(env.wait(&deploy_id).await, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");
}

#[tokio::test]
async fn an_alarm_on_the_version_rolled_back_to_stops_instead_of_ping_ponging() {
    let (env, _) = v2_live_v1_retired("rb-loop").await;
    env.rollback("v2 is bad").await;
    let (rollback, _) = redeploying(env.deliver(1).await.remove(0));
    assert_eq!(env.wait(&rollback).await, Ending::Done(PhaseName::Succeeded));
    let before = (env.ledger(None).await.service.live, env.weights().await);

    // v1's alarm fires too: no rollback to v2, the service is marked for a human.
    env.alarm("alarm-loop", "ALARM").await;
    let outcome = env.deliver(1).await.remove(0);
    assert!(
        matches!(&outcome, Ok(Outcome::Revert(RevertOutcome::Ignored { why })) if why.contains("greenlight stopped")),
        "{outcome:?}"
    );
    let state = env.ledger(None).await;
    let attention = state
        .service
        .attention
        .clone()
        .expect("the ledger says the service needs attention");
    assert!(
        attention.contains("the version the last rollback went back to"),
        "{attention}"
    );
    assert_eq!(
        (state.service.live, env.weights().await),
        before,
        "traffic stays where it is"
    );
    assert_eq!(state.service.active, None, "nothing deploying");
    // Further alarms are ignored until a deployment succeeds.
    env.alarm("alarm-loop-2", "ALARM").await;
    assert!(matches!(
        env.deliver(1).await.remove(0),
        Ok(Outcome::Revert(RevertOutcome::Ignored { .. }))
    ));
    let ami3 = env.image("v3", App::Healthy).await;
    assert_eq!(env.deploy("v3", &ami3).await.1, Ending::Done(PhaseName::Succeeded));
    assert_eq!(
        env.ledger(None).await.service.attention,
        None,
        "a good deployment clears it"
    );
}

/// Every ledger and load balancer call a handler makes, in order; the first listener change
/// can be made to fail (a crash between the fast path's two calls).
#[derive(Default)]
pub(crate) struct Calls {
    log: Mutex<Vec<&'static str>>,
    fail_first_flip: AtomicBool,
    /// Listener changes in flight right now, and the most ever in flight at once.
    flips_in_flight: AtomicUsize,
    pub(crate) most_flips_at_once: AtomicUsize,
}

impl Calls {
    fn note(&self, call: &'static str) {
        self.log.lock().unwrap().push(call);
    }
    pub(crate) fn taken(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

struct RecordingLedger(Arc<dyn Ledger>, Arc<Calls>);

#[async_trait]
impl Ledger for RecordingLedger {
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()> {
        self.1.note("register_service");
        self.0.register_service(config, live).await
    }
    async fn services(&self) -> AdapterResult<Vec<String>> {
        self.1.note("services");
        self.0.services().await
    }
    async fn service_for_image(&self, name: &str) -> AdapterResult<Option<String>> {
        self.1.note("service_for_image");
        self.0.service_for_image(name).await
    }
    async fn service_for_alarm(&self, name: &str) -> AdapterResult<Option<String>> {
        self.1.note("service_for_alarm");
        self.0.service_for_alarm(name).await
    }
    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>> {
        self.1.note("load");
        self.0.load(service, deploy_id).await
    }
    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State> {
        self.1.note("commit");
        self.0.commit(before, after).await
    }
    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>> {
        self.1.note("history");
        self.0.history(service).await
    }
    async fn claim_revert(
        &self,
        key: RevertKey<'_>,
        request: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>> {
        self.1.note(match key {
            RevertKey::Service(_) => "claim_revert(service)",
            RevertKey::Alarm(_) => "claim_revert(alarm)",
        });
        self.0.claim_revert(key, request, received_at_ms).await
    }
}

struct RecordingLb(Arc<dyn LoadBalancer>, Arc<Calls>);

#[async_trait]
impl LoadBalancer for RecordingLb {
    async fn target_health(&self, tg: &str) -> AdapterResult<Vec<TargetHealth>> {
        self.1.note("target_health");
        self.0.target_health(tg).await
    }
    async fn register(&self, tg: &str, ids: &[String], port: u16) -> AdapterResult<()> {
        self.1.note("register");
        self.0.register(tg, ids, port).await
    }
    async fn deregister(&self, tg: &str, ids: &[String], port: u16) -> AdapterResult<()> {
        self.1.note("deregister");
        self.0.deregister(tg, ids, port).await
    }
    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()> {
        self.1.note("set_traffic");
        if self.1.fail_first_flip.swap(false, Ordering::SeqCst) {
            return Err(AdapterError::Aws {
                service: "elbv2",
                operation: "ModifyListener",
                message: "the function crashed".into(),
                retryable: true,
            });
        }
        let now = self.1.flips_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.1.most_flips_at_once.fetch_max(now, Ordering::SeqCst);
        let result = self.0.set_traffic(switch, frame, weights).await;
        self.1.flips_in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>> {
        self.1.note("switch_point");
        self.0.switch_point(switch).await
    }
    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
        self.1.note("traffic");
        self.0.traffic(switch).await
    }
    async fn forwarders(&self, tg: &str) -> AdapterResult<Vec<String>> {
        self.1.note("forwarders");
        self.0.forwarders(tg).await
    }
    async fn deregistration_delay_s(&self, tg: &str) -> AdapterResult<u64> {
        self.1.note("deregistration_delay_s");
        self.0.deregistration_delay_s(tg).await
    }
    async fn open_test_route(&self, listener: &str, deploy_id: &str, tg: &str) -> AdapterResult<String> {
        self.1.note("open_test_route");
        self.0.open_test_route(listener, deploy_id, tg).await
    }
    async fn close_test_route(&self, listener: &str, deploy_id: &str) -> AdapterResult<()> {
        self.1.note("close_test_route");
        self.0.close_test_route(listener, deploy_id).await
    }
    async fn test_routes(&self, listener: &str) -> AdapterResult<Vec<(String, String)>> {
        self.1.note("test_routes");
        self.0.test_routes(listener).await
    }
}

/// The env's ports with every ledger and load balancer call recorded.
pub(crate) fn recorded(env: &Env) -> (Ports, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let ports = Ports {
        ledger: Arc::new(RecordingLedger(env.local.ports.ledger.clone(), calls.clone())),
        lb: Arc::new(RecordingLb(env.local.ports.lb.clone(), calls.clone())),
        ..env.local.ports.clone()
    };
    (ports, calls)
}

#[tokio::test]
async fn the_fast_path_is_two_aws_calls_from_event_to_traffic_back() {
    for (stage, trigger) in [(Stage::Canary, Trigger::Engineer), (Stage::Bake, Trigger::Alarm)] {
        let (env, id) = deploying("rb-calls", stage).await;
        let (ports, calls) = recorded(&env);
        let event = match trigger {
            Trigger::Engineer => rollback_event(&env, "rb-1"),
            Trigger::Alarm => env.alarm_event("alarm-1", "ALARM"),
        };
        calls.taken();
        revert_service(&ports, &event).await.expect("rolled back");
        let log = calls.taken();
        let first_flip = log.iter().position(|c| *c == "set_traffic").expect("a listener change");
        // An alarm claims on its alias, then on the pointers concurrently with the listener
        // change (tokio::join): still two sequential calls.
        let sequence: &[&str] = match trigger {
            Trigger::Engineer => &["claim_revert(service)", "set_traffic"],
            Trigger::Alarm => &["claim_revert(alarm)", "claim_revert(service)", "set_traffic"],
        };
        assert_eq!(
            &log[..=first_flip],
            sequence,
            "{stage:?}/{trigger:?}: sequential calls up to traffic back (then: {:?})",
            &log[first_flip + 1..]
        );
        let by = match trigger {
            Trigger::Engineer => "alice".to_string(),
            Trigger::Alarm => format!("alarm:{}-5xx", env.service),
        };
        assert_rolled_back(&env, &id, &by).await;
    }
}

#[tokio::test]
async fn a_crash_between_the_two_fast_path_calls_is_completed_by_redelivery() {
    let (env, id) = deploying("rb-crash", Stage::Canary).await;
    let (ports, calls) = recorded(&env);
    calls.fail_first_flip.store(true, Ordering::SeqCst);
    let event = rollback_event(&env, "rb-crash-1");

    let err = revert_service(&ports, &event)
        .await
        .expect_err("the first delivery crashed");
    assert!(err.to_string().contains("crashed"), "{err}");
    assert_eq!(calls.taken(), ["claim_revert(service)", "set_traffic"]);
    let claim = env
        .ledger_item(&format!("SVC#{}", env.service), "STATE")
        .await
        .expect("the pointers item");
    assert_eq!(
        claim["claim_event"],
        AttributeValue::S("rb-crash-1".into()),
        "the ledger holds the claim"
    );
    assert_eq!(
        env.weights().await,
        [("a", 90), ("b", 10)],
        "the listener was not changed yet"
    );

    // Lambda retries the same event: the same claim succeeds again, traffic goes back.
    revert_service(&ports, &event).await.expect("redelivery");
    assert_eq!(&calls.taken()[..2], ["claim_revert(service)", "set_traffic"]);
    assert_rolled_back(&env, &id, "alice").await;
    // Another trigger now finds no plan to claim; with v1 adopted at registration there is
    // nothing older to redeploy either: refused, nothing changes.
    let err = revert_service(&env.local.ports, &rollback_event(&env, "rb-crash-2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("knows nothing older"), "{err}");
    assert_eq!(env.weights().await, [("a", 100)]);
}

#[tokio::test]
async fn a_step_that_runs_after_a_claim_completes_the_rollback_instead_of_moving_traffic() {
    let (env, id) = deploying("rb-claim", Stage::Canary).await;
    let (ports, calls) = recorded(&env);
    calls.fail_first_flip.store(true, Ordering::SeqCst);
    revert_service(&ports, &rollback_event(&env, "rb-claim-1"))
        .await
        .expect_err("crashed after the claim");
    assert_eq!(env.weights().await, [("a", 90), ("b", 10)]);

    // The canary's next step gets there before any redelivery: it completes the rollback.
    let input = StepInput {
        service: env.service.clone(),
        deploy_id: id.clone(),
        error: None,
    };
    let out = run_step(&env.local.ports, Step::ShiftTraffic, &input)
        .await
        .expect("shift-traffic");
    assert_eq!(out.next, "abort-deployment", "{out:?}");
    assert_rolled_back(&env, &id, "alice").await;
}
