//! greenlight-core: the pure heart of greenlight.
//!
//! Everything that decides whether a deployment is safe lives here, free of I/O, clocks and
//! AWS types, so it can be table-tested and simulated:
//! - [`config`]: a service's registration (switch point, target groups, gates, canary, bake);
//! - [`model`]: the ledger's records (service state, deployments, phases, releases);
//! - [`request`]: what handlers bring to a decision (requests from events, observations);
//! - [`decide`](mod@decide): `decide(state, event, now) -> (state, effects)`;
//! - [`plan`]: the step sequence the orchestrator runs (and the Step Functions definition
//!   generated from it);
//! - [`inbound`]: parsing of every event greenlight receives (EventBridge events, S3 event
//!   notifications, a CloudWatch alarm's Lambda action);
//! - [`detail`]: the typed `detail` of greenlight's own events (the CLI publishes them);
//! - [`announce`]: `DeploymentStateChanged`, the events the ledger's stream announces for
//!   every change of a deployment's phase or of what it waits for;
//! - [`switch`]: switch points (listeners, rules) and the frame greenlight keeps of each;
//! - [`phoenix`]: when a live fleet is due a re-pave (the scheduled reconcile asks);
//! - [`audit`]: the scheduled reconcile's judgment of the running fleet against the ledger
//!   (drift, strangers, orphans) and the repairs a service's policy allows; [`finding`] its
//!   records;
//! - [`analysis`]: canary analysis: what a registration declares, the evidence, the
//!   anytime-valid statistics and the verdicts; [`judging`] when a deployment is judged;
//! - [`hook`]: lifecycle hooks, what a registration declares, sends and reads back;
//!   [`hooking`] when a hook holds a deployment;
//! - [`pausing`]: when an approval pause (`"pause"` in `canary_steps`) holds a deployment;
//! - [`metrics`]: the milestones a decision reached, as CloudWatch Embedded Metric Format;
//! - [`ids`]: deterministic deployment ids and idempotency tokens;
//! - [`form`]: decoding of the form-encoded object keys of S3 event notifications;
//! - [`version`]: version ordering, SemVer's (no silent downgrades);
//! - [`rfc3339`]: the times AWS writes in events;
//! - [`rng`]: the seeded PRNG of the simulator, the fuzz generator and the chaos adapters.

pub mod analysis;
pub mod announce;
pub mod audit;
pub mod config;
pub mod decide;
pub mod detail;
pub mod fence;
pub mod finding;
pub mod form;
pub mod hook;
pub mod hooking;
pub mod ids;
pub mod inbound;
pub mod judging;
pub mod metrics;
pub mod model;
pub mod pausing;
pub mod phoenix;
pub mod plan;
pub mod request;
pub mod rfc3339;
pub mod rng;
pub mod switch;
pub mod version;

pub use config::{ConfigError, ServiceConfig};
pub use decide::{decide, Decision, Effect, Event, Refusal};
pub use model::{Deployment, Phase, Release, ServiceState, State};
pub use plan::{route, Route, Step};

/// Seconds since the Unix epoch. The core never reads a clock: `now` is always an argument.
pub type Epoch = u64;
