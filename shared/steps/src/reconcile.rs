//! reconcile-services: EventBridge runs it on a schedule ([`RECONCILE_SCHEDULE`]); no event
//! from outside names a service. One run looks at every registered service (one page of the
//! ledger's registrations, at most [`MAX_SERVICES_PER_RUN`]) and mends what no trigger will:
//!
//! - **stuck work** (I23): the deployment holding a service whose lease expired, so nothing
//!   moved it in time (its execution never started: the trigger that committed it crashed
//!   before StartExecution and was dead-lettered; or the execution stopped). It is decided
//!   [`Event::LeaseExpired`] through the normal loop ([`drive`]): resumed in a follow-up
//!   execution, a bounded number of times, then aborted or stopped with the service needing
//!   attention.
//! - **phoenix re-paves**: a service with nothing in flight whose live fleet is older than
//!   its `max_instance_age_s` ([`greenlight_core::phoenix`]) gets the live release deployed
//!   again through start-deployment's own path (pre-flight, gates, revertible), within its
//!   maintenance hours.
//! - **the fleet** (issue 22): drift at the switch point, strangers in the target groups,
//!   orphaned instances, judged against the ledger and recorded, logged, counted, and
//!   repaired as the service's `reconcile` policy says ([`crate::audit`]).
//!
//! A service that fails does not stop the run: the others are still reconciled, and the run
//! fails (so Lambda retries it, then dead-letters it) only if one failed for a transient
//! reason. The next scheduled run looks again in any case.

use crate::audit::{audit_fleet, FleetOutcome};
use crate::engine::{drive, with_conflict_retries};
use crate::start::{start_request, StartOutcome};
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::decide::{Event, Refusal};
use greenlight_core::inbound::{parse_scheduled, RECONCILE_SCHEDULE};
use greenlight_core::model::{PhaseName, State};
use greenlight_core::phoenix::{repave, Repave};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

/// At most this many services per run: the ledger's registrations past it wait for the next
/// run (a warning says so). One run makes at most a few calls per service.
pub const MAX_SERVICES_PER_RUN: usize = 500;

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReconcileOutcome {
    /// Services looked at.
    pub services: usize,
    /// What was done, one entry per service acted on.
    pub actions: Vec<ReconcileAction>,
    /// Services that could not be reconciled this run, with why.
    pub failed: Vec<String>,
    /// The fleet audit of each service that has findings.
    pub fleet: Vec<FleetOutcome>,
    /// Work found due but refused for now (a re-pave whose image is gone, or while an alarm
    /// fires), with why: the next run tries again.
    pub refused: Vec<String>,
}

/// What the reconcile found to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileKind {
    /// A deployment whose lease expired: resumed, aborted or stopped.
    StuckWork,
    /// A phoenix re-pave of the live fleet started.
    Repave,
}

/// One service acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileAction {
    pub kind: ReconcileKind,
    pub service: String,
    pub deploy_id: String,
    /// The deployment's phase after the action.
    pub phase: PhaseName,
    pub note: String,
}

/// Handles one scheduled EventBridge event.
pub async fn reconcile_services(ports: &Ports, event: &Value) -> Result<ReconcileOutcome, StepError> {
    let run = parse_scheduled(event)?;
    let span = info_span!("reconcile", event_id = %run.event_id, schedule = RECONCILE_SCHEDULE);
    async {
        let mut services = ports.ledger.services().await?;
        services.sort();
        if services.len() > MAX_SERVICES_PER_RUN {
            warn!(
                registered = services.len(),
                limit = MAX_SERVICES_PER_RUN,
                "more services than one run reconciles; the rest wait for the next run"
            );
            services.truncate(MAX_SERVICES_PER_RUN);
        }
        let mut outcome = ReconcileOutcome {
            services: services.len(),
            ..ReconcileOutcome::default()
        };
        let mut transient = None;
        for service in &services {
            match with_conflict_retries(|| reconcile_service(ports, service, &run.event_id)).await {
                Ok(Some(Ok(action))) => {
                    info!(service = %action.service, deploy_id = %action.deploy_id, phase = %action.phase, note = %action.note, "reconciled");
                    outcome.actions.push(action);
                }
                Ok(Some(Err(why))) => {
                    warn!(service = %service, why = %why, "refused; the next run looks again");
                    outcome.refused.push(format!("{service}: {why}"));
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(service = %service, why = %e, "could not reconcile; the next run tries again");
                    outcome.failed.push(format!("{service}: {e}"));
                    if e.is_retryable() {
                        transient = Some(e);
                    }
                }
            }
            if let Err(e) = fleet_audit(ports, service, &mut outcome).await {
                if e.is_retryable() {
                    transient = Some(e);
                }
            }
        }
        info!(
            services = outcome.services,
            acted = outcome.actions.len(),
            failed = outcome.failed.len(),
            "reconcile run done"
        );
        match transient {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }
    .instrument(span)
    .await
}

/// The fleet audit of `service` ([`audit_fleet`]), noted in `outcome`; its error is noted too
/// and returned (the run goes on with the next service either way).
async fn fleet_audit(ports: &Ports, service: &str, outcome: &mut ReconcileOutcome) -> Result<(), StepError> {
    match with_conflict_retries(|| audit_fleet(ports, service)).await {
        Ok(Some(fleet)) if !fleet.findings.is_empty() => {
            outcome.fleet.push(fleet);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            warn!(service = %service, why = %e, "could not audit the fleet; the next run tries again");
            outcome.failed.push(format!("{service}: fleet audit: {e}"));
            Err(e)
        }
    }
}

/// What one service needed: an action, a refusal (why), or nothing (None).
type ServiceResult = Result<Option<Result<ReconcileAction, String>>, StepError>;

/// Stuck work first (the deployment in flight), then a re-pave (only with nothing in flight).
async fn reconcile_service(ports: &Ports, service: &str, run_id: &str) -> ServiceResult {
    let Some(state) = ports.ledger.load_active(service).await? else {
        return Ok(None);
    };
    if state.service.active.is_some() {
        return Ok(stuck_work(ports, service, run_id, state).await?.map(Ok));
    }
    match repave(&state.config, &state.service, ports.clock.now()) {
        Repave::Due(request) => {
            let reason = request.reason.clone().unwrap_or_default();
            match start_request(ports, request).await {
                // This fleet's re-pave ran already and ended without replacing it (aborted:
                // its gates failed): not retried until the fleet changes.
                Ok(StartOutcome::Started(out)) if matches!(out.phase, PhaseName::Aborted | PhaseName::Succeeded) => {
                    Ok(Some(Err(format!(
                        "re-pave {} of this fleet ended {}; not retried until a deployment replaces the fleet",
                        out.deploy_id, out.phase
                    ))))
                }
                Ok(StartOutcome::Started(out)) => Ok(Some(Ok(ReconcileAction {
                    kind: ReconcileKind::Repave,
                    service: service.to_string(),
                    deploy_id: out.deploy_id,
                    phase: out.phase,
                    note: format!("re-pave started: {reason}"),
                }))),
                Ok(StartOutcome::Queued { note, .. } | StartOutcome::Ignored(note)) => Ok(Some(Err(note))),
                // One request never yields several (that is an S3 notification's records).
                Ok(StartOutcome::Several(outcomes)) => {
                    Ok(Some(Err(format!("unexpected: {} outcomes", outcomes.len()))))
                }
                Err(StepError::Refused(refusal)) => Ok(Some(Err(format!("re-pave refused: {refusal}")))),
                Err(e) => Err(e),
            }
        }
        Repave::Off | Repave::Blocked(_) | Repave::NotYet { .. } | Repave::Waiting { .. } => Ok(None),
    }
}

/// Resumes (or ends) `service`'s deployment in flight if its lease expired (or this run,
/// delivered again, resumed it already). None: nothing to do.
async fn stuck_work(
    ports: &Ports,
    service: &str,
    run_id: &str,
    state: State,
) -> Result<Option<ReconcileAction>, StepError> {
    let now = ports.clock.now();
    let expired = state.service.lease_until.is_some_and(|t| t <= now);
    let resumed_by_this_run = state
        .deployment
        .as_ref()
        .and_then(|d| d.last_resume.as_ref())
        .is_some_and(|r| r.run_id == run_id);
    if !(expired || resumed_by_this_run) || state.deployment.is_none() {
        return Ok(None);
    }
    let event = Event::LeaseExpired {
        run_id: run_id.to_string(),
    };
    match drive(ports, state, event).await {
        Ok((state, notes)) => {
            let dep = state.deployment.as_ref().expect("drive keeps the deployment");
            Ok(Some(ReconcileAction {
                kind: ReconcileKind::StuckWork,
                service: service.to_string(),
                deploy_id: dep.deploy_id.clone(),
                phase: dep.phase.kind(),
                note: notes.join("; "),
            }))
        }
        // Moved meanwhile, or greenlight already stopped on it: nothing to do.
        Err(StepError::Refused(Refusal::NotStuck { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}
