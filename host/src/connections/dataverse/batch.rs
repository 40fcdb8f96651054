//! `$batch`: several requests in one `multipart/mixed` POST.
//!
//! Atomic: the requests form one change set, which Dataverse applies all or nothing; a failure
//! comes back as the error of the failing request (nothing was applied). Not atomic: each
//! request is its own part and `Prefer: odata.continue-on-error` makes Dataverse run them all,
//! each answering its own status. A batch is retried like one request: it counts as idempotent
//! only when none of its requests is a POST.

use super::Result;
use super::client::DataverseClient;
use super::error::{DataverseError, code_of};
use super::request::{Answer, Call, Payload, check, id_of_entity_url};
use crate::connections::{message_of, retry};
use reqwest::Method;
use serde_json::Value;

/// The most requests one batch may hold (documented limit).
pub const MAX_REQUESTS: usize = 1000;

/// One request of a batch.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub method: Method,
    /// Relative to the Web API root, e.g. `opportunities(<id>)` or `accounts`.
    pub path: String,
    pub body: Option<Value>,
    /// `If-Match` (an `@odata.etag`, or `*`).
    pub if_match: Option<String>,
}

/// The answer to one request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResponse {
    pub status: u16,
    /// The row id from `OData-EntityId`, when the answer has one (creates and upserts).
    pub entity_id: Option<String>,
    pub body: Option<Value>,
}

impl DataverseClient {
    /// `POST $batch` of `requests`, as one atomic change set (`atomic`) or as independent
    /// requests that all run; answers one [`BatchResponse`] per request, in order. A failed
    /// change set is the failing request's error, and none of the requests was applied.
    pub async fn batch(
        &self,
        requests: &[BatchRequest],
        atomic: bool,
    ) -> Result<Vec<BatchResponse>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if requests.len() > MAX_REQUESTS {
            return Err(invalid(format!(
                "a batch holds at most {MAX_REQUESTS} requests, not {}; split it",
                requests.len()
            )));
        }
        if atomic && requests.iter().any(|r| r.method == Method::GET) {
            return Err(invalid(
                "a change set cannot contain a GET; read before or after the batch".into(),
            ));
        }
        let boundary = format!("batch_{}", retry::new_uuid());
        let text = self.body(requests, atomic, &boundary)?;
        let mut call = Call::new(Method::POST, self.url("$batch", "")?, "$batch");
        call.idempotent = requests.iter().all(|r| r.method != Method::POST);
        call.payload = Payload::Raw {
            content_type: format!("multipart/mixed; boundary={boundary}"),
            text,
        };
        if !atomic {
            call = call.header("prefer", "odata.continue-on-error")?;
        }
        let answer = self.exchange(call).await?;
        let Some(response_boundary) = boundary_of(&answer.headers) else {
            check(answer, "$batch")?;
            return Err(DataverseError::InvalidResponse(
                "the $batch answer is not multipart".into(),
            ));
        };
        let mut parts = parse_parts(&answer.text, &response_boundary);
        if !answer.status.is_success() {
            return Err(match parts.pop() {
                Some(failed) if atomic => change_set_error(failed, &answer, requests.len()),
                _ => check(answer, "$batch").err().unwrap_or_else(|| {
                    DataverseError::InvalidResponse("a failed $batch without parts".into())
                }),
            });
        }
        if parts.len() != requests.len() {
            return Err(DataverseError::InvalidResponse(format!(
                "the $batch answer has {} parts for {} requests",
                parts.len(),
                requests.len()
            )));
        }
        Ok(parts)
    }

    fn body(&self, requests: &[BatchRequest], atomic: bool, boundary: &str) -> Result<String> {
        let mut parts = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
            let url = self.url(path, query)?;
            let mut part = String::from(
                "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
            );
            if atomic {
                part.push_str(&format!("Content-ID: {}\r\n", i + 1));
            }
            part.push_str(&format!("\r\n{} {url} HTTP/1.1\r\n", request.method));
            if let Some(tag) = &request.if_match {
                part.push_str(&format!("If-Match: {tag}\r\n"));
            }
            match &request.body {
                Some(body) => part.push_str(&format!(
                    "Content-Type: application/json; type=entry\r\n\r\n{body}\r\n"
                )),
                None => part.push_str("\r\n"),
            }
            parts.push(part);
        }
        let mut out = String::new();
        if atomic {
            let change_set = format!("changeset_{}", retry::new_uuid());
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: multipart/mixed; boundary={change_set}\r\n\r\n"
            ));
            for part in &parts {
                out.push_str(&format!("--{change_set}\r\n{part}"));
            }
            out.push_str(&format!("--{change_set}--\r\n"));
        } else {
            for part in &parts {
                out.push_str(&format!("--{boundary}\r\n{part}"));
            }
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        Ok(out)
    }
}

fn invalid(message: String) -> DataverseError {
    DataverseError::BadRequest {
        code: String::new(),
        message,
    }
}

/// The error of a failed change set: the failing request's, saying nothing was applied.
fn change_set_error(part: BatchResponse, batch: &Answer, count: usize) -> DataverseError {
    let what = format!("the change set of {count} requests (rolled back, none applied)");
    let failed = Answer {
        status: reqwest::StatusCode::from_u16(part.status)
            .unwrap_or(reqwest::StatusCode::BAD_REQUEST),
        headers: Default::default(),
        text: part.body.as_ref().map(Value::to_string).unwrap_or_default(),
    };
    check(failed, &what)
        .err()
        .unwrap_or_else(|| DataverseError::BadRequest {
            code: code_of(&batch.text),
            message: format!("{what}: {}", message_of(&batch.text)),
        })
}

/// The `boundary` parameter of a multipart `Content-Type`.
fn boundary_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let content_type = headers.get("content-type")?.to_str().ok()?;
    boundary_in(content_type)
}

fn boundary_in(content_type: &str) -> Option<String> {
    if !content_type.trim_start().starts_with("multipart/") {
        return None;
    }
    let at = content_type.find("boundary=")? + "boundary=".len();
    let value = content_type[at..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

/// The answers in a multipart body, change sets flattened, in order.
fn parse_parts(body: &str, boundary: &str) -> Vec<BatchResponse> {
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for chunk in body.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches(['\r', '\n']);
        let (mime, rest) = split_head(chunk);
        let nested = mime
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
            .and_then(|(_, v)| boundary_in(v.trim()));
        match nested {
            Some(inner) => out.extend(parse_parts(rest, &inner)),
            None => out.extend(parse_http(rest)),
        }
    }
    out
}

/// Splits at the first blank line.
fn split_head(text: &str) -> (&str, &str) {
    text.split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((text, ""))
}

/// One `application/http` answer: status line, headers, body.
fn parse_http(text: &str) -> Option<BatchResponse> {
    let (head, body) = split_head(text.trim_start_matches(['\r', '\n']));
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let entity_id = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("odata-entityid"))
        .and_then(|(_, v)| id_of_entity_url(v));
    let body = body.trim();
    Some(BatchResponse {
        status,
        entity_id,
        body: (!body.is_empty())
            .then(|| serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_change_set_and_single_answers_in_order() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
            HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nOData-EntityId: https://x/api/data/v9.2/accounts(abc)\r\n\r\n\r\n\
            --changesetresponse_2--\r\n\
            --batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
            HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x1\",\"message\":\"m\"}}\r\n\
            --batchresponse_1--\r\n";
        let parts = parse_parts(body, "batchresponse_1");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].status, 204);
        assert_eq!(parts[0].entity_id.as_deref(), Some("abc"));
        assert_eq!(parts[0].body, None);
        assert_eq!(parts[1].status, 400);
        assert_eq!(parts[1].body.as_ref().unwrap()["error"]["code"], "0x1");
    }

    #[test]
    fn boundaries_may_be_quoted() {
        assert_eq!(
            boundary_in("multipart/mixed; boundary=\"b_1\"").as_deref(),
            Some("b_1")
        );
        assert_eq!(boundary_in("application/json"), None);
    }
}
