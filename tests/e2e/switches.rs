//! Several switch points per service: every change moves all of them, keeps each one's
//! frame (authentication actions, order, stickiness) exactly and never sends a client
//! secret; retirement asks AWS who still forwards to blue; drain times come from the target
//! groups; a point greenlight cannot own stops the deployment before anything is launched.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, ProtocolEnum, TargetGroupTuple,
};
use greenlight_core::model::{Phase, PhaseName};
use greenlight_core::plan::Step;
use greenlight_e2e::{canary, deliver_via, endpoint, http_get, quick, started, wait_execution, App, Env};
use greenlight_local::fixture::{Spec, OIDC_CLIENT_SECRET};
use greenlight_local::orchestrator::Ending;
use greenlight_steps::{revert_service, RevertOutcome};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A canary service with two listeners (ports 80 and 81) forwarding to blue.
fn two_listeners(service: &str) -> Spec {
    Spec {
        extra_listeners: 1,
        ..canary(service)
    }
}

/// The emulator's record of client secrets: which access keys sent one (`sent`), and the
/// secret each listener's or rule's authenticate-oidc action holds (`stored`).
async fn client_secrets() -> Value {
    let body = http_get(&format!("{}/_greenlight/client-secrets", endpoint())).await;
    serde_json::from_str(&body).expect("client secrets JSON")
}

/// The `service:Action`s `key` called (the emulator's call log).
async fn calls_of(key: &str) -> Vec<String> {
    let body = http_get(&format!("{}/_greenlight/calls", endpoint())).await;
    let calls: Value = serde_json::from_str(&body).expect("call log JSON");
    serde_json::from_value(calls[key].clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_canary_moves_every_switch_point_at_each_step_and_retires_blue_after_all_moved() {
    let env = Env::new("sw-canary", two_listeners).await;
    assert_eq!(env.world.config.switch.points().len(), 2);
    assert_eq!(env.every_point_weights().await, [[("a", 100)], [("a", 100)]]);
    let ami = env.image("v2", App::Healthy).await;
    let mut progress = env.local.orchestrator.subscribe();
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);

    let mut seen = Vec::new();
    loop {
        let p = progress.recv().await.expect("progress");
        if p.deploy_id != id {
            continue;
        }
        let out = p.result.clone().expect("no step fails");
        match p.step {
            Step::ShiftTraffic => seen.push(env.every_point_weights().await),
            Step::Finalize => {
                // Baking: every point on green, blue warm and still serving nothing.
                assert_eq!(env.every_point_weights().await, [[("b", 100)], [("b", 100)]]);
                let blue = env.states(&env.world.blue_instances).await;
                assert!(blue.values().all(|s| s == "running"), "blue warm: {blue:?}");
            }
            _ => {}
        }
        if out.next == "end" {
            break;
        }
    }
    let both = |w: Vec<(&'static str, u8)>| vec![w.clone(), w];
    assert_eq!(
        seen,
        vec![
            both(vec![("a", 90), ("b", 10)]),
            both(vec![("a", 50), ("b", 50)]),
            both(vec![("b", 100)])
        ],
        "both listeners' weights after each canary step"
    );
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let blue = env.states(&env.world.blue_instances).await;
    assert!(blue.values().all(|s| s == "terminated"), "v1 retired: {blue:?}");
    let dep = env.deployment(&id).await;
    assert_eq!(dep.frames.len(), 2, "a frame per point: {:?}", dep.frames);
}

#[tokio::test]
async fn the_fast_path_with_two_switch_points_is_one_claim_then_both_changes_at_once() {
    let env = Env::new("sw-fast", |s| Spec {
        step_wait_s: 120,
        ..two_listeners(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Verifying { weight: 10, .. }))
        .await;
    assert_eq!(
        env.every_point_weights().await,
        [[("a", 90), ("b", 10)], [("a", 90), ("b", 10)]]
    );
    let (ports, calls) = crate::revert::recorded(&env);
    calls.taken();

    revert_service(&ports, &crate::revert::rollback_event(&env, "sw-rb-1"))
        .await
        .expect("rolled back");

    let log = calls.taken();
    assert_eq!(
        &log[..3],
        ["claim_revert(service)", "set_traffic", "set_traffic"],
        "one claim, then a change per point with nothing read first (then: {:?})",
        &log[3..]
    );
    assert_eq!(
        calls.most_flips_at_once.load(Ordering::SeqCst),
        2,
        "both listener changes in flight at once"
    );
    assert_eq!(
        env.every_point_weights().await,
        [[("a", 100)], [("a", 100)]],
        "both listeners back on blue when the handler returns"
    );
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    assert!(env.live_instances_of(&id).await.is_empty(), "v2 terminated");
    assert_eq!(env.every_point_weights().await, [[("a", 100)], [("a", 100)]]);
}

#[tokio::test]
async fn authentication_and_stickiness_survive_a_rollout_and_a_revert_exactly_and_no_secret_is_sent() {
    let env = Env::new("sw-frame", |s| Spec {
        oidc: true,
        stickiness_s: Some(2),
        bake_window_s: 6,
        ..two_listeners(s)
    })
    .await;
    // The handlers sign with their own access key: the emulator tells their calls apart
    // from the fixture's (which created the listener with its secret).
    let key = format!("AKIDFRAME{}", env.service.to_uppercase().replace('-', "X"));
    let handlers = env.local.with_access_key(&key).await;
    let before = env.point_frames().await;
    let first = &before[0];
    assert_eq!(
        first.iter().map(|a| a.r#type().cloned()).collect::<Vec<_>>(),
        [Some(ActionTypeEnum::AuthenticateOidc), Some(ActionTypeEnum::Forward)]
    );
    let oidc = first[0].authenticate_oidc_config().expect("the OIDC config");
    assert_eq!(oidc.client_secret(), None, "Describe never reports the secret");
    let listener = env.world.listener_arns[0].clone();
    let stored = |secrets: &Value| secrets["stored"][&listener].clone();
    assert_eq!(stored(&client_secrets().await), serde_json::json!([OIDC_CLIENT_SECRET]));

    // A full rollout, 10 → 50 → 100, bake, blue retired.
    let deploy = |version: &'static str| {
        let (env, handlers) = (&env, &handlers);
        async move {
            let ami = env.image(version, App::Healthy).await;
            env.publish(version, &ami).await;
            started(&deliver_via(handlers, 1).await[0])
        }
    };
    let v2 = deploy("v2").await;
    assert_eq!(
        wait_execution(&handlers.orchestrator, &v2).await,
        Ending::Done(PhaseName::Succeeded)
    );
    assert_eq!(env.every_point_weights().await, [[("b", 100)], [("b", 100)]]);
    assert_eq!(env.point_frames().await, before, "the frames after a rollout");

    // v3, rolled back by an engineer while v2 is warm.
    let v3 = deploy("v3").await;
    env.wait_for_phase(&v3, |p| matches!(p, Phase::Baking { .. })).await;
    assert_eq!(env.every_point_weights().await, [[("a", 100)], [("a", 100)]]);
    let outcome = revert_service(&handlers.ports, &crate::revert::rollback_event(&env, "sw-frame-rb"))
        .await
        .expect("rolled back");
    assert!(matches!(outcome, RevertOutcome::Reverted { .. }), "{outcome:?}");
    assert_eq!(
        env.every_point_weights().await,
        [[("b", 100)], [("b", 100)]],
        "back on v2"
    );
    assert_eq!(env.point_frames().await, before, "the frames after a revert");
    assert_eq!(
        wait_execution(&handlers.orchestrator, &format!("{v3}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );
    assert_eq!(
        env.point_frames().await,
        before,
        "the frames after the revert's clean-up"
    );

    // The load balancer still holds the secret; greenlight never sent one (though it
    // changed the listeners many times) and recorded none.
    let secrets = client_secrets().await;
    assert_eq!(stored(&secrets), serde_json::json!([OIDC_CLIENT_SECRET]));
    assert!(
        calls_of(&key)
            .await
            .contains(&"elasticloadbalancing:ModifyListener".to_string()),
        "the handlers changed the listeners"
    );
    assert_eq!(
        secrets["sent"][&key],
        Value::Null,
        "requests of greenlight's handlers that carried a ClientSecret"
    );
    let mut recorded = Vec::new();
    for id in [&v2, &v3] {
        let dep = env.deployment(id).await;
        assert_eq!(dep.frames.len(), 2);
        recorded.push(serde_json::to_string(&dep).unwrap());
        let report = env
            .local
            .ports
            .store
            .get(&env.local.names.bucket, &format!("reports/{}/{id}.json", env.service))
            .await
            .expect("report");
        recorded.push(String::from_utf8_lossy(&report).into_owned());
    }
    recorded.push(format!("{:?}", env.ledger(None).await));
    let items = env
        .local
        .clients
        .dynamodb
        .scan()
        .table_name(&env.local.names.table)
        .send()
        .await
        .expect("scan the ledger");
    recorded.extend(
        items
            .items()
            .iter()
            .map(|item| format!("{item:?}"))
            .filter(|item| item.contains(&env.service)),
    );
    for text in &recorded {
        assert!(!text.contains(OIDC_CLIENT_SECRET), "a secret was recorded: {text}");
    }
    // The OIDC action was recorded (without its secret) for the next change to re-send.
    assert!(recorded[0].contains("authenticate-oidc") && recorded[0].contains("greenlight-fixture"));
}

/// Waits (30 s at most) for a timeline note of deployment `id` naming `arn`; returns it.
async fn note_naming(env: &Env, id: &str, arn: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dep = env.deployment(id).await;
        if let Some(mark) = dep.timeline.iter().find(|m| m.note.contains(arn)) {
            return mark.note.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no note naming {arn}: {:#?}",
            dep.timeline
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deploys `version` and, once it bakes, lets `edit` add something forwarding to blue's
/// target group (returning its ARN): retire-blue must refuse, naming it, and leave blue
/// warm; once `remove` takes it away, the next try retires blue.
async fn blocked_by_hand<'a, E, R>(
    env: &'a Env,
    version: &str,
    edit: impl FnOnce(String) -> E,
    remove: impl FnOnce(String) -> R,
) where
    E: std::future::Future<Output = String> + 'a,
    R: std::future::Future<Output = ()> + 'a,
{
    let blue_before = env.ledger(None).await.service.live.expect("a live release");
    let ami = env.image(version, App::Healthy).await;
    env.publish(version, &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
    let blue_tg = blue_before.target_group.clone();
    let by_hand = edit(blue_tg.clone()).await;

    let refusal = note_naming(env, &id, &by_hand).await;
    assert!(
        refusal.contains(&format!(
            "refusing to retire blue: {by_hand} still forwards traffic to target group {}",
            greenlight_core::decide::short_arn(&blue_tg)
        )),
        "{refusal}"
    );
    let state = env.ledger(Some(&id)).await;
    let phase = state.deployment.as_ref().unwrap().phase.clone();
    assert!(matches!(phase, Phase::Baking { .. }), "{phase:?}");
    assert_eq!(state.service.warm.as_ref(), Some(&blue_before), "blue stays warm");
    let blue = env.states(&blue_before.instance_ids).await;
    assert!(blue.values().all(|s| s == "running"), "blue keeps serving: {blue:?}");

    remove(by_hand).await;
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let blue = env.states(&blue_before.instance_ids).await;
    assert!(blue.values().all(|s| s == "terminated"), "blue retired: {blue:?}");
}

#[tokio::test]
async fn a_listener_or_rule_added_by_hand_during_the_bake_blocks_retirement_until_it_is_removed() {
    let env = Env::new("sw-hand", |s| Spec {
        bake_window_s: 3,
        ..two_listeners(s)
    })
    .await;
    let elb = &env.local.clients.elb;
    let (balancer, second_listener) = (&env.world.load_balancer_arn, &env.world.listener_arns[1]);
    let forward_to = |tg: &str| {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .build()
    };
    // v2 over v1: a third listener of the load balancer forwards to v1's group (a).
    blocked_by_hand(
        &env,
        "v2",
        |blue_tg| async move {
            let out = elb
                .create_listener()
                .load_balancer_arn(balancer)
                .protocol(ProtocolEnum::Http)
                .port(8090)
                .default_actions(forward_to(&blue_tg))
                .send()
                .await
                .expect("create a listener by hand");
            out.listeners()[0].listener_arn().expect("its ARN").to_string()
        },
        |arn| async move {
            elb.delete_listener()
                .listener_arn(&arn)
                .send()
                .await
                .expect("delete the listener");
        },
    )
    .await;
    // v3 over v2: blue is group b, which only ever got traffic by ModifyListener; a rule on
    // the second listener forwards to it.
    blocked_by_hand(
        &env,
        "v3",
        |blue_tg| async move {
            let condition = aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder()
                .field("path-pattern")
                .values("/by-hand/*")
                .build();
            let out = elb
                .create_rule()
                .listener_arn(second_listener)
                .priority(7)
                .conditions(condition)
                .actions(forward_to(&blue_tg))
                .send()
                .await
                .expect("create a rule by hand");
            out.rules()[0].rule_arn().expect("its ARN").to_string()
        },
        |arn| async move {
            elb.delete_rule().rule_arn(&arn).send().await.expect("delete the rule");
        },
    )
    .await;
}

#[tokio::test]
async fn blue_drains_for_its_target_groups_deregistration_delay_not_the_registrations() {
    let env = Env::new("sw-drain", |s| Spec {
        deregistration_delay_s: 1,
        group_drain_s: Some(4),
        bake_window_s: 1,
        ..quick(s)
    })
    .await;
    let [a, b] = env.world.config.target_groups.clone();
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    let dep = env.wait_for_phase(&id, |p| matches!(p, Phase::Retiring { .. })).await;
    let Phase::Retiring { drain_until } = dep.phase else {
        unreachable!()
    };
    let retiring_at = dep
        .timeline
        .iter()
        .rev()
        .find(|m| m.phase == PhaseName::Retiring)
        .expect("the retiring mark")
        .at;
    assert_eq!(
        drain_until - retiring_at,
        4,
        "drains for the group's 4 s, not the registration's 1 s"
    );
    assert_eq!(dep.drain_s, [(a, 4), (b, 4)].into_iter().collect());
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    let dep = env.deployment(&id).await;
    let succeeded_at = dep.timeline.last().expect("marks").at;
    assert!(
        succeeded_at >= drain_until,
        "terminated at {succeeded_at}, before {drain_until}"
    );
}

#[tokio::test]
async fn a_switch_point_greenlight_cannot_own_aborts_before_anything_is_launched() {
    let env = Env::new("sw-refuse", two_listeners).await;
    let [blue_tg, _] = env.world.config.target_groups.clone();
    let points = env.world.config.switch.points().to_vec();
    let elb = &env.local.clients.elb;
    let foreign = elb
        .create_target_group()
        .name(format!("{}-x", env.service))
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&env.world.vpc_id)
        .send()
        .await
        .expect("a foreign target group")
        .target_groups()[0]
        .target_group_arn()
        .expect("its ARN")
        .to_string();
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(
            FixedResponseActionConfig::builder()
                .status_code("503")
                .content_type("text/plain")
                .message_body("maintenance")
                .build(),
        )
        .build();
    let tuple = |tg: &str, w: i32| TargetGroupTuple::builder().target_group_arn(tg).weight(w).build();
    let shared = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(tuple(&blue_tg, 90))
                .target_groups(tuple(&foreign, 10))
                .build(),
        )
        .build();
    // (which point, its actions by hand, what the reason names)
    let cases = [
        (1, fixed, "has a fixed-response action".to_string()),
        (
            0,
            shared,
            format!("forwards to {foreign}, which is not one of the service's target groups"),
        ),
    ];
    for (n, (index, action, why)) in cases.into_iter().enumerate() {
        let point = &points[index];
        elb.modify_listener()
            .listener_arn(&point.listener_arn)
            .default_actions(action)
            .send()
            .await
            .expect("edit the listener by hand");
        let before = [env.point_actions(&points[0]).await, env.point_actions(&points[1]).await];
        let version = format!("v{}", n + 2);
        let ami = env.image(&version, App::Healthy).await;

        let (id, ending) = env.deploy(&version, &ami).await;

        assert_eq!(ending, Ending::Done(PhaseName::Aborted), "{version}");
        let dep = env.deployment(&id).await;
        match &dep.phase {
            Phase::Aborted { reason } => {
                assert!(
                    reason.contains(&point.listener_arn) && reason.contains(&why),
                    "{reason}"
                )
            }
            other => panic!("expected aborted, got {other:?}"),
        }
        assert!(dep.green_instances.is_empty(), "nothing launched: {dep:?}");
        let launched: Vec<_> = env
            .service_instances()
            .await
            .into_iter()
            .filter(|i| !env.world.blue_instances.contains(&i.instance_id))
            .collect();
        assert!(launched.is_empty(), "no instance launched: {launched:?}");
        assert_eq!(
            [env.point_actions(&points[0]).await, env.point_actions(&points[1]).await],
            before,
            "{version}: the listeners untouched"
        );
        assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v1");
        // Put the point back for the next case.
        elb.modify_listener()
            .listener_arn(&point.listener_arn)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(&blue_tg)
                    .build(),
            )
            .send()
            .await
            .expect("restore the listener");
    }
}
