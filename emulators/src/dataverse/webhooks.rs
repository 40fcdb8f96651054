//! Webhooks as Dataverse registers and sends them (§5): a `serviceendpoint` row
//! (`contract` 8 = Webhook, `url`, `authtype` 4 WebhookKey / 5 HttpHeader / 6 HttpQueryString,
//! `authvalue`) and `sdkmessageprocessingstep` rows (`eventhandler_serviceendpoint@odata.bind`,
//! `sdkmessageid@odata.bind` → `/sdkmessages(<id>)` of `Create`/`Update`/…, optional
//! `sdkmessagefilterid@odata.bind` → the filter of the table, `filteringattributes`, `mode`,
//! `stage`), all created through the Web API. The `sdkmessages` and `sdkmessagefilters` rows are
//! seeded; find them with `$filter=name eq 'Create'` and
//! `$filter=primaryobjecttypecode eq 'opportunity' and _sdkmessageid_value eq <id>`.
//!
//! A committed write that matches an enabled step becomes a POST of a `RemoteExecutionContext`
//! (§5.4, §5b) with the headers `x-request-id`, `x-ms-dynamics-organization`,
//! `x-ms-dynamics-entity-name`, `x-ms-dynamics-request-name`, `x-ms-correlation-request-id`
//! (§5.3), sent by a background task with the configured timeout (60 s) and one more attempt
//! after a 502/503/504 (§5.5). Faults: [`Faults::for_delivery`] drops or duplicates a delivery,
//! [`Faults::order_deliveries`] shuffles the deliveries waiting together.
//!
//! `authvalue` is read as the Plugin Registration Tool stores it,
//! `<settings><setting name="k" value="v" /></settings>`, or as a JSON object `{"k": "v"}`.
//! Choices where the reference stops: every step is delivered asynchronously after the write
//! commits, whatever its `mode` (a failing synchronous step does not roll the write back);
//! failed deliveries are not recorded as system jobs; deliveries go one at a time in order;
//! Money/OptionSetValue attribute values use the SDK's `__type` encoding
//! (`Money:…`, `OptionSetValue:…` with `Value`), dates the WCF `/Date(ms)/` form.

use super::records::{Store, WriteEvent};
use super::schema::ColumnKind;
use crate::common::faults::{DeliveryFault, Faults};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::time::Duration;
use uuid::Uuid;

const CONTRACTS: &str = "http://schemas.microsoft.com/xrm/2011/Contracts";

/// One POST to make.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// Who the emulated organisation is, for the context and headers.
#[derive(Debug, Clone)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub domain: String,
    pub user_id: Uuid,
    pub business_unit_id: Uuid,
}

fn settings(authvalue: &str) -> Vec<(String, String)> {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(authvalue) {
        return map
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or(v.to_string())))
            .collect();
    }
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    authvalue
        .split("<setting ")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect()
}

fn add_query(url: &str, pairs: &[(String, String)]) -> String {
    let mut url = url.to_owned();
    for (k, v) in pairs {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!(
            "{}={}",
            super::query::encode(k),
            super::query::encode(v)
        ));
    }
    url
}

fn wcf_date(value: &str) -> Value {
    let parsed = DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        });
    match parsed {
        Ok(d) => json!(format!("/Date({})/", d.timestamp_millis())),
        Err(_) => json!(value),
    }
}

fn entity_reference(id: &Value, entity: &Value) -> Value {
    json!({
        "__type": format!("EntityReference:{CONTRACTS}"),
        "Id": id, "KeyAttributes": [], "LogicalName": entity, "Name": null, "RowVersion": null,
    })
}

fn attributes(store: &Store, event: &WriteEvent) -> Vec<Value> {
    let def = store.def(&event.entity);
    event
        .attributes
        .iter()
        .map(|(key, value)| {
            let kind = def.column(key).map(|c| &c.kind);
            let value = match (kind, value) {
                (_, Value::Null) => Value::Null,
                (Some(ColumnKind::Lookup { .. }), Value::Object(o)) => entity_reference(
                    o.get("id").unwrap_or(&Value::Null),
                    o.get("entity").unwrap_or(&Value::Null),
                ),
                (Some(ColumnKind::Money), v) => {
                    json!({"__type": format!("Money:{CONTRACTS}"), "Value": v})
                }
                (Some(ColumnKind::Picklist { .. } | ColumnKind::State | ColumnKind::Status), v) => {
                    json!({"__type": format!("OptionSetValue:{CONTRACTS}"), "Value": v})
                }
                (Some(ColumnKind::DateOnly | ColumnKind::DateTime), Value::String(s)) => {
                    wcf_date(s)
                }
                (_, v) => v.clone(),
            };
            json!({"key": key, "value": value})
        })
        .collect()
}

fn row<'a>(
    store: &'a Store,
    entity: &str,
    lookup: Option<&Value>,
) -> Option<&'a Map<String, Value>> {
    let id = lookup?.get("id")?.as_str()?;
    Some(&store.get(entity, &Uuid::parse_str(id).ok()?)?.values)
}

/// The `InputParameters` of a Win or Lose: the `OpportunityClose` entity (its `opportunityid`
/// a reference to the opportunity) and the `Status` it was closed with.
fn close_inputs(event: &WriteEvent) -> Value {
    let status = event
        .attributes
        .get("statuscode")
        .cloned()
        .unwrap_or(Value::Null);
    let mut attributes = vec![
        json!({"key": "opportunityid", "value": entity_reference(&json!(event.id), &json!("opportunity"))}),
        json!({"key": "subject", "value": format!("Opportunity {}", event.message)}),
    ];
    if let Some(revenue) = event.attributes.get("actualvalue") {
        attributes.push(json!({"key": "actualrevenue", "value": {"__type": format!("Money:{CONTRACTS}"), "Value": revenue}}));
    }
    json!([
        {"key": "OpportunityClose", "value": {
            "__type": format!("Entity:{CONTRACTS}"),
            "Attributes": attributes,
            "EntityState": null, "FormattedValues": [], "Id": Uuid::nil(), "KeyAttributes": [],
            "LogicalName": "opportunityclose", "RelatedEntities": [], "RowVersion": null,
        }},
        {"key": "Status", "value": {"__type": format!("OptionSetValue:{CONTRACTS}"), "Value": status}},
    ])
}

/// The deliveries a committed write causes.
pub fn resolve(
    store: &Store,
    event: &WriteEvent,
    org: &Organization,
    now: DateTime<Utc>,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    let Some(steps) = store.tables.get("sdkmessageprocessingstep") else {
        return out;
    };
    let correlation = Uuid::new_v4();
    let operation = Uuid::new_v4();
    let mut steps: Vec<(&Uuid, &super::record::Record)> = steps.iter().collect();
    steps.sort_by_key(|(_, r)| r.values.get("rank").and_then(Value::as_i64).unwrap_or(1));
    for (step_id, step) in steps {
        let v = &step.values;
        if v.get("statecode").and_then(Value::as_i64).unwrap_or(0) != 0 {
            continue;
        }
        let message = row(store, "sdkmessage", v.get("sdkmessageid"))
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        if message != Some(event.message.as_str()) {
            continue;
        }
        if let Some(filter) = v.get("sdkmessagefilterid").filter(|f| !f.is_null()) {
            let table = row(store, "sdkmessagefilter", Some(filter))
                .and_then(|f| f.get("primaryobjecttypecode"))
                .and_then(Value::as_str);
            if table != Some(event.entity.as_str()) {
                continue;
            }
        }
        if event.message == "Update"
            && let Some(list) = v.get("filteringattributes").and_then(Value::as_str)
        {
            let wanted: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if !wanted.is_empty() && !wanted.iter().any(|w| event.attributes.contains_key(*w)) {
                continue;
            }
        }
        let handler = v.get("eventhandler");
        if handler
            .and_then(|h| h.get("entity"))
            .and_then(Value::as_str)
            != Some("serviceendpoint")
        {
            continue;
        }
        let Some(endpoint) = row(store, "serviceendpoint", handler) else {
            continue;
        };
        if endpoint.get("contract").and_then(Value::as_i64) != Some(8) {
            continue;
        }
        let Some(url) = endpoint.get("url").and_then(Value::as_str) else {
            continue;
        };
        let authvalue = endpoint
            .get("authvalue")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-request-id".to_owned(), Uuid::new_v4().to_string()),
            ("x-ms-dynamics-organization".to_owned(), org.domain.clone()),
            ("x-ms-dynamics-entity-name".to_owned(), event.entity.clone()),
            (
                "x-ms-dynamics-request-name".to_owned(),
                event.message.clone(),
            ),
            (
                "x-ms-correlation-request-id".to_owned(),
                correlation.to_string(),
            ),
        ];
        let url = match endpoint.get("authtype").and_then(Value::as_i64) {
            Some(4) => add_query(url, &[("code".to_owned(), authvalue.to_owned())]),
            Some(5) => {
                headers.extend(settings(authvalue));
                url.to_owned()
            }
            Some(6) => add_query(url, &settings(authvalue)),
            _ => url.to_owned(),
        };
        let mode = v.get("mode").and_then(Value::as_i64).unwrap_or(1);
        let stage = v.get("stage").and_then(Value::as_i64).unwrap_or(40);
        let target = json!({
            "__type": format!("Entity:{CONTRACTS}"),
            "Attributes": attributes(store, event),
            "EntityState": null, "FormattedValues": [], "Id": event.id, "KeyAttributes": [],
            "LogicalName": event.entity, "RelatedEntities": [],
            // The row's version after the write, as text (as in Microsoft's published
            // deliveries); a receiver can tell its own write's echo by it.
            "RowVersion": event.row_version.map(|v| v.to_string()),
        });
        let closing = matches!(event.message.as_str(), "Win" | "Lose");
        let inputs = match event.message.as_str() {
            "Delete" => {
                json!([{"key": "Target", "value": entity_reference(&json!(event.id), &json!(event.entity))}])
            }
            "Win" | "Lose" => close_inputs(event),
            _ => json!([{"key": "Target", "value": target}]),
        };
        // WinOpportunity and LoseOpportunity are requests about an OpportunityClose, not a
        // Target: the opportunity is only in its `opportunityid` reference, and the context's
        // primary entity id is not that opportunity's (here the empty GUID, the stricter
        // reading: a receiver must read the OpportunityClose).
        let primary_id = if closing { Uuid::nil() } else { event.id };
        let body = json!({
            "BusinessUnitId": org.business_unit_id,
            "CorrelationId": correlation,
            "Depth": 1,
            "InitiatingUserId": org.user_id,
            "InputParameters": inputs,
            "IsExecutingOffline": false,
            "IsInTransaction": mode == 0,
            "IsOfflinePlayback": false,
            "IsolationMode": 1,
            "MessageName": event.message,
            "Mode": mode,
            "OperationCreatedOn": format!("/Date({})/", now.timestamp_millis()),
            "OperationId": operation,
            "OrganizationId": org.id,
            "OrganizationName": org.name,
            "OutputParameters": if event.message == "Create" { json!([{"key": "id", "value": event.id}]) } else { json!([]) },
            "OwningExtension": {"Id": step_id, "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep", "Name": v.get("name").cloned().unwrap_or(Value::Null), "RowVersion": null},
            "ParentContext": null,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": primary_id,
            "PrimaryEntityName": event.entity,
            "RequestId": null,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": stage,
            "UserId": org.user_id,
        });
        out.push(Delivery { url, headers, body });
    }
    out
}

/// Sends deliveries as they come, until every sender is gone.
pub async fn deliver(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Vec<Delivery>>,
    faults: Faults,
    timeout: Duration,
) {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a plain HTTP client builds");
    while let Some(mut batch) = queue.recv().await {
        while let Ok(more) = queue.try_recv() {
            batch.extend(more);
        }
        faults.order_deliveries(&mut batch);
        for delivery in batch {
            let times = match faults.for_delivery() {
                DeliveryFault::Drop => 0,
                DeliveryFault::Deliver => 1,
                DeliveryFault::Duplicate => 2,
            };
            for _ in 0..times {
                send(&client, &delivery).await;
            }
        }
    }
}

async fn send(client: &reqwest::Client, delivery: &Delivery) {
    for attempt in 0..2 {
        let mut request = client.post(&delivery.url).body(delivery.body.to_string());
        for (k, v) in &delivery.headers {
            request = request.header(k, v);
        }
        match request.send().await {
            Ok(response) if [502, 503, 504].contains(&response.status().as_u16()) => {
                tracing::debug!(url = %delivery.url, attempt, status = %response.status(), "webhook delivery failed");
            }
            Ok(response) => {
                if !response.status().is_success() {
                    tracing::debug!(url = %delivery.url, status = %response.status(), "webhook delivery refused");
                }
                return;
            }
            Err(error) => {
                tracing::debug!(url = %delivery.url, %error, "webhook delivery failed");
                return;
            }
        }
    }
}
