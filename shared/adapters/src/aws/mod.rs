//! The adapters implemented with the AWS SDK, one module per service: [`dynamodb`] (ledger),
//! [`ec2`] (fleet), [`elb`] (load balancer), [`s3`] (artifact store), [`cloudwatch`]
//! (alarms), [`sfn`] (orchestrator) and [`hooks`] (lifecycle hooks: Lambda and webhooks); here, the SDK configuration and the clients they
//! share.
//!
//! Clients are built once per process ([`AwsClients`]) from an SDK configuration that reads
//! `AWS_ENDPOINT_URL` (so every client can point at the local emulator): the functions' own
//! ([`lambda_sdk_config`], environment only) or the standard chain (CLI, local tools), all on
//! one HTTPS client ([`https_client`], rustls on ring). What an SDK error means (retryable or
//! final) is `error.rs`.

use crate::http::HttpProber;
use crate::{Orchestrator, Ports, StdoutMetrics, SystemClock};
use std::sync::Arc;

pub mod cloudwatch;
pub mod dynamodb;
pub mod ec2;
pub mod elb;
mod error;
pub mod hooks;
pub mod s3;
pub mod sfn;
pub mod signed;

pub use cloudwatch::CloudWatchAlarms;
pub use dynamodb::{create_table, DynamoLedger};
pub use ec2::Ec2Fleet;
pub use elb::ElbLoadBalancer;
pub use hooks::AwsHooks;
pub use s3::S3Store;
pub use sfn::SfnOrchestrator;
pub use signed::SignedHttp;

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
    /// S3, Lambda and Secrets Manager: a few REST calls signed here, no SDK client.
    pub signed: SignedHttp,
    pub sfn: aws_sdk_sfn::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// Lifecycle hooks: Lambda `Invoke` and Secrets Manager `GetSecretValue`, signed here.
    pub hooks: AwsHooks,
}

impl AwsClients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let signed = SignedHttp::new(sdk);
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            hooks: AwsHooks::new(signed.clone()),
            signed,
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
            http: clients.signed.clone(),
            bucket: installation.bucket.clone(),
            report_prefix: installation.report_prefix.clone(),
        }),
        orchestrator,
        alarms: Arc::new(CloudWatchAlarms {
            client: clients.cloudwatch.clone(),
        }),
        hooks: Arc::new(clients.hooks.clone()),
        prober: Arc::new(HttpProber),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(StdoutMetrics),
        manifest_prefix: installation.manifest_prefix.clone(),
    }
}
