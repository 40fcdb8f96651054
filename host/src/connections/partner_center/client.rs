//! [`PartnerCenterClient`]: the Referrals API calls and what they share with the Webhooks API
//! calls ([`super::webhooks`]): the token cache, the request headers and the retries of
//! [`crate::connections::send`]; each call names its [`Audience`], which picks the access
//! token.

use super::auth::TokenCache;
use super::error::{PartnerCenterError, message_of};
use super::{Audience, PartnerCenterSettings, Result};
use crate::connections::send::{self, Failure, Plan, Replay, Service};
use crate::connections::telemetry::{Observer, Telemetry};
use crate::domain::ids::new_uuid;
use crate::secret::Secret;
use reqwest::header::{ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

const REFERRALS: &str = "/v1.0/engagements/referrals";

/// The service name in reports ([`Telemetry`]).
const SERVICE: &str = "partner-center";

/// A referral with the eTag to send back in `If-Match`.
#[derive(Debug, Clone)]
pub struct Referral {
    /// The referral as the Referrals API returned it.
    pub body: Value,
    /// Its eTag: the `ETag` header, or the body's `eTag` when the header is missing.
    pub etag: String,
}

struct Shared {
    http: reqwest::Client,
    base_url: String,
    webhooks_url: String,
    max_retries: u32,
    tokens: TokenCache,
    telemetry: Arc<Telemetry>,
}

/// A Partner Center Referrals and Webhooks API client. Cloning shares the connection pool and
/// token cache.
#[derive(Clone)]
pub struct PartnerCenterClient {
    shared: Arc<Shared>,
    correlation_id: Option<String>,
}

impl std::fmt::Debug for PartnerCenterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCenterClient")
            .field("base_url", &self.shared.base_url)
            .field("webhooks_url", &self.shared.webhooks_url)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl PartnerCenterClient {
    /// A client; nothing is sent until the first call.
    pub fn new(settings: PartnerCenterSettings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| PartnerCenterError::Transport(format!("building the HTTP client: {e}")))?;
        let telemetry = Telemetry::new(SERVICE);
        Ok(Self {
            shared: Arc::new(Shared {
                http,
                base_url: settings.base_url.trim_end_matches('/').to_owned(),
                webhooks_url: settings.webhooks_url.trim_end_matches('/').to_owned(),
                max_retries: settings.max_retries,
                tokens: TokenCache::reporting_to(&settings, telemetry.clone()),
                telemetry,
            }),
            correlation_id: None,
        })
    }

    /// Keeps each new (rotated) refresh token in `keeper`, and takes the newest one kept when
    /// the one in hand is refused: refresh tokens may be single use, so the one in the
    /// configuration works only once.
    pub fn keep_refresh_tokens(&self, keeper: std::sync::Arc<dyn super::auth::RefreshTokenKeeper>) {
        self.shared.tokens.set_keeper(keeper);
    }

    /// Reports every request and token request of this client and its clones to `observer`
    /// (as service `partner-center`); answers false when an observer was attached already.
    pub fn observe(&self, observer: Arc<dyn Observer>) -> bool {
        self.shared.telemetry.attach(observer)
    }

    /// The same client sending `MS-CorrelationId: id` (without it, each call gets a new one).
    pub fn with_correlation_id(&self, id: impl Into<String>) -> Self {
        Self {
            shared: self.shared.clone(),
            correlation_id: Some(id.into()),
        }
    }

    /// Every referral matching the OData `filter`, following `@odata.nextLink` to the last page;
    /// `top` is the page size.
    pub async fn list_referrals(
        &self,
        filter: Option<&str>,
        top: Option<u32>,
    ) -> Result<Vec<Value>> {
        self.list_referrals_while(filter, None, top, |_| true).await
    }

    /// Like [`Self::list_referrals`], with `$orderby` (`createdDateTime` or `updatedDateTime`,
    /// `asc`/`desc`), stopping after the first page for which `more(page)` answers false.
    pub async fn list_referrals_while(
        &self,
        filter: Option<&str>,
        orderby: Option<&str>,
        top: Option<u32>,
        mut more: impl FnMut(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let mut pages = ReferralPages::new(self, filter, orderby, top)?;
        let mut all = Vec::new();
        while let Some(items) = pages.next_page().await? {
            let go_on = more(&items);
            all.extend(items);
            if !go_on {
                break;
            }
        }
        Ok(all)
    }

    /// The referrals matching `filter` (ordered by `orderby`, pages of `top`), one page read
    /// each time the stream needs more: a long list is never held whole. The stream ends after
    /// the last page or with the first error.
    pub fn referral_pages(
        &self,
        filter: Option<&str>,
        orderby: Option<&str>,
        top: Option<u32>,
    ) -> Result<impl futures_util::Stream<Item = Result<Vec<Value>>> + Send + 'static> {
        let pages = ReferralPages::new(self, filter, orderby, top)?;
        Ok(futures_util::stream::try_unfold(
            pages,
            |mut pages| async move { Ok(pages.next_page().await?.map(|items| (items, pages))) },
        ))
    }

    /// One referral and its eTag.
    pub async fn get_referral(&self, id: &str) -> Result<Referral> {
        let url = self.referral_url(id)?;
        let (headers, body) = self
            .call(
                "get_referral",
                Method::GET,
                &url,
                None,
                &[],
                &format!("referral {id}"),
            )
            .await?;
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| body["eTag"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                PartnerCenterError::InvalidResponse(format!("referral {id} came without an eTag"))
            })?;
        Ok(Referral { body, etag })
    }

    /// Creates a referral; answers it as created (with its id).
    pub async fn create_referral(&self, body: &Value) -> Result<Value> {
        let url = format!("{}{REFERRALS}", self.shared.base_url);
        let (_, created) = self
            .call(
                "create_referral",
                Method::POST,
                &url,
                Some(body),
                &[],
                "the referral collection",
            )
            .await?;
        Ok(created)
    }

    /// Applies JSON Patch `ops` to a referral, with `If-Match: if_match` when given; answers the
    /// referral as it now is (`Prefer: return=representation`).
    pub async fn patch_referral(
        &self,
        id: &str,
        ops: &[Value],
        if_match: Option<&str>,
    ) -> Result<Value> {
        let url = self.referral_url(id)?;
        let mut extra = vec![(
            HeaderName::from_static("prefer"),
            HeaderValue::from_static("return=representation"),
        )];
        if let Some(tag) = if_match {
            let value = HeaderValue::from_str(tag).map_err(|_| {
                PartnerCenterError::BadRequest(format!("the eTag {tag:?} is not a header value"))
            })?;
            extra.push((IF_MATCH, value));
        }
        let body = Value::Array(ops.to_vec());
        let (_, patched) = self
            .call(
                "update_referral",
                Method::PATCH,
                &url,
                Some(&body),
                &extra,
                &format!("referral {id}"),
            )
            .await?;
        Ok(patched)
    }

    /// The Webhooks API root.
    pub(super) fn webhooks_url(&self) -> &str {
        &self.shared.webhooks_url
    }

    fn referral_url(&self, id: &str) -> Result<String> {
        let mut url = reqwest::Url::parse(&format!("{}{REFERRALS}", self.shared.base_url))
            .map_err(|e| PartnerCenterError::BadRequest(format!("base_url is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| PartnerCenterError::BadRequest("base_url cannot take a path".into()))?
            .push(id);
        Ok(url.to_string())
    }

    /// A Referrals API call (see [`Self::call_api`]).
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        extra: &[(HeaderName, HeaderValue)],
        what: &str,
    ) -> Result<(HeaderMap, Value)> {
        self.call_api(
            Audience::Referrals,
            operation,
            method,
            url,
            body,
            extra,
            what,
        )
        .await
    }

    /// One logical call to the API of `audience`, with its token, through the shared loop
    /// ([`send::send`]): one `MS-RequestId` for all its attempts; 429 waits `Retry-After`, 5xx
    /// and connection errors back off, both up to `max_retries`; a 401 refreshes the token
    /// once. A `POST` is sent again only when it surely did not arrive (a refused connection,
    /// a 429, a 503 without a body); when it may have, the answer is
    /// [`PartnerCenterError::AnswerLost`]. `what` names the resource in errors; each attempt is
    /// reported as `operation` ([`Telemetry`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_api(
        &self,
        audience: Audience,
        operation: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        extra: &[(HeaderName, HeaderValue)],
        what: &str,
    ) -> Result<(HeaderMap, Value)> {
        let plan = Plan {
            operation,
            method: &method,
            url,
            // Partner Center does not say that its 503s mean it declined the request, and
            // every POST of its APIs makes something: only a bare 503 is trusted.
            replay: match Replay::of(&method) {
                Replay::Idempotent => Replay::Idempotent,
                _ => Replay::BareOnly,
            },
            max_retries: self.shared.max_retries,
        };
        let attempts = Attempts {
            client: self,
            audience,
            method: &method,
            url,
            body,
            extra,
            correlation_id: self.correlation_id.clone().unwrap_or_else(new_uuid),
        };
        let answer = send::send(&attempts, plan)
            .await
            .map_err(|failure| failure_error(failure, &method, url))?;
        if !answer.status.is_success() {
            return Err(classify(answer.status, message_of(&answer.text), what));
        }
        let value = if answer.text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&answer.text).map_err(|e| {
                PartnerCenterError::InvalidResponse(format!("{what}: not JSON: {e}"))
            })?
        };
        Ok((answer.headers, value))
    }
}

/// The Partner Center side of one call in the shared loop: the token of its audience and its
/// request with `MS-RequestId` and `MS-CorrelationId`.
struct Attempts<'a> {
    client: &'a PartnerCenterClient,
    audience: Audience,
    method: &'a Method,
    url: &'a str,
    body: Option<&'a Value>,
    extra: &'a [(HeaderName, HeaderValue)],
    /// The client's, or one new for this call (the same on each of its attempts).
    correlation_id: String,
}

impl Service for Attempts<'_> {
    type Error = PartnerCenterError;
    /// Partner Center has no concurrency limiter: an attempt is sent at once.
    type Slot = ();
    const NAME: &'static str = "Partner Center";

    async fn token(&self, rejected: Option<&Secret>) -> Result<Secret> {
        let shared = &self.client.shared;
        shared
            .tokens
            .token(&shared.http, self.audience, rejected)
            .await
    }

    async fn slot(&self) {}

    fn request(&self, token: &Secret, request_id: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .shared
            .http
            .request(self.method.clone(), self.url)
            .bearer_auth(token.expose())
            .header("MS-RequestId", request_id)
            .header("MS-CorrelationId", &self.correlation_id)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in self.extra {
            request = request.header(name, value.clone());
        }
        if let Some(body) = self.body {
            request = request.json(body);
        }
        request
    }

    fn correlation_id(&self) -> Option<&str> {
        Some(&self.correlation_id)
    }

    fn telemetry(&self) -> &Telemetry {
        &self.client.shared.telemetry
    }

    fn throttled(&self, _retry_after: Option<std::time::Duration>, _text: &str) {}

    fn accepted(&self) {}
}

/// The typed error of a call the shared loop gave up on: one that may have been carried out
/// is [`PartnerCenterError::AnswerLost`], so its caller looks it up rather than sending it
/// again.
fn failure_error(
    failure: Failure<PartnerCenterError>,
    method: &Method,
    url: &str,
) -> PartnerCenterError {
    match failure {
        Failure::Token(error) => error,
        Failure::NoAnswer { detail, lost: true } => {
            PartnerCenterError::AnswerLost(format!("{method} {url}: {detail}"))
        }
        Failure::NoAnswer {
            detail,
            lost: false,
        } => PartnerCenterError::Transport(format!("{method} {url}: {detail}")),
        Failure::Throttled { retry_after } => PartnerCenterError::Throttled { retry_after },
        Failure::Server {
            status,
            text,
            lost: true,
        } => PartnerCenterError::AnswerLost(format!(
            "{method} {url} answered {status}: {}",
            message_of(&text)
        )),
        Failure::Server {
            status,
            text,
            lost: false,
        } => PartnerCenterError::Server {
            status: status.as_u16(),
            message: message_of(&text),
        },
        Failure::Unauthorized { text } => PartnerCenterError::Unauthorized(format!(
            "the API still answered 401 after a token refresh: {}",
            message_of(&text)
        )),
    }
}

/// Reading the referral list page by page, following `@odata.nextLink`.
///
/// The link is opaque, and Microsoft's documented one is on another scheme and path than the
/// request (`http://api.partner.microsoft.com/v1.0/referrals?$skiptoken=…`). It is followed on
/// the configured API host only, with the configured scheme and port (so https stays https and
/// the token never leaves that host); when its path answers 404, its `$skiptoken` is sent on
/// the list's own path instead, and every later page goes there directly.
struct ReferralPages {
    client: PartnerCenterClient,
    /// The first page's URL: the list's own path and query.
    first: reqwest::Url,
    next: Option<reqwest::Url>,
    /// Whether next links' paths answered 404, so `$skiptoken` goes on the list's path.
    skiptoken_on_list_path: bool,
}

impl ReferralPages {
    fn new(
        client: &PartnerCenterClient,
        filter: Option<&str>,
        orderby: Option<&str>,
        top: Option<u32>,
    ) -> Result<Self> {
        let mut url = reqwest::Url::parse(&format!("{}{REFERRALS}", client.shared.base_url))
            .map_err(|e| PartnerCenterError::BadRequest(format!("base_url is not a URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(filter) = filter {
                query.append_pair("$filter", filter);
            }
            if let Some(orderby) = orderby {
                query.append_pair("$orderby", orderby);
            }
            if let Some(top) = top {
                query.append_pair("$top", &top.to_string());
            }
        }
        Ok(Self {
            client: client.clone(),
            first: url.clone(),
            next: Some(url),
            skiptoken_on_list_path: false,
        })
    }

    /// The next page's referrals; `None` after the last page.
    async fn next_page(&mut self) -> Result<Option<Vec<Value>>> {
        let Some(page_url) = self.next.take() else {
            return Ok(None);
        };
        let mut page = match self.get(&page_url).await {
            Err(PartnerCenterError::NotFound(_)) if page_url != self.first => {
                let fallback = skiptoken_on(&self.first, &page_url)?;
                tracing::debug!(
                    link = %page_url,
                    "the next link's path answered 404; sending its $skiptoken on the list's path"
                );
                self.skiptoken_on_list_path = true;
                self.get(&fallback).await?
            }
            other => other?,
        };
        let Value::Array(items) = page["value"].take() else {
            return Err(PartnerCenterError::InvalidResponse(
                "a referral list page has no 'value' array".into(),
            ));
        };
        if let Some(link) = page["@odata.nextLink"].as_str() {
            let next = on_api_host(&self.first, link)?;
            let next = match self.skiptoken_on_list_path {
                true => skiptoken_on(&self.first, &next)?,
                false => next,
            };
            if next == page_url {
                return Err(PartnerCenterError::InvalidResponse(format!(
                    "@odata.nextLink {link} repeats the page it came with"
                )));
            }
            self.next = Some(next);
        }
        Ok(Some(items))
    }

    async fn get(&self, url: &reqwest::Url) -> Result<Value> {
        let (_, page) = self
            .client
            .call(
                "list_referrals",
                Method::GET,
                url.as_str(),
                None,
                &[],
                "the referral list",
            )
            .await?;
        Ok(page)
    }
}

/// `link` moved onto `api`'s scheme, host and port, keeping its path and query; an error when
/// it names another host (the bearer token must not go there).
fn on_api_host(api: &reqwest::Url, link: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(link).map_err(|e| {
        PartnerCenterError::InvalidResponse(format!("@odata.nextLink is not a URL: {e}"))
    })?;
    let same_host = parsed
        .host_str()
        .zip(api.host_str())
        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
    if !same_host {
        return Err(PartnerCenterError::InvalidResponse(format!(
            "@odata.nextLink {link} names another host than the API's {}; not following it",
            api.host_str().unwrap_or_default()
        )));
    }
    let mut moved = api.clone();
    moved.set_path(parsed.path());
    moved.set_query(parsed.query());
    Ok(moved)
}

/// The list's first page URL with `link`'s `$skiptoken` instead of its own query.
fn skiptoken_on(first: &reqwest::Url, link: &reqwest::Url) -> Result<reqwest::Url> {
    let token = link
        .query_pairs()
        .find(|(k, _)| k == "$skiptoken")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            PartnerCenterError::InvalidResponse(format!(
                "@odata.nextLink {link} answered 404 and carries no $skiptoken to fall back on"
            ))
        })?;
    let mut url = first.clone();
    url.set_query(None);
    url.query_pairs_mut().append_pair("$skiptoken", &token);
    Ok(url)
}

/// The typed error of a final answer that is not a success (429s, 5xx and a second 401 are
/// [`Failure`]s of the loop, see [`failure_error`]).
fn classify(status: StatusCode, message: String, what: &str) -> PartnerCenterError {
    match status {
        StatusCode::PRECONDITION_FAILED => PartnerCenterError::PreconditionFailed {
            id: what.trim_start_matches("referral ").to_owned(),
            message,
        },
        StatusCode::NOT_FOUND => PartnerCenterError::NotFound(what.to_owned()),
        StatusCode::FORBIDDEN => PartnerCenterError::Forbidden(message),
        StatusCode::CONFLICT => PartnerCenterError::Conflict(message),
        s => PartnerCenterError::BadRequest(format!("{s}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> reqwest::Url {
        reqwest::Url::parse("https://api.partner.microsoft.com/v1.0/engagements/referrals?$top=5")
            .unwrap()
    }

    #[test]
    fn the_documented_next_link_is_followed_on_the_api_host_over_https() {
        let next = on_api_host(
            &api(),
            "http://api.partner.microsoft.com/v1.0/referrals?$skiptoken=abc",
        )
        .unwrap();
        assert_eq!(
            next.as_str(),
            "https://api.partner.microsoft.com/v1.0/referrals?$skiptoken=abc"
        );
    }

    #[test]
    fn a_next_link_on_another_host_is_refused() {
        for link in [
            "https://evil.example/v1.0/referrals?$skiptoken=abc",
            "http://api.partner.microsoft.com.evil.example/v1.0/referrals?$skiptoken=abc",
            "not a url",
        ] {
            assert!(on_api_host(&api(), link).is_err(), "{link}");
        }
    }

    #[test]
    fn the_fallback_sends_only_the_skiptoken_on_the_lists_path() {
        let link = reqwest::Url::parse(
            "https://api.partner.microsoft.com/v1.0/referrals?$skiptoken=a%2Bb",
        )
        .unwrap();
        let url = skiptoken_on(&api(), &link).unwrap();
        assert_eq!(url.path(), "/v1.0/engagements/referrals");
        let pairs: Vec<_> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs, vec![("$skiptoken".to_owned(), "a+b".to_owned())]);
        let without = reqwest::Url::parse("https://api.partner.microsoft.com/v1.0/x").unwrap();
        assert!(skiptoken_on(&api(), &without).is_err());
    }
}
