//! The bulk operation messages: `POST <set>/Microsoft.Dynamics.CRM.CreateMultiple`,
//! `UpdateMultiple` and `UpsertMultiple`, each with a `Targets` array of rows of that one table.
//!
//! As documented: every target carries `@odata.type` (`Microsoft.Dynamics.CRM.<table>`, with
//! or without `#`); `CreateMultiple` answers 200 with the new rows' `Ids` in `Targets` order;
//! `UpdateMultiple` names each row by its primary key column in the body and answers 204;
//! `UpsertMultiple` names each row by `@odata.id` (`<set>(<key>)`, relative) and answers 204.
//! On a standard table the whole request rolls back on the first error, which is answered as
//! the single-row operation would answer it. The request counts once against the service
//! protection request limit; each target is charged its execution time as the single-row
//! operation is, and fires its own webhook.
//!
//! Each target runs through the single-row handler it stands for (a POST, a PATCH with
//! `If-Match: *`, a PATCH without precondition), so a target is validated exactly as one row
//! is. That handler is the router's own executor, handed in as an [`Execute`]: the router
//! dispatches to [`run`] and [`run`] back to the router, and passing the executor keeps that
//! recursion out of the module imports. Choices where the documentation stops: an empty or missing `Targets` is 400; which
//! tables support which message is [`supports`]'s list (the opportunity table's documented
//! messages include `CreateMultiple` and `UpdateMultiple` but not `UpsertMultiple`, so it is
//! refused there); an `UpsertMultiple` target without `@odata.id` is 400 (upserting by primary
//! key is not documented for the Web API); at most [`MAX_TARGETS`] targets a request.

use super::api::{self, ApiRequest, ApiResponse, ApiResult, Ctx, bad_request};
use super::records::Store;
use super::schema::EntityDef;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

/// The most targets one request may carry. Microsoft sets no number for standard tables
/// ("1,000 is a reasonable place to start"); payloads are bounded by size in production. The
/// emulator bounds the count so a runaway client meets a clear error instead of a stall.
pub const MAX_TARGETS: usize = 10_000;

/// Runs one single-row request against the store: the Web API's router
/// ([`super::handlers::execute`]), which [`run`] sends each target through.
pub type Execute = fn(&mut Store, &Ctx, &ApiRequest) -> ApiResponse;

/// One of the bulk messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    CreateMultiple,
    UpdateMultiple,
    UpsertMultiple,
}

impl Message {
    /// The message a path's last segment names (`Microsoft.Dynamics.CRM.CreateMultiple`).
    pub fn parse(segment: &str) -> Option<Self> {
        match segment.strip_prefix("Microsoft.Dynamics.CRM.")? {
            "CreateMultiple" => Some(Self::CreateMultiple),
            "UpdateMultiple" => Some(Self::UpdateMultiple),
            "UpsertMultiple" => Some(Self::UpsertMultiple),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::CreateMultiple => "CreateMultiple",
            Self::UpdateMultiple => "UpdateMultiple",
            Self::UpsertMultiple => "UpsertMultiple",
        }
    }
}

/// Whether `table` has `message`. The business tables cosell writes have all three, but for
/// the opportunity, whose documented messages do not include `UpsertMultiple`; the service's
/// own tables (webhook registrations, solutions) have none.
pub fn supports(def: &EntityDef, message: Message) -> bool {
    match def.logical_name.as_str() {
        "opportunity" => message != Message::UpsertMultiple,
        "account" | "contact" | "lead" | "transactioncurrency" => true,
        name => def.columns.values().any(|c| c.custom) && !name.starts_with("sdkmessage"),
    }
}

/// Runs `message` on the table `def` within one change set, each target through `execute`.
pub fn run(
    store: &mut Store,
    ctx: &Ctx,
    def: &EntityDef,
    request: &ApiRequest,
    message: Message,
    execute: Execute,
) -> ApiResult<ApiResponse> {
    if request.method != Method::POST {
        return Err(ApiResponse::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            format!("{} is an action: send it with POST.", message.name()),
        ));
    }
    if !ctx.bulk_messages || !supports(def, message) {
        return Err(bad_request(
            "0x80040800",
            format!(
                "The '{}' message is not available for the '{}' table.",
                message.name(),
                def.logical_name
            ),
        ));
    }
    let body = api::parse_body(&request.body)?;
    let targets = match body.get("Targets") {
        Some(Value::Array(targets)) if !targets.is_empty() => targets,
        Some(Value::Array(_)) => return Err(bad_request("0x80040203", "Targets is empty.")),
        _ => {
            return Err(bad_request(
                "0x80040203",
                "The action's body must carry Targets, an array of rows.",
            ));
        }
    };
    if targets.len() > MAX_TARGETS {
        return Err(bad_request(
            "0x80040203",
            format!(
                "Targets holds {} rows; this emulator takes at most {MAX_TARGETS} a request.",
                targets.len()
            ),
        ));
    }
    let singles = targets
        .iter()
        .enumerate()
        .map(|(index, target)| single_request(def, message, index, target))
        .collect::<ApiResult<Vec<_>>>()?;
    // Inside a `$batch` change set the change set's own journal undoes a failure.
    let own_change_set = !store.in_change_set();
    if own_change_set {
        store.begin();
    }
    let mut ids = Vec::with_capacity(singles.len());
    for single in &singles {
        let response = execute(store, ctx, single);
        if !response.is_success() {
            if own_change_set {
                store.rollback();
            }
            return Err(response);
        }
        ids.push(created_id(ctx, def, &response));
    }
    if own_change_set {
        store.commit();
    }
    Ok(match message {
        Message::CreateMultiple => ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", ctx.base),
                "Ids": ids,
            }),
        ),
        Message::UpdateMultiple | Message::UpsertMultiple => {
            ApiResponse::empty(StatusCode::NO_CONTENT)
        }
    })
}

/// The single-row request target `index` of `message` stands for.
fn single_request(
    def: &EntityDef,
    message: Message,
    index: usize,
    target: &Value,
) -> ApiResult<ApiRequest> {
    let Value::Object(target) = target else {
        return Err(bad_request(
            "0x80040203",
            format!("Targets[{index}] is not an object."),
        ));
    };
    let wanted = def.type_name();
    match target.get("@odata.type").and_then(Value::as_str) {
        Some(t) if t.trim_start_matches('#') == wanted => {}
        Some(other) => {
            return Err(bad_request(
                "0x80040203",
                format!(
                    "Targets[{index}] is a '{other}'; every target of this request must be a '{wanted}'."
                ),
            ));
        }
        None => {
            return Err(bad_request(
                "0x80040203",
                format!("Targets[{index}] lacks '@odata.type'; set it to '{wanted}'."),
            ));
        }
    }
    let columns: Map<String, Value> = target
        .iter()
        .filter(|(k, _)| *k != "@odata.type" && *k != "@odata.id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut headers = HeaderMap::new();
    let (method, path) = match message {
        Message::CreateMultiple => (Method::POST, def.entity_set.clone()),
        Message::UpdateMultiple => {
            let Some(id) = columns.get(&def.primary_id).and_then(Value::as_str) else {
                return Err(bad_request(
                    "0x80040203",
                    format!(
                        "Targets[{index}] lacks its primary key '{}'.",
                        def.primary_id
                    ),
                ));
            };
            headers.insert("if-match", HeaderValue::from_static("*"));
            (Method::PATCH, format!("{}({id})", def.entity_set))
        }
        Message::UpsertMultiple => {
            let Some(reference) = target.get("@odata.id").and_then(Value::as_str) else {
                return Err(bad_request(
                    "0x80040203",
                    format!(
                        "Targets[{index}] lacks '@odata.id', the row's key, e.g. \"{}(<key>='<value>')\".",
                        def.entity_set
                    ),
                ));
            };
            let reference = reference.trim_start_matches('/');
            match api::split_path(reference) {
                (set, Some(_), None) if set == def.entity_set => {}
                _ => {
                    return Err(bad_request(
                        "0x80040203",
                        format!(
                            "Targets[{index}]'s '@odata.id' '{reference}' does not name a row of {}.",
                            def.entity_set
                        ),
                    ));
                }
            }
            (Method::PATCH, reference.to_owned())
        }
    };
    Ok(ApiRequest {
        method,
        path,
        query: String::new(),
        headers,
        body: Value::Object(columns).to_string().into_bytes(),
    })
}

/// The id of the row a single-row answer names (`OData-EntityId`: `<base><set>(<id>)`).
fn created_id(ctx: &Ctx, def: &EntityDef, response: &ApiResponse) -> String {
    let prefix = format!("{}{}(", ctx.base, def.entity_set);
    response
        .headers
        .iter()
        .find(|(k, _)| k == "OData-EntityId")
        .and_then(|(_, url)| url.strip_prefix(&prefix)?.strip_suffix(')'))
        .unwrap_or_default()
        .to_owned()
}
