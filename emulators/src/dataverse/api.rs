//! The Web API's request/response vocabulary every handler shares: the request as parsed
//! ([`ApiRequest`]), the answer before it becomes HTTP ([`ApiResponse`], with the documented
//! error shape), what a request runs with besides the store ([`Ctx`]), the `Prefer` header,
//! URL keys and paths, and request bodies.
//!
//! It sits at the bottom of the emulator's layers, below the store and every handler, and
//! depends on nothing but the schema: so the store, the query options and the handlers can all
//! answer in the same terms without importing one another.

use super::schema::EntityDef;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// A Web API request, its path relative to `/api/data/v9.2/`.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// The HTTP method.
    pub method: Method,
    /// Percent-decoded path after `/api/data/v9.2/`, e.g. `opportunities(…)`.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The request's headers (`Prefer`, `If-Match`, …).
    pub headers: HeaderMap,
    /// The raw body (JSON, when there is one).
    pub body: Vec<u8>,
}

/// A Web API answer before it becomes HTTP (or a `$batch` part).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The answer's own headers (`OData-EntityId`, `Preference-Applied`, …), in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl ApiResponse {
    /// An answer without body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// An answer with a JSON body.
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// The documented error shape `{"error":{"code","message"}}` (§4.10).
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            json!({"error": {"code": code, "message": message.into()}}),
        )
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Whether it is a success (2xx/304).
    pub fn is_success(&self) -> bool {
        self.status.is_success() || self.status == StatusCode::NOT_MODIFIED
    }
}

/// What a request runs with besides the store.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `http://host/api/data/v9.2/`.
    pub base: String,
    /// The emulated time the request runs at.
    pub now: chrono::DateTime<chrono::Utc>,
    /// The id of the base currency row new opportunities get.
    pub base_currency: Uuid,
    /// The caller's user id, as `WhoAmI` answers it.
    pub user_id: Uuid,
    /// The caller's business unit, as `WhoAmI` answers it.
    pub business_unit_id: Uuid,
    /// The organisation's id, as `WhoAmI` answers it.
    pub organization_id: Uuid,
    /// How long a change-tracking token stays usable (`Organization.ExpireChangeTrackingInDays`).
    pub change_tracking_expiry: chrono::Duration,
    /// Whether the tables take the bulk messages ([`super::DataverseConfig::bulk_messages`]).
    pub bulk_messages: bool,
}

/// The `Prefer` header's preferences, lower-cased.
pub fn prefer(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `Prefer: odata.maxpagesize=n`, if set.
pub fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    prefer(headers)
        .iter()
        .find_map(|p| p.strip_prefix("odata.maxpagesize=")?.trim().parse().ok())
}

/// The URL of a row, as in `OData-EntityId`.
pub fn entity_url(ctx: &Ctx, def: &EntityDef, id: &Uuid) -> String {
    format!("{}{}({id})", ctx.base, def.entity_set)
}

/// `opportunities(<key>)/prop` → (`opportunities`, `<key>`, `prop`).
pub fn split_path(path: &str) -> (&str, Option<&str>, Option<&str>) {
    let Some(open) = path.find('(') else {
        return (path, None, None);
    };
    let close = path.rfind(')').unwrap_or(path.len());
    let key = &path[open + 1..close.max(open + 1)];
    let property = path
        .get(close + 1..)
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !p.is_empty());
    (&path[..open], Some(key), property)
}

/// The JSON body of a request (`{}` when empty), or the 400.
pub fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        bad_request(
            "0x80060888",
            format!("The request body is not valid JSON: {e}"),
        )
    })
}

/// A result whose error is a ready answer.
pub type ApiResult<T> = Result<T, ApiResponse>;

/// A 400 with the Dataverse error shape.
pub fn bad_request(code: &str, message: impl Into<String>) -> ApiResponse {
    ApiResponse::error(StatusCode::BAD_REQUEST, code, message)
}

/// The 404 of a missing row.
pub fn not_found(entity: &str, id: &Uuid) -> ApiResponse {
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        "0x80040217",
        format!("{entity} With Id = {id} Does Not Exist"),
    )
}

/// A key in an entity URL: `(<guid>)` or `(col='value',…)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// The primary key: `(<guid>)`.
    Id(Uuid),
    /// An alternate key's columns and their values: `(col='value',…)`.
    Alternate(Vec<(String, Value)>),
}

/// Parses the inside of the parentheses of an entity URL.
pub fn parse_key(inner: &str) -> Result<Key, ApiResponse> {
    let inner = inner.trim();
    if let Ok(id) = Uuid::parse_str(inner) {
        return Ok(Key::Id(id));
    }
    let mut parts = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| bad_request("0x80060888", format!("Bad key '{inner}'.")))?;
        let name = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let (value, after) = if let Some(stripped) = rest.strip_prefix('\'') {
            let mut out = String::new();
            let mut chars = stripped.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if matches!(chars.peek(), Some((_, '\''))) {
                        out.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    out.push(c);
                }
            }
            let end =
                end.ok_or_else(|| bad_request("0x80060888", format!("Bad key '{inner}'.")))?;
            (Value::String(out), &stripped[end..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let raw = rest[..end].trim();
            let value = raw
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(raw.to_owned()));
            (value, &rest[end..])
        };
        parts.push((name, value));
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(Key::Alternate(parts))
}
