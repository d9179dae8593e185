//! The step loop shared by every handler: decide → commit (ledger first) → apply effects →
//! decide their follow-ups. Effects are applied only after the state that requires them is
//! committed, so a crash between the two is healed by the next delivery re-applying them.
//! Each committed milestone (green healthy, traffic back, deployment ended) is emitted once
//! as an Embedded Metric Format line.

use crate::report;
use crate::StepError;
use greenlight_adapters::{AdapterError, LaunchRequest, Ports};
use greenlight_core::decide::{decide, event_name, Effect, Event, ImageRequest};
use greenlight_core::metrics;
use greenlight_core::model::State;
use greenlight_core::plan::{route, StepOutput};
use std::collections::VecDeque;
use tracing::{info, warn};

/// How many times a handler re-reads and decides again after losing a conditional write.
pub const CONFLICT_RETRIES: u32 = 5;

/// Decides `event` on `state` and everything that follows from it. Returns the final
/// (committed) state and the notes of each decision.
pub async fn drive(ports: &Ports, mut state: State, event: Event) -> Result<(State, Vec<String>), StepError> {
    let mut queue = VecDeque::from([event]);
    let mut notes = Vec::new();
    while let Some(event) = queue.pop_front() {
        let now = ports.clock.now();
        let decision = decide(&state, &event, now)?;
        info!(event = event_name(&event), note = %decision.note, "decided");
        notes.push(decision.note);
        state = if decision.state != state {
            let committed = ports.ledger.commit(&state, &decision.state).await?;
            if let Some(dep) = &committed.deployment {
                for line in metrics::milestones(state.deployment.as_ref(), dep, ports.clock.now_ms()) {
                    ports.metrics.emit(&line);
                }
            }
            committed
        } else {
            decision.state
        };
        for effect in &decision.effects {
            if let Some(follow_up) = apply(ports, &state, effect).await? {
                queue.push_back(follow_up);
            }
        }
    }
    Ok((state, notes))
}

/// Runs `attempt` (read → observe → drive) again while it loses conditional writes.
pub async fn with_conflict_retries<T, F, Fut>(mut attempt: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(StepError::Adapter(AdapterError::Conflict(why))) if tries + 1 < CONFLICT_RETRIES => {
                tries += 1;
                warn!(%why, tries, "ledger changed underneath; re-reading and deciding again");
            }
            other => return other,
        }
    }
}

/// The output a step returns to the orchestrator, routed from the committed state.
pub fn output(ports: &Ports, state: &State, notes: &[String]) -> Result<StepOutput, StepError> {
    let dep = state
        .deployment
        .as_ref()
        .ok_or_else(|| StepError::Rejected("no deployment in state".into()))?;
    let route = route(&state.config, dep, ports.clock.now());
    Ok(StepOutput::new(dep, route, notes.join("; ")))
}

/// Applies one effect; some report back with a follow-up event.
async fn apply(ports: &Ports, state: &State, effect: &Effect) -> Result<Option<Event>, StepError> {
    info!(effect = ?EffectName(effect), "applying");
    match effect {
        Effect::StartExecution { execution, .. } => {
            let out = output(ports, state, &[])?;
            let input = serde_json::to_value(&out).map_err(|e| StepError::Rejected(e.to_string()))?;
            ports.orchestrator.start(execution, &input).await?;
            Ok(None)
        }
        Effect::LaunchGreen {
            service,
            deploy_id,
            version,
            ami,
            client_token,
            launch,
        } => {
            let ids = ports
                .fleet
                .launch(&LaunchRequest {
                    service: service.clone(),
                    deploy_id: deploy_id.clone(),
                    version: version.clone(),
                    ami: ami.clone(),
                    client_token: client_token.clone(),
                    launch: launch.clone(),
                })
                .await?;
            Ok(Some(Event::GreenLaunched { instance_ids: ids }))
        }
        Effect::RegisterTargets {
            target_group,
            instance_ids,
            port,
        } => {
            ports.lb.register(target_group, instance_ids, *port).await?;
            Ok(None)
        }
        Effect::DeregisterTargets {
            target_group,
            instance_ids,
            port,
        } => {
            ports.lb.deregister(target_group, instance_ids, *port).await?;
            Ok(None)
        }
        Effect::SetTraffic {
            switch,
            blue_tg,
            green_tg,
            green_weight,
        } => {
            let mut weights = vec![(green_tg.clone(), *green_weight)];
            if let Some(blue) = blue_tg {
                weights.insert(0, (blue.clone(), 100 - green_weight));
            }
            ports.lb.set_traffic(switch, &weights).await?;
            Ok(Some(Event::TrafficApplied {
                weight: *green_weight,
                at_ms: ports.clock.now_ms(),
            }))
        }
        Effect::TerminateInstances {
            service,
            instance_ids,
            deploy_id,
            green,
        } => {
            let mut ids = instance_ids.clone();
            if let Some(deploy_id) = deploy_id {
                // Anything launched for this deployment, recorded or not: no orphans.
                for instance in ports.fleet.instances_of(deploy_id).await? {
                    if !ids.contains(&instance.instance_id) {
                        ids.push(instance.instance_id);
                    }
                }
            }
            let refused = ports.fleet.terminate(service, &ids).await?;
            if !refused.is_empty() {
                warn!(
                    ?refused,
                    "not terminated: not tagged managed-by=greenlight for this service"
                );
            }
            Ok(Some(if *green {
                Event::GreenTerminated
            } else {
                Event::BlueTerminated
            }))
        }
        Effect::SupersedeDeployment {
            service,
            deploy_id,
            reason,
            resume,
        } => {
            let event = Event::Supersede {
                reason: reason.clone(),
                resume: *resume,
            };
            Box::pin(with_conflict_retries(|| async {
                match ports.ledger.load(service, Some(deploy_id)).await? {
                    Some(other) if other.deployment.is_some() => drive(ports, other, event.clone()).await.map(|_| ()),
                    _ => {
                        warn!(%deploy_id, "superseded deployment is not in the ledger");
                        Ok(())
                    }
                }
            }))
            .await?;
            Ok(None)
        }
        Effect::StartQueued { request } => {
            match Box::pin(crate::start::start_request(ports, request.clone())).await {
                Ok(outcome) => info!(?outcome, "queued deployment started"),
                // The step that freed the service has done its work; a queued image that is no
                // longer acceptable (e.g. now older than live) is dropped with the reason.
                Err(e @ (StepError::Refused(_) | StepError::Rejected(_))) => {
                    warn!(version = %request.version, why = %e, "queued deployment refused; dropped from the queue");
                    Box::pin(drop_queued(ports, request)).await?;
                }
                Err(e) => return Err(e),
            }
            Ok(None)
        }
        Effect::EnsureExecution { service, deploy_id } => {
            let successor = ports.ledger.load(service, Some(deploy_id)).await?;
            if let Some(successor) = successor.filter(|s| {
                s.deployment
                    .as_ref()
                    .is_some_and(|d| d.phase == greenlight_core::model::Phase::Launching)
            }) {
                let out = output(ports, &successor, &[])?;
                let input = serde_json::to_value(&out).map_err(|e| StepError::Rejected(e.to_string()))?;
                ports.orchestrator.start(deploy_id, &input).await?;
            }
            Ok(None)
        }
        Effect::WriteReport { service, deploy_id } => {
            if let Some(dep) = state.deployment.as_ref().filter(|d| &d.deploy_id == deploy_id) {
                let body = report::render(dep);
                let key = ports.store.put_report(service, deploy_id, &body).await?;
                info!(%key, "report written");
            }
            Ok(None)
        }
    }
}

/// Takes a refused queued request off the service's pointers (conditionally: unless
/// something else queued in the meantime), so that it neither lingers nor blocks later images.
/// (Found by the simulator, seed 11: an image queued behind a deployment was refused when
/// that deployment ended, an alarm being in ALARM, and stayed queued for ever.)
async fn drop_queued(ports: &Ports, request: &ImageRequest) -> Result<(), StepError> {
    with_conflict_retries(|| async {
        let Some(state) = ports.ledger.load(&request.service, None).await? else {
            return Ok(());
        };
        if state.service.queued.as_ref() != Some(request) {
            return Ok(());
        }
        let mut next = state.clone();
        next.service.queued = None;
        ports.ledger.commit(&state, &next).await?;
        Ok(())
    })
    .await
}

/// Effect names for log lines (without the payload).
struct EffectName<'a>(&'a Effect);

impl std::fmt::Debug for EffectName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::to_value(self.0).unwrap_or_default();
        f.write_str(value["effect"].as_str().unwrap_or("effect"))
    }
}
