//! The demo (README's first command), on the local emulator, shown live step by step:
//! 1. a canary rollout of v2 over v1: green launched, gated, 10 → 50 → 100 %, bake, v1 retired;
//! 2. v3 promoted the same way, then its CloudWatch alarm fires during the bake window and
//!    traffic returns to v2 with one listener change (time-to-revert printed), v3 cleaned up;
//!
//! and finally the ledger's history of the service.

use crate::emulator::{repo_root, Emulator};
use crate::fixture::{self, AppBehaviour, Spec};
use crate::orchestrator::{Ending, Progress};
use crate::pump::Outcome;
use crate::{pump, Local, Names};
use greenlight_core::config::NewImagePolicy;
use greenlight_core::decide::short_arn;
use greenlight_core::inbound::{ALARM_STATE_CHANGE, IMAGE_PUBLISHED, SOURCE};
use greenlight_core::plan::{Step, END};
use greenlight_core::ServiceConfig;
use greenlight_steps::{RevertOutcome, StartOutcome};
use serde_json::json;
use std::time::Duration;

/// Runs the demo, printing progress to stdout.
pub async fn run() -> Result<(), String> {
    let log = repo_root().join("target/demo-emulator.log");
    let _ = std::fs::create_dir_all(repo_root().join("target"));
    println!("greenlight demo — a canary rollout, then an alarm-driven rollback, on a local AWS emulator\n");
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

    let (pump_task, mut deliveries) = pump::spawn(local.clone());
    let mut progress = local.orchestrator.subscribe();

    // Part 1: a canary rollout of v2, bake, v1 retired.
    let deploy_v2 = publish_image(&local, &mut deliveries, &spec.service, "v2", &ami_v2).await?;
    follow(&local, &world.config, &mut progress, &deploy_v2, |_| false).await;
    println!("\nv1 fleet now: {}", fleet_states(&local, &world.blue_instances).await?);

    // Part 2: v3 goes live, its alarm fires during the bake window, traffic returns to v2.
    println!("\n— part 2: v3 is promoted, then its alarm fires —\n");
    let ami_v3 = fixture::image(&local, &spec.service, "v3", AppBehaviour::Healthy).await?;
    let deploy_v3 = publish_image(&local, &mut deliveries, &spec.service, "v3", &ami_v3).await?;
    let baking = |p: &Progress| p.step == Step::Finalize;
    follow(&local, &world.config, &mut progress, &deploy_v3, baking).await;
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
        .traffic(&world.config.switch)
        .await
        .map_err(|e| e.to_string())?;
    println!("  listener now: {}", describe_weights(&weights));
    let dep = local
        .ports
        .ledger
        .load(&spec.service, Some(&deploy_v3))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(record) = dep.and_then(|s| s.deployment).and_then(|d| d.revert) {
        println!(
            "  time-to-revert: {} ms from the alarm event, {} ms from its receipt",
            record.time_to_revert_ms().unwrap_or_default(),
            record.receipt_to_revert_ms().unwrap_or_default()
        );
    }
    println!("  cleaning up v3 (drain, terminate):");
    follow(
        &local,
        &world.config,
        &mut progress,
        &format!("{deploy_v3}-revert"),
        |_| false,
    )
    .await;
    pump_task.abort();
    print_history(&local, &spec.service).await?;
    drop(emulator);
    Ok(())
}

/// Publishes `ImagePublished` and waits for start-deployment to take it; the deploy id.
async fn publish_image(
    local: &Local,
    deliveries: &mut tokio::sync::broadcast::Receiver<pump::Delivery>,
    service: &str,
    version: &str,
    ami: &str,
) -> Result<String, String> {
    let detail = json!({ "service": service, "version": version, "ami": ami,
                         "requested_by": "demo", "reason": format!("demo rollout of {version}") });
    let event_id = pump::publish(local, SOURCE, IMAGE_PUBLISHED, &detail).await?;
    println!("→ published {IMAGE_PUBLISHED} {version} ({ami}) on EventBridge (event {event_id})");
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
    let at = format!("+{:.1}s", p.elapsed_s);
    let out = match &p.result {
        Ok(out) => out,
        Err(why) => return println!("  {at:>6}  {:<17} error: {why}", p.step.name()),
    };
    let mut line = format!("  {at:>6}  {:<17} {:<10} {}", p.step.name(), out.phase, out.note);
    if p.step == Step::ShiftTraffic {
        if let Ok(weights) = local.ports.lb.traffic(&config.switch).await {
            line.push_str(&format!("   [listener: {}]", describe_weights(&weights)));
        }
    }
    if out.wait_s > 0 && out.next != END {
        line.push_str(&format!("   (next: {} in {}s)", out.next, out.wait_s));
    }
    println!("{line}");
}

/// Prints the ledger's history of `service` as a table.
pub async fn print_history(local: &Local, service: &str) -> Result<(), String> {
    let history = local.ports.ledger.history(service).await.map_err(|e| e.to_string())?;
    println!("\nledger history of {service}:");
    println!(
        "  {:<24} {:<8} {:<8} {:<22} {:<10} {:>9} {:>9}  requested by",
        "deployment", "from", "to", "ami", "outcome", "healthy", "duration"
    );
    for d in history {
        println!(
            "  {:<24} {:<8} {:<8} {:<22} {:<10} {:>9} {:>9}  {}",
            d.deploy_id,
            d.blue.as_ref().map(|b| b.version.as_str()).unwrap_or("-"),
            d.version,
            d.ami,
            d.phase.name(),
            d.healthy_at
                .map(|t| format!("{}s", t.saturating_sub(d.created_at)))
                .unwrap_or("-".into()),
            format!("{}s", d.updated_at.saturating_sub(d.created_at)),
            d.requested_by
        );
        for mark in &d.timeline {
            println!("      {:<10} {}", mark.phase, mark.note);
        }
    }
    Ok(())
}
