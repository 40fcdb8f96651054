//! The claim rule of the event queue, as SQL shared by both backends: which ready event a
//! worker may take. One text, so the two backends cannot drift apart on who may run what.

/// The join condition of link alias `l` for event alias `e`: by opportunity for a Dataverse
/// event, by referral for a Partner Center one.
fn link_of(e: &str, l: &str) -> String {
    format!(
        "({e}.side = 'dataverse' AND {l}.opportunity_id = {e}.record_id)
         OR ({e}.side = 'partner-center' AND {l}.referral_id = {e}.record_id)"
    )
}

/// The condition on event alias `e` that it is running but abandoned, so another worker may
/// take it back: its lease ran out (its worker died or hangs) or, where the backend can tell,
/// `claimer_gone` (its claimer is dead).
pub(super) fn abandoned(now: &str, claimer_gone: Option<&str>) -> String {
    match claimer_gone {
        Some(gone) => format!("e.state = 'running' AND (e.lease_until <= {now} OR {gone})"),
        None => format!("e.state = 'running' AND e.lease_until <= {now}"),
    }
}

/// The two claim queries, tried in order, with `now` the placeholder of the current time in
/// milliseconds, `claimer_gone` (if any) a further condition under which a running event is
/// abandoned (its claimer is known to be dead), and `suffix` appended (a row lock clause,
/// say): the oldest ready event none of
/// whose pair is running: the same lock key, the same record, or (since the lock key was
/// decided when the event was stored) the same link by now.
///
/// A running event whose lease ran out (its worker died or hangs) is ready again; until it is
/// taken back it still holds its record, so a newer event of that record waits behind it.
/// Those are looked for first, in a query of their own: one `OR` of both states would make
/// SQLite collect and sort every ready event instead of walking its index to the first one.
pub(super) fn claim_queries(now: &str, claimer_gone: Option<&str>, suffix: &str) -> [String; 2] {
    [
        abandoned(now, claimer_gone),
        format!("e.state = 'pending' AND e.available_at <= {now}"),
    ]
    .map(|ready| {
        format!(
            "SELECT e.id, e.side, e.record_id, e.lock_key, e.origin, e.payload, e.attempts,
                    e.received_at
             FROM sync_events e
             LEFT JOIN sync_links le ON {link_e}
             WHERE {ready}
               AND NOT EXISTS (
                   SELECT 1 FROM sync_events r
                   LEFT JOIN sync_links lr ON {link_r}
                   WHERE r.state = 'running' AND r.id != e.id
                     AND (r.lock_key = e.lock_key
                          OR (r.side = e.side AND r.record_id = e.record_id)
                          OR lr.id = le.id))
             ORDER BY e.available_at, e.id LIMIT 1 {suffix}",
            link_e = link_of("e", "le"),
            link_r = link_of("r", "lr"),
        )
    })
}
