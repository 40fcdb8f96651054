//! The Partner Center referral, typed: the fields the default mapping reads and writes (see
//! the project's `docs/mapping.md`), with every other field kept in the `extra` map of the
//! object it belongs to. Names follow the Partner Center referral resource (camelCase).

use crate::Field;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Partner Center co-sell referral.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referral {
    /// The referral's id (a GUID).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub id: Field<String>,
    /// The engagement that groups this referral with its related referrals.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub engagement_id: Field<String>,
    /// The referral's name (the opportunity's topic).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub name: Field<String>,
    /// The partner organisation that owns the referral.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub organization_id: Field<String>,
    /// The partner organisation's name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub organization_name: Field<String>,
    /// The id of the linked CRM record (the opportunity id), or `null`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub external_reference_id: Field<String>,
    /// When the referral was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub created_date_time: Field<String>,
    /// When the referral was last updated (RFC 3339).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub updated_date_time: Field<String>,
    /// When a pending referral expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub expiration_date_time: Field<String>,
    /// `New`, `Active` or `Closed`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub status: Field<String>,
    /// `Pending`, `Received`, `Accepted`, `Engaged`, `Declined`, `Won`, `Lost`, `Expired`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub substatus: Field<String>,
    /// `SalesQualified`, `MarketingQualified`, ...
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub qualification: Field<String>,
    /// `Independent` or `Shared` (JSON name `type`).
    #[serde(default, rename = "type", skip_serializing_if = "Field::is_absent")]
    pub kind: Field<String>,
    /// `Incoming` or `Outgoing`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub direction: Field<String>,
    /// The sales stage, e.g. `Qualify`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub sales_stage: Field<String>,
    /// The referral's ETag (for conditional updates).
    #[serde(default, rename = "eTag", skip_serializing_if = "Field::is_absent")]
    pub e_tag: Field<String>,
    /// The end customer: company, address and contacts.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub customer_profile: Field<CustomerProfile>,
    /// The customer's consent flags.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub consent: Field<Consent>,
    /// Deal value, currency, closing date, notes and requirements.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub details: Field<Details>,
    /// The partner's own team on the referral.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub team: Field<Vec<Member>>,
    /// Why the referral was shared and what help is asked of Microsoft.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub invite_context: Field<InviteContext>,
    /// Every other field (e.g. `links`, `target`, `tags`, `trackingInfo`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The end customer of a referral.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfile {
    /// The customer's company name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub name: Field<String>,
    /// The company size, e.g. `251to1000employees`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub size: Field<String>,
    /// The customer's address.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address: Field<Address>,
    /// The customer's contacts.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub team: Field<Vec<Member>>,
    /// Every other field (e.g. `ids`, `isMatchingComplete`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// First street line.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address_line1: Field<String>,
    /// Second street line.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub address_line2: Field<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub city: Field<String>,
    /// State or province.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub state: Field<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub postal_code: Field<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `NL`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub country: Field<String>,
    /// Every other field (e.g. `region`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A person on a referral: a customer contact or a partner team member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// First name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub first_name: Field<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub last_name: Field<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub email: Field<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub phone_number: Field<String>,
    /// Job title (customer contacts).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub title: Field<String>,
    /// Every other field (e.g. `contactPreference`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The customer's consent flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// Consent to share the customer's information with others (Partner Center's spelling).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub consent_to_to_share_info_with_others: Field<bool>,
    /// Consent to be contacted.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub consent_to_contact: Field<bool>,
    /// Consent to share the referral with Microsoft sellers.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub consent_to_share_referral_with_microsoft_sellers: Field<bool>,
    /// Every other field, kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Deal details of a referral.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    /// Free-text notes.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub notes: Field<String>,
    /// The deal value: a number, though some senders write it as a string (kept as JSON).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub deal_value: Field<Value>,
    /// ISO 4217 currency code, e.g. `EUR`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub currency: Field<String>,
    /// Expected closing date (RFC 3339).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub closing_date_time: Field<String>,
    /// Whether the customer asked to be contacted.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub customer_requested_contact: Field<bool>,
    /// Industries, products, services and solutions.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub requirements: Field<Requirements>,
    /// Every other field, kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the customer needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    /// The solutions (the default mapping writes their ids to the products column).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub solutions: Field<Vec<Solution>>,
    /// Every other field (e.g. `industries`, `products`, `services`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A solution on a referral.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solution {
    /// The solution id, e.g. `SOL-6115380-IPC`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub id: Field<String>,
    /// The solution's display name.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub name: Field<String>,
    /// `Name` or `Category` (JSON name `type`).
    #[serde(default, rename = "type", skip_serializing_if = "Field::is_absent")]
    pub kind: Field<String>,
    /// Every other field (e.g. `publisherName`, `solutionType`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a referral was shared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteContext {
    /// Notes from whoever shared the referral.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub notes: Field<String>,
    /// "How can Microsoft help?", e.g. `CustomerTechnicalArchitecture`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub assistance_request_code: Field<String>,
    /// Every other field (e.g. `invitedMpnId`, `invitedBy`), kept as it is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_absences_and_unknown_fields_survive_a_round_trip() {
        let document = json!({
            "id": "r1",
            "externalReferenceId": null,
            "customerProfile": {"name": "Contoso", "address": {"country": "NL", "region": "Europe"}, "ids": []},
            "details": {"dealValue": "1200.50", "requirements": {"solutions": [{"id": "S", "publisherName": "P"}]}},
            "links": {"self": {"uri": "https://example.test"}},
        });
        let referral: Referral = serde_json::from_value(document.clone()).unwrap();
        assert!(referral.external_reference_id.is_null());
        assert!(referral.name.is_absent());
        assert_eq!(
            referral.extra["links"]["self"]["uri"],
            "https://example.test"
        );
        assert_eq!(serde_json::to_value(&referral).unwrap(), document);
    }
}
