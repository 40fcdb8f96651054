//! The lookups of a backfill: what the sync engine's [`Lookups`] does per referral, done once
//! per run, and for a chunk of referrals at a time.
//!
//! - A currency is found once per ISO code.
//! - A customer (an account by name and postal code) is looked up once per run, with its
//!   contacts in the same query; the customers a chunk needs are looked up together (one
//!   `$batch` of queries), and the missing accounts created together, with ids chosen here
//!   ([`super::customers`]).
//! - Contacts are matched by email among the account's (found, or created by this run); the
//!   missing ones are *planned*, with their id chosen here, and a chunk's planned contacts are
//!   created together before the opportunities that name them. Two referrals of one customer
//!   naming the same new contact plan it once. A contact whose create failed is forgotten, so
//!   a later referral plans it again.
//!
//! Chunks are prepared one after the other, so what one chunk created is known to the next.
//! Remembering is right for a run, not for the long-running host: there a seller may merge or
//! delete an account between two syncs.

use crate::domain::ids::new_uuid;
use crate::sinks::dataverse::bulk_write::LookupRequest;
use crate::sinks::dataverse::lookups::{Lookups, customer_key};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A customer as this run knows it.
#[derive(Debug)]
pub(super) struct Customer {
    account_id: String,
    /// Its contacts by email (lower case): found, created by this run, or planned.
    contacts: Mutex<HashMap<String, String>>,
}

impl Customer {
    /// An account that exists, with its contacts as a query expanded them
    /// (`contact_customer_accounts`).
    pub(super) fn found(row: &Value) -> Option<Self> {
        let account_id = row["accountid"].as_str()?.to_owned();
        let mut contacts = HashMap::new();
        for contact in row["contact_customer_accounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let (Some(email), Some(id)) = (
                contact["emailaddress1"].as_str(),
                contact["contactid"].as_str(),
            ) {
                contacts
                    .entry(email.to_lowercase())
                    .or_insert_with(|| id.to_owned());
            }
        }
        Some(Self {
            account_id,
            contacts: Mutex::new(contacts),
        })
    }

    /// An account this run created (so without contacts yet).
    pub(super) fn created(account_id: String) -> Self {
        Self {
            account_id,
            contacts: Mutex::default(),
        }
    }
}

/// A contact to create before the opportunity that names it.
#[derive(Debug)]
pub(super) struct NewContact {
    /// Its id, chosen here (`contactid` in the create).
    pub id: String,
    pub request: LookupRequest,
    customer: Arc<Customer>,
    email: Option<String>,
}

/// A referral's contacts: the ids it names, and those among them it planned to create.
#[derive(Debug, Default)]
pub(super) struct Contacts {
    pub ids: Vec<String>,
    pub new: Vec<NewContact>,
}

/// The lookups of one run.
#[derive(Debug, Default)]
pub(super) struct RunLookups {
    /// The currency cache.
    lookups: Lookups,
    /// The customers found or created so far, by [`customer_key`].
    customers: Mutex<HashMap<String, Arc<Customer>>>,
}

impl RunLookups {
    /// The currencies found this run (the sink binds a mapping's currency through them).
    pub(super) fn currencies(&self) -> &Lookups {
        &self.lookups
    }

    /// The customer `account` names, if this run knows it.
    pub(super) fn known(&self, account: &Value) -> Option<Arc<Customer>> {
        lock(&self.customers).get(&customer_key(account)).cloned()
    }

    /// Remembers the customer `account` names.
    pub(super) fn remember(&self, account: &Value, customer: Customer) {
        lock(&self.customers).insert(customer_key(account), Arc::new(customer));
    }

    /// Binds the customer's account and its first contact in `columns`; answers the contacts
    /// `account` names, those not there yet planned.
    pub(super) fn plan_contacts(
        &self,
        customer: &Arc<Customer>,
        account: &Value,
        columns: &mut Map<String, Value>,
    ) -> Contacts {
        columns.insert(
            "customerid_account@odata.bind".into(),
            json!(format!("/accounts({})", customer.account_id)),
        );
        let mut contacts = Contacts::default();
        for contact in account["contact_customer_accounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (id, new) = plan_contact(customer, contact);
            contacts.ids.push(id);
            contacts.new.extend(new);
        }
        if let Some(first) = contacts.ids.first() {
            columns.insert(
                "parentcontactid@odata.bind".into(),
                json!(format!("/contacts({first})")),
            );
        }
        contacts
    }

    /// A planned contact that could not be created: a later referral naming it plans it again.
    pub(super) fn forget(&self, contact: &NewContact) {
        if let Some(email) = &contact.email {
            let mut known = lock(&contact.customer.contacts);
            if known.get(email) == Some(&contact.id) {
                known.remove(email);
            }
        }
    }
}

/// The id of `contact` under `customer`, and the contact to create when it is new.
fn plan_contact(customer: &Arc<Customer>, contact: &Value) -> (String, Option<NewContact>) {
    let email = contact["emailaddress1"]
        .as_str()
        .filter(|e| !e.trim().is_empty())
        .map(str::to_lowercase);
    // Looked up and planned under one lock, so two referrals never plan the same contact.
    let mut known = lock(&customer.contacts);
    if let Some(id) = email.as_ref().and_then(|e| known.get(e)) {
        return (id.clone(), None);
    }
    let id = new_uuid();
    if let Some(email) = &email {
        known.insert(email.clone(), id.clone());
    }
    let request = LookupRequest::create_contact(&id, contact, &customer.account_id);
    let new = NewContact {
        id: id.clone(),
        request,
        customer: customer.clone(),
        email,
    };
    (id, Some(new))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
