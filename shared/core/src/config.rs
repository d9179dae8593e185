//! A service's registration: where its traffic switches, its blue/green target-group pair,
//! how to launch green, the health gates, the rollout shape and the bake window.
//! Validated as a whole with errors that say what to fix.

use crate::ids;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::switch::{Switch, Switches};

/// The bake window of a registration stored without one, unless the installation sets another.
pub const DEFAULT_BAKE_WINDOW_S: u64 = 3600;

/// Lambda's maximum function timeout (seconds): no invocation of any function runs longer.
pub const LAMBDA_MAX_RUNTIME_S: u64 = 900;

/// Everything greenlight needs to know to deploy one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name: ledger key, instance tag, report prefix.
    pub service: String,
    /// Where user traffic is switched: one switch point, or a list of them (every listener
    /// and rule that serves the service); every traffic change moves all of them.
    pub switch: Switches,
    /// The blue/green pair of target groups (ARNs). Green is always the one not live.
    pub target_groups: [String; 2],
    /// How green instances are launched.
    pub launch: LaunchSettings,
    /// Health gates before (and between) traffic shifts.
    pub health: HealthSettings,
    /// All at once (`canary_steps: [100]`) or weighted canary steps.
    #[serde(default)]
    pub rollout: Rollout,
    /// How long the previous fleet stays warm after 100 % (seconds). A registration stored
    /// without it gets the installation's default ([`DEFAULT_BAKE_WINDOW_S`] unless the stack
    /// sets `DefaultBakeWindowSeconds`).
    pub bake_window_s: u64,
    /// Connection-draining wait after deregistering a fleet, before terminating it (seconds),
    /// for a deployment that has not read its target groups' own: launch-green reads each
    /// group's `deregistration_delay.timeout_seconds` and the deployment uses that.
    #[serde(default = "default_deregistration_delay_s")]
    pub deregistration_delay_s: u64,
    /// Which AMIs may be deployed.
    #[serde(default)]
    pub ami_policy: AmiPolicy,
    /// The EC2 Image Builder image name whose AVAILABLE images deploy this service, if any.
    #[serde(default)]
    pub image_builder_name: Option<String>,
    /// CloudWatch alarm names whose change to ALARM rolls this service back.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// What a new image does while a deployment is in flight.
    #[serde(default)]
    pub on_new_image: NewImagePolicy,
    /// How long the deployment in flight holds the service without making progress before
    /// the next image or rollback may take it over (seconds, beyond the step's own wait).
    #[serde(default = "default_lease_s")]
    pub lease_s: u64,
    /// The longest one invocation of a greenlight function can run (seconds): more than the
    /// stack's largest function `Timeout`. A green fleet that may still receive a listener
    /// change decided before its abort is deregistered only this long after the abort was
    /// decided (I26). Default [`LAMBDA_MAX_RUNTIME_S`], Lambda's maximum timeout.
    #[serde(default = "default_max_invocation_s")]
    pub max_invocation_s: u64,
    /// Phoenix re-paves: once the live fleet is older than this (seconds since greenlight
    /// launched it, or since it was adopted) and nothing is in flight, the scheduled reconcile
    /// deploys the live release again (same image, same configuration) blue/green through
    /// every gate, recorded as a `repave` and revertible like any deployment. None: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instance_age_s: Option<u64>,
    /// When a re-pave may start (UTC hours); None: any time. A re-pave due outside them waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_hours: Option<MaintenanceHours>,
    /// What the scheduled reconcile does about the fleet between deployments: drift at the
    /// switch point, strangers in the target groups, orphaned instances ([`crate::audit`]).
    #[serde(default)]
    pub reconcile: ReconcilePolicy,
    /// Canary analysis: green judged against blue on real traffic between canary steps and
    /// through the bake window ([`crate::analysis`]). None: health gates and alarms only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::Analysis>,
    /// Lifecycle hooks: a Lambda function or an HTTPS webhook called at a stage of every
    /// deployment, whose answer gates it ([`crate::hook`], [`crate::hooking`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hook::Hook>,
}

/// The default grace before an orphaned instance is terminated (seconds since its launch).
pub const DEFAULT_ORPHAN_GRACE_S: u64 = 3600;

/// The longest orphan grace a registration may set (seconds): 7 days.
pub const MAX_ORPHAN_GRACE_S: u64 = 7 * 86_400;

/// What the scheduled reconcile does about what it finds (`"reconcile"` in a registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilePolicy {
    /// The switch point forwards somewhere the ledger does not say.
    #[serde(default)]
    pub drift: Remedy,
    /// Instances registered in the target groups that no release launched (or launched from
    /// another image): `repair` deregisters them, never terminates them.
    #[serde(default)]
    pub strangers: Remedy,
    /// Instances tagged as greenlight's for this service that no deployment accounts for are
    /// terminated once launched longer ago than this (seconds). Always repaired: greenlight
    /// launched them and nothing needs them.
    #[serde(default = "default_orphan_grace_s")]
    pub orphan_grace_s: u64,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        ReconcilePolicy {
            drift: Remedy::Report,
            strangers: Remedy::Report,
            orphan_grace_s: DEFAULT_ORPHAN_GRACE_S,
        }
    }
}

/// What to do about a finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Record it in the ledger, log it and count it (an alarm can watch the metric).
    #[default]
    Report,
    /// The same, and make the fleet what the ledger says.
    Repair,
}

impl Remedy {
    pub fn name(self) -> &'static str {
        match self {
            Remedy::Report => "report",
            Remedy::Repair => "repair",
        }
    }
}

fn default_orphan_grace_s() -> u64 {
    DEFAULT_ORPHAN_GRACE_S
}

impl ReconcilePolicy {
    /// Its problems, one line each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_ORPHAN_GRACE_S).contains(&self.orphan_grace_s) {
            problems.push(format!(
                "reconcile.orphan_grace_s must be between 1 and {MAX_ORPHAN_GRACE_S} seconds (default {DEFAULT_ORPHAN_GRACE_S}; keep it above a deployment's launch-to-record time)"
            ));
        }
        problems
    }
}

/// Daily maintenance hours in UTC: from `start_hour` (inclusive) to `end_hour` (exclusive),
/// across midnight when `end_hour < start_hour` (`{"start_hour": 22, "end_hour": 4}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceHours {
    pub start_hour: u8,
    pub end_hour: u8,
}

impl MaintenanceHours {
    /// True when `now` (seconds since the epoch) falls within the hours.
    pub fn contains(self, now: crate::Epoch) -> bool {
        let hour = ((now / 3600) % 24) as u8;
        if self.start_hour <= self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        }
    }

    /// The next time at or after `now` that falls within the hours.
    pub fn next_start(self, now: crate::Epoch) -> crate::Epoch {
        if self.contains(now) {
            return now;
        }
        let day = now - now % 86_400;
        let start = day + u64::from(self.start_hour) * 3600;
        if start > now {
            start
        } else {
            start + 86_400
        }
    }
}

/// The shortest `max_instance_age_s` (an hour): a fleet is replaced at most this often.
pub const MIN_INSTANCE_AGE_S: u64 = 3600;

/// What a new image does while a deployment is in flight. A rollback always supersedes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewImagePolicy {
    /// Abort the deployment in flight cleanly, then start the new image.
    #[default]
    Supersede,
    /// Start the new image when the deployment in flight ends (the newest queued wins).
    Queue,
    /// Refuse the new image.
    Reject,
}

impl NewImagePolicy {
    pub fn name(self) -> &'static str {
        match self {
            NewImagePolicy::Supersede => "supersede",
            NewImagePolicy::Queue => "queue",
            NewImagePolicy::Reject => "reject",
        }
    }
}

/// RunInstances settings for green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSettings {
    pub instance_type: String,
    pub subnet_id: String,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Instance profile ARN (the only role greenlight may pass).
    #[serde(default)]
    pub instance_profile_arn: Option<String>,
    /// Fleet size.
    pub count: u32,
    /// Port the application listens on (registered in the target group, used by the smoke test).
    pub port: u16,
    #[serde(default)]
    pub user_data: Option<String>,
}

/// Health gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// Wait between target-health polls (seconds).
    pub poll_interval_s: u64,
    /// Polls before a green that is not healthy yet is declared failed.
    pub max_polls: u32,
    /// HTTP smoke test against every green instance before it gets traffic.
    pub smoke: SmokeCheck,
}

/// An HTTP smoke test: `GET http://<instance private ip>:<launch.port><path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    pub path: String,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Substring the body must contain, if set.
    #[serde(default)]
    pub expect_body: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The first switch point's listener as greenlight's functions can reach it
    /// (`http://<host>[:port]`, plain HTTP). With it, the smoke test also goes through the
    /// load balancer on the deployment's test route (the full user path to green only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_url: Option<String>,
}

/// Rollout shape.
///
/// In the registration, `canary_steps` lists green's weights and, between them, approval
/// pauses: `[10, "pause", 50, 100]` moves green to 10 %, waits for an engineer's `greenlight
/// promote` (or `pause_timeout_s`, then `on_pause_timeout`), then goes on to 50 % and 100 %.
/// A pause first (`["pause", 10, 100]`) waits with green verified at 0 %, before any user
/// traffic. In memory the weights stay a plain list and the pauses are the weights they
/// follow ([`Rollout::pauses`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RolloutWire", into = "RolloutWire")]
pub struct Rollout {
    /// Green's traffic percentages, strictly increasing, ending at 100. `[100]` = all at once.
    pub canary_steps: Vec<u8>,
    /// Wait after each canary step before checking health again (seconds).
    pub step_wait_s: u64,
    /// The weights after which green waits for an engineer's approval (0: before any user
    /// traffic), in order. A weight listed twice, or 100, is refused by [`ServiceConfig::validate`].
    pub pauses: Vec<u8>,
    /// How long a pause waits for its approval (seconds).
    pub pause_timeout_s: u64,
    /// What a pause does when nobody approved it in time.
    pub on_pause_timeout: OnPauseTimeout,
    /// What a failed gate, a regression found by analysis or an alarm does to the deployment
    /// in flight: revert (the default), or hold it where it is for an engineer. A release may
    /// say otherwise (`ImagePublished`'s `on_failure`).
    pub on_failure: OnFailure,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            canary_steps: vec![100],
            step_wait_s: 0,
            pauses: vec![],
            pause_timeout_s: DEFAULT_PAUSE_TIMEOUT_S,
            on_pause_timeout: OnPauseTimeout::default(),
            on_failure: OnFailure::default(),
        }
    }
}

impl Rollout {
    /// True when green waits for an approval once it is verified at `weight` %.
    pub fn pauses_after(&self, weight: u8) -> bool {
        self.pauses.contains(&weight)
    }
}

/// A pause's wait for its approval unless the registration says otherwise: one day.
pub const DEFAULT_PAUSE_TIMEOUT_S: u64 = 86_400;

/// The longest `pause_timeout_s` a registration may set: seven days.
pub const MAX_PAUSE_TIMEOUT_S: u64 = 7 * 86_400;

/// What an approval pause does when nobody approved it within `pause_timeout_s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPauseTimeout {
    /// Abort: traffic back on blue, green terminated (the default: nobody said yes).
    #[default]
    Abort,
    /// Go on to the next step as if approved.
    Continue,
}

impl OnPauseTimeout {
    /// `abort` or `continue`, as the registration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnPauseTimeout::Abort => "abort",
            OnPauseTimeout::Continue => "continue",
        }
    }
}

/// What a failure during a deployment does: a failed health gate or smoke test, a regression
/// found by canary analysis, one of the service's alarms (before green is retiring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Traffic back on blue, green drained and terminated (the default).
    #[default]
    Revert,
    /// Freeze the deployment where it is: no further traffic change, nothing deregistered or
    /// terminated, the service marked as needing attention, until an engineer's `promote`,
    /// `rollback` or `abort` (flagger#1186: releases whose schema change cannot be undone).
    Hold,
}

impl OnFailure {
    /// `revert` or `hold`, as the registration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Revert => "revert",
            OnFailure::Hold => "hold",
        }
    }

    /// True for the default (`revert`): the registration and the ledger omit it.
    pub fn is_revert(&self) -> bool {
        *self == OnFailure::Revert
    }
}

/// One entry of `canary_steps` as the registration spells it: a weight or `"pause"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepWire {
    Weight(u8),
    Pause,
}

impl Serialize for StepWire {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StepWire::Weight(weight) => serializer.serialize_u8(*weight),
            StepWire::Pause => serializer.serialize_str("pause"),
        }
    }
}

impl<'de> Deserialize<'de> for StepWire {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StepWire;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a percentage (1-100) or \"pause\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<StepWire, E> {
                u8::try_from(n)
                    .ok()
                    .filter(|&w| w <= 100)
                    .map(StepWire::Weight)
                    .ok_or_else(|| E::custom(format!("canary step {n} is not a percentage (1-100)")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<StepWire, E> {
                Err(E::custom(format!("canary step {n} is not a percentage (1-100)")))
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<StepWire, E> {
                match word {
                    "pause" => Ok(StepWire::Pause),
                    _ => Err(E::custom(format!(
                        "canary step {word:?} is neither a percentage nor \"pause\""
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// [`Rollout`] as the registration spells it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutWire {
    canary_steps: Vec<StepWire>,
    #[serde(default)]
    step_wait_s: u64,
    #[serde(default = "default_pause_timeout_s")]
    pause_timeout_s: u64,
    #[serde(default)]
    on_pause_timeout: OnPauseTimeout,
    #[serde(default, skip_serializing_if = "OnFailure::is_revert")]
    on_failure: OnFailure,
}

fn default_pause_timeout_s() -> u64 {
    DEFAULT_PAUSE_TIMEOUT_S
}

impl TryFrom<RolloutWire> for Rollout {
    type Error = String;

    fn try_from(wire: RolloutWire) -> Result<Self, String> {
        let mut canary_steps = Vec::new();
        let mut pauses = Vec::new();
        for step in wire.canary_steps {
            match step {
                StepWire::Weight(weight) => canary_steps.push(weight),
                StepWire::Pause => pauses.push(canary_steps.last().copied().unwrap_or(0)),
            }
        }
        Ok(Rollout {
            canary_steps,
            step_wait_s: wire.step_wait_s,
            pauses,
            pause_timeout_s: wire.pause_timeout_s,
            on_pause_timeout: wire.on_pause_timeout,
            on_failure: wire.on_failure,
        })
    }
}

impl From<Rollout> for RolloutWire {
    fn from(rollout: Rollout) -> Self {
        let mut steps = Vec::new();
        let pauses_after = |weight: u8| {
            rollout
                .pauses
                .iter()
                .filter(move |&&w| w == weight)
                .map(|_| StepWire::Pause)
        };
        steps.extend(pauses_after(0));
        for &weight in &rollout.canary_steps {
            steps.push(StepWire::Weight(weight));
            if weight > 0 {
                steps.extend(pauses_after(weight));
            }
        }
        RolloutWire {
            canary_steps: steps,
            step_wait_s: rollout.step_wait_s,
            pause_timeout_s: rollout.pause_timeout_s,
            on_pause_timeout: rollout.on_pause_timeout,
            on_failure: rollout.on_failure,
        }
    }
}

/// Which images may be deployed: owner accounts and required tags (empty = any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiPolicy {
    #[serde(default)]
    pub allowed_owners: Vec<String>,
    #[serde(default)]
    pub required_tags: BTreeMap<String, String>,
}

fn default_deregistration_delay_s() -> u64 {
    300
}
fn default_lease_s() -> u64 {
    900
}
fn default_max_invocation_s() -> u64 {
    LAMBDA_MAX_RUNTIME_S
}
fn default_expect_status() -> u16 {
    200
}
fn default_timeout_ms() -> u64 {
    2000
}

/// Everything wrong with a registration, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service registration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl ServiceConfig {
    /// A registration as the ledger stores it, with the installation's bake window
    /// (`default_bake_window_s`) where the document sets none. Not validated again: it was
    /// when it was registered.
    pub fn from_stored(mut body: serde_json::Value, default_bake_window_s: u64) -> Result<Self, serde_json::Error> {
        if let Some(fields) = body.as_object_mut() {
            fields
                .entry("bake_window_s")
                .or_insert(serde_json::json!(default_bake_window_s));
        }
        serde_json::from_value(body)
    }

    /// Parses and validates a registration document (JSON).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: ServiceConfig =
            serde_json::from_str(text).map_err(|e| ConfigError(vec![ids::sanitize(&e.to_string())]))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = ids::check_service(&self.service) {
            problems.push(e.to_string());
        }
        problems.extend(self.switch.problems());
        for tg in &self.target_groups {
            if !tg.starts_with("arn:") {
                problems.push(format!("target_groups: {} is not a target group ARN", ids::quote(tg)));
            }
        }
        if self.target_groups[0] == self.target_groups[1] {
            problems.push("target_groups must be two different target groups (blue and green)".into());
        }
        if !(1..=100).contains(&self.launch.count) {
            problems.push("launch.count must be between 1 and 100".into());
        }
        if self.launch.instance_type.is_empty() {
            problems.push("launch.instance_type is required (e.g. t3.micro)".into());
        }
        if !self.launch.subnet_id.starts_with("subnet-") {
            problems.push("launch.subnet_id must be a subnet id (subnet-...)".into());
        }
        if self.launch.port == 0 {
            problems.push("launch.port must be the application's port (1-65535)".into());
        }
        if self.health.poll_interval_s == 0 {
            problems.push("health.poll_interval_s must be at least 1".into());
        }
        if !(1..=1000).contains(&self.health.max_polls) {
            problems.push("health.max_polls must be between 1 and 1000".into());
        }
        let smoke = &self.health.smoke;
        let odd = |c: char| c.is_whitespace() || c.is_control();
        if !smoke.path.starts_with('/') || smoke.path.contains("..") || smoke.path.contains(odd) {
            problems.push("health.smoke.path must be an absolute URL path like /healthz".into());
        }
        if !(100..=599).contains(&smoke.expect_status) {
            problems.push("health.smoke.expect_status must be an HTTP status (100-599)".into());
        }
        if !(1..=60_000).contains(&smoke.timeout_ms) {
            problems.push("health.smoke.timeout_ms must be between 1 and 60000".into());
        }
        if let Some(url) = &self.health.smoke.load_balancer_url {
            let rest = url.strip_prefix("http://").unwrap_or("");
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                problems.push(format!(
                    "health.smoke.load_balancer_url must be http://<host>[:port] (plain HTTP, no path): {}",
                    ids::quote(url)
                ));
            }
        }
        let steps = &self.rollout.canary_steps;
        let increasing = steps.windows(2).all(|w| w[0] < w[1]);
        if steps.is_empty() || !increasing || steps[0] == 0 || steps.last() != Some(&100) {
            problems.push(
                "rollout.canary_steps must be strictly increasing percentages ending at 100, e.g. [10, 50, 100] or [100]".into(),
            );
        }
        let pauses = &self.rollout.pauses;
        if pauses.contains(&100) {
            problems.push(
                "rollout.canary_steps: a \"pause\" after 100 has nothing left to approve; put it before the step it guards, e.g. [10, \"pause\", 100]".into(),
            );
        }
        if pauses.windows(2).any(|w| w[0] == w[1]) {
            problems.push("rollout.canary_steps: two \"pause\" entries in a row are one pause; list it once".into());
        }
        if !(1..=MAX_PAUSE_TIMEOUT_S).contains(&self.rollout.pause_timeout_s) {
            problems.push(format!(
                "rollout.pause_timeout_s must be between 1 and {MAX_PAUSE_TIMEOUT_S} seconds (7 days; default {DEFAULT_PAUSE_TIMEOUT_S}, a day)"
            ));
        }
        if let Some(name) = &self.image_builder_name {
            if name.is_empty() || name.contains('/') {
                problems.push("image_builder_name must be an Image Builder image name (no '/')".into());
            }
        }
        if !(1..=86_400).contains(&self.lease_s) {
            problems.push(
                "lease_s must be between 1 and 86400 seconds (default 900; keep it above a step's run time)".into(),
            );
        }
        if !(1..=3600).contains(&self.max_invocation_s) {
            problems.push(format!(
                "max_invocation_s must be between 1 and 3600 seconds and above every function's Timeout (default {LAMBDA_MAX_RUNTIME_S}, Lambda's maximum)"
            ));
        }
        if let Some(age) = self.max_instance_age_s {
            let min = self.min_instance_age_s();
            if !(min..=366 * 86_400).contains(&age) {
                problems.push(format!(
                    "max_instance_age_s must be between {min} (for this registration: at least an hour, and twice the longest a deployment runs until its bake window ends, so a re-paved fleet is not due again as soon as it is live) and 31622400 (366 days), e.g. 1209600 for 14 days"
                ));
            }
        }
        if let Some(hours) = self.maintenance_hours {
            if hours.start_hour > 23 || hours.end_hour > 23 || hours.start_hour == hours.end_hour {
                problems.push(
                    "maintenance_hours must name two different UTC hours 0-23, e.g. {\"start_hour\": 2, \"end_hour\": 5}; leave it out for any time".into(),
                );
            }
            if self.max_instance_age_s.is_none() {
                problems.push(
                    "maintenance_hours only apply to re-paves: set max_instance_age_s too, or leave them out".into(),
                );
            }
        }
        problems.extend(self.reconcile.problems());
        if let Some(analysis) = &self.analysis {
            problems.extend(analysis.problems());
        }
        if self.hooks.len() > crate::hook::MAX_HOOKS {
            problems.push(format!("hooks: at most {} hooks", crate::hook::MAX_HOOKS));
        }
        for (at, hook) in self.hooks.iter().enumerate() {
            problems.extend(hook.problems(at));
            if self.hooks[..at].iter().any(|h| h.name == hook.name) {
                problems.push(format!(
                    "hooks[{at}]: the name {} is taken by an earlier hook",
                    ids::quote(&hook.name)
                ));
            }
        }
        for alarm in &self.alarms {
            let printable = alarm.chars().all(|c| !c.is_control());
            if alarm.is_empty() || alarm.len() > 255 || !printable || alarm.starts_with("arn:") {
                problems.push(format!(
                    "alarms: {} must be a CloudWatch alarm name (1-255 printable characters, not an ARN)",
                    ids::quote(alarm)
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// The shortest `max_instance_age_s` this registration may set: [`MIN_INSTANCE_AGE_S`],
    /// and twice the longest a deployment runs from its start until its bake window ends (the
    /// canary steps' waits, every step's health polls, every pause's timeout, the bake
    /// window, the lease), since a
    /// fleet's age counts from its deployment's start: shorter, and a re-paved fleet would be
    /// due again as soon as it went live, a re-pave after every scheduled run.
    pub fn min_instance_age_s(&self) -> u64 {
        let steps = self.rollout.canary_steps.len() as u64;
        let polls = (steps + 1) * u64::from(self.health.max_polls) * self.health.poll_interval_s;
        let pauses = self.rollout.pauses.len() as u64 * self.rollout.pause_timeout_s;
        let deployment = steps * self.rollout.step_wait_s + polls + pauses + self.bake_window_s + self.lease_s;
        (2 * deployment).max(MIN_INSTANCE_AGE_S)
    }

    /// The next canary weight after `weight` (100 when the steps are exhausted).
    pub fn next_weight(&self, weight: u8) -> u8 {
        self.rollout
            .canary_steps
            .iter()
            .copied()
            .find(|&w| w > weight)
            .unwrap_or(100)
    }

    /// The target group that is not `live_tg` (green), or the first one when nothing is live.
    pub fn idle_target_group(&self, live_tg: Option<&str>) -> &str {
        match live_tg {
            Some(tg) if tg == self.target_groups[0] => &self.target_groups[1],
            _ => &self.target_groups[0],
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid registration used across the core's tests.
    pub fn sample() -> ServiceConfig {
        ServiceConfig {
            service: "checkout".into(),
            switch: Switches::one(Switch {
                listener_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2".into(),
                rule_arn: None,
            }),
            target_groups: [
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/1".into(),
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/2".into(),
            ],
            launch: LaunchSettings {
                instance_type: "t3.micro".into(),
                subnet_id: "subnet-0123".into(),
                security_group_ids: vec!["sg-0123".into()],
                instance_profile_arn: None,
                count: 2,
                port: 8080,
                user_data: None,
            },
            health: HealthSettings {
                poll_interval_s: 5,
                max_polls: 3,
                smoke: SmokeCheck {
                    path: "/smoke".into(),
                    expect_status: 200,
                    expect_body: Some("ok".into()),
                    timeout_ms: 2000,
                    load_balancer_url: None,
                },
            },
            rollout: Rollout {
                canary_steps: vec![10, 50, 100],
                step_wait_s: 30,
                ..Rollout::default()
            },
            bake_window_s: 600,
            deregistration_delay_s: 60,
            ami_policy: AmiPolicy {
                allowed_owners: vec!["123456789012".into()],
                required_tags: BTreeMap::new(),
            },
            image_builder_name: None,
            alarms: vec!["checkout-5xx".into()],
            on_new_image: NewImagePolicy::Supersede,
            lease_s: 900,
            max_invocation_s: LAMBDA_MAX_RUNTIME_S,
            max_instance_age_s: None,
            maintenance_hours: None,
            reconcile: ReconcilePolicy::default(),
            analysis: None,
            hooks: vec![],
        }
    }

    /// Found by the simulator (seed 785, once the fleet audit made it settle with one more
    /// scheduled run): a registration whose re-pave age (4049 s) was shorter than its bake
    /// window plus a deployment's run re-paved the fleet at every scheduled run.
    #[test]
    fn a_repave_age_shorter_than_twice_a_deployments_run_is_refused() {
        let mut config = sample();
        config.bake_window_s = 3600;
        config.lease_s = 900;
        let min = config.min_instance_age_s();
        assert!(min > 2 * (3600 + 900), "{min}");
        config.max_instance_age_s = Some(4049);
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("max_instance_age_s") && err.contains(&min.to_string()),
            "{err}"
        );
        config.max_instance_age_s = Some(min);
        config.validate().unwrap();
        config.bake_window_s = 0;
        config.lease_s = 1;
        config.rollout.canary_steps = vec![100];
        config.rollout.step_wait_s = 0;
        config.health.max_polls = 1;
        config.health.poll_interval_s = 1;
        assert_eq!(config.min_instance_age_s(), MIN_INSTANCE_AGE_S, "at least an hour");
    }

    #[test]
    fn the_reconcile_policy_defaults_to_report_and_an_hour_and_refuses_what_it_does_not_know() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value.as_object_mut().unwrap().remove("reconcile");
        let config = ServiceConfig::from_json(&value.to_string()).unwrap();
        assert_eq!(config.reconcile, ReconcilePolicy::default());
        assert_eq!(
            (
                config.reconcile.drift,
                config.reconcile.strangers,
                config.reconcile.orphan_grace_s
            ),
            (Remedy::Report, Remedy::Report, 3600)
        );
        value["reconcile"] = serde_json::json!({"drift": "repair", "strangers": "repair", "orphan_grace_s": 60});
        let config = ServiceConfig::from_json(&value.to_string()).unwrap();
        assert_eq!(
            (config.reconcile.drift, config.reconcile.strangers),
            (Remedy::Repair, Remedy::Repair)
        );
        value["reconcile"] = serde_json::json!({"drift": "fix"});
        let err = ServiceConfig::from_json(&value.to_string()).unwrap_err().to_string();
        assert!(
            err.contains("fix") && err.contains("report") && err.contains("repair"),
            "{err}"
        );
        value["reconcile"] = serde_json::json!({"orphans": "repair"});
        let err = ServiceConfig::from_json(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("orphans"), "{err}");
        for bad in [0, MAX_ORPHAN_GRACE_S + 1] {
            value["reconcile"] = serde_json::json!({"orphan_grace_s": bad});
            let err = ServiceConfig::from_json(&value.to_string()).unwrap_err().to_string();
            assert!(err.contains("reconcile.orphan_grace_s"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_stored_registration_without_a_bake_window_gets_the_installations() {
        let mut body = serde_json::to_value(sample()).unwrap();
        body.as_object_mut().unwrap().remove("bake_window_s");
        assert_eq!(
            ServiceConfig::from_stored(body.clone(), 1800).unwrap().bake_window_s,
            1800
        );
        body["bake_window_s"] = 42.into();
        assert_eq!(
            ServiceConfig::from_stored(body, 1800).unwrap().bake_window_s,
            42,
            "its own wins"
        );
    }

    #[test]
    fn sample_is_valid_and_round_trips() {
        let config = sample();
        config.validate().unwrap();
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(ServiceConfig::from_json(&text).unwrap(), config);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut config = sample();
        config.service = "Bad Name".into();
        config.target_groups[1] = config.target_groups[0].clone();
        config.rollout.canary_steps = vec![50, 10];
        config.launch.count = 0;
        let err = config.validate().unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(err.to_string().contains("canary_steps"));
    }

    #[test]
    fn rejects_unknown_fields_with_their_name() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["bake_window"] = 5.into();
        let err = ServiceConfig::from_json(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("bake_window"), "{err}");
    }

    #[test]
    fn smoke_path_must_be_a_plain_absolute_path() {
        for bad in [
            "smoke",
            "",
            "/smoke\u{1}",
            "/smoke\u{0}",
            "/smoke\r\nHost: 169.254.169.254",
            "/smoke path",
            "/../admin",
            "/smoke/..",
            "http://169.254.169.254/",
        ] {
            let mut config = sample();
            config.health.smoke.path = bad.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("health.smoke.path"), "{bad:?}: {err}");
        }
        for good in ["/smoke", "/health?full=1", "/"] {
            let mut config = sample();
            config.health.smoke.path = good.into();
            assert!(config.validate().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn on_failure_is_revert_unless_the_registration_says_hold() {
        let mut value = serde_json::to_value(sample()).unwrap();
        assert!(value["rollout"].get("on_failure").is_none(), "the default is omitted");
        assert_eq!(
            ServiceConfig::from_json(&value.to_string()).unwrap().rollout.on_failure,
            OnFailure::Revert
        );
        value["rollout"]["on_failure"] = "hold".into();
        let config = ServiceConfig::from_json(&value.to_string()).unwrap();
        assert_eq!(config.rollout.on_failure, OnFailure::Hold);
        assert_eq!(serde_json::to_value(&config).unwrap()["rollout"]["on_failure"], "hold");
        value["rollout"]["on_failure"] = "freeze".into();
        let err = ServiceConfig::from_json(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("freeze") && err.contains("hold"), "{err}");
    }

    #[test]
    fn rejections_quote_hostile_values_escaped_and_short() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["\u{1b}[2J"] = 5.into();
        let err = ServiceConfig::from_json(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("\\u{1b}[2J") && !err.contains('\u{1b}'), "{err}");
        let mut config = sample();
        config.target_groups[1] = "x".repeat(100_000);
        config.alarms = vec![format!("\u{7}{}", "y".repeat(100_000))];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.len() < 1000 && !err.contains('\u{7}'), "{err}");
    }

    #[test]
    fn pauses_parse_between_weights_round_trip_and_bad_ones_are_refused_with_a_reason() {
        let rollout = |steps: serde_json::Value| -> Result<Rollout, String> {
            serde_json::from_value(serde_json::json!({"canary_steps": steps})).map_err(|e| e.to_string())
        };
        let parsed = rollout(serde_json::json!(["pause", 10, "pause", 50, 100])).unwrap();
        assert_eq!(
            (parsed.canary_steps.clone(), parsed.pauses.clone()),
            (vec![10, 50, 100], vec![0, 10])
        );
        assert_eq!(
            (parsed.pause_timeout_s, parsed.on_pause_timeout),
            (DEFAULT_PAUSE_TIMEOUT_S, OnPauseTimeout::Abort)
        );
        assert_eq!(
            serde_json::to_value(&parsed).unwrap()["canary_steps"],
            serde_json::json!(["pause", 10, "pause", 50, 100])
        );
        assert!(rollout(serde_json::json!([10, "paus", 100]))
            .unwrap_err()
            .contains("\"paus\" is neither"));
        assert!(rollout(serde_json::json!([10, 300]))
            .unwrap_err()
            .contains("300 is not a percentage"));
        let problems = |steps: serde_json::Value, timeout: u64| {
            let mut config = sample();
            config.rollout = rollout(steps).unwrap();
            config.rollout.pause_timeout_s = timeout;
            config.validate().err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(problems(serde_json::json!([10, "pause", 100]), 60), "");
        assert!(problems(serde_json::json!([10, 100, "pause"]), 60).contains("a \"pause\" after 100"));
        assert!(problems(serde_json::json!([10, "pause", "pause", 100]), 60).contains("in a row"));
        assert!(problems(serde_json::json!([10, "pause", 100]), 0).contains("pause_timeout_s"));
        assert!(problems(serde_json::json!([10, "pause", 100]), MAX_PAUSE_TIMEOUT_S + 1).contains("pause_timeout_s"));
    }

    #[test]
    fn next_weight_walks_the_canary_steps() {
        let config = sample();
        let table = [(0, 10), (10, 50), (49, 50), (50, 100), (100, 100)];
        for (from, want) in table {
            assert_eq!(config.next_weight(from), want, "after {from}");
        }
    }
}
