//! Traffic through the emulated load balancer, read back from CloudWatch (issue 19): a
//! listener forwarding 10/90 to two target groups, the 90 % group's AMI answering 5 % of user
//! requests with a 500 (its health checks and smoke path stay fine); the load generator puts
//! a steady rate through the listener, and GetMetricData through the Rust SDK (as greenlight's
//! traffic analysis calls it) sees the split, the 5xx of each group and a p99 response time,
//! matching what the load generator itself counted.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_ec2::types::InstanceType;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetDescription, TargetGroupTuple, TargetHealthStateEnum,
};
use greenlight_e2e::{own_emulator, quick, App, AppTraits, Env};
use greenlight_local::data_plane;
use greenlight_local::fixture::APP_PORT;
use greenlight_local::load::{run_load, LoadSpec};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The endpoint of the emulator `env` is on.
fn local_endpoint(env: &Env) -> String {
    env.local.sdk.endpoint_url().expect("a local endpoint").to_string()
}

/// `app/<name>/<id>` of a load balancer ARN (the `LoadBalancer` dimension).
fn load_balancer_dimension(arn: &str) -> &str {
    arn.split_once(":loadbalancer/").map_or(arn, |(_, d)| d)
}

/// `targetgroup/<name>/<id>` of a target group ARN (the `TargetGroup` dimension).
fn target_group_dimension(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// One `AWS/ApplicationELB` MetricStat query on (load balancer, target group).
fn alb_query(
    id: &str,
    metric: &str,
    stat: &str,
    load_balancer: &str,
    target_group: &str,
    period: i32,
) -> MetricDataQuery {
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    let metric = Metric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name(metric)
        .dimensions(dimension("LoadBalancer", load_balancer_dimension(load_balancer)))
        .dimensions(dimension("TargetGroup", target_group_dimension(target_group)))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(MetricStat::builder().metric(metric).period(period).stat(stat).build())
        .build()
}

fn epoch_s(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// Launches `count` instances of `ami` in the service's subnet and registers them in `group`.
async fn fleet_in(env: &Env, ami: &str, count: i32, group: &str) -> Vec<String> {
    let launch = &env.world.config.launch;
    let ids: Vec<String> = env
        .local
        .clients
        .ec2
        .run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T3Micro)
        .subnet_id(&launch.subnet_id)
        .min_count(count)
        .max_count(count)
        .send()
        .await
        .expect("run instances")
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let targets = ids
        .iter()
        .map(|id| TargetDescription::builder().id(id).port(i32::from(APP_PORT)).build());
    env.local
        .clients
        .elb
        .register_targets()
        .target_group_arn(group)
        .set_targets(Some(targets.collect()))
        .send()
        .await
        .expect("register targets");
    ids
}

/// Waits until every target of `group` is healthy.
async fn healthy(env: &Env, group: &str, count: usize) {
    for _ in 0..150 {
        let health = env
            .local
            .clients
            .elb
            .describe_target_health()
            .target_group_arn(group)
            .send()
            .await
            .expect("describe target health");
        let states: Vec<_> = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target_health().and_then(|h| h.state()).cloned())
            .collect();
        if states.len() == count && states.iter().all(|s| *s == TargetHealthStateEnum::Healthy) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the targets of {group} did not all become healthy");
}

#[tokio::test]
async fn load_through_a_weighted_listener_reads_back_from_get_metric_data() {
    // An emulator of its own: the load would slow every test sharing one.
    let (_emulator, local) = own_emulator("traffic").await;
    let env = Env::on(&local, "traffic", quick).await;
    let [stable, leaky] = env.world.config.target_groups.clone();
    let traits = AppTraits {
        error_pct: Some(5.0),
        latency: Some((2, 20)),
        after_requests: None,
    };
    let ami = env.image_with("v2", App::Healthy, traits).await;
    fleet_in(&env, &ami, 2, &leaky).await;
    let tuple = |group: &str, weight: i32| {
        TargetGroupTuple::builder()
            .target_group_arn(group)
            .weight(weight)
            .build()
    };
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(tuple(&stable, 10))
                .target_groups(tuple(&leaky, 90))
                .build(),
        )
        .build();
    env.local
        .clients
        .elb
        .modify_listener()
        .listener_arn(&env.world.listener_arn)
        .default_actions(forward)
        .send()
        .await
        .expect("modify listener");
    healthy(&env, &stable, env.world.blue_instances.len()).await;
    healthy(&env, &leaky, 2).await;

    let url = data_plane::listener_url(&local_endpoint(&env), &env.world.listener_arn)
        .await
        .expect("the listener's URL");
    let started = SystemTime::now();
    let spec = LoadSpec::new(&url, 40, Duration::from_secs(6)).expect("load spec");
    let summary = run_load(&spec, |_, _| {}).await;
    let total = &summary.total;
    assert_eq!(
        (total.due, total.answered(), total.failed, total.skipped),
        (240, 240, 0, 0),
        "{summary}"
    );

    // One datapoint over the whole run: a period from the run's start (whole seconds, the
    // tests' publication period) to just past its end, once that last second has closed.
    let start = epoch_s(started);
    let end = epoch_s(SystemTime::now()) + 2;
    let period = i32::try_from(end - start).expect("a short run");
    let lb = &env.world.load_balancer_arn;
    let queries = vec![
        alb_query("stable_requests", "RequestCount", "Sum", lb, &stable, period),
        alb_query("leaky_requests", "RequestCount", "Sum", lb, &leaky, period),
        alb_query("stable_5xx", "HTTPCode_Target_5XX_Count", "Sum", lb, &stable, period),
        alb_query("leaky_5xx", "HTTPCode_Target_5XX_Count", "Sum", lb, &leaky, period),
        alb_query("leaky_p99", "TargetResponseTime", "p99", lb, &leaky, period),
        alb_query("leaky_p50", "TargetResponseTime", "p50", lb, &leaky, period),
    ];
    tokio::time::sleep(Duration::from_millis(2200)).await; // the run's last second has closed
    let answer = env
        .local
        .clients
        .cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .set_metric_data_queries(Some(queries))
        .send()
        .await
        .expect("GetMetricData");
    let got: BTreeMap<String, Vec<f64>> = answer
        .metric_data_results()
        .iter()
        .map(|r| (r.id().unwrap_or_default().to_string(), r.values().to_vec()))
        .collect();
    let one = |id: &str| -> f64 {
        match got[id].as_slice() {
            [] => 0.0, // no datapoint: no such requests in the period
            [value] => *value,
            more => panic!("{id}: one datapoint expected, got {more:?}"),
        }
    };
    let (stable_n, leaky_n) = (one("stable_requests"), one("leaky_requests"));
    // Every answered request reached one of the groups, and each group's count is what the
    // load generator saw of its version.
    assert_eq!(stable_n + leaky_n, total.answered() as f64, "{got:?}");
    let by_version = |v: &str| total.by_version.get(v).copied().unwrap_or(0) as f64;
    assert_eq!((stable_n, leaky_n), (by_version("v1"), by_version("v2")), "{got:?}");
    let share = stable_n / (stable_n + leaky_n);
    assert!((0.05..=0.15).contains(&share), "stable share {share} ({got:?})");
    // The 5xx: none from the stable group (no datapoint at all), about 5 % of the leaky one's,
    // and exactly the 5xx the load generator received.
    assert!(got["stable_5xx"].is_empty(), "{got:?}");
    let leaky_5xx = one("leaky_5xx");
    assert_eq!(leaky_5xx, total.server_errors() as f64, "{got:?}");
    let rate = leaky_5xx / leaky_n;
    assert!((0.01..=0.10).contains(&rate), "leaky 5xx rate {rate} ({got:?})");
    // Response times in seconds: the app sleeps a lognormal with p50 2 ms and p99 20 ms.
    let (p50, p99) = (one("leaky_p50"), one("leaky_p99"));
    assert!(
        p50 > 0.0 && p99 >= p50 && p99 > 0.005 && p99 < 3.0,
        "p50 {p50}, p99 {p99}"
    );
}
