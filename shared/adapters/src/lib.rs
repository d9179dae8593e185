//! greenlight-adapters: the narrow traits the step handlers use to reach the world, and
//! their AWS SDK implementations ([`aws`]).
//!
//! The core never sees these; the handlers (greenlight-steps) call them. Tests and the
//! simulator may wrap or replace any of them (e.g. to crash after the k-th call).
//!
//! Rules every implementation keeps:
//! - writes are idempotent (RunInstances with a `ClientToken`, register/deregister/terminate
//!   are naturally idempotent) or conditional (every ledger write);
//! - a conditional-write failure is [`AdapterError::Conflict`], never retried blindly: the
//!   caller re-reads and decides again;
//! - terminate only touches instances tagged `managed-by=greenlight` for the service.

pub mod aws;
pub mod chaos;
pub mod http;

use async_trait::async_trait;
use greenlight_core::config::{LaunchSettings, Switch};
use greenlight_core::decide::{ImageFacts, RevertRequest, TargetHealth};
use greenlight_core::model::{Deployment, Release, RevertPlan, State};
use greenlight_core::switch::{Frame, SeenAction};
use greenlight_core::{Epoch, ServiceConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Tag keys put on every instance greenlight launches.
pub mod tags {
    pub const MANAGED_BY: &str = "managed-by";
    pub const MANAGED_BY_VALUE: &str = "greenlight";
    /// Also the AMI tag an `EC2 AMI State Change` reads the service from.
    pub const SERVICE: &str = greenlight_core::inbound::SERVICE_TAG;
    /// Also the AMI tag an `EC2 AMI State Change` reads the version from.
    pub const VERSION: &str = greenlight_core::inbound::VERSION_TAG;
    pub const DEPLOY_ID: &str = "greenlight:deploy-id";
}

/// An adapter failure, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A conditional write lost: someone else moved the state. Re-read and decide again.
    #[error("conditional write failed (the ledger changed underneath): {0}")]
    Conflict(String),
    /// Something the request named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was refused as invalid (a bug or bad registration, not transient).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An AWS call failed; `retryable` for throttling, 5xx and connection errors.
    #[error("AWS {service} {operation} failed: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
        retryable: bool,
    },
}

/// Result of an adapter call.
pub type AdapterResult<T> = Result<T, AdapterError>;

/// The ledger: one DynamoDB table, every write conditional.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Registers (or updates) a service's settings. The service's pointer record is created
    /// once, adopting `live` (the release already serving, if any); later registrations keep it.
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()>;
    /// The registered services' names.
    async fn services(&self) -> AdapterResult<Vec<String>>;
    /// The service registered for an EC2 Image Builder image name.
    async fn service_for_image(&self, image_name: &str) -> AdapterResult<Option<String>>;
    /// The service a CloudWatch alarm (by name) rolls back.
    async fn service_for_alarm(&self, alarm_name: &str) -> AdapterResult<Option<String>>;
    /// Reads a service's registration and pointers, and the deployment `deploy_id` if given
    /// (None when the service is not registered).
    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>>;
    /// Reads a service's registration and pointers and, when a deployment is in flight
    /// (`active`), that deployment (None when the service is not registered; no deployment
    /// when none is in flight or its item is missing). Handlers that learn the deployment
    /// from the pointers use this rather than two [`Ledger::load`]s, which read the
    /// registration and the pointers twice. The default is those two loads.
    async fn load_active(&self, service: &str) -> AdapterResult<Option<State>> {
        let Some(pointers) = self.load(service, None).await? else {
            return Ok(None);
        };
        match pointers.service.active.clone() {
            Some(deploy_id) => self.load(service, Some(&deploy_id)).await,
            None => Ok(Some(pointers)),
        }
    }
    /// Writes what changed between `before` and `after`, each item conditional on the
    /// generation read in `before` (a new deployment: on not existing). Returns `after` with
    /// the new generations. Fails with [`AdapterError::Conflict`] if anything moved.
    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State>;
    /// Every deployment of a service, oldest first.
    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>>;
    /// The fast rollback's one ledger call: claims the revert plan of a service (or of the
    /// service an alarm belongs to) for event `event_id` in one conditional write that
    /// returns it with the service's name. None when there is no plan (nothing to flip
    /// fast), the plan's deployment is newer than the event, or another event claimed it.
    /// The same event may claim again (a redelivery after a crash).
    /// On the service's pointers the claim also records `request` (a pending rollback that
    /// the next delivery to the deployment completes) and moves the generation.
    async fn claim_revert(
        &self,
        key: RevertKey<'_>,
        request: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>>;
}

/// What a rollback trigger names: the service (engineer) or one of its alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertKey<'a> {
    Service(&'a str),
    Alarm(&'a str),
}

/// What RunInstances needs for one green fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub service: String,
    pub deploy_id: String,
    pub version: String,
    pub ami: String,
    pub client_token: String,
    pub launch: LaunchSettings,
}

/// An EC2 instance's state: EC2's `InstanceStateName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    /// Every state EC2 names.
    pub const ALL: [InstanceState; 6] = [
        InstanceState::Pending,
        InstanceState::Running,
        InstanceState::ShuttingDown,
        InstanceState::Terminated,
        InstanceState::Stopping,
        InstanceState::Stopped,
    ];

    /// The state as EC2 spells it (`pending`, `running`, `shutting-down`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }

    /// The state EC2 names `name`. An instance whose state EC2 did not name is taken as
    /// `pending`: not yet serving (never smoke-tested) and not gone (still terminated by a
    /// clean-up), the safe reading either way.
    pub fn from_ec2(name: Option<&str>) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| Some(s.as_str()) == name)
            .unwrap_or(InstanceState::Pending)
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An EC2 instance as greenlight sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub state: InstanceState,
    pub private_ip: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// The AMI it was launched from.
    pub image_id: Option<String>,
    /// When it was launched (seconds since the epoch).
    pub launched_at: Option<Epoch>,
}

/// EC2: images and instances.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// The AMI's owner, state and tags; None if it does not exist.
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>>;
    /// The AMI an EC2 Image Builder image produced (by its `Ec2ImageBuilderArn` tag).
    async fn image_builder_ami(&self, image_arn: &str) -> AdapterResult<Option<String>>;
    /// RunInstances (MinCount = MaxCount = count) with the request's `ClientToken`, every
    /// instance and volume tagged on launch. The same token returns the same instances.
    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>>;
    /// The instances tagged with `deploy_id` that are not terminated.
    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>>;
    /// The instances tagged `managed-by=greenlight` and `greenlight:service=<service>` that
    /// are not terminated, at most `limit` of them (the scheduled reconcile's orphan sweep).
    async fn instances_of_service(&self, service: &str, limit: usize) -> AdapterResult<Vec<Instance>>;
    /// The named instances (missing ones are left out).
    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>>;
    /// Terminates those of `instance_ids` tagged `managed-by=greenlight` and
    /// `greenlight:service=<service>`; returns the ids it refused to touch.
    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>>;
}

/// Elastic Load Balancing v2: targets and the switch point.
#[async_trait]
pub trait LoadBalancer: Send + Sync {
    /// Health of every target registered in `target_group` (draining ones included).
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>>;
    async fn register(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()>;
    async fn deregister(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()>;
    /// Sets one switch point (a listener's default action, or a rule) to `frame` around a
    /// weighted forward over `(target group ARN, weight)`: one ModifyListener or ModifyRule
    /// call. Without a frame (a deployment recorded before frames were) it reads the switch
    /// point first and keeps what it finds around the forward.
    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()>;
    /// One switch point's actions, as read (DescribeListeners or DescribeRules).
    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>>;
    /// The switch point's current forward weights.
    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
        Ok(greenlight_core::switch::weights(&self.switch_point(switch).await?))
    }
    /// The ARN of every listener (default action) and rule, on every load balancer that
    /// `target_group` is attached to, whose forward gives the group weight; at most
    /// [`MAX_FORWARDERS`] of them.
    async fn forwarders(&self, target_group: &str) -> AdapterResult<Vec<String>>;
    /// The group's `deregistration_delay.timeout_seconds` (DescribeTargetGroupAttributes).
    async fn deregistration_delay_s(&self, target_group: &str) -> AdapterResult<u64>;
    /// Makes sure deployment `deploy_id` has its test route on `listener_arn`: a rule
    /// matching the header [`greenlight_core::switch::TEST_ROUTE_HEADER`] = `deploy_id`,
    /// forwarding to `target_group` only, at the lowest unused priority, tagged
    /// `managed-by=greenlight` and with the deploy id. One that exists is found, not created
    /// again (DescribeRules, then CreateRule; a priority taken meanwhile is looked for again).
    /// Its ARN.
    async fn open_test_route(&self, listener_arn: &str, deploy_id: &str, target_group: &str) -> AdapterResult<String>;
    /// Deletes deployment `deploy_id`'s test route on `listener_arn`, if there is one.
    async fn close_test_route(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<()>;
    /// The test routes on `listener_arn`: `(rule ARN, deploy id)`, at most [`MAX_FORWARDERS`].
    async fn test_routes(&self, listener_arn: &str) -> AdapterResult<Vec<(String, String)>>;
}

/// The most listeners and rules [`LoadBalancer::forwarders`] reports.
pub const MAX_FORWARDERS: usize = 50;

/// S3: release manifests in, deployment reports out.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Reads an object (a release manifest).
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>>;
    /// Writes a finished deployment's JSON report; returns its key.
    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String>;
}

/// Starts the step sequence of a deployment (Step Functions, or the local runner).
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Starts execution `deploy_id` with `input`. Starting one that exists is success.
    async fn start(&self, deploy_id: &str, input: &serde_json::Value) -> AdapterResult<()>;
}

/// CloudWatch: alarms (pre-flight gate) and metric data (canary analysis).
#[async_trait]
pub trait Alarms: Send + Sync {
    /// Those of `names` whose state is ALARM now.
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>>;
    /// `GetMetricData` from `start` to `end` (seconds): each query's datapoints (period start,
    /// value), oldest first, in query order.
    async fn metric_data(
        &self,
        queries: &[StatQuery],
        start: Epoch,
        end: Epoch,
    ) -> AdapterResult<Vec<Vec<(Epoch, f64)>>>;
}

pub use greenlight_core::analysis::fetch::StatQuery;

/// Lifecycle hooks: a Lambda function invoked synchronously or an HTTPS webhook, each called
/// with a payload (JSON) and answering `{"status": ...}`.
#[async_trait]
pub trait Hooks: Send + Sync {
    /// Calls `hook` once with `payload`. What the hook did wrong (a function error, an HTTP
    /// error status, no answer within its `request_timeout_s`, a secret that cannot be read)
    /// is [`Reply::Unusable`] with why (a `FAILED` answer); an error only for what a retry of
    /// the step may cure (the AWS service throttling or failing).
    async fn call(
        &self,
        hook: &greenlight_core::hook::Hook,
        payload: &[u8],
    ) -> AdapterResult<greenlight_core::hook::Reply>;
}

/// HTTP GET for smoke tests.
#[async_trait]
pub trait Prober: Send + Sync {
    /// `GET url`; the status and (up to 64 KiB of) body, or why it failed.
    /// `header`: one extra request header (the test route's).
    async fn get(&self, url: &str, header: Option<(&str, &str)>, timeout: Duration) -> Result<(u16, String), String>;
}

/// The time source. The core takes `now` as an argument; handlers get it from here.
pub trait Clock: Send + Sync {
    /// Seconds since the epoch.
    fn now(&self) -> Epoch {
        self.now_ms() / 1000
    }
    /// Milliseconds since the epoch (time-to-revert is measured in these).
    fn now_ms(&self) -> u64;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Where metric lines (CloudWatch Embedded Metric Format) go.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &str);
}

/// Metric lines on stdout, one per line: in Lambda, CloudWatch Logs extracts the metrics.
pub struct StdoutMetrics;

impl MetricsSink for StdoutMetrics {
    fn emit(&self, line: &str) {
        use std::io::Write;
        // One write per line, so concurrent log lines never split an EMF document.
        let _ = std::io::stdout().lock().write_all(format!("{line}\n").as_bytes());
    }
}

/// Metric lines kept in memory (the local runner and tests read them).
#[derive(Default)]
pub struct RecordedMetrics(std::sync::Mutex<Vec<String>>);

impl RecordedMetrics {
    /// Every line emitted so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl MetricsSink for RecordedMetrics {
    fn emit(&self, line: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line.to_string());
    }
}

/// Everything a handler may touch, built once per process (outside the handler).
#[derive(Clone)]
pub struct Ports {
    pub ledger: Arc<dyn Ledger>,
    pub fleet: Arc<dyn Fleet>,
    pub lb: Arc<dyn LoadBalancer>,
    pub store: Arc<dyn ArtifactStore>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub alarms: Arc<dyn Alarms>,
    pub hooks: Arc<dyn Hooks>,
    pub prober: Arc<dyn Prober>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn MetricsSink>,
    /// Key prefix of release manifests in the artifact bucket.
    pub manifest_prefix: String,
}

impl Ports {
    /// These ports with every AWS-facing adapter (ledger, fleet, load balancer, store,
    /// orchestrator, alarms, hooks) replaced by `aws`, a decorator over them (fault injection,
    /// metering); the prober, clock, metrics sink and manifest prefix stay.
    pub fn with_aws<A>(&self, aws: Arc<A>) -> Ports
    where
        A: Ledger + Fleet + LoadBalancer + ArtifactStore + Orchestrator + Alarms + Hooks + 'static,
    {
        Ports {
            ledger: aws.clone(),
            fleet: aws.clone(),
            lb: aws.clone(),
            store: aws.clone(),
            orchestrator: aws.clone(),
            hooks: aws.clone(),
            alarms: aws,
            ..self.clone()
        }
    }
}

/// Puts `weights` on every switch point of `writes`, each with its frame, all at once (one
/// ModifyListener/ModifyRule each, concurrently: time-to-revert does not grow with their
/// number). Every change is attempted; the first error is returned.
pub async fn set_switch_points(
    lb: &dyn LoadBalancer,
    writes: &[greenlight_core::switch::PointWrite],
    weights: &[(String, u8)],
) -> AdapterResult<()> {
    let changes = writes
        .iter()
        .map(|w| lb.set_traffic(&w.switch, w.frame.as_ref(), weights));
    futures_util::future::join_all(changes)
        .await
        .into_iter()
        .collect::<AdapterResult<Vec<()>>>()?;
    Ok(())
}

/// Reads every switch point of `writes` back (concurrently) and checks it forwards exactly
/// `weights`: a change that did not land as written (another writer, a hand edit, an API
/// that dropped a field) is an error, so the step is retried and decides again.
pub async fn verify_switch_points(
    lb: &dyn LoadBalancer,
    writes: &[greenlight_core::switch::PointWrite],
    weights: &[(String, u8)],
) -> AdapterResult<()> {
    let reads = writes.iter().map(|w| lb.traffic(&w.switch));
    // As the read reports them: percentages of the sum.
    let total: u32 = weights.iter().map(|(_, w)| *w as u32).sum();
    let mut want: Vec<(String, u8)> = weights
        .iter()
        .map(|(tg, w)| (tg.clone(), (*w as u32 * 100).checked_div(total).unwrap_or(0) as u8))
        .collect();
    want.sort();
    for (write, read) in writes.iter().zip(futures_util::future::join_all(reads).await) {
        let mut got = read?;
        got.sort();
        if got != want {
            return Err(AdapterError::Aws {
                service: "elbv2",
                operation: "verify",
                message: format!(
                    "{} forwards {got:?} after greenlight wrote {want:?}",
                    write.switch.arn()
                ),
                retryable: true,
            });
        }
    }
    Ok(())
}
