//! Ending a deployment: aborting (traffic back, green fenced, drained and terminated, I26)
//! and finishing (the service freed, the queued image started, the report written).

use super::traffic::set_traffic;
use super::types::*;
use crate::config::ServiceConfig;
use crate::fence::green_deregistrable_at;
use crate::model::{Deployment, Phase, ServiceState};
use crate::plan::{late_step_wait, LATE_STEP_TRIES};
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// An execution `<deploy id>-<suffix>` that runs a deployment's remaining steps from its
/// phase in the ledger, whatever its own execution waits for (or if it stopped): the
/// clean-up after a rollback (`revert`) or a takeover (`superseded`), or a deployment whose
/// lease expired (`resume-<gen>`).
pub(super) fn follow_up_execution(dep: &Deployment, suffix: &str) -> Effect {
    Effect::StartExecution {
        service: dep.service.clone(),
        deploy_id: dep.deploy_id.clone(),
        execution: format!("{}-{suffix}", dep.deploy_id),
    }
}

/// Moves to `Aborting`. Green drains for the deregistration delay only if it ever had
/// traffic, and is deregistered only once the stale-write fence has passed
/// ([`green_deregistrable_at`]); an untouched green can be terminated at once.
pub(super) fn enter_aborting(dep: &mut Deployment, config: &ServiceConfig, reason: String, now: Epoch) {
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

/// Abort: traffic back to blue (only if the listener was ever touched and blue exists),
/// deregister green once no stale listener change can reach it any more (I26), and once
/// draining is over terminate everything tagged with the id.
pub(super) fn abort_effects(config: &ServiceConfig, dep: &Deployment, now: Epoch, effects: &mut Vec<Effect>) {
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
pub(super) fn abort_now(
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
pub(super) fn finish(service: &mut ServiceState, dep: &Deployment, effects: &mut Vec<Effect>) {
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

/// abort-deployment after a step failed while green is live (`Baking`, `Retiring`): too late
/// to abort, so the late step (retire-blue) is tried again, and the note says when. A failure
/// once the step was due (`now` at or past the phase's time) counts: the phase's time moves
/// to the next try ([`late_step_wait`]), so the route never sends the execution back at once;
/// at the [`LATE_STEP_TRIES`]-th, greenlight stops: nothing is deregistered or terminated,
/// the fleets stay as they are, the service needs attention (why, in `attention` and the
/// timeline) and the route ends the execution. A failure before the step was due (another
/// execution's step) changes nothing: the route already waits.
///
/// Why stopping is the safe end: the failure that repeats is typically retire-blue finding
/// the switch point still forwarding to blue while the ledger says green is live, put back
/// by a rollback (an alarm's fast path) that crashed before recording it and was never
/// retried. Blue serving must not be drained (I8), and moving traffic back to green would
/// undo what an alarm did for a reason; an engineer decides (`greenlight rollback` records
/// the rollback and cleans green up).
pub(super) fn late_step_failed(
    service: &mut ServiceState,
    dep: &mut Deployment,
    reason: &str,
    phase: &Phase,
    now: Epoch,
) -> String {
    let due = match *phase {
        Phase::Baking { until } => until,
        Phase::Retiring { drain_until } => drain_until,
        _ => now,
    };
    let too_late = format!("too late to abort ({}: green is live)", phase.name());
    if dep.late_failures >= LATE_STEP_TRIES {
        return format!(
            "{too_late}; greenlight stopped retrying after {LATE_STEP_TRIES} failures (the service needs attention). \
             The step failure was: {reason}"
        );
    }
    if now < due {
        return format!(
            "{too_late}; continuing at {}. The step failure was: {reason}",
            format_time(due)
        );
    }
    dep.late_failures += 1;
    if dep.late_failures >= LATE_STEP_TRIES {
        let why = format!(
            "{} ({} live in the ledger, {}): its next step failed {LATE_STEP_TRIES} times in a row ({reason}); \
             greenlight stopped, nothing retired or terminated. If the switch point forwards to the previous fleet \
             (a rollback not recorded), roll back with `greenlight rollback {}`; otherwise fix the cause and promote",
            dep.deploy_id,
            dep.version,
            phase.name(),
            dep.service
        );
        dep.enter(phase.clone(), now, format!("greenlight stopped: {why}"));
        service.attention.get_or_insert(why);
        return format!("{too_late}; greenlight stopped after {LATE_STEP_TRIES} failures: the service needs attention");
    }
    let at = now + late_step_wait(dep.late_failures);
    let next = match *phase {
        Phase::Baking { .. } => Phase::Baking { until: at },
        _ => Phase::Retiring { drain_until: at },
    };
    let note = format!(
        "{too_late}; trying again at {} ({} of {LATE_STEP_TRIES}). The step failure was: {reason}",
        format_time(at),
        dep.late_failures
    );
    dep.enter(next, now, note.clone());
    note
}
