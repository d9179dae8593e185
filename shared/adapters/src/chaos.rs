//! Crash injection for tests and the simulator: [`crashing`] wraps every AWS-facing adapter
//! of a [`Ports`] so that the handler using them "crashes" right after its k-th AWS call.
//!
//! The call itself completes (its effect on the world happens, like a Lambda that dies after
//! RunInstances returned but before it recorded the ids); the caller gets an error instead of
//! the result, and every later call of the same invocation fails without reaching the world,
//! as if the process were gone. The handler therefore ends with a retryable error and the
//! event is redelivered, exactly what Lambda and Step Functions do after a crash.
//!
//! The wrapper is the handler's own code path: nothing in the handler is copied or mocked.
//! Calls are counted per adapter call (one ledger `load` is one BatchGetItem, one `commit`
//! one PutItem or TransactWriteItems, one `set_traffic` one ModifyListener/ModifyRule, one
//! hook call one Lambda `Invoke`, or a webhook's `GetSecretValue` and its POST).
//! The prober (HTTP to the instances), the clock and the metrics sink are not AWS calls and
//! pass through uncounted.
//!
//! A wire may also interleave: before each call it yields to the async runtime a number of
//! times drawn from `greenlight_core::rng::Rng` seeded by the wire's seed, so that handlers
//! run concurrently on one thread interleave their AWS calls in an order the seed picks (the
//! simulator's races).

use crate::{
    AdapterError, AdapterResult, Alarms, ArtifactStore, Fleet, Instance, LaunchRequest, Ledger, LoadBalancer,
    Orchestrator, Ports, RevertKey,
};
use async_trait::async_trait;
use greenlight_core::config::Switch;
use greenlight_core::decide::{ImageFacts, RevertRequest, TargetHealth};
use greenlight_core::model::{Deployment, Release, RevertPlan, State};
use greenlight_core::rng::Rng;
use greenlight_core::switch::{Frame, SeenAction};
use greenlight_core::ServiceConfig;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Counts the AWS calls of one handler invocation and trips after the armed one.
#[derive(Debug, Default)]
pub struct Tripwire {
    inner: Mutex<Wire>,
}

#[derive(Debug, Default)]
struct Wire {
    /// Crash right after this call (1-based); None: never.
    crash_after: Option<usize>,
    tripped: bool,
    /// The calls made so far (`ledger.commit`, `lb.set_traffic`, ...), in order.
    calls: Vec<&'static str>,
    /// When set, the generator of the yields before each call.
    interleave: Option<Rng>,
}

impl Tripwire {
    /// A wire that never trips (it only counts).
    pub fn counting() -> Arc<Tripwire> {
        Arc::new(Tripwire::default())
    }

    /// A wire that trips right after call `k` (1-based).
    pub fn crash_after(k: usize) -> Arc<Tripwire> {
        let wire = Tripwire::default();
        wire.lock().crash_after = Some(k);
        Arc::new(wire)
    }

    /// This wire, yielding to the runtime 0–3 times (from `seed`) before each call.
    pub fn interleaved(self: Arc<Self>, seed: u64) -> Arc<Tripwire> {
        self.lock().interleave = Some(Rng::new(seed));
        self
    }

    /// The calls made through this wire, in order (including the one it tripped on).
    pub fn calls(&self) -> Vec<&'static str> {
        self.lock().calls.clone()
    }

    /// True once the wire has tripped.
    pub fn tripped(&self) -> bool {
        self.lock().tripped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one AWS call through the wire: refused once tripped; counted; the armed call's
    /// result is replaced by the crash.
    async fn call<T>(&self, name: &'static str, call: impl Future<Output = AdapterResult<T>>) -> AdapterResult<T> {
        let yields = {
            let mut wire = self.lock();
            wire.interleave.as_mut().map_or(0, |rng| rng.range(0, 3))
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        if self.tripped() {
            return Err(crashed(name, "the process crashed earlier"));
        }
        let result = call.await;
        let mut wire = self.lock();
        wire.calls.push(name);
        if wire.crash_after == Some(wire.calls.len()) {
            wire.tripped = true;
            return Err(crashed(name, "crashed right after this call"));
        }
        result
    }
}

/// The calls that only read AWS. A crash right after one of them leaves AWS exactly as a crash
/// right after the invocation's call before it did (or, before its first write, as an
/// invocation that failed having changed nothing), so crashing after each invocation's first
/// call and after every other call not named here reaches every state a crash can leave.
/// The crash sweeps use it to skip the rest; a call missing from this list counts as a write.
pub const READ_ONLY_CALLS: &[&str] = &[
    "alarms.in_alarm",
    "alarms.metric_data",
    "fleet.describe",
    "fleet.describe_image",
    "fleet.image_builder_ami",
    "fleet.instances_of",
    "fleet.instances_of_service",
    "lb.deregistration_delay_s",
    "lb.forwarders",
    "lb.switch_point",
    "lb.target_health",
    "lb.test_routes",
    "lb.traffic",
    "ledger.history",
    "ledger.load",
    "ledger.service_for_alarm",
    "ledger.service_for_image",
    "ledger.services",
    "store.get",
];

/// True when `call` (a [`Tripwire::calls`] name) only reads: see [`READ_ONLY_CALLS`].
pub fn only_reads(call: &str) -> bool {
    READ_ONLY_CALLS.contains(&call)
}

/// The error a crashed invocation ends with: transient, so the event is delivered again.
fn crashed(call: &'static str, what: &str) -> AdapterError {
    AdapterError::Aws {
        service: "greenlight-chaos",
        operation: call,
        message: format!("injected crash: {what}"),
        retryable: true,
    }
}

/// `ports` with every AWS-facing adapter behind `wire`.
pub fn crashing(ports: &Ports, wire: Arc<Tripwire>) -> Ports {
    ports.with_aws(Arc::new(Crashing {
        ports: ports.clone(),
        wire,
    }))
}

/// The real adapters of `ports`, each call going through `wire`.
struct Crashing {
    ports: Ports,
    wire: Arc<Tripwire>,
}

#[async_trait]
impl Ledger for Crashing {
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()> {
        let inner = &self.ports.ledger;
        self.wire
            .call("ledger.register_service", inner.register_service(config, live))
            .await
    }
    async fn services(&self) -> AdapterResult<Vec<String>> {
        self.wire.call("ledger.services", self.ports.ledger.services()).await
    }
    async fn service_for_image(&self, image_name: &str) -> AdapterResult<Option<String>> {
        let inner = &self.ports.ledger;
        self.wire
            .call("ledger.service_for_image", inner.service_for_image(image_name))
            .await
    }
    async fn service_for_alarm(&self, alarm_name: &str) -> AdapterResult<Option<String>> {
        let inner = &self.ports.ledger;
        self.wire
            .call("ledger.service_for_alarm", inner.service_for_alarm(alarm_name))
            .await
    }
    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>> {
        self.wire
            .call("ledger.load", self.ports.ledger.load(service, deploy_id))
            .await
    }
    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State> {
        self.wire
            .call("ledger.commit", self.ports.ledger.commit(before, after))
            .await
    }
    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>> {
        self.wire
            .call("ledger.history", self.ports.ledger.history(service))
            .await
    }
    async fn claim_revert(
        &self,
        key: RevertKey<'_>,
        request: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>> {
        let inner = &self.ports.ledger;
        self.wire
            .call("ledger.claim_revert", inner.claim_revert(key, request, received_at_ms))
            .await
    }
}

#[async_trait]
impl Fleet for Crashing {
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>> {
        self.wire
            .call("fleet.describe_image", self.ports.fleet.describe_image(ami))
            .await
    }
    async fn image_builder_ami(&self, image_arn: &str) -> AdapterResult<Option<String>> {
        let inner = &self.ports.fleet;
        self.wire
            .call("fleet.image_builder_ami", inner.image_builder_ami(image_arn))
            .await
    }
    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>> {
        self.wire.call("fleet.launch", self.ports.fleet.launch(request)).await
    }
    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>> {
        self.wire
            .call("fleet.instances_of", self.ports.fleet.instances_of(deploy_id))
            .await
    }
    async fn instances_of_service(&self, service: &str, limit: usize) -> AdapterResult<Vec<Instance>> {
        let inner = &self.ports.fleet;
        self.wire
            .call("fleet.instances_of_service", inner.instances_of_service(service, limit))
            .await
    }
    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>> {
        self.wire
            .call("fleet.describe", self.ports.fleet.describe(instance_ids))
            .await
    }
    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>> {
        self.wire
            .call("fleet.terminate", self.ports.fleet.terminate(service, instance_ids))
            .await
    }
}

#[async_trait]
impl LoadBalancer for Crashing {
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>> {
        self.wire
            .call("lb.target_health", self.ports.lb.target_health(target_group))
            .await
    }
    async fn register(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        self.wire
            .call("lb.register", self.ports.lb.register(target_group, instance_ids, port))
            .await
    }
    async fn deregister(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        self.wire
            .call(
                "lb.deregister",
                self.ports.lb.deregister(target_group, instance_ids, port),
            )
            .await
    }
    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()> {
        self.wire
            .call("lb.set_traffic", self.ports.lb.set_traffic(switch, frame, weights))
            .await
    }
    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>> {
        self.wire
            .call("lb.switch_point", self.ports.lb.switch_point(switch))
            .await
    }
    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
        self.wire.call("lb.traffic", self.ports.lb.traffic(switch)).await
    }
    async fn forwarders(&self, target_group: &str) -> AdapterResult<Vec<String>> {
        self.wire
            .call("lb.forwarders", self.ports.lb.forwarders(target_group))
            .await
    }
    async fn deregistration_delay_s(&self, target_group: &str) -> AdapterResult<u64> {
        self.wire
            .call(
                "lb.deregistration_delay_s",
                self.ports.lb.deregistration_delay_s(target_group),
            )
            .await
    }
    async fn open_test_route(&self, listener_arn: &str, deploy_id: &str, target_group: &str) -> AdapterResult<String> {
        self.wire
            .call(
                "lb.open_test_route",
                self.ports.lb.open_test_route(listener_arn, deploy_id, target_group),
            )
            .await
    }
    async fn close_test_route(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<()> {
        self.wire
            .call(
                "lb.close_test_route",
                self.ports.lb.close_test_route(listener_arn, deploy_id),
            )
            .await
    }
    async fn test_routes(&self, listener_arn: &str) -> AdapterResult<Vec<(String, String)>> {
        self.wire
            .call("lb.test_routes", self.ports.lb.test_routes(listener_arn))
            .await
    }
}

#[async_trait]
impl ArtifactStore for Crashing {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        self.wire.call("store.get", self.ports.store.get(bucket, key)).await
    }
    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        self.wire
            .call(
                "store.put_report",
                self.ports.store.put_report(service, deploy_id, body),
            )
            .await
    }
}

#[async_trait]
impl Orchestrator for Crashing {
    async fn start(&self, deploy_id: &str, input: &serde_json::Value) -> AdapterResult<()> {
        self.wire
            .call("orchestrator.start", self.ports.orchestrator.start(deploy_id, input))
            .await
    }
}

#[async_trait]
impl Alarms for Crashing {
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>> {
        self.wire
            .call("alarms.in_alarm", self.ports.alarms.in_alarm(names))
            .await
    }

    async fn metric_data(
        &self,
        queries: &[greenlight_core::analysis::fetch::StatQuery],
        start: greenlight_core::Epoch,
        end: greenlight_core::Epoch,
    ) -> AdapterResult<Vec<Vec<(greenlight_core::Epoch, f64)>>> {
        self.wire
            .call("alarms.metric_data", self.ports.alarms.metric_data(queries, start, end))
            .await
    }
}

#[async_trait]
impl crate::Hooks for Crashing {
    async fn call(
        &self,
        hook: &greenlight_core::hook::Hook,
        payload: &[u8],
    ) -> AdapterResult<greenlight_core::hook::Reply> {
        self.wire.call("hooks.call", self.ports.hooks.call(hook, payload)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_armed_call_happens_then_everything_after_it_fails() {
        let wire = Tripwire::crash_after(2);
        let ok = || async { Ok::<u32, AdapterError>(7) };
        assert_eq!(wire.call("a", ok()).await.unwrap(), 7);
        assert!(wire.call("b", ok()).await.is_err(), "the second call is the crash");
        assert!(wire.call("c", ok()).await.is_err(), "nothing runs after a crash");
        assert_eq!(
            wire.calls(),
            vec!["a", "b"],
            "the crashed call happened; the later one never ran"
        );
        assert!(wire.tripped());
    }

    #[test]
    fn every_read_only_call_is_a_call_this_wrapper_makes_and_writes_are_not_among_them() {
        // The wrapper's impls: from the first one to these tests.
        let source = include_str!("chaos.rs");
        let wrapper = &source[source.find("impl Ledger for Crashing").unwrap()..source.find("#[cfg(test)]").unwrap()];
        for call in READ_ONLY_CALLS {
            assert!(
                wrapper.contains(&format!("\"{call}\",")),
                "{call} is not a call of the wrapper"
            );
        }
        for write in [
            "ledger.commit",
            "ledger.claim_revert",
            "ledger.register_service",
            "fleet.launch",
            "fleet.terminate",
            "lb.set_traffic",
            "lb.register",
            "lb.deregister",
            "lb.open_test_route",
            "lb.close_test_route",
            "store.put_report",
            "orchestrator.start",
        ] {
            assert!(!only_reads(write), "{write} changes AWS");
        }
    }

    #[tokio::test]
    async fn a_counting_wire_never_trips() {
        let wire = Tripwire::counting();
        for _ in 0..5 {
            wire.call("x", async { Ok::<(), AdapterError>(()) }).await.unwrap();
        }
        assert_eq!(wire.calls().len(), 5);
        assert!(!wire.tripped());
    }
}
