//! Lambda wiring shared by every function binary: JSON logs, AWS clients built once outside
//! the handler, and the handler itself (`service_fn`). A function's `main.rs` is one call:
//! `greenlight_steps::lambda::run(Step::CheckHealth)` (or [`run_revert_service`],
//! [`run_steer_deployment`]).
//!
//! Environment: `GREENLIGHT_TABLE`, `GREENLIGHT_BUCKET`, `GREENLIGHT_STATE_MACHINE_ARN`
//! (start-deployment only), optional `GREENLIGHT_MANIFEST_PREFIX` (default `releases/`) and
//! `GREENLIGHT_REPORT_PREFIX` (default `reports/`), `GREENLIGHT_DEFAULT_BAKE_WINDOW_S` (the
//! bake window of a registration that sets none; default [`DEFAULT_BAKE_WINDOW_S`]).

use crate::{revert_service, run_step, start_deployment, steer_deployment, StartOutcome, StepError};
use greenlight_adapters::aws::{aws_ports, lambda_sdk_config, AwsClients, Installation, SfnOrchestrator};
use greenlight_adapters::Ports;
use greenlight_core::config::DEFAULT_BAKE_WINDOW_S;
use greenlight_core::inbound::MANIFEST_PREFIX;
use greenlight_core::plan::{Step, StepInput};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use std::sync::Arc;

/// Default key prefix of deployment reports.
pub const REPORT_PREFIX: &str = "reports/";

/// Runs `step` as a Lambda function until the runtime stops it.
pub async fn run(step: Step) -> Result<(), lambda_runtime::Error> {
    serve(move |ports, payload| handle(ports, step, payload)).await
}

/// Runs revert-service (rollback requests and alarm state changes) as a Lambda function.
pub async fn run_revert_service() -> Result<(), lambda_runtime::Error> {
    serve(|ports, payload| async move { as_response(revert_service(ports, &payload).await?) }).await
}

/// Runs steer-deployment (engineers' abort and promote requests) as a Lambda function.
pub async fn run_steer_deployment() -> Result<(), lambda_runtime::Error> {
    serve(|ports, payload| async move { as_response(steer_deployment(ports, &payload).await?) }).await
}

/// JSON logs, the AWS clients built once (before the first event, for the life of the
/// process), and `handler` for every event until the runtime stops the process.
async fn serve<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(&'static Ports, Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, StepError>>,
{
    init_tracing();
    let ports: &'static Ports = Box::leak(Box::new(ports_from_env().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        handler(ports, event.payload)
    }))
    .await
}

fn as_response(outcome: impl serde::Serialize) -> Result<Value, StepError> {
    Ok(serde_json::to_value(outcome).unwrap_or_default())
}

/// A failed invocation as Lambda reports it: the error type is what a Step Functions
/// `Retry`/`Catch` matches on (`greenlight.Rejected`, `greenlight.Refused`,
/// `greenlight.Transient`, `greenlight.AwsError`).
impl From<StepError> for lambda_runtime::Diagnostic {
    fn from(error: StepError) -> Self {
        let error_type = match &error {
            StepError::Rejected(_) => "greenlight.Rejected",
            StepError::Refused(_) => "greenlight.Refused",
            e if e.is_retryable() => greenlight_core::plan::TRANSIENT_ERROR,
            StepError::Adapter(_) => "greenlight.AwsError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// JSON log lines carrying the current span's fields (service, deploy id) on every line, at
/// the levels `RUST_LOG` sets ([`log_filter`]).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .finish();
    let _ = subscriber
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .try_init();
}

/// The log filter of a `RUST_LOG` value: a default level and per-crate levels
/// (`info,greenlight_steps=debug`), the template's `LogLevel` syntax. `info` when unset or
/// unreadable. (Span and field filters are not supported: they need `env-filter`'s regex
/// engine, about 0.18 MB of code per binary by `cargo bloat`.)
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    let info = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => info(),
        Some(value) => value.parse().unwrap_or_else(|e| {
            eprintln!("RUST_LOG={value:?} is not a log filter ({e}); logging at info");
            info()
        }),
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set (see infra/template.yaml)"))
}

/// AWS adapters configured from the environment.
pub async fn ports_from_env() -> Result<Ports, String> {
    let sdk = lambda_sdk_config().await;
    let clients = AwsClients::new(&sdk);
    let orchestrator = SfnOrchestrator {
        client: clients.sfn.clone(),
        state_machine_arn: std::env::var("GREENLIGHT_STATE_MACHINE_ARN").unwrap_or_default(),
    };
    let default_bake_window_s = match std::env::var("GREENLIGHT_DEFAULT_BAKE_WINDOW_S") {
        Ok(text) => text.parse().map_err(|_| {
            format!("GREENLIGHT_DEFAULT_BAKE_WINDOW_S={text:?} is not a number of seconds (see infra/template.yaml)")
        })?,
        Err(_) => DEFAULT_BAKE_WINDOW_S,
    };
    let installation = Installation {
        table: env("GREENLIGHT_TABLE")?,
        bucket: env("GREENLIGHT_BUCKET")?,
        report_prefix: std::env::var("GREENLIGHT_REPORT_PREFIX").unwrap_or_else(|_| REPORT_PREFIX.into()),
        manifest_prefix: std::env::var("GREENLIGHT_MANIFEST_PREFIX").unwrap_or_else(|_| MANIFEST_PREFIX.into()),
        default_bake_window_s,
    };
    Ok(aws_ports(&clients, &installation, Arc::new(orchestrator)))
}

/// One invocation: an EventBridge event for start-deployment, a [`StepInput`] otherwise.
pub async fn handle(ports: &Ports, step: Step, payload: Value) -> Result<Value, StepError> {
    match step {
        Step::StartDeployment => match start_deployment(ports, &payload).await? {
            StartOutcome::Started(out) => Ok(serde_json::to_value(out).unwrap_or_default()),
            StartOutcome::Ignored(why) => Ok(json!({ "ignored": why })),
            StartOutcome::Queued {
                deploy_id,
                behind,
                note,
            } => Ok(json!({ "queued": deploy_id, "behind": behind, "note": note })),
        },
        step => {
            let input: StepInput = serde_json::from_value(payload).map_err(|e| {
                StepError::Rejected(format!(
                    "{} expects {{\"service\", \"deploy_id\"}}: {}",
                    step.name(),
                    greenlight_core::ids::sanitize(&e.to_string())
                ))
            })?;
            Ok(serde_json::to_value(run_step(ports, step, &input).await?).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_a_default_level_and_per_crate_levels() {
        let unset = log_filter(None);
        assert!(unset.would_enable("greenlight_steps", &Level::INFO));
        assert!(!unset.would_enable("greenlight_steps", &Level::DEBUG));
        let per_crate = log_filter(Some("warn,greenlight_steps=debug"));
        assert!(per_crate.would_enable("greenlight_steps::engine", &Level::DEBUG));
        assert!(!per_crate.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(per_crate.would_enable("aws_smithy_runtime", &Level::WARN));
        let unreadable = log_filter(Some("greenlight_steps=loud"));
        assert!(unreadable.would_enable("anything", &Level::INFO));
        assert!(!unreadable.would_enable("anything", &Level::DEBUG));
    }
}
