//! One deployment's loop: decide → commit (ledger first) → apply the effects → decide their
//! follow-up events. Effects are applied only after the state that requires them is
//! committed, so a crash between the two is healed by the next delivery re-applying them.
//! Each committed milestone (green healthy, traffic back, deployment ended) is emitted once
//! as an Embedded Metric Format line.
//!
//! An effect on *another* deployment (supersede it, start the queued image) is not run here:
//! the run pauses and hands it back as [`Elsewhere`], and the engine's work stack
//! ([`crate::engine::drive`]) runs it before resuming this run, in the order a recursive call
//! would have (so a seed replays the same AWS calls), without this module calling back up.

use crate::report;
use crate::StepError;
use greenlight_adapters::{set_switch_points, verify_switch_points, LaunchRequest, Ports};
use greenlight_core::decide::{decide, event_name, Effect, Event, ImageRequest};
use greenlight_core::metrics;
use greenlight_core::model::State;
use greenlight_core::plan::{route, StepOutput};
use greenlight_core::switch::TEST_ROUTE_HEADER;
use std::collections::VecDeque;
use tracing::{info, warn};

/// Work on another deployment than the one being driven, handed back by an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// Decide `event` ([`Event::Supersede`]) on deployment `deploy_id` of `service`.
    Supersede {
        service: String,
        deploy_id: String,
        event: Event,
    },
    /// The service is free: start its queued image.
    StartQueued(ImageRequest),
}

/// A paused run of one deployment: its committed state, the events still to decide and the
/// effects of the last decision still to apply.
#[derive(Debug)]
pub struct Run {
    state: State,
    events: VecDeque<Event>,
    effects: VecDeque<Effect>,
    notes: Vec<String>,
}

/// What applying one effect produced.
enum Applied {
    Done,
    /// A follow-up event for this deployment.
    Then(Event),
    /// Work on another deployment, for the engine.
    Elsewhere(Elsewhere),
}

impl Run {
    /// A run that decides `event` on `state` first.
    pub fn new(state: State, event: Event) -> Run {
        Run {
            state,
            events: VecDeque::from([event]),
            effects: VecDeque::new(),
            notes: Vec::new(),
        }
    }

    /// Decides, commits and applies until this deployment has nothing left to do
    /// (`Ok(None)`) or an effect hands back work on another deployment (`Ok(Some(..))`:
    /// do it, then resume). An error ends the run: the effects not yet applied are the next
    /// delivery's.
    pub async fn resume(&mut self, ports: &Ports) -> Result<Option<Elsewhere>, StepError> {
        loop {
            if let Some(effect) = self.effects.pop_front() {
                match apply(ports, &self.state, &effect).await? {
                    Applied::Done => {}
                    Applied::Then(event) => self.events.push_back(event),
                    Applied::Elsewhere(work) => return Ok(Some(work)),
                }
                continue;
            }
            let Some(event) = self.events.pop_front() else {
                return Ok(None);
            };
            let now = ports.clock.now();
            let decision = decide(&self.state, &event, now)?;
            info!(event = event_name(&event), note = %decision.note, "decided");
            self.notes.push(decision.note);
            if decision.state != self.state {
                let committed = ports.ledger.commit(&self.state, &decision.state).await?;
                if let Some(dep) = &committed.deployment {
                    for line in metrics::milestones(self.state.deployment.as_ref(), dep, ports.clock.now_ms()) {
                        ports.metrics.emit(&line);
                    }
                }
                self.state = committed;
            } else {
                self.state = decision.state;
            }
            self.effects = decision.effects.into();
        }
    }

    /// The final (committed) state and the notes of each decision.
    pub fn finish(self) -> (State, Vec<String>) {
        (self.state, self.notes)
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

/// Applies one effect; some report back with a follow-up event, two hand back work on
/// another deployment.
async fn apply(ports: &Ports, state: &State, effect: &Effect) -> Result<Applied, StepError> {
    info!(effect = ?EffectName(effect), "applying");
    match effect {
        Effect::StartExecution { execution, .. } => {
            let out = output(ports, state, &[])?;
            let input = serde_json::to_value(&out).map_err(|e| StepError::Rejected(e.to_string()))?;
            ports.orchestrator.start(execution, &input).await?;
            Ok(Applied::Done)
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
            Ok(Applied::Then(Event::GreenLaunched { instance_ids: ids }))
        }
        Effect::RegisterTargets {
            target_group,
            instance_ids,
            port,
        } => {
            ports.lb.register(target_group, instance_ids, *port).await?;
            Ok(Applied::Done)
        }
        Effect::DeregisterTargets {
            target_group,
            instance_ids,
            port,
        } => {
            ports.lb.deregister(target_group, instance_ids, *port).await?;
            Ok(Applied::Done)
        }
        Effect::SetTraffic {
            points,
            blue_tg,
            green_tg,
            green_weight,
        } => {
            let mut weights = vec![(green_tg.clone(), *green_weight)];
            if let Some(blue) = blue_tg {
                weights.insert(0, (blue.clone(), 100 - green_weight));
            }
            set_switch_points(ports.lb.as_ref(), points, &weights).await?;
            // A verified flip: every point read back forwards what was written.
            verify_switch_points(ports.lb.as_ref(), points, &weights).await?;
            Ok(Applied::Then(Event::TrafficApplied {
                weight: *green_weight,
                at_ms: ports.clock.now_ms(),
            }))
        }
        Effect::OpenTestRoute {
            listener_arn,
            deploy_id,
            target_group,
        } => {
            let rule = ports.lb.open_test_route(listener_arn, deploy_id, target_group).await?;
            info!(%rule, header = TEST_ROUTE_HEADER, %deploy_id, "test route to green open");
            Ok(Applied::Done)
        }
        Effect::CloseTestRoute {
            listener_arn,
            deploy_id,
        } => {
            ports.lb.close_test_route(listener_arn, deploy_id).await?;
            Ok(Applied::Done)
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
            Ok(Applied::Then(if *green {
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
        } => Ok(Applied::Elsewhere(Elsewhere::Supersede {
            service: service.clone(),
            deploy_id: deploy_id.clone(),
            event: Event::Supersede {
                reason: reason.clone(),
                resume: *resume,
            },
        })),
        Effect::StartQueued { request } => Ok(Applied::Elsewhere(Elsewhere::StartQueued(request.clone()))),
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
            Ok(Applied::Done)
        }
        Effect::WriteReport { service, deploy_id } => {
            if let Some(dep) = state.deployment.as_ref().filter(|d| &d.deploy_id == deploy_id) {
                let body = report::render(dep);
                let key = ports.store.put_report(service, deploy_id, &body).await?;
                info!(%key, "report written");
            }
            Ok(Applied::Done)
        }
    }
}

/// Effect names for log lines (without the payload).
struct EffectName<'a>(&'a Effect);

impl std::fmt::Debug for EffectName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::to_value(self.0).unwrap_or_default();
        f.write_str(value["effect"].as_str().unwrap_or("effect"))
    }
}
