//! A step function's input as `run_step` takes it: JSON into `StepInput`, then
//! `check_service` and `DeployId::parse` before anything reads the ledger.

#![no_main]

use greenlight_core::plan::StepInput;
use greenlight_fuzz::{check, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(oracle::step_input(serde_json::from_slice::<StepInput>(data)));
});
