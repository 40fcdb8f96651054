//! The queue as `cosell queue` lists it, on every backend: waiting and running events by
//! state, in the order they run, with attempts, backoff, claimer and last error; parked events
//! and dead letters are not listed.

use crate::store::testing::store_tests;
use crate::store::{NewEvent, QueueEntry, QueueFilter, Side};

/// A lease no test outlives.
const LEASE: i64 = 1 << 40;

fn event(id: &str) -> NewEvent {
    NewEvent {
        side: Side::PartnerCenter,
        record_id: id.into(),
        lock_key: format!("referral:{id}"),
        origin: "test".into(),
        payload: "{}".into(),
    }
}

/// `text` is the time `ms` (SQLite's date functions may be 1 ms off).
fn assert_near(text: &str, ms: i64, what: &str) {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what}: `{text}` is no RFC 3339 time: {e}"));
    assert!(
        (at.timestamp_millis() - ms).abs() <= 1,
        "{what}: {text}, not {ms}"
    );
}

fn records(entries: &[QueueEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.record_id.as_str()).collect()
}

store_tests! {
fn queued_events_are_listed_by_state_running_first_then_in_the_order_they_run(store) {
    store.claim_as("queue-lister").unwrap();
    for id in ["a", "b", "c", "d", "e"] {
        store.enqueue(&event(id)).unwrap();
    }
    let now = chrono::Utc::now().timestamp_millis();
    // a runs; b failed once and waits a minute for its retry; c and e wait for their turn;
    // d failed every attempt.
    let a = store.claim(now, LEASE).unwrap().unwrap();
    let b = store.claim(now, LEASE).unwrap().unwrap();
    store.retry_later(b.id, "Partner Center answered 429", now + 60_000).unwrap();
    let c = store.claim(now, LEASE).unwrap().unwrap();
    let d = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!((c.record_id.as_str(), d.record_id.as_str()), ("c", "d"));
    store.dead_letter(d.id, "gave up").unwrap();
    store.retry_later(c.id, "the first try failed", 0).unwrap();

    let running = store.queued_events(QueueFilter::Running, 10).unwrap();
    assert_eq!(records(&running), ["a"]);
    let a_entry = &running[0];
    assert_eq!((a_entry.id, a_entry.state.as_str(), a_entry.attempts), (a.id, "running", 1));
    assert_eq!(a_entry.side, Side::PartnerCenter);
    assert_eq!(a_entry.origin, "test");
    assert_eq!(a_entry.last_error, None);
    assert_near(&a_entry.available_at, now, "running: when its attempt started");
    let lease = a_entry.lease_until.as_deref().expect("a running event's lease");
    assert_near(lease, now + LEASE, "its lease");
    assert!(a_entry.received_at.ends_with('Z'), "{}", a_entry.received_at);
    match store.backend {
        // One host: nobody to name.
        Backend::Sqlite => assert_eq!(a_entry.claimed_by, None),
        Backend::Postgres => assert_eq!(a_entry.claimed_by.as_deref(), Some("queue-lister")),
    }

    // Pending in the order the workers take them: c (ready since 1970), e (ready now), then
    // b after its backoff, with its attempt and its error.
    let pending = store.queued_events(QueueFilter::Pending, 10).unwrap();
    assert_eq!(records(&pending), ["c", "e", "b"]);
    let b_entry = &pending[2];
    assert_eq!((b_entry.state.as_str(), b_entry.attempts), ("pending", 1));
    assert_eq!(b_entry.last_error.as_deref(), Some("Partner Center answered 429"));
    assert_eq!(b_entry.lease_until, None);
    assert_eq!(b_entry.claimed_by, None);
    assert_near(&b_entry.available_at, now + 60_000, "pending: when it may run");
    assert_eq!((pending[1].attempts, pending[1].last_error.as_deref()), (0, None));

    let all = store.queued_events(QueueFilter::All, 10).unwrap();
    assert_eq!(records(&all), ["a", "c", "e", "b"], "the dead letter d is not queued");
    assert_eq!(records(&store.queued_events(QueueFilter::All, 2).unwrap()), ["a", "c"]);
    assert_eq!(records(&store.queued_events(QueueFilter::Pending, 1).unwrap()), ["c"]);

    // A parked event waits for another version, not in the queue.
    let c = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!(c.record_id, "c");
    store.park(c.id, "step", "v1", "out of fuel").unwrap();
    assert_eq!(records(&store.queued_events(QueueFilter::All, 10).unwrap()), ["a", "e", "b"]);
    store.complete(a.id).unwrap();
    assert!(store.queued_events(QueueFilter::Running, 10).unwrap().is_empty());
}
}
