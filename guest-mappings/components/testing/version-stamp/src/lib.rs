//! Test guest `version-stamp`: a valid mapping step that shows the host what it was given.
//!
//! Output: the input JSON object plus
//! `"_mapping": {"name", "version", "event", "tenant", "timestamp"}` (from the call context) and
//! `"_config": {key: value, ...}` (every key of the step configuration). One `info` log line per
//! call. Typed errors on request: an input with `"reject": "<msg>"` returns `reject(msg)`,
//! `"skip": "<msg>"` returns `skip(msg)`, `"fail": "<msg>"` returns `fail(msg)`.

use cosell_mapping::{Context, Mapping, MappingError, config, log};
use serde_json::{Map, Value};

struct VersionStamp;

impl Mapping for VersionStamp {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        log::info(&format!(
            "version-stamp: {} {} event={} tenant={} current={}",
            ctx.mapping_name,
            ctx.mapping_version,
            ctx.event,
            ctx.tenant,
            current.is_some()
        ));

        let mut doc = match serde_json::from_str::<Value>(&input) {
            Ok(Value::Object(doc)) => doc,
            Ok(_) => return Err(MappingError::Reject("input is not a JSON object".into())),
            Err(e) => {
                return Err(MappingError::Reject(format!(
                    "input is not valid JSON: {e}"
                )));
            }
        };

        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(why) = doc.get("reject") {
            return Err(MappingError::Reject(text(why)));
        }
        if let Some(why) = doc.get("skip") {
            return Err(MappingError::Skip(text(why)));
        }
        if let Some(why) = doc.get("fail") {
            return Err(MappingError::Fail(text(why)));
        }

        let mut mapping = Map::new();
        mapping.insert("name".into(), ctx.mapping_name.into());
        mapping.insert("version".into(), ctx.mapping_version.into());
        mapping.insert("event".into(), ctx.event.into());
        mapping.insert("tenant".into(), ctx.tenant.into());
        mapping.insert("timestamp".into(), ctx.timestamp.into());
        doc.insert("_mapping".into(), Value::Object(mapping));

        let mut cfg = Map::new();
        for key in config::keys() {
            let value = config::get(&key).map_or(Value::Null, Value::String);
            cfg.insert(key, value);
        }
        doc.insert("_config".into(), Value::Object(cfg));

        Ok(Value::Object(doc).to_string())
    }
}

cosell_mapping::export_mapping!(VersionStamp);
