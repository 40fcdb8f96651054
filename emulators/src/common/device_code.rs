//! The OAuth 2.0 device authorization grant (RFC 8628) as Microsoft Entra ID runs it: a user's
//! first sign-in from a command line, finished in a browser on another device (emulated).
//!
//! `POST /{tenant}/oauth2/v2.0/devicecode` (form: `client_id`, `scope`) answers `device_code`,
//! `user_code`, `verification_uri`, `expires_in` (900 s), `interval` (5 s by default) and a
//! `message` for the user. The client then polls the token endpoint with
//! `grant_type=urn:ietf:params:oauth:grant-type:device_code`, `client_id` and `device_code`;
//! the tokens are for the scope the sign-in asked for (the poll need not repeat it). The
//! answers (400, Entra's `{"error", "error_description"}`) are:
//!
//! - `authorization_pending`: nobody has signed in yet;
//! - `slow_down`: the poll came sooner than `interval` after the code was issued or after the
//!   previous poll; the required interval then grows by 5 s (RFC 8628 §3.5);
//! - `expired_token`: `expires_in` of emulated time has passed;
//! - `access_denied`: the user declined;
//! - `bad_verification_code`: the code is unknown, or belongs to another client.
//!
//! Once signed in, the first poll gets the tokens and the code is spent (later polls:
//! `bad_verification_code`, as Entra ID answers a redeemed code).
//!
//! Where the browser would be, the emulator has control endpoints (see the Partner Center
//! emulator): list the pending codes, approve one as a named user, or deny it. Choices where
//! Entra ID's behaviour is not documented: `slow_down` is enforced from the issue of the code
//! too (not only between polls), and the interval is measured in real time (the emulated clock
//! only moves expiry), so a test need not sleep through emulated minutes.

use super::clock::EmulatedClock;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a device code lives (Entra ID: 15 minutes).
pub const DEVICE_CODE_LIFETIME_SECS: i64 = 900;

/// Where the user is sent to sign in (Entra ID's address; nothing listens there here).
pub const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";

/// The answer of the device authorization endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: i64,
    pub interval: u64,
    pub message: String,
}

/// A sign-in waiting for its user, as the control endpoint lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingSignIn {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pending,
    Approved(String),
    Denied,
}

#[derive(Debug)]
struct Flow {
    user_code: String,
    client_id: String,
    scope: String,
    expires_at: DateTime<Utc>,
    interval: Duration,
    /// The earliest moment the next poll is welcome.
    next_poll: Instant,
    outcome: Outcome,
}

/// What a token-endpoint poll gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// Signed in as this user (the first value), for the scope the sign-in asked for (the
    /// second): mint the tokens.
    Approved(String, String),
    /// Not (yet): the OAuth error code and its description.
    Refused(&'static str, String),
}

/// The device-code sign-ins of one issuer.
#[derive(Debug, Clone)]
pub struct DeviceCodes {
    clock: EmulatedClock,
    interval: Arc<Mutex<Duration>>,
    /// device code → flow.
    flows: Arc<Mutex<HashMap<String, Flow>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A user code as Entra ID shows them: 9 letters and digits, unambiguous ones only.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..9]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl DeviceCodes {
    /// No sign-ins yet; the polling interval is 5 s until [`DeviceCodes::set_interval`].
    pub fn new(clock: EmulatedClock) -> Self {
        Self {
            clock,
            interval: Arc::new(Mutex::new(Duration::from_secs(5))),
            flows: Default::default(),
        }
    }

    /// The `interval` new codes are issued with (whole seconds, at least 1).
    pub fn set_interval(&self, interval: Duration) {
        *lock(&self.interval) = Duration::from_secs(interval.as_secs().max(1));
    }

    /// Starts a sign-in for `client_id` asking for `scope`.
    pub fn start(&self, client_id: &str, scope: &str) -> DeviceAuthorization {
        let interval = *lock(&self.interval);
        let device_code = format!("dc-{}", uuid::Uuid::new_v4().simple());
        let user_code = user_code();
        lock(&self.flows).insert(
            device_code.clone(),
            Flow {
                user_code: user_code.clone(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                expires_at: self.clock.now() + chrono::Duration::seconds(DEVICE_CODE_LIFETIME_SECS),
                interval,
                next_poll: Instant::now() + interval,
                outcome: Outcome::Pending,
            },
        );
        DeviceAuthorization {
            message: format!(
                "To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the \
                 code {user_code} to authenticate."
            ),
            device_code,
            user_code,
            verification_uri: VERIFICATION_URI.into(),
            expires_in: DEVICE_CODE_LIFETIME_SECS,
            interval: interval.as_secs(),
        }
    }

    /// The sign-ins waiting for their user (not expired, not decided).
    pub fn pending(&self) -> Vec<PendingSignIn> {
        let now = self.clock.now();
        lock(&self.flows)
            .values()
            .filter(|f| f.outcome == Outcome::Pending && f.expires_at > now)
            .map(|f| PendingSignIn {
                user_code: f.user_code.clone(),
                client_id: f.client_id.clone(),
                scope: f.scope.clone(),
                expires_at: f.expires_at,
            })
            .collect()
    }

    fn decide(&self, user_code: &str, outcome: Outcome) -> bool {
        let now = self.clock.now();
        lock(&self.flows)
            .values_mut()
            .find(|f| {
                f.user_code.eq_ignore_ascii_case(user_code)
                    && f.outcome == Outcome::Pending
                    && f.expires_at > now
            })
            .map(|f| f.outcome = outcome)
            .is_some()
    }

    /// The user `user` signs in with `user_code` (what the browser page does); false when no
    /// pending, unexpired sign-in has that code.
    pub fn approve(&self, user_code: &str, user: &str) -> bool {
        self.decide(user_code, Outcome::Approved(user.to_owned()))
    }

    /// The user declines the sign-in with `user_code`; false when none is pending.
    pub fn deny(&self, user_code: &str) -> bool {
        self.decide(user_code, Outcome::Denied)
    }

    /// One poll of the token endpoint.
    pub fn poll(&self, client_id: &str, device_code: &str) -> Poll {
        let mut flows = lock(&self.flows);
        let Some(flow) = flows
            .get_mut(device_code)
            .filter(|f| f.client_id == client_id)
        else {
            return Poll::Refused(
                "bad_verification_code",
                "AADSTS70019: Verification code is not valid (unknown, spent, or issued to another client).".into(),
            );
        };
        if flow.expires_at <= self.clock.now() {
            return Poll::Refused(
                "expired_token",
                "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.".into(),
            );
        }
        let now = Instant::now();
        if now < flow.next_poll {
            flow.interval += Duration::from_secs(5);
            flow.next_poll = now + flow.interval;
            return Poll::Refused(
                "slow_down",
                format!(
                    "AADSTS70021: Polling too fast; wait {} seconds between polls.",
                    flow.interval.as_secs()
                ),
            );
        }
        flow.next_poll = now + flow.interval;
        match flow.outcome.clone() {
            Outcome::Pending => Poll::Refused(
                "authorization_pending",
                "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.".into(),
            ),
            Outcome::Denied => {
                flows.remove(device_code);
                Poll::Refused(
                    "access_denied",
                    "AADSTS70000: The user declined the sign-in.".into(),
                )
            }
            Outcome::Approved(user) => {
                let flow = flows.remove(device_code).expect("found above");
                Poll::Approved(user, flow.scope)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(poll: Poll) -> &'static str {
        match poll {
            Poll::Refused(code, _) => code,
            Poll::Approved(u, _) => panic!("approved as {u}"),
        }
    }

    #[test]
    fn a_sign_in_is_pending_until_approved_then_spent() {
        let codes = DeviceCodes::new(EmulatedClock::new());
        codes.set_interval(Duration::from_secs(1));
        let auth = codes.start("app", "https://api.partner.microsoft.com/.default");
        // Too early: slow down, and the interval grows.
        assert_eq!(refused(codes.poll("app", &auth.device_code)), "slow_down");
        assert_eq!(codes.pending().len(), 1);
        assert!(codes.approve(&auth.user_code, "alice@contoso.example"));
        // Force the next poll to be welcome.
        for flow in lock(&codes.flows).values_mut() {
            flow.next_poll = Instant::now();
        }
        assert_eq!(
            refused(codes.poll("other-app", &auth.device_code)),
            "bad_verification_code"
        );
        for flow in lock(&codes.flows).values_mut() {
            flow.next_poll = Instant::now();
        }
        assert_eq!(
            codes.poll("app", &auth.device_code),
            Poll::Approved(
                "alice@contoso.example".into(),
                "https://api.partner.microsoft.com/.default".into()
            )
        );
        assert_eq!(
            refused(codes.poll("app", &auth.device_code)),
            "bad_verification_code"
        );
    }

    #[test]
    fn codes_expire_and_can_be_denied() {
        let clock = EmulatedClock::new();
        let codes = DeviceCodes::new(clock.clone());
        let denied = codes.start("app", "s");
        let expired = codes.start("app", "s");
        assert!(codes.deny(&denied.user_code));
        for flow in lock(&codes.flows).values_mut() {
            flow.next_poll = Instant::now();
        }
        assert_eq!(
            refused(codes.poll("app", &denied.device_code)),
            "access_denied"
        );
        clock.advance(chrono::Duration::seconds(DEVICE_CODE_LIFETIME_SECS + 1));
        assert_eq!(
            refused(codes.poll("app", &expired.device_code)),
            "expired_token"
        );
        assert!(!codes.approve(&expired.user_code, "late@contoso.example"));
    }
}
