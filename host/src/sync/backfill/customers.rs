//! Finding or creating the accounts of a chunk's customers, all together: the customers this
//! run has not met yet are looked up (one query each, with the account's contacts, sent as a
//! `$batch` or one by one as the mode says), and the missing accounts created (ids chosen
//! here, so a contact can name its account before the answer). The run remembers each
//! customer, so no customer is looked up or created twice.

use super::Run;
use super::lookups::Customer;
use crate::sinks::dataverse::bulk_write::LookupRequest;
use crate::sinks::dataverse::lookups::customer_key;
use serde_json::Value;
use std::collections::HashMap;

impl Run<'_> {
    /// Resolves the customers of `accounts` (the objects the mappings wrote) this run does not
    /// know yet; answers why, for those that could not be, by [`customer_key`].
    pub(super) async fn resolve_customers<'v>(
        &self,
        accounts: impl Iterator<Item = &'v Value>,
    ) -> HashMap<String, String> {
        let mut unknown: HashMap<String, &Value> = HashMap::new();
        for account in accounts {
            if self.lookups.known(account).is_none() {
                unknown.entry(customer_key(account)).or_insert(account);
            }
        }
        let unknown: Vec<(String, &Value)> = unknown.into_iter().collect();
        let mut failed = HashMap::new();
        let queries: Vec<_> = unknown
            .iter()
            .map(|(_, a)| LookupRequest::find_account(a))
            .collect();
        let mut missing = Vec::new();
        for ((key, account), found) in unknown.iter().zip(self.send_all(&queries).await) {
            let row = found.map(|body| body.and_then(|b| b["value"].get(0).cloned()));
            match row {
                Ok(Some(row)) => match Customer::found(&row) {
                    Some(customer) => self.lookups.remember(account, customer),
                    None => {
                        failed.insert(key.clone(), "its account came without an id".into());
                    }
                },
                Ok(None) => missing.push((key, *account)),
                Err(reason) => {
                    failed.insert(key.clone(), format!("looking up its account: {reason}"));
                }
            }
        }
        let (ids, creates): (Vec<String>, Vec<_>) = missing
            .iter()
            .map(|(_, a)| LookupRequest::create_account(a))
            .unzip();
        let created = self.send_all(&creates).await;
        for (((key, account), id), result) in missing.iter().zip(ids).zip(created) {
            match result {
                Ok(_) => self.lookups.remember(account, Customer::created(id)),
                Err(reason) => {
                    failed.insert((*key).clone(), format!("creating its account: {reason}"));
                }
            }
        }
        failed
    }
}
