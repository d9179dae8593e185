//! An event delivered to the function it is for ([`greenlight_core::inbound::EventTarget`]):
//! an EventBridge event to its rule's target, an S3 event notification to start-deployment,
//! a CloudWatch alarm's Lambda action to revert-service. What Lambda does in AWS (a rule's
//! target, the bucket's notification, the alarm's action), and what the local pump and the
//! simulator do in-process.

use crate::{
    reconcile_services, revert_service, start_deployment, steer_deployment, ReconcileOutcome, RevertOutcome,
    StartOutcome, SteerOutcome, StepError,
};
use greenlight_adapters::Ports;
use greenlight_core::inbound::EventTarget;
use serde_json::Value;

/// What the function an event was delivered to made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// start-deployment's.
    Start(StartOutcome),
    /// revert-service's.
    Revert(RevertOutcome),
    /// steer-deployment's.
    Steer(SteerOutcome),
    /// reconcile-services'.
    Reconcile(ReconcileOutcome),
}

/// Delivers `event` (any of the three shapes) to the handler of the function it is for.
pub async fn deliver(ports: &Ports, event: &Value) -> Result<Outcome, StepError> {
    match EventTarget::of(event) {
        EventTarget::RevertService => revert_service(ports, event).await.map(Outcome::Revert),
        EventTarget::SteerDeployment => steer_deployment(ports, event).await.map(Outcome::Steer),
        EventTarget::StartDeployment => start_deployment(ports, event).await.map(Outcome::Start),
        EventTarget::ReconcileServices => reconcile_services(ports, event).await.map(Outcome::Reconcile),
    }
}
