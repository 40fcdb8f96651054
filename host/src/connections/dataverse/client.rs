//! [`DataverseClient`]: what every call shares (token, limiter, headers, and the retries of
//! [`crate::connections::send`]) and the row calls: get, query with paging, update and upsert
//! by alternate key (creates are in [`super::creates`]).

use super::auth::TokenCache;
use super::error::{DataverseError, code_of};
use super::limiter::{Limiter, Permit, Refusal, Window};
use super::request::{Answer, Call, Payload, check};
use super::{DataverseSettings, Result};
use crate::connections::send::{self, Failure, Plan, Service};
use crate::connections::telemetry::{Observer, Telemetry};
use crate::connections::{message_of, odata};
use crate::secret::Secret;
use reqwest::Method;
use reqwest::header;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The Web API path below the environment root.
const API_PATH: &str = "/api/data/v9.2";

/// The service name in reports ([`Telemetry`]).
const SERVICE: &str = "dataverse";

/// A row and the `@odata.etag` to send back in `If-Match`.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row as the Web API returned it, annotations included.
    pub body: Value,
    /// The row's `@odata.etag`; `None` when the answer has none.
    pub etag: Option<String>,
}

/// What a client has sent so far: every attempt, as Dataverse's service protection limits
/// count requests (a `$batch` is one), and the 429s among their answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Attempts sent, each counted as one request (a `$batch` included).
    pub requests: u64,
    /// Answers that were 429 (throttled).
    pub throttled: u64,
}

impl Traffic {
    /// What was sent between `earlier` and `self`.
    pub fn since(self, earlier: Traffic) -> Traffic {
        Traffic {
            requests: self.requests.saturating_sub(earlier.requests),
            throttled: self.throttled.saturating_sub(earlier.throttled),
        }
    }
}

struct Shared {
    http: reqwest::Client,
    root: String,
    api: reqwest::Url,
    max_retries: u32,
    tokens: TokenCache,
    limiter: Arc<Limiter>,
    sent: AtomicU64,
    throttled: AtomicU64,
    telemetry: Arc<Telemetry>,
}

/// A Dataverse Web API client. Cloning shares the connection pool, token cache and limiter.
#[derive(Clone)]
pub struct DataverseClient {
    shared: Arc<Shared>,
    page_size: Option<u32>,
}

impl std::fmt::Debug for DataverseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataverseClient")
            .field("url", &self.shared.root)
            .field("page_size", &self.page_size)
            .field("limiter", &self.shared.limiter)
            .finish_non_exhaustive()
    }
}

impl DataverseClient {
    /// A client; nothing is sent until the first call.
    pub fn new(settings: DataverseSettings) -> Result<Self> {
        let root = settings.url.trim_end_matches('/').to_owned();
        let api = reqwest::Url::parse(&format!("{root}{API_PATH}/")).map_err(|e| {
            DataverseError::BadRequest {
                code: String::new(),
                message: format!("url {:?} is not a URL ({e}); set it to the environment root, e.g. https://contoso.crm.dynamics.com", settings.url),
            }
        })?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| DataverseError::Transport(format!("building the HTTP client: {e}")))?;
        let telemetry = Telemetry::new(SERVICE);
        Ok(Self {
            shared: Arc::new(Shared {
                http,
                tokens: TokenCache::new(&settings, &root, telemetry.clone()),
                telemetry,
                root,
                api,
                max_retries: settings.max_retries,
                limiter: Limiter::new(settings.max_concurrency),
                sent: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
            }),
            page_size: None,
        })
    }

    /// Reports every request and token request of this client and its clones to `observer`
    /// (as service `dataverse`); answers false when an observer was attached already.
    pub fn observe(&self, observer: Arc<dyn Observer>) -> bool {
        self.shared.telemetry.attach(observer)
    }

    /// The same client asking for pages of at most `rows` rows (`Prefer: odata.maxpagesize`)
    /// in [`query`](Self::query) and [`track_changes`](Self::track_changes).
    pub fn with_page_size(&self, rows: u32) -> Self {
        Self {
            shared: self.shared.clone(),
            page_size: Some(rows.clamp(1, 5000)),
        }
    }

    /// The limiter's current bound, requests in flight and run of successes.
    pub fn concurrency(&self) -> Window {
        self.shared.limiter.window()
    }

    /// The requests sent and 429s met since the client was made (clones share them).
    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.shared.sent.load(Ordering::Relaxed),
            throttled: self.shared.throttled.load(Ordering::Relaxed),
        }
    }

    /// `GET {set}({id})?{query}`: the row and its etag, `None` when there is no such row.
    pub async fn get(&self, set: &str, id: &str, query: &str) -> Result<Option<Row>> {
        let what = format!("{set}({id})");
        let url = self.url(&what, query)?;
        match self
            .send(Call::new("get_row", Method::GET, url, &what))
            .await
        {
            Ok(answer) => {
                let body = answer.json(&what)?;
                let etag = body["@odata.etag"].as_str().map(str::to_owned);
                Ok(Some(Row { body, etag }))
            }
            Err(DataverseError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET {set}?{query}`: every row, following `@odata.nextLink` (same origin only).
    pub async fn query(&self, set: &str, query: &str) -> Result<Vec<Value>> {
        let url = self.url(set, query)?;
        let (rows, _) = self.pages("query_rows", url, set, None).await?;
        Ok(rows)
    }

    /// `PATCH {set}({id})` with `If-Match: if_match`, or `If-Match: *` when `None` (so it never
    /// creates a row). A changed row is [`DataverseError::PreconditionFailed`], a missing one
    /// [`DataverseError::NotFound`].
    pub async fn update(
        &self,
        set: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<()> {
        let what = format!("{set}({id})");
        let url = self.url(&what, "")?;
        let call = Call::new("update_row", Method::PATCH, url, &what)
            .json(body)
            .header("if-match", if_match.unwrap_or("*"))?;
        self.send(call).await.map(drop)
    }

    /// [`update`](Self::update) answering the row as the write left it (`Prefer:
    /// return=representation`: every column, no expansions), so a caller needs no read-back.
    pub async fn update_returning(
        &self,
        set: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Row> {
        let what = format!("{set}({id})");
        let url = self.url(&what, "")?;
        let call = Call::new("update_row", Method::PATCH, url, &what)
            .json(body)
            .header("if-match", if_match.unwrap_or("*"))?
            .header("prefer", "return=representation")?;
        let answer = self.send(call).await?;
        let body = answer.json(&what)?;
        if !body.is_object() {
            return Err(DataverseError::InvalidResponse(format!(
                "{what}: the update asked for the row (return=representation) and got none"
            )));
        }
        let etag = body["@odata.etag"].as_str().map(str::to_owned);
        Ok(Row { body, etag })
    }

    /// `PATCH {set}({key_column}='{key_value}')`: creates the row or updates the one with that
    /// alternate key; answers its id.
    pub async fn upsert_by_key(
        &self,
        set: &str,
        key_column: &str,
        key_value: &str,
        body: &Value,
    ) -> Result<String> {
        let what = format!("{set}({key_column}='{key_value}')");
        let path = format!("{set}({key_column}={})", odata::literal(key_value));
        let url = self.url(&path, "")?;
        let answer = self
            .send(Call::new("upsert_row", Method::PATCH, url, &what).json(body))
            .await?;
        answer.entity_id(&what)
    }

    /// How many times a call is retried.
    pub(crate) fn max_retries(&self) -> u32 {
        self.shared.max_retries
    }

    /// `{url}/api/data/v9.2/{path}?{query}`, percent-encoded.
    pub(crate) fn url(&self, path: &str, query: &str) -> Result<String> {
        let path = path.trim_start_matches('/');
        let mut url = self
            .shared
            .api
            .join(&format!(
                "./{}",
                path.replace('?', "%3F").replace('#', "%23")
            ))
            .map_err(|e| DataverseError::BadRequest {
                code: String::new(),
                message: format!("{path:?} is not a Web API path: {e}"),
            })?;
        let query = query.trim_start_matches('?');
        url.set_query((!query.is_empty()).then_some(query));
        Ok(url.to_string())
    }

    /// Checks that a link Dataverse sent stays on its origin (the bearer token must not leave).
    pub(crate) fn own_link(&self, link: &str, previous: &str) -> Result<String> {
        let parsed = reqwest::Url::parse(link).map_err(|e| {
            DataverseError::InvalidResponse(format!("the link {link} is not a URL: {e}"))
        })?;
        if parsed.origin() != self.shared.api.origin() || link == previous {
            return Err(DataverseError::InvalidResponse(format!(
                "the link {link} leaves {} or repeats the page",
                self.shared.root
            )));
        }
        Ok(link.to_owned())
    }

    /// Reads `url` and its `@odata.nextLink` pages; answers the rows and the last page's
    /// `@odata.deltaLink`. `prefer` is added to the page-size preference on every page; each
    /// page is reported as `operation`.
    pub(crate) async fn pages(
        &self,
        operation: &'static str,
        url: String,
        what: &str,
        prefer: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let prefer: Vec<String> = prefer
            .map(str::to_owned)
            .into_iter()
            .chain(self.page_size.map(|n| format!("odata.maxpagesize={n}")))
            .collect();
        let mut next = Some(url);
        let mut rows = Vec::new();
        let mut delta = None;
        while let Some(page_url) = next.take() {
            let mut call = Call::new(operation, Method::GET, page_url.clone(), what);
            if !prefer.is_empty() {
                call = call.header("prefer", &prefer.join(","))?;
            }
            let mut page = self.send(call).await?.json(what)?;
            let Value::Array(items) = page["value"].take() else {
                return Err(DataverseError::InvalidResponse(format!(
                    "a page of {what} has no 'value' array"
                )));
            };
            rows.extend(items);
            if let Some(link) = page["@odata.nextLink"].as_str() {
                next = Some(self.own_link(link, &page_url)?);
            }
            delta = page["@odata.deltaLink"].as_str().map(str::to_owned);
        }
        Ok((rows, delta))
    }

    /// [`exchange`](Self::exchange), then a typed error for a failed answer.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Answer> {
        let what = call.what.clone();
        check(self.exchange(call).await?, &what)
    }

    /// One logical call through the shared loop ([`send::send`]): one
    /// `x-ms-client-request-id` for all its attempts, each attempt inside a limiter slot. A 429
    /// lowers the concurrency and waits `Retry-After`; 5xx and connection errors back off; both
    /// up to `max_retries`. A call is sent again after it may have arrived only as its
    /// [`Call::replay`] allows. A 401 fetches a new token once.
    pub(crate) async fn exchange(&self, call: Call<'_>) -> Result<Answer> {
        let plan = Plan {
            operation: call.operation,
            method: &call.method,
            url: &call.url,
            replay: call.replay,
            max_retries: self.shared.max_retries,
        };
        let attempts = Attempts {
            client: self,
            call: &call,
        };
        send::send(&attempts, plan)
            .await
            .map_err(|failure| failure_error(failure, &call))
    }

    fn request(
        &self,
        call: &Call<'_>,
        token: &Secret,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .shared
            .http
            .request(call.method.clone(), &call.url)
            .bearer_auth(token.expose())
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .header(header::ACCEPT, "application/json")
            .header("x-ms-client-request-id", request_id);
        for (name, value) in &call.headers {
            request = request.header(name, value.clone());
        }
        match &call.payload {
            Payload::Empty => request,
            Payload::Json(body) => request
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body.to_string()),
            Payload::Raw { content_type, text } => request
                .header(header::CONTENT_TYPE, content_type.as_str())
                .body(text.clone()),
        }
    }
}

/// The Dataverse side of one call in the shared loop: the client's token cache, limiter,
/// counters and telemetry, and the call's request.
struct Attempts<'c, 'a> {
    client: &'c DataverseClient,
    call: &'c Call<'a>,
}

impl Service for Attempts<'_, '_> {
    type Error = DataverseError;
    type Slot = Permit;
    const NAME: &'static str = "Dataverse";

    async fn token(&self, rejected: Option<&Secret>) -> Result<Secret> {
        let shared = &self.client.shared;
        shared.tokens.token(&shared.http, rejected).await
    }

    /// A limiter slot; the attempt counts as a request sent ([`Traffic`]).
    async fn slot(&self) -> Permit {
        let shared = &self.client.shared;
        let permit = shared.limiter.acquire().await;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        permit
    }

    fn request(&self, token: &Secret, request_id: &str) -> reqwest::RequestBuilder {
        self.client.request(self.call, token, request_id)
    }

    fn telemetry(&self) -> &Telemetry {
        &self.client.shared.telemetry
    }

    /// Counts the 429 and lowers the concurrency (or pauses for a spent quota).
    fn throttled(&self, retry_after: Option<Duration>, text: &str) {
        let shared = &self.client.shared;
        shared.throttled.fetch_add(1, Ordering::Relaxed);
        shared
            .limiter
            .throttled(retry_after, Refusal::of_code(&code_of(text)));
    }

    fn accepted(&self) {
        self.client.shared.limiter.succeeded();
    }
}

/// The typed error of a call the shared loop gave up on.
fn failure_error(failure: Failure<DataverseError>, call: &Call<'_>) -> DataverseError {
    let Call { method, what, .. } = call;
    match failure {
        Failure::Token(error) => error,
        // A lost answer is a transport error here: [`DataverseError::answer_lost`] tells
        // creates to look their row up.
        Failure::NoAnswer { detail, .. } => {
            DataverseError::Transport(format!("{method} {what}: {detail}"))
        }
        Failure::Throttled { retry_after } => DataverseError::Throttled { retry_after },
        Failure::Server { status, text, .. } => DataverseError::Server {
            status: status.as_u16(),
            message: format!("{method} {what}: {}", message_of(&text)),
        },
        Failure::Unauthorized { text } => DataverseError::Unauthorized(format!(
            "the Web API still answered 401 after a new token: {}",
            message_of(&text)
        )),
    }
}
