//! Lifecycle hooks, the vocabulary (Amazon ECS blue/green's Lambda hooks, CodeDeploy's
//! `BeforeAllowTraffic`/`AfterAllowTraffic`, Flagger's webhooks): what a registration
//! declares (`"hooks"`: a Lambda function or an HTTPS webhook at a stage), what greenlight
//! sends a hook ([`Payload`]), what a hook answers ([`Status`], read by [`read_answer`]) and
//! what the ledger keeps of each ([`HookRecord`]). Imports nothing of the registration or the
//! ledger: `hooking` says when a hook holds a deployment, `decide/hooks.rs` what its answer
//! does.

use crate::ids;
use crate::Epoch;
use serde::{Deserialize, Serialize};

/// The most hooks a registration may declare.
pub const MAX_HOOKS: usize = 10;
/// A hook's wait between an `IN_PROGRESS` answer and the next call unless declared (ECS's).
pub const DEFAULT_CALLBACK_DELAY_S: u64 = 30;
/// The longest `callback_delay_s`: an hour.
pub const MAX_CALLBACK_DELAY_S: u64 = 3600;
/// How long a hook may keep answering `IN_PROGRESS` unless declared: ten minutes.
pub const DEFAULT_HOOK_TIMEOUT_S: u64 = 600;
/// The longest `timeout_s`: a day.
pub const MAX_HOOK_TIMEOUT_S: u64 = 86_400;
/// How long one call may take unless declared (seconds): the answer, not the work.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 10;
/// The longest `request_timeout_s`: under every calling function's `Timeout` (template).
pub const MAX_REQUEST_TIMEOUT_S: u64 = 20;
/// The most of an answer greenlight reads (bytes); a longer one is a failed call.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most of a hook's reason the ledger keeps (characters).
pub const MAX_REASON_CHARS: usize = 300;
/// The most timeline marks a payload carries (the latest).
pub const MAX_PAYLOAD_MARKS: usize = 50;
/// A Lambda hook's function name starts with this: the functions' roles may invoke only
/// functions so named (the template's grant), so any other name could never be called.
pub const LAMBDA_PREFIX: &str = "greenlight-hook-";
/// A webhook's secret (Secrets Manager) is named under this: the roles may read only these.
pub const SECRET_PREFIX: &str = "greenlight/hooks/";
/// The header of a webhook call carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Greenlight-Signature";
/// The header of a webhook call carrying the Unix time the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Greenlight-Timestamp";

/// Where in a deployment a hook is called. Each gates the move out of its point: nothing
/// moves on until every hook declared there succeeded (or timed out with `continue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Green passed its health gates and smoke test, before any user traffic (the test route
    /// reaches it). `FAILED` aborts: green never had traffic.
    GreenVerified,
    /// After each canary step's traffic change, once green is verified at its weight (before
    /// the step's analysis and pause). `FAILED` reverts.
    TrafficShifted,
    /// Green has all the traffic and passed its gates, before it is declared live. `FAILED`
    /// reverts.
    AllTraffic,
    /// The bake window is over, before blue is drained and terminated. `FAILED` reverts
    /// (blue is still warm).
    BeforeRetire,
    /// Traffic is back on blue after a revert, before green is terminated. `FAILED` marks the
    /// service as needing attention (there is nothing left to revert).
    AfterRevert,
}

impl Stage {
    /// Every stage, in the order a deployment reaches them.
    pub const ALL: [Stage; 5] = [
        Stage::GreenVerified,
        Stage::TrafficShifted,
        Stage::AllTraffic,
        Stage::BeforeRetire,
        Stage::AfterRevert,
    ];

    /// The stage as the registration and the ledger spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::GreenVerified => "green_verified",
            Stage::TrafficShifted => "traffic_shifted",
            Stage::AllTraffic => "all_traffic",
            Stage::BeforeRetire => "before_retire",
            Stage::AfterRevert => "after_revert",
        }
    }
}

/// What a hook that kept answering `IN_PROGRESS` past its `timeout_s` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// As a `FAILED` answer (the default: nobody said yes).
    #[default]
    Rollback,
    /// As a `SUCCEEDED` answer.
    Continue,
}

impl OnTimeout {
    /// `rollback` or `continue`, as the registration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Rollback => "rollback",
            OnTimeout::Continue => "continue",
        }
    }
}

/// An HTTPS endpoint called with the payload, signed with a secret only it and greenlight know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `https://...` (plain `http://` only to a loopback host, for local use).
    pub url: String,
    /// The Secrets Manager secret (ARN, named under [`SECRET_PREFIX`]) whose string signs each
    /// call ([`SIGNATURE_HEADER`]). Its value is read when a call is made and never kept.
    pub secret: String,
}

/// One declared hook (`"hooks"` in a registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Unique in the registration: the ledger and the timeline name it.
    pub name: String,
    pub stage: Stage,
    /// A Lambda function's ARN (named [`LAMBDA_PREFIX`]...), invoked synchronously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<String>,
    /// Or an HTTPS webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// The wait before calling again after `IN_PROGRESS` (seconds).
    #[serde(default = "default_callback_delay_s")]
    pub callback_delay_s: u64,
    /// How long after its first call the hook may still answer `IN_PROGRESS` (seconds).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// What a hook past its `timeout_s` does.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// How long one call may take before it counts as `FAILED` (seconds).
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
}

fn default_callback_delay_s() -> u64 {
    DEFAULT_CALLBACK_DELAY_S
}
fn default_timeout_s() -> u64 {
    DEFAULT_HOOK_TIMEOUT_S
}
fn default_request_timeout_s() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_S
}

/// What a hook calls, as one closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A Lambda function's ARN.
    Lambda(&'a str),
    Webhook(&'a Webhook),
}

impl Hook {
    /// What the hook calls (validated: exactly one of `lambda` and `webhook`).
    pub fn target(&self) -> Option<Target<'_>> {
        match (&self.lambda, &self.webhook) {
            (Some(arn), None) => Some(Target::Lambda(arn)),
            (None, Some(webhook)) => Some(Target::Webhook(webhook)),
            _ => None,
        }
    }

    /// `lambda <arn>` or `webhook <url>`, for notes and logs (never a secret).
    pub fn describe(&self) -> String {
        match self.target() {
            Some(Target::Lambda(arn)) => format!("lambda {arn}"),
            Some(Target::Webhook(w)) => format!("webhook {}", w.url),
            None => "nothing".into(),
        }
    }

    /// Everything wrong with this declaration (`at`: its place in the list), one line each.
    pub fn problems(&self, at: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let this = format!("hooks[{at}] ({})", ids::quote(&self.name));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            problems.push(format!(
                "{this}: name must be 1-64 characters a-z, 0-9 and '-' (the ledger and the timeline name the hook by it)"
            ));
        }
        match (&self.lambda, &self.webhook) {
            (Some(arn), None) => {
                if let Err(why) = lambda_function_name(arn) {
                    problems.push(format!("{this}: lambda {why}"));
                }
            }
            (None, Some(webhook)) => problems.extend(webhook_problems(&this, webhook)),
            _ => problems.push(format!(
                "{this}: say what it calls, exactly one of \"lambda\": \"arn:aws:lambda:<region>:<account>:function:{LAMBDA_PREFIX}...\" or \"webhook\": {{\"url\": \"https://...\", \"secret\": \"<Secrets Manager ARN>\"}}"
            )),
        }
        if !(1..=MAX_CALLBACK_DELAY_S).contains(&self.callback_delay_s) {
            problems.push(format!(
                "{this}: callback_delay_s must be between 1 and {MAX_CALLBACK_DELAY_S} (default {DEFAULT_CALLBACK_DELAY_S})"
            ));
        }
        if !(self.callback_delay_s.max(1)..=MAX_HOOK_TIMEOUT_S).contains(&self.timeout_s) {
            problems.push(format!(
                "{this}: timeout_s must be between callback_delay_s and {MAX_HOOK_TIMEOUT_S} (default {DEFAULT_HOOK_TIMEOUT_S})"
            ));
        }
        if !(1..=MAX_REQUEST_TIMEOUT_S).contains(&self.request_timeout_s) {
            problems.push(format!(
                "{this}: request_timeout_s must be between 1 and {MAX_REQUEST_TIMEOUT_S} (default {DEFAULT_REQUEST_TIMEOUT_S}): a hook answers at once and says IN_PROGRESS for long work"
            ));
        }
        problems
    }
}

/// The function name of a Lambda hook's ARN (`arn:<partition>:lambda:<region>:<account>:
/// function:<name>[:<qualifier>]`), or why it is not one greenlight may invoke.
pub fn lambda_function_name(arn: &str) -> Result<&str, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let shaped = matches!(parts.as_slice(), ["arn", p, "lambda", r, a, "function", _, ..]
        if p.starts_with("aws") && !r.is_empty() && a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))
        && parts.len() <= 8;
    if !shaped {
        return Err(format!(
            "{} is not a Lambda function ARN (arn:aws:lambda:<region>:<account>:function:<name>)",
            ids::quote(arn)
        ));
    }
    let name = parts[6];
    let name_ok = name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok || !name.starts_with(LAMBDA_PREFIX) || name.len() == LAMBDA_PREFIX.len() {
        return Err(format!(
            "function {} must be named {LAMBDA_PREFIX}<something>: greenlight's functions may invoke only those (least privilege)",
            ids::quote(name)
        ));
    }
    Ok(name)
}

fn webhook_problems(this: &str, webhook: &Webhook) -> Vec<String> {
    let mut problems = Vec::new();
    let host_of = |rest: &str| rest.split(['/', '?', '#']).next().unwrap_or("").to_string();
    let (https, host) = match (
        webhook.url.strip_prefix("https://"),
        webhook.url.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, host_of(rest)),
        (None, Some(rest)) => (false, host_of(rest)),
        _ => (false, String::new()),
    };
    let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let loopback = matches!(bare, "127.0.0.1" | "localhost" | "[::1]");
    let odd = webhook.url.chars().any(|c| c.is_whitespace() || c.is_control());
    if host.is_empty() || odd || webhook.url.len() > 2048 || (!https && !loopback) {
        problems.push(format!(
            "{this}: webhook.url must be https://<host>/... (plain http only to a loopback host): {}",
            ids::quote(&webhook.url)
        ));
    }
    let parts: Vec<&str> = webhook.secret.splitn(7, ':').collect();
    let secret_ok = matches!(parts.as_slice(), ["arn", p, "secretsmanager", r, a, "secret", name]
        if p.starts_with("aws") && !r.is_empty() && a.len() == 12 && name.starts_with(SECRET_PREFIX) && name.len() > SECRET_PREFIX.len());
    if !secret_ok {
        problems.push(format!(
            "{this}: webhook.secret must be the ARN of a Secrets Manager secret named {SECRET_PREFIX}<something> (greenlight's functions may read only those): {}",
            ids::quote(&webhook.secret)
        ));
    }
    problems
}

/// A hook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Go on.
    Succeeded,
    /// Stop: abort or revert (or hold), with the hook's reason.
    Failed,
    /// Not decided yet: call again after the callback delay.
    InProgress,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::InProgress => "IN_PROGRESS",
        }
    }
}

/// One call of a hook: which, where, and its number (1 for the first). The same call retried
/// (a crashed or retried step) has the same [`Call::invocation_id`]: a hook may be called
/// more than once per call and must answer the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub hook: String,
    pub stage: Stage,
    /// Green's weight at the point (0 before traffic, 100 after all of it).
    pub weight: u8,
    pub number: u32,
}

impl Call {
    /// `<deploy id>/<stage>/<weight>/<hook>/<number>`: stable across retries of this call.
    pub fn invocation_id(&self, deploy_id: &str) -> String {
        format!(
            "{deploy_id}/{}/{}/{}/{}",
            self.stage.as_str(),
            self.weight,
            self.hook,
            self.number
        )
    }
}

/// What a step observed of one call, for `decide`: the answer, or `FAILED` with why no
/// usable answer came (a function error, an HTTP error, a timeout, garbage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub call: Call,
    pub status: Status,
    /// The hook's reason, or why its answer was unusable (bounded, sanitised).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What a call delivered: a body (a Lambda function's result, a webhook's 2xx answer), or
/// why there is none to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Body(Vec<u8>),
    Unusable(String),
}

/// Reads a hook's reply: `{"status": "SUCCEEDED" | "FAILED" | "IN_PROGRESS", "reason": "..."}`.
/// Anything else is `FAILED` with what was wrong (a hook that cannot say yes said no).
pub fn read_answer(reply: &Reply) -> (Status, String) {
    let body = match reply {
        Reply::Unusable(why) => return (Status::Failed, bounded(why)),
        Reply::Body(body) => body,
    };
    #[derive(Deserialize)]
    struct Answer {
        status: Status,
        #[serde(default)]
        reason: Option<String>,
    }
    if body.len() > MAX_ANSWER_BYTES {
        return (
            Status::Failed,
            format!("the answer is longer than {MAX_ANSWER_BYTES} bytes"),
        );
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(answer) => (answer.status, bounded(answer.reason.as_deref().unwrap_or(""))),
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
            (
                Status::Failed,
                bounded(&format!(
                    "the answer is not {{\"status\": \"SUCCEEDED\" | \"FAILED\" | \"IN_PROGRESS\"}}: {}",
                    ids::quote(&text)
                )),
            )
        }
    }
}

/// `text` sanitised (no control characters) and cut to [`MAX_REASON_CHARS`].
pub fn bounded(text: &str) -> String {
    let clean = ids::sanitize(text);
    match clean.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}...", &clean[..cut]),
        None => clean,
    }
}

/// What the ledger keeps of one hook at one point of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    pub hook: String,
    pub stage: Stage,
    pub weight: u8,
    /// Its first call.
    pub since: Epoch,
    /// Calls answered so far.
    pub calls: u32,
    /// When it is called next (while it has not ended).
    pub next_call_at: Epoch,
    /// Its last `IN_PROGRESS` reason, if it gave one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_reason: String,
    /// None while it has not decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<HookEnd>,
}

impl HookRecord {
    /// True when this is `call`'s hook at `call`'s point.
    pub fn is_at(&self, hook: &str, stage: Stage, weight: u8) -> bool {
        self.hook == hook && self.stage == stage && self.weight == weight
    }
}

/// How a hook ended at a point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum HookEnd {
    Succeeded {
        at: Epoch,
    },
    Failed {
        at: Epoch,
        reason: String,
    },
    /// It answered `IN_PROGRESS` past its `timeout_s`; `action` was done.
    TimedOut {
        at: Epoch,
        action: OnTimeout,
    },
}

/// The JSON a hook receives (documented in `events/README.md`, sample
/// `events/hook-payload.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The payload's shape: `1`.
    pub schema: u32,
    pub hook: String,
    pub stage: Stage,
    /// Stable across retries of this call (see [`Call::invocation_id`]).
    pub invocation_id: String,
    /// 1 for the first call at this point, then one more per `IN_PROGRESS`.
    pub call: u32,
    pub service: String,
    pub deploy_id: String,
    /// Green's release and blue's (None on a service's first deployment).
    pub green: PayloadRelease,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue: Option<PayloadRelease>,
    /// Green's share of user traffic at this point (%).
    pub weight: u8,
    /// True for a rollback's redeployment.
    pub rollback: bool,
    /// While green is not live: how to reach green alone through the load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_route: Option<TestRoute>,
    /// The deployment's timeline so far (the latest [`MAX_PAYLOAD_MARKS`] marks).
    pub timeline: Vec<PayloadMark>,
}

/// A release as a hook sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRelease {
    pub version: String,
    pub ami: String,
    pub target_group: String,
    pub instance_ids: Vec<String>,
}

/// The test route: requests with `header: value` reach green only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRoute {
    pub header: String,
    pub value: String,
    /// The load balancer's URL (the smoke test's `load_balancer_url`), when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One timeline mark as a hook sees it (time in RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadMark {
    pub at: String,
    pub phase: String,
    pub note: String,
}

/// The HMAC-SHA256 message a webhook call is signed over: `<timestamp>.<body>` (the
/// timestamp stops a replay of an old call being taken for a new one).
pub fn signed_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).expect("a hook")
    }

    const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:greenlight-hook-checks";
    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greenlight/hooks/ci-AbCdEf";

    #[test]
    fn a_lambda_hook_gets_the_defaults_and_no_problem() {
        let h = hook(&format!(
            r#"{{"name": "checks", "stage": "green_verified", "lambda": "{LAMBDA}"}}"#
        ));
        assert_eq!(h.callback_delay_s, DEFAULT_CALLBACK_DELAY_S);
        assert_eq!(h.timeout_s, DEFAULT_HOOK_TIMEOUT_S);
        assert_eq!(h.on_timeout, OnTimeout::Rollback);
        assert_eq!(h.target(), Some(Target::Lambda(LAMBDA)));
        assert!(h.problems(0).is_empty(), "{:?}", h.problems(0));
    }

    #[test]
    fn declarations_that_cannot_work_are_refused_with_what_to_write() {
        let cases = [
            (
                r#"{"name": "x", "stage": "all_traffic"}"#.to_string(),
                "exactly one of",
            ),
            (
                format!(
                    r#"{{"name": "x", "stage": "all_traffic", "lambda": "{LAMBDA}", "webhook": {{"url": "https://a.example", "secret": "{SECRET}"}}}}"#
                ),
                "exactly one of",
            ),
            (
                r#"{"name": "x", "stage": "all_traffic", "lambda": "arn:aws:lambda:us-east-1:123456789012:function:checks"}"#
                    .to_string(),
                "must be named greenlight-hook-",
            ),
            (
                r#"{"name": "x", "stage": "all_traffic", "lambda": "checks"}"#.to_string(),
                "not a Lambda function ARN",
            ),
            (
                format!(
                    r#"{{"name": "x", "stage": "all_traffic", "webhook": {{"url": "http://hooks.example.com/x", "secret": "{SECRET}"}}}}"#
                ),
                "plain http only to a loopback host",
            ),
            (
                r#"{"name": "x", "stage": "all_traffic", "webhook": {"url": "https://a.example/x", "secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:other"}}"#
                    .to_string(),
                "named greenlight/hooks/",
            ),
            (
                format!(r#"{{"name": "Bad Name", "stage": "all_traffic", "lambda": "{LAMBDA}"}}"#),
                "name must be",
            ),
            (
                format!(
                    r#"{{"name": "x", "stage": "all_traffic", "lambda": "{LAMBDA}", "callback_delay_s": 60, "timeout_s": 30}}"#
                ),
                "timeout_s must be between callback_delay_s",
            ),
            (
                format!(r#"{{"name": "x", "stage": "all_traffic", "lambda": "{LAMBDA}", "request_timeout_s": 300}}"#),
                "request_timeout_s must be between 1 and 20",
            ),
        ];
        for (json, expect) in cases {
            let problems = hook(&json).problems(2);
            assert!(
                problems.iter().any(|p| p.contains(expect) && p.starts_with("hooks[2]")),
                "{json}: {problems:?}"
            );
        }
        let loopback = hook(&format!(
            r#"{{"name": "x", "stage": "after_revert", "webhook": {{"url": "http://127.0.0.1:8080/hook", "secret": "{SECRET}"}}}}"#
        ));
        assert!(loopback.problems(0).is_empty(), "{:?}", loopback.problems(0));
    }

    #[test]
    fn an_unknown_stage_or_kind_is_a_parse_error_naming_the_choices() {
        let stage = serde_json::from_str::<Hook>(r#"{"name": "x", "stage": "before_lunch", "lambda": "a"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            stage.contains("green_verified") && stage.contains("after_revert"),
            "{stage}"
        );
        let kind = serde_json::from_str::<Hook>(r#"{"name": "x", "stage": "all_traffic", "sqs": "q"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            kind.contains("unknown field `sqs`") && kind.contains("webhook"),
            "{kind}"
        );
    }

    #[test]
    fn answers_are_read_strictly_and_anything_else_is_a_failure_with_why() {
        let body = |s: &str| Reply::Body(s.as_bytes().to_vec());
        let cases: [(Reply, Status, &str); 7] = [
            (body(r#"{"status": "SUCCEEDED"}"#), Status::Succeeded, ""),
            (
                body(r#"{"status": "FAILED", "reason": "schema v7 missing"}"#),
                Status::Failed,
                "schema v7 missing",
            ),
            (
                body(r#"{"status": "IN_PROGRESS", "reason": "migrating"}"#),
                Status::InProgress,
                "migrating",
            ),
            (body(r#"{"status": "succeeded"}"#), Status::Failed, "the answer is not"),
            (body("<html>oops</html>"), Status::Failed, "<html>oops</html>"),
            (body(""), Status::Failed, "the answer is not"),
            (
                Reply::Unusable("HTTP 500 from the webhook".into()),
                Status::Failed,
                "HTTP 500",
            ),
        ];
        for (reply, status, reason) in cases {
            let (got, why) = read_answer(&reply);
            assert_eq!(got, status, "{reply:?}");
            assert!(why.contains(reason), "{reply:?}: {why}");
        }
        let long = "x".repeat(2000);
        let (_, why) = read_answer(&body(&format!(r#"{{"status": "FAILED", "reason": "{long}"}}"#)));
        assert!(why.chars().count() <= MAX_REASON_CHARS + 3);
    }

    #[test]
    fn an_invocation_id_is_the_same_for_every_retry_of_one_call() {
        let call = Call {
            hook: "checks".into(),
            stage: Stage::TrafficShifted,
            weight: 10,
            number: 2,
        };
        assert_eq!(call.invocation_id("d-1"), "d-1/traffic_shifted/10/checks/2");
        assert_eq!(signed_message(7, b"{}"), b"7.{}".to_vec());
    }
}
