//! `$filter` on the Metadata API: parsed in the metadata dialect (paths such as
//! `RequiredLevel/Value`, enum literals such as `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`),
//! checked against the properties of the type read, and evaluated on a definition's JSON.
//!
//! As observed of the service: the string functions are refused (501, `0x8006088a`, "The
//! "startswith" function isn't supported for Metadata Entities."). The emulator's choice where
//! the documentation stops, the stricter reading: only `eq`, `ne`, `and`, `or`, `not` and
//! parentheses, strings compared exactly.

use super::api::{ApiResponse, ApiResult, bad_request};
use crate::common::odata::{self, CmpOp, Dialect, Expr, Literal, Operand};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// The string functions, refused on metadata.
const STRING_FUNCTIONS: [&str; 7] = [
    "contains",
    "startswith",
    "endswith",
    "indexof",
    "substring",
    "tolower",
    "toupper",
];

const DIALECT: Dialect = Dialect {
    word_char: |c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'),
    any_case_keywords: false,
    newline_is_space: false,
    paths: true,
    functions: &STRING_FUNCTIONS,
    number: |w| {
        w.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            .then(|| w.parse::<f64>().is_ok())
    },
    operand: |_, _| Ok(()),
    compare_calls: true,
    lambdas: &[],
};

/// Parses a metadata `$filter` and checks it against `properties` (`unknown_property` makes
/// the error for a name that is not one).
pub(super) fn parse(
    text: &str,
    properties: &[&str],
    unknown_property: impl Fn(&str) -> ApiResponse + Copy,
) -> ApiResult<Expr> {
    let text = enum_literals_as_strings(text);
    let filter = odata::parse(&text, DIALECT).map_err(|e| {
        bad_request(
            "0x80060888",
            format!("Syntax error in $filter: {}.", super::query::message(e)),
        )
    })?;
    check_filter(&filter, properties, unknown_property)?;
    Ok(filter)
}

/// `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'` → `'Picklist'`: an enum literal is
/// compared as its member's name.
fn enum_literals_as_strings(filter: &str) -> String {
    const NAMESPACE: &str = "Microsoft.Dynamics.CRM.";
    let mut out = String::with_capacity(filter.len());
    let mut rest = filter;
    while let Some(at) = rest.find(NAMESPACE) {
        let after = &rest[at + NAMESPACE.len()..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        if after[name_len..].starts_with('\'') {
            rest = &after[name_len..];
        } else {
            out.push_str(NAMESPACE);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Refuses functions, ordering comparisons and unknown properties in a metadata `$filter`.
fn check_filter(
    filter: &Expr,
    properties: &[&str],
    unknown_property: impl Fn(&str) -> ApiResponse + Copy,
) -> ApiResult<()> {
    match filter {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_filter(a, properties, unknown_property)?;
            check_filter(b, properties, unknown_property)
        }
        Expr::Not(a) => check_filter(a, properties, unknown_property),
        Expr::Call(name, _) | Expr::Compare(Operand::Call(name, _), ..) => Err(ApiResponse::error(
            StatusCode::NOT_IMPLEMENTED,
            "0x8006088a",
            format!(
                "The \"{}\" function isn't supported for Metadata Entities.",
                name.to_lowercase()
            ),
        )),
        Expr::Compare(left, op, _) => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(bad_request(
                    "0x80060888",
                    format!(
                        "The operator '{op:?}' is not supported for Metadata Entities: use eq or ne."
                    ),
                ));
            }
            match left {
                Operand::Path(path) if properties.contains(&path[0].as_str()) => Ok(()),
                Operand::Path(path) => Err(unknown_property(&path[0])),
                _ => Err(bad_request(
                    "0x80060888",
                    "A comparison must name a property on its left.",
                )),
            }
        }
        Expr::Lambda(_) => Err(bad_request(
            "0x80060888",
            "Lambda operators are not supported for Metadata Entities.",
        )),
    }
}

/// Whether `item` matches `filter` (checked by [`check_filter`]).
pub(super) fn matches(item: &Map<String, Value>, filter: &Expr) -> bool {
    match filter {
        Expr::And(a, b) => matches(item, a) && matches(item, b),
        Expr::Or(a, b) => matches(item, a) || matches(item, b),
        Expr::Not(a) => !matches(item, a),
        Expr::Compare(Operand::Path(path), op, right) => {
            let mut value = item.get(&path[0]).unwrap_or(&Value::Null);
            for segment in &path[1..] {
                value = value.get(segment).unwrap_or(&Value::Null);
            }
            let literal = match right {
                Operand::Literal(Literal::Str(s) | Literal::Guid(s)) => json!(s),
                Operand::Literal(Literal::Bool(b)) => json!(b),
                Operand::Literal(Literal::Null) => Value::Null,
                Operand::Literal(Literal::Number(n)) => {
                    n.parse::<f64>().map(|f| json!(f)).unwrap_or(Value::Null)
                }
                _ => return false,
            };
            let equal = match (value, &literal) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (a, b) => a == b,
            };
            (*op == CmpOp::Eq) == equal
        }
        _ => false,
    }
}
