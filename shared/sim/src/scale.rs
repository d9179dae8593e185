//! The scale scenario of the benchmarks issue: K services registered in the one ledger, each
//! live on v1 behind its own listener, target groups and fleet; v2 of every one published at
//! the same simulated instant; the scheduler runs everything until nothing is left, the
//! services' steps interleaved by their due times (faults as chosen: none by default, so the
//! figures are the clean cost). Then [`ScaleReport`]: deployments, lost / duplicated / stuck
//! (all must be 0, else [`scale`] returns the details as its error), the AWS requests the
//! real adapters would have sent ([`crate::meter`]) in total, per deployment and per
//! operation, the ledger's reads, writes, conflicts and estimated capacity, handler
//! invocations, simulated time to finish, and wall time.
//!
//! Every service has the README's example registration (canary 10 → 50 → 100 % with 300 s
//! waits, a one-hour bake window, 300 s deregistration delay, health polled every 10 s, one
//! alarm, `supersede`), so every deployment takes the same path and costs the same: the cost
//! per deployment does not depend on K. The simulated AWS takes [`PENDING_MS`] from
//! RunInstances to `running` and [`HEALTH_CHECK_MS`] more to a health verdict.
//!
//! Unlike the seed runs, the scheduler here takes the item due first (the clock jumping to
//! it), keeps what is due in one ordered map, and checks the safety invariants after each
//! step on the service that step ran for (all of them after every step would be O(K²) a
//! run); liveness is checked on everything at the end. Faults, when asked for, stay on for
//! the whole run: a crash after any AWS call of an invocation (`crash_pct`), an event or task
//! delivered again later (`duplicate_pct`), or twice at once with the two invocations' AWS
//! calls interleaved (`race_pct`: where conditional-write conflicts come from). An event
//! whose three deliveries all crash goes to the dead-letter queue, as in AWS: its image is
//! then lost, and reported so.

use crate::meter::Usage;
use crate::sim::{Ghost, Options, Pending, Sim};
use crate::world::{Behaviour, Timings};
use greenlight_core::inbound::IMAGE_PUBLISHED;
use greenlight_core::rng::Rng;
use greenlight_core::ServiceConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// RunInstances → `running` in the scale runs' simulated AWS.
pub const PENDING_MS: u64 = 30_000;
/// `running` → the load balancer's first health verdict (two checks 30 s apart).
pub const HEALTH_CHECK_MS: u64 = 60_000;

/// What a scale run does.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Services registered in the one ledger, each deploying once.
    pub services: usize,
    /// Instances per service (blue's and green's fleet size).
    pub instances: u32,
    pub seed: u64,
    /// Chance (%) that an invocation crashes after one of its AWS calls.
    pub crash_pct: u64,
    /// Chance (%) that an event or task is delivered a second time, later.
    pub duplicate_pct: u64,
    /// Chance (%) that an event or task is delivered twice at once, the two invocations'
    /// AWS calls interleaved.
    pub race_pct: u64,
    /// Progress lines on stderr (every few seconds of wall time).
    pub progress: bool,
}

impl ScaleOptions {
    /// `services` services of 3 instances, seed 1, no faults, quiet.
    pub fn new(services: usize) -> ScaleOptions {
        ScaleOptions {
            services,
            instances: 3,
            seed: 1,
            crash_pct: 0,
            duplicate_pct: 0,
            race_pct: 0,
            progress: false,
        }
    }
}

/// What a scale run measured. Per-deployment figures divide by the deployments recorded.
#[derive(Debug, Clone, Default)]
pub struct ScaleReport {
    pub services: usize,
    pub instances_per_service: u32,
    pub seed: u64,
    pub crash_pct: u64,
    pub duplicate_pct: u64,
    pub race_pct: u64,
    pub images_published: u64,
    /// Deployments recorded in the ledger.
    pub deployments_started: u64,
    pub deployments_succeeded: u64,
    pub deployments_aborted: u64,
    /// Images published with no deployment recorded (e.g. its event dead-lettered).
    pub lost: u64,
    /// Images with more than one deployment recorded.
    pub duplicated: u64,
    /// Deployments not in a final phase once nothing was left to run.
    pub stuck: u64,
    /// AWS requests, as the real adapters would send them.
    pub aws_calls: u64,
    pub aws_calls_per_deployment: f64,
    /// The cheapest and the dearest service's requests per deployment.
    pub aws_calls_per_deployment_min: f64,
    pub aws_calls_per_deployment_max: f64,
    /// IAM action (`ec2:RunInstances`) → requests.
    pub aws_calls_by_operation: BTreeMap<String, u64>,
    /// DynamoDB read and write requests.
    pub ledger_reads: u64,
    pub ledger_writes: u64,
    /// Conditional writes that lost.
    pub conflicts: u64,
    /// Conflicts met by deployments that still reached a final phase.
    pub conflicts_resolved: u64,
    /// Deployments that met at least one conflict.
    pub deployments_with_conflicts: u64,
    /// Estimated DynamoDB capacity units (see [`crate::meter`]).
    pub read_units: u64,
    pub write_units: u64,
    pub read_units_per_deployment: f64,
    pub write_units_per_deployment: f64,
    /// Lambda invocations: event deliveries and Step Functions tasks.
    pub handler_invocations: u64,
    pub handler_invocations_per_deployment: f64,
    pub crashes: u64,
    pub duplicates: u64,
    pub races: u64,
    /// Events dropped after Lambda's two async retries (duplicates' included: a loss only
    /// when no other delivery of the image got through, which `lost` counts).
    pub dead_lettered: u64,
    /// Simulated seconds from the images' publication to each deployment's end.
    pub sim_time_to_finish_median_s: f64,
    pub sim_time_to_finish_max_s: f64,
    pub wall_time_s: f64,
    /// Scheduler steps (handler runs, twins counted once) and invariant checks.
    pub steps: u64,
    pub invariant_checks: u64,
}

/// Runs the scale scenario. Err: what was lost, duplicated or stuck, an invariant broken,
/// or liveness not reached, with details.
pub fn scale(mut options: ScaleOptions) -> Result<ScaleReport, String> {
    let started = Instant::now();
    options.services = options.services.max(1);
    options.instances = options.instances.max(1);
    let k = options.services;
    let faults = options.crash_pct > 0 || options.duplicate_pct > 0 || options.race_pct > 0;
    let mut sim = Sim::empty(
        Options {
            seed: options.seed,
            steps: 0,
            services: k,
            crash_pct: options.crash_pct,
            duplicate_pct: options.duplicate_pct,
            // The scale scenario runs from its own agenda, without the schedule.
            reconcile_in_chaos: false,
            // Its registrations are its own (one switch point each).
            topology: false,
        },
        Rng::new(options.seed),
        Timings {
            pending_ms: PENDING_MS,
            health_check_ms: HEALTH_CHECK_MS,
        },
    );
    sim.faults = faults;
    sim.trace_cap = Some(2_000);
    let mut progress = Progress::new(options.progress, started);
    for i in 0..k {
        sim.adopt(registration(i, options.instances));
        progress.say(|| format!("registering: {} of {k} services", i + 1));
    }
    sim.meters = Some(BTreeMap::new());

    // v2 of every service, published at the same instant.
    let published_ms = sim.now_ms();
    let mut published = Vec::with_capacity(k);
    for s in 0..k {
        let name = sim.services[s].config.service.clone();
        let ami = sim.new_image(&name, "2.0.0", Behaviour::Healthy, crate::sim::OWNER);
        sim.services[s].pushed.push(("2.0.0".into(), ami.clone()));
        let detail = json!({"service": name, "version": "2.0.0", "ami": ami, "requested_by": "sim"});
        let event = sim.envelope(greenlight_core::inbound::SOURCE, IMAGE_PUBLISHED, detail);
        sim.publish(format!("image {name} 2.0.0"), event);
        published.push((name, "2.0.0".to_string(), ami));
    }

    let mut agenda = Agenda::default();
    let mut executions_of: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut ended_ms: BTreeMap<String, u64> = BTreeMap::new();
    agenda.absorb(&mut sim, &mut executions_of);
    let limit = 2_000 * k as u64 + 10_000;
    let mut steps = 0u64;
    while let Some(((due_ms, _), item)) = agenda.items.pop_first() {
        steps += 1;
        if steps > limit {
            return Err(format!(
                "did not quiesce: work still pending after {limit} steps\n{}",
                trace_tail(&sim)
            ));
        }
        {
            let mut aws = sim.world.lock();
            aws.now_ms = aws.now_ms.max(due_ms);
        }
        sim.step += 1;
        let twin = faults && sim.rng.chance(options.race_pct);
        let (service, ran) = match item {
            Due::Event(pending) => {
                let service = pending.service().to_string();
                sim.events.push(pending);
                (service, (0, 0))
            }
            Due::Ghost(ghost) => {
                let service = ghost.input.service.clone();
                sim.ghosts.push(ghost);
                (service, (2, 0))
            }
            Due::Execution(i) => (sim.executions[i].current.service.clone(), (1, i)),
        };
        if twin {
            sim.run_twice(ran);
        } else {
            sim.run_one(ran);
        }
        if let (1, i) = ran {
            match &sim.executions[i].ended {
                Some(_) => {
                    ended_ms.insert(sim.executions[i].current.deploy_id.clone(), sim.now_ms());
                }
                None => agenda.add(sim.executions[i].due_ms, Due::Execution(i)),
            }
        }
        agenda.absorb(&mut sim, &mut executions_of);
        check(&mut sim, &service, &executions_of)?;
        progress.say(|| {
            let t = (sim.now_ms() - published_ms) / 1000;
            format!(
                "running: {} executions ended of {k} deployments, t+{t}s simulated, {steps} steps",
                ended_ms.len()
            )
        });
    }

    let report = measure(&sim, &options, &published, published_ms, &ended_ms, steps, started)?;
    progress.done(|| format!("done in {:.1?}", started.elapsed()));
    Ok(report)
}

/// The README's example registration for service `i`, with `instances` instances.
fn registration(i: usize, instances: u32) -> ServiceConfig {
    let name = format!("svc{i:05}");
    let elb = format!("arn:aws:elasticloadbalancing:us-east-1:{}", crate::sim::OWNER);
    let registration = json!({
        "service": name,
        "switch": {"listener_arn": format!("{elb}:listener/app/scale/{i}/1")},
        "target_groups": [format!("{elb}:targetgroup/{name}-a/1"), format!("{elb}:targetgroup/{name}-b/2")],
        "launch": {"instance_type": "t3.micro", "subnet_id": "subnet-0123", "count": instances, "port": 8080},
        "health": {"poll_interval_s": 10, "max_polls": 30, "smoke": {"path": "/smoke", "expect_body": "ok"}},
        "rollout": {"canary_steps": [10, 50, 100], "step_wait_s": 300},
        "bake_window_s": 3600,
        "deregistration_delay_s": 300,
        "ami_policy": {"allowed_owners": [crate::sim::OWNER]},
        "on_new_image": "supersede",
        "lease_s": 900,
        "alarms": [format!("{name}-5xx")],
    });
    ServiceConfig::from_json(&registration.to_string()).expect("a valid registration")
}

/// Something due: an event on its way, a late duplicate task, or an execution's next task.
enum Due {
    Event(Pending),
    Ghost(Ghost),
    Execution(usize),
}

/// What is due, in the order it runs: by due time, then first come first served.
#[derive(Default)]
struct Agenda {
    items: BTreeMap<(u64, u64), Due>,
    next: u64,
    /// Executions already taken in.
    executions: usize,
}

impl Agenda {
    fn add(&mut self, due_ms: u64, item: Due) {
        self.next += 1;
        self.items.insert((due_ms, self.next), item);
    }

    /// Takes in what the last step left in the scheduler: events (Lambda's retries, late
    /// duplicates), late duplicate tasks, and the executions StartExecution accepted.
    fn absorb(&mut self, sim: &mut Sim, executions_of: &mut BTreeMap<String, Vec<usize>>) {
        for pending in std::mem::take(&mut sim.events) {
            self.add(pending.due_ms, Due::Event(pending));
        }
        for ghost in std::mem::take(&mut sim.ghosts) {
            self.add(ghost.due_ms, Due::Ghost(ghost));
        }
        for i in self.executions..sim.executions.len() {
            let x = &sim.executions[i];
            executions_of.entry(x.current.service.clone()).or_default().push(i);
            if x.ended.is_none() {
                self.add(x.due_ms, Due::Execution(i));
            }
        }
        self.executions = sim.executions.len();
    }
}

/// The safety invariants of the service a step ran for.
fn check(sim: &mut Sim, service: &str, executions_of: &BTreeMap<String, Vec<usize>>) -> Result<(), String> {
    let cleaning: BTreeSet<String> = executions_of
        .get(service)
        .into_iter()
        .flatten()
        .map(|i| &sim.executions[*i])
        .filter(|x| x.ended.is_none())
        .map(|x| x.current.deploy_id.clone())
        .collect();
    sim.stats.invariant_checks += 1;
    let checked = sim
        .checker
        .check_one(&sim.world.lock(), &sim.ledger.lock(), service, &cleaning);
    checked.map_err(|violation| sim.fail(violation).to_string())
}

/// The last lines of the run's trace.
fn trace_tail(sim: &Sim) -> String {
    let trace = sim.trace();
    trace[trace.len().saturating_sub(40)..].join("\n")
}

/// The report, or what was lost, duplicated or stuck.
fn measure(
    sim: &Sim,
    options: &ScaleOptions,
    published: &[(String, String, String)],
    published_ms: u64,
    ended_ms: &BTreeMap<String, u64>,
    steps: u64,
    started: Instant,
) -> Result<ScaleReport, String> {
    let mut problems = Vec::new();
    let failed: Vec<String> = sim
        .executions
        .iter()
        .filter_map(|x| match &x.ended {
            Some(Err(why)) => Some(format!("execution {} failed: {why}", x.current.deploy_id)),
            _ => None,
        })
        .collect();
    problems.extend(examples("failed executions", &failed));
    let settled = sim.checker.settled(&sim.world.lock(), &sim.ledger.lock(), None, None);
    if let Err(violation) = settled {
        problems.push(format!("not settled: {violation}"));
    }

    let table = sim.ledger.lock();
    let mut per_image: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    let (mut succeeded, mut aborted) = (0, 0);
    let mut stuck = Vec::new();
    let mut finish_s = Vec::new();
    let mut open_services = BTreeSet::new();
    let mut deployments_of: BTreeMap<&str, u64> = BTreeMap::new();
    for ((service, deploy_id), dep) in &table.deployments {
        *per_image
            .entry((service.as_str(), dep.version.as_str(), dep.ami.as_str()))
            .or_default() += 1;
        *deployments_of.entry(service.as_str()).or_default() += 1;
        match dep.phase.name() {
            "succeeded" => succeeded += 1,
            "aborted" => aborted += 1,
            phase => {
                stuck.push(format!("{service} {deploy_id} ({phase})"));
                open_services.insert(service.as_str());
            }
        }
        let end_ms = ended_ms.get(deploy_id).copied().unwrap_or(dep.updated_at * 1000);
        finish_s.push(end_ms.saturating_sub(published_ms) as f64 / 1000.0);
    }
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    for (service, version, ami) in published {
        match per_image.get(&(service.as_str(), version.as_str(), ami.as_str())) {
            None => lost.push(format!("{service} {version} ({ami})")),
            Some(1) => {}
            Some(n) => duplicated.push(format!("{service} {version} ({ami}): {n} deployments")),
        }
    }
    let lost_why = match sim.stats.dead_lettered {
        0 => "lost (published, no deployment recorded)".to_string(),
        n => format!(
            "lost (published, no deployment recorded; {n} events went to the dead-letter queue after three crashed deliveries)"
        ),
    };
    problems.extend(examples(&lost_why, &lost));
    problems.extend(examples("duplicated (one image, several deployments)", &duplicated));
    problems.extend(examples("stuck (not in a final phase)", &stuck));
    if !problems.is_empty() {
        return Err(format!(
            "scale run (seed {}, {} services) failed:\n  {}",
            options.seed,
            options.services,
            problems.join("\n  ")
        ));
    }

    // What each service's handler runs would have asked of AWS.
    let meters = sim.meters.as_ref().expect("a scale run meters its services");
    let mut total = Usage::default();
    let mut per_deployment: Vec<f64> = Vec::new();
    let (mut resolved, mut with_conflicts) = (0, 0);
    for (service, meter) in meters {
        let usage = meter.usage();
        total.add(&usage);
        let deployments = deployments_of.get(service.as_str()).copied().unwrap_or(0);
        if deployments > 0 {
            per_deployment.push(usage.calls() as f64 / deployments as f64);
        }
        if usage.conflicts > 0 {
            with_conflicts += deployments;
            if !open_services.contains(service.as_str()) {
                resolved += usage.conflicts;
            }
        }
    }
    if total.conflicts != table.conflicts {
        // Every ledger call of a handler goes through a meter: the counts must agree.
        return Err(format!(
            "the meters saw {} conflicts, the ledger {}",
            total.conflicts, table.conflicts
        ));
    }
    per_deployment.sort_by(f64::total_cmp);
    finish_s.sort_by(f64::total_cmp);
    let deployments = table.deployments.len() as u64;
    let per = |n: u64| n as f64 / deployments.max(1) as f64;
    Ok(ScaleReport {
        services: options.services,
        instances_per_service: options.instances,
        seed: options.seed,
        crash_pct: options.crash_pct,
        duplicate_pct: options.duplicate_pct,
        race_pct: options.race_pct,
        images_published: published.len() as u64,
        deployments_started: deployments,
        deployments_succeeded: succeeded,
        deployments_aborted: aborted,
        lost: 0,
        duplicated: 0,
        stuck: 0,
        aws_calls: total.calls(),
        aws_calls_per_deployment: per(total.calls()),
        aws_calls_per_deployment_min: per_deployment.first().copied().unwrap_or(0.0),
        aws_calls_per_deployment_max: per_deployment.last().copied().unwrap_or(0.0),
        aws_calls_by_operation: total.operations.iter().map(|(op, n)| (op.to_string(), *n)).collect(),
        ledger_reads: total.ledger_reads,
        ledger_writes: total.ledger_writes,
        conflicts: total.conflicts,
        conflicts_resolved: resolved,
        deployments_with_conflicts: with_conflicts,
        read_units: total.read_units,
        write_units: total.write_units,
        read_units_per_deployment: per(total.read_units),
        write_units_per_deployment: per(total.write_units),
        handler_invocations: total.invocations,
        handler_invocations_per_deployment: per(total.invocations),
        crashes: sim.stats.crashes,
        duplicates: sim.stats.duplicates,
        races: sim.stats.races,
        dead_lettered: sim.stats.dead_lettered,
        sim_time_to_finish_median_s: finish_s.get(finish_s.len() / 2).copied().unwrap_or(0.0),
        sim_time_to_finish_max_s: finish_s.last().copied().unwrap_or(0.0),
        wall_time_s: started.elapsed().as_secs_f64(),
        steps,
        invariant_checks: sim.stats.invariant_checks,
    })
}

/// "`what`: N: the first few".
fn examples(what: &str, items: &[String]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
    let more = if items.len() > shown.len() { ", …" } else { "" };
    Some(format!("{what}: {}: {}{more}", items.len(), shown.join(", ")))
}

/// Progress lines on stderr, at most one every few seconds.
struct Progress {
    on: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(on: bool, started: Instant) -> Progress {
        Progress {
            on,
            started,
            last: started,
        }
    }

    fn say(&mut self, line: impl FnOnce() -> String) {
        if self.on && self.last.elapsed() >= Self::EVERY {
            self.last = Instant::now();
            eprintln!("scale: {} ({:.0?})", line(), self.started.elapsed());
        }
    }

    fn done(&self, line: impl FnOnce() -> String) {
        if self.on && self.started.elapsed() >= Self::EVERY {
            eprintln!("scale: {}", line());
        }
    }
}

impl ScaleReport {
    /// The report as one JSON object (the field names are the struct's).
    pub fn to_json(&self) -> Value {
        json!({
            "services": self.services,
            "instances_per_service": self.instances_per_service,
            "seed": self.seed,
            "crash_pct": self.crash_pct,
            "duplicate_pct": self.duplicate_pct,
            "race_pct": self.race_pct,
            "images_published": self.images_published,
            "deployments_started": self.deployments_started,
            "deployments_succeeded": self.deployments_succeeded,
            "deployments_aborted": self.deployments_aborted,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "stuck": self.stuck,
            "aws_calls": self.aws_calls,
            "aws_calls_per_deployment": round(self.aws_calls_per_deployment),
            "aws_calls_per_deployment_min": round(self.aws_calls_per_deployment_min),
            "aws_calls_per_deployment_max": round(self.aws_calls_per_deployment_max),
            "aws_calls_by_operation": self.aws_calls_by_operation,
            "ledger_reads": self.ledger_reads,
            "ledger_writes": self.ledger_writes,
            "conflicts": self.conflicts,
            "conflicts_resolved": self.conflicts_resolved,
            "deployments_with_conflicts": self.deployments_with_conflicts,
            "read_units": self.read_units,
            "write_units": self.write_units,
            "read_units_per_deployment": round(self.read_units_per_deployment),
            "write_units_per_deployment": round(self.write_units_per_deployment),
            "handler_invocations": self.handler_invocations,
            "handler_invocations_per_deployment": round(self.handler_invocations_per_deployment),
            "crashes": self.crashes,
            "duplicates": self.duplicates,
            "races": self.races,
            "dead_lettered": self.dead_lettered,
            "sim_time_to_finish_median_s": round(self.sim_time_to_finish_median_s),
            "sim_time_to_finish_max_s": round(self.sim_time_to_finish_max_s),
            "wall_time_s": round(self.wall_time_s),
            "steps": self.steps,
            "invariant_checks": self.invariant_checks,
        })
    }

    /// The report as a short table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let d = self.deployments_started.max(1) as f64;
        let _ = writeln!(
            out,
            "scale: {} services x {} instances, seed {}, faults: crash {} %, duplicate {} %, race {} %",
            self.services, self.instances_per_service, self.seed, self.crash_pct, self.duplicate_pct, self.race_pct
        );
        let _ = writeln!(
            out,
            "deployments   {} started, {} succeeded, {} aborted; lost {}, duplicated {}, stuck {}",
            self.deployments_started,
            self.deployments_succeeded,
            self.deployments_aborted,
            self.lost,
            self.duplicated,
            self.stuck
        );
        let _ = writeln!(
            out,
            "AWS calls     {} ({:.1} per deployment; {:.1} to {:.1} across services)",
            self.aws_calls,
            self.aws_calls_per_deployment,
            self.aws_calls_per_deployment_min,
            self.aws_calls_per_deployment_max
        );
        let _ = writeln!(out, "  {:<45} {:>10} {:>15}", "operation", "total", "per deployment");
        for (op, n) in &self.aws_calls_by_operation {
            let _ = writeln!(out, "  {op:<45} {n:>10} {:>15.2}", *n as f64 / d);
        }
        let _ = writeln!(
            out,
            "ledger        {} reads, {} writes ({:.1} and {:.1} per deployment); {} conflicts, {} resolved ({} deployments met one)",
            self.ledger_reads,
            self.ledger_writes,
            self.ledger_reads as f64 / d,
            self.ledger_writes as f64 / d,
            self.conflicts,
            self.conflicts_resolved,
            self.deployments_with_conflicts
        );
        let _ = writeln!(
            out,
            "capacity      ~{} read units, ~{} write units ({:.1} and {:.1} per deployment; estimated)",
            self.read_units, self.write_units, self.read_units_per_deployment, self.write_units_per_deployment
        );
        let _ = writeln!(
            out,
            "invocations   {} ({:.1} per deployment)",
            self.handler_invocations, self.handler_invocations_per_deployment
        );
        let _ = writeln!(
            out,
            "faults        {} crashes, {} duplicates, {} races, {} dead-lettered",
            self.crashes, self.duplicates, self.races, self.dead_lettered
        );
        let _ = writeln!(
            out,
            "sim time      {:.0} s median, {:.0} s max from publication to a deployment's end",
            self.sim_time_to_finish_median_s, self.sim_time_to_finish_max_s
        );
        let _ = write!(
            out,
            "wall time     {:.1} s ({} steps, {} invariant checks)",
            self.wall_time_s, self.steps, self.invariant_checks
        );
        out
    }
}

/// Two decimals are plenty in a table.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
