//! greenlight-sim: deterministic simulation of greenlight, TigerBeetle-style.
//!
//! The real core (`decide`) and the real step handlers (greenlight-steps) run unchanged
//! against an in-memory AWS behind the same adapter traits the Lambda functions use:
//! - [`world`]: EC2, ELB, S3, CloudWatch alarms, the instances' HTTP endpoints and Step
//!   Functions' StartExecution, on a simulated clock;
//! - [`traffic`]: the load each target group serves by its weights over time, and the
//!   ALB metrics (requests, 5xx, response times) its instances' behaviour gives it;
//! - [`ledger`]: the DynamoDB ledger with its real conditional-write semantics;
//! - [`sim`]: the seeded scheduler (at-least-once, duplicated, reordered and delayed
//!   deliveries; crashes after any AWS call; clock jumps; images, alarms, rollbacks,
//!   aborts, promotions, policy changes);
//! - [`invariants`]: the safety checks after every step and the liveness checks at the end;
//! - randomness: only `greenlight_core::rng` (shared with the fuzz generator), seeded per
//!   run, so a seed replays exactly;
//! - [`scale`]: the benchmarks' scale scenario (K services deploying at once) and its report;
//! - [`meter`]: what the handlers' adapter calls would cost in AWS (requests per operation,
//!   DynamoDB capacity), for the scale report.
//!
//! `make sim` (`cargo run -p greenlight-sim -- --seed 1 --runs 10000`) runs many seeds; the
//! test command runs a fixed set (`shared/sim/tests/seeds.rs`).

pub mod invariants;
pub mod ledger;
pub mod meter;
pub mod scale;
pub mod sim;
pub mod traffic;
pub mod world;

pub use scale::{scale, ScaleOptions, ScaleReport};
pub use sim::{run, run_traced, Failure, Options, Stats};
