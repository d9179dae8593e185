//! What the handlers' adapter calls would cost in AWS: [`metered`] wraps the simulated
//! adapters of a [`Ports`] and counts, for each adapter call, the AWS requests the real
//! adapters (`greenlight_adapters::aws`) send for it, named as IAM actions
//! (`service:Operation`), with DynamoDB's read and write capacity units estimated from the
//! ledger's item sizes.
//!
//! The mapping (read off `greenlight_adapters::aws`; one request each unless said):
//!
//! | adapter call                  | AWS requests                                                                 |
//! |-------------------------------|------------------------------------------------------------------------------|
//! | `ledger.load`                 | `dynamodb:BatchGetItem` (CONFIG, STATE and the DEPLOY item: one batch)        |
//! | `ledger.commit`               | none if nothing changed; `dynamodb:PutItem` when one item changed and the revert plan did not; else one `dynamodb:TransactWriteItems` (pointers, deployment, one alarm alias per alarm when the plan changed) |
//! | `ledger.history`              | `dynamodb:Query` (one page)                                                  |
//! | `ledger.services`             | `dynamodb:Scan` (one page)                                                   |
//! | `ledger.service_for_image`/`_alarm` | `dynamodb:GetItem`                                                     |
//! | `ledger.claim_revert`         | `dynamodb:UpdateItem`                                                        |
//! | `ledger.register_service`     | `dynamodb:GetItem` × (2 + aliases), then `PutItem` (one item) or `TransactWriteItems` |
//! | `fleet.describe_image`, `fleet.image_builder_ami` | `ec2:DescribeImages`                                     |
//! | `fleet.launch`                | `ec2:RunInstances`                                                           |
//! | `fleet.instances_of`          | `ec2:DescribeInstances` (one page)                                           |
//! | `fleet.describe`              | `ec2:DescribeInstances` per 200 ids; none for no ids                          |
//! | `fleet.terminate`             | `ec2:DescribeInstances` per 200 ids (none for no ids), then `ec2:TerminateInstances` if any of them is ours and not terminated |
//! | `lb.target_health`            | `elasticloadbalancing:DescribeTargetHealth`                                  |
//! | `lb.register` / `lb.deregister` | `elasticloadbalancing:RegisterTargets` / `DeregisterTargets`; none for no ids |
//! | `lb.set_traffic`              | `elasticloadbalancing:ModifyRule` (a rule switch) or `ModifyListener`        |
//! | `lb.traffic`                  | `elasticloadbalancing:DescribeRules` or `DescribeListeners`                  |
//! | `store.get` / `store.put_report` | `s3:GetObject` / `s3:PutObject`                                           |
//! | `orchestrator.start`          | `states:StartExecution`                                                      |
//! | `alarms.in_alarm`             | `cloudwatch:DescribeAlarms` per 100 names; none for no names                  |
//!
//! The prober (HTTP to the instances), the clock and the metrics sink are not AWS calls. The
//! SDK's own retries of throttled requests are not modelled (the simulated AWS never
//! throttles). Lambda invocations are counted apart ([`Usage::invocations`]).
//!
//! DynamoDB capacity (an estimate, by the published rules): an item's size is the UTF-8
//! length of its attribute names and string values plus, for a number, 1 byte per two
//! significant digits + 1; the items are laid out as `DynamoLedger` writes them (`pk`, `sk`,
//! `gen`, a JSON `body`, and the plain attributes beside it). Reads are strongly consistent:
//! 1 read unit per 4 KB of each item (BatchGetItem, GetItem; at least 1 per key asked, found
//! or not), of the whole result (Query). Writes: 1 write unit per 1 KB of the larger of the
//! item before and after (PutItem, UpdateItem), twice that for each item of a
//! TransactWriteItems. A write that loses its condition is charged as if it had written (AWS
//! charges a failed conditional write; a cancelled transaction is charged in full here, an
//! upper bound).

use async_trait::async_trait;
use greenlight_adapters::{
    AdapterError, AdapterResult, Alarms, ArtifactStore, Fleet, Instance, InstanceState, LaunchRequest, Ledger,
    LoadBalancer, Orchestrator, Ports, RevertKey,
};
use greenlight_core::config::Switch;
use greenlight_core::decide::{ImageFacts, RevertRequest, TargetHealth};
use greenlight_core::model::{Deployment, Release, RevertPlan, ServiceState, State};
use greenlight_core::switch::{Frame, SeenAction};
use greenlight_core::ServiceConfig;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one service's handler runs (or a whole run's) would have asked of AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// AWS operation, as its IAM action (`ec2:RunInstances`) → requests.
    pub operations: BTreeMap<&'static str, u64>,
    /// DynamoDB read requests (BatchGetItem, GetItem, Query, Scan).
    pub ledger_reads: u64,
    /// DynamoDB write requests (PutItem, TransactWriteItems, UpdateItem).
    pub ledger_writes: u64,
    /// Conditional writes that lost (a ConditionalCheckFailed; a refused revert claim).
    pub conflicts: u64,
    /// Estimated read capacity units.
    pub read_units: u64,
    /// Estimated write capacity units.
    pub write_units: u64,
    /// Handler (Lambda) invocations: event deliveries and Step Functions tasks, duplicates
    /// and retries included.
    pub invocations: u64,
}

impl Usage {
    /// Every AWS request.
    pub fn calls(&self) -> u64 {
        self.operations.values().sum()
    }

    pub fn add(&mut self, other: &Usage) {
        for (op, n) in &other.operations {
            *self.operations.entry(op).or_default() += n;
        }
        self.ledger_reads += other.ledger_reads;
        self.ledger_writes += other.ledger_writes;
        self.conflicts += other.conflicts;
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.invocations += other.invocations;
    }
}

/// One service's usage, added to by the metered ports of each of its handler runs.
#[derive(Debug, Default)]
pub struct Meter {
    usage: Mutex<Usage>,
    /// The service's registration and its item's size (it rarely changes; sizing it on
    /// every read would cost more than the rest of the run).
    config: Mutex<Option<(ServiceConfig, u64)>>,
    /// The last size known of each of the service's items (`STATE`, or a deploy id) with
    /// its generation: an item's content at a generation never changes (the conditional
    /// writes see to it), so it is sized once, not on every read.
    sizes: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Meter {
    pub fn usage(&self) -> Usage {
        self.lock().clone()
    }

    /// The size of the registration item holding `config`.
    fn config_item(&self, config: &ServiceConfig) -> u64 {
        let mut known = self.config.lock().unwrap_or_else(|e| e.into_inner());
        match &*known {
            Some((seen, size)) if seen == config => *size,
            _ => {
                let size = config_item(config);
                *known = Some((config.clone(), size));
                size
            }
        }
    }

    /// One more handler invocation.
    pub fn invoked(&self) {
        self.lock().invocations += 1;
    }

    /// The size of item `item` at generation `gen`: known, or `size()`.
    fn sized(&self, item: &str, gen: u64, size: impl FnOnce() -> u64) -> u64 {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        match sizes.get(item) {
            Some((known, bytes)) if *known == gen => *bytes,
            _ => {
                let bytes = size();
                sizes.insert(item.to_string(), (gen, bytes));
                bytes
            }
        }
    }

    /// The pointers item as read.
    fn state_item(&self, state: &ServiceState) -> u64 {
        self.sized("STATE", state.gen, || state_item(state))
    }

    /// A deployment item as read.
    fn deployment_item(&self, dep: &Deployment) -> u64 {
        self.sized(&dep.deploy_id, dep.gen, || deployment_item(dep))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, operation: &'static str, requests: u64) {
        if requests > 0 {
            *self.lock().operations.entry(operation).or_default() += requests;
        }
    }

    fn read(&self, operation: &'static str, units: u64) {
        self.count(operation, 1);
        let mut usage = self.lock();
        usage.ledger_reads += 1;
        usage.read_units += units;
    }

    fn write(&self, operation: &'static str, units: u64, lost: bool) {
        self.count(operation, 1);
        let mut usage = self.lock();
        usage.ledger_writes += 1;
        usage.write_units += units;
        usage.conflicts += lost as u64;
    }
}

/// `ports` with its AWS-facing adapters metered into `meter`.
pub fn metered(ports: &Ports, meter: Arc<Meter>) -> Ports {
    ports.with_aws(Arc::new(Metered {
        ports: ports.clone(),
        meter,
    }))
}

/// The adapters of `ports`, each call counted into `meter`.
struct Metered {
    ports: Ports,
    meter: Arc<Meter>,
}

// ---------------------------------------------------------------------------------------
// DynamoDB item sizes and capacity units
// ---------------------------------------------------------------------------------------

/// A string attribute's size.
fn string(name: &str, value: &str) -> u64 {
    (name.len() + value.len()) as u64
}

/// A number attribute's size: 1 byte per two significant digits, + 1.
fn number(name: &str, value: u64) -> u64 {
    let digits = value.to_string().trim_end_matches('0').len().max(1) as u64;
    name.len() as u64 + digits.div_ceil(2) + 1
}

/// Counts the bytes written to it (a JSON body's length without building the string).
#[derive(Default)]
struct Length(u64);

impl std::io::Write for Length {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `$value` as JSON (as `DynamoLedger` stores a body).
macro_rules! json_len {
    ($value:expr) => {{
        let mut length = Length::default();
        serde_json::to_writer(&mut length, $value).map_or(0, |_| length.0)
    }};
}

/// The item's `pk` and `sk`.
fn key(pk: &str, sk: &str) -> u64 {
    string("pk", pk) + string("sk", sk)
}

/// `SVC#<service>` / `CONFIG`.
fn config_item(config: &ServiceConfig) -> u64 {
    key(&format!("SVC#{}", config.service), "CONFIG") + number("gen", 1) + 4 + json_len!(config)
}

/// `SVC#<service>` / `STATE`, with the revert plan and a claim as top-level attributes.
fn state_item(state: &ServiceState) -> u64 {
    let mut size = key(&format!("SVC#{}", state.service), "STATE") + number("gen", state.gen) + 4 + json_len!(state);
    if let Some(plan) = &state.revert_plan {
        size += 11 + json_len!(plan) + number("plan_since", plan.since_ms);
    }
    if let Some(claim) = &state.revert_claim {
        size += 5 + json_len!(&claim.request) + 30;
        size += string("claim_event", &claim.request.event_id);
    }
    size
}

/// `SVC#<service>` / `DEPLOY#<deploy id>`, with `phase`, `version`, `created_at` beside the body.
fn deployment_item(dep: &Deployment) -> u64 {
    key(&format!("SVC#{}", dep.service), &format!("DEPLOY#{}", dep.deploy_id))
        + number("gen", dep.gen)
        + string("phase", dep.phase.name())
        + string("version", &dep.version)
        + number("created_at", dep.created_at)
        + 4
        + json_len!(dep)
}

/// `ALARM#<alarm>` / `SERVICE`, holding the service's revert plan.
fn alarm_item(alarm: &str, service: &str, plan: Option<&RevertPlan>) -> u64 {
    let mut size = key(&format!("ALARM#{alarm}"), "SERVICE") + string("service", service) + number("gen", 1);
    if let Some(plan) = plan {
        size += 11 + json_len!(plan) + number("plan_since", plan.since_ms);
    }
    size
}

/// Strongly consistent read units of `size` bytes (at least 1).
fn read_units(size: u64) -> u64 {
    size.div_ceil(4096).max(1)
}

/// Write units of `size` bytes (at least 1).
fn write_units(size: u64) -> u64 {
    size.div_ceil(1024).max(1)
}

/// What one write request would write: PutItem for one item, else a transaction of all.
fn write_request(items: &[u64]) -> (&'static str, u64) {
    match items {
        [one] => ("dynamodb:PutItem", write_units(*one)),
        _ => (
            "dynamodb:TransactWriteItems",
            items.iter().map(|size| 2 * write_units(*size)).sum(),
        ),
    }
}

#[async_trait]
impl Ledger for Metered {
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()> {
        let aliases = config.image_builder_name.iter().count() + config.alarms.len();
        let existed = self.ports.ledger.load(&config.service, None).await?.is_some();
        for _ in 0..2 + aliases {
            self.meter.read("dynamodb:GetItem", 1);
        }
        let result = self.ports.ledger.register_service(config, live.clone()).await;
        let mut items = vec![config_item(config)];
        if !existed {
            items.push(state_item(&ServiceState::new(&config.service, live)));
        }
        items.extend(config.alarms.iter().map(|a| alarm_item(a, &config.service, None)));
        let (operation, units) = write_request(&items);
        let lost = matches!(result, Err(AdapterError::Conflict(_)));
        self.meter.write(operation, units, lost);
        result
    }

    async fn services(&self) -> AdapterResult<Vec<String>> {
        let result = self.ports.ledger.services().await;
        self.meter.read("dynamodb:Scan", 1);
        result
    }

    async fn service_for_image(&self, image_name: &str) -> AdapterResult<Option<String>> {
        self.meter.read("dynamodb:GetItem", 1);
        self.ports.ledger.service_for_image(image_name).await
    }

    async fn service_for_alarm(&self, alarm_name: &str) -> AdapterResult<Option<String>> {
        self.meter.read("dynamodb:GetItem", 1);
        self.ports.ledger.service_for_alarm(alarm_name).await
    }

    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>> {
        let result = self.ports.ledger.load(service, deploy_id).await;
        let asked = 2 + deploy_id.is_some() as u64;
        let units = match &result {
            Ok(Some(state)) => {
                let deployment = match (deploy_id, &state.deployment) {
                    (Some(_), Some(dep)) => read_units(self.meter.deployment_item(dep)),
                    (Some(_), None) => 1,
                    (None, _) => 0,
                };
                let config = self.meter.config_item(&state.config);
                read_units(config) + read_units(self.meter.state_item(&state.service)) + deployment
            }
            _ => asked,
        };
        self.meter.read("dynamodb:BatchGetItem", units);
        result
    }

    /// What `DynamoLedger::load_active` reads: the registration and the pointers, then the
    /// active deployment's item alone.
    async fn load_active(&self, service: &str) -> AdapterResult<Option<State>> {
        let result = self.ports.ledger.load_active(service).await;
        let (pointers, deployment) = match &result {
            Ok(Some(state)) => (
                read_units(self.meter.config_item(&state.config)) + read_units(self.meter.state_item(&state.service)),
                match (&state.service.active, &state.deployment) {
                    (Some(_), Some(dep)) => Some(read_units(self.meter.deployment_item(dep))),
                    (Some(_), None) => Some(1),
                    (None, _) => None,
                },
            ),
            _ => (2, None),
        };
        self.meter.read("dynamodb:BatchGetItem", pointers);
        if let Some(units) = deployment {
            self.meter.read("dynamodb:BatchGetItem", units);
        }
        result
    }

    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State> {
        // What `DynamoLedger::commit` writes: each a conditional put of the larger item.
        let mut items = Vec::new();
        // The items as they would be written (with their next generation), each sized
        // once: when the write wins, that is their size at that generation.
        let mut written = Vec::new();
        if after.service != before.service {
            let mut next = after.service.clone();
            next.gen = before.service.gen + 1;
            let size = state_item(&next);
            items.push(self.meter.state_item(&before.service).max(size));
            written.push(("STATE".to_string(), next.gen, size));
        }
        if let Some(dep) = &after.deployment {
            let previous = before.deployment.as_ref().filter(|d| d.deploy_id == dep.deploy_id);
            if previous != Some(dep) {
                let mut next = dep.clone();
                next.gen = previous.map_or(1, |d| d.gen + 1);
                let size = deployment_item(&next);
                items.push(previous.map_or(0, |d| self.meter.deployment_item(d)).max(size));
                written.push((next.deploy_id, next.gen, size));
            }
        }
        if items.is_empty() {
            return self.ports.ledger.commit(before, after).await;
        }
        if before.service.revert_plan != after.service.revert_plan {
            let (old, new) = (before.service.revert_plan.as_ref(), after.service.revert_plan.as_ref());
            let service = &after.service.service;
            items.extend(
                after
                    .config
                    .alarms
                    .iter()
                    .map(|a| alarm_item(a, service, old).max(alarm_item(a, service, new))),
            );
        }
        let result = self.ports.ledger.commit(before, after).await;
        let (operation, units) = write_request(&items);
        let lost = matches!(result, Err(AdapterError::Conflict(_)));
        self.meter.write(operation, units, lost);
        if result.is_ok() {
            for (item, gen, size) in written {
                self.meter.sized(&item, gen, || size);
            }
        }
        result
    }

    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>> {
        let result = self.ports.ledger.history(service).await;
        let size: u64 = result.iter().flatten().map(|d| self.meter.deployment_item(d)).sum();
        self.meter.read("dynamodb:Query", read_units(size));
        result
    }

    async fn claim_revert(
        &self,
        key: RevertKey<'_>,
        request: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>> {
        let size = match key {
            RevertKey::Service(service) => match self.ports.ledger.load(service, None).await? {
                Some(state) => self.meter.state_item(&state.service),
                None => 0,
            },
            RevertKey::Alarm(_) => 0,
        };
        let result = self.ports.ledger.claim_revert(key, request, received_at_ms).await;
        let size = match (key, &result) {
            (RevertKey::Alarm(alarm), Ok(Some((service, plan)))) => alarm_item(alarm, service, Some(plan)),
            _ => size,
        };
        let lost = matches!(result, Ok(None) | Err(AdapterError::Conflict(_)));
        self.meter.write("dynamodb:UpdateItem", write_units(size), lost);
        result
    }
}

#[async_trait]
impl Fleet for Metered {
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>> {
        self.meter.count("ec2:DescribeImages", 1);
        self.ports.fleet.describe_image(ami).await
    }

    async fn image_builder_ami(&self, image_arn: &str) -> AdapterResult<Option<String>> {
        self.meter.count("ec2:DescribeImages", 1);
        self.ports.fleet.image_builder_ami(image_arn).await
    }

    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>> {
        self.meter.count("ec2:RunInstances", 1);
        self.ports.fleet.launch(request).await
    }

    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>> {
        self.meter.count("ec2:DescribeInstances", 1);
        self.ports.fleet.instances_of(deploy_id).await
    }

    async fn instances_of_service(&self, service: &str, limit: usize) -> AdapterResult<Vec<Instance>> {
        // One page (up to 1000 instances) per call, as `Ec2Fleet::find_at_most` pages.
        let result = self.ports.fleet.instances_of_service(service, limit).await;
        let pages = result.as_ref().map_or(1, |found| found.len().div_ceil(1000).max(1));
        self.meter.count("ec2:DescribeInstances", pages as u64);
        result
    }

    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>> {
        self.meter
            .count("ec2:DescribeInstances", instance_ids.len().div_ceil(200) as u64);
        self.ports.fleet.describe(instance_ids).await
    }

    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>> {
        use greenlight_adapters::tags;
        // `Ec2Fleet::terminate` describes them first, then terminates ours that are not yet.
        self.meter
            .count("ec2:DescribeInstances", instance_ids.len().div_ceil(200) as u64);
        let found = self.ports.fleet.describe(instance_ids).await?;
        let ours = |i: &Instance| {
            i.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGED_BY_VALUE)
                && i.tags.get(tags::SERVICE).map(String::as_str) == Some(service)
        };
        if found.iter().any(|i| ours(i) && i.state != InstanceState::Terminated) {
            self.meter.count("ec2:TerminateInstances", 1);
        }
        self.ports.fleet.terminate(service, instance_ids).await
    }
}

impl Metered {
    /// Whether `deploy_id`'s test route is on `listener_arn` (the DescribeRules that opening
    /// or closing it starts with, counted).
    async fn route_open(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<bool> {
        self.meter.count("elasticloadbalancing:DescribeRules", 1);
        Ok(self
            .ports
            .lb
            .test_routes(listener_arn)
            .await?
            .iter()
            .any(|(_, id)| id == deploy_id))
    }
}

/// The read a switch point's kind takes.
fn describe_operation(switch: &Switch) -> &'static str {
    match switch.rule_arn {
        Some(_) => "elasticloadbalancing:DescribeRules",
        None => "elasticloadbalancing:DescribeListeners",
    }
}

#[async_trait]
impl LoadBalancer for Metered {
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>> {
        self.meter.count("elasticloadbalancing:DescribeTargetHealth", 1);
        self.ports.lb.target_health(target_group).await
    }

    async fn register(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        self.meter
            .count("elasticloadbalancing:RegisterTargets", !instance_ids.is_empty() as u64);
        self.ports.lb.register(target_group, instance_ids, port).await
    }

    async fn deregister(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        self.meter.count(
            "elasticloadbalancing:DeregisterTargets",
            !instance_ids.is_empty() as u64,
        );
        self.ports.lb.deregister(target_group, instance_ids, port).await
    }

    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()> {
        if frame.is_none() {
            self.meter.count(describe_operation(switch), 1);
        }
        let operation = match switch.rule_arn {
            Some(_) => "elasticloadbalancing:ModifyRule",
            None => "elasticloadbalancing:ModifyListener",
        };
        self.meter.count(operation, 1);
        self.ports.lb.set_traffic(switch, frame, weights).await
    }

    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>> {
        self.meter.count(describe_operation(switch), 1);
        self.ports.lb.switch_point(switch).await
    }

    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
        self.meter.count(describe_operation(switch), 1);
        self.ports.lb.traffic(switch).await
    }

    async fn forwarders(&self, target_group: &str) -> AdapterResult<Vec<String>> {
        // DescribeTargetGroups, then per load balancer DescribeListeners and per listener
        // DescribeRules: the simulated world has one load balancer whose listeners are the
        // switch points.
        let found = self.ports.lb.forwarders(target_group).await?;
        self.meter.count("elasticloadbalancing:DescribeTargetGroups", 1);
        self.meter.count("elasticloadbalancing:DescribeListeners", 1);
        self.meter.count("elasticloadbalancing:DescribeRules", 1);
        Ok(found)
    }

    async fn deregistration_delay_s(&self, target_group: &str) -> AdapterResult<u64> {
        self.meter
            .count("elasticloadbalancing:DescribeTargetGroupAttributes", 1);
        self.ports.lb.deregistration_delay_s(target_group).await
    }

    async fn open_test_route(&self, listener_arn: &str, deploy_id: &str, target_group: &str) -> AdapterResult<String> {
        // DescribeRules, and CreateRule when the route is not there yet.
        let there = self.route_open(listener_arn, deploy_id).await?;
        self.meter.count("elasticloadbalancing:CreateRule", !there as u64);
        self.ports
            .lb
            .open_test_route(listener_arn, deploy_id, target_group)
            .await
    }

    async fn close_test_route(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<()> {
        // DescribeRules, and DeleteRule when the route is there.
        let there = self.route_open(listener_arn, deploy_id).await?;
        self.meter.count("elasticloadbalancing:DeleteRule", there as u64);
        self.ports.lb.close_test_route(listener_arn, deploy_id).await
    }

    async fn test_routes(&self, listener_arn: &str) -> AdapterResult<Vec<(String, String)>> {
        self.meter.count("elasticloadbalancing:DescribeRules", 1);
        self.ports.lb.test_routes(listener_arn).await
    }
}

#[async_trait]
impl ArtifactStore for Metered {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        self.meter.count("s3:GetObject", 1);
        self.ports.store.get(bucket, key).await
    }

    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        self.meter.count("s3:PutObject", 1);
        self.ports.store.put_report(service, deploy_id, body).await
    }
}

#[async_trait]
impl Orchestrator for Metered {
    async fn start(&self, deploy_id: &str, input: &serde_json::Value) -> AdapterResult<()> {
        self.meter.count("states:StartExecution", 1);
        self.ports.orchestrator.start(deploy_id, input).await
    }
}

#[async_trait]
impl Alarms for Metered {
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>> {
        self.meter
            .count("cloudwatch:DescribeAlarms", names.len().div_ceil(100) as u64);
        self.ports.alarms.in_alarm(names).await
    }

    async fn metric_data(
        &self,
        queries: &[greenlight_adapters::StatQuery],
        start: greenlight_core::Epoch,
        end: greenlight_core::Epoch,
    ) -> AdapterResult<Vec<Vec<(greenlight_core::Epoch, f64)>>> {
        // GetMetricData takes up to 500 queries a call.
        self.meter
            .count("cloudwatch:GetMetricData", queries.len().div_ceil(500) as u64);
        self.ports.alarms.metric_data(queries, start, end).await
    }
}

#[async_trait]
impl greenlight_adapters::Hooks for Metered {
    async fn call(
        &self,
        hook: &greenlight_core::hook::Hook,
        payload: &[u8],
    ) -> AdapterResult<greenlight_core::hook::Reply> {
        // A Lambda hook is one Invoke; a webhook reads its secret (GetSecretValue), then POSTs
        // to the team's endpoint (not an AWS call).
        match hook.target() {
            Some(greenlight_core::hook::Target::Webhook(_)) => self.meter.count("secretsmanager:GetSecretValue", 1),
            _ => self.meter.count("lambda:InvokeFunction", 1),
        }
        self.ports.hooks.call(hook, payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_units_follow_dynamodbs_rules() {
        assert_eq!(string("pk", "SVC#a"), 7);
        // 1 byte per two significant digits, + 1: 7 → 2, 12 → 2, 123 → 3, 1200 → 2.
        assert_eq!(number("", 7), 2);
        assert_eq!(number("", 12), 2);
        assert_eq!(number("", 123), 3);
        assert_eq!(number("", 1200), 2);
        assert_eq!((read_units(1), read_units(4096), read_units(4097)), (1, 1, 2));
        assert_eq!((write_units(0), write_units(1024), write_units(1025)), (1, 1, 2));
        assert_eq!(write_request(&[1500]), ("dynamodb:PutItem", 2));
        assert_eq!(write_request(&[1500, 100]), ("dynamodb:TransactWriteItems", 6));
    }
}
