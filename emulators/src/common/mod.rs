//! Pieces both emulators share.
//!
//! - [`clock`]: emulated time that tests can move forward (referral expiry, token expiry).
//! - [`faults`]: injected 5xx answers, latency, dropped connections, 429 storms, and webhook
//!   delivery drops, duplicates and reordering.
//! - [`tokens`]: OAuth bearer tokens with an expiry and an audience.
//! - [`device_code`]: the device-code sign-in (RFC 8628) behind the token endpoint.
//! - [`server`]: running an emulator on a loopback port and stopping it.
//! - [`tls`]: a self-signed certificate, for an emulator served over HTTPS.
//! - [`control`]: the `/_emulator/` endpoints that set faults and move the clock.
//! - [`odata`]: the `$filter` tokenizer and parser both services evaluate in their own way.

pub mod clock;
pub mod control;
pub mod device_code;
pub mod faults;
pub mod odata;
pub mod server;
pub mod tls;
pub mod tokens;
