//! The OData query subset the Referrals API documents (reference §1.5): `$filter` with
//! `eq`/`ne`/`gt`/`ge`/`lt`/`le`, `and`/`or`/`not`, parentheses, nested paths
//! (`customerProfile/address/country`) and the `any` lambda (`team/any(t:t/email eq '…')`);
//! `$orderby` on `createdDateTime`/`updatedDateTime` (`asc`/`desc`); `$select` of top-level
//! fields. Parsed by [`crate::common::odata`] in this API's dialect and evaluated here over
//! `serde_json::Value`s.
//!
//! Where the facts stop: string comparison is case-sensitive (OData's rule); an unquoted GUID
//! is read as a string, since the live service writes `engagementId eq <guid>` in its own links;
//! a missing member is `null`; functions (`contains`, …) are not documented and answer 400.
//! A `$filter` may name only the members Microsoft's documented examples filter on
//! ([`DOCUMENTED_MEMBERS`], and `email` inside `team/any`): the service's real set is not
//! published, so a client that filters on anything else (`externalReferenceId`, `name`,
//! `updatedDateTime`) could work here and fail there; the emulator answers 400 instead.

use crate::common::odata::{
    self, CmpOp, Dialect, Expr, LambdaKind, Literal, Operand, SyntaxError, Token,
};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// How the Referrals API reads `$filter`: words of letters, digits and `_-.+@$`; keywords in
/// any case; paths and the `any` lambda; no functions.
const DIALECT: Dialect = Dialect {
    word_char: |c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '@' | '$'),
    any_case_keywords: true,
    newline_is_space: true,
    paths: true,
    functions: &[],
    number: |w| {
        w.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            .then(|| w.parse::<f64>().is_ok())
    },
    operand: |_, _| Ok(()),
    compare_calls: false,
    lambdas: &[LambdaKind::Any],
};

fn message(error: SyntaxError) -> String {
    match error {
        SyntaxError::UnterminatedString => "unterminated string literal in $filter".into(),
        SyntaxError::UnexpectedChar(c) => format!("unexpected character '{c}' in $filter"),
        SyntaxError::ExpectedClose(found) => format!("expected RParen in $filter, found {found:?}"),
        SyntaxError::ExpectedColon(found) => format!("expected Colon in $filter, found {found:?}"),
        SyntaxError::ExpectedLambdaVariable(found) => {
            format!("expected a lambda variable, found {found:?}")
        }
        SyntaxError::ExpectedOperator {
            found: Some(Token::Word(w)),
            ..
        } => format!("'{w}' is not a supported $filter operator"),
        SyntaxError::ExpectedOperator { found, .. } => {
            format!("expected a comparison operator, found {found:?}")
        }
        SyntaxError::ExpectedOperand { found, .. } => {
            format!("expected a value or property, found {found:?}")
        }
        SyntaxError::ExpectedSegment(found) => format!("expected a property name, found {found:?}"),
        SyntaxError::UnknownFunction(name) => {
            let name = name.rsplit('/').next().unwrap_or(&name);
            format!(
                "the function '{name}' is not supported in $filter (only eq/ne/gt/ge/lt/le, and/or/not and any)"
            )
        }
        SyntaxError::BadArguments { error, .. } => message(*error),
        SyntaxError::NotANumber(w) => format!("'{w}' is not a number"),
        SyntaxError::Rejected(message) => message,
        SyntaxError::Trailing(token) => format!("unexpected {token:?} in $filter"),
    }
}

/// The members Microsoft's documentation shows in a referral list `$filter`.
pub const DOCUMENTED_MEMBERS: &[&str] = &[
    "engagementId",
    "status",
    "substatus",
    "qualification",
    "direction",
    "type",
    "customerProfile/address/country",
];

/// The collections a documented `$filter` ranges over with `any`, and the members of their
/// items it compares.
const DOCUMENTED_LAMBDAS: &[(&str, &[&str])] = &[("team", &["email"])];

/// Parses a `$filter` expression, refusing members the documentation never filters on.
pub fn parse_filter(input: &str) -> Result<Expr, String> {
    let expr = odata::parse(input, DIALECT).map_err(message)?;
    documented_only(&expr, None)?;
    Ok(expr)
}

/// Checks that `expr` compares only documented members; `lambda` is the range variable in
/// scope and the members its items may be compared on.
fn documented_only(expr: &Expr, lambda: Option<(&str, &[&str])>) -> Result<(), String> {
    let operand = |o: &Operand| match o {
        Operand::Path(path) => documented_path(path, lambda),
        _ => Ok(()),
    };
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            documented_only(a, lambda)?;
            documented_only(b, lambda)
        }
        Expr::Not(a) => documented_only(a, lambda),
        Expr::Call(..) => Ok(()),
        Expr::Compare(l, _, r) => {
            operand(l)?;
            operand(r)
        }
        Expr::Lambda(inner) => {
            let collection = inner.path.join("/");
            let members = DOCUMENTED_LAMBDAS
                .iter()
                .find(|(name, _)| *name == collection)
                .map(|(_, members)| *members)
                .ok_or_else(|| undocumented(&collection))?;
            documented_only(&inner.body, Some((inner.var.as_str(), members)))
        }
    }
}

fn documented_path(path: &[String], lambda: Option<(&str, &[&str])>) -> Result<(), String> {
    if let Some((var, members)) = lambda
        && path.first().map(String::as_str) == Some(var)
    {
        let member = path[1..].join("/");
        return match members.contains(&member.as_str()) {
            true => Ok(()),
            false => Err(undocumented(&member)),
        };
    }
    let joined = path.join("/");
    match DOCUMENTED_MEMBERS.contains(&joined.as_str()) {
        true => Ok(()),
        false => Err(undocumented(&joined)),
    }
}

fn undocumented(member: &str) -> String {
    format!(
        "filtering on '{member}' is not supported; $filter may name {} and team/any(t:t/email eq '…')",
        DOCUMENTED_MEMBERS.join(", ")
    )
}

fn literal(value: &Literal) -> Value {
    match value {
        Literal::Str(s) | Literal::Guid(s) => Value::String(s.clone()),
        Literal::Number(n) => serde_json::json!(n.parse::<f64>().unwrap_or(f64::NAN)),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

type Scope<'a> = Vec<(&'a str, &'a Value)>;

/// The value at `path`, starting from a lambda variable when the path names one.
fn resolve<'a>(item: &'a Value, scope: &Scope<'a>, path: &[String]) -> Option<&'a Value> {
    let (mut current, rest) = match scope.iter().rev().find(|(v, _)| *v == path[0]) {
        Some((_, bound)) => (*bound, &path[1..]),
        None => (item, path),
    };
    for seg in rest {
        current = current.get(seg.as_str())?;
    }
    Some(current)
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        // dealValue is sometimes a string on the wire: compare numerically when both can be.
        (Value::String(x), Value::Number(y)) => x.parse::<f64>().ok()?.partial_cmp(&y.as_f64()?),
        (Value::Number(x), Value::String(y)) => x.as_f64()?.partial_cmp(&y.parse::<f64>().ok()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn eval_in<'a>(expr: &'a Expr, item: &'a Value, scope: &mut Scope<'a>) -> bool {
    match expr {
        Expr::And(a, b) => eval_in(a, item, scope) && eval_in(b, item, scope),
        Expr::Or(a, b) => eval_in(a, item, scope) || eval_in(b, item, scope),
        Expr::Not(a) => !eval_in(a, item, scope),
        Expr::Call(..) => false,
        Expr::Compare(l, op, r) => {
            let value = |o: &Operand| match o {
                Operand::Literal(v) => literal(v),
                Operand::Path(p) => resolve(item, scope, p).cloned().unwrap_or(Value::Null),
                Operand::Call(..) => Value::Null,
            };
            match compare(&value(l), &value(r)) {
                Some(ord) => op.holds(ord),
                None => *op == CmpOp::Ne,
            }
        }
        Expr::Lambda(lambda) => {
            // Resolve the collection without cloning so the lambda can borrow its members.
            let Some(members) = resolve(item, scope, &lambda.path).and_then(Value::as_array) else {
                return false;
            };
            let mut hit = |member| {
                scope.push((lambda.var.as_str(), member));
                let hit = eval_in(&lambda.body, item, scope);
                scope.pop();
                hit
            };
            match lambda.kind {
                LambdaKind::Any => members.iter().any(&mut hit),
                LambdaKind::All => members.iter().all(&mut hit),
            }
        }
    }
}

/// Whether `item` matches `expr`.
pub fn eval(expr: &Expr, item: &Value) -> bool {
    eval_in(expr, item, &mut Vec::new())
}

/// The fields `$orderby` may name (reference §1.5).
pub const ORDERABLE: [&str; 2] = ["createdDateTime", "updatedDateTime"];

/// Parses `$orderby` into `(field, descending)` keys.
pub fn parse_orderby(input: &str) -> Result<Vec<(String, bool)>, String> {
    input
        .split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let field = words.next().ok_or("an empty $orderby item")?;
            let field = ORDERABLE
                .iter()
                .find(|f| f.eq_ignore_ascii_case(field))
                .ok_or_else(|| {
                    format!("$orderby supports createdDateTime and updatedDateTime, not '{field}'")
                })?;
            let desc = match words.next().map(|w| w.to_ascii_lowercase()) {
                None => false,
                Some(w) if w == "asc" => false,
                Some(w) if w == "desc" => true,
                Some(w) => return Err(format!("'{w}' is not asc or desc in $orderby")),
            };
            Ok(((*field).to_owned(), desc))
        })
        .collect()
}

/// Sorts items by the `$orderby` keys (stable: ties keep their order).
pub fn sort<V: std::borrow::Borrow<Value>>(items: &mut [V], keys: &[(String, bool)]) {
    items.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        for (field, desc) in keys {
            let ord = compare(&a[field.as_str()], &b[field.as_str()]).unwrap_or(Ordering::Equal);
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Keeps only the `$select`ed top-level fields of `item`.
pub fn select(item: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = item.get(field.as_str()) {
            out.insert(field.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Evaluates `filter` without the documented-members rule, to test evaluation alone.
    fn hit(filter: &str, item: &Value) -> bool {
        eval(&odata::parse(filter, DIALECT).unwrap(), item)
    }

    #[test]
    fn the_documented_filters_parse_and_evaluate() {
        let item = json!({
            "status": "Active", "direction": "Outgoing", "type": "Shared", "substatus": "Accepted",
            "engagementId": "8f2b3c4d-0000-4000-8000-000000000001",
            "customerProfile": {"address": {"country": "US"}},
            "team": [{"email": "a@x.com"}, {"email": "me@contoso.com"}],
            "details": {"dealValue": 5000}
        });
        assert!(hit(
            "status eq 'Active' and direction eq 'Outgoing' and type eq 'Shared' and team/any(t:t/email eq 'me@contoso.com')",
            &item
        ));
        assert!(!hit("team/any(t:t/email eq 'nobody@x.com')", &item));
        assert!(hit(
            "customerProfile/address/country eq 'US' and direction eq 'Outgoing'",
            &item
        ));
        assert!(hit(
            "(type eq 'Shared' and direction eq 'Incoming') or status eq 'Active'",
            &item
        ));
        assert!(!hit(
            "(direction eq 'Incoming' and substatus eq 'Pending')",
            &item
        ));
        assert!(hit(
            "engagementId eq 8f2b3c4d-0000-4000-8000-000000000001",
            &item
        ));
        assert!(hit(
            "engagementId eq '8f2b3c4d-0000-4000-8000-000000000001'",
            &item
        ));
        assert!(hit(
            "details/dealValue gt 4999 and not (status eq 'New')",
            &item
        ));
        assert!(hit("missing eq null", &item));
        assert!(parse_filter("contains(name,'x')").is_err());
        assert!(parse_filter("status eq 'Active' and").is_err());
        assert!(parse_filter("status xx 'A'").is_err());
    }

    #[test]
    fn only_documented_members_may_be_filtered_on() {
        for ok in [
            "engagementId eq 'x'",
            "status eq 'Active' and direction eq 'Outgoing' and type eq 'Shared' and team/any(t:t/email eq 'x@y')",
            "customerProfile/address/country eq 'US' and not (substatus eq 'Pending')",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        for (bad, member) in [
            ("externalReferenceId eq 'x'", "externalReferenceId"),
            ("name eq 'x'", "name"),
            (
                "updatedDateTime ge '2026-01-01T00:00:00Z'",
                "updatedDateTime",
            ),
            (
                "status eq 'New' or customerProfile/name eq 'x'",
                "customerProfile/name",
            ),
            ("team/any(t:t/lastName eq 'x')", "lastName"),
            (
                "customerProfile/team/any(t:t/email eq 'x')",
                "customerProfile/team",
            ),
        ] {
            let error = parse_filter(bad).unwrap_err();
            assert!(error.contains(&format!("'{member}'")), "{bad}: {error}");
        }
    }

    #[test]
    fn orderby_and_select() {
        assert_eq!(
            parse_orderby("createdDateTime desc,updatedDateTime").unwrap(),
            vec![
                ("createdDateTime".into(), true),
                ("updatedDateTime".into(), false)
            ]
        );
        assert!(parse_orderby("name").is_err());
        let mut items = vec![
            json!({"createdDateTime": "2024-01-01"}),
            json!({"createdDateTime": "2024-02-01"}),
        ];
        sort(&mut items, &parse_orderby("createdDateTime desc").unwrap());
        assert_eq!(items[0]["createdDateTime"], "2024-02-01");
        let picked = select(
            &json!({"id": 1, "status": "New", "x": 2}),
            &["id".into(), "status".into()],
        );
        assert_eq!(picked, json!({"id": 1, "status": "New"}));
    }
}
