//! A finished deployment's JSON report (written to the artifact store): the deployment
//! record with its timeline, plus the derived durations, and every decision an engineer or
//! greenlight made on the way: the rollback (who, why, time-to-revert), a promotion, the
//! approval pauses and how each ended (who approved, why), the holds (what failed, who ended
//! each and how), and canary analysis's evaluations with their numbers.

use greenlight_core::model::Deployment;
use serde_json::json;

/// Renders the report of `dep`.
pub fn render(dep: &Deployment) -> Vec<u8> {
    let report = json!({
        "deploy_id": dep.deploy_id,
        "service": dep.service,
        "version": dep.version,
        "ami": dep.ami,
        "outcome": dep.phase.name(),
        "phase": dep.phase,
        "from_version": dep.blue.as_ref().map(|b| b.version.clone()),
        "requested_by": dep.requested_by,
        "source": dep.source,
        "reason": dep.reason,
        "started_at": dep.created_at,
        "finished_at": dep.updated_at,
        "duration_s": dep.updated_at.saturating_sub(dep.created_at),
        "time_to_healthy_s": dep.healthy_at.map(|t| t.saturating_sub(dep.created_at)),
        "green_instances": dep.green_instances,
        "revert": dep.revert,
        "time_to_revert_ms": dep.revert.as_ref().and_then(|r| r.time_to_revert_ms()),
        "promoted_by": dep.promoted_by,
        "on_failure": dep.on_failure.as_str(),
        "pauses": dep.pauses,
        "holds": dep.holds,
        "analysis": dep.analysis,
        "timeline": dep.timeline,
    });
    serde_json::to_vec_pretty(&report).unwrap_or_default()
}
