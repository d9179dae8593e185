//! announce-deployments: the enrichment of the pipe from the ledger's stream to greenlight's
//! events bus. EventBridge Pipes invokes it synchronously with a batch of DynamoDB stream
//! records; it answers the `DeploymentStateChanged` details to put on the bus, one per
//! status change of a deployment, in order ([`greenlight_core::announce::enrich`]); an empty
//! answer puts nothing. It reads nothing and calls no AWS API: the stream records carry
//! the deployment before and after each write.

use crate::StepError;
use greenlight_core::announce::{enrich, DeploymentStateChanged};
use serde_json::Value;

/// The details for the pipe's target, and a log line for each (what was announced).
pub fn announce_deployments(batch: &Value) -> Result<Vec<DeploymentStateChanged>, StepError> {
    let events = enrich(batch).map_err(|e| StepError::Rejected(e.to_string()))?;
    for event in &events {
        tracing::info!(
            service = %event.service,
            deploy_id = %event.deploy_id,
            gen = event.gen,
            phase = %event.phase,
            previous_phase = ?event.previous_phase,
            waiting = ?event.waiting,
            "announced"
        );
    }
    Ok(events)
}
