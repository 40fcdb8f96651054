//! Fuzzes the Partner Center webhook event parser with arbitrary bodies (see
//! `webhook_formats::fuzzing::partner_center_event` for the invariants checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = webhook_formats::fuzzing::partner_center_event(data);
});
