//! greenlight-fuzz: libFuzzer targets for greenlight-core's parsers (`fuzz_targets/`), one
//! per family of input greenlight reads from outside:
//!
//! - `inbound_event`: any bytes as an event of any shape (`inbound::parse`), and as text to
//!   the name, form-decoding, time, Image Builder ARN and manifest-key parsers;
//! - `inbound_structured`: the samples in `events/`, mutated structurally with the fuzzer's
//!   bytes choosing the mutations ([`mutate`]), and form-encoded S3 notification keys;
//! - `manifest`: a manifest key and body (`parse_manifest_key`, `parse_manifest`);
//! - `step_input`: a step function's input (`StepInput`, `check_service`, `DeployId::parse`);
//! - `registration`: a service registration (`ServiceConfig::from_json`).
//!
//! Every target checks the same [`oracle`] as the stable property test
//! (`shared/core/tests/parsers.rs`): no panic, readable rejections, valid acceptances.

pub mod mutate;
pub mod oracle;

use serde_json::Value;
use std::sync::OnceLock;

/// Fails the fuzz case on a violation of the oracle.
pub fn check(verdict: oracle::Verdict) {
    if let Err(violation) = verdict {
        panic!("{violation}");
    }
}

/// The event samples in `events/` (read once; step inputs excluded).
pub fn event_samples() -> &'static [Value] {
    static SAMPLES: OnceLock<Vec<Value>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| {
                !p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .starts_with("step-input")
            })
            .collect();
        files.sort();
        let samples: Vec<Value> = files
            .iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect();
        assert!(!samples.is_empty(), "no event samples in {}", dir.display());
        samples
    })
}
