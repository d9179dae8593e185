//! The simulated AWS behind the same adapter traits the functions use: EC2 images and
//! instances (`pending` → `running` → `terminated`, RunInstances `ClientToken` idempotency,
//! tags on launch), ELB target groups with health states (`initial` → `healthy` or
//! `unhealthy`, `draining` for the group's own deregistration delay, and when each target
//! last got a new connection) and weighted listeners and rules, each with its frame (the
//! actions greenlight must keep around the forward), CloudWatch
//! alarm states, S3 objects, the smoke-test HTTP endpoint of every instance, and Step
//! Functions' StartExecution (executions are run by the scheduler in [`crate::sim`]).
//! Time is the simulated clock; nothing here sleeps or reads the wall clock.

use async_trait::async_trait;
use greenlight_adapters::{
    AdapterError, AdapterResult, Alarms, ArtifactStore, Clock, Fleet, Instance, InstanceState, LaunchRequest,
    LoadBalancer, Orchestrator, Prober,
};
use greenlight_core::config::Switch;
use greenlight_core::decide::{ImageFacts, TargetHealth, TargetState};
use greenlight_core::switch::{Frame, SeenAction};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// At most this many weight settings remembered per switch point (the oldest go first).
pub const MAX_WEIGHT_CHANGES: usize = 256;

/// How an image's application behaves once its instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    /// Fails the load balancer's health check.
    Unhealthy,
    /// Passes the health check, fails the smoke test.
    SmokeFails,
    /// Passes the health check and the smoke test, but answers users with 5xx far more
    /// often than a healthy release ([`Behaviour::error_rate`]): only canary analysis sees it.
    Erroring,
    /// Passes the health check and the smoke test, but answers slower than a healthy
    /// release ([`Behaviour::mean_latency_s`]): only a latency metric sees it.
    Slow,
}

impl Behaviour {
    /// The share of requests its instances answer with a 5xx.
    pub fn error_rate(self) -> f64 {
        match self {
            Behaviour::Erroring => 0.08,
            _ => 0.01,
        }
    }

    /// The mean of its instances' response times (seconds; exponentially distributed).
    pub fn mean_latency_s(self) -> f64 {
        match self {
            Behaviour::Slow => 0.25,
            _ => 0.1,
        }
    }

    /// Passes the health check and the smoke test (whatever its users then see).
    pub fn passes_gates(self) -> bool {
        matches!(self, Behaviour::Healthy | Behaviour::Erroring | Behaviour::Slow)
    }
}

/// An AMI.
#[derive(Debug, Clone)]
pub struct Image {
    pub facts: ImageFacts,
    pub behaviour: Behaviour,
}

/// An EC2 instance.
#[derive(Debug, Clone)]
pub struct SimInstance {
    pub ami: String,
    pub ip: String,
    pub tags: BTreeMap<String, String>,
    pub launched_ms: u64,
    pub terminated_ms: Option<u64>,
}

/// A target in a target group.
#[derive(Debug, Clone)]
pub struct Target {
    pub registered_ms: u64,
    pub deregistered_ms: Option<u64>,
    /// Since when the target gets new connections: registered, its instance not
    /// terminated, and a listener forwards to its group with weight > 0 ([`Aws::forwarded_by`]).
    pub serving_from: Option<u64>,
    /// When it last stopped getting new connections (a listener moved away, it was
    /// deregistered, or its instance terminated): its connections drain for the group's
    /// deregistration delay from then, and the instance must not be terminated sooner.
    pub served_until: Option<u64>,
    /// The listener or rule that still forwarded to the group with weight > 0 when the
    /// target was deregistered: a fleet taken out from under traffic.
    pub deregistered_under: Option<String>,
}

impl Target {
    /// A target registered at `now_ms`.
    pub fn new(now_ms: u64) -> Target {
        Target {
            registered_ms: now_ms,
            deregistered_ms: None,
            serving_from: None,
            served_until: None,
            deregistered_under: None,
        }
    }
}

/// A target group.
#[derive(Debug, Clone, Default)]
pub struct TargetGroup {
    pub deregistration_delay_ms: u64,
    pub targets: BTreeMap<String, Target>,
}

/// An execution StartExecution accepted, for the scheduler to run.
#[derive(Debug, Clone)]
pub struct Started {
    pub name: String,
    pub input: Value,
}

/// Timings of the simulated AWS.
#[derive(Debug, Clone)]
pub struct Timings {
    /// RunInstances → `running`.
    pub pending_ms: u64,
    /// `running` → the first health check verdict.
    pub health_check_ms: u64,
}

/// What people did to the fleet by hand, outside greenlight (the simulator's hand edits):
/// what the invariants tolerate until the scheduled reconcile's audit sees it, and what
/// they require of the audit once settled.
#[derive(Debug, Clone, Default)]
pub struct Hand {
    /// Switch point key → the weights set by hand, while they are still the switch point's
    /// (greenlight's own [`LoadBalancer::set_traffic`] on it removes the entry).
    pub switches: BTreeMap<String, Vec<(String, u8)>>,
    /// Strangers: instances not launched by greenlight (untagged), id → the target group
    /// they were registered into by hand. Never to be terminated.
    pub strangers: BTreeMap<String, String>,
    /// Instances launched by hand tagged `managed-by=greenlight` and a service's tag, of no
    /// deployment: id → its service.
    pub orphans: BTreeMap<String, String>,
    /// Listeners added by hand, outside every service's switch points, forwarding to a
    /// service's live group while a deployment bakes: key → (service, when it is undone).
    /// Greenlight must not retire that fleet until the listener is gone.
    pub foreign: BTreeMap<String, (String, u64)>,
}

/// A switch point's forward weights from a time on (ms).
pub type WeightChange = (u64, Vec<(String, u8)>);

/// Everything the simulated AWS holds.
#[derive(Debug, Clone)]
pub struct Aws {
    pub now_ms: u64,
    pub timings: Timings,
    pub images: BTreeMap<String, Image>,
    pub instances: BTreeMap<String, SimInstance>,
    /// ClientToken → (request fingerprint, instance ids).
    pub tokens: BTreeMap<String, (String, Vec<String>)>,
    pub target_groups: BTreeMap<String, TargetGroup>,
    /// Switch point (rule ARN, else listener ARN) → forward weights.
    pub listeners: BTreeMap<String, Vec<(String, u8)>>,
    /// Test routes: (listener, deploy id) → the target group the rule forwards to.
    pub test_routes: BTreeMap<(String, String), String>,
    /// Switch point → the actions around its forward (authentication, stickiness): the
    /// frame greenlight must re-send exactly. Absent: a plain forward.
    pub frames: BTreeMap<String, Frame>,
    /// Each switch point's frame as the service was set up (absent: a plain forward): what
    /// `frames` must hold at all times (greenlight never drops an authentication action,
    /// reorders the actions or loses stickiness).
    pub initial_frames: BTreeMap<String, Frame>,
    pub in_alarm: BTreeSet<String>,
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// Execution names ever started (StartExecution of one of them is a no-op).
    pub execution_names: BTreeSet<String>,
    /// Started and not yet picked up by the scheduler.
    pub started: Vec<Started>,
    /// What was done by hand (seed runs with the reconcile in chaos only).
    pub hand: Hand,
    /// Every switch point's (and hand-added listener's) forward weights over time: when
    /// each setting took effect (ms), oldest first, at most [`MAX_WEIGHT_CHANGES`] each (an
    /// empty setting: the listener was removed). The traffic model of [`Aws::metric_data`].
    pub weight_history: BTreeMap<String, Vec<WeightChange>>,
    /// The seed of the metrics' noise (a hash of it, the target group and the period: never
    /// the scheduler's PRNG, so reading metrics moves no draw of the run).
    pub metric_seed: u64,
    /// Chance (%) that a `GetMetricData` call fails (throttled), from a hash of the seed and
    /// the calls so far; 0 once faults stop.
    pub metric_fault_pct: u64,
    /// `GetMetricData` calls so far, and how many of them failed.
    pub metric_reads: u64,
    pub metric_faults: u64,
    next_instance: u64,
    /// Instance ids by their `greenlight:service` tag, by their `greenlight:deploy-id` tag,
    /// and by private IP: kept by [`Aws::run_instances`] (the only way instances are made,
    /// and tags never change), so that a lookup does not scan every instance (the scale runs
    /// hold tens of thousands).
    by_service: BTreeMap<String, BTreeSet<String>>,
    by_deploy_id: BTreeMap<String, BTreeSet<String>>,
    by_ip: BTreeMap<String, String>,
    /// Lifecycle hooks' behaviour by what they call (the function's ARN or the webhook's URL).
    pub hook_scripts: BTreeMap<String, HookScript>,
    /// Every hook call, in order: (what was called, the payload's invocation id).
    pub hook_calls: Vec<(String, String)>,
}

/// How a simulated hook answers: `IN_PROGRESS` to its first `in_progress` calls at a point,
/// then its verdict (the call number is the payload's, so a retried call answers the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookScript {
    pub in_progress: u32,
    pub verdict: HookVerdict,
}

/// A simulated hook's last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookVerdict {
    Succeeded,
    Failed,
    /// An answer that is no answer (a function error): a `FAILED` with why.
    Garbage,
    /// Never decides: `IN_PROGRESS` until its timeout.
    Never,
}

impl Aws {
    pub fn new(now_ms: u64, timings: Timings) -> Aws {
        Aws {
            now_ms,
            timings,
            images: BTreeMap::new(),
            instances: BTreeMap::new(),
            tokens: BTreeMap::new(),
            target_groups: BTreeMap::new(),
            listeners: BTreeMap::new(),
            frames: BTreeMap::new(),
            test_routes: BTreeMap::new(),
            initial_frames: BTreeMap::new(),
            in_alarm: BTreeSet::new(),
            objects: BTreeMap::new(),
            execution_names: BTreeSet::new(),
            started: Vec::new(),
            hand: Hand::default(),
            weight_history: BTreeMap::new(),
            metric_seed: 0,
            metric_fault_pct: 0,
            metric_reads: 0,
            metric_faults: 0,
            next_instance: 0,
            by_service: BTreeMap::new(),
            by_deploy_id: BTreeMap::new(),
            by_ip: BTreeMap::new(),
            hook_scripts: BTreeMap::new(),
            hook_calls: Vec::new(),
        }
    }

    /// The ids of the instances tagged `greenlight:service=<service>` (terminated ones
    /// included), in id order.
    pub fn instance_ids_of_service(&self, service: &str) -> impl Iterator<Item = &String> {
        self.by_service.get(service).into_iter().flatten()
    }

    /// The ids of the instances tagged `greenlight:deploy-id=<deploy_id>` (terminated ones
    /// included), in id order.
    pub fn instance_ids_of_deployment(&self, deploy_id: &str) -> impl Iterator<Item = &String> {
        self.by_deploy_id.get(deploy_id).into_iter().flatten()
    }

    /// The instance with this private IP.
    pub fn instance_at(&self, ip: &str) -> Option<&SimInstance> {
        self.by_ip.get(ip).and_then(|id| self.instances.get(id))
    }

    /// The EC2 state name of an instance now.
    pub fn state(&self, instance: &SimInstance) -> InstanceState {
        match instance.terminated_ms {
            Some(_) => InstanceState::Terminated,
            None if self.now_ms < instance.launched_ms + self.timings.pending_ms => InstanceState::Pending,
            None => InstanceState::Running,
        }
    }

    /// Launches `count` instances of `ami` with `tags` (no token check: see [`Fleet::launch`]).
    pub fn run_instances(&mut self, ami: &str, count: u32, tags: BTreeMap<String, String>) -> Vec<String> {
        (0..count)
            .map(|_| {
                self.next_instance += 1;
                let n = self.next_instance;
                let id = format!("i-{n:017x}");
                let instance = SimInstance {
                    ami: ami.to_string(),
                    ip: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
                    tags: tags.clone(),
                    launched_ms: self.now_ms,
                    terminated_ms: None,
                };
                let tag = |key: &str| instance.tags.get(key).cloned();
                if let Some(service) = tag(greenlight_adapters::tags::SERVICE) {
                    self.by_service.entry(service).or_default().insert(id.clone());
                }
                if let Some(deploy_id) = tag(greenlight_adapters::tags::DEPLOY_ID) {
                    self.by_deploy_id.entry(deploy_id).or_default().insert(id.clone());
                }
                self.by_ip.insert(instance.ip.clone(), id.clone());
                self.instances.insert(id.clone(), instance);
                id
            })
            .collect()
    }

    /// Someone sets the switch point `key`'s weights by hand (recorded in [`Hand`]).
    pub fn edit_listener_by_hand(&mut self, key: &str, weights: &[(String, u8)]) {
        self.hand.switches.insert(key.to_string(), weights.to_vec());
        self.set_listener(key, weights.to_vec());
    }

    /// Someone adds a listener by hand, outside `service`'s switch points, forwarding
    /// everything to `target_group`, to be removed at `until_ms` (recorded in [`Hand`]).
    pub fn add_foreign_listener(&mut self, key: &str, service: &str, target_group: &str, until_ms: u64) {
        self.hand
            .foreign
            .insert(key.to_string(), (service.to_string(), until_ms));
        self.set_listener(key, vec![(target_group.to_string(), 100)]);
    }

    /// Removes the listeners added by hand whose time has come. Their keys.
    pub fn undo_foreign_listeners(&mut self) -> Vec<String> {
        let now = self.now_ms;
        let due: Vec<String> = self
            .hand
            .foreign
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            self.hand.foreign.remove(key);
            self.record_weights(key, Vec::new());
            if let Some(old) = self.listeners.remove(key) {
                for (tg, _) in old {
                    self.refresh_serving(&tg);
                }
            }
        }
        due
    }

    /// Sets a listener's (or rule's) forward weights, keeping which targets get new
    /// connections up to date.
    pub fn set_listener(&mut self, key: &str, weights: Vec<(String, u8)>) {
        self.record_weights(key, weights.clone());
        let mut groups: BTreeSet<String> = weights.iter().map(|(tg, _)| tg.clone()).collect();
        if let Some(old) = self.listeners.insert(key.to_string(), weights) {
            groups.extend(old.into_iter().map(|(tg, _)| tg));
        }
        for tg in groups {
            self.refresh_serving(&tg);
        }
    }

    /// Remembers that `key`'s weights are `weights` from now on (bounded: the oldest
    /// settings go first; one set twice in the same millisecond keeps the last).
    fn record_weights(&mut self, key: &str, weights: Vec<(String, u8)>) {
        let now = self.now_ms;
        let history = self.weight_history.entry(key.to_string()).or_default();
        match history.last_mut() {
            Some((at, last)) if *at == now => *last = weights,
            Some((_, last)) if *last == weights => {}
            _ => history.push((now, weights)),
        }
        if history.len() > MAX_WEIGHT_CHANGES {
            history.drain(..history.len() - MAX_WEIGHT_CHANGES);
        }
    }

    /// The first listener or rule forwarding to `target_group` with weight > 0, not counting
    /// a switch point edited by hand and not written by greenlight since (not greenlight's
    /// doing: the invariants leave it to the audit).
    pub fn forwarded_by(&self, target_group: &str) -> Option<&String> {
        self.listeners
            .iter()
            .filter(|(key, _)| !self.hand.switches.contains_key(*key))
            .find(|(_, weights)| weights.iter().any(|(tg, w)| tg == target_group && *w > 0))
            .map(|(key, _)| key)
    }

    /// Marks which of `target_group`'s targets get new connections from now on, and when
    /// the others stopped.
    pub fn refresh_serving(&mut self, target_group: &str) {
        let forwarded = self.forwarded_by(target_group).is_some();
        let now = self.now_ms;
        let Some(tg) = self.target_groups.get_mut(target_group) else {
            return;
        };
        for (id, target) in tg.targets.iter_mut() {
            let running = self.instances.get(id).is_some_and(|i| i.terminated_ms.is_none());
            let receiving = forwarded && running && target.deregistered_ms.is_none();
            match (receiving, target.serving_from) {
                (true, None) => target.serving_from = Some(now),
                (false, Some(_)) => {
                    target.serving_from = None;
                    target.served_until = Some(now);
                }
                _ => {}
            }
        }
    }

    /// Someone launches an untagged instance of `ami` and registers it into `target_group`
    /// by hand: a stranger (recorded in [`Hand`]). Its id.
    pub fn register_stranger(&mut self, ami: &str, target_group: &str) -> String {
        let owner = BTreeMap::from([("owner".to_string(), "someone".to_string())]);
        let id = self.run_instances(ami, 1, owner).remove(0);
        let now = self.now_ms;
        let tg = self.target_groups.entry(target_group.to_string()).or_default();
        tg.targets.insert(id.clone(), Target::new(now));
        self.hand.strangers.insert(id.clone(), target_group.to_string());
        self.refresh_serving(target_group);
        id
    }

    /// Someone launches an instance of `ami` tagged `managed-by=greenlight` and `service`'s
    /// tag, of no deployment: a tagged orphan (recorded in [`Hand`]). Its id.
    pub fn launch_orphan(&mut self, ami: &str, service: &str) -> String {
        use greenlight_adapters::tags;
        let tags = BTreeMap::from([
            (tags::MANAGED_BY.to_string(), tags::MANAGED_BY_VALUE.to_string()),
            (tags::SERVICE.to_string(), service.to_string()),
        ]);
        let id = self.run_instances(ami, 1, tags).remove(0);
        self.hand.orphans.insert(id.clone(), service.to_string());
        id
    }

    /// The health of one registered target now (None once it has drained away).
    pub fn target_state(&self, tg: &TargetGroup, instance_id: &str, target: &Target) -> Option<TargetState> {
        let instance = self.instances.get(instance_id)?;
        let gone_since = target.deregistered_ms.or(instance.terminated_ms);
        if let Some(since) = gone_since {
            return (self.now_ms < since + tg.deregistration_delay_ms).then_some(TargetState::Draining);
        }
        let checked_from =
            (instance.launched_ms + self.timings.pending_ms).max(target.registered_ms) + self.timings.health_check_ms;
        if self.now_ms < checked_from {
            return Some(TargetState::Initial);
        }
        let behaviour = self.images.get(&instance.ami).map(|i| i.behaviour);
        Some(match behaviour {
            Some(Behaviour::Unhealthy) | None => TargetState::Unhealthy,
            Some(_) => TargetState::Healthy,
        })
    }
}

/// The simulated AWS, shared by every adapter. Cloning shares it.
#[derive(Clone)]
pub struct World(pub Arc<Mutex<Aws>>);

impl World {
    pub fn new(aws: Aws) -> World {
        World(Arc::new(Mutex::new(aws)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Aws> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn invalid(what: String) -> AdapterError {
    AdapterError::Invalid(what)
}

/// The key a switch point's weights are stored under (the rule, else the listener).
pub fn switch_key(switch: &Switch) -> String {
    switch.rule_arn.clone().unwrap_or_else(|| switch.listener_arn.clone())
}

impl Clock for World {
    fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }
}

#[async_trait]
impl Fleet for World {
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>> {
        Ok(self.lock().images.get(ami).map(|i| i.facts.clone()))
    }

    async fn image_builder_ami(&self, _image_arn: &str) -> AdapterResult<Option<String>> {
        Ok(None)
    }

    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>> {
        use greenlight_adapters::tags;
        let mut aws = self.lock();
        if !aws.images.contains_key(&request.ami) {
            return Err(invalid(format!("InvalidAMIID.NotFound: {}", request.ami)));
        }
        let fingerprint = format!("{}|{}|{}", request.ami, request.launch.count, request.deploy_id);
        if let Some((known, ids)) = aws.tokens.get(&request.client_token) {
            return if *known == fingerprint {
                Ok(ids.clone())
            } else {
                Err(invalid("IdempotentParameterMismatch".into()))
            };
        }
        let tags = BTreeMap::from([
            (tags::MANAGED_BY.to_string(), tags::MANAGED_BY_VALUE.to_string()),
            (tags::SERVICE.to_string(), request.service.clone()),
            (tags::VERSION.to_string(), request.version.clone()),
            (tags::DEPLOY_ID.to_string(), request.deploy_id.clone()),
        ]);
        let ids = aws.run_instances(&request.ami, request.launch.count, tags);
        aws.tokens
            .insert(request.client_token.clone(), (fingerprint, ids.clone()));
        Ok(ids)
    }

    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>> {
        let aws = self.lock();
        let ids: Vec<String> = aws
            .instance_ids_of_deployment(deploy_id)
            .filter(|id| aws.instances.get(*id).is_some_and(|i| i.terminated_ms.is_none()))
            .cloned()
            .collect();
        Ok(describe(&aws, &ids))
    }

    async fn instances_of_service(&self, service: &str, limit: usize) -> AdapterResult<Vec<Instance>> {
        use greenlight_adapters::tags;
        let aws = self.lock();
        let ids: Vec<String> = aws
            .instance_ids_of_service(service)
            .filter(|id| {
                aws.instances.get(*id).is_some_and(|i| {
                    i.terminated_ms.is_none()
                        && i.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGED_BY_VALUE)
                })
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(describe(&aws, &ids))
    }

    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>> {
        Ok(describe(&self.lock(), instance_ids))
    }

    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>> {
        use greenlight_adapters::tags;
        let mut aws = self.lock();
        let now = aws.now_ms;
        let mut refused = Vec::new();
        for id in instance_ids {
            match aws.instances.get_mut(id) {
                Some(i)
                    if i.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGED_BY_VALUE)
                        && i.tags.get(tags::SERVICE).map(String::as_str) == Some(service) =>
                {
                    i.terminated_ms.get_or_insert(now);
                }
                Some(_) => refused.push(id.clone()),
                None => {}
            }
        }
        // A terminated instance gets no more connections: note when they stopped.
        let groups: Vec<String> = aws
            .target_groups
            .iter()
            .filter(|(_, tg)| instance_ids.iter().any(|id| tg.targets.contains_key(id)))
            .map(|(arn, _)| arn.clone())
            .collect();
        for tg in groups {
            aws.refresh_serving(&tg);
        }
        Ok(refused)
    }
}

fn describe(aws: &Aws, ids: &[String]) -> Vec<Instance> {
    ids.iter()
        .filter_map(|id| {
            let i = aws.instances.get(id)?;
            Some(Instance {
                instance_id: id.clone(),
                state: aws.state(i),
                private_ip: Some(i.ip.clone()),
                tags: i.tags.clone(),
                image_id: Some(i.ami.clone()),
                launched_at: Some(i.launched_ms / 1000),
            })
        })
        .collect()
}

#[async_trait]
impl LoadBalancer for World {
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>> {
        let aws = self.lock();
        let tg = aws
            .target_groups
            .get(target_group)
            .ok_or_else(|| AdapterError::NotFound(format!("target group {target_group}")))?;
        Ok(tg
            .targets
            .iter()
            .filter_map(|(id, t)| {
                aws.target_state(tg, id, t).map(|state| TargetHealth {
                    instance_id: id.clone(),
                    state,
                    reason: None,
                })
            })
            .collect())
    }

    async fn register(&self, target_group: &str, instance_ids: &[String], _port: u16) -> AdapterResult<()> {
        let mut aws = self.lock();
        let now = aws.now_ms;
        for id in instance_ids {
            match aws.instances.get(id) {
                Some(i) if i.terminated_ms.is_none() => {}
                _ => return Err(invalid(format!("InvalidTarget: {id} is not running"))),
            }
        }
        let tg = aws
            .target_groups
            .get_mut(target_group)
            .ok_or_else(|| AdapterError::NotFound(format!("target group {target_group}")))?;
        for id in instance_ids {
            let target = tg.targets.entry(id.clone()).or_insert(Target::new(now));
            if target.deregistered_ms.is_some() {
                *target = Target::new(now);
            }
        }
        aws.refresh_serving(target_group);
        Ok(())
    }

    async fn deregister(&self, target_group: &str, instance_ids: &[String], _port: u16) -> AdapterResult<()> {
        let mut aws = self.lock();
        let now = aws.now_ms;
        let under = aws.forwarded_by(target_group).cloned();
        let strangers = aws.hand.strangers.clone();
        let tg = aws
            .target_groups
            .get_mut(target_group)
            .ok_or_else(|| AdapterError::NotFound(format!("target group {target_group}")))?;
        for id in instance_ids {
            if let Some(target) = tg.targets.get_mut(id) {
                if target.deregistered_ms.is_none() && !strangers.contains_key(id) {
                    // A stranger is deregistered from the live group by the audit, under
                    // traffic on purpose (the group's own targets serve on).
                    target.deregistered_under = under.clone();
                }
                target.deregistered_ms.get_or_insert(now);
            }
        }
        aws.refresh_serving(target_group);
        Ok(())
    }

    async fn set_traffic(&self, switch: &Switch, frame: Option<&Frame>, weights: &[(String, u8)]) -> AdapterResult<()> {
        let mut aws = self.lock();
        if let Some((tg, _)) = weights.iter().find(|(tg, _)| !aws.target_groups.contains_key(tg)) {
            return Err(AdapterError::NotFound(format!("target group {tg}")));
        }
        let key = switch_key(switch);
        if !aws.listeners.contains_key(&key) {
            return Err(AdapterError::NotFound(format!("listener {key}")));
        }
        aws.hand.switches.remove(&key);
        if let Some(frame) = frame {
            // ModifyListener/ModifyRule replace the whole action list: the frame sent is the
            // frame the point has from now on (the invariants check it is the one it had).
            aws.frames.insert(key.clone(), frame.clone());
        }
        aws.set_listener(&key, weights.to_vec());
        Ok(())
    }

    async fn switch_point(&self, switch: &Switch) -> AdapterResult<Vec<SeenAction>> {
        let key = switch_key(switch);
        let aws = self.lock();
        let weights = aws
            .listeners
            .get(&key)
            .cloned()
            .ok_or_else(|| AdapterError::NotFound(format!("listener {key}")))?;
        let frame = aws.frames.get(&key).cloned().unwrap_or_default();
        let mut actions: Vec<SeenAction> = frame.guards.into_iter().map(SeenAction::Guard).collect();
        actions.push(SeenAction::Forward {
            order: frame.forward_order,
            weights,
            stickiness: frame.stickiness,
        });
        Ok(actions)
    }

    async fn forwarders(&self, target_group: &str) -> AdapterResult<Vec<String>> {
        // One load balancer holds every listener of the simulated world.
        Ok(self
            .lock()
            .listeners
            .iter()
            .filter(|(_, weights)| weights.iter().any(|(tg, w)| tg == target_group && *w > 0))
            .map(|(key, _)| key.clone())
            .take(greenlight_adapters::MAX_FORWARDERS)
            .collect())
    }

    async fn deregistration_delay_s(&self, target_group: &str) -> AdapterResult<u64> {
        self.lock()
            .target_groups
            .get(target_group)
            .map(|tg| tg.deregistration_delay_ms / 1000)
            .ok_or_else(|| AdapterError::NotFound(format!("target group {target_group}")))
    }

    async fn open_test_route(&self, listener_arn: &str, deploy_id: &str, target_group: &str) -> AdapterResult<String> {
        let mut aws = self.lock();
        if !aws.target_groups.contains_key(target_group) {
            return Err(AdapterError::NotFound(format!("target group {target_group}")));
        }
        aws.test_routes
            .entry((listener_arn.to_string(), deploy_id.to_string()))
            .or_insert_with(|| target_group.to_string());
        Ok(format!("{listener_arn}/test-route/{deploy_id}"))
    }

    async fn close_test_route(&self, listener_arn: &str, deploy_id: &str) -> AdapterResult<()> {
        self.lock()
            .test_routes
            .remove(&(listener_arn.to_string(), deploy_id.to_string()));
        Ok(())
    }

    async fn test_routes(&self, listener_arn: &str) -> AdapterResult<Vec<(String, String)>> {
        Ok(self
            .lock()
            .test_routes
            .keys()
            .filter(|(listener, _)| listener == listener_arn)
            .map(|(listener, deploy_id)| (format!("{listener}/test-route/{deploy_id}"), deploy_id.clone()))
            .collect())
    }
}

#[async_trait]
impl ArtifactStore for World {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        self.lock()
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .ok_or_else(|| AdapterError::NotFound(format!("s3://{bucket}/{key}")))
    }

    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        let key = format!("reports/{service}/{deploy_id}.json");
        self.lock()
            .objects
            .insert(("artifacts".into(), key.clone()), body.to_vec());
        Ok(key)
    }
}

#[async_trait]
impl Orchestrator for World {
    async fn start(&self, deploy_id: &str, input: &Value) -> AdapterResult<()> {
        let mut aws = self.lock();
        if aws.execution_names.insert(deploy_id.to_string()) {
            aws.started.push(Started {
                name: deploy_id.to_string(),
                input: input.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Alarms for World {
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>> {
        let aws = self.lock();
        Ok(names.iter().filter(|n| aws.in_alarm.contains(*n)).cloned().collect())
    }

    async fn metric_data(
        &self,
        queries: &[greenlight_adapters::StatQuery],
        start: greenlight_core::Epoch,
        end: greenlight_core::Epoch,
    ) -> AdapterResult<Vec<Vec<(greenlight_core::Epoch, f64)>>> {
        let mut aws = self.lock();
        if aws.metric_read_fails() {
            return Err(AdapterError::Aws {
                service: "cloudwatch",
                operation: "GetMetricData",
                message: "Throttling: Rate exceeded (simulated)".into(),
                retryable: true,
            });
        }
        Ok(aws.metric_data(queries, start, end))
    }
}

#[async_trait]
impl greenlight_adapters::Hooks for World {
    async fn call(
        &self,
        hook: &greenlight_core::hook::Hook,
        payload: &[u8],
    ) -> AdapterResult<greenlight_core::hook::Reply> {
        use greenlight_core::hook::{Payload, Reply};
        let payload: Payload = serde_json::from_slice(payload)
            .map_err(|e| AdapterError::Invalid(format!("hook payload is not the documented shape: {e}")))?;
        let target = hook
            .lambda
            .clone()
            .or_else(|| hook.webhook.as_ref().map(|w| w.url.clone()))
            .unwrap_or_default();
        let mut aws = self.lock();
        aws.hook_calls.push((target.clone(), payload.invocation_id.clone()));
        let script = aws.hook_scripts.get(&target).copied().unwrap_or(HookScript {
            in_progress: 0,
            verdict: HookVerdict::Succeeded,
        });
        let status = |s: &str| Reply::Body(format!(r#"{{"status": "{s}", "reason": "simulated"}}"#).into_bytes());
        Ok(match script.verdict {
            HookVerdict::Never => status("IN_PROGRESS"),
            _ if payload.call <= script.in_progress => status("IN_PROGRESS"),
            HookVerdict::Succeeded => status("SUCCEEDED"),
            HookVerdict::Failed => status("FAILED"),
            HookVerdict::Garbage => Reply::Unusable("the function failed (Unhandled): simulated".into()),
        })
    }
}

#[async_trait]
impl Prober for World {
    async fn get(&self, url: &str, _header: Option<(&str, &str)>, _timeout: Duration) -> Result<(u16, String), String> {
        let aws = self.lock();
        let host = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_default();
        let instance = aws
            .instance_at(host)
            .filter(|i| aws.state(i) == InstanceState::Running)
            .ok_or_else(|| format!("connect {host}: connection refused"))?;
        match aws.images.get(&instance.ami).map(|i| i.behaviour) {
            Some(b) if b.passes_gates() => Ok((200, "ok".into())),
            Some(Behaviour::SmokeFails) => Ok((500, "internal error".into())),
            _ => Err(format!("connect {host}: connection refused")),
        }
    }
}
