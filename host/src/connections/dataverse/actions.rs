//! Actions and metadata: `WinOpportunity`/`LoseOpportunity` (close an opportunity with an
//! `OpportunityClose` activity) and the Metadata API's columns of a table (list them, create a
//! custom one). Creating a column that exists fails, so list first to create only what is
//! missing.

use super::Result;
use super::client::DataverseClient;
use super::error::DataverseError;
use super::request::Call;
use reqwest::Method;
use serde_json::{Value, json};

impl DataverseClient {
    /// `POST WinOpportunity`: closes the opportunity as won with `status_code` (e.g. 3 Won) and
    /// an `OpportunityClose` whose subject is `subject`. Closed opportunities are read-only
    /// until reactivated; closing one again is a [`DataverseError::BadRequest`].
    pub async fn win_opportunity(
        &self,
        opportunity_id: &str,
        status_code: i64,
        subject: &str,
    ) -> Result<()> {
        self.close("WinOpportunity", opportunity_id, status_code, subject)
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
        self.close("LoseOpportunity", opportunity_id, status_code, subject)
            .await
    }

    async fn close(&self, action: &str, id: &str, status: i64, subject: &str) -> Result<()> {
        let body = json!({
            "Status": status,
            "OpportunityClose": {
                "subject": subject,
                "opportunityid@odata.bind": format!("/opportunities({id})"),
            },
        });
        let call = Call::new(
            Method::POST,
            self.url(action, "")?,
            format!("{action} of {id}"),
        );
        self.send(call.json(&body)).await.map(drop)
    }

    /// The logical names of `table`'s columns (Metadata API), e.g. `opportunity`.
    pub async fn attribute_names(&self, table: &str) -> Result<Vec<String>> {
        let path = attributes_path(table);
        let url = self.url(&path, "$select=LogicalName")?;
        let what = format!("table {table}");
        let body = self
            .send(Call::new(Method::GET, url, &what))
            .await?
            .json(&what)?;
        let Some(columns) = body["value"].as_array() else {
            return Err(DataverseError::InvalidResponse(format!(
                "the columns of {what} came without a 'value' array"
            )));
        };
        Ok(columns
            .iter()
            .filter_map(|c| c["LogicalName"].as_str().map(str::to_owned))
            .collect())
    }

    /// Creates a column on `table` from its metadata `definition` (`@odata.type`, `SchemaName`,
    /// `AttributeType`, labels, …). Not retried once it may have reached Dataverse.
    pub async fn create_attribute(&self, table: &str, definition: &Value) -> Result<()> {
        let path = attributes_path(table);
        let what = format!(
            "column {} of table {table}",
            definition["SchemaName"].as_str().unwrap_or("?")
        );
        let call = Call::new(Method::POST, self.url(&path, "")?, what).json(definition);
        self.send(call).await.map(drop)
    }
}

fn attributes_path(table: &str) -> String {
    format!(
        "EntityDefinitions(LogicalName='{}')/Attributes",
        table.replace('\'', "''")
    )
}
