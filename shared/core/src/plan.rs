//! The step sequence, defined once: which step runs next, after how long, and what each
//! step may lead to. The local runner interprets it; the Step Functions definition in
//! `infra/statemachine.asl.json` is generated from it (a test keeps the two equal).
//!
//! Routing is derived from the ledger, never carried in the execution: after every step the
//! orchestrator asks [`route`] where the deployment stands, so a duplicate or late step can
//! never push a deployment backwards.

use crate::config::ServiceConfig;
use crate::model::{Deployment, Phase, PhaseName};
use crate::Epoch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One Lambda function of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    StartDeployment,
    LaunchGreen,
    CheckHealth,
    ShiftTraffic,
    Finalize,
    RetireBlue,
    AbortDeployment,
}

impl Step {
    /// Every step, in pipeline order.
    pub const ALL: [Step; 7] = [
        Step::StartDeployment,
        Step::LaunchGreen,
        Step::CheckHealth,
        Step::ShiftTraffic,
        Step::Finalize,
        Step::RetireBlue,
        Step::AbortDeployment,
    ];

    /// The function's name: its handler in the template (`Handler`, `_HANDLER`).
    pub fn name(self) -> &'static str {
        match self {
            Step::StartDeployment => "start-deployment",
            Step::LaunchGreen => "launch-green",
            Step::CheckHealth => "check-health",
            Step::ShiftTraffic => "shift-traffic",
            Step::Finalize => "finalize",
            Step::RetireBlue => "retire-blue",
            Step::AbortDeployment => "abort-deployment",
        }
    }

    /// Parses a function name.
    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The steps the orchestrator may run after this one (besides itself ending the
    /// execution or going to abort-deployment, which every step may do).
    ///
    /// Any step: executions of one deployment overlap (a follow-up execution for a promote,
    /// a resume after a lost lease or a rollback's clean-up runs alongside the original), so
    /// a step may find the deployment further along than the step before it left it. The
    /// route comes from the committed phase alone, so wherever it leads is where the
    /// deployment is. (Found by the simulator, seed 11: the original execution's check-health
    /// found its deployment retiring, promoted by a follow-up, and the route failed.)
    pub fn successors(self) -> &'static [Step] {
        // Every step but start-deployment, which only an event runs.
        &Step::ALL[1..]
    }

    /// True when `next` may follow this step.
    pub fn allows(self, next: Option<Step>) -> bool {
        next.is_none_or(|step| self.successors().contains(&step))
    }
}

/// The step that calls a lifecycle hook of `stage`: the one that moves the deployment out of
/// the stage's point.
pub fn hook_step(stage: crate::hook::Stage) -> Step {
    use crate::hook::Stage;
    match stage {
        Stage::GreenVerified | Stage::TrafficShifted => Step::ShiftTraffic,
        Stage::AllTraffic => Step::Finalize,
        Stage::BeforeRetire => Step::RetireBlue,
        Stage::AfterRevert => Step::AbortDeployment,
    }
}

/// Where a deployment goes next: a step after a wait, or the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub next: Option<Step>,
    pub wait_s: u64,
}

/// The next step for `deployment`, derived from its phase alone.
pub fn route(config: &ServiceConfig, deployment: &Deployment, now: Epoch) -> Route {
    let until = |t: Epoch| t.saturating_sub(now);
    // A lifecycle hook holding the deployment's point: its step calls it when due.
    let hook_at = crate::hooking::next_call_at(config, deployment, now);
    let (next, wait_s) = match &deployment.phase {
        // Held (`on_failure: hold`): nothing runs until an engineer promotes, rolls back or
        // aborts (each starts its own execution).
        _ if deployment.held().is_some() => (None, 0),
        Phase::Verified { weight: 100 } if hook_at.is_some() => (Some(Step::Finalize), hook_at.map_or(0, until)),
        Phase::Verified { .. } if hook_at.is_some() => (Some(Step::ShiftTraffic), hook_at.map_or(0, until)),
        Phase::Baking { .. } if hook_at.is_some() => (Some(Step::RetireBlue), hook_at.map_or(0, until)),
        Phase::Launching => (Some(Step::LaunchGreen), 0),
        Phase::Verifying { weight, polls } => {
            // A canary step's wait, unless the deployment was promoted past its canary steps.
            let wait = if *polls == 0 && *weight > 0 && deployment.promoted_by.is_none() {
                config.rollout.step_wait_s
            } else {
                config.health.poll_interval_s
            };
            (Some(Step::CheckHealth), wait)
        }
        Phase::Verified { weight: 100 } => (Some(Step::Finalize), 0),
        // An approval pause sleeps until its deadline: an approval starts a follow-up
        // execution that moves green at once.
        Phase::Verified { .. } if crate::pausing::waiting(config, deployment).is_some() => (
            Some(Step::ShiftTraffic),
            crate::pausing::waiting(config, deployment).map_or(0, |p| until(p.until)),
        ),
        // A canary step judged by analysis waits for its next evaluation (one metric period).
        Phase::Verified { .. } => (
            Some(Step::ShiftTraffic),
            crate::judging::analysis_due(config, deployment, now).map_or(0, until),
        ),
        Phase::Shifting { .. } => (Some(Step::ShiftTraffic), 0),
        // A late step that kept failing once due: greenlight stopped (the service needs
        // attention); nothing more runs until an engineer acts.
        Phase::Baking { .. } | Phase::Retiring { .. } if deployment.late_failures >= LATE_STEP_TRIES => (None, 0),
        // Never at once after a failure: abort-deployment moves `t` to the next try.
        // The bake window is judged by analysis until it ends: retire-blue evaluates it.
        Phase::Baking { until: t } => (
            Some(Step::RetireBlue),
            until(
                crate::judging::analysis_due(config, deployment, now)
                    .unwrap_or(*t)
                    .min(*t),
            ),
        ),
        Phase::Retiring { drain_until: t } => (Some(Step::RetireBlue), until(*t)),
        // Green is deregistered once no stale listener change can reach it (I26), then
        // drains until `drain_until`.
        Phase::Aborting { drain_until, .. } => {
            let fence = crate::fence::green_deregistrable_at(config, deployment).unwrap_or(0);
            let at = if now < fence { fence } else { *drain_until };
            // An `after_revert` hook is called when due; green waits for its decision.
            let at = match hook_at {
                Some(hook) if at > now => at.min(hook),
                Some(hook) => hook,
                None => at,
            };
            (Some(Step::AbortDeployment), until(at))
        }
        Phase::Succeeded | Phase::Aborted { .. } => (None, 0),
    };
    Route { next, wait_s }
}

/// How many times in a row a late step (retire-blue, once due) may fail while green is live
/// before greenlight stops and marks the service as needing attention. Each failure goes to
/// abort-deployment, which cannot abort any more ("too late to abort") and routes back to
/// the step after [`late_step_wait`], never at once: a step that fails the same way at the
/// same instant starves whatever could make it pass (e.g. retire-blue finding blue still
/// serving, put back by an alarm's rollback that crashed before recording it: only the
/// alarm's Lambda retry, a minute later, completes that rollback).
///
/// With the waits below, the last try comes about 18 minutes after the first failure: past
/// Lambda's async retries of the alarm (1 and 2 minutes) and past [`STALE_CLAIM_MS`], so an
/// alarm's claim that never completes (its event dead-lettered) no longer holds the revert
/// plan when the service is marked as needing attention (which removes the plan).
///
/// [`STALE_CLAIM_MS`]: crate::model::STALE_CLAIM_MS
pub const LATE_STEP_TRIES: u32 = 8;

/// How many times the scheduled reconcile (`reconcile-services`) resumes a deployment whose
/// lease expired in one phase, each time in a new execution `<deploy id>-resume-<gen>` that
/// runs its remaining steps from the ledger's phase (I22, I23). A deployment that still makes
/// no progress after that is aborted if green has not gone live (its abort's own clean-up
/// execution is one more), else greenlight stops and the service needs attention: the same
/// end as a late step that keeps failing. Three tries outlast a lost StartExecution, a
/// dead-lettered trigger and an execution stopped by hand; a deployment that needs more has
/// a cause an engineer must see.
pub const MAX_RESUMES: u32 = 3;

/// How often EventBridge runs `reconcile-services` (the template's `ScheduleExpression`,
/// `rate(5 minutes)`): a stuck deployment is found at most this long after its lease expired.
pub const RECONCILE_INTERVAL_S: u64 = 300;

/// The wait before a late step is tried again after its `failures`-th failure in a row
/// (1-based): 15 s, doubling, at most 5 minutes.
pub fn late_step_wait(failures: u32) -> u64 {
    const FIRST_S: u64 = 15;
    const MAX_S: u64 = 300;
    FIRST_S
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_S)
}

/// Input of every step after start-deployment (also the Step Functions execution input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInput {
    pub service: String,
    pub deploy_id: String,
    /// The error that sent the execution to abort-deployment (Step Functions `Catch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// Output of every step: where the orchestrator goes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    pub service: String,
    pub deploy_id: String,
    /// The next step's name, or `end`.
    pub next: String,
    pub wait_s: u64,
    /// The deployment's phase after the step (for logs and progress).
    pub phase: PhaseName,
    /// What the step did, in words.
    pub note: String,
}

impl StepOutput {
    /// Builds the output from a route.
    pub fn new(deployment: &Deployment, route: Route, note: String) -> Self {
        StepOutput {
            service: deployment.service.clone(),
            deploy_id: deployment.deploy_id.clone(),
            next: route.next.map(Step::name).unwrap_or(END).to_string(),
            wait_s: route.wait_s,
            phase: deployment.phase.kind(),
            note,
        }
    }

    /// The next step, `None` at the end; an error for a name the plan does not know.
    pub fn next_step(&self) -> Result<Option<Step>, String> {
        if self.next == END {
            return Ok(None);
        }
        Step::from_name(&self.next)
            .map(Some)
            .ok_or_else(|| format!("unknown next step {:?}", self.next))
    }
}

/// The `next` value that ends an execution.
pub const END: &str = "end";

/// How a failed step is retried before the execution goes to abort-deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub interval_s: u64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
}

impl RetryPolicy {
    /// The longest wait before retry number `attempt` (0-based): `interval_s ×
    /// backoff_rate^attempt`. With `"JitterStrategy": "FULL"` the wait is uniform in
    /// `[0, backoff(attempt)]`.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        std::time::Duration::from_secs(self.interval_s).mul_f64(self.backoff_rate.powi(attempt as i32))
    }
}

/// The error type a step fails with when the same input may succeed later (throttling,
/// 5xx, connection errors, a lost conditional write). Only these, and the Lambda service's
/// own errors, are retried; anything else goes straight to abort-deployment.
pub const TRANSIENT_ERROR: &str = "greenlight.Transient";

/// The retry policy of every task but abort-deployment: a step that keeps failing sends the
/// deployment to abort-deployment soon.
pub const RETRY: RetryPolicy = RetryPolicy {
    interval_s: 1,
    max_attempts: 2,
    backoff_rate: 2.0,
};

/// abort-deployment's retry policy: it is the clean-up every other failure ends in, so it
/// keeps trying longer (about 8.5 minutes in all, with full jitter less) before the execution
/// fails. (Found by the simulator, seed 73: three crashes in a row of abort-deployment failed
/// the execution and left the deployment aborting, holding the service.)
pub const ABORT_RETRY: RetryPolicy = RetryPolicy {
    interval_s: 2,
    max_attempts: 8,
    backoff_rate: 2.0,
};

impl Step {
    /// The retry policy of this step's task.
    pub fn retry(self) -> RetryPolicy {
        match self {
            Step::AbortDeployment => ABORT_RETRY,
            _ => RETRY,
        }
    }
}

/// The Amazon States Language definition of the pipeline. `${<Pascal>FunctionArn}`
/// placeholders are filled by SAM `DefinitionSubstitutions`.
pub fn state_machine_definition() -> Value {
    let mut states = Map::new();
    let steps: Vec<Step> = Step::ALL.into_iter().filter(|s| *s != Step::StartDeployment).collect();
    // Executions start with start-deployment's output: route on `next` like any step.
    states.insert("Route start".into(), choice(Step::StartDeployment));
    for step in &steps {
        let mut task = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": format!("${{{}FunctionArn}}", pascal(step.name())),
                "Payload.$": "$"
            },
            "OutputPath": "$.Payload",
            "Retry": [{
                "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException",
                                 "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
                                 TRANSIENT_ERROR],
                "IntervalSeconds": step.retry().interval_s,
                "MaxAttempts": step.retry().max_attempts,
                "BackoffRate": step.retry().backoff_rate,
                "JitterStrategy": "FULL"
            }],
            "Next": format!("Route after {}", step.name())
        });
        task["Catch"] = if *step == Step::AbortDeployment {
            json!([{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Abort failed" }])
        } else {
            json!([{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Wait before abort-deployment" }])
        };
        states.insert(step.name().into(), task);
        states.insert(format!("Route after {}", step.name()), choice(*step));
        states.insert(
            format!("Wait before {}", step.name()),
            json!({ "Type": "Wait", "SecondsPath": "$.wait_s", "Next": step.name() }),
        );
    }
    states.insert("Done".into(), json!({ "Type": "Succeed" }));
    states.insert(
        "Unplanned route".into(),
        json!({ "Type": "Fail", "Error": "greenlight.UnplannedRoute",
                "Cause": "a step returned a next step the plan does not allow" }),
    );
    states.insert(
        "Abort failed".into(),
        json!({ "Type": "Fail", "Error": "greenlight.AbortFailed",
                "Cause": "abort-deployment failed after retries; the ledger says what is left to clean up" }),
    );
    json!({
        "Comment": "greenlight deployment pipeline. GENERATED from greenlight-core plan.rs by `cargo run -p greenlight-local -- asl`; do not edit.",
        "StartAt": "Route start",
        "States": Value::Object(states)
    })
}

fn choice(step: Step) -> Value {
    let mut choices: Vec<Value> = step
        .successors()
        .iter()
        .map(|next| {
            json!({ "Variable": "$.next", "StringEquals": next.name(),
                    "Next": format!("Wait before {}", next.name()) })
        })
        .collect();
    choices.push(json!({ "Variable": "$.next", "StringEquals": END, "Next": "Done" }));
    json!({ "Type": "Choice", "Choices": choices, "Default": "Unplanned route" })
}

fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_targets_an_existing_state() {
        let def = state_machine_definition();
        let states = def["States"].as_object().unwrap();
        for (name, state) in states {
            let mut targets: Vec<&str> = vec![];
            if let Some(next) = state["Next"].as_str() {
                targets.push(next);
            }
            for c in state["Choices"].as_array().into_iter().flatten() {
                targets.push(c["Next"].as_str().unwrap());
            }
            if let Some(d) = state["Default"].as_str() {
                targets.push(d);
            }
            for c in state["Catch"].as_array().into_iter().flatten() {
                targets.push(c["Next"].as_str().unwrap());
            }
            for t in targets {
                assert!(states.contains_key(t), "{name} -> {t} does not exist");
            }
        }
        assert!(states.contains_key(def["StartAt"].as_str().unwrap()));
    }

    /// Before the simulator found it, abort-deployment could not route to itself in the
    /// state machine (only in the local orchestrator), so an abort waiting for green to drain
    /// failed the execution with greenlight.UnplannedRoute.
    #[test]
    fn every_step_may_route_to_every_step_in_the_state_machine_too() {
        let def = state_machine_definition();
        for from in Step::ALL {
            let choice = if from == Step::StartDeployment {
                "Route start".to_string()
            } else {
                format!("Route after {}", from.name())
            };
            let targets: Vec<&str> = def["States"][&choice]["Choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["StringEquals"].as_str().unwrap())
                .collect();
            for to in Step::ALL.into_iter().filter(|s| *s != Step::StartDeployment) {
                assert!(from.allows(Some(to)), "{} -> {}", from.name(), to.name());
                assert!(targets.contains(&to.name()), "{choice} lacks {}", to.name());
            }
            assert!(targets.contains(&END));
        }
    }

    /// A late step that keeps failing is never tried again at once, each wait is bounded,
    /// and greenlight stops only once an alarm's claim of the revert plan is stale (I25).
    #[test]
    fn a_late_step_is_retried_after_growing_bounded_waits_until_an_alarm_claim_is_stale() {
        let waits: Vec<u64> = (1..LATE_STEP_TRIES).map(late_step_wait).collect();
        assert_eq!(waits, vec![15, 30, 60, 120, 240, 300, 300]);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        let total_ms = waits.iter().sum::<u64>() * 1000;
        assert!(total_ms > crate::model::STALE_CLAIM_MS, "{total_ms} ms");
        assert!(late_step_wait(0) > 0 && late_step_wait(u32::MAX) == 300);
    }

    #[test]
    fn step_names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_name(step.name()), Some(step));
        }
        assert_eq!(pascal("check-health"), "CheckHealth");
    }
}
