//! revert-service: rolls a service back when an engineer asks (`RollbackRequested`) or one
//! of its CloudWatch alarms goes to ALARM.
//!
//! While the previous fleet is warm (a canary in progress, or the bake window), the revert
//! is ledger first, then one listener change: the deployment is marked rolled back and
//! aborting (and the pointers moved back) in one conditional write, then the switch point
//! forwards everything to the previous fleet again. A crash between the two is completed by
//! the next delivery, which finds the deployment aborting and re-applies the listener change.
//! The bad fleet is then drained and terminated by a clean-up execution. A deployment whose
//! release says `on_failure: hold` is frozen by an alarm instead (its plan is not the
//! alarms'), and waits for an engineer.
//!
//! Once that fleet is retired, the earlier version's image is deployed again through the
//! same gates, marked as a rollback (the slow path). An alarm on the version a rollback went
//! back to stops greenlight instead of ping-ponging: the service is marked as needing
//! attention and alarms are ignored until a deployment succeeds.

use crate::engine::{drive, with_conflict_retries};
use crate::start::{start_request, StartOutcome};
use crate::StepError;
use greenlight_adapters::{set_switch_points, Ports, RevertKey};
use greenlight_core::decide::{alarm_loop, rollback_target, Event, ImageRequest, RevertRequest};
use greenlight_core::inbound::{self, AlarmState, Inbound};
use greenlight_core::model::{ImageSource, PhaseName, ServiceState, Trigger};
use greenlight_core::Refusal;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

/// What revert-service did with an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RevertOutcome {
    /// The deployment was rolled back now, or had been already (the note says which).
    Reverted {
        service: String,
        deploy_id: String,
        /// The deployment's phase after the event (`aborting`, or later).
        phase: PhaseName,
        note: String,
    },
    /// Nothing warm to flip to: the earlier version's image is deployed again through the
    /// gates (deployment `deploy_id`, started or queued behind the one in flight).
    Redeploying {
        service: String,
        deploy_id: String,
        version: String,
        note: String,
    },
    /// The deployment in flight holds instead of reverting (`on_failure: hold`): an alarm
    /// froze it where it is, for an engineer to promote, roll back or abort.
    Held {
        service: String,
        deploy_id: String,
        phase: PhaseName,
        note: String,
    },
    /// A well-formed event that asks for nothing (an alarm back to OK, an alarm no service
    /// registered, a service that needs attention).
    Ignored { why: String },
}

/// Handles one event: our `RollbackRequested`, or a CloudWatch alarm state change through
/// EventBridge or as the alarm's Lambda action (the same transition is the same request).
pub async fn revert_service(ports: &Ports, event: &Value) -> Result<RevertOutcome, StepError> {
    let received_at_ms = ports.clock.now_ms();
    let (request, flipped_at_ms) = match inbound::parse(event, &ports.manifest_prefix)? {
        Inbound::Rollback(request) => {
            // A named version may not be the warm one: decided on the full state below.
            let flipped = match request.to_version {
                None => fast_flip(ports, RevertKey::Service(&request.service), &request, received_at_ms)
                    .await?
                    .map(|(_, at)| at),
                Some(_) => None,
            };
            (request, flipped)
        }
        Inbound::Alarm(change) => {
            if change.state != AlarmState::Alarm {
                return Ok(ignored(format!(
                    "alarm {} is {}: nothing to do",
                    change.alarm_name, change.state
                )));
            }
            let key = RevertKey::Alarm(&change.alarm_name);
            // The service is not known before the claim: the request is completed after it.
            let unnamed = change.revert_request("");
            if let Some((service, at)) = fast_flip(ports, key, &unnamed, received_at_ms).await? {
                (change.revert_request(&service), Some(at))
            } else {
                let service = ports.ledger.service_for_alarm(&change.alarm_name).await?;
                let Some(service) = service else {
                    return Ok(ignored(format!(
                        "alarm {} is registered for no service; ignored",
                        change.alarm_name
                    )));
                };
                (change.revert_request(&service), None)
            }
        }
        Inbound::Steer(_) => {
            return Err(StepError::Rejected(
                "abort and promote requests are for steer-deployment, not revert-service; check the EventBridge rule's target"
                    .into(),
            ))
        }
        Inbound::Image(_)
        | Inbound::ImageBuilder { .. }
        | Inbound::Ami { .. }
        | Inbound::Manifest { .. }
        | Inbound::Manifests(_)
        | Inbound::Ignored(_) => {
            return Err(StepError::Rejected(
                "an image event is for start-deployment, not revert-service; check the EventBridge rule's target (or the S3 bucket's notification)"
                    .into(),
            ))
        }
    };
    let span =
        info_span!("revert", service = %request.service, event_id = %request.event_id, trigger = %request.trigger);
    revert(ports, request, received_at_ms, flipped_at_ms)
        .instrument(span)
        .await
}

/// The fast path from the event to traffic back: claim the service's revert plan in one
/// conditional write that returns it, then make its listener changes, one per switch point,
/// all at once (each re-sends the frame the plan carries: no read first). The full decision
/// (ledger record, clean-up) follows. None: nothing to flip fast.
async fn fast_flip(
    ports: &Ports,
    key: RevertKey<'_>,
    request: &RevertRequest,
    received_at_ms: u64,
) -> Result<Option<(String, u64)>, StepError> {
    let Some((service, plan)) = ports.ledger.claim_revert(key, request, received_at_ms).await? else {
        return Ok(None);
    };
    if let RevertKey::Alarm(_) = key {
        // Claimed on the alarm's alias: claim on the service's pointers too, alongside the
        // listener change (not before it), so that no step acts on what it read before.
        let request = RevertRequest {
            service: service.clone(),
            ..request.clone()
        };
        let pointers = ports
            .ledger
            .claim_revert(RevertKey::Service(&service), &request, received_at_ms);
        let writes = plan.writes();
        let (claimed, flipped) = tokio::join!(pointers, set_switch_points(ports.lb.as_ref(), &writes, &plan.weights));
        flipped?;
        if let Err(why) = claimed {
            warn!(%why, "could not record the claim on the service's pointers; the full decision follows anyway");
        }
    } else {
        set_switch_points(ports.lb.as_ref(), &plan.writes(), &plan.weights).await?;
    }
    let at = ports.clock.now_ms();
    info!(%service, deploy_id = %plan.deploy_id, from = %plan.from, back_to = %plan.back_to, "fast rollback: traffic back");
    Ok(Some((service, at)))
}

async fn revert(
    ports: &Ports,
    request: RevertRequest,
    received_at_ms: u64,
    flipped_at_ms: Option<u64>,
) -> Result<RevertOutcome, StepError> {
    with_conflict_retries(|| async {
        let state = ports.ledger.load_active(&request.service).await?.ok_or_else(|| {
            StepError::Rejected(format!(
                "service {:?} is not registered; nothing to roll back",
                request.service
            ))
        })?;
        if request.trigger == Trigger::Alarm {
            let alarm = request.requested_by.trim_start_matches("alarm:");
            if !state.config.alarms.iter().any(|a| a == alarm) {
                return Ok(ignored(format!(
                    "alarm {alarm} is no longer in {}'s registration; ignored",
                    request.service
                )));
            }
            if let Some(why) = &state.service.attention {
                return Ok(ignored(format!(
                    "{} needs attention, not acting on alarms: {why}",
                    request.service
                )));
            }
        }
        if state.service.active.is_some() {
            let event = Event::Revert {
                request: request.clone(),
                received_at_ms,
                flipped_at_ms,
            };
            match drive(ports, state.clone(), event).await {
                Ok((state, notes)) => {
                    let dep = state.deployment.as_ref().expect("loaded with the deployment");
                    let (service, deploy_id, phase, note) = (
                        dep.service.clone(),
                        dep.deploy_id.clone(),
                        dep.phase.kind(),
                        notes.join("; "),
                    );
                    let outcome = if dep.held().is_some() {
                        RevertOutcome::Held {
                            service,
                            deploy_id,
                            phase,
                            note,
                        }
                    } else {
                        RevertOutcome::Reverted {
                            service,
                            deploy_id,
                            phase,
                            note,
                        }
                    };
                    info!(?outcome, "revert-service done");
                    return Ok(outcome);
                }
                // The fleet before it is retired or being retired, or the version asked for
                // is not the warm one: redeploy it (below), taking over from this deployment.
                Err(StepError::Refused(why @ (Refusal::NothingWarm { .. } | Refusal::NotTheWarmVersion { .. }))) => {
                    info!(%why, "no instant flip; redeploying the earlier version");
                }
                Err(e) => return Err(e),
            }
        } else if request.trigger == Trigger::Alarm {
            if let Some(done) = already_reverted_by(ports, &state.service, &request.event_id).await? {
                return Ok(ignored(done));
            }
            if let Some(why) = alarm_loop(&state.service, &request.requested_by) {
                let mut stopped = state.clone();
                stopped.service.attention = Some(why.clone());
                ports.ledger.commit(&state, &stopped).await?;
                warn!(%why, "rollback loop: stopped, the service needs attention");
                return Ok(ignored(why));
            }
        }
        redeploy(ports, &state.service, &request).await
    })
    .await
}

/// When the last rollback of the service was made by this very event (a redelivery after
/// its rollback completed), what it did. Not a new alarm on the version it went back to.
/// (Found by the fault-injection tests: a redelivered alarm marked the service as needing
/// attention.)
async fn already_reverted_by(
    ports: &Ports,
    service: &ServiceState,
    event_id: &str,
) -> Result<Option<String>, StepError> {
    let Some(last) = &service.last_revert else {
        return Ok(None);
    };
    let state = ports.ledger.load(&service.service, Some(&last.deploy_id)).await?;
    let by_this_event = state
        .and_then(|s| s.deployment)
        .and_then(|d| d.revert)
        .is_some_and(|r| r.event_id == event_id);
    Ok(by_this_event.then(|| {
        format!(
            "event {event_id} already rolled {} back from {} to {} ({}); a redelivery changes nothing",
            service.service, last.from, last.back_to, last.deploy_id
        )
    }))
}

/// The slow path: the version to go back to has no warm fleet, so its image is deployed
/// again through the same gates, as a rollback (it may be older than live, and it takes the
/// service over from any deployment in flight).
async fn redeploy(ports: &Ports, service: &ServiceState, request: &RevertRequest) -> Result<RevertOutcome, StepError> {
    let history = ports.ledger.history(&request.service).await?;
    let target = rollback_target(service, &history, request.to_version.as_deref())?;
    let image = ImageRequest {
        service: request.service.clone(),
        version: target.version.clone(),
        ami: target.ami.clone(),
        source: ImageSource::Rollback,
        requested_by: request.requested_by.clone(),
        reason: Some(format!("rollback: {}", request.reason)),
        attempt: 1,
        rollback_of: Some(request.event_id.clone()),
        repave_of: None,
        on_failure: None,
    };
    let outcome = match start_request(ports, image).await? {
        StartOutcome::Started(out) => RevertOutcome::Redeploying {
            service: out.service,
            deploy_id: out.deploy_id,
            version: target.version,
            note: out.note,
        },
        StartOutcome::Queued { deploy_id, note, .. } => RevertOutcome::Redeploying {
            service: request.service.clone(),
            deploy_id,
            version: target.version,
            note,
        },
        StartOutcome::Ignored(why) => RevertOutcome::Ignored { why },
        StartOutcome::Several(_) => {
            unreachable!("start_request answers for one image; Several is an S3 notification's")
        }
    };
    info!(?outcome, "revert-service done");
    Ok(outcome)
}

fn ignored(why: String) -> RevertOutcome {
    info!(%why, "event ignored");
    RevertOutcome::Ignored { why }
}
