//! The ledger's records. The ledger is the source of truth: every handler reads these,
//! decides, writes them back conditionally (on `gen`), then makes the world match.

use crate::request::{ImageRequest, RevertRequest};
pub use crate::request::{ImageSource, Trigger};
use crate::switch::Frame;
use crate::{config::ServiceConfig, Epoch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

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
    /// When its fleet was launched (its deployment's start), or adopted at registration: the
    /// age phoenix re-paves count from. None in records from before it was kept (the fleet's
    /// age is then unknown and it is not re-paved until a deployment replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<Epoch>,
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
    /// What the scheduled reconcile's fleet audit found still open (drift at the switch
    /// point, strangers in the target groups, orphaned instances): absent when nothing is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<crate::finding::FleetAudit>,
}

/// A claimed rollback of deployment `deploy_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertClaim {
    pub deploy_id: String,
    pub request: RevertRequest,
    pub received_at_ms: u64,
}

/// A fast rollback, ready to apply: put `weights` on every one of `points` (each with the
/// frame greenlight keeps, so the changes need no read first and go out concurrently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertPlan {
    pub deploy_id: String,
    #[serde(default)]
    pub points: Vec<crate::switch::PointWrite>,
    /// A plan written before plans had `points`: its one switch point (no frame, so the load
    /// balancer adapter reads it before writing). Only ever read.
    #[serde(default, skip_serializing)]
    pub switch: Option<crate::switch::Switch>,
    /// `(target group ARN, weight)`: the previous fleet 100, the deployment's 0.
    pub weights: Vec<(String, u8)>,
    pub from: String,
    pub back_to: String,
    /// When the deployment started (ms): older triggers concern an earlier version.
    pub since_ms: u64,
    /// The deployment holds instead of reverting on an alarm (`on_failure: hold`): the plan
    /// is not mirrored onto the alarms, so only an engineer's rollback takes the fast path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alarms_hold: bool,
}

impl RevertPlan {
    /// The switch points the plan changes.
    pub fn writes(&self) -> Vec<crate::switch::PointWrite> {
        match (&self.switch, self.points.is_empty()) {
            (Some(switch), true) => vec![crate::switch::PointWrite {
                switch: switch.clone(),
                frame: None,
            }],
            _ => self.points.clone(),
        }
    }
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
            findings: None,
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
    /// Which phase this is, without its data (timelines, views, the ledger's `phase`).
    pub fn kind(&self) -> PhaseName {
        match self {
            Phase::Launching => PhaseName::Launching,
            Phase::Verifying { .. } => PhaseName::Verifying,
            Phase::Verified { .. } => PhaseName::Verified,
            Phase::Shifting { .. } => PhaseName::Shifting,
            Phase::Baking { .. } => PhaseName::Baking,
            Phase::Retiring { .. } => PhaseName::Retiring,
            Phase::Succeeded => PhaseName::Succeeded,
            Phase::Aborting { .. } => PhaseName::Aborting,
            Phase::Aborted { .. } => PhaseName::Aborted,
        }
    }

    /// The phase's name, as stored in the ledger's `phase` attribute.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// True once nothing more will happen to this deployment.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Aborted { .. })
    }

    /// Green's share of traffic (%) the phase asks for: the target of a shift, 100 from
    /// baking on, 0 before any shift and once traffic is back on blue.
    pub fn green_weight(&self) -> u8 {
        match self {
            Phase::Launching | Phase::Aborting { .. } | Phase::Aborted { .. } => 0,
            Phase::Verifying { weight, .. } | Phase::Verified { weight } => *weight,
            Phase::Shifting { to, .. } => *to,
            Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded => 100,
        }
    }
}

/// A phase's name: the closed set of [`Phase`]'s variants, serialised as the ledger has always
/// spelt them (`launching`, …, `aborted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Launching,
    Verifying,
    Verified,
    Shifting,
    Baking,
    Retiring,
    Succeeded,
    Aborting,
    Aborted,
}

impl PhaseName {
    /// Every phase, in the order a deployment goes through them.
    pub const ALL: [PhaseName; 9] = [
        PhaseName::Launching,
        PhaseName::Verifying,
        PhaseName::Verified,
        PhaseName::Shifting,
        PhaseName::Baking,
        PhaseName::Retiring,
        PhaseName::Succeeded,
        PhaseName::Aborting,
        PhaseName::Aborted,
    ];

    /// The name as the ledger, the timelines and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Launching => "launching",
            PhaseName::Verifying => "verifying",
            PhaseName::Verified => "verified",
            PhaseName::Shifting => "shifting",
            PhaseName::Baking => "baking",
            PhaseName::Retiring => "retiring",
            PhaseName::Succeeded => "succeeded",
            PhaseName::Aborting => "aborting",
            PhaseName::Aborted => "aborted",
        }
    }

    /// True once nothing more will happen to a deployment in this phase.
    pub fn is_terminal(self) -> bool {
        matches!(self, PhaseName::Succeeded | PhaseName::Aborted)
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment resumed by the scheduled reconcile (its lease had expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResume {
    /// The scheduled run's event id.
    pub run_id: String,
    /// The follow-up execution it started (`<deploy id>-resume-<gen>`).
    pub execution: String,
}

/// One line of a deployment's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at: Epoch,
    /// The phase the deployment was in (or entered) when this was noted.
    pub phase: PhaseName,
    /// Green's share of traffic that phase asks for ([`Phase::green_weight`]), on the marks
    /// where it changed (the first mark has it): the dashboard draws the weight over time
    /// from it. None where it stayed the same, and in marks written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    pub note: String,
}

/// Why and how fast a deployment was rolled back. Times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRecord {
    pub trigger: Trigger,
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
    /// Where the request came from.
    pub source: ImageSource,
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
    /// Late steps (retire-blue, once due) that failed in a row while green is live, each
    /// caught by abort-deployment, which cannot abort any more: the next try waits
    /// [`crate::plan::late_step_wait`], and at [`crate::plan::LATE_STEP_TRIES`] greenlight
    /// stops and the service needs attention. Back to 0 when the deployment changes phase.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_failures: u32,
    /// Times the scheduled reconcile found this deployment's lease expired in its current
    /// phase (nothing moved it: its execution never started, or stopped) and resumed it in a
    /// new execution; past [`crate::plan::MAX_RESUMES`] it is aborted if green has not gone
    /// live, else greenlight stops and the service needs attention. Back to 0 when the
    /// deployment changes phase.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumes: u32,
    /// The last resume: the reconcile run that decided it and the execution it started, so
    /// that the same run delivered again (after a crash before its StartExecution) starts
    /// that execution instead of finding the lease it renewed and doing nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resume: Option<LastResume>,
    /// What greenlight keeps of each switch point (by its ARN): read by launch-green before
    /// it first touches them, re-sent by every change of this deployment. Empty for a
    /// deployment recorded before frames were (its changes read the frame first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub frames: BTreeMap<String, Frame>,
    /// Each target group's deregistration delay (seconds, by ARN), read by launch-green from
    /// the group's `deregistration_delay.timeout_seconds`: how long a fleet leaving it drains.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drain_s: BTreeMap<String, u64>,
    /// Aborting a green that had traffic: when the switch points were first read back
    /// forwarding nothing to it (the abort's listener change confirmed). Green drains from
    /// then, not from the abort's decision: a run that crashed between the two left it
    /// serving meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_back_at: Option<Epoch>,
    /// Canary analysis of this deployment: the window judged now, when the next evaluation
    /// is due, and every evaluation with its numbers (None without `analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::AnalysisRecord>,
    /// The approval pauses this deployment reached (`"pause"` in `canary_steps`), in order:
    /// when each began, its deadline, and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<PauseRecord>,
    /// What a failed gate, analysis or alarm does to this deployment (the release's
    /// `on_failure`, else the registration's), fixed when it started. Rollbacks'
    /// redeployments and re-paves always revert.
    #[serde(default, skip_serializing_if = "crate::config::OnFailure::is_revert")]
    pub on_failure: crate::config::OnFailure,
    /// The times this deployment was held instead of reverted (`on_failure: hold`), in order;
    /// the last one holds it while it has not ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<HoldRecord>,
    /// The lifecycle hooks this deployment called, one record per hook and point (its
    /// stage and green's weight there): its calls and how it decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hook::HookRecord>,
    pub timeline: Vec<Mark>,
}

/// One hold of a deployment: a failure froze it at `weight` % instead of reverting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub since: Epoch,
    /// Green's weight when it froze.
    pub weight: u8,
    pub cause: HoldCause,
    /// What failed, in words (the alarm's name, the gate's or the analysis's reason).
    pub reason: String,
    /// None while it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<HoldEnd>,
}

/// What froze a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldCause {
    /// The health gate or the smoke test failed.
    Gate,
    /// Canary analysis found green worse than blue.
    Analysis,
    /// One of the service's alarms went to ALARM.
    Alarm,
    /// A lifecycle hook answered `FAILED` (or timed out with `rollback`).
    Hook,
}

impl HoldCause {
    /// `gate`, `analysis`, `alarm` or `hook`, as the ledger and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldCause::Gate => "gate",
            HoldCause::Analysis => "analysis",
            HoldCause::Alarm => "alarm",
            HoldCause::Hook => "hook",
        }
    }
}

/// How a hold ended: an engineer's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldEnd {
    pub at: Epoch,
    pub action: HoldAction,
    pub requested_by: String,
    /// The request's event id (a promote's: its duplicate delivery releases nothing more).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
}

/// The engineer's decision that ended a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldAction {
    /// `greenlight promote`: the deployment goes on (the health gates still apply).
    Promoted,
    /// `greenlight rollback`: traffic back on blue, green cleaned up.
    RolledBack,
    /// `greenlight abort`: the same before green is live.
    Aborted,
}

impl HoldAction {
    /// `promoted`, `rolled_back` or `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldAction::Promoted => "promoted",
            HoldAction::RolledBack => "rolled_back",
            HoldAction::Aborted => "aborted",
        }
    }
}

/// One approval pause of a deployment: green verified at `weight` % waits for an engineer's
/// `greenlight promote` until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    pub weight: u8,
    pub since: Epoch,
    pub until: Epoch,
    /// None while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<PauseEnd>,
}

/// How an approval pause ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum PauseEnd {
    /// An engineer's `PromoteRequested` (its event id: a duplicate delivery approves nothing more).
    Approved {
        at: Epoch,
        requested_by: String,
        reason: String,
        event_id: String,
    },
    /// Nobody approved it in time: the registration's `on_pause_timeout` was done.
    TimedOut {
        at: Epoch,
        action: crate::config::OnPauseTimeout,
    },
    /// The registration stopped declaring it while it waited.
    Withdrawn { at: Epoch },
}

impl Deployment {
    /// The pause green waits in now, at `weight` %: begun and not ended.
    pub fn waiting_pause(&self, weight: u8) -> Option<&PauseRecord> {
        self.pauses.iter().find(|p| p.weight == weight && p.ended.is_none())
    }

    /// The hold that freezes this deployment now: begun and not ended (never once it ended).
    pub fn held(&self) -> Option<&HoldRecord> {
        self.holds
            .last()
            .filter(|h| h.ended.is_none() && !self.phase.is_terminal())
    }

    /// True when the pause at `weight` % ended (approved, or timed out).
    pub fn pause_ended(&self, weight: u8) -> bool {
        self.pauses.iter().any(|p| p.weight == weight && p.ended.is_some())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Deployment {
    /// Moves to `phase` at `now`, noting why in the timeline.
    pub fn enter(&mut self, phase: Phase, now: Epoch, note: impl Into<String>) {
        if phase.kind() != self.phase.kind() {
            // Progress: failures of the late step counted in the phase left behind are over,
            // and so are the resumes of a stuck phase.
            self.late_failures = 0;
            self.resumes = 0;
        }
        let weight = phase.green_weight();
        let changed = self.timeline.iter().rev().find_map(|m| m.weight) != Some(weight);
        self.timeline.push(Mark {
            at: now,
            phase: phase.kind(),
            // Only where green's weight changes: the ledger item stays small (its size is
            // what every read and write of it costs).
            weight: changed.then_some(weight),
            note: note.into(),
        });
        self.phase = phase;
        self.updated_at = now;
    }

    /// How long a fleet leaving `target_group` drains: the group's own delay as launch-green
    /// read it, else the registration's `deregistration_delay_s`.
    pub fn drain_s_of(&self, target_group: &str, config: &ServiceConfig) -> u64 {
        self.drain_s
            .get(target_group)
            .copied()
            .unwrap_or(config.deregistration_delay_s)
    }

    /// The longest target-group stickiness of the switch points (seconds; 0 without). With
    /// group stickiness the load balancer keeps sending a client to the group it got,
    /// whatever the weights, until its cookie expires: a fleet that had traffic may leave its
    /// group only this long after its weight went to 0, or its sticky clients get 503s.
    pub fn stickiness_s(&self) -> u64 {
        self.frames
            .values()
            .filter_map(|f| f.stickiness.as_ref())
            .filter(|s| s.enabled)
            .map(|s| s.duration_s.unwrap_or(0).max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// The changes that put `config`'s switch points to new weights, each with its frame.
    pub fn point_writes(&self, config: &ServiceConfig) -> Vec<crate::switch::PointWrite> {
        config
            .switch
            .points()
            .iter()
            .map(|switch| crate::switch::PointWrite {
                switch: switch.clone(),
                frame: self.frames.get(switch.arn()).cloned(),
            })
            .collect()
    }

    /// The release green becomes when it goes live.
    pub fn green_release(&self) -> Release {
        Release {
            version: self.version.clone(),
            ami: self.ami.clone(),
            target_group: self.green_tg.clone(),
            instance_ids: self.green_instances.clone(),
            deploy_id: Some(self.deploy_id.clone()),
            launched_at: Some(self.created_at),
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

/// An alarm's claim of a revert plan older than this no longer holds the plan (its handler
/// died and was not retried; Lambda's async retries come within minutes).
pub const STALE_CLAIM_MS: u64 = 15 * 60 * 1000;

/// Who may change a revert plan while an alarm's claim of it is pending (I25): between the
/// claim (on the alarm's alias) and its listener change, only the rollback that claim belongs
/// to may move the plan, or anyone once the claim is stale. The ledger adapter writes this as
/// the alias update's condition; the simulator's ledger checks the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimGuard<'a> {
    /// The event whose claim this commit completes (the rollback the deployment records).
    pub claimed_by: Option<&'a str>,
    /// A claim made before this (ms since the epoch) is stale.
    pub stale_before_ms: u64,
}

impl ClaimGuard<'_> {
    /// True when a commit may change the plan over an alias claimed by `claim_event` at
    /// `claimed_at_ms` (no claim: always).
    pub fn frees(&self, claim_event: Option<&str>, claimed_at_ms: Option<u64>) -> bool {
        claim_event.is_none()
            || claim_event == self.claimed_by
            || claimed_at_ms.is_some_and(|at| at < self.stale_before_ms)
    }
}

impl State {
    /// The guard a commit of this state (the state after a decision) writes the revert plan
    /// under: its deployment's rollback may complete its own claim, and claims older than
    /// [`STALE_CLAIM_MS`] before the decision no longer hold.
    pub fn plan_claim_guard(&self) -> ClaimGuard<'_> {
        let dep = self.deployment.as_ref();
        let decided_at_ms = dep.map_or(0, |d| d.updated_at.saturating_mul(1000));
        ClaimGuard {
            claimed_by: dep.and_then(|d| d.revert.as_ref()).map(|r| r.event_id.as_str()),
            stale_before_ms: decided_at_ms.saturating_sub(STALE_CLAIM_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn each_phase_asks_green_for_its_weight_and_the_timeline_records_it() {
        let table = [
            (Phase::Launching, 0),
            (Phase::Verifying { weight: 10, polls: 2 }, 10),
            (Phase::Verified { weight: 50 }, 50),
            (Phase::Shifting { from: 10, to: 50 }, 50),
            (Phase::Baking { until: 9 }, 100),
            (Phase::Retiring { drain_until: 9 }, 100),
            (Phase::Succeeded, 100),
            (
                Phase::Aborting {
                    reason: "x".into(),
                    drain_until: 9,
                },
                0,
            ),
            (Phase::Aborted { reason: "x".into() }, 0),
        ];
        for (phase, weight) in table {
            assert_eq!(phase.green_weight(), weight, "{phase:?}");
        }
        let mut dep: Deployment = serde_json::from_value(json!({
            "deploy_id": "d-0123456789abcdef0123", "service": "checkout", "version": "v2",
            "ami": "ami-0123456789abcdef0", "gen": 1, "source": "greenlight", "requested_by": "ci",
            "reason": null, "blue": null, "green_tg": "arn:tg/b", "green_instances": [],
            "phase": {"phase": "launching"}, "max_weight": 0, "created_at": 1, "updated_at": 1,
            "healthy_at": null, "revert": null, "rollback": false, "timeline": []
        }))
        .unwrap();
        dep.enter(Phase::Launching, 2, "launching");
        dep.enter(Phase::Shifting { from: 0, to: 10 }, 5, "shifting");
        dep.enter(Phase::Verifying { weight: 10, polls: 0 }, 6, "verifying");
        dep.enter(Phase::Aborted { reason: "x".into() }, 7, "aborted");
        let weights: Vec<Option<u8>> = dep.timeline.iter().map(|m| m.weight).collect();
        assert_eq!(weights, [Some(0), Some(10), None, Some(0)], "recorded where it changes");
        let written = serde_json::to_value(&dep.timeline[1]).unwrap();
        assert_eq!(
            written,
            json!({"at": 5, "phase": "shifting", "weight": 10, "note": "shifting"})
        );
        assert_eq!(serde_json::to_value(&dep.timeline[2]).unwrap().get("weight"), None);
    }

    /// Items as the code before the closed-set enums wrote them (strings everywhere): they
    /// still read, and are written back byte for byte the same.
    #[test]
    fn ledger_items_written_before_the_enums_read_and_write_back_unchanged() {
        let deployment = json!({
            "deploy_id": "d-0123456789abcdef0123", "service": "checkout", "version": "v2",
            "ami": "ami-0123456789abcdef0", "gen": 7, "source": "rollback",
            "requested_by": "alarm:checkout-5xx", "reason": "rollback: p99",
            "blue": {"version": "v1", "ami": "ami-00000001", "target_group": "arn:tg/a",
                     "instance_ids": ["i-1"], "deploy_id": null},
            "green_tg": "arn:tg/b", "green_instances": ["i-2"],
            "phase": {"phase": "aborted", "reason": "rolled back"}, "max_weight": 100,
            "created_at": 1000, "updated_at": 1300, "healthy_at": 1100,
            "revert": {"trigger": "alarm", "requested_by": "alarm:checkout-5xx", "reason": "5xx",
                       "event_id": "e-1", "event_time_ms": 1_200_000, "received_at_ms": 1_200_100,
                       "back_to": "v1", "traffic_back_at_ms": 1_200_400},
            "rollback": false,
            "timeline": [
                {"at": 1000, "phase": "launching", "note": "started"},
                {"at": 1100, "phase": "verified", "note": "gates passed"},
                {"at": 1150, "phase": "baking", "note": "live"},
                {"at": 1200, "phase": "aborting", "note": "alarm"},
                {"at": 1300, "phase": "aborted", "note": "done"}
            ]
        });
        let dep: Deployment = serde_json::from_value(deployment.clone()).unwrap();
        assert_eq!(
            (dep.source, dep.revert.as_ref().unwrap().trigger),
            (ImageSource::Rollback, Trigger::Alarm)
        );
        assert_eq!(dep.timeline[2].phase, PhaseName::Baking);
        assert_eq!(serde_json::to_value(&dep).unwrap(), deployment);

        let request = |source: &str| {
            json!({"service": "checkout", "version": "2.5.0/1", "ami": "ami-00000002", "source": source,
                   "requested_by": "ci", "reason": null, "attempt": 1, "rollback_of": null})
        };
        for (text, source) in [
            ("greenlight", ImageSource::Greenlight),
            ("imagebuilder", ImageSource::ImageBuilder),
            ("s3-manifest", ImageSource::S3Manifest),
            ("ec2-ami", ImageSource::Ec2Ami),
            ("rollback", ImageSource::Rollback),
        ] {
            let parsed: ImageRequest = serde_json::from_value(request(text)).unwrap();
            assert_eq!(parsed.source, source);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), request(text));
            assert_eq!(source.to_string(), text);
        }
        let state: Value = json!({
            "service": "checkout", "gen": 3, "live": null, "warm": null, "active": "d-0123456789abcdef0123",
            "lease_until": 2000, "queued": request("s3-manifest"), "last_revert": null, "attention": null,
            "revert_plan": null,
            "revert_claim": {"deploy_id": "d-0123456789abcdef0123", "received_at_ms": 5,
                             "request": {"service": "checkout", "trigger": "engineer", "requested_by": "alice",
                                         "reason": "p99", "to_version": null, "event_id": "e-2",
                                         "event_time_ms": 4}}
        });
        let parsed: ServiceState = serde_json::from_value(state.clone()).unwrap();
        assert_eq!(parsed.revert_claim.as_ref().unwrap().request.trigger, Trigger::Engineer);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), state);
        // A value outside the closed set is refused, not guessed.
        let mut odd = deployment.clone();
        odd["source"] = "ftp".into();
        assert!(serde_json::from_value::<Deployment>(odd).is_err());
    }

    #[test]
    fn a_pending_alarm_claim_holds_the_plan_for_its_own_rollback_until_it_is_stale() {
        let guard = ClaimGuard {
            claimed_by: Some("e-1"),
            stale_before_ms: 1_000_000,
        };
        let table = [
            (None, None, true),                    // nothing claimed
            (Some("e-1"), Some(1_500_000), true),  // the claim this commit completes
            (Some("e-2"), Some(1_500_000), false), // another event's fresh claim
            (Some("e-2"), Some(999_999), true),    // ... once stale
            (Some("e-2"), None, false),            // a claim of unknown age holds
        ];
        for (event, at, frees) in table {
            assert_eq!(guard.frees(event, at), frees, "{event:?} at {at:?}");
        }
        let unclaimed = ClaimGuard {
            claimed_by: None,
            stale_before_ms: 0,
        };
        assert!(
            !unclaimed.frees(Some("e-2"), Some(0)),
            "nothing is stale before the epoch"
        );
    }

    #[test]
    fn phase_names_are_the_ledger_spelling_of_every_phase() {
        for name in PhaseName::ALL {
            assert_eq!(serde_json::to_value(name).unwrap(), json!(name.as_str()));
        }
        let phases = [
            Phase::Launching,
            Phase::Verifying { weight: 0, polls: 0 },
            Phase::Verified { weight: 0 },
            Phase::Shifting { from: 0, to: 10 },
            Phase::Baking { until: 0 },
            Phase::Retiring { drain_until: 0 },
            Phase::Succeeded,
            Phase::Aborting {
                reason: String::new(),
                drain_until: 0,
            },
            Phase::Aborted { reason: String::new() },
        ];
        for (phase, name) in phases.iter().zip(PhaseName::ALL) {
            assert_eq!(phase.kind(), name);
            assert_eq!(serde_json::to_value(phase).unwrap()["phase"], json!(name.as_str()));
            assert_eq!(phase.is_terminal(), name.is_terminal());
        }
    }
}
