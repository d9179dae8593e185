//! start-deployment: turns an image-published event (ours, EC2 Image Builder, an EC2 AMI
//! tagged with its service and version, or an S3 release manifest, through EventBridge or
//! an S3 event notification) into a deployment, refusing anything unsafe before touching AWS.

use crate::engine::{drive, output, with_conflict_retries};
use crate::observe;
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::decide::ImageRequest;
use greenlight_core::inbound::{self, Inbound, ManifestObject, SERVICE_TAG, VERSION_TAG};
use greenlight_core::model::ImageSource;
use greenlight_core::plan::StepOutput;
use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

/// What start-deployment did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// A deployment was started (or had been: duplicates map to the same one).
    Started(StepOutput),
    /// The deployment waits for the one in flight (`behind`) to end; the note says whether
    /// that one is being superseded.
    Queued {
        deploy_id: String,
        behind: String,
        note: String,
    },
    /// A well-formed event that needs no deployment (e.g. an image that failed to build).
    Ignored(String),
    /// What each record of an S3 event notification with several records came to, in order.
    Several(Vec<StartOutcome>),
}

/// Handles one event: an EventBridge event, or an S3 event notification.
pub async fn start_deployment(ports: &Ports, event: &Value) -> Result<StartOutcome, StepError> {
    let request = match inbound::parse(event, &ports.manifest_prefix)? {
        Inbound::Ignored(why) => {
            info!(%why, "event ignored");
            return Ok(StartOutcome::Ignored(why));
        }
        Inbound::Image(request) => request,
        Inbound::Rollback(_) | Inbound::Alarm(_) => {
            return Err(StepError::Rejected(
                "a rollback request or alarm state change is for revert-service, not start-deployment; check the EventBridge rule's target (or the alarm's Lambda action)".into(),
            ))
        }
        Inbound::Ami { ami } => {
            let image = ports.fleet.describe_image(&ami).await?.ok_or_else(|| {
                StepError::Rejected(format!("AMI {ami} does not exist or is not visible to this account"))
            })?;
            match inbound::ami_request(&ami, &image.tags)? {
                Some(request) => request,
                None => {
                    let why = format!(
                        "AMI {ami} is not tagged {SERVICE_TAG} and {VERSION_TAG}: not a greenlight release, nothing to deploy"
                    );
                    info!(%why, "event ignored");
                    return Ok(StartOutcome::Ignored(why));
                }
            }
        }
        Inbound::Manifests(records) => return start_manifests(ports, records).await,
        Inbound::Steer(_) => {
            return Err(StepError::Rejected(
                "abort and promote requests are for steer-deployment, not start-deployment; check the EventBridge rule's target".into(),
            ))
        }
        Inbound::ImageBuilder {
            image_arn,
            image_name,
            version,
        } => {
            let service = ports.ledger.service_for_image(&image_name).await?.ok_or_else(|| {
                StepError::Rejected(format!(
                    "no service is registered for Image Builder image {image_name:?}; set image_builder_name in its registration"
                ))
            })?;
            let ami = ports
                .fleet
                .image_builder_ami(&image_arn)
                .await?
                .ok_or_else(|| StepError::Rejected(format!("no AMI is tagged Ec2ImageBuilderArn={image_arn}")))?;
            ImageRequest {
                service,
                version,
                ami,
                source: ImageSource::ImageBuilder,
                requested_by: "ec2-image-builder".into(),
                reason: Some(format!("image {image_arn} available")),
                attempt: 1,
                rollback_of: None,
                repave_of: None,
                on_failure: None,
            }
        }
        Inbound::Manifest {
            bucket,
            key,
            service,
            version,
        } => {
            let body = ports.store.get(&bucket, &key).await?;
            inbound::parse_manifest(&body, &service, &version)?
        }
    };
    start_request(ports, request).await
}

/// The records of an S3 event notification, each on its own: a record that is refused does
/// not stop the others. One record: its outcome or its error, as the EventBridge form gives.
/// Several: every record is handled, then the first transient failure is returned (the
/// retried notification starts nothing twice: each deployment starts once), else the refused
/// records' reasons, else every outcome.
async fn start_manifests(
    ports: &Ports,
    records: Vec<Result<ManifestObject, inbound::InboundError>>,
) -> Result<StartOutcome, StepError> {
    let count = records.len();
    let (mut outcomes, mut refused, mut transient) = (Vec::new(), Vec::new(), None);
    for (n, record) in records.into_iter().enumerate() {
        let result = match record {
            Ok(m) => {
                let started = async {
                    let body = ports.store.get(&m.bucket, &m.key).await?;
                    start_request(ports, inbound::parse_manifest(&body, &m.service, &m.version)?).await
                };
                started.await
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) if count == 1 => return Err(e),
            Err(e) if e.is_retryable() => {
                warn!(record = n + 1, error = %e, "S3 record failed; the notification will be retried");
                transient.get_or_insert(e);
            }
            Err(e) => {
                warn!(record = n + 1, error = %e, "S3 record refused");
                refused.push(format!("record {}: {e}", n + 1));
            }
        }
    }
    if let Some(e) = transient {
        return Err(e);
    }
    if !refused.is_empty() {
        return Err(StepError::Rejected(format!(
            "{} of the {count} records of the S3 event notification refused, the others handled: {}",
            refused.len(),
            refused.join("; ")
        )));
    }
    Ok(if count == 1 {
        outcomes.pop().expect("one record, handled")
    } else {
        StartOutcome::Several(outcomes)
    })
}

/// Starts the deployment `request` asks for (or queues it, or supersedes the deployment in
/// flight, as the service's policy says). Also revert-service's slow path (a rollback
/// redeployment); a freed service's queued image is started by the engine
/// ([`crate::engine::drive`]) with the same observation.
pub async fn start_request(ports: &Ports, request: ImageRequest) -> Result<StartOutcome, StepError> {
    let deploy_id = request.deploy_id().to_string();
    let span = info_span!("step", step = "start-deployment", service = %request.service, deploy_id = %deploy_id);
    async {
        let outcome = with_conflict_retries(|| async {
            let (state, event) = observe::start_event(ports, &request).await?;
            let (state, notes) = drive(ports, state, event).await?;
            if state.deployment.is_none() {
                // Queued behind the deployment in flight (which may be superseded).
                return Ok(StartOutcome::Queued {
                    deploy_id: deploy_id.clone(),
                    behind: state.service.active.clone().unwrap_or_default(),
                    note: notes.join("; "),
                });
            }
            output(ports, &state, &notes).map(StartOutcome::Started)
        })
        .await?;
        info!(?outcome, "start-deployment done");
        Ok(outcome)
    }
    .instrument(span)
    .await
}
