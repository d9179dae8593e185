//! The `detail` of greenlight's own events (`source: greenlight`): one typed struct per
//! event, the contract between its publishers and its parser. The CLI serialises these,
//! `inbound::parse` deserialises them (unknown fields rejected, then every value
//! validated), and `events/` holds a sample of each.

use serde::{Deserialize, Serialize};

/// `ImagePublished`: deploy this AMI as this version of this service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePublished {
    pub service: String,
    pub version: String,
    pub ami: String,
    /// Who published it (a pipeline, an engineer); `unknown` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// 1 (the default) for the first deployment of this image; higher re-deploys it after
    /// an abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// This release's `on_failure` (`revert` or `hold`), overriding the registration's:
    /// e.g. `hold` for a release whose schema change cannot be undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<crate::config::OnFailure>,
}

/// `RollbackRequested`: put the previous version (or `to_version`) back live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequested {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    pub reason: String,
    pub requested_by: String,
}

/// `AbortRequested` and `PromoteRequested`: an engineer steers the deployment in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerRequested {
    pub service: String,
    pub reason: String,
    pub requested_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_fields_are_left_out_and_unknown_ones_refused() {
        let image = ImagePublished {
            service: "checkout".into(),
            version: "v2".into(),
            ami: "ami-00000002".into(),
            requested_by: Some("ci".into()),
            reason: None,
            attempt: None,
            on_failure: None,
        };
        let value = serde_json::to_value(&image).unwrap();
        assert_eq!(
            value,
            json!({"service": "checkout", "version": "v2", "ami": "ami-00000002", "requested_by": "ci"})
        );
        assert_eq!(serde_json::from_value::<ImagePublished>(value).unwrap(), image);
        let rollback = json!({"service": "checkout", "reason": "p99", "requested_by": "alice", "to": "v1"});
        assert!(serde_json::from_value::<RollbackRequested>(rollback).is_err());
        let held = json!({"service": "checkout", "version": "v2", "ami": "ami-00000002", "on_failure": "hold"});
        assert_eq!(
            serde_json::from_value::<ImagePublished>(held).unwrap().on_failure,
            Some(crate::config::OnFailure::Hold)
        );
        let misspelt = json!({"service": "checkout", "version": "v2", "ami": "ami-00000002", "on_failure": "freeze"});
        let why = serde_json::from_value::<ImagePublished>(misspelt)
            .unwrap_err()
            .to_string();
        assert!(why.contains("revert") && why.contains("hold"), "{why}");
    }
}
