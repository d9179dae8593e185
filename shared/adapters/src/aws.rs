//! The adapters implemented with the AWS SDK: DynamoDB (ledger), EC2 (fleet), ELBv2 (load
//! balancer), S3 (artifact store) and Step Functions (orchestrator).
//!
//! Clients are built once per process ([`AwsClients`]) from an SDK configuration that reads
//! `AWS_ENDPOINT_URL` (so every client can point at the local emulator): the functions' own
//! ([`lambda_sdk_config`], environment only) or the standard chain (CLI, local tools), all on
//! one HTTPS client ([`https_client`], rustls on ring).
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

use crate::http::HttpProber;
use crate::{
    tags, AdapterError, AdapterResult, ArtifactStore, Fleet, Instance, InstanceState, LaunchRequest, Ledger,
    LoadBalancer, Orchestrator, Ports, RevertKey, StdoutMetrics, SystemClock,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, IamInstanceProfileSpecification, InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetDescription, TargetGroupTuple,
};
use greenlight_core::config::Switch;
use greenlight_core::decide::RevertRequest;
use greenlight_core::decide::{ImageFacts, TargetHealth, TargetState};
use greenlight_core::model::{ClaimGuard, Deployment, Release, RevertClaim, RevertPlan, ServiceState, State};
use greenlight_core::ServiceConfig;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A Lambda function's SDK configuration, from the environment Lambda gives it: the region
/// (`AWS_REGION`), the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and, locally, `AWS_ENDPOINT_URL`; the retry
/// policy fixed ([`retry_config`]). Only these sources, not the SDK's default provider chain
/// (profiles, SSO, IMDS, container and web-identity credentials): a function never needs
/// them, and leaving them out keeps their code out of every binary (with the regex engine's,
/// 0.5 MB per arm64 binary: BENCHMARKS.md).
pub async fn lambda_sdk_config() -> aws_config::SdkConfig {
    use aws_config::environment::{EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider};
    use aws_config::meta::region::ProvideRegion;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let mut sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new().region().await)
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .retry_config(retry_config())
        .http_client(https_client());
    if let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()) {
        sdk = sdk.endpoint_url(endpoint);
    }
    sdk.build()
}

/// The HTTPS client of every AWS SDK configuration greenlight builds (functions, CLI, local
/// tools): the SDK's own hyper 1.x client with rustls, on *ring* rather than the SDK default's
/// aws-lc, which is larger (BENCHMARKS.md, binary sizes); the SDK crates are built without
/// `default-https-client`, so this is the one TLS stack. Like the SDK's default client, it
/// follows the proxy settings of the environment (`HTTPS_PROXY`, `NO_PROXY`) and uses the
/// runtime's sleep for its timeouts.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The AWS SDK retry policy, explicit so that no environment variable (`AWS_MAX_ATTEMPTS`) or
/// profile changes it: standard mode, 3 attempts (2 retries) with exponential backoff from 1 s
/// (capped at 20 s) and full jitter, under the SDK's retry quota. Every retry in greenlight is
/// bounded: this, a step's `Retry`, an event's async retries, the conflict re-reads.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_secs(1))
        .with_max_backoff(std::time::Duration::from_secs(20))
}

/// One client per AWS service, built once per process and shared by the adapters.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl AwsClients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        // Path-style S3 addressing works with AWS and with a local endpoint alike.
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build();
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sfn: aws_sdk_sfn::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }
}

/// Where an installation keeps things (a function's configuration says; see
/// `infra/template.yaml`).
#[derive(Debug, Clone)]
pub struct Installation {
    /// The ledger's DynamoDB table.
    pub table: String,
    /// The artifact bucket: release manifests and deployment reports.
    pub bucket: String,
    pub report_prefix: String,
    pub manifest_prefix: String,
    /// The bake window of a service whose registration does not set `bake_window_s`.
    pub default_bake_window_s: u64,
}

/// The handlers' ports backed by AWS.
pub fn aws_ports(clients: &AwsClients, installation: &Installation, orchestrator: Arc<dyn Orchestrator>) -> Ports {
    Ports {
        ledger: Arc::new(DynamoLedger {
            client: clients.dynamodb.clone(),
            table: installation.table.clone(),
            default_bake_window_s: installation.default_bake_window_s,
        }),
        fleet: Arc::new(Ec2Fleet {
            client: clients.ec2.clone(),
        }),
        lb: Arc::new(ElbLoadBalancer {
            client: clients.elb.clone(),
        }),
        store: Arc::new(S3Store {
            client: clients.s3.clone(),
            bucket: installation.bucket.clone(),
            report_prefix: installation.report_prefix.clone(),
        }),
        orchestrator,
        alarms: Arc::new(CloudWatchAlarms {
            client: clients.cloudwatch.clone(),
        }),
        prober: Arc::new(HttpProber),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(StdoutMetrics),
        manifest_prefix: installation.manifest_prefix.clone(),
    }
}

/// Error codes AWS uses for throttling (retry later, with backoff): the AWS SDKs' list
/// (aws-runtime's `THROTTLING_ERRORS`, which the SDK's standard retry mode retries), less
/// `LimitExceededException`, which greenlight's services use for quotas, not rates.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of transient failures that are not throttling (aws-runtime's
/// `TRANSIENT_ERRORS`).
const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// True for an answer worth retrying: a 5xx, throttling, or a transient error code.
fn retryable_answer(status: Option<u16>, code: Option<&str>) -> bool {
    status.is_some_and(|s| s >= 500) || code.is_some_and(|c| THROTTLING.contains(&c) || TRANSIENT.contains(&c))
}

/// Classifies an SDK error: throttling, 5xx, transient codes and connection failures are
/// retryable.
fn aws_error<E>(service: &'static str, operation: &'static str, err: SdkError<E>) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let retryable = match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        _ => retryable_answer(status, code.as_deref()),
    };
    let message = match (code, err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&err)),
    };
    AdapterError::Aws {
        service,
        operation,
        message,
        retryable,
    }
}

/// An SDK request that could not be built (a missing required field): a bug, not transient.
fn invalid_request(e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Invalid(e.to_string())
}

fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.code()
}

// ---------------------------------------------------------------------------------------
// Ledger: DynamoDB
// ---------------------------------------------------------------------------------------

/// Creates the ledger table (`pk`/`sk`, on-demand). Creating one that exists is success.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> AdapterResult<()> {
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
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
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
                let update = match plan {
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

// ---------------------------------------------------------------------------------------
// Fleet: EC2
// ---------------------------------------------------------------------------------------

/// EC2 images and instances.
pub struct Ec2Fleet {
    pub client: aws_sdk_ec2::Client,
}

fn ec2_tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
        .collect()
}

fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        instance_id: i.instance_id()?.to_string(),
        state: InstanceState::from_ec2(i.state().and_then(|s| s.name()).map(|n| n.as_str())),
        private_ip: i.private_ip_address().map(str::to_string),
        tags: tag_map(i.tags()),
    })
}

/// Every state but `terminated`, as EC2's `instance-state-name` filter takes them.
fn not_terminated() -> Vec<&'static str> {
    InstanceState::ALL
        .into_iter()
        .filter(|s| *s != InstanceState::Terminated)
        .map(InstanceState::as_str)
        .collect()
}

impl Ec2Fleet {
    /// DescribeInstances with filters, every page.
    async fn find(&self, filters: Vec<Filter>) -> AdapterResult<Vec<Instance>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("ec2", "DescribeInstances", e))?;
            for reservation in out.reservations() {
                found.extend(reservation.instances().iter().filter_map(instance_of));
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(found),
            }
        }
    }
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

#[async_trait]
impl Fleet for Ec2Fleet {
    async fn describe_image(&self, ami: &str) -> AdapterResult<Option<ImageFacts>> {
        let out = self.client.describe_images().image_ids(ami).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if error_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => return Ok(None),
            Err(e) => return Err(aws_error("ec2", "DescribeImages", e)),
        };
        Ok(out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(ami))
            .map(|image| ImageFacts {
                owner: image.owner_id().unwrap_or_default().to_string(),
                available: image.state().map(|s| s.as_str()) == Some("available"),
                tags: tag_map(image.tags()),
            }))
    }

    async fn image_builder_ami(&self, image_arn: &str) -> AdapterResult<Option<String>> {
        let out = self
            .client
            .describe_images()
            .filters(filter("tag:Ec2ImageBuilderArn", &[image_arn]))
            .send()
            .await
            .map_err(|e| aws_error("ec2", "DescribeImages", e))?;
        Ok(out.images().iter().find_map(|i| i.image_id()).map(str::to_string))
    }

    async fn launch(&self, request: &LaunchRequest) -> AdapterResult<Vec<String>> {
        let tags_for = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .tags(ec2_tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE))
                .tags(ec2_tag(tags::SERVICE, &request.service))
                .tags(ec2_tag(tags::VERSION, &request.version))
                .tags(ec2_tag(tags::DEPLOY_ID, &request.deploy_id))
                .tags(ec2_tag("Name", &format!("{}-{}", request.service, request.version)))
                .build()
        };
        let launch = &request.launch;
        let count = launch.count as i32;
        let out = self
            .client
            .run_instances()
            .image_id(&request.ami)
            .instance_type(InstanceType::from(launch.instance_type.as_str()))
            .min_count(count)
            .max_count(count)
            .subnet_id(&launch.subnet_id)
            .set_security_group_ids(Some(launch.security_group_ids.clone()).filter(|g| !g.is_empty()))
            .set_iam_instance_profile(
                launch
                    .instance_profile_arn
                    .as_ref()
                    .map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
            )
            .set_user_data(
                launch
                    .user_data
                    .as_ref()
                    .map(|u| aws_smithy_types::base64::encode(u.as_bytes())),
            )
            .client_token(&request.client_token)
            .tag_specifications(tags_for(ResourceType::Instance))
            .tag_specifications(tags_for(ResourceType::Volume))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect()),
            Err(e) if error_code(&e) == Some("IdempotentParameterMismatch") => Err(AdapterError::Invalid(format!(
                "RunInstances token {} was used with other parameters (the service's launch settings changed mid-deployment?); abort this deployment and publish the image again with a new attempt",
                request.client_token
            ))),
            Err(e) => Err(aws_error("ec2", "RunInstances", e)),
        }
    }

    async fn instances_of(&self, deploy_id: &str) -> AdapterResult<Vec<Instance>> {
        self.find(vec![
            filter(&format!("tag:{}", tags::DEPLOY_ID), &[deploy_id]),
            filter("instance-state-name", &not_terminated()),
        ])
        .await
    }

    async fn describe(&self, instance_ids: &[String]) -> AdapterResult<Vec<Instance>> {
        if instance_ids.is_empty() {
            return Ok(vec![]);
        }
        // A filter (not InstanceIds) so that unknown ids are left out instead of failing.
        let ids: Vec<&str> = instance_ids.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        for chunk in ids.chunks(200) {
            found.extend(self.find(vec![filter("instance-id", chunk)]).await?);
        }
        Ok(found)
    }

    async fn terminate(&self, service: &str, instance_ids: &[String]) -> AdapterResult<Vec<String>> {
        let found = self.describe(instance_ids).await?;
        let ours = |i: &Instance| {
            i.tags.get(tags::MANAGED_BY).map(String::as_str) == Some(tags::MANAGED_BY_VALUE)
                && i.tags.get(tags::SERVICE).map(String::as_str) == Some(service)
        };
        let refused: Vec<String> = instance_ids
            .iter()
            .filter(|id| !found.iter().any(|i| &i.instance_id == *id && ours(i)))
            .filter(|id| found.iter().any(|i| &i.instance_id == *id))
            .cloned()
            .collect();
        let to_terminate: Vec<String> = found
            .iter()
            .filter(|i| ours(i) && i.state != InstanceState::Terminated)
            .map(|i| i.instance_id.clone())
            .collect();
        if !to_terminate.is_empty() {
            self.client
                .terminate_instances()
                .set_instance_ids(Some(to_terminate))
                .send()
                .await
                .map_err(|e| aws_error("ec2", "TerminateInstances", e))?;
        }
        Ok(refused)
    }
}

// ---------------------------------------------------------------------------------------
// Load balancer: ELBv2
// ---------------------------------------------------------------------------------------

/// Application Load Balancer targets and switch point.
pub struct ElbLoadBalancer {
    pub client: aws_sdk_elasticloadbalancingv2::Client,
}

fn targets(instance_ids: &[String], port: u16) -> Vec<TargetDescription> {
    instance_ids
        .iter()
        .map(|id| TargetDescription::builder().id(id).port(port as i32).build())
        .collect()
}

/// Forward weights of an action, as percentages of their sum.
fn forward_weights(actions: &[Action]) -> Vec<(String, u8)> {
    let Some(forward) = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)) else {
        return vec![];
    };
    let tuples: Vec<(String, i64)> = match forward.forward_config() {
        Some(config) if !config.target_groups().is_empty() => config
            .target_groups()
            .iter()
            .filter_map(|t| Some((t.target_group_arn()?.to_string(), t.weight().unwrap_or(1) as i64)))
            .collect(),
        _ => forward
            .target_group_arn()
            .map(|tg| vec![(tg.to_string(), 1)])
            .unwrap_or_default(),
    };
    let total: i64 = tuples.iter().map(|(_, w)| *w).sum();
    tuples
        .into_iter()
        .map(|(tg, w)| (tg, if total > 0 { (w * 100 / total) as u8 } else { 0 }))
        .collect()
}

#[async_trait]
impl LoadBalancer for ElbLoadBalancer {
    async fn target_health(&self, target_group: &str) -> AdapterResult<Vec<TargetHealth>> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_string();
                let health = d.target_health();
                let state = match health.and_then(|h| h.state()).map(|s| s.as_str()) {
                    Some("initial") => TargetState::Initial,
                    Some("healthy") => TargetState::Healthy,
                    Some("unhealthy") => TargetState::Unhealthy,
                    Some("unused") => TargetState::Unused,
                    Some("draining") => TargetState::Draining,
                    _ => TargetState::Unavailable,
                };
                let reason = health.and_then(|h| {
                    let code = h.reason().map(|r| r.as_str().to_string());
                    match (code, h.description()) {
                        (Some(code), Some(text)) => Some(format!("{code}: {text}")),
                        (code, text) => code.or(text.map(str::to_string)),
                    }
                });
                Some(TargetHealth {
                    instance_id: id,
                    state,
                    reason,
                })
            })
            .collect())
    }

    async fn register(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.client
            .register_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_ids, port)))
            .send()
            .await
            .map_err(|e| aws_error("elbv2", "RegisterTargets", e))?;
        Ok(())
    }

    async fn deregister(&self, target_group: &str, instance_ids: &[String], port: u16) -> AdapterResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let result = self
            .client
            .deregister_targets()
            .target_group_arn(target_group)
            .set_targets(Some(targets(instance_ids, port)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A target already gone (e.g. terminated by an earlier delivery) is deregistered.
            Err(e) if error_code(&e) == Some("InvalidTarget") => {
                tracing::info!(target_group, ?instance_ids, "deregister: targets already gone");
                Ok(())
            }
            Err(e) => Err(aws_error("elbv2", "DeregisterTargets", e)),
        }
    }

    async fn set_traffic(&self, switch: &Switch, weights: &[(String, u8)]) -> AdapterResult<()> {
        let mut config = ForwardActionConfig::builder();
        for (tg, weight) in weights {
            config = config.target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(tg)
                    .weight(*weight as i32)
                    .build(),
            );
        }
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(config.build())
            .build();
        match &switch.rule_arn {
            Some(rule) => {
                self.client
                    .modify_rule()
                    .rule_arn(rule)
                    .actions(action)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyRule", e))?;
            }
            None => {
                self.client
                    .modify_listener()
                    .listener_arn(&switch.listener_arn)
                    .default_actions(action)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "ModifyListener", e))?;
            }
        }
        Ok(())
    }

    async fn traffic(&self, switch: &Switch) -> AdapterResult<Vec<(String, u8)>> {
        match &switch.rule_arn {
            Some(rule) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(rule)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "DescribeRules", e))?;
                let rule = out
                    .rules()
                    .first()
                    .ok_or_else(|| AdapterError::NotFound(format!("listener rule {rule}")))?;
                Ok(forward_weights(rule.actions()))
            }
            None => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(&switch.listener_arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("elbv2", "DescribeListeners", e))?;
                let listener = out
                    .listeners()
                    .first()
                    .ok_or_else(|| AdapterError::NotFound(format!("listener {}", switch.listener_arn)))?;
                Ok(forward_weights(listener.default_actions()))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Artifact store: S3
// ---------------------------------------------------------------------------------------

/// Release manifests in, reports out (`<report prefix><service>/<deploy id>.json`).
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub report_prefix: String,
}

/// Largest release manifest read (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: i64 = 64 * 1024;

#[async_trait]
impl ArtifactStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        let out = self.client.get_object().bucket(bucket).key(key).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(AdapterError::NotFound(format!("s3://{bucket}/{key}")))
            }
            Err(e) => return Err(aws_error("s3", "GetObject", e)),
        };
        if out.content_length().unwrap_or(0) > MAX_MANIFEST_BYTES {
            return Err(AdapterError::Invalid(format!(
                "s3://{bucket}/{key} is larger than {MAX_MANIFEST_BYTES} bytes; a release manifest names one AMI"
            )));
        }
        let body = out.body.collect().await.map_err(|e| AdapterError::Aws {
            service: "s3",
            operation: "GetObject",
            message: format!("reading the body: {e}"),
            retryable: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        let key = format!("{}{service}/{deploy_id}.json", self.report_prefix);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.to_vec().into())
            .send()
            .await
            .map_err(|e| aws_error("s3", "PutObject", e))?;
        Ok(key)
    }
}

// ---------------------------------------------------------------------------------------
// Alarms: CloudWatch
// ---------------------------------------------------------------------------------------

/// The services' CloudWatch alarms.
pub struct CloudWatchAlarms {
    pub client: aws_sdk_cloudwatch::Client,
}

#[async_trait]
impl crate::Alarms for CloudWatchAlarms {
    async fn in_alarm(&self, names: &[String]) -> AdapterResult<Vec<String>> {
        let mut firing = Vec::new();
        // DescribeAlarms takes at most 100 names a call.
        for chunk in names.chunks(100) {
            let out = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                .send()
                .await
                .map_err(|e| aws_error("cloudwatch", "DescribeAlarms", e))?;
            // The state is checked here too: the request's StateValue filter is not applied
            // together with AlarmNames everywhere (moto ignores it).
            let alarm = Some(&aws_sdk_cloudwatch::types::StateValue::Alarm);
            let metric = out
                .metric_alarms()
                .iter()
                .filter(|a| a.state_value() == alarm)
                .filter_map(|a| a.alarm_name());
            let composite = out
                .composite_alarms()
                .iter()
                .filter(|a| a.state_value() == alarm)
                .filter_map(|a| a.alarm_name());
            firing.extend(metric.chain(composite).map(str::to_string));
        }
        Ok(firing)
    }
}

// ---------------------------------------------------------------------------------------
// Orchestrator: Step Functions
// ---------------------------------------------------------------------------------------

/// Starts the deployment's Step Functions execution, named by the deployment id.
pub struct SfnOrchestrator {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

#[async_trait]
impl Orchestrator for SfnOrchestrator {
    async fn start(&self, deploy_id: &str, input: &serde_json::Value) -> AdapterResult<()> {
        if self.state_machine_arn.is_empty() {
            return Err(AdapterError::Invalid(
                "GREENLIGHT_STATE_MACHINE_ARN is not set: start-deployment cannot start the pipeline".into(),
            ));
        }
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(deploy_id)
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Same name: already started (running with the same input, or closed).
            Err(e) if error_code(&e) == Some("ExecutionAlreadyExists") => Ok(()),
            Err(e) => Err(aws_error("sfn", "StartExecution", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_5xx_and_transient_answers_are_retryable_and_nothing_else() {
        // What the emulator's fault injector answers with, per protocol.
        for (status, code) in [
            (503, "RequestLimitExceeded"),
            (400, "Throttling"),
            (400, "ThrottlingException"),
            (503, "SlowDown"),
            (500, "InternalError"),
            (500, "InternalFailure"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (503, "Unavailable"),
            (400, "TransactionInProgressException"),
            (400, "RequestTimeout"),
        ] {
            assert!(retryable_answer(Some(status), Some(code)), "{status} {code}");
        }
        assert!(retryable_answer(Some(503), None), "a HEAD answer has no body");
        for (status, code) in [
            (400, "ConditionalCheckFailedException"),
            (400, "ValidationException"),
            (400, "InvalidAMIID.NotFound"),
            (403, "UnauthorizedOperation"),
            (400, "LimitExceededException"),
        ] {
            assert!(!retryable_answer(Some(status), Some(code)), "{status} {code}");
        }
    }

    #[test]
    fn forward_weights_are_percentages_of_their_sum() {
        let tuple = |tg: &str, w: i32| TargetGroupTuple::builder().target_group_arn(tg).weight(w).build();
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(tuple("a", 9))
                    .target_groups(tuple("b", 1))
                    .build(),
            )
            .build();
        assert_eq!(forward_weights(&[action]), vec![("a".into(), 90), ("b".into(), 10)]);
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("a")
            .build();
        assert_eq!(forward_weights(&[plain]), vec![("a".into(), 100)]);
        assert_eq!(forward_weights(&[]), vec![]);
    }
}
