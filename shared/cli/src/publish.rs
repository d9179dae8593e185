//! The publishing half of the verbs that steer (`rollback`, `abort`, `promote`), shared by
//! the CLI's verbs (`commands.rs`) and the dashboard's buttons (`dashboard/`): each reads the
//! ledger, refuses with a reason before anything is published, then puts exactly one
//! greenlight event on EventBridge and says what greenlight does next. Both callers thus
//! publish the same events, as the same identity, with the same refusals.

use crate::aws::Aws;
use crate::cli::Output;
use crate::error::{CliError, CliResult};
use crate::render;
use greenlight_core::detail;
use greenlight_core::inbound::ROLLBACK_REQUESTED;
use greenlight_core::model::Phase;
use greenlight_core::Refusal;
use serde::Serialize;
use serde_json::Value;

/// What a publishing verb did.
#[derive(Serialize)]
pub struct Published {
    pub event_id: String,
    pub detail_type: &'static str,
    pub event_bus: String,
    pub service: String,
    /// The deployment the event starts (deploy) or acts on (rollback, abort, promote).
    pub deploy_id: Option<String>,
    pub requested_by: String,
    /// The event's detail exactly as published.
    pub detail: Value,
}

impl Published {
    pub fn print(&self, out: Output, next: &str) {
        match out {
            Output::Json => render::json(self),
            Output::Table => {
                println!(
                    "published {} event {} on bus {} (requested by {})",
                    self.detail_type, self.event_id, self.event_bus, self.requested_by
                );
                println!("{next}");
            }
        }
    }

    pub fn value(&self) -> Value {
        serde_json::to_value(self).expect("published serializes")
    }
}

/// Publishes `RollbackRequested` for `service` (the CLI's `rollback` and the dashboard's):
/// returns what was published and, in a sentence, what revert-service does with it.
pub async fn publish_rollback(
    aws: &Aws,
    service: &str,
    to_version: Option<String>,
    reason: String,
    requested_by: String,
) -> CliResult<(Published, String)> {
    let state = aws.load(service, None).await?;
    let pointers = &state.service;
    let in_flight = pointers.active.clone();
    let fast = pointers.revert_plan.as_ref().filter(|plan| {
        in_flight.as_deref() == Some(plan.deploy_id.as_str()) && to_version.as_deref().is_none_or(|v| v == plan.back_to)
    });
    let next = match fast {
        Some(plan) => format!(
            "fast path: revert-service puts all traffic back on {} (one listener change) and retires {}",
            plan.back_to, plan.from
        ),
        None => format!(
            "no fleet is warm for a one-step revert: revert-service redeploys {} through the health gates",
            to_version.as_deref().unwrap_or("the previous version")
        ),
    };
    let detail = to_detail(&detail::RollbackRequested {
        service: service.to_string(),
        to_version,
        reason,
        requested_by: requested_by.clone(),
    });
    let event_id = aws.publish(ROLLBACK_REQUESTED, &detail).await?;
    let published = Published {
        event_id,
        detail_type: ROLLBACK_REQUESTED,
        event_bus: aws.bus.clone(),
        service: service.to_string(),
        deploy_id: in_flight,
        requested_by,
        detail,
    };
    Ok((published, next))
}

/// Publishes `AbortRequested` or `PromoteRequested` (`verb`: `abort`, `promote`) for
/// `service` (the CLI's verbs and the dashboard's), refused before publishing when the
/// ledger shows nothing it could act on: returns what was published and what
/// steer-deployment does with it.
pub async fn publish_steer(
    aws: &Aws,
    service: &str,
    reason: &str,
    requested_by: String,
    detail_type: &'static str,
    verb: &str,
) -> CliResult<(Published, String)> {
    let state = aws.load_active(service).await?;
    let Some(active) = state.service.active.clone() else {
        return Err(CliError::failed(format!(
            "{service} has no deployment in flight: nothing to {verb}; nothing was published (see `greenlight \
             status {service}`)"
        )));
    };
    // The phases steer-deployment refuses or has nothing to do in, refused before publishing.
    if let Some(dep) = state.deployment {
        let (deploy_id, phase) = (dep.deploy_id.clone(), dep.phase.kind());
        let refusal = match (verb, &dep.phase) {
            ("abort", Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded) => Some(format!(
                "{}: `greenlight rollback {service} --reason ...`",
                Refusal::TooLateToAbort { deploy_id, phase }
            )),
            ("abort", Phase::Aborting { .. } | Phase::Aborted { .. }) => {
                Some(format!("deployment {deploy_id} is already {phase}"))
            }
            ("promote", Phase::Aborting { .. } | Phase::Aborted { .. }) => {
                Some(Refusal::NothingToPromote { deploy_id, phase }.to_string())
            }
            ("promote", Phase::Retiring { .. } | Phase::Succeeded) => {
                Some(format!("deployment {deploy_id} is {phase}: nothing left to skip"))
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(CliError::failed(format!("{refusal}; nothing was published")));
        }
    }
    let detail = to_detail(&detail::SteerRequested {
        service: service.to_string(),
        reason: reason.to_string(),
        requested_by: requested_by.clone(),
    });
    let event_id = aws.publish(detail_type, &detail).await?;
    let next = match verb {
        "abort" => format!(
            "steer-deployment aborts {active}: traffic back on the previous version, green drained and terminated"
        ),
        _ => format!("steer-deployment promotes {active}: remaining canary steps and bake window skipped"),
    };
    let published = Published {
        event_id,
        detail_type,
        event_bus: aws.bus.clone(),
        service: service.to_string(),
        deploy_id: Some(active),
        requested_by,
        detail,
    };
    Ok((published, next))
}

/// An event's detail as the JSON it is published as.
pub fn to_detail(detail: &impl Serialize) -> Value {
    serde_json::to_value(detail).expect("an event detail serializes")
}
