//! greenlight's end-to-end tests: one binary, run against the local AWS emulator.
//! Every assertion reads the emulator's state (listener actions, instance states and tags,
//! ledger items, S3 objects), never a handler's word for it.
//!
//! - `rollout`: all-at-once and canary rollouts, bake window and retirement;
//! - `analysis`: canaries judged by analysis of real (emulated) traffic: a healthy one moves on
//!   evidence, an erroring or slow one reverts at its first step, a leak during the bake
//!   window puts blue back live, an inconclusive step holds until an engineer promotes;
//! - `announce`: every change of a deployment's phase reaches greenlight's events bus once, in
//!   order, from the ledger's stream (`DeploymentStateChanged`);
//! - `contract`: the shipped binaries as processes behind a fake Lambda Runtime API, driven by
//!   the committed state machine; metrics lines; each role grants what its function calls;
//! - `buses`: greenlight's commands act only from its command bus; on the default bus they
//!   change nothing;
//! - `cli`: the `greenlight` CLI as a built binary: every verb, exit codes, JSON output, and
//!   that it only reads and publishes events;
//! - `concurrency`: one deployment per service: policies, racing images, lease expiry;
//! - `gates`: unhealthy green and failed smoke tests abort without touching the listener;
//! - `hostile`: events cannot aim the smoke test elsewhere; no shell-outs; no secrets or event
//!   fields a handler does not need in the functions' info logs;
//! - `faults`: rollouts and rollbacks while 15–20 % of the handlers' AWS calls fail; bounded retries;
//! - `idempotency`: duplicate events, handler re-runs, a crash after RunInstances;
//! - `crash`: a crash right after every AWS call of every handler, then redelivery: the same end;
//! - `ledger`: conditional writes refuse stale state; history per service;
//! - `refusals`: downgrades, malformed events, unknown services, wrong-owner AMIs;
//! - `revert`: rollbacks (engineer, alarm) during a canary and the bake window, hygiene;
//! - `steer`: engineers abort or promote the deployment in flight;
//! - `pauses`: approval pauses hold green at their step until `greenlight promote` approves,
//!   or until their timeout, then abort or continue as declared;
//! - `hooks`: lifecycle hooks (a Lambda function behind the emulator's `Invoke`, a signed
//!   webhook): a failure before traffic aborts, after it reverts; `IN_PROGRESS` is called again
//!   after its delay; a timeout does its declared action; a 500 or garbage is a failure;
//! - `holds`: `on_failure: hold` freezes a deployment on an alarm or a failed gate, traffic and
//!   fleets untouched, until `greenlight rollback`, `promote` (the gate runs again) or `abort`;
//! - `routes`: the deployment's test route to green through the load balancer: the smoke test
//!   on it, closed on every way out, a first deployment with nothing live;
//! - `switches`: several switch points per service: all move together, frames (authentication,
//!   stickiness) kept exactly and no client secret sent; hand edits block retirement; drain
//!   times from the target groups; a point greenlight cannot own aborts before launch;
//! - `traffic`: load through a 10/90 weighted listener (one group's app failing 5 % of user
//!   requests), read back with GetMetricData: the split, the 5xx, a p99 response time;
//! - `reconcile`: the scheduled reconcile resumes a deployment whose execution never started;
//! - `sources`: Image Builder and S3 manifest events start deployments;
//! - `shapes`: EC2 AMI State Change, S3 event notifications (`Records`) and an alarm's Lambda
//!   action, each delivered as AWS delivers it; both forms of one alarm transition revert once;
//! - `samples`: every file in `events/` parses as expected;
//! - `dashboard`: `greenlight dashboard` in headless Chromium: the page follows a canary live,
//!   its buttons promote and roll back (asserted on the emulator), refusals show, actions from
//!   another origin or without the token publish nothing;
//! - `up`: `greenlight-local up`, and the README's `aws events put-events` commands run with
//!   the AWS CLI against it: the deployment and the rollback happen;
//! - `infra`: the committed Step Functions definition is the one generated from the plan;
//! - `modules`: no crate's modules use each other in a cycle (read from the sources).

mod analysis;
mod announce;
mod buses;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod dashboard;
mod faults;
mod gates;
mod holds;
mod hooks;
mod hostile;
mod idempotency;
mod infra;
mod ledger;
mod modules;
mod pauses;
mod reconcile;
mod refusals;
mod revert;
mod rollout;
mod routes;
mod samples;
mod shapes;
mod sources;
mod steer;
mod switches;
mod traffic;
mod up;
