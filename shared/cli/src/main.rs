//! `greenlight`, the CLI for engineers: list services, show a service's status (live and warm
//! versions, the deployment in flight, target health, listener weights, with `--watch`), its
//! history, and deploy, roll back, abort, promote or drill by publishing greenlight's events
//! on EventBridge; `dashboard` serves the same views and verbs as a live web page.
//!
//! The CLI NEVER changes fleets or listeners: it reads the ledger and AWS (DynamoDB, ELB
//! Describe*, STS) and acts only by publishing events (plus `service register`, which writes
//! the registration to the ledger through Ledger::register_service).
//!
//! Exit codes: 0 ok, 1 refused or failed, 2 usage.

mod aws;
mod cli;
mod commands;
mod dashboard;
mod error;
mod publish;
mod render;
mod view;
mod watch;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenlight: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
