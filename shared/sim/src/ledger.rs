//! The ledger in memory, with the DynamoDB table's item layout and conditions
//! (`greenlight_adapters::aws::DynamoLedger`): a registration item, a pointers item with a
//! generation, one item per deployment, and alias items for Image Builder names and alarms
//! (an alarm alias mirrors the service's revert plan so an alarm can claim it). Every write
//! is checked the way DynamoDB checks it (a put on `gen = :expected` or `attribute_not_exists`,
//! a transaction that fails as a whole), so a lost race is an [`AdapterError::Conflict`] here
//! exactly when it would be one in AWS.

use async_trait::async_trait;
use greenlight_adapters::{AdapterError, AdapterResult, Ledger, RevertKey};
use greenlight_core::announce::DeploymentStateChanged;
use greenlight_core::decide::RevertRequest;
use greenlight_core::model::{Deployment, Release, RevertClaim, RevertPlan, ServiceState, State};
use greenlight_core::ServiceConfig;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The pointers item: the stored body, its generation, and the claim attributes the fast
/// rollback's UpdateItem sets without rewriting the body.
#[derive(Debug, Clone)]
pub struct Pointers {
    pub gen: u64,
    pub body: ServiceState,
    pub claim: Option<(RevertRequest, u64)>,
    pub claim_event: Option<String>,
}

/// An alias item (`IMAGE#<name>` or `ALARM#<name>`).
#[derive(Debug, Clone, Default)]
pub struct Alias {
    pub service: Option<String>,
    pub revert_plan: Option<RevertPlan>,
    pub claim_event: Option<String>,
    /// When an alarm claimed the plan (ms).
    pub claimed_at: Option<u64>,
}

/// The table's items.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub configs: BTreeMap<String, (u64, ServiceConfig)>,
    pub pointers: BTreeMap<String, Pointers>,
    /// `(service, deploy id)` → deployment (with its generation).
    pub deployments: BTreeMap<(String, String), Deployment>,
    pub images: BTreeMap<String, Alias>,
    pub alarms: BTreeMap<String, Alias>,
    /// Conditional writes that lost (a `ConditionalCheckFailed`), and claims refused.
    pub conflicts: u64,
    /// The table's stream as the deployment events pipe reads it: `(service, deploy id)` →
    /// what each committed write of the deployment announced
    /// (`greenlight_core::announce::state_changed` of the item before and after it).
    pub announced: BTreeMap<(String, String), Vec<DeploymentStateChanged>>,
}

impl Table {
    /// The service's pointers as `load` returns them.
    pub fn service_state(&self, service: &str) -> Option<ServiceState> {
        let item = self.pointers.get(service)?;
        let mut state = item.body.clone();
        state.gen = item.gen;
        if let (Some((request, received_at_ms)), Some(plan)) = (&item.claim, &state.revert_plan) {
            state.revert_claim = Some(RevertClaim {
                deploy_id: plan.deploy_id.clone(),
                request: request.clone(),
                received_at_ms: *received_at_ms,
            });
        }
        Some(state)
    }

    /// Every deployment of `service`, oldest first.
    pub fn history(&self, service: &str) -> Vec<Deployment> {
        let mut deployments: Vec<Deployment> = self.deployments_of(service).cloned().collect();
        deployments.sort_by(|a, b| (a.created_at, &a.deploy_id).cmp(&(b.created_at, &b.deploy_id)));
        deployments
    }

    /// Every deployment of `service`, in deploy-id order, without copying them: the
    /// service's keys are one range of the map (no scan of every service's).
    pub fn deployments_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Deployment> + 'a {
        self.deployments
            .range((service.to_string(), String::new())..)
            .take_while(move |((s, _), _)| s == service)
            .map(|(_, d)| d)
    }

    fn pointers_item(state: &ServiceState) -> Pointers {
        Pointers {
            gen: state.gen,
            body: state.clone(),
            claim: state
                .revert_claim
                .as_ref()
                .map(|c| (c.request.clone(), c.received_at_ms)),
            claim_event: state.revert_claim.as_ref().map(|c| c.request.event_id.clone()),
        }
    }
}

/// The in-memory ledger. Cloning shares the table.
#[derive(Clone, Default)]
pub struct MemLedger {
    pub table: Arc<Mutex<Table>>,
}

impl MemLedger {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn conflict(table: &mut Table, why: &str) -> AdapterError {
    table.conflicts += 1;
    AdapterError::Conflict(why.to_string())
}

#[async_trait]
impl Ledger for MemLedger {
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()> {
        config.validate().map_err(|e| AdapterError::Invalid(e.to_string()))?;
        let mut t = self.lock();
        let service = config.service.clone();
        let aliases = config
            .image_builder_name
            .iter()
            .map(|n| (true, n.clone()))
            .chain(config.alarms.iter().map(|a| (false, a.clone())));
        for (image, name) in aliases.clone() {
            let alias = if image {
                t.images.get(&name)
            } else {
                t.alarms.get(&name)
            };
            if let Some(owner) = alias.and_then(|a| a.service.as_ref()).filter(|o| **o != service) {
                return Err(AdapterError::Invalid(format!(
                    "{name:?} already belongs to service {owner:?}"
                )));
            }
        }
        let previous = t.configs.get(&service).map(|(_, c)| c.clone());
        let gen = t.configs.get(&service).map_or(1, |(g, _)| g + 1);
        t.configs.insert(service.clone(), (gen, config.clone()));
        if !t.pointers.contains_key(&service) {
            let state = ServiceState::new(&service, live);
            t.pointers.insert(service.clone(), Table::pointers_item(&state));
        }
        for (image, name) in aliases {
            let items = if image { &mut t.images } else { &mut t.alarms };
            let alias = items.entry(name).or_default();
            if alias.service.is_none() {
                alias.service = Some(service.clone());
            }
        }
        for dropped in previous.iter().flat_map(|p| p.alarms.iter()) {
            if !config.alarms.contains(dropped) {
                if let Some(alias) = t
                    .alarms
                    .get_mut(dropped)
                    .filter(|a| a.service.as_ref() == Some(&service))
                {
                    *alias = Alias::default();
                }
            }
        }
        Ok(())
    }

    async fn services(&self) -> AdapterResult<Vec<String>> {
        Ok(self.lock().configs.keys().cloned().collect())
    }

    async fn service_for_image(&self, image_name: &str) -> AdapterResult<Option<String>> {
        Ok(self.lock().images.get(image_name).and_then(|a| a.service.clone()))
    }

    async fn service_for_alarm(&self, alarm_name: &str) -> AdapterResult<Option<String>> {
        Ok(self.lock().alarms.get(alarm_name).and_then(|a| a.service.clone()))
    }

    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>> {
        let t = self.lock();
        let (Some((_, config)), Some(service_state)) = (t.configs.get(service), t.service_state(service)) else {
            return Ok(None);
        };
        let deployment = deploy_id.and_then(|id| t.deployments.get(&(service.to_string(), id.to_string())).cloned());
        Ok(Some(State {
            config: config.clone(),
            service: service_state,
            deployment,
        }))
    }

    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State> {
        let mut t = self.lock();
        let service = after.service.service.clone();
        let mut committed = after.clone();
        // The conditions first (one transaction: all or nothing).
        let write_pointers = after.service != before.service;
        if write_pointers && t.pointers.get(&service).map(|p| p.gen) != Some(before.service.gen) {
            return Err(conflict(&mut t, "the pointers changed since they were read"));
        }
        let mut write_deployment = None;
        if let Some(dep) = committed.deployment.as_mut() {
            let previous = before.deployment.as_ref().filter(|d| d.deploy_id == dep.deploy_id);
            if previous != Some(&*dep) {
                let expected = previous.map(|d| d.gen);
                let stored = t
                    .deployments
                    .get(&(service.clone(), dep.deploy_id.clone()))
                    .map(|d| d.gen);
                if stored != expected {
                    return Err(conflict(&mut t, "the deployment changed since it was read"));
                }
                dep.gen = expected.map_or(1, |g| g + 1);
                write_deployment = Some(dep.clone());
            }
        }
        if !write_pointers && write_deployment.is_none() {
            return Ok(committed);
        }
        let plan_changed = before.service.revert_plan != after.service.revert_plan;
        if plan_changed {
            // As `DynamoLedger::alarm_plan_updates`: not while another event's claim is pending.
            let guard = after.plan_claim_guard();
            for alarm in &after.config.alarms {
                let alias = t.alarms.get(alarm).cloned().unwrap_or_default();
                if alias.service.as_ref() != Some(&service) {
                    return Err(conflict(&mut t, "an alarm alias no longer belongs to the service"));
                }
                if !guard.frees(alias.claim_event.as_deref(), alias.claimed_at) {
                    return Err(conflict(&mut t, "an alarm's claim of the revert plan is pending"));
                }
            }
        }
        // Then the writes.
        if write_pointers {
            committed.service.gen = before.service.gen + 1;
            t.pointers
                .insert(service.clone(), Table::pointers_item(&committed.service));
        }
        if let Some(dep) = write_deployment {
            let key = (service.clone(), dep.deploy_id.clone());
            // The stream record of this write, through the pipe's enrichment.
            let announced = greenlight_core::announce::state_changed(t.deployments.get(&key), &dep);
            t.announced.entry(key.clone()).or_default().extend(announced);
            t.deployments.insert(key, dep);
        }
        if plan_changed {
            for alarm in &after.config.alarms {
                let alias = t.alarms.get_mut(alarm).expect("checked above");
                // Not a plan whose alarms hold instead (`on_failure: hold`).
                alias.revert_plan = committed.service.revert_plan.clone().filter(|p| !p.alarms_hold);
                alias.claim_event = None;
                alias.claimed_at = None;
            }
        }
        Ok(committed)
    }

    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>> {
        Ok(self.lock().history(service))
    }

    async fn claim_revert(
        &self,
        key: RevertKey<'_>,
        request: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>> {
        let mut t = self.lock();
        let event = &request.event_id;
        let claimable = |plan: &Option<RevertPlan>, claim_event: &Option<String>| {
            plan.as_ref()
                .filter(|p| p.since_ms <= request.event_time_ms)
                .filter(|_| claim_event.as_ref().is_none_or(|e| e == event))
                .cloned()
        };
        match key {
            RevertKey::Service(service) => {
                let item = t.pointers.get(service);
                let Some(plan) = item.and_then(|p| claimable(&p.body.revert_plan, &p.claim_event)) else {
                    t.conflicts += 1;
                    return Ok(None);
                };
                let item = t.pointers.get_mut(service).expect("found above");
                item.claim_event = Some(event.clone());
                item.claim = Some((request.clone(), received_at_ms));
                item.gen += 1;
                Ok(Some((service.to_string(), plan)))
            }
            RevertKey::Alarm(alarm) => {
                let item = t.alarms.get(alarm);
                let Some(plan) = item.and_then(|a| claimable(&a.revert_plan, &a.claim_event)) else {
                    t.conflicts += 1;
                    return Ok(None);
                };
                let item = t.alarms.get_mut(alarm).expect("found above");
                item.claim_event = Some(event.clone());
                item.claimed_at = Some(received_at_ms);
                Ok(Some((item.service.clone().unwrap_or_default(), plan)))
            }
        }
    }
}
