//! Following a deployment until it ends (`status --watch`, `deploy --watch`,
//! `rollback --watch`): the status is read every second and redrawn on a terminal, or printed
//! as one line per change otherwise; in JSON mode those lines go to stderr and only the final
//! document goes to stdout.

use crate::aws::Aws;
use crate::cli::Output;
use crate::error::{CliError, CliResult};
use crate::render;
use crate::view::{self, Status};
use greenlight_core::model::PhaseName;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How often the ledger and the load balancer are read while watching.
pub const TICK: Duration = Duration::from_secs(1);

/// Where progress goes, and how.
pub struct Watcher {
    output: Output,
    /// Redraw in place (a terminal, table output).
    redraw: bool,
    last: Option<String>,
}

impl Watcher {
    pub fn new(output: Output) -> Self {
        Watcher {
            output,
            redraw: output == Output::Table && std::io::stdout().is_terminal(),
            last: None,
        }
    }

    /// A progress message: stdout for tables, stderr in JSON mode (stdout carries one document).
    pub fn note(&self, text: &str) {
        match self.output {
            Output::Table => println!("{text}"),
            Output::Json => eprintln!("{text}"),
        }
    }

    /// Shows a status: redrawn on a terminal, else a line when something changed.
    pub fn show(&mut self, status: &Status) {
        if self.redraw {
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "\x1b[H\x1b[2J{}\nwatching {} (Ctrl-C to stop watching; nothing is changed by stopping)\n",
                render::status(status),
                status.service
            );
            let _ = out.flush();
            return;
        }
        let (key, line) = render::status_line(status);
        if self.last.as_deref() != Some(key.as_str()) {
            self.note(&line);
            self.last = Some(key);
        }
    }
}

/// When a watch stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The deployment ended.
    Ended,
    /// It ended, or it is held for an engineer (`on_failure: hold`: nothing moves until
    /// someone decides, so watching longer shows nothing).
    EndedOrHeld,
}

/// Follows deployment `deploy_id` of `service` until `until`; returns its last status.
/// If it is not in the ledger yet, waits for it (while it is queued, as long as it takes;
/// otherwise up to `start_timeout`).
pub async fn follow(
    aws: &Aws,
    service: &str,
    deploy_id: &str,
    watcher: &mut Watcher,
    start_timeout: Duration,
    until: Until,
) -> CliResult<Status> {
    let mut waiting_since = tokio::time::Instant::now();
    let mut said_queued = false;
    loop {
        let state = aws.load(service, Some(deploy_id)).await?;
        if state.deployment.is_none() {
            if let Some(queued) = &state.service.queued {
                if !said_queued {
                    let behind = state.service.active.as_deref().unwrap_or("the deployment in flight");
                    watcher.note(&format!(
                        "{} {} is queued behind {behind}; waiting for it to start",
                        queued.version, queued.ami
                    ));
                    said_queued = true;
                }
                waiting_since = tokio::time::Instant::now();
            } else if waiting_since.elapsed() > start_timeout {
                return Err(CliError::failed(format!(
                    "deployment {deploy_id} did not start within {}s: greenlight refused the event or has not \
                     received it (check start-deployment's logs; `greenlight history {service}`)",
                    start_timeout.as_secs()
                )));
            }
            tokio::time::sleep(TICK).await;
            continue;
        }
        let status = view::status(aws, service, Some(deploy_id)).await?;
        watcher.show(&status);
        let held = until == Until::EndedOrHeld && status.deployment.as_ref().is_some_and(|d| d.held.is_some());
        if held || status.deployment.as_ref().is_some_and(|d| d.ended) {
            return Ok(status);
        }
        tokio::time::sleep(TICK).await;
    }
}

/// One sentence on how a followed deployment ended.
pub fn ending(status: &Status) -> String {
    match &status.deployment {
        Some(d) if d.phase == PhaseName::Succeeded => format!(
            "deployment {} succeeded: {} {} is live",
            d.deploy_id, status.service, d.version
        ),
        Some(d) if d.held.is_some() => {
            let h = d.held.as_ref().expect("guarded");
            format!(
                "deployment {} of {} {} is HELD at {}%: {} failed ({}); nothing moves until {}",
                d.deploy_id, status.service, d.version, h.weight, h.cause, h.reason, h.waiting_for
            )
        }
        Some(d) => format!(
            "deployment {} of {} {} {}: {}",
            d.deploy_id,
            status.service,
            d.version,
            d.phase,
            d.abort_reason.as_deref().unwrap_or("-")
        ),
        None => format!("{}: no deployment", status.service),
    }
}
