//! The opportunities this process is writing to Dataverse and has not yet recorded as synced.
//!
//! Dataverse sends its webhook as soon as a write commits, so the delivery of cosell's own
//! write (its echo) can reach the intake while the run that wrote is still between the
//! write's answer and the settle that records the new version in the link. Told apart at that
//! moment, it names a version the link does not hold yet and is queued: a durable commit, a
//! claim, a run and a settle, only for the run to find it was its own write.
//!
//! A run marks the opportunity before it writes and the mark lasts until its event's settle
//! has committed (the worker drops it with what the run left for the settle); the intake waits,
//! briefly and only for a marked opportunity, before it tells an echo from a change. A mark
//! that is never released costs a delivery at most [`WritesInFlight::settled`]'s wait, and a
//! delivery is never answered without being stored unless the link then names its version:
//! the wait delays the decision, it never changes it. In-process only: a write in flight on
//! another replica is not seen, and its echo is queued as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// The registry, shared by the engine (which marks) and the intake (which waits).
#[derive(Debug, Clone, Default)]
pub struct WritesInFlight {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Marks per opportunity id (two runs may write one opportunity: a retry beside a late
    /// run).
    marked: Mutex<HashMap<String, usize>>,
    /// Woken whenever a mark is released.
    released: Notify,
}

/// One run's mark on an opportunity it writes: released when dropped.
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<Inner>,
    opportunity_id: String,
}

impl WritesInFlight {
    /// Marks `opportunity_id` as being written until the answer is dropped.
    pub fn mark(&self, opportunity_id: &str) -> InFlight {
        *self
            .inner
            .marked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key(opportunity_id))
            .or_default() += 1;
        InFlight {
            inner: self.inner.clone(),
            opportunity_id: key(opportunity_id),
        }
    }

    /// Whether a run of this process is writing `opportunity_id`.
    pub fn is_marked(&self, opportunity_id: &str) -> bool {
        self.inner.is_marked(opportunity_id)
    }

    /// Waits until no run of this process is writing `opportunity_id`, for at most `within`;
    /// answers whether it got there (at once when it is not marked).
    pub async fn settled(&self, opportunity_id: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.inner.is_marked(opportunity_id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return !self.inner.is_marked(opportunity_id);
            }
        }
    }
}

impl Inner {
    fn is_marked(&self, opportunity_id: &str) -> bool {
        self.marked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&key(opportunity_id))
    }
}

/// A GUID's letters may come in either case (Dataverse answers lower case; a webhook or a
/// configuration may not): one key for both.
fn key(opportunity_id: &str) -> String {
    opportunity_id.to_ascii_lowercase()
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut marked = self
            .inner
            .marked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = marked.get_mut(&self.opportunity_id) {
            *count -= 1;
            if *count == 0 {
                marked.remove(&self.opportunity_id);
            }
        }
        drop(marked);
        self.inner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_unmarked_opportunity_is_settled_at_once() {
        let writes = WritesInFlight::default();
        let started = std::time::Instant::now();
        assert!(writes.settled("o1", WAIT).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_last_mark_on_the_opportunity_is_released() {
        let writes = WritesInFlight::default();
        let first = writes.mark("o1");
        let second = writes.mark("o1");
        let other = writes.mark("o2");
        let waiting = tokio::spawn({
            let writes = writes.clone();
            async move { writes.settled("o1", WAIT).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "one mark on o1 remains");
        drop(second);
        let started = std::time::Instant::now();
        assert!(waiting.await.unwrap(), "released, with o2 still marked");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(writes.is_marked("O2"), "ids are GUIDs: either case");
        drop(other);
        assert!(!writes.is_marked("o2"));
    }

    #[tokio::test]
    async fn a_mark_never_released_costs_the_wait_and_no_more() {
        let writes = WritesInFlight::default();
        let _held = writes.mark("o1");
        let started = std::time::Instant::now();
        assert!(!writes.settled("o1", Duration::from_millis(100)).await);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }
}
