//! AWS calls per scenario, counted by the emulator per access key (each function process
//! signs with its own key, see `greenlight_e2e::function_access_key`), per service and
//! operation: a full deployment with 1, 10 and 50 instances, a canary rollout, a fast revert
//! (an engineer's rollback during the bake window: one listener flip) and a slow revert (a
//! rollback after blue was retired: the old AMI redeployed through the gates). Calls the
//! fixture and the measurements make sign with another key and are not counted.

use crate::{image_event, Progress};
use greenlight_core::inbound::ROLLBACK_REQUESTED;
use greenlight_core::model::Phase;
use greenlight_e2e::stack::{Stack, FUNCTIONS};
use greenlight_e2e::{endpoint, function_access_key, App, Env};
use greenlight_local::asl::Ending;
use greenlight_local::fixture::Spec;
use greenlight_local::usage::{self, KeyUsage};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One scenario's calls.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// `service:Operation` → count, every function together.
    pub calls: BTreeMap<String, u64>,
    /// Calls per function.
    pub by_function: BTreeMap<String, u64>,
    pub read_units: f64,
    pub write_units: f64,
    pub conditional_failures: u64,
    /// Scenario start → its executions ended.
    pub wall: Duration,
}

impl Scenario {
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// Every scenario, one after the other.
pub async fn scenarios(progress: &Progress) -> Vec<Scenario> {
    let mut done = Vec::new();
    for instances in [1, 10, 50] {
        progress.say(&format!("calls: full deployment, {instances} instance(s)"));
        let spec = move |s: &str| Spec {
            fleet_size: instances,
            ..Spec::quick(s)
        };
        done.push(rollout(&format!("deploy, {instances} inst."), spec).await);
    }
    progress.say("calls: canary rollout (10 → 50 → 100 %), 3 instances");
    let canary = |s: &str| Spec {
        canary_steps: vec![10, 50, 100],
        fleet_size: 3,
        ..Spec::quick(s)
    };
    done.push(rollout("canary, 3 inst.", canary).await);
    progress.say("calls: fast revert (rollback during the bake window)");
    done.push(fast_revert().await);
    progress.say("calls: slow revert (rollback after blue was retired)");
    done.push(slow_revert().await);
    done
}

/// Usage of every function key of `stack`'s installation, now.
async fn usage_now(stack: &Stack) -> BTreeMap<&'static str, KeyUsage> {
    let all = usage::usage(endpoint(), None)
        .await
        .unwrap_or_else(|e| panic!("usage: {e}"));
    FUNCTIONS
        .iter()
        .map(|(name, _)| {
            let key = function_access_key(&stack.env.service, name);
            (*name, all.get(&key).cloned().unwrap_or_default())
        })
        .collect()
}

/// The calls made between two readings of [`usage_now`].
fn scenario(
    name: &str,
    before: &BTreeMap<&'static str, KeyUsage>,
    after: &BTreeMap<&'static str, KeyUsage>,
    wall: Duration,
) -> Scenario {
    let mut out = Scenario {
        name: name.to_string(),
        calls: BTreeMap::new(),
        by_function: BTreeMap::new(),
        read_units: 0.0,
        write_units: 0.0,
        conditional_failures: 0,
        wall,
    };
    for (function, now) in after {
        let then = before.get(function).cloned().unwrap_or_default();
        let mut made = 0;
        for (operation, count) in &now.calls {
            let count = count - then.calls.get(operation).copied().unwrap_or(0);
            if count > 0 {
                *out.calls.entry(operation.clone()).or_default() += count;
                made += count;
            }
        }
        if made > 0 {
            out.by_function.insert(function.to_string(), made);
        }
        out.read_units += now.dynamodb.read_units - then.dynamodb.read_units;
        out.write_units += now.dynamodb.write_units - then.dynamodb.write_units;
        out.conditional_failures += now.dynamodb.conditional_check_failures - then.dynamodb.conditional_check_failures;
    }
    out
}

/// Waits for an execution to start after `known` (the one a revert starts: its clean-up, or
/// the slow path's redeployment), then for every execution started after `known` to end.
async fn settle(stack: &Stack, known: &[String]) {
    for _ in 0..100 {
        if stack.executions().await.len() > known.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in stack.executions().await {
        if !known.contains(&name) {
            stack.ending(&name).await;
        }
    }
}

/// A fresh service from `spec`, its functions' processes, and v2's image.
async fn service(spec: impl FnOnce(&str) -> Spec) -> (Stack, String) {
    let env = Env::new("bench-calls", spec).await;
    let v2 = env.image("v2", App::Healthy).await;
    (Stack::start(env).await, v2)
}

/// Starts v2 and returns its deploy id.
async fn start_v2(stack: &Stack, ami: &str) -> String {
    let event = image_event(&stack.env.service, "v2", ami);
    let started = stack.invoke("start-deployment", &event).await.expect("start v2");
    started["deploy_id"].as_str().expect("a deploy id").to_string()
}

/// A rollout of v2 from the ImagePublished event to blue retired.
async fn rollout(name: &str, spec: impl Fn(&str) -> Spec) -> Scenario {
    let (stack, v2) = service(spec).await;
    let before = usage_now(&stack).await;
    let started = Instant::now();
    let id = start_v2(&stack, &v2).await;
    let ending = stack.ending(&id).await;
    assert!(
        matches!(&ending, Ending::Succeeded(out) if out["phase"] == "succeeded"),
        "{name}: {ending:?}"
    );
    scenario(name, &before, &usage_now(&stack).await, started.elapsed())
}

/// v2 in its bake window, then an engineer's rollback: counted from the event to v2's
/// instances terminated.
async fn fast_revert() -> Scenario {
    let spec = |s: &str| Spec {
        bake_window_s: 300,
        ..Spec::quick(s)
    };
    let (stack, v2) = service(spec).await;
    let id = start_v2(&stack, &v2).await;
    let env = &stack.env;
    env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
    let known = stack.executions().await;
    let before = usage_now(&stack).await;
    let started = Instant::now();
    let rollback = env.request_event(ROLLBACK_REQUESTED, &format!("bench-fast-{id}"), "bench", "benchmark");
    let answer = stack.invoke("revert-service", &rollback).await.expect("rollback");
    assert_eq!(answer["outcome"], "reverted", "{answer}");
    // The clean-up runs in an execution of its own; v2's sleeps out its bake window.
    settle(&stack, &known).await;
    scenario("fast revert", &before, &usage_now(&stack).await, started.elapsed())
}

/// v2 rolled out and v1 retired, then an engineer's rollback: v1's AMI redeployed through
/// the gates, counted from the event to the redeployment's end.
async fn slow_revert() -> Scenario {
    let (stack, v2) = service(Spec::quick).await;
    let id = start_v2(&stack, &v2).await;
    stack.ending(&id).await;
    let known = stack.executions().await;
    let before = usage_now(&stack).await;
    let started = Instant::now();
    let env = &stack.env;
    let rollback = env.request_event(ROLLBACK_REQUESTED, &format!("bench-slow-{id}"), "bench", "benchmark");
    stack.invoke("revert-service", &rollback).await.expect("rollback");
    settle(&stack, &known).await;
    scenario("slow revert", &before, &usage_now(&stack).await, started.elapsed())
}
