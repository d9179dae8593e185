//! `decide(state, event, now) -> (state, effects)`: every transition of a deployment.
//!
//! Contract with the handlers (see ARCHITECTURE.md, "The step loop"):
//! 1. the handler reads [`State`] from the ledger and observes the world (read-only calls);
//! 2. `decide` returns the new state and the effects that make the world match it;
//! 3. the handler commits the new state conditionally (ledger first), then applies the
//!    effects, each idempotent, in order; some effects report back with a follow-up event
//!    (e.g. `LaunchGreen` → [`Event::GreenLaunched`]) that is decided the same way.
//!
//! Redelivering an event to the state it produced yields the same effects again and no new
//! state: a crash anywhere is healed by the next delivery.

use crate::config::{LaunchSettings, NewImagePolicy, ServiceConfig, Switch};
use crate::ids::DeployId;
use crate::model::{Deployment, LastRevert, Phase, PhaseName, Release, RevertPlan, ServiceState, State, Trigger};
pub use crate::request::{
    HealthReport, ImageFacts, ImageRequest, RevertRequest, SmokeResult, TargetHealth, TargetState,
};
use crate::rfc3339::format as format_time;
use crate::version::{Version, VersionError};
use crate::Epoch;
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
    /// launch-green is due.
    LaunchDue,
    /// Green instances exist (launched now, or found from an earlier delivery).
    GreenLaunched { instance_ids: Vec<String> },
    /// check-health observed green.
    HealthObserved { report: HealthReport },
    /// shift-traffic is due.
    ShiftDue,
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
    /// retire-blue is due; `blue_serving`: the switch point still forwards to blue.
    RetireDue { blue_serving: bool },
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
    /// An engineer asked to skip the remaining canary steps (and their waits) and the bake
    /// window (`PromoteRequested`). The health gates still apply, at 100 % too.
    Promote { requested_by: String, reason: String },
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
    /// Point the switch at blue and green with green at `green_weight` %.
    SetTraffic {
        switch: Switch,
        blue_tg: Option<String>,
        green_tg: String,
        green_weight: u8,
    },
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
    #[error("refusing to retire blue: the switch point still forwards traffic to {target_group}")]
    BlueStillServing { target_group: String },
}

impl crate::inbound::SteerRequest {
    /// The decision event this request is for the deployment in flight.
    pub fn event(&self) -> Event {
        let (requested_by, reason) = (self.requested_by.clone(), self.reason.clone());
        match self.action {
            crate::inbound::SteerAction::Abort => Event::AbortRequested { requested_by, reason },
            crate::inbound::SteerAction::Promote => Event::Promote { requested_by, reason },
        }
    }
}

/// Decides what `event` does to `state` at time `now`.
pub fn decide(state: &State, event: &Event, now: Epoch) -> Result<Decision, Refusal> {
    let decision = transition(state, event, now)?;
    debug_assert_invariants(state, &decision.state);
    Ok(decision)
}

/// The invariants the simulator checks from outside on every committed state
/// (`shared/sim/src/invariants.rs`), asserted from inside on every decision, in debug builds
/// (the tests, the simulator): a decision keeps what its input had (a mixed read may not
/// have it: BatchGetItem is not a snapshot), and moves the live version back only by a
/// rollback.
fn debug_assert_invariants(before: &State, after: &State) {
    // I6: a lease exists exactly while a deployment holds the service.
    let leased = |s: &State| s.service.active.is_some() == s.service.lease_until.is_some();
    debug_assert!(
        !leased(before) || leased(after),
        "I6: active {:?} with lease {:?}",
        after.service.active,
        after.service.lease_until
    );
    // I4: green gets weight only once it passed its gates. (A deployment past them, from
    // `Verified` on, records when; a state that does not is no precondition to keep.)
    let weighted_only_if_healthy = |s: &State| {
        s.deployment
            .as_ref()
            .is_none_or(|d| d.max_weight == 0 || d.healthy_at.is_some())
    };
    let gates_recorded = before.deployment.as_ref().is_none_or(|d| {
        d.healthy_at.is_some()
            || !matches!(
                d.phase,
                Phase::Verified { .. }
                    | Phase::Shifting { .. }
                    | Phase::Baking { .. }
                    | Phase::Retiring { .. }
                    | Phase::Succeeded
            )
    });
    debug_assert!(
        !(gates_recorded && weighted_only_if_healthy(before)) || weighted_only_if_healthy(after),
        "I4: green weighted before its gates"
    );
    // I5: the live version goes back only by a rollback (a redeployment or a revert).
    if let (Some(was), Some(now)) = (&before.service.live, &after.service.live) {
        let older = matches!(
            (Version::parse(&now.version), Version::parse(&was.version)),
            (Ok(now), Ok(was)) if now < was
        );
        let by_rollback = after.deployment.as_ref().is_some_and(|d| {
            (d.rollback && now.deploy_id.as_deref() == Some(d.deploy_id.as_str()))
                || (d.revert.is_some() && d.version == was.version)
        });
        debug_assert!(
            !older || by_rollback,
            "I5: live went from {} to the older {} without a rollback",
            was.version,
            now.version
        );
    }
}

/// [`decide`] without its debug assertions.
fn transition(state: &State, event: &Event, now: Epoch) -> Result<Decision, Refusal> {
    if let Event::Start {
        request,
        image,
        firing_alarms,
    } = event
    {
        return start(state, request, image.as_ref(), firing_alarms, now);
    }
    if let Some(pending) = claimed_revert(state, event) {
        // A rollback was claimed (and its listener change maybe made) but not recorded:
        // complete it before anything else can move traffic. If it cannot be (the world
        // moved on), drop the claim; the event is decided on the next delivery.
        return decide(state, &pending, now).or_else(|why| {
            let mut next = state.clone();
            next.service.revert_claim = None;
            Ok(Decision {
                state: next,
                effects: vec![],
                note: format!("the claimed rollback cannot be completed ({why}); claim dropped"),
            })
        });
    }
    let mut next = state.clone();
    let config = &state.config;
    let dep = next.deployment.as_mut().ok_or(Refusal::NoDeployment)?;
    let mut effects = Vec::new();
    let mut note: String;
    let register_green = |dep: &Deployment, ids: Vec<String>| Effect::RegisterTargets {
        target_group: dep.green_tg.clone(),
        instance_ids: ids,
        port: config.launch.port,
    };
    match (event, dep.phase.clone()) {
        (Event::LaunchDue, Phase::Launching) => {
            effects.push(Effect::LaunchGreen {
                service: dep.service.clone(),
                deploy_id: dep.deploy_id.clone(),
                version: dep.version.clone(),
                ami: dep.ami.clone(),
                client_token: DeployId::parse(&dep.deploy_id)
                    .map(|id| id.client_token(0))
                    .unwrap_or_else(|_| format!("greenlight-{}", dep.deploy_id)),
                launch: config.launch.clone(),
            });
            note = format!("launching {} x {}", config.launch.count, dep.ami);
        }
        (Event::GreenLaunched { instance_ids }, Phase::Launching) => {
            dep.green_instances = instance_ids.clone();
            dep.enter(
                Phase::Verifying { weight: 0, polls: 0 },
                now,
                format!("green launched: {}", instance_ids.join(", ")),
            );
            effects.push(register_green(dep, instance_ids.clone()));
            effects.extend(attach_green(config, dep));
            note = format!("green launched into target group {}", short_arn(&dep.green_tg));
        }
        // A launch delivered again after green was recorded: make sure it is registered.
        (Event::LaunchDue | Event::GreenLaunched { .. }, Phase::Verifying { weight: 0, .. }) => {
            effects.push(register_green(dep, dep.green_instances.clone()));
            effects.extend(attach_green(config, dep));
            note = "green already launched; re-registering (idempotent)".into();
        }
        (Event::HealthObserved { report }, Phase::Verifying { weight, polls }) => {
            note = observe_health(dep, config, report, weight, polls, now, &mut effects);
        }
        (Event::ShiftDue, Phase::Verified { weight }) if weight < 100 => {
            let to = if dep.blue.is_some() && dep.promoted_by.is_none() {
                config.next_weight(weight)
            } else {
                100
            };
            dep.max_weight = dep.max_weight.max(to);
            dep.enter(
                Phase::Shifting { from: weight, to },
                now,
                format!("shifting green {weight}% -> {to}%"),
            );
            effects.push(set_traffic(config, dep, to));
            note = format!("shifting traffic to green: {to}%");
        }
        (Event::ShiftDue, Phase::Shifting { to, .. }) => {
            effects.push(set_traffic(config, dep, to));
            note = format!("re-applying traffic shift to {to}%");
        }
        (
            Event::Revert {
                request,
                received_at_ms,
                flipped_at_ms,
            },
            phase,
        ) => {
            note = revert(
                &mut next.service,
                dep,
                config,
                request,
                (*received_at_ms, *flipped_at_ms),
                &phase,
                now,
                &mut effects,
            )?;
        }
        (Event::TrafficApplied { weight: 0, at_ms }, Phase::Aborting { .. }) if dep.revert.is_some() => {
            note = match traffic_back(dep, *at_ms, now) {
                Some(mark) => mark,
                None => "traffic already back (re-applied)".into(),
            };
        }
        (Event::TrafficApplied { weight: 0, .. }, Phase::Verifying { weight: 0, .. }) => {
            note = format!(
                "target group {} attached to the switch point at 0% (health-checked, no traffic)",
                short_arn(&dep.green_tg)
            );
        }
        (Event::TrafficApplied { weight, .. }, Phase::Shifting { to, .. }) if *weight == to => {
            dep.enter(
                Phase::Verifying { weight: to, polls: 0 },
                now,
                format!("green receives {to}% of traffic"),
            );
            note = format!("traffic shifted: green {to}%");
        }
        (Event::FinalizeDue, Phase::Verified { weight: 100 }) => {
            // A promoted deployment skips the bake window: blue is retired right away.
            let until = if dep.promoted_by.is_some() {
                now
            } else {
                now + config.bake_window_s
            };
            next.service.live = Some(dep.green_release());
            next.service.warm = dep.blue.clone();
            if dep.rollback {
                next.service.last_revert = Some(LastRevert {
                    from: dep.blue.as_ref().map(|b| b.version.clone()).unwrap_or_default(),
                    back_to: dep.version.clone(),
                    deploy_id: dep.deploy_id.clone(),
                    at: now,
                });
            }
            let warm = dep
                .blue
                .as_ref()
                .map(|b| format!("{} warm until {}", b.version, format_time(until)))
                .unwrap_or_else(|| "nothing to keep warm".into());
            dep.enter(Phase::Baking { until }, now, format!("{} live; {warm}", dep.version));
            note = format!("{} is live; baking for {}s", dep.version, until - now);
        }
        (Event::RetireDue { blue_serving }, Phase::Baking { until }) if now >= until => match dep.blue.clone() {
            None => {
                dep.enter(Phase::Succeeded, now, "bake window over; no previous fleet");
                finish(&mut next.service, dep, &mut effects);
                note = "deployment succeeded".into();
            }
            Some(blue) if *blue_serving => {
                return Err(Refusal::BlueStillServing {
                    target_group: blue.target_group,
                });
            }
            Some(blue) => {
                next.service.warm = None;
                let drain_until = now + config.deregistration_delay_s;
                dep.enter(
                    Phase::Retiring { drain_until },
                    now,
                    format!("retiring {}: draining until {}", blue.version, format_time(drain_until)),
                );
                effects.push(Effect::DeregisterTargets {
                    target_group: blue.target_group.clone(),
                    instance_ids: blue.instance_ids.clone(),
                    port: config.launch.port,
                });
                note = format!("bake window over; draining {}", blue.version);
            }
        },
        (Event::RetireDue { .. }, Phase::Retiring { drain_until }) => {
            // Deregister again on every delivery (idempotent): the delivery that committed
            // `Retiring` may have crashed before its DeregisterTargets, and blue must be
            // deregistered before it is terminated (I8).
            let blue = dep.blue.clone().unwrap_or_else(|| dep.green_release());
            effects.push(Effect::DeregisterTargets {
                target_group: blue.target_group.clone(),
                instance_ids: blue.instance_ids.clone(),
                port: config.launch.port,
            });
            if now >= drain_until {
                effects.push(Effect::TerminateInstances {
                    service: dep.service.clone(),
                    instance_ids: blue.instance_ids,
                    deploy_id: None,
                    green: false,
                });
                note = "draining over; terminating the old fleet".into();
            } else {
                note = format!(
                    "{} draining until {} (deregistration re-applied)",
                    blue.version,
                    format_time(drain_until)
                );
            }
        }
        (Event::BlueTerminated, Phase::Retiring { .. }) => {
            dep.enter(Phase::Succeeded, now, "old fleet terminated");
            finish(&mut next.service, dep, &mut effects);
            note = "deployment succeeded".into();
        }
        (
            Event::Abort { reason },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            enter_aborting(dep, config, reason.clone(), now);
            abort_effects(config, dep, now, &mut effects);
            note = format!("aborting: {reason}");
        }
        (Event::Abort { .. }, Phase::Aborting { .. }) => {
            abort_effects(config, dep, now, &mut effects);
            note = "aborting (continued)".into();
        }
        (Event::Abort { reason }, phase @ (Phase::Baking { .. } | Phase::Retiring { .. })) => {
            // abort-deployment after a step of this execution failed, while another execution
            // (a promote's follow-up) took the deployment live: green is live, so there is
            // nothing to abort; the route continues the deployment (retire-blue) instead of
            // failing the execution. (Found by the simulator, seed 1616.) In `Succeeded` it
            // ends: the last arm re-issues what a finished deployment owes (its report).
            note = format!(
                "too late to abort ({}: green is live); continuing. The step failure was: {reason}",
                phase.name()
            );
        }
        (Event::GreenTerminated, Phase::Aborting { reason, .. }) => {
            dep.enter(
                Phase::Aborted { reason: reason.clone() },
                now,
                "green terminated; traffic on blue",
            );
            finish(&mut next.service, dep, &mut effects);
            note = format!("deployment aborted: {reason}");
        }
        (
            Event::Supersede { reason, .. },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            note = abort_now(dep, config, reason.clone(), "superseded", now, &mut effects);
        }
        (Event::Supersede { resume, .. }, phase) if !phase.is_terminal() => {
            // Green is live (or already aborting): it ends on its own, then the queued one starts.
            if *resume {
                effects.push(follow_up_execution(dep, &format!("resume-{}", dep.gen)));
            }
            note = format!(
                "{} is {}: it finishes first{}",
                dep.deploy_id,
                phase.name(),
                if *resume {
                    " (resumed: its lease had expired)"
                } else {
                    ""
                }
            );
        }
        (
            Event::AbortRequested { requested_by, reason },
            Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. },
        ) => {
            let reason = format!("aborted by {requested_by}: {reason}");
            note = abort_now(dep, config, reason, "abort", now, &mut effects);
        }
        (Event::AbortRequested { .. }, Phase::Aborting { .. }) => {
            // A redelivery (the first crashed after committing `Aborting`, before its effects),
            // or another request while aborting for another reason: the abort acts at once
            // (I20), so re-issue its effects and the follow-up execution, all idempotent
            // (StartExecution of an existing name is a no-op). Whatever the reason, this also
            // completes any clean-up an earlier delivery left unstarted.
            abort_effects(config, dep, now, &mut effects);
            effects.push(follow_up_execution(dep, "abort"));
            note = format!(
                "{} is already aborting; abort effects and clean-up execution re-issued (idempotent)",
                dep.deploy_id
            );
        }
        (Event::AbortRequested { .. }, Phase::Aborted { .. }) => {
            note = format!("{} is already {}", dep.deploy_id, dep.phase.name());
        }
        (Event::AbortRequested { .. }, phase @ (Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded)) => {
            return Err(Refusal::TooLateToAbort {
                deploy_id: dep.deploy_id.clone(),
                phase: phase.kind(),
            });
        }
        (Event::Promote { .. }, _) if dep.promoted_by.is_some() => {
            note = format!("{} is already promoted", dep.deploy_id);
        }
        (
            Event::Promote { requested_by, reason },
            phase @ (Phase::Launching
            | Phase::Verifying { .. }
            | Phase::Verified { .. }
            | Phase::Shifting { .. }
            | Phase::Baking { .. }),
        ) => {
            dep.promoted_by = Some(requested_by.clone());
            let skipped = match phase {
                Phase::Baking { .. } => {
                    dep.phase = Phase::Baking { until: now };
                    "the rest of the bake window skipped"
                }
                _ => "remaining canary steps and the bake window skipped; health gates still apply",
            };
            let mark = format!("promoted by {requested_by}: {reason}; {skipped}");
            dep.enter(dep.phase.clone(), now, mark.clone());
            // Act now, whatever the deployment's own execution waits for.
            effects.push(follow_up_execution(dep, &format!("promote-{}", dep.gen)));
            note = mark;
        }
        (Event::Promote { .. }, Phase::Retiring { .. } | Phase::Succeeded) => {
            note = format!("{} is {}: nothing left to skip", dep.deploy_id, dep.phase.name());
        }
        (Event::Promote { .. }, phase @ (Phase::Aborting { .. } | Phase::Aborted { .. })) => {
            return Err(Refusal::NothingToPromote {
                deploy_id: dep.deploy_id.clone(),
                phase: phase.kind(),
            });
        }
        (event, phase) => {
            // Duplicate, late or out-of-order delivery: nothing to do in this phase, except
            // what a step of the deployment's own execution reconciles below.
            note = format!("{} ignored in phase {}", event_name(event), phase.name());
            if let Event::Abort { reason } = event {
                note.push_str(&format!(" (the step failure was: {reason})"));
            }
            let own = own_step(event);
            // A step that finds the deployment aborting may have just moved traffic forward on
            // what it read before the abort (its commit then lost): put traffic back again, so
            // that no stale listener change outlives the abort until abort-deployment's next
            // run. (Found by the simulator's races, seed 689: shift-traffic ∥ an abort request
            // left 25 % on green, deregistered.)
            if own && matches!(phase, Phase::Aborting { .. }) && dep.max_weight > 0 && dep.blue.is_some() {
                effects.push(set_traffic(config, dep, 0));
                note.push_str("; traffic back on the previous version re-applied");
            }
            // An aborted deployment runs no instance: a launch that raced the abort (its
            // RunInstances returned after the clean-up looked for instances to terminate) is
            // terminated by the next step of its execution. (Found by the simulator's races,
            // seed 971: launch-green ∥ an abort request.)
            if own && matches!(phase, Phase::Aborted { .. }) {
                effects.push(Effect::TerminateInstances {
                    service: dep.service.clone(),
                    instance_ids: dep.green_instances.clone(),
                    deploy_id: Some(dep.deploy_id.clone()),
                    green: true,
                });
            }
            // A finished deployment's report may never have been written (a crash right after
            // the final commit, before WriteReport): a step that finds it finished writes it
            // again (an idempotent overwrite, rendered from the ledger). (Found by e2e crash.)
            if own && phase.is_terminal() {
                effects.push(Effect::WriteReport {
                    service: dep.service.clone(),
                    deploy_id: dep.deploy_id.clone(),
                });
                note.push_str("; report written again (idempotent)");
            }
            if phase.is_terminal() {
                match (&next.service.active, &next.service.queued) {
                    // A finished deployment whose successor never started (a crash right after
                    // the finish was committed): start it now.
                    (None, Some(request)) => effects.push(Effect::StartQueued {
                        request: request.clone(),
                    }),
                    // Or whose successor was created by a delivery that crashed before its
                    // StartExecution: make sure it runs. (Found by the simulator, seed 799.)
                    (Some(successor), _) if *successor != dep.deploy_id => effects.push(Effect::EnsureExecution {
                        service: dep.service.clone(),
                        deploy_id: successor.clone(),
                    }),
                    _ => {}
                }
            }
        }
    }
    if let Some(dep) = next.deployment.as_ref().filter(|d| d.phase == Phase::Launching) {
        // A rollback trigger that finds the deployment still launching may be the redelivery
        // of the trigger that started it (a rollback's redeploy), whose first delivery crashed
        // between the commit and StartExecution: make sure the execution runs (StartExecution
        // of a running or closed execution's name is a no-op). (Found by the simulator, seeds
        // 84 and 443.)
        let started = effects.iter().any(|e| matches!(e, Effect::StartExecution { .. }));
        if matches!(event, Event::Revert { .. }) && !started {
            effects.push(Effect::StartExecution {
                service: dep.service.clone(),
                deploy_id: dep.deploy_id.clone(),
                execution: dep.deploy_id.clone(),
            });
        }
    }
    if let Some(dep) = next.deployment.as_ref() {
        renew_lease(&mut next.service, config, dep, now);
        // The plan follows the deployment that holds (or held) the service.
        let holder = |s: &ServiceState| s.active.as_deref() == Some(dep.deploy_id.as_str());
        if holder(&state.service) || holder(&next.service) {
            next.service.revert_plan = fast_revert_plan(&next.service, config, dep);
        }
    }
    Ok(Decision {
        state: next,
        effects,
        note,
    })
}

/// The rollback to decide first, when the fast path claimed one for this deployment that the
/// ledger does not record yet.
fn claimed_revert(state: &State, event: &Event) -> Option<Event> {
    let claim = state.service.revert_claim.as_ref()?;
    let dep = state.deployment.as_ref()?;
    let unrecorded = claim.deploy_id == dep.deploy_id && dep.revert.is_none() && !dep.phase.is_terminal();
    if !unrecorded || matches!(event, Event::Revert { .. }) {
        return None;
    }
    Some(Event::Revert {
        request: claim.request.clone(),
        received_at_ms: claim.received_at_ms,
        flipped_at_ms: None,
    })
}

/// The deployment holding the service renews its lease as it makes progress: the lease
/// covers the wait before its next step plus `lease_s`, and is written only when it would
/// otherwise run short (so most steps write nothing extra).
fn renew_lease(service: &mut ServiceState, config: &ServiceConfig, dep: &Deployment, now: Epoch) {
    if service.active.as_deref() != Some(dep.deploy_id.as_str()) || dep.phase.is_terminal() {
        return;
    }
    let wait = crate::plan::route(config, dep, now).wait_s;
    let short = now + wait + config.lease_s / 2;
    if service.lease_until.is_none_or(|t| t < short) {
        service.lease_until = Some(now + wait + config.lease_s);
    }
}

/// The one listener change that rolls `dep` back: while it holds the service, gives green
/// traffic and its previous fleet is warm. None for a rollback's own redeployment and while
/// the service needs attention (an alarm must not flip those; a decision sees them).
pub fn fast_revert_plan(service: &ServiceState, config: &ServiceConfig, dep: &Deployment) -> Option<RevertPlan> {
    let holds = service.active.as_deref() == Some(dep.deploy_id.as_str());
    let warm = matches!(
        dep.phase,
        Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. } | Phase::Baking { .. }
    );
    if !holds || !warm || dep.max_weight == 0 || dep.rollback || dep.revert.is_some() || service.attention.is_some() {
        return None;
    }
    let blue = dep.blue.as_ref()?;
    Some(RevertPlan {
        deploy_id: dep.deploy_id.clone(),
        switch: config.switch.clone(),
        weights: vec![(blue.target_group.clone(), 100), (dep.green_tg.clone(), 0)],
        from: dep.version.clone(),
        back_to: blue.version.clone(),
        since_ms: dep.created_at.saturating_mul(1000),
    })
}

/// An execution `<deploy id>-<suffix>` that runs a deployment's remaining steps from its
/// phase in the ledger, whatever its own execution waits for (or if it stopped): the
/// clean-up after a rollback (`revert`) or a takeover (`superseded`), or a deployment whose
/// lease expired (`resume-<gen>`).
fn follow_up_execution(dep: &Deployment, suffix: &str) -> Effect {
    Effect::StartExecution {
        service: dep.service.clone(),
        deploy_id: dep.deploy_id.clone(),
        execution: format!("{}-{suffix}", dep.deploy_id),
    }
}

/// start-deployment: refusals first, then a new deployment in `Launching`.
fn start(
    state: &State,
    request: &ImageRequest,
    image: Option<&crate::decide::ImageFacts>,
    firing_alarms: &[String],
    now: Epoch,
) -> Result<Decision, Refusal> {
    let config = &state.config;
    if request.service != config.service {
        return Err(Refusal::WrongService {
            got: request.service.clone(),
            want: config.service.clone(),
        });
    }
    let deploy_id = request.deploy_id();
    let unchanged = |note: String, effects: Vec<Effect>| Decision {
        state: state.clone(),
        effects,
        note,
    };
    if let Some(existing) = state.deployment.as_ref().filter(|d| d.deploy_id == deploy_id.as_str()) {
        if existing.phase.is_terminal() {
            return Ok(unchanged(
                format!(
                    "deployment {deploy_id} already {}; publish with attempt {} to deploy this image again",
                    existing.phase.name(),
                    request.attempt + 1
                ),
                vec![],
            ));
        }
        return Ok(unchanged(
            format!("duplicate event: deployment {deploy_id} already started"),
            vec![Effect::StartExecution {
                service: config.service.clone(),
                deploy_id: deploy_id.to_string(),
                execution: deploy_id.to_string(),
            }],
        ));
    }
    let service = &state.service;
    check_version(
        &config.service,
        service.live.as_ref(),
        &request.version,
        &request.ami,
        request.is_rollback(),
    )?;
    let image = image.ok_or_else(|| Refusal::ImageNotFound {
        ami: request.ami.clone(),
    })?;
    if !image.available {
        return Err(Refusal::ImageNotAvailable {
            ami: request.ami.clone(),
        });
    }
    let policy = &config.ami_policy;
    if !policy.allowed_owners.is_empty() && !policy.allowed_owners.contains(&image.owner) {
        return Err(Refusal::WrongOwner {
            service: config.service.clone(),
            ami: request.ami.clone(),
            owner: image.owner.clone(),
            allowed: policy.allowed_owners.clone(),
        });
    }
    for (key, value) in &policy.required_tags {
        if image.tags.get(key) != Some(value) {
            return Err(Refusal::MissingTag {
                service: config.service.clone(),
                ami: request.ami.clone(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    if !firing_alarms.is_empty() && !request.is_rollback() {
        return Err(Refusal::AlarmFiring {
            service: config.service.clone(),
            alarms: firing_alarms.join(", "),
        });
    }
    if let Some(active) = service.active.as_deref().filter(|a| *a != deploy_id.as_str()) {
        return busy(state, request, active, now);
    }
    let live_tg = service.live.as_ref().map(|r| r.target_group.as_str());
    let mut deployment = Deployment {
        deploy_id: deploy_id.to_string(),
        service: config.service.clone(),
        version: request.version.clone(),
        ami: request.ami.clone(),
        gen: 0,
        source: request.source,
        requested_by: request.requested_by.clone(),
        reason: request.reason.clone(),
        blue: service.live.clone(),
        green_tg: config.idle_target_group(live_tg).to_string(),
        green_instances: vec![],
        phase: Phase::Launching,
        max_weight: 0,
        created_at: now,
        updated_at: now,
        healthy_at: None,
        revert: None,
        rollback: request.is_rollback(),
        promoted_by: None,
        timeline: vec![],
    };
    let from = service.live.as_ref().map(|r| r.version.as_str()).unwrap_or("nothing");
    deployment.enter(
        Phase::Launching,
        now,
        format!(
            "{} -> {} requested by {} via {}",
            from, request.version, request.requested_by, request.source
        ),
    );
    let mut next = state.clone();
    next.service.active = Some(deploy_id.to_string());
    next.service.lease_until = Some(now + config.lease_s);
    if next.service.queued.as_ref().is_some_and(|q| q.deploy_id() == deploy_id) {
        next.service.queued = None;
    }
    next.deployment = Some(deployment);
    Ok(Decision {
        state: next,
        effects: vec![Effect::StartExecution {
            service: config.service.clone(),
            deploy_id: deploy_id.to_string(),
            execution: deploy_id.to_string(),
        }],
        note: format!(
            "deployment {deploy_id} of {} {} started",
            config.service, request.version
        ),
    })
}

/// A new image (or a rollback) while deployment `active` holds the service: the service's
/// policy decides, except that a rollback, or an expired lease, always supersedes.
fn busy(state: &State, request: &ImageRequest, active: &str, now: Epoch) -> Result<Decision, Refusal> {
    let config = &state.config;
    let service = &state.service;
    let deploy_id = request.deploy_id();
    let version = &request.version;
    let expired_at = service.lease_until.filter(|t| *t <= now);
    if let Some(queued) = service
        .queued
        .as_ref()
        .filter(|q| q.is_rollback() && !request.is_rollback())
    {
        return Err(Refusal::RollbackPending {
            service: config.service.clone(),
            version: queued.version.clone(),
        });
    }
    let policy = if request.is_rollback() || expired_at.is_some() {
        NewImagePolicy::Supersede
    } else {
        config.on_new_image
    };
    let mut next = state.clone();
    let mut effects = Vec::new();
    let note = match policy {
        NewImagePolicy::Reject => {
            return Err(Refusal::Busy {
                service: config.service.clone(),
                active: active.to_string(),
            })
        }
        NewImagePolicy::Queue => format!("{version} ({deploy_id}) queued: starts when {active} ends"),
        NewImagePolicy::Supersede => {
            let reason = match (expired_at, request.is_rollback()) {
                (Some(t), _) => format!(
                    "its lease expired at {} (no progress); taken over by {version} ({deploy_id})",
                    format_time(t)
                ),
                (None, true) => format!("superseded by the rollback to {version} ({deploy_id})"),
                (None, false) => format!("superseded by {version} ({deploy_id})"),
            };
            effects.push(Effect::SupersedeDeployment {
                service: config.service.clone(),
                deploy_id: active.to_string(),
                reason: reason.clone(),
                resume: expired_at.is_some(),
            });
            format!("{version} ({deploy_id}) queued; {active}: {reason}")
        }
    };
    next.service.queued = Some(request.clone());
    Ok(Decision {
        state: next,
        effects,
        note,
    })
}

/// A rollback of `dep` (the service's deployment in flight): traffic back to the release
/// before it while that fleet is warm, then the deployment's fleet is cleaned up like an
/// abort. Repeated or late triggers change nothing.
#[allow(clippy::too_many_arguments)]
fn revert(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    request: &RevertRequest,
    (received_at_ms, flipped_at_ms): (u64, Option<u64>),
    phase: &Phase,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Result<String, Refusal> {
    // This event's own slow-path redeployment (the rollback it started when nothing was warm),
    // found holding the service by a redelivery of the event: rolling it back would undo the
    // rollback. Change nothing; make sure its execution runs (its first delivery may have
    // crashed between the commit and StartExecution; a no-op if it runs or ran).
    if dep.deploy_id == DeployId::derive_rollback(&dep.service, &dep.version, &dep.ami, &request.event_id).as_str() {
        effects.push(Effect::StartExecution {
            service: dep.service.clone(),
            deploy_id: dep.deploy_id.clone(),
            execution: dep.deploy_id.clone(),
        });
        return Ok(format!(
            "{} is the rollback to {} that {} itself started ({}): nothing to roll back; making sure its execution runs",
            dep.deploy_id,
            dep.version,
            request.event_id,
            phase.name()
        ));
    }
    if service
        .revert_claim
        .as_ref()
        .is_some_and(|c| c.deploy_id == dep.deploy_id)
    {
        service.revert_claim = None;
    }
    if let Some(done) = &dep.revert {
        if !matches!(phase, Phase::Aborting { .. }) {
            return Ok(format!(
                "already rolled back to {} (by {}); {} changes nothing",
                done.back_to, done.requested_by, request.event_id
            ));
        }
        // Recorded, still aborting: a crash after the commit may have left the listener change
        // unconfirmed, green registered and the clean-up execution unstarted. Re-issue them
        // (all idempotent) so that green drains and is terminated now, not when the
        // deployment's own execution next wakes (e.g. after the bake window).
        let note = match done.traffic_back_at_ms {
            None => format!("completing the rollback to {} (by {})", done.back_to, done.requested_by),
            Some(_) => format!(
                "already rolled back to {} (by {}); {} re-issues the clean-up (idempotent)",
                done.back_to, done.requested_by, request.event_id
            ),
        };
        abort_effects(config, dep, now, effects);
        effects.push(follow_up_execution(dep, "revert"));
        return Ok(note);
    }
    if request.event_time_ms < dep.created_at.saturating_mul(1000) {
        return Ok(format!(
            "rollback event {} predates deployment {} of {}; ignored (it concerns an earlier version)",
            request.event_id, dep.deploy_id, dep.version
        ));
    }
    let nothing_warm = |why: String| Refusal::NothingWarm {
        service: config.service.clone(),
        why,
    };
    let blue = match (&dep.blue, phase) {
        (_, Phase::Aborting { .. } | Phase::Aborted { .. }) => {
            return Ok(format!(
                "deployment {} is already {}; traffic is on the previous version",
                dep.deploy_id,
                phase.name()
            ))
        }
        (_, Phase::Retiring { .. } | Phase::Succeeded) => {
            return Err(nothing_warm(format!(
                "the fleet before {} is retired or being retired; redeploy that version",
                dep.version
            )))
        }
        (None, _) => return Err(nothing_warm(format!("nothing was live before {}", dep.version))),
        (Some(blue), _) => blue.clone(),
    };
    if let Some(wanted) = &request.to_version {
        if wanted != &blue.version {
            return Err(Refusal::NotTheWarmVersion {
                service: config.service.clone(),
                requested: wanted.clone(),
                warm: blue.version.clone(),
            });
        }
    }
    if request.trigger == Trigger::Alarm && dep.rollback {
        // The version we rolled back to alarms too: going back again would ping-pong.
        let why = format!(
            "{} alarmed during the rollback to {} ({}); greenlight stopped: decide by hand (roll back with to_version, or deploy a fix)",
            request.requested_by, dep.version, dep.deploy_id
        );
        if service.attention.is_none() {
            service.attention = Some(why.clone());
        }
        return Ok(why);
    }
    let reason = format!("rolled back by {}: {}", request.requested_by, request.reason);
    service.last_revert = Some(LastRevert {
        from: dep.version.clone(),
        back_to: blue.version.clone(),
        deploy_id: dep.deploy_id.clone(),
        at: now,
    });
    if matches!(phase, Phase::Baking { .. }) {
        service.live = Some(blue.clone());
        service.warm = None;
    }
    let untouched = dep.max_weight == 0;
    dep.revert = Some(crate::model::RevertRecord {
        trigger: request.trigger,
        requested_by: request.requested_by.clone(),
        reason: request.reason.clone(),
        event_id: request.event_id.clone(),
        event_time_ms: request.event_time_ms,
        received_at_ms,
        back_to: blue.version.clone(),
        traffic_back_at_ms: None,
    });
    enter_aborting(dep, config, reason.clone(), now);
    // Green never had traffic, or the fast path already flipped: traffic is back.
    let back_at = if untouched { Some(received_at_ms) } else { flipped_at_ms };
    let back = back_at.and_then(|at| traffic_back(dep, at, now));
    abort_effects(config, dep, now, effects);
    // The rest of the clean-up (drain, terminate) runs in its own execution, at once,
    // whatever the deployment's own execution is waiting for.
    effects.push(follow_up_execution(dep, "revert"));
    Ok(match back {
        Some(mark) => format!("{reason}; {mark}"),
        None => format!("{reason}; traffic back to {}", blue.version),
    })
}

/// The version rules an image must pass against the live release: no silent downgrade (a
/// rollback may go older), not the live image again, not the live version with another AMI.
/// (Also checked by the CLI before it publishes.)
pub fn check_version(
    service: &str,
    live: Option<&Release>,
    version: &str,
    ami: &str,
    rollback: bool,
) -> Result<(), Refusal> {
    let requested = Version::parse(version)?;
    let Some(live) = live else { return Ok(()) };
    match requested.cmp(&Version::parse(&live.version)?) {
        std::cmp::Ordering::Less if rollback => Ok(()),
        std::cmp::Ordering::Less => Err(Refusal::Downgrade {
            service: service.to_string(),
            live: live.version.clone(),
            requested: version.to_string(),
        }),
        std::cmp::Ordering::Equal if live.ami == ami => Err(Refusal::AlreadyLive {
            service: service.to_string(),
            version: live.version.clone(),
            ami: live.ami.clone(),
        }),
        std::cmp::Ordering::Equal => Err(Refusal::VersionReused {
            service: service.to_string(),
            version: live.version.clone(),
            live_ami: live.ami.clone(),
            requested_ami: ami.to_string(),
        }),
        std::cmp::Ordering::Greater => Ok(()),
    }
}

/// Records when traffic went back to the previous fleet (the first time only), with a
/// timeline mark; the mark's text.
fn traffic_back(dep: &mut Deployment, at_ms: u64, now: Epoch) -> Option<String> {
    let record = dep.revert.as_mut()?;
    if record.traffic_back_at_ms.is_some() {
        return None;
    }
    record.traffic_back_at_ms = Some(at_ms);
    let ms = record.time_to_revert_ms().unwrap_or_default();
    let text = format!("traffic back on {} {ms} ms after the event", record.back_to);
    dep.timeline.push(crate::model::Mark {
        at: now,
        phase: dep.phase.kind(),
        note: text.clone(),
    });
    dep.updated_at = now;
    Some(text)
}

/// The release a rollback with nothing warm redeploys: `to_version` if the ledger recorded
/// it live (as a deployment that went live, or the release a deployment replaced), else the
/// release the current live one replaced.
pub fn rollback_target(
    service: &ServiceState,
    history: &[Deployment],
    to_version: Option<&str>,
) -> Result<Release, Refusal> {
    let name = service.service.clone();
    let live = service.live.as_ref().ok_or_else(|| Refusal::NoPrevious {
        service: name.clone(),
        why: "nothing is live".into(),
    })?;
    let went_live = |d: &Deployment| d.timeline.iter().any(|m| m.phase == PhaseName::Baking);
    let mut recorded: Vec<Release> = Vec::new();
    for d in history {
        recorded.extend(d.blue.clone());
        if went_live(d) {
            recorded.push(d.green_release());
        }
    }
    let target = match to_version {
        Some(version) => recorded
            .iter()
            .rev()
            .find(|r| r.version == version)
            .cloned()
            .ok_or_else(|| {
                let mut known: Vec<&str> = recorded.iter().map(|r| r.version.as_str()).collect();
                known.dedup();
                Refusal::NeverLive {
                    service: name.clone(),
                    version: version.to_string(),
                    known: known.join(", "),
                }
            })?,
        None => {
            let made_live = history
                .iter()
                .find(|d| live.deploy_id.as_deref() == Some(d.deploy_id.as_str()));
            match made_live {
                Some(d) if d.rollback => {
                    return Err(Refusal::NoPrevious {
                        service: name,
                        why: format!(
                            "{} is live because of a rollback from {}; name the version to go to with to_version",
                            live.version,
                            d.blue.as_ref().map(|b| b.version.as_str()).unwrap_or("nothing")
                        ),
                    })
                }
                Some(d) => d.blue.clone().ok_or_else(|| Refusal::NoPrevious {
                    service: name.clone(),
                    why: format!("nothing was live before {}", live.version),
                })?,
                None => {
                    return Err(Refusal::NoPrevious {
                        service: name,
                        why: format!(
                            "{} was live when the service was registered; greenlight knows nothing older",
                            live.version
                        ),
                    })
                }
            }
        }
    };
    if target.version == live.version && target.ami == live.ami {
        return Err(Refusal::AlreadyLive {
            service: name,
            version: live.version.clone(),
            ami: live.ami.clone(),
        });
    }
    Ok(target)
}

/// Loop protection for an alarm with nothing in flight: if the live version is the one the
/// last rollback went back to, rolling back again would ping-pong; the reason to stop.
pub fn alarm_loop(service: &ServiceState, alarm: &str) -> Option<String> {
    let live = service.live.as_ref()?;
    let last = service.last_revert.as_ref().filter(|r| r.back_to == live.version)?;
    Some(format!(
        "{alarm} fired on {}, the version the last rollback went back to (from {}, {}); greenlight stopped: decide by hand (roll back with to_version, or deploy a fix)",
        live.version, last.from, last.deploy_id
    ))
}

/// check-health's transition out of `Verifying`.
fn observe_health(
    dep: &mut Deployment,
    config: &ServiceConfig,
    report: &HealthReport,
    weight: u8,
    polls: u32,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    let abort = |dep: &mut Deployment, reason: String| {
        let note = format!("health gate failed: {reason}");
        enter_aborting(dep, config, reason, now);
        note
    };
    let state_of = |id: &String| {
        report
            .targets
            .iter()
            .find(|t| &t.instance_id == id)
            .cloned()
            .unwrap_or(TargetHealth {
                instance_id: id.clone(),
                state: TargetState::Missing,
                reason: None,
            })
    };
    let targets: Vec<TargetHealth> = dep.green_instances.iter().map(state_of).collect();
    if let Some(bad) = targets
        .iter()
        .find(|t| matches!(t.state, TargetState::Unhealthy | TargetState::Unused))
    {
        let why = bad.reason.clone().unwrap_or_else(|| "no reason given".into());
        return abort(
            dep,
            format!(
                "target {} is {} at {weight}% ({why})",
                bad.instance_id,
                bad.state.as_str()
            ),
        );
    }
    let missing: Vec<String> = targets
        .iter()
        .filter(|t| t.state == TargetState::Missing)
        .map(|t| t.instance_id.clone())
        .collect();
    if !missing.is_empty() {
        effects.push(Effect::RegisterTargets {
            target_group: dep.green_tg.clone(),
            instance_ids: missing,
            port: config.launch.port,
        });
    }
    if report.all_healthy(&dep.green_instances) {
        if let Some(failed) = report.smoke.iter().find(|s| !s.passed) {
            return abort(
                dep,
                format!(
                    "smoke test failed on {} at {weight}%: {}",
                    failed.instance_id, failed.detail
                ),
            );
        }
        let smoked = dep
            .green_instances
            .iter()
            .all(|id| report.smoke.iter().any(|s| &s.instance_id == id && s.passed));
        if smoked {
            dep.healthy_at.get_or_insert(now);
            dep.enter(
                Phase::Verified { weight },
                now,
                format!("green healthy and smoke test passed at {weight}%"),
            );
            return format!("green verified at {weight}%");
        }
    }
    let polls = polls + 1;
    if polls >= config.health.max_polls {
        let waiting: Vec<String> = targets
            .iter()
            .filter(|t| t.state != TargetState::Healthy)
            .map(|t| format!("{} {}", t.instance_id, t.state.as_str()))
            .collect();
        return abort(
            dep,
            format!(
                "green not healthy after {polls} polls ({}s): {}",
                polls as u64 * config.health.poll_interval_s,
                if waiting.is_empty() {
                    "smoke test not run".into()
                } else {
                    waiting.join(", ")
                }
            ),
        );
    }
    dep.phase = Phase::Verifying { weight, polls };
    dep.updated_at = now;
    format!("green not healthy yet (poll {polls}/{})", config.health.max_polls)
}

/// The switch point forwards to green's target group with weight 0: no user traffic, but
/// the load balancer health-checks only target groups its listeners or rules reference
/// (others report `unused`, `Target.NotInUse`). Nothing to attach to without a blue.
fn attach_green(config: &ServiceConfig, dep: &Deployment) -> Option<Effect> {
    dep.blue.as_ref().map(|_| set_traffic(config, dep, 0))
}

/// Moves to `Aborting`. Green drains for the deregistration delay only if it ever had
/// traffic, and is deregistered only once the stale-write fence has passed
/// ([`green_deregistrable_at`]); an untouched green can be terminated at once.
fn enter_aborting(dep: &mut Deployment, config: &ServiceConfig, reason: String, now: Epoch) {
    let touched = dep.max_weight > 0;
    let drain_until = now
        + if touched {
            config.max_invocation_s + config.deregistration_delay_s
        } else {
            0
        };
    dep.enter(
        Phase::Aborting {
            reason: reason.clone(),
            drain_until,
        },
        now,
        reason,
    );
}

/// The switch point forwarding to blue and green with green at `green_weight` %.
fn set_traffic(config: &ServiceConfig, dep: &Deployment, green_weight: u8) -> Effect {
    Effect::SetTraffic {
        switch: config.switch.clone(),
        blue_tg: dep.blue.as_ref().map(|b| b.target_group.clone()),
        green_tg: dep.green_tg.clone(),
        green_weight,
    }
}

/// When an aborting deployment's green may be deregistered (I26, the stale-write fence).
/// A green that ever had weight may still be given weight by a listener change decided
/// before the abort (a shift that read `Verified` or `Shifting`, whose ModifyListener, not
/// conditional, lands after the abort's; its run may crash right after it). Such a run ends
/// within `max_invocation_s` of the abort's decision (Lambda stops it): from then on no
/// stale listener change can land, and the abort's own, re-applied just before the
/// deregistration, is the last word. Until then green stays registered, so a stale weight
/// is served by healthy targets instead of none. An untouched green had no shift committed
/// before the abort (the abort's read would have seen it), so no run can give it weight.
pub fn green_deregistrable_at(config: &ServiceConfig, dep: &Deployment) -> Option<Epoch> {
    if !matches!(dep.phase, Phase::Aborting { .. }) {
        return None;
    }
    if dep.max_weight == 0 {
        return Some(0);
    }
    let since = aborting_since(dep).unwrap_or(dep.updated_at);
    Some(since + config.max_invocation_s)
}

/// When the deployment entered `Aborting` (the first timeline mark of that phase).
fn aborting_since(dep: &Deployment) -> Option<Epoch> {
    dep.timeline
        .iter()
        .find(|m| m.phase == PhaseName::Aborting)
        .map(|m| m.at)
}

/// Abort: traffic back to blue (only if the listener was ever touched and blue exists),
/// deregister green once no stale listener change can reach it any more (I26), and once
/// draining is over terminate everything tagged with the id.
fn abort_effects(config: &ServiceConfig, dep: &Deployment, now: Epoch, effects: &mut Vec<Effect>) {
    if dep.max_weight > 0 && dep.blue.is_some() {
        effects.push(set_traffic(config, dep, 0));
    }
    let fenced = green_deregistrable_at(config, dep).is_some_and(|at| now >= at);
    if !dep.green_instances.is_empty() && fenced {
        effects.push(Effect::DeregisterTargets {
            target_group: dep.green_tg.clone(),
            instance_ids: dep.green_instances.clone(),
            port: config.launch.port,
        });
    }
    if let Phase::Aborting { drain_until, .. } = dep.phase {
        if now >= drain_until && fenced {
            effects.push(Effect::TerminateInstances {
                service: dep.service.clone(),
                instance_ids: dep.green_instances.clone(),
                deploy_id: Some(dep.deploy_id.clone()),
                green: true,
            });
        }
    }
}

/// Aborts a deployment from outside its own execution (superseded, an engineer's request):
/// traffic back, green deregistered, and drain and terminate in a follow-up execution
/// (`<deploy id>-<suffix>`) now, whatever the deployment's own execution waits for. The note.
fn abort_now(
    dep: &mut Deployment,
    config: &ServiceConfig,
    reason: String,
    suffix: &str,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    let note = format!("aborting: {reason}");
    enter_aborting(dep, config, reason, now);
    abort_effects(config, dep, now, effects);
    effects.push(follow_up_execution(dep, suffix));
    note
}

/// A deployment reached a terminal phase: free the service, start the queued deployment,
/// write the report.
fn finish(service: &mut ServiceState, dep: &Deployment, effects: &mut Vec<Effect>) {
    if service.active.as_deref() == Some(dep.deploy_id.as_str()) {
        service.active = None;
        service.lease_until = None;
        if dep.phase == Phase::Succeeded {
            service.attention = None;
        }
        if let Some(request) = &service.queued {
            effects.push(Effect::StartQueued {
                request: request.clone(),
            });
        }
    }
    effects.push(Effect::WriteReport {
        service: dep.service.clone(),
        deploy_id: dep.deploy_id.clone(),
    });
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
fn own_step(event: &Event) -> bool {
    matches!(
        event,
        Event::LaunchDue
            | Event::HealthObserved { .. }
            | Event::ShiftDue
            | Event::FinalizeDue
            | Event::RetireDue { .. }
            | Event::Abort { .. }
    )
}

/// The event's name for log lines.
pub fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Start { .. } => "start",
        Event::LaunchDue => "launch_due",
        Event::GreenLaunched { .. } => "green_launched",
        Event::HealthObserved { .. } => "health_observed",
        Event::ShiftDue => "shift_due",
        Event::TrafficApplied { .. } => "traffic_applied",
        Event::Revert { .. } => "revert",
        Event::FinalizeDue => "finalize_due",
        Event::RetireDue { .. } => "retire_due",
        Event::BlueTerminated => "blue_terminated",
        Event::Abort { .. } => "abort",
        Event::Supersede { .. } => "supersede",
        Event::GreenTerminated => "green_terminated",
        Event::AbortRequested { .. } => "abort_requested",
        Event::Promote { .. } => "promote",
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
