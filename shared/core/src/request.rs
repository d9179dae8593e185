//! What the handlers bring to a decision: the requests parsed from events (an image to
//! deploy, a rollback to make) and what they observed of the world (the AMI's facts, target
//! health, smoke tests). Beside the ledger's records in [`crate::model`]; `decide` consumes
//! them, `inbound` produces the requests.

use crate::ids::DeployId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A request to deploy an image, from any image-published source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRequest {
    pub service: String,
    pub version: String,
    pub ami: String,
    pub source: ImageSource,
    pub requested_by: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// 1 for the first deployment of this image; a higher number re-deploys it after an abort.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Set for a rollback that redeploys an earlier version: the triggering event's id. Such
    /// a deployment may go to an older version than live, and supersedes any deployment.
    #[serde(default)]
    pub rollback_of: Option<String>,
    /// Set for a phoenix re-pave of the live release (same image, same version): the live
    /// release it replaces (its deploy id, or `adopted@<launched_at>`), so that every
    /// scheduled run that finds the same fleet too old maps to one deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repave_of: Option<String>,
    /// The release's own `on_failure` (None: the registration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<crate::config::OnFailure>,
}

fn first_attempt() -> u32 {
    1
}

impl ImageRequest {
    /// The deployment this request maps to (duplicates map to the same one).
    pub fn deploy_id(&self) -> DeployId {
        match (&self.rollback_of, &self.repave_of) {
            (Some(event_id), _) => DeployId::derive_rollback(&self.service, &self.version, &self.ami, event_id),
            (None, Some(fleet)) => DeployId::derive_repave(&self.service, &self.version, &self.ami, fleet),
            (None, None) => DeployId::derive(&self.service, &self.version, &self.ami, self.attempt),
        }
    }

    /// True for a phoenix re-pave of the live release.
    pub fn is_repave(&self) -> bool {
        self.repave_of.is_some()
    }

    /// True for a rollback's redeployment of an earlier version.
    pub fn is_rollback(&self) -> bool {
        self.rollback_of.is_some()
    }
}

/// A request to roll a service back to its previous version (an engineer or an alarm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRequest {
    pub service: String,
    pub trigger: Trigger,
    /// The engineer, or `alarm:<name>`.
    pub requested_by: String,
    pub reason: String,
    /// The version to go back to; None = the previous one.
    #[serde(default)]
    pub to_version: Option<String>,
    /// The event's id and own time (milliseconds since the epoch).
    pub event_id: String,
    pub event_time_ms: u64,
}

/// What EC2 says about the AMI to deploy (observed by start-deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    pub owner: String,
    pub available: bool,
    pub tags: BTreeMap<String, String>,
}

/// What launch-green reads before it first touches the switch points: each switch point's
/// actions (by its ARN) and each target group's deregistration delay (seconds, by ARN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchObservation {
    #[serde(default)]
    pub points: Vec<(String, Vec<crate::switch::SeenAction>)>,
    #[serde(default)]
    pub drain_s: Vec<(String, u64)>,
}

/// ELB target health states (and `Missing`: not registered at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
    Missing,
}

impl TargetState {
    /// The state's name as the load balancer spells it (`initial`, `healthy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Unused => "unused",
            TargetState::Draining => "draining",
            TargetState::Unavailable => "unavailable",
            TargetState::Missing => "not registered",
        }
    }
}

/// One green target's health as the load balancer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub instance_id: String,
    pub state: TargetState,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One green instance's smoke-test result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeResult {
    pub instance_id: String,
    pub passed: bool,
    pub detail: String,
}

/// What check-health saw. Smoke results are present only when every target was healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub targets: Vec<TargetHealth>,
    pub smoke: Vec<SmokeResult>,
}

impl HealthReport {
    /// True when every one of `instances` is registered and healthy (the smoke test is due).
    pub fn all_healthy(&self, instances: &[String]) -> bool {
        !instances.is_empty()
            && instances.iter().all(|id| {
                self.targets
                    .iter()
                    .any(|t| &t.instance_id == id && t.state == TargetState::Healthy)
            })
    }
}

/// Who asked for a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A `RollbackRequested` event (the CLI, a runbook, a drill).
    Engineer,
    /// One of the service's CloudWatch alarms went to ALARM.
    Alarm,
    /// Canary analysis found green worse than blue beyond its tolerance.
    Analysis,
    /// A lifecycle hook answered `FAILED` (or timed out with `rollback`).
    Hook,
}

impl Trigger {
    /// The trigger as the ledger and the CLI spell it (`engineer`, `alarm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Engineer => "engineer",
            Trigger::Alarm => "alarm",
            Trigger::Analysis => "analysis",
            Trigger::Hook => "hook",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a deployment request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// greenlight's own `ImagePublished` event (a pipeline, the CLI's `deploy`).
    #[serde(rename = "greenlight")]
    Greenlight,
    /// An EC2 Image Builder image became AVAILABLE.
    #[serde(rename = "imagebuilder")]
    ImageBuilder,
    /// A release manifest was uploaded to S3.
    #[serde(rename = "s3-manifest")]
    S3Manifest,
    /// An EC2 AMI tagged with a service and version became available (`EC2 AMI State Change`).
    #[serde(rename = "ec2-ami")]
    Ec2Ami,
    /// A rollback with nothing warm redeploys an earlier release.
    #[serde(rename = "rollback")]
    Rollback,
    /// A phoenix re-pave: the live release deployed again on fresh instances.
    #[serde(rename = "repave")]
    Repave,
}

impl ImageSource {
    /// The source as the ledger and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSource::Greenlight => "greenlight",
            ImageSource::ImageBuilder => "imagebuilder",
            ImageSource::S3Manifest => "s3-manifest",
            ImageSource::Ec2Ami => "ec2-ami",
            ImageSource::Rollback => "rollback",
            ImageSource::Repave => "repave",
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
