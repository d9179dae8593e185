//! greenlight-local: the whole system on one machine, with no AWS account.
//!
//! - [`emulator`]: starts the local AWS (moto in server mode behind our wrapper, which adds
//!   the AWS behaviour moto lacks) on a free loopback port and stops it afterwards;
//! - [`orchestrator`]: plays Step Functions: runs the plan from greenlight-core with its
//!   waits, retries and abort branch, calling the same handlers in-process;
//! - [`pump`]: plays the EventBridge → Lambda link: the rules on greenlight's command bus and
//!   on the default bus route events to an SQS queue and the pump delivers each message to
//!   the function its rule targets;
//! - [`pipe`]: plays the EventBridge Pipe from the ledger's stream through
//!   announce-deployments to greenlight's events bus (`DeploymentStateChanged`);
//! - [`fixture`]: builds a service's world (VPC, ALB, listener, target groups, AMIs, blue
//!   fleet) and registers it, for the demo and the tests;
//! - [`lambda_service`]: plays the Lambda service for the shipped bootstrap: each function a
//!   process of it (its own `_HANDLER`) polling a Runtime API on loopback;
//! - [`asl`]: runs the committed Step Functions definition with its Tasks calling those
//!   processes;
//! - [`faults`]: asks the emulator to inject AWS faults into one access key's calls;
//! - [`load`]: a load generator for the emulator's ALB data plane (`greenlight-local load`);
//! - [`demo`]: the README's first command;
//! - [`up`]: a local stack to play with, until Ctrl-C (`greenlight-local up`, `make up`).

pub mod asl;
pub mod data_plane;
pub mod demo;
pub mod emulator;
pub mod faults;
pub mod fixture;
pub mod hooks;
pub mod lambda_service;
pub mod load;
pub mod orchestrator;
pub mod pipe;
pub mod pump;
pub mod up;
pub mod usage;

use greenlight_adapters::aws::{aws_ports, AwsClients, Installation};
use greenlight_adapters::{Ports, RecordedMetrics};
use std::sync::Arc;

/// Table, bucket and prefixes of a local installation.
#[derive(Debug, Clone)]
pub struct Names {
    pub table: String,
    pub bucket: String,
    pub queue: String,
    /// greenlight's command bus: the rules routing its own commands (ImagePublished,
    /// RollbackRequested, AbortRequested, PromoteRequested) listen on it (`greenlight` by
    /// default, as the stack's `CommandBusName`; tests use one each).
    pub command_bus: String,
    /// The stand-in for the account's default bus: the rules routing AWS's events (Image
    /// Builder, S3, CloudWatch alarms) and the rule catching commands published there listen
    /// on it (`default`; tests use one each, so that they run in parallel).
    pub default_bus: String,
    /// Where the default bus's rule for greenlight's commands sends them: in AWS a log group
    /// (the audit line of an ignored command), here a queue that nothing delivers from, so a
    /// test can read what was ignored.
    pub ignored_queue: String,
    /// greenlight's events bus (`DeploymentStateChanged`, from the ledger's stream; the
    /// stack's `EventsBusName`).
    pub events_bus: String,
    /// Where a rule on the events bus sends every `DeploymentStateChanged`: in AWS a team's
    /// own target (the optional SNS topic, chat, paging), here a queue a test reads.
    pub events_queue: String,
    /// The ledger table is created with its stream (`NEW_AND_OLD_IMAGES`), as the stack
    /// creates it, so the [`pipe`] can announce from it. Not on the e2e tests' shared table,
    /// whose stream nothing would read (moto keeps every record for the life of the emulator).
    pub ledger_stream: bool,
}

impl Names {
    /// Names of an isolated installation (own queues, command bus and default-bus stand-in;
    /// shared table and bucket).
    pub fn isolated(tag: &str) -> Names {
        Names {
            queue: format!("greenlight-start-{tag}"),
            command_bus: format!("greenlight-{tag}"),
            default_bus: format!("default-{tag}"),
            ignored_queue: format!("greenlight-ignored-{tag}"),
            events_bus: format!("greenlight-events-{tag}"),
            events_queue: format!("greenlight-events-{tag}"),
            ledger_stream: false,
            ..Names::default()
        }
    }

    /// Names of an installation with a ledger table of its own too (with its stream): for a
    /// test whose handler looks at every registered service (reconcile-services), which on
    /// the shared table would act on other tests' services, or that reads the deployment
    /// events the [`pipe`] announces from the table's stream.
    pub fn with_own_table(tag: &str) -> Names {
        Names {
            table: format!("greenlight-{tag}"),
            ledger_stream: true,
            ..Names::isolated(tag)
        }
    }

    /// The installation these names make (default prefixes and bake window).
    pub fn installation(&self) -> Installation {
        Installation {
            table: self.table.clone(),
            bucket: self.bucket.clone(),
            report_prefix: greenlight_steps::lambda::REPORT_PREFIX.into(),
            manifest_prefix: greenlight_core::inbound::MANIFEST_PREFIX.into(),
            default_bake_window_s: greenlight_core::config::DEFAULT_BAKE_WINDOW_S,
        }
    }
}

impl Default for Names {
    fn default() -> Self {
        Names {
            table: "greenlight".into(),
            bucket: "greenlight-artifacts".into(),
            queue: "greenlight-start-deployment".into(),
            command_bus: "greenlight".into(),
            default_bus: "default".into(),
            ignored_queue: "greenlight-ignored-commands".into(),
            events_bus: "greenlight-events".into(),
            events_queue: "greenlight-deployment-events".into(),
            ledger_stream: true,
        }
    }
}

/// The access key id the fixture, the tests' assertions and the demo sign with.
pub const DEFAULT_ACCESS_KEY: &str = "test";

/// What a client process (the `greenlight` CLI, the AWS CLI, an SDK) needs in its environment
/// to use the installation `names` on the emulator at `endpoint`, signing with `access_key`
/// (the emulator logs calls per access key id).
pub fn client_environment(endpoint: &str, names: &Names, access_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        // The AWS CLI v1 reads this one.
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", access_key.into()),
        ("AWS_SECRET_ACCESS_KEY", access_key.into()),
        ("GREENLIGHT_TABLE", names.table.clone()),
        ("GREENLIGHT_EVENT_BUS", names.command_bus.clone()),
    ]
}

/// `greenlight dashboard` (the built CLI) serving the installation `names` on the emulator at
/// `endpoint`, on loopback `port` (0: any free one): the process (killed when dropped) and
/// the URL it printed. Used by `up` and the demo.
pub async fn start_dashboard(
    endpoint: &str,
    names: &Names,
    access_key: &str,
    port: u16,
) -> Result<(tokio::process::Child, String), String> {
    use tokio::io::AsyncBufReadExt;
    let binary = lambda_service::built_binary("greenlight");
    if !binary.exists() {
        return Err(format!(
            "{} not found: build the CLI (`cargo build -p greenlight-cli`) for the dashboard",
            binary.display()
        ));
    }
    let mut child = tokio::process::Command::new(&binary)
        .args(["dashboard", "--port", &port.to_string()])
        .env_remove("AWS_PROFILE")
        .envs(client_environment(endpoint, names, access_key))
        // A pipe this process never writes: when it ends (even killed outright), the pipe
        // closes and the dashboard exits with it (the CLI's EXIT_WITH_STDIN).
        .env("GREENLIGHT_DASHBOARD_EXIT_WITH_STDIN", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "greenlight dashboard printed no URL within 30 s".to_string())?
        .map_err(|e| format!("greenlight dashboard: {e}"))?
        .ok_or_else(|| "greenlight dashboard exited at start (see above)".to_string())?;
    let url = first
        .strip_prefix("greenlight dashboard: ")
        .ok_or_else(|| format!("greenlight dashboard printed {first:?}, not its URL"))?
        .to_string();
    // Its action lines (who rolled back what) are worth seeing: pass them through.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("dashboard:") {
                println!("{line}");
            }
        }
    });
    Ok((child, url))
}

/// The AWS SDK retry policy of everything local: the functions' own
/// ([`greenlight_adapters::aws::retry_config`]).
pub use greenlight_adapters::aws::retry_config;

/// SDK configuration pointing at the emulator (`endpoint`), with dummy credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_as(endpoint, DEFAULT_ACCESS_KEY).await
}

/// [`sdk_config`] signing with `access_key` (the emulator logs calls, and injects faults, per
/// access key id).
pub async fn sdk_config_as(endpoint: &str, access_key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(retry_config())
        .http_client(greenlight_adapters::aws::https_client())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key,
            "test",
            None,
            None,
            "greenlight-local",
        ))
        .load()
        .await
}

/// Everything the local system needs: SDK clients, the handlers' ports, the orchestrator.
#[derive(Clone)]
pub struct Local {
    pub sdk: aws_config::SdkConfig,
    pub clients: AwsClients,
    /// The SDK's S3 client, for the fixture and the tests (the adapters sign their two S3
    /// calls themselves).
    pub s3: aws_sdk_s3::Client,
    pub ports: Ports,
    pub orchestrator: Arc<orchestrator::LocalOrchestrator>,
    /// The metric lines (Embedded Metric Format) the handlers emitted.
    pub metrics: Arc<RecordedMetrics>,
    pub names: Names,
}

impl Local {
    /// Connects to the emulator at `endpoint` and creates the table, bucket and event routing
    /// (idempotent: safe to call for an emulator already set up).
    pub async fn connect(endpoint: &str, names: Names) -> Result<Local, String> {
        let local = Local::assemble(sdk_config(endpoint).await, names);
        fixture::install(&local).await?;
        Ok(local)
    }

    /// The same installation (table, bucket, queue, bus) with everything signing with
    /// `access_key`: its own clients, handlers' ports, orchestrator and metrics. Tests give
    /// the handlers they drive their own key, e.g. to have faults injected on it alone.
    pub async fn with_access_key(&self, access_key: &str) -> Local {
        let endpoint = self
            .sdk
            .endpoint_url()
            .expect("a local SDK configuration has an endpoint");
        Local::assemble(sdk_config_as(endpoint, access_key).await, self.names.clone())
    }

    fn assemble(sdk: aws_config::SdkConfig, names: Names) -> Local {
        let clients = AwsClients::new(&sdk);
        let orchestrator = Arc::new(orchestrator::LocalOrchestrator::new());
        let metrics = Arc::new(RecordedMetrics::default());
        let ports = Ports {
            metrics: metrics.clone(),
            ..aws_ports(&clients, &names.installation(), orchestrator.clone())
        };
        orchestrator.attach(ports.clone());
        // Path-style S3 addressing works with AWS and with a local endpoint alike.
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Local {
            sdk,
            clients,
            s3,
            ports,
            orchestrator,
            metrics,
            names,
        }
    }
}
