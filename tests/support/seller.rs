//! What a partner's seller does in the CRM, for the end-to-end tests: customers with a
//! contact, and opportunities marked "Sync with Partner Center".

use super::sync_env::SyncEnv;
use serde_json::{Value, json};

/// A customer account with one contact, as a seller would have it; answers (account, contact).
pub async fn customer(env: &SyncEnv, name: &str, postal: &str) -> (String, String) {
    let account = env
        .seller
        .create(
            "accounts",
            &json!({"name": name, "address1_postalcode": postal, "address1_country": "US", "address1_city": "Redmond"}),
        )
        .await
        .unwrap();
    let contact = env
        .seller
        .create(
            "contacts",
            &json!({"firstname": "Dana", "lastname": "Buyer", "emailaddress1": format!("dana@{postal}.example"),
                    "parentcustomerid_account@odata.bind": format!("/accounts({account})")}),
        )
        .await
        .unwrap();
    (account, contact)
}

/// A new opportunity with Sync = Yes for a new customer `<name> Inc` at `postal`; `extra`
/// columns are set (or removed with `null`). Answers its id.
pub async fn creates_opportunity(env: &SyncEnv, name: &str, postal: &str, extra: Value) -> String {
    let (account, contact) = customer(env, &format!("{name} Inc"), postal).await;
    let mut body = json!({
        "name": name,
        "estimatedvalue": 25000,
        "description": "Migration of 400 seats",
        "estimatedclosedate": "2027-03-31",
        "customerid_account@odata.bind": format!("/accounts({account})"),
        "parentcontactid@odata.bind": format!("/contacts({contact})"),
        "cosell_syncwithpartnercenter": true,
        "cosell_products": "SOL-1234",
    });
    for (column, value) in extra.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(column);
        } else {
            body[column] = value.clone();
        }
    }
    env.seller.create("opportunities", &body).await.unwrap()
}
