//! The samples in `events/`, mutated structurally (dropped fields, changed types, hostile
//! strings, grafts from other events, another event kind around the same detail), the
//! fuzzer's bytes choosing each mutation; then `inbound::parse`. Also S3 keys glued from
//! path tricks, inside an S3 Object Created event and, form-encoded, an S3 event
//! notification's record.

#![no_main]

use greenlight_core::inbound::MANIFEST_PREFIX;
use greenlight_fuzz::mutate::{self, ByteEntropy, Entropy};
use greenlight_fuzz::{check, event_samples, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let samples = event_samples();
    let mut e = ByteEntropy::new(data);
    let mut event = mutate::pick(&mut e, samples).clone();
    for _ in 0..1 + e.below(8) {
        if e.is_empty() {
            break;
        }
        mutate::mutate(&mut e, &mut event, samples);
    }
    check(oracle::inbound_event(&event, MANIFEST_PREFIX));

    let key = mutate::manifest_key(&mut e);
    check(oracle::manifest_key(&key, MANIFEST_PREFIX));
    let encoded = mutate::form_encode(&mut e, &key);
    check(oracle::s3_notification_key(&encoded, MANIFEST_PREFIX));
    if let Some(s3) = samples.iter().find(|s| s["source"] == "aws.s3") {
        let mut s3 = s3.clone();
        s3["detail"]["object"]["key"] = key.into();
        check(oracle::inbound_event(&s3, MANIFEST_PREFIX));
    }
});
