//! A service registration document: `ServiceConfig::from_json` (parse, then `validate`).

#![no_main]

use greenlight_fuzz::{check, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(oracle::registration(text));
    }
});
