//! Rollouts that succeed: all at once and 10 → 50 → 100, bake window, retirement.

use greenlight_adapters::tags;
use greenlight_core::model::{Phase, PhaseName};
use greenlight_core::plan::Step;
use greenlight_e2e::{canary, quick, started, App, Env};
use greenlight_local::orchestrator::Ending;

#[tokio::test]
async fn all_at_once_rollout_moves_traffic_records_v2_and_retires_v1() {
    let env = Env::new("allatonce", quick).await;
    assert_eq!(env.weights().await, [("a", 100)], "before: blue serves everything");
    let ami = env.image("v2", App::Healthy).await;

    let (id, ending) = env.deploy("v2", &ami).await;

    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.weights().await, [("b", 100)], "after: green serves everything");
    let state = env.ledger(Some(&id)).await;
    let live = state.service.live.as_ref().expect("live release");
    assert_eq!((live.version.as_str(), live.ami.as_str()), ("v2", ami.as_str()));
    assert_eq!(state.service.warm, None, "v1 retired, nothing warm");
    assert_eq!(state.service.active, None, "no deployment in flight");
    let dep = state.deployment.expect("deployment");
    assert_eq!(dep.phase, Phase::Succeeded);
    assert!(dep.healthy_at.is_some());
    // Green: running, tagged on launch, in the green target group.
    let green = env.live_instances_of(&id).await;
    assert_eq!(green.len(), 2);
    for instance in &green {
        assert_eq!(instance.state, greenlight_adapters::InstanceState::Running);
        assert_eq!(
            instance.tags.get(tags::MANAGED_BY).map(String::as_str),
            Some("greenlight")
        );
        assert_eq!(instance.tags.get(tags::SERVICE), Some(&env.service));
        assert_eq!(instance.tags.get(tags::VERSION).map(String::as_str), Some("v2"));
        assert_eq!(instance.tags.get(tags::DEPLOY_ID), Some(&id));
    }
    // Blue: terminated after the bake window.
    let blue = env.states(&env.world.blue_instances).await;
    assert!(blue.values().all(|s| s == "terminated"), "v1 fleet: {blue:?}");
    // The report is in S3.
    let report = env.report(&id).await;
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(report["from_version"], "v1");
}

#[tokio::test]
async fn canary_rollout_steps_through_10_50_100_with_checks_between() {
    let env = Env::new("canary", canary).await;
    let ami = env.image("v2", App::Healthy).await;
    let mut progress = env.local.orchestrator.subscribe();
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);

    // Read the listener after every shift step: the weights it went through.
    let mut seen = Vec::new();
    let mut checks_between = 0;
    loop {
        let p = progress.recv().await.expect("progress");
        if p.deploy_id != id {
            continue;
        }
        let out = p.result.clone().expect("no step fails");
        match p.step {
            Step::ShiftTraffic => seen.push(env.weights().await),
            Step::CheckHealth if !seen.is_empty() && out.phase == PhaseName::Verified => checks_between += 1,
            _ => {}
        }
        if out.next == "end" {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![vec![("a", 90), ("b", 10)], vec![("a", 50), ("b", 50)], vec![("b", 100)]],
        "listener weights after each canary step"
    );
    assert_eq!(checks_between, 3, "green verified after 10%, 50% and 100%");
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(dep.max_weight, 100);
    let notes: Vec<&str> = dep.timeline.iter().map(|m| m.note.as_str()).collect();
    for step in [
        "green receives 10% of traffic",
        "green receives 50% of traffic",
        "green receives 100% of traffic",
    ] {
        assert!(notes.contains(&step), "timeline lacks {step:?}: {notes:#?}");
    }
}

#[tokio::test]
async fn blue_stays_warm_during_the_bake_window_then_is_terminated() {
    let env = Env::new("bake", |s| greenlight_local::fixture::Spec {
        bake_window_s: 4,
        ..quick(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    let mut progress = env.local.orchestrator.subscribe();
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    loop {
        let p = progress.recv().await.expect("progress");
        if p.deploy_id == id && p.step == Step::Finalize {
            break;
        }
    }
    // Baking: green live, blue warm (running, still registered, ledger says warm).
    let state = env.ledger(Some(&id)).await;
    assert!(matches!(state.deployment.as_ref().unwrap().phase, Phase::Baking { .. }));
    assert_eq!(state.service.warm.as_ref().map(|w| w.version.as_str()), Some("v1"));
    assert_eq!(env.weights().await, [("b", 100)]);
    let blue = env.states(&env.world.blue_instances).await;
    assert!(
        blue.values().all(|s| s == "running"),
        "warm blue must keep running: {blue:?}"
    );

    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let blue = env.states(&env.world.blue_instances).await;
    assert!(
        blue.values().all(|s| s == "terminated"),
        "after the bake window: {blue:?}"
    );
    assert_eq!(env.ledger(None).await.service.warm, None);
}

#[tokio::test]
async fn a_listener_rule_switch_moves_only_that_rule() {
    let env = Env::new("byrule", |s| greenlight_local::fixture::Spec {
        switch_by_rule: true,
        ..canary(s)
    })
    .await;
    let rule = env.world.config.switch.points()[0]
        .rule_arn
        .clone()
        .expect("registered with a rule");
    let listener_default = greenlight_core::config::Switch {
        listener_arn: env.world.listener_arn.clone(),
        rule_arn: None,
    };
    let lb = &env.local.ports.lb;
    let before_default = lb.traffic(&listener_default).await.unwrap();
    let ami = env.image("v2", App::Healthy).await;

    let (id, ending) = env.deploy("v2", &ami).await;

    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.weights().await, [("b", 100)], "the rule {rule} forwards to green");
    assert_eq!(
        lb.traffic(&listener_default).await.unwrap(),
        before_default,
        "the listener's default action is not ours"
    );
    assert_eq!(env.deployment(&id).await.max_weight, 100);
}
