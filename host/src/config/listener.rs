//! The limits both HTTP listeners (`[webhooks]`, `[admin]`) put on their clients: timeouts
//! for a request's head, its body and the whole request, and caps on open connections and
//! requests in flight. Each section has the same five keys with its own defaults; this module
//! turns them into [`ListenerLimits`] and refuses values that would disable a limit.

use anyhow::{Result, bail};
use std::time::Duration;

/// How much a listener's clients may hold, and for how long (see `listener::http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a connection may take to send a request's head (and may stay idle between
    /// requests) before it is closed.
    pub header_read_timeout: Duration,
    /// How long a request body may send nothing before reading it fails.
    pub body_timeout: Duration,
    /// How long a request may take, from its head to its answer, before it is answered 503.
    pub request_timeout: Duration,
    /// Open connections at most; further ones wait to be accepted.
    pub max_connections: usize,
    /// Requests handled at once at most; the others are answered 503 at once.
    pub max_in_flight: usize,
}

/// The five keys of a listener's section, as written.
pub(crate) struct ListenerKeys {
    pub header_read_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_connections: usize,
    pub max_in_flight: usize,
}

impl ListenerKeys {
    /// The limits of section `section` (named in errors); every value must be at least 1,
    /// since 0 would either refuse everything or, for a timeout, mean none.
    pub(crate) fn limits(&self, section: &str) -> Result<ListenerLimits> {
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_in_flight", self.max_in_flight as u64),
        ] {
            if value == 0 {
                bail!(
                    "{section}.{key} = 0 would disable the limit; set at least 1 (or remove the key for the default)"
                );
            }
        }
        if self.max_connections > u32::MAX as usize {
            bail!("{section}.max_connections is larger than 4294967295; set a smaller cap");
        }
        Ok(ListenerLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ListenerKeys {
        ListenerKeys {
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 4096,
            max_in_flight: 512,
        }
    }

    #[test]
    fn a_zero_limit_is_refused_with_the_key_that_holds_it() {
        assert_eq!(
            keys().limits("webhooks").unwrap().header_read_timeout,
            Duration::from_secs(10)
        );
        let zero = ListenerKeys {
            max_in_flight: 0,
            ..keys()
        };
        let err = zero.limits("webhooks").unwrap_err().to_string();
        assert!(err.contains("webhooks.max_in_flight = 0"), "{err}");
        let zero = ListenerKeys {
            body_timeout_ms: 0,
            ..keys()
        };
        let err = zero.limits("admin").unwrap_err().to_string();
        assert!(err.contains("admin.body_timeout_ms = 0"), "{err}");
    }
}
