//! revert-service: rolls a service back when an engineer asks (`RollbackRequested`) or one
//! of its CloudWatch alarms goes to ALARM.
//!
//! While the previous fleet is warm (a canary in progress, or the bake window), the revert
//! is ledger first, then one listener change: the deployment is marked rolled back and
//! aborting (and the pointers moved back) in one conditional write, then the switch point
//! forwards everything to the previous fleet again. A crash between the two is completed by
//! the next delivery, which finds the deployment aborting and re-applies the listener change.
//! The bad fleet is then drained and terminated by a clean-up execution.

use crate::engine::{drive, with_conflict_retries};
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::decide::{Event, RevertRequest};
use greenlight_core::inbound::{self, Inbound};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, Instrument};

/// What revert-service did with an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RevertOutcome {
    /// The deployment was rolled back now, or had been already (the note says which).
    Reverted {
        service: String,
        deploy_id: String,
        /// The deployment's phase after the event (`aborting`, or later).
        phase: String,
        note: String,
    },
    /// A well-formed event that asks for nothing (an alarm back to OK, an alarm no service
    /// registered).
    Ignored { why: String },
}

/// Handles one EventBridge event (our `RollbackRequested`, or a CloudWatch alarm state
/// change).
pub async fn revert_service(ports: &Ports, event: &Value) -> Result<RevertOutcome, StepError> {
    let request = match inbound::parse(event, &ports.manifest_prefix)? {
        Inbound::Rollback(request) => request,
        Inbound::Alarm(change) => {
            if change.state != "ALARM" {
                let why = format!("alarm {} is {}: nothing to do", change.alarm_name, change.state);
                info!(%why, "event ignored");
                return Ok(RevertOutcome::Ignored { why });
            }
            let service = ports.ledger.service_for_alarm(&change.alarm_name).await?;
            let Some(service) = service else {
                let why = format!("alarm {} is registered for no service; ignored", change.alarm_name);
                info!(%why, "event ignored");
                return Ok(RevertOutcome::Ignored { why });
            };
            change.revert_request(&service)
        }
        Inbound::Image(_) | Inbound::ImageBuilder { .. } | Inbound::Manifest { .. } | Inbound::Ignored(_) => {
            return Err(StepError::Rejected(
                "an image event is for start-deployment, not revert-service; check the EventBridge rule's target"
                    .into(),
            ))
        }
    };
    let span =
        info_span!("revert", service = %request.service, event_id = %request.event_id, trigger = %request.trigger);
    revert(ports, request).instrument(span).await
}

async fn revert(ports: &Ports, request: RevertRequest) -> Result<RevertOutcome, StepError> {
    let received_at_ms = ports.clock.now_ms();
    with_conflict_retries(|| async {
        let state = ports.ledger.load(&request.service, None).await?.ok_or_else(|| {
            StepError::Rejected(format!(
                "service {:?} is not registered; nothing to roll back",
                request.service
            ))
        })?;
        if request.trigger == "alarm" {
            let alarm = request.requested_by.trim_start_matches("alarm:");
            if !state.config.alarms.iter().any(|a| a == alarm) {
                let why = format!("alarm {alarm} is no longer in {}'s registration; ignored", request.service);
                info!(%why, "event ignored");
                return Ok(RevertOutcome::Ignored { why });
            }
        }
        let Some(active) = state.service.active.clone() else {
            let live = state.service.live.as_ref().map(|r| r.version.as_str()).unwrap_or("nothing");
            return Err(StepError::Refused(greenlight_core::Refusal::NothingWarm {
                service: request.service.clone(),
                why: format!(
                    "no deployment is in flight or baking ({live} is live and nothing is warm); redeploy the version you want"
                ),
            }));
        };
        let state = ports.ledger.load(&request.service, Some(&active)).await?.ok_or_else(|| {
            StepError::Rejected(format!("service {:?} disappeared while rolling back", request.service))
        })?;
        let event = Event::Revert {
            request: request.clone(),
            received_at_ms,
        };
        let (state, notes) = drive(ports, state, event).await?;
        let dep = state.deployment.as_ref().expect("loaded with the deployment");
        let outcome = RevertOutcome::Reverted {
            service: dep.service.clone(),
            deploy_id: dep.deploy_id.clone(),
            phase: dep.phase.name().to_string(),
            note: notes.join("; "),
        };
        info!(?outcome, "revert-service done");
        Ok(outcome)
    })
    .await
}
