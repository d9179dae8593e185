//! Canary analysis on real (emulated) traffic (issue 19): the load generator puts a steady
//! rate through the service's listener, the emulator's ALB data plane splits it by the
//! canary's weights and publishes `AWS/ApplicationELB` metrics (1 s periods here), and
//! shift-traffic / retire-blue judge green against blue from `GetMetricData`. Each test
//! asserts what the deployment did to the listener and what the ledger recorded. Each test
//! with load has an emulator of its own (the load would slow every test sharing one), and
//! tolerances sized so that a loaded 2-core machine's few dozen requests a second decide.

use greenlight_core::analysis::{Analysis, Verdict};
use greenlight_core::inbound::{PROMOTE_REQUESTED, SOURCE};
use greenlight_core::model::{Deployment, Phase, PhaseName, Trigger};
use greenlight_e2e::{own_emulator, quick, started, App, AppTraits, Env};
use greenlight_local::data_plane;
use greenlight_local::fixture::Spec;
use greenlight_local::load::{run_load, LoadSpec};
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump;
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Requests per second the load generator sends in every test.
const RPS: u32 = 50;

/// The registration's analysis: error rate (5 points of tolerance: a small test's sample
/// decides in seconds) or latency p99 (green's may be 1.5× blue's); 1 s metric periods, 1 s
/// of lag, `max_step_s` 60.
fn analysis(latency: bool, inconclusive: &str) -> Analysis {
    let mut metrics = vec![json!({"error_rate": {"tolerance_pp": 5}})];
    if latency {
        metrics = vec![json!({"latency": {"percentile": 99, "max_ratio": 1.5}})];
    }
    serde_json::from_value(json!({
        "metrics": metrics, "period_s": 1, "lag_s": 1, "max_step_s": 60, "min_requests": 50,
        "inconclusive": inconclusive, "baseline_s": 4
    }))
    .expect("a valid analysis")
}

/// Canary 50 → 100 judged by `analysis`, bake window `bake_s`.
fn judged(service: &str, analysis: Analysis, bake_s: u64) -> Spec {
    Spec {
        canary_steps: vec![50, 100],
        step_wait_s: 0,
        bake_window_s: bake_s,
        analysis: Some(analysis),
        ..quick(service)
    }
}

/// Steady load through the service's first listener for `seconds` (stopped when dropped).
struct Load(JoinHandle<()>);

impl Load {
    async fn start(env: &Env, seconds: u64) -> Load {
        let endpoint = env.local.sdk.endpoint_url().expect("a local endpoint");
        let url = data_plane::listener_url(endpoint, &env.world.listener_arn)
            .await
            .expect("the listener's data plane URL");
        let spec = LoadSpec::new(&format!("{url}/"), RPS, Duration::from_secs(seconds)).expect("a load spec");
        Load(tokio::spawn(async move {
            run_load(&spec, |_, _| {}).await;
        }))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes `version` (an AMI with `traits`) and waits for its deployment to end.
async fn deploy_with(env: &Env, version: &str, traits: AppTraits) -> (String, Ending) {
    let ami = env.image_with(version, App::Healthy, traits).await;
    env.publish(version, &ami).await;
    let id = started(&env.deliver(1).await[0]);
    let ending = env.wait(&id).await;
    (id, ending)
}

/// The deployment's evaluations as (weight, verdict, action).
fn verdicts(dep: &Deployment) -> Vec<(u8, Verdict, String)> {
    dep.analysis
        .as_ref()
        .map(|r| {
            r.evaluations
                .iter()
                .map(|e| (e.weight, e.verdict, e.action.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_healthy_canary_moves_on_evidence_that_green_is_no_worse() {
    let (_emulator, local) = own_emulator("judged-ok").await;
    let env = Env::on(&local, "judged-ok", |s| judged(s, analysis(false, "abort"), 2)).await;
    let _load = Load::start(&env, 90).await;
    let (id, ending) = deploy_with(&env, "v2", AppTraits::default()).await;

    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    let passed = verdicts(&dep);
    assert!(
        passed.contains(&(50, Verdict::NoWorse, "next step".into())),
        "the 50% step ended on a 'no worse' verdict: {passed:?}"
    );
    let evaluation = dep
        .analysis
        .as_ref()
        .unwrap()
        .evaluations
        .iter()
        .find(|e| e.verdict == Verdict::NoWorse)
        .unwrap();
    let metric = &evaluation.metrics[0];
    // Green needs about 100 clean requests for a no-worse e-value of 200 at 5 points of
    // tolerance; blue, judged in the same window at the same weight, has a comparable count
    // (the split is random per request, so neither is reliably the larger).
    assert!(
        metric.green.total >= 100 && metric.blue.total >= 50,
        "both groups' counts explain it: {metric:?}"
    );
    assert!(metric.e_no_worse.0 >= metric.threshold_no_worse.0, "{metric:?}");
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v2");
}

#[tokio::test]
async fn an_erroring_canary_is_reverted_at_its_first_step_by_analysis() {
    let (_emulator, local) = own_emulator("judged-5xx").await;
    let env = Env::on(&local, "judged-5xx", |s| judged(s, analysis(false, "abort"), 2)).await;
    let _load = Load::start(&env, 90).await;
    let traits = AppTraits {
        error_pct: Some(30.0),
        ..AppTraits::default()
    };
    let (id, ending) = deploy_with(&env, "v2", traits).await;

    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    let dep = env.deployment(&id).await;
    assert_eq!(dep.max_weight, 50, "never past its first step");
    let revert = dep.revert.as_ref().expect("a rollback record");
    assert_eq!(
        (revert.trigger, revert.requested_by.as_str()),
        (Trigger::Analysis, "analysis")
    );
    let Phase::Aborted { reason } = &dep.phase else {
        unreachable!()
    };
    assert!(
        reason.starts_with("rolled back by analysis: 50%: error_rate"),
        "{reason}"
    );
    let last = dep.analysis.as_ref().unwrap().evaluations.last().unwrap();
    assert_eq!((last.verdict, last.action.as_str()), (Verdict::Regressed, "revert"));
    assert!(
        last.metrics[0].green.bad > 0 && last.metrics[0].explanation.contains('%'),
        "{last:?}"
    );
    assert_eq!(env.weights().await, [("a", 100)], "all traffic back on blue");
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");
}

#[tokio::test]
async fn a_latency_regression_is_reverted_by_analysis() {
    let (_emulator, local) = own_emulator("judged-slow").await;
    let env = Env::on(&local, "judged-slow", |s| judged(s, analysis(true, "abort"), 2)).await;
    let _load = Load::start(&env, 90).await;
    // Green's user requests take 300 ms (p50) to 900 ms (p99). Blue's p99 in the first
    // period judged sets green's threshold (1.5 × it), and on a loaded machine that period
    // can catch a stall of the emulator's: green slower by a few tens of ms (40/120 until
    // 2026-12-07) was then no slower than the threshold, the step inconclusive, and the
    // deployment aborted without a verdict.
    let traits = AppTraits {
        latency: Some((300, 900)),
        ..AppTraits::default()
    };
    let (id, ending) = deploy_with(&env, "v2", traits).await;

    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    let dep = env.deployment(&id).await;
    assert_eq!(
        dep.revert.as_ref().map(|r| r.trigger),
        Some(Trigger::Analysis),
        "{:?}; evaluations {:?}",
        dep.phase,
        verdicts(&dep)
    );
    let last = dep.analysis.as_ref().unwrap().evaluations.last().unwrap();
    assert_eq!(last.metrics[0].metric, "latency_p99");
    assert_eq!(last.verdict, Verdict::Regressed);
    assert_eq!(env.weights().await, [("a", 100)]);
}

#[tokio::test]
async fn a_regression_that_starts_during_the_bake_window_puts_blue_back_live() {
    // All at once, then a 60 s bake: green's instances start answering 500s after their
    // first 200 user requests each (a leak), well after green took all the traffic.
    let (_emulator, local) = own_emulator("judged-bake").await;
    let env = Env::on(&local, "judged-bake", |s| Spec {
        canary_steps: vec![100],
        ..judged(s, analysis(false, "abort"), 60)
    })
    .await;
    let _load = Load::start(&env, 120).await;
    // Blue's traffic before the shift is the bake window's baseline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let traits = AppTraits {
        error_pct: Some(30.0),
        after_requests: Some(200),
        ..AppTraits::default()
    };
    let (id, ending) = deploy_with(&env, "v2", traits).await;

    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    let dep = env.deployment(&id).await;
    assert!(
        dep.timeline.iter().any(|m| m.phase == PhaseName::Baking),
        "green went live before it regressed"
    );
    assert_eq!(dep.revert.as_ref().map(|r| r.trigger), Some(Trigger::Analysis));
    let evaluations = verdicts(&dep);
    assert!(evaluations.iter().all(|(w, _, _)| *w == 100), "{evaluations:?}");
    assert_eq!(evaluations.last().map(|e| e.1), Some(Verdict::Regressed));
    let state = env.ledger(None).await;
    assert_eq!(state.service.live.unwrap().version, "v1", "blue is live again");
    assert_eq!(env.weights().await, [("a", 100)]);
}

#[tokio::test]
async fn an_inconclusive_step_holds_as_declared_until_an_engineer_promotes() {
    // No load: green gets no requests, so no verdict is possible.
    let env = Env::new("judged-hold", |s| {
        let mut analysis = analysis(false, "hold");
        analysis.max_step_s = 3;
        judged(s, analysis, 1)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let dep = env.deployment(&id).await;
        if dep.analysis.as_ref().is_some_and(|r| r.held_since.is_some()) {
            assert_eq!(dep.phase, Phase::Verified { weight: 50 });
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never held: {:?}", dep.timeline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Held: still at 50 % a few periods later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.deployment(&id).await.phase, Phase::Verified { weight: 50 });
    assert_eq!(env.weights().await, [("a", 50), ("b", 50)]);

    let detail = json!({"service": env.service, "reason": "dashboards fine", "requested_by": "alice"});
    pump::publish(&env.local, SOURCE, PROMOTE_REQUESTED, &detail)
        .await
        .expect("publish the promote");
    env.deliver(1).await.remove(0).expect("promoted");
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(dep.promoted_by.as_deref(), Some("alice"));
    assert!(verdicts(&dep).iter().any(|(_, _, action)| action == "hold"));
}
