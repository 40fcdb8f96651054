//! Links, cursors, credentials and the audit trail on every backend.

use crate::store::testing::store_tests;
use crate::store::{AuditEntry, AuditQuery, Link};

store_tests! {

fn the_audit_trail_is_pruned_by_age_and_by_count(store) {
    let entry = |at: &str, record: &str| AuditEntry {
        at: at.to_owned(),
        record: record.to_owned(),
        direction: "partner-center-to-crm".into(),
        outcome: "synced".into(),
        detail: String::new(),
    };
    for (i, at) in [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-01",
    ]
    .iter()
    .enumerate()
    {
        store
            .audit(&entry(&format!("{at}T00:00:00.000Z"), &format!("r{i}")))
            .unwrap();
    }
    assert_eq!(
        store.prune_audit("2026-02-15T00:00:00.000Z", 100).unwrap(),
        2
    );
    assert_eq!(store.prune_audit("2026-02-15T00:00:00.000Z", 2).unwrap(), 1);
    let left: Vec<_> = store
        .audit_trail(None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.record)
        .collect();
    assert_eq!(left, ["r4", "r3"], "the newest two");
    assert_eq!(store.prune_audit("2026-02-15T00:00:00.000Z", 2).unwrap(), 0);
}

fn the_audit_trail_is_searched_by_record_outcome_and_time_a_page_at_a_time(store) {
    // Ten entries a minute apart, alternating records and outcomes.
    for i in 0..10 {
        let (record, outcome) = match i % 3 {
            0 => ("referral:R-1", "conflict"),
            1 => ("opportunity:R-1", "updated"),
            _ => ("referral:R-2", "created"),
        };
        store
            .audit(&AuditEntry {
                at: format!("2026-12-06T10:{i:02}:00.000Z"),
                record: record.into(),
                direction: "partner-center-to-crm".into(),
                outcome: outcome.into(),
                detail: format!("entry {i}"),
            })
            .unwrap();
    }
    let details = |query: AuditQuery| -> (Vec<String>, Option<i64>) {
        let page = store.audit_search(&query).unwrap();
        (page.entries.into_iter().map(|e| e.detail).collect(), page.next)
    };
    let all = |limit| AuditQuery { limit, ..AuditQuery::default() };

    // A bare id matches both sides' records; a full record name only its own.
    let (found, _) = details(AuditQuery { record: Some("R-1".into()), ..all(100) });
    assert_eq!(found.len(), 7, "{found:?}");
    let (found, _) = details(AuditQuery { record: Some("opportunity:R-1".into()), ..all(100) });
    assert_eq!(found, ["entry 7", "entry 4", "entry 1"]);

    // Outcome and a half-open time range: 10:03 included, 10:09 excluded.
    let (found, _) = details(AuditQuery {
        outcome: Some("conflict".into()),
        since: Some("2026-12-06T10:03:00.000Z".into()),
        until: Some("2026-12-06T10:09:00.000Z".into()),
        ..all(100)
    });
    assert_eq!(found, ["entry 6", "entry 3"]);

    // Pages of four, newest first, each starting where the last one said, with no entry
    // twice or missed; the last page says there is no next.
    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..5 {
        let (page, next) = details(AuditQuery { before, ..all(4) });
        seen.extend(page);
        before = next;
        if next.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..10).rev().map(|i| format!("entry {i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(before, None);
}

fn links_are_found_from_either_side_and_survive_reopening(store) {
    let mut link = Link {
        opportunity_id: Some("o1".into()),
        crm_hash: Some("h1".into()),
        ..Link::default()
    };
    link.id = Some(store.save_link(&link).unwrap());
    link.referral_id = Some("r1".into());
    store.save_link(&link).unwrap();
    store.set_cursor("dataverse-delta", "link-1").unwrap();
    store.set_credential("pc-refresh", "rt-2").unwrap();
    let store = store.reopen();
    assert_eq!(store.link_by_referral("r1").unwrap(), Some(link.clone()));
    assert_eq!(store.link_by_opportunity("o1").unwrap(), Some(link));
    assert_eq!(
        store.cursor("dataverse-delta").unwrap().as_deref(),
        Some("link-1")
    );
    assert_eq!(
        store.credential("pc-refresh").unwrap().as_deref(),
        Some("rt-2")
    );
    assert!(store.link_by_referral("nope").unwrap().is_none());
}

fn links_are_saved_for_unlinked_referrals_only(store) {
    let link = |referral: &str, opportunity: &str| Link {
        referral_id: Some(referral.into()),
        opportunity_id: Some(opportunity.into()),
        pc_hash: Some(format!("{referral}-hash")),
        ..Link::default()
    };
    store.save_link(&link("r1", "host-o1")).unwrap();
    let failed_before = Link {
        referral_id: Some("r2".into()),
        last_error: Some("refused".into()),
        ..Link::default()
    };
    store.save_link(&failed_before).unwrap();
    let linked = store
        .save_unlinked(&[link("r1", "o1"), link("r2", "o2"), link("r3", "o3")])
        .unwrap();
    assert_eq!(linked, [Some("host-o1".into()), None, None]);
    // A second process sees them (one transaction, committed).
    let other = store.reopen();
    let r1 = other.link_by_referral("r1").unwrap().unwrap();
    assert_eq!(
        r1.opportunity_id.as_deref(),
        Some("host-o1"),
        "left as it was"
    );
    let r2 = other.link_by_referral("r2").unwrap().unwrap();
    assert_eq!(r2.opportunity_id.as_deref(), Some("o2"));
    assert_eq!(
        r2.last_error, None,
        "the earlier failure's link now holds the pair"
    );
    assert!(other.link_by_opportunity("o3").unwrap().is_some());
}

fn two_links_started_for_one_pair_become_one(store) {
    let from_crm = Link {
        opportunity_id: Some("o1".into()),
        last_error: Some("refused".into()),
        ..Link::default()
    };
    store.save_link(&from_crm).unwrap();
    let from_pc = Link {
        referral_id: Some("r1".into()),
        ..Link::default()
    };
    store.save_link(&from_pc).unwrap();
    // A run that learned both ids saves without knowing either row.
    let both = Link {
        referral_id: Some("r1".into()),
        opportunity_id: Some("o1".into()),
        pc_hash: Some("h".into()),
        ..Link::default()
    };
    let id = store.save_link(&both).unwrap();
    let by_referral = store.link_by_referral("r1").unwrap().unwrap();
    let by_opportunity = store.link_by_opportunity("o1").unwrap().unwrap();
    assert_eq!((by_referral.id, by_opportunity.id), (Some(id), Some(id)));
    assert_eq!(by_referral.pc_hash.as_deref(), Some("h"));
}
}

store_tests! {
fn the_last_run_of_a_record_is_kept_overwritten_and_pruned(store) {
    use crate::store::LastRun;
    let run = |output: &str, at: &str| LastRun {
        record: "referral:R-1".into(),
        direction: "partner-center-to-crm".into(),
        event: "referral-created".into(),
        tenant: "contoso".into(),
        input: r#"{"id":"R-1"}"#.into(),
        current: Some(r#"{"name":"x"}"#.into()),
        config_revision: None,
        output: Some(output.into()),
        error: None,
        at: at.into(),
    };
    assert!(store.last_runs("referral:R-1").unwrap().is_empty());
    store
        .save_last_run(&run(r#"{"name":"a"}"#, "2026-01-01T00:00:00.000Z"))
        .unwrap();
    let newer = run(r#"{"name":"b"}"#, "2026-01-02T00:00:00.000Z");
    store.save_last_run(&newer).unwrap();
    assert_eq!(store.last_runs("referral:R-1").unwrap(), vec![newer.clone()]);
    assert!(store.last_runs("opportunity:R-1").unwrap().is_empty());
    assert_eq!(store.prune_last_runs("2026-01-02T00:00:00.000Z").unwrap(), 0);
    assert_eq!(store.prune_last_runs("2026-01-03T00:00:00.000Z").unwrap(), 1);
    assert!(store.last_runs("referral:R-1").unwrap().is_empty());
}
}
