//! Each readiness reason appears when its input goes wrong and clears when it recovers.

use super::*;

fn health(leader: bool) -> (Arc<Health>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(leader);
    (Health::new(Arc::new(Metrics::new()), rx), tx)
}

/// A host whose store was just written: ready.
fn ready_host(leader: bool, now: Instant) -> (Arc<Health>, watch::Sender<bool>) {
    let (h, tx) = health(leader);
    h.store_checked_at(Ok(()), now);
    assert_eq!(h.readiness_at(now).reasons, Vec::<String>::new());
    (h, tx)
}

fn reasons(h: &Health, now: Instant) -> String {
    let r = h.readiness_at(now);
    assert_eq!(r.ready, r.reasons.is_empty());
    r.reasons.join("\n")
}

#[test]
fn the_store_must_have_been_written_recently_and_without_error() {
    let now = Instant::now();
    let (h, _) = health(false);
    assert!(reasons(&h, now).contains("store: not checked yet"));
    h.store_checked_at(Ok(()), now);
    assert!(h.readiness_at(now).ready);
    h.store_checked_at(Err("disk I/O error".into()), now);
    let text = reasons(&h, now);
    assert!(
        text.contains("store: not writable: disk I/O error"),
        "{text}"
    );
    h.store_checked_at(Ok(()), now);
    assert!(h.readiness_at(now).ready);
    // A check hanging on a lock never fails: the last success grows old.
    let later = now + STORE_STALE_AFTER + Duration::from_secs(1);
    let text = reasons(&h, later);
    assert!(
        text.contains("store: no write succeeded for 16 s"),
        "{text}"
    );
    h.store_checked_at(Ok(()), later);
    assert!(h.readiness_at(later).ready);
}

#[test]
fn a_failed_token_request_is_a_reason_until_the_next_success() {
    let now = Instant::now();
    let (h, _) = ready_host(false, now);
    h.token(
        "dataverse",
        Err("the token endpoint refused it (401): invalid_client"),
    );
    let text = reasons(&h, now);
    assert!(
        text.contains("dataverse: cannot get an access token: the token endpoint refused it"),
        "{text}"
    );
    assert!(
        h.metrics
            .encode()
            .contains(r#"cosell_token_refresh_failures_total{service="dataverse"} 1"#)
    );
    h.token("partner-center", Ok(()));
    assert!(
        !h.readiness_at(now).ready,
        "another service's success clears nothing"
    );
    h.token("dataverse", Ok(()));
    assert!(h.readiness_at(now).ready);
}

#[test]
fn a_poller_is_late_after_three_intervals_and_a_minute_on_the_leader_only() {
    let now = Instant::now();
    let interval = Duration::from_secs(60);
    assert_eq!(poller_stale_after(interval), Duration::from_secs(240));
    let (h, leader) = ready_host(true, now);
    h.poller_started_at("dataverse-changes", interval, now);
    // Just started, then silent up to the threshold: still fresh; past it: late.
    let at_threshold = now + Duration::from_secs(240);
    h.store_checked_at(Ok(()), at_threshold);
    assert!(h.readiness_at(at_threshold).ready);
    let late = now + Duration::from_secs(241);
    h.store_checked_at(Ok(()), late);
    let text = reasons(&h, late);
    assert!(
        text.contains("poller dataverse-changes: no successful round for 241 s (threshold 240 s"),
        "{text}"
    );
    // A follower does not poll: nothing to be late for.
    leader.send_replace(false);
    assert!(h.readiness_at(late).ready);
    leader.send_replace(true);
    assert!(!h.readiness_at(late).ready);
    h.poller_succeeded_at("dataverse-changes", late);
    assert!(h.readiness_at(late).ready);
    // A stopped poller (leadership lost) no longer counts.
    let much_later = late + Duration::from_secs(1000);
    h.store_checked_at(Ok(()), much_later);
    assert!(!h.readiness_at(much_later).ready);
    h.poller_stopped("dataverse-changes");
    assert!(h.readiness_at(much_later).ready);
}

#[test]
fn a_stopped_webhook_listener_is_a_reason() {
    let now = Instant::now();
    let (h, _) = ready_host(false, now);
    let serving = Arc::new(AtomicBool::new(true));
    h.watch_webhook_listener(serving.clone());
    assert!(h.readiness_at(now).ready);
    serving.store(false, Ordering::Relaxed);
    assert!(reasons(&h, now).contains("webhook listener: not serving"));
    serving.store(true, Ordering::Relaxed);
    assert!(h.readiness_at(now).ready);
}

#[test]
fn a_paused_side_is_a_reason_while_it_is_paused() {
    let now = Instant::now();
    let (h, _) = ready_host(false, now);
    let paused = Arc::new(AtomicBool::new(false));
    let read = paused.clone();
    h.watch_pauses(Box::new(move || {
        vec![
            ("partner-center", false),
            ("dataverse", read.load(Ordering::Relaxed)),
        ]
    }));
    assert!(h.readiness_at(now).ready);
    paused.store(true, Ordering::Relaxed);
    let text = reasons(&h, now);
    assert!(text.starts_with("dataverse: paused"), "{text}");
    assert!(!text.contains("partner-center"), "{text}");
    paused.store(false, Ordering::Relaxed);
    assert!(h.readiness_at(now).ready);
}

#[test]
fn every_reason_is_listed_at_once() {
    let now = Instant::now();
    let (h, _) = health(true);
    h.store_checked_at(Err("database is locked".into()), now);
    h.token("partner-center", Err("no answer from the token endpoint"));
    h.watch_webhook_listener(Arc::new(AtomicBool::new(false)));
    let r = h.readiness_at(now);
    assert!(!r.ready);
    assert_eq!(r.reasons.len(), 3, "{:?}", r.reasons);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(json["reasons"].as_array().unwrap().len(), 3);
}
