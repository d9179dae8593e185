//! The pipeline steps after start-deployment: each reads the deployment, observes what it
//! needs (read-only), and drives the state machine with one event.

use crate::engine::{drive, output, with_conflict_retries};
use crate::StepError;
use greenlight_adapters::Ports;
use greenlight_core::decide::{Event, HealthReport, SmokeResult};
use greenlight_core::ids::{check_service, DeployId};
use greenlight_core::model::{Phase, State};
use greenlight_core::plan::{Step, StepInput, StepOutput};
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
    Ok(match step {
        Step::StartDeployment => {
            return Err(StepError::Rejected(
                "start-deployment takes an image event, not a step input".into(),
            ))
        }
        Step::LaunchGreen => Event::LaunchDue,
        Step::CheckHealth => Event::HealthObserved {
            report: match dep.phase {
                Phase::Verifying { .. } => observe_health(ports, state).await?,
                _ => HealthReport::default(),
            },
        },
        Step::ShiftTraffic => Event::ShiftDue,
        Step::Finalize => Event::FinalizeDue,
        Step::RetireBlue => {
            let blue_serving = match (&dep.phase, &dep.blue) {
                (Phase::Baking { .. }, Some(blue)) => ports
                    .lb
                    .traffic(&state.config.switch)
                    .await?
                    .iter()
                    .any(|(tg, weight)| tg == &blue.target_group && *weight > 0),
                _ => false,
            };
            Event::RetireDue { blue_serving }
        }
        Step::AbortDeployment => Event::Abort {
            reason: abort_reason(input),
        },
    })
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
        let result = match &instance.private_ip {
            None => SmokeResult {
                instance_id: instance.instance_id.clone(),
                passed: false,
                detail: "instance has no private address".into(),
            },
            Some(ip) => {
                let url = format!("http://{ip}:{port}{}", smoke.path);
                let (passed, detail) = match ports.prober.get(&url, timeout).await {
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
                };
                SmokeResult {
                    instance_id: instance.instance_id.clone(),
                    passed,
                    detail,
                }
            }
        };
        report.smoke.push(result);
    }
    Ok(report)
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
