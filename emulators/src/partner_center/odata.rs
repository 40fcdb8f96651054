//! The OData query subset the Referrals API documents (reference §1.5): `$filter` with
//! `eq`/`ne`/`gt`/`ge`/`lt`/`le`, `and`/`or`/`not`, parentheses, nested paths
//! (`customerProfile/address/country`) and the `any` lambda (`team/any(t:t/email eq '…')`);
//! `$orderby` on `createdDateTime`/`updatedDateTime` (`asc`/`desc`); `$select` of top-level
//! fields. A small recursive-descent parser evaluated over `serde_json::Value`s.
//!
//! Where the facts stop: string comparison is case-sensitive (OData's rule); an unquoted GUID
//! is read as a string, since the live service writes `engagementId eq <guid>` in its own links;
//! a missing member is `null`; functions (`contains`, …) are not documented and answer 400.

use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Operand, CmpOp, Operand),
    /// `path/any(var: body)`.
    Any(Vec<String>, String, Box<Expr>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    Colon,
    Slash,
    Str(String),
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            ':' => {
                tokens.push(Token::Colon);
                i += 1;
            }
            '/' => {
                tokens.push(Token::Slash);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal in $filter".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '@' | '$') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || matches!(chars[i], '_' | '-' | '.' | '+' | '@' | '$'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}' in $filter")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn is_guid(word: &str) -> bool {
    word.len() == 36
        && word.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, token: Token) -> Result<(), String> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            other => Err(format!("expected {token:?} in $filter, found {other:?}")),
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(inner);
        }
        let left = self.operand()?;
        if let Operand::Path(path) = &left
            && self.peek() == Some(&Token::LParen)
        {
            // `path/any(` was read as a path ending in `any`.
            let mut path = path.clone();
            let lambda = path.pop().unwrap_or_default();
            if lambda != "any" || path.is_empty() {
                return Err(format!(
                    "the function '{lambda}' is not supported in $filter (only eq/ne/gt/ge/lt/le, and/or/not and any)"
                ));
            }
            self.pos += 1;
            let var = match self.next() {
                Some(Token::Word(v)) => v,
                other => return Err(format!("expected a lambda variable, found {other:?}")),
            };
            self.expect(Token::Colon)?;
            let body = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(Expr::Any(path, var, Box::new(body)));
        }
        let op = match self.next() {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                _ => return Err(format!("'{w}' is not a supported $filter operator")),
            },
            other => return Err(format!("expected a comparison operator, found {other:?}")),
        };
        let right = self.operand()?;
        Ok(Expr::Compare(left, op, right))
    }
    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Operand::Literal(Value::String(s))),
            Some(Token::Word(w)) => {
                if is_guid(&w) {
                    return Ok(Operand::Literal(Value::String(w)));
                }
                match w.as_str() {
                    "true" => return Ok(Operand::Literal(Value::Bool(true))),
                    "false" => return Ok(Operand::Literal(Value::Bool(false))),
                    "null" => return Ok(Operand::Literal(Value::Null)),
                    _ => {}
                }
                if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                    let n: f64 = w.parse().map_err(|_| format!("'{w}' is not a number"))?;
                    return Ok(Operand::Literal(serde_json::json!(n)));
                }
                let mut path = vec![w];
                while self.peek() == Some(&Token::Slash) {
                    self.pos += 1;
                    match self.next() {
                        Some(Token::Word(seg)) => path.push(seg),
                        other => return Err(format!("expected a property name, found {other:?}")),
                    }
                }
                Ok(Operand::Path(path))
            }
            other => Err(format!("expected a value or property, found {other:?}")),
        }
    }
}

/// Parses a `$filter` expression.
pub fn parse_filter(input: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(input)?,
        pos: 0,
    };
    let expr = parser.or()?;
    if parser.pos < parser.tokens.len() {
        return Err(format!(
            "unexpected {:?} in $filter",
            parser.tokens[parser.pos]
        ));
    }
    Ok(expr)
}

type Scope<'a> = Vec<(&'a str, &'a Value)>;

fn resolve<'a>(item: &'a Value, scope: &Scope<'a>, path: &[String]) -> Value {
    let (mut current, rest) = match scope.iter().rev().find(|(v, _)| *v == path[0]) {
        Some((_, bound)) => (*bound, &path[1..]),
        None => (item, path),
    };
    for seg in rest {
        match current.get(seg.as_str()) {
            Some(v) => current = v,
            None => return Value::Null,
        }
    }
    current.clone()
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
        Expr::Compare(l, op, r) => {
            let value = |o: &Operand| match o {
                Operand::Literal(v) => v.clone(),
                Operand::Path(p) => resolve(item, scope, p),
            };
            let ord = compare(&value(l), &value(r));
            match op {
                CmpOp::Eq => ord == Some(Ordering::Equal),
                CmpOp::Ne => ord != Some(Ordering::Equal),
                CmpOp::Gt => ord == Some(Ordering::Greater),
                CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                CmpOp::Lt => ord == Some(Ordering::Less),
                CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            }
        }
        Expr::Any(path, var, body) => {
            // Resolve the collection without cloning so the lambda can borrow its members.
            let (mut current, rest) = match scope.iter().rev().find(|(v, _)| *v == path[0]) {
                Some((_, bound)) => (*bound, &path[1..]),
                None => (item, &path[..]),
            };
            for seg in rest {
                match current.get(seg.as_str()) {
                    Some(v) => current = v,
                    None => return false,
                }
            }
            let Some(members) = current.as_array() else {
                return false;
            };
            members.iter().any(|member| {
                scope.push((var.as_str(), member));
                let hit = eval_in(body, item, scope);
                scope.pop();
                hit
            })
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
pub fn sort(items: &mut [Value], keys: &[(String, bool)]) {
    items.sort_by(|a, b| {
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

    fn hit(filter: &str, item: &Value) -> bool {
        eval(&parse_filter(filter).unwrap(), item)
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
