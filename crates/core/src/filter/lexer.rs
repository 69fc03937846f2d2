//! Tokens of the output-filter language, with their byte offsets in the expression.
//!
//! The lexer accepts ZMap's tokens (field names and bare words `[A-Za-z][-_A-Za-z0-9]*`,
//! decimal numbers, `= != < > <= >= && || ( )`) and rzmap's additions: double-quoted strings
//! with escapes, dotted IPv4 literals, `==` as a synonym of `=`, and 64-bit integers (an
//! integer that does not fit in 64 bits is an error, never a wrap).

use std::net::Ipv4Addr;

use crate::error::InputError;

/// The input name every filter error carries.
pub const INPUT: &str = "--output-filter";

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` (or `==`).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `>=`.
    Ge,
}

impl CmpOp {
    /// The operator as written in a filter.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }

    /// Applies the operator to two ordered values.
    #[inline]
    pub fn apply<T: Ord>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Gt => a > b,
            CmpOp::Le => a <= b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A field name or a bare-word string literal.
    Word(String),
    /// A decimal unsigned integer.
    Number(u64),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// A double-quoted string, escapes resolved.
    Quoted(String),
    /// A comparison operator.
    Cmp(CmpOp),
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// The end of the expression.
    End,
}

impl TokenKind {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Word(w) => format!("\"{w}\""),
            TokenKind::Number(n) => format!("number {n}"),
            TokenKind::Ipv4(a) => format!("address {a}"),
            TokenKind::Quoted(s) => format!("string {s:?}"),
            TokenKind::Cmp(op) => format!("\"{}\"", op.symbol()),
            TokenKind::And => "\"&&\"".into(),
            TokenKind::Or => "\"||\"".into(),
            TokenKind::LParen => "\"(\"".into(),
            TokenKind::RParen => "\")\"".into(),
            TokenKind::End => "the end of the filter".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub kind: TokenKind,
    /// Byte offset of its first character in the expression.
    pub pos: usize,
}

/// The 1-based character column of a byte offset of `expr`.
pub fn column(expr: &str, pos: usize) -> usize {
    let pos = pos.min(expr.len());
    // `pos` always lies on a character boundary: tokens start at ASCII characters or at the
    // start of a non-ASCII character. Fall back to the byte offset if it ever does not.
    expr.get(..pos).map_or(pos, |s| s.chars().count()) + 1
}

/// An error at a byte offset of the expression.
pub fn error_at(expr: &str, pos: usize, message: impl Into<String>) -> InputError {
    InputError::at_column(INPUT, column(expr, pos), message)
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Splits a filter expression into tokens; the last token is always [`TokenKind::End`].
pub fn tokenize(expr: &str) -> Result<Vec<Token>, InputError> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                TokenKind::LParen
            }
            b')' => {
                i += 1;
                TokenKind::RParen
            }
            b'&' | b'|' => {
                if bytes.get(i + 1) == Some(&b) {
                    i += 2;
                    if b == b'&' { TokenKind::And } else { TokenKind::Or }
                } else {
                    let want = if b == b'&' { "&&" } else { "||" };
                    return Err(error_at(expr, start, format!("expected \"{want}\"")));
                }
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                TokenKind::Cmp(CmpOp::Eq)
            }
            b'!' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    TokenKind::Cmp(CmpOp::Ne)
                } else {
                    return Err(error_at(expr, start, "expected \"!=\""));
                }
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                i += if eq { 2 } else { 1 };
                TokenKind::Cmp(match (b, eq) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'"' => {
                let (s, next) = lex_quoted(expr, i)?;
                i = next;
                TokenKind::Quoted(s)
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                if i < bytes.len() && is_word_char(bytes[i]) {
                    while i < bytes.len() && (is_word_char(bytes[i]) || bytes[i] == b'.') {
                        i += 1;
                    }
                    return Err(error_at(
                        expr,
                        start,
                        format!("bad number \"{}\"", &expr[start..i]),
                    ));
                }
                let text = &expr[start..i];
                if text.contains('.') {
                    match text.parse::<Ipv4Addr>() {
                        Ok(a) => TokenKind::Ipv4(a),
                        Err(_) => {
                            return Err(error_at(
                                expr,
                                start,
                                format!("bad IPv4 address \"{text}\" (expected a.b.c.d)"),
                            ));
                        }
                    }
                } else {
                    match text.parse::<u64>() {
                        Ok(n) => TokenKind::Number(n),
                        Err(_) => {
                            return Err(error_at(
                                expr,
                                start,
                                format!(
                                    "integer {text} is too large (the maximum is {})",
                                    u64::MAX
                                ),
                            ));
                        }
                    }
                }
            }
            b if is_word_start(b) => {
                while i < bytes.len() && is_word_char(bytes[i]) {
                    i += 1;
                }
                TokenKind::Word(expr[start..i].to_string())
            }
            _ => {
                let c = expr[start..].chars().next().unwrap_or('?');
                return Err(error_at(expr, start, format!("unexpected character {c:?}")));
            }
        };
        out.push(Token { kind, pos: start });
    }
    out.push(Token { kind: TokenKind::End, pos: expr.len() });
    Ok(out)
}

/// Lexes a double-quoted string starting at byte `open` (the quote). Returns the unescaped
/// text and the offset after the closing quote.
///
/// Escapes: `\"`, `\\`, `\n`, `\r`, `\t`, `\0` and `\u{HEX}` (1 to 6 hex digits).
fn lex_quoted(expr: &str, open: usize) -> Result<(String, usize), InputError> {
    let mut s = String::new();
    let mut chars = expr[open + 1..].char_indices().map(|(o, c)| (o + open + 1, c));
    while let Some((pos, c)) = chars.next() {
        match c {
            '"' => return Ok((s, pos + 1)),
            '\\' => {
                let Some((epos, e)) = chars.next() else { break };
                match e {
                    '"' => s.push('"'),
                    '\\' => s.push('\\'),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    '0' => s.push('\0'),
                    'u' => {
                        let bad = || {
                            error_at(expr, pos, "bad \\u escape (expected \\u{HEX}, 1 to 6 digits)")
                        };
                        if chars.next().map(|x| x.1) != Some('{') {
                            return Err(bad());
                        }
                        let mut v: u32 = 0;
                        let mut digits = 0;
                        loop {
                            match chars.next() {
                                Some((_, '}')) if digits > 0 => break,
                                Some((_, h)) if h.is_ascii_hexdigit() && digits < 6 => {
                                    v = v * 16 + h.to_digit(16).unwrap_or(0);
                                    digits += 1;
                                }
                                _ => return Err(bad()),
                            }
                        }
                        match char::from_u32(v) {
                            Some(ch) => s.push(ch),
                            None => {
                                return Err(error_at(
                                    expr,
                                    pos,
                                    format!("\\u{{{v:x}}} is not a Unicode scalar value"),
                                ));
                            }
                        }
                    }
                    other => {
                        let _ = epos;
                        return Err(error_at(
                            expr,
                            pos,
                            format!(
                                "unknown escape \"\\{other}\" (use \\\" \\\\ \\n \\r \\t \\0 or \\u{{HEX}})"
                            ),
                        ));
                    }
                }
            }
            c => s.push(c),
        }
    }
    Err(error_at(expr, open, "unterminated string (missing closing '\"')"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(e: &str) -> Vec<TokenKind> {
        tokenize(e).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexes_every_token() {
        use TokenKind::*;
        assert_eq!(
            kinds("(a_b-c = \"x\\\"y\") && n != 18446744073709551615 || s >= 1.2.3.4 <=< > ==x"),
            vec![
                LParen,
                Word("a_b-c".into()),
                Cmp(CmpOp::Eq),
                Quoted("x\"y".into()),
                RParen,
                And,
                Word("n".into()),
                Cmp(CmpOp::Ne),
                Number(u64::MAX),
                Or,
                Word("s".into()),
                Cmp(CmpOp::Ge),
                Ipv4(Ipv4Addr::new(1, 2, 3, 4)),
                Cmp(CmpOp::Le),
                Cmp(CmpOp::Lt),
                Cmp(CmpOp::Gt),
                Cmp(CmpOp::Eq),
                Word("x".into()),
                End
            ]
        );
    }

    #[test]
    fn quoted_escapes() {
        assert_eq!(
            kinds(r#""a\\b\n\r\t\0\u{e9}\u{1F600}""#)[0],
            TokenKind::Quoted("a\\b\n\r\t\0é😀".into())
        );
        assert_eq!(kinds("\"héllo wörld\"")[0], TokenKind::Quoted("héllo wörld".into()));
    }

    #[test]
    fn errors_name_the_column() {
        let e = |s: &str| tokenize(s).unwrap_err().to_string();
        assert_eq!(
            e("ttl > 18446744073709551616"),
            "--output-filter: column 7: integer 18446744073709551616 is too large (the maximum is 18446744073709551615)"
        );
        assert!(e("a = 1.2.3").starts_with("--output-filter: column 5: bad IPv4 address"));
        assert!(e("a = 1.2.3.256").contains("column 5"));
        assert!(e("a = 10x").starts_with("--output-filter: column 5: bad number \"10x\""));
        assert!(e("a & b").starts_with("--output-filter: column 3: expected \"&&\""));
        assert!(e("a | b").starts_with("--output-filter: column 3: expected \"||\""));
        assert!(e("a ! b").starts_with("--output-filter: column 3: expected \"!=\""));
        assert!(e("é = #").starts_with("--output-filter: column 1: unexpected character 'é'"));
        assert!(e("\"é\" = #").starts_with("--output-filter: column 7: unexpected character '#'"));
        assert!(e("a = \"abc").starts_with("--output-filter: column 5: unterminated string"));
        assert!(e("a = \"ab\\").contains("column 5: unterminated"));
        assert!(e("a = \"a\\qb\"").starts_with("--output-filter: column 7: unknown escape"));
        assert!(e("a = \"\\u{110000}\"").contains("column 6"));
        assert!(e("a = \"\\u{}\"").contains("bad \\u escape"));
        assert!(e("a = \"\\u12\"").contains("bad \\u escape"));
    }
}
