//! A service's world on the local emulator, built the way an operator would in AWS:
//! a VPC and subnet, an ALB with an HTTP listener (or several, each a switch point; with an
//! authenticate-oidc action and forward stickiness if asked), a blue/green pair of target
//! groups, AMIs for each app version (their tags tell the emulator's stand-in app how to
//! behave), a blue fleet running v1 in the first target group behind the listener, and the
//! service's registration in the ledger adopting v1 as live.

use crate::Local;
use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateOidcActionConditionalBehaviorEnum, AuthenticateOidcActionConfig,
    FixedResponseActionConfig, ForwardActionConfig, PathPatternConditionConfig, ProtocolEnum, RuleCondition,
    TargetDescription, TargetGroupAttribute, TargetGroupStickinessConfig, TargetGroupTuple, TargetTypeEnum,
};
use greenlight_adapters::aws::create_table;
use greenlight_adapters::tags;
use greenlight_core::config::{
    AmiPolicy, HealthSettings, LaunchSettings, NewImagePolicy, OnPauseTimeout, ReconcilePolicy, Rollout, ServiceConfig,
    SmokeCheck, Switch, Switches,
};
use greenlight_core::model::Release;
use std::collections::BTreeMap;
use std::time::Duration;

/// The account the emulator owns images as.
pub const ACCOUNT: &str = "123456789012";
/// The stand-in app's port.
pub const APP_PORT: u16 = 8080;
/// The client secret of the fixture's authenticate-oidc action ([`Spec::oidc`]): the load
/// balancer holds it; greenlight must never send or record it.
pub const OIDC_CLIENT_SECRET: &str = "fixture-oidc-client-secret-4c1d";
/// The port of the fixture's first listener; extra listeners take the next ones.
pub const LISTENER_PORT: i32 = 80;

/// How the stand-in app of an AMI behaves (the emulator reads the AMI's tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppBehaviour {
    /// Every path answers 200 `ok version=<v>`.
    Healthy,
    /// Every path answers 503: ELB health checks fail.
    Unhealthy,
    /// `/health` answers 200 (ELB is satisfied) but every other path 500: the smoke test fails.
    SmokeFails,
}

impl AppBehaviour {
    fn tag(self) -> &'static str {
        match self {
            AppBehaviour::Healthy => "healthy",
            AppBehaviour::Unhealthy => "unhealthy",
            AppBehaviour::SmokeFails => "smoke-fails",
        }
    }
}

/// How a stand-in app misbehaves on user requests (every path but `/health` and `/smoke`, so
/// health checks and smoke gates still pass): the AMI tags `greenlight:app-error-rate`,
/// `greenlight:app-latency` and `greenlight:app-after-requests` (`tests/emulator/README.md`,
/// section 3). The default is none of it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AppTraits {
    /// This percentage of user requests answers 500 (e.g. `5.0`).
    pub error_pct: Option<f64>,
    /// Each user request sleeps a lognormal draw with these quantiles: (p50 ms, p99 ms).
    pub latency: Option<(u32, u32)>,
    /// The traits apply only after this many user requests to an instance (a leak).
    pub after_requests: Option<u64>,
}

impl AppTraits {
    /// The AMI tags (key, value) that ask the emulator for these traits.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = Vec::new();
        if let Some(pct) = self.error_pct {
            tags.push(("greenlight:app-error-rate", format!("{pct}%")));
        }
        if let Some((p50, p99)) = self.latency {
            tags.push(("greenlight:app-latency", format!("p50={p50}ms,p99={p99}ms")));
        }
        if let Some(n) = self.after_requests {
            tags.push(("greenlight:app-after-requests", n.to_string()));
        }
        tags
    }
}

/// The CloudWatch alarm registered for `service` (e.g. its 5xx rate).
pub fn alarm_name(service: &str) -> String {
    format!("{service}-5xx")
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub service: String,
    /// Register the service with nothing live (no v1 fleet): its first deployment.
    pub nothing_live: bool,
    /// Point the smoke test through the load balancer too (the emulator's data plane URL of
    /// the listener), on the deployment's test route.
    pub smoke_through_load_balancer: bool,
    /// The registration's `max_invocation_s`, the stale-write fence (I26): the local
    /// functions' runs take milliseconds, so 2 s keeps aborts quick; tests that compare runs
    /// whose timing differs want a wider margin.
    pub max_invocation_s: u64,
    pub canary_steps: Vec<u8>,
    /// The weights after which green waits for an approval (`"pause"` in `canary_steps`).
    pub pauses: Vec<u8>,
    /// How long a pause waits for its approval, and what it does then.
    pub pause_timeout_s: u64,
    pub on_pause_timeout: OnPauseTimeout,
    pub step_wait_s: u64,
    pub bake_window_s: u64,
    pub deregistration_delay_s: u64,
    pub poll_interval_s: u64,
    pub max_polls: u32,
    pub fleet_size: u32,
    /// Switch traffic with a listener rule (path `/<service>/*`) instead of the listener's
    /// default action, as when several services share one listener.
    pub switch_by_rule: bool,
    /// What a new image does while a deployment is in flight.
    pub on_new_image: NewImagePolicy,
    /// The deployment lease (seconds beyond a step's wait).
    pub lease_s: u64,
    /// Re-pave the live fleet once it is this old (seconds); None: never.
    pub max_instance_age_s: Option<u64>,
    /// How old the adopted v1 fleet is when the service is registered (seconds).
    pub live_age_s: u64,
    /// What the scheduled reconcile does about drift, strangers and orphans.
    pub reconcile: ReconcilePolicy,
    /// More switch points: this many extra listeners of the same load balancer (ports 81,
    /// 82, ...), each forwarding to blue by its default action; the registration lists them
    /// after the first point.
    pub extra_listeners: u16,
    /// An authenticate-oidc action (with [`OIDC_CLIENT_SECRET`], order 1) before the forward
    /// (order 2) of the first switch point.
    pub oidc: bool,
    /// Target-group stickiness on every switch point's forward: its duration in seconds.
    pub stickiness_s: Option<i32>,
    /// The target groups' `deregistration_delay.timeout_seconds` when it is not the
    /// registration's `deregistration_delay_s` (greenlight must use the group's).
    pub group_drain_s: Option<u64>,
    /// The registration's canary analysis (judged on the emulator's ALB metrics).
    pub analysis: Option<greenlight_core::analysis::Analysis>,
    /// What a failed gate, analysis or alarm does (`rollout.on_failure`).
    pub on_failure: greenlight_core::config::OnFailure,
    /// Lifecycle hooks (the tests serve them: a Lambda handler behind the emulator's
    /// `Invoke`, or a webhook on loopback).
    pub hooks: Vec<greenlight_core::hook::Hook>,
}

impl Spec {
    /// Small numbers so a whole rollout takes seconds.
    pub fn quick(service: &str) -> Spec {
        Spec {
            service: service.to_string(),
            nothing_live: false,
            smoke_through_load_balancer: false,
            max_invocation_s: 2,
            canary_steps: vec![100],
            pauses: vec![],
            pause_timeout_s: 60,
            on_pause_timeout: OnPauseTimeout::Abort,
            on_failure: greenlight_core::config::OnFailure::Revert,
            step_wait_s: 1,
            bake_window_s: 2,
            deregistration_delay_s: 1,
            poll_interval_s: 1,
            // Generous: health ends at the first healthy poll, and a loaded 2-core CI
            // machine (the emulator serving every test at once) can take well over 10 s.
            max_polls: 30,
            fleet_size: 2,
            switch_by_rule: false,
            on_new_image: NewImagePolicy::Supersede,
            lease_s: 900,
            max_instance_age_s: None,
            live_age_s: 0,
            reconcile: ReconcilePolicy::default(),
            extra_listeners: 0,
            oidc: false,
            stickiness_s: None,
            group_drain_s: None,
            analysis: None,
            hooks: vec![],
        }
    }
}

/// The built world.
#[derive(Debug, Clone)]
pub struct World {
    pub config: ServiceConfig,
    pub vpc_id: String,
    pub listener_arn: String,
    /// Every listener the fixture made, the first one's first ([`Spec::extra_listeners`]).
    pub listener_arns: Vec<String>,
    pub load_balancer_arn: String,
    pub blue_instances: Vec<String>,
    /// The v1 AMI (live at registration).
    pub ami_v1: String,
}

/// Creates the table, bucket and event routing of a local installation (idempotent).
pub async fn install(local: &Local) -> Result<(), String> {
    create_table(&local.clients.dynamodb, &local.names.table, local.names.ledger_stream)
        .await
        .map_err(|e| format!("create table: {e}"))?;
    let s3 = &local.s3;
    if s3.head_bucket().bucket(&local.names.bucket).send().await.is_err() {
        // Parallel installers may race to create it: owning it already is success.
        if let Err(e) = s3.create_bucket().bucket(&local.names.bucket).send().await {
            let owned = e
                .as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists());
            if !owned {
                return Err(format!("create bucket: {e:?}"));
            }
        }
    }
    crate::pump::install(local).await
}

/// Registers an AMI for `version` whose instances behave as `behaviour`.
pub async fn image(local: &Local, service: &str, version: &str, behaviour: AppBehaviour) -> Result<String, String> {
    image_with_traits(local, service, version, behaviour, &AppTraits::default()).await
}

/// Registers an AMI for `version` whose instances behave as `behaviour`, with `traits` on
/// their user requests.
pub async fn image_with_traits(
    local: &Local,
    service: &str,
    version: &str,
    behaviour: AppBehaviour,
    traits: &AppTraits,
) -> Result<String, String> {
    image_as(local, service, version, behaviour, traits, None).await
}

/// [`image`] under the AMI id `image_id` (the emulator's `POST /_greenlight/image-id`,
/// `tests/emulator/README.md`): the local stack gives the README's example image the
/// README's id.
pub async fn image_with_id(
    local: &Local,
    service: &str,
    version: &str,
    behaviour: AppBehaviour,
    image_id: &str,
) -> Result<String, String> {
    image_as(
        local,
        service,
        version,
        behaviour,
        &AppTraits::default(),
        Some(image_id),
    )
    .await
}

/// The emulator's path that moves an AMI to a chosen id.
const IMAGE_ID_PATH: &str = "/_greenlight/image-id";

async fn image_as(
    local: &Local,
    service: &str,
    version: &str,
    behaviour: AppBehaviour,
    traits: &AppTraits,
    image_id: Option<&str>,
) -> Result<String, String> {
    let ec2 = &local.clients.ec2;
    let mut ami = ec2
        .register_image()
        .name(format!("{service}-{version}-{}", behaviour.tag()))
        .send()
        .await
        .map_err(|e| format!("register image: {e:?}"))?
        .image_id
        .ok_or("register image returned no id")?;
    if let Some(wanted) = image_id {
        let endpoint = local
            .sdk
            .endpoint_url()
            .ok_or("a local SDK configuration has an endpoint")?;
        let body = serde_json::json!({ "image_id": ami, "new_id": wanted }).to_string();
        let (status, answer) = crate::faults::request(endpoint, "POST", IMAGE_ID_PATH, body.as_bytes())
            .await
            .map_err(|e| format!("the emulator's {IMAGE_ID_PATH}: {e}"))?;
        if status != 200 {
            return Err(format!(
                "image {wanted} for {version}: the emulator answered {status}: {answer}"
            ));
        }
        ami = wanted.to_string();
    }
    let mut tags = vec![
        tag("greenlight:app-behaviour", behaviour.tag()),
        tag("greenlight:version", version),
        tag("greenlight:app-port", &APP_PORT.to_string()),
    ];
    tags.extend(traits.tags().into_iter().map(|(key, value)| tag(key, &value)));
    ec2.create_tags()
        .resources(&ami)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| format!("tag image: {e:?}"))?;
    Ok(ami)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Builds the world for `spec` and registers the service with v1 live.
pub async fn build(local: &Local, spec: &Spec) -> Result<World, String> {
    let ec2 = &local.clients.ec2;
    let elb = &local.clients.elb;
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .map_err(|e| format!("create vpc: {e:?}"))?
        .vpc
        .and_then(|v| v.vpc_id)
        .ok_or("no vpc id")?;
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.20.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .map_err(|e| format!("create subnet: {e:?}"))?
            .subnet
            .and_then(|s| s.subnet_id)
            .ok_or("no subnet id")?;
        subnets.push(subnet);
    }
    let sg = ec2
        .create_security_group()
        .group_name(format!("{}-app", spec.service))
        .description("greenlight demo app")
        .vpc_id(&vpc_id)
        .send()
        .await
        .map_err(|e| format!("create security group: {e:?}"))?
        .group_id
        .ok_or("no security group id")?;
    let alb = elb
        .create_load_balancer()
        .name(format!("{}-alb", spec.service))
        .set_subnets(Some(subnets.clone()))
        .send()
        .await
        .map_err(|e| format!("create load balancer: {e:?}"))?
        .load_balancers
        .and_then(|l| l.into_iter().next())
        .and_then(|l| l.load_balancer_arn)
        .ok_or("no load balancer arn")?;
    let mut tgs = Vec::new();
    for color in ["a", "b"] {
        let tg = elb
            .create_target_group()
            .name(format!("{}-{color}", spec.service))
            .protocol(ProtocolEnum::Http)
            .port(APP_PORT as i32)
            .vpc_id(&vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .health_check_path("/health")
            .health_check_interval_seconds(5)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            // greenlight's roles may deregister targets only from groups tagged so.
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key(tags::MANAGED_BY)
                    .value(tags::MANAGED_BY_VALUE)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("create target group: {e:?}"))?
            .target_groups
            .and_then(|t| t.into_iter().next())
            .and_then(|t| t.target_group_arn)
            .ok_or("no target group arn")?;
        elb.modify_target_group_attributes()
            .target_group_arn(&tg)
            .attributes(
                TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(spec.group_drain_s.unwrap_or(spec.deregistration_delay_s).to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("set deregistration delay: {e:?}"))?;
        tgs.push(tg);
    }
    let mut forward_config = ForwardActionConfig::builder().target_groups(
        TargetGroupTuple::builder()
            .target_group_arn(&tgs[0])
            .weight(100)
            .build(),
    );
    if let Some(duration) = spec.stickiness_s {
        forward_config = forward_config.target_group_stickiness_config(
            TargetGroupStickinessConfig::builder()
                .enabled(true)
                .duration_seconds(duration)
                .build(),
        );
    }
    let forward_blue = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .set_order(spec.oidc.then_some(2))
        .forward_config(forward_config.build())
        .build();
    // The first point's actions: authentication first when asked for, then the forward.
    let first_actions = if spec.oidc {
        vec![oidc_action(), forward_blue.clone()]
    } else {
        vec![forward_blue.clone()]
    };
    // A listener shared by rule: its default action answers 404 itself (as a listener whose
    // services each have a rule does), so it never forwards to the service's groups.
    let default_actions = if spec.switch_by_rule {
        vec![Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("404")
                    .content_type("text/plain")
                    .message_body("no such service")
                    .build(),
            )
            .build()]
    } else {
        first_actions.clone()
    };
    // moto accepts authenticate actions on an HTTP listener (AWS wants HTTPS and a
    // certificate; nothing greenlight does depends on the protocol).
    let listener_arn = elb
        .create_listener()
        .load_balancer_arn(&alb)
        .protocol(ProtocolEnum::Http)
        .port(LISTENER_PORT)
        .set_default_actions(Some(default_actions))
        .send()
        .await
        .map_err(|e| format!("create listener: {e:?}"))?
        .listeners
        .and_then(|l| l.into_iter().next())
        .and_then(|l| l.listener_arn)
        .ok_or("no listener arn")?;
    let rule_arn = if spec.switch_by_rule {
        let path = PathPatternConditionConfig::builder()
            .values(format!("/{}/*", spec.service))
            .build();
        let rule = elb
            .create_rule()
            .listener_arn(&listener_arn)
            .priority(10)
            .conditions(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(path)
                    .build(),
            )
            .set_actions(Some(first_actions.clone()))
            .send()
            .await
            .map_err(|e| format!("create rule: {e:?}"))?
            .rules
            .and_then(|r| r.into_iter().next())
            .and_then(|r| r.rule_arn)
            .ok_or("no rule arn")?;
        Some(rule)
    } else {
        None
    };
    let mut listener_arns = vec![listener_arn.clone()];
    let mut points = vec![Switch {
        listener_arn: listener_arn.clone(),
        rule_arn: rule_arn.clone(),
    }];
    for n in 1..=i32::from(spec.extra_listeners) {
        let arn = elb
            .create_listener()
            .load_balancer_arn(&alb)
            .protocol(ProtocolEnum::Http)
            .port(LISTENER_PORT + n)
            .default_actions(forward_blue.clone())
            .send()
            .await
            .map_err(|e| format!("create listener {n}: {e:?}"))?
            .listeners
            .and_then(|l| l.into_iter().next())
            .and_then(|l| l.listener_arn)
            .ok_or("no listener arn")?;
        listener_arns.push(arn.clone());
        points.push(Switch {
            listener_arn: arn,
            rule_arn: None,
        });
    }
    let ami_v1 = image(local, &spec.service, "v1", AppBehaviour::Healthy).await?;
    let blue_instances = if spec.nothing_live {
        vec![]
    } else {
        let ids = launch_blue(local, spec, &ami_v1, &subnets[0], &sg).await?;
        let targets: Vec<TargetDescription> = ids
            .iter()
            .map(|id| TargetDescription::builder().id(id).port(APP_PORT as i32).build())
            .collect();
        elb.register_targets()
            .target_group_arn(&tgs[0])
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(|e| format!("register blue: {e:?}"))?;
        ids
    };
    let load_balancer_url = match spec.smoke_through_load_balancer {
        true => {
            let endpoint = local
                .sdk
                .endpoint_url()
                .ok_or("a local SDK configuration has an endpoint")?;
            Some(crate::data_plane::listener_url(endpoint, &listener_arn).await?)
        }
        false => None,
    };
    let config = ServiceConfig {
        service: spec.service.clone(),
        switch: Switches::new(points),
        target_groups: [tgs[0].clone(), tgs[1].clone()],
        launch: LaunchSettings {
            instance_type: "t3.micro".into(),
            subnet_id: subnets[0].clone(),
            security_group_ids: vec![sg],
            instance_profile_arn: None,
            count: spec.fleet_size,
            port: APP_PORT,
            user_data: None,
        },
        health: HealthSettings {
            poll_interval_s: spec.poll_interval_s,
            max_polls: spec.max_polls,
            smoke: SmokeCheck {
                path: "/smoke".into(),
                expect_status: 200,
                expect_body: Some("ok".into()),
                // A stand-in app behind the emulator's load balancer on a loaded 2-core CI
                // machine took over 3 s to answer once (routes::the_test_route_carries_...):
                // the e2e tests judge whether green answers right, not how fast.
                timeout_ms: 10_000,
                load_balancer_url,
            },
        },
        rollout: Rollout {
            canary_steps: spec.canary_steps.clone(),
            step_wait_s: spec.step_wait_s,
            pauses: spec.pauses.clone(),
            pause_timeout_s: spec.pause_timeout_s,
            on_pause_timeout: spec.on_pause_timeout,
            on_failure: spec.on_failure,
        },
        bake_window_s: spec.bake_window_s,
        deregistration_delay_s: spec.deregistration_delay_s,
        ami_policy: AmiPolicy {
            allowed_owners: vec![ACCOUNT.into()],
            required_tags: BTreeMap::new(),
        },
        image_builder_name: Some(spec.service.clone()),
        alarms: vec![alarm_name(&spec.service)],
        on_new_image: spec.on_new_image,
        lease_s: spec.lease_s,
        max_invocation_s: spec.max_invocation_s,
        max_instance_age_s: spec.max_instance_age_s,
        maintenance_hours: None,
        reconcile: spec.reconcile.clone(),
        analysis: spec.analysis.clone(),
        hooks: spec.hooks.clone(),
    };
    config.validate().map_err(|e| format!("fixture registration: {e}"))?;
    create_alarm(local, &alarm_name(&spec.service), &tgs[1]).await?;
    let live = Release {
        version: "v1".into(),
        ami: ami_v1.clone(),
        target_group: tgs[0].clone(),
        instance_ids: blue_instances.clone(),
        deploy_id: None,
        launched_at: Some(now_s().saturating_sub(spec.live_age_s)),
    };
    local
        .ports
        .ledger
        .register_service(&config, (!spec.nothing_live).then_some(live))
        .await
        .map_err(|e| format!("register service: {e}"))?;
    Ok(World {
        config,
        vpc_id,
        listener_arn,
        listener_arns,
        load_balancer_arn: alb,
        blue_instances,
        ami_v1,
    })
}

/// An authenticate-oidc action (order 1) with the fixture's client secret, as an operator
/// would put before a forward.
pub fn oidc_action() -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .order(1)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://idp.example.com")
                .authorization_endpoint("https://idp.example.com/authorize")
                .token_endpoint("https://idp.example.com/token")
                .user_info_endpoint("https://idp.example.com/userinfo")
                .client_id("greenlight-fixture")
                .client_secret(OIDC_CLIENT_SECRET)
                .scope("openid email")
                .session_timeout(3600)
                .session_cookie_name("fixture-auth")
                .authentication_request_extra_params("prompt", "login")
                .on_unauthenticated_request(AuthenticateOidcActionConditionalBehaviorEnum::Authenticate)
                .build(),
        )
        .build()
}

/// The service's 5xx alarm, as an operator would create it (CloudWatch, state OK).
async fn create_alarm(local: &Local, name: &str, target_group: &str) -> Result<(), String> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    let tg_dimension = target_group.rsplit(':').next().unwrap_or(target_group);
    local
        .clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .dimensions(Dimension::builder().name("TargetGroup").value(tg_dimension).build())
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .map_err(|e| format!("put metric alarm: {e:?}"))?;
    Ok(())
}

/// Launches the v1 fleet as an operator's earlier deployment would have: tagged so
/// greenlight may retire it, then waits until it is running.
async fn launch_blue(local: &Local, spec: &Spec, ami: &str, subnet: &str, sg: &str) -> Result<Vec<String>, String> {
    let ec2 = &local.clients.ec2;
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE))
        .tags(tag(tags::SERVICE, &spec.service))
        .tags(tag(tags::VERSION, "v1"))
        .tags(tag("Name", &format!("{}-v1", spec.service)))
        .build();
    let ids: Vec<String> = ec2
        .run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T3Micro)
        .min_count(spec.fleet_size as i32)
        .max_count(spec.fleet_size as i32)
        .subnet_id(subnet)
        .security_group_ids(sg)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| format!("launch blue: {e:?}"))?
        .instances
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.instance_id)
        .collect();
    for _ in 0..50 {
        let running = ec2
            .describe_instances()
            .set_instance_ids(Some(ids.clone()))
            .filters(Filter::builder().name("instance-state-name").values("running").build())
            .send()
            .await
            .map_err(|e| format!("describe blue: {e:?}"))?
            .reservations
            .unwrap_or_default()
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
            .count();
        if running == ids.len() {
            return Ok(ids);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("blue fleet did not reach running".into())
}

/// The wall clock in seconds since the epoch (the adopted fleet's launch time).
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
