//! The demo (README's first command), on the local emulator, shown live step by step while
//! the load generator sends 200 requests a second through the service's load balancer
//! (a line every two seconds: what each version served, and the 5xx):
//! 1. a canary rollout of v2 over v1: green launched, gated, 10 → 50 → 100 % as canary
//!    analysis finds it no worse than v1 on the real traffic, bake, v1 retired;
//! 2. v3, a bad build (10 % of its requests answer 500, its health checks pass): analysis
//!    catches it at its 10 % step and traffic returns to v2 on its own, v3 cleaned up;
//! 3. v4 promoted the same way, then its CloudWatch alarm fires during the bake window and
//!    traffic returns to v2 with one listener change (time-to-revert printed), v4 cleaned up;
//!
//! and finally the ledger's history of the service.
//!
//! Where an engineer would act or look, the demo runs the `greenlight` CLI (built next to
//! this binary): `greenlight deploy` publishes the images, `greenlight status` and
//! `greenlight history` read the ledger.

use crate::emulator::{repo_root, Emulator};
use crate::fixture::{self, AppBehaviour, AppTraits, Spec};
use crate::load::{run_load, LoadSpec};
use crate::orchestrator::{Ending, Progress};
use crate::pump::Outcome;
use crate::{pump, Local, Names};
use greenlight_core::config::NewImagePolicy;
use greenlight_core::decide::short_arn;
use greenlight_core::inbound::ALARM_STATE_CHANGE;
use greenlight_core::plan::{Step, END};
use greenlight_core::ServiceConfig;
use greenlight_steps::{RevertOutcome, StartOutcome};
use serde_json::json;
use std::time::Duration;

/// Runs the demo, printing progress to stdout.
pub async fn run() -> Result<(), String> {
    let log = repo_root().join("target/demo-emulator.log");
    let _ = std::fs::create_dir_all(repo_root().join("target"));
    println!("greenlight demo — canaries judged on real traffic, an analysis-driven and an alarm-driven rollback, on a local AWS emulator\n");
    println!(
        "[setup] starting the local AWS emulator (moto + greenlight behaviours; log: {})",
        log.display()
    );
    let emulator = Emulator::start(Some(log))?;
    let local = Local::connect(&emulator.endpoint, Names::default()).await?;
    println!(
        "[setup] emulator at {}; ledger table, artifact bucket and EventBridge rules ready",
        emulator.endpoint
    );
    let spec = Spec {
        service: "checkout".into(),
        canary_steps: vec![10, 50, 100],
        step_wait_s: 2,
        bake_window_s: 8,
        deregistration_delay_s: 2,
        poll_interval_s: 1,
        max_polls: 20,
        fleet_size: 2,
        switch_by_rule: false,
        on_new_image: NewImagePolicy::Supersede,
        lease_s: 900,
        max_instance_age_s: None,
        live_age_s: 0,
        reconcile: Default::default(),
        // The smoke test also goes through the load balancer, on the deployment's test route.
        smoke_through_load_balancer: true,
        // Green's 5xx rate may exceed blue's by 2 points; judged every 1 s metric period
        // (the emulator's; AWS publishes ALB metrics every 60 s).
        analysis: Some(
            serde_json::from_value(json!({
                "metrics": [{"error_rate": {"tolerance_pp": 2}}],
                "period_s": 1, "lag_s": 1, "max_step_s": 30, "min_requests": 100,
                "inconclusive": "continue", "baseline_s": 5
            }))
            .map_err(|e| format!("demo analysis: {e}"))?,
        ),
        ..Spec::quick("checkout")
    };
    let world = fixture::build(&local, &spec).await?;
    println!(
        "[setup] service {} registered: ALB listener → target group {} (v1 on {}), canary {:?}, bake {}s",
        spec.service,
        short_arn(&world.config.target_groups[0]),
        world.blue_instances.join(", "),
        spec.canary_steps,
        spec.bake_window_s
    );
    let ami_v2 = fixture::image(&local, &spec.service, "v2", AppBehaviour::Healthy).await?;
    println!("[setup] image v2 built: {ami_v2}\n");

    let load = start_load(&local, &world.listener_arn).await?;
    println!("[setup] load generator: {LOAD_RPS} requests/s through the listener\n");

    let (pump_task, mut deliveries) = pump::spawn(local.clone());
    let mut progress = local.orchestrator.subscribe();
    // The ledger's stream → announce-deployments → the events bus, as the stack's pipe.
    let events_pipe = crate::pipe::spawn(&local, crate::pipe::Enrichment::InProcess).await?;
    let mut announced = events_pipe.subscribe();
    let cli = Cli::new(&emulator.endpoint, &local.names)?;
    // The dashboard serves the demo while it runs (stopped with it).
    let _dashboard = match crate::start_dashboard(&emulator.endpoint, &local.names, "demo-dashboard", 0).await {
        Ok((child, url)) => {
            println!("[setup] dashboard: {url} (live while the demo runs)\n");
            Some(child)
        }
        Err(why) => {
            println!("[setup] dashboard: not started ({why})\n");
            None
        }
    };

    // Part 1: a canary rollout of v2, bake, v1 retired.
    let deploy_v2 = deploy(&cli, &mut deliveries, &spec.service, "v2", &ami_v2).await?;
    follow(&local, &world.config, &mut progress, &deploy_v2, |_| false).await;
    println!("\nv1 fleet now: {}", fleet_states(&local, &world.blue_instances).await?);
    cli.run(&["status", &spec.service]).await?;

    // Part 2: v3 is a bad build; analysis catches it at its 10 % step.
    println!("\n— part 2: v3 answers 10 % of its requests with a 500; analysis catches it —\n");
    let bad = AppTraits {
        error_pct: Some(10.0),
        ..AppTraits::default()
    };
    let ami_v3 = fixture::image_with_traits(&local, &spec.service, "v3", AppBehaviour::Healthy, &bad).await?;
    let deploy_v3 = deploy(&cli, &mut deliveries, &spec.service, "v3", &ami_v3).await?;
    // The verdict reverts v3 in its own execution, which then cleans it up (drain, terminate).
    follow(&local, &world.config, &mut progress, &deploy_v3, |_| false).await;
    let dep = local
        .ports
        .ledger
        .load(&spec.service, Some(&deploy_v3))
        .await
        .map_err(|e| e.to_string())?
        .and_then(|s| s.deployment);
    if let Some(verdict) = dep
        .as_ref()
        .and_then(|d| d.analysis.as_ref())
        .and_then(|a| a.evaluations.last())
    {
        for metric in &verdict.metrics {
            println!(
                "  verdict at {}%: {}: {}",
                verdict.weight, metric.metric, metric.explanation
            );
        }
    }
    if let Some(record) = dep.as_ref().and_then(|d| d.revert.as_ref()) {
        println!(
            "  rolled back by {}: traffic back on {} {} ms after the verdict",
            record.requested_by,
            record.back_to,
            record.time_to_revert_ms().unwrap_or_default()
        );
    }

    // Part 3: v4 goes live, its alarm fires during the bake window, traffic returns to v2.
    println!("\n— part 3: v4 is promoted, then its alarm fires —\n");
    let ami_v4 = fixture::image(&local, &spec.service, "v4", AppBehaviour::Healthy).await?;
    let deploy_v4 = deploy(&cli, &mut deliveries, &spec.service, "v4", &ami_v4).await?;
    let baking = |p: &Progress| p.step == Step::Finalize;
    follow(&local, &world.config, &mut progress, &deploy_v4, baking).await;
    let alarm = world
        .config
        .alarms
        .first()
        .cloned()
        .ok_or("the demo service has no alarm")?;
    let detail = json!({ "alarmName": alarm,
        "state": { "value": "ALARM", "reason": "Threshold Crossed: 57 target 5xx in 1 minute (threshold 10)" },
        "previousState": { "value": "OK", "reason": "Threshold Crossed" } });
    pump::publish(&local, "aws.cloudwatch", ALARM_STATE_CHANGE, &detail).await?;
    println!("→ CloudWatch alarm {alarm} went to ALARM (event on EventBridge)");
    match next_delivery(&mut deliveries).await? {
        Outcome::Revert(RevertOutcome::Reverted { note, .. }) => println!("  revert-service: {note}"),
        other => return Err(format!("unexpected outcome: {other:?}")),
    }
    let weights = local
        .ports
        .lb
        .traffic(&world.config.switch.points()[0])
        .await
        .map_err(|e| e.to_string())?;
    println!("  listener now: {}", describe_weights(&weights));
    let dep = local
        .ports
        .ledger
        .load(&spec.service, Some(&deploy_v4))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(record) = dep.and_then(|s| s.deployment).and_then(|d| d.revert) {
        println!(
            "  time-to-revert: {} ms from the alarm event, {} ms from its receipt",
            record.time_to_revert_ms().unwrap_or_default(),
            record.receipt_to_revert_ms().unwrap_or_default()
        );
    }
    println!("  cleaning up v4 (drain, terminate):");
    follow(
        &local,
        &world.config,
        &mut progress,
        &format!("{deploy_v4}-revert"),
        |_| false,
    )
    .await;
    load.abort();
    pump_task.abort();
    println!();
    cli.run(&["history", &spec.service]).await?;
    print_announced(&mut announced).await;
    drop(emulator);
    Ok(())
}

/// What the deployment events pipe put on the events bus, one line per release: each
/// `DeploymentStateChanged` in order (what a team's chat or pager would have received).
async fn print_announced(announced: &mut tokio::sync::broadcast::Receiver<serde_json::Value>) {
    // The last writes' records reach the pipe within its polling interval.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut by_version: Vec<(String, Vec<String>)> = Vec::new();
    let mut count = 0;
    while let Ok(detail) = announced.try_recv() {
        count += 1;
        let version = detail["version"].as_str().unwrap_or("?").to_string();
        let phase = match (detail["phase"].as_str(), detail["green_weight"].as_u64()) {
            (Some(p @ ("verifying" | "verified" | "shifting")), Some(w)) => format!("{p} {w} %"),
            (Some(p), _) => p.to_string(),
            (None, _) => "?".into(),
        };
        match by_version.iter_mut().find(|(v, _)| *v == version) {
            Some((_, phases)) => phases.push(phase),
            None => by_version.push((version, vec![phase])),
        }
    }
    println!(
        "
deployment events on the events bus (DeploymentStateChanged, one per change, from the ledger's stream): {count}"
    );
    for (version, phases) in by_version {
        println!("  {version}: {}", phases.join(" → "));
    }
}

/// The demo's steady load (requests per second through the listener).
const LOAD_RPS: u32 = 200;

/// Sends [`LOAD_RPS`] through the listener until aborted, printing every other second what
/// each version served and the 5xx.
async fn start_load(local: &Local, listener_arn: &str) -> Result<tokio::task::JoinHandle<()>, String> {
    let endpoint = local
        .sdk
        .endpoint_url()
        .ok_or("a local SDK configuration has an endpoint")?;
    let url = crate::data_plane::listener_url(endpoint, listener_arn).await?;
    let spec = LoadSpec::new(&format!("{url}/"), LOAD_RPS, Duration::from_secs(3600))?;
    Ok(tokio::spawn(async move {
        run_load(&spec, |second, tally| {
            if second % 2 == 0 {
                let versions: Vec<String> = tally.by_version.iter().map(|(v, n)| format!("{v} {n}")).collect();
                println!(
                    "          load      {} req/s: {} (5xx {})",
                    tally.answered(),
                    versions.join(", "),
                    tally.server_errors()
                );
            }
        })
        .await;
    }))
}

/// The `greenlight` CLI, pointed at the emulator and this installation.
struct Cli {
    binary: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Cli {
    fn new(endpoint: &str, names: &Names) -> Result<Cli, String> {
        let binary = crate::lambda_service::built_binary("greenlight");
        if !binary.exists() {
            return Err(format!(
                "{} not found: build the CLI first (`cargo build -p greenlight-cli`; `make demo` does)",
                binary.display()
            ));
        }
        let env = crate::client_environment(endpoint, names, "demo");
        Ok(Cli { binary, env })
    }

    /// Runs `greenlight <args>` as an engineer would, showing the command and its output.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        println!("$ greenlight {}", args.join(" "));
        let out = tokio::process::Command::new(&self.binary)
            .args(args)
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in stdout.lines() {
            println!("  {line}");
        }
        if !out.status.success() {
            return Err(format!(
                "greenlight {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(stdout)
    }
}

/// `greenlight deploy`: publishes `ImagePublished` as the build pipeline would, and waits for
/// start-deployment to take it; the deploy id.
async fn deploy(
    cli: &Cli,
    deliveries: &mut tokio::sync::broadcast::Receiver<pump::Delivery>,
    service: &str,
    version: &str,
    ami: &str,
) -> Result<String, String> {
    let reason = format!("demo rollout of {version}");
    let args = [
        "deploy",
        service,
        "--ami",
        ami,
        "--version",
        version,
        "--reason",
        &reason,
    ];
    cli.run(&args).await?;
    match next_delivery(deliveries).await? {
        Outcome::Start(StartOutcome::Started(out)) => {
            println!(
                "  {:>6}  {:<17} {:<10} {}",
                "+0.0s", "start-deployment", out.phase, out.note
            );
            Ok(out.deploy_id)
        }
        other => Err(format!("unexpected outcome: {other:?}")),
    }
}

async fn next_delivery(deliveries: &mut tokio::sync::broadcast::Receiver<pump::Delivery>) -> Result<Outcome, String> {
    let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
        .await
        .map_err(|_| "the event was not delivered within 30s")?
        .map_err(|e| e.to_string())?;
    delivery.result
}

/// Prints the progress of execution `execution` until it ends or `stop` accepts a step.
async fn follow(
    local: &Local,
    config: &ServiceConfig,
    progress: &mut tokio::sync::broadcast::Receiver<Progress>,
    execution: &str,
    stop: impl Fn(&Progress) -> bool,
) {
    loop {
        tokio::select! {
            ending = local.orchestrator.wait(execution) => {
                // Show what the last steps reported before the ending.
                while let Ok(p) = progress.try_recv() {
                    print_progress(local, config, &p).await;
                }
                match ending {
                    Some(Ending::Done(phase)) => println!("\n✔ {execution} ended: {phase}"),
                    Some(Ending::Failed(why)) => println!("\n✘ {execution} failed: {why}"),
                    None => println!("\n? {execution} was never started"),
                }
                return;
            }
            p = progress.recv() => {
                if let Ok(p) = p {
                    print_progress(local, config, &p).await;
                    if stop(&p) {
                        return;
                    }
                }
            }
        }
    }
}

async fn fleet_states(local: &Local, ids: &[String]) -> Result<String, String> {
    let fleet = local.ports.fleet.describe(ids).await.map_err(|e| e.to_string())?;
    Ok(fleet
        .iter()
        .map(|i| format!("{} {}", i.instance_id, i.state))
        .collect::<Vec<_>>()
        .join(", "))
}

/// `checkout-a 90% | checkout-b 10%`.
fn describe_weights(weights: &[(String, u8)]) -> String {
    weights
        .iter()
        .map(|(tg, w)| format!("{} {w}%", short_arn(tg)))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One line per step: time, step, phase, what it did; the listener's weights after a shift.
async fn print_progress(local: &Local, config: &ServiceConfig, p: &Progress) {
    println!("  {}", progress_line(local, config, p).await);
}

/// `+12.0s  shift-traffic     canary     …   [listener: checkout-a 50% | checkout-b 50%]`:
/// a step's time, name, phase and note; the first switch point's weights after a shift; the
/// next step when it waits.
pub(crate) async fn progress_line(local: &Local, config: &ServiceConfig, p: &Progress) -> String {
    let at = format!("+{:.1}s", p.elapsed_s);
    let out = match &p.result {
        Ok(out) => out,
        Err(why) => return format!("{at:>6}  {:<17} error: {why}", p.step.name()),
    };
    let mut line = format!("{at:>6}  {:<17} {:<10} {}", p.step.name(), out.phase, out.note);
    if p.step == Step::ShiftTraffic {
        if let Ok(weights) = local.ports.lb.traffic(&config.switch.points()[0]).await {
            line.push_str(&format!("   [listener: {}]", describe_weights(&weights)));
        }
    }
    if out.wait_s > 0 && out.next != END {
        line.push_str(&format!("   (next: {} in {}s)", out.next, out.wait_s));
    }
    line
}
