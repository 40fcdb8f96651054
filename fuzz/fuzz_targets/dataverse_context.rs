//! Fuzzes the Dataverse `RemoteExecutionContext` parser with arbitrary bodies (see
//! `webhook_formats::fuzzing::dataverse_context` for the invariants checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = webhook_formats::fuzzing::dataverse_context(data);
});
