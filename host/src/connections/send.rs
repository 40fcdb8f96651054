//! The request loop both service clients share: one logical call sent until it gets an answer
//! worth giving back, or until it must not be sent again.
//!
//! Partner Center and Dataverse need the same loop: get a token, send, fetch a new token once
//! on a 401, wait `Retry-After` on a 429, back off after a 5xx or a failed connection, and keep
//! one request id across the attempts. They used to have a copy each, and the copies drifted
//! on the rule that matters most: when a request that is not idempotent may be sent again. A
//! second copy of that rule is a second chance to make a duplicate, so there is one, here
//! ([`Replay`]).
//!
//! What differs between the services comes in through [`Service`] (the token source, the
//! request's headers, Dataverse's adaptive concurrency limiter) and goes out as a
//! service-neutral [`Failure`] that each client turns into its typed error; every attempt is
//! reported to the client's [`Telemetry`].

use super::retry;
use super::telemetry::Telemetry;
use crate::secret::Secret;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// When a call may be sent again after an attempt that may have reached the service.
///
/// Whatever the kind, a call is sent again after a refused connection and after a 429: the
/// service surely did not run it. The kinds differ on the failures after which it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Sending it twice is harmless (a read, a `PATCH` with `If-Match`, a `PUT`, a `POST`
    /// that only reads or repeats the same update): sent again after any 5xx, any lost
    /// answer.
    Idempotent,
    /// Not idempotent, to a service whose 503 means it declined the request (Dataverse's
    /// service protection and maintenance answers): sent again after a 503, never after
    /// another 5xx or a lost answer.
    DeclinedOn503,
    /// Not idempotent, and a 503 with a body may come from a gateway after the service
    /// committed (a create, which the caller looks up when its answer is lost; any Partner
    /// Center write): sent again only after a bare 503 (no body), never after another 5xx or
    /// a lost answer.
    BareOnly,
}

impl Replay {
    /// The kind of a call made with `method` to a service whose 503 means "declined":
    /// everything but `POST` is idempotent by HTTP's definition.
    pub(crate) fn of(method: &Method) -> Self {
        if *method == Method::POST {
            Replay::DeclinedOn503
        } else {
            Replay::Idempotent
        }
    }

    /// Whether the call may be sent again after an attempt that got no answer; `refused`
    /// when the connection was never made (so the request never left).
    fn after_no_answer(self, refused: bool) -> bool {
        refused || self == Replay::Idempotent
    }

    /// Whether the call may be sent again after a 5xx answer `status` with body `text`.
    fn after_server_error(self, status: StatusCode, text: &str) -> bool {
        let declined = status == StatusCode::SERVICE_UNAVAILABLE;
        match self {
            Replay::Idempotent => true,
            Replay::DeclinedOn503 => declined,
            Replay::BareOnly => declined && text.trim().is_empty(),
        }
    }
}

/// What the loop needs to know about one call besides what [`Service`] sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan<'a> {
    /// What the call does, from a fixed vocabulary (`get_row`, `create_referral`, …), in the
    /// request metrics ([`Telemetry`]); never an id.
    pub operation: &'static str,
    /// The method and URL, for the logs.
    pub method: &'a Method,
    pub url: &'a str,
    /// When it may be sent again.
    pub replay: Replay,
    /// How many times it is sent again at most (after the first attempt).
    pub max_retries: u32,
}

/// One service's side of a call: its token, its request, and what it wants to hear about
/// each attempt. Implemented per call, so [`Service::request`] knows what to send.
pub(crate) trait Service {
    /// The client's typed error, which its token source answers.
    type Error;
    /// What an attempt holds while it is in flight (a concurrency slot), dropped once its
    /// answer is read.
    type Slot;
    /// The service's name in the logs.
    const NAME: &'static str;

    /// A valid access token; a new one when `rejected` (the token the service just answered
    /// 401 to) is given.
    async fn token(&self, rejected: Option<&Secret>) -> Result<Secret, Self::Error>;

    /// Waits until an attempt may be sent.
    async fn slot(&self) -> Self::Slot;

    /// The request of one attempt, carrying `token` and the call's `request_id` (the same on
    /// every attempt of the call).
    fn request(&self, token: &Secret, request_id: &str) -> reqwest::RequestBuilder;

    /// The id the call's attempts are correlated by at the service beyond the request id
    /// (Partner Center's `MS-CorrelationId`), logged with each attempt.
    fn correlation_id(&self) -> Option<&str> {
        None
    }

    /// Where each attempt is reported.
    fn telemetry(&self) -> &Telemetry;

    /// An attempt was answered 429 with body `text`.
    fn throttled(&self, retry_after: Option<Duration>, text: &str);

    /// An attempt got an answer other than a 429 or a 5xx.
    fn accepted(&self);
}

/// An answer the loop gives back: any status but a 429, a 5xx or a second 401, which are
/// [`Failure`]s.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

/// Why the loop gave up on a call, for the client to turn into its typed error.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// The token source failed.
    Token(E),
    /// No answer, or one cut short: `detail` says what went wrong. `lost` when the call may
    /// have been carried out and was not sent again for that reason (so the caller has to find
    /// out whether it landed); otherwise it surely did not arrive or every retry was spent.
    NoAnswer { detail: String, lost: bool },
    /// Still 429 after every retry.
    Throttled { retry_after: Option<Duration> },
    /// A 5xx not sent again: `lost` when because the call may have been carried out,
    /// otherwise after every retry.
    Server {
        status: StatusCode,
        text: String,
        lost: bool,
    },
    /// 401 even with a new token; `text` is the answer's body.
    Unauthorized { text: String },
}

/// Sends one logical call until it has an answer: one request id for all its attempts; a 429
/// waits `Retry-After`, a 5xx `Retry-After` or a backoff, a connection error a backoff, each
/// only as [`Plan::replay`] allows and up to [`Plan::max_retries`] times; a 401 fetches a new
/// token once.
pub(crate) async fn send<S: Service>(
    service: &S,
    plan: Plan<'_>,
) -> Result<Answer, Failure<S::Error>> {
    let request_id = crate::domain::ids::new_uuid();
    let mut attempt = 0u32;
    let mut rejected: Option<Secret> = None;
    let mut refreshed = false;
    'call: loop {
        let token = service
            .token(rejected.as_ref())
            .await
            .map_err(Failure::Token)?;
        let slot = service.slot().await;
        let request = service.request(&token, &request_id);
        // "Partner Center request" / "Dataverse request": what operators (and tests) search
        // the log for, one line per attempt.
        tracing::debug!(
            method = %plan.method,
            url = plan.url,
            request_id,
            correlation_id = service.correlation_id(),
            attempt,
            "{} request",
            S::NAME
        );
        let exchange = service.telemetry().start(plan.operation);
        let spent = attempt >= plan.max_retries;
        // A failure without a (whole) answer: the wait before sending again, or why not.
        let unanswered = |detail: String, refused: bool| {
            let resend = plan.replay.after_no_answer(refused);
            match resend && !spent {
                true => Ok(retry::backoff(attempt)),
                false => Err(Failure::NoAnswer {
                    detail,
                    lost: !resend,
                }),
            }
        };
        let wait = 'attempt: {
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    exchange.failed();
                    drop(slot);
                    if error.is_builder() {
                        // Never sent: the request itself is malformed, and would be again.
                        return Err(Failure::NoAnswer {
                            detail: error.to_string(),
                            lost: false,
                        });
                    }
                    break 'attempt unanswered(error.to_string(), error.is_connect())?;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await;
            drop(slot);
            let text = match text {
                Ok(text) => {
                    exchange.answered(status.as_u16());
                    text
                }
                Err(error) => {
                    // It arrived and was answered: as unsure as a lost answer.
                    exchange.failed();
                    break 'attempt unanswered(format!("reading the answer: {error}"), false)?;
                }
            };
            let retry_after = retry::retry_after(&headers);
            if status == StatusCode::TOO_MANY_REQUESTS {
                service.throttled(retry_after, &text);
                if spent {
                    return Err(Failure::Throttled { retry_after });
                }
            } else if status.is_server_error() {
                let resend = plan.replay.after_server_error(status, &text);
                if !resend || spent {
                    return Err(Failure::Server {
                        status,
                        text,
                        lost: !resend,
                    });
                }
            } else {
                service.accepted();
                if status != StatusCode::UNAUTHORIZED {
                    return Ok(Answer {
                        status,
                        headers,
                        text,
                    });
                }
                if refreshed {
                    return Err(Failure::Unauthorized { text });
                }
                refreshed = true;
                rejected = Some(token);
                tracing::debug!(request_id, "{} answered 401; fetching a new token", S::NAME);
                continue 'call;
            }
            retry_after.unwrap_or_else(|| retry::backoff(attempt))
        };
        attempt += 1;
        tracing::debug!(
            request_id,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying a {} request",
            S::NAME
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_ERRORS: [StatusCode; 4] = [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::GATEWAY_TIMEOUT,
    ];
    const BODY: &str = r#"{"error":{"code":"InternalServerError","message":"m"}}"#;

    #[test]
    fn an_idempotent_call_is_sent_again_after_any_failure() {
        for status in SERVER_ERRORS {
            assert!(Replay::Idempotent.after_server_error(status, BODY));
            assert!(Replay::Idempotent.after_server_error(status, ""));
        }
        assert!(Replay::Idempotent.after_no_answer(false));
        assert!(Replay::Idempotent.after_no_answer(true));
    }

    #[test]
    fn a_call_that_is_not_idempotent_is_sent_again_only_when_it_surely_did_not_arrive() {
        for replay in [Replay::DeclinedOn503, Replay::BareOnly] {
            for status in SERVER_ERRORS {
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    assert!(
                        !replay.after_server_error(status, BODY),
                        "{replay:?} {status}"
                    );
                    assert!(
                        !replay.after_server_error(status, ""),
                        "{replay:?} {status}"
                    );
                }
            }
            assert!(replay.after_server_error(StatusCode::SERVICE_UNAVAILABLE, " "));
            assert!(
                !replay.after_no_answer(false),
                "{replay:?} after a lost answer"
            );
            assert!(
                replay.after_no_answer(true),
                "{replay:?} after a refused connection"
            );
        }
        let busy = StatusCode::SERVICE_UNAVAILABLE;
        assert!(Replay::DeclinedOn503.after_server_error(busy, BODY));
        assert!(!Replay::BareOnly.after_server_error(busy, BODY));
    }

    #[test]
    fn only_posts_are_not_idempotent_by_default() {
        assert_eq!(Replay::of(&Method::POST), Replay::DeclinedOn503);
        for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            assert_eq!(Replay::of(&method), Replay::Idempotent);
        }
    }
}
