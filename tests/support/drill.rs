//! The reliability drills' workload and their verdict: a seeded stream of creates and updates
//! from both sides (Microsoft sellers in Partner Center, the partner's sellers in the CRM),
//! remembered as the last writer left each field, and the check that every change reached the
//! other side exactly once: no record missing, none duplicated (referrals, opportunities,
//! accounts and contacts counted apart), no update lost.
//!
//! Each field has one writer, so "as the last writer left it" is well defined even while
//! both sides change the same record: Microsoft changes a referral's deal value; the seller
//! changes the description of every opportunity and the estimated value of their own.

use super::sync_env::SyncEnv;
use cosell::connections::dataverse::DataverseError;
use cosell::sinks::partner_center::targets_microsoft;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// The notes of every referral Microsoft creates (the emulator's template).
const TEMPLATE_NOTES: &str = "Customer asked for help with a Dynamics 365 Sales rollout.";

/// Customers the CRM knows (created by [`Drill::new`]), with their postal codes.
const KNOWN_CUSTOMERS: [(&str, &str); 4] = [
    ("Known Drill 0", "98000"),
    ("Known Drill 1", "98001"),
    ("Known Drill 2", "98002"),
    ("Known Drill 3", "98003"),
];

/// Customers Microsoft's referrals name that the CRM does not know yet: cosell creates each
/// account once, however many referrals name it at the same time.
const NEW_CUSTOMERS: [(&str, &str); 3] = [
    ("Fabrikam Drill", "98101"),
    ("Woodgrove Drill", "98102"),
    ("Proseware Drill", "98103"),
];

/// A referral Microsoft created, and what the seller did to its opportunity.
struct FromMicrosoft {
    referral: String,
    deal_value: i64,
    /// The description the seller gave its opportunity last, if any.
    description: Option<String>,
    customer: &'static str,
}

/// An opportunity the seller created with Sync = Yes.
struct FromSeller {
    opportunity: String,
    name: String,
    value: i64,
    description: String,
}

/// What the drill sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub referrals_created: usize,
    pub referrals_updated: usize,
    pub opportunities_created: usize,
    pub opportunities_updated: usize,
}

impl Sent {
    pub fn total(&self) -> usize {
        self.referrals_created
            + self.referrals_updated
            + self.opportunities_created
            + self.opportunities_updated
    }
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} changes sent ({} referrals created and {} updated by Microsoft, {} opportunities created and {} updated by sellers)",
            self.total(),
            self.referrals_created,
            self.referrals_updated,
            self.opportunities_created,
            self.opportunities_updated
        )
    }
}

/// The comparison of both sides with what the drill sent.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Records compared (each one a referral and its opportunity).
    pub compared: usize,
    /// Records without their counterpart on the other side.
    pub missing: Vec<String>,
    /// Records with more than one counterpart, and accounts or contacts created twice.
    pub duplicates: Vec<String>,
    /// Rows more than there should be, by kind.
    pub duplicated: Duplicated,
    /// Fields that do not hold the last writer's value.
    pub stale: Vec<String>,
}

/// Rows made more than once, by kind: the second and later copies of a referral of a seller's
/// opportunity (either half of a co-sell pair), of an opportunity of a referral, of an account
/// (same name and postal code) and of a contact (same account, and same email or name).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Duplicated {
    pub referrals: usize,
    pub opportunities: usize,
    pub accounts: usize,
    pub contacts: usize,
}

impl Duplicated {
    pub fn total(&self) -> usize {
        self.referrals + self.opportunities + self.accounts + self.contacts
    }
}

impl fmt::Display for Duplicated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "duplicated referrals = {}, opportunities = {}, accounts = {}, contacts = {}",
            self.referrals, self.opportunities, self.accounts, self.contacts
        )
    }
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.missing.is_empty() && self.duplicates.is_empty() && self.stale.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records compared, losses = {}, duplicates = {} ({}), stale fields = {}",
            self.compared,
            self.missing.len(),
            self.duplicates.len(),
            self.duplicated,
            self.stale.len()
        )
    }
}

/// The workload and what it expects.
pub struct Drill {
    rng: StdRng,
    /// (account, contact) of the customers the CRM knows.
    customers: Vec<(String, String)>,
    from_microsoft: Vec<FromMicrosoft>,
    from_seller: Vec<FromSeller>,
    pub sent: Sent,
}

/// Retries a seller's action until it succeeds: the seller's own calls meet the injected
/// faults too, and a person would simply try again. Reads and updates can be repeated; creates
/// go through [`seller_create`], which names its row so that trying again never makes a second
/// one (a drill may lose the answers of applied writes).
pub async fn persist<T, E: fmt::Display, F, Fut>(what: &str, mut action: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut last = String::new();
    for _ in 0..60 {
        match action().await {
            Ok(value) => return value,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} kept failing: {last}")
}

/// A seller's create of a row of `set`, tried until it is done, exactly once: its id is chosen
/// before the first try, and a later try that finds the row there (412) knows an earlier one
/// made it.
pub async fn seller_create(env: &SyncEnv, set: &str, body: &Value) -> String {
    let id = cosell::domain::ids::new_uuid();
    persist("a seller's create", || async {
        match env.seller.create_with_id(set, &id, body).await {
            Err(DataverseError::PreconditionFailed(_)) => Ok(id.clone()),
            other => other,
        }
    })
    .await
}

impl Drill {
    /// A drill seeded with `seed`; creates the CRM's known customers.
    pub async fn new(env: &SyncEnv, seed: u64) -> Self {
        let mut customers = Vec::new();
        for (i, (name, postal)) in KNOWN_CUSTOMERS.into_iter().enumerate() {
            let account = json!({"name": name, "address1_postalcode": postal,
                                 "address1_country": "US", "address1_city": "Redmond"});
            let account = seller_create(env, "accounts", &account).await;
            let contact = json!({"firstname": "Dana", "lastname": format!("Buyer {i}"),
                                 "emailaddress1": format!("dana{i}@known.example"),
                                 "parentcustomerid_account@odata.bind": format!("/accounts({account})")});
            let contact = seller_create(env, "contacts", &contact).await;
            customers.push((account, contact));
        }
        Self {
            rng: StdRng::seed_from_u64(seed),
            customers,
            from_microsoft: Vec::new(),
            from_seller: Vec::new(),
            sent: Sent::default(),
        }
    }

    /// Records so far (each expected as one referral and one opportunity).
    pub fn records(&self) -> usize {
        self.from_microsoft.len() + self.from_seller.len()
    }

    /// One change from one side, chosen at random.
    pub async fn step(&mut self, env: &SyncEnv) {
        let roll = self.rng.random_range(0..100);
        if self.from_microsoft.is_empty() || roll < 30 {
            self.microsoft_creates(env);
        } else if self.from_seller.is_empty() || roll < 60 {
            self.seller_creates(env).await;
        } else if roll < 75 {
            self.microsoft_updates(env);
        } else if roll < 90 {
            self.seller_updates_own(env).await;
        } else {
            self.seller_updates_microsofts(env).await;
        }
    }

    /// One change by a Microsoft seller, chosen at random: what can still happen while the
    /// partner's Dataverse is down (its sellers cannot reach it either).
    pub fn microsoft_step(&mut self, env: &SyncEnv) {
        if self.from_microsoft.is_empty() || self.rng.random_bool(0.6) {
            self.microsoft_creates(env);
        } else {
            self.microsoft_updates(env);
        }
    }

    fn microsoft_creates(&mut self, env: &SyncEnv) {
        let n = self.from_microsoft.len();
        let deal_value = 10_000 + 100 * self.rng.random_range(0..500);
        // Mostly customers the CRM knows; some it does not, named by several referrals.
        let (customer, postal) = if self.rng.random_bool(0.7) {
            KNOWN_CUSTOMERS[self.rng.random_range(0..KNOWN_CUSTOMERS.len())]
        } else {
            NEW_CUSTOMERS[self.rng.random_range(0..NEW_CUSTOMERS.len())]
        };
        let referral = env.pc.microsoft().create_incoming(json!({
            "name": format!("Drill referral {n}"),
            "customerProfile": {"name": customer, "address": {"postalCode": postal, "country": "US"}},
            "details": {"dealValue": deal_value, "currency": "USD"}
        }));
        self.from_microsoft.push(FromMicrosoft {
            referral: referral["id"].as_str().unwrap().to_owned(),
            deal_value,
            description: None,
            customer,
        });
        self.sent.referrals_created += 1;
    }

    fn microsoft_updates(&mut self, env: &SyncEnv) {
        let i = self.rng.random_range(0..self.from_microsoft.len());
        let deal_value = 10_000 + 100 * self.rng.random_range(0..500);
        let record = &mut self.from_microsoft[i];
        env.pc
            .microsoft()
            .update(
                &record.referral,
                json!({"details": {"dealValue": deal_value}}),
            )
            .expect("Microsoft's edit applies");
        record.deal_value = deal_value;
        self.sent.referrals_updated += 1;
    }

    async fn seller_creates(&mut self, env: &SyncEnv) {
        let n = self.from_seller.len();
        let (account, contact) = self.customers[n % self.customers.len()].clone();
        let name = format!("Drill opportunity {n}");
        let value = 1_000 * self.rng.random_range(1..200);
        let description = format!("Seats: {}", self.rng.random_range(10..900));
        let body = json!({
            "name": name,
            "estimatedvalue": value,
            "description": description,
            "estimatedclosedate": "2027-03-31",
            "customerid_account@odata.bind": format!("/accounts({account})"),
            "parentcontactid@odata.bind": format!("/contacts({contact})"),
            "cosell_syncwithpartnercenter": true,
            "cosell_products": "SOL-1234",
        });
        let opportunity = seller_create(env, "opportunities", &body).await;
        self.from_seller.push(FromSeller {
            opportunity,
            name,
            value,
            description,
        });
        self.sent.opportunities_created += 1;
    }

    async fn seller_updates_own(&mut self, env: &SyncEnv) {
        let i = self.rng.random_range(0..self.from_seller.len());
        let value = 1_000 * self.rng.random_range(1..200);
        let description = format!("Seats: {}", self.rng.random_range(10..900));
        let record = &mut self.from_seller[i];
        let change = json!({"estimatedvalue": value, "description": description});
        persist("the seller's update", || {
            env.seller
                .update("opportunities", &record.opportunity, &change, None)
        })
        .await;
        record.value = value;
        record.description = description;
        self.sent.opportunities_updated += 1;
    }

    /// The seller edits the description of a Microsoft referral's opportunity, once cosell has
    /// created it (a seller cannot edit what they cannot see yet).
    async fn seller_updates_microsofts(&mut self, env: &SyncEnv) {
        let i = self.rng.random_range(0..self.from_microsoft.len());
        let description = format!("Partner notes {}", self.rng.random_range(0..1_000_000));
        let referral = self.from_microsoft[i].referral.clone();
        let Some(opportunity) = opportunities_of(env, &referral).await.into_iter().next() else {
            return;
        };
        let id = opportunity["opportunityid"].as_str().unwrap().to_owned();
        let change = json!({"description": description});
        persist("the seller's update", || {
            env.seller.update("opportunities", &id, &change, None)
        })
        .await;
        self.from_microsoft[i].description = Some(description);
        self.sent.opportunities_updated += 1;
    }

    /// Compares both sides with what was sent.
    pub async fn verdict(&self, env: &SyncEnv) -> Verdict {
        let opportunities: Vec<Value> = persist("reading the opportunities", || {
            env.seller.query(
                "opportunities",
                "$select=opportunityid,name,estimatedvalue,description,cosell_referralidentifier",
            )
        })
        .await;
        let referrals = env.pc.referrals();
        let mut verdict = Verdict::default();
        let mut by_referral: HashMap<&str, Vec<&Value>> = HashMap::new();
        for o in &opportunities {
            if let Some(rid) = o["cosell_referralidentifier"].as_str() {
                by_referral.entry(rid).or_default().push(o);
            }
        }
        for record in &self.from_microsoft {
            verdict.compared += 1;
            let rid = record.referral.as_str();
            let found = by_referral.get(rid).map(Vec::as_slice).unwrap_or(&[]);
            let opportunity = match found {
                [] => {
                    verdict
                        .missing
                        .push(format!("referral {rid} has no opportunity"));
                    continue;
                }
                [one] => one,
                more => {
                    verdict
                        .duplicates
                        .push(format!("referral {rid} has {} opportunities", more.len()));
                    verdict.duplicated.opportunities += more.len() - 1;
                    continue;
                }
            };
            let referral = env.pc.referral(rid).expect("the referral exists");
            if opportunity["estimatedvalue"].as_f64() != Some(record.deal_value as f64) {
                verdict.stale.push(format!(
                    "referral {rid}: estimatedvalue {} but Microsoft set {}",
                    opportunity["estimatedvalue"], record.deal_value
                ));
            }
            let notes = record.description.as_deref().unwrap_or(TEMPLATE_NOTES);
            if opportunity["description"] != notes {
                verdict.stale.push(format!(
                    "referral {rid}: description {} but {notes:?} is the last one written",
                    opportunity["description"]
                ));
            }
            if referral["details"]["notes"] != notes {
                verdict.stale.push(format!(
                    "referral {rid}: notes {} but the seller wrote {notes:?}",
                    referral["details"]["notes"]
                ));
            }
        }
        for record in &self.from_seller {
            verdict.compared += 1;
            let oid = record.opportunity.as_str();
            let (microsoft_halves, halves): (Vec<&Value>, Vec<&Value>) = referrals
                .iter()
                .filter(|r| r["externalReferenceId"] == oid)
                .partition(|r| targets_microsoft(r));
            if microsoft_halves.len() > 1 {
                verdict.duplicates.push(format!(
                    "opportunity {oid} has {} Microsoft-targeted referrals",
                    microsoft_halves.len()
                ));
                verdict.duplicated.referrals += microsoft_halves.len() - 1;
            }
            let referral = match halves.as_slice() {
                [] => {
                    verdict
                        .missing
                        .push(format!("opportunity {oid} has no referral"));
                    continue;
                }
                [one] => *one,
                more => {
                    verdict
                        .duplicates
                        .push(format!("opportunity {oid} has {} referrals", more.len()));
                    verdict.duplicated.referrals += more.len() - 1;
                    continue;
                }
            };
            let opportunity = opportunities.iter().find(|o| o["opportunityid"] == oid);
            if opportunity.and_then(|o| o["cosell_referralidentifier"].as_str())
                != referral["id"].as_str()
            {
                verdict.stale.push(format!(
                    "opportunity {oid}: the referral id is not written back"
                ));
            }
            if referral["name"] != record.name.as_str() {
                verdict.stale.push(format!(
                    "opportunity {oid}: referral name {}",
                    referral["name"]
                ));
            }
            if referral["details"]["dealValue"].as_f64() != Some(record.value as f64) {
                verdict.stale.push(format!(
                    "opportunity {oid}: dealValue {} but the seller set {}",
                    referral["details"]["dealValue"], record.value
                ));
            }
            if referral["details"]["notes"] != record.description.as_str() {
                verdict.stale.push(format!(
                    "opportunity {oid}: notes {} but the seller wrote {:?}",
                    referral["details"]["notes"], record.description
                ));
            }
        }
        // Nothing else was created: one opportunity per record, one account per customer, one
        // contact per person of a customer.
        let extra = opportunities.len() as i64 - self.records() as i64;
        if extra > 0 {
            verdict
                .duplicates
                .push(format!("{extra} opportunities more than records"));
            verdict.duplicated.opportunities = verdict.duplicated.opportunities.max(extra as usize);
        }
        let accounts: Vec<Value> = persist("reading the accounts", || {
            env.seller
                .query("accounts", "$select=accountid,name,address1_postalcode")
        })
        .await;
        for (customer, copies) in copies(&accounts, |a| {
            format!("{} {}", a["name"], a["address1_postalcode"])
        }) {
            verdict
                .duplicates
                .push(format!("{copies} accounts of customer {customer}"));
            verdict.duplicated.accounts += copies - 1;
        }
        let contacts: Vec<Value> = persist("reading the contacts", || {
            env.seller.query(
                "contacts",
                "$select=firstname,lastname,emailaddress1,_parentcustomerid_value",
            )
        })
        .await;
        for (person, copies) in copies(&contacts, |c| match c["emailaddress1"].as_str() {
            Some(email) => format!("{} {email}", c["_parentcustomerid_value"]),
            None => format!(
                "{} {} {}",
                c["_parentcustomerid_value"], c["firstname"], c["lastname"]
            ),
        }) {
            verdict
                .duplicates
                .push(format!("{copies} contacts {person}"));
            verdict.duplicated.contacts += copies - 1;
        }
        verdict
    }

    /// Waits until both sides agree with what was sent and the host's queue is empty, or
    /// `limit` passes.
    pub async fn settle(&self, env: &SyncEnv, limit: Duration) -> Settled {
        let started = Instant::now();
        loop {
            let queue = env.admin_get("/admin/v1/queue").await;
            let idle = queue["pending"] == 0 && queue["running"] == 0;
            let verdict = self.verdict(env).await;
            if (idle && verdict.clean()) || started.elapsed() > limit {
                return Settled {
                    verdict,
                    queue,
                    took: started.elapsed(),
                };
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Where a drill ended.
pub struct Settled {
    pub verdict: Verdict,
    /// The host's queue counts (`/admin/v1/queue`).
    pub queue: Value,
    /// How long after the last change it took.
    pub took: Duration,
}

impl Settled {
    /// Both sides agree with what was sent, and nothing is left to do or dead.
    pub fn clean(&self) -> bool {
        self.verdict.clean()
            && self.queue["pending"] == 0
            && self.queue["running"] == 0
            && self.queue["dead"] == 0
    }
}

impl fmt::Display for Settled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; queue {} pending, {} dead; settled {:.1} s after the last change",
            self.verdict,
            self.queue["pending"],
            self.queue["dead"],
            self.took.as_secs_f64()
        )
    }
}

/// The keys `key` gives more than one of `rows`, and how many rows have each.
fn copies(rows: &[Value], key: impl Fn(&Value) -> String) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for row in rows {
        *counts.entry(key(row)).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

/// The opportunities that carry `referral`'s id.
async fn opportunities_of(env: &SyncEnv, referral: &str) -> Vec<Value> {
    let filter = format!("$select=opportunityid&$filter=cosell_referralidentifier eq '{referral}'");
    persist("reading an opportunity", || {
        env.seller.query("opportunities", &filter)
    })
    .await
}
