//! Lifecycle hooks over AWS ([`crate::Hooks`]): a Lambda hook is one synchronous `Invoke`, a
//! webhook one HTTPS `POST` signed with HMAC-SHA256 under a secret read from Secrets Manager
//! (`GetSecretValue`) for that call and never kept.
//!
//! No AWS SDK client for either: each would add hundreds of kilobytes to the one bootstrap
//! (its 6 MiB budget, BENCHMARKS.md). Both are one REST call, signed here with SigV4
//! (`aws-sigv4`, which the SDK links anyway) and sent on the SDK's own HTTP connector
//! (hyper, rustls on ring), so TLS, proxies and `AWS_ENDPOINT_URL` work as for every client.
//!
//! What the hook did wrong (a function error, an HTTP error status, no answer in its
//! `request_timeout_s`, a secret that cannot be read) is its answer: [`Reply::Unusable`],
//! `FAILED` with why. Only what a retry of the step may cure is an error: Lambda's or
//! Secrets Manager's throttling and 5xx, a connection to them that failed.

use crate::{AdapterError, AdapterResult, Hooks};
use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use greenlight_core::hook::{self, Hook, Reply, Target};
use std::time::{Duration, SystemTime};

/// Calls hooks with the process's credentials (a function's execution role).
#[derive(Clone)]
pub struct AwsHooks {
    connector: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    credentials: Option<SharedCredentialsProvider>,
    /// `AWS_ENDPOINT_URL` (the local emulator) instead of each service's regional endpoint.
    endpoint: Option<String>,
}

impl std::fmt::Debug for AwsHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsHooks").field("endpoint", &self.endpoint).finish()
    }
}

/// A response: its status, the headers greenlight reads, its body (bounded).
struct Answer {
    status: u16,
    function_error: Option<String>,
    body: Vec<u8>,
}

impl AwsHooks {
    /// Hooks called with `sdk`'s credentials, endpoint and TLS stack.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build();
        AwsHooks {
            connector: aws_smithy_runtime_api::client::http::SharedHttpConnector::new(connector),
            credentials: sdk.credentials_provider(),
            endpoint: sdk.endpoint_url().map(|e| e.trim_end_matches('/').to_string()),
        }
    }

    /// `service`'s endpoint in `region` (or the configured one).
    fn endpoint_of(&self, service: &str, region: &str) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"))
    }

    /// Sends `request` (headers set, unsigned) within `timeout`; `sign`: SigV4 for the
    /// service in the region. None: no answer in time.
    async fn send(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        sign: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<Option<Answer>, String> {
        let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?']).next())
            .unwrap_or("")
            .to_string();
        all.push(("host".into(), host));
        if let Some((service, region)) = sign {
            all.extend(self.signature(url, &all, body, service, region).await?);
        }
        let mut request = HttpRequest::new(SdkBody::from(body.to_vec()));
        request.set_uri(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        request.set_method("POST").map_err(|e| e.to_string())?;
        for (name, value) in &all {
            request
                .headers_mut()
                .try_insert(name.clone(), value.clone())
                .map_err(|e| format!("bad header {name}: {e}"))?;
        }
        let call = async {
            let response = self.connector.call(request).await.map_err(|e| format!("{e}"))?;
            let status = response.status().as_u16();
            let function_error = response.headers().get("x-amz-function-error").map(str::to_string);
            let limited = http_body_util::Limited::new(response.into_body(), hook::MAX_ANSWER_BYTES + 1);
            let body = http_body_util::BodyExt::collect(limited)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok::<_, String>(Answer {
                status,
                function_error,
                body,
            })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The SigV4 headers of a POST of `body` to `url` with `headers`.
    async fn signature(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        service: &str,
        region: &str,
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let provider = self
            .credentials
            .as_ref()
            .ok_or("no AWS credentials configured".to_string())?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {e}"))?;
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    async fn invoke(&self, arn: &str, payload: &[u8], timeout: Duration) -> AdapterResult<Reply> {
        let region = arn.split(':').nth(3).unwrap_or("us-east-1");
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.endpoint_of("lambda", region),
            arn.replace(':', "%3A")
        );
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-amz-invocation-type", "RequestResponse".to_string()),
        ];
        let answer = self
            .send(&url, &headers, payload, Some(("lambda", region)), timeout)
            .await
            .map_err(|message| aws_error("Invoke", message, true))?;
        let Some(answer) = answer else {
            return Ok(Reply::Unusable(format!(
                "the function gave no answer within {}s",
                timeout.as_secs()
            )));
        };
        let text = || hook::bounded(&String::from_utf8_lossy(&answer.body));
        match answer.status {
            200 => match answer.function_error {
                Some(kind) => Ok(Reply::Unusable(format!("the function failed ({kind}): {}", text()))),
                None => Ok(Reply::Body(answer.body)),
            },
            429 | 500..=599 => Err(aws_error("Invoke", format!("HTTP {}: {}", answer.status, text()), true)),
            status => Ok(Reply::Unusable(format!(
                "Lambda refused the invocation (HTTP {status}): {}",
                text()
            ))),
        }
    }

    /// The secret's string, or why it cannot be read (Ok(Err): the hook's problem).
    async fn secret(&self, arn: &str) -> AdapterResult<Result<String, String>> {
        let region = arn.split(':').nth(3).unwrap_or("us-east-1");
        let url = format!("{}/", self.endpoint_of("secretsmanager", region));
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("x-amz-target", "secretsmanager.GetSecretValue".to_string()),
        ];
        let body = serde_json::json!({ "SecretId": arn }).to_string();
        let answer = self
            .send(
                &url,
                &headers,
                body.as_bytes(),
                Some(("secretsmanager", region)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|message| aws_error("GetSecretValue", message, true))?
            .ok_or_else(|| aws_error("GetSecretValue", "no answer within 10s".into(), true))?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        match answer.status {
            200 => Ok(json["SecretString"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "the webhook's secret has no SecretString".to_string())),
            429 | 500..=599 => Err(aws_error("GetSecretValue", format!("HTTP {}", answer.status), true)),
            status => {
                // Never the body's secret: an error body has none, but say only its type.
                let kind = json["__type"].as_str().unwrap_or("error");
                Ok(Err(format!(
                    "the webhook's secret {arn} cannot be read (HTTP {status}, {})",
                    hook::bounded(kind)
                )))
            }
        }
    }

    async fn webhook(&self, webhook: &hook::Webhook, payload: &[u8], timeout: Duration) -> AdapterResult<Reply> {
        let secret = match self.secret(&webhook.secret).await? {
            Ok(secret) => secret,
            Err(why) => return Ok(Reply::Unusable(why)),
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, &hook::signed_message(timestamp, payload));
        let signature: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let headers = [
            ("content-type", "application/json".to_string()),
            (hook::TIMESTAMP_HEADER, timestamp.to_string()),
            (hook::SIGNATURE_HEADER, format!("sha256={signature}")),
            ("user-agent", "greenlight-hooks/1".to_string()),
        ];
        let answer = match self.send(&webhook.url, &headers, payload, None, timeout).await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Ok(Reply::Unusable(format!(
                    "the webhook gave no answer within {}s",
                    timeout.as_secs()
                )))
            }
            Err(why) => return Ok(Reply::Unusable(format!("the webhook cannot be reached: {why}"))),
        };
        if !(200..300).contains(&answer.status) {
            return Ok(Reply::Unusable(format!(
                "the webhook answered HTTP {}: {}",
                answer.status,
                hook::bounded(&String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]))
            )));
        }
        Ok(Reply::Body(answer.body))
    }
}

fn aws_error(operation: &'static str, message: String, retryable: bool) -> AdapterError {
    let service = if operation == "Invoke" {
        "lambda"
    } else {
        "secretsmanager"
    };
    AdapterError::Aws {
        service,
        operation,
        message,
        retryable,
    }
}

#[async_trait]
impl Hooks for AwsHooks {
    async fn call(&self, hook: &Hook, payload: &[u8]) -> AdapterResult<Reply> {
        let timeout = Duration::from_secs(hook.request_timeout_s);
        match hook.target() {
            Some(Target::Lambda(arn)) => self.invoke(arn, payload, timeout).await,
            Some(Target::Webhook(webhook)) => self.webhook(webhook, payload, timeout).await,
            None => Ok(Reply::Unusable(format!("hook {} names nothing to call", hook.name))),
        }
    }
}
