//! Rows every environment has (currencies, SDK messages and their filters), the cosell custom
//! columns of `docs/mapping.md`, and deterministic demo data.
//!
//! Choices: the base currency is USD (plus EUR, GBP, JPY, AUD, CAD); the "How can Microsoft
//! help?" option values are `100000000..=100000005`, as docs/mapping.md chose; demo data is
//! generated with SplitMix64 from the seed, so ids, names and amounts repeat exactly.

use super::records::Store;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn insert(store: &mut Store, entity: &str, id: Uuid, values: Value, now: &str) {
    let Value::Object(mut values) = values else {
        unreachable!("rows are objects")
    };
    values.entry("statecode").or_insert(json!(0));
    values.entry("statuscode").or_insert(json!(1));
    store.write(entity, id, values, true, now);
}

/// The currencies and SDK message rows; returns the base currency's id.
pub fn system_rows(store: &mut Store) -> Uuid {
    let now = super::records::timestamp(chrono::Utc::now());
    let mut base = Uuid::nil();
    for (i, (code, name, symbol, rate)) in [
        ("USD", "US Dollar", "$", 1.0),
        ("EUR", "Euro", "€", 0.92),
        ("GBP", "Pound Sterling", "£", 0.79),
        ("JPY", "Yen", "¥", 150.0),
        ("AUD", "Australian Dollar", "A$", 1.5),
        ("CAD", "Canadian Dollar", "CA$", 1.36),
    ]
    .into_iter()
    .enumerate()
    {
        let id = Uuid::from_u128(0x7c0_0000_0000_0000_0000_0000_0000 + i as u128);
        if i == 0 {
            base = id;
        }
        insert(
            store,
            "transactioncurrency",
            id,
            json!({"isocurrencycode": code, "currencyname": name, "currencysymbol": symbol, "exchangerate": rate}),
            &now,
        );
    }
    for message in [
        "Create", "Update", "Delete", "Win", "Lose", "SetState", "Assign",
    ] {
        let message_id = Uuid::new_v4();
        insert(
            store,
            "sdkmessage",
            message_id,
            json!({"name": message}),
            &now,
        );
        for table in ["opportunity", "account", "contact", "lead"] {
            if matches!(message, "Win" | "Lose") && table != "opportunity" {
                continue;
            }
            insert(
                store,
                "sdkmessagefilter",
                Uuid::new_v4(),
                json!({
                    "primaryobjecttypecode": table,
                    "sdkmessageid": {"id": message_id, "entity": "sdkmessage"},
                }),
                &now,
            );
        }
    }
    // The environment's Default solution (its publisher's prefix is `new`) and a `cosell`
    // solution whose publisher's prefix is `cosell`, which an operator would have created in
    // the maker portal before provisioning.
    for (solution, friendly, publisher, prefix) in [
        (
            DEFAULT_SOLUTION,
            "Default Solution",
            "DefaultPublisher",
            "new",
        ),
        ("cosell", "cosell", "cosell", "cosell"),
    ] {
        let publisher_id = Uuid::new_v4();
        insert(
            store,
            "publisher",
            publisher_id,
            json!({"uniquename": publisher, "friendlyname": publisher, "customizationprefix": prefix}),
            &now,
        );
        insert(
            store,
            "solution",
            Uuid::new_v4(),
            json!({"uniquename": solution, "friendlyname": friendly,
                   "publisherid": {"id": publisher_id, "entity": "publisher"}}),
            &now,
        );
    }
    store.pending.clear();
    base
}

/// The solution a Metadata API call without `MSCRM.SolutionUniqueName` works in.
pub const DEFAULT_SOLUTION: &str = "Default";

/// The Metadata API bodies of the cosell columns on opportunity: the definitions
/// `cosell dataverse provision` uses (`schema/dataverse-columns.json`).
pub fn cosell_columns() -> Vec<Value> {
    serde_json::from_str(include_str!("../../../schema/dataverse-columns.json"))
        .expect("schema/dataverse-columns.json is a JSON array")
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn uuid(&mut self) -> Uuid {
        let bytes = ((self.next() as u128) << 64) | self.next() as u128;
        uuid::Builder::from_random_bytes(bytes.to_be_bytes()).into_uuid()
    }
}

/// Writes the demo accounts, contacts and opportunities.
pub fn demo_data(
    store: &mut Store,
    accounts: usize,
    opportunities: usize,
    seed: u64,
    currency: Uuid,
    now: &str,
) {
    const FIRST: [&str; 8] = ["Ada", "Ben", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana"];
    const LAST: [&str; 8] = [
        "Lovelace", "Okafor", "Dubois", "Patel", "Schmidt", "Adeyemi", "Berg", "Sato",
    ];
    const NAMES: [&str; 8] = [
        "Contoso",
        "Fabrikam",
        "Northwind",
        "Tailspin",
        "Woodgrove",
        "Litware",
        "Adatum",
        "Proseware",
    ];
    const KINDS: [&str; 6] = ["Ltd", "GmbH", "Inc", "SAS", "KK", "Pty"];
    const PLACES: [(&str, &str, &str); 6] = [
        ("GB", "London", "EC1A 1BB"),
        ("DE", "Berlin", "10115"),
        ("US", "Seattle", "98101"),
        ("FR", "Paris", "75001"),
        ("JP", "Tokyo", "100-0001"),
        ("AU", "Sydney", "2000"),
    ];
    const DEALS: [&str; 6] = [
        "Migration",
        "Analytics platform",
        "Copilot rollout",
        "Security review",
        "Data estate",
        "Modern workplace",
    ];
    let mut rng = SplitMix(seed);
    let mut account_ids = Vec::new();
    for i in 0..accounts {
        let id = rng.uuid();
        let contact = rng.uuid();
        let (country, city, postal) = PLACES[rng.below(PLACES.len())];
        let name = format!("{} {} {}", NAMES[rng.below(8)], KINDS[rng.below(6)], i + 1);
        let (first, last) = (FIRST[rng.below(8)], LAST[rng.below(8)]);
        insert(
            store,
            "contact",
            contact,
            json!({
                "firstname": first, "lastname": last, "jobtitle": "IT Director",
                "emailaddress1": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), i + 1),
                "telephone1": format!("+1 555 01{:02}", i % 100),
            }),
            now,
        );
        let mut values = Map::new();
        values.insert("name".into(), json!(name));
        values.insert(
            "address1_line1".into(),
            json!(format!("{} Main Street", 1 + rng.below(200))),
        );
        values.insert("address1_city".into(), json!(city));
        values.insert("address1_postalcode".into(), json!(postal));
        values.insert("address1_country".into(), json!(country));
        values.insert(
            "primarycontactid".into(),
            json!({"id": contact, "entity": "contact"}),
        );
        insert(store, "account", id, Value::Object(values), now);
        let link = json!({"parentcustomerid": {"id": id, "entity": "account"}});
        let Value::Object(link) = link else {
            unreachable!()
        };
        store.write("contact", contact, link, false, now);
        account_ids.push((id, contact));
    }
    for i in 0..opportunities {
        let id = rng.uuid();
        let value = 1_000 * (5 + rng.below(500)) as i64;
        let date = chrono::NaiveDate::from_ymd_opt(
            2027,
            1 + rng.below(12) as u32,
            1 + rng.below(28) as u32,
        )
        .expect("valid date");
        let mut row = json!({
            "name": format!("{} {}", DEALS[rng.below(DEALS.len())], i + 1),
            "estimatedvalue": value,
            "estimatedclosedate": date.format("%Y-%m-%d").to_string(),
            "description": "Demo opportunity",
            "transactioncurrencyid": {"id": currency, "entity": "transactioncurrency"},
        });
        if !account_ids.is_empty() {
            let (account, contact) = account_ids[rng.below(account_ids.len())];
            row["customerid"] = json!({"id": account, "entity": "account"});
            row["parentaccountid"] = json!({"id": account, "entity": "account"});
            row["parentcontactid"] = json!({"id": contact, "entity": "contact"});
        }
        insert(store, "opportunity", id, row, now);
    }
}
