//! Fuzzes the signature verifier with whole deliveries: header lines, the certificate the URL
//! would serve, and the body (layout and invariants: `webhook_formats::fuzzing::signature`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = webhook_formats::fuzzing::signature(data);
});
