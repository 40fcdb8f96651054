//! The event queue on every backend: order per record, coalescing, leases, retries, parking,
//! dead letters, group commit, and two stores (processes, replicas) sharing one database.

use crate::store::testing::{TestStore, store_tests};
use crate::store::{Enqueued, NewEvent, RECONCILE_ORIGIN, REPLAY_ORIGIN, Side};

/// A lease no test outlives, unless it means to.
const LEASE: i64 = 1 << 60;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(key: &str, id: &str) -> NewEvent {
    NewEvent {
        side: Side::PartnerCenter,
        record_id: id.into(),
        lock_key: key.into(),
        origin: "test".into(),
        payload: "{}".into(),
    }
}

store_tests! {
fn a_coalesced_dataverse_event_no_longer_names_one_row_version(store) {
    // Two deliveries of one opportunity (in whatever order they came) in one waiting entry:
    // no single version names what it announces, so the engine must read the row.
    let delivery = |version: &str| NewEvent {
        side: Side::Dataverse,
        record_id: "o1".into(),
        lock_key: "opportunity:o1".into(),
        origin: "dataverse-webhook".into(),
        payload: format!(r#"{{"MessageName":"Update","PrimaryEntityId":"o1","RowVersion":"{version}"}}"#),
    };
    let first = store.enqueue(&delivery("7")).unwrap();
    assert_eq!(store.enqueue(&delivery("6")).unwrap(), Enqueued::Coalesced(first.id()));
    let claimed = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    let payload: serde_json::Value = serde_json::from_str(&claimed.payload).unwrap();
    assert_eq!(payload["PrimaryEntityId"], "o1");
    assert_eq!(payload.get("RowVersion"), None, "{payload}");
    // A lone delivery keeps its version.
    store.complete(claimed.id).unwrap();
    store.enqueue(&delivery("8")).unwrap();
    let alone = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    assert!(alone.payload.contains(r#""RowVersion":"8""#), "{}", alone.payload);
}

fn one_record_runs_one_event_at_a_time_and_others_run_meanwhile(store) {
    let first = store.enqueue(&event("referral:a", "a")).unwrap();
    assert!(matches!(first, Enqueued::New(_)));
    // Waiting events for the same record coalesce.
    assert_eq!(
        store.enqueue(&event("referral:a", "a")).unwrap(),
        Enqueued::Coalesced(first.id())
    );
    store.enqueue(&event("referral:b", "b")).unwrap();
    let now = i64::MAX / 2;
    let a = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!(a.record_id, "a");
    // While a runs, a new change to a is stored, but not handed out.
    store.enqueue(&event("referral:a", "a")).unwrap();
    let b = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!(b.record_id, "b");
    assert!(store.claim(now, LEASE).unwrap().is_none());
    store.complete(a.id).unwrap();
    let again = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!((again.record_id.as_str(), again.attempts), ("a", 1));
}

fn an_event_retried_behind_a_lock_key_waits_while_an_event_of_that_key_runs(store) {
    // A referral's run is creating an opportunity; the opportunity's own event runs
    // meanwhile (its key was decided without a link), finds no link, and waits behind it.
    store.enqueue(&event("referral:r1", "r1")).unwrap();
    let now = i64::MAX / 2;
    let creating = store.claim(now, LEASE).unwrap().unwrap();
    let mut crm = event("opportunity:o1", "o1");
    crm.side = Side::Dataverse;
    store.enqueue(&crm).unwrap();
    let early = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!(early.record_id, "o1", "no link yet: nothing holds it back");
    store
        .retry_behind(early.id, "referral:r1", "not linked yet", 0)
        .unwrap();
    assert!(
        store.claim(now, LEASE).unwrap().is_none(),
        "it waits for the referral's run"
    );
    store.complete(creating.id).unwrap();
    let again = store.claim(now, LEASE).unwrap().unwrap();
    assert_eq!(
        (
            again.record_id.as_str(),
            again.lock_key.as_str(),
            again.attempts
        ),
        ("o1", "referral:r1", 2),
        "then it runs, its attempt spent"
    );
}

fn a_pair_linked_after_its_events_were_stored_still_runs_one_at_a_time(store) {
    // The opportunity's event was stored before it had a referral...
    let mut crm = event("opportunity:o1", "o1");
    crm.side = Side::Dataverse;
    store.enqueue(&crm).unwrap();
    let running = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    // ...which its run creates and links, while Partner Center's event for it arrives.
    store
        .save_link(&crate::store::Link {
            referral_id: Some("r1".into()),
            opportunity_id: Some("o1".into()),
            ..Default::default()
        })
        .unwrap();
    store.enqueue(&event("referral:r1", "r1")).unwrap();
    assert!(
        store.claim(i64::MAX / 2, LEASE).unwrap().is_none(),
        "the pair is busy"
    );
    store.complete(running.id).unwrap();
    assert_eq!(
        store.claim(i64::MAX / 2, LEASE).unwrap().unwrap().record_id,
        "r1"
    );
}

fn failures_wait_then_die_and_replay_brings_them_back(store) {
    let id = store.enqueue(&event("referral:a", "a")).unwrap().id();
    let e = store.claim(1_000_000_000_000_000, LEASE).unwrap().unwrap();
    store
        .retry_later(e.id, "503", 2_000_000_000_000_000)
        .unwrap();
    assert!(store.claim(1_000_000_000_000_000, LEASE).unwrap().is_none());
    let e = store.claim(3_000_000_000_000_000, LEASE).unwrap().unwrap();
    assert_eq!(e.attempts, 2);
    store.dead_letter(e.id, "still 503").unwrap();
    let dead = store.dead_letters(10).unwrap();
    assert_eq!((dead[0].id, dead[0].last_error.as_str()), (id, "still 503"));
    assert_eq!(store.queue_counts().unwrap().dead, 1);
    assert_eq!(store.replay_dead_letters(None).unwrap(), 1);
    let e = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    assert_eq!(e.attempts, 1);
}

fn a_re_listed_record_keeps_its_backoff_and_attempts_but_a_change_resets_them(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    let now = now_ms();
    let e = store.claim(now, LEASE).unwrap().unwrap();
    store.retry_later(e.id, "trapped", now + 60_000).unwrap();
    // The reconciliation lists it again: no evidence of a change.
    let relisted = NewEvent {
        origin: crate::store::RECONCILE_ORIGIN.into(),
        ..event("referral:a", "a")
    };
    assert_eq!(store.enqueue(&relisted).unwrap(), Enqueued::Coalesced(e.id));
    assert!(
        store.claim(now + 59_999, LEASE).unwrap().is_none(),
        "still backing off"
    );
    let e = store.claim(now + 60_000, LEASE).unwrap().unwrap();
    assert_eq!(e.attempts, 2, "the attempts still count");
    store.retry_later(e.id, "trapped", i64::MAX / 2).unwrap();
    // A webhook says it changed: it runs now, with the whole budget.
    store.enqueue(&event("referral:a", "a")).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!(e.attempts, 1);
}

fn a_dead_letter_stands_for_what_its_last_attempt_read_but_not_for_later_changes(store) {
    let tick = || std::thread::sleep(std::time::Duration::from_millis(3));
    let relisted = || NewEvent {
        origin: crate::store::RECONCILE_ORIGIN.into(),
        ..event("referral:a", "a")
    };
    let failing = store.enqueue(&event("referral:a", "a")).unwrap().id();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    tick();
    // A notification while the first attempt runs waits behind it...
    let before = store.enqueue(&event("referral:a", "a")).unwrap();
    assert!(matches!(before, Enqueued::New(_)));
    store.retry_later(e.id, "trapped", 0).unwrap();
    tick();
    // ...and the last attempt, which started after it arrived, read what it announced.
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!(e.id, failing);
    tick();
    // A re-listing during the last attempt announces no change.
    store.enqueue(&relisted()).unwrap();
    let attempt_started = chrono::Utc::now() - chrono::Duration::milliseconds(3);
    tick();
    store.dead_letter(e.id, "trapped").unwrap();
    let letter = &store.dead_letters(10).unwrap()[0];
    assert_eq!(letter.id, failing);
    // The letter says when the attempt it stands for started: before it failed.
    let last_attempt = chrono::DateTime::parse_from_rfc3339(&letter.last_attempt_at).unwrap();
    let failed = chrono::DateTime::parse_from_rfc3339(&letter.failed_at).unwrap();
    assert!(
        last_attempt <= attempt_started && last_attempt < failed,
        "{letter:?}"
    );
    let counts = store.queue_counts().unwrap();
    assert_eq!((counts.pending, counts.dead), (0, 1), "{counts:?}");

    // A change that arrives during the last attempt is kept, even if it joined a
    // re-listing, and runs with the whole budget.
    store.replay_dead_letters(None).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    tick();
    store.enqueue(&relisted()).unwrap();
    store.enqueue(&event("referral:a", "a")).unwrap();
    store.dead_letter(e.id, "trapped again").unwrap();
    let counts = store.queue_counts().unwrap();
    assert_eq!((counts.pending, counts.dead), (1, 1), "{counts:?}");
    let next = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!((next.origin.as_str(), next.attempts), ("test", 1));
}

/// A queue entry without its times: id, side, record, key, origin, payload, state, attempts.
fn a_batch_stores_each_event_as_enqueue_would_in_order(store) {
    let one_by_one = busy_store(store);
    let batched = busy_store(store);
    let events = mixed_events();
    let singles: Vec<Enqueued> = events
        .iter()
        .map(|e| one_by_one.enqueue(e).unwrap())
        .collect();
    let batch = batched.enqueue_batch(&events).unwrap();
    assert_eq!(batch, singles);
    assert!(matches!(batch[0], Enqueued::New(_)), "{batch:?}");
    assert_eq!(batch[1], Enqueued::Coalesced(batch[0].id()));
    assert_eq!(batch[7], Enqueued::Coalesced(batch[2].id()));
    assert_eq!(rows(&batched), rows(&one_by_one));
    // The failed event no longer waits out its backoff.
    let ready: Vec<String> =
        std::iter::from_fn(|| batched.claim(now_ms(), LEASE).unwrap())
            .map(|e| e.record_id)
            .collect();
    assert_eq!(
        ready,
        ["w", "b", "o1"],
        "a still runs, so its new entry waits"
    );
    assert!(batched.enqueue_batch(&[]).unwrap().is_empty());
}

fn a_batch_that_fails_midway_leaves_the_queue_as_it_was(store) {
    let store = &busy_store(store);
    store
        .enqueue(&NewEvent {
            origin: RECONCILE_ORIGIN.into(),
            ..event("referral:b", "b")
        })
        .unwrap();
    let before = rows(store);
    store.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON sync_events WHEN NEW.record_id = 'poison'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.record_id = 'poison' THEN RAISE EXCEPTION 'injected failure'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER poison BEFORE INSERT ON sync_events
             FOR EACH ROW EXECUTE FUNCTION poison();",
    );
    let mut events = mixed_events();
    events.insert(6, event("referral:poison", "poison"));
    let err = store.enqueue_batch(&events).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("partner-center poison") && text.contains("injected failure"),
        "{text}"
    );
    // Neither the new entries nor the changes to waiting ones before the failure.
    assert_eq!(rows(store), before);
    store.execute("DROP TRIGGER poison", "DROP TRIGGER poison ON sync_events");
    assert_eq!(store.enqueue_batch(&events).unwrap().len(), events.len());
}

fn a_settled_event_and_its_audit_line_are_written_together_or_not_at_all(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    let claimed = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    let line = crate::store::AuditEntry {
        at: crate::store::now(),
        record: "referral:a".into(),
        direction: "partner-center-to-crm".into(),
        outcome: "created".into(),
        detail: "opportunity o1".into(),
    };
    refuse_deletes(store, true);
    store
        .complete_with_audit(claimed.id, Some(&line))
        .unwrap_err();
    // The settle failed, so its line is not in the trail either: the worker tries again, and
    // the trail never holds a line for an event still in the queue, nor two for one settle.
    assert!(store.audit_trail(Some("referral:a"), 10).unwrap().is_empty());
    refuse_deletes(store, false);
    store.complete_with_audit(claimed.id, Some(&line)).unwrap();
    let trail = store.audit_trail(Some("referral:a"), 10).unwrap();
    let written: Vec<_> = trail.iter().map(|e| (e.outcome.as_str(), e.detail.as_str())).collect();
    assert_eq!(written, [("created", "opportunity o1")]);
    assert_eq!(store.queue_counts().unwrap().running, 0);
}
fn a_settle_saves_the_link_keeps_the_runs_removes_the_event_and_claims_the_next(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    store.enqueue(&event("referral:b", "b")).unwrap();
    let now = i64::MAX / 2;
    let a = store.claim(now, LEASE).unwrap().unwrap();
    let line = crate::store::AuditEntry {
        at: crate::store::now(),
        record: "referral:a".into(),
        direction: "partner-center-to-crm".into(),
        outcome: "created".into(),
        detail: "opportunity o1".into(),
    };
    let run = crate::store::LastRun {
        record: "referral:a".into(),
        direction: "partner-center-to-crm".into(),
        event: "referral-created".into(),
        tenant: "contoso".into(),
        input: r#"{"id":"a"}"#.into(),
        current: None,
        config_revision: None,
        output: Some(r#"{"name":"A"}"#.into()),
        error: None,
        at: crate::store::now(),
    };

    let link = crate::store::Link {
        referral_id: Some("a".into()),
        opportunity_id: Some("o1".into()),
        crm_hash: Some("h".into()),
        ..Default::default()
    };

    // A failed settle keeps the event and claims nothing.
    refuse_deletes(store, true);
    store
        .complete_and_claim(a.id, Some(&line), Some(&link), std::slice::from_ref(&run), Some((now, LEASE)))
        .unwrap_err();
    assert_eq!(store.queue_counts().unwrap().running, 1, "a still runs, b was not claimed");
    assert!(store.audit_trail(Some("referral:a"), 10).unwrap().is_empty());
    refuse_deletes(store, false);

    let next = store
        .complete_and_claim(a.id, Some(&line), Some(&link), std::slice::from_ref(&run), Some((now, LEASE)))
        .unwrap();
    let b = next.expect("a claim was asked for").unwrap().expect("b is ready");
    assert_eq!(b.record_id, "b");
    assert_eq!(store.queue_counts().unwrap().running, 1, "b runs, a is gone");
    let saved = store.link_by_referral("a").unwrap().expect("the link was saved");
    assert_eq!(saved.opportunity_id.as_deref(), Some("o1"));
    let kept = store.last_runs("referral:a").unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].output.as_deref(), Some(r#"{"name":"A"}"#));
    let trail = store.audit_trail(Some("referral:a"), 10).unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].outcome, "created");

    // Nothing ready: the claim finds nothing; no claim asked: none made.
    let none = store.complete_and_claim(b.id, None, None, &[], Some((now, LEASE))).unwrap();
    assert!(matches!(none, Some(Ok(None))));
    store.enqueue(&event("referral:c", "c")).unwrap();
    let c = store.claim(now, LEASE).unwrap().unwrap();
    store.enqueue(&event("referral:d", "d")).unwrap();
    assert!(store.complete_and_claim(c.id, None, None, &[], None).unwrap().is_none());
    assert_eq!(store.queue_counts().unwrap().running, 0, "d waits, unclaimed");
    assert!(rows(store).iter().all(|row| row.contains(" d ")), "{:?}", rows(store));
}

fn an_event_whose_lease_ran_out_is_taken_by_another_worker(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    let t0 = now_ms() + 10;
    let lease = 30_000;
    // A worker claims it and dies: the event stays running, holding its record.
    let first = store.claim(t0, lease).unwrap().unwrap();
    assert_eq!(store.next_ready_at().unwrap(), Some(t0 + lease));
    store.enqueue(&event("referral:a", "a")).unwrap();
    assert!(store.claim(t0 + lease - 1, lease).unwrap().is_none());
    // Its lease ends: a worker of another process (or replica) takes it (the lost run
    // counted), before the newer event of the same record, which still waits behind it.
    let other = store.reopen();
    assert!(other.claim(t0 + lease - 1, lease).unwrap().is_none());
    let again = other.claim(t0 + lease, lease).unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(store.claim(t0 + lease, lease).unwrap().is_none());
    other.complete(again.id).unwrap();
    let newer = store.claim(t0 + lease, lease).unwrap().unwrap();
    assert_ne!(newer.id, first.id);
}

/// Two stores on one database receiving the same record's notifications at once (webhooks
/// of two replicas) coalesce them as one store would: one waiting entry, not one each.
fn two_stores_enqueueing_one_record_at_once_keep_one_waiting_entry(store) {
    let other = store.reopen();
    std::thread::scope(|scope| {
        let stores: [&dyn crate::store::SyncStore; 2] = [&**store, &*other];
        for s in stores {
            for _ in 0..3 {
                scope.spawn(move || {
                    for n in 0..100 {
                        let records = [event("referral:a", "a"), event(&format!("referral:x{n}"), &format!("x{n}"))];
                        s.enqueue_batch(&records).unwrap();
                    }
                });
            }
        }
    });
    let waiting = store.texts("SELECT record_id FROM sync_events WHERE record_id = 'a'");
    assert_eq!(waiting, ["a"], "one waiting entry for the record");
    assert_eq!(store.queue_counts().unwrap().pending, 101);
}

fn a_parked_event_waits_for_another_version_of_its_step(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    store.park(e.id, "step", "v1", "out of fuel").unwrap();
    let counts = store.queue_counts().unwrap();
    assert_eq!((counts.pending, counts.running, counts.parked), (0, 0, 1));
    assert!(store.claim(i64::MAX / 2, LEASE).unwrap().is_none());
    let parked = store.parked(10).unwrap();
    assert_eq!(
        (parked[0].step.as_str(), parked[0].version.as_str()),
        ("step", "v1")
    );
    assert_eq!(parked[0].reason, "out of fuel");
    // The same version again, or another step, leaves it parked.
    assert_eq!(store.requeue_parked("step", "v1").unwrap(), 0);
    assert_eq!(store.requeue_parked("other", "v2").unwrap(), 0);
    // A change of the record runs, and parking it again folds the older one away.
    store.enqueue(&event("referral:a", "a")).unwrap();
    let change = store.claim(now_ms(), LEASE).unwrap().unwrap();
    store
        .park(change.id, "step", "v1", "out of fuel again")
        .unwrap();
    assert_eq!(store.queue_counts().unwrap().parked, 1);
    // A new version of the step queues it again, with the whole budget, run in full.
    assert_eq!(store.requeue_parked("step", "v2").unwrap(), 1);
    let rerun = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!((rerun.attempts, rerun.origin.as_str()), (1, REPLAY_ORIGIN));
    store.park(rerun.id, "step", "v2", "still").unwrap();
    // A run that completes settles the parked events of its record.
    store.enqueue(&event("referral:a", "a")).unwrap();
    let fixed = store.claim(now_ms(), LEASE).unwrap().unwrap();
    store.complete(fixed.id).unwrap();
    assert_eq!(store.queue_counts().unwrap(), Default::default());
    // At start-up every parked event runs once more (the limits may have changed).
    store.enqueue(&event("referral:b", "b")).unwrap();
    let b = store.claim(now_ms(), LEASE).unwrap().unwrap();
    store.park(b.id, "step", "v2", "trap").unwrap();
    assert_eq!(store.requeue_all_parked().unwrap(), 1);
}

fn an_event_put_back_during_an_outage_keeps_its_attempts(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    store.retry_later(e.id, "503", 0).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!(e.attempts, 2);
    store.put_back(e.id, "Dataverse is down", 0).unwrap();
    let e = store.claim(now_ms(), LEASE).unwrap().unwrap();
    assert_eq!(
        e.attempts, 2,
        "the attempt during the outage was given back"
    );
}


fn events_left_running_by_a_crash_are_queued_again(store) {
    store.enqueue(&event("referral:a", "a")).unwrap();
    store.enqueue(&event("referral:b", "b")).unwrap();
    // `a`'s lease runs out at once; `b`'s runs on.
    let now = now_ms();
    assert_eq!(store.claim(now, 1).unwrap().unwrap().record_id, "a");
    assert_eq!(store.claim(now, LEASE).unwrap().unwrap().record_id, "b");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let requeued = store.requeue_running().unwrap();
    match store.backend {
        // One host per file: whatever runs was left by a host that stopped.
        crate::store::testing::Backend::Sqlite => assert_eq!(requeued, 2),
        // Shared by replicas: a running event whose lease holds may be a live replica's.
        crate::store::testing::Backend::Postgres => assert_eq!(requeued, 1),
    }
    assert_eq!(store.claim(now_ms(), LEASE).unwrap().unwrap().record_id, "a");
}

/// Two stores on one database (two processes on a SQLite file, two replicas on PostgreSQL)
/// claiming at once: no record ever has two events running, every event runs once, and a
/// record's events run in the order they were stored.
fn two_stores_never_run_two_events_of_a_record_at_once(store) {
    let other = store.reopen();
    // Three records, each with changes on both sides of its pair (two lock keys, linked).
    let records = 3;
    for n in 0..records {
        store
            .save_link(&crate::store::Link {
                referral_id: Some(format!("r{n}")),
                opportunity_id: Some(format!("o{n}")),
                ..Default::default()
            })
            .unwrap();
    }
    let stored = std::sync::Mutex::new(Vec::new());
    let running = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let stores: [&dyn crate::store::SyncStore; 2] = [&**store, &*other];
        for (i, s) in stores.into_iter().enumerate() {
            let (stored, running, done) = (&stored, &running, &done);
            scope.spawn(move || {
                for round in 0..8 {
                    for n in 0..records {
                        let mut crm = event(&format!("opportunity:o{n}"), &format!("o{n}"));
                        crm.side = Side::Dataverse;
                        crm.payload = format!("{i}-{round}");
                        let pc = event(&format!("referral:r{n}"), &format!("r{n}"));
                        let ids = s.enqueue_batch(&[crm, pc]).unwrap();
                        stored.lock().unwrap().extend(ids.iter().map(|e| e.id()));
                    }
                }
            });
            // Two workers per store.
            for _ in 0..2 {
            scope.spawn(move || {
                let mut idle = 0;
                // Bounded: the events are few; a claim finds one or the queue drains.
                for _ in 0..2_000 {
                    let Some(e) = s.claim(now_ms(), LEASE).unwrap() else {
                        idle += 1;
                        if idle > 200 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        continue;
                    };
                    idle = 0;
                    let pair = e.record_id[1..].to_owned();
                    assert!(
                        running.lock().unwrap().insert(pair.clone()),
                        "two events of pair {pair} ran at once"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    running.lock().unwrap().remove(&pair);
                    s.complete(e.id).unwrap();
                    done.lock().unwrap().push(e.id);
                }
            });
            }
        }
    });
    assert_eq!(store.queue_counts().unwrap(), Default::default(), "every event ran");
    let mut done = done.into_inner().unwrap();
    let total = done.len();
    done.sort();
    done.dedup();
    assert_eq!(done.len(), total, "an event ran twice");
    let mut stored = stored.into_inner().unwrap();
    stored.sort();
    stored.dedup();
    assert_eq!(done, stored, "each stored entry ran once");
}

}

/// Makes every removal from the queue fail (`refuse`), or lets them happen again.
fn refuse_deletes(store: &TestStore, refuse: bool) {
    if refuse {
        store.execute(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON sync_events
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'injected failure'; END $$;
             CREATE TRIGGER refuse_delete BEFORE DELETE ON sync_events
                 FOR EACH ROW EXECUTE FUNCTION refuse_delete();",
        );
    } else {
        store.execute(
            "DROP TRIGGER refuse_delete",
            "DROP TRIGGER refuse_delete ON sync_events",
        );
    }
}

/// Every queue entry without its times (id, side, record, key, origin, payload, state,
/// attempts), oldest first.
fn rows(store: &TestStore) -> Vec<String> {
    store.texts(
        "SELECT id || ' ' || side || ' ' || record_id || ' ' || lock_key || ' ' || origin
                || ' ' || payload || ' ' || state || ' ' || attempts
         FROM sync_events ORDER BY id",
    )
}

/// A fresh store of `store`'s backend, with `a` running and a failed `w` waiting for its
/// retry.
fn busy_store(like: &TestStore) -> TestStore {
    let store = TestStore::new(like.backend);
    store.enqueue(&event("referral:a", "a")).unwrap();
    store.enqueue(&event("referral:w", "w")).unwrap();
    let a = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    let w = store.claim(i64::MAX / 2, LEASE).unwrap().unwrap();
    assert_eq!((a.record_id.as_str(), w.record_id.as_str()), ("a", "w"));
    store.retry_later(w.id, "503", i64::MAX / 2).unwrap();
    store
}

/// Events that coalesce with each other and with what waits, in every way `enqueue` knows.
fn mixed_events() -> Vec<NewEvent> {
    let relisted = |key: &str, id: &str| NewEvent {
        origin: RECONCILE_ORIGIN.into(),
        payload: "{}".into(),
        ..event(key, id)
    };
    let webhook = |key: &str, id: &str, n: u32| NewEvent {
        origin: "partner-center-webhook".into(),
        payload: format!("{{\"n\":{n}}}"),
        ..event(key, id)
    };
    let mut crm = webhook("opportunity:o1", "o1", 9);
    crm.side = Side::Dataverse;
    vec![
        webhook("referral:a", "a", 1), // a runs: a new entry waits behind it
        webhook("referral:a", "a", 2), // joins that entry
        relisted("referral:b", "b"),   // new
        webhook("referral:b", "b", 3), // turns the re-listing into a change
        relisted("referral:b", "b"),   // changes nothing
        webhook("referral:w", "w", 4), // the failed one runs now, with its whole budget
        crm,
        webhook("referral:b", "b", 5), // joins, keeps the change's payload
    ]
}
