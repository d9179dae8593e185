//! Lambda wiring of the one bootstrap every function runs: JSON logs, AWS clients built once
//! outside the handler, and the handler itself (`service_fn`). Every function of the template
//! runs the same binary (`functions/greenlight-lambda`, whose `main.rs` is one call to
//! [`main`]); Lambda sets `_HANDLER` from the function's `Handler` property (`launch-green`,
//! `revert-service`, ...), and [`main`] serves the [`Function`] it names, or fails its init
//! naming the known ones.
//!
//! Environment: `_HANDLER` (the function), `GREENLIGHT_TABLE`, `GREENLIGHT_BUCKET`,
//! `GREENLIGHT_STATE_MACHINE_ARN` (the functions that start executions), optional
//! `GREENLIGHT_MANIFEST_PREFIX` (default `releases/`) and `GREENLIGHT_REPORT_PREFIX` (default
//! `reports/`), `GREENLIGHT_DEFAULT_BAKE_WINDOW_S` (the bake window of a registration that
//! sets none; default [`DEFAULT_BAKE_WINDOW_S`]).

use crate::{
    announce_deployments, reconcile_services, revert_service, run_step, start_deployment, steer_deployment,
    StartOutcome, StepError,
};
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

/// The environment variable Lambda sets from the function's `Handler` property.
pub const HANDLER_ENV: &str = "_HANDLER";

/// Every function of an installation: what the one bootstrap can serve, by handler name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// One of the pipeline's steps (the state machine's Tasks, and start-deployment).
    Step(Step),
    RevertService,
    SteerDeployment,
    /// The scheduled reconcile of every service (stuck work).
    ReconcileServices,
    /// The enrichment of the pipe from the ledger's stream to the events bus
    /// (`DeploymentStateChanged`).
    AnnounceDeployments,
}

impl Function {
    /// Every function: the pipeline's steps in order ([`Step::ALL`]), then the two
    /// event-driven ones, then the scheduled one, then the pipe's enrichment.
    pub const ALL: [Function; Step::ALL.len() + 4] = {
        let mut all = [Function::RevertService; Step::ALL.len() + 4];
        let mut i = 0;
        while i < Step::ALL.len() {
            all[i] = Function::Step(Step::ALL[i]);
            i += 1;
        }
        all[Step::ALL.len() + 1] = Function::SteerDeployment;
        all[Step::ALL.len() + 2] = Function::ReconcileServices;
        all[Step::ALL.len() + 3] = Function::AnnounceDeployments;
        all
    };

    /// The handler name (the template's `Handler`, `_HANDLER`): `launch-green`, ...
    pub fn name(self) -> &'static str {
        match self {
            Function::Step(step) => step.name(),
            Function::RevertService => "revert-service",
            Function::SteerDeployment => "steer-deployment",
            Function::ReconcileServices => "reconcile-services",
            Function::AnnounceDeployments => "announce-deployments",
        }
    }

    /// Every handler name, comma-separated (for errors).
    pub fn known() -> String {
        Function::ALL.map(Function::name).join(", ")
    }

    /// The function `_HANDLER` names (`handler`: its value, None when unset).
    pub fn from_handler(handler: Option<&str>) -> Result<Function, UnknownHandler> {
        match handler {
            Some(name) => name.parse(),
            None => Err(UnknownHandler(None)),
        }
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Function {
    type Err = UnknownHandler;

    fn from_str(name: &str) -> Result<Function, UnknownHandler> {
        Function::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| UnknownHandler(Some(name.to_string())))
    }
}

/// `_HANDLER` is unset or names no [`Function`].
#[derive(Clone, PartialEq, Eq)]
pub struct UnknownHandler(pub Option<String>);

/// As [`Display`](std::fmt::Display): what `main` prints (`Error: {:?}`) when it returns one.
impl std::fmt::Debug for UnknownHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for UnknownHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(name) => write!(f, "unknown handler {name:?} ({HANDLER_ENV})")?,
            None => write!(f, "{HANDLER_ENV} is not set")?,
        }
        write!(
            f,
            ": the function's Handler (infra/template.yaml) must be one of {}",
            Function::known()
        )
    }
}

impl std::error::Error for UnknownHandler {}

/// The bootstrap's `main`: serves the function `_HANDLER` names until the runtime stops the
/// process. An unknown or missing handler fails the init: the error, naming the known
/// handlers, goes to the Runtime API's init error and (returned from `main`) to stderr, the
/// function's log, and the process exits with a failure status.
pub async fn main() -> Result<(), lambda_runtime::Error> {
    let function = match Function::from_handler(std::env::var(HANDLER_ENV).ok().as_deref()) {
        Ok(function) => function,
        Err(unknown) => {
            report_init_error(&unknown.to_string()).await;
            return Err(Box::new(unknown));
        }
    };
    run_function(function).await
}

/// Serves `function` as a Lambda function until the runtime stops it: JSON logs, the AWS
/// clients built once (before the first event, for the life of the process), then
/// [`invoke`] for every event. One runtime loop for every function (the handler dispatches
/// on `function`), so it is compiled once into the bootstrap, not once per function: 26 KB
/// less for each (BENCHMARKS.md, binary sizes).
pub async fn run_function(function: Function) -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let ports: &'static Ports = Box::leak(Box::new(ports_from_env().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        invoke(ports, function, event.payload)
    }))
    .await
}

/// One invocation of `function`: an EventBridge event (start-deployment, revert-service,
/// steer-deployment, reconcile-services), a [`StepInput`] (the pipeline's steps) or a batch
/// of the ledger stream's records (announce-deployments, the pipe's enrichment).
pub async fn invoke(ports: &Ports, function: Function, payload: Value) -> Result<Value, StepError> {
    match function {
        Function::Step(step) => handle(ports, step, payload).await,
        Function::RevertService => as_response(revert_service(ports, &payload).await?),
        Function::SteerDeployment => as_response(steer_deployment(ports, &payload).await?),
        Function::ReconcileServices => as_response(reconcile_services(ports, &payload).await?),
        Function::AnnounceDeployments => as_response(announce_deployments(&payload)?),
    }
}

/// Tells the Runtime API (`AWS_LAMBDA_RUNTIME_API`) that the init failed, as Lambda's
/// runtimes do (`POST /runtime/init/error`); best effort, with a plain HTTP/1.1 request.
async fn report_init_error(message: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = json!({"errorType": "Runtime.InitError", "errorMessage": message}).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nhost: {api}\r\n\
         lambda-runtime-function-error-type: Runtime.InitError\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&api).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = [0u8; 256];
        let _ = stream.read(&mut answer).await?;
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), exchange).await;
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

/// What start-deployment answers: the step output, `{ignored}`, `{queued, behind, note}`, or
/// an array of those for an S3 event notification's records.
fn start_outcome_json(outcome: StartOutcome) -> Value {
    match outcome {
        StartOutcome::Started(out) => serde_json::to_value(out).unwrap_or_default(),
        StartOutcome::Ignored(why) => json!({ "ignored": why }),
        StartOutcome::Queued {
            deploy_id,
            behind,
            note,
        } => json!({ "queued": deploy_id, "behind": behind, "note": note }),
        StartOutcome::Several(each) => Value::Array(each.into_iter().map(start_outcome_json).collect()),
    }
}

/// One invocation: an EventBridge event for start-deployment, a [`StepInput`] otherwise.
pub async fn handle(ports: &Ports, step: Step, payload: Value) -> Result<Value, StepError> {
    match step {
        Step::StartDeployment => Ok(start_outcome_json(start_deployment(ports, &payload).await?)),
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
    use super::{log_filter, Function, UnknownHandler};
    use tracing::Level;

    #[test]
    fn every_function_is_found_by_its_handler_name_and_nothing_else_is() {
        for function in Function::ALL {
            assert_eq!(function.name().parse::<Function>(), Ok(function));
            assert_eq!(Function::from_handler(Some(function.name())), Ok(function));
        }
        let names: std::collections::BTreeSet<&str> = Function::ALL.map(Function::name).into();
        assert_eq!(names.len(), 11, "{names:?}");
        // The pipeline's steps are served by the step handlers, under the steps' names.
        for step in greenlight_core::plan::Step::ALL {
            let function: Function = step.name().parse().unwrap();
            assert_eq!(function, Function::Step(step));
        }
        for (handler, unknown) in [
            (Some("bootstrap"), UnknownHandler(Some("bootstrap".into()))),
            (Some("Launch-Green"), UnknownHandler(Some("Launch-Green".into()))),
            (Some(""), UnknownHandler(Some(String::new()))),
            (None, UnknownHandler(None)),
        ] {
            assert_eq!(Function::from_handler(handler), Err(unknown.clone()));
            let message = unknown.to_string();
            assert!(message.contains("_HANDLER"), "{message}");
            for function in Function::ALL {
                assert!(message.contains(function.name()), "{message} does not name {function}");
            }
        }
        assert_eq!(
            UnknownHandler(None).to_string(),
            "_HANDLER is not set: the function's Handler (infra/template.yaml) must be one of \
             start-deployment, launch-green, check-health, shift-traffic, finalize, retire-blue, \
             abort-deployment, revert-service, steer-deployment, reconcile-services, announce-deployments"
        );
    }

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
