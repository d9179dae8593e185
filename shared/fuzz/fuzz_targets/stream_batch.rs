//! The deployment events pipe's enrichment: any JSON as a batch of ledger stream records
//! into `announce::enrich`, which must reject it readably or announce only events of its
//! own records that read back as themselves.

#![no_main]

use greenlight_fuzz::{check, oracle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = serde_json::from_slice::<serde_json::Value>(data) {
        check(oracle::stream_batch(&batch));
    }
});
