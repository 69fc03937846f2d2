//! The filter grammar, parsed by recursive descent into an untyped syntax tree.
//!
//! ```text
//! filter  := <empty> | or
//! or      := and ( "||" and )*          (left-associative)
//! and     := primary ( "&&" primary )*  (left-associative, binds tighter than "||")
//! primary := "(" or ")" | FIELD op value
//! op      := "=" | "==" | "!=" | "<" | ">" | "<=" | ">="
//! value   := NUMBER | WORD | "quoted string" | a.b.c.d
//! ```
//! Chains of `&&` / `||` are kept as flat lists, so only parentheses add depth; nesting deeper
//! than [`MAX_DEPTH`] is refused (the tree is walked recursively).

use std::net::Ipv4Addr;

use super::lexer::{CmpOp, Token, TokenKind, error_at, tokenize};
use crate::error::InputError;

/// The deepest parenthesis nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// The literal on the right of a comparison, before it is typed against the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    /// A decimal integer.
    Number(u64),
    /// A bare word (ZMap's string literal), e.g. `synack`; also `true` / `false`.
    Word(String),
    /// A double-quoted string.
    Quoted(String),
    /// A dotted-quad address.
    Ipv4(Ipv4Addr),
}

/// One `field op value` comparison, with byte offsets for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// The field name as written.
    pub field: String,
    /// Byte offset of the field name.
    pub field_pos: usize,
    /// The operator.
    pub op: CmpOp,
    /// Byte offset of the operator.
    pub op_pos: usize,
    /// The value.
    pub value: Literal,
    /// Byte offset of the value.
    pub value_pos: usize,
}

/// A parsed filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// A single comparison.
    Cmp(Comparison),
    /// All of these (at least two).
    And(Vec<Expr>),
    /// Any of these (at least two).
    Or(Vec<Expr>),
}

/// Parses a filter expression. `Ok(None)` means the expression is empty (every record passes).
pub fn parse(expr: &str) -> Result<Option<Expr>, InputError> {
    let tokens = tokenize(expr)?;
    if tokens.len() == 1 {
        return Ok(None);
    }
    let mut p = Parser { expr, tokens, at: 0 };
    let e = p.or(0)?;
    let t = p.peek();
    if t.kind != TokenKind::End {
        let msg = if t.kind == TokenKind::RParen {
            "unmatched \")\"".to_string()
        } else {
            format!("expected \"&&\", \"||\" or the end of the filter, found {}", t.kind.describe())
        };
        return Err(error_at(expr, t.pos, msg));
    }
    Ok(Some(e))
}

struct Parser<'a> {
    expr: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with End, and `at` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.kind != TokenKind::End {
            self.at += 1;
        }
        t
    }

    fn or(&mut self, depth: usize) -> Result<Expr, InputError> {
        let first = self.and(depth)?;
        if self.peek().kind != TokenKind::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().kind == TokenKind::Or {
            self.bump();
            items.push(self.and(depth)?);
        }
        Ok(Expr::Or(items))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, InputError> {
        let first = self.primary(depth)?;
        if self.peek().kind != TokenKind::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().kind == TokenKind::And {
            self.bump();
            items.push(self.primary(depth)?);
        }
        Ok(Expr::And(items))
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, InputError> {
        let t = self.bump();
        match t.kind {
            TokenKind::LParen => {
                if depth >= MAX_DEPTH {
                    return Err(error_at(
                        self.expr,
                        t.pos,
                        format!("parentheses nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let inner = self.or(depth + 1)?;
                let close = self.bump();
                if close.kind != TokenKind::RParen {
                    return Err(error_at(
                        self.expr,
                        close.pos,
                        format!(
                            "expected \")\" to close the \"(\" at column {}, found {}",
                            super::lexer::column(self.expr, t.pos),
                            close.kind.describe()
                        ),
                    ));
                }
                Ok(inner)
            }
            TokenKind::Word(field) => {
                let op_tok = self.bump();
                let TokenKind::Cmp(op) = op_tok.kind else {
                    return Err(error_at(
                        self.expr,
                        op_tok.pos,
                        format!(
                            "expected a comparison (=, !=, <, >, <=, >=) after field \"{field}\", found {}",
                            op_tok.kind.describe()
                        ),
                    ));
                };
                let v = self.bump();
                let value = match v.kind {
                    TokenKind::Number(n) => Literal::Number(n),
                    TokenKind::Word(w) => Literal::Word(w),
                    TokenKind::Quoted(s) => Literal::Quoted(s),
                    TokenKind::Ipv4(a) => Literal::Ipv4(a),
                    other => {
                        return Err(error_at(
                            self.expr,
                            v.pos,
                            format!(
                                "expected a value (number, word, \"string\" or IPv4 address) after \"{}\", found {}",
                                op.symbol(),
                                other.describe()
                            ),
                        ));
                    }
                };
                Ok(Expr::Cmp(Comparison {
                    field,
                    field_pos: t.pos,
                    op,
                    op_pos: op_tok.pos,
                    value,
                    value_pos: v.pos,
                }))
            }
            other => Err(error_at(
                self.expr,
                t.pos,
                format!("expected a field name or \"(\", found {}", other.describe()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp_field(e: &Expr) -> &str {
        match e {
            Expr::Cmp(c) => &c.field,
            _ => panic!("not a comparison: {e:?}"),
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a = 1 || b = 2 && c = 3 || d = 4").unwrap().unwrap();
        let Expr::Or(items) = e else { panic!() };
        assert_eq!(items.len(), 3);
        assert_eq!(cmp_field(&items[0]), "a");
        let Expr::And(inner) = &items[1] else { panic!() };
        assert_eq!((cmp_field(&inner[0]), cmp_field(&inner[1])), ("b", "c"));
        assert_eq!(cmp_field(&items[2]), "d");
    }

    #[test]
    fn parentheses_override_precedence() {
        let e = parse("(a = 1 || b = 2) && c = 3").unwrap().unwrap();
        let Expr::And(items) = e else { panic!() };
        assert!(matches!(items[0], Expr::Or(_)));
        assert_eq!(cmp_field(&items[1]), "c");
    }

    #[test]
    fn empty_and_blank_mean_everything() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  \t").unwrap(), None);
    }

    #[test]
    fn literals() {
        let Expr::Cmp(c) = parse("saddr != 198.18.0.7").unwrap().unwrap() else { panic!() };
        assert_eq!(c.value, Literal::Ipv4(Ipv4Addr::new(198, 18, 0, 7)));
        assert_eq!((c.field_pos, c.op_pos, c.value_pos), (0, 6, 9));
        let Expr::Cmp(c) = parse("x=synack").unwrap().unwrap() else { panic!() };
        assert_eq!(c.value, Literal::Word("synack".into()));
        let Expr::Cmp(c) = parse("x=\"syn ack\"").unwrap().unwrap() else { panic!() };
        assert_eq!(c.value, Literal::Quoted("syn ack".into()));
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            e("ttl 5"),
            "--output-filter: column 5: expected a comparison (=, !=, <, >, <=, >=) after field \"ttl\", found number 5"
        );
        assert!(e("ttl >").starts_with("--output-filter: column 6: expected a value"));
        assert!(e("ttl > &&").starts_with("--output-filter: column 7: expected a value"));
        assert!(e("(ttl > 1").starts_with(
            "--output-filter: column 9: expected \")\" to close the \"(\" at column 1"
        ));
        assert!(e("ttl > 1)").starts_with("--output-filter: column 8: unmatched \")\""));
        assert!(e("ttl > 1 ttl").starts_with("--output-filter: column 9: expected \"&&\", \"||\""));
        assert!(e("&& ttl > 1").starts_with("--output-filter: column 1: expected a field name"));
        assert!(e("ttl > 1 &&").starts_with("--output-filter: column 11: expected a field name"));
        assert!(e("()").starts_with("--output-filter: column 2: expected a field name"));
        assert!(e("5 = ttl").starts_with("--output-filter: column 1: expected a field name"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}a = 1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).unwrap_err().to_string().contains("nested deeper than 128"));
        let ok = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let long = vec!["a = 1"; 100_000].join(" && ");
        let Some(Expr::And(items)) = parse(&long).unwrap() else { panic!() };
        assert_eq!(items.len(), 100_000);
    }
}
