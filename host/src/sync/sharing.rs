//! Sharing with Microsoft is a seller's decision.
//!
//! A Shared referral (and its Microsoft-targeted half) shows the customer's data to Microsoft
//! sellers. Partner Center's own data can make an opportunity look as if help was asked for:
//! a referral Microsoft sent carries an `assistanceRequestCode`, which the partner-center-to-crm
//! mapping writes into "How can Microsoft help?". If the crm-to-partner-center mapping then
//! took that column as the seller's wish, the next CRM edit would turn an Independent referral
//! Shared without anyone deciding it. So the engine, not a mapping, decides: an existing
//! referral that is not Shared becomes Shared only when the help column changed in the CRM
//! since the last sync (compared with the stored snapshot of the opportunity). Without a
//! snapshot there is no evidence of a decision, so nothing is shared. A referral created from
//! a CRM opportunity is the seller's decision by construction and is not restricted here.

use serde_json::Value;

/// The referral fields whose change shares a referral with Microsoft.
const SHARING_FIELDS: [&str; 3] = ["type", "consent", "inviteContext"];

/// Whether the seller changed `help_column` on `opportunity` since `last_synced` (the stored
/// snapshot of the opportunity at the last sync; `None` when there is none).
pub fn seller_asked_for_help(
    opportunity: &Value,
    last_synced: Option<&Value>,
    help_column: &str,
) -> bool {
    let now = opportunity.get(help_column).filter(|v| !v.is_null());
    match last_synced {
        Some(before) => now.is_some() && now != before.get(help_column).filter(|v| !v.is_null()),
        None => false,
    }
}

/// Keeps `wanted` from sharing `current` with Microsoft: when `current` is not Shared and
/// `wanted` would make it so, the sharing fields are put back as `current` has them. Answers
/// whether anything was held back.
pub fn hold_back_sharing(wanted: &mut Value, current: &Value) -> bool {
    if current["type"] == "Shared" || wanted["type"] != "Shared" {
        return false;
    }
    for field in SHARING_FIELDS {
        match current.get(field) {
            Some(value) => wanted[field] = value.clone(),
            None => {
                if let Some(object) = wanted.as_object_mut() {
                    object.remove(field);
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HELP: &str = "cosell_howcanmicrosofthelp";

    #[test]
    fn only_a_change_since_the_last_sync_is_a_decision() {
        let asked = json!({HELP: 100000001});
        assert!(
            !seller_asked_for_help(&asked, None, HELP),
            "no snapshot, no evidence"
        );
        assert!(
            !seller_asked_for_help(&asked, Some(&asked), HELP),
            "as it came from Partner Center"
        );
        assert!(seller_asked_for_help(
            &asked,
            Some(&json!({HELP: null})),
            HELP
        ));
        assert!(seller_asked_for_help(
            &asked,
            Some(&json!({HELP: 100000002})),
            HELP
        ));
        assert!(
            !seller_asked_for_help(&json!({HELP: null}), Some(&asked), HELP),
            "cleared is not asking"
        );
    }

    #[test]
    fn an_independent_referral_keeps_its_sharing_fields() {
        let current = json!({"type": "Independent", "consent": {"consentToShareReferralWithMicrosoftSellers": false},
                             "inviteContext": {"assistanceRequestCode": "Other"}, "name": "a"});
        let mut wanted = json!({"type": "Shared", "consent": {"consentToShareReferralWithMicrosoftSellers": true},
                                "inviteContext": {"assistanceRequestCode": "Other"}, "name": "b"});
        assert!(hold_back_sharing(&mut wanted, &current));
        assert_eq!(wanted["type"], "Independent");
        assert_eq!(wanted["consent"], current["consent"]);
        assert_eq!(wanted["name"], "b", "other changes still go");
        let shared = json!({"type": "Shared"});
        let mut again = json!({"type": "Shared", "name": "c"});
        assert!(!hold_back_sharing(&mut again, &shared));
    }
}
