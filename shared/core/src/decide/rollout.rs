//! Moving forward: health observations into gates, green attached and weighted at the
//! switch point, and the lease the deployment in flight renews as it makes progress.

use super::finish::enter_aborting;
use super::types::*;
use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase, ServiceState};
use crate::request::{HealthReport, TargetHealth, TargetState};
use crate::Epoch;

/// The deployment holding the service renews its lease as it makes progress: the lease
/// covers the wait before its next step plus `lease_s`, and is written only when it would
/// otherwise run short (so most steps write nothing extra).
pub(super) fn renew_lease(service: &mut ServiceState, config: &ServiceConfig, dep: &Deployment, now: Epoch) {
    if service.active.as_deref() != Some(dep.deploy_id.as_str()) || dep.phase.is_terminal() {
        return;
    }
    let wait = crate::plan::route(config, dep, now).wait_s;
    let short = now + wait + config.lease_s / 2;
    if service.lease_until.is_none_or(|t| t < short) {
        service.lease_until = Some(now + wait + config.lease_s);
    }
}

/// check-health's transition out of `Verifying`.
/// A failed gate aborts, or holds (`on_failure: hold`).
pub(super) fn observe_health(
    service: &mut ServiceState,
    dep: &mut Deployment,
    config: &ServiceConfig,
    report: &HealthReport,
    (weight, polls): (u8, u32),
    now: Epoch,
    effects: &mut Vec<Effect>,
) -> String {
    let mut abort = |dep: &mut Deployment, reason: String| {
        if super::hold::holds_on_failure(dep) {
            let note = super::hold::hold(service, dep, crate::model::HoldCause::Gate, reason.clone(), now);
            return format!("health gate failed: {reason}; {note}");
        }
        let note = format!("health gate failed: {reason}");
        enter_aborting(dep, config, reason, now);
        note
    };
    let state_of = |id: &String| {
        report
            .targets
            .iter()
            .find(|t| &t.instance_id == id)
            .cloned()
            .unwrap_or(TargetHealth {
                instance_id: id.clone(),
                state: TargetState::Missing,
                reason: None,
            })
    };
    let targets: Vec<TargetHealth> = dep.green_instances.iter().map(state_of).collect();
    if let Some(bad) = targets
        .iter()
        .find(|t| matches!(t.state, TargetState::Unhealthy | TargetState::Unused))
    {
        let why = bad.reason.clone().unwrap_or_else(|| "no reason given".into());
        return abort(
            dep,
            format!(
                "target {} is {} at {weight}% ({why})",
                bad.instance_id,
                bad.state.as_str()
            ),
        );
    }
    let missing: Vec<String> = targets
        .iter()
        .filter(|t| t.state == TargetState::Missing)
        .map(|t| t.instance_id.clone())
        .collect();
    if !missing.is_empty() {
        effects.push(Effect::RegisterTargets {
            target_group: dep.green_tg.clone(),
            instance_ids: missing,
            port: config.launch.port,
        });
    }
    if report.all_healthy(&dep.green_instances) {
        if let Some(failed) = report.smoke.iter().find(|s| !s.passed) {
            return abort(
                dep,
                format!(
                    "smoke test failed on {} at {weight}%: {}",
                    failed.instance_id, failed.detail
                ),
            );
        }
        let smoked = dep
            .green_instances
            .iter()
            .all(|id| report.smoke.iter().any(|s| &s.instance_id == id && s.passed));
        if smoked {
            dep.healthy_at.get_or_insert(now);
            dep.enter(
                Phase::Verified { weight },
                now,
                format!("green healthy and smoke test passed at {weight}%"),
            );
            return format!("green verified at {weight}%");
        }
    }
    let polls = polls + 1;
    if polls >= config.health.max_polls {
        let waiting: Vec<String> = targets
            .iter()
            .filter(|t| t.state != TargetState::Healthy)
            .map(|t| format!("{} {}", t.instance_id, t.state.as_str()))
            .collect();
        return abort(
            dep,
            format!(
                "green not healthy after {polls} polls ({}s): {}",
                polls as u64 * config.health.poll_interval_s,
                if waiting.is_empty() {
                    "smoke test not run".into()
                } else {
                    waiting.join(", ")
                }
            ),
        );
    }
    dep.phase = Phase::Verifying { weight, polls };
    dep.updated_at = now;
    format!("green not healthy yet (poll {polls}/{})", config.health.max_polls)
}
