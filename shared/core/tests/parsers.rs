//! Property test of every parser that reads what the outside world sends greenlight, on the
//! stable toolchain, in `cargo test` (so in `make test`): `inbound::parse` (every event
//! kind and shape: EventBridge events, S3 event notifications, an alarm's Lambda action),
//! `parse_manifest_key`, `parse_manifest`, `ami_request`, `form::decode`, `parse_image_arn`,
//! `parse_time_ms`, `announce::enrich` (the deployment events pipe's stream batches), the
//! step functions' `StepInput` (then `check_service` and `DeployId::parse`, as `run_step`
//! does), `ServiceConfig::from_json`, and the name validators.
//!
//! Inputs are the samples in `events/` (and `shared/fuzz/seeds/registration.json`) mutated
//! structurally, S3 keys glued from path tricks, hostile strings and random bytes; the
//! generator and the oracle are the fuzz crate's (`shared/fuzz/src/{mutate,oracle}.rs`,
//! included here), so this test and the libFuzzer targets check the same properties: no
//! panic, every rejection has a readable reason, every acceptance passes the validators.
//!
//! Seeded and deterministic (splitmix64; each case has its own seed, printed with any
//! failure). `GREENLIGHT_PROP_SEED=<n>` explores another seed, `GREENLIGHT_PROP_SCALE=<k>`
//! runs k times the cases. Counts per family: `cargo test -p greenlight-core --test parsers
//! -- --nocapture`.

#[path = "../../fuzz/src/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../../fuzz/src/oracle.rs"]
#[allow(dead_code)]
mod oracle;

use greenlight_core::inbound::MANIFEST_PREFIX;
use greenlight_core::plan::StepInput;
use greenlight_core::rng::Rng;
use mutate::Entropy;
use oracle::{preview, Verdict};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The default seed ("greenlig").
const SEED: u64 = 0x6772_6565_6e6c_6967;

fn seed() -> u64 {
    std::env::var("GREENLIGHT_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

fn cases(n: usize) -> usize {
    let scale: usize = std::env::var("GREENLIGHT_PROP_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    n * scale.max(1)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The samples in `events/`: (file name, JSON).
fn samples() -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = std::fs::read_dir(repo().join("events"))
        .expect("events/")
        .map(|entry| entry.expect("events/ entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 10, "the samples in events/: {found:?}");
    found
}

/// What greenlight's functions receive from EventBridge, S3 or an alarm (not the step
/// inputs, the pipe's stream batches, or the `DeploymentStateChanged` greenlight emits).
fn event_samples() -> Vec<Value> {
    samples()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("step-input") && !outbound_or_stream(name))
        .map(|(_, v)| v)
        .collect()
}

/// The pipe's stream batch sample and greenlight's own `DeploymentStateChanged`.
fn outbound_or_stream(name: &str) -> bool {
    name.starts_with("dynamodb-stream") || name.starts_with("deployment-state-changed")
}

fn stream_batch_samples() -> Vec<Value> {
    samples()
        .into_iter()
        .filter(|(name, _)| name.starts_with("dynamodb-stream"))
        .map(|(_, v)| v)
        .collect()
}

fn step_input_samples() -> Vec<Value> {
    samples()
        .into_iter()
        .filter(|(name, _)| name.starts_with("step-input"))
        .map(|(_, v)| v)
        .collect()
}

fn manifest_sample() -> Value {
    let text = std::fs::read_to_string(repo().join("events/manifests/checkout/v2.6.0.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn registration_sample() -> Value {
    let text = std::fs::read_to_string(repo().join("shared/fuzz/seeds/registration.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One family's cases: how many were accepted, rejected, and what went wrong.
struct Family {
    name: &'static str,
    seed: u64,
    started: Instant,
    accepted: usize,
    rejected: usize,
    failures: Vec<String>,
}

impl Family {
    fn new(name: &'static str, salt: u64) -> Family {
        Family {
            name,
            seed: seed() ^ salt.rotate_left(32),
            started: Instant::now(),
            accepted: 0,
            rejected: 0,
            failures: Vec::new(),
        }
    }

    /// The generator of case `i` (each case reproducible on its own).
    fn rng(&self, i: usize) -> Rng {
        let mut mix = Rng::from_state(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Rng::from_state(Entropy::next_u64(&mut mix))
    }

    /// Runs one check; `input` describes the case when it fails.
    fn check(&mut self, i: usize, input: impl Fn() -> String, check: impl FnOnce() -> Verdict) {
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(Ok(true)) => self.accepted += 1,
            Ok(Ok(false)) => self.rejected += 1,
            Ok(Err(violation)) => self.fail(i, &input(), violation),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.fail(i, &input(), format!("panicked: {message}"));
            }
        }
    }

    fn fail(&mut self, i: usize, input: &str, why: String) {
        if self.failures.len() < 20 {
            self.failures
                .push(format!("case {i} (seed {}): {why}\n    input: {input}", self.seed));
        } else {
            self.failures.push(String::new());
        }
    }

    /// Prints the counts; fails with the first violations, if any, or if the generator
    /// never reached one side (all accepted or all rejected means it tests nothing).
    fn finish(self, want_accepted: bool) {
        let total = self.accepted + self.rejected + self.failures.len();
        eprintln!(
            "{}: {total} cases in {:.2?}: {} accepted, {} rejected, {} violations",
            self.name,
            self.started.elapsed(),
            self.accepted,
            self.rejected,
            self.failures.len()
        );
        let shown: Vec<&String> = self.failures.iter().filter(|f| !f.is_empty()).collect();
        assert!(
            self.failures.is_empty(),
            "{}: {} of {total} cases broke a property:\n{}",
            self.name,
            self.failures.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
        assert!(self.rejected > 0, "{}: no case was rejected", self.name);
        if want_accepted {
            assert!(self.accepted > 0, "{}: no case was accepted", self.name);
        }
    }
}

fn shown(value: &Value) -> String {
    preview(&value.to_string())
}

#[test]
fn every_sample_satisfies_the_oracle_unmutated() {
    let mut family = Family::new("samples", 0);
    for (i, (name, sample)) in samples().into_iter().enumerate() {
        if name.starts_with("step-input") {
            let text = sample.to_string();
            family.check(i, || name.clone(), || oracle::step_input(serde_json::from_str(&text)));
        } else if name.starts_with("dynamodb-stream") {
            family.check(i, || name.clone(), || oracle::stream_batch(&sample));
        } else if name.starts_with("deployment-state-changed") {
            // greenlight's output: its detail reads as the type its consumers parse.
            let detail =
                serde_json::from_value::<greenlight_core::announce::DeploymentStateChanged>(sample["detail"].clone());
            assert!(detail.is_ok(), "{name}: {detail:?}");
        } else if name.starts_with("hook-payload") {
            // greenlight's output to a lifecycle hook: it reads as the documented payload.
            let payload = serde_json::from_value::<greenlight_core::hook::Payload>(sample.clone());
            assert!(payload.is_ok(), "{name}: {payload:?}");
        } else if name.starts_with("scheduled-") {
            // The reconcile's schedule: not an inbound event of start-deployment's parser.
            let run = greenlight_core::inbound::parse_scheduled(&sample);
            assert!(run.is_ok(), "{name}: {run:?}");
        } else {
            family.check(i, || name.clone(), || oracle::inbound_event(&sample, MANIFEST_PREFIX));
        }
    }
    let body = manifest_sample().to_string();
    family.check(
        100,
        || "manifest".into(),
        || oracle::manifest_body(body.as_bytes(), "checkout", "v2.6.0"),
    );
    let registration = registration_sample().to_string();
    family.check(101, || "registration".into(), || oracle::registration(&registration));
    assert_eq!(
        family.rejected, 2,
        "only s3-manifest-path-escape.json and s3-notification-path-escape.json are rejected"
    );
    family.finish(true);
}

#[test]
fn inbound_events_mutated_structurally() {
    let donors = event_samples();
    let mut family = Family::new("inbound::parse (mutated samples)", 1);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let mut event = mutate::pick(&mut e, &donors).clone();
        for _ in 0..1 + e.below(4) {
            mutate::mutate(&mut e, &mut event, &donors);
        }
        let prefix = *mutate::pick(&mut e, &[MANIFEST_PREFIX, MANIFEST_PREFIX, "a/b/", "releases"]);
        family.check(
            i,
            || format!("{} under {prefix:?}", shown(&event)),
            || oracle::inbound_event(&event, prefix),
        );
    }
    family.finish(true);
}

#[test]
fn manifest_keys_never_leave_the_prefix() {
    let s3 = event_samples()
        .into_iter()
        .find(|e| e["source"] == "aws.s3" && e["detail"]["object"]["key"] == "releases/checkout/v2.6.0.json")
        .expect("the S3 sample");
    let mut family = Family::new("parse_manifest_key and S3 Object Created", 2);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let key = mutate::manifest_key(&mut e);
        let prefix = *mutate::pick(&mut e, &[MANIFEST_PREFIX, "a/b/", "releases"]);
        family.check(
            i,
            || format!("{key:?} under {prefix:?}"),
            || oracle::manifest_key(&key, prefix),
        );
        let mut event = s3.clone();
        event["detail"]["object"]["key"] = Value::String(key.clone());
        family.check(
            i,
            || format!("S3 event with key {key:?}"),
            || oracle::inbound_event(&event, MANIFEST_PREFIX),
        );
    }
    family.finish(true);
}

#[test]
fn s3_notification_keys_are_decoded_then_held_to_the_same_prefix() {
    let mut family = Family::new("S3 event notification keys (form-encoded)", 8);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let key = mutate::manifest_key(&mut e);
        let encoded = mutate::form_encode(&mut e, &key);
        let prefix = *mutate::pick(&mut e, &[MANIFEST_PREFIX, MANIFEST_PREFIX, "a/b/", "releases"]);
        family.check(
            i,
            || format!("{encoded:?} (from {key:?}) under {prefix:?}"),
            || oracle::s3_notification_key(&encoded, prefix),
        );
    }
    family.finish(true);
}

#[test]
fn ami_tags_mutated() {
    let valid = [("greenlight:service", "checkout"), ("greenlight:version", "v2.7.0")];
    let mut family = Family::new("ami_request (AMI tags)", 9);
    for i in 0..cases(5_000) {
        let mut e = family.rng(i);
        let mut tags = std::collections::BTreeMap::new();
        for (key, value) in valid {
            if e.one_in(6) {
                continue;
            }
            let key = if e.one_in(8) {
                mutate::mutate_string(&mut e, key)
            } else {
                key.to_string()
            };
            let value = match e.below(4) {
                0 => mutate::mutate_string(&mut e, value),
                1 => mutate::hostile_string(&mut e),
                _ => value.to_string(),
            };
            tags.insert(key, value);
        }
        let ami = if e.one_in(5) {
            mutate::hostile_string(&mut e)
        } else {
            "ami-0123456789abcdef0".to_string()
        };
        family.check(i, || format!("{ami:?} {tags:?}"), || oracle::ami_tags(&ami, &tags));
    }
    family.finish(true);
}

#[test]
fn manifest_bodies_mutated() {
    let sample = manifest_sample();
    let donors = vec![sample.clone(), registration_sample()];
    let mut family = Family::new("parse_manifest", 3);
    for i in 0..cases(5000) {
        let mut e = family.rng(i);
        let mut body = sample.clone();
        for _ in 0..e.below(4) {
            mutate::mutate(&mut e, &mut body, &donors);
        }
        let mut bytes = body.to_string().into_bytes();
        if e.one_in(4) {
            mutate::mutate_bytes(&mut e, &mut bytes);
        }
        let (service, version) = *mutate::pick(&mut e, &[("checkout", "v2.6.0"), ("a-b-1", "2.0.0-rc.1")]);
        family.check(
            i,
            || preview(&String::from_utf8_lossy(&bytes)),
            || oracle::manifest_body(&bytes, service, version),
        );
    }
    family.finish(true);
}

#[test]
fn stream_batches_mutated() {
    let donors = stream_batch_samples();
    assert!(!donors.is_empty(), "events/dynamodb-stream-*.json");
    let mut family = Family::new("announce::enrich (mutated stream batches)", 9);
    for i in 0..cases(3000) {
        let mut e = family.rng(i);
        let mut batch = mutate::pick(&mut e, &donors).clone();
        for _ in 0..e.below(4) {
            mutate::mutate(&mut e, &mut batch, &donors);
        }
        family.check(i, || shown(&batch), || oracle::stream_batch(&batch));
    }
    family.finish(true);
}

#[test]
fn step_inputs_mutated() {
    let donors = step_input_samples();
    let mut family = Family::new("StepInput + check_service + DeployId::parse", 4);
    for i in 0..cases(5000) {
        let mut e = family.rng(i);
        let mut input = mutate::pick(&mut e, &donors).clone();
        for _ in 0..e.below(4) {
            mutate::mutate(&mut e, &mut input, &donors);
        }
        let mut bytes = input.to_string().into_bytes();
        if e.one_in(5) {
            mutate::mutate_bytes(&mut e, &mut bytes);
        }
        family.check(
            i,
            || preview(&String::from_utf8_lossy(&bytes)),
            || oracle::step_input(serde_json::from_slice::<StepInput>(&bytes)),
        );
    }
    family.finish(true);
}

#[test]
fn registrations_mutated() {
    let sample = registration_sample();
    let donors = vec![sample.clone()];
    let mut family = Family::new("ServiceConfig::from_json", 5);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let mut config = sample.clone();
        for _ in 0..e.below(3) {
            mutate::mutate(&mut e, &mut config, &donors);
        }
        let text = config.to_string();
        family.check(i, || preview(&text), || oracle::registration(&text));
    }
    family.finish(true);
}

#[test]
fn names_times_and_arns_from_hostile_strings() {
    let valid = [
        "checkout",
        "ami-0a1b2c3d4e5f60718",
        "ami-12345678",
        "v2.4.0",
        "2.0.0-rc.1",
        "d-3b9f2c41a7e05d6c8e12",
        "2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.250+00:00",
        "arn:aws:imagebuilder:us-east-1:123456789012:image/checkout/2.5.0/1",
        "releases/checkout/v2.6.0.json",
    ];
    let mut family = Family::new("names, times, ARNs, keys", 6);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let text = if e.one_in(2) {
            let base = mutate::pick(&mut e, &valid).to_string();
            (0..e.below(3)).fold(base, |s, _| mutate::mutate_string(&mut e, &s))
        } else {
            mutate::hostile_string(&mut e)
        };
        family.check(i, || preview(&text), || oracle::names(&text));
    }
    for (i, text) in valid.iter().enumerate() {
        family.check(10_000 + i, || text.to_string(), || oracle::names(text));
    }
    family.finish(true);
}

#[test]
fn random_bytes_everywhere() {
    let texts: Vec<Vec<u8>> = samples()
        .into_iter()
        .map(|(_, v)| v)
        .chain([manifest_sample(), registration_sample()])
        .map(|v| serde_json::to_vec_pretty(&v).unwrap())
        .collect();
    let mut family = Family::new("random and mutated bytes", 7);
    for i in 0..cases(10_000) {
        let mut e = family.rng(i);
        let bytes = if e.one_in(3) {
            mutate::random_bytes(&mut e)
        } else {
            let mut bytes = mutate::pick(&mut e, &texts).clone();
            for _ in 0..1 + e.below(6) {
                mutate::mutate_bytes(&mut e, &mut bytes);
            }
            bytes
        };
        let shown = || preview(&String::from_utf8_lossy(&bytes));
        if let Ok(event) = serde_json::from_slice::<Value>(&bytes) {
            family.check(i, shown, || oracle::inbound_event(&event, MANIFEST_PREFIX));
            family.check(i, shown, || oracle::stream_batch(&event));
        }
        family.check(i, shown, || oracle::manifest_body(&bytes, "checkout", "v2.6.0"));
        family.check(i, shown, || oracle::step_input(serde_json::from_slice(&bytes)));
        if let Ok(text) = std::str::from_utf8(&bytes) {
            family.check(i, shown, || oracle::registration(text));
        }
    }
    family.finish(true);
}
