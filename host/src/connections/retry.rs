//! Retry policy shared by the clients: exponential backoff with jitter and `Retry-After`
//! (request ids are `crate::domain::ids`).

use rand::RngExt as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// The first backoff; each later one doubles, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The longest `Retry-After` honoured as given (longer ones are shortened to it).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How long to wait before retry number `attempt` (0-based): half of the exponential step plus
/// a random share of the other half, so clients that failed together do not retry together.
pub fn backoff(attempt: u32) -> Duration {
    let step = BASE_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_BACKOFF);
    let half = step / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

/// The wait a 429 or 503 asks for in `Retry-After` (seconds or an HTTP date), capped.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 0..30 {
            let wait = backoff(attempt);
            assert!(wait <= MAX_BACKOFF);
            let step = BASE_BACKOFF
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(MAX_BACKOFF);
            assert!(wait >= step / 2);
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }
}
