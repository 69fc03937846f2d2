//! `-I/--list-of-ips-file`: a set of addresses in a lazily allocated paged bitmap
//! (65,536 pages of 8 KiB, one page per /16), as ZMap's `pbm`.

use std::io::BufRead;

use crate::error::InputError;

const PAGE_WORDS: usize = 1 << 10; // 65,536 bits per /16 page

/// A set of IPv4 addresses for `-I`: O(1) membership, memory only for the /16s in use.
#[derive(Clone)]
pub struct IpList {
    pages: Vec<Option<Box<[u64; PAGE_WORDS]>>>,
    len: u64,
}

impl Default for IpList {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for IpList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpList").field("len", &self.len).finish()
    }
}

impl IpList {
    /// An empty list.
    pub fn new() -> Self {
        Self { pages: vec![None; 1 << 16], len: 0 }
    }

    /// Adds `ip` (host order); returns false when it was already present.
    pub fn insert(&mut self, ip: u32) -> bool {
        let page = self.pages[(ip >> 16) as usize].get_or_insert_with(|| Box::new([0; PAGE_WORDS]));
        let word = &mut page[((ip & 0xffff) >> 6) as usize];
        let bit = 1u64 << (ip & 63);
        let fresh = *word & bit == 0;
        *word |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    /// Whether `ip` (host order) is on the list.
    #[inline]
    pub fn contains(&self, ip: u32) -> bool {
        match &self.pages[(ip >> 16) as usize] {
            Some(page) => page[((ip & 0xffff) >> 6) as usize] & (1u64 << (ip & 63)) != 0,
            None => false,
        }
    }

    /// How many distinct addresses the list holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the list holds no address.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parses a list file's text: one address per line (its first whitespace token), in any
    /// `inet_aton` form (`a.b.c.d`, `a.b.c`, `a.b`, `a`; decimal, `0x` hex or `0` octal parts),
    /// `#` comments, blank lines ignored. Errors are `source:line: ...`.
    pub fn parse(text: &str, source: &str) -> Result<Self, InputError> {
        let mut list = Self::new();
        for (i, line) in text.lines().enumerate() {
            list.add_line(line, source, i + 1)?;
        }
        Ok(list)
    }

    /// Like [`parse`](Self::parse), streaming from a reader (lists can hold billions of lines).
    pub fn read_from<R: BufRead>(mut reader: R, source: &str) -> Result<Self, InputError> {
        let mut list = Self::new();
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| {
                InputError::at_line(source, line_no + 1, format!("read error: {e}"))
            })?;
            if n == 0 {
                return Ok(list);
            }
            line_no += 1;
            let line = String::from_utf8_lossy(&buf);
            list.add_line(&line, source, line_no)?;
        }
    }

    fn add_line(&mut self, line: &str, source: &str, line_no: usize) -> Result<(), InputError> {
        let content = line.split('#').next().unwrap_or("");
        let Some(token) = content.split_whitespace().next() else { return Ok(()) };
        match inet_aton(token) {
            Some(ip) => {
                self.insert(ip);
                Ok(())
            }
            None => {
                Err(InputError::at_line(source, line_no, format!("bad IPv4 address \"{token}\"")))
            }
        }
    }
}

/// Parses an address the way `inet_aton` does: 1 to 4 parts, each decimal, `0x` hex or
/// `0`-prefixed octal; the last part fills the remaining bytes. Returns host order.
pub fn inet_aton(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = [0u64; 4];
    for (v, part) in values.iter_mut().zip(&parts) {
        *v = parse_c_number(part)?;
    }
    let n = parts.len();
    let mut addr: u64 = 0;
    for &v in &values[..n - 1] {
        if v > 255 {
            return None;
        }
        addr = (addr << 8) | v;
    }
    let last_bits = 8 * (5 - n as u32);
    let last = values[n - 1];
    if last >= 1u64 << last_bits {
        return None;
    }
    Some(((addr << last_bits) | last) as u32)
}

/// A C-style unsigned number: `0x..` hex, `0..` octal, otherwise decimal; at most 2^32 - 1.
fn parse_c_number(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() && radix != 16 {
        return None;
    }
    if digits.is_empty() {
        return Some(0); // glibc accepts a bare "0x" as zero
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().filter(|&v| v <= u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton("1.2.3.4"), Some(0x0102_0304));
        assert_eq!(inet_aton("1.2.772"), Some(0x0102_0304));
        assert_eq!(inet_aton("1.131844"), Some(0x0102_0304));
        assert_eq!(inet_aton("16909060"), Some(0x0102_0304));
        assert_eq!(inet_aton("0x7f.1"), Some(0x7f00_0001));
        assert_eq!(inet_aton("010.0.0.1"), Some(0x0800_0001));
        assert_eq!(inet_aton("255.255.255.255"), Some(u32::MAX));
        for bad in [
            "",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "08.1.1.1",
            "1..2",
            "x",
            "1.2.65536",
            "4294967296",
        ] {
            assert_eq!(inet_aton(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_files_and_counts_distinct() {
        let l =
            IpList::parse("# hi\n1.2.3.4\n  1.2.3.5 x\n\n1.2.3.4 # dup\n9.9.9.9\n", "ips").unwrap();
        assert_eq!(l.len(), 3);
        assert!(l.contains(0x0102_0304) && l.contains(0x0102_0305) && l.contains(0x0909_0909));
        assert!(!l.contains(0x0102_0306) && !l.contains(0));
        let e = IpList::parse("1.2.3.4\n1.2.3.999\n", "ips").unwrap_err();
        assert_eq!(e.to_string(), "ips:2: bad IPv4 address \"1.2.3.999\"");
        let r = IpList::read_from(&b"1.1.1.1\r\n2.2.2.2"[..], "ips").unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.contains(0x0202_0202));
    }
}
