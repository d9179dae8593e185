//! What a late, duplicate or out-of-order delivery still does. An event with nothing to
//! decide in the deployment's phase changes no state, but a step of the deployment's own
//! execution makes the world match the ledger again (I24), and whatever follows a finished
//! deployment is made to run (I23). The seeds that found each are in
//! `shared/sim/tests/seeds.rs`.

use super::traffic::{close_test_route, set_traffic};
use super::types::*;
use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase, ServiceState, State};

/// `event` arriving in `phase`, where it has nothing to decide: the reconciliations due, and
/// the note.
pub(super) fn stale_delivery(
    config: &ServiceConfig,
    service: &ServiceState,
    dep: &Deployment,
    event: &Event,
    phase: &Phase,
    effects: &mut Vec<Effect>,
) -> String {
    let mut note = format!("{} ignored in phase {}", event_name(event), phase.name());
    if let Event::Abort { reason } = event {
        note.push_str(&format!(" (the step failure was: {reason})"));
    }
    if own_step(event) {
        if put_traffic_back_after_a_stale_shift(config, dep, phase, effects) {
            note.push_str("; traffic back on the previous version re-applied");
        }
        terminate_a_launch_that_raced_the_clean_up(config, dep, phase, effects);
        if matches!(phase, Phase::Succeeded) {
            effects.extend(close_test_route(config, dep));
        }
        if write_the_report_again(dep, phase, effects) {
            note.push_str("; report written again (idempotent)");
        }
    }
    run_what_follows_the_end(service, dep, phase, effects);
    note
}

/// A step that finds its deployment aborting may just have moved traffic forward on what it
/// read before the abort: put traffic back again, so no stale listener change outlives it.
fn put_traffic_back_after_a_stale_shift(
    config: &ServiceConfig,
    dep: &Deployment,
    phase: &Phase,
    effects: &mut Vec<Effect>,
) -> bool {
    let stale = matches!(phase, Phase::Aborting { .. }) && dep.max_weight > 0 && dep.blue.is_some();
    if stale {
        effects.push(set_traffic(config, dep, 0));
    }
    stale
}

/// An aborted deployment runs no instance and has no test route: a launch whose RunInstances
/// (or test route) landed after the clean-up looked is undone by the next step of its
/// execution.
fn terminate_a_launch_that_raced_the_clean_up(
    config: &ServiceConfig,
    dep: &Deployment,
    phase: &Phase,
    effects: &mut Vec<Effect>,
) {
    if matches!(phase, Phase::Aborted { .. }) {
        if !dep.green_instances.is_empty() {
            effects.extend(close_test_route(config, dep));
        }
        effects.push(Effect::TerminateInstances {
            service: dep.service.clone(),
            instance_ids: dep.green_instances.clone(),
            deploy_id: Some(dep.deploy_id.clone()),
            green: true,
        });
    }
}

/// A finished deployment's report may never have been written (a crash between the final
/// commit and WriteReport): write it again, an idempotent overwrite from the ledger.
fn write_the_report_again(dep: &Deployment, phase: &Phase, effects: &mut Vec<Effect>) -> bool {
    if phase.is_terminal() {
        effects.push(Effect::WriteReport {
            service: dep.service.clone(),
            deploy_id: dep.deploy_id.clone(),
        });
    }
    phase.is_terminal()
}

/// A finished deployment's successor may never have started (a crash right after the finish
/// was committed, or after its successor was created and before its StartExecution): start
/// the queued image, or make sure the successor's execution runs.
fn run_what_follows_the_end(service: &ServiceState, dep: &Deployment, phase: &Phase, effects: &mut Vec<Effect>) {
    if !phase.is_terminal() {
        return;
    }
    match (&service.active, &service.queued) {
        (None, Some(request)) => effects.push(Effect::StartQueued {
            request: request.clone(),
        }),
        (Some(successor), _) if *successor != dep.deploy_id => effects.push(Effect::EnsureExecution {
            service: dep.service.clone(),
            deploy_id: successor.clone(),
        }),
        _ => {}
    }
}

/// A rollback trigger that finds its deployment still launching may be the redelivery of the
/// trigger that started it, whose first delivery crashed between the commit and
/// StartExecution: make sure the execution runs (StartExecution of an existing execution's
/// name is a no-op).
pub(super) fn run_a_launching_rollback(next: &State, event: &Event, effects: &mut Vec<Effect>) {
    let Some(dep) = next.deployment.as_ref().filter(|d| d.phase == Phase::Launching) else {
        return;
    };
    let started = effects.iter().any(|e| matches!(e, Effect::StartExecution { .. }));
    if matches!(event, Event::Revert { .. }) && !started {
        effects.push(Effect::StartExecution {
            service: dep.service.clone(),
            deploy_id: dep.deploy_id.clone(),
            execution: dep.deploy_id.clone(),
        });
    }
}
