//! Chaos: rollouts and rollbacks while the emulator injects AWS faults into 10–20 % of the
//! handlers' calls — throttling in each service's wire shape, 500/503 before and after the
//! request was applied, connection resets before and after, added latency — drawn from a
//! fixed seed so a run can be replayed. The handlers sign with their own access key; the
//! fixture and every check sign with the default one and see no faults.
//!
//! Throughout each run a sampler reads the world (listener weights, ledger pointers and the
//! deployment in flight, target health) and checks that traffic is only on a target group
//! whose version the ledger records live or in canary and whose registered targets are
//! healthy (an abort or rollback the ledger records may take a few seconds to move traffic
//! back: ledger first). At the end: no orphans (every instance of the service is terminated
//! or serves the live version), no deployment left active, every deployment ended, and no
//! execution failed without its deployment aborted. Each scenario completes or aborts
//! cleanly. Nothing retries forever: a delivery that keeps failing is dropped after two
//! retries, and a step that keeps failing is retried twice, then the execution goes to
//! abort-deployment (which retries longer, and outlasts a short outage).

use greenlight_adapters::tags;
use greenlight_core::config::ServiceConfig;
use greenlight_core::decide::TargetState;
use greenlight_core::model::{Phase, PhaseName, State, Trigger};
use greenlight_e2e::{canary, endpoint, quick, wait_execution, App, Env};
use greenlight_local::faults::{self, FaultCounts, FaultKind, FaultPlan};
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::{self, Delivery, Outcome};
use greenlight_local::Local;
use greenlight_steps::{RevertOutcome, StartOutcome};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The services whose calls get faults: every one the handlers call. SQS is left alone: here
/// it is the Lambda service's own event source poller (the pump), not a handler's call.
const SERVICES: [&str; 9] = [
    "ec2",
    "elasticloadbalancing",
    "dynamodb",
    "s3",
    "cloudwatch",
    "states",
    "events",
    // Lifecycle hooks: Lambda Invoke and a webhook's GetSecretValue.
    "lambda",
    "secretsmanager",
];

/// Every kind of fault at `rate` with `seed`, 0–40 ms of latency on every call, on
/// [`SERVICES`]. `GREENLIGHT_CHAOS_SEED` and `GREENLIGHT_CHAOS_RATE` override the scenario's
/// own (to explore other seeds, or replay one).
fn chaos(rate: f64, seed: u64) -> impl FnOnce(&str) -> FaultPlan {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = from_env("GREENLIGHT_CHAOS_SEED").map_or(seed, |v| v.parse().expect("GREENLIGHT_CHAOS_SEED"));
    let rate = from_env("GREENLIGHT_CHAOS_RATE").map_or(rate, |v| v.parse().expect("GREENLIGHT_CHAOS_RATE"));
    move |key| FaultPlan {
        latency_ms: [0, 40],
        services: Some(SERVICES.iter().map(|s| s.to_string()).collect()),
        ..FaultPlan::new(key, rate, seed)
    }
}

/// Every call to `service` throttled: an outage of one service for the handlers.
fn outage(service: &'static str) -> impl FnOnce(&str) -> FaultPlan {
    move |key| FaultPlan {
        kinds: vec![FaultKind::Throttle],
        services: Some(vec![service.to_string()]),
        ..FaultPlan::new(key, 1.0, 1)
    }
}

/// How long traffic may stay where only an intent the ledger records allows it (an abort or a
/// rollback being applied) before it counts as a violation.
const INTENT_GRACE: Duration = Duration::from_secs(15);

/// A service under chaos: its world, the handlers (own access key, faults injected), and the
/// sampler checking the traffic invariant.
struct Chaos {
    env: Env,
    handlers: Local,
    plan: FaultPlan,
    sampler: Sampler,
    started: Instant,
    scenario: &'static str,
    /// What happened, for the report.
    notes: Vec<String>,
    /// On a ledger table with its stream: the deployment events pipe, signing with the
    /// handlers' key (its stream reads and `PutEvents` meet the faults too).
    pipe: Option<greenlight_local::pipe::Pipe>,
}

impl Chaos {
    /// Builds the world for `spec` (faults off), then injects the faults `plan` makes for the
    /// handlers' access key and starts sampling.
    async fn new(
        scenario: &'static str,
        spec: impl FnOnce(&str) -> Spec,
        plan: impl FnOnce(&str) -> FaultPlan,
    ) -> Chaos {
        Chaos::on(scenario, Env::new("chaos", spec).await, plan).await
    }

    /// As [`Chaos::new`], on a ledger table of its own (for the scheduled reconcile, which
    /// looks at every service in its table).
    async fn alone(
        scenario: &'static str,
        spec: impl FnOnce(&str) -> Spec,
        plan: impl FnOnce(&str) -> FaultPlan,
    ) -> Chaos {
        Chaos::on(scenario, Env::alone("chaos", spec).await, plan).await
    }

    async fn on(scenario: &'static str, env: Env, plan: impl FnOnce(&str) -> FaultPlan) -> Chaos {
        let key = format!("AKIDCHAOS{}", env.service.to_uppercase().replace('-', "X"));
        let handlers = env.local.with_access_key(&key).await;
        steady(&env).await;
        let pipe = match env.local.names.ledger_stream {
            true => Some(
                greenlight_local::pipe::spawn(&handlers, greenlight_local::pipe::Enrichment::InProcess)
                    .await
                    .expect("the deployment events pipe"),
            ),
            false => None,
        };
        let plan = plan(&key);
        faults::inject(endpoint(), &plan).await.expect("inject faults");
        let sampler = Sampler::spawn(env.local.clone(), env.service.clone(), env.world.config.clone());
        Chaos {
            env,
            handlers,
            plan,
            sampler,
            started: Instant::now(),
            scenario,
            notes: Vec::new(),
            pipe,
        }
    }

    /// Fails the test with everything needed to replay and understand the run.
    async fn fail(&self, why: &str) -> ! {
        let counts = faults::counts(endpoint(), &self.plan.access_key)
            .await
            .unwrap_or_default();
        panic!(
            "{} (seed {}, rate {}): {why}\nnotes: {:#?}\nfaults: {counts}",
            self.scenario, self.plan.seed, self.plan.rate, self.notes
        );
    }

    /// Pumps the handlers' queue until a delivery is final: handled, refused, or dropped
    /// after its retries. Returns every attempt (each is noted).
    async fn deliver_all(&mut self) -> Vec<Delivery> {
        let mut attempts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(45);
        while Instant::now() < deadline {
            let batch = pump::pump_once(&self.handlers, Duration::from_secs(1))
                .await
                .expect("pump (SQS gets no faults)");
            for delivery in batch {
                let what = delivery.event["detail-type"].as_str().unwrap_or("?").to_string();
                self.notes.push(format!(
                    "delivery of {what}, attempt {}: {:?}{}{}",
                    delivery.attempt,
                    delivery.result,
                    if delivery.retrying { " (to be retried)" } else { "" },
                    if delivery.dropped { " (dropped)" } else { "" }
                ));
                let last = !delivery.retrying;
                attempts.push(delivery);
                if last {
                    return attempts;
                }
            }
        }
        self.fail("no final delivery within 45 s").await
    }

    /// The final delivery of the next event (see [`Chaos::deliver_all`]).
    async fn deliver(&mut self) -> Delivery {
        self.deliver_all().await.pop().expect("a final delivery")
    }

    /// Publishes `version` (as the pipeline would) and has the handlers start its deployment.
    async fn start(&mut self, version: &str, ami: &str) -> String {
        self.env.publish(version, ami).await;
        match self.deliver().await.result {
            Ok(Outcome::Start(StartOutcome::Started(out))) => out.deploy_id,
            other => self.fail(&format!("the deployment did not start: {other:?}")).await,
        }
    }

    /// Waits until the deployment is in a phase `want` accepts, or has ended.
    async fn reach(&mut self, id: &str, what: &str, want: impl Fn(&Phase) -> bool) -> bool {
        let dep = self.env.wait_for_phase(id, |p| want(p) || p.is_terminal()).await;
        let reached = want(&dep.phase);
        if reached {
            let weights = self.env.weights().await;
            self.notes.push(format!("reached {what}: traffic {weights:?}"));
        } else {
            self.notes.push(format!("ended before {what}: {:?}", dep.phase));
        }
        reached
    }

    /// Waits for every execution to end, stops the faults and the sampler, checks the end
    /// state, and prints (or, on any problem, fails with) the report.
    async fn finish(self) -> Finished {
        let mut endings: BTreeMap<String, Ending> = BTreeMap::new();
        loop {
            let names: Vec<String> = self
                .handlers
                .orchestrator
                .executions()
                .into_iter()
                .filter(|n| !endings.contains_key(n))
                .collect();
            if names.is_empty() {
                break;
            }
            for name in names {
                let ending = wait_execution(&self.handlers.orchestrator, &name).await;
                endings.insert(name, ending);
            }
        }
        let counts = faults::stop(endpoint(), &self.plan.access_key)
            .await
            .expect("stop faults");
        let sampled = self.sampler.stop().await;

        let mut problems = sampled.violations.clone();
        let env = &self.env;
        let state = env.ledger(None).await;
        if let Some(active) = &state.service.active {
            problems.push(format!("deployment {active} left active"));
        }
        if let Some(queued) = &state.service.queued {
            problems.push(format!("deployment queued and never started: {queued:?}"));
        }
        let history = env.local.ports.ledger.history(&env.service).await.expect("history");
        for dep in &history {
            if !dep.phase.is_terminal() {
                problems.push(format!("deployment {} never ended: {:?}", dep.deploy_id, dep.phase));
            }
        }
        for (name, ending) in &endings {
            if let Ending::Failed(why) = ending {
                let aborted = history
                    .iter()
                    .any(|d| name.starts_with(&d.deploy_id) && matches!(d.phase, Phase::Aborted { .. }));
                if !aborted {
                    problems.push(format!(
                        "execution {name} failed ({why}) without its deployment aborted"
                    ));
                }
            }
        }
        let live = state.service.live.clone().expect("a live release");
        let weights = env
            .local
            .ports
            .lb
            .traffic(&env.world.config.switch.points()[0])
            .await
            .unwrap();
        let serving: Vec<&(String, u8)> = weights.iter().filter(|(_, w)| *w > 0).collect();
        if serving != [&(live.target_group.clone(), 100)] {
            problems.push(format!("traffic {weights:?} is not all on live {}", live.target_group));
        }
        problems.extend(orphans(env, &state).await);
        if self.pipe.is_some() {
            problems.extend(announced_once_each(env, &history).await);
        }

        let outcomes: Vec<String> = history
            .iter()
            .map(|d| {
                let revert = d.revert.as_ref().and_then(|r| r.time_to_revert_ms());
                let revert = revert.map(|ms| format!(", time to revert {ms} ms")).unwrap_or_default();
                format!("{} {} {:?}{revert}", d.deploy_id, d.version, d.phase)
            })
            .collect();
        let report = format!(
            "{} (seed {}, rate {}): {:.1} s, live {} on {}; {} samples, traffic seen {:?}\n  deployments: {outcomes:?}\n  executions: {endings:?}\n  faults: {counts}",
            self.scenario,
            self.plan.seed,
            self.plan.rate,
            self.started.elapsed().as_secs_f64(),
            live.version,
            colour(&env.world.config, &live.target_group),
            sampled.samples,
            sampled.traffic_seen,
        );
        if !problems.is_empty() {
            let timelines: Vec<String> = history
                .iter()
                .flat_map(|d| {
                    d.timeline
                        .iter()
                        .map(move |m| format!("{} {} {}", d.deploy_id, m.phase, m.note))
                })
                .collect();
            panic!(
                "{report}\nproblems: {problems:#?}\nnotes: {:#?}\ntimelines: {timelines:#?}",
                self.notes
            );
        }
        eprintln!("{report}");
        Finished { state, history, counts }
    }
}

/// The deployment events under faults (I38): a faulted `PutEvents` may have put its events
/// and been retried, so a consumer dedupes by `(deploy_id, gen)`; after that, each
/// deployment's events are its status changes once each, in order, ending where the ledger
/// says it is (read from the events bus's queue for up to 30 s).
async fn announced_once_each(env: &Env, history: &[greenlight_core::model::Deployment]) -> Vec<String> {
    use greenlight_core::announce::{check_sequence, status};
    let caught_up = |seen: &greenlight_e2e::Announced| {
        history.iter().all(|dep| {
            let now = status(dep);
            seen.get(&dep.deploy_id)
                .and_then(|events| events.last())
                .is_some_and(|last| (last.phase, last.waiting) == (now.phase, now.waiting))
        })
    };
    let mut seen = env.announced(Duration::from_secs(30), caught_up).await;
    let mut problems = Vec::new();
    if !caught_up(&seen) {
        problems.push("the deployment events never caught up with the ledger".to_string());
    }
    for (id, events) in seen.iter_mut() {
        // A retried PutEvents puts the same event again: drop those copies, nothing else.
        events.dedup();
        if let Some(pair) = events.windows(2).find(|p| p[0].gen == p[1].gen) {
            problems.push(format!("two different events for one write of {id}: {pair:?}"));
            continue;
        }
        if let Err(why) = check_sequence(events) {
            let phases: Vec<String> = events.iter().map(|e| e.phase.to_string()).collect();
            problems.push(format!(
                "deployment {id}'s events skip or repeat a change ({why}): {phases:?}"
            ));
        }
    }
    problems
}

/// Waits (up to 20 s) until the fixture's blue fleet is healthy behind the listener: chaos
/// starts from a steady world.
async fn steady(env: &Env) {
    let live = &env.world.config.target_groups[0];
    for _ in 0..200 {
        let health = env.local.ports.lb.target_health(live).await.expect("target health");
        if !health.is_empty() && health.iter().all(|h| h.state == TargetState::Healthy) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the blue fleet of {} never became healthy", env.service);
}

/// What a finished chaos run left.
struct Finished {
    state: State,
    history: Vec<greenlight_core::model::Deployment>,
    counts: FaultCounts,
}

impl Finished {
    fn deployment(&self, id: &str) -> &greenlight_core::model::Deployment {
        self.history
            .iter()
            .find(|d| d.deploy_id == id)
            .expect("deployment in history")
    }
}

/// `a` or `b`: which of the service's target groups `tg` is.
fn colour(config: &ServiceConfig, tg: &str) -> &'static str {
    if tg == config.target_groups[0] {
        "a"
    } else {
        "b"
    }
}

/// Every instance of the service that is not terminated must serve the live version: be
/// one of the live release's instances, running, tagged with its version, and healthy in its
/// target group.
async fn orphans(env: &Env, state: &State) -> Vec<String> {
    use aws_sdk_ec2::types::Filter;
    let live = state.service.live.as_ref().expect("a live release");
    let found = env
        .local
        .clients
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", tags::SERVICE))
                .values(&env.service)
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    let health = env.local.ports.lb.target_health(&live.target_group).await.unwrap();
    let mut problems = Vec::new();
    for instance in found.reservations().iter().flat_map(|r| r.instances()) {
        let id = instance.instance_id().unwrap_or_default();
        let state = instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str())
            .unwrap_or("?");
        if state == "terminated" {
            continue;
        }
        let tag = |key: &str| {
            instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .unwrap_or("")
                .to_string()
        };
        let healthy = health
            .iter()
            .any(|h| h.instance_id == id && h.state == TargetState::Healthy);
        if !live.instance_ids.iter().any(|i| i == id)
            || state != "running"
            || tag(tags::VERSION) != live.version
            || !healthy
        {
            problems.push(format!(
                "orphan: {id} ({state}, version {}, deploy id {:?}) does not serve live {} (instances {:?}, healthy in its group: {healthy})",
                tag(tags::VERSION),
                tag(tags::DEPLOY_ID),
                live.version,
                live.instance_ids
            ));
        }
    }
    problems
}

/// Samples the world every 100 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Sampled>,
}

#[derive(Debug, Default)]
struct Sampled {
    samples: u32,
    violations: Vec<String>,
    /// The distinct forward weights seen, in order (`a90 b10`).
    traffic_seen: Vec<String>,
}

/// Why the ledger lets a target group carry traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Allowed {
    No,
    /// An abort or rollback the ledger records is moving traffic away (for a few seconds).
    Intent,
    /// Live, or green in canary.
    Yes,
}

impl Sampler {
    fn spawn(local: Local, service: String, config: ServiceConfig) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut sampled = Sampled::default();
            let mut intent_since: BTreeMap<String, Instant> = BTreeMap::new();
            loop {
                let last = flag.load(Ordering::SeqCst);
                if let Err(why) = sample(&local, &service, &config, &mut sampled, &mut intent_since).await {
                    sampled.violations.push(format!("sampling failed: {why}"));
                }
                if last {
                    return sampled;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler { stop, handle }
    }

    /// Stops after one last sample.
    async fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.expect("sampler")
    }
}

/// The ledger's pointers and the deployment in flight.
async fn ledger_view(local: &Local, service: &str) -> Result<State, String> {
    let ledger = &local.ports.ledger;
    let pointers = ledger
        .load(service, None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("service not registered")?;
    match &pointers.service.active {
        Some(active) => ledger
            .load(service, Some(active))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "service not registered".to_string()),
        None => Ok(pointers),
    }
}

fn allowed(state: &State, tg: &str) -> Allowed {
    let pointers = &state.service;
    if pointers.live.as_ref().is_some_and(|l| l.target_group == tg) {
        return Allowed::Yes;
    }
    if let Some(dep) = state.deployment.as_ref().filter(|d| d.green_tg == tg) {
        match dep.phase {
            Phase::Shifting { from, to } if from > 0 || to > 0 => return Allowed::Yes,
            Phase::Verifying { weight, .. } | Phase::Verified { weight } if weight > 0 => return Allowed::Yes,
            Phase::Aborting { .. } if dep.max_weight > 0 => return Allowed::Intent,
            _ => {}
        }
    }
    let reverting = pointers.revert_plan.is_some()
        || pointers.revert_claim.is_some()
        || state.deployment.as_ref().is_some_and(|d| d.revert.is_some());
    if reverting && pointers.warm.as_ref().is_some_and(|w| w.target_group == tg) {
        return Allowed::Intent;
    }
    Allowed::No
}

fn describe(state: &State) -> String {
    let p = &state.service;
    format!(
        "live {:?}, warm {:?}, active {:?} {:?}, revert plan {}, claim {}",
        p.live.as_ref().map(|r| (&r.version, &r.target_group)),
        p.warm.as_ref().map(|r| (&r.version, &r.target_group)),
        p.active,
        state.deployment.as_ref().map(|d| (&d.phase, d.max_weight)),
        p.revert_plan.is_some(),
        p.revert_claim.is_some(),
    )
}

/// One sample: ledger, then listener and target health, then ledger again (the world may
/// move in between; the ledger moves first, so either read may vouch for the traffic).
async fn sample(
    local: &Local,
    service: &str,
    config: &ServiceConfig,
    sampled: &mut Sampled,
    intent_since: &mut BTreeMap<String, Instant>,
) -> Result<(), String> {
    let before = ledger_view(local, service).await?;
    let weights = local
        .ports
        .lb
        .traffic(&config.switch.points()[0])
        .await
        .map_err(|e| e.to_string())?;
    let mut health = BTreeMap::new();
    for (tg, weight) in &weights {
        if *weight > 0 {
            let targets = local.ports.lb.target_health(tg).await.map_err(|e| e.to_string())?;
            health.insert(tg.clone(), targets);
        }
    }
    let after = ledger_view(local, service).await?;
    sampled.samples += 1;
    let seen: Vec<String> = weights
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(tg, w)| format!("{}{w}", colour(config, tg)))
        .collect();
    let seen = seen.join(" ");
    if sampled.traffic_seen.last() != Some(&seen) {
        sampled.traffic_seen.push(seen);
    }
    let now = Instant::now();
    for (tg, weight) in weights.iter().filter(|(_, w)| *w > 0) {
        let name = colour(config, tg);
        match allowed(&before, tg).max(allowed(&after, tg)) {
            Allowed::Yes => {
                intent_since.remove(tg);
            }
            Allowed::Intent => {
                let since = *intent_since.entry(tg.clone()).or_insert(now);
                if now - since > INTENT_GRACE {
                    sampled.violations.push(format!(
                        "{weight}% still on {name} {:.1} s after the ledger moved it away: {}",
                        (now - since).as_secs_f64(),
                        describe(&after)
                    ));
                    intent_since.insert(tg.clone(), now); // one report per grace period
                }
            }
            Allowed::No => sampled.violations.push(format!(
                "{weight}% on {name}, which the ledger records neither live nor in canary: before {}; after {}",
                describe(&before),
                describe(&after)
            )),
        }
        let registered: Vec<_> = health[tg].iter().filter(|h| h.state != TargetState::Draining).collect();
        if registered.is_empty() || registered.iter().any(|h| h.state != TargetState::Healthy) {
            sampled.violations.push(format!(
                "{weight}% on {name}, whose registered targets are not all healthy: {:?}; ledger {}",
                registered
                    .iter()
                    .map(|h| (&h.instance_id, h.state.as_str()))
                    .collect::<Vec<_>>(),
                describe(&after)
            ));
        }
    }
    Ok(())
}

/// The scheduled reconcile re-paves a fleet past its age while 20 % of its calls (and of
/// every step's) fail: each run that fails is followed by the next (Lambda's retry, then
/// the schedule), the re-pave starts once, and it ends cleanly like any deployment.
#[tokio::test]
async fn phoenix_repave_under_faults() {
    let spec = |s: &str| Spec {
        max_instance_age_s: Some(3600),
        live_age_s: 2 * 3600,
        ..quick(s)
    };
    let mut chaos = Chaos::alone("phoenix re-pave", spec, chaos(0.2, 31)).await;
    let mut started = None;
    for run in 0..20 {
        let event = greenlight_e2e::sample_event(
            "scheduled-reconcile.json",
            &[("/id", serde_json::json!(format!("chaos-run-{run}")))],
        );
        match greenlight_steps::reconcile_services(&chaos.handlers.ports, &event).await {
            Ok(outcome) => {
                chaos.notes.push(format!("reconcile run {run}: {outcome:?}"));
                if let Some(action) = outcome.actions.first() {
                    started = Some(action.deploy_id.clone());
                    break;
                }
            }
            Err(e) => chaos.notes.push(format!("reconcile run {run} failed: {e}")),
        }
        if chaos.env.ledger(None).await.service.active.is_some() {
            // Started by a run whose answer was lost to a fault after the commit.
            started = chaos.env.ledger(None).await.service.active.clone();
            break;
        }
    }
    let Some(id) = started else {
        chaos.fail("no reconcile run started the re-pave in 20 runs").await
    };
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    assert_eq!(dep.source, greenlight_core::model::ImageSource::Repave);
    let live = end.state.service.live.as_ref().unwrap();
    match &dep.phase {
        Phase::Succeeded => assert_eq!(live.deploy_id.as_deref(), Some(id.as_str()), "the fresh fleet is live"),
        Phase::Aborted { .. } => assert_eq!(live.deploy_id, None, "the adopted fleet still serves"),
        other => panic!("{id} ended {other:?}"),
    }
    assert_eq!(
        end.history.len(),
        1,
        "one re-pave, however many runs: {:?}",
        end.history
    );
    assert!(end.counts.total > 0, "faults were injected: {}", end.counts);
}

#[tokio::test]
async fn all_at_once_rollout_under_faults() {
    let mut chaos = Chaos::new("all at once", quick, chaos(0.15, 7)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    match &dep.phase {
        Phase::Succeeded => assert_eq!(end.state.service.live.as_ref().unwrap().version, "v2"),
        Phase::Aborted { .. } => assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1"),
        other => panic!("{id} ended {other:?}"),
    }
    assert!(end.counts.total > 0, "faults were injected: {}", end.counts);
}

#[tokio::test]
async fn canary_rollout_under_faults() {
    // On a ledger table with its stream: the deployment events pipe runs under the faults too.
    let mut chaos = Chaos::alone("canary", canary, chaos(0.2, 23)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    match &dep.phase {
        Phase::Succeeded => {
            assert_eq!(end.state.service.live.as_ref().unwrap().version, "v2");
            assert_eq!(dep.max_weight, 100);
        }
        Phase::Aborted { .. } => assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1"),
        other => panic!("{id} ended {other:?}"),
    }
    assert!(end.counts.total > 0, "faults were injected: {}", end.counts);
}

#[tokio::test]
async fn a_canary_gated_by_hooks_under_faults() {
    // A Lambda hook after each canary step (in progress once, then yes) and a signed webhook
    // before green goes live; Invoke and GetSecretValue meet the faults like every call (a
    // fault after the function ran: the step's retry calls it again with the same call).
    use greenlight_core::hook::{HookEnd, OnTimeout, Stage, Webhook};
    use greenlight_local::hooks::{put_secret, serve_as_lambda, Answer, HookServer};
    let function = HookServer::start(vec![Answer::in_progress("checking"), Answer::succeeded()])
        .await
        .unwrap();
    let webhook = HookServer::start(vec![Answer::succeeded()]).await.unwrap();
    let secret = put_secret(
        endpoint(),
        &format!("greenlight/hooks/{}", greenlight_e2e::unique("chaos")),
        "k",
    )
    .await
    .expect("a secret");
    let spec = |s: &str| {
        let hook = |name: &str, stage| greenlight_core::hook::Hook {
            name: name.into(),
            stage,
            lambda: None,
            webhook: None,
            callback_delay_s: 1,
            timeout_s: 300,
            on_timeout: OnTimeout::Rollback,
            request_timeout_s: 10,
        };
        Spec {
            hooks: vec![
                greenlight_core::hook::Hook {
                    lambda: Some(format!(
                        "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-{s}"
                    )),
                    ..hook("step", Stage::TrafficShifted)
                },
                greenlight_core::hook::Hook {
                    webhook: Some(Webhook {
                        url: webhook.url.clone(),
                        secret: secret.clone(),
                    }),
                    ..hook("live", Stage::AllTraffic)
                },
            ],
            ..canary(s)
        }
    };
    let env = Env::new("chaos", spec).await;
    serve_as_lambda(endpoint(), &format!("greenlight-hook-{}", env.service), &function)
        .await
        .expect("serve the hook function");
    // Seed 13: the function's connection is reset after it ran once (the step's retry calls
    // it again with the same call number), among the other faults.
    let mut chaos = Chaos::on("hooked canary", env, chaos(0.2, 13)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    match &dep.phase {
        Phase::Succeeded => {
            // Every point's hook decided yes before green moved on: 10 % and 50 % (the
            // function), 100 % (the webhook), each with the calls its script needs.
            let records: Vec<(String, u8, bool)> = dep
                .hooks
                .iter()
                .map(|r| {
                    (
                        r.hook.clone(),
                        r.weight,
                        matches!(r.ended, Some(HookEnd::Succeeded { .. })),
                    )
                })
                .collect();
            assert_eq!(
                records,
                [
                    ("step".into(), 10, true),
                    ("step".into(), 50, true),
                    ("live".into(), 100, true)
                ]
            );
            assert!(dep.hooks.iter().filter(|r| r.hook == "step").all(|r| r.calls == 2));
        }
        Phase::Aborted { .. } => assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1"),
        other => panic!("{id} ended {other:?}"),
    }
    // A retried call is the same call: never a number the ledger did not record.
    for payload in function.payloads() {
        let (weight, call) = (payload["weight"].as_u64().unwrap(), payload["call"].as_u64().unwrap());
        let recorded = dep
            .hooks
            .iter()
            .find(|r| r.hook == "step" && u64::from(r.weight) == weight);
        assert!(recorded.is_some_and(|r| call <= u64::from(r.calls) + 1), "{payload}");
    }
    assert!(end.counts.total > 0, "faults were injected: {}", end.counts);
    if std::env::var_os("GREENLIGHT_CHAOS_SEED").is_none() {
        assert!(
            end.counts.by_action.contains_key("lambda:InvokeFunction"),
            "the hook's calls met faults: {}",
            end.counts
        );
    }
}

#[tokio::test]
async fn fast_rollback_during_the_bake_window_under_faults() {
    let spec = |s: &str| Spec {
        bake_window_s: 15,
        ..quick(s)
    };
    let mut chaos = Chaos::new("rollback in bake", spec, chaos(0.15, 42)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let baking = chaos.reach(&id, "baking", |p| matches!(p, Phase::Baking { .. })).await;
    if baking {
        chaos.env.rollback("chaos: errors up").await;
        let delivery = chaos.deliver().await;
        if !matches!(&delivery.result, Ok(Outcome::Revert(RevertOutcome::Reverted { deploy_id, .. })) if deploy_id == &id)
        {
            chaos
                .fail(&format!("the rollback did not revert {id}: {:?}", delivery.result))
                .await;
        }
    }
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    if baking {
        let revert = dep.revert.as_ref().expect("the ledger records the rollback");
        assert_eq!((revert.trigger.as_str(), revert.back_to.as_str()), ("engineer", "v1"));
        assert!(matches!(&dep.phase, Phase::Aborted { reason } if reason.contains("rolled back by alice")));
    }
}

#[tokio::test]
async fn alarm_rollback_during_a_canary_under_faults() {
    let spec = |s: &str| Spec {
        step_wait_s: 8,
        ..canary(s)
    };
    let mut chaos = Chaos::new("alarm in canary", spec, chaos(0.15, 99)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let at_10 = chaos
        .reach(&id, "10 %", |p| {
            matches!(p, Phase::Verifying { weight: 10, .. } | Phase::Verified { weight: 10 })
        })
        .await;
    if at_10 {
        assert!(
            chaos
                .notes
                .last()
                .is_some_and(|n| n.ends_with(r#"[("a", 90), ("b", 10)]"#)),
            "{:?}",
            chaos.notes
        );
        chaos.env.alarm("chaos-alarm-1", "ALARM").await;
        let delivery = chaos.deliver().await;
        if !matches!(&delivery.result, Ok(Outcome::Revert(RevertOutcome::Reverted { deploy_id, .. })) if deploy_id == &id)
        {
            chaos
                .fail(&format!("the alarm did not revert {id}: {:?}", delivery.result))
                .await;
        }
    }
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    if at_10 {
        let revert = dep.revert.as_ref().expect("the ledger records the rollback");
        assert_eq!(revert.trigger, Trigger::Alarm);
        assert!(matches!(&dep.phase, Phase::Aborted { .. }));
    }
}

/// `on_failure: hold`: the alarm freezes the canary (no listener change while 15 % of the
/// calls fail, the sampler checking every weight it sees against the ledger), then an
/// engineer's rollback ends the hold the usual way.
#[tokio::test]
async fn an_alarm_holds_a_canary_then_a_rollback_ends_it_under_faults() {
    let spec = |s: &str| Spec {
        step_wait_s: 8,
        on_failure: greenlight_core::config::OnFailure::Hold,
        ..canary(s)
    };
    let mut chaos = Chaos::new("hold in canary", spec, chaos(0.15, 7)).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let at_10 = chaos
        .reach(&id, "10 %", |p| {
            matches!(p, Phase::Verifying { weight: 10, .. } | Phase::Verified { weight: 10 })
        })
        .await;
    let mut held = false;
    if at_10 {
        chaos.env.alarm("chaos-hold-1", "ALARM").await;
        let delivery = chaos.deliver().await;
        held =
            matches!(&delivery.result, Ok(Outcome::Revert(RevertOutcome::Held { deploy_id, .. })) if deploy_id == &id);
        if !held {
            chaos
                .fail(&format!("the alarm did not hold {id}: {:?}", delivery.result))
                .await;
        }
        let weights = chaos.env.weights().await;
        if weights != [("a", 90), ("b", 10)] {
            chaos
                .fail(&format!("held at 10 %, yet the listener says {weights:?}"))
                .await;
        }
    }
    chaos.env.rollback("the alarm was right").await;
    let delivery = chaos.deliver().await;
    if !matches!(&delivery.result, Ok(Outcome::Revert(RevertOutcome::Reverted { deploy_id, .. })) if deploy_id == &id) {
        chaos
            .fail(&format!("the rollback did not revert {id}: {:?}", delivery.result))
            .await;
    }
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    assert_eq!(end.state.service.attention, None);
    assert!(matches!(&dep.phase, Phase::Aborted { .. }), "{:?}", dep.phase);
    if held {
        assert_eq!(
            dep.holds[0].ended.as_ref().map(|e| e.action),
            Some(greenlight_core::model::HoldAction::RolledBack)
        );
    }
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_retried_twice_then_dropped() {
    let mut chaos = Chaos::new("dynamodb outage", quick, outage("dynamodb")).await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    chaos.env.publish("v2", &ami).await;
    let attempts = chaos.deliver_all().await;
    let seen: Vec<(u32, bool, bool, bool)> = attempts
        .iter()
        .map(|d| (d.attempt, d.result.is_err(), d.retrying, d.dropped))
        .collect();
    assert_eq!(
        seen,
        [(1, true, true, false), (2, true, true, false), (3, true, false, true)],
        "attempt, failed, retrying, dropped: {:#?}",
        chaos.notes
    );
    // Dropped: nothing left in the queue, visible or not.
    assert_eq!(pump::queue_depth(&chaos.env.local).await.unwrap(), (0, 0));
    let end = chaos.finish().await;
    assert!(end.history.is_empty(), "no deployment started: {:?}", end.history);
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    assert!(
        end.counts.by_action.keys().all(|a| a.starts_with("dynamodb:")),
        "{}",
        end.counts
    );
}

#[tokio::test]
async fn a_step_that_keeps_failing_is_retried_twice_then_aborted_and_the_abort_outlasts_the_outage() {
    // The outage starts once green is launched and registered (before its first health
    // poll, 5 s later): check-health cannot read green's health.
    let spec = |s: &str| Spec {
        poll_interval_s: 5,
        ..quick(s)
    };
    let mut chaos = Chaos::new("load balancer outage", spec, outage("elasticloadbalancing")).await;
    faults::stop(endpoint(), &chaos.plan.access_key).await.unwrap();
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    chaos
        .env
        .wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 0, .. }))
        .await;
    // launch-green's last effect after committing `Verifying` opens the test route.
    let lb = chaos.env.local.ports.lb.clone();
    while lb.test_routes(&chaos.env.world.listener_arn).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    faults::inject(endpoint(), &chaos.plan)
        .await
        .expect("the outage starts");
    // check-health fails twice more, then abort-deployment, which cannot close the test route
    // (its first call, DescribeRules) nor deregister green either. The outage ends once
    // abort-deployment has failed once.
    let calls = |counts: &FaultCounts, action: &str| -> u64 {
        counts
            .by_action
            .get(&format!("elasticloadbalancing:{action}"))
            .map_or(0, |kinds| kinds.values().sum())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        let counts = faults::counts(endpoint(), &chaos.plan.access_key).await.unwrap();
        if calls(&counts, "DescribeRules") >= 3 {
            break counts;
        }
        if Instant::now() > deadline {
            chaos.fail("abort-deployment never ran").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    faults::stop(endpoint(), &chaos.plan.access_key).await.unwrap();
    // Three runs of check-health, each call attempted 3 times by the SDK (fewer if the SDK's
    // retry quota ran out): bounded, and then the execution moved on.
    let health = calls(&during, "DescribeTargetHealth");
    assert!((3..=9).contains(&health), "DescribeTargetHealth attempts: {during}");
    let dep = chaos.env.deployment(&id).await;
    assert!(matches!(dep.phase, Phase::Aborting { .. }), "{:?}", dep.phase);
    assert_eq!(dep.max_weight, 0, "green never had traffic");
    // abort-deployment's next retry cleans up: green terminated, its test route closed.
    let ending = wait_execution(&chaos.handlers.orchestrator, &id).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    let routes = chaos
        .env
        .local
        .ports
        .lb
        .test_routes(&chaos.env.world.listener_arn)
        .await
        .unwrap();
    assert!(routes.is_empty(), "{routes:?}");
    let end = chaos.finish().await;
    assert!(
        matches!(&end.deployment(&id).phase, Phase::Aborted { reason } if reason.contains("DescribeTargetHealth")),
        "{:?}",
        end.deployment(&id).phase
    );
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    assert_eq!(
        calls(&end.counts, "DescribeTargetHealth"),
        health,
        "check-health gave up"
    );
}

/// An outage of the load balancer's API before launch: launch-green cannot read the switch
/// points, so nothing is launched; after two retries the deployment is aborted, which needs
/// no load balancer call for a green that never launched.
#[tokio::test]
async fn a_load_balancer_outage_before_launch_launches_nothing() {
    let mut chaos = Chaos::new(
        "load balancer outage before launch",
        quick,
        outage("elasticloadbalancing"),
    )
    .await;
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    let ending = wait_execution(&chaos.handlers.orchestrator, &id).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    assert!(chaos.env.live_instances_of(&id).await.is_empty(), "nothing launched");
    let end = chaos.finish().await;
    let dep = end.deployment(&id);
    assert!(
        matches!(&dep.phase, Phase::Aborted { reason } if reason.contains("DescribeListeners")),
        "{:?}",
        dep.phase
    );
    assert!(dep.green_instances.is_empty(), "{:?}", dep.green_instances);
    assert_eq!(end.state.service.live.as_ref().unwrap().version, "v1");
    assert!(
        end.counts
            .by_action
            .keys()
            .all(|a| a == "elasticloadbalancing:DescribeListeners"),
        "only the switch points' reads met the outage: {}",
        end.counts
    );
}

/// Found by `alarm_rollback_during_a_canary_under_faults` with `GREENLIGHT_CHAOS_SEED=12
/// GREENLIGHT_CHAOS_RATE=0.45`: revert-service's first delivery of the alarm claimed the plan
/// and flipped the listener, then failed on a ledger read; the deployment's own execution
/// completed the rollback, and the redelivered event (same id) found nothing in flight, live
/// = the version the last rollback went back to, and took it for a new alarm on v1: the
/// service was marked as needing attention, and greenlight stopped acting on its alarms.
/// Redelivery is normal (EventBridge delivers at least once; Lambda retries a failed
/// invocation), so the same event must change nothing.
#[tokio::test]
async fn an_alarm_redelivered_after_its_rollback_completed_changes_nothing() {
    let env = Env::new("alarm-again", |s| Spec {
        step_wait_s: 30,
        ..canary(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = greenlight_e2e::started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    let event = env.alarm_event("alarm-once", "ALARM");
    let first = greenlight_steps::revert_service(&env.local.ports, &event)
        .await
        .unwrap();
    assert!(matches!(first, RevertOutcome::Reverted { .. }), "{first:?}");
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );

    let again = greenlight_steps::revert_service(&env.local.ports, &event).await;
    let state = env.ledger(None).await;
    assert_eq!(state.service.attention, None, "the same event again: {again:?}");
}

/// Canary analysis while CloudWatch is down for the handlers (every `GetMetricData`
/// throttled): the registration says an inconclusive step continues, but a step whose
/// metrics could not be read is never continued on missing data: it aborts at its deadline,
/// green never past its first step.
#[tokio::test]
async fn a_metrics_outage_never_promotes_an_analysed_canary() {
    let spec = |s: &str| Spec {
        canary_steps: vec![20, 100],
        step_wait_s: 0,
        analysis: Some(
            serde_json::from_value(serde_json::json!({
                "metrics": [{"error_rate": {"tolerance_pp": 2}}],
                "period_s": 1, "lag_s": 1, "max_step_s": 4, "inconclusive": "continue"
            }))
            .expect("a valid analysis"),
        ),
        ..quick(s)
    };
    let mut chaos = Chaos::new("metrics outage", spec, outage("cloudwatch")).await;
    // start-deployment reads the service's alarms: the outage starts once green has 20 %.
    faults::stop(endpoint(), &chaos.plan.access_key).await.unwrap();
    let ami = chaos.env.image("v2", App::Healthy).await;
    let id = chaos.start("v2", &ami).await;
    if !chaos
        .reach(&id, "green at 20%", |p| {
            matches!(p, Phase::Verifying { weight: 20, .. } | Phase::Verified { weight: 20 })
        })
        .await
    {
        chaos.fail("the canary never reached 20%").await;
    }
    faults::inject(endpoint(), &chaos.plan)
        .await
        .expect("the outage starts");
    let dep = chaos.env.wait_for_phase(&id, Phase::is_terminal).await;
    let end = chaos.finish().await;

    assert_eq!(dep.max_weight, 20, "never past the judged step: {:?}", dep.timeline);
    let Phase::Aborted { reason } = &dep.phase else {
        panic!("{:?}", dep.phase)
    };
    assert!(reason.contains("metrics unavailable"), "{reason}");
    let evaluations = &dep.analysis.as_ref().expect("evaluations").evaluations;
    assert!(evaluations.iter().all(|e| e.action != "next step"), "{evaluations:#?}");
    assert!(
        end.counts.by_action.contains_key("cloudwatch:GetMetricData"),
        "{}",
        end.counts
    );
    assert_eq!(end.state.service.live.unwrap().version, "v1");
}
