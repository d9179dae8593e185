//! The shipped artifacts running together, as in AWS: every function as its own process of
//! the one bootstrap behind the fake Lambda Runtime API (its own `_HANDLER`, own credentials,
//! only the environment its template gives it), the committed state machine definition
//! played for every execution the emulator records, and (on request) the event source:
//! events published on the bus reach start-deployment, revert-service or steer-deployment as
//! their EventBridge rules route them; and, on a ledger table with its stream, the pipe that
//! announces deployment events through the announce-deployments process.
//! The contract test and the benchmarks drive greenlight through this.

use crate::Env;
use aws_sdk_sfn::Client as Sfn;
use greenlight_local::asl::{self, Ending, Functions};
use greenlight_local::lambda_service::Function;
use greenlight_local::{pipe, pump};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The functions (their handler names, `greenlight_steps::lambda::Function::ALL` in order)
/// with the state machine's substitution variable of each (if it is a state machine task).
pub const FUNCTIONS: [(&str, Option<&str>); 11] = [
    ("start-deployment", None),
    ("launch-green", Some("LaunchGreenFunctionArn")),
    ("check-health", Some("CheckHealthFunctionArn")),
    ("shift-traffic", Some("ShiftTrafficFunctionArn")),
    ("finalize", Some("FinalizeFunctionArn")),
    ("retire-blue", Some("RetireBlueFunctionArn")),
    ("abort-deployment", Some("AbortDeploymentFunctionArn")),
    ("revert-service", None),
    ("steer-deployment", None),
    ("reconcile-services", None),
    ("announce-deployments", None),
];

/// The access key the stack's pipe (the template's `DeploymentEventsPipe`, under its role)
/// signs with, for service `service`.
pub fn pipe_access_key(service: &str) -> String {
    crate::function_access_key(service, "deployment-events-pipe")
}

/// The functions of one installation, running as processes, and the state machine that
/// moto records executions of (and this stack runs).
pub struct Stack {
    pub env: Env,
    pub functions: HashMap<&'static str, Arc<Function>>,
    pub sfn: Sfn,
    pub state_machine_arn: String,
    /// Ending of each execution run so far, by execution name.
    endings: Arc<Mutex<BTreeMap<String, Ending>>>,
    /// The pipe from the ledger's stream through the announce-deployments process to the
    /// events bus, signing as the pipe's role ([`pipe_access_key`]); only on a ledger table
    /// with its stream (`Names::ledger_stream`).
    pub pipe: Option<pipe::Pipe>,
}

impl Stack {
    /// Builds the bootstrap (if needed), creates the state machine, starts every function's
    /// process and plays the executions.
    pub async fn start(env: Env) -> Stack {
        crate::build_binaries();
        let local = &env.local;
        let sfn = Sfn::new(&local.sdk);
        let (state_machine_arn, definition) = crate::create_state_machine(&env).await;
        let mut functions = HashMap::new();
        for (name, _) in FUNCTIONS {
            let (function, _) = crate::start_function(&env, name, &state_machine_arn, "test", None).await;
            // One at a time, each up to its first `/invocation/next`: its init time is its own,
            // not ten processes' contending for the cores (the benchmark reports it).
            function.wait_for_init(Duration::from_secs(10)).await;
            functions.insert(name, Arc::new(function));
        }
        let pipe = match env.local.names.ledger_stream {
            true => {
                let signing = env.local.with_access_key(&pipe_access_key(&env.service)).await;
                let enrichment = pipe::Enrichment::Function(functions["announce-deployments"].clone());
                Some(
                    pipe::spawn(&signing, enrichment)
                        .await
                        .expect("the deployment events pipe"),
                )
            }
            false => None,
        };
        let stack = Stack {
            env,
            functions,
            sfn,
            state_machine_arn,
            endings: Default::default(),
            pipe,
        };
        stack.play_executions(serde_json::from_str(&definition).expect("the definition is JSON"));
        stack
    }

    /// Plays Step Functions: every execution moto records is run to its end with the
    /// committed definition, its Tasks invoking the function processes.
    fn play_executions(&self, definition: Value) {
        let definition = Arc::new(definition);
        let tasks: Functions = FUNCTIONS
            .iter()
            .filter_map(|(name, variable)| Some((variable.as_ref()?.to_string(), self.functions[name].clone())))
            .collect();
        let (sfn, arn, endings) = (self.sfn.clone(), self.state_machine_arn.clone(), self.endings.clone());
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            loop {
                let listed = sfn.list_executions().state_machine_arn(&arn).send().await;
                for execution in listed.map(|l| l.executions).unwrap_or_default() {
                    if !seen.insert(execution.name.clone()) {
                        continue;
                    }
                    let described = sfn
                        .describe_execution()
                        .execution_arn(&execution.execution_arn)
                        .send()
                        .await
                        .expect("describe execution");
                    let input: Value = serde_json::from_str(described.input().unwrap_or("{}")).unwrap();
                    let (definition, tasks, endings) = (definition.clone(), tasks.clone(), endings.clone());
                    tokio::spawn(async move {
                        let (ending, _) = asl::execute(&definition, &tasks, input).await;
                        endings.lock().unwrap().insert(execution.name, ending);
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// Plays the event source: what is published on this installation's bus is delivered to
    /// the function its rule targets, one event at a time (failed deliveries are dropped and
    /// their errors sent on the returned channel).
    pub fn deliver_events(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (errors, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (local, functions) = (self.env.local.clone(), self.functions.clone());
        tokio::spawn(async move {
            loop {
                let delivered = pump::receive_each(&local, Duration::from_secs(1), |event, _| {
                    let function = functions[greenlight_core::inbound::EventTarget::of(&event).function_name()].clone();
                    let errors = errors.clone();
                    async move {
                        if let Err(error) = function.invoke(&event).await {
                            let _ = errors.send(format!("{}: {error}", function.name));
                        }
                        ((), false)
                    }
                })
                .await;
                if delivered.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        receiver
    }

    /// Invokes `function` with `payload`, as a synchronous `Invoke`.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, String> {
        self.functions[function]
            .invoke(payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits (up to 90 s) for execution `name` to be run to its end.
    pub async fn ending(&self, name: &str) -> Ending {
        for _ in 0..900 {
            if let Some(ending) = self.endings.lock().unwrap().get(name) {
                return ending.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "execution {name} did not end within 90 s; started: {:?}",
            self.endings.lock().unwrap()
        );
    }

    /// The names of the executions started so far.
    pub async fn executions(&self) -> Vec<String> {
        let listed = self
            .sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await;
        listed
            .expect("list executions")
            .executions
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    /// The EMF documents every function process printed so far.
    pub fn metrics(&self) -> Vec<Value> {
        self.functions
            .values()
            .flat_map(|f| f.stdout())
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|doc| doc.get("_aws").is_some())
            .collect()
    }
}
