//! The ledger on DynamoDB: one table, every write conditional (see the items below and
//! ARCHITECTURE.md).
//!
//! The ledger's items (one table, keys `pk`/`sk`, see ARCHITECTURE.md):
//! - `SVC#<service>` / `CONFIG`: the registration (`body`, JSON);
//! - `SVC#<service>` / `STATE`: the service's pointers (`body`, JSON; `gen`);
//! - `SVC#<service>` / `DEPLOY#<deploy id>`: one deployment (`body`, JSON; `gen`, and `phase`,
//!   `version`, `created_at` as plain attributes for queries);
//! - `IMAGE#<image builder name>` / `SERVICE`: which service an Image Builder image deploys;
//! - `ALARM#<alarm name>` / `SERVICE`: which service a CloudWatch alarm rolls back.
//!
//! Every write is conditional: on `gen` for existing items, `attribute_not_exists` for new
//! ones. A lost condition is [`AdapterError::Conflict`].

use super::error::{aws_error, error_code, invalid_request};
use crate::{AdapterError, AdapterResult, Ledger, RevertKey};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use greenlight_core::decide::RevertRequest;
use greenlight_core::model::{ClaimGuard, Deployment, Release, RevertClaim, RevertPlan, ServiceState, State};
use greenlight_core::ServiceConfig;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// Creates the ledger table (`pk`/`sk`, on-demand; with `stream`, its stream of new and old
/// images). Creating one that exists is success.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str, stream: bool) -> AdapterResult<()> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(invalid_request)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(invalid_request)
    };
    // As the stack's table: every write, before and after, for the deployment events.
    let stream_specification = match stream {
        true => Some(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()
                .map_err(invalid_request)?,
        ),
        false => None,
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .set_stream_specification(stream_specification)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(aws_error("dynamodb", "CreateTable", e)),
    }
}

/// The ledger in one DynamoDB table.
pub struct DynamoLedger {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    /// Applied to a stored registration without `bake_window_s` (written by hand).
    pub default_bake_window_s: u64,
}

type Item = HashMap<String, AttributeValue>;

const CONFIG_SK: &str = "CONFIG";
const STATE_SK: &str = "STATE";
const DEPLOY_PREFIX: &str = "DEPLOY#";

fn service_pk(service: &str) -> String {
    format!("SVC#{service}")
}

fn image_pk(image_name: &str) -> String {
    format!("IMAGE#{image_name}")
}

fn alarm_pk(alarm_name: &str) -> String {
    format!("ALARM#{alarm_name}")
}

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn n(number: u64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn text_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn gen_of(item: &Item) -> u64 {
    item.get("gen")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Decodes an item's JSON `body`, with the item's `gen` as the authority on generations.
fn body_of<T: DeserializeOwned>(item: &Item, what: &str) -> AdapterResult<T> {
    let body = text_of(item, "body").ok_or_else(|| AdapterError::Invalid(format!("{what} item has no body")))?;
    serde_json::from_str(body).map_err(|e| AdapterError::Invalid(format!("{what} item is not readable: {e}")))
}

/// A deployment item, with the item's `gen`.
fn deployment_of(item: &Item) -> AdapterResult<Deployment> {
    let mut dep: Deployment = body_of(item, "deployment")?;
    dep.gen = gen_of(item);
    Ok(dep)
}

/// The `claim` attribute a fast rollback sets on the pointers.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClaimAttribute {
    request: RevertRequest,
    received_at_ms: u64,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("ledger records serialize")
}

impl DynamoLedger {
    /// A stored registration, with the installation's bake window where it sets none.
    fn registration(&self, item: &Item) -> AdapterResult<ServiceConfig> {
        let body: serde_json::Value = body_of(item, "registration")?;
        ServiceConfig::from_stored(body, self.default_bake_window_s)
            .map_err(|e| AdapterError::Invalid(format!("registration item is not readable: {e}")))
    }

    fn state_item(&self, state: &ServiceState) -> Item {
        let mut item = key(service_pk(&state.service), STATE_SK.into());
        item.insert("gen".into(), n(state.gen));
        item.insert("body".into(), s(json(state)));
        // Top-level, so that a rollback can claim it with one conditional UpdateItem.
        if let Some(plan) = &state.revert_plan {
            item.insert("revert_plan".into(), s(json(plan)));
            item.insert("plan_since".into(), n(plan.since_ms));
        }
        if let Some(claim) = &state.revert_claim {
            let attribute = ClaimAttribute {
                request: claim.request.clone(),
                received_at_ms: claim.received_at_ms,
            };
            item.insert("claim".into(), s(json(&attribute)));
            item.insert("claim_event".into(), s(&claim.request.event_id));
        }
        item
    }

    /// Mirrors the service's revert plan onto its alarms' alias items (in the same
    /// transaction as the pointers), so that an alarm can claim it without a lookup first.
    ///
    /// Not while an alarm's claim of the plan is pending (the alarm's listener change may be
    /// in flight, its record not yet written): only the rollback that claim belongs to
    /// (`claimed_by`, the event id the deployment's revert records) may change the plan then,
    /// or anyone once the claim is stale (`State::plan_claim_guard`, the policy in the core). Anything else loses with a conflict, re-reads and decides again.
    /// (Found by the simulator's races, seed 2717: retire-blue committed Retiring, removing
    /// the plan, between an alarm's claim and its listener change, which then put traffic back
    /// on the fleet being drained.)
    fn alarm_plan_updates(
        &self,
        config: &ServiceConfig,
        plan: Option<&RevertPlan>,
        guard: ClaimGuard<'_>,
    ) -> AdapterResult<Vec<Update>> {
        config
            .alarms
            .iter()
            .map(|alarm| {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(alarm_pk(alarm), "SERVICE".into())))
                    // `ClaimGuard::frees`, as a condition on the alias item.
                    .condition_expression(
                        "service = :svc AND (attribute_not_exists(claim_event) OR claim_event = :mine OR claimed_at < :stale)",
                    )
                    .expression_attribute_values(":svc", s(&config.service))
                    .expression_attribute_values(":mine", s(guard.claimed_by.unwrap_or("-")))
                    .expression_attribute_values(":stale", n(guard.stale_before_ms));
                // A plan whose alarms hold instead (`on_failure: hold`) is not theirs to claim.
                let update = match plan.filter(|p| !p.alarms_hold) {
                    Some(plan) => update
                        .update_expression(
                            "SET revert_plan = :plan, plan_since = :since REMOVE claim_event, claimed_at",
                        )
                        .expression_attribute_values(":plan", s(json(plan)))
                        .expression_attribute_values(":since", n(plan.since_ms)),
                    None => update.update_expression("REMOVE revert_plan, plan_since, claim_event, claimed_at"),
                };
                update.build().map_err(invalid_request)
            })
            .collect()
    }

    fn deployment_item(&self, dep: &Deployment) -> Item {
        let mut item = key(service_pk(&dep.service), format!("{DEPLOY_PREFIX}{}", dep.deploy_id));
        item.insert("gen".into(), n(dep.gen));
        item.insert("phase".into(), s(dep.phase.name()));
        item.insert("version".into(), s(&dep.version));
        item.insert("created_at".into(), n(dep.created_at));
        item.insert("body".into(), s(json(dep)));
        item
    }

    /// A conditional Put: on `gen = expected`, or on not existing when `expected` is None.
    fn put(&self, item: Item, expected: Option<u64>) -> AdapterResult<Put> {
        let builder = Put::builder().table_name(&self.table).set_item(Some(item));
        let builder = match expected {
            None => builder.condition_expression("attribute_not_exists(pk)"),
            Some(gen) => builder
                .condition_expression("#gen = :gen")
                .expression_attribute_names("#gen", "gen")
                .expression_attribute_values(":gen", n(gen)),
        };
        builder.build().map_err(invalid_request)
    }

    /// Writes conditional puts and updates: one PutItem alone, else one transaction.
    async fn write_all(&self, puts: Vec<Put>, updates: Vec<Update>) -> AdapterResult<()> {
        if puts.len() == 1 && updates.is_empty() {
            let put = puts.into_iter().next().expect("one put");
            let result = self
                .client
                .put_item()
                .table_name(put.table_name())
                .set_item(Some(put.item().clone()))
                .set_condition_expression(put.condition_expression().map(str::to_string))
                .set_expression_attribute_names(put.expression_attribute_names().cloned())
                .set_expression_attribute_values(put.expression_attribute_values().cloned())
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                    Err(AdapterError::Conflict("the item changed since it was read".into()))
                }
                Err(e) => Err(aws_error("dynamodb", "PutItem", e)),
            };
        }
        let items: Vec<TransactWriteItem> = puts
            .into_iter()
            .map(|p| TransactWriteItem::builder().put(p).build())
            .chain(
                updates
                    .into_iter()
                    .map(|u| TransactWriteItem::builder().update(u).build()),
            )
            .collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let lost = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(t)) => t
                        .cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")),
                    _ => false,
                };
                if lost {
                    Err(AdapterError::Conflict("an item changed since it was read".into()))
                } else {
                    Err(aws_error("dynamodb", "TransactWriteItems", e))
                }
            }
        }
    }

    /// Consistent reads of up to 100 items by key; missing ones are left out.
    async fn get_many(&self, keys: Vec<Item>) -> AdapterResult<Vec<Item>> {
        let mut found = Vec::new();
        let mut pending = keys;
        for _ in 0..10 {
            if pending.is_empty() {
                return Ok(found);
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(invalid_request)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| aws_error("dynamodb", "BatchGetItem", e))?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            if let Some(mut unprocessed) = out.unprocessed_keys {
                if let Some(again) = unprocessed.remove(&self.table) {
                    pending = again.keys;
                }
            }
        }
        Err(AdapterError::Aws {
            service: "dynamodb",
            operation: "BatchGetItem",
            message: "keys stayed unprocessed after 10 rounds".into(),
            retryable: true,
        })
    }

    async fn get(&self, pk: String, sk: String) -> AdapterResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("dynamodb", "GetItem", e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn register_service(&self, config: &ServiceConfig, live: Option<Release>) -> AdapterResult<()> {
        config.validate().map_err(invalid_request)?;
        let pk = service_pk(&config.service);
        // The registration: conditional on the generation read (a concurrent re-registration
        // loses with a conflict instead of being overwritten silently).
        let current = self.get(pk.clone(), CONFIG_SK.into()).await?;
        let mut item = key(pk.clone(), CONFIG_SK.into());
        let gen = current.as_ref().map(gen_of);
        item.insert("gen".into(), n(gen.map_or(1, |g| g + 1)));
        item.insert("body".into(), s(json(config)));
        let mut puts = vec![self.put(item, gen)?];
        // The pointer record, created once, adopting the release already serving.
        if self.get(pk.clone(), STATE_SK.into()).await?.is_none() {
            let state = ServiceState::new(&config.service, live);
            puts.push(self.put(self.state_item(&state), None)?);
        }
        // Aliases (Image Builder image name, alarms) → this service; none may be taken from
        // another service.
        let aliases = config
            .image_builder_name
            .iter()
            .map(|name| {
                (
                    image_pk(name),
                    format!("Image Builder image name {name:?}"),
                    "image_builder_name",
                )
            })
            .chain(
                config
                    .alarms
                    .iter()
                    .map(|a| (alarm_pk(a), format!("alarm {a:?}"), "alarms")),
            );
        for (alias_pk, what, field) in aliases {
            let alias = self.get(alias_pk.clone(), "SERVICE".into()).await?;
            match alias.as_ref().and_then(|a| text_of(a, "service")) {
                Some(owner) if owner != config.service => {
                    return Err(AdapterError::Invalid(format!(
                        "{what} already belongs to service {owner:?}; change {field}"
                    )))
                }
                Some(_) => {}
                None => {
                    let mut item = key(alias_pk, "SERVICE".into());
                    item.insert("service".into(), s(&config.service));
                    item.insert("gen".into(), n(1));
                    // New, or left without an owner by an earlier registration.
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(service)")
                        .build()
                        .map_err(invalid_request)?;
                    puts.push(put);
                }
            }
        }
        // Alarms dropped from the registration no longer map to this service (nor hold its
        // revert plan).
        let previous: Option<ServiceConfig> = current.as_ref().map(|c| self.registration(c)).transpose()?;
        let dropped = previous
            .iter()
            .flat_map(|p| p.alarms.iter())
            .filter(|a| !config.alarms.contains(a));
        let mut updates = Vec::new();
        for alarm in dropped {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(alarm_pk(alarm), "SERVICE".into())))
                .update_expression("REMOVE service, revert_plan, plan_since, claim_event")
                .condition_expression("service = :svc")
                .expression_attribute_values(":svc", s(&config.service))
                .build()
                .map_err(invalid_request)?;
            updates.push(update);
        }
        self.write_all(puts, updates).await
    }

    async fn services(&self) -> AdapterResult<Vec<String>> {
        let mut names = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :config")
                .expression_attribute_values(":config", s(CONFIG_SK))
                .projection_expression("pk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("dynamodb", "Scan", e))?;
            for item in out.items.unwrap_or_default() {
                if let Some(name) = text_of(&item, "pk").and_then(|pk| pk.strip_prefix("SVC#")) {
                    names.push(name.to_string());
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    async fn service_for_image(&self, image_name: &str) -> AdapterResult<Option<String>> {
        let item = self.get(image_pk(image_name), "SERVICE".into()).await?;
        Ok(item.as_ref().and_then(|i| text_of(i, "service")).map(str::to_string))
    }

    async fn service_for_alarm(&self, alarm_name: &str) -> AdapterResult<Option<String>> {
        let item = self.get(alarm_pk(alarm_name), "SERVICE".into()).await?;
        Ok(item.as_ref().and_then(|i| text_of(i, "service")).map(str::to_string))
    }

    async fn load(&self, service: &str, deploy_id: Option<&str>) -> AdapterResult<Option<State>> {
        let pk = service_pk(service);
        let mut keys = vec![key(pk.clone(), CONFIG_SK.into()), key(pk.clone(), STATE_SK.into())];
        if let Some(id) = deploy_id {
            keys.push(key(pk.clone(), format!("{DEPLOY_PREFIX}{id}")));
        }
        let items = self.get_many(keys).await?;
        let by_sk = |sk: &str| items.iter().find(|i| text_of(i, "sk") == Some(sk));
        let (Some(config), Some(pointers)) = (by_sk(CONFIG_SK), by_sk(STATE_SK)) else {
            return Ok(None);
        };
        let config = self.registration(config)?;
        let mut service_state: ServiceState = body_of(pointers, "service state")?;
        service_state.gen = gen_of(pointers);
        // A rollback claimed by the fast path (an attribute the claim's UpdateItem set).
        if let (Some(claim), Some(plan)) = (text_of(pointers, "claim"), service_state.revert_plan.as_ref()) {
            let claim: ClaimAttribute = serde_json::from_str(claim)
                .map_err(|e| AdapterError::Invalid(format!("revert claim is not readable: {e}")))?;
            service_state.revert_claim = Some(RevertClaim {
                deploy_id: plan.deploy_id.clone(),
                request: claim.request,
                received_at_ms: claim.received_at_ms,
            });
        }
        let deployment = deploy_id
            .and_then(|id| by_sk(&format!("{DEPLOY_PREFIX}{id}")))
            .map(deployment_of)
            .transpose()?;
        Ok(Some(State {
            config,
            service: service_state,
            deployment,
        }))
    }

    /// Two reads as the default does, but the second is the deployment's item alone (the
    /// default reads the registration and the pointers again): 3 items, not 5.
    async fn load_active(&self, service: &str) -> AdapterResult<Option<State>> {
        let Some(mut state) = self.load(service, None).await? else {
            return Ok(None);
        };
        if let Some(deploy_id) = &state.service.active {
            let items = self
                .get_many(vec![key(service_pk(service), format!("{DEPLOY_PREFIX}{deploy_id}"))])
                .await?;
            state.deployment = items.first().map(deployment_of).transpose()?;
        }
        Ok(Some(state))
    }

    async fn commit(&self, before: &State, after: &State) -> AdapterResult<State> {
        let mut committed = after.clone();
        let mut puts = Vec::new();
        if after.service != before.service {
            committed.service.gen = before.service.gen + 1;
            puts.push(self.put(self.state_item(&committed.service), Some(before.service.gen))?);
        }
        if let Some(dep) = committed.deployment.as_mut() {
            let previous = before.deployment.as_ref().filter(|d| d.deploy_id == dep.deploy_id);
            if previous != Some(&*dep) {
                let expected = previous.map(|d| d.gen);
                dep.gen = expected.map_or(1, |g| g + 1);
                puts.push(self.put(self.deployment_item(dep), expected)?);
            }
        }
        let updates = if before.service.revert_plan != committed.service.revert_plan {
            self.alarm_plan_updates(
                &after.config,
                committed.service.revert_plan.as_ref(),
                after.plan_claim_guard(),
            )?
        } else {
            vec![]
        };
        if !puts.is_empty() {
            self.write_all(puts, updates).await?;
        }
        Ok(committed)
    }

    async fn claim_revert(
        &self,
        key_of: RevertKey<'_>,
        revert: &RevertRequest,
        received_at_ms: u64,
    ) -> AdapterResult<Option<(String, RevertPlan)>> {
        let (event_id, event_time_ms) = (revert.event_id.as_str(), revert.event_time_ms);
        let (item_key, bump) = match key_of {
            RevertKey::Service(service) => (key(service_pk(service), STATE_SK.into()), true),
            RevertKey::Alarm(alarm) => (key(alarm_pk(alarm), "SERVICE".into()), false),
        };
        // On the pointers, the claim also moves the generation: a step that read before it
        // re-reads before it may change anything.
        let update = if bump {
            "SET claim_event = :event, claim = :claim, gen = gen + :one"
        } else {
            "SET claim_event = :event, claimed_at = :at"
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key))
            .update_expression(update)
            .condition_expression(
                "attribute_exists(revert_plan) AND plan_since <= :time AND (attribute_not_exists(claim_event) OR claim_event = :event)",
            )
            .expression_attribute_values(":event", s(event_id))
            .expression_attribute_values(":time", n(event_time_ms))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if !bump {
            request = request.expression_attribute_values(":at", n(received_at_ms));
        }
        if bump {
            let claim = ClaimAttribute {
                request: revert.clone(),
                received_at_ms,
            };
            request = request
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":claim", s(json(&claim)));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(aws_error("dynamodb", "UpdateItem", e)),
        };
        let item = out.attributes.unwrap_or_default();
        let service = match key_of {
            RevertKey::Service(service) => service.to_string(),
            RevertKey::Alarm(_) => text_of(&item, "service").unwrap_or_default().to_string(),
        };
        let plan = text_of(&item, "revert_plan")
            .ok_or_else(|| AdapterError::Invalid("the claimed item has no revert_plan".into()))?;
        let plan: RevertPlan = serde_json::from_str(plan)
            .map_err(|e| AdapterError::Invalid(format!("revert plan is not readable: {e}")))?;
        Ok(Some((service, plan)))
    }

    async fn history(&self, service: &str) -> AdapterResult<Vec<Deployment>> {
        let mut deployments = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(service_pk(service)))
                .expression_attribute_values(":prefix", s(DEPLOY_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("dynamodb", "Query", e))?;
            for item in out.items.unwrap_or_default() {
                let mut dep: Deployment = body_of(&item, "deployment")?;
                dep.gen = gen_of(&item);
                deployments.push(dep);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        deployments.sort_by(|a, b| (a.created_at, &a.deploy_id).cmp(&(b.created_at, &b.deploy_id)));
        Ok(deployments)
    }
}
