//! Lifecycle hooks over AWS ([`crate::Hooks`]): a Lambda hook is one synchronous `Invoke`, a
//! webhook one HTTPS `POST` signed with HMAC-SHA256 under a secret read from Secrets Manager
//! (`GetSecretValue`) for that call and never kept.
//!
//! No AWS SDK client for either: each would add hundreds of kilobytes to the one bootstrap
//! (its 6 MiB budget, BENCHMARKS.md). Both are one REST call, signed here with SigV4
//! ([`SignedHttp`], as S3's two calls are) and sent on the SDK's own HTTP connector (hyper,
//! rustls on ring), so TLS and `AWS_ENDPOINT_URL` work as for every client.
//!
//! What the hook did wrong (a function error, an HTTP error status, no answer in its
//! `request_timeout_s`, a secret that cannot be read) is its answer: [`Reply::Unusable`],
//! `FAILED` with why. Only what a retry of the step may cure is an error: Lambda's or
//! Secrets Manager's throttling and 5xx, a connection to them that failed.

use super::signed::{SignedHttp, Signing};
use crate::{AdapterError, AdapterResult, Hooks};
use async_trait::async_trait;
use greenlight_core::hook::{self, Hook, Reply, Target};
use std::time::{Duration, SystemTime};

/// Calls hooks with the process's credentials (a function's execution role).
#[derive(Clone, Debug)]
pub struct AwsHooks {
    http: SignedHttp,
}

impl AwsHooks {
    /// Hooks called with `sdk`'s credentials, endpoint and TLS stack.
    pub fn new(http: SignedHttp) -> Self {
        AwsHooks { http }
    }

    async fn invoke(&self, arn: &str, payload: &[u8], timeout: Duration) -> AdapterResult<Reply> {
        let region = arn.split(':').nth(3).unwrap_or("us-east-1");
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.http.endpoint_of("lambda", region),
            arn.replace(':', "%3A")
        );
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-amz-invocation-type", "RequestResponse".to_string()),
        ];
        let answer = self
            .http
            .send(
                "POST",
                &url,
                &headers,
                payload,
                Some(Signing::service("lambda", region)),
                timeout,
            )
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
            200 => match answer.header("x-amz-function-error") {
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
        let url = format!("{}/", self.http.endpoint_of("secretsmanager", region));
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("x-amz-target", "secretsmanager.GetSecretValue".to_string()),
        ];
        let body = serde_json::json!({ "SecretId": arn }).to_string();
        let answer = self
            .http
            .send(
                "POST",
                &url,
                &headers,
                body.as_bytes(),
                Some(Signing::service("secretsmanager", region)),
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
        let answer = match self
            .http
            .send("POST", &webhook.url, &headers, payload, None, timeout)
            .await
        {
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
