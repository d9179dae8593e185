//! Lifecycle hooks (issue 20): a Lambda function behind the emulator's `Invoke`, or an HTTPS
//! webhook (here plain HTTP on loopback), called at a stage of every deployment with the
//! documented payload; its answer gates the deployment. Each hook is a real loopback server
//! ([`HookServer`]) that answers from a script and keeps what it received; the assertions read
//! the emulator's listener, the ledger and what the hook received. (Registrations that cannot
//! work are refused in `cli::register_creates_a_new_service_and_an_invalid_file_changes_nothing`.)

use greenlight_core::hook::{HookEnd, OnTimeout, Stage, Webhook};
use greenlight_core::model::{Phase, PhaseName, Trigger};
use greenlight_e2e::{canary, endpoint, unique, App, Env};
use greenlight_local::fixture::Spec;
use greenlight_local::hooks::{put_secret, serve_as_lambda, signed_with, Answer, HookServer};
use greenlight_local::orchestrator::Ending;
use serde_json::Value;

/// A Lambda hook at `stage` for the service `service` (named greenlight-hook-<service>).
fn lambda_hook(service: &str, stage: Stage, on_timeout: OnTimeout, timeout_s: u64) -> greenlight_core::hook::Hook {
    greenlight_core::hook::Hook {
        name: "checks".into(),
        stage,
        lambda: Some(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-{service}"
        )),
        webhook: None,
        callback_delay_s: 1,
        timeout_s,
        on_timeout,
        request_timeout_s: 10,
    }
}

/// A service whose canary (10 → 50 → 100) calls `server` as a Lambda hook at `stage`.
async fn with_lambda_hook(
    prefix: &str,
    stage: Stage,
    on_timeout: OnTimeout,
    timeout_s: u64,
    server: &HookServer,
) -> Env {
    let env = Env::new(prefix, |s| Spec {
        hooks: vec![lambda_hook(s, stage, on_timeout, timeout_s)],
        ..canary(s)
    })
    .await;
    serve_as_lambda(endpoint(), &format!("greenlight-hook-{}", env.service), server)
        .await
        .expect("serve the hook function");
    env
}

/// Runs v2 to its end; its deploy id, ending and record.
async fn deploy_v2(env: &Env) -> (String, Ending, greenlight_core::model::Deployment) {
    let ami = env.image("v2", App::Healthy).await;
    let (id, ending) = env.deploy("v2", &ami).await;
    let dep = env.deployment(&id).await;
    (id, ending, dep)
}

fn stages_and_calls(payloads: &[Value]) -> Vec<(String, u64, u64)> {
    payloads
        .iter()
        .map(|p| {
            (
                p["stage"].as_str().unwrap_or("").to_string(),
                p["weight"].as_u64().unwrap_or(999),
                p["call"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_hook_that_fails_before_traffic_aborts_with_green_never_weighted() {
    let server = HookServer::start(vec![Answer::failed("schema v7 is not migrated")])
        .await
        .unwrap();
    let env = with_lambda_hook("hookfail", Stage::GreenVerified, OnTimeout::Rollback, 60, &server).await;
    let (id, ending, dep) = deploy_v2(&env).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    assert_eq!(dep.max_weight, 0, "green never had user traffic");
    assert_eq!(env.weights().await, [("a", 100)], "all traffic on blue");
    let Phase::Aborted { reason } = &dep.phase else {
        panic!("{:?}", dep.phase)
    };
    assert!(
        reason.contains("hook checks (green_verified at 0%) failed: schema v7 is not migrated"),
        "the ledger says which hook and why: {reason}"
    );
    assert!(
        matches!(&dep.hooks[..], [r] if matches!(&r.ended, Some(HookEnd::Failed { reason, .. }) if reason == "schema v7 is not migrated"))
    );
    // Green is gone: terminated, not left running.
    let states = env.states(&dep.green_instances).await;
    assert!(states.values().all(|s| s == "terminated"), "{states:?}");
    // The payload, as documented: one call, before traffic, the test route to green open.
    let payloads = server.payloads();
    assert_eq!(stages_and_calls(&payloads), [("green_verified".to_string(), 0, 1)]);
    let p = &payloads[0];
    assert_eq!(p["schema"], 1);
    assert_eq!(p["service"], env.service.as_str());
    assert_eq!(p["deploy_id"], id.as_str());
    assert_eq!(p["hook"], "checks");
    assert_eq!(p["invocation_id"], format!("{id}/green_verified/0/checks/1"));
    assert_eq!(p["green"]["version"], "v2");
    assert_eq!(
        p["green"]["instance_ids"].as_array().map(Vec::len),
        Some(dep.green_instances.len())
    );
    assert_eq!(p["blue"]["version"], "v1");
    assert_eq!(p["test_route"]["header"], "X-Greenlight-Deployment");
    assert_eq!(p["test_route"]["value"], id.as_str());
    assert!(
        p["timeline"].as_array().is_some_and(|marks| marks
            .iter()
            .any(|m| m["note"].as_str().unwrap_or("").contains("smoke test passed"))),
        "the timeline so far: {p}"
    );
}

#[tokio::test]
async fn a_hook_in_progress_twice_then_succeeded_moves_on_after_its_delays() {
    let server = HookServer::start(vec![
        Answer::in_progress("warming caches"),
        Answer::in_progress("still warming"),
        Answer::succeeded(),
    ])
    .await
    .unwrap();
    let env = with_lambda_hook("hookwait", Stage::TrafficShifted, OnTimeout::Rollback, 60, &server).await;
    let (_, ending, dep) = deploy_v2(&env).await;
    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));
    assert_eq!(env.weights().await, [("b", 100)]);
    // Called three times after each canary step short of 100 %, in order.
    let received = server.received();
    let calls = stages_and_calls(&received.iter().map(|r| r.payload()).collect::<Vec<_>>());
    let expected: Vec<(String, u64, u64)> = [10, 50]
        .iter()
        .flat_map(|w| (1..=3).map(move |n| ("traffic_shifted".to_string(), *w, n)))
        .collect();
    assert_eq!(calls, expected);
    // Each call after IN_PROGRESS waited its callback delay (1 s) at least.
    for pair in received
        .windows(2)
        .filter(|p| p[1].payload()["call"].as_u64() > Some(1))
    {
        let gap = pair[1].at_ms - pair[0].at_ms;
        assert!(gap >= 900, "called again after {gap} ms, before its callback delay");
    }
    // While the hook said IN_PROGRESS the listener stayed at the step's weight: it moved on
    // only after the SUCCEEDED, as the ledger recorded it.
    let records: Vec<(u8, u32, bool)> = dep
        .hooks
        .iter()
        .map(|r| (r.weight, r.calls, matches!(r.ended, Some(HookEnd::Succeeded { .. }))))
        .collect();
    assert_eq!(records, [(10, 3, true), (50, 3, true)]);
    let notes: Vec<&str> = dep.timeline.iter().map(|m| m.note.as_str()).collect();
    let at = |needle: &str| {
        notes
            .iter()
            .position(|n| n.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {notes:#?}"))
    };
    assert!(
        at("hook checks (traffic_shifted at 10%) in progress: warming caches")
            < at("hook checks (traffic_shifted at 10%) succeeded")
    );
    assert!(at("hook checks (traffic_shifted at 10%) succeeded") < at("shifting green 10% -> 50%"));
}

#[tokio::test]
async fn a_timed_out_hook_follows_its_declared_action() {
    // Rollback: green had 10 %; the hook never decides; traffic goes back to blue.
    let never = HookServer::start(vec![Answer::in_progress("migrating")]).await.unwrap();
    let rollback = with_lambda_hook("hooktimeout", Stage::TrafficShifted, OnTimeout::Rollback, 3, &never).await;
    // Continue: the bake window's end waits for a hook that never decides, then retires blue.
    let also_never = HookServer::start(vec![Answer::in_progress("soaking")]).await.unwrap();
    let proceed = with_lambda_hook("hookgoon", Stage::BeforeRetire, OnTimeout::Continue, 3, &also_never).await;
    let ((_, rolled, rolled_dep), (_, went_on, went_on_dep)) = tokio::join!(deploy_v2(&rollback), deploy_v2(&proceed));

    assert_eq!(rolled, Ending::Done(PhaseName::Aborted));
    assert_eq!(rollback.weights().await, [("a", 100)]);
    let revert = rolled_dep.revert.clone().expect("a revert record");
    assert_eq!(
        (revert.trigger, revert.requested_by.as_str()),
        (Trigger::Hook, "hook:checks")
    );
    assert!(
        revert.reason.contains("still in progress after") && revert.reason.contains("rolling back as declared"),
        "{}",
        revert.reason
    );
    assert!(matches!(
        rolled_dep.hooks[0].ended,
        Some(HookEnd::TimedOut {
            action: OnTimeout::Rollback,
            ..
        })
    ));
    // Called again after each IN_PROGRESS until its deadline: at least twice (a first answer
    // cannot time out; on a loaded machine the second call may already come at the deadline).
    assert!(
        never.payloads().len() >= 2,
        "called until its timeout: {}",
        never.payloads().len()
    );

    assert_eq!(went_on, Ending::Done(PhaseName::Succeeded));
    assert_eq!(proceed.weights().await, [("b", 100)]);
    assert!(
        matches!(went_on_dep.hooks[..], [ref r] if r.stage == Stage::BeforeRetire && matches!(r.ended, Some(HookEnd::TimedOut { action: OnTimeout::Continue, .. })))
    );
    // Blue was retired only after the hook's deadline.
    let retiring_at = went_on_dep
        .timeline
        .iter()
        .find(|m| m.phase == PhaseName::Retiring)
        .map(|m| m.at)
        .expect("retired");
    assert!(retiring_at >= went_on_dep.hooks[0].since + 3);
}

#[tokio::test]
async fn a_webhook_that_answers_500_or_garbage_fails_with_the_reason_and_every_call_is_signed() {
    const SECRET: &str = "webhook-signing-key-1";
    let secret_arn = put_secret(endpoint(), &format!("greenlight/hooks/{}", unique("whsecret")), SECRET)
        .await
        .expect("a secret");
    let webhook = |stage, url: &str| greenlight_core::hook::Hook {
        name: "gate".into(),
        stage,
        lambda: None,
        webhook: Some(Webhook {
            url: url.to_string(),
            secret: secret_arn.clone(),
        }),
        callback_delay_s: 1,
        timeout_s: 60,
        on_timeout: OnTimeout::Rollback,
        request_timeout_s: 5,
    };
    // HTTP 500 after all the traffic moved (before green is declared live): reverted.
    let broken = HookServer::start(vec![Answer::Http(500, "upstream exploded".into())])
        .await
        .unwrap();
    // Garbage before any traffic: aborted.
    let garbage = HookServer::start(vec![Answer::Http(200, "<html>ok</html>".into())])
        .await
        .unwrap();
    // And an after_revert webhook that succeeds, beside the failing one.
    let notified = HookServer::start(vec![Answer::succeeded()]).await.unwrap();
    let env500 = Env::new("hook500", |s| Spec {
        hooks: vec![
            webhook(Stage::AllTraffic, &broken.url),
            greenlight_core::hook::Hook {
                name: "notify".into(),
                ..webhook(Stage::AfterRevert, &notified.url)
            },
        ],
        ..canary(s)
    })
    .await;
    let env_garbage = Env::new("hookjunk", |s| Spec {
        hooks: vec![webhook(Stage::GreenVerified, &garbage.url)],
        ..canary(s)
    })
    .await;
    let ((_, e500, d500), (_, ejunk, djunk)) = tokio::join!(deploy_v2(&env500), deploy_v2(&env_garbage));

    assert_eq!(e500, Ending::Done(PhaseName::Aborted));
    assert_eq!(env500.weights().await, [("a", 100)], "traffic back on blue");
    let revert = d500.revert.clone().expect("reverted");
    assert_eq!(revert.trigger, Trigger::Hook);
    assert!(
        revert
            .reason
            .contains("the webhook answered HTTP 500: upstream exploded"),
        "{}",
        revert.reason
    );
    // The after_revert hook was called once traffic was back, before green was terminated.
    let after: Vec<Value> = notified.payloads();
    assert_eq!(stages_and_calls(&after), [("after_revert".to_string(), 0, 1)]);
    assert!(
        after[0]["test_route"].is_null(),
        "no test route after a revert: {}",
        after[0]
    );
    assert!(matches!(
        d500.hooks
            .iter()
            .find(|r| r.hook == "notify")
            .and_then(|r| r.ended.clone()),
        Some(HookEnd::Succeeded { .. })
    ));

    assert_eq!(ejunk, Ending::Done(PhaseName::Aborted));
    assert_eq!(djunk.max_weight, 0);
    let Phase::Aborted { reason } = &djunk.phase else {
        panic!()
    };
    assert!(reason.contains("<html>ok</html>"), "{reason}");

    // Every call carried greenlight's HMAC of its body under the secret; a wrong secret fails.
    for server in [&broken, &garbage, &notified] {
        for received in server.received() {
            assert!(
                signed_with(&received, SECRET),
                "unsigned or wrongly signed: {:?}",
                received.headers
            );
            assert!(!signed_with(&received, "another-key"));
        }
    }
    // The secret's value never reached the ledger.
    let ledger = serde_json::to_string(&d500).unwrap() + &serde_json::to_string(&djunk).unwrap();
    assert!(!ledger.contains(SECRET));
}
