//! Approval pauses (`"pause"` in `canary_steps`, Argo Rollouts' `pause: {}`): green verified
//! at a weight waits there for an engineer's `greenlight promote` before it moves on, or
//! until the registration's `pause_timeout_s`, then does its `on_pause_timeout` (abort, or
//! continue as if approved). A pause comes after the step's own gates and analysis passed;
//! while it waits, alarms and an engineer's rollback or abort act as in any step.
//!
//! Waiting is the state machine's: the route sleeps until the pause's deadline (the lease
//! covers it), and an approval starts a follow-up execution that moves green at once. The
//! pauses a deployment reached are recorded ([`PauseRecord`]) with how each ended; the
//! simulator checks that green never passed a pause without one (I35).

use super::types::Event;
use crate::config::{OnPauseTimeout, ServiceConfig};
use crate::model::{Deployment, PauseEnd, PauseRecord};
use crate::pausing::pauses_apply;
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// What green verified at `weight` % may do instead of its next shift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// No pause here, or it ended with an approval: move on.
    Open,
    /// Waiting for an approval (the note).
    Wait(String),
    /// Nobody approved it in time: do the declared action (the note says so).
    TimedOut(OnPauseTimeout, String),
}

/// Before green moves on from `weight` %: begins the pause declared there (recorded, with a
/// timeline mark), or says it still waits, or ends it at its deadline.
pub(super) fn before_shift(config: &ServiceConfig, dep: &mut Deployment, weight: u8, now: Epoch) -> Gate {
    if !pauses_apply(dep) || !config.rollout.pauses_after(weight) {
        // A pause that waits here but is no longer declared (the registration changed).
        if let Some(pause) = dep.pauses.iter_mut().find(|p| p.weight == weight && p.ended.is_none()) {
            pause.ended = Some(PauseEnd::Withdrawn { at: now });
            let note = format!("the pause at {weight}% is no longer declared by the registration: moving on");
            dep.enter(dep.phase.clone(), now, note);
        }
        return Gate::Open;
    }
    if dep.pause_ended(weight) {
        return Gate::Open;
    }
    let action = config.rollout.on_pause_timeout;
    let Some(at) = dep.pauses.iter().position(|p| p.weight == weight) else {
        let until = now + config.rollout.pause_timeout_s;
        dep.pauses.push(PauseRecord {
            weight,
            since: now,
            until,
            ended: None,
        });
        let note = format!(
            "paused at {weight}%: waiting for an engineer's approval (`greenlight promote {}`) until {}, then {}",
            dep.service,
            format_time(until),
            action.as_str()
        );
        dep.enter(dep.phase.clone(), now, note.clone());
        return Gate::Wait(note);
    };
    let pause = &mut dep.pauses[at];
    if now < pause.until {
        return Gate::Wait(format!(
            "paused at {weight}% since {}: waiting for `greenlight promote {}` until {}, then {}",
            format_time(pause.since),
            dep.service,
            format_time(pause.until),
            action.as_str()
        ));
    }
    pause.ended = Some(PauseEnd::TimedOut { at: now, action });
    let why = format!(
        "the pause at {weight}% was not approved within {}s",
        now.saturating_sub(pause.since)
    );
    Gate::TimedOut(action, why)
}

/// An engineer's `PromoteRequested` while green waits in a pause at `weight` %: approves it
/// (recorded with the event's id). False when no pause waits there.
pub(super) fn approve(dep: &mut Deployment, weight: u8, promote: &Event, now: Epoch) -> bool {
    let Event::Promote {
        requested_by,
        reason,
        event_id,
    } = promote
    else {
        return false;
    };
    let Some(pause) = dep.pauses.iter_mut().find(|p| p.weight == weight && p.ended.is_none()) else {
        return false;
    };
    pause.ended = Some(PauseEnd::Approved {
        at: now,
        requested_by: requested_by.clone(),
        reason: reason.clone(),
        event_id: event_id.clone(),
    });
    true
}

/// The weight of the pause the `PromoteRequested` with `event_id` already approved, if it did
/// (a duplicate delivery: it must not promote past the rest of the canary).
pub(super) fn already_approved(dep: &Deployment, event_id: &str) -> Option<u8> {
    if event_id.is_empty() {
        return None;
    }
    dep.pauses
        .iter()
        .find(|p| matches!(&p.ended, Some(PauseEnd::Approved { event_id: e, .. }) if e == event_id))
        .map(|p| p.weight)
}
