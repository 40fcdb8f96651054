//! The recursive-descent parser: `or` over `and` over `not`, groups, lambdas, calls and
//! comparisons.

use super::lexer::{Dialect, Token, tokenize};
use super::{CmpOp, Expr, Lambda, LambdaKind, Literal, Operand};

/// Why a `$filter` could not be read. Each service words it in its own messages; `found` is
/// the token met instead (`None` at the end).
#[derive(Debug, Clone, PartialEq)]
pub enum SyntaxError {
    /// A `'` without its closing quote.
    UnterminatedString,
    /// A character no token may hold.
    UnexpectedChar(char),
    /// A missing `)`.
    ExpectedClose(Option<Token>),
    /// A lambda variable not followed by `:`.
    ExpectedColon(Option<Token>),
    /// A lambda without its variable.
    ExpectedLambdaVariable(Option<Token>),
    /// No comparison operator after an operand.
    ExpectedOperator {
        /// The operand before.
        left: Operand,
        /// What came instead.
        found: Option<Token>,
    },
    /// A value or property is missing.
    ExpectedOperand {
        /// The comparison operator before, if any.
        after: Option<CmpOp>,
        /// What came instead.
        found: Option<Token>,
    },
    /// A `/` not followed by a property name.
    ExpectedSegment(Option<Token>),
    /// A call of a function the dialect does not take (its name, with any path before it).
    UnknownFunction(String),
    /// A call's arguments could not be read.
    BadArguments {
        /// The function's name as written.
        function: String,
        /// The arguments read before the error.
        read: Vec<Operand>,
        /// What went wrong.
        error: Box<SyntaxError>,
    },
    /// A word the dialect's [`number`](Dialect::number) calls a malformed number.
    NotANumber(String),
    /// An operand the dialect's [`operand`](Dialect::operand) check refused, with its message.
    Rejected(String),
    /// Text left over after a whole expression.
    Trailing(Token),
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

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    dialect: Dialect,
    /// How many call argument lists are open.
    in_args: usize,
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
        let hit = matches!(self.peek(), Some(Token::Word(w))
            if w == kw || (self.dialect.any_case_keywords && w.eq_ignore_ascii_case(kw)));
        if hit {
            self.pos += 1;
        }
        hit
    }
    fn close(&mut self) -> Result<(), SyntaxError> {
        match self.next() {
            Some(Token::RParen) => Ok(()),
            other => Err(SyntaxError::ExpectedClose(other)),
        }
    }
    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.close()?;
            return Ok(inner);
        }
        if let Some(lambda) = self.lambda()? {
            return Ok(Expr::Lambda(lambda));
        }
        let left = self.operand(None)?;
        if !matches!(left, Operand::Call(..)) {
            (self.dialect.operand)(&left, None).map_err(SyntaxError::Rejected)?;
        }
        let op = match self.peek() {
            Some(Token::Word(w)) => CmpOp::from_word(w, self.dialect.any_case_keywords),
            _ => None,
        }
        .filter(|_| self.dialect.compare_calls || !matches!(left, Operand::Call(..)));
        let Some(op) = op else {
            if let Operand::Call(name, args) = left {
                return Ok(Expr::Call(name, args));
            }
            let found = self.peek().cloned();
            return Err(SyntaxError::ExpectedOperator { left, found });
        };
        self.pos += 1;
        let right = self.operand(Some(op))?;
        (self.dialect.operand)(&right, Some(op)).map_err(SyntaxError::Rejected)?;
        Ok(Expr::Compare(left, op, right))
    }
    /// `path/any(var: body)` or `path/all(…)`, if that is what comes next.
    fn lambda(&mut self) -> Result<Option<Lambda>, SyntaxError> {
        let start = self.pos;
        match self.peek() {
            Some(Token::Word(w)) if !self.dialect.lambdas.is_empty() && self.is_name(w) => {}
            _ => return Ok(None),
        }
        let mut path = Vec::new();
        while let Some(Token::Word(w)) = self.peek() {
            path.push(w.clone());
            self.pos += 1;
            if self.peek() != Some(&Token::Slash) {
                break;
            }
            self.pos += 1;
        }
        let kind = match path.last().map(String::as_str) {
            Some("any") => Some(LambdaKind::Any),
            Some("all") => Some(LambdaKind::All),
            _ => None,
        }
        .filter(|kind| self.dialect.lambdas.contains(kind));
        let Some(kind) = kind.filter(|_| path.len() > 1 && self.peek() == Some(&Token::LParen))
        else {
            self.pos = start;
            return Ok(None);
        };
        path.pop();
        self.pos += 1;
        let var = match self.next() {
            Some(Token::Word(v)) => v,
            other => return Err(SyntaxError::ExpectedLambdaVariable(other)),
        };
        match self.next() {
            Some(Token::Colon) => {}
            other => return Err(SyntaxError::ExpectedColon(other)),
        }
        let body = self.or()?;
        self.close()?;
        Ok(Some(Lambda {
            path,
            kind,
            var,
            body: Box::new(body),
        }))
    }
    /// A value, path or call (`after` the comparison operator it follows, if any).
    fn operand(&mut self, after: Option<CmpOp>) -> Result<Operand, SyntaxError> {
        let word = match self.next() {
            Some(Token::Str(s)) => return Ok(Operand::Literal(Literal::Str(s))),
            Some(Token::Word(w)) => w,
            found => return Err(SyntaxError::ExpectedOperand { after, found }),
        };
        let literal = match word.as_str() {
            w if is_guid(w) => Literal::Guid(word),
            "true" => Literal::Bool(true),
            "false" => Literal::Bool(false),
            "null" => Literal::Null,
            w => match (self.dialect.number)(w) {
                Some(true) => Literal::Number(word),
                Some(false) => return Err(SyntaxError::NotANumber(word)),
                None => return self.path_or_call(word, after),
            },
        };
        Ok(Operand::Literal(literal))
    }
    /// Whether `word` names a property rather than being a literal.
    fn is_name(&self, word: &str) -> bool {
        !is_guid(word)
            && !matches!(word, "true" | "false" | "null")
            && (self.dialect.number)(word).is_none()
    }
    /// A path, or a call when `(` follows (a bound call keeps its path: `a/f(…)` is `a/f`).
    fn path_or_call(
        &mut self,
        first: String,
        after: Option<CmpOp>,
    ) -> Result<Operand, SyntaxError> {
        let mut path = vec![first];
        while self.peek() == Some(&Token::Slash) {
            self.pos += 1;
            match self.next() {
                Some(Token::Word(seg)) => path.push(seg),
                other => return Err(SyntaxError::ExpectedSegment(other)),
            }
        }
        // Without compared calls, a call is a whole condition: elsewhere `(` is left unread.
        let call_here = self.dialect.compare_calls || (after.is_none() && self.in_args == 0);
        if self.peek() != Some(&Token::LParen) || !call_here {
            return Ok(Operand::Path(path));
        }
        let name = path.join("/");
        if !self
            .dialect
            .functions
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&name))
        {
            return Err(SyntaxError::UnknownFunction(name));
        }
        self.pos += 1;
        let mut read = Vec::new();
        self.in_args += 1;
        let parsed = self.arguments(&mut read);
        self.in_args -= 1;
        match parsed {
            Ok(()) => {
                let call = Operand::Call(name, read);
                (self.dialect.operand)(&call, after).map_err(SyntaxError::Rejected)?;
                Ok(call)
            }
            Err(error) => Err(SyntaxError::BadArguments {
                function: name,
                read,
                error: Box::new(error),
            }),
        }
    }
    /// The arguments of a call after its `(`, through the `)`.
    fn arguments(&mut self, read: &mut Vec<Operand>) -> Result<(), SyntaxError> {
        if self.peek() != Some(&Token::RParen) {
            read.push(self.operand(None)?);
            while self.peek() == Some(&Token::Comma) {
                self.pos += 1;
                read.push(self.operand(None)?);
            }
        }
        self.close()
    }
}

/// Parses a whole `$filter` expression as `dialect` reads it.
pub fn parse(input: &str, dialect: Dialect) -> Result<Expr, SyntaxError> {
    let mut parser = Parser {
        tokens: tokenize(input, &dialect)?,
        pos: 0,
        dialect,
        in_args: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        Some(rest) => Err(SyntaxError::Trailing(rest.clone())),
        None => Ok(expr),
    }
}
