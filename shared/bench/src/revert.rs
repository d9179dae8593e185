//! Time-to-revert on the local emulator, through the shipped binaries: services rolled out
//! to their bake window (the old version warm), then for each, one at a time, a trigger is
//! published on the event bus — an engineer's `RollbackRequested`, or CloudWatch's alarm
//! state change to ALARM — and the listener is read every [`POLL`] until it forwards
//! everything to the warm version again. The event travels as in AWS: bus → rule → the
//! event source → revert-service's process. Also reported: the revert-service invocation
//! alone (event handed to the function → its answer, the listener changed within it).

use crate::stats::ms;
use crate::{image_event, Progress};
use greenlight_core::model::Phase;
use greenlight_e2e::stack::Stack;
use greenlight_e2e::{App, Env};
use greenlight_local::fixture::Spec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the listener is read while waiting for the revert.
pub const POLL: Duration = Duration::from_millis(5);

/// What triggers a revert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Rollback,
    Alarm,
}

/// Time-to-revert figures (ms), per trigger.
#[derive(Debug, Clone, Default)]
pub struct Reverts {
    /// Event published → listener back on the warm version.
    pub rollback_ms: Vec<f64>,
    pub alarm_ms: Vec<f64>,
    /// revert-service's invocation alone.
    pub rollback_invocation_ms: Vec<f64>,
    pub alarm_invocation_ms: Vec<f64>,
}

/// `runs` reverts of each trigger.
pub async fn time_to_revert(runs: usize, progress: &Progress) -> Reverts {
    let spec = |s: &str| Spec {
        bake_window_s: 900,
        ..Spec::quick(s)
    };
    let first = Env::new("bench-revert", spec).await;
    let stack = Arc::new(Stack::start(first).await);
    let mut errors = stack.deliver_events();

    // 2 × runs services in their bake window, set up a few at a time.
    progress.say(&format!(
        "time-to-revert: rolling out {} services to their bake window",
        2 * runs
    ));
    let local = stack.env.local.clone();
    let mut services = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(6));
    for i in 0..2 * runs {
        let (stack, local, gate) = (stack.clone(), local.clone(), gate.clone());
        pending.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("semaphore");
            let env = Env::on(&local, "bench-revert", spec).await;
            let v2 = env.image("v2", App::Healthy).await;
            let event = image_event(&env.service, "v2", &v2);
            let started = stack.invoke("start-deployment", &event).await.expect("start v2");
            let id = started["deploy_id"].as_str().expect("deploy id").to_string();
            env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
            (i, env)
        });
    }
    while let Some(done) = pending.join_next().await {
        services.push(done.expect("setup task"));
    }
    services.sort_by_key(|(i, _)| *i);

    let mut reverts = Reverts::default();
    for (i, env) in services {
        let trigger = if i % 2 == 0 { Trigger::Rollback } else { Trigger::Alarm };
        progress.say(&format!("time-to-revert: {trigger:?} {}/{}", i / 2 + 1, runs));
        let warm = env.weights().await;
        assert_eq!(
            warm.len(),
            1,
            "one target group has all traffic in the bake window: {warm:?}"
        );
        let blue = if warm[0].0 == "a" { "b" } else { "a" };
        let invocations_before = stack.functions["revert-service"].invocation_durations().len();
        let published = Instant::now();
        match trigger {
            Trigger::Rollback => env.rollback("benchmark").await,
            Trigger::Alarm => env.alarm(&format!("bench-alarm-{}", env.service), "ALARM").await,
        }
        loop {
            if env.weights().await == [(blue, 100)] {
                break;
            }
            if published.elapsed() > Duration::from_secs(30) {
                let error = errors.try_recv().unwrap_or_default();
                panic!("{trigger:?} of {} did not revert within 30 s {error}", env.service);
            }
            tokio::time::sleep(POLL).await;
        }
        let took = ms(published.elapsed());
        // The invocation's own duration, once revert-service has answered.
        let mut invocation = None;
        for _ in 0..200 {
            let durations = stack.functions["revert-service"].invocation_durations();
            if durations.len() > invocations_before {
                invocation = durations.get(invocations_before).copied();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match trigger {
            Trigger::Rollback => {
                reverts.rollback_ms.push(took);
                reverts.rollback_invocation_ms.extend(invocation.map(ms));
            }
            Trigger::Alarm => {
                reverts.alarm_ms.push(took);
                reverts.alarm_invocation_ms.extend(invocation.map(ms));
            }
        }
    }
    reverts
}
