//! Turning the lookups a mapping names by value into Dataverse references.
//!
//! The mapping writes `transactioncurrencyid: {"isocurrencycode": "EUR"}` and
//! `customerid_account: {"name": …, "address1_postalcode": …, "contact_customer_accounts": […]}`
//! (docs/mapping.md). Here the currency is found by its code; the account is matched by name
//! and postal code or created (the connector's documented behaviour), and its contacts by
//! email (or, without one, by name) under that account or created. Each create names its row
//! and never runs twice ([`DataverseClient::create`]); a sync run again after a failure finds
//! what the earlier run created.

use crate::connections::dataverse::DataverseClient;
use crate::connections::odata::literal;
use crate::sinks::SinkError;
use crate::store::{CustomerLocks, InProcessCustomerLocks};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Resolves lookups; currency ids are cached (they do not change).
#[derive(Debug)]
pub struct Lookups {
    currencies: Mutex<HashMap<String, String>>,
    /// One lock per customer (by [`customer_key`]), held while its account and contacts are
    /// found or created: two referrals of the same new customer, synced at the same time by
    /// different workers (or replicas), would otherwise both find nothing and create the
    /// account twice. Per customer, so a slow lookup holds up no other customer. The store
    /// provides them ([`crate::store::SyncStore::customer_locks`]): in-process on SQLite,
    /// shared by every replica on PostgreSQL (docs/sync.md).
    customers: Arc<dyn CustomerLocks>,
}

impl Default for Lookups {
    /// Lookups with customer locks of this process only (one host, or a backfill run).
    fn default() -> Self {
        Self::new(Arc::new(InProcessCustomerLocks::default()))
    }
}

impl Lookups {
    /// Lookups holding `customers`' lock while they find or create a customer.
    pub fn new(customers: Arc<dyn CustomerLocks>) -> Self {
        Self {
            currencies: Mutex::default(),
            customers,
        }
    }

    /// Forgets the customer locks kept in memory that nobody holds or waits for, and answers
    /// how many: in-process locks are made one per customer ever synced, so without this the
    /// map grows for the host's lifetime. (Locks in the database keep nothing here: 0.)
    pub fn prune_customer_locks(&self) -> usize {
        self.customers.prune()
    }

    /// How many customer locks are kept in memory.
    pub fn customer_locks(&self) -> usize {
        self.customers.kept()
    }
}

/// Who the customer `account` (the object a mapping wrote) is: its name, ignoring case, and
/// postal code, which is how its account is matched.
pub(crate) fn customer_key(account: &Value) -> String {
    format!(
        "{}\u{1f}{}",
        account["name"].as_str().unwrap_or_default().to_lowercase(),
        account["address1_postalcode"].as_str().unwrap_or_default()
    )
}

const ACCOUNT_FIELDS: [&str; 7] = [
    "name",
    "address1_line1",
    "address1_line2",
    "address1_city",
    "address1_stateorprovince",
    "address1_postalcode",
    "address1_country",
];
const CONTACT_FIELDS: [&str; 5] = [
    "firstname",
    "lastname",
    "emailaddress1",
    "telephone1",
    "jobtitle",
];

fn first_id(rows: &[Value], column: &str) -> Option<String> {
    rows.first()?.get(column)?.as_str().map(str::to_owned)
}

fn pick(source: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            source
                .get(*f)
                .filter(|v| !v.is_null())
                .map(|v| (f.to_string(), v.clone()))
        })
        .collect()
}

impl Lookups {
    /// Replaces the expanded lookups in `columns` by `@odata.bind` references, creating the
    /// account and contacts when they do not exist yet.
    pub async fn resolve(
        &self,
        dv: &DataverseClient,
        columns: &mut Map<String, Value>,
    ) -> Result<(), SinkError> {
        self.bind_currency(dv, columns).await?;
        if let Some(account) = columns.remove("customerid_account") {
            let (account_id, first_contact) = {
                let key = customer_key(&account);
                let _one_at_a_time = self.customers.lock(&key).await?;
                self.account(dv, &account).await?
            };
            columns.insert(
                "customerid_account@odata.bind".into(),
                json!(format!("/accounts({account_id})")),
            );
            if let Some(contact) = first_contact {
                columns.insert(
                    "parentcontactid@odata.bind".into(),
                    json!(format!("/contacts({contact})")),
                );
            }
        }
        Ok(())
    }

    /// Replaces the currency `columns` name by code (`transactioncurrencyid`) with its
    /// `@odata.bind` reference; the one lookup the engine's writes and a backfill's share.
    pub(crate) async fn bind_currency(
        &self,
        dv: &DataverseClient,
        columns: &mut Map<String, Value>,
    ) -> Result<(), SinkError> {
        if let Some(currency) = columns.remove("transactioncurrencyid") {
            let code = currency["isocurrencycode"].as_str().unwrap_or_default();
            let id = self.currency(dv, code).await?;
            columns.insert(
                "transactioncurrencyid@odata.bind".into(),
                json!(format!("/transactioncurrencies({id})")),
            );
        }
        Ok(())
    }

    /// The id of the currency with ISO code `code` (cached).
    async fn currency(&self, dv: &DataverseClient, code: &str) -> Result<String, SinkError> {
        if let Some(id) = self
            .currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(code)
        {
            return Ok(id.clone());
        }
        let rows = dv
            .query(
                "transactioncurrencies",
                &format!(
                    "$select=transactioncurrencyid&$filter=isocurrencycode eq {}",
                    literal(code)
                ),
            )
            .await?;
        let id = first_id(&rows, "transactioncurrencyid").ok_or_else(|| {
            SinkError::Unresolvable(format!(
                "the currency {code} is not set up in Dataverse; add it under Settings > Currencies"
            ))
        })?;
        self.currencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(code.to_owned(), id.clone());
        Ok(id)
    }

    /// The account's id (matched by name and postal code, or created) and its first contact.
    async fn account(
        &self,
        dv: &DataverseClient,
        account: &Value,
    ) -> Result<(String, Option<String>), SinkError> {
        let filter = account_filter(account);
        let rows = dv
            .query("accounts", &format!("$select=accountid&$filter={filter}"))
            .await?;
        let account_id = match first_id(&rows, "accountid") {
            Some(id) => id,
            None => {
                dv.create("accounts", &Value::Object(account_body(account)))
                    .await?
            }
        };
        let mut first = None;
        for contact in account["contact_customer_accounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = self.contact(dv, &account_id, contact).await?;
            first.get_or_insert(id);
        }
        Ok((account_id, first))
    }

    async fn contact(
        &self,
        dv: &DataverseClient,
        account_id: &str,
        contact: &Value,
    ) -> Result<String, SinkError> {
        if let Some(filter) = contact_filter(contact) {
            let rows = dv
                .query(
                    "contacts",
                    &format!(
                        "$select=contactid&$filter={filter} and _parentcustomerid_value eq {account_id}"
                    ),
                )
                .await?;
            if let Some(id) = first_id(&rows, "contactid") {
                return Ok(id);
            }
        }
        Ok(dv
            .create(
                "contacts",
                &Value::Object(contact_body(contact, account_id)),
            )
            .await?)
    }
}

/// The `$filter` that matches `contact` (an object of a mapping's `contact_customer_accounts`)
/// among its account's contacts: its email, or without one its first and last name, so that a
/// sync run again (after a failure, even one whose create did land) finds the contact it
/// created instead of making a second one. `None` when the contact has neither.
fn contact_filter(contact: &Value) -> Option<String> {
    let text = |column: &str| contact[column].as_str().filter(|v| !v.trim().is_empty());
    if let Some(email) = text("emailaddress1") {
        return Some(format!("emailaddress1 eq {}", literal(email)));
    }
    let last = text("lastname")?;
    let first = match text("firstname") {
        Some(first) => format!("firstname eq {}", literal(first)),
        None => "firstname eq null".to_owned(),
    };
    Some(format!("{first} and lastname eq {}", literal(last)))
}

/// The `$filter` that matches the account of `account` (the object a mapping wrote): its name
/// and postal code.
pub(crate) fn account_filter(account: &Value) -> String {
    let name = account["name"].as_str().unwrap_or_default();
    let mut filter = format!("name eq {}", literal(name));
    if let Some(postal) = account["address1_postalcode"].as_str() {
        filter.push_str(&format!(" and address1_postalcode eq {}", literal(postal)));
    }
    filter
}

/// The body that creates the account `account` (the object a mapping wrote) describes.
pub(crate) fn account_body(account: &Value) -> Map<String, Value> {
    pick(account, &ACCOUNT_FIELDS)
}

/// The body that creates `contact` (an object of a mapping's `contact_customer_accounts`)
/// under account `account_id`.
pub(crate) fn contact_body(contact: &Value, account_id: &str) -> Map<String, Value> {
    let mut body = pick(contact, &CONTACT_FIELDS);
    body.insert(
        "parentcustomerid_account@odata.bind".into(),
        json!(format!("/accounts({account_id})")),
    );
    body
}
