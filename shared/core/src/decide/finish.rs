//! Ending a deployment: aborting (traffic back, green fenced, drained and terminated, I26)
//! and finishing (the service freed, the queued image started, the report written).

use super::traffic::{close_test_route, set_traffic};
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
            config.max_invocation_s.max(dep.stickiness_s()) + dep.drain_s_of(&dep.green_tg, config)
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
    // The route is opened with green's launch recorded: none before (and an outage of the
    // load balancer then does not hold up the abort of a deployment that never launched).
    if !dep.green_instances.is_empty() {
        effects.extend(close_test_route(config, dep));
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
        // A green that had traffic drains from when traffic was confirmed off it, which a
        // later run records ([`traffic_back_confirmed`]) and moves `drain_until` for.
        let traffic_back = !green_drains_from_traffic_back(dep) || dep.traffic_back_at.is_some();
        if now >= drain_until && fenced && traffic_back {
            effects.push(Effect::TerminateInstances {
                service: dep.service.clone(),
                instance_ids: dep.green_instances.clone(),
                deploy_id: Some(dep.deploy_id.clone()),
                green: true,
            });
        }
    }
}

/// True when the abort puts traffic back off a green that had some: green then drains from
/// when that change was confirmed (`Deployment::traffic_back_at`), not from the decision.
pub(super) fn green_drains_from_traffic_back(dep: &Deployment) -> bool {
    dep.max_weight > 0 && dep.blue.is_some()
}

/// The first confirmation (the switch points read back) that an aborting deployment's
/// traffic is back off green, at `at_ms`: green drains for its group's delay from then, so
/// `drain_until` moves there if later. A run that committed the abort and crashed before
/// its listener change left green serving until a later run re-applied it; without this,
/// that run (past the first `drain_until`) would deregister and terminate green at once,
/// cutting its connections. The note, or None if already recorded.
pub(super) fn traffic_back_confirmed(dep: &mut Deployment, config: &ServiceConfig, at_ms: u64) -> Option<String> {
    if dep.traffic_back_at.is_some() || !green_drains_from_traffic_back(dep) {
        return None;
    }
    let back = at_ms.div_ceil(1000);
    dep.traffic_back_at = Some(back);
    let drained_at = back + dep.drain_s_of(&dep.green_tg, config);
    if let Phase::Aborting { reason, drain_until } = &dep.phase {
        if drained_at > *drain_until {
            dep.phase = Phase::Aborting {
                reason: reason.clone(),
                drain_until: drained_at,
            };
            return Some(format!(
                "traffic back off green (confirmed late); green drains until {}",
                format_time(drained_at)
            ));
        }
    }
    Some("traffic back off green (confirmed)".into())
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
