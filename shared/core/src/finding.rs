//! What the scheduled fleet audit found (issue 22): the ledger's record of it on the
//! service's pointers ([`FleetAudit`]) and its closed set of findings ([`Finding`]). The
//! judgment that produces them is [`crate::audit`]; this module is only the records, so that
//! [`crate::model`] can hold them without importing the audit.
//!
//! Nothing secret is recorded: ARNs, instance and image ids, deploy ids, weights and times.

use crate::Epoch;
use serde::{Deserialize, Serialize};
use std::fmt;

/// At most this many findings are recorded on a service's pointers (the rest are counted in
/// [`FleetAudit::more`]): the pointer item stays small, whatever the fleet looks like.
pub const MAX_RECORDED_FINDINGS: usize = 20;

/// What the reconcile did about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Recorded and logged only (the service's policy says `report`).
    Reported,
    /// Made as the ledger says (the switch point reset, the stranger deregistered, the orphan
    /// terminated).
    Repaired,
    /// The policy says `repair`, but repairing would be unsafe now: reported instead, with why.
    Held { why: String },
}

/// Why an instance registered in one of the service's target groups is a stranger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StrangerWhy {
    /// No release in the ledger launched it (not live, warm, nor the deployment in flight's).
    NotInAnyRelease,
    /// A release lists it, but it runs another image than the release's.
    OtherImage { image_id: String, release_ami: String },
}

/// One thing about the running fleet that the ledger does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The switch point forwards somewhere the ledger does not say (observed `weights`; the
    /// ledger's `expected`).
    Drift {
        /// The listener, or the rule, that is the switch point.
        switch: String,
        weights: Vec<(String, u8)>,
        expected: Vec<(String, u8)>,
        #[serde(flatten)]
        action: Action,
    },
    /// An instance registered in one of the service's target groups that the ledger does not
    /// account for. Deregistered under `repair`; never terminated for being a stranger (a
    /// tagged one may still be an [`Finding::Orphan`]).
    Stranger {
        instance_id: String,
        target_group: String,
        /// Tagged `managed-by=greenlight`.
        managed: bool,
        #[serde(flatten)]
        reason: StrangerWhy,
        #[serde(flatten)]
        action: Action,
    },
    /// An instance tagged as greenlight's for this service that no deployment accounts for,
    /// launched longer than the grace period ago: terminated.
    Orphan {
        instance_id: String,
        /// Its `greenlight:deploy-id` tag.
        deploy_id: Option<String>,
        launched_at: Epoch,
        #[serde(flatten)]
        action: Action,
    },
}

impl Finding {
    /// The finding's kind as logs, metrics and the CLI name it.
    pub fn kind(&self) -> FindingKind {
        match self {
            Finding::Drift { .. } => FindingKind::Drift,
            Finding::Stranger { .. } => FindingKind::Stranger,
            Finding::Orphan { .. } => FindingKind::Orphan,
        }
    }

    pub fn action(&self) -> &Action {
        match self {
            Finding::Drift { action, .. } | Finding::Stranger { action, .. } | Finding::Orphan { action, .. } => action,
        }
    }
}

/// The closed set of finding kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Drift,
    Stranger,
    Orphan,
}

impl FindingKind {
    pub const ALL: [FindingKind; 3] = [FindingKind::Drift, FindingKind::Stranger, FindingKind::Orphan];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Drift => "drift",
            FindingKind::Stranger => "stranger",
            FindingKind::Orphan => "orphan",
        }
    }

    /// The Embedded Metric Format metric counting findings of this kind per service.
    pub fn metric(self) -> &'static str {
        match self {
            FindingKind::Drift => "Drift",
            FindingKind::Stranger => "Strangers",
            FindingKind::Orphan => "Orphans",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action() {
            Action::Reported => "reported".to_string(),
            Action::Repaired => "repaired".to_string(),
            Action::Held { why } => format!("held: {why}"),
        };
        match self {
            Finding::Drift {
                switch,
                weights,
                expected,
                ..
            } => write!(
                f,
                "drift: {} forwards {} (the ledger says {}); {action}",
                short(switch),
                weights_text(weights),
                weights_text(expected)
            ),
            Finding::Stranger {
                instance_id,
                target_group,
                managed,
                reason,
                ..
            } => {
                let why = match reason {
                    StrangerWhy::NotInAnyRelease => "no release launched it".to_string(),
                    StrangerWhy::OtherImage { image_id, release_ami } => {
                        format!("runs {image_id}, its release {release_ami}")
                    }
                };
                let whose = if *managed { "greenlight's" } else { "not greenlight's" };
                write!(
                    f,
                    "stranger: {instance_id} ({whose}) in {}: {why}; {action}",
                    short(target_group)
                )
            }
            Finding::Orphan {
                instance_id,
                deploy_id,
                launched_at,
                ..
            } => write!(
                f,
                "orphan: {instance_id} of {} launched at {}; {action}",
                deploy_id.as_deref().unwrap_or("no deployment"),
                crate::rfc3339::format(*launched_at)
            ),
        }
    }
}

/// An ARN's resource, shortened: a target group's name (`targetgroup/web-a/1` → `web-a`),
/// else the resource path (`listener/app/web/1/2`).
fn short(arn: &str) -> &str {
    let path = arn.rsplit(':').next().unwrap_or(arn);
    match path.strip_prefix("targetgroup/") {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => path,
    }
}

fn weights_text(weights: &[(String, u8)]) -> String {
    if weights.is_empty() {
        return "nothing".into();
    }
    weights
        .iter()
        .map(|(tg, w)| format!("{} {w}%", short(tg)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reconcile's mark on a service's pointers: the findings still open as of its last run
/// (absent when there are none). Written only when they change or a repair is made (ledger
/// first), so a fleet that stays as it is costs no write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetAudit {
    /// Since when the reconcile has found exactly these (seconds since the epoch).
    pub since: Epoch,
    /// The last time it repaired something, while these were open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_at: Option<Epoch>,
    /// At most [`MAX_RECORDED_FINDINGS`], in a stable order.
    pub open: Vec<Finding>,
    /// Findings past the bound, counted only.
    #[serde(default)]
    pub more: u32,
}
