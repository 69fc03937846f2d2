//! IPv4 CIDR prefixes (`a.b.c.d/len` or a bare `a.b.c.d`) and their strict parser.

use std::fmt;
use std::net::Ipv4Addr;

use crate::error::InputError;

/// An IPv4 network prefix. `addr` is in host byte order and may carry host bits, which every
/// consumer ignores (ZMap does the same: `10.1.2.3/8` means `10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    /// The address as written, host byte order.
    pub addr: u32,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Prefix {
    /// A prefix from an address (host order) and a length; lengths above 32 are clamped to 32.
    pub fn new(addr: u32, len: u8) -> Self {
        Self { addr, len: len.min(32) }
    }

    /// The network mask in host order (`/0` gives 0).
    pub fn mask(&self) -> u32 {
        if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len.min(32))) }
    }

    /// The first address of the prefix (host bits cleared).
    pub fn network(&self) -> u32 {
        self.addr & self.mask()
    }

    /// The last address of the prefix.
    pub fn last(&self) -> u32 {
        self.network() | !self.mask()
    }

    /// How many addresses the prefix covers (up to 2^32).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len.min(32)))
    }

    /// The same prefix with its host bits cleared.
    pub fn normalized(&self) -> Self {
        Self { addr: self.network(), len: self.len }
    }

    /// Whether `ip` (host order) lies inside the prefix.
    pub fn contains(&self, ip: u32) -> bool {
        ip & self.mask() == self.network()
    }
}

impl fmt::Display for Ipv4Prefix {
    /// Formats as `a.b.c.d/len` with the host bits cleared, the form ZMap's metadata uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network()), self.len)
    }
}

/// Why a prefix did not parse, and the 1-based column (in the parsed string) where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixError {
    /// 1-based column of the offending character.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl PrefixError {
    fn at(column: usize, message: impl Into<String>) -> Self {
        Self { column, message: message.into() }
    }

    /// The same error as an [`InputError`] for a command-line value named `input`.
    pub fn to_input_error(&self, input: &str) -> InputError {
        InputError::at_column(input, self.column, self.message.clone())
    }

    /// The same error as an [`InputError`] at `line` of `file`, shifting the column by
    /// `token_column - 1` (the 1-based column where the parsed token starts on that line).
    pub fn in_file(&self, file: &str, line: usize, token_column: usize) -> InputError {
        InputError::at_column(file, self.column + token_column - 1, self.message.clone())
            .in_line(file, line)
    }
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for PrefixError {}

/// Parses a strict dotted quad (`a.b.c.d`, four decimal octets 0..=255 without leading zeros)
/// into a host-order address. Columns in errors are relative to `s`, plus `base` - 1.
fn parse_quad(s: &str, base: usize) -> Result<u32, PrefixError> {
    let bytes = s.as_bytes();
    let mut addr: u32 = 0;
    let mut octets = 0usize;
    let mut i = 0usize;
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let col = base + start;
        if start == i {
            let msg = match bytes.get(i) {
                None => format!("expected an octet after \"{s}\" (an address is a.b.c.d)"),
                Some(&c) => format!("unexpected {} in address, expected a digit", show_char(c)),
            };
            return Err(PrefixError::at(col, msg));
        }
        let digits = &s[start..i];
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(PrefixError::at(
                col,
                format!("octet \"{digits}\" has a leading zero (ambiguous octal)"),
            ));
        }
        let value: u32 = if digits.len() > 3 { 256 } else { digits.parse().unwrap_or(256) };
        if value > 255 {
            return Err(PrefixError::at(col, format!("octet {digits} is larger than 255")));
        }
        addr = (addr << 8) | value;
        octets += 1;
        if octets == 4 {
            if let Some(&c) = bytes.get(i) {
                return Err(PrefixError::at(
                    base + i,
                    format!("unexpected {} after the address", show_char(c)),
                ));
            }
            return Ok(addr);
        }
        match bytes.get(i) {
            Some(b'.') => i += 1,
            None => {
                return Err(PrefixError::at(
                    base + i,
                    format!("address has {octets} octets, expected 4 (a.b.c.d)"),
                ));
            }
            Some(&c) => {
                return Err(PrefixError::at(
                    base + i,
                    format!("unexpected {} in address, expected '.'", show_char(c)),
                ));
            }
        }
    }
}

/// Shows a byte for an error message: printable ASCII quoted, anything else as hex.
fn show_char(c: u8) -> String {
    if c.is_ascii_graphic() || c == b' ' {
        format!("'{}'", c as char)
    } else {
        format!("byte 0x{c:02x}")
    }
}

/// Parses `a.b.c.d/len` or a bare `a.b.c.d` (a /32).
///
/// The address is a strict dotted quad; host bits are allowed (and ignored by every consumer);
/// `len` is decimal, at most 32. Errors carry the 1-based column of the offending character.
pub fn parse_prefix(s: &str) -> Result<Ipv4Prefix, PrefixError> {
    if s.is_empty() {
        return Err(PrefixError::at(1, "empty prefix, expected a.b.c.d or a.b.c.d/len"));
    }
    let (addr_part, len_part) = match s.find('/') {
        Some(slash) => (&s[..slash], Some((slash, &s[slash + 1..]))),
        None => (s, None),
    };
    let addr = parse_quad(addr_part, 1)?;
    let len = match len_part {
        None => 32,
        Some((slash, digits)) => {
            let col = slash + 2;
            if digits.is_empty() {
                return Err(PrefixError::at(col, "missing prefix length after '/'"));
            }
            if let Some(pos) = digits.bytes().position(|c| !c.is_ascii_digit()) {
                let c = digits.as_bytes()[pos];
                return Err(PrefixError::at(
                    col + pos,
                    format!("unexpected {} in prefix length, expected a digit", show_char(c)),
                ));
            }
            let trimmed = digits.trim_start_matches('0');
            let value: u32 = if trimmed.len() > 2 { 33 } else { trimmed.parse().unwrap_or(0) };
            if value > 32 {
                return Err(PrefixError::at(
                    col,
                    format!("prefix length {digits} is longer than 32"),
                ));
            }
            value as u8
        }
    };
    Ok(Ipv4Prefix { addr, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Prefix {
        parse_prefix(s).unwrap()
    }

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        assert_eq!(p("10.0.0.0/8"), Ipv4Prefix { addr: 0x0a00_0000, len: 8 });
        assert_eq!(p("1.2.3.4"), Ipv4Prefix { addr: 0x0102_0304, len: 32 });
        assert_eq!(p("0.0.0.0/0"), Ipv4Prefix { addr: 0, len: 0 });
        assert_eq!(p("255.255.255.255/32").addr, u32::MAX);
        assert_eq!(p("1.2.3.4/032").len, 32);
        // Host bits are kept in `addr` but ignored by network().
        let q = p("10.1.2.3/8");
        assert_eq!(q.addr, 0x0a01_0203);
        assert_eq!(q.network(), 0x0a00_0000);
        assert_eq!(q.last(), 0x0aff_ffff);
        assert_eq!(q.to_string(), "10.0.0.0/8");
        assert_eq!(p("0.0.0.0/0").size(), 1 << 32);
        assert!(p("192.168.0.0/16").contains(0xc0a8_0101));
        assert!(!p("192.168.0.0/16").contains(0xc0a9_0101));
    }

    #[test]
    fn errors_name_the_column() {
        let e = |s: &str| parse_prefix(s).unwrap_err();
        assert_eq!(e("1.2.3.4/33").column, 9);
        assert!(e("1.2.3.4/33").message.contains("longer than 32"));
        assert_eq!(e("1.2.3.4/100000000000000000000").column, 9);
        assert_eq!(e("1.2.300.4").column, 5);
        assert!(e("1.2.300.4").message.contains("larger than 255"));
        assert_eq!(e("1.2.3").column, 6);
        assert_eq!(e("1.2.3.4.5").column, 8);
        assert_eq!(e("1.2..4").column, 5);
        assert_eq!(e("1.2.3.4/").column, 9);
        assert_eq!(e("1.2.3.4/2x").column, 10);
        assert_eq!(e("01.2.3.4").column, 1);
        assert_eq!(e("1.2.3.4 ").column, 8);
        assert_eq!(e("a.b.c.d").column, 1);
        assert_eq!(e("").column, 1);
        assert_eq!(e("1.2.3.99999999999999").column, 7);
        let ie = e("1.2.3.4/33").to_input_error("SUBNETS");
        assert_eq!(ie.to_string(), "SUBNETS: column 9: prefix length 33 is longer than 32");
        let fe = e("1.2.3.4/33").in_file("allow.txt", 3, 5);
        assert_eq!(fe.to_string(), "allow.txt:3:13: prefix length 33 is longer than 32");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in ["/", "/8", "1.2.3.4/-1", "1.2.3.4//8", "\u{e9}.1.1.1", "1.2.3.\u{e9}", "...."] {
            assert!(parse_prefix(s).is_err(), "{s}");
        }
    }
}
