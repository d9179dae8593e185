//! Contract test of the shipped artifacts: every function runs as its own process of the
//! one bootstrap against a fake Lambda Runtime API, with its own `_HANDLER` (its template
//! `Handler`), its own credentials and only the environment its template gives it; the
//! committed state machine definition drives the step functions; the
//! AWS endpoint is the emulator. The sample events from `events/` go in; the emulator's state,
//! the functions' responses and their metric lines (EMF) are checked; and every AWS action a
//! function's process called must be granted to that function's role in
//! `infra/template.yaml`.

use greenlight_core::announce::check_sequence;
use greenlight_core::hook::{Hook, OnTimeout, Stage, Webhook};
use greenlight_core::model::PhaseName;
use greenlight_e2e::stack::{pipe_access_key, Stack, FUNCTIONS};
use greenlight_e2e::template::ungranted_by;
use greenlight_e2e::{canary, function_access_key, now_rfc3339, sample_event, App, Env};
use greenlight_local::asl::Ending;
use greenlight_local::fixture::{alarm_name, Spec};
use greenlight_local::hooks::{put_secret, serve_as_lambda, signed_with, Answer, HookServer};
use greenlight_local::lambda_service::{built_binary, Function, FunctionSpec, BOOTSTRAP};
use greenlight_steps::lambda::Function as Handler;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The value of metric `name` in the EMF documents of `service`, checking the document
/// declares it with the service as a dimension.
fn metric(docs: &[Value], service: &str, name: &str) -> Vec<u64> {
    docs.iter()
        .filter(|doc| doc["service"] == service)
        .filter(|doc| {
            let declared = &doc["_aws"]["CloudWatchMetrics"][0];
            declared["Namespace"] == "greenlight"
                && declared["Dimensions"][0] == json!(["service"])
                && declared["Metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["Name"] == name)
        })
        .filter_map(|doc| doc[name].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_binaries_roll_out_revert_on_an_alarm_and_refuse_bad_input() {
    // A ledger table of its own: reconcile-services looks at every service registered in it.
    // Canary analysis declared (no traffic here: each judged step fetches its metrics, finds
    // no requests, and continues at its deadline as declared), so the shipped shift-traffic
    // and retire-blue call GetMetricData under their role.
    // Lifecycle hooks, so that the shipped functions call them under their roles: a Lambda
    // function when green is verified (shift-traffic), a signed webhook before green is
    // declared live (finalize) and one after v3's revert (abort-deployment).
    const SIGNING_KEY: &str = "contract-webhook-key";
    let secret = put_secret(
        greenlight_e2e::endpoint(),
        &format!("greenlight/hooks/{}", greenlight_e2e::unique("contract")),
        SIGNING_KEY,
    )
    .await
    .expect("the webhook's secret");
    let function_hook = HookServer::start(vec![Answer::succeeded()]).await.unwrap();
    let webhook = HookServer::start(vec![Answer::succeeded()]).await.unwrap();
    let hooks = |s: &str| {
        let webhook_at = |name: &str, stage| Hook {
            name: name.into(),
            stage,
            lambda: None,
            webhook: Some(Webhook {
                url: webhook.url.clone(),
                secret: secret.clone(),
            }),
            callback_delay_s: 1,
            timeout_s: 60,
            on_timeout: OnTimeout::Rollback,
            request_timeout_s: 10,
        };
        vec![
            Hook {
                name: "verified".into(),
                stage: Stage::GreenVerified,
                lambda: Some(format!(
                    "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-{s}"
                )),
                webhook: None,
                ..webhook_at("x", Stage::GreenVerified)
            },
            webhook_at("live", Stage::AllTraffic),
            webhook_at("reverted", Stage::AfterRevert),
        ]
    };
    let env = Env::alone("contract", |s| Spec {
        hooks: hooks(s),
        analysis: Some(
            serde_json::from_value(json!({
                "metrics": [{"error_rate": {"tolerance_pp": 0.5}}],
                "period_s": 1, "lag_s": 0, "max_step_s": 2, "inconclusive": "continue"
            }))
            .expect("a valid analysis"),
        ),
        ..canary(s)
    })
    .await;
    serve_as_lambda(
        greenlight_e2e::endpoint(),
        &format!("greenlight-hook-{}", env.service),
        &function_hook,
    )
    .await
    .expect("serve the hook function");
    let (v2, v3) = (env.image("v2", App::Healthy).await, env.image("v3", App::Healthy).await);
    let service = env.service.clone();
    let stack = Stack::start(env).await;

    // One bootstrap serves all eleven: the same executable in every process, each started with
    // its own handler and its own credentials.
    assert_eq!(stack.functions.len(), Handler::ALL.len());
    for (name, _) in FUNCTIONS {
        let function = &stack.functions[name];
        assert_eq!(function.binary, built_binary(BOOTSTRAP), "{name}");
        assert_eq!(function.handler.as_deref(), Some(name));
        let pid = function.pid().expect("running");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("its executable");
        assert_eq!(exe.file_name().unwrap(), BOOTSTRAP, "{name}");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("its environment");
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(vars.contains(&format!("_HANDLER={name}")), "{name}: {vars:?}");
        let key = format!("AWS_ACCESS_KEY_ID={}", function_access_key(&service, name));
        assert!(vars.contains(&key), "{name}: {vars:?}");
    }

    // Bad input first: a clear error, and nothing started.
    let malformed = sample_event("image-published.json", &[("/detail", json!({"service": service}))]);
    let refused = stack.invoke("start-deployment", &malformed).await.unwrap_err();
    assert!(refused.starts_with("greenlight.Rejected: "), "{refused}");
    let bad_step = stack.invoke("launch-green", &json!({"deploy": "x"})).await.unwrap_err();
    assert!(bad_step.starts_with("greenlight.Rejected: "), "{bad_step}");
    let promote = sample_event("promote-requested.json", &[("/detail/service", json!(service))]);
    let nothing = stack.invoke("steer-deployment", &promote).await.unwrap_err();
    assert!(nothing.contains("no deployment in flight"), "{nothing}");
    assert!(stack.executions().await.is_empty());

    // The sample ImagePublished, for this service's image of `version`.
    let image_published = |version: &str, ami: &str| {
        sample_event(
            "image-published.json",
            &[
                ("/id", json!(format!("contract-{version}-{service}"))),
                ("/time", json!(now_rfc3339())),
                ("/detail/service", json!(service)),
                ("/detail/version", json!(version)),
                ("/detail/ami", json!(ami)),
            ],
        )
    };

    // v2, through every step of the state machine.
    let event = image_published("v2", &v2);
    let started = stack.invoke("start-deployment", &event).await.expect("start v2");
    let v2_id = started["deploy_id"].as_str().expect("a deploy id").to_string();
    match stack.ending(&v2_id).await {
        Ending::Succeeded(out) => assert_eq!(out["phase"], "succeeded", "{out}"),
        other => panic!("v2's execution: {other:?}"),
    }
    // A duplicate delivery of the event starts nothing new.
    let again = stack.invoke("start-deployment", &event).await.expect("duplicate");
    assert_eq!(again["deploy_id"], json!(v2_id), "{again}");
    assert_eq!(stack.executions().await, vec![v2_id.clone()]);

    let env = &stack.env;
    assert_eq!(env.weights().await, vec![("b", 100)]);
    let state = env.ledger(None).await;
    assert_eq!(state.service.live.as_ref().unwrap().version, "v2");
    let blue = env.deployment(&v2_id).await.blue.unwrap().instance_ids;
    assert!(env
        .states(&blue)
        .await
        .values()
        .all(|s| s == "terminated" || s == "shutting-down"));

    // v3 rolls out; its alarm fires during the bake window; revert-service puts v2 back.
    let v3_id = stack
        .invoke("start-deployment", &image_published("v3", &v3))
        .await
        .expect("start v3")["deploy_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.wait_for_phase(&v3_id, |p| matches!(p, greenlight_core::model::Phase::Baking { .. }))
        .await;
    assert_eq!(env.weights().await, vec![("a", 100)], "v3 is live, v2 warm");
    let alarm = sample_event(
        "cloudwatch-alarm-state-change-alarm.json",
        &[
            ("/id", json!(format!("contract-alarm-{service}"))),
            ("/time", json!(now_rfc3339())),
            ("/detail/alarmName", json!(alarm_name(&service))),
        ],
    );
    let reverted = stack.invoke("revert-service", &alarm).await.expect("revert");
    assert_eq!(reverted["outcome"], "reverted", "{reverted}");
    assert_eq!(env.weights().await, vec![("b", 100)], "traffic is back on v2");
    match stack.ending(&v3_id).await {
        Ending::Succeeded(out) => assert_eq!(out["phase"], "aborted", "{out}"),
        other => panic!("v3's execution: {other:?}"),
    }
    let v3 = env.deployment(&v3_id).await;
    assert_eq!(v3.revert.as_ref().unwrap().back_to, "v2");
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v2");
    // The clean-up (drain, terminate) ran in its own execution; no v3 instance is left.
    for _ in 0..100 {
        if env.live_instances_of(&v3_id).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(env.live_instances_of(&v3_id).await.is_empty());

    // The scheduled reconcile looks at every registered service (this installation's one)
    // and finds nothing stuck; anything but its schedule is refused.
    let run = sample_event(
        "scheduled-reconcile.json",
        &[("/id", json!(format!("contract-reconcile-{service}")))],
    );
    let reconciled = stack.invoke("reconcile-services", &run).await.expect("reconcile");
    assert_eq!(
        (reconciled["services"].clone(), reconciled["actions"].clone()),
        (json!(1), json!([])),
        "{reconciled}"
    );
    let not_scheduled = stack.invoke("reconcile-services", &alarm).await.unwrap_err();
    assert!(not_scheduled.starts_with("greenlight.Rejected: "), "{not_scheduled}");

    // The metrics CloudWatch would extract from the functions' stdout.
    let docs = stack.metrics();
    assert_eq!(metric(&docs, &service, "TimeToHealthy").len(), 2, "{docs:#?}");
    let to_revert = metric(&docs, &service, "TimeToRevert");
    assert_eq!(to_revert.len(), 1, "{docs:#?}");
    assert!(to_revert[0] < 60_000, "time-to-revert {} ms", to_revert[0]);
    let ended: Vec<&str> = docs
        .iter()
        .filter(|d| d["service"] == service && d.get("DeploymentDuration").is_some())
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(ended.iter().filter(|o| **o == "succeeded").count(), 1, "{ended:?}");
    assert_eq!(ended.iter().filter(|o| **o == "aborted").count(), 1, "{ended:?}");

    // The deployment events, through the pipe and the announce-deployments process: each
    // deployment's every phase change, ending where the ledger ends it.
    let ended = |seen: &greenlight_e2e::Announced| {
        [&v2_id, &v3_id].iter().all(|id| {
            seen.get(*id)
                .and_then(|e| e.last())
                .is_some_and(|e| e.phase.is_terminal())
        })
    };
    let announced = env.announced(Duration::from_secs(60), ended).await;
    for (id, end) in [(&v2_id, PhaseName::Succeeded), (&v3_id, PhaseName::Aborted)] {
        let theirs = announced.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let phases: Vec<PhaseName> = theirs.iter().map(|e| e.phase).collect();
        assert_eq!(check_sequence(theirs), Ok(()), "{id}: {phases:?}");
        assert_eq!(phases.last(), Some(&end), "{id}: {phases:?}");
    }
    assert!(stack.pipe.as_ref().unwrap().dead_letters.lock().unwrap().is_empty());

    // The hooks were called by the shipped functions: the function for each deployment when
    // green was verified, the webhook (signed) before each went live and after v3's revert.
    let stages = |server: &HookServer| -> Vec<String> {
        server
            .payloads()
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p["deploy_id"].as_str().unwrap_or(""),
                    p["stage"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(
        stages(&function_hook),
        [format!("{v2_id} green_verified"), format!("{v3_id} green_verified")]
    );
    assert_eq!(
        stages(&webhook),
        [
            format!("{v2_id} all_traffic"),
            format!("{v3_id} all_traffic"),
            format!("{v3_id} after_revert")
        ]
    );
    assert!(webhook.received().iter().all(|r| signed_with(r, SIGNING_KEY)));

    // Least privilege that still works: what each process called, its role allows.
    let calls = calls_by_key().await;
    if std::env::var_os("GREENLIGHT_SHOW_CALLS").is_some() {
        eprintln!("{calls:#?}");
    }
    let template = greenlight_e2e::template::Template::load();
    for (function, _) in FUNCTIONS {
        let called = calls
            .get(&function_access_key(&service, function))
            .cloned()
            .unwrap_or_default();
        if function == "announce-deployments" {
            // The stream records carry everything: its role grants no AWS API.
            assert_eq!(called, Vec::<String>::new(), "{function}");
            continue;
        }
        assert!(!called.is_empty(), "{function} made no AWS call");
        if function == "shift-traffic" {
            assert!(
                called.iter().any(|c| c == "cloudwatch:GetMetricData"),
                "shift-traffic judged its steps: {called:?}"
            );
        }
        let hook_calls: &[&str] = match function {
            "shift-traffic" => &["lambda:InvokeFunction"],
            "finalize" | "abort-deployment" => &["secretsmanager:GetSecretValue"],
            _ => &[],
        };
        for needed in hook_calls {
            assert!(
                called.iter().any(|c| c == needed),
                "{function} called its hook: {called:?}"
            );
        }
        let missing = template.ungranted(function, &called);
        assert!(
            missing.is_empty(),
            "{function} called {missing:?}, which its role does not grant"
        );
    }
    // The pipe, under DeploymentEventsPipeRole: it read the stream and put the events on the
    // events bus, and its role allows every call it made.
    let piped = calls.get(&pipe_access_key(&service)).cloned().unwrap_or_default();
    for needed in ["dynamodb:GetRecords", "events:PutEvents"] {
        assert!(piped.iter().any(|c| c == needed), "the pipe called {piped:?}");
    }
    let missing = ungranted_by(&template.statements("DeploymentEventsPipeRole"), &piped);
    assert!(
        missing.is_empty(),
        "the pipe called {missing:?}, which its role does not grant"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bootstrap_with_an_unknown_or_missing_handler_fails_its_init_naming_the_known_ones() {
    greenlight_e2e::build_binaries();
    for handler in [Some("bootstrap"), Some("launch_green"), None] {
        let label = handler.unwrap_or("unset");
        let stderr_log = std::env::temp_dir().join(format!("greenlight-handler-{label}-{}.stderr", std::process::id()));
        let spec = FunctionSpec {
            name: format!("greenlight-handler-{label}"),
            handler: handler.map(str::to_string),
            binary: built_binary(BOOTSTRAP),
            env: vec![],
            timeout: Duration::from_secs(10),
            stderr_log: Some(stderr_log.clone()),
        };
        let function = Function::start(spec).await.unwrap_or_else(|e| panic!("{e}"));
        let mut status = None;
        for _ in 0..500 {
            status = function.exit_status();
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = status.unwrap_or_else(|| panic!("_HANDLER {label}: the bootstrap did not exit"));
        assert!(!status.success(), "_HANDLER {label}: {status}");
        assert!(
            !function.wait_for_init(Duration::ZERO).await,
            "it never asked for an event"
        );
        let expected = match handler {
            Some(name) => format!("unknown handler {name:?} (_HANDLER)"),
            None => "_HANDLER is not set".to_string(),
        };
        let known = format!("must be one of {}", Handler::known());
        let stderr = std::fs::read_to_string(&stderr_log).unwrap();
        assert!(
            stderr.contains(&format!("Error: {expected}")) && stderr.contains(&known),
            "{stderr}"
        );
        // Reported to the Runtime API as Lambda's runtimes do: an invocation gets the init error.
        let error = function.invoke(&json!({})).await.unwrap_err();
        assert_eq!(error.error_type, "Runtime.InitError", "{error}");
        assert!(
            error.error_message.contains(&expected) && error.error_message.contains(&known),
            "{error}"
        );
    }
}

/// The emulator's call log: access key id → the `service:Action`s it called.
async fn calls_by_key() -> BTreeMap<String, Vec<String>> {
    let url = format!("{}/_greenlight/calls", greenlight_e2e::endpoint());
    let body = greenlight_e2e::http_get(&url).await;
    serde_json::from_str(&body).expect("call log JSON")
}
