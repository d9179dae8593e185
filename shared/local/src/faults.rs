//! A client for the emulator's fault injector (`/_greenlight/faults`, see
//! `tests/emulator/README.md`): AWS faults — throttling in each protocol's wire shape,
//! 500/503 before or after the request was applied, connection resets before or after, added
//! latency — drawn from a seeded PRNG for the calls signed with one access key id only. Give
//! the handlers under test their own key ([`crate::Local::with_access_key`]), keep the fixture
//! and the assertions on the default one, and they see no faults.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The injector's path on the emulator's endpoint.
pub const FAULTS_PATH: &str = "/_greenlight/faults";

/// What can happen to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The service's throttling error (EC2 `RequestLimitExceeded`, ELBv2 `Throttling`,
    /// DynamoDB `ThrottlingException`, S3 `SlowDown`, ...); the request never ran.
    Throttle,
    /// HTTP 500 or 503; the request never ran.
    ErrorBefore,
    /// The request ran, then its answer was replaced by a 500 or 503.
    ErrorAfter,
    /// The connection was reset with no answer; the request never ran.
    ResetBefore,
    /// The request ran, then the connection was reset with no answer.
    ResetAfter,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::ErrorBefore,
        FaultKind::ErrorAfter,
        FaultKind::ResetBefore,
        FaultKind::ResetAfter,
    ];
}

/// Faults for one access key id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPlan {
    pub access_key: String,
    /// Probability that a request meets a fault.
    pub rate: f64,
    /// Seeds the emulator's PRNG: the n-th request of the key always meets the same fate.
    pub seed: u64,
    /// Every request is delayed by a uniform draw from `[low, high]` ms.
    pub latency_ms: [u64; 2],
    /// The kinds drawn from (uniformly).
    pub kinds: Vec<FaultKind>,
    /// IAM service prefixes touched (`ec2`, `elasticloadbalancing`, `dynamodb`, `s3`,
    /// `cloudwatch`, `events`, `states`, `sqs`); `None`: every service.
    pub services: Option<Vec<String>>,
}

impl FaultPlan {
    /// Every kind of fault at `rate` with `seed`, no added latency, on every service.
    pub fn new(access_key: &str, rate: f64, seed: u64) -> FaultPlan {
        FaultPlan {
            access_key: access_key.to_string(),
            rate,
            seed,
            latency_ms: [0, 0],
            kinds: FaultKind::ALL.to_vec(),
            services: None,
        }
    }
}

/// What the injector did to one key's requests so far.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FaultCounts {
    pub access_key: String,
    pub active: bool,
    pub rate: f64,
    pub seed: u64,
    /// Requests of the key the plan applied to.
    pub requests: u64,
    /// Faults injected, by kind (`throttle`, `error-before`, ...).
    pub injected: BTreeMap<String, u64>,
    pub total: u64,
    pub latency_ms_total: f64,
    /// Faults injected, by IAM action (`ec2:RunInstances`) and kind.
    pub by_action: BTreeMap<String, BTreeMap<String, u64>>,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self.injected.iter().map(|(k, n)| format!("{k} {n}")).collect();
        write!(
            f,
            "seed {}, rate {}: {} faults in {} requests ({}), {:.0} ms of added latency",
            self.seed,
            self.rate,
            self.total,
            self.requests,
            kinds.join(", "),
            self.latency_ms_total
        )?;
        for (action, kinds) in &self.by_action {
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write!(f, "\n  {action}: {}", kinds.join(", "))?;
        }
        Ok(())
    }
}

/// Starts injecting `plan` (replacing the key's plan and counts).
pub async fn inject(endpoint: &str, plan: &FaultPlan) -> Result<FaultCounts, String> {
    let body = serde_json::to_vec(plan).map_err(|e| e.to_string())?;
    counts_from(request(endpoint, "POST", FAULTS_PATH, &body).await?)
}

/// What was injected into `access_key`'s requests so far.
pub async fn counts(endpoint: &str, access_key: &str) -> Result<FaultCounts, String> {
    let path = format!("{FAULTS_PATH}?access_key={access_key}");
    counts_from(request(endpoint, "GET", &path, b"").await?)
}

/// Stops injecting into `access_key`'s requests; returns what was injected.
pub async fn stop(endpoint: &str, access_key: &str) -> Result<FaultCounts, String> {
    let path = format!("{FAULTS_PATH}?access_key={access_key}");
    counts_from(request(endpoint, "DELETE", &path, b"").await?)
}

fn counts_from((status, body): (u16, Value)) -> Result<FaultCounts, String> {
    if status != 200 {
        return Err(format!("fault injector answered {status}: {body}"));
    }
    serde_json::from_value(body).map_err(|e| format!("fault injector's answer: {e}"))
}

/// One HTTP/1.1 request to the emulator (`http://host:port`); the answer's status and JSON. Also
/// used by [`crate::usage`].
pub(crate) async fn request(endpoint: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value), String> {
    request_with(
        endpoint,
        method,
        path,
        &[("Content-Type", "application/json".into())],
        body,
    )
    .await
}

/// [`request`] with these headers (no `Content-Type` unless among them).
pub(crate) async fn request_with(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, Value), String> {
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let authority = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("{endpoint:?}: an http:// endpoint is required"))?
        .trim_end_matches('/');
    let exchange = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{extra}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(&[head.as_bytes(), body].concat())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer within 10 s"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: malformed answer {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    let json = serde_json::from_str(body).map_err(|e| format!("{method} {path}: {e} in {body:?}"))?;
    Ok((status, json))
}
