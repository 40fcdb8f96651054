//! The referral status/substatus table (reference §1.7, "Allowed transitions", and §1.8).
//!
//! | from status | may move to | substatus allowed with that status |
//! |---|---|---|
//! | New | New, Active, Closed | Pending, Received |
//! | Active | Active, Closed | Accepted |
//! | Closed | nothing (terminal) | Won, Lost, Declined, Expired |
//!
//! Where the facts stop: the docs allow "Closed → Closed"; the Partner Center UI permits no
//! action at all after Won/Lost/Declined/Expired, so the emulator rejects every write to a
//! Closed referral (a no-op status "change" included), which is the stricter reading.

/// The documented statuses.
pub const STATUSES: [&str; 4] = ["None", "New", "Active", "Closed"];

/// The substatuses a status allows (empty for `None`, which no write may move to).
pub fn substatuses(status: &str) -> &'static [&'static str] {
    match status {
        "New" => &["Pending", "Received"],
        "Active" => &["Accepted"],
        "Closed" => &["Won", "Lost", "Declined", "Expired"],
        _ => &[],
    }
}

/// Whether a `(status, substatus)` pair is a valid state on its own.
pub fn check_state(status: &str, substatus: &str) -> Result<(), String> {
    if !STATUSES.contains(&status) || status == "None" {
        return Err(format!(
            "'{status}' is not a status a referral can be set to (New, Active, Closed)"
        ));
    }
    let allowed = substatuses(status);
    if !allowed.contains(&substatus) {
        return Err(format!(
            "substatus '{substatus}' is not allowed with status '{status}' (allowed: {})",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// Checks a move from one state to another: the target state must be valid and reachable.
pub fn check_transition(from: (&str, &str), to: (&str, &str)) -> Result<(), String> {
    if from.0 == "Closed" {
        return Err(format!(
            "the referral is Closed ({}), a terminal state: it cannot be changed",
            from.1
        ));
    }
    check_state(to.0, to.1)?;
    let reachable: &[&str] = match from.0 {
        "New" => &["New", "Active", "Closed"],
        "Active" => &["Active", "Closed"],
        _ => &["New", "Active", "Closed"],
    };
    if !reachable.contains(&to.0) {
        return Err(format!(
            "a referral cannot move from status '{}' to '{}'",
            from.0, to.0
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_table_is_enforced() {
        assert!(check_transition(("New", "Pending"), ("Active", "Accepted")).is_ok());
        assert!(check_transition(("New", "Pending"), ("Closed", "Declined")).is_ok());
        assert!(check_transition(("New", "Pending"), ("New", "Received")).is_ok());
        assert!(check_transition(("Active", "Accepted"), ("Closed", "Won")).is_ok());
        assert!(check_transition(("Active", "Accepted"), ("New", "Pending")).is_err());
        assert!(check_transition(("New", "Pending"), ("Active", "Won")).is_err());
        assert!(check_transition(("Closed", "Won"), ("Closed", "Lost")).is_err());
        assert!(check_transition(("Closed", "Won"), ("Active", "Accepted")).is_err());
        assert!(check_transition(("New", "Pending"), ("Open", "Pending")).is_err());
    }
}
