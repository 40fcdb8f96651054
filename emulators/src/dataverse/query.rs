//! Query options of a collection GET (§4.7): `$select`, a `$filter` subset, `$orderby`,
//! `$top`, `Prefer: odata.maxpagesize` paging with `@odata.nextLink`, and URL decoding.
//!
//! `$filter` supports `eq ne gt ge lt le`, `and`, `or`, `not`, parentheses, and the functions
//! `contains`, `startswith`, `endswith` (case-insensitive, as SQL collation makes them in the
//! real service). Literals: `'text'` (`''` escapes a quote), numbers, `true`/`false`, `null`,
//! bare GUIDs. Lookups are filtered by `_x_value`. Parsed by [`crate::common::odata`] in this
//! service's dialect; checked and evaluated here.
//!
//! Choice where the reference stops: `$skiptoken` is opaque but here encodes the offset of the
//! next page in the (ordered) result, so a page boundary may shift if rows are created or deleted
//! between pages; the real service uses a paging cookie keyed on the primary id.

use super::api::{ApiResponse, ApiResult, bad_request};
use super::record::{column_of_read_name, loose_eq};
use super::schema::EntityDef;
use crate::common::odata::{self, CmpOp, Dialect, Expr, Literal, Operand, SyntaxError, Token};
use serde_json::Value;

/// Percent-decodes a query component (`+` is a space).
pub fn decode(s: &str) -> String {
    decode_with(s, true)
}

/// Percent-decodes a path (`+` stays `+`).
pub fn decode_path(s: &str) -> String {
    decode_with(s, false)
}

fn decode_with(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string as (name, decoded value) pairs, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The functions `$filter` supports.
const FUNCTIONS: [&str; 3] = ["contains", "startswith", "endswith"];

/// How Dataverse reads `$filter`: a word runs to a space, quote, parenthesis or comma (so
/// `a/b` is one name); keywords in lower case only; its functions; no lambdas.
const DIALECT: Dialect = Dialect {
    word_char: |_| true,
    any_case_keywords: false,
    newline_is_space: false,
    paths: false,
    functions: &FUNCTIONS,
    number: |w| word_value(w).map(|_| true),
    operand: check_operand,
    compare_calls: false,
    lambdas: &[],
};

/// The value of a bare word: `true`/`false`/`null`, an integer, a decimal, or text when it
/// is a GUID or starts with a digit. `None`: it names a column.
fn word_value(w: &str) -> Option<Value> {
    Some(match w {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => match (w.parse::<i64>(), w.parse::<f64>()) {
            (Ok(n), _) => n.into(),
            (_, Ok(f)) => serde_json::json!(f),
            _ if uuid::Uuid::parse_str(w).is_ok()
                || w.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                Value::String(w.to_owned())
            }
            _ => return None,
        },
    })
}

/// The value of a literal operand (`None` for a column or call).
pub(super) fn value_of(operand: &Operand) -> Option<Value> {
    match operand {
        Operand::Literal(Literal::Str(s) | Literal::Guid(s)) => Some(Value::String(s.clone())),
        Operand::Literal(Literal::Bool(b)) => Some(Value::Bool(*b)),
        Operand::Literal(Literal::Null) => Some(Value::Null),
        Operand::Literal(Literal::Number(w)) => word_value(w),
        _ => None,
    }
}

/// The column an operand names.
pub(super) fn column(operand: &Operand) -> Option<&str> {
    match operand {
        Operand::Path(p) if p.len() == 1 => Some(&p[0]),
        _ => None,
    }
}

/// A comparison is `column op literal` and a call one of [`FUNCTIONS`] on a column and a
/// text, checked as each is read.
fn check_operand(operand: &Operand, after: Option<CmpOp>) -> Result<(), String> {
    if let Operand::Call(name, args) = operand {
        return function(name, args).map(drop);
    }
    match after {
        None if column(operand).is_none() => {
            Err(format!("unexpected {}", shown_value(value_of(operand))))
        }
        Some(op) if value_of(operand).is_none() => {
            Err(format!("expected a literal after '{}'", op.word()))
        }
        _ => Ok(()),
    }
}

/// How a literal is shown in a syntax error.
fn shown_value(value: Option<Value>) -> String {
    format!("Some(Literal({:?}))", value.unwrap_or(Value::Null))
}

/// How the token is shown in a syntax error.
fn shown(token: &Option<Token>) -> String {
    let literal = |v: Value| shown_value(Some(v));
    match token {
        None => "None".into(),
        Some(Token::LParen) => "Some(Open)".into(),
        Some(Token::RParen) => "Some(Close)".into(),
        Some(Token::Str(s)) => literal(Value::String(s.clone())),
        Some(Token::Word(w)) => match word_value(w) {
            Some(v) => literal(v),
            None => format!("Some(Word({w:?}))"),
        },
        Some(other) => format!("Some({other:?})"),
    }
}

pub(super) fn message(error: SyntaxError) -> String {
    match error {
        SyntaxError::UnterminatedString => "unterminated string literal".into(),
        // The left side is a column: `check_operand` refused any other.
        SyntaxError::ExpectedOperator { left, found } => match found {
            Some(Token::Word(op)) if word_value(&op).is_none() => {
                format!("unsupported operator '{op}'")
            }
            _ => format!(
                "expected an operator after '{}'",
                column(&left).unwrap_or_default()
            ),
        },
        SyntaxError::ExpectedOperand {
            after: Some(op), ..
        } => format!("expected a literal after '{}'", op.word()),
        SyntaxError::ExpectedOperand { found, .. } => format!("unexpected {}", shown(&found)),
        SyntaxError::UnknownFunction(name) => format!("unsupported function '{name}'"),
        SyntaxError::BadArguments {
            function,
            read,
            error,
        } => match (read.len(), *error) {
            (0, SyntaxError::ExpectedOperand { .. }) => format!("{function} needs a column"),
            (_, _) if read.first().and_then(column).is_none() => {
                format!("{function} needs a column")
            }
            (n, _) if n > 1 && !matches!(value_of(&read[1]), Some(Value::String(_))) => {
                format!("{function} needs a string literal")
            }
            (1, SyntaxError::ExpectedClose(_)) => format!("{function} needs two arguments"),
            (1, SyntaxError::ExpectedOperand { .. }) => {
                format!("{function} needs a string literal")
            }
            (_, error) => message(error),
        },
        SyntaxError::Trailing(_) => "unexpected text after the expression".into(),
        SyntaxError::Rejected(message) => message,
        SyntaxError::UnexpectedChar(_)
        | SyntaxError::NotANumber(_)
        | SyntaxError::ExpectedClose(_)
        | SyntaxError::ExpectedColon(_)
        | SyntaxError::ExpectedLambdaVariable(_)
        | SyntaxError::ExpectedSegment(_) => "expected ')'".into(),
    }
}

/// A supported function call's `(function, column, text)`.
fn function(name: &str, args: &[Operand]) -> Result<(String, String, String), String> {
    let Some(column) = args.first().and_then(column) else {
        return Err(format!("{name} needs a column"));
    };
    match args.get(1).map(value_of) {
        None => Err(format!("{name} needs two arguments")),
        Some(Some(Value::String(text))) if args.len() == 2 => {
            Ok((name.to_lowercase(), column.to_owned(), text))
        }
        Some(Some(Value::String(_))) => Err("expected ')'".into()),
        Some(_) => Err(format!("{name} needs a string literal")),
    }
}

/// Parses `$filter` and checks its columns against `def`.
pub fn parse_filter(def: &EntityDef, input: &str) -> ApiResult<Expr> {
    let syntax = |m: String| bad_request("0x80060888", format!("Syntax error in $filter: {m}."));
    let filter = odata::parse(input, DIALECT).map_err(|e| syntax(message(e)))?;
    check_columns(def, &filter)?;
    Ok(filter)
}

fn check_columns(def: &EntityDef, filter: &Expr) -> ApiResult<()> {
    let name = match filter {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_columns(def, a)?;
            return check_columns(def, b);
        }
        Expr::Not(a) => return check_columns(def, a),
        Expr::Compare(left, ..) => column(left).map(str::to_owned),
        Expr::Call(name, args) => function(name, args).ok().map(|(_, c, _)| c),
        Expr::Lambda(_) => None,
    };
    match name {
        Some(c) if column_of_read_name(def, &c).is_none() => Err(unknown_column(def, &c)),
        _ => Ok(()),
    }
}

/// The error of a `$select`/`$filter`/`$orderby` naming an unknown column.
pub fn unknown_column(def: &EntityDef, name: &str) -> ApiResponse {
    bad_request(
        "0x80060888",
        format!(
            "Could not find a property named '{name}' on type '{}'.",
            def.type_name()
        ),
    )
}

/// The value a row has under a read name (`_x_value` gives the lookup's id).
pub fn field<'a>(
    def: &EntityDef,
    values: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Option<&'a Value> {
    let column = column_of_read_name(def, name)?;
    match values.get(column)? {
        Value::Object(o) => o.get("id"),
        v => Some(v),
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Whether a row matches a `$filter` that [`parse_filter`] accepted.
pub fn matches(def: &EntityDef, values: &serde_json::Map<String, Value>, filter: &Expr) -> bool {
    match filter {
        Expr::And(a, b) => matches(def, values, a) && matches(def, values, b),
        Expr::Or(a, b) => matches(def, values, a) || matches(def, values, b),
        Expr::Not(a) => !matches(def, values, a),
        Expr::Lambda(_) => false,
        Expr::Compare(left, op, right) => {
            let (Some(column), Some(literal)) = (column(left), value_of(right)) else {
                return false;
            };
            let value = field(def, values, column).unwrap_or(&Value::Null);
            let equal = loose_eq(value, &literal)
                || matches!((value, &literal), (Value::String(a), Value::String(b)) if a.eq_ignore_ascii_case(b));
            match op {
                CmpOp::Eq => equal,
                CmpOp::Ne => !equal,
                op => compare(value, &literal).is_some_and(|o| op.holds(o)),
            }
        }
        Expr::Call(name, args) => {
            let Ok((function, column, text)) = function(name, args) else {
                return false;
            };
            let Some(Value::String(value)) = field(def, values, &column) else {
                return false;
            };
            let (value, text) = (value.to_lowercase(), text.to_lowercase());
            match function.as_str() {
                "contains" => value.contains(&text),
                "startswith" => value.starts_with(&text),
                _ => value.ends_with(&text),
            }
        }
    }
}

/// Parses `$select` and checks each name (a column, or `_x_value` for a lookup).
pub fn parse_select(def: &EntityDef, input: &str) -> ApiResult<Vec<String>> {
    input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| match column_of_read_name(def, name) {
            Some(_) => Ok(name.to_owned()),
            None => Err(unknown_column(def, name)),
        })
        .collect()
}

/// Sorts rows by `$orderby` (`col [asc|desc], …`).
pub fn parse_orderby(def: &EntityDef, input: &str) -> ApiResult<Vec<(String, bool)>> {
    input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|part| {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default();
            let desc = words.next().map(|d| d.eq_ignore_ascii_case("desc")) == Some(true);
            match column_of_read_name(def, name) {
                Some(_) => Ok((name.to_owned(), desc)),
                None => Err(unknown_column(def, name)),
            }
        })
        .collect()
}

/// Compares two rows by an `$orderby`.
pub fn order(
    def: &EntityDef,
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
    orderby: &[(String, bool)],
) -> std::cmp::Ordering {
    for (column, desc) in orderby {
        let x = field(def, a, column).unwrap_or(&Value::Null);
        let y = field(def, b, column).unwrap_or(&Value::Null);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => compare(x, y).unwrap_or(std::cmp::Ordering::Equal),
        };
        let o = if *desc { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}
