//! `greenlight-local up`: a local greenlight stack to play with, kept running until Ctrl-C.
//!
//! The emulator, greenlight's event routing (the pump) and its orchestrator, with the demo's
//! service `checkout` registered and live on `v1` behind its load balancer, and two images
//! built: `v2.4.0` (healthy) under the README's example AMI id, so that the README's
//! "Publishing an image" and "Rolling back" commands work against the stack as written, and
//! `v2.5.0` (its instances fail their health checks: the gates abort it). It prints the
//! environment to export, then one line per event delivered and per step run, for anything
//! an engineer does with the `greenlight` CLI, the AWS CLI or an SDK.

use crate::emulator::{repo_root, Emulator};
use crate::fixture::{self, AppBehaviour, Spec};
use crate::orchestrator::Progress;
use crate::pump::{self, Delivery, Outcome};
use crate::{Local, Names, DEFAULT_ACCESS_KEY};
use greenlight_core::ServiceConfig;
use greenlight_steps::{RevertOutcome, StartOutcome};
use tokio::sync::broadcast::error::RecvError;

/// The service the stack registers.
pub const SERVICE: &str = "checkout";
/// The healthy image's version and AMI id: the README's "Publishing an image" example.
pub const GOOD_VERSION: &str = "v2.4.0";
pub const GOOD_AMI: &str = "ami-0a1b2c3d4e5f60718";
/// The bad image's version (its instances fail their health checks).
pub const BAD_VERSION: &str = "v2.5.0";
/// The line printed once everything is up (tests wait for it).
pub const READY_LINE: &str = "greenlight-local: ready";

/// The dashboard's port unless `--dashboard-port` says otherwise (`greenlight dashboard`'s).
pub const DASHBOARD_PORT: u16 = 8577;

/// Options of `greenlight-local up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The emulator's loopback port (0: any free one).
    pub port: u16,
    /// The dashboard's loopback port (0: any free one).
    pub dashboard_port: u16,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            port: 0,
            dashboard_port: DASHBOARD_PORT,
        }
    }
}

impl UpOptions {
    /// Parses `up`'s arguments: `[--port N] [--dashboard-port N]`.
    pub fn parse(args: &[String]) -> Result<UpOptions, String> {
        let mut options = UpOptions::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--port" => {
                    let value = args.next().ok_or("up: --port needs a value")?;
                    options.port = value
                        .parse()
                        .map_err(|e| format!("up: --port {value:?}: {e} (a port number, 0 for any free one)"))?;
                }
                "--dashboard-port" => {
                    let value = args.next().ok_or("up: --dashboard-port needs a value")?;
                    options.dashboard_port = value.parse().map_err(|e| {
                        format!("up: --dashboard-port {value:?}: {e} (a port number, 0 for any free one)")
                    })?;
                }
                other => return Err(format!("up: unknown option {other:?} (see `greenlight-local help`)")),
            }
        }
        Ok(options)
    }
}

/// The registration: a canary 10 → 50 → 100 with 10 s between steps and a 2-minute bake
/// window, long enough to try a rollback by hand on either side of 100 %.
fn spec() -> Spec {
    Spec {
        service: SERVICE.into(),
        canary_steps: vec![10, 50, 100],
        step_wait_s: 10,
        bake_window_s: 120,
        deregistration_delay_s: 5,
        poll_interval_s: 1,
        max_polls: 30,
        fleet_size: 2,
        // The smoke test goes through the load balancer, on the deployment's test route.
        smoke_through_load_balancer: true,
        ..Spec::quick(SERVICE)
    }
}

/// Runs the stack until Ctrl-C, printing to stdout.
pub async fn run(options: UpOptions) -> Result<(), String> {
    let _ = std::fs::create_dir_all(repo_root().join("target"));
    let log = repo_root().join("target/up-emulator.log");
    println!(
        "greenlight-local up: starting the local AWS emulator (log: {})",
        log.display()
    );
    let emulator = Emulator::start_on(Some(log), options.port).map_err(|e| {
        if options.port == 0 {
            e
        } else {
            format!("{e} (is port {} free? `--port 0` takes any free one)", options.port)
        }
    })?;
    let names = Names::default();
    let local = Local::connect(&emulator.endpoint, names.clone()).await?;
    let spec = spec();
    let world = fixture::build(&local, &spec).await?;
    let good = fixture::image_with_id(&local, SERVICE, GOOD_VERSION, AppBehaviour::Healthy, GOOD_AMI).await?;
    let bad = fixture::image(&local, SERVICE, BAD_VERSION, AppBehaviour::Unhealthy).await?;
    let endpoint = emulator.endpoint.clone();
    let listener_url = crate::data_plane::listener_url(&endpoint, &world.listener_arn).await?;
    let (_pump, mut deliveries) = pump::spawn(local.clone());
    let mut progress = local.orchestrator.subscribe();
    // The ledger's stream → announce-deployments → the events bus (DeploymentStateChanged).
    let events_pipe = crate::pipe::spawn(&local, crate::pipe::Enrichment::InProcess).await?;
    let mut announced = events_pipe.subscribe();

    println!(
        "\nservice {SERVICE}: v1 live on {} behind its load balancer at {listener_url}, canary {:?}, bake {} s",
        world.blue_instances.join(", "),
        spec.canary_steps,
        spec.bake_window_s
    );
    println!("images:  {GOOD_VERSION} {good} (healthy)   {BAD_VERSION} {bad} (fails its health checks)");
    let cli = crate::lambda_service::built_binary("greenlight");
    let cli = if cli.exists() {
        format!("{} (or `cargo install --path shared/cli`)", cli.display())
    } else {
        "`cargo install --path shared/cli` (or `cargo build -p greenlight-cli`)".into()
    };
    println!("the greenlight CLI: {cli}");
    // The dashboard, as an engineer would start it with the environment below (its port
    // taken: any free one).
    let dashboard = match crate::start_dashboard(&endpoint, &names, DEFAULT_ACCESS_KEY, options.dashboard_port).await {
        Err(_) if options.dashboard_port != 0 => crate::start_dashboard(&endpoint, &names, DEFAULT_ACCESS_KEY, 0).await,
        other => other,
    };
    let _dashboard = match dashboard {
        Ok((child, url)) => {
            println!("the dashboard: {url}");
            Some(child)
        }
        Err(why) => {
            println!("the dashboard: not started ({why})");
            None
        }
    };
    println!("\nIn another terminal (the README's \"Publishing an image\" and \"Rolling back\" work as written):\n");
    for (key, value) in environment(&endpoint, &names) {
        println!("export {key}={value}");
    }
    println!(
        "\ngreenlight status {SERVICE}\n\
         greenlight deploy {SERVICE} --ami {good} --version {GOOD_VERSION} --watch\n\
         greenlight rollback {SERVICE} --reason \"p99 doubled\"\n\
         greenlight deploy {SERVICE} --ami {bad} --version {BAD_VERSION} --watch   # the gates abort it\n\
         aws events put-events --entries '[{{\"EventBusName\":\"{bus}\",\"Source\":\"greenlight\",\"DetailType\":\"ImagePublished\",\"Detail\":\"{{\\\"service\\\":\\\"{SERVICE}\\\",\\\"version\\\":\\\"{GOOD_VERSION}\\\",\\\"ami\\\":\\\"{good}\\\"}}\"}}]'\n\
         curl {listener_url}/\n",
        bus = names.command_bus
    );
    // Ctrl-C's SIGINT ends this process and the emulator (same process group; it also exits
    // when its stdin, our pipe, closes), and everything in it: nothing to clean up here.
    println!("{READY_LINE} (Ctrl-C stops everything)\n");
    loop {
        tokio::select! {
            delivery = deliveries.recv() => match delivery {
                Ok(delivery) => print_delivery(&delivery),
                Err(RecvError::Lagged(n)) => println!("({n} deliveries not shown)"),
                Err(RecvError::Closed) => return Err("the event pump stopped".into()),
            },
            step = progress.recv() => match step {
                Ok(step) => print_step(&local, &world.config, &step).await,
                Err(RecvError::Lagged(n)) => println!("({n} steps not shown)"),
                Err(RecvError::Closed) => return Err("the orchestrator stopped".into()),
            },
            event = announced.recv() => match event {
                Ok(detail) => println!("{}", announced_line(&detail)),
                Err(RecvError::Lagged(n)) => println!("({n} deployment events not shown)"),
                Err(RecvError::Closed) => return Err("the deployment events pipe stopped".into()),
            },
        }
    }
}

/// `[announced] checkout v2.0.0: verified → shifting (green 50 %)`: a `DeploymentStateChanged`
/// the pipe put on the events bus.
fn announced_line(detail: &serde_json::Value) -> String {
    let text = |key: &str| detail[key].as_str().unwrap_or("-").to_string();
    let waiting = detail["waiting"]
        .as_str()
        .map(|w| format!(", waiting: {w}"))
        .unwrap_or_default();
    format!(
        "[announced] {} {}: {} → {} (green {} %{waiting})",
        text("service"),
        text("version"),
        detail["previous_phase"].as_str().unwrap_or("new"),
        text("phase"),
        detail["green_weight"]
    )
}

/// What to export to point the `greenlight` CLI, the AWS CLI and the SDKs at the stack.
pub fn environment(endpoint: &str, names: &Names) -> Vec<(&'static str, String)> {
    crate::client_environment(endpoint, names, DEFAULT_ACCESS_KEY)
}

/// `[event] ImagePublished → deployment checkout-… started: …`.
fn print_delivery(delivery: &Delivery) {
    let kind = delivery.event["detail-type"]
        .as_str()
        .or_else(|| delivery.event["Records"].as_array().map(|_| "S3 notification"))
        .unwrap_or("event");
    let what = match &delivery.result {
        Ok(outcome) => outcome_line(outcome),
        Err(why) if delivery.retrying => format!("failed, retried: {why}"),
        Err(why) => format!("failed: {why}"),
    };
    println!("[event] {kind} → {what}");
}

/// One line for what a handler made of an event.
fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Start(StartOutcome::Started(out)) => format!("deployment {} started: {}", out.deploy_id, out.note),
        Outcome::Start(StartOutcome::Queued { deploy_id, note, .. }) => {
            format!("deployment {deploy_id} queued: {note}")
        }
        Outcome::Start(StartOutcome::Ignored(why)) | Outcome::Revert(RevertOutcome::Ignored { why }) => {
            format!("nothing to do: {why}")
        }
        Outcome::Revert(RevertOutcome::Reverted { deploy_id, note, .. }) => format!("{deploy_id} rolled back: {note}"),
        Outcome::Revert(RevertOutcome::Redeploying {
            deploy_id,
            version,
            note,
            ..
        }) => format!("redeploying {version} as {deploy_id}: {note}"),
        Outcome::Revert(RevertOutcome::Held { deploy_id, note, .. }) => format!("{deploy_id} held: {note}"),
        other => format!("{other:?}"),
    }
}

/// `[checkout-…]   +12.0s  shift-traffic     canary     …` (the demo's step line).
async fn print_step(local: &Local, config: &ServiceConfig, p: &Progress) {
    println!(
        "[{}] {}",
        p.deploy_id,
        crate::demo::progress_line(local, config, p).await
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_takes_a_port_and_refuses_anything_else_clearly() {
        assert_eq!(UpOptions::parse(&[]).unwrap().port, 0);
        assert_eq!(UpOptions::parse(&["--port".into(), "4599".into()]).unwrap().port, 4599);
        let missing = UpOptions::parse(&["--port".into()]).unwrap_err();
        assert!(missing.contains("needs a value"), "{missing}");
        let bad = UpOptions::parse(&["--port".into(), "http".into()]).unwrap_err();
        assert!(bad.contains("a port number"), "{bad}");
        let unknown = UpOptions::parse(&["--verbose".into()]).unwrap_err();
        assert!(unknown.contains("unknown option \"--verbose\""), "{unknown}");
        assert_eq!(UpOptions::parse(&[]).unwrap().dashboard_port, DASHBOARD_PORT);
        let both = UpOptions::parse(&["--dashboard-port".into(), "0".into(), "--port".into(), "1".into()]).unwrap();
        assert_eq!((both.port, both.dashboard_port), (1, 0));
        let bad = UpOptions::parse(&["--dashboard-port".into(), "-1".into()]).unwrap_err();
        assert!(bad.contains("--dashboard-port \"-1\""), "{bad}");
    }

    #[test]
    fn the_environment_points_every_client_at_the_stack_and_the_readmes_bus() {
        let env = environment("http://127.0.0.1:4599", &Names::default());
        let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_ENDPOINT_URL"), Some("http://127.0.0.1:4599"));
        assert_eq!(
            get("AWS_DEFAULT_REGION"),
            Some("us-east-1"),
            "the AWS CLI v1 reads this one"
        );
        // The README's put-events commands name the bus `greenlight`.
        assert_eq!(get("GREENLIGHT_EVENT_BUS"), Some("greenlight"));
        assert_eq!(get("GREENLIGHT_TABLE"), Some("greenlight"));
    }
}
