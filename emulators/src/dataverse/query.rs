//! Query options of a collection GET (§4.7): `$select`, a `$filter` subset, `$orderby`,
//! `$top`, `Prefer: odata.maxpagesize` paging with `@odata.nextLink`, and URL decoding.
//!
//! `$filter` supports `eq ne gt ge lt le`, `and`, `or`, `not`, parentheses, and the functions
//! `contains`, `startswith`, `endswith` (case-insensitive, as SQL collation makes them in the
//! real service). Literals: `'text'` (`''` escapes a quote), numbers, `true`/`false`, `null`,
//! bare GUIDs. Lookups are filtered by `_x_value`.
//!
//! Choice where the reference stops: `$skiptoken` is opaque but here encodes the offset of the
//! next page in the (ordered) result, so a page boundary may shift if rows are created or deleted
//! between pages; the real service uses a paging cookie keyed on the primary id.

use super::records::{ApiResult, bad_request, column_of_read_name, loose_eq};
use super::schema::EntityDef;
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

/// A parsed `$filter`.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare(String, String, Value),
    Function(String, String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Word(String),
    Literal(Value),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1
                        }
                    }
                }
                tokens.push(Token::Literal(Value::String(s)));
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t(),'".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let token = match word.as_str() {
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    "null" => Token::Literal(Value::Null),
                    w => {
                        if let Ok(n) = w.parse::<i64>() {
                            Token::Literal(n.into())
                        } else if let Ok(f) = w.parse::<f64>() {
                            Token::Literal(serde_json::json!(f))
                        } else if uuid::Uuid::parse_str(w).is_ok()
                            || w.starts_with(|c: char| c.is_ascii_digit())
                        {
                            Token::Literal(Value::String(w.to_owned()))
                        } else {
                            Token::Word(w.to_owned())
                        }
                    }
                };
                tokens.push(token);
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x == w)
    }
    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.word_is("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.word_is("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Filter, String> {
        if self.word_is("not") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("expected ')'".into()),
                }
            }
            Some(Token::Word(word)) => {
                if matches!(self.peek(), Some(Token::Open)) {
                    let function = word.to_lowercase();
                    if !["contains", "startswith", "endswith"].contains(&function.as_str()) {
                        return Err(format!("unsupported function '{word}'"));
                    }
                    self.at += 1;
                    let Some(Token::Word(column)) = self.next() else {
                        return Err(format!("{word} needs a column"));
                    };
                    if self.next() != Some(Token::Comma) {
                        return Err(format!("{word} needs two arguments"));
                    }
                    let Some(Token::Literal(Value::String(text))) = self.next() else {
                        return Err(format!("{word} needs a string literal"));
                    };
                    if self.next() != Some(Token::Close) {
                        return Err("expected ')'".into());
                    }
                    return Ok(Filter::Function(function, column, text));
                }
                let Some(Token::Word(op)) = self.next() else {
                    return Err(format!("expected an operator after '{word}'"));
                };
                if !["eq", "ne", "gt", "ge", "lt", "le"].contains(&op.as_str()) {
                    return Err(format!("unsupported operator '{op}'"));
                }
                let Some(Token::Literal(value)) = self.next() else {
                    return Err(format!("expected a literal after '{op}'"));
                };
                Ok(Filter::Compare(word, op, value))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses `$filter` and checks its columns against `def`.
pub fn parse_filter(def: &EntityDef, input: &str) -> ApiResult<Filter> {
    let syntax = |m: String| bad_request("0x80060888", format!("Syntax error in $filter: {m}."));
    let tokens = tokenize(input).map_err(syntax)?;
    let mut parser = Parser { tokens, at: 0 };
    let filter = parser.or().map_err(syntax)?;
    if parser.at != parser.tokens.len() {
        return Err(syntax("unexpected text after the expression".into()));
    }
    check_columns(def, &filter)?;
    Ok(filter)
}

fn check_columns(def: &EntityDef, filter: &Filter) -> ApiResult<()> {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_columns(def, a)?;
            check_columns(def, b)
        }
        Filter::Not(a) => check_columns(def, a),
        Filter::Compare(c, _, _) | Filter::Function(_, c, _) => {
            if column_of_read_name(def, c).is_none() {
                return Err(unknown_column(def, c));
            }
            Ok(())
        }
    }
}

/// The error of a `$select`/`$filter`/`$orderby` naming an unknown column.
pub fn unknown_column(def: &EntityDef, name: &str) -> super::handlers::ApiResponse {
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

/// Whether a row matches.
pub fn matches(def: &EntityDef, values: &serde_json::Map<String, Value>, filter: &Filter) -> bool {
    match filter {
        Filter::And(a, b) => matches(def, values, a) && matches(def, values, b),
        Filter::Or(a, b) => matches(def, values, a) || matches(def, values, b),
        Filter::Not(a) => !matches(def, values, a),
        Filter::Compare(column, op, literal) => {
            let value = field(def, values, column).unwrap_or(&Value::Null);
            let equal = loose_eq(value, literal)
                || matches!((value, literal), (Value::String(a), Value::String(b)) if a.eq_ignore_ascii_case(b));
            match op.as_str() {
                "eq" => equal,
                "ne" => !equal,
                op => match compare(value, literal) {
                    Some(o) => match op {
                        "gt" => o.is_gt(),
                        "ge" => o.is_ge(),
                        "lt" => o.is_lt(),
                        _ => o.is_le(),
                    },
                    None => false,
                },
            }
        }
        Filter::Function(function, column, text) => {
            let Some(Value::String(value)) = field(def, values, column) else {
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
