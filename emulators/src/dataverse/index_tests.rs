//! Tests of the equality indexes ([`super::index`]): the indexed store must answer exactly
//! what a scan answers: the same queries and key lookups run against two stores given the same
//! writes, one with the indexes off.
//!
//! A module of its own, not `index`'s tests: they drive the store through the Web API's
//! router ([`super::handlers::execute`]), which sits far above the index; from here, a module
//! nothing depends on, that does not make the index import its own users.

use super::api::{ApiRequest, ApiResponse, Ctx};
use super::handlers::execute;
use super::query::encode;
use super::records::Store;
use super::schema::Schema;
use axum::http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};
use uuid::Uuid;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn ctx() -> Ctx {
    Ctx {
        base: "http://dv.test/api/data/v9.2/".into(),
        now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        base_currency: Uuid::nil(),
        user_id: Uuid::nil(),
        business_unit_id: Uuid::nil(),
        organization_id: Uuid::nil(),
        change_tracking_expiry: chrono::Duration::days(7),
        bulk_messages: true,
    }
}

fn request(method: Method, path: &str, query: &str, body: Option<Value>) -> ApiRequest {
    let mut headers = HeaderMap::new();
    headers.insert("prefer", HeaderValue::from_static("odata.maxpagesize=4"));
    ApiRequest {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    }
}

/// Runs `request` on both stores and checks they answer alike; returns the answer.
fn both(stores: &mut [Store; 2], request: &ApiRequest) -> ApiResponse {
    let ctx = ctx();
    let indexed = execute(&mut stores[0], &ctx, request);
    let scanned = execute(&mut stores[1], &ctx, request);
    for store in stores.iter_mut() {
        store.pending.clear();
    }
    assert_eq!(indexed.status, scanned.status, "{request:?}");
    assert_eq!(indexed.body, scanned.body, "{request:?}");
    assert_eq!(indexed.headers, scanned.headers, "{request:?}");
    indexed
}

/// Queries `query` page by page on both stores; returns the rows of every page.
fn query_all(stores: &mut [Store; 2], query: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut query = query.to_owned();
    for _ in 0..100 {
        let answer = both(stores, &request(Method::GET, "accounts", &query, None));
        let Some(body) = answer.body else {
            return rows;
        };
        rows.extend(body["value"].as_array().cloned().unwrap_or_default());
        match body["@odata.nextLink"].as_str() {
            Some(next) => query = next.split_once('?').unwrap().1.to_owned(),
            None => return rows,
        }
    }
    panic!("more than 100 pages");
}

const NAMES: [&str; 6] = [
    "Contoso", "contoso", "CONTOSO", "Fabrikam", "Tailspin", "o'Neil",
];

fn comparison(rng: &mut Rng, ids: &[Uuid]) -> String {
    let id = ids
        .get(rng.below(ids.len().max(1)))
        .copied()
        .unwrap_or_default();
    let guid = match rng.below(2) {
        0 => id.to_string(),
        _ => id.to_string().to_uppercase(),
    };
    let name = rng.pick(&NAMES).replace('\'', "''");
    let number = rng.below(5);
    match rng.below(9) {
        0 | 1 => format!("name eq '{name}'"),
        2 => format!("accountnumber eq 'a{}'", rng.below(8)),
        3 => format!("accountnumber eq {}", rng.pick(&["null", "'A1'", "'a1'"])),
        4 => format!(
            "numberofemployees eq {}",
            rng.pick(&["1", "2.0", "3", "null", "-0"])
        ),
        5 => format!("_parentaccountid_value eq {guid}"),
        6 => format!("accountid eq {guid}"),
        7 => format!("numberofemployees gt {number}"),
        _ => format!("contains(name,'{}')", rng.pick(&["o", "Con", "z"])),
    }
}

fn filter(rng: &mut Rng, ids: &[Uuid]) -> String {
    let a = comparison(rng, ids);
    let b = comparison(rng, ids);
    let c = comparison(rng, ids);
    match rng.below(7) {
        0 | 1 => a,
        2 => format!("{a} and {b}"),
        3 => format!("{a} or {b}"),
        4 => format!("not {a}"),
        5 => format!("({a} or {b}) and {c}"),
        _ => format!("{a} and ({b} or {c})"),
    }
}

fn options(rng: &mut Rng, filter: &str) -> String {
    let mut query = vec![format!("$filter={}", encode(filter))];
    if rng.below(2) == 0 {
        let order = rng.pick(&[
            "name",
            "name desc,numberofemployees",
            "numberofemployees desc",
        ]);
        query.push(format!("$orderby={}", encode(order)));
    }
    if rng.below(3) == 0 {
        query.push(format!("$top={}", 1 + rng.below(6)));
    }
    if rng.below(3) == 0 {
        query.push("$select=name,accountnumber".into());
    }
    if rng.below(3) == 0 {
        query.push("$count=true".into());
    }
    if rng.below(3) == 0 {
        query.push("$expand=contact_customer_accounts($select=lastname)".into());
    }
    query.join("&")
}

/// A random write, the same on both stores: create (with a chosen id), update, delete, or
/// a change set that is rolled back.
fn mutate(rng: &mut Rng, stores: &mut [Store; 2], ids: &mut Vec<Uuid>) {
    let mut body = json!({});
    if rng.below(4) != 0 {
        body["name"] = json!(rng.pick(&NAMES));
    }
    match rng.below(4) {
        0 => body["accountnumber"] = Value::Null,
        1 => {}
        _ => body["accountnumber"] = json!(format!("{}{}", rng.pick(&["a", "A"]), rng.below(8))),
    }
    if rng.below(3) != 0 {
        body["numberofemployees"] = json!(rng.below(5));
    }
    if !ids.is_empty() && rng.below(3) == 0 {
        let parent = ids[rng.below(ids.len())];
        body["parentaccountid@odata.bind"] = json!(format!("/accounts({parent})"));
    }
    let target = (!ids.is_empty()).then(|| ids[rng.below(ids.len())]);
    if let Some(account) = target.filter(|_| rng.below(4) == 0) {
        // A contact of an account (what `$expand=contact_customer_accounts` reads).
        let contact = json!({
            "lastname": rng.pick(&NAMES),
            "parentcustomerid_account@odata.bind": format!("/accounts({account})"),
            "contactid": Uuid::from_u128(u128::from(rng.next())),
        });
        both(
            stores,
            &request(Method::POST, "contacts", "", Some(contact)),
        );
        return;
    }
    match (rng.below(10), target) {
        (0..=4, _) | (_, None) => {
            let id = Uuid::from_u128(u128::from(rng.next()) << 64 | u128::from(rng.next()));
            body["accountid"] = json!(id);
            if both(stores, &request(Method::POST, "accounts", "", Some(body))).is_success() {
                ids.push(id);
            }
        }
        (5..=7, Some(id)) => {
            both(
                stores,
                &request(Method::PATCH, &format!("accounts({id})"), "", Some(body)),
            );
        }
        (8, Some(id)) => {
            both(
                stores,
                &request(Method::DELETE, &format!("accounts({id})"), "", None),
            );
            ids.retain(|other| *other != id);
        }
        (_, Some(id)) => {
            for store in stores.iter_mut() {
                store.begin();
            }
            both(
                stores,
                &request(Method::PATCH, &format!("accounts({id})"), "", Some(body)),
            );
            for store in stores.iter_mut() {
                store.rollback();
            }
        }
    }
}

#[test]
fn random_filters_answer_exactly_what_a_scan_answers() {
    let mut indexed = Store::new(Schema::builtin());
    indexed
        .add_alternate_key("account", vec!["accountnumber".into()])
        .unwrap();
    let mut scanned = indexed.clone();
    scanned.set_eq_index(false);
    let mut stores = [indexed, scanned];
    let mut rng = Rng(0x5eed_1de5);
    let mut ids = Vec::new();
    let (mut matched, mut expanded) = (0, 0);
    for round in 0..600 {
        mutate(&mut rng, &mut stores, &mut ids);
        if round % 2 == 0 {
            let filter = filter(&mut rng, &ids);
            let query = options(&mut rng, &filter);
            let rows = query_all(&mut stores, &query);
            matched += rows.len();
            expanded += rows
                .iter()
                .map(|r| {
                    r["contact_customer_accounts"]
                        .as_array()
                        .map_or(0, Vec::len)
                })
                .sum::<usize>();
        } else {
            // Alternate-key addressing (case-sensitive, unlike `$filter`).
            let key = format!(
                "accounts(accountnumber='{}{}')",
                rng.pick(&["a", "A"]),
                rng.below(8)
            );
            both(
                &mut stores,
                &request(Method::GET, &key, "$select=name", None),
            );
        }
    }
    assert!(ids.len() > 20, "the table grew: {}", ids.len());
    assert!(matched > 200, "the filters matched rows: {matched}");
    assert!(expanded > 20, "the expands found contacts: {expanded}");
}

#[test]
fn an_eq_uses_the_index_and_other_filters_scan() {
    use super::query::parse_filter;
    let mut store = Store::new(Schema::builtin());
    let ctx = ctx();
    for (n, name) in ["Contoso", "CONTOSO", "Fabrikam"].iter().enumerate() {
        let body = json!({"name": name, "accountid": Uuid::from_u128(n as u128 + 1)});
        let created = execute(
            &mut store,
            &ctx,
            &request(Method::POST, "accounts", "", Some(body)),
        );
        assert!(created.is_success());
    }
    let def = store.def("account").clone();
    let candidates = |store: &Store, f: &str| {
        store
            .filter_candidates(&def, &parse_filter(&def, f).unwrap())
            .map(|ids| ids.len())
    };
    assert_eq!(
        candidates(&store, "name eq 'contoso'"),
        Some(2),
        "ASCII case ignored"
    );
    assert_eq!(candidates(&store, "name eq 'Nope'"), Some(0));
    assert_eq!(
        candidates(&store, "name eq 'Fabrikam' and contains(name,'a')"),
        Some(1)
    );
    assert_eq!(
        candidates(&store, "name eq 'Fabrikam' or name eq 'contoso'"),
        Some(3)
    );
    assert_eq!(
        candidates(&store, "accountnumber eq null"),
        Some(3),
        "missing is null"
    );
    assert_eq!(
        candidates(&store, "name eq 'Fabrikam' or contains(name,'a')"),
        None
    );
    assert_eq!(candidates(&store, "name ne 'Fabrikam'"), None);
    // A delete and an update keep the index true.
    let fabrikam = Uuid::from_u128(3);
    store.delete("account", &fabrikam);
    assert_eq!(candidates(&store, "name eq 'Fabrikam'"), Some(0));
    let patch = json!({"name": "Fabrikam"});
    let path = format!("accounts({})", Uuid::from_u128(1));
    assert!(
        execute(
            &mut store,
            &ctx,
            &request(Method::PATCH, &path, "", Some(patch))
        )
        .is_success()
    );
    assert_eq!(candidates(&store, "name eq 'contoso'"), Some(1));
    assert_eq!(candidates(&store, "name eq 'fabrikam'"), Some(1));
}
