//! The vocabulary of `decide`: the events it takes, the effects and refusals it answers
//! with, and the names and small predicates the families share about them. Below every
//! family module (each imports from here, none from its parent).

use crate::config::LaunchSettings;
use crate::model::PhaseName;
use crate::model::State;
use crate::request::{HealthReport, ImageFacts, ImageRequest, LaunchObservation, RevertRequest};
use crate::switch::PointWrite;
use crate::version::VersionError;
use serde::{Deserialize, Serialize};

/// Everything that can happen to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An image was published (start-deployment). `image` is None when the AMI does not exist;
    /// `firing_alarms`: the service's alarms in ALARM right now (pre-flight gate).
    Start {
        request: ImageRequest,
        image: Option<ImageFacts>,
        #[serde(default)]
        firing_alarms: Vec<String>,
    },
    /// launch-green is due; `seen`: the switch points and target groups as it read them
    /// while launching (empty in any other phase).
    LaunchDue {
        #[serde(default)]
        seen: LaunchObservation,
    },
    /// Green instances exist (launched now, or found from an earlier delivery).
    GreenLaunched { instance_ids: Vec<String> },
    /// check-health observed green.
    HealthObserved { report: HealthReport },
    /// shift-traffic is due; `green_unready`: why green is not healthy any more, when
    /// shift-traffic found it so just before an increase (None: every target healthy, or
    /// not observed in this phase).
    ShiftDue {
        #[serde(default)]
        green_unready: Option<String>,
        /// Canary analysis of the step green is in, when one is due (None: not observed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<crate::analysis::Observation>,
    },
    /// The switch point now gives green `weight` % (since `at_ms`, milliseconds).
    TrafficApplied { weight: u8, at_ms: u64 },
    /// Roll the service back to the release before this deployment. `flipped_at_ms`: when
    /// the fast path already applied the service's revert plan (before this decision).
    Revert {
        request: RevertRequest,
        received_at_ms: u64,
        #[serde(default)]
        flipped_at_ms: Option<u64>,
    },
    /// finalize is due.
    FinalizeDue,
    /// retire-blue is due; `blue_forwarded_by`: a listener or rule (its ARN) of the load
    /// balancers blue's target group is on that still forwards traffic to it, read from AWS.
    RetireDue {
        #[serde(default)]
        blue_forwarded_by: Option<String>,
        /// Canary analysis of the bake window, when one is due before the window ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<crate::analysis::Observation>,
    },
    /// A lifecycle hook answered the call due (`hooking::due`), or gave no usable answer
    /// (`FAILED` with why): made by the step that stands at the hook's point instead of its
    /// own event.
    HookAnswered { observation: crate::hook::Observation },
    /// The old fleet is terminated.
    BlueTerminated,
    /// Abort requested (a failed step, or an operator).
    Abort { reason: String },
    /// Another image or a rollback takes the service over: abort if green has not gone live
    /// yet, and (`resume`, when this deployment's lease expired) run its remaining steps in a
    /// new execution so that it ends.
    Supersede { reason: String, resume: bool },
    /// Green is terminated after an abort.
    GreenTerminated,
    /// An engineer asked to stop the deployment in flight (`AbortRequested`): traffic back on
    /// blue if green had any, green drained and terminated now. Too late once green is live:
    /// that is a rollback.
    AbortRequested { requested_by: String, reason: String },
    /// An engineer's `PromoteRequested`: while green waits in an approval pause, approve it
    /// (green goes on to its next step); otherwise skip the remaining canary steps (and their
    /// waits) and the bake window. The health gates still apply, at 100 % too.
    Promote {
        requested_by: String,
        reason: String,
        /// The request's EventBridge event id: the approval of a pause it made is recorded
        /// with it, so a duplicate delivery approves nothing more.
        #[serde(default)]
        event_id: String,
    },
    /// The scheduled reconcile (`reconcile-services`) found the lease of the deployment
    /// holding the service expired: no step moved it in time (its execution never started,
    /// e.g. its trigger crashed after committing it and was dead-lettered, or the execution
    /// stopped). Resumed in a new execution at most [`crate::plan::MAX_RESUMES`] times per
    /// phase, then aborted (green not live yet) or stopped with the service needing attention.
    /// `run_id`: the scheduled run's event id (its redelivery re-issues what it started).
    LeaseExpired { run_id: String },
}

/// A change to the world, applied after the new state is committed. Every effect is
/// idempotent: applying it twice leaves the world as applying it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Start the step sequence for the deployment as execution `execution` (the deploy id,
    /// or `<deploy id>-revert` for the clean-up after a rollback).
    StartExecution {
        service: String,
        deploy_id: String,
        execution: String,
    },
    /// RunInstances with an idempotency token; every instance tagged on launch.
    /// Reports back [`Event::GreenLaunched`].
    LaunchGreen {
        service: String,
        deploy_id: String,
        version: String,
        ami: String,
        client_token: String,
        launch: LaunchSettings,
    },
    /// Register instances in a target group on `port`.
    RegisterTargets {
        target_group: String,
        instance_ids: Vec<String>,
        port: u16,
    },
    /// Point every switch point at blue and green with green at `green_weight` %: one
    /// ModifyListener or ModifyRule per point (concurrently), each re-sending its frame.
    SetTraffic {
        points: Vec<PointWrite>,
        blue_tg: Option<String>,
        green_tg: String,
        green_weight: u8,
    },
    /// Make sure the deployment's test route exists: a rule on `listener_arn` (the lowest
    /// unused priority, tagged with the deploy id) forwarding requests that carry
    /// [`crate::switch::TEST_ROUTE_HEADER`]` = deploy_id` to `target_group` only. Found, not
    /// created again, when it exists. It also makes the load balancer health-check green.
    OpenTestRoute {
        listener_arn: String,
        deploy_id: String,
        target_group: String,
    },
    /// Delete the deployment's test route, if any (idempotent).
    CloseTestRoute { listener_arn: String, deploy_id: String },
    /// Deregister instances (starts connection draining).
    DeregisterTargets {
        target_group: String,
        instance_ids: Vec<String>,
        port: u16,
    },
    /// Terminate instances of `service`; with `deploy_id`, also every instance tagged with it
    /// (so an instance launched before a crash is never orphaned). Reports back
    /// [`Event::BlueTerminated`] or [`Event::GreenTerminated`] (`green`).
    TerminateInstances {
        service: String,
        instance_ids: Vec<String>,
        deploy_id: Option<String>,
        green: bool,
    },
    /// Write the finished deployment's timeline as a JSON report.
    WriteReport { service: String, deploy_id: String },
    /// Decide [`Event::Supersede`] on deployment `deploy_id` of `service`.
    SupersedeDeployment {
        service: String,
        deploy_id: String,
        reason: String,
        resume: bool,
    },
    /// Start the queued deployment (the service is free).
    StartQueued { request: ImageRequest },
    /// Make sure deployment `deploy_id` (the successor of a finished one) has its execution:
    /// if it is still launching, StartExecution of its name (a no-op when it runs or ran).
    EnsureExecution { service: String, deploy_id: String },
}

/// The outcome of `decide`: the new state, the effects to apply after committing it, and a
/// human-readable note for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: State,
    pub effects: Vec<Effect>,
    pub note: String,
}

/// Why an event was refused. Nothing changes on a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("event is for service {got:?} but the state read is for {want:?}")]
    WrongService { got: String, want: String },
    #[error("no deployment to act on: the ledger has no deployment with this id")]
    NoDeployment,
    #[error("{0}")]
    BadVersion(#[from] VersionError),
    #[error("refusing to deploy {requested} of {service}: it is older than the live version {live}; use a rollback to go back")]
    Downgrade {
        service: String,
        live: String,
        requested: String,
    },
    #[error("{service} {version} ({ami}) is already live; nothing to deploy")]
    AlreadyLive {
        service: String,
        version: String,
        ami: String,
    },
    #[error("version {version} of {service} is live as {live_ami}; publish {requested_ami} under a new version")]
    VersionReused {
        service: String,
        version: String,
        live_ami: String,
        requested_ami: String,
    },
    #[error("{service} already has deployment {active} in flight; wait for it to finish or abort it")]
    Busy { service: String, active: String },
    #[error("AMI {ami} was not found (or is not visible to this account); check the image id and region")]
    ImageNotFound { ami: String },
    #[error("AMI {ami} is not available yet; publish it once its state is 'available'")]
    ImageNotAvailable { ami: String },
    #[error(
        "AMI {ami} is owned by account {owner}, which {service}'s AMI policy does not allow (allowed: {allowed:?})"
    )]
    WrongOwner {
        service: String,
        ami: String,
        owner: String,
        allowed: Vec<String>,
    },
    #[error("AMI {ami} lacks tag {key}={value} required by {service}'s AMI policy")]
    MissingTag {
        service: String,
        ami: String,
        key: String,
        value: String,
    },
    #[error("refusing to deploy to {service} while its alarm {alarms} is in ALARM; fix or roll back first (a rollback is allowed)")]
    AlarmFiring { service: String, alarms: String },
    #[error("cannot roll {service} back to {version}: the ledger never recorded it live (recorded: {known}); name one of those")]
    NeverLive {
        service: String,
        version: String,
        known: String,
    },
    #[error("cannot roll {service} back: {why}")]
    NoPrevious { service: String, why: String },
    #[error("a rollback of {service} to {version} is queued; publish this image again once it is live")]
    RollbackPending { service: String, version: String },
    #[error("deployment {deploy_id} is {phase}: too late to abort; roll back instead")]
    TooLateToAbort { deploy_id: String, phase: PhaseName },
    #[error("deployment {deploy_id} is {phase}: there is nothing to promote")]
    NothingToPromote { deploy_id: String, phase: PhaseName },
    #[error("cannot roll {service} back instantly: {why}")]
    NothingWarm { service: String, why: String },
    #[error(
        "cannot roll {service} back to {requested}: the warm version is {warm}; only it can be restored instantly"
    )]
    NotTheWarmVersion {
        service: String,
        requested: String,
        warm: String,
    },
    #[error(
        "cannot re-pave {service} with {version} ({ami}): a re-pave deploys the live release again, and that is not it"
    )]
    NotLive {
        service: String,
        version: String,
        ami: String,
    },
    #[error("deployment {deploy_id} is not stuck: {why}")]
    NotStuck { deploy_id: String, why: String },
    /// The target group by its name: the whole message must fit in the step failure's cause,
    /// which abort-deployment cuts at 300 characters, with `by` (a rule's ARN is long) in full.
    #[error("refusing to retire blue: {by} still forwards traffic to target group {}", short_arn(.target_group))]
    BlueStillServing { target_group: String, by: String },
}

impl crate::inbound::SteerRequest {
    /// The decision event this request is for the deployment in flight.
    pub fn event(&self) -> Event {
        let (requested_by, reason) = (self.requested_by.clone(), self.reason.clone());
        match self.action {
            crate::inbound::SteerAction::Abort => Event::AbortRequested { requested_by, reason },
            crate::inbound::SteerAction::Promote => Event::Promote {
                requested_by,
                reason,
                event_id: self.event_id.clone(),
            },
        }
    }
}

/// The readable tail of an ARN: `targetgroup/checkout-b/0123` → `checkout-b`.
pub fn short_arn(arn: &str) -> &str {
    let resource = arn.rsplit(':').next().unwrap_or(arn);
    let mut parts = resource.split('/');
    match (parts.next(), parts.next()) {
        (Some(_), Some(name)) => name,
        _ => resource,
    }
}

/// True for the event of a step of a deployment's execution (its own, or a follow-up
/// execution's): launch-green, check-health, shift-traffic, finalize, retire-blue,
/// abort-deployment. Not an effect's report-back, nor a trigger from outside. Such a step
/// that finds nothing to do in the deployment's phase reconciles the world with it.
pub(super) fn own_step(event: &Event) -> bool {
    matches!(
        event,
        Event::LaunchDue { .. }
            | Event::HealthObserved { .. }
            | Event::ShiftDue { .. }
            | Event::FinalizeDue
            | Event::RetireDue { .. }
            | Event::Abort { .. }
    )
}

/// The event's name for log lines.
pub fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Start { .. } => "start",
        Event::LaunchDue { .. } => "launch_due",
        Event::GreenLaunched { .. } => "green_launched",
        Event::HealthObserved { .. } => "health_observed",
        Event::ShiftDue { .. } => "shift_due",
        Event::TrafficApplied { .. } => "traffic_applied",
        Event::Revert { .. } => "revert",
        Event::FinalizeDue => "finalize_due",
        Event::RetireDue { .. } => "retire_due",
        Event::HookAnswered { .. } => "hook_answered",
        Event::BlueTerminated => "blue_terminated",
        Event::Abort { .. } => "abort",
        Event::Supersede { .. } => "supersede",
        Event::GreenTerminated => "green_terminated",
        Event::AbortRequested { .. } => "abort_requested",
        Event::Promote { .. } => "promote",
        Event::LeaseExpired { .. } => "lease_expired",
    }
}
