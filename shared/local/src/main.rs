//! `greenlight-local`: run greenlight on this machine.
//!
//! ```text
//! greenlight-local demo    canary rollout, then an alarm-driven rollback, on the local AWS emulator
//! greenlight-local up      a local stack to play with (emulator, greenlight, a live service)
//! greenlight-local asl     print the Step Functions definition generated from the plan
//! greenlight-local load    a steady rate of requests through an emulated ALB listener
//! ```

const HELP: &str = "\
greenlight-local — greenlight on one machine, no AWS account needed

USAGE:
    greenlight-local <COMMAND>

COMMANDS:
    demo    Start the local AWS emulator, register a demo service (ALB, blue/green target
            groups, v1 fleet), publish image v2 and show the canary rollout live:
            green launched → healthy → smoke test → 10% → 50% → 100% → bake → v1 retired.
            Then v3 rolls out the same way, its CloudWatch alarm fires during the bake
            window, and traffic goes back to v2 (time-to-revert printed). `greenlight
            dashboard` serves the demo live while it runs (its URL is printed).
            Needs the venv from `make setup` (or GREENLIGHT_PYTHON).
    up      A local greenlight to play with, until Ctrl-C: the emulator, greenlight's event
            routing and orchestrator, service `checkout` live on v1 behind its load
            balancer, and images v2.4.0 (healthy, AMI ami-0a1b2c3d4e5f60718 as in the
            README) and v2.5.0 (fails its health checks). Prints the environment to export
            for the greenlight CLI, the AWS CLI and the SDKs, and the URL of `greenlight
            dashboard` serving the stack, then every event delivered and every step run.
            The README's sections `Publishing an image` and `Rolling back` work against it
            as written.
              --port N             the emulator's loopback port (default 0: any free one)
              --dashboard-port N   the dashboard's loopback port (default 8577; any free
                                   one if that is taken)
    asl     Print the Step Functions definition generated from the Rust plan
            (infra/statemachine.asl.json is this output; a test keeps them equal).
    load    Send a steady rate of GET requests through a listener of the emulator's ALB data
            plane (open loop, concurrent, at most 256 in flight) and print one line per
            second (requests, answers per app version, 5xx, p99 latency), then a summary.
              --url http://127.0.0.1:PORT[/path]   where to send them, or
              --listener <listener arn>            the listener (its URL is asked from the
                                                   emulator at --endpoint, default
                                                   $AWS_ENDPOINT_URL)
              --rps N          requests per second (default 10)
              --seconds S      how long (default 10)
              --header K:V     an extra request header (repeatable)
    help    Show this text.
";

/// `greenlight-local load ...`: parses the options, runs the load, prints its lines.
async fn load(args: &[String]) -> Result<(), String> {
    let (mut url, mut listener, mut endpoint) = (None, None, std::env::var("AWS_ENDPOINT_URL").ok());
    let (mut rps, mut seconds, mut headers) = (10u32, 10u64, Vec::new());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--listener" => listener = Some(value()?),
            "--endpoint" => endpoint = Some(value()?),
            "--rps" => rps = value()?.parse().map_err(|e| format!("--rps: {e}"))?,
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--header" => {
                let header = value()?;
                let (name, val) = header
                    .split_once(':')
                    .ok_or_else(|| format!("--header {header:?}: K:V is required"))?;
                headers.push((name.trim().to_string(), val.trim().to_string()));
            }
            other => return Err(format!("load: unknown option {other:?} (see `greenlight-local help`)")),
        }
    }
    let url = match (url, listener) {
        (Some(url), None) => url,
        (None, Some(arn)) => {
            let endpoint = endpoint.ok_or("--listener needs --endpoint or AWS_ENDPOINT_URL (the emulator)")?;
            greenlight_local::data_plane::listener_url(&endpoint, &arn).await?
        }
        _ => return Err("load: give either --url or --listener".into()),
    };
    let mut spec = greenlight_local::load::LoadSpec::new(&url, rps, std::time::Duration::from_secs(seconds))?;
    for (name, value) in &headers {
        spec = spec.header(name, value);
    }
    println!("{rps} requests/s to {url} for {seconds} s");
    let summary = greenlight_local::load::run_load(&spec, |second, tally| println!("{second:>4} s  {tally}")).await;
    println!("{summary}");
    Ok(())
}

/// The handlers' logs on stderr, from warnings up unless RUST_LOG says otherwise (stdout is
/// the demo's and the stack's own output).
fn log_warnings_to_stderr() {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "demo" => {
            log_warnings_to_stderr();
            greenlight_local::demo::run().await
        }
        "up" => match greenlight_local::up::UpOptions::parse(&std::env::args().skip(2).collect::<Vec<_>>()) {
            Ok(options) => {
                log_warnings_to_stderr();
                greenlight_local::up::run(options).await
            }
            Err(why) => {
                eprint!("{why}\n\n{HELP}");
                std::process::exit(2);
            }
        },
        "load" => load(&std::env::args().skip(2).collect::<Vec<_>>()).await,
        "asl" => {
            let definition = greenlight_core::plan::state_machine_definition();
            println!("{}", serde_json::to_string_pretty(&definition).expect("json"));
            Ok(())
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => {
            eprint!("unknown command {other:?}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    if let Err(why) = result {
        eprintln!("error: {why}");
        std::process::exit(1);
    }
}
