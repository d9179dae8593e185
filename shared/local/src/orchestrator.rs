//! The local stand-in for Step Functions: interprets the plan from greenlight-core
//! (`route`, `Step::successors`, `Step::retry`) exactly as the generated state machine does —
//! wait `wait_s`, run the step, retry a failed step (bounded, exponential backoff with full
//! jitter), send the execution to abort-deployment once retries are exhausted, stop on a
//! route the plan does not allow.
//! Executions are named by deployment id and started at most once, like StartExecution.

use async_trait::async_trait;
use greenlight_adapters::{AdapterResult, Orchestrator, Ports};
use greenlight_core::model::PhaseName;
use greenlight_core::plan::{Step, StepInput, StepOutput, END};
use greenlight_steps::run_step;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// One thing that happened in an execution, for progress display and tests.
#[derive(Debug, Clone)]
pub struct Progress {
    pub deploy_id: String,
    pub service: String,
    /// Seconds since the execution started.
    pub elapsed_s: f64,
    pub step: Step,
    /// The step's output, or the error it failed with.
    pub result: Result<StepOutput, String>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The plan reached `end`; the deployment's final phase.
    Done(PhaseName),
    /// The execution failed (abort-deployment failed, or an unplanned route).
    Failed(String),
}

/// The local orchestrator. Clone the `Arc` freely.
pub struct LocalOrchestrator {
    ports: OnceLock<Ports>,
    executions: Mutex<HashMap<String, watch::Receiver<Option<Ending>>>>,
    progress: broadcast::Sender<Progress>,
}

impl Default for LocalOrchestrator {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalOrchestrator {
    pub fn new() -> Self {
        LocalOrchestrator {
            ports: OnceLock::new(),
            executions: Mutex::new(HashMap::new()),
            progress: broadcast::channel(1024).0,
        }
    }

    /// Gives the orchestrator the ports its steps run with (they contain the orchestrator,
    /// so this happens after construction).
    pub fn attach(&self, ports: Ports) {
        let _ = self.ports.set(ports);
    }

    /// Progress of every execution from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The names of executions started so far.
    pub fn executions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.executions.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    /// Waits for execution `deploy_id` to end (None if it was never started).
    pub async fn wait(&self, deploy_id: &str) -> Option<Ending> {
        let mut rx = self.executions.lock().unwrap().get(deploy_id)?.clone();
        loop {
            if let Some(ending) = rx.borrow().clone() {
                return Some(ending);
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    }
}

#[async_trait]
impl Orchestrator for LocalOrchestrator {
    async fn start(&self, deploy_id: &str, input: &Value) -> AdapterResult<()> {
        let ports = self
            .ports
            .get()
            .cloned()
            .ok_or_else(|| greenlight_adapters::AdapterError::Invalid("orchestrator not attached".into()))?;
        let first: StepOutput = serde_json::from_value(input.clone())
            .map_err(|e| greenlight_adapters::AdapterError::Invalid(format!("execution input: {e}")))?;
        let (tx, rx) = watch::channel(None);
        {
            let mut executions = self.executions.lock().unwrap();
            if executions.contains_key(deploy_id) {
                return Ok(()); // Like StartExecution with the same name: already started.
            }
            executions.insert(deploy_id.to_string(), rx);
        }
        let progress = self.progress.clone();
        tokio::spawn(async move {
            let ending = execute(&ports, first, &progress).await;
            let _ = tx.send(Some(ending));
        });
        Ok(())
    }
}

/// Runs one execution to its end.
async fn execute(ports: &Ports, first: StepOutput, progress: &broadcast::Sender<Progress>) -> Ending {
    let started = Instant::now();
    let mut current = first;
    let mut previous = Step::StartDeployment;
    let mut error: Option<Value> = None;
    loop {
        let next = match current.next_step() {
            Ok(next) => next,
            Err(why) => return Ending::Failed(why),
        };
        if !previous.allows(next) {
            return Ending::Failed(format!(
                "unplanned route: {} -> {} (greenlight.UnplannedRoute)",
                previous.name(),
                current.next
            ));
        }
        let Some(step) = next else {
            return Ending::Done(current.phase);
        };
        tokio::time::sleep(Duration::from_secs(current.wait_s)).await;
        let input = StepInput {
            service: current.service.clone(),
            deploy_id: current.deploy_id.clone(),
            error: error.take(),
        };
        let result = run_with_retries(ports, step, &input).await;
        let _ = progress.send(Progress {
            deploy_id: input.deploy_id.clone(),
            service: input.service.clone(),
            elapsed_s: started.elapsed().as_secs_f64(),
            step,
            result: result.clone(),
        });
        match result {
            Ok(out) => current = out,
            Err(why) if step == Step::AbortDeployment => {
                return Ending::Failed(format!("abort-deployment failed (greenlight.AbortFailed): {why}"))
            }
            Err(why) => {
                // Step Functions `Catch` → abort-deployment with the error in `$.error`.
                error = Some(json!({ "Error": "StepFailed", "Cause": format!("{}: {why}", step.name()) }));
                current = StepOutput {
                    next: Step::AbortDeployment.name().into(),
                    wait_s: 0,
                    ..current
                };
            }
        }
        previous = step;
        debug_assert!(current.next == END || Step::from_name(&current.next).is_some());
    }
}

/// A step with the plan's retry policy (which errors, interval, backoff, attempts), and the
/// state machine's `"JitterStrategy": "FULL"`: each wait is a random duration between 0 and
/// the computed backoff (`interval_s × backoff_rate^attempt`). At most `max_attempts` retries.
async fn run_with_retries(ports: &Ports, step: Step, input: &StepInput) -> Result<StepOutput, String> {
    let retry = step.retry();
    let mut attempt = 0;
    loop {
        match run_step(ports, step, input).await {
            Ok(out) => return Ok(out),
            // Like the state machine's `Retry`: only transient failures are retried.
            Err(e) if e.is_retryable() && attempt < retry.max_attempts => {
                let wait = full_jitter(retry.backoff(attempt));
                tracing::warn!(step = step.name(), error = %e, attempt, ?wait, "step failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A uniformly random duration in `[0, max]` (full jitter).
fn full_jitter(max: Duration) -> Duration {
    max.mul_f64(unit_random())
}

/// A random number in `[0, 1]`, from the standard library's randomly keyed hasher (each
/// `RandomState` has new keys), so no RNG crate is needed for a retry's jitter.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_within_the_computed_backoff_and_varies() {
        let max = Duration::from_secs(2);
        let waits: Vec<Duration> = (0..200).map(|_| full_jitter(max)).collect();
        assert!(waits.iter().all(|w| *w <= max), "{waits:?}");
        assert!(waits.iter().any(|w| *w < max / 2) && waits.iter().any(|w| *w > max / 2));
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
