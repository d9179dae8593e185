//! greenlight-steps: the handlers behind every Lambda function, generic over the adapter
//! traits so the local runner, the tests and the Lambda binaries run the same code.
//!
//! Every handler follows one loop ([`engine::drive`]): read the ledger → observe the world
//! (read-only) → `decide` → commit the new state conditionally → apply the effects (each
//! idempotent) → decide their follow-up events the same way. A conditional-write conflict
//! re-reads and decides again; nothing is retried blindly.

pub mod analysis;
pub mod announce;
pub mod apply;
pub mod audit;
pub mod deliver;
pub mod engine;
pub mod lambda;
pub mod observe;
pub mod reconcile;
pub mod report;
pub mod revert;
pub mod start;
pub mod steer;
pub mod step;

use greenlight_adapters::AdapterError;
use greenlight_core::decide::Refusal;
use greenlight_core::inbound::InboundError;

pub use announce::announce_deployments;
pub use audit::{audit_fleet, FleetOutcome};
pub use deliver::{deliver, Outcome};
pub use reconcile::{reconcile_services, ReconcileOutcome};
pub use revert::{revert_service, RevertOutcome};
pub use start::{start_deployment, StartOutcome};
pub use steer::{steer_deployment, SteerOutcome};
pub use step::run_step;

/// Why a handler did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The input event is malformed or names something unknown. Nothing changed.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The state machine refused the event. Nothing changed.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// An AWS call failed (the next delivery retries from the ledger).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

impl From<InboundError> for StepError {
    fn from(e: InboundError) -> Self {
        StepError::Rejected(e.to_string())
    }
}

impl StepError {
    /// True when retrying the same event can succeed (transient AWS failures, conflicts).
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Adapter(AdapterError::Aws { retryable, .. }) => *retryable,
            StepError::Adapter(AdapterError::Conflict(_)) => true,
            _ => false,
        }
    }
}
