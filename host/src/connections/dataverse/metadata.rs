//! The Metadata API: a table's columns (list them, create a custom one), its alternate keys
//! (list, create) and its change tracking (read, turn on). Every customization names the
//! solution it belongs to (`MSCRM.SolutionUniqueName`), so an operator can ship it; without
//! one Dataverse puts it in the environment's Default solution. Creating something that
//! exists fails, so callers list first and create only what is missing.

use super::Result;
use super::client::DataverseClient;
use super::error::DataverseError;
use super::request::Call;
use crate::connections::odata;
use reqwest::Method;
use serde_json::{Value, json};

/// The header naming the solution a customization goes to.
const SOLUTION_HEADER: &str = "mscrm.solutionuniquename";

impl DataverseClient {
    /// The logical names of `table`'s columns (Metadata API), e.g. `opportunity`.
    pub async fn attribute_names(&self, table: &str) -> Result<Vec<String>> {
        let body = self
            .metadata_get(
                &format!("{}/Attributes", definition_path(table)),
                "$select=LogicalName",
                table,
            )
            .await?;
        Ok(values(&body, table)?
            .iter()
            .filter_map(|c| c["LogicalName"].as_str().map(str::to_owned))
            .collect())
    }

    /// Creates a column on `table` from its metadata `definition` (`@odata.type`, `SchemaName`,
    /// `AttributeType`, labels, …) in `solution`. Not retried once it may have reached
    /// Dataverse.
    pub async fn create_attribute(
        &self,
        table: &str,
        definition: &Value,
        solution: &str,
    ) -> Result<()> {
        let what = format!(
            "column {} of table {table}",
            definition["SchemaName"].as_str().unwrap_or("?")
        );
        let url = self.url(&format!("{}/Attributes", definition_path(table)), "")?;
        let call = Call::new("metadata", Method::POST, url, what)
            .json(definition)
            .header(SOLUTION_HEADER, solution)?;
        self.send(call).await.map(drop)
    }

    /// The alternate keys of `table`, each as its columns' logical names, whatever the state of
    /// their index (a key being built exists, and is not created again).
    pub async fn alternate_keys(&self, table: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .keys_with_status(table)
            .await?
            .into_iter()
            .map(|(columns, _)| columns)
            .collect())
    }

    /// The alternate keys of `table` whose index is built (`EntityKeyIndexStatus` `Active`):
    /// the only ones Dataverse enforces. A key is made active by a system job after it is
    /// created, and a key whose job failed is never enforced.
    pub async fn active_alternate_keys(&self, table: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .keys_with_status(table)
            .await?
            .into_iter()
            .filter(|(_, status)| status == "Active")
            .map(|(columns, _)| columns)
            .collect())
    }

    /// Each alternate key of `table`: its columns and the state of its index.
    async fn keys_with_status(&self, table: &str) -> Result<Vec<(Vec<String>, String)>> {
        let body = self
            .metadata_get(
                &format!("{}/Keys", definition_path(table)),
                "$select=KeyAttributes,EntityKeyIndexStatus",
                table,
            )
            .await?;
        Ok(values(&body, table)?
            .iter()
            .map(|k| {
                let columns = k["KeyAttributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect();
                let status = k["EntityKeyIndexStatus"].as_str().unwrap_or_default();
                (columns, status.to_owned())
            })
            .collect())
    }

    /// Creates the alternate key `schema_name` over `columns` of `table` in `solution`.
    pub async fn create_alternate_key(
        &self,
        table: &str,
        schema_name: &str,
        columns: &[&str],
        solution: &str,
    ) -> Result<()> {
        let body = json!({
            "SchemaName": schema_name,
            "DisplayName": label(schema_name),
            "KeyAttributes": columns,
        });
        let url = self.url(&format!("{}/Keys", definition_path(table)), "")?;
        let call = Call::new(
            "metadata",
            Method::POST,
            url,
            format!("key {schema_name} of table {table}"),
        )
        .json(&body)
        .header(SOLUTION_HEADER, solution)?;
        self.send(call).await.map(drop)
    }

    /// Whether change tracking is enabled on `table`.
    pub async fn change_tracking_enabled(&self, table: &str) -> Result<bool> {
        let body = self
            .metadata_get(
                &definition_path(table),
                "$select=ChangeTrackingEnabled",
                table,
            )
            .await?;
        Ok(body["ChangeTrackingEnabled"].as_bool().unwrap_or(false))
    }

    /// Turns change tracking on for `table` (it cannot be turned off again): the table's
    /// definition PUT back with `ChangeTrackingEnabled`, in `solution`.
    pub async fn enable_change_tracking(&self, table: &str, solution: &str) -> Result<()> {
        let mut definition = self
            .metadata_get(&definition_path(table), "", table)
            .await?;
        definition["ChangeTrackingEnabled"] = json!(true);
        if let Some(object) = definition.as_object_mut() {
            object.retain(|k, _| !k.starts_with("@odata."));
        }
        let url = self.url(&definition_path(table), "")?;
        let call = Call::new(
            "metadata",
            Method::PUT,
            url,
            format!("the definition of table {table}"),
        )
        .json(&definition)
        .header(SOLUTION_HEADER, solution)?
        .header("mscrm.mergelabels", "true")?;
        self.send(call).await.map(drop)
    }

    async fn metadata_get(&self, path: &str, query: &str, table: &str) -> Result<Value> {
        let what = format!("table {table}");
        self.send(Call::new(
            "metadata",
            Method::GET,
            self.url(path, query)?,
            &what,
        ))
        .await?
        .json(&what)
    }
}

fn definition_path(table: &str) -> String {
    format!("EntityDefinitions(LogicalName={})", odata::literal(table))
}

fn values<'a>(body: &'a Value, table: &str) -> Result<&'a Vec<Value>> {
    body["value"].as_array().ok_or_else(|| {
        DataverseError::InvalidResponse(format!(
            "the metadata of table {table} came without a 'value' array"
        ))
    })
}

fn label(text: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}],
    })
}
