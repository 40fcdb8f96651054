//! The HTTP handlers of the Referrals API (reference §1.4, §1.5, §5b): list with OData and
//! `$skiptoken` paging, get, create, PATCH (JSON Patch, `Prefer`) and PUT (`If-Match`). What they
//! do is described in [`super::referrals`], which holds the store and the writes.

use super::json_patch::{self, PatchOp};
use super::referrals::{ApiError, READ_ONLY, require_members};
use super::{Api, Inner, authorize, odata};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What a `$skiptoken` carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PageState {
    filter: Option<String>,
    orderby: Option<String>,
    select: Option<String>,
    top: usize,
    offset: usize,
}

fn with_etag(mut response: Response, referral: &Value) -> Response {
    if let Some(tag) = referral["eTag"]
        .as_str()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

pub(crate) async fn list(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Referrals) {
        return r;
    }
    let bad = |m: String| ApiError::BadRequest(m).into_response();
    let state = if let Some(token) = query.get("$skiptoken") {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice::<PageState>(&b).ok());
        match decoded {
            Some(s) => s,
            None => return bad("the $skiptoken is not valid".into()),
        }
    } else {
        let top = match query.get("$top").map(|t| t.parse::<usize>()) {
            None => inner.config.default_page_size,
            Some(Ok(t)) if t > 0 => t,
            Some(_) => return bad("$top must be a positive integer".into()),
        };
        let offset = match query.get("$skip").map(|t| t.parse::<usize>()) {
            None => 0,
            Some(Ok(s)) => s,
            Some(Err(_)) => return bad("$skip must be a non-negative integer".into()),
        };
        PageState {
            filter: query.get("$filter").cloned(),
            orderby: query.get("$orderby").cloned(),
            select: query.get("$select").cloned(),
            top,
            offset,
        }
    };
    let filter = match state.filter.as_deref().map(odata::parse_filter).transpose() {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let orderby = match state
        .orderby
        .as_deref()
        .map(odata::parse_orderby)
        .transpose()
    {
        Ok(o) => o.unwrap_or_default(),
        Err(e) => return bad(e),
    };
    let select: Option<Vec<String>> = state.select.as_deref().map(|s| {
        s.split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect()
    });
    inner.expire_due();
    // References until the page is known: only the page's referrals are copied.
    let store = inner.lock_store();
    let mut matches: Vec<&Value> = store
        .all()
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| odata::eval(f, r)))
        .collect();
    odata::sort(&mut matches, &orderby);
    let total = matches.len();
    let page: Vec<Value> = matches
        .iter()
        .skip(state.offset)
        .take(state.top)
        .map(|r| match &select {
            Some(fields) => odata::select(r, fields),
            None => (*r).clone(),
        })
        .collect();
    drop(store);
    let base = inner.base_url();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#Referrals"),
        "@odata.count": total,
        "value": page,
    });
    if state.offset + state.top < total {
        let next = PageState {
            offset: state.offset + state.top,
            ..state
        };
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&next).expect("serialisable"));
        // The documented shape: not the request's path (no `/engagements`), and on the
        // live service `http://` although the API is served over https.
        body["@odata.nextLink"] = json!(format!("{base}/v1.0/referrals?$skiptoken={token}"));
    }
    Json(body).into_response()
}

pub(crate) async fn get_one(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Referrals) {
        return r;
    }
    match inner.get_referral(&id) {
        Some(r) if inner.readable(&r) => with_etag(Json(&r).into_response(), &r),
        _ => ApiError::NotFound(id).into_response(),
    }
}

pub(crate) async fn create(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Referrals) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::BadRequest(format!("invalid JSON: {e}")).into_response(),
    };
    match inner.create_outgoing(body) {
        Ok(r) => with_etag((StatusCode::CREATED, Json(&r)).into_response(), &r),
        Err(e) => e.into_response(),
    }
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

pub(crate) async fn patch(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Referrals) {
        return r;
    }
    let ops: Vec<PatchOp> = match serde_json::from_slice(&body) {
        Ok(ops) => ops,
        Err(e) => {
            return ApiError::BadRequest(format!("the body must be a JSON Patch array: {e}"))
                .into_response();
        }
    };
    for op in &ops {
        let first = json_patch::pointer_tokens(&op.path)
            .ok()
            .and_then(|t| t.first().cloned())
            .unwrap_or_default();
        if READ_ONLY.contains(&first.as_str()) {
            return ApiError::BadRequest(format!("'{}' is read-only", op.path)).into_response();
        }
    }
    let result = inner.write(&id, if_match(&headers), |_, next| {
        json_patch::apply(next, &ops).map_err(ApiError::BadRequest)
    });
    let representation = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("return=representation"));
    match result {
        Ok(r) if representation => with_etag(Json(&r).into_response(), &r),
        Ok(r) => with_etag(StatusCode::NO_CONTENT.into_response(), &r),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn put(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&inner, &headers, Api::Referrals) {
        return r;
    }
    let Some(tag) = if_match(&headers) else {
        return ApiError::PreconditionRequired.into_response();
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::BadRequest(format!("invalid JSON: {e}")).into_response(),
    };
    if !body["links"].is_null() {
        return ApiError::BadRequest("remove the 'links' object from a PUT body".into())
            .into_response();
    }
    let result = inner.write(&id, Some(tag), |current, next| {
        require_members(&body)?;
        *next = body;
        for k in READ_ONLY.iter().chain(["organizationName"].iter()) {
            match current.get(*k) {
                Some(v) => next[*k] = v.clone(),
                None => {
                    next.as_object_mut().map(|o| o.remove(*k));
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(r) => with_etag(Json(&r).into_response(), &r),
        Err(e) => e.into_response(),
    }
}
