//! The shipped functions as Lambda runs them: the size of the one bootstrap they all run,
//! and for fresh processes of it behind the fake Runtime API (each with its function's
//! `_HANDLER`, the AWS endpoint on the emulator) the init phase (process start → first
//! `/invocation/next`), the first (cold) invocation, the warm ones after it, and the peak
//! resident memory of the process. Each run starts every function's process afresh and drives them
//! through a real rollout (v2), a rollout reverted by an engineer during its bake window (v3)
//! and an engineer's promote request, so every first invocation does its real work.
//!
//! The same runs sample the listener and green's target health every [`SAMPLE_EVERY`] to
//! measure the pipeline's own overhead: green healthy → first traffic change.

use crate::stats::ms;
use crate::{image_event, Progress};
use greenlight_core::inbound::{PROMOTE_REQUESTED, ROLLBACK_REQUESTED};
use greenlight_core::model::Phase;
use greenlight_e2e::stack::{Stack, FUNCTIONS};
use greenlight_e2e::{App, Env};
use greenlight_local::asl::Ending;
use greenlight_local::fixture::Spec;
use greenlight_local::lambda_service::BOOTSTRAP;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the overhead sampler reads the listener and target health.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One function's figures over every run (or, for [`sizes`], the bootstrap's).
#[derive(Debug, Clone, Default)]
pub struct FunctionFigures {
    pub name: String,
    /// Stripped release binary for this machine (the one measured).
    pub size_bytes: Option<u64>,
    /// The arm64 `bootstrap` from `make lambdas`, if built.
    pub arm64_size_bytes: Option<u64>,
    pub init_ms: Vec<f64>,
    pub first_ms: Vec<f64>,
    pub warm_ms: Vec<f64>,
    pub peak_rss_mib: Vec<f64>,
    /// What the first invocation did (its answer or error, shortened).
    pub first_did: String,
}

/// Everything the cold-start runs measured.
#[derive(Debug, Clone, Default)]
pub struct ColdStarts {
    pub functions: Vec<FunctionFigures>,
    /// Green healthy → first listener change, per deployment (ms).
    pub overhead_ms: Vec<f64>,
    /// The health poll interval of the service measured (s).
    pub poll_interval_s: u64,
}

/// The size of the bootstrap every function runs: in `binaries` (this machine's release
/// build) and in `arm64` (the `make lambdas` output: `<dir>/greenlight-lambda/bootstrap`).
pub fn sizes(binaries: &Path, arm64: &Path) -> Vec<FunctionFigures> {
    let size = |path: &Path| std::fs::metadata(path).ok().map(|m| m.len());
    vec![FunctionFigures {
        name: BOOTSTRAP.to_string(),
        size_bytes: size(&binaries.join(BOOTSTRAP)),
        arm64_size_bytes: size(&arm64.join(BOOTSTRAP).join("bootstrap")),
        ..Default::default()
    }]
}

/// `runs` cold-start runs of every function.
pub async fn cold_starts(runs: usize, progress: &Progress) -> ColdStarts {
    let mut figures: Vec<FunctionFigures> = FUNCTIONS
        .iter()
        .map(|(name, _)| FunctionFigures {
            name: name.to_string(),
            ..Default::default()
        })
        .collect();
    let mut overhead_ms = Vec::new();
    let spec = |s: &str| Spec {
        bake_window_s: 4,
        ..Spec::quick(s)
    };
    let poll_interval_s = spec("x").poll_interval_s;
    for run in 1..=runs {
        progress.say(&format!("cold starts: run {run}/{runs}"));
        let (by_function, overheads) = cold_run(spec).await;
        overhead_ms.extend(overheads);
        for figure in figures.iter_mut() {
            if let Some(sample) = by_function.get(figure.name.as_str()) {
                figure.init_ms.extend(sample.init_ms);
                figure.first_ms.extend(sample.first_ms);
                figure.warm_ms.extend(sample.warm_ms.iter().copied());
                figure.peak_rss_mib.extend(sample.peak_rss_mib);
                if figure.first_did.is_empty() {
                    figure.first_did = sample.first_did.clone();
                }
            }
        }
    }
    ColdStarts {
        functions: figures,
        overhead_ms,
        poll_interval_s,
    }
}

/// One function process's figures in one run.
#[derive(Debug, Default)]
struct Sample {
    init_ms: Option<f64>,
    first_ms: Option<f64>,
    warm_ms: Vec<f64>,
    peak_rss_mib: Option<f64>,
    first_did: String,
}

/// Fresh processes for every function, driven through v2's rollout, v3's revert and a
/// promote request; returns each function's figures and the rollouts' overheads.
async fn cold_run(spec: impl FnOnce(&str) -> Spec) -> (BTreeMap<&'static str, Sample>, Vec<f64>) {
    let env = Env::new("bench-cold", spec).await;
    let (v2, v3) = (env.image("v2", App::Healthy).await, env.image("v3", App::Healthy).await);
    let service = env.service.clone();
    let stack = Stack::start(env).await;
    let firsts: Arc<Mutex<BTreeMap<&'static str, String>>> = Default::default();
    let invoke = |function: &'static str, payload: serde_json::Value| {
        let (stack, firsts) = (&stack, firsts.clone());
        async move {
            let answer = stack.invoke(function, &payload).await;
            let did = match &answer {
                Ok(value) => value.to_string(),
                Err(error) => error.clone(),
            };
            firsts.lock().unwrap().entry(function).or_insert(did);
            answer
        }
    };
    let sampler = Sampler::spawn(&stack.env);

    // v2: every step of the state machine, each function's first invocation cold.
    let v2_since = Instant::now();
    let started = invoke("start-deployment", image_event(&service, "v2", &v2))
        .await
        .expect("start v2");
    let v2_id = started["deploy_id"].as_str().expect("a deploy id").to_string();
    let ending = stack.ending(&v2_id).await;
    assert!(
        matches!(&ending, Ending::Succeeded(out) if out["phase"] == "succeeded"),
        "v2: {ending:?}"
    );

    // v3: rolled out, then rolled back by an engineer while v2 is still warm.
    let v3_since = Instant::now();
    let started = invoke("start-deployment", image_event(&service, "v3", &v3))
        .await
        .expect("start v3");
    let v3_id = started["deploy_id"].as_str().expect("a deploy id").to_string();
    let env = &stack.env;
    env.wait_for_phase(&v3_id, |p| matches!(p, Phase::Baking { .. })).await;
    let rollback = env.request_event(ROLLBACK_REQUESTED, &format!("bench-rb-{v3_id}"), "bench", "benchmark");
    invoke("revert-service", rollback).await.expect("rollback v3");
    let ending = stack.ending(&v3_id).await;
    assert!(
        matches!(&ending, Ending::Succeeded(out) if out["phase"] == "aborted"),
        "v3: {ending:?}"
    );
    // An engineer's promote request with nothing in flight: read, refused.
    let promote = env.request_event(PROMOTE_REQUESTED, &format!("bench-pr-{v3_id}"), "bench", "benchmark");
    let _ = invoke("steer-deployment", promote).await;
    // Wait for the v3 clean-up execution (abort-deployment) to end.
    for _ in 0..300 {
        if env.live_instances_of(&v3_id).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let samples = sampler.stop();
    let mut overheads = Vec::new();
    for (id, since) in [(&v2_id, v2_since), (&v3_id, v3_since)] {
        let deployment = env.deployment(id).await;
        if let Some(overhead) = overhead(&samples, &deployment.green_tg, since) {
            overheads.push(ms(overhead));
        }
    }
    let firsts = firsts.lock().unwrap().clone();
    let mut figures = BTreeMap::new();
    for (name, _) in FUNCTIONS {
        let function = &stack.functions[name];
        let durations: Vec<f64> = function.invocation_durations().into_iter().map(ms).collect();
        figures.insert(
            name,
            Sample {
                init_ms: function.init_duration().map(ms),
                first_ms: durations.first().copied(),
                warm_ms: durations.iter().skip(1).copied().collect(),
                peak_rss_mib: function.peak_rss_kib().map(|kib| kib as f64 / 1024.0),
                first_did: firsts
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "a state machine task".into()),
            },
        );
    }
    (figures, overheads)
}

/// What the sampler saw at one instant.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    /// Forward weight per target group.
    weights: Vec<(String, u8)>,
    /// (healthy, registered) targets per target group.
    health: Vec<(String, usize, usize)>,
}

/// Reads the service's listener weights and its target groups' health every
/// [`SAMPLE_EVERY`] until stopped.
struct Sampler {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn spawn(env: &Env) -> Sampler {
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let (lb, config) = (env.local.ports.lb.clone(), env.world.config.clone());
        let into = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let at = Instant::now();
                let weights = lb.traffic(&config.switch.points()[0]).await.unwrap_or_default();
                let mut health = Vec::new();
                for tg in &config.target_groups {
                    let targets = lb.target_health(tg).await.unwrap_or_default();
                    let healthy = targets
                        .iter()
                        .filter(|t| t.state == greenlight_core::decide::TargetState::Healthy)
                        .count();
                    health.push((tg.clone(), healthy, targets.len()));
                }
                into.lock().unwrap().push(Seen { at, weights, health });
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        Sampler { seen, task }
    }

    fn stop(self) -> Vec<Seen> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

/// The pipeline's overhead for the deployment started at `since` with green in `green_tg`:
/// its first traffic change on `green_tg` (weight 0 → more) minus the start of the unbroken
/// run of samples, ending there, in which all of green's registered targets were healthy.
/// None if no such change was seen.
fn overhead(samples: &[Seen], green_tg: &str, since: Instant) -> Option<Duration> {
    let weight = |s: &Seen| s.weights.iter().find(|(tg, _)| tg == green_tg).map_or(0, |(_, w)| *w);
    let healthy = |s: &Seen| {
        s.health
            .iter()
            .any(|(tg, healthy, total)| tg == green_tg && *total > 0 && healthy == total)
    };
    let first = samples.iter().position(|s| s.at >= since)?;
    let flip = (first + 1..samples.len()).find(|&i| weight(&samples[i - 1]) == 0 && weight(&samples[i]) > 0)?;
    let mut onset = flip;
    while onset > first && healthy(&samples[onset - 1]) {
        onset -= 1;
    }
    Some(samples[flip].at.saturating_duration_since(samples[onset].at))
}
