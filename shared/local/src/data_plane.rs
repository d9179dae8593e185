//! A client for the emulator's local ALB data plane (`tests/emulator/README.md`, section 10):
//! the loopback URL each listener answers real HTTP on (`/_greenlight/load-balancers`), so a
//! registration can point its smoke test through the load balancer and a test or the demo
//! can send requests the way users do.

use crate::faults::request;
use std::collections::BTreeMap;

/// The data plane's listener map on the emulator's endpoint.
pub const LOAD_BALANCERS_PATH: &str = "/_greenlight/load-balancers";

/// Listener ARN → `http://127.0.0.1:<port>` it answers on.
pub async fn listeners(endpoint: &str) -> Result<BTreeMap<String, String>, String> {
    let (status, body) = request(endpoint, "GET", LOAD_BALANCERS_PATH, b"")
        .await
        .map_err(|e| format!("the emulator's data plane: {e}"))?;
    if status != 200 {
        return Err(format!("the emulator's data plane answered {status}: {body}"));
    }
    serde_json::from_value(body).map_err(|e| format!("the emulator's data plane's answer: {e}"))
}

/// The URL `listener_arn` answers on.
pub async fn listener_url(endpoint: &str, listener_arn: &str) -> Result<String, String> {
    listeners(endpoint)
        .await?
        .remove(listener_arn)
        .ok_or_else(|| format!("the emulator's data plane serves no listener {listener_arn}"))
}

/// The data plane's statistics path.
pub const ALB_STATS_PATH: &str = "/_greenlight/alb-stats";

/// Requests the data plane forwarded to `target_group` so far.
pub async fn target_group_requests(endpoint: &str, target_group: &str) -> Result<u64, String> {
    let (status, body) = request(endpoint, "GET", ALB_STATS_PATH, b"")
        .await
        .map_err(|e| format!("the emulator's data plane: {e}"))?;
    if status != 200 {
        return Err(format!("the emulator's data plane answered {status}: {body}"));
    }
    Ok(body["target_groups"][target_group]["requests"].as_u64().unwrap_or(0))
}
