//! `$batch`: several requests in one `multipart/mixed` POST.
//!
//! Atomic: the requests form one change set, which Dataverse applies all or nothing; a failure
//! comes back as the error of the failing request (nothing was applied). Not atomic: each
//! request is its own part and `Prefer: odata.continue-on-error` makes Dataverse run them all,
//! each answering its own status. [`DataverseClient::batch_items`] mixes both: independent
//! [`BatchItem`]s, each a request or a change set of its own, all run. A batch is retried like
//! one request: it counts as idempotent only when none of its requests is a POST or a create.
//! A batch of creates ([`BatchRequest::create`]) whose answer is lost is not sent again blindly:
//! [`super::creates`] finds out which of them landed first.

use super::Result;
use super::client::DataverseClient;
use super::error::{DataverseError, code_of};
use super::request::{Answer, Call, Payload, Replay, check, id_of_entity_url};
use crate::connections::message_of;
use reqwest::Method;
use serde_json::Value;

/// The most requests one batch may hold (documented limit).
pub const MAX_REQUESTS: usize = 1000;

/// One request of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchRequest {
    /// The request's HTTP method.
    pub method: Method,
    /// Relative to the Web API root, e.g. `opportunities(<id>)` or `accounts`.
    pub path: String,
    /// The JSON body sent, if any.
    pub body: Option<Value>,
    /// `If-Match` (an `@odata.etag`, or `*`).
    pub if_match: Option<String>,
    /// `If-None-Match: *` (never update a row that exists): what makes a PATCH a create.
    pub if_none_match: bool,
}

impl BatchRequest {
    /// The create of row `id` of `set` with the columns of `body` (without its primary key):
    /// `PATCH {set}({id})` with `If-None-Match: *`, which creates the row or, when it exists,
    /// fails with 412 and changes nothing. The id is chosen before the first attempt, so a
    /// create whose answer was lost can be looked up, and sent again without a duplicate.
    pub fn create(set: &str, id: &str, body: Value) -> Self {
        Self {
            method: Method::PATCH,
            path: format!("{set}({id})"),
            body: Some(body),
            if_match: None,
            if_none_match: true,
        }
    }

    /// The entity set and id of the row this request creates, if it is a
    /// [`create`](Self::create).
    pub fn created_row(&self) -> Option<(&str, &str)> {
        if self.method != Method::PATCH || !self.if_none_match || self.if_match.is_some() {
            return None;
        }
        let (set, rest) = self.path.split_once('(')?;
        let id = rest.strip_suffix(')')?;
        (!id.is_empty() && !id.contains(['(', '\'', '='])).then_some((set, id))
    }
}

/// One item of a [`DataverseClient::batch_items`] call: a request on its own, or a change set
/// that Dataverse applies all or nothing.
#[derive(Debug, Clone)]
pub enum BatchItem {
    /// A request on its own, which succeeds or fails by itself.
    Request(BatchRequest),
    /// Requests that Dataverse applies all or nothing, as one change set.
    ChangeSet(Vec<BatchRequest>),
}

impl BatchItem {
    /// Its requests, in order.
    pub fn requests(&self) -> &[BatchRequest] {
        match self {
            BatchItem::Request(request) => std::slice::from_ref(request),
            BatchItem::ChangeSet(requests) => requests,
        }
    }
}

/// The answer to one request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResponse {
    /// The HTTP status of this request's answer.
    pub status: u16,
    /// The row id from `OData-EntityId`, when the answer has one (creates and upserts).
    pub entity_id: Option<String>,
    /// The answer's JSON body (a body that is not JSON as a string); `None` when it is empty.
    pub body: Option<Value>,
}

impl BatchResponse {
    /// Whether the request succeeded (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The typed error of a failed answer (as a call of its own would have had), naming `what`;
    /// `None` for a success.
    pub fn error(&self, what: &str) -> Option<DataverseError> {
        let answer = Answer {
            status: reqwest::StatusCode::from_u16(self.status)
                .unwrap_or(reqwest::StatusCode::BAD_REQUEST),
            headers: Default::default(),
            text: self.body.as_ref().map(Value::to_string).unwrap_or_default(),
        };
        check(answer, what).err()
    }
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
        let items: Vec<BatchItem> = if atomic {
            vec![BatchItem::ChangeSet(requests.to_vec())]
        } else {
            requests.iter().cloned().map(BatchItem::Request).collect()
        };
        let (answer, items) = self.send_batch(&items, !atomic, false).await?;
        let mut parts: Vec<BatchResponse> = items.into_iter().flatten().collect();
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

    /// `POST $batch` of independent `items` with `Prefer: odata.continue-on-error`, once (its
    /// answer lost is an error): see [`batch_items`](Self::batch_items). `quick`: a lost answer
    /// is not retried even when the batch is idempotent (the caller has another way to know).
    pub(crate) async fn batch_items_once(
        &self,
        items: &[BatchItem],
        quick: bool,
    ) -> Result<Vec<Vec<BatchResponse>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (answer, answers) = self.send_batch(items, true, quick).await?;
        if !answer.status.is_success() {
            return Err(check(answer, "$batch").err().unwrap_or_else(|| {
                DataverseError::InvalidResponse("a failed $batch without parts".into())
            }));
        }
        let shaped = answers.len() == items.len()
            && answers.iter().zip(items).all(|(answer, item)| {
                answer.len() == item.requests().len()
                    || (answer.len() == 1 && !answer[0].is_success())
            });
        if !shaped {
            return Err(DataverseError::InvalidResponse(format!(
                "the $batch answer does not match its {} items ({} answered)",
                items.len(),
                answers.len()
            )));
        }
        Ok(answers)
    }

    /// Sends `items` (change sets with their `Content-ID`s); answers the batch's own answer and
    /// the parts of each top-level item. A batch of creates, or a `quick` one, is sent again
    /// only when Dataverse surely did not run it.
    async fn send_batch(
        &self,
        items: &[BatchItem],
        continue_on_error: bool,
        quick: bool,
    ) -> Result<(Answer, Vec<Vec<BatchResponse>>)> {
        let count: usize = items.iter().map(|i| i.requests().len()).sum();
        if count > MAX_REQUESTS {
            return Err(invalid(format!(
                "a batch holds at most {MAX_REQUESTS} requests, not {count}; split it"
            )));
        }
        let get_in_change_set = items.iter().any(|item| {
            matches!(item, BatchItem::ChangeSet(requests) if requests.iter().any(|r| r.method == Method::GET))
        });
        if get_in_change_set {
            return Err(invalid(
                "a change set cannot contain a GET; read before or after the batch".into(),
            ));
        }
        let boundary = format!("batch_{}", crate::domain::ids::new_uuid());
        let text = self.body(items, &boundary)?;
        let mut call = Call::new("batch", Method::POST, self.url("$batch", "")?, "$batch");
        let requests = || items.iter().flat_map(BatchItem::requests);
        call.replay = if quick || requests().any(|r| r.created_row().is_some()) {
            Replay::BareOnly
        } else if requests().all(|r| r.method != Method::POST) {
            Replay::Idempotent
        } else {
            Replay::DeclinedOn503
        };
        call.payload = Payload::Raw {
            content_type: format!("multipart/mixed; boundary={boundary}"),
            text,
        };
        if continue_on_error {
            call = call.header("prefer", "odata.continue-on-error")?;
        }
        let answer = self.exchange(call).await?;
        let Some(response_boundary) = boundary_of(&answer.headers) else {
            check(answer, "$batch")?;
            return Err(DataverseError::InvalidResponse(
                "the $batch answer is not multipart".into(),
            ));
        };
        let parts = parse_items(&answer.text, &response_boundary);
        Ok((answer, parts))
    }

    fn body(&self, items: &[BatchItem], boundary: &str) -> Result<String> {
        let mut out = String::new();
        // Content-IDs are numbered across the whole batch, so each is unique in it.
        let mut content_id = 0;
        for item in items {
            match item {
                BatchItem::Request(request) => {
                    out.push_str(&format!("--{boundary}\r\n"));
                    out.push_str(&self.part(request, None)?);
                }
                BatchItem::ChangeSet(requests) => {
                    let change_set = format!("changeset_{}", crate::domain::ids::new_uuid());
                    out.push_str(&format!(
                        "--{boundary}\r\nContent-Type: multipart/mixed; boundary={change_set}\r\n\r\n"
                    ));
                    for request in requests {
                        content_id += 1;
                        out.push_str(&format!("--{change_set}\r\n"));
                        out.push_str(&self.part(request, Some(content_id))?);
                    }
                    out.push_str(&format!("--{change_set}--\r\n"));
                }
            }
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        Ok(out)
    }

    /// One `application/http` part.
    fn part(&self, request: &BatchRequest, content_id: Option<usize>) -> Result<String> {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let url = self.url(path, query)?;
        let mut part =
            String::from("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
        if let Some(id) = content_id {
            part.push_str(&format!("Content-ID: {id}\r\n"));
        }
        part.push_str(&format!("\r\n{} {url} HTTP/1.1\r\n", request.method));
        if let Some(tag) = &request.if_match {
            part.push_str(&format!("If-Match: {tag}\r\n"));
        }
        if request.if_none_match {
            part.push_str("If-None-Match: *\r\n");
        }
        match &request.body {
            Some(body) => part.push_str(&format!(
                "Content-Type: application/json; type=entry\r\n\r\n{body}\r\n"
            )),
            None => part.push_str("\r\n"),
        }
        Ok(part)
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

/// The answers in a multipart body, one list per top-level part, in order: a change set's
/// answers are its part's list.
fn parse_items(body: &str, boundary: &str) -> Vec<Vec<BatchResponse>> {
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
        out.push(match nested {
            Some(inner) => parse_items(rest, &inner).into_iter().flatten().collect(),
            None => parse_http(rest).into_iter().collect(),
        });
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
        let items = parse_items(body, "batchresponse_1");
        assert_eq!(items.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        let parts: Vec<BatchResponse> = items.into_iter().flatten().collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].status, 204);
        assert_eq!(parts[0].entity_id.as_deref(), Some("abc"));
        assert_eq!(parts[0].body, None);
        assert_eq!(parts[1].status, 400);
        assert_eq!(parts[1].body.as_ref().unwrap()["error"]["code"], "0x1");
    }

    #[test]
    fn each_item_gets_its_answers_an_applied_change_set_all_a_failed_one_its_failure() {
        let body = "--b\r\nContent-Type: multipart/mixed; boundary=cs1\r\n\r\n\
            --cs1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: https://x/api/data/v9.2/opportunities(o1)\r\n\r\n\r\n\
            --cs1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n\
            --cs1--\r\n\
            --b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n{\"error\":{\"code\":\"0x2\",\"message\":\"no\"}}\r\n\
            --b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: https://x/api/data/v9.2/opportunities(o3)\r\n\r\n\r\n\
            --b--\r\n";
        let items = parse_items(body, "b");
        assert_eq!(items.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1]);
        assert_eq!(items[0][0].entity_id.as_deref(), Some("o1"));
        assert!(items[0].iter().all(BatchResponse::is_success));
        let refused = items[1][0].error("the opportunity").expect("a failure");
        assert!(
            matches!(&refused, DataverseError::BadRequest { code, .. } if code == "0x2"),
            "{refused}"
        );
        assert_eq!(items[2][0].entity_id.as_deref(), Some("o3"));
        assert!(items[2][0].error("x").is_none());
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
