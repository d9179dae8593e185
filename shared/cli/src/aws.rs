//! The CLI's AWS clients, configured like the AWS CLI (`--profile`, `--region`,
//! `--endpoint-url` over the standard configuration chain), and the three kinds of calls it
//! makes: ledger and load balancer reads through greenlight-adapters' implementations, STS
//! GetCallerIdentity (who asks), and EventBridge PutEvents on greenlight's command bus (the
//! only way it acts).

use crate::cli::{Global, MAX_REQUESTED_BY};
use crate::error::{not_registered, CliError, CliResult};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use greenlight_adapters::aws::{DynamoLedger, ElbLoadBalancer};
use greenlight_adapters::{Ledger, LoadBalancer};
use greenlight_core::config::DEFAULT_BAKE_WINDOW_S;
use greenlight_core::inbound::SOURCE;
use greenlight_core::model::State;
use serde_json::Value;
use std::sync::Arc;

/// Everything the verbs reach AWS through.
#[derive(Clone)]
pub struct Aws {
    pub ledger: Arc<dyn Ledger>,
    pub lb: Arc<dyn LoadBalancer>,
    events: aws_sdk_eventbridge::Client,
    sts: aws_sdk_sts::Client,
    pub table: String,
    pub bus: String,
    /// The region every client calls (the dashboard states it).
    pub region: String,
}

/// The SDK configuration: the standard chain (environment, profile, SSO, instance role),
/// with the global options applied on top.
pub async fn sdk_config(global: &Global) -> CliResult<aws_config::SdkConfig> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(greenlight_adapters::aws::https_client());
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &global.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &global.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(CliError::failed(
            "no AWS region: pass --region, set AWS_REGION, or give your profile a region (`aws configure`)",
        ));
    }
    Ok(sdk)
}

impl Aws {
    pub async fn connect(global: &Global) -> CliResult<Aws> {
        let sdk = sdk_config(global).await?;
        Ok(Aws {
            ledger: Arc::new(DynamoLedger {
                client: aws_sdk_dynamodb::Client::new(&sdk),
                table: global.table.clone(),
                // Registrations written by greenlight always carry their bake window.
                default_bake_window_s: DEFAULT_BAKE_WINDOW_S,
            }),
            lb: Arc::new(ElbLoadBalancer {
                client: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            }),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
            table: global.table.clone(),
            bus: global.event_bus.clone(),
            region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        })
    }

    /// A ledger or load balancer failure as the CLI reports it.
    pub fn error(&self, err: greenlight_adapters::AdapterError) -> CliError {
        CliError::aws(err, &self.table)
    }

    /// The service's registration and pointers (and deployment `deploy_id`); refused when
    /// the service is not registered.
    pub async fn load(&self, service: &str, deploy_id: Option<&str>) -> CliResult<State> {
        self.ledger
            .load(service, deploy_id)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| not_registered(service))
    }

    /// The service's registration and pointers, with the deployment in flight (if any) in
    /// the same `State`: one read of the pointers, and the deployment's item alone after it
    /// (`Ledger::load_active`). Exit 1 for a service never registered.
    pub async fn load_active(&self, service: &str) -> CliResult<State> {
        self.ledger
            .load_active(service)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| not_registered(service))
    }

    /// Who asks: `--requested-by`, else the caller's identity from STS (failing loudly: an
    /// event must not carry a guessed name).
    pub async fn requested_by(&self, given: Option<&str>) -> CliResult<String> {
        if let Some(name) = given {
            return Ok(name.to_string());
        }
        let out = self.sts.get_caller_identity().send().await.map_err(|e| {
            CliError::failed(format!(
                "cannot tell who you are: STS GetCallerIdentity failed: {}\ncheck your AWS credentials \
                 (--profile / AWS_PROFILE, `aws sso login`, AWS_ACCESS_KEY_ID) or name yourself with --requested-by",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))
        })?;
        let arn = out.arn().unwrap_or_default();
        let name = requested_by_from_arn(arn);
        if name.is_empty() || name.len() > MAX_REQUESTED_BY {
            return Err(CliError::failed(format!(
                "your identity {arn:?} does not fit an event's requested_by (1-{MAX_REQUESTED_BY} characters): \
                 name yourself with --requested-by"
            )));
        }
        Ok(name)
    }

    /// The AWS account the credentials belong to (STS GetCallerIdentity).
    pub async fn account(&self) -> CliResult<String> {
        let out = self.sts.get_caller_identity().send().await.map_err(|e| {
            CliError::failed(format!(
                "STS GetCallerIdentity failed: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))
        })?;
        Ok(out.account().unwrap_or("unknown").to_string())
    }

    /// Publishes one greenlight event on the bus; returns EventBridge's event id.
    pub async fn publish(&self, detail_type: &str, detail: &Value) -> CliResult<String> {
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .event_bus_name(&self.bus)
            .build();
        let out = self.events.put_events().entries(entry).send().await.map_err(|e| {
            CliError::failed(format!(
                "EventBridge PutEvents on bus {:?} failed: {}\ncheck --event-bus (GREENLIGHT_EVENT_BUS: the stack's \
                 CommandBusName output), your credentials and region",
                self.bus,
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))
        })?;
        match out.entries().first() {
            Some(entry) if entry.error_code().is_none() => entry
                .event_id()
                .map(str::to_string)
                .ok_or_else(|| CliError::failed("EventBridge accepted the event but returned no event id")),
            Some(entry) => Err(CliError::failed(format!(
                "EventBridge refused the event on bus {:?}: {} {}\nthe command bus's policy lets only the roles named \
                 at deploy time publish each command (ImagePublisherArns: deploy; OperatorArns: rollback, abort, \
                 promote, drill): ask for yours to be added",
                self.bus,
                entry.error_code().unwrap_or_default(),
                entry.error_message().unwrap_or_default()
            ))),
            None => Err(CliError::failed("EventBridge PutEvents returned no entry")),
        }
    }
}

/// The name an identity ARN stands for: the session name of an assumed role
/// (`arn:aws:sts::1:assumed-role/Dev/alice` → `alice`), the name of an IAM user
/// (`arn:aws:iam::1:user/ops/bob` → `bob`), else the ARN itself.
pub fn requested_by_from_arn(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    if let Some((_, session)) = resource.strip_prefix("assumed-role/").and_then(|r| r.split_once('/')) {
        if !session.is_empty() {
            return session.to_string();
        }
    }
    if let Some(name) = resource.strip_prefix("user/").and_then(|r| r.rsplit('/').next()) {
        if !name.is_empty() {
            return name.to_string();
        }
    }
    arn.to_string()
}

#[cfg(test)]
mod tests {
    use super::requested_by_from_arn;

    #[test]
    fn names_callers_by_session_user_or_arn() {
        let table = [
            ("arn:aws:sts::123456789012:assumed-role/Dev/alice", "alice"),
            (
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_1/bob@example.com",
                "bob@example.com",
            ),
            ("arn:aws:iam::123456789012:user/carol", "carol"),
            ("arn:aws:iam::123456789012:user/ops/dave", "dave"),
            ("arn:aws:sts::123456789012:user/moto", "moto"),
            ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"),
            (
                "arn:aws:sts::123456789012:federated-user/erin",
                "arn:aws:sts::123456789012:federated-user/erin",
            ),
        ];
        for (arn, want) in table {
            assert_eq!(requested_by_from_arn(arn), want, "{arn}");
        }
    }
}
