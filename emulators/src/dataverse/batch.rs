//! `POST $batch` (§4.8): a `multipart/mixed` body of `application/http` parts and change sets
//! (nested `multipart/mixed`), at most 1000 requests, run in order. A change set is atomic: the
//! store journals the rows it writes ([`Store::begin`]) and puts them back if one of its
//! requests fails ([`Store::rollback`]); the failure is answered as the change set's single
//! part. `Content-ID: n` of a change-set request can be referenced as `$n` by later URLs (and
//! `@odata.bind` values) of the same change set.
//!
//! Without `Prefer: odata.continue-on-error` processing stops at the first failure and the
//! batch answers with that failure's status (the parts run so far are still in the body); with
//! it the batch answers 200 and every part carries its own status.
//!
//! Choices where the reference stops: a GET inside a change set fails that change set (400);
//! `Content-ID` may be given in the part's MIME headers or in the inner request's headers.

use super::api::{ApiRequest, ApiResponse, Ctx};
use super::handlers::execute;
use super::query::decode_path;
use super::records::Store;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::collections::HashMap;

/// The most requests one batch may hold.
pub const MAX_REQUESTS: usize = 1000;

/// A batch answer: status, content type, body.
pub struct BatchAnswer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

struct Part {
    content_id: Option<String>,
    request: ApiRequest,
}

enum Item {
    Single(Part),
    ChangeSet(Vec<Part>),
}

fn boundary_of(content_type: &str) -> Option<String> {
    let at = content_type.find("boundary=")? + "boundary=".len();
    let value = content_type[at..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

fn split_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        parts.push(chunk.trim_start_matches(['\r', '\n']));
    }
    parts
}

/// Splits at the first blank line: (header lines, rest).
fn split_head(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, rest) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text, ""),
    };
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (headers, rest)
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn bad(message: impl Into<String>) -> ApiResponse {
    ApiResponse::error(StatusCode::BAD_REQUEST, "0x80060888", message)
}

/// Strips the service root from a batch URL: absolute, `/api/data/v9.2/…` or relative.
fn relative(url: &str) -> &str {
    for root in ["/api/data/v9.2/", "/api/data/v9.1/", "/api/data/v9.0/"] {
        if let Some(at) = url.find(root) {
            return &url[at + root.len()..];
        }
    }
    url.trim_start_matches('/')
}

fn parse_request(mime_headers: &[(String, String)], text: &str) -> Result<Part, ApiResponse> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = line.split_whitespace();
    let method = words
        .next()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| {
            bad(format!(
                "Bad request line in $batch part: '{}'",
                line.trim()
            ))
        })?;
    let url = words
        .next()
        .ok_or_else(|| bad("A $batch request line has no URL."))?;
    let (head, body) = split_head(rest);
    let mut headers = HeaderMap::new();
    for (k, v) in &head {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let content_id = get(mime_headers, "content-id")
        .or_else(|| get(&head, "content-id"))
        .map(str::to_owned);
    let body = body.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    Ok(Part {
        content_id,
        request: ApiRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body,
        },
    })
}

fn parse(content_type: &str, body: &str) -> Result<Vec<Item>, ApiResponse> {
    let boundary = boundary_of(content_type)
        .ok_or_else(|| bad("A $batch request needs Content-Type: multipart/mixed; boundary=…"))?;
    let mut items = Vec::new();
    for part in split_parts(body, &boundary) {
        let (mime, rest) = split_head(part);
        let part_type = get(&mime, "content-type").unwrap_or_default();
        if part_type.starts_with("multipart/mixed") {
            let inner =
                boundary_of(part_type).ok_or_else(|| bad("A change set needs a boundary."))?;
            let requests = split_parts(rest, &inner)
                .into_iter()
                .map(|p| {
                    let (mime, rest) = split_head(p);
                    parse_request(&mime, rest)
                })
                .collect::<Result<Vec<_>, _>>()?;
            items.push(Item::ChangeSet(requests));
        } else {
            items.push(Item::Single(parse_request(&mime, rest)?));
        }
    }
    Ok(items)
}

fn finish_path(request: &mut ApiRequest, ids: &HashMap<String, String>) {
    if let Some(reference) = request.path.strip_prefix('$') {
        let (n, tail) = reference
            .find(|c: char| !c.is_ascii_digit())
            .map(|i| reference.split_at(i))
            .unwrap_or((reference, ""));
        if let Some(url) = ids.get(n) {
            request.path = format!("{url}{tail}");
        }
    }
    if !ids.is_empty() && !request.body.is_empty() {
        let mut text = String::from_utf8_lossy(&request.body).into_owned();
        for (n, url) in ids {
            text = text.replace(&format!("\"${n}\""), &format!("\"{url}\""));
        }
        request.body = text.into_bytes();
    }
    request.path = decode_path(relative(&request.path));
}

fn render(response: &ApiResponse, content_id: Option<&str>) -> String {
    let mut out =
        String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        out.push_str(&format!("Content-ID: {id}\r\n"));
    }
    out.push_str(&format!(
        "\r\nHTTP/1.1 {} {}\r\nOData-Version: 4.0\r\n",
        response.status.as_u16(),
        response.status.canonical_reason().unwrap_or("")
    ));
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    match &response.body {
        Some(body) => out.push_str(&format!(
            "Content-Type: application/json; odata.metadata=minimal\r\n\r\n{body}\r\n"
        )),
        None => out.push_str("\r\n\r\n"),
    }
    out
}

/// Runs a `$batch` request against the store.
pub fn run(
    store: &mut Store,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BatchAnswer, ApiResponse> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let items = parse(content_type, &String::from_utf8_lossy(body))?;
    let count: usize = items
        .iter()
        .map(|i| match i {
            Item::Single(_) => 1,
            Item::ChangeSet(parts) => parts.len(),
        })
        .sum();
    if count > MAX_REQUESTS {
        return Err(bad(format!(
            "The number of requests in the batch ({count}) exceeds the maximum of {MAX_REQUESTS}."
        )));
    }
    let continue_on_error = super::api::prefer(headers)
        .iter()
        .any(|p| p == "odata.continue-on-error");
    let boundary = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut out = String::new();
    let mut status = StatusCode::OK;
    for item in items {
        let failed = match item {
            Item::Single(mut part) => {
                finish_path(&mut part.request, &HashMap::new());
                let response = execute(store, ctx, &part.request);
                out.push_str(&format!("--{boundary}\r\n"));
                out.push_str(&render(&response, part.content_id.as_deref()));
                (!response.is_success()).then_some(response.status)
            }
            Item::ChangeSet(parts) => {
                store.begin();
                let mut ids = HashMap::new();
                let mut answers = Vec::new();
                let mut failure = None;
                for mut part in parts {
                    finish_path(&mut part.request, &ids);
                    let response = if part.request.method == Method::GET {
                        bad("A change set cannot contain a GET request.")
                    } else {
                        execute(store, ctx, &part.request)
                    };
                    if !response.is_success() {
                        failure = Some((response, part.content_id));
                        break;
                    }
                    if let (Some(id), Some((_, url))) = (
                        &part.content_id,
                        response.headers.iter().find(|(k, _)| k == "OData-EntityId"),
                    ) {
                        ids.insert(id.clone(), url.clone());
                    }
                    answers.push((response, part.content_id));
                }
                out.push_str(&format!("--{boundary}\r\n"));
                match failure {
                    Some((response, content_id)) => {
                        store.rollback();
                        out.push_str(&render(&response, content_id.as_deref()));
                        Some(response.status)
                    }
                    None => {
                        store.commit();
                        let inner = format!("changesetresponse_{}", uuid::Uuid::new_v4());
                        out.push_str(&format!(
                            "Content-Type: multipart/mixed; boundary={inner}\r\n\r\n"
                        ));
                        for (response, content_id) in &answers {
                            out.push_str(&format!("--{inner}\r\n"));
                            out.push_str(&render(response, content_id.as_deref()));
                        }
                        out.push_str(&format!("--{inner}--\r\n"));
                        None
                    }
                }
            }
        };
        if let Some(failed) = failed
            && !continue_on_error
        {
            status = failed;
            break;
        }
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    Ok(BatchAnswer {
        status,
        content_type: format!("multipart/mixed; boundary={boundary}"),
        body: out,
    })
}
