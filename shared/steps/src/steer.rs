//! steer-deployment: an engineer's request about the deployment in flight, from the CLI or
//! a runbook: `AbortRequested` (stop it: traffic back on the previous version, green drained
//! and terminated now) or `PromoteRequested` (skip the remaining canary steps and the bake
//! window; the health gates still apply). Either acts at once through a follow-up execution,
//! whatever the deployment's own execution is waiting for. With no deployment in flight the
//! request is refused and nothing changes.

use crate::engine::{drive, with_conflict_retries};
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::inbound::{self, Inbound, SteerAction, SteerRequest};
use greenlight_core::model::PhaseName;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, Instrument};

/// What steer-deployment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SteerOutcome {
    pub service: String,
    pub deploy_id: String,
    pub action: SteerAction,
    /// The deployment's phase after the request.
    pub phase: PhaseName,
    pub note: String,
}

/// Handles one `AbortRequested` or `PromoteRequested` EventBridge event.
pub async fn steer_deployment(ports: &Ports, event: &Value) -> Result<SteerOutcome, StepError> {
    let request = match inbound::parse(event, &ports.manifest_prefix)? {
        Inbound::Steer(request) => request,
        _ => return Err(StepError::Rejected(
            "steer-deployment takes AbortRequested and PromoteRequested events; check the EventBridge rule's target"
                .into(),
        )),
    };
    let action = request.action;
    let span = info_span!("steer", service = %request.service, event_id = %request.event_id, action = action.as_str());
    async {
        let outcome = with_conflict_retries(|| steer(ports, &request, action)).await?;
        info!(deploy_id = %outcome.deploy_id, phase = %outcome.phase, note = %outcome.note, "steered");
        Ok(outcome)
    }
    .instrument(span)
    .await
}

async fn steer(ports: &Ports, request: &SteerRequest, action: SteerAction) -> Result<SteerOutcome, StepError> {
    let service = &request.service;
    let state = ports
        .ledger
        .load_active(service)
        .await?
        .ok_or_else(|| StepError::Rejected(format!("service {service} is not registered")))?;
    let Some(deploy_id) = state.service.active.clone() else {
        return Err(StepError::Rejected(format!(
            "{service} has no deployment in flight: nothing to {action} (see `greenlight status {service}`)"
        )));
    };
    if state.deployment.is_none() {
        return Err(StepError::Rejected(format!(
            "deployment {deploy_id} of {service} is not in the ledger"
        )));
    }
    let (state, notes) = drive(ports, state, request.event()).await?;
    let dep = state.deployment.as_ref().expect("drive keeps the deployment");
    Ok(SteerOutcome {
        service: service.clone(),
        deploy_id: dep.deploy_id.clone(),
        action,
        phase: dep.phase.kind(),
        note: notes.join("; "),
    })
}
