//! The deployment's test route (issue 18, item 3): a listener rule matching
//! `X-Greenlight-Deployment: <deploy id>` that forwards to green only, from green's launch
//! until green is live or the deployment ends. It carries the smoke test through the real
//! (emulated) load balancer, makes green health-checked, and lets a service with nothing
//! live be deployed at all. Requests go through the emulator's ALB data plane.

use aws_sdk_elasticloadbalancingv2::types::Rule;
use greenlight_adapters::http::HttpProber;
use greenlight_adapters::Prober;
use greenlight_core::model::{Phase, PhaseName};
use greenlight_core::switch::TEST_ROUTE_HEADER;
use greenlight_e2e::{canary, endpoint, quick, App, Env};
use greenlight_local::data_plane;
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use std::time::Duration;

/// The listener's rules that are test routes: (deploy id, target groups forwarded to).
async fn test_routes(env: &Env) -> Vec<(String, Vec<String>)> {
    let rules: Vec<Rule> = env
        .local
        .clients
        .elb
        .describe_rules()
        .listener_arn(&env.world.listener_arn)
        .send()
        .await
        .expect("describe rules")
        .rules
        .unwrap_or_default();
    rules
        .iter()
        .filter_map(|rule| {
            let header = rule.conditions().iter().find_map(|c| c.http_header_config())?;
            if !header.http_header_name()?.eq_ignore_ascii_case(TEST_ROUTE_HEADER) {
                return None;
            }
            let forward: Vec<String> = rule
                .actions()
                .iter()
                .filter_map(|a| a.forward_config())
                .flat_map(|f| {
                    f.target_groups()
                        .iter()
                        .filter_map(|t| t.target_group_arn().map(str::to_string))
                })
                .collect();
            Some((header.values().join(","), forward))
        })
        .collect()
}

/// `GET /` on the listener through the data plane, with the test route's header when given.
async fn through_the_load_balancer(env: &Env, deploy_id: Option<&str>) -> (u16, String) {
    let url = data_plane::listener_url(endpoint(), &env.world.listener_arn)
        .await
        .expect("the listener's data plane URL");
    HttpProber
        .get(
            &format!("{url}/"),
            deploy_id.map(|id| (TEST_ROUTE_HEADER, id)),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer through the load balancer")
}

#[tokio::test]
async fn the_test_route_carries_the_smoke_test_to_green_only_and_closes_once_green_is_live() {
    let env = Env::new("route", |s| Spec {
        smoke_through_load_balancer: true,
        step_wait_s: 3,
        ..canary(s)
    })
    .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = greenlight_e2e::started(&env.deliver(1).await[0]);
    // During the canary (green at 10 %): the route exists, forwards to green only, and a
    // request carrying the header reaches v2 every time.
    let dep = env
        .wait_for_phase(&id, |p| {
            matches!(p, Phase::Verifying { weight: 10, .. } | Phase::Verified { weight: 10 })
        })
        .await;
    assert_eq!(test_routes(&env).await, vec![(id.clone(), vec![dep.green_tg.clone()])]);
    for _ in 0..5 {
        let (status, body) = through_the_load_balancer(&env, Some(&id)).await;
        assert_eq!((status, body.contains("version=v2")), (200, true), "{body}");
    }
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));
    assert!(
        test_routes(&env).await.is_empty(),
        "the route is closed once green is live"
    );
    // The smoke test went through the load balancer to green on each gate (0, 10, 50 and
    // 100 %) beside the five requests above: nothing else sent green a request here.
    let green_requests = data_plane::target_group_requests(endpoint(), &dep.green_tg)
        .await
        .unwrap();
    assert!(
        green_requests >= 5 + 4,
        "green's group served {green_requests} requests"
    );
    // Users now get v2 without any header.
    let (status, body) = through_the_load_balancer(&env, None).await;
    assert_eq!((status, body.contains("version=v2")), (200, true), "{body}");
}

#[tokio::test]
async fn a_failed_gate_closes_the_test_route_and_users_never_saw_green() {
    let env = Env::new("routefail", |s| Spec {
        smoke_through_load_balancer: true,
        ..quick(s)
    })
    .await;
    let ami = env.image("v2", App::SmokeFails).await;
    let (id, ending) = env.deploy("v2", &ami).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    assert!(test_routes(&env).await.is_empty(), "the route is closed on the abort");
    assert_eq!(env.deployment(&id).await.max_weight, 0);
    let (status, body) = through_the_load_balancer(&env, None).await;
    assert_eq!((status, body.contains("version=v1")), (200, true), "{body}");
}

#[tokio::test]
async fn the_first_deployment_of_a_service_with_nothing_live_goes_live_through_its_test_route() {
    let env = Env::new("first", |s| Spec {
        nothing_live: true,
        smoke_through_load_balancer: true,
        ..quick(s)
    })
    .await;
    assert_eq!(env.ledger(None).await.service.live, None);
    let ami = env.image("v1", App::Healthy).await;
    let (id, ending) = env.deploy("v1", &ami).await;
    assert_eq!(
        ending,
        Ending::Done(PhaseName::Succeeded),
        "{:?}",
        env.deployment(&id).await.timeline
    );
    let state = env.ledger(Some(&id)).await;
    let live = state.service.live.expect("v1 is live");
    assert_eq!(
        (live.version.as_str(), live.deploy_id.as_deref()),
        ("v1", Some(id.as_str()))
    );
    assert_eq!(
        env.weights().await,
        [("a", 100)],
        "the switch point forwards to v1's group"
    );
    assert!(test_routes(&env).await.is_empty());
    let (status, body) = through_the_load_balancer(&env, None).await;
    assert_eq!((status, body.contains("version=v1")), (200, true), "{body}");
}
