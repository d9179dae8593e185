//! Many services at once. On the emulator: `services` services registered in one table,
//! each publishing a new image at the same moment; the handlers run in-process (as many at a
//! time as events arrive, as Lambda would scale out) and sign with one access key, so the
//! emulator counts their calls, DynamoDB capacity and conditional-write conflicts together.
//! The result is checked from the ledger: every image got exactly one deployment (none lost,
//! none duplicated) and every deployment ended (none stuck). In the simulator: the same at
//! 100, 1 000 and 10 000 services, to show how the cost per deployment grows.

use crate::Progress;
use greenlight_core::model::Phase;
use greenlight_e2e::{endpoint, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::usage;
use greenlight_local::{pump, Local, Names};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The access key the handlers of the scale run sign with.
const HANDLERS_KEY: &str = "AKIDBENCHSCALE";

/// What the emulator run measured.
#[derive(Debug, Clone, Default)]
pub struct EmulatorScale {
    pub services: usize,
    pub instances_per_service: u32,
    /// Fixtures built (not measured).
    pub setup: Duration,
    /// All images published → every deployment ended.
    pub wall: Duration,
    pub succeeded: usize,
    /// Deployments that ended otherwise: `<service>: <phase> (<the timeline's last note>)`.
    pub not_succeeded: Vec<String>,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub stuck: Vec<String>,
    /// `service:Operation` → count, the event source's SQS polling left out.
    pub calls: BTreeMap<String, u64>,
    pub read_units: f64,
    pub write_units: f64,
    pub conditional_failures: u64,
    pub transaction_conflicts: u64,
    /// Each deployment's own duration (created → last update; whole seconds, as the ledger
    /// records them).
    pub deployment_s: Vec<f64>,
}

/// `services` services with `instances` each, all rolling out at once.
pub async fn on_emulator(services: usize, instances: u32, progress: &Progress) -> EmulatorScale {
    let tag = format!("scale-{}", std::process::id());
    let fixtures = Local::connect(endpoint(), Names::isolated(&tag))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let handlers = fixtures.with_access_key(HANDLERS_KEY).await;
    let spec = move |s: &str| Spec {
        fleet_size: instances,
        ..Spec::quick(s)
    };

    progress.say(&format!(
        "scale: registering {services} services ({instances} instances each)"
    ));
    let setup_started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..services {
        let (fixtures, gate) = (fixtures.clone(), gate.clone());
        pending.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("semaphore");
            let env = Env::on(&fixtures, "bench-scale", spec).await;
            let ami = env.image("v2", App::Healthy).await;
            (i, env, ami)
        });
    }
    let mut envs = Vec::new();
    while let Some(done) = pending.join_next().await {
        envs.push(done.expect("setup task"));
        if envs.len() % 10 == 0 {
            progress.say(&format!("scale: {}/{services} services registered", envs.len()));
        }
    }
    envs.sort_by_key(|(i, _, _)| *i);
    let setup = setup_started.elapsed();

    let _ = usage::reset(endpoint(), Some(HANDLERS_KEY)).await;
    let (pumping, _deliveries) = pump::spawn(handlers.clone());
    progress.say(&format!("scale: publishing {services} images at once"));
    let started = Instant::now();
    let mut publishing = tokio::task::JoinSet::new();
    for (_, env, ami) in &envs {
        let (local, service, ami) = (env.local.clone(), env.service.clone(), ami.clone());
        publishing.spawn(async move {
            let detail = serde_json::json!({"service": service, "version": "v2", "ami": ami, "requested_by": "bench"});
            pump::publish(
                &local,
                greenlight_core::inbound::SOURCE,
                greenlight_core::inbound::IMAGE_PUBLISHED,
                &detail,
            )
            .await
            .expect("publish");
        });
    }
    while publishing.join_next().await.is_some() {}

    // Until every service's deployments have all ended (or 10 minutes); a service whose
    // deployments ended is not read again.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_report = Instant::now();
    let mut histories = BTreeMap::new();
    let mut waiting: Vec<String> = envs.iter().map(|(_, env, _)| env.service.clone()).collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for service in waiting {
            // Read with the fixture's key: the handlers' calls alone are counted.
            let history = fixtures.ports.ledger.history(&service).await.unwrap_or_default();
            if history.is_empty() || history.iter().any(|d| !d.phase.is_terminal()) {
                still.push(service.clone());
            }
            histories.insert(service, history);
        }
        waiting = still;
        if last_report.elapsed() > Duration::from_secs(5) {
            let ended = services - waiting.len();
            progress.say(&format!(
                "scale: {ended}/{services} deployments ended ({:.0?})",
                started.elapsed()
            ));
            last_report = Instant::now();
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let wall = started.elapsed();
    pumping.abort();

    let mut out = EmulatorScale {
        services,
        instances_per_service: instances,
        setup,
        wall,
        ..Default::default()
    };
    for (service, history) in &histories {
        let v2: Vec<_> = history.iter().filter(|d| d.version == "v2").collect();
        match v2.len() {
            0 => out.lost.push(service.clone()),
            1 => {}
            _ => out.duplicated.push(service.clone()),
        }
        for d in &v2 {
            if !d.phase.is_terminal() {
                out.stuck.push(format!("{service} ({})", d.phase.name()));
            } else if d.phase == Phase::Succeeded {
                out.succeeded += 1;
            } else {
                let why = d.timeline.last().map(|m| m.note.as_str()).unwrap_or("no note");
                out.not_succeeded.push(format!("{service}: {} ({why})", d.phase.name()));
            }
            out.deployment_s.push(d.updated_at.saturating_sub(d.created_at) as f64);
        }
    }
    let all = usage::usage(endpoint(), Some(HANDLERS_KEY))
        .await
        .unwrap_or_else(|e| panic!("usage: {e}"));
    let used = all.get(HANDLERS_KEY).cloned().unwrap_or_default();
    out.calls = used
        .calls
        .into_iter()
        .filter(|(operation, _)| !operation.starts_with("sqs:"))
        .collect();
    out.read_units = used.dynamodb.read_units;
    out.write_units = used.dynamodb.write_units;
    out.conditional_failures = used.dynamodb.conditional_check_failures;
    out.transaction_conflicts = used.dynamodb.transaction_conflicts;
    out
}

/// One simulator run's report.
pub type SimScale = greenlight_sim::ScaleReport;

/// The simulator's scale scenario (debug or release, whatever this program was built as) for
/// each service count, without faults (the clean cost), then once at the smallest count with
/// 5 % crashes, duplicates and races (conflicts met and resolved). A failed run (something
/// lost, duplicated or stuck) ends the benchmark with its details.
pub fn in_simulator(counts: &[usize], progress: &Progress) -> Vec<SimScale> {
    let mut runs: Vec<greenlight_sim::ScaleOptions> =
        counts.iter().map(|k| greenlight_sim::ScaleOptions::new(*k)).collect();
    if let Some(smallest) = counts.iter().min() {
        runs.push(greenlight_sim::ScaleOptions {
            crash_pct: 5,
            duplicate_pct: 5,
            race_pct: 5,
            ..greenlight_sim::ScaleOptions::new(*smallest)
        });
    }
    runs.into_iter()
        .map(|options| {
            progress.say(&format!(
                "simulator: {} services (crash {} %, duplicate {} %, race {} %)",
                options.services, options.crash_pct, options.duplicate_pct, options.race_pct
            ));
            greenlight_sim::scale(options).unwrap_or_else(|why| panic!("simulator scale run failed: {why}"))
        })
        .collect()
}
