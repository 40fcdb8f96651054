//! Console sessions: sign-in with the admin token gives a session cookie; the session lives in
//! this replica's memory and ends on sign-out, after `[admin] session_idle_secs` without a
//! request, or `session_max_secs` after sign-in, whichever comes first.
//!
//! The cookie carries 32 random bytes; the host keeps only their SHA-256, so a memory dump
//! or a log line of the table gives nobody a usable cookie. Each session has its own CSRF
//! token ([`super::csrf`]). Failed sign-ins are throttled for the whole console (not per
//! address: behind a proxy every browser has the proxy's address).

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "cosell_session";

/// At most this many failed sign-ins in [`FAILURE_WINDOW`]; then every sign-in is refused until
/// the oldest failure leaves the window.
pub const MAX_FAILURES: usize = 5;
/// See [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The most sessions kept at once; signing in beyond it ends the least recently used one, so
/// repeated sign-ins cannot grow the table without bound.
const MAX_SESSIONS: usize = 256;

/// How the console's sessions are kept (from `[admin]`).
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// How long a session lasts without a request (`[admin] session_idle_secs`).
    pub idle: Duration,
    /// How long a session lasts after sign-in, however busy (`[admin] session_max_secs`).
    pub max: Duration,
    /// Add `Secure` to the cookie (the listener is behind TLS).
    pub secure: bool,
}

/// A signed-in browser's session, as the handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every form of this session carries (`_csrf`).
    pub csrf: Arc<str>,
}

struct Entry {
    csrf: Arc<str>,
    created: Instant,
    last_seen: Instant,
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<[u8; 32], Entry>,
    failures: VecDeque<Instant>,
}

/// The sessions of this console.
pub struct Sessions {
    settings: SessionSettings,
    random: SystemRandom,
    table: Mutex<Table>,
}

fn hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// An empty table of sessions kept as `settings` say.
    pub fn new(settings: SessionSettings) -> Self {
        Self {
            settings,
            random: SystemRandom::new(),
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// 32 random bytes, base64url.
    fn token(&self) -> String {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .expect("the system's random source works");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Starts a session; answers the cookie value (to send once, never kept) and the session.
    pub fn start(&self) -> (String, Session) {
        let cookie = self.token();
        let csrf: Arc<str> = self.token().into();
        let now = Instant::now();
        let mut table = self.table();
        self.expire(&mut table, now);
        if table.by_hash.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .by_hash
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k)
        {
            table.by_hash.remove(&oldest);
        }
        table.by_hash.insert(
            hash(&cookie),
            Entry {
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        (cookie, Session { csrf })
    }

    /// The live session of `cookie`, marked as just used; `None` if it is unknown, signed
    /// out or expired (an expired one is forgotten).
    pub fn find(&self, cookie: &str) -> Option<Session> {
        let now = Instant::now();
        let mut table = self.table();
        self.expire(&mut table, now);
        let entry = table.by_hash.get_mut(&hash(cookie))?;
        entry.last_seen = now;
        Some(Session {
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends the session of `cookie` (sign-out): the cookie is worthless from now on, even if
    /// the browser keeps it.
    pub fn end(&self, cookie: &str) {
        self.table().by_hash.remove(&hash(cookie));
    }

    fn expire(&self, table: &mut Table, now: Instant) {
        let SessionSettings { idle, max, .. } = self.settings;
        table.by_hash.retain(|_, e| {
            now.duration_since(e.last_seen) < idle && now.duration_since(e.created) < max
        });
    }

    /// Whether a sign-in may be tried now (fewer than [`MAX_FAILURES`] failures in the
    /// last [`FAILURE_WINDOW`]).
    pub fn sign_in_allowed(&self) -> bool {
        let now = Instant::now();
        let mut table = self.table();
        while table
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            table.failures.pop_front();
        }
        table.failures.len() < MAX_FAILURES
    }

    /// Counts a failed sign-in.
    pub fn failed_sign_in(&self) {
        let mut table = self.table();
        table.failures.push_back(Instant::now());
        if table.failures.len() > MAX_FAILURES {
            table.failures.pop_front();
        }
    }

    /// The `Set-Cookie` value that gives the browser `cookie`.
    pub fn set_cookie(&self, cookie: &str) -> String {
        format!(
            "{COOKIE}={cookie}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.settings.max.as_secs(),
            self.secure_attribute()
        )
    }

    /// The `Set-Cookie` value that makes the browser drop its cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{}",
            self.secure_attribute()
        )
    }

    fn secure_attribute(&self) -> &'static str {
        if self.settings.secure { "; Secure" } else { "" }
    }
}

/// The value of cookie [`COOKIE`] in a `Cookie` request header, if any.
pub fn cookie_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: u64, max: u64) -> Sessions {
        Sessions::new(SessionSettings {
            idle: Duration::from_millis(idle),
            max: Duration::from_millis(max),
            secure: false,
        })
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_is_ended() {
        let sessions = sessions(60_000, 60_000);
        let (cookie, session) = sessions.start();
        assert_eq!(sessions.find(&cookie).unwrap().csrf, session.csrf);
        assert!(sessions.find("someone-elses").is_none());
        sessions.end(&cookie);
        assert!(sessions.find(&cookie).is_none());
    }

    #[test]
    fn an_idle_session_expires() {
        let sessions = sessions(1, 60_000);
        let (cookie, _) = sessions.start();
        std::thread::sleep(Duration::from_millis(5));
        assert!(sessions.find(&cookie).is_none());
    }

    #[test]
    fn failed_sign_ins_are_throttled() {
        let sessions = sessions(60_000, 60_000);
        for _ in 0..MAX_FAILURES {
            assert!(sessions.sign_in_allowed());
            sessions.failed_sign_in();
        }
        assert!(!sessions.sign_in_allowed());
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; cosell_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_of(&headers).as_deref(), Some("abc"));
    }
}
