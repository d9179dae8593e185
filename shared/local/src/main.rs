//! `greenlight-local`: run greenlight on this machine.
//!
//! ```text
//! greenlight-local demo    canary rollout, then an alarm-driven rollback, on the local AWS emulator
//! greenlight-local asl     print the Step Functions definition generated from the plan
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
            window, and traffic goes back to v2 (time-to-revert printed).
            Needs the venv from `make setup` (or GREENLIGHT_PYTHON).
    asl     Print the Step Functions definition generated from the Rust plan
            (infra/statemachine.asl.json is this output; a test keeps them equal).
    help    Show this text.
";

#[tokio::main]
async fn main() {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "demo" => {
            if std::env::var_os("RUST_LOG").is_none() {
                std::env::set_var("RUST_LOG", "warn");
            }
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .init();
            greenlight_local::demo::run().await
        }
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
