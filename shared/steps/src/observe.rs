//! What a start event needs to see of the world before `decide` (read-only): the ledger's
//! state for the service and deploy id, the image, and which of the service's alarms fire.
//! Used by start-deployment and by the engine when a freed service starts its queued image.

use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::decide::{Event, ImageRequest};
use greenlight_core::model::State;

/// Reads the state `request` is decided on and observes its image and alarms: the
/// [`Event::Start`] to decide. An unregistered service is rejected, changing nothing.
pub async fn start_event(ports: &Ports, request: &ImageRequest) -> Result<(State, Event), StepError> {
    let deploy_id = request.deploy_id().to_string();
    let state = ports
        .ledger
        .load(&request.service, Some(&deploy_id))
        .await?
        .ok_or_else(|| {
            StepError::Rejected(format!(
                "service {:?} is not registered; register it first (see README: registering a service)",
                request.service
            ))
        })?;
    let image = ports.fleet.describe_image(&request.ami).await?;
    let alarms = &state.config.alarms;
    let firing_alarms = if alarms.is_empty() {
        vec![]
    } else {
        ports.alarms.in_alarm(alarms).await?
    };
    let event = Event::Start {
        request: request.clone(),
        image,
        firing_alarms,
    };
    Ok((state, event))
}
