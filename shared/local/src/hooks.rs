//! Stand-in lifecycle hooks on loopback, for the local runner and the tests: a
//! [`HookServer`] is a small HTTP/1.1 server that answers each call from a script (by the
//! payload's call number, so a retried call gets the same answer) and keeps what it received.
//! It plays a Lambda function behind the emulator's `Invoke` ([`serve_as_lambda`]: the
//! emulator forwards the payload to it, `/_greenlight/lambda-handlers`) or a webhook (its own
//! URL, with the secret put in the emulator's Secrets Manager by [`put_secret`]).

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a stand-in hook answers to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// HTTP 200 with `{"status": <status>, "reason": <reason>}`.
    Status(&'static str, String),
    /// Any HTTP status and body (a broken hook).
    Http(u16, String),
    /// No answer for this long (a hook slower than its `request_timeout_s`).
    Hang(Duration),
}

impl Answer {
    pub fn succeeded() -> Answer {
        Answer::Status("SUCCEEDED", String::new())
    }
    pub fn in_progress(reason: &str) -> Answer {
        Answer::Status("IN_PROGRESS", reason.into())
    }
    pub fn failed(reason: &str) -> Answer {
        Answer::Status("FAILED", reason.into())
    }
}

/// One call a stand-in hook received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// When it arrived (milliseconds since the epoch).
    pub at_ms: u64,
}

impl Received {
    /// The body as JSON (the payload greenlight sent).
    pub fn payload(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted hook listening on 127.0.0.1 until dropped.
pub struct HookServer {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HookServer {
    /// Starts a hook answering call n (the payload's `call`) with `script[n - 1]`, the last
    /// entry for every later one.
    pub async fn start(script: Vec<Answer>) -> Result<HookServer, String> {
        assert!(!script.is_empty(), "a hook needs an answer");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind a hook server: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, script) = (kept.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &kept, &script).await;
                });
            }
        });
        Ok(HookServer {
            url: format!("http://127.0.0.1:{port}/hook"),
            received,
            task,
        })
    }

    /// Every call received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The payloads received so far, in order.
    pub fn payloads(&self) -> Vec<Value> {
        self.received().iter().map(Received::payload).collect()
    }
}

/// Answers one request on `stream`.
async fn serve(mut stream: TcpStream, kept: &Mutex<Vec<Received>>, script: &[Answer]) -> Result<(), String> {
    const MAX: usize = 1 << 20;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a request".into());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_string();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (at + 4, length.min(MAX));
        }
        if raw.len() > MAX {
            return Err("head too long".into());
        }
    };
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[head_end..(head_end + length).min(raw.len())].to_vec();
    let received = Received {
        headers,
        body,
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let call = received.payload()["call"].as_u64().unwrap_or(1).max(1) as usize;
    kept.lock().unwrap_or_else(|e| e.into_inner()).push(received);
    let answer = &script[(call - 1).min(script.len() - 1)];
    let (status, body) = match answer {
        Answer::Status(status, reason) => (200, serde_json::json!({"status": status, "reason": reason}).to_string()),
        Answer::Http(status, body) => (*status, body.clone()),
        Answer::Hang(how_long) => {
            tokio::time::sleep(*how_long).await;
            (200, r#"{"status": "SUCCEEDED", "reason": "too late"}"#.to_string())
        }
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await.map_err(|e| e.to_string())?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Makes `server` the Lambda function `function_name` behind the emulator's `Invoke`; its ARN
/// (the emulator's account and region).
pub async fn serve_as_lambda(endpoint: &str, function_name: &str, server: &HookServer) -> Result<String, String> {
    let body = serde_json::json!({"function_name": function_name, "url": server.url}).to_string();
    let (status, answer) =
        crate::faults::request(endpoint, "POST", "/_greenlight/lambda-handlers", body.as_bytes()).await?;
    if status != 200 {
        return Err(format!(
            "register the hook function {function_name}: HTTP {status} {answer}"
        ));
    }
    Ok(format!(
        "arn:aws:lambda:us-east-1:{}:function:{function_name}",
        crate::fixture::ACCOUNT
    ))
}

/// Creates the secret `name` holding `value` in the emulator's Secrets Manager; its ARN.
pub async fn put_secret(endpoint: &str, name: &str, value: &str) -> Result<String, String> {
    let body = serde_json::json!({"Name": name, "SecretString": value}).to_string();
    let headers = [
        ("Content-Type", "application/x-amz-json-1.1".to_string()),
        ("X-Amz-Target", "secretsmanager.CreateSecret".to_string()),
        (
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
                crate::DEFAULT_ACCESS_KEY
            ),
        ),
    ];
    let (status, answer) = crate::faults::request_with(endpoint, "POST", "/", &headers, body.as_bytes()).await?;
    match answer["ARN"].as_str() {
        Some(arn) if status == 200 => Ok(arn.to_string()),
        _ => Err(format!("CreateSecret {name}: HTTP {status} {answer}")),
    }
}

/// True when `received` carries greenlight's signature of its body under `secret`
/// (`X-Greenlight-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`).
pub fn signed_with(received: &Received, secret: &str) -> bool {
    use greenlight_core::hook::{signed_message, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let header = |name: &str| received.headers.get(&name.to_ascii_lowercase()).cloned();
    let (Some(signature), Some(timestamp)) = (header(SIGNATURE_HEADER), header(TIMESTAMP_HEADER)) else {
        return false;
    };
    let Ok(timestamp) = timestamp.parse::<u64>() else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    ring::hmac::verify(&key, &signed_message(timestamp, &received.body), &tag).is_ok()
}
