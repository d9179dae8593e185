//! The fleet audit of one service, run by reconcile-services after its stuck-work check: it
//! observes (read-only, bounded: the switch point when the ledger says what it must be, the
//! targets of both groups, the instances tagged as the service's and those registered), lets
//! the core judge ([`greenlight_core::audit::audit`]), records the findings on the pointers
//! when they change or a repair is due (conditional on the generation read before
//! observing: a deployment that started meanwhile makes the whole audit run again, via
//! [`crate::engine::with_conflict_retries`]), logs each finding and counts them (EMF), then
//! applies the repairs the policy allows, each idempotent: one ModifyListener/ModifyRule,
//! DeregisterTargets per group, TerminateInstances of tagged orphans only; and closes test
//! routes whose deployment went live or ended (DeleteRule).
//!
//! A crash anywhere is mended by the next run (or the same one redelivered): it observes
//! again and finds what is left.

use crate::StepError;
use greenlight_adapters::{tags, Instance, InstanceState, Ports};
use greenlight_core::audit::{
    audit, event_lines, record, switch_expected, Audit, Observed, Repair, SeenInstance, MAX_INSTANCES_PER_SERVICE,
};
use greenlight_core::finding::FindingKind;
use greenlight_core::model::{PhaseName, State};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// What the audit of one service found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FleetOutcome {
    pub service: String,
    /// One sentence per finding (what, where, why, and what was done).
    pub findings: Vec<String>,
    /// Repairs applied (calls made).
    pub repairs: usize,
}

/// Audits `service`'s fleet against the ledger; None when it is not registered.
pub async fn audit_fleet(ports: &Ports, service: &str) -> Result<Option<FleetOutcome>, StepError> {
    let Some(state) = ports.ledger.load_active(service).await? else {
        return Ok(None);
    };
    let observed = observe(ports, &state).await?;
    let audit = audit(&state.config, &state.service, state.deployment.as_ref(), &observed);
    // Ledger first: the findings (and the repair about to be made) are recorded on the
    // pointers read before observing; a conflict re-runs the whole audit.
    if let Some(pointers) = record(&state.service, &audit, observed.now) {
        let after = State {
            service: pointers,
            ..state.clone()
        };
        ports.ledger.commit(&state, &after).await?;
    }
    for line in event_lines(service, &audit, ports.clock.now_ms()) {
        ports.metrics.emit(&line);
    }
    for finding in &audit.findings {
        warn!(service, kind = %finding.kind(), finding = %finding, "the fleet is not what the ledger says");
    }
    if audit.findings.is_empty() && switch_expected(&state.service).is_none() && state.service.active.is_some() {
        info!(
            service,
            "drift not judged: the deployment in flight owns the switch point"
        );
    }
    let mut repairs = apply(ports, &state, &audit).await?;
    repairs += close_stale_test_routes(ports, &state).await?;
    Ok(Some(FleetOutcome {
        service: service.to_string(),
        findings: audit.findings.iter().map(|f| f.to_string()).collect(),
        repairs,
    }))
}

/// What the audit needs, read-only: at most 2 target-health reads, 1 read per switch point, 1 page or
/// more of tagged instances and 1 describe per 200 registered instances not tagged as ours.
async fn observe(ports: &Ports, state: &State) -> Result<Observed, StepError> {
    let config = &state.config;
    let switch = match switch_expected(&state.service) {
        Some(_) => {
            let mut points = Vec::new();
            for point in config.switch.points() {
                points.push((point.arn().to_string(), ports.lb.switch_point(point).await?));
            }
            Some(points)
        }
        None => None,
    };
    let mut targets = Vec::new();
    for tg in &config.target_groups {
        targets.push((tg.clone(), ports.lb.target_health(tg).await?));
    }
    let mut instances = ports
        .fleet
        .instances_of_service(&config.service, MAX_INSTANCES_PER_SERVICE)
        .await?;
    let known: BTreeSet<String> = instances.iter().map(|i| i.instance_id.clone()).collect();
    let registered: Vec<String> = targets
        .iter()
        .flat_map(|(_, t)| t.iter().map(|t| t.instance_id.clone()))
        .filter(|id| !known.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_INSTANCES_PER_SERVICE)
        .collect();
    if !registered.is_empty() {
        instances.extend(ports.fleet.describe(&registered).await?);
    }
    Ok(Observed {
        now: ports.clock.now(),
        switch,
        targets,
        instances: instances.iter().map(seen).collect(),
    })
}

fn seen(instance: &Instance) -> SeenInstance {
    let tag = |key: &str| instance.tags.get(key).cloned();
    SeenInstance {
        instance_id: instance.instance_id.clone(),
        image_id: instance.image_id.clone(),
        launched_at: instance.launched_at,
        managed: tag(tags::MANAGED_BY).as_deref() == Some(tags::MANAGED_BY_VALUE),
        service: tag(tags::SERVICE),
        deploy_id: tag(tags::DEPLOY_ID),
        gone: matches!(instance.state, InstanceState::ShuttingDown | InstanceState::Terminated),
    }
}

/// Applies the repairs, each idempotent; returns how many.
async fn apply(ports: &Ports, state: &State, audit: &Audit) -> Result<usize, StepError> {
    let config = &state.config;
    for repair in &audit.repairs {
        match repair {
            Repair::SetTraffic { point, weights } => {
                ports
                    .lb
                    .set_traffic(&point.switch, point.frame.as_ref(), weights)
                    .await?
            }
            Repair::Deregister {
                target_group,
                instance_ids,
            } => {
                ports
                    .lb
                    .deregister(target_group, instance_ids, config.launch.port)
                    .await?
            }
            Repair::Terminate { instance_ids } => {
                let refused = ports.fleet.terminate(&config.service, instance_ids).await?;
                if !refused.is_empty() {
                    warn!(service = %config.service, ?refused, "not terminated: not tagged as this service's");
                }
            }
        }
    }
    if !audit.repairs.is_empty() {
        info!(
            service = %config.service,
            drift = audit.count(FindingKind::Drift),
            strangers = audit.count(FindingKind::Stranger),
            orphans = audit.count(FindingKind::Orphan),
            repairs = audit.repairs.len(),
            "the fleet was made what the ledger says"
        );
    }
    Ok(audit.repairs.len())
}

/// Test routes left behind on the first switch point's listener (a stale delivery's route
/// opened after its deployment closed it): closed when their deployment is no longer the
/// one in flight and has gone live or ended (its record says so: a deployment started
/// after the pointers were read is still launching or verifying, and keeps its route).
/// How many were closed.
async fn close_stale_test_routes(ports: &Ports, state: &State) -> Result<usize, StepError> {
    let Some(listener) = state.config.switch.first() else {
        return Ok(0);
    };
    let mut closed = 0;
    for (rule, deploy_id) in ports.lb.test_routes(&listener.listener_arn).await? {
        if state.service.active.as_deref() == Some(deploy_id.as_str()) {
            continue;
        }
        let done = match ports.ledger.load(&state.config.service, Some(&deploy_id)).await? {
            Some(State {
                deployment: Some(dep), ..
            }) => matches!(
                dep.phase.kind(),
                PhaseName::Baking | PhaseName::Retiring | PhaseName::Succeeded | PhaseName::Aborted
            ),
            // No such deployment of this service: not greenlight's route for it to judge.
            _ => false,
        };
        if done {
            ports.lb.close_test_route(&listener.listener_arn, &deploy_id).await?;
            info!(service = %state.config.service, %rule, %deploy_id, "closed a test route its deployment left behind");
            closed += 1;
        }
    }
    Ok(closed)
}
