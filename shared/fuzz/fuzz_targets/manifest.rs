//! A release manifest: the whole input as a body (`parse_manifest` for a valid key's service
//! and version); and, when the input has a line break, its first line as an S3 key
//! (`parse_manifest_key`) and the rest as the body of the manifest that key names.

#![no_main]

use greenlight_core::inbound::{parse_manifest_key, MANIFEST_PREFIX};
use greenlight_fuzz::{check, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(oracle::manifest_body(data, "checkout", "v2.6.0"));
    let Some(newline) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (key, body) = (&data[..newline], &data[newline + 1..]);
    if let Ok(key) = std::str::from_utf8(key) {
        check(oracle::manifest_key(key, MANIFEST_PREFIX));
        if let Ok((service, version)) = parse_manifest_key(key, MANIFEST_PREFIX) {
            check(oracle::manifest_body(body, &service, &version));
        }
    }
});
