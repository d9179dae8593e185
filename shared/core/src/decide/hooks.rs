//! What a lifecycle hook's answer does (`hooking` says when a hook holds a deployment and
//! which call is due): `SUCCEEDED` lets the deployment move out of its point (or on to the
//! next hook there); `IN_PROGRESS` is called again after the hook's callback delay, until its
//! `timeout_s`, then its `on_timeout`; `FAILED` takes the same path as a failed gate before
//! traffic (abort) or a regression after (revert), or holds (`on_failure: hold`); after a
//! revert there is nothing left to revert, so it marks the service as needing attention.
//! Every answer is recorded ([`HookRecord`]), and the timeline notes each decision.
//!
//! A step's own event (`ShiftDue`, `FinalizeDue`, `RetireDue`) changes nothing while a hook
//! holds its point ([`blocks`]), and an aborting green is not terminated before its
//! `after_revert` hooks decided ([`keep_green_for_hooks`]).

use super::finish::{abort_effects, enter_aborting};
use super::types::*;
use crate::config::ServiceConfig;
use crate::hook::{HookEnd, HookRecord, Observation, OnTimeout, Stage, Status};
use crate::hooking::{next_call, Point};
use crate::model::{Deployment, HoldCause, ServiceState};
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// What a recorded answer asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answered {
    /// Not the call due now (a duplicate or late delivery): nothing changes.
    Stale(String),
    /// Recorded; the note.
    Recorded(String),
    /// The hook failed (or timed out with `rollback`) at a point where traffic must go back
    /// to blue: the caller reverts with this reason.
    Revert(String),
}

/// Records `observation`, the answer to the call due now, and does what it says.
pub(super) fn answered(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    observation: &Observation,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Answered {
    let Some((hook, call, _)) = next_call(config, dep, now) else {
        return Answered::Stale(format!(
            "hook {} answered, but no hook holds {} now (a late or duplicate delivery)",
            observation.call.hook, dep.deploy_id
        ));
    };
    if call != observation.call {
        return Answered::Stale(format!(
            "hook {} answered call {} at {} {}%, but the call due is {} of {} (a late or duplicate delivery)",
            observation.call.hook,
            observation.call.number,
            observation.call.stage.as_str(),
            observation.call.weight,
            call.number,
            call.hook
        ));
    }
    let hook = hook.clone();
    let point = Point {
        stage: call.stage,
        weight: call.weight,
    };
    let at = match dep
        .hooks
        .iter()
        .position(|r| r.is_at(&hook.name, point.stage, point.weight))
    {
        Some(at) => at,
        None => {
            dep.hooks.push(HookRecord {
                hook: hook.name.clone(),
                stage: point.stage,
                weight: point.weight,
                since: now,
                calls: 0,
                next_call_at: now,
                last_reason: String::new(),
                ended: None,
            });
            dep.hooks.len() - 1
        }
    };
    let record = &mut dep.hooks[at];
    record.calls = call.number;
    let label = format!("hook {} ({} at {}%)", hook.name, point.stage.as_str(), point.weight);
    let because = |reason: &str| {
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        }
    };
    let deadline = record.since.saturating_add(hook.timeout_s);
    let failure = match observation.status {
        Status::Succeeded => {
            record.ended = Some(HookEnd::Succeeded { at: now });
            let mark = format!("{label} succeeded{}", because(&observation.reason));
            dep.enter(dep.phase.clone(), now, mark.clone());
            return Answered::Recorded(mark);
        }
        Status::InProgress if now >= deadline => {
            record.ended = Some(HookEnd::TimedOut {
                at: now,
                action: hook.on_timeout,
            });
            let late = format!(
                "{label} still in progress after {}s (timeout_s {})",
                now.saturating_sub(record.since),
                hook.timeout_s
            );
            if hook.on_timeout == OnTimeout::Continue {
                let mark = format!("{late}; continuing as declared");
                dep.enter(dep.phase.clone(), now, mark.clone());
                return Answered::Recorded(mark);
            }
            format!("{late}; rolling back as declared")
        }
        Status::InProgress => {
            // Times are whole seconds, rounded down: one more second makes the next call come
            // at least `callback_delay_s` after this answer, whatever fraction of a second it
            // came at (the route sleeps from a later instant to `next_call_at`).
            record.next_call_at = now.saturating_add(hook.callback_delay_s + 1).min(deadline);
            record.last_reason = observation.reason.clone();
            let note = format!(
                "{label} in progress{}; called again at {} (until {})",
                because(&observation.reason),
                format_time(record.next_call_at),
                format_time(deadline)
            );
            if call.number == 1 {
                // The first answer only: one mark per hook, however long it takes.
                dep.enter(dep.phase.clone(), now, note.clone());
            }
            return Answered::Recorded(note);
        }
        Status::Failed => {
            record.ended = Some(HookEnd::Failed {
                at: now,
                reason: observation.reason.clone(),
            });
            format!("{label} failed{}", because(&observation.reason))
        }
    };
    fail(service, dep, config, point, failure, now, effects)
}

/// A hook failed at `point` (`why`): abort, hold, revert, or (after a revert) attention.
fn fail(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    point: Point,
    why: String,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Answered {
    if point.stage == Stage::AfterRevert {
        dep.enter(dep.phase.clone(), now, why.clone());
        service.attention.get_or_insert(format!(
            "{} ({} of {}) after its revert: {why}",
            dep.deploy_id, dep.version, dep.service
        ));
        return Answered::Recorded(format!("{why}; the service needs attention"));
    }
    if super::hold::holds_on_failure(dep) {
        return Answered::Recorded(super::hold::hold(service, dep, HoldCause::Hook, why, now));
    }
    if dep.max_weight == 0 || dep.blue.is_none() {
        // No user ever reached green (or there is nothing to go back to): abort.
        enter_aborting(dep, config, why.clone(), now);
        abort_effects(config, dep, now, effects);
        return Answered::Recorded(format!("aborting: {why}"));
    }
    Answered::Revert(why)
}

/// Why `event` (a step's own) changes nothing now: a hook holds the deployment's point.
pub(super) fn blocks(config: &ServiceConfig, dep: &Deployment, event: &Event, now: Epoch) -> Option<String> {
    if !matches!(
        event,
        Event::ShiftDue { .. } | Event::FinalizeDue | Event::RetireDue { .. }
    ) {
        return None;
    }
    let (hook, call, at) = next_call(config, dep, now)?;
    Some(format!(
        "waits for hook {} ({} at {}%): call {} {}",
        hook.name,
        call.stage.as_str(),
        call.weight,
        call.number,
        if at <= now {
            "due now".to_string()
        } else {
            format!("at {}", format_time(at))
        }
    ))
}

/// True when an aborting `dep` keeps green until its `after_revert` hooks decided.
pub(super) fn keep_green_for_hooks(config: &ServiceConfig, dep: &Deployment, now: Epoch) -> bool {
    next_call(config, dep, now).is_some_and(|(_, call, _)| call.stage == Stage::AfterRevert)
}
