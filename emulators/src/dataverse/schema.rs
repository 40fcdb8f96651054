//! Tables and columns the emulated Dataverse knows, and the Metadata API that adds custom
//! columns (reference §4.3 opportunity/lead essentials, §4.6 alternate keys, §4.12 Metadata API,
//! §5.1 webhook registration tables).
//!
//! Built-in tables: `opportunity`, `account`, `contact`, `lead`, `transactioncurrency`, and the
//! webhook registration tables `serviceendpoint`, `sdkmessage`, `sdkmessagefilter`,
//! `sdkmessageprocessingstep`. Only the common columns of each are defined; a write naming any
//! other column is rejected, as the real service does. Custom columns come from
//! `POST EntityDefinitions(LogicalName='…')/Attributes` (String, Memo, Boolean, Picklist,
//! MultiSelectPicklist, Money, Integer, Decimal, DateTime).
//!
//! Choices where the reference stops: a custom column's `SchemaName` must carry a publisher
//! prefix (`xxx_`); its logical name is the lower-cased `SchemaName`; a duplicate answers 400.
//! Custom columns are usable at once (no "publish customizations" step).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kind of a column, which decides what values a write may carry.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// The table's primary key.
    PrimaryKey,
    /// Single-line text with a maximum length.
    String { max_length: usize },
    /// Multi-line text.
    Memo { max_length: usize },
    /// Yes/No.
    Boolean,
    /// Whole number.
    Integer,
    /// Decimal number.
    Decimal,
    /// Currency amount.
    Money,
    /// `YYYY-MM-DD`.
    DateOnly,
    /// ISO 8601 date and time.
    DateTime,
    /// A GUID that is not a lookup.
    Uniqueidentifier,
    /// Choice: one of the option values (any integer when `options` is empty).
    Picklist { options: Vec<ChoiceOption> },
    /// Choices: comma-separated option values, e.g. `"100000000,100000001"`.
    MultiSelect { options: Vec<ChoiceOption> },
    /// Lookup to one of the `targets` tables (several = polymorphic, e.g. `customerid`).
    Lookup { targets: Vec<String> },
    /// `statecode`.
    State,
    /// `statuscode`.
    Status,
    /// Set by the service only (`createdon`, `modifiedon`, `fullname`, …).
    ReadOnly,
}

/// One option of a choice column: its value and its label (in the one language, 1033, the
/// emulated organisation has).
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOption {
    pub value: i64,
    pub label: String,
}

/// Whether `options` allows `value` (any value when there are none).
pub fn allows(options: &[ChoiceOption], value: i64) -> bool {
    options.is_empty() || options.iter().any(|o| o.value == value)
}

/// Options from `(value, label)` pairs.
fn choices(pairs: &[(i64, &str)]) -> Vec<ChoiceOption> {
    pairs
        .iter()
        .map(|(value, label)| ChoiceOption {
            value: *value,
            label: (*label).to_owned(),
        })
        .collect()
}

/// One column.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub logical_name: String,
    pub schema_name: String,
    pub kind: ColumnKind,
    /// Created through the Metadata API.
    pub custom: bool,
    /// Its `MetadataId`.
    pub metadata_id: uuid::Uuid,
}

/// One table.
#[derive(Debug, Clone)]
pub struct EntityDef {
    pub logical_name: String,
    pub entity_set: String,
    pub primary_id: String,
    pub primary_name: String,
    pub columns: BTreeMap<String, ColumnDef>,
    /// Alternate keys, each a list of column logical names.
    pub alternate_keys: Vec<Vec<String>>,
    /// `statecode` → (allowed `statuscode`s, default first).
    pub states: BTreeMap<i64, Vec<i64>>,
    /// Change tracking enabled (all built-in business tables here).
    pub change_tracking: bool,
    /// Its `MetadataId`.
    pub metadata_id: uuid::Uuid,
}

impl EntityDef {
    /// The column named `name`, if defined.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.get(name)
    }

    /// Its `SchemaName`: the logical name in Pascal case, as the built-in tables have it
    /// (`opportunity` → `Opportunity`, `sdkmessagefilter` → `SdkMessageFilter`).
    pub fn schema_name(&self) -> String {
        let known = [
            ("transactioncurrency", "TransactionCurrency"),
            ("serviceendpoint", "ServiceEndpoint"),
            ("sdkmessage", "SdkMessage"),
            ("sdkmessagefilter", "SdkMessageFilter"),
            ("sdkmessageprocessingstep", "SdkMessageProcessingStep"),
        ];
        match known.iter().find(|(l, _)| *l == self.logical_name) {
            Some((_, schema)) => (*schema).to_owned(),
            None => {
                let mut chars = self.logical_name.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        }
    }

    /// The OData type name used in messages, e.g. `Microsoft.Dynamics.CRM.opportunity`.
    pub fn type_name(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical_name)
    }
}

/// All tables, by logical name.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Shared, so that a request can hold its table's definition, and a change set keep the
    /// schema it may have to restore, without copying every column (changed copy-on-write).
    pub entities: BTreeMap<String, Arc<EntityDef>>,
}

fn col(name: &str, kind: ColumnKind) -> (String, ColumnDef) {
    (
        name.to_owned(),
        ColumnDef {
            logical_name: name.to_owned(),
            schema_name: name.to_owned(),
            kind,
            custom: false,
            metadata_id: uuid::Uuid::new_v4(),
        },
    )
}

fn s(max: usize) -> ColumnKind {
    ColumnKind::String { max_length: max }
}

fn lookup(targets: &[&str]) -> ColumnKind {
    ColumnKind::Lookup {
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn entity(
    logical: &str,
    set: &str,
    primary_name: &str,
    states: &[(i64, &[i64])],
    columns: Vec<(String, ColumnDef)>,
) -> EntityDef {
    let primary_id = format!("{logical}id");
    let mut all: BTreeMap<String, ColumnDef> = columns.into_iter().collect();
    all.extend([
        col(&primary_id, ColumnKind::PrimaryKey),
        col("createdon", ColumnKind::ReadOnly),
        col("modifiedon", ColumnKind::ReadOnly),
        col("versionnumber", ColumnKind::ReadOnly),
        col("statecode", ColumnKind::State),
        col("statuscode", ColumnKind::Status),
    ]);
    EntityDef {
        logical_name: logical.to_owned(),
        entity_set: set.to_owned(),
        primary_id,
        primary_name: primary_name.to_owned(),
        columns: all,
        alternate_keys: Vec::new(),
        states: states.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
        change_tracking: true,
        metadata_id: uuid::Uuid::new_v4(),
    }
}

const ACTIVE_INACTIVE: &[(i64, &[i64])] = &[(0, &[1]), (1, &[2])];

fn address_columns(prefix: &str) -> Vec<(String, ColumnDef)> {
    [
        "line1",
        "line2",
        "line3",
        "city",
        "stateorprovince",
        "postalcode",
        "country",
    ]
    .iter()
    .map(|p| col(&format!("{prefix}_{p}"), s(250)))
    .collect()
}

impl Schema {
    /// The built-in tables. `opportunity` has no alternate key and no change tracking until
    /// someone creates them through the Metadata API (as `cosell dataverse provision` does).
    pub fn builtin() -> Self {
        let mut entities = BTreeMap::new();
        let mut opportunity = entity(
            "opportunity",
            "opportunities",
            "name",
            // §4.3: 0 Open (1 In Progress, 2 On Hold), 1 Won (3), 2 Lost (4 Canceled, 5 Out-Sold).
            &[(0, &[1, 2]), (1, &[3]), (2, &[4, 5])],
            vec![
                col("name", s(300)),
                col("description", ColumnKind::Memo { max_length: 2000 }),
                col("estimatedvalue", ColumnKind::Money),
                col("estimatedclosedate", ColumnKind::DateOnly),
                col("actualvalue", ColumnKind::Money),
                col("actualclosedate", ColumnKind::DateOnly),
                col("closeprobability", ColumnKind::Integer),
                col(
                    "salesstage",
                    ColumnKind::Picklist {
                        options: choices(&[
                            (0, "Qualify"),
                            (1, "Develop"),
                            (2, "Propose"),
                            (3, "Close"),
                        ]),
                    },
                ),
                col("stepname", s(200)),
                col("customerid", lookup(&["account", "contact"])),
                col("parentaccountid", lookup(&["account"])),
                col("parentcontactid", lookup(&["contact"])),
                col("originatingleadid", lookup(&["lead"])),
                col("transactioncurrencyid", lookup(&["transactioncurrency"])),
            ],
        );
        // Change tracking is a per-table setting an administrator turns on (§4.9).
        opportunity.change_tracking = false;
        let mut account_columns = vec![
            col("name", s(160)),
            col("accountnumber", s(20)),
            col("description", ColumnKind::Memo { max_length: 2000 }),
            col("emailaddress1", s(100)),
            col("telephone1", s(50)),
            col("websiteurl", s(200)),
            col("revenue", ColumnKind::Money),
            col("numberofemployees", ColumnKind::Integer),
            col("primarycontactid", lookup(&["contact"])),
            col("parentaccountid", lookup(&["account"])),
            col("transactioncurrencyid", lookup(&["transactioncurrency"])),
        ];
        account_columns.extend(address_columns("address1"));
        let mut contact_columns = vec![
            col("firstname", s(50)),
            col("lastname", s(50)),
            col("fullname", ColumnKind::ReadOnly),
            col("emailaddress1", s(100)),
            col("telephone1", s(50)),
            col("mobilephone", s(50)),
            col("jobtitle", s(100)),
            col("description", ColumnKind::Memo { max_length: 2000 }),
            col("parentcustomerid", lookup(&["account", "contact"])),
        ];
        contact_columns.extend(address_columns("address1"));
        let mut lead_columns = vec![
            col("subject", s(300)),
            col("firstname", s(50)),
            col("lastname", s(50)),
            col("fullname", ColumnKind::ReadOnly),
            col("companyname", s(100)),
            col("emailaddress1", s(100)),
            col("telephone1", s(50)),
            col("jobtitle", s(100)),
            col("description", ColumnKind::Memo { max_length: 2000 }),
            col("budgetamount", ColumnKind::Money),
            col("estimatedamount", ColumnKind::Money),
            col("estimatedclosedate", ColumnKind::DateOnly),
            col("customerid", lookup(&["account", "contact"])),
            col("parentaccountid", lookup(&["account"])),
            col("parentcontactid", lookup(&["contact"])),
            col("qualifyingopportunityid", lookup(&["opportunity"])),
            col("transactioncurrencyid", lookup(&["transactioncurrency"])),
        ];
        lead_columns.extend(address_columns("address1"));
        let tables = [
            opportunity,
            entity(
                "account",
                "accounts",
                "name",
                ACTIVE_INACTIVE,
                account_columns,
            ),
            entity(
                "contact",
                "contacts",
                "fullname",
                ACTIVE_INACTIVE,
                contact_columns,
            ),
            entity(
                "lead",
                "leads",
                "fullname",
                // §4.3: 0 Open (1 New, 2 Contacted), 1 Qualified (3), 2 Disqualified (4..7).
                &[(0, &[1, 2]), (1, &[3]), (2, &[4, 5, 6, 7])],
                lead_columns,
            ),
            entity(
                "transactioncurrency",
                "transactioncurrencies",
                "currencyname",
                ACTIVE_INACTIVE,
                vec![
                    col("isocurrencycode", s(5)),
                    col("currencyname", s(100)),
                    col("currencysymbol", s(10)),
                    col("exchangerate", ColumnKind::Decimal),
                ],
            ),
            entity(
                "serviceendpoint",
                "serviceendpoints",
                "name",
                ACTIVE_INACTIVE,
                vec![
                    col("name", s(256)),
                    col("description", ColumnKind::Memo { max_length: 2000 }),
                    col("url", s(2000)),
                    col(
                        "contract",
                        ColumnKind::Picklist {
                            options: choices(&[
                                (1, "OneWay"),
                                (2, "Queue"),
                                (3, "Rest"),
                                (4, "TwoWay"),
                                (5, "Topic"),
                                (6, "Queue (Persistent)"),
                                (7, "Event Hub"),
                                (8, "Webhook"),
                                (9, "Event Grid"),
                                (10, "Managed Data Lake"),
                            ]),
                        },
                    ),
                    col(
                        "authtype",
                        ColumnKind::Picklist {
                            options: choices(&[
                                (1, "ACS"),
                                (2, "SAS Key"),
                                (3, "SAS Token"),
                                (4, "Webhook Key"),
                                (5, "Http Header"),
                                (6, "Http Query String"),
                                (7, "Connection String"),
                                (8, "Access Key"),
                            ]),
                        },
                    ),
                    col("authvalue", s(2048)),
                    col(
                        "messageformat",
                        ColumnKind::Picklist {
                            options: choices(&[(1, "Binary XML"), (2, "Json"), (3, "Text XML")]),
                        },
                    ),
                    col("namespaceaddress", s(255)),
                    col("path", s(160)),
                    col("userclaim", ColumnKind::Integer),
                ],
            ),
            entity(
                "sdkmessage",
                "sdkmessages",
                "name",
                ACTIVE_INACTIVE,
                vec![col("name", s(256))],
            ),
            entity(
                "sdkmessagefilter",
                "sdkmessagefilters",
                "primaryobjecttypecode",
                ACTIVE_INACTIVE,
                vec![
                    col("primaryobjecttypecode", s(100)),
                    col("sdkmessageid", lookup(&["sdkmessage"])),
                ],
            ),
            entity(
                "sdkmessageprocessingstep",
                "sdkmessageprocessingsteps",
                "name",
                ACTIVE_INACTIVE,
                vec![
                    col("name", s(256)),
                    col("description", ColumnKind::Memo { max_length: 2000 }),
                    col(
                        "mode",
                        ColumnKind::Picklist {
                            options: choices(&[(0, "Synchronous"), (1, "Asynchronous")]),
                        },
                    ),
                    col(
                        "stage",
                        ColumnKind::Picklist {
                            options: choices(&[
                                (10, "Pre-validation"),
                                (20, "Pre-operation"),
                                (40, "Post-operation"),
                            ]),
                        },
                    ),
                    col("rank", ColumnKind::Integer),
                    col("filteringattributes", s(100_000)),
                    col("asyncautodelete", ColumnKind::Boolean),
                    col(
                        "supporteddeployment",
                        ColumnKind::Picklist {
                            options: choices(&[
                                (0, "Server Only"),
                                (1, "Microsoft Dynamics 365 Client for Outlook Only"),
                                (2, "Both"),
                            ]),
                        },
                    ),
                    col(
                        "configuration",
                        ColumnKind::Memo {
                            max_length: 100_000,
                        },
                    ),
                    col("eventhandler", lookup(&["serviceendpoint", "plugintype"])),
                    col("sdkmessageid", lookup(&["sdkmessage"])),
                    col("sdkmessagefilterid", lookup(&["sdkmessagefilter"])),
                ],
            ),
            // Solutions and their publishers: a column's SchemaName must carry the
            // customization prefix of the publisher of the solution it is created in.
            entity(
                "publisher",
                "publishers",
                "friendlyname",
                ACTIVE_INACTIVE,
                vec![
                    col("friendlyname", s(256)),
                    col("uniquename", s(256)),
                    col("customizationprefix", s(8)),
                ],
            ),
            entity(
                "solution",
                "solutions",
                "friendlyname",
                ACTIVE_INACTIVE,
                vec![
                    col("friendlyname", s(256)),
                    col("uniquename", s(65)),
                    col("publisherid", lookup(&["publisher"])),
                ],
            ),
        ];
        for mut table in tables {
            if !["opportunity", "account", "contact", "lead"].contains(&table.logical_name.as_str())
            {
                table.change_tracking = false;
            }
            entities.insert(table.logical_name.clone(), Arc::new(table));
        }
        Self { entities }
    }

    /// Defines alternate key `columns` on `entity` (the Metadata API's `Keys`). The rows'
    /// uniqueness is checked by [`super::records::Store::add_alternate_key`].
    pub fn add_alternate_key(&mut self, entity: &str, columns: Vec<String>) -> Result<(), String> {
        let table = self
            .entities
            .get_mut(entity)
            .map(Arc::make_mut)
            .ok_or_else(|| format!("Could not find entity with LogicalName '{entity}'."))?;
        if columns.is_empty() {
            return Err("KeyAttributes must name at least one column.".into());
        }
        if let Some(missing) = columns.iter().find(|c| !table.columns.contains_key(*c)) {
            return Err(format!(
                "The attribute '{missing}' does not exist on entity '{entity}'."
            ));
        }
        if table.alternate_keys.contains(&columns) {
            return Err(format!(
                "An entity key with the attributes {} already exists on entity '{entity}'.",
                columns.join(", ")
            ));
        }
        table.alternate_keys.push(columns);
        Ok(())
    }

    /// The table whose entity set is `set` (e.g. `opportunities`).
    pub fn by_set(&self, set: &str) -> Option<&Arc<EntityDef>> {
        self.entities.values().find(|e| e.entity_set == set)
    }

    /// Adds a custom column from a Metadata API body (an `…AttributeMetadata` object).
    /// Returns the new column's `MetadataId`, or the error message.
    pub fn add_attribute(&mut self, entity: &str, body: &Value) -> Result<uuid::Uuid, String> {
        let table = self
            .entities
            .get_mut(entity)
            .map(Arc::make_mut)
            .ok_or_else(|| format!("Could not find entity with LogicalName '{entity}'."))?;
        let schema_name = body["SchemaName"]
            .as_str()
            .ok_or("SchemaName is required.")?
            .to_owned();
        if !schema_name.contains('_') || schema_name.starts_with('_') {
            return Err(format!(
                "The SchemaName '{schema_name}' must start with a publisher customization prefix such as 'new_'."
            ));
        }
        let logical = body["LogicalName"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| schema_name.to_lowercase());
        if table.columns.contains_key(&logical) {
            return Err(format!(
                "An attribute with the specified name {logical} already exists on entity {entity}."
            ));
        }
        let odata_type = body["@odata.type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('#')
            .trim_start_matches("Microsoft.Dynamics.CRM.");
        let attribute_type = body["AttributeType"].as_str().unwrap_or_default();
        let options = |body: &Value| -> Vec<ChoiceOption> {
            body["OptionSet"]["Options"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter_map(|o| {
                            Some(ChoiceOption {
                                value: o["Value"].as_i64()?,
                                label: label_text(&o["Label"]),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let max = |default: usize| {
            body["MaxLength"]
                .as_u64()
                .map(|m| m as usize)
                .unwrap_or(default)
        };
        let kind = match (odata_type, attribute_type) {
            ("StringAttributeMetadata", _) | (_, "String") => ColumnKind::String {
                max_length: max(100),
            },
            ("MemoAttributeMetadata", _) | (_, "Memo") => ColumnKind::Memo {
                max_length: max(2000),
            },
            ("BooleanAttributeMetadata", _) | (_, "Boolean") => ColumnKind::Boolean,
            ("MultiSelectPicklistAttributeMetadata", _) => ColumnKind::MultiSelect {
                options: options(body),
            },
            ("PicklistAttributeMetadata", _) | (_, "Picklist") => ColumnKind::Picklist {
                options: options(body),
            },
            ("MoneyAttributeMetadata", _) | (_, "Money") => ColumnKind::Money,
            ("IntegerAttributeMetadata", _) | (_, "Integer") => ColumnKind::Integer,
            ("DecimalAttributeMetadata", _) | (_, "Decimal") => ColumnKind::Decimal,
            ("DateTimeAttributeMetadata", _) | (_, "DateTime") => {
                if body["Format"] == "DateOnly" {
                    ColumnKind::DateOnly
                } else {
                    ColumnKind::DateTime
                }
            }
            (t, a) => {
                return Err(format!(
                    "Attribute type '{t}{a}' is not supported by this emulator (String, Memo, Boolean, Picklist, MultiSelectPicklist, Money, Integer, Decimal, DateTime are)."
                ));
            }
        };
        let metadata_id = uuid::Uuid::new_v4();
        table.columns.insert(
            logical.clone(),
            ColumnDef {
                logical_name: logical,
                schema_name,
                kind,
                custom: true,
                metadata_id,
            },
        );
        Ok(metadata_id)
    }
}

/// The text of a Metadata API label (`{"LocalizedLabels":[{"Label":…}]}`), its first
/// localized label; empty when it has none.
fn label_text(label: &Value) -> String {
    label["LocalizedLabels"][0]["Label"]
        .as_str()
        .or(label["UserLocalizedLabel"]["Label"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A column's definition as the Metadata API returns it (a subset of the real properties).
pub fn attribute_json(entity: &EntityDef, column: &ColumnDef) -> Value {
    let (odata_type, attribute_type) = match &column.kind {
        ColumnKind::PrimaryKey | ColumnKind::Uniqueidentifier => ("", "Uniqueidentifier"),
        ColumnKind::String { .. } => ("StringAttributeMetadata", "String"),
        ColumnKind::Memo { .. } => ("MemoAttributeMetadata", "Memo"),
        ColumnKind::Boolean => ("BooleanAttributeMetadata", "Boolean"),
        ColumnKind::Integer => ("IntegerAttributeMetadata", "Integer"),
        ColumnKind::Decimal => ("DecimalAttributeMetadata", "Decimal"),
        ColumnKind::Money => ("MoneyAttributeMetadata", "Money"),
        ColumnKind::DateOnly | ColumnKind::DateTime => ("DateTimeAttributeMetadata", "DateTime"),
        ColumnKind::Picklist { .. } => ("PicklistAttributeMetadata", "Picklist"),
        ColumnKind::MultiSelect { .. } => ("MultiSelectPicklistAttributeMetadata", "Virtual"),
        ColumnKind::Lookup { .. } => ("LookupAttributeMetadata", "Lookup"),
        ColumnKind::State => ("StateAttributeMetadata", "State"),
        ColumnKind::Status => ("StatusAttributeMetadata", "Status"),
        ColumnKind::ReadOnly => ("AttributeMetadata", "String"),
    };
    json!({
        "@odata.type": format!("#Microsoft.Dynamics.CRM.{odata_type}"),
        "MetadataId": column.metadata_id,
        "LogicalName": column.logical_name,
        "SchemaName": column.schema_name,
        "EntityLogicalName": entity.logical_name,
        "AttributeType": attribute_type,
        "IsCustomAttribute": column.custom,
    })
}
