//! Allowlist / blocklist files: one entry per line (its first whitespace-separated token),
//! `#` comments and blank lines ignored. Entries are IPv4 prefixes, hostnames (resolved by the
//! caller) or IPv6 addresses (reported so the caller can ignore them with a debug log).

use std::net::Ipv6Addr;

use super::prefix::{Ipv4Prefix, parse_prefix};
use crate::error::InputError;

/// What one list line names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// An IPv4 prefix (or a single address as a /32).
    Prefix(Ipv4Prefix),
    /// A DNS name; the caller resolves it and adds every A record as a /32.
    Hostname(String),
    /// An IPv6 address or prefix; ZMap ignores these silently.
    Ipv6,
}

/// One entry of a list file with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// 1-based line number in the source.
    pub line: usize,
    /// What the entry names.
    pub kind: EntryKind,
}

/// Parses an allowlist or blocklist file's text.
///
/// Bad entries are errors `source:line:col: ...`; with `ignore_errors` they are skipped
/// instead (use [`parse_list_lenient`] to also get the skipped errors for logging).
pub fn parse_list(
    text: &str,
    source: &str,
    ignore_errors: bool,
) -> Result<Vec<ListEntry>, InputError> {
    let (entries, mut errors) = parse_list_lenient(text, source);
    if !ignore_errors && !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    Ok(entries)
}

/// Parses a list file, returning the good entries and one error per bad line.
pub fn parse_list_lenient(text: &str, source: &str) -> (Vec<ListEntry>, Vec<InputError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw_line) in text.lines().enumerate() {
        let line = idx + 1;
        let content = match raw_line.find('#') {
            Some(h) => &raw_line[..h],
            None => raw_line,
        };
        let Some((col, token)) = first_token(content) else { continue };
        match classify(token) {
            Ok(kind) => entries.push(ListEntry { line, kind }),
            Err((tcol, msg)) => errors
                .push(InputError::at_column(source, col + tcol - 1, msg).in_line(source, line)),
        }
    }
    (entries, errors)
}

/// The first whitespace-separated token of a line and its 1-based column (in characters).
fn first_token(line: &str) -> Option<(usize, &str)> {
    let start = line.find(|c: char| !c.is_whitespace())?;
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some((line[..start].chars().count() + 1, &rest[..end]))
}

/// Decides what a token names. Errors give a 1-based column inside the token.
fn classify(token: &str) -> Result<EntryKind, (usize, String)> {
    if token.contains(':') {
        let addr = token.split_once('/').map_or(token, |(a, _)| a);
        let len_ok =
            token.split_once('/').is_none_or(|(_, l)| l.parse::<u8>().is_ok_and(|l| l <= 128));
        if addr.parse::<Ipv6Addr>().is_ok() && len_ok {
            return Ok(EntryKind::Ipv6);
        }
        return Err((1, format!("bad IPv6 address or prefix \"{token}\"")));
    }
    let looks_numeric = token.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if token.contains('/') || looks_numeric {
        return parse_prefix(token)
            .map(EntryKind::Prefix)
            .map_err(|e| (e.column, format!("bad CIDR \"{token}\": {}", e.message)));
    }
    if let Some(reason) = hostname_problem(token) {
        return Err((
            1,
            format!("\"{token}\" is neither an IPv4 prefix nor a hostname ({reason})"),
        ));
    }
    Ok(EntryKind::Hostname(token.to_string()))
}

/// Why `name` is not a plausible DNS hostname, or `None` when it is.
fn hostname_problem(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Some("a hostname has 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some("each hostname label has 1 to 63 characters");
        }
        if !label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return Some("hostnames use only letters, digits, '-' and '_'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a hostname label cannot start or end with '-'");
        }
    }
    None
}

/// The IPv4 prefixes of a parsed list, in file order (hostnames and IPv6 entries dropped).
pub fn prefixes_of(entries: &[ListEntry]) -> Vec<Ipv4Prefix> {
    entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Prefix(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n\n  10.0.0.0/8   # RFC1918\n\
        1.2.3.4 trailing words\nexample.com\n2001:db8::/32\n::1\n\t192.168.0.0/16\n";

    #[test]
    fn parses_entries_with_lines() {
        let v = parse_list(SAMPLE, "bl.txt", false).unwrap();
        let kinds: Vec<_> = v.iter().map(|e| (e.line, e.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (3, EntryKind::Prefix(parse_prefix("10.0.0.0/8").unwrap())),
                (4, EntryKind::Prefix(parse_prefix("1.2.3.4/32").unwrap())),
                (5, EntryKind::Hostname("example.com".into())),
                (6, EntryKind::Ipv6),
                (7, EntryKind::Ipv6),
                (8, EntryKind::Prefix(parse_prefix("192.168.0.0/16").unwrap())),
            ]
        );
        assert_eq!(prefixes_of(&v).len(), 3);
    }

    #[test]
    fn errors_give_file_line_column() {
        let text = "10.0.0.0/8\n   1.2.3.4/33\n";
        let e = parse_list(text, "bl.txt", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bl.txt:2:12: bad CIDR \"1.2.3.4/33\": prefix length 33 is longer than 32"
        );
        let v = parse_list(text, "bl.txt", true).unwrap();
        assert_eq!(v.len(), 1);
        let e = parse_list("1.2.3.256\n", "w", false).unwrap_err();
        assert_eq!(e.to_string(), "w:1:7: bad CIDR \"1.2.3.256\": octet 256 is larger than 255");
        let e = parse_list("x\n  bad!host\n", "w", false).unwrap_err();
        assert!(e.to_string().starts_with("w:2:3: \"bad!host\" is neither"), "{e}");
        let e = parse_list("fe80::zz\n", "w", false).unwrap_err();
        assert!(e.to_string().starts_with("w:1:1: bad IPv6"), "{e}");
        let (ok, errs) = parse_list_lenient("-bad-\n1.1.1.1\n1.2.3\n", "w");
        assert_eq!(ok.len(), 1);
        assert_eq!(errs.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[0-9a-z./:# \t\n\u{e9}-]{0,80}") {
            let (ok, errs) = parse_list_lenient(&text, "f");
            let lines = text.lines().count();
            proptest::prop_assert!(ok.len() + errs.len() <= lines);
            let _ = crate::addr::IpList::parse(&text, "f");
            for token in text.split_whitespace() {
                let _ = parse_prefix(token);
            }
        }
    }

    #[test]
    fn hostnames_are_checked_for_plausibility() {
        assert!(hostname_problem("a.example.org.").is_none());
        assert!(hostname_problem("x_y.example").is_none());
        assert!(hostname_problem("a..b").is_some());
        assert!(hostname_problem(&"a".repeat(64)).is_some());
        assert!(hostname_problem("-a.b").is_some());
    }
}
