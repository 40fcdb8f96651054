//! Emulated time: the real clock plus an offset that tests and the control endpoint can
//! advance, so "14 days later" takes no time.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock shared by everything in one emulator. Cloning shares the offset.
#[derive(Debug, Clone, Default)]
pub struct EmulatedClock {
    offset_ms: Arc<AtomicI64>,
}

impl EmulatedClock {
    /// A clock reading real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// The emulated now.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves emulated time forward by `by` (never backward: a negative value is ignored).
    pub fn advance(&self, by: Duration) {
        let ms = by.num_milliseconds().max(0);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// How far emulated time is ahead of real time.
    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_for_every_clone() {
        let clock = EmulatedClock::new();
        let other = clock.clone();
        let before = clock.now();
        other.advance(Duration::days(14));
        assert!(clock.now() - before >= Duration::days(14));
        other.advance(Duration::days(-3));
        assert!(clock.offset() == Duration::days(14));
    }
}
