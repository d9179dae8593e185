//! Stuck work (I23): the scheduled reconcile found the lease of the deployment holding a
//! service expired, so nothing moved it in time. It is resumed through the normal paths (a
//! follow-up execution that runs its remaining steps from the ledger's phase), a bounded
//! number of times per phase; then aborted if green has not gone live, else greenlight stops
//! and the service needs attention. Never left holding the service silently.

use super::finish::{abort_now, follow_up_execution};
use super::types::*;
use crate::config::ServiceConfig;
use crate::model::{Deployment, LastResume, Phase, ServiceState};
use crate::plan::{LATE_STEP_TRIES, MAX_RESUMES};
use crate::rfc3339::format as format_time;
use crate::Epoch;

/// Why deployment `dep` is not stuck (None: it is): it does not hold the service, its lease
/// has not expired, it ended, or greenlight already stopped on it (an engineer decides).
fn not_stuck(service: &ServiceState, dep: &Deployment, now: Epoch) -> Option<String> {
    if service.active.as_deref() != Some(dep.deploy_id.as_str()) {
        return Some("it does not hold the service".into());
    }
    match service.lease_until {
        None => return Some("the service has no lease".into()),
        Some(until) if until > now => return Some(format!("its lease runs until {}", format_time(until))),
        Some(_) => {}
    }
    if dep.phase.is_terminal() {
        return Some(format!("it is {}", dep.phase.name()));
    }
    if let Some(held) = dep.held() {
        return Some(format!(
            "it is held since {} ({} failed; on_failure is hold): it waits for an engineer",
            format_time(held.since),
            held.cause.as_str()
        ));
    }
    if dep.resumes > MAX_RESUMES || dep.late_failures >= LATE_STEP_TRIES {
        return Some("greenlight stopped on it; the service needs attention".into());
    }
    None
}

/// [`Event::LeaseExpired`] on `dep`, the deployment holding the service: resume, abort or
/// stop. The note.
pub(super) fn lease_expired(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    run_id: &str,
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> Result<String, Refusal> {
    // The same run delivered again (it crashed after committing the resume, maybe before
    // its StartExecution): start that execution (a no-op if it runs), change nothing else.
    if let Some(last) = dep.last_resume.as_ref().filter(|r| r.run_id == run_id) {
        if service.active.as_deref() == Some(dep.deploy_id.as_str()) && !dep.phase.is_terminal() {
            effects.push(Effect::StartExecution {
                service: dep.service.clone(),
                deploy_id: dep.deploy_id.clone(),
                execution: last.execution.clone(),
            });
            return Ok(format!(
                "resumed by this run already: {} started again (idempotent)",
                last.execution
            ));
        }
    }
    if let Some(why) = not_stuck(service, dep, now) {
        return Err(Refusal::NotStuck {
            deploy_id: dep.deploy_id.clone(),
            why,
        });
    }
    let expired = service.lease_until.map(format_time).unwrap_or_default();
    let phase = dep.phase.name();
    if dep.resumes < MAX_RESUMES {
        dep.resumes += 1;
        let mark = format!(
            "lease expired at {expired} with nothing moving it ({phase}); resumed ({} of {MAX_RESUMES})",
            dep.resumes
        );
        dep.enter(dep.phase.clone(), now, mark.clone());
        let start = follow_up_execution(dep, &format!("resume-{}", dep.gen));
        if let Effect::StartExecution { execution, .. } = &start {
            dep.last_resume = Some(LastResume {
                run_id: run_id.to_string(),
                execution: execution.clone(),
            });
        }
        effects.push(start);
        return Ok(mark);
    }
    let why = format!(
        "stuck in {phase}: its lease expired again after {MAX_RESUMES} resumes (last at {expired}) with no progress"
    );
    match dep.phase {
        Phase::Launching | Phase::Verifying { .. } | Phase::Verified { .. } | Phase::Shifting { .. } => {
            Ok(abort_now(dep, config, why, "stuck", now, effects))
        }
        _ => {
            // Green is live (baking, retiring) or already aborting: nothing safe is left to
            // try without an engineer (a rollback, or a fix and a promote).
            dep.resumes += 1;
            let attention = format!(
                "{} ({} of {}): {why}; greenlight stopped. Roll back with `greenlight rollback {}`, or fix the cause and promote",
                dep.deploy_id, dep.version, dep.service, dep.service
            );
            dep.enter(dep.phase.clone(), now, format!("greenlight stopped: {attention}"));
            service.attention.get_or_insert(attention);
            Ok(format!("{why}; greenlight stopped: the service needs attention"))
        }
    }
}
