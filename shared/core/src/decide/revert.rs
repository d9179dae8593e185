//! Rolling back: the fast revert plan kept ready while the previous fleet is warm, a
//! claimed rollback completed first, the revert decision itself, and the release a slow
//! rollback redeploys.

use super::finish::{abort_effects, enter_aborting, follow_up_execution};
use super::types::*;
use crate::config::ServiceConfig;
use crate::ids::DeployId;
use crate::model::{Deployment, LastRevert, Phase, PhaseName, Release, RevertPlan, ServiceState, State, Trigger};
use crate::request::RevertRequest;
use crate::Epoch;

/// The rollback to decide first, when the fast path claimed one for this deployment that the
/// ledger does not record yet.
pub(super) fn claimed_revert(state: &State, event: &Event) -> Option<Event> {
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
        points: dep.point_writes(config),
        switch: None,
        weights: vec![(blue.target_group.clone(), 100), (dep.green_tg.clone(), 0)],
        from: dep.version.clone(),
        back_to: blue.version.clone(),
        since_ms: dep.created_at.saturating_mul(1000),
        alarms_hold: dep.on_failure == crate::config::OnFailure::Hold,
    })
}

/// A rollback of `dep` (the service's deployment in flight): traffic back to the release
/// before it while that fleet is warm, then the deployment's fleet is cleaned up like an
/// abort. Repeated or late triggers change nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn revert(
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
    if request.trigger == Trigger::Alarm && flipped_at_ms.is_none() && super::hold::holds_on_failure(dep) {
        // `on_failure: hold`: the alarm freezes the deployment instead (its plan was never
        // mirrored onto the alarms, so nothing flipped).
        let why = format!("{}: {}", request.requested_by, request.reason);
        return Ok(super::hold::hold(
            service,
            dep,
            crate::model::HoldCause::Alarm,
            why,
            now,
        ));
    }
    super::hold::end(
        service,
        dep,
        crate::model::HoldAction::RolledBack,
        &request.requested_by,
        &request.event_id,
        now,
    );
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

/// Records when traffic went back to the previous fleet (the first time only), with a
/// timeline mark; the mark's text.
pub(super) fn traffic_back(dep: &mut Deployment, at_ms: u64, now: Epoch) -> Option<String> {
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
        weight: None,
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
