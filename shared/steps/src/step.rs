//! The pipeline steps after start-deployment: each reads the deployment, observes what it
//! needs (read-only), and drives the state machine with one event.

use crate::engine::{drive, output, with_conflict_retries};
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::config::SmokeCheck;
use greenlight_core::decide::{Event, HealthReport, SmokeResult, TargetState};
use greenlight_core::ids::{check_service, DeployId};
use greenlight_core::model::{Phase, State};
use greenlight_core::plan::{Step, StepInput, StepOutput};
use greenlight_core::request::LaunchObservation;
use greenlight_core::switch::TEST_ROUTE_HEADER;
use std::time::Duration;
use tracing::{info, info_span, Instrument};

/// Runs `step` for the deployment named in `input`. Safe to run any number of times: a step
/// that has nothing to do in the deployment's phase changes nothing and routes onward.
pub async fn run_step(ports: &Ports, step: Step, input: &StepInput) -> Result<StepOutput, StepError> {
    check_service(&input.service).map_err(|e| StepError::Rejected(e.to_string()))?;
    DeployId::parse(&input.deploy_id).map_err(|e| StepError::Rejected(e.to_string()))?;
    let span = info_span!("step", step = step.name(), service = %input.service, deploy_id = %input.deploy_id);
    async {
        let out = with_conflict_retries(|| async {
            let state = load(ports, input).await?;
            let event = observe(ports, step, &state, input).await?;
            let (state, notes) = drive(ports, state, event).await?;
            output(ports, &state, &notes)
        })
        .await?;
        info!(phase = %out.phase, next = %out.next, wait_s = out.wait_s, note = %out.note, "step done");
        Ok(out)
    }
    .instrument(span)
    .await
}

async fn load(ports: &Ports, input: &StepInput) -> Result<State, StepError> {
    let state = ports
        .ledger
        .load(&input.service, Some(&input.deploy_id))
        .await?
        .ok_or_else(|| StepError::Rejected(format!("service {} is not registered", input.service)))?;
    if state.deployment.is_none() {
        return Err(StepError::Rejected(format!(
            "deployment {} of {} is not in the ledger",
            input.deploy_id, input.service
        )));
    }
    Ok(state)
}

/// The step's event, with what it observed of the world.
async fn observe(ports: &Ports, step: Step, state: &State, input: &StepInput) -> Result<Event, StepError> {
    let dep = state.deployment.as_ref().expect("load checked the deployment");
    if let Some(answered) = call_hook(ports, step, state).await? {
        // A lifecycle hook holds the point this step moves the deployment out of.
        return Ok(answered);
    }
    Ok(match step {
        Step::StartDeployment => {
            return Err(StepError::Rejected(
                "start-deployment takes an image event, not a step input".into(),
            ))
        }
        Step::LaunchGreen => Event::LaunchDue {
            seen: match dep.phase {
                Phase::Launching => observe_launch(ports, state).await?,
                _ => LaunchObservation::default(),
            },
        },
        Step::CheckHealth => Event::HealthObserved {
            report: match dep.phase {
                Phase::Verifying { .. } => observe_health(ports, state).await?,
                _ => HealthReport::default(),
            },
        },
        Step::ShiftTraffic => {
            let green_unready = match dep.phase {
                Phase::Verified { weight } if weight < 100 => green_unready(ports, state).await?,
                _ => None,
            };
            // An unhealthy green goes back to its health gate whatever its metrics say.
            let analysis = match green_unready {
                None => crate::analysis::observe_analysis(ports, state).await,
                Some(_) => None,
            };
            Event::ShiftDue {
                green_unready,
                analysis,
            }
        }
        Step::Finalize => Event::FinalizeDue,
        Step::RetireBlue => {
            // Read from AWS, not from the registration: any listener or rule of the load
            // balancers blue's group is on (a second listener, one edited by hand).
            let blue_forwarded_by = match (&dep.phase, &dep.blue) {
                // Only once the window is over: before it, retire-blue only judges the bake.
                (Phase::Baking { until }, Some(blue)) if ports.clock.now() >= *until => {
                    ports.lb.forwarders(&blue.target_group).await?.into_iter().next()
                }
                _ => None,
            };
            Event::RetireDue {
                blue_forwarded_by,
                analysis: crate::analysis::observe_analysis(ports, state).await,
            }
        }
        Step::AbortDeployment => Event::Abort {
            reason: abort_reason(input),
        },
    })
}

/// Calls the lifecycle hook due now at the deployment's point, if `step` is the one that
/// calls it (`plan::hook_step`): its answer is the step's event. Only that step: another one
/// (abort-deployment after a failed step, say) must do its own work, not call a hook.
async fn call_hook(ports: &Ports, step: Step, state: &State) -> Result<Option<Event>, StepError> {
    let dep = state.deployment.as_ref().expect("load checked the deployment");
    let now = ports.clock.now();
    let Some((hook, call)) = greenlight_core::hooking::due(&state.config, dep, now) else {
        return Ok(None);
    };
    if greenlight_core::plan::hook_step(call.stage) != step {
        return Ok(None);
    }
    let payload = greenlight_core::hooking::payload(&state.config, dep, &call);
    let body = serde_json::to_vec(&payload).map_err(|e| StepError::Rejected(format!("hook payload: {e}")))?;
    let reply = ports.hooks.call(hook, &body).await?;
    let (status, reason) = greenlight_core::hook::read_answer(&reply);
    info!(
        hook = %call.hook,
        stage = call.stage.as_str(),
        weight = call.weight,
        call = call.number,
        target = %hook.describe(),
        status = status.as_str(),
        reason = %reason,
        "hook answered"
    );
    Ok(Some(Event::HookAnswered {
        observation: greenlight_core::hook::Observation { call, status, reason },
    }))
}

/// What launch-green reads before it first touches the switch points: every switch point's
/// actions (to keep its frame) and both target groups' deregistration delays.
async fn observe_launch(ports: &Ports, state: &State) -> Result<LaunchObservation, StepError> {
    let config = &state.config;
    let mut seen = LaunchObservation::default();
    for point in config.switch.points() {
        seen.points
            .push((point.arn().to_string(), ports.lb.switch_point(point).await?));
    }
    for tg in &config.target_groups {
        seen.drain_s
            .push((tg.clone(), ports.lb.deregistration_delay_s(tg).await?));
    }
    Ok(seen)
}

/// Why green is not fit for more traffic right before an increase (a target of it not
/// `healthy`), or None.
async fn green_unready(ports: &Ports, state: &State) -> Result<Option<String>, StepError> {
    let dep = state.deployment.as_ref().expect("checked");
    let targets = ports.lb.target_health(&dep.green_tg).await?;
    let report = HealthReport { targets, smoke: vec![] };
    if report.all_healthy(&dep.green_instances) {
        return Ok(None);
    }
    let why: Vec<String> = dep
        .green_instances
        .iter()
        .filter_map(|id| {
            let state = report.targets.iter().find(|t| &t.instance_id == id).map(|t| t.state);
            match state {
                Some(TargetState::Healthy) => None,
                other => Some(format!("{id} {}", other.map_or("not registered", TargetState::as_str))),
            }
        })
        .collect();
    Ok(Some(why.join(", ")))
}

/// Target health of green and, when every target is healthy, the smoke test of each
/// instance at its own private address (never a host taken from an event).
async fn observe_health(ports: &Ports, state: &State) -> Result<HealthReport, StepError> {
    let dep = state.deployment.as_ref().expect("checked");
    let targets = ports.lb.target_health(&dep.green_tg).await?;
    let mut report = HealthReport { targets, smoke: vec![] };
    if !report.all_healthy(&dep.green_instances) {
        return Ok(report);
    }
    let smoke = &state.config.health.smoke;
    let port = state.config.launch.port;
    let timeout = Duration::from_millis(smoke.timeout_ms);
    for instance in ports.fleet.describe(&dep.green_instances).await? {
        let (passed, detail) = match &instance.private_ip {
            None => (false, "instance has no private address".into()),
            Some(ip) => {
                smoke_test(
                    ports,
                    &format!("http://{ip}:{port}{}", smoke.path),
                    None,
                    smoke,
                    timeout,
                )
                .await
            }
        };
        report.smoke.push(SmokeResult {
            instance_id: instance.instance_id.clone(),
            passed,
            detail,
        });
    }
    // The full user path: through the load balancer, on the deployment's test route (to
    // green only), once every instance passed on its own.
    if let Some(base) = &smoke.load_balancer_url {
        if report.smoke.iter().all(|s| s.passed) {
            let url = format!("{base}{}", smoke.path);
            let header = (TEST_ROUTE_HEADER, dep.deploy_id.as_str());
            let (passed, detail) = smoke_test(ports, &url, Some(header), smoke, timeout).await;
            report.smoke.push(SmokeResult {
                instance_id: format!(
                    "the load balancer's test route ({TEST_ROUTE_HEADER}: {})",
                    dep.deploy_id
                ),
                passed,
                detail,
            });
        }
    }
    Ok(report)
}

/// One smoke request and its verdict: passed, and what was seen.
async fn smoke_test(
    ports: &Ports,
    url: &str,
    header: Option<(&str, &str)>,
    smoke: &SmokeCheck,
    timeout: Duration,
) -> (bool, String) {
    match ports.prober.get(url, header, timeout).await {
        Ok((status, body)) => {
            let status_ok = status == smoke.expect_status;
            let body_ok = smoke.expect_body.as_ref().is_none_or(|want| body.contains(want));
            let shown: String = body.chars().take(80).collect();
            (
                status_ok && body_ok,
                format!(
                    "GET {url} -> {status} {shown:?} (expected {}{})",
                    smoke.expect_status,
                    smoke
                        .expect_body
                        .as_ref()
                        .map(|b| format!(" with body containing {b:?}"))
                        .unwrap_or_default()
                ),
            )
        }
        Err(why) => (false, format!("GET {url} failed: {why}")),
    }
}

/// Why abort-deployment runs: the error Step Functions caught, or an operator's request.
fn abort_reason(input: &StepInput) -> String {
    match &input.error {
        None => "aborted on request".into(),
        Some(error) => {
            let kind = error["Error"].as_str().unwrap_or("error");
            let cause = error["Cause"].as_str().unwrap_or("");
            let cause: String = cause.chars().take(300).collect();
            format!("step failed: {kind} {cause}").trim().to_string()
        }
    }
}
