//! Runs the committed Step Functions definition (`infra/statemachine.asl.json`) the way
//! Step Functions would, with each `lambda:invoke` Task calling a real function process
//! (see [`crate::lambda_service`]). The local emulator records executions but does not run
//! them, so this is what proves the shipped definition and the shipped bootstrap (one
//! process per function, each with its own `_HANDLER`) work together.
//!
//! The subset the generated definition uses: `Task` (`Parameters.FunctionName`,
//! `Payload.$: "$"`, `OutputPath: "$.Payload"`, `Retry`, `Catch` with `ResultPath`),
//! `Choice` (`StringEquals` on a path), `Wait` (`Seconds`/`SecondsPath`), `Succeed`, `Fail`.
//! Anything else fails the execution with `States.Runtime`, so a definition that grows
//! beyond this subset is noticed here rather than in production.

use crate::lambda_service::{Function, FunctionError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// A `Succeed` state; the execution's output.
    Succeeded(Value),
    /// A `Fail` state or an uncaught error: `(error, cause)`.
    Failed(String, String),
}

/// One state the execution passed through: its name and what it did.
#[derive(Debug, Clone)]
pub struct Visit {
    pub state: String,
    /// For a Task: the output, or the error after retries.
    pub result: Option<Result<Value, FunctionError>>,
}

/// The functions the definition's `${...}` substitution variables stand for.
pub type Functions = HashMap<String, Arc<Function>>;

/// Runs one execution of `definition` on `input` to its end.
pub async fn execute(definition: &Value, functions: &Functions, input: Value) -> (Ending, Vec<Visit>) {
    let mut visits = Vec::new();
    let mut name = definition["StartAt"].as_str().unwrap_or_default().to_string();
    let mut data = input;
    for _ in 0..10_000 {
        let state = &definition["States"][&name];
        let mut visit = Visit {
            state: name.clone(),
            result: None,
        };
        let next = match state["Type"].as_str().unwrap_or_default() {
            "Succeed" => {
                visits.push(visit);
                return (Ending::Succeeded(data), visits);
            }
            "Fail" => {
                visits.push(visit);
                let text = |key: &str| state[key].as_str().unwrap_or_default().to_string();
                return (Ending::Failed(text("Error"), text("Cause")), visits);
            }
            "Wait" => {
                let seconds = match state["SecondsPath"].as_str() {
                    Some(path) => select(&data, path).as_u64(),
                    None => state["Seconds"].as_u64(),
                };
                tokio::time::sleep(Duration::from_secs(seconds.unwrap_or(0))).await;
                state["Next"].as_str()
            }
            "Choice" => choose(state, &data),
            "Task" => {
                let result = task(state, functions, &data).await;
                visit.result = Some(result.clone());
                match result {
                    Ok(output) => {
                        data = match state["OutputPath"].as_str() {
                            Some(path) => select(&json!({ "Payload": output }), path),
                            None => json!({ "Payload": output }),
                        };
                        state["Next"].as_str()
                    }
                    Err(error) => match catch(state, &error) {
                        Some((next, result_path)) => {
                            let caught = json!({ "Error": error.error_type, "Cause": cause(&error) });
                            data = place(data, result_path, caught);
                            Some(next)
                        }
                        None => {
                            visits.push(visit);
                            return (Ending::Failed(error.error_type.clone(), cause(&error)), visits);
                        }
                    },
                }
            }
            other => {
                visits.push(visit);
                let why = format!("state {name:?} has type {other:?}, which this runner does not know");
                return (Ending::Failed("States.Runtime".into(), why), visits);
            }
        };
        visits.push(visit);
        match next {
            Some(next) => name = next.to_string(),
            None => {
                let why = format!("state {name:?} has no Next and does not end the execution");
                return (Ending::Failed("States.Runtime".into(), why), visits);
            }
        }
    }
    (
        Ending::Failed("States.Runtime".into(), "more than 10000 state transitions".into()),
        visits,
    )
}

/// A Task: invoke its function with the state's input, retrying as its `Retry` says.
async fn task(state: &Value, functions: &Functions, data: &Value) -> Result<Value, FunctionError> {
    let parameters = &state["Parameters"];
    let name = parameters["FunctionName"].as_str().unwrap_or_default();
    let variable = name.trim_start_matches("${").trim_end_matches('}');
    let Some(function) = functions.get(variable) else {
        return Err(FunctionError {
            error_type: "States.Runtime".into(),
            error_message: format!("no function for {name}"),
        });
    };
    let payload = match parameters["Payload.$"].as_str() {
        Some(path) => select(data, path),
        None => parameters["Payload"].clone(),
    };
    let mut attempts: HashMap<usize, u64> = HashMap::new();
    loop {
        let error = match function.invoke(&payload).await {
            Ok(output) => return Ok(output),
            Err(error) => error,
        };
        let retriers = state["Retry"].as_array().cloned().unwrap_or_default();
        let Some((index, retrier)) = retriers
            .iter()
            .enumerate()
            .find(|(_, r)| matches_error(&r["ErrorEquals"], &error.error_type))
        else {
            return Err(error);
        };
        let attempt = attempts.entry(index).or_insert(0);
        let max_attempts = retrier["MaxAttempts"].as_u64().unwrap_or(3);
        if *attempt >= max_attempts {
            return Err(error);
        }
        let interval = retrier["IntervalSeconds"].as_f64().unwrap_or(1.0);
        let backoff = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
        tokio::time::sleep(Duration::from_secs_f64(interval * backoff.powi(*attempt as i32))).await;
        *attempt += 1;
    }
}

/// The `Catch` that handles `error`: its `Next` and `ResultPath`.
fn catch<'a>(state: &'a Value, error: &FunctionError) -> Option<(&'a str, &'a str)> {
    state["Catch"].as_array()?.iter().find_map(|catcher| {
        matches_error(&catcher["ErrorEquals"], &error.error_type).then(|| {
            (
                catcher["Next"].as_str().unwrap_or_default(),
                catcher["ResultPath"].as_str().unwrap_or("$"),
            )
        })
    })
}

/// `ErrorEquals` matches the error name, or everything with `States.ALL` (and
/// `States.TaskFailed`, which every function error is).
fn matches_error(error_equals: &Value, error_type: &str) -> bool {
    error_equals.as_array().is_some_and(|names| {
        names
            .iter()
            .filter_map(Value::as_str)
            .any(|name| name == error_type || name == "States.ALL" || name == "States.TaskFailed")
    })
}

/// The `Cause` Step Functions gives a Lambda function's error: the error document as JSON.
fn cause(error: &FunctionError) -> String {
    json!({ "errorType": error.error_type, "errorMessage": error.error_message }).to_string()
}

/// The first `Choices` rule that matches, or `Default`.
fn choose<'a>(state: &'a Value, data: &Value) -> Option<&'a str> {
    let rules = state["Choices"].as_array();
    let matched = rules.into_iter().flatten().find(|rule| {
        let value = select(data, rule["Variable"].as_str().unwrap_or("$"));
        rule["StringEquals"]
            .as_str()
            .is_some_and(|want| value.as_str() == Some(want))
    });
    matched.map_or(state["Default"].as_str(), |rule| rule["Next"].as_str())
}

/// The value at a reference path (`$` or `$.a.b`); null when absent.
fn select(data: &Value, path: &str) -> Value {
    let mut value = data;
    for key in path.trim_start_matches('$').split('.').filter(|k| !k.is_empty()) {
        value = &value[key];
    }
    value.clone()
}

/// `data` with `value` put at `path` (`$` replaces it, `$.key` sets one field).
fn place(mut data: Value, path: &str, value: Value) -> Value {
    match path.strip_prefix("$.") {
        Some(key) if data.is_object() => {
            data[key] = value;
            data
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_select_and_place_fields() {
        let data = json!({"next": "check-health", "wait_s": 2, "nested": {"a": 1}});
        assert_eq!(select(&data, "$"), data);
        assert_eq!(select(&data, "$.wait_s"), json!(2));
        assert_eq!(select(&data, "$.nested.a"), json!(1));
        assert_eq!(select(&data, "$.missing"), Value::Null);
        let placed = place(data.clone(), "$.error", json!({"Error": "x"}));
        assert_eq!(placed["error"]["Error"], "x");
        assert_eq!(placed["next"], "check-health");
        assert_eq!(place(data, "$", json!(1)), json!(1));
    }

    #[test]
    fn choices_route_on_string_equality_with_a_default() {
        let state = json!({"Type": "Choice", "Default": "Unplanned",
            "Choices": [{"Variable": "$.next", "StringEquals": "finalize", "Next": "Wait before finalize"}]});
        assert_eq!(
            choose(&state, &json!({"next": "finalize"})),
            Some("Wait before finalize")
        );
        assert_eq!(choose(&state, &json!({"next": "other"})), Some("Unplanned"));
    }

    #[test]
    fn retry_and_catch_match_error_names() {
        assert!(matches_error(&json!(["greenlight.Transient"]), "greenlight.Transient"));
        assert!(!matches_error(&json!(["greenlight.Transient"]), "greenlight.Rejected"));
        assert!(matches_error(&json!(["States.ALL"]), "greenlight.Rejected"));
        let state = json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "abort", "ResultPath": "$.error"}]});
        let error = FunctionError {
            error_type: "greenlight.Rejected".into(),
            error_message: "bad".into(),
        };
        assert_eq!(catch(&state, &error), Some(("abort", "$.error")));
    }
}
