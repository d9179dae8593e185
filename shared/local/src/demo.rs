//! The demo (README's first command): a full canary rollout of v2 over v1 on the local
//! emulator, shown live step by step, ending with the ledger's history of the service.

use crate::emulator::{repo_root, Emulator};
use crate::fixture::{self, AppBehaviour, Spec};
use crate::orchestrator::{Ending, Progress};
use crate::pump::Outcome;
use crate::{pump, Local, Names};
use greenlight_core::decide::short_arn;
use greenlight_core::inbound::{IMAGE_PUBLISHED, SOURCE};
use greenlight_core::plan::{Step, END};
use greenlight_core::ServiceConfig;
use greenlight_steps::StartOutcome;
use serde_json::json;
use std::time::Duration;

/// Runs the demo, printing progress to stdout.
pub async fn run() -> Result<(), String> {
    let log = repo_root().join("target/demo-emulator.log");
    let _ = std::fs::create_dir_all(repo_root().join("target"));
    println!("greenlight demo — blue/green canary rollout on a local AWS emulator\n");
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
        bake_window_s: 6,
        deregistration_delay_s: 2,
        poll_interval_s: 1,
        max_polls: 20,
        fleet_size: 2,
        switch_by_rule: false,
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
    let detail = json!({ "service": spec.service, "version": "v2", "ami": ami_v2,
                         "requested_by": "demo", "reason": "demo rollout" });
    let event_id = pump::publish(&local, SOURCE, IMAGE_PUBLISHED, &detail).await?;
    println!("→ published {IMAGE_PUBLISHED} v2 ({ami_v2}) on EventBridge (event {event_id})");
    let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
        .await
        .map_err(|_| "the event did not reach start-deployment within 30s")?
        .map_err(|e| e.to_string())?;
    let deploy_id = match delivery.result? {
        Outcome::Start(StartOutcome::Started(out)) => {
            println!(
                "  {:>6}  {:<17} {:<10} {}",
                "+0.0s", "start-deployment", out.phase, out.note
            );
            out.deploy_id
        }
        other => return Err(format!("unexpected outcome: {other:?}")),
    };
    loop {
        tokio::select! {
            ending = local.orchestrator.wait(&deploy_id) => {
                // Show what the last steps reported before the ending.
                while let Ok(p) = progress.try_recv() {
                    print_progress(&local, &world.config, &p).await;
                }
                match ending {
                    Some(Ending::Done(phase)) => println!("\n✔ deployment {deploy_id} ended: {phase}"),
                    Some(Ending::Failed(why)) => println!("\n✘ deployment {deploy_id} failed: {why}"),
                    None => println!("\n? deployment {deploy_id} was never started"),
                }
                break;
            }
            p = progress.recv() => {
                if let Ok(p) = p {
                    print_progress(&local, &world.config, &p).await;
                }
            }
        }
    }
    pump_task.abort();
    print_history(&local, &spec.service).await?;
    let blue = local
        .ports
        .fleet
        .describe(&world.blue_instances)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "\nv1 fleet now: {}",
        blue.iter()
            .map(|i| format!("{} {}", i.instance_id, i.state))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(emulator);
    Ok(())
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
            let colour = |tg: &str| if tg == config.target_groups[0] { "blue" } else { "green" };
            let shown: Vec<String> = weights.iter().map(|(tg, w)| format!("{} {w}%", colour(tg))).collect();
            line.push_str(&format!("   [listener: {}]", shown.join(" | ")));
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
