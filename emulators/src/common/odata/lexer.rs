//! Splitting a `$filter` into tokens.

use super::parser::SyntaxError;
use super::{CmpOp, LambdaKind, Operand};

/// What one service's `$filter` grammar holds beyond the common core (comparisons,
/// `and`/`or`/`not`, parentheses, literals).
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Whether a character other than whitespace, a quote, `(`, `)`, `,` (and `/`, `:` when
    /// [`paths`](Self::paths)) may be part of a word; any other character is a syntax error.
    pub word_char: fn(char) -> bool,
    /// Whether `and`/`or`/`not`/`eq`/… are read in any case (else lower case only).
    pub any_case_keywords: bool,
    /// Whether `\n` and `\r` count as whitespace.
    pub newline_is_space: bool,
    /// Whether `/` separates path segments and `:` follows a lambda variable; if not, both are
    /// ordinary word characters and `a/b` is one name.
    pub paths: bool,
    /// The functions that may be called (compared in any case); calling another is
    /// [`SyntaxError::UnknownFunction`], and without any, `,` is an unexpected character.
    pub functions: &'static [&'static str],
    /// Whether a word (not a GUID, `true`, `false` or `null`) is a number: `None` if it is a
    /// name, `Some(true)` if a number, `Some(false)` if a malformed one
    /// ([`SyntaxError::NotANumber`]).
    pub number: fn(&str) -> Option<bool>,
    /// Checks each side of a comparison and each call as soon as it is read (with the
    /// operator before it, for the right side); an `Err` is [`SyntaxError::Rejected`].
    pub operand: fn(&Operand, Option<CmpOp>) -> Result<(), String>,
    /// Whether a call may be compared (`f(x) eq 1`); if not, the expression ends at the call.
    pub compare_calls: bool,
    /// The lambda operators read as lambdas; another is read as a call of `path/any`.
    pub lambdas: &'static [LambdaKind],
}

/// A token of `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `:`.
    Colon,
    /// `/`.
    Slash,
    /// A quoted string, unescaped.
    Str(String),
    /// Any other run of word characters: a name, number, keyword or GUID.
    Word(String),
}

fn is_space(c: char, dialect: &Dialect) -> bool {
    matches!(c, ' ' | '\t') || (dialect.newline_is_space && matches!(c, '\n' | '\r'))
}

fn punctuation(c: char, dialect: &Dialect) -> Option<Token> {
    match c {
        '(' => Some(Token::LParen),
        ')' => Some(Token::RParen),
        ',' if !dialect.functions.is_empty() => Some(Token::Comma),
        ':' if dialect.paths => Some(Token::Colon),
        '/' if dialect.paths => Some(Token::Slash),
        _ => None,
    }
}

/// Splits `input` into tokens.
pub(super) fn tokenize(input: &str, dialect: &Dialect) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(token) = punctuation(c, dialect) {
            tokens.push(token);
            i += 1;
        } else if is_space(c, dialect) {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(SyntaxError::UnterminatedString),
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
        } else if c != ',' && (dialect.word_char)(c) {
            let start = i;
            while let Some(&ch) = chars.get(i) {
                if is_space(ch, dialect) || ch == '\'' || punctuation(ch, dialect).is_some() {
                    break;
                }
                if ch == ',' || !(dialect.word_char)(ch) {
                    return Err(SyntaxError::UnexpectedChar(ch));
                }
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            return Err(SyntaxError::UnexpectedChar(c));
        }
    }
    Ok(tokens)
}
