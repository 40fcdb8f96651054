//! Creates that never make a duplicate, even when their answer is lost.
//!
//! A create whose answer never arrives (a timeout, a dropped connection, a 500) may or may not
//! have been carried out; sending it again blindly could make the row twice. So every create
//! names its row: the id (a GUID) is chosen before the first attempt and the row is created with
//! `PATCH {set}({id})` and `If-None-Match: *`, which Dataverse documents as never updating: it
//! creates the row, or answers 412 ("A record with matching key values already exists.") and
//! changes nothing.
//!
//! When the answer is lost, the client first finds out whether the row is there (a read by id):
//! if it is, the create is done; if not, it is sent again, still with `If-None-Match: *`, so a
//! first attempt that lands late makes the retry fail with 412 rather than a second row. A 412
//! after a lost answer is then confirmed by reading the row back. Only a refused connection, a
//! 429 or a bare 503 (Dataverse surely did not run it) is sent again without looking.
//!
//! [`DataverseClient::batch_items`] does the same for a `$batch` of independent items whose
//! creates are [`BatchRequest::create`]s: after a lost answer, one `$batch` of reads (or, if its
//! answer is lost too, a read per row) finds the items that landed (a change set is atomic, so
//! its create tells for all of it), and only the others are sent again.

use super::Result;
use super::batch::{BatchItem, BatchRequest, BatchResponse, MAX_REQUESTS};
use super::client::DataverseClient;
use super::error::DataverseError;
use super::request::{Call, Replay};
use crate::connections::retry;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Reads sent at once when the rows of a `$batch` are read back one by one.
const READS_AT_ONCE: usize = 8;

impl DataverseClient {
    /// Creates a row of `set` with the columns of `body` and answers its id, a new GUID. Never
    /// creates it twice: see [`create_with_id`](Self::create_with_id).
    pub async fn create(&self, set: &str, body: &Value) -> Result<String> {
        self.create_with_id(set, &crate::domain::ids::new_uuid(), body)
            .await
    }

    /// Creates row `id` of `set` with the columns of `body` (which should not hold the primary
    /// key; `id` is it) and answers `id`. A lost answer is followed by a read: the row found
    /// means created; not found, the create is sent again. A row `id` that existed before this
    /// call is [`DataverseError::PreconditionFailed`], and so is a row that would repeat the
    /// alternate key of another (e.g. an opportunity's Referral Identifier).
    pub async fn create_with_id(&self, set: &str, id: &str, body: &Value) -> Result<String> {
        let what = format!("{set}({id})");
        let url = self.url(&what, "")?;
        let attempt = || {
            let call = Call::new("create_row", Method::PATCH, url.clone(), &what)
                .json(body)
                .header("if-none-match", "*");
            async move {
                let mut call = call?;
                call.replay = Replay::BareOnly;
                self.send(call).await.map(|_| id.to_owned())
            }
        };
        self.create_until_settled(set, id, attempt, || id.to_owned())
            .await
    }

    /// Sends a create (`attempt`, which names its row: `id` of `set`) until it is known to
    /// have landed or to have failed, and never twice where the first may have landed. A lost
    /// answer is followed by a read of row `id`: found, the create landed (`landed` answers);
    /// not found, it is sent again, up to the client's retries. A retry refused because the
    /// row exists (412) is read back too: a first attempt that landed late made it. Any other
    /// error is the create's.
    pub(super) async fn create_until_settled<T, A, F>(
        &self,
        set: &str,
        id: &str,
        mut attempt: A,
        landed: impl FnOnce() -> T,
    ) -> Result<T>
    where
        A: FnMut() -> F,
        F: Future<Output = Result<T>>,
    {
        let mut in_doubt = false;
        let mut round = 0;
        loop {
            let error = match attempt().await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let found = match &error {
                // The row exists: made by an attempt whose answer was lost, or it is another
                // duplicate key (then the row `id` is not there).
                DataverseError::PreconditionFailed(_) if in_doubt => self.exists(set, id).await,
                e if e.answer_lost() => self.exists(set, id).await,
                _ => return Err(error),
            };
            match found {
                Ok(true) => {
                    tracing::debug!(set, id, "a create whose answer was lost had landed");
                    return Ok(landed());
                }
                Ok(false) if error.answer_lost() && round < self.max_retries() => {}
                // Not found, out of retries, or the read failed too: the create's own error.
                _ => return Err(error),
            }
            in_doubt = true;
            tokio::time::sleep(retry::backoff(round)).await;
            round += 1;
        }
    }

    /// Whether row `id` of `set` exists.
    pub(crate) async fn exists(&self, set: &str, id: &str) -> Result<bool> {
        Ok(self.get(set, id, "").await?.is_some())
    }

    /// `POST $batch` of independent `items` with `Prefer: odata.continue-on-error`, so every
    /// item runs whatever happens to the others. Answers one list per item, in order: a request
    /// has its answer; a change set has one answer per request when it was applied, or only the
    /// answer of the request that failed it (then none of its requests was applied).
    ///
    /// When every item either starts with a [`BatchRequest::create`] or holds no POST, a lost
    /// answer is not a failure: the items whose create landed are answered as applied (a 204
    /// per request, the create's with its id), and the others are sent again, up to the
    /// client's retries. An item still unanswered then gets the batch's error as its only
    /// answer. The error is the batch's as a whole (refused as malformed, throttled after every
    /// retry, or a lost answer that could not be sorted out): no item's outcome is known then.
    pub async fn batch_items(&self, items: &[BatchItem]) -> Result<Vec<Vec<BatchResponse>>> {
        let creates: Vec<Option<(&str, &str)>> = items.iter().map(created_row).collect();
        let checkable = items.iter().zip(&creates).all(|(item, create)| {
            create.is_some() || item.requests().iter().all(|r| r.method != Method::POST)
        });
        if !checkable || creates.iter().all(Option::is_none) {
            return self.batch_items_once(items, false).await;
        }
        let mut answers: Vec<Option<Vec<BatchResponse>>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut in_doubt: HashSet<usize> = HashSet::new();
        let mut round = 0;
        loop {
            let sent: Vec<BatchItem> = pending.iter().map(|&i| items[i].clone()).collect();
            let error = match self.batch_items_once(&sent, false).await {
                Ok(parts) => {
                    // A 412 on a create sent after a lost answer: its first attempt may have
                    // made the row (or it repeats another key): read it back.
                    let doubtful: Vec<usize> = pending
                        .iter()
                        .zip(&parts)
                        .filter(|(i, part)| in_doubt.contains(i) && refused_as_existing(part))
                        .map(|(&i, _)| i)
                        .collect();
                    // A read that fails leaves the 412s as they are (the caller's to judge).
                    let landed: HashSet<usize> =
                        self.landed(&doubtful, &creates).await.unwrap_or_default();
                    for (&i, part) in pending.iter().zip(parts) {
                        answers[i] = Some(if landed.contains(&i) {
                            applied(&items[i], &creates[i])
                        } else {
                            part
                        });
                    }
                    break;
                }
                Err(e) => e,
            };
            if !error.answer_lost() {
                return unanswered(answers, &pending, error);
            }
            let landed = match self.landed(&pending, &creates).await {
                Ok(landed) => landed,
                Err(_) => return unanswered(answers, &pending, error),
            };
            for &i in &landed {
                answers[i] = Some(applied(&items[i], &creates[i]));
            }
            pending.retain(|i| !landed.contains(i));
            if pending.is_empty() {
                break;
            }
            if round >= self.max_retries() {
                return unanswered(answers, &pending, error);
            }
            tracing::debug!(
                landed = landed.len(),
                again = pending.len(),
                "a $batch of creates lost its answer; sending the creates that did not land again"
            );
            in_doubt.extend(pending.iter().copied());
            tokio::time::sleep(retry::backoff(round)).await;
            round += 1;
        }
        Ok(answers.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The items among `indexes` whose create exists: reads by id, in `$batch`es (or one by
    /// one when the answer of such a `$batch` is lost as well).
    async fn landed(
        &self,
        indexes: &[usize],
        creates: &[Option<(&str, &str)>],
    ) -> Result<HashSet<usize>> {
        let checked: Vec<(usize, &str, &str)> = indexes
            .iter()
            .filter_map(|&i| creates[i].map(|(set, id)| (i, set, id)))
            .collect();
        let mut landed = HashSet::new();
        for chunk in checked.chunks(MAX_REQUESTS) {
            let reads: Vec<BatchItem> = chunk
                .iter()
                .map(|(_, set, id)| {
                    BatchItem::Request(BatchRequest {
                        method: Method::GET,
                        path: format!("{set}({id})"),
                        ..BatchRequest::default()
                    })
                })
                .collect();
            let answers = match self.batch_items_once(&reads, true).await {
                Ok(answers) => answers,
                // The answer of the reads' `$batch` (a POST) can be lost too: one read each.
                Err(e) if e.answer_lost() => {
                    let found = stream::iter(chunk)
                        .map(|(i, set, id)| async move { Ok((*i, self.exists(set, id).await?)) })
                        .buffered(READS_AT_ONCE)
                        .try_collect::<Vec<(usize, bool)>>()
                        .await?;
                    landed.extend(
                        found
                            .into_iter()
                            .filter(|(_, found)| *found)
                            .map(|(i, _)| i),
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            for ((i, set, id), answer) in chunk.iter().zip(answers) {
                match answer.first().map(|a| a.status) {
                    Some(200) => {
                        landed.insert(*i);
                    }
                    Some(404) => {}
                    other => {
                        return Err(DataverseError::InvalidResponse(format!(
                            "reading {set}({id}) back in a $batch answered {other:?}"
                        )));
                    }
                }
            }
        }
        Ok(landed)
    }
}

/// The row an item creates: its first request's, if that is a create.
fn created_row(item: &BatchItem) -> Option<(&str, &str)> {
    item.requests().first()?.created_row()
}

/// Whether an item's answer is a single 412 (its create found the row there).
fn refused_as_existing(answer: &[BatchResponse]) -> bool {
    matches!(answer, [only] if only.status == 412)
}

/// The answers of an item that was applied: 204 for each request, the create's with its id.
fn applied(item: &BatchItem, create: &Option<(&str, &str)>) -> Vec<BatchResponse> {
    item.requests()
        .iter()
        .enumerate()
        .map(|(n, _)| BatchResponse {
            status: 204,
            entity_id: create.filter(|_| n == 0).map(|(_, id)| id.to_owned()),
            body: None,
        })
        .collect()
}

/// Ends a batch whose last attempt failed with `error`: the error itself when no item has an
/// answer yet; otherwise the items still `pending` get it as their only answer.
fn unanswered(
    mut answers: Vec<Option<Vec<BatchResponse>>>,
    pending: &[usize],
    error: DataverseError,
) -> Result<Vec<Vec<BatchResponse>>> {
    if answers.iter().all(Option::is_none) {
        return Err(error);
    }
    let status = match &error {
        DataverseError::Server { status, .. } => *status,
        DataverseError::Throttled { .. } => 429,
        _ => 503,
    };
    for &i in pending {
        answers[i] = Some(vec![BatchResponse {
            status,
            entity_id: None,
            body: Some(json!({"error": {"code": "", "message": error.to_string()}})),
        }]);
    }
    Ok(answers.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_names_its_row_and_only_a_create_does() {
        let create = BatchRequest::create("accounts", "a1", json!({"name": "A"}));
        assert_eq!(create.created_row(), Some(("accounts", "a1")));
        let update = BatchRequest {
            method: Method::PATCH,
            path: "accounts(a1)".into(),
            if_match: Some("*".into()),
            ..BatchRequest::default()
        };
        assert_eq!(update.created_row(), None);
        let keyed = BatchRequest::create("opportunities", "cosell_x='1'", json!({}));
        assert_eq!(keyed.created_row(), None);
    }

    #[test]
    fn an_applied_item_answers_each_request_with_the_create_s_id() {
        let item = BatchItem::ChangeSet(vec![
            BatchRequest::create("opportunities", "o1", json!({})),
            BatchRequest::default(),
        ]);
        let answers = applied(&item, &created_row(&item));
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(BatchResponse::is_success));
        assert_eq!(answers[0].entity_id.as_deref(), Some("o1"));
        assert_eq!(answers[1].entity_id, None);
    }
}
