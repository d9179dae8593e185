//! The `greenlight` CLI as shipped: the built binary run as a process against the emulator,
//! with only the environment an engineer's shell would give it (endpoint, region,
//! credentials, table, bus). Every verb is covered; outcomes are read from the emulator's
//! state (ledger, listener, the test's event bus), not only from the CLI's output; and the
//! emulator's call log shows the CLI only reads and publishes.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, PathPatternConditionConfig, ProtocolEnum,
    RuleCondition, TargetGroupTuple,
};
use greenlight_core::inbound::{
    SteerAction, ABORT_REQUESTED, IMAGE_PUBLISHED, PROMOTE_REQUESTED, ROLLBACK_REQUESTED, SOURCE,
};
use greenlight_core::model::{Phase, PhaseName};
use greenlight_core::ServiceConfig;
use greenlight_e2e::{canary, quick, started, unique, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::lambda_service::built_binary;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::{self, Delivery, Outcome};
use greenlight_steps::RevertOutcome;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the CLI gave back.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// stdout as the one JSON document it must be.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
}

/// The access key the CLI signs with in `env`'s tests (the emulator logs calls per key).
fn cli_key(env: &Env) -> String {
    format!("cli.{}", env.service)
}

/// The built CLI with an empty environment.
fn bare(args: &[&str]) -> tokio::process::Command {
    greenlight_e2e::build_binaries();
    let mut cmd = tokio::process::Command::new(built_binary("greenlight"));
    cmd.args(args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The CLI as an engineer runs it against `env`'s installation.
pub(crate) fn command(env: &Env, args: &[&str]) -> tokio::process::Command {
    let mut cmd = bare(args);
    cmd.env("AWS_ENDPOINT_URL", greenlight_e2e::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", cli_key(env))
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/nonexistent/greenlight-e2e")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/greenlight-e2e")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GREENLIGHT_TABLE", &env.local.names.table)
        .env("GREENLIGHT_EVENT_BUS", &env.local.names.command_bus);
    cmd
}

/// Runs the CLI to its end (at most 90 s).
pub(crate) async fn cli(env: &Env, args: &[&str]) -> Run {
    let child = command(env, args).spawn().expect("spawn greenlight");
    finish(child, args).await
}

async fn finish(child: tokio::process::Child, args: &[&str]) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("greenlight {args:?} did not end within 90 s"))
        .expect("greenlight output");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Who STS says the CLI's caller is (moto answers `arn:aws:sts::123456789012:user/moto`).
pub(crate) const MOTO_USER: &str = "moto";

/// What reached the test's bus (and its functions): every delivery within ~`secs` seconds.
pub(crate) async fn deliveries(env: &Env, secs: u64) -> Vec<Delivery> {
    let mut all = Vec::new();
    for _ in 0..secs {
        all.extend(pump::pump_once(&env.local, Duration::from_secs(1)).await.expect("pump"));
    }
    all
}

/// The one delivery of an event the CLI just published.
async fn delivered(env: &Env) -> Delivery {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut batch = pump::pump_once(&env.local, Duration::from_secs(1)).await.expect("pump");
        if let Some(d) = batch.pop() {
            assert!(batch.is_empty(), "one event expected, got more: {batch:?}");
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was delivered within 10 s"
        );
    }
}

/// Deploys v2 (as the pipeline would) and waits until the deployment is in `want`.
async fn deploying(env: &Env, want: impl Fn(&Phase) -> bool) -> String {
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, want).await;
    id
}

/// The actions the emulator saw the CLI's access key call.
pub(crate) async fn cli_calls(env: &Env) -> Vec<String> {
    let url = format!("{}/_greenlight/calls", greenlight_e2e::endpoint());
    let log: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&greenlight_e2e::http_get(&url).await).expect("call log JSON");
    log.get(&cli_key(env)).cloned().unwrap_or_default()
}

/// Reads and publishing only (`writes` adds the ledger writes of `service register`).
pub(crate) fn assert_reads_and_publishes_only(calls: &[String], writes: &[&str]) {
    let allowed = [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
        "sts:GetCallerIdentity",
        "events:PutEvents",
    ];
    for call in calls {
        assert!(
            allowed.contains(&call.as_str()) || writes.contains(&call.as_str()),
            "the CLI called {call}; it may only read and publish: {calls:?}"
        );
    }
    // The policy the stack offers engineers grants all of it.
    let template = greenlight_e2e::template::Template::load();
    let missing = greenlight_e2e::template::ungranted_by(&template.policy_statements("CliPolicy"), calls);
    assert!(
        missing.is_empty(),
        "the CLI called {missing:?}, which CliPolicy does not grant"
    );
}

#[tokio::test]
async fn read_verbs_show_services_registration_status_and_history() {
    let env = Env::new("cli-read", quick).await;
    let svc = env.service.as_str();

    let services = cli(&env, &["services", "-o", "json"]).await.ok().json();
    let row = services
        .as_array()
        .expect("an array of services")
        .iter()
        .find(|r| r["service"] == svc)
        .unwrap_or_else(|| panic!("{svc} not listed: {services}"));
    assert_eq!(
        (row["live"].as_str(), &row["deployment"]),
        (Some("v1"), &Value::Null),
        "{row}"
    );
    let table = cli(&env, &["services"]).await.ok();
    assert!(table.stdout.starts_with("SERVICE"), "{table:#?}");
    assert!(
        table.stdout.lines().any(|l| l.starts_with(svc) && l.contains("v1")),
        "{table:#?}"
    );

    // `service show -o json` is the registration document itself.
    let shown: ServiceConfig =
        serde_json::from_value(cli(&env, &["service", "show", svc, "-o", "json"]).await.ok().json())
            .expect("a registration document");
    assert_eq!(shown, env.world.config);
    let shown = cli(&env, &["service", "show", svc]).await.ok();
    assert!(
        shown.stdout.contains("rollout") && shown.stdout.contains("100%"),
        "{shown:#?}"
    );

    let status = cli(&env, &["status", svc, "-o", "json"]).await.ok().json();
    assert_eq!(status["live"]["version"], "v1", "{status}");
    assert_eq!(status["deployment"], Value::Null, "{status}");
    assert_eq!(status["warm"], Value::Null, "{status}");
    let live_group = &status["target_groups"][0];
    assert_eq!(
        (live_group["role"].as_str(), live_group["weight"].as_u64()),
        (Some("live"), Some(100))
    );
    let targets: Vec<&str> = live_group["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["instance_id"].as_str().unwrap())
        .collect();
    let mut blue: Vec<&str> = env.world.blue_instances.iter().map(String::as_str).collect();
    blue.sort();
    let mut targets = targets;
    targets.sort();
    assert_eq!(targets, blue, "the blue fleet's targets, from DescribeTargetHealth");
    let status = cli(&env, &["status", svc]).await.ok();
    assert!(status.stdout.contains("none in flight"), "{status:#?}");
    let watched = cli(&env, &["status", svc, "--watch"]).await.ok();
    assert!(watched.stderr.contains("nothing to watch"), "{watched:#?}");

    assert_eq!(cli(&env, &["history", svc, "-o", "json"]).await.ok().json(), json!([]));
    assert!(cli(&env, &["history", svc])
        .await
        .ok()
        .stdout
        .contains("no deployments"));

    assert_reads_and_publishes_only(&cli_calls(&env).await, &[]);
}

/// The fixture's registration as a document for `service register`, renamed, with the
/// release serving today to adopt.
fn registration(env: &Env, service: &str) -> Value {
    let mut doc = serde_json::to_value(&env.world.config).unwrap();
    doc["service"] = service.into();
    // The fixture's alarm belongs to the fixture's service.
    doc["alarms"] = json!([]);
    doc["image_builder_name"] = Value::Null;
    doc["live"] = json!({
        "version": "v1",
        "ami": env.world.ami_v1,
        "target_group": env.world.config.target_groups[0],
        "instance_ids": env.world.blue_instances,
    });
    doc
}

fn write_temp(name: &str, doc: &Value) -> String {
    let path = std::env::temp_dir().join(format!("greenlight-cli-{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn register_creates_a_new_service_and_an_invalid_file_changes_nothing() {
    let env = Env::new("cli-reg", quick).await;
    let ledger = &env.local.ports.ledger;

    let name = unique("cli-new");
    let file = write_temp(&name, &registration(&env, &name));
    let run = cli(&env, &["service", "register", &file]).await.ok();
    assert!(
        run.stdout.contains(&format!("registered {name} (new), adopting v1")),
        "{run:#?}"
    );
    let state = ledger
        .load(&name, None)
        .await
        .unwrap()
        .expect("registered in the ledger");
    assert_eq!(state.service.live.as_ref().map(|l| l.version.as_str()), Some("v1"));
    assert_eq!(state.service.live.unwrap().instance_ids, env.world.blue_instances);
    let mut doc = registration(&env, &name);
    doc.as_object_mut().unwrap().remove("live");
    assert_eq!(state.config, serde_json::from_value::<ServiceConfig>(doc).unwrap());
    let again = cli(&env, &["service", "register", &file, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        again,
        json!({"service": name, "action": "updated", "live": null, "live_ignored": true})
    );
    let listed = cli(&env, &["services", "-o", "json"]).await.ok().json();
    assert!(
        listed.as_array().unwrap().iter().any(|r| r["service"] == name.as_str()),
        "{listed}"
    );

    // Four problems at once; nothing written.
    let bad_name = unique("cli-bad");
    let mut bad = registration(&env, &bad_name);
    bad["rollout"]["canary_steps"] = json!([50, 10]);
    bad["launch"]["count"] = 0.into();
    bad["launch"]["subnet_id"] = "nope".into();
    bad["live"]["target_group"] = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/1".into();
    let run = cli(&env, &["service", "register", &write_temp(&bad_name, &bad)]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    for problem in [
        "canary_steps",
        "launch.count",
        "launch.subnet_id",
        "live.target_group",
        "nothing was written",
    ] {
        assert!(
            run.stderr.contains(problem),
            "stderr should mention {problem}: {run:#?}"
        );
    }
    assert!(run.stderr.contains("4 problem(s)"), "{run:#?}");
    assert!(
        ledger.load(&bad_name, None).await.unwrap().is_none(),
        "nothing registered"
    );

    // An approval pause that cannot work is refused with the way to fix it; a misspelt one
    // is named.
    for (steps, problem) in [
        (json!([10, 100, "pause"]), "a \"pause\" after 100"),
        (json!([10, "pause", "pause", 100]), "in a row"),
        (
            json!([10, "paus", 100]),
            "\"paus\" is neither a percentage nor \"pause\"",
        ),
    ] {
        let mut paused = registration(&env, &bad_name);
        paused["rollout"]["canary_steps"] = steps;
        let run = cli(&env, &["service", "register", &write_temp(&bad_name, &paused)]).await;
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(run.stderr.contains(problem), "stderr should say {problem}: {run:#?}");
        assert!(
            ledger.load(&bad_name, None).await.unwrap().is_none(),
            "nothing registered"
        );
    }

    // Lifecycle hooks that cannot work: an unknown stage or kind, a function greenlight's
    // roles may not invoke, a webhook in the clear, a secret they may not read.
    let lambda = "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-checks";
    for (hook, problem) in [
        (
            json!({"name": "x", "stage": "before_lunch", "lambda": lambda}),
            "unknown variant `before_lunch`",
        ),
        (
            json!({"name": "x", "stage": "all_traffic", "sqs": "q"}),
            "unknown field `sqs`",
        ),
        (json!({"name": "x", "stage": "all_traffic"}), "exactly one of"),
        (
            json!({"name": "x", "stage": "all_traffic", "lambda": "arn:aws:lambda:us-east-1:123456789012:function:payments"}),
            "must be named greenlight-hook-",
        ),
        (
            json!({"name": "x", "stage": "after_revert", "webhook": {"url": "http://hooks.example.com/x",
                "secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:greenlight/hooks/ci"}}),
            "plain http only to a loopback host",
        ),
        (
            json!({"name": "x", "stage": "after_revert", "webhook": {"url": "https://hooks.example.com/x",
                "secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db"}}),
            "named greenlight/hooks/",
        ),
    ] {
        let mut hooked = registration(&env, &bad_name);
        hooked["hooks"] = json!([hook]);
        let run = cli(&env, &["service", "register", &write_temp(&bad_name, &hooked)]).await;
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(run.stderr.contains(problem), "stderr should say {problem}: {run:#?}");
        assert!(
            ledger.load(&bad_name, None).await.unwrap().is_none(),
            "nothing registered"
        );
    }

    // Unknown fields are named; an unreadable file is a usage error.
    let mut typo = registration(&env, &bad_name);
    typo["bake_window"] = 5.into();
    let run = cli(
        &env,
        &["service", "register", &write_temp(&format!("{bad_name}-typo"), &typo)],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("unknown field `bake_window`"), "{run:#?}");
    assert!(
        ledger.load(&bad_name, None).await.unwrap().is_none(),
        "nothing registered"
    );
    let run = cli(&env, &["service", "register", "/nonexistent/registration.json"]).await;
    assert_eq!(run.code, 2, "{run:#?}");

    assert_reads_and_publishes_only(
        &cli_calls(&env).await,
        &["dynamodb:PutItem", "dynamodb:TransactWriteItems"],
    );
}

/// A forward action over `(target group, weight)`.
fn forward(weights: &[(&str, i32)]) -> Action {
    let mut config = ForwardActionConfig::builder();
    for (tg, weight) in weights {
        config = config.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(*tg)
                .weight(*weight)
                .build(),
        );
    }
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config.build())
        .build()
}

/// A new HTTP listener on the fixture's load balancer, on `port`, with `action` as its default.
async fn listener(env: &Env, port: i32, action: Action) -> String {
    let elb = &env.local.clients.elb;
    let alb = elb
        .describe_listeners()
        .listener_arns(&env.world.listener_arn)
        .send()
        .await
        .expect("describe the fixture's listener")
        .listeners()[0]
        .load_balancer_arn()
        .expect("its load balancer")
        .to_string();
    elb.create_listener()
        .load_balancer_arn(alb)
        .protocol(ProtocolEnum::Http)
        .port(port)
        .default_actions(action)
        .send()
        .await
        .expect("create listener")
        .listeners()[0]
        .listener_arn()
        .expect("listener arn")
        .to_string()
}

#[tokio::test]
async fn register_refuses_switch_points_greenlight_cannot_own_and_takes_a_listener_and_a_rule() {
    let env = Env::new("cli-switch", quick).await;
    let ledger = &env.local.ports.ledger;
    let elb = &env.local.clients.elb;
    let [ours, _] = &env.world.config.target_groups;

    // A listener answering itself, one forwarding to a target group of another service, and
    // one that does not exist: three problems, each naming its point; nothing written.
    let fixed = listener(
        &env,
        8081,
        Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("503")
                    .content_type("text/plain")
                    .build(),
            )
            .build(),
    )
    .await;
    let foreign_tg = elb
        .create_target_group()
        .name(format!("{}-x", env.service))
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&env.world.vpc_id)
        .send()
        .await
        .expect("create target group")
        .target_groups()[0]
        .target_group_arn()
        .expect("target group arn")
        .to_string();
    let foreign = listener(&env, 8082, forward(&[(ours, 90), (&foreign_tg, 10)])).await;
    let missing = format!("{}0", env.world.listener_arn);
    let name = unique("cli-sw-bad");
    let mut doc = registration(&env, &name);
    doc["switch"] = json!([
        {"listener_arn": fixed, "rule_arn": null},
        {"listener_arn": foreign},
        {"listener_arn": missing},
    ]);
    let run = cli(&env, &["service", "register", &write_temp(&name, &doc)]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    for said in [
        "(3 problem(s)); nothing was written",
        &format!("switch[0]: {fixed} has a fixed-response action"),
        &format!("switch[1]: {foreign} forwards to {foreign_tg}, which is not one of the service's target groups"),
        &format!("switch[2]: no listener {missing}"),
    ] {
        assert!(run.stderr.contains(said), "stderr should say {said:?}: {run:#?}");
    }
    assert!(ledger.load(&name, None).await.unwrap().is_none(), "nothing registered");

    // One point that cannot be owned is enough to refuse.
    doc["switch"] = json!({"listener_arn": fixed, "rule_arn": null});
    let run = cli(&env, &["service", "register", &write_temp(&name, &doc)]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("1 problem(s)") && run.stderr.contains(&fixed),
        "{run:#?}"
    );
    assert!(ledger.load(&name, None).await.unwrap().is_none(), "nothing registered");

    // The listener's default action and a rule of it: two points, both forwarding to the
    // service's live group; accepted, and `status` shows both with their weights.
    let rule = elb
        .create_rule()
        .listener_arn(&env.world.listener_arn)
        .priority(20)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().values("/admin/*").build())
                .build(),
        )
        .actions(forward(&[(ours, 1)]))
        .send()
        .await
        .expect("create rule")
        .rules()[0]
        .rule_arn()
        .expect("rule arn")
        .to_string();
    let name = unique("cli-sw-two");
    let mut doc = registration(&env, &name);
    doc["switch"] = json!([
        {"listener_arn": env.world.listener_arn},
        {"listener_arn": env.world.listener_arn, "rule_arn": rule},
    ]);
    let run = cli(&env, &["service", "register", &write_temp(&name, &doc)]).await.ok();
    assert!(run.stdout.contains(&format!("registered {name} (new)")), "{run:#?}");
    let state = ledger.load(&name, None).await.unwrap().expect("registered");
    let arns: Vec<&str> = state.config.switch.points().iter().map(|p| p.arn()).collect();
    assert_eq!(arns, [env.world.listener_arn.as_str(), rule.as_str()]);
    // A rule of another listener is refused before it is read.
    let mut other = doc.clone();
    other["switch"][1]["listener_arn"] = fixed.clone().into();
    let run = cli(&env, &["service", "register", &write_temp(&name, &other)]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .contains(&format!("rule {rule} is not a rule of listener {fixed}")),
        "{run:#?}"
    );

    let status = cli(&env, &["status", &name, "-o", "json"]).await.ok().json();
    let ours_name = ours.split('/').nth(1).unwrap();
    assert_eq!(
        status["switch_points"],
        json!([
            {"arn": env.world.listener_arn, "weights": [{"target_group": ours, "name": ours_name, "weight": 100}]},
            {"arn": rule, "weights": [{"target_group": ours, "name": ours_name, "weight": 100}]},
        ]),
        "{status}"
    );
    let table = cli(&env, &["status", &name]).await.ok();
    for (kind, arn) in [("listener", &env.world.listener_arn), ("rule", &rule)] {
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.contains(&format!("{kind:<9}{arn}   [{ours_name} 100%]"))),
            "{kind} {arn} with its weights: {table:#?}"
        );
    }
    assert!(!table.stdout.contains("not the first point's"), "{table:#?}");

    let calls = cli_calls(&env).await;
    assert_reads_and_publishes_only(&calls, &["dynamodb:PutItem", "dynamodb:TransactWriteItems"]);
    for read in [
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
    ] {
        assert!(calls.iter().any(|c| c == read), "{read} in {calls:?}");
    }
}

#[tokio::test]
async fn deploy_publishes_image_published_and_the_deployment_succeeds() {
    let env = Env::new("cli-deploy", quick).await;
    let svc = env.service.as_str();
    let ami = env.image("v2", App::Healthy).await;

    let published = cli(
        &env,
        &[
            "deploy",
            svc,
            "--ami",
            &ami,
            "--version",
            "v2",
            "--reason",
            "cli e2e",
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(published["detail_type"], IMAGE_PUBLISHED);
    assert!(!published["event_id"].as_str().unwrap().is_empty(), "{published}");
    assert_eq!(
        published["requested_by"], MOTO_USER,
        "requested_by from STS GetCallerIdentity"
    );

    let delivery = delivered(&env).await;
    assert_eq!(
        (delivery.event["source"].as_str(), delivery.event["id"].as_str()),
        (Some(SOURCE), published["event_id"].as_str())
    );
    assert_eq!(
        delivery.event["detail"],
        json!({"service": svc, "version": "v2", "ami": ami, "requested_by": MOTO_USER, "reason": "cli e2e"})
    );
    let id = started(&delivery.result);
    assert_eq!(
        published["deploy_id"].as_str(),
        Some(id.as_str()),
        "the CLI names the deployment it starts"
    );
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    assert_eq!(
        (dep.requested_by.as_str(), dep.reason.as_deref(), dep.source.as_str()),
        (MOTO_USER, Some("cli e2e"), "greenlight")
    );
    assert_eq!(env.weights().await, [("b", 100)]);

    let history = cli(&env, &["history", svc, "-o", "json"]).await.ok().json();
    let row = &history[0];
    assert_eq!(
        (row["deploy_id"].as_str(), row["outcome"].as_str()),
        (Some(id.as_str()), Some("succeeded")),
        "{history}"
    );
    assert_eq!(
        (row["requested_by"].as_str(), row["reason"].as_str()),
        (Some(MOTO_USER), Some("cli e2e"))
    );
    assert!(
        row["time_to_healthy_s"].is_u64() && row["finished_at"].is_string(),
        "{row}"
    );
    let table = cli(&env, &["history", svc, "--limit", "1"]).await.ok();
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("moto: cli e2e"),
        "{table:#?}"
    );
    let status = cli(&env, &["status", svc, "-o", "json"]).await.ok().json();
    assert_eq!(status["live"]["version"], "v2");

    // Refused before publishing: a downgrade, the same image again.
    let run = cli(&env, &["deploy", svc, "--ami", &env.world.ami_v1, "--version", "v1"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("older than the live version v2"), "{run:#?}");
    let run = cli(&env, &["deploy", svc, "--ami", &ami, "--version", "v2"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("--attempt 2") || run.stderr.contains("already live"),
        "{run:#?}"
    );
    assert!(deliveries(&env, 2).await.is_empty(), "nothing published");
    assert_reads_and_publishes_only(&cli_calls(&env).await, &[]);
}

#[tokio::test]
async fn deploy_watch_follows_the_deployment_to_its_end() {
    let env = Env::new("cli-watch", quick).await;
    let svc = env.service.as_str();
    let ami = env.image("v2", App::Healthy).await;
    let args = [
        "deploy",
        svc,
        "--ami",
        &ami,
        "--version",
        "v2",
        "--watch",
        "--requested-by",
        "carol",
    ];
    let child = command(&env, &args).spawn().expect("spawn");
    let id = started(&delivered(&env).await.result);
    let run = finish(child, &args).await.ok();

    // Not a terminal: one line per change, ending with the outcome.
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(&id) && l.contains('['))
        .collect();
    assert!(lines.len() >= 2, "a line per change: {run:#?}");
    assert!(lines.iter().any(|l| l.contains("[##########] 100%")), "{run:#?}");
    assert!(
        run.stdout
            .trim_end()
            .ends_with(&format!("deployment {id} succeeded: {svc} v2 is live")),
        "{run:#?}"
    );
    assert!(
        !run.stdout.contains("\x1b["),
        "no redrawing when stdout is not a terminal"
    );
    let dep = env.deployment(&id).await;
    assert_eq!((dep.phase, dep.requested_by.as_str()), (Phase::Succeeded, "carol"));
}

#[tokio::test]
async fn status_during_a_canary_then_rollback_puts_traffic_back() {
    let env = Env::new("cli-rollback", |s| Spec {
        step_wait_s: 120,
        ..canary(s)
    })
    .await;
    let svc = env.service.as_str();
    let id = deploying(&env, |p| matches!(p, Phase::Verifying { weight: 10, .. })).await;

    let status = cli(&env, &["status", svc, "-o", "json"]).await.ok().json();
    let dep = &status["deployment"];
    assert_eq!(
        (dep["deploy_id"].as_str(), dep["phase"].as_str()),
        (Some(id.as_str()), Some("verifying")),
        "{status}"
    );
    assert_eq!(
        (dep["weight"].as_u64(), dep["from_version"].as_str()),
        (Some(10), Some("v1"))
    );
    assert_eq!(status["fast_rollback_ready"], true);
    let roles: BTreeMap<&str, (u64, usize)> = status["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let healthy = g["targets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["state"] == "healthy")
                .count();
            (g["role"].as_str().unwrap(), (g["weight"].as_u64().unwrap(), healthy))
        })
        .collect();
    assert_eq!(
        roles,
        BTreeMap::from([("blue", (90, 2)), ("green", (10, 2))]),
        "{status}"
    );
    let table = cli(&env, &["status", svc]).await.ok();
    assert!(
        table.stdout.contains("[#.........] 10%") && table.stdout.contains("verifying"),
        "{table:#?}"
    );
    let services = cli(&env, &["services", "-o", "json"]).await.ok().json();
    let row = services
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == svc)
        .unwrap();
    let mut in_flight = row["deployment"].clone();
    assert!(in_flight["in_phase_s"].as_u64().is_some_and(|s| s < 120), "{in_flight}");
    in_flight.as_object_mut().unwrap().remove("in_phase_s");
    assert_eq!(
        in_flight,
        json!({"deploy_id": id, "version": "v2", "phase": "verifying", "weight": 10})
    );

    let published = cli(&env, &["rollback", svc, "--reason", "p99 doubled", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        (published["detail_type"].as_str(), published["deploy_id"].as_str()),
        (Some(ROLLBACK_REQUESTED), Some(id.as_str()))
    );
    match env.deliver(1).await.remove(0) {
        Ok(Outcome::Revert(RevertOutcome::Reverted { deploy_id, .. })) => assert_eq!(deploy_id, id),
        other => panic!("expected revert-service to roll back, got {other:?}"),
    }
    assert_eq!(env.weights().await, [("a", 100)], "traffic back on v1");
    let revert = env
        .deployment(&id)
        .await
        .revert
        .expect("the ledger records the rollback");
    assert_eq!(
        (
            revert.requested_by.as_str(),
            revert.reason.as_str(),
            revert.event_id.as_str()
        ),
        (MOTO_USER, "p99 doubled", published["event_id"].as_str().unwrap())
    );
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    let history = cli(&env, &["history", svc, "-o", "json"]).await.ok().json();
    assert_eq!(
        (history[0]["outcome"].as_str(), history[0]["reverted_by"].as_str()),
        (Some("aborted"), Some(MOTO_USER))
    );
    assert!(history[0]["time_to_revert_ms"].is_u64(), "{history}");

    let calls = cli_calls(&env).await;
    assert_reads_and_publishes_only(&calls, &[]);
    for expected in [
        "sts:GetCallerIdentity",
        "events:PutEvents",
        "elasticloadbalancing:DescribeTargetHealth",
    ] {
        assert!(calls.iter().any(|c| c == expected), "{expected} in {calls:?}");
    }
}

#[tokio::test]
async fn drill_in_the_bake_window_reports_time_to_revert() {
    let env = Env::new("cli-drill", |s| Spec {
        step_wait_s: 1,
        bake_window_s: 120,
        ..canary(s)
    })
    .await;
    let svc = env.service.as_str();

    // Nothing in flight: refused, nothing published.
    let run = cli(&env, &["drill", svc]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("no deployment is in flight") && run.stderr.contains("--allow-slow"),
        "{run:#?}"
    );
    assert!(deliveries(&env, 2).await.is_empty(), "nothing published");

    let id = deploying(&env, |p| matches!(p, Phase::Baking { .. })).await;
    // Green is live: too late to abort (a rollback is the way back), refused before publishing.
    let run = cli(&env, &["abort", svc, "--reason", "x"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("too late to abort") && run.stderr.contains("greenlight rollback"),
        "{run:#?}"
    );
    assert!(deliveries(&env, 1).await.is_empty(), "nothing published");
    let args = ["drill", svc, "--reason", "game day", "--timeout", "60", "-o", "json"];
    let child = command(&env, &args).spawn().expect("spawn");
    let delivery = delivered(&env).await;
    assert_eq!(delivery.event["detail"]["reason"], "drill: game day");
    let report = finish(child, &args).await.ok().json();
    assert_eq!(
        (
            report["reverted"].as_bool(),
            report["path"].as_str(),
            report["deploy_id"].as_str()
        ),
        (Some(true), Some("fast"), Some(id.as_str())),
        "{report}"
    );
    assert_eq!(
        (report["from_version"].as_str(), report["back_to"].as_str()),
        (Some("v2"), Some("v1"))
    );
    let ttr = report["time_to_revert_ms"].as_u64().expect("time_to_revert_ms");
    let receipt = report["receipt_to_revert_ms"].as_u64().expect("receipt_to_revert_ms");
    assert!(receipt <= ttr + 1000 && ttr < 60_000, "{report}");
    assert_eq!(report["back_on_target_group"], env.world.config.target_groups[0]);
    assert_eq!(env.weights().await, [("a", 100)], "traffic back on v1");
    let revert = env.deployment(&id).await.revert.expect("rolled back");
    assert_eq!(
        (revert.event_id.as_str(), revert.reason.as_str()),
        (report["event_id"].as_str().unwrap(), "drill: game day")
    );
    assert_eq!(revert.time_to_revert_ms(), Some(ttr));
}

/// A canary that only a promotion finishes within the test.
fn slow_canary(service: &str) -> Spec {
    Spec {
        step_wait_s: 300,
        bake_window_s: 3600,
        ..canary(service)
    }
}

/// Publishes `verb` with the CLI and returns what reached the bus, after checking the event.
async fn steer(env: &Env, verb: &str, detail_type: &str, deploy_id: &str) -> Delivery {
    let svc = env.service.as_str();
    let published = cli(env, &[verb, svc, "--reason", "e2e says so", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        (published["detail_type"].as_str(), published["deploy_id"].as_str()),
        (Some(detail_type), Some(deploy_id))
    );
    let delivery = delivered(env).await;
    assert_eq!(
        (
            delivery.event["source"].as_str(),
            delivery.event["detail-type"].as_str()
        ),
        (Some(SOURCE), Some(detail_type))
    );
    assert_eq!(delivery.event["id"], published["event_id"]);
    assert_eq!(
        delivery.event["detail"],
        json!({"service": svc, "reason": "e2e says so", "requested_by": MOTO_USER})
    );
    delivery
}

#[tokio::test]
async fn promote_publishes_promote_requested_and_the_canary_finishes() {
    let env = Env::new("cli-promote", slow_canary).await;
    let svc = env.service.as_str();
    for verb in ["promote", "abort"] {
        let run = cli(&env, &[verb, svc, "--reason", "x"]).await;
        assert_eq!(run.code, 1, "{run:#?}");
        assert!(run.stderr.contains("no deployment in flight"), "{run:#?}");
    }
    assert!(deliveries(&env, 2).await.is_empty(), "nothing published");

    let id = deploying(&env, |p| matches!(p, Phase::Verifying { weight: 10, .. })).await;
    let delivery = steer(&env, "promote", PROMOTE_REQUESTED, &id).await;
    match delivery.result {
        Ok(Outcome::Steer(outcome)) => {
            assert_eq!(
                (outcome.deploy_id.as_str(), outcome.action),
                (id.as_str(), SteerAction::Promote)
            )
        }
        other => panic!("expected steer-deployment's outcome, got {other:?}"),
    }
    env.wait_for_phase(&id, |p| *p == Phase::Succeeded).await;
    assert_eq!(env.weights().await, [("b", 100)]);
}

#[tokio::test]
async fn abort_publishes_abort_requested_and_traffic_goes_back() {
    let env = Env::new("cli-abort", slow_canary).await;
    let id = deploying(&env, |p| matches!(p, Phase::Verifying { weight: 10, .. })).await;
    let delivery = steer(&env, "abort", ABORT_REQUESTED, &id).await;
    match delivery.result {
        Ok(Outcome::Steer(outcome)) => assert_eq!(
            (outcome.deploy_id.as_str(), outcome.action),
            (id.as_str(), SteerAction::Abort)
        ),
        other => panic!("expected steer-deployment's outcome, got {other:?}"),
    }
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Aborted { .. })).await;
    assert!(
        matches!(&dep.phase, Phase::Aborted { reason } if reason.contains("e2e says so")),
        "{:?}",
        dep.phase
    );
    assert_eq!(env.weights().await, [("a", 100)]);
    assert!(env.live_instances_of(&id).await.is_empty(), "green terminated");
}

#[tokio::test]
async fn usage_errors_exit_2_and_unknown_services_exit_1_changing_nothing() {
    let env = Env::new("cli-refuse", quick).await;
    let svc = env.service.as_str();
    let ami = "ami-0123456789abcdef0";
    let usage: &[&[&str]] = &[
        &["deploy", svc, "--ami", "ami-xyz", "--version", "v2"],
        &["deploy", svc, "--ami", ami, "--version", "latest"],
        &["deploy", svc, "--version", "v2"],
        &["status", "Check Out"],
        &["rollback", svc],
        &["abort", svc, "--reason", ""],
        &["history", svc, "--limit", "many"],
        &["drill", svc, "--timeout", "0"],
        &["frobnicate"],
        &["status", svc, "-o", "yaml"],
    ];
    for args in usage {
        let run = cli(&env, args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        // clap's: the usage line, or for a bad value what is wrong with it and where to look.
        let usage = run.stderr.contains("Usage: greenlight") || run.stderr.contains("try '--help'");
        assert!(usage, "{args:?}: {run:#?}");
    }
    let run = cli(&env, &["deploy", svc, "--ami", "ami-xyz", "--version", "v2"]).await;
    assert!(run.stderr.contains("invalid AMI id"), "{run:#?}");

    let unknown = unique("cli-nosuch");
    let u = unknown.as_str();
    let refused: &[&[&str]] = &[
        &["status", u],
        &["history", u],
        &["service", "show", u],
        &["deploy", u, "--ami", ami, "--version", "v2"],
        &["rollback", u, "--reason", "x"],
        &["abort", u, "--reason", "x"],
        &["promote", u, "--reason", "x"],
        &["drill", u],
    ];
    for args in refused {
        let run = cli(&env, args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert!(
            run.stderr.contains(&format!("service {u} is not registered"))
                && run.stderr.contains("greenlight service register <file>"),
            "{args:?}: {run:#?}"
        );
    }
    assert!(env.local.ports.ledger.load(u, None).await.unwrap().is_none());
    assert!(deliveries(&env, 2).await.is_empty(), "nothing published");

    // Who asks must be known: no silent fallback when STS cannot answer.
    let run = cli(
        &env,
        &[
            "deploy",
            svc,
            "--ami",
            ami,
            "--version",
            "v2",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("STS GetCallerIdentity") && run.stderr.contains("credentials"),
        "{run:#?}"
    );
    assert_reads_and_publishes_only(&cli_calls(&env).await, &[]);
}

/// Runs the CLI with no AWS configuration at all (help, completions).
async fn offline(args: &[&str]) -> Run {
    finish(bare(args).spawn().expect("spawn greenlight"), args).await
}

#[tokio::test]
async fn every_verb_teaches_with_an_example_and_completions_print() {
    let top = offline(&["--help"]).await.ok();
    assert!(
        top.stdout.contains("The CLI NEVER changes fleets or listeners"),
        "{top:#?}"
    );
    let verbs: &[&[&str]] = &[
        &["services"],
        &["service", "register"],
        &["service", "show"],
        &["status"],
        &["history"],
        &["deploy"],
        &["rollback"],
        &["abort"],
        &["promote"],
        &["drill"],
        &["completions"],
    ];
    for verb in verbs {
        let args = [*verb, &["--help"]].concat();
        let run = offline(&args).await.ok();
        assert!(run.stdout.contains("Example"), "{args:?}: {run:#?}");
        assert!(
            run.stdout.contains(&format!("greenlight {}", verb.join(" "))),
            "{args:?}: {run:#?}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let run = offline(&["completions", shell]).await.ok();
        assert!(
            run.stdout.contains("greenlight") && run.stdout.contains("rollback"),
            "{shell}: {run:#?}"
        );
    }
}
