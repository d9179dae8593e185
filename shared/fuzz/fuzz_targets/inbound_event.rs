//! Any bytes as an EventBridge event (JSON, then `inbound::parse`), and as text to the name,
//! time, Image Builder ARN and manifest-key parsers.

#![no_main]

use greenlight_core::inbound::MANIFEST_PREFIX;
use greenlight_fuzz::{check, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        check(oracle::inbound_event(&event, MANIFEST_PREFIX));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check(oracle::names(text));
    }
});
