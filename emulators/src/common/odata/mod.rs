//! The OData `$filter` grammar both emulators read: one tokenizer and one recursive-descent
//! parser producing one expression tree, a superset of what each service accepts.
//!
//! It follows the `$filter` subset of the Partner Center Referrals API (reference §1.5:
//! comparisons, `and`/`or`/`not`, parentheses, nested paths, the `any` lambda) and of the
//! Dataverse Web API (reference §4.7: comparisons, `and`/`or`/`not`, parentheses, the functions
//! `contains`/`startswith`/`endswith`). The tree also holds `all` lambdas and calls with any
//! arguments; each service checks the tree against what it supports, with its own error
//! messages, and evaluates it against its own records.
//!
//! Literals: `'text'` (`''` escapes a quote), numbers, `true`/`false`/`null`, bare GUIDs.

mod lexer;
mod parser;

pub use lexer::{Dialect, Token};
pub use parser::{SyntaxError, parse};

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// `not a`.
    Not(Box<Expr>),
    /// `left op right`.
    Compare(Operand, CmpOp, Operand),
    /// A function call used as a condition: `contains(name,'x')`.
    Call(String, Vec<Operand>),
    /// `path/any(var: body)` or `path/all(var: body)`.
    Lambda(Lambda),
}

/// A lambda over a collection: `team/any(t:t/email eq 'x')`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lambda {
    /// The collection's path (`team`).
    pub path: Vec<String>,
    /// `any` or `all`.
    pub kind: LambdaKind,
    /// The range variable (`t`).
    pub var: String,
    /// The condition on each member.
    pub body: Box<Expr>,
}

/// Which lambda operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaKind {
    /// True when some member matches.
    Any,
    /// True when every member matches.
    All,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
}

impl CmpOp {
    /// The operator named by `word` (case-insensitive when `any_case`).
    pub fn from_word(word: &str, any_case: bool) -> Option<CmpOp> {
        const ALL: [CmpOp; 6] = [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Gt,
            CmpOp::Ge,
            CmpOp::Lt,
            CmpOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.word() == word || (any_case && op.word().eq_ignore_ascii_case(word)))
    }

    /// The operator's word in lower case.
    pub fn word(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        }
    }

    /// Whether an ordering of left against right satisfies the operator.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        match self {
            CmpOp::Eq => ord.is_eq(),
            CmpOp::Ne => ord.is_ne(),
            CmpOp::Gt => ord.is_gt(),
            CmpOp::Ge => ord.is_ge(),
            CmpOp::Lt => ord.is_lt(),
            CmpOp::Le => ord.is_le(),
        }
    }
}

/// One side of a comparison, or an argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A constant.
    Literal(Literal),
    /// A property path (`customerProfile/address/country`, or `t/email` inside a lambda).
    Path(Vec<String>),
    /// A function call (`tolower(name)`).
    Call(String, Vec<Operand>),
}

/// A constant in `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`, with `''` read as one quote.
    Str(String),
    /// A word starting with a digit (or `-` and a digit), as written: each service reads it.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An unquoted GUID (`8f2b3c4d-0000-4000-8000-000000000001`).
    Guid(String),
}
