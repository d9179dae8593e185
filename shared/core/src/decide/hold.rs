//! Holding instead of reverting (`on_failure: hold`, flagger#1186): a failed health gate or
//! smoke test, a regression found by canary analysis, or one of the service's alarms freezes
//! the deployment where it is. No further traffic change, nothing deregistered or
//! terminated, the service marked as needing attention (which also takes its fast revert plan
//! away, so alarms flip nothing), and the route ends the execution: nothing polls. It waits
//! for an engineer, as long as it takes:
//! - `greenlight promote`: the hold ends and the deployment goes on as promoted (the rest of
//!   the canary and the bake window skipped; the health gates still apply, so a gate that
//!   still fails holds it again);
//! - `greenlight rollback`: traffic back on blue, green cleaned up (the revert path);
//! - `greenlight abort`: the same, before green is live.
//!
//! While held, a step of the deployment's own executions changes nothing (I36); a report of
//! what already happened (a launch, a listener change made before the hold) is recorded.

use super::finish::follow_up_execution;
use super::types::*;
use crate::config::OnFailure;
use crate::model::{Deployment, HoldAction, HoldCause, HoldEnd, HoldRecord, Phase, ServiceState, State};
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// True when a failure of `dep` now holds it instead of reverting it: its release says
/// `hold`, and green is not live-and-retiring yet (from `Retiring` on, an alarm does what it
/// always does: the previous release is redeployed through the gates).
pub(super) fn holds_on_failure(dep: &Deployment) -> bool {
    dep.on_failure == OnFailure::Hold
        && matches!(
            dep.phase,
            Phase::Launching
                | Phase::Verifying { .. }
                | Phase::Verified { .. }
                | Phase::Shifting { .. }
                | Phase::Baking { .. }
        )
}

/// The most traffic green may have in `phase`: where a hold freezes it.
fn weight_of(phase: &Phase) -> u8 {
    match *phase {
        Phase::Verifying { weight, .. } | Phase::Verified { weight } => weight,
        Phase::Shifting { from, to } => from.max(to),
        Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded => 100,
        Phase::Launching | Phase::Aborting { .. } | Phase::Aborted { .. } => 0,
    }
}

/// What the service's `attention` says while `hold` freezes `dep`: what failed and what an
/// engineer can do about it.
pub fn attention_of(dep: &Deployment, hold: &HoldRecord) -> String {
    let service = &dep.service;
    let choices = if matches!(dep.phase, Phase::Baking { .. }) {
        format!("`greenlight promote {service}` (go on) or `greenlight rollback {service}` (traffic back)")
    } else {
        format!(
            "`greenlight promote {service}` (go on), `greenlight rollback {service}` or `greenlight abort {service}` (traffic back)"
        )
    };
    format!(
        "{} ({} of {service}) held at {}% since {}: {} failed ({}); on_failure is hold. Decide: {choices}",
        dep.deploy_id,
        dep.version,
        hold.weight,
        format_time(hold.since),
        hold.cause.as_str(),
        hold.reason
    )
}

/// Freezes `dep` at `now` because `cause` failed (`reason`): the hold recorded, the service
/// needing attention. Already held: nothing changes. The note.
pub(super) fn hold(
    service: &mut ServiceState,
    dep: &mut Deployment,
    cause: HoldCause,
    reason: String,
    now: Epoch,
) -> String {
    if let Some(held) = dep.held() {
        return format!(
            "already held since {} ({} failed); {} ({reason}) changes nothing",
            format_time(held.since),
            held.cause.as_str(),
            cause.as_str()
        );
    }
    let record = HoldRecord {
        since: now,
        weight: weight_of(&dep.phase),
        cause,
        reason,
        ended: None,
    };
    let attention = attention_of(dep, &record);
    let mark = format!(
        "held at {}%: {} failed ({}); waiting for an engineer: promote, rollback or abort",
        record.weight,
        cause.as_str(),
        record.reason
    );
    dep.holds.push(record);
    dep.enter(dep.phase.clone(), now, mark.clone());
    service.attention.get_or_insert(attention);
    mark
}

/// Ends the hold on `dep` (if any) by an engineer's `action`; the service no longer needs
/// attention for it.
pub(super) fn end(
    service: &mut ServiceState,
    dep: &mut Deployment,
    action: HoldAction,
    requested_by: &str,
    event_id: &str,
    now: Epoch,
) {
    let Some(held) = dep.held().cloned() else {
        return;
    };
    if service.attention.as_deref() == Some(attention_of(dep, &held).as_str()) {
        service.attention = None;
    }
    if let Some(last) = dep.holds.last_mut() {
        last.ended = Some(HoldEnd {
            at: now,
            action,
            requested_by: requested_by.to_string(),
            event_id: event_id.to_string(),
        });
    }
}

/// The follow-up execution that moves a deployment on after its `n`-th hold (1-based) was
/// released by a promote.
pub(super) fn release_execution(dep: &Deployment, n: usize) -> Effect {
    follow_up_execution(dep, &format!("release-{n}"))
}

/// The hold (1-based) that the promote `event_id` released already, if any: its redelivery
/// re-issues the same follow-up and changes nothing.
pub(super) fn released_by(dep: &Deployment, event_id: &str) -> Option<usize> {
    if event_id.is_empty() {
        return None;
    }
    dep.holds
        .iter()
        .position(|h| {
            h.ended
                .as_ref()
                .is_some_and(|e| e.action == HoldAction::Promoted && e.event_id == event_id)
        })
        .map(|i| i + 1)
}

/// A promote of the held `dep`: the hold ends, the deployment goes on as promoted (the health
/// gate, when it was the gate that failed, gets a full new set of polls). The note.
pub(super) fn promote(
    service: &mut ServiceState,
    dep: &mut Deployment,
    requested_by: &str,
    reason: &str,
    event_id: &str,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    let Some(held) = dep.held().cloned() else {
        return format!("{} is not held", dep.deploy_id);
    };
    end(service, dep, HoldAction::Promoted, requested_by, event_id, now);
    dep.promoted_by = Some(requested_by.to_string());
    dep.late_failures = 0;
    let phase = match dep.phase.clone() {
        Phase::Verifying { weight, .. } => Phase::Verifying { weight, polls: 0 },
        Phase::Baking { .. } => Phase::Baking { until: now },
        other => other,
    };
    let mark = format!(
        "hold at {}% ({} failed) released: promoted by {requested_by}: {reason}; going on (health gates still apply)",
        held.weight,
        held.cause.as_str()
    );
    dep.enter(phase, now, mark.clone());
    effects.push(release_execution(dep, dep.holds.len()));
    mark
}

/// Why `event` changes nothing while `state`'s deployment is held (None: it is decided as
/// usual): the steps of its own executions, a failed step's abort, and a takeover by anything
/// but a rollback. A report of what already happened (a launch, a listener change) and an
/// engineer's request are decided.
pub(super) fn frozen(state: &State, dep: &Deployment, event: &Event) -> Option<String> {
    let held = dep.held()?;
    let by_rollback = state.service.queued.as_ref().is_some_and(|q| q.is_rollback());
    let frozen = match event {
        Event::LaunchDue { .. }
        | Event::HealthObserved { .. }
        | Event::ShiftDue { .. }
        | Event::FinalizeDue
        | Event::RetireDue { .. }
        | Event::HookAnswered { .. }
        | Event::Abort { .. } => true,
        Event::Supersede { .. } => !by_rollback,
        _ => false,
    };
    frozen.then(|| {
        format!(
            "held at {}% since {} ({} failed): {} changes nothing; waiting for an engineer (promote, rollback or abort)",
            held.weight,
            format_time(held.since),
            held.cause.as_str(),
            event_name(event)
        )
    })
}

/// I36, asserted on every decision (debug builds; the simulator checks it on the world from
/// outside): a decision that leaves its deployment held, on anything but an engineer's
/// request, changes no traffic and deregisters or terminates nothing.
pub(super) fn debug_assert_frozen(event: &Event, decision: &Decision) {
    let held = decision.state.deployment.as_ref().is_some_and(|d| d.held().is_some());
    let engineer = matches!(
        event,
        Event::Revert { request, .. } if request.trigger == crate::model::Trigger::Engineer
    ) || matches!(event, Event::AbortRequested { .. } | Event::Promote { .. });
    debug_assert!(
        !held
            || engineer
            || !decision.effects.iter().any(|e| matches!(
                e,
                Effect::SetTraffic { .. } | Effect::DeregisterTargets { .. } | Effect::TerminateInstances { .. }
            )),
        "I36: a held deployment changed traffic or fleets on {}: {:?}",
        event_name(event),
        decision.effects
    );
}
