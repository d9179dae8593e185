//! Test support for the end-to-end tests: one emulator per test process, an isolated
//! installation per test (own service, event bus and queue), and readable helpers that
//! read the outcome from the emulator's state (listener actions, instances, ledger).

pub mod stack;
pub mod template;

use greenlight_core::inbound::{ALARM_STATE_CHANGE, IMAGE_PUBLISHED, ROLLBACK_REQUESTED, SOURCE};
use greenlight_core::model::{Deployment, Phase, State};
use greenlight_local::emulator::Emulator;
use greenlight_local::fixture::{self, AppBehaviour, Spec, World};
use greenlight_local::orchestrator::{Ending, LocalOrchestrator};
use greenlight_local::pump::Outcome;
use greenlight_local::{pump, Local, Names};
use greenlight_steps::StartOutcome;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator's endpoint, started on first use (it stops when the test process exits).
pub fn endpoint() -> &'static str {
    &EMULATOR
        .get_or_init(|| {
            let log = std::env::temp_dir().join(format!("greenlight-e2e-emulator-{}.log", std::process::id()));
            Emulator::start(Some(log)).unwrap_or_else(|e| panic!("cannot start the emulator: {e}"))
        })
        .endpoint
}

/// An emulator of the test's own (its log in the temp dir) and an installation on it: for
/// tests that put steady load through the ALB data plane, which would slow every other test
/// sharing the one emulator. Keep the emulator alive for the test (dropping it stops it).
pub async fn own_emulator(prefix: &str) -> (Emulator, Local) {
    let log = std::env::temp_dir().join(format!("greenlight-e2e-{prefix}-emulator-{}.log", std::process::id()));
    let emulator = Emulator::start(Some(log)).unwrap_or_else(|e| panic!("cannot start an emulator: {e}"));
    let local = Local::connect(&emulator.endpoint, Names::isolated(&unique(prefix)))
        .await
        .expect("connect");
    (emulator, local)
}

/// A unique service name for one test (`<prefix>-<n>`).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 10_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A test's own installation and service world.
pub struct Env {
    pub local: Local,
    pub world: World,
    pub service: String,
}

impl Env {
    /// A fresh service `prefix-n` built from `spec` (its service name is replaced).
    pub async fn new(prefix: &str, spec: impl FnOnce(&str) -> Spec) -> Env {
        Env::built(prefix, Names::isolated, spec).await
    }

    /// As [`Env::new`], on a ledger table of its own (the service is the only one
    /// registered in it): for tests that run reconcile-services.
    pub async fn alone(prefix: &str, spec: impl FnOnce(&str) -> Spec) -> Env {
        Env::built(prefix, Names::with_own_table, spec).await
    }

    /// A fresh service `prefix-n` on the installation `names` makes for it.
    async fn built(prefix: &str, names: fn(&str) -> Names, spec: impl FnOnce(&str) -> Spec) -> Env {
        let service = unique(prefix);
        let local = Local::connect(endpoint(), names(&service)).await.expect("connect");
        let world = fixture::build(&local, &spec(&service)).await.expect("build world");
        Env { local, world, service }
    }

    /// Uploads a release manifest naming `ami` at `key` of the installation's bucket.
    pub async fn put_manifest(&self, key: &str, ami: &str) {
        let body = format!(r#"{{"ami": "{ami}", "requested_by": "release-bot"}}"#);
        self.local
            .s3
            .put_object()
            .bucket(&self.local.names.bucket)
            .key(key)
            .body(body.into_bytes().into())
            .send()
            .await
            .expect("put the manifest");
    }

    /// An AMI for `version` of this service with the given app behaviour.
    pub async fn image(&self, version: &str, behaviour: AppBehaviour) -> String {
        fixture::image(&self.local, &self.service, version, behaviour)
            .await
            .expect("image")
    }

    /// An AMI for `version` of this service with the given app behaviour and traits (error
    /// rate, latency, after how many requests) on its user requests.
    pub async fn image_with(&self, version: &str, behaviour: AppBehaviour, traits: AppTraits) -> String {
        fixture::image_with_traits(&self.local, &self.service, version, behaviour, &traits)
            .await
            .expect("image")
    }

    /// Publishes `ImagePublished` on this test's bus (as the pipeline would).
    pub async fn publish(&self, version: &str, ami: &str) {
        let detail = json!({"service": self.service, "version": version, "ami": ami, "requested_by": "e2e"});
        self.publish_detail(&detail).await;
    }

    /// Publishes an `ImagePublished` with this detail.
    pub async fn publish_detail(&self, detail: &Value) {
        pump::publish(&self.local, SOURCE, IMAGE_PUBLISHED, detail)
            .await
            .expect("publish");
    }

    /// Publishes `RollbackRequested` for this service on its bus, as an engineer would.
    pub async fn rollback(&self, reason: &str) {
        let detail = json!({"service": self.service, "reason": reason, "requested_by": "alice"});
        pump::publish(&self.local, SOURCE, ROLLBACK_REQUESTED, &detail)
            .await
            .expect("publish");
    }

    /// A real-shaped CloudWatch alarm state change of this service's alarm.
    pub fn alarm_event(&self, id: &str, state: &str) -> Value {
        let name = fixture::alarm_name(&self.service);
        let previous = if state == "ALARM" { "OK" } else { "ALARM" };
        json!({"version": "0", "id": id, "detail-type": ALARM_STATE_CHANGE, "source": "aws.cloudwatch",
               "account": "123456789012", "time": now_rfc3339(), "region": "us-east-1",
               "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")],
               "detail": {"alarmName": name, "state": {"value": state, "reason": "Threshold Crossed: 5xx above 10"},
                          "previousState": {"value": previous, "reason": "Threshold Crossed"}}})
    }

    /// Puts an alarm state change on this test's bus, as CloudWatch would.
    pub async fn alarm(&self, id: &str, state: &str) {
        let event = self.alarm_event(id, state);
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source("aws.cloudwatch")
            .detail_type(ALARM_STATE_CHANGE)
            .resources(event["resources"][0].as_str().unwrap())
            .detail(event["detail"].to_string())
            .event_bus_name(&self.local.names.default_bus)
            .build();
        let out = aws_sdk_eventbridge::Client::new(&self.local.sdk)
            .put_events()
            .entries(entry)
            .send()
            .await;
        assert_eq!(out.expect("put events").failed_entry_count, 0);
    }

    /// Waits (up to 60 s) until deployment `deploy_id` exists and is in a phase `want` accepts.
    pub async fn wait_for_phase(&self, deploy_id: &str, want: impl Fn(&Phase) -> bool) -> Deployment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // A queued deployment is in the ledger only once it starts.
            let dep = self.ledger(Some(deploy_id)).await.deployment;
            if let Some(dep) = dep.as_ref().filter(|d| want(&d.phase)) {
                return dep.clone();
            }
            let phase = dep.map(|d| d.phase);
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {deploy_id} stuck in {phase:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Delivers queued events to their functions until `n` were delivered (10 s at most).
    pub async fn deliver(&self, n: usize) -> Vec<Result<Outcome, String>> {
        deliver_via(&self.local, n).await
    }

    /// Publishes `version` and runs the deployment to its end; returns its id and ending.
    pub async fn deploy(&self, version: &str, ami: &str) -> (String, Ending) {
        self.publish(version, ami).await;
        let id = started(&self.deliver(1).await[0]);
        let ending = self.wait(&id).await;
        (id, ending)
    }

    /// Waits (up to 120 s) for execution `name` to start (a queued deployment starts when
    /// the one before it ends) and end.
    /// An ending other than success prints the deployment's phase (its reason) to the test's
    /// output, so a failure in CI says why without a rerun.
    pub async fn wait(&self, name: &str) -> Ending {
        let ending = wait_execution(&self.local.orchestrator, name).await;
        if ending != Ending::Done(greenlight_core::model::PhaseName::Succeeded) {
            if let Ok(Some(state)) = self.local.ports.ledger.load(&self.service, Some(name)).await {
                if let Some(dep) = state.deployment {
                    eprintln!("execution {name} ended {ending:?}: phase {:?}", dep.phase);
                }
            }
        }
        ending
    }

    /// The ledger's view of the service (and deployment `deploy_id`).
    pub async fn ledger(&self, deploy_id: Option<&str>) -> State {
        self.local
            .ports
            .ledger
            .load(&self.service, deploy_id)
            .await
            .expect("ledger load")
            .expect("service registered")
    }

    /// The JSON report of deployment `deploy_id`, as it ended, from the artifact bucket.
    pub async fn report(&self, deploy_id: &str) -> serde_json::Value {
        let key = format!("reports/{}/{deploy_id}.json", self.service);
        let body = self
            .local
            .ports
            .store
            .get(&self.local.names.bucket, &key)
            .await
            .expect("report");
        serde_json::from_slice(&body).expect("the report is JSON")
    }

    /// The deployment record `deploy_id`.
    pub async fn deployment(&self, deploy_id: &str) -> Deployment {
        self.ledger(Some(deploy_id))
            .await
            .deployment
            .expect("deployment in ledger")
    }

    /// The listener's forward weights, by target group colour: `[("a", 0), ("b", 100)]`.
    pub async fn weights(&self) -> Vec<(&'static str, u8)> {
        let weights = self
            .local
            .ports
            .lb
            .traffic(&self.world.config.switch.points()[0])
            .await
            .expect("traffic");
        weights
            .into_iter()
            .map(|(tg, w)| {
                (
                    if tg == self.world.config.target_groups[0] {
                        "a"
                    } else {
                        "b"
                    },
                    w,
                )
            })
            .filter(|(_, w)| *w > 0)
            .collect()
    }

    /// A switch point's actions as DescribeListeners / DescribeRules answer them.
    pub async fn point_actions(
        &self,
        point: &greenlight_core::switch::Switch,
    ) -> Vec<aws_sdk_elasticloadbalancingv2::types::Action> {
        let elb = &self.local.clients.elb;
        match &point.rule_arn {
            Some(rule) => elb
                .describe_rules()
                .rule_arns(rule)
                .send()
                .await
                .expect("describe rules")
                .rules()[0]
                .actions()
                .to_vec(),
            None => elb
                .describe_listeners()
                .listener_arns(&point.listener_arn)
                .send()
                .await
                .expect("describe listeners")
                .listeners()[0]
                .default_actions()
                .to_vec(),
        }
    }

    /// Every switch point's actions without the forward's target groups and weights (what
    /// greenlight owns): the frames, as the load balancer reports them.
    pub async fn point_frames(&self) -> Vec<Vec<aws_sdk_elasticloadbalancingv2::types::Action>> {
        let mut all = Vec::new();
        for point in self.world.config.switch.points() {
            let actions = self.point_actions(point).await.into_iter().map(|mut action| {
                action.target_group_arn = None;
                if let Some(forward) = action.forward_config.as_mut() {
                    forward.target_groups = None;
                }
                action
            });
            all.push(actions.collect());
        }
        all
    }

    /// Each switch point's forward weights (as [`Env::weights`]), in the registration's order.
    pub async fn every_point_weights(&self) -> Vec<Vec<(&'static str, u8)>> {
        let mut all = Vec::new();
        for point in self.world.config.switch.points() {
            let weights = self.local.ports.lb.traffic(point).await.expect("traffic");
            all.push(
                weights
                    .into_iter()
                    .map(|(tg, w)| {
                        (
                            if tg == self.world.config.target_groups[0] {
                                "a"
                            } else {
                                "b"
                            },
                            w,
                        )
                    })
                    .filter(|(_, w)| *w > 0)
                    .collect(),
            );
        }
        all
    }

    /// Instance states by id.
    pub async fn states(&self, ids: &[String]) -> BTreeMap<String, String> {
        let found = self.local.ports.fleet.describe(ids).await.expect("describe");
        found
            .into_iter()
            .map(|i| (i.instance_id, i.state.as_str().to_string()))
            .collect()
    }

    /// Instances launched for `deploy_id` that are not terminated.
    pub async fn live_instances_of(&self, deploy_id: &str) -> Vec<greenlight_adapters::Instance> {
        self.local
            .ports
            .fleet
            .instances_of(deploy_id)
            .await
            .expect("instances_of")
    }
}

/// Delivers events queued for `local`'s installation to its handlers until `n` were
/// delivered (10 s at most).
pub async fn deliver_via(local: &Local, n: usize) -> Vec<Result<Outcome, String>> {
    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while results.len() < n && tokio::time::Instant::now() < deadline {
        let batch = pump::pump_once(local, Duration::from_secs(1)).await.expect("pump");
        results.extend(batch.into_iter().map(|d| d.result));
    }
    assert_eq!(results.len(), n, "expected {n} deliveries, got {results:?}");
    results
}

/// Waits (up to 120 s) for execution `name` of `orchestrator` to start and end.
pub async fn wait_execution(orchestrator: &LocalOrchestrator, name: &str) -> Ending {
    let run = async {
        loop {
            if let Some(ending) = orchestrator.wait(name).await {
                return ending;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("execution {name} did not start and end within 120s"))
}

/// The deployment id of a started outcome (panics with the error otherwise).
pub fn started(result: &Result<Outcome, String>) -> String {
    match result {
        Ok(Outcome::Start(StartOutcome::Started(out))) => out.deploy_id.clone(),
        other => panic!("expected a started deployment, got {other:?}"),
    }
}

/// An `ImagePublished` EventBridge event with this detail, as EventBridge delivers it.
pub fn image_published(detail: Value) -> Value {
    json!({"version": "0", "id": "x", "detail-type": IMAGE_PUBLISHED, "source": SOURCE,
           "account": "123456789012", "time": "2026-11-24T10:00:00Z", "region": "us-east-1",
           "resources": [], "detail": detail})
}

/// A quick all-at-once spec.
pub fn quick(service: &str) -> Spec {
    Spec::quick(service)
}

/// A quick spec that gives up on green's health after 10 polls: for tests of a green that
/// never becomes healthy, which would otherwise wait out [`Spec::quick`]'s generous bound.
pub fn impatient(service: &str) -> Spec {
    Spec {
        max_polls: 10,
        ..Spec::quick(service)
    }
}

/// A quick canary spec (10 → 50 → 100).
pub fn canary(service: &str) -> Spec {
    Spec {
        canary_steps: vec![10, 50, 100],
        ..Spec::quick(service)
    }
}

pub use greenlight_local::fixture::AppBehaviour as App;
pub use greenlight_local::fixture::AppTraits;

/// The current time as EventBridge writes it (`2026-11-24T10:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    greenlight_core::inbound::format_time(secs)
}

/// The body of `GET url` (panics on a failure or a status other than 200).
pub async fn http_get(url: &str) -> String {
    use greenlight_adapters::Prober;
    let (status, body) = greenlight_adapters::http::HttpProber
        .get(url, None, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Builds the workspace's binaries (the Lambda bootstrap, the `greenlight` CLI) once per
/// test process, a no-op when they are fresh, so tests of built binaries always run the
/// current code (or none when `GREENLIGHT_BINARIES_DIR` says where they are). Find them with `greenlight_local::lambda_service::built_binary`.
pub fn build_binaries() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if std::env::var_os(greenlight_local::lambda_service::BINARIES_DIR).is_some() {
        return; // someone else built them (the benchmarks: release builds)
    }
    let result = BUILT.get_or_init(|| {
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .current_dir(greenlight_local::emulator::repo_root())
            .args(["build", "--quiet", "--workspace", "--bins"]);
        match cargo.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("cargo build --workspace --bins failed: {status}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    if let Err(why) = result {
        panic!("{why}");
    }
}

/// Each deployment's `DeploymentStateChanged` events read so far, by deploy id, in generation
/// order (duplicates kept).
pub type Announced = BTreeMap<String, Vec<greenlight_core::announce::DeploymentStateChanged>>;

impl Env {
    /// The deployment events on the queue behind the events bus, read until `done` says the
    /// ones read so far are complete, or for `limit` at most (the caller asserts what it
    /// needs). Each is checked to be greenlight's `DeploymentStateChanged` of this service and
    /// parsed (unknown fields refused). Each deployment's are in generation order: an SQS
    /// standard queue may reorder what the pipe put on the bus in order, and a consumer orders
    /// by `gen`; a duplicate (a retried `PutEvents`) is kept, for the caller to judge.
    pub async fn announced(&self, limit: Duration, done: impl Fn(&Announced) -> bool) -> Announced {
        use greenlight_core::announce::{DeploymentStateChanged, DETAIL_TYPE};
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Announced::new();
        while !done(&seen) && tokio::time::Instant::now() < deadline {
            let events = pump::announced(&self.local, Duration::from_secs(1))
                .await
                .expect("receive");
            for event in events {
                assert_eq!(
                    (event["source"].as_str(), event["detail-type"].as_str()),
                    (Some(SOURCE), Some(DETAIL_TYPE)),
                    "{event}"
                );
                let detail: DeploymentStateChanged =
                    serde_json::from_value(event["detail"].clone()).unwrap_or_else(|e| panic!("{e}: {event}"));
                assert_eq!(detail.service, self.service, "{event}");
                let mine = seen.entry(detail.deploy_id.clone()).or_default();
                mine.push(detail);
                mine.sort_by_key(|e| e.gen);
            }
        }
        seen
    }

    /// A fresh service `prefix-n` built from `spec` in an installation already connected
    /// (`local`, which several services may share, e.g. on an emulator of their own).
    pub async fn on(local: &Local, prefix: &str, spec: impl FnOnce(&str) -> Spec) -> Env {
        let service = unique(prefix);
        let world = fixture::build(local, &spec(&service)).await.expect("build world");
        Env {
            local: local.clone(),
            world,
            service,
        }
    }

    /// An engineer's request about this service (`RollbackRequested`, `AbortRequested` or
    /// `PromoteRequested`) as EventBridge delivers it to its function: event `id`, sent now.
    pub fn request_event(&self, detail_type: &str, id: &str, requested_by: &str, reason: &str) -> Value {
        let detail = json!({"service": self.service, "reason": reason, "requested_by": requested_by});
        json!({"version": "0", "id": id, "detail-type": detail_type, "source": SOURCE,
               "account": "123456789012", "time": now_rfc3339(), "region": "us-east-1",
               "resources": [], "detail": detail})
    }

    /// Every instance tagged `greenlight:service=<this service>`, in any state (terminated
    /// ones included: EC2 keeps listing them for a while, the emulator for good).
    pub async fn service_instances(&self) -> Vec<greenlight_adapters::Instance> {
        use aws_sdk_ec2::types::Filter;
        let filter = Filter::builder()
            .name(format!("tag:{}", greenlight_adapters::tags::SERVICE))
            .values(&self.service)
            .build();
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .local
                .clients
                .ec2
                .describe_instances()
                .filters(filter.clone())
                .set_next_token(token.take())
                .send()
                .await
                .expect("describe instances");
            for instance in out.reservations().iter().flat_map(|r| r.instances()) {
                found.push(greenlight_adapters::Instance {
                    instance_id: instance.instance_id().unwrap_or_default().to_string(),
                    state: greenlight_adapters::InstanceState::from_ec2(
                        instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
                    ),
                    private_ip: instance.private_ip_address().map(str::to_string),
                    tags: instance
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                        .collect(),
                    image_id: instance.image_id().map(str::to_string),
                    launched_at: instance.launch_time().map(|t| t.secs().max(0) as u64),
                });
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return found,
            }
        }
    }
}

/// A sample from `events/` with fields replaced (`/detail/service` → value, ...).
pub fn sample_event(file: &str, replace: &[(&str, Value)]) -> Value {
    let path = greenlight_local::emulator::repo_root().join("events").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    for (pointer, value) in replace {
        *event
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{file} has no {pointer}")) = value.clone();
    }
    event
}

/// Creates this installation's state machine in the emulator from the committed definition
/// (`infra/statemachine.asl.json`); returns its ARN and the definition's text.
pub async fn create_state_machine(env: &Env) -> (String, String) {
    let path = greenlight_local::emulator::repo_root().join("infra/statemachine.asl.json");
    let definition = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let arn = aws_sdk_sfn::Client::new(&env.local.sdk)
        .create_state_machine()
        .name(format!("greenlight-{}", env.service))
        .definition(&definition)
        .role_arn("arn:aws:iam::123456789012:role/greenlight-pipeline")
        .send()
        .await
        .expect("create state machine")
        .state_machine_arn;
    (arn, definition)
}

/// The access key id function `function` of this installation signs with (the emulator logs
/// calls per key, so each process's calls can be told apart).
pub fn function_access_key(service: &str, function: &str) -> String {
    format!("{function}.{service}")
}

/// Starts function `function` as a process of the shipped bootstrap behind the fake Lambda
/// Runtime API (`_HANDLER` = `function`, as its template `Handler` says), with the template's
/// environment for this installation, at log level info, signing with its own access key,
/// `secret` and (if given) a session `token`. Its stderr goes to the returned file.
pub async fn start_function(
    env: &Env,
    function: &str,
    state_machine_arn: &str,
    secret: &str,
    token: Option<&str>,
) -> (greenlight_local::lambda_service::Function, std::path::PathBuf) {
    use greenlight_local::lambda_service::{built_binary, Function, FunctionSpec, BOOTSTRAP};
    let local = &env.local;
    let stderr_log = std::env::temp_dir().join(format!("greenlight-{}-{function}.stderr", env.service));
    let mut vars: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL".into(), endpoint().to_string()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), function_access_key(&env.service, function)),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.to_string()),
    ];
    if let Some(token) = token {
        vars.push(("AWS_SESSION_TOKEN".into(), token.to_string()));
    }
    vars.extend([
        ("GREENLIGHT_TABLE".into(), local.names.table.clone()),
        ("GREENLIGHT_BUCKET".into(), local.names.bucket.clone()),
        ("GREENLIGHT_STATE_MACHINE_ARN".into(), state_machine_arn.to_string()),
        ("RUST_LOG".into(), "info".into()),
    ]);
    let spec = FunctionSpec {
        name: function.to_string(),
        handler: Some(function.to_string()),
        binary: built_binary(BOOTSTRAP),
        env: vars,
        timeout: std::time::Duration::from_secs(60),
        stderr_log: Some(stderr_log.clone()),
    };
    let process = Function::start(spec).await.unwrap_or_else(|e| panic!("{e}"));
    (process, stderr_log)
}

impl Env {
    /// One raw ledger item (`pk`, `sk`), read consistently; None when it does not exist.
    pub async fn ledger_item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.local
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.local.names.table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {pk} {sk}: {e:?}"))
            .item
    }
}
