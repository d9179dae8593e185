//! Canary analysis: green judged against blue on real traffic, between canary steps and
//! through the bake window, by an anytime-valid sequential test.
//!
//! - [`Analysis`]: what a registration declares (`"analysis"`): the metrics, their tolerance,
//!   the error budget `alpha`, the minimum sample, the metric period, the longest a canary
//!   step may wait for evidence and what an inconclusive step does.
//! - [`Evidence`]: what the adapter fetched (`GetMetricData` over green's and blue's target
//!   groups), reduced to counts per metric period: "bad" events among "total" trials (5xx
//!   among requests; requests slower than a threshold among requests; a custom metric's
//!   numerator among its denominator).
//! - [`judge`]: the pure verdict (`stats` holds the e-processes, `judge` the combination).
//! - [`Evaluation`] / [`AnalysisRecord`]: what the ledger keeps, so that every verdict is
//!   explained (metric, green's and blue's counts, tolerance, e-values, decision).
//!
//! Every number is a [`Real`]: an `f64` that compares by its bits, so that the records stay
//! `Eq` like the rest of the ledger (no NaN is ever stored: constructors clamp).
//!
//! Modules: `types` (everything above), `stats` (the e-processes), `judge`, `fetch`; each
//! imports from `types` (and `judge` from `stats`), never from this parent.

pub mod fetch;
mod judge;
mod stats;
mod types;

pub use judge::judge;
pub use stats::*;
pub use types::*;
