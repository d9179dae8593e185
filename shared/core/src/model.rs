//! The ledger's records. The ledger is the source of truth: every handler reads these,
//! decides, writes them back conditionally (on `gen`), then makes the world match.

use crate::decide::ImageRequest;
use crate::{config::ServiceConfig, Epoch};
use serde::{Deserialize, Serialize};

/// A version of a service running on a fleet in one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    pub ami: String,
    pub target_group: String,
    pub instance_ids: Vec<String>,
    /// The deployment that made it live (none for a release adopted at registration).
    #[serde(default)]
    pub deploy_id: Option<String>,
}

/// Per-service pointer record: what is live, what is warm, which deployment is in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub service: String,
    /// Generation for conditional writes; bumped by the ledger on every write.
    pub gen: u64,
    pub live: Option<Release>,
    /// The previous live release, kept warm for the bake window (revert = one flip).
    pub warm: Option<Release>,
    /// The deployment in flight (from start until it succeeds or is aborted): the lease owner.
    pub active: Option<String>,
    /// When `active`'s lease runs out unless its deployment makes progress (renewed by every
    /// step); after it, the next image or rollback may take the service over.
    #[serde(default)]
    pub lease_until: Option<Epoch>,
    /// The deployment to start when `active` ends (policy `queue`, a superseding image, or a
    /// rollback waiting for the fleet it replaces).
    #[serde(default)]
    pub queued: Option<ImageRequest>,
    /// The last rollback that put a version back live (for loop protection).
    #[serde(default)]
    pub last_revert: Option<LastRevert>,
    /// Set when greenlight stopped acting on its own (e.g. the version it rolled back to
    /// alarms too): why. Cleared by the next deployment that succeeds.
    #[serde(default)]
    pub attention: Option<String>,
    /// The one listener change that rolls the deployment in flight back, while its previous
    /// fleet is warm (derived by `decide`; the ledger also keeps it where a rollback trigger
    /// can claim it in one conditional write, without reading first).
    #[serde(default)]
    pub revert_plan: Option<RevertPlan>,
    /// A rollback claimed by the fast path and not yet recorded: whichever delivery touches
    /// the deployment next (the trigger's own bookkeeping, or any step) completes it first.
    #[serde(default)]
    pub revert_claim: Option<RevertClaim>,
}

/// A claimed rollback of deployment `deploy_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertClaim {
    pub deploy_id: String,
    pub request: crate::decide::RevertRequest,
    pub received_at_ms: u64,
}

/// A fast rollback, ready to apply: put `weights` on `switch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertPlan {
    pub deploy_id: String,
    pub switch: crate::config::Switch,
    /// `(target group ARN, weight)`: the previous fleet 100, the deployment's 0.
    pub weights: Vec<(String, u8)>,
    pub from: String,
    pub back_to: String,
    /// When the deployment started (ms): older triggers concern an earlier version.
    pub since_ms: u64,
}

/// A rollback that put `back_to` live again instead of `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRevert {
    pub from: String,
    pub back_to: String,
    pub deploy_id: String,
    pub at: Epoch,
}

impl ServiceState {
    /// A service with nothing live yet, or with an adopted live release.
    pub fn new(service: &str, live: Option<Release>) -> Self {
        ServiceState {
            service: service.to_string(),
            gen: 0,
            live,
            warm: None,
            active: None,
            lease_until: None,
            queued: None,
            last_revert: None,
            attention: None,
            revert_plan: None,
            revert_claim: None,
        }
    }
}

/// Where a deployment is. Phases that end in `-ing` are intents: the ledger says what the
/// world must become, and any delivery of the step re-applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Green must be launched and registered in the idle target group.
    Launching,
    /// Green carries `weight` % of traffic; its health is being checked (`polls` so far).
    Verifying { weight: u8, polls: u32 },
    /// Green passed its checks at `weight` %.
    Verified { weight: u8 },
    /// The listener must move green from `from` % to `to` %.
    Shifting { from: u8, to: u8 },
    /// Green is live at 100 %; blue stays warm until `until`.
    Baking { until: Epoch },
    /// Blue is deregistered and draining until `drain_until`; then it is terminated.
    Retiring { drain_until: Epoch },
    /// Green live, blue retired.
    Succeeded,
    /// Traffic must return to blue and green must be terminated (after `drain_until`).
    Aborting { reason: String, drain_until: Epoch },
    /// Green terminated, traffic on blue; `reason` says why.
    Aborted { reason: String },
}

impl Phase {
    /// The phase's name, as stored in the ledger's `phase` attribute.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Launching => "launching",
            Phase::Verifying { .. } => "verifying",
            Phase::Verified { .. } => "verified",
            Phase::Shifting { .. } => "shifting",
            Phase::Baking { .. } => "baking",
            Phase::Retiring { .. } => "retiring",
            Phase::Succeeded => "succeeded",
            Phase::Aborting { .. } => "aborting",
            Phase::Aborted { .. } => "aborted",
        }
    }

    /// True once nothing more will happen to this deployment.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Aborted { .. })
    }
}

/// One line of a deployment's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at: Epoch,
    pub phase: String,
    pub note: String,
}

/// Why and how fast a deployment was rolled back. Times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRecord {
    /// `engineer` (a rollback event) or `alarm`.
    pub trigger: String,
    /// The engineer, or `alarm:<name>`.
    pub requested_by: String,
    pub reason: String,
    /// The triggering event's id (repeated deliveries of it revert once).
    pub event_id: String,
    /// The triggering event's own time.
    pub event_time_ms: u64,
    /// When greenlight received it.
    pub received_at_ms: u64,
    /// The version traffic returns to.
    pub back_to: String,
    /// When the switch point stopped giving the deployment traffic (None until it has).
    pub traffic_back_at_ms: Option<u64>,
}

impl RevertRecord {
    /// Event time → traffic back on the previous version, in milliseconds.
    pub fn time_to_revert_ms(&self) -> Option<u64> {
        self.traffic_back_at_ms.map(|t| t.saturating_sub(self.event_time_ms))
    }

    /// Receipt of the event → traffic back, in milliseconds (greenlight's own share).
    pub fn receipt_to_revert_ms(&self) -> Option<u64> {
        self.traffic_back_at_ms.map(|t| t.saturating_sub(self.received_at_ms))
    }
}

/// One deployment of one image to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub deploy_id: String,
    pub service: String,
    pub version: String,
    pub ami: String,
    /// Generation for conditional writes; bumped by the ledger on every write.
    pub gen: u64,
    /// Where the request came from: `imagebuilder`, `s3-manifest`, `greenlight`.
    pub source: String,
    pub requested_by: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The release live when the deployment started (the fleet we move away from).
    pub blue: Option<Release>,
    /// The idle target group green goes into.
    pub green_tg: String,
    pub green_instances: Vec<String>,
    pub phase: Phase,
    /// The highest green weight ever requested of the listener (0 = listener never touched).
    pub max_weight: u8,
    pub created_at: Epoch,
    pub updated_at: Epoch,
    /// When green first passed its gates (for time-to-healthy).
    #[serde(default)]
    pub healthy_at: Option<Epoch>,
    /// Set when the deployment was rolled back (by an engineer or an alarm).
    #[serde(default)]
    pub revert: Option<RevertRecord>,
    /// True for a rollback's redeployment of an earlier version (the slow path).
    #[serde(default)]
    pub rollback: bool,
    /// Who promoted the deployment (remaining canary steps and bake window skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    pub timeline: Vec<Mark>,
}

impl Deployment {
    /// Moves to `phase` at `now`, noting why in the timeline.
    pub fn enter(&mut self, phase: Phase, now: Epoch, note: impl Into<String>) {
        self.timeline.push(Mark {
            at: now,
            phase: phase.name().to_string(),
            note: note.into(),
        });
        self.phase = phase;
        self.updated_at = now;
    }

    /// The release green becomes when it goes live.
    pub fn green_release(&self) -> Release {
        Release {
            version: self.version.clone(),
            ami: self.ami.clone(),
            target_group: self.green_tg.clone(),
            instance_ids: self.green_instances.clone(),
            deploy_id: Some(self.deploy_id.clone()),
        }
    }
}

/// What a handler reads from the ledger before deciding: the registration, the service's
/// pointers and (when the event names one) the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub config: ServiceConfig,
    pub service: ServiceState,
    pub deployment: Option<Deployment>,
}
