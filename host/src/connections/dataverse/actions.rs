//! Actions and metadata: `WinOpportunity`/`LoseOpportunity` (close an opportunity with an
//! `OpportunityClose` activity), also as a request of a `$batch` ([`close_request`]). The
//! Metadata API calls are in [`super::metadata`].

use super::Result;
use super::batch::BatchRequest;
use super::client::DataverseClient;
use super::request::Call;
use reqwest::Method;
use serde_json::{Value, json};

/// How an opportunity is closed: the action and the state it leaves the opportunity in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// `WinOpportunity`: state 1 (Won).
    Won,
    /// `LoseOpportunity`: state 2 (Lost).
    Lost,
}

impl Closing {
    /// The closing of an opportunity `statecode` (1 won, 2 lost; `None` for open).
    pub fn of_state(state: i64) -> Option<Self> {
        match state {
            1 => Some(Closing::Won),
            2 => Some(Closing::Lost),
            _ => None,
        }
    }

    /// The action's name.
    pub fn action(self) -> &'static str {
        match self {
            Closing::Won => "WinOpportunity",
            Closing::Lost => "LoseOpportunity",
        }
    }

    /// The `statuscode` used when none is given (3 Won, 4 Canceled).
    pub fn default_status(self) -> i64 {
        match self {
            Closing::Won => 3,
            Closing::Lost => 4,
        }
    }
}

/// The body of a close action: the status and the `OpportunityClose` activity.
fn close_body(id: &str, status: i64, subject: &str) -> Value {
    json!({
        "Status": status,
        "OpportunityClose": {
            "subject": subject,
            "opportunityid@odata.bind": format!("/opportunities({id})"),
        },
    })
}

/// The close action of opportunity `id` as a request of a `$batch`, e.g. after its create in
/// the same change set (the create then names the id: [`BatchRequest::create`]).
pub fn close_request(closing: Closing, id: &str, status: i64, subject: &str) -> BatchRequest {
    BatchRequest {
        method: Method::POST,
        path: closing.action().to_owned(),
        body: Some(close_body(id, status, subject)),
        ..BatchRequest::default()
    }
}

impl DataverseClient {
    /// `POST WinOpportunity`: closes the opportunity as won with `status_code` (e.g. 3 Won) and
    /// an `OpportunityClose` whose subject is `subject`. Closed opportunities are read-only
    /// until reactivated; closing one again is a [`DataverseError::BadRequest`](super::DataverseError::BadRequest).
    pub async fn win_opportunity(
        &self,
        opportunity_id: &str,
        status_code: i64,
        subject: &str,
    ) -> Result<()> {
        self.close(Closing::Won, opportunity_id, status_code, subject)
            .await
    }

    /// `POST LoseOpportunity`: closes the opportunity as lost with `status_code` (e.g. 4
    /// Canceled, 5 Out-Sold); see [`win_opportunity`](Self::win_opportunity).
    pub async fn lose_opportunity(
        &self,
        opportunity_id: &str,
        status_code: i64,
        subject: &str,
    ) -> Result<()> {
        self.close(Closing::Lost, opportunity_id, status_code, subject)
            .await
    }

    async fn close(&self, closing: Closing, id: &str, status: i64, subject: &str) -> Result<()> {
        let body = close_body(id, status, subject);
        let action = closing.action();
        let call = Call::new(
            "close_opportunity",
            Method::POST,
            self.url(action, "")?,
            format!("{action} of {id}"),
        );
        self.send(call.json(&body)).await.map(drop)
    }
}
