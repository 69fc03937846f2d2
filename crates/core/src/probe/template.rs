//! UDP payload templates: `${FIELD}` and `${FIELD=len}` specifiers compiled once, rendered
//! into every packet.
//!
//! A template file is raw bytes with field specifiers. [`Template::parse`] compiles it into a
//! list of segments (literal runs and fields); [`Template::render`] writes one packet's payload
//! into a caller-provided slice without allocating.
//!
//! Syntax, as ZMap reads it:
//! - a specifier starts at `${` and ends at the next `}`; its name is the text before the
//!   first `=`, its value the text after it; names are case-sensitive;
//! - a specifier whose name is not a known field (for example `${HOST}`) stays in the payload
//!   as literal text, and scanning resumes after its `}`;
//! - a `${` with no `}` after it is literal text.
//!
//! rzmap is stricter than ZMap where ZMap silently sends something else: a random field with a
//! missing, non-numeric, zero or too large length, a `HEX` value that is not an even number of
//! hex digits, a value given to a field that takes none, and a template whose longest
//! rendering exceeds the payload limit are errors naming `file:line:column`.
//!
//! Byte encodings (numbers are big-endian, "network order"):
//! - `SADDR_N`/`DADDR_N`: 4 bytes; `SPORT_N`/`DPORT_N`: 2 bytes;
//! - `SADDR`/`DADDR`: dotted quad text; `SPORT`/`DPORT`: decimal text without padding;
//! - `UNIXTIME_SEC`: the send time's Unix seconds as a 4-byte integer (the low 32 bits), and
//!   `UNIXTIME_USEC`: its microseconds part (0..=999999) as a 4-byte integer. This is ZMap's
//!   encoding (binary, network order; its pull request #857 describes both fields so);
//! - `NTP_TIMESTAMP`: 8 bytes, seconds since 1900-01-01 (low 32 bits) then the binary
//!   fraction of a second (`usec * 2^32 / 10^6`, rounded down), as RFC 5905 defines it;
//! - random fields use one generator word per output byte, taking its low 32 bits modulo the
//!   alphabet size, with ZMap's alphabets (`a-z` then `A-Z`, then `0-9` for alphanumerics; a
//!   random byte is that remainder plus one, wrapping 255 to 0), so a ZMap-seeded generator
//!   gives ZMap's bytes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::aesrand::AesRand;
use crate::error::{InputError, Position};

/// The largest UDP payload that fits in one 1500-byte IPv4 packet (1500 - 20 - 8).
pub const MAX_UDP_PAYLOAD: usize = 1472;

/// Every template field, with a one-line description, as `--probe-args=template-fields` lists
/// them (in ZMap's order).
pub const TEMPLATE_FIELDS: &[(&str, &str)] = &[
    ("SADDR_N", "Source IPv4 address, 4 bytes in network byte order"),
    ("SADDR", "Source IPv4 address in dotted-quad format"),
    ("DADDR_N", "Destination IPv4 address, 4 bytes in network byte order"),
    ("DADDR", "Destination IPv4 address in dotted-quad format"),
    ("SPORT_N", "UDP source port, 2 bytes in network byte order"),
    ("SPORT", "UDP source port in decimal ASCII"),
    ("DPORT_N", "UDP destination port, 2 bytes in network byte order"),
    ("DPORT", "UDP destination port in decimal ASCII"),
    ("RAND_BYTE", "Random bytes 0-255; length with =n"),
    ("RAND_DIGIT", "Random digits 0-9; length with =n"),
    ("RAND_ALPHA", "Random mixed-case letters a-z, A-Z; length with =n"),
    ("RAND_ALPHANUM", "Random mixed-case letters and digits; length with =n"),
    ("HEX", "Literal bytes written as hex digits, e.g. ${HEX=0d0a}"),
    ("UNIXTIME_SEC", "Send time in Unix seconds, 4 bytes in network byte order"),
    ("UNIXTIME_USEC", "Microseconds part of the send time, 4 bytes in network byte order"),
    ("NTP_TIMESTAMP", "Send time as a 64-bit NTP timestamp (RFC 5905) in network byte order"),
];

/// The `template-fields` listing: a heading, one `NAME: description` line per field, and a
/// blank line (ZMap prints this on stderr and exits with status 0).
pub fn template_fields_listing() -> String {
    let mut s = String::from("List of allowed UDP template fields (name: description)\n\n");
    for (name, desc) in TEMPLATE_FIELDS {
        // Writing to a String cannot fail.
        let _ = writeln!(s, "{name}: {desc}");
    }
    s.push('\n');
    s
}

/// Seconds from 1900-01-01 (the NTP era 0 origin) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What one packet's payload depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateInput {
    /// The packet's source address.
    pub saddr: Ipv4Addr,
    /// The packet's destination (the target).
    pub daddr: Ipv4Addr,
    /// The UDP source port.
    pub sport: u16,
    /// The UDP destination port.
    pub dport: u16,
    /// The send time: whole seconds since the Unix epoch.
    pub unix_sec: u64,
    /// The send time: microseconds within the second (0..=999999).
    pub unix_usec: u32,
}

/// The alphabet of a random field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charset {
    Byte,
    Digit,
    Alpha,
    Alphanum,
}

const ALPHANUM: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

impl Charset {
    /// The character for one generator word.
    #[inline]
    fn pick(self, word: u64) -> u8 {
        let w = word as u32;
        match self {
            Charset::Byte => ((w % 256) as u8).wrapping_add(1),
            Charset::Digit => b'0' + (w % 10) as u8,
            Charset::Alpha => ALPHANUM[(w % 52) as usize],
            Charset::Alphanum => ALPHANUM[(w % 62) as usize],
        }
    }
}

/// One compiled piece of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    /// Bytes `start..end` of the template's literal arena.
    Literal {
        start: u32,
        end: u32,
    },
    SaddrBin,
    SaddrText,
    DaddrBin,
    DaddrText,
    SportBin,
    SportText,
    DportBin,
    DportText,
    Random {
        charset: Charset,
        len: u16,
    },
    UnixSec,
    UnixUsec,
    NtpTimestamp,
}

impl Segment {
    /// The most bytes this segment can render.
    fn max_len(self) -> usize {
        match self {
            Segment::Literal { start, end } => (end - start) as usize,
            Segment::SaddrBin | Segment::DaddrBin => 4,
            Segment::SaddrText | Segment::DaddrText => 15,
            Segment::SportBin | Segment::DportBin => 2,
            Segment::SportText | Segment::DportText => 5,
            Segment::Random { len, .. } => len as usize,
            Segment::UnixSec | Segment::UnixUsec => 4,
            Segment::NtpTimestamp => 8,
        }
    }
}

/// What a field name compiles to.
#[derive(Clone, Copy)]
enum FieldKind {
    /// A field that takes no value.
    Plain(Segment),
    /// A random field that needs `=n`.
    Random(Charset),
    /// `HEX=hexstr`.
    Hex,
}

fn lookup_field(name: &[u8]) -> Option<(&'static str, FieldKind)> {
    use FieldKind::*;
    let kind = match name {
        b"SADDR_N" => Plain(Segment::SaddrBin),
        b"SADDR" => Plain(Segment::SaddrText),
        b"DADDR_N" => Plain(Segment::DaddrBin),
        b"DADDR" => Plain(Segment::DaddrText),
        b"SPORT_N" => Plain(Segment::SportBin),
        b"SPORT" => Plain(Segment::SportText),
        b"DPORT_N" => Plain(Segment::DportBin),
        b"DPORT" => Plain(Segment::DportText),
        b"RAND_BYTE" => Random(Charset::Byte),
        b"RAND_DIGIT" => Random(Charset::Digit),
        b"RAND_ALPHA" => Random(Charset::Alpha),
        b"RAND_ALPHANUM" => Random(Charset::Alphanum),
        b"HEX" => Hex,
        b"UNIXTIME_SEC" => Plain(Segment::UnixSec),
        b"UNIXTIME_USEC" => Plain(Segment::UnixUsec),
        b"NTP_TIMESTAMP" => Plain(Segment::NtpTimestamp),
        _ => return None,
    };
    // The canonical name, for error messages.
    let canonical = TEMPLATE_FIELDS.iter().find(|(n, _)| n.as_bytes() == name).map(|(n, _)| *n)?;
    Some((canonical, kind))
}

/// A compiled payload template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// Every literal byte (template text and decoded `HEX` values), referenced by segments.
    literals: Vec<u8>,
    /// The sum of the segments' maximum lengths.
    max_len: usize,
}

impl Template {
    /// Compiles a template whose longest rendering must fit in [`MAX_UDP_PAYLOAD`] bytes.
    ///
    /// `source` names the template in errors (usually its path): `source:line:column: ...`.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Template, InputError> {
        Self::parse_with_limit(bytes, source, MAX_UDP_PAYLOAD)
    }

    /// Compiles a template whose longest rendering must fit in `limit` bytes (at most
    /// [`MAX_UDP_PAYLOAD`]).
    pub fn parse_with_limit(
        bytes: &[u8],
        source: &str,
        limit: usize,
    ) -> Result<Template, InputError> {
        let mut b = Builder {
            src: bytes,
            source,
            limit: limit.min(MAX_UDP_PAYLOAD),
            tpl: Template { segments: Vec::new(), literals: Vec::new(), max_len: 0 },
        };
        if bytes.is_empty() {
            return Err(InputError::new(source, "the template is empty"));
        }
        let mut literal_from = 0; // start of the pending literal run in `bytes`
        let mut scan = 0; // where to look for the next `${`
        while let Some(open) = find_open(bytes, scan) {
            let body = open + 2;
            let Some(close) = bytes[body..].iter().position(|&c| c == b'}').map(|p| body + p)
            else {
                break; // an unterminated `${` and everything after it are literal
            };
            if let Some(compiled) = b.compile_field(open, body, close)? {
                b.push_source_literal(literal_from, open)?;
                match compiled {
                    Compiled::Segment(seg) => b.push_segment(seg, open)?,
                    Compiled::Hex { digits_at } => b.push_hex(digits_at, close, open)?,
                }
                literal_from = close + 1;
            }
            scan = close + 1;
        }
        b.push_source_literal(literal_from, bytes.len())?;
        Ok(b.tpl)
    }

    /// The most bytes [`render`](Self::render) can write: size packet buffers with this.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Writes one packet's payload at the start of `out` and returns its length.
    ///
    /// Allocates nothing. Random fields draw from `rng` (one word per random byte).
    ///
    /// # Panics
    /// If `out` is shorter than [`max_len`](Self::max_len) (a caller bug, not an input error).
    pub fn render(&self, out: &mut [u8], input: &TemplateInput, rng: &mut AesRand) -> usize {
        assert!(
            out.len() >= self.max_len,
            "template output buffer of {} bytes is shorter than the template's maximum {}",
            out.len(),
            self.max_len
        );
        let mut pos = 0;
        for &seg in &self.segments {
            let rest = &mut out[pos..];
            pos += match seg {
                Segment::Literal { start, end } => {
                    put(rest, &self.literals[start as usize..end as usize])
                }
                Segment::SaddrBin => put(rest, &input.saddr.octets()),
                Segment::SaddrText => write_dotted_quad(rest, input.saddr),
                Segment::DaddrBin => put(rest, &input.daddr.octets()),
                Segment::DaddrText => write_dotted_quad(rest, input.daddr),
                Segment::SportBin => put(rest, &input.sport.to_be_bytes()),
                Segment::SportText => write_decimal(rest, u32::from(input.sport)),
                Segment::DportBin => put(rest, &input.dport.to_be_bytes()),
                Segment::DportText => write_decimal(rest, u32::from(input.dport)),
                Segment::Random { charset, len } => {
                    let len = usize::from(len);
                    for b in &mut rest[..len] {
                        *b = charset.pick(rng.next_word());
                    }
                    len
                }
                Segment::UnixSec => put(rest, &(input.unix_sec as u32).to_be_bytes()),
                Segment::UnixUsec => put(rest, &input.unix_usec.to_be_bytes()),
                Segment::NtpTimestamp => {
                    let secs = input.unix_sec.wrapping_add(NTP_UNIX_OFFSET) as u32;
                    let usec = u64::from(input.unix_usec.min(999_999));
                    let frac = ((usec << 32) / 1_000_000) as u32;
                    put(rest, &secs.to_be_bytes()) + put(&mut rest[4..], &frac.to_be_bytes())
                }
            };
        }
        pos
    }
}

/// The position of the next `${` at or after `from`.
fn find_open(bytes: &[u8], from: usize) -> Option<usize> {
    bytes.get(from..)?.windows(2).position(|w| w == b"${").map(|p| from + p)
}

#[inline]
fn put(out: &mut [u8], src: &[u8]) -> usize {
    out[..src.len()].copy_from_slice(src);
    src.len()
}

/// Writes `v` in decimal without leading zeros; returns the digit count.
#[inline]
fn write_decimal(out: &mut [u8], mut v: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (i, d) in digits[..n].iter().rev().enumerate() {
        out[i] = *d;
    }
    n
}

#[inline]
fn write_dotted_quad(out: &mut [u8], addr: Ipv4Addr) -> usize {
    let mut pos = 0;
    for (i, octet) in addr.octets().into_iter().enumerate() {
        if i > 0 {
            out[pos] = b'.';
            pos += 1;
        }
        pos += write_decimal(&mut out[pos..], u32::from(octet));
    }
    pos
}

/// What one recognised specifier compiles to.
enum Compiled {
    Segment(Segment),
    /// A `HEX` value whose digits start at this offset and end at the specifier's `}`.
    Hex {
        digits_at: usize,
    },
}

/// Template compilation state.
struct Builder<'a> {
    src: &'a [u8],
    source: &'a str,
    limit: usize,
    tpl: Template,
}

impl Builder<'_> {
    /// An error at a byte offset of the template, as `source:line:column`.
    fn error_at(&self, offset: usize, message: String) -> InputError {
        let before = &self.src[..offset.min(self.src.len())];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let line_start = before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        InputError {
            input: self.source.to_string(),
            position: Position::LineColumn(line, offset - line_start + 1),
            message,
        }
    }

    /// Compiles the specifier `${...}` at `open` (body `body..close`), or `None` if its name
    /// is not a field (then it stays literal).
    fn compile_field(
        &self,
        open: usize,
        body: usize,
        close: usize,
    ) -> Result<Option<Compiled>, InputError> {
        let spec = &self.src[body..close];
        let (name, value_at) = match spec.iter().position(|&c| c == b'=') {
            Some(eq) => (&spec[..eq], Some(body + eq + 1)),
            None => (spec, None),
        };
        let Some((name, kind)) = lookup_field(name) else {
            return Ok(None);
        };
        match (kind, value_at) {
            (FieldKind::Plain(seg), None) => Ok(Some(Compiled::Segment(seg))),
            (FieldKind::Plain(_), Some(at)) => {
                Err(self
                    .error_at(at - 1, format!("field {name} takes no value: write ${{{name}}}")))
            }
            (FieldKind::Random(_) | FieldKind::Hex, None) => {
                let example = if matches!(kind, FieldKind::Hex) { "hexdigits" } else { "n" };
                Err(self.error_at(
                    open,
                    format!("field {name} needs a value: write ${{{name}={example}}}"),
                ))
            }
            (FieldKind::Random(charset), Some(at)) => {
                let len = self.parse_length(name, at, close)?;
                Ok(Some(Compiled::Segment(Segment::Random { charset, len })))
            }
            (FieldKind::Hex, Some(at)) => Ok(Some(Compiled::Hex { digits_at: at })),
        }
    }

    /// Parses the decimal length `src[at..end]` of a random field: 1..=limit.
    fn parse_length(&self, name: &str, at: usize, end: usize) -> Result<u16, InputError> {
        let text = &self.src[at..end];
        let shown = String::from_utf8_lossy(&text[..text.len().min(24)]).into_owned();
        let expected = format!("expected a number of bytes from 1 to {}", self.limit);
        if text.is_empty() {
            return Err(self.error_at(at, format!("missing length for {name}: {expected}")));
        }
        let mut n: usize = 0;
        for (i, &c) in text.iter().enumerate() {
            if !c.is_ascii_digit() {
                return Err(
                    self.error_at(at + i, format!("bad length \"{shown}\" for {name}: {expected}"))
                );
            }
            n = n.saturating_mul(10).saturating_add(usize::from(c - b'0'));
        }
        if n == 0 || n > self.limit {
            return Err(
                self.error_at(at, format!("length {shown} for {name} is out of range: {expected}"))
            );
        }
        // limit <= MAX_UDP_PAYLOAD, so n fits.
        Ok(n as u16)
    }

    /// Adds the template bytes `from..to` as literal text.
    fn push_source_literal(&mut self, from: usize, to: usize) -> Result<(), InputError> {
        if from >= to {
            return Ok(());
        }
        let room = self.limit - self.tpl.max_len;
        if to - from > room {
            return Err(self.too_long(from + room, self.tpl.max_len + (to - from)));
        }
        let src = self.src;
        self.push_literal_bytes(&src[from..to]);
        Ok(())
    }

    /// Decodes the `HEX` digits `src[at..end]` into literal bytes (`open` is the `${`).
    fn push_hex(&mut self, at: usize, end: usize, open: usize) -> Result<(), InputError> {
        let digits = &self.src[at..end];
        if let Some(i) = digits.iter().position(|c| !c.is_ascii_hexdigit()) {
            let c = digits[i];
            let shown = if c.is_ascii_graphic() {
                format!("'{}'", c as char)
            } else {
                format!("byte 0x{c:02x}")
            };
            return Err(self.error_at(at + i, format!("non-hex character {shown} in HEX value")));
        }
        if digits.is_empty() {
            return Err(self.error_at(at, "empty HEX value: expected hex digit pairs".into()));
        }
        if digits.len() % 2 == 1 {
            return Err(self.error_at(
                at + digits.len() - 1,
                format!("odd number of hex digits ({}) in HEX value", digits.len()),
            ));
        }
        let n = digits.len() / 2;
        if n > self.limit - self.tpl.max_len {
            return Err(self.too_long(open, self.tpl.max_len + n));
        }
        let start = self.tpl.literals.len();
        let decoded = digits.chunks_exact(2).map(|p| hex_value(p[0]) << 4 | hex_value(p[1]));
        self.tpl.literals.extend(decoded);
        self.register_literal(start);
        Ok(())
    }

    /// Appends literal bytes, merging with a literal segment just before.
    fn push_literal_bytes(&mut self, bytes: &[u8]) {
        let start = self.tpl.literals.len();
        self.tpl.literals.extend_from_slice(bytes);
        self.register_literal(start);
    }

    /// Makes the literal arena's bytes from `start` to its end the next segment (merged with
    /// a literal segment just before it).
    fn register_literal(&mut self, start: usize) {
        let end = self.tpl.literals.len();
        self.tpl.max_len += end - start;
        // Every arena byte counts towards max_len <= MAX_UDP_PAYLOAD, so offsets fit in u32.
        let (start, end) = (start as u32, end as u32);
        match self.tpl.segments.last_mut() {
            Some(Segment::Literal { end: last_end, .. }) if *last_end == start => *last_end = end,
            _ => self.tpl.segments.push(Segment::Literal { start, end }),
        }
    }

    /// Adds a field segment found at offset `open`.
    fn push_segment(&mut self, seg: Segment, open: usize) -> Result<(), InputError> {
        let total = self.tpl.max_len + seg.max_len();
        if total > self.limit {
            return Err(self.too_long(open, total));
        }
        self.tpl.max_len = total;
        self.tpl.segments.push(seg);
        Ok(())
    }

    fn too_long(&self, offset: usize, at_least: usize) -> InputError {
        self.error_at(
            offset,
            format!(
                "the payload can reach {at_least} bytes here, more than the limit of {} bytes",
                self.limit
            ),
        )
    }
}

/// The value of an ASCII hex digit (checked by the caller).
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> TemplateInput {
        TemplateInput {
            saddr: Ipv4Addr::new(198, 18, 0, 1),
            daddr: Ipv4Addr::new(198, 19, 255, 7),
            sport: 40000,
            dport: 53,
            unix_sec: 1_700_000_000,
            unix_usec: 500_000,
        }
    }

    fn render(t: &Template, seed: u64) -> Vec<u8> {
        let mut out = vec![0xAAu8; t.max_len() + 8];
        let n = t.render(&mut out, &input(), &mut AesRand::from_seed(seed));
        assert!(n <= t.max_len());
        assert!(out[n..].iter().all(|&b| b == 0xAA), "render wrote past its length");
        out.truncate(n);
        out
    }

    fn render_str(tpl: &str) -> Vec<u8> {
        render(&Template::parse(tpl.as_bytes(), "t.tpl").unwrap(), 7)
    }

    fn err(tpl: &[u8]) -> String {
        Template::parse(tpl, "t.tpl").unwrap_err().to_string()
    }

    #[test]
    fn address_and_port_fields_render_exactly() {
        assert_eq!(render_str("${SADDR}"), b"198.18.0.1");
        assert_eq!(render_str("${DADDR}"), b"198.19.255.7");
        assert_eq!(render_str("${SADDR_N}"), [198, 18, 0, 1]);
        assert_eq!(render_str("${DADDR_N}"), [198, 19, 255, 7]);
        assert_eq!(render_str("${SPORT}"), b"40000");
        assert_eq!(render_str("${DPORT}"), b"53");
        assert_eq!(render_str("${SPORT_N}"), [0x9c, 0x40]);
        assert_eq!(render_str("${DPORT_N}"), [0x00, 0x35]);
        assert_eq!(render_str("a${SPORT}:${DPORT}b"), b"a40000:53b");
    }

    #[test]
    fn extreme_numbers_render_exactly() {
        let t = Template::parse(b"${SADDR}|${DADDR}|${SPORT}|${DPORT}", "t").unwrap();
        let mut inp = input();
        inp.saddr = Ipv4Addr::new(0, 0, 0, 0);
        inp.daddr = Ipv4Addr::new(255, 255, 255, 255);
        inp.sport = 0;
        inp.dport = 65535;
        let mut out = [0u8; 64];
        let n = t.render(&mut out, &inp, &mut AesRand::from_seed(1));
        assert_eq!(&out[..n], b"0.0.0.0|255.255.255.255|0|65535");
        assert_eq!(t.max_len(), 15 + 1 + 15 + 1 + 5 + 1 + 5);
    }

    #[test]
    fn time_fields_render_exactly() {
        assert_eq!(render_str("${UNIXTIME_SEC}"), 1_700_000_000u32.to_be_bytes());
        assert_eq!(render_str("${UNIXTIME_USEC}"), 500_000u32.to_be_bytes());
        // 1700000000 + 2208988800 = 3908988800 = 0xE8FE_6F80; half a second = 0x8000_0000.
        assert_eq!(render_str("${NTP_TIMESTAMP}"), [0xE8, 0xFE, 0x6F, 0x80, 0x80, 0, 0, 0]);
        // 1 microsecond is 4294.967296 units of 2^-32 s: rounded down to 4294 = 0x10C6.
        let t = Template::parse(b"${NTP_TIMESTAMP}", "t").unwrap();
        let mut inp = input();
        inp.unix_sec = 0;
        inp.unix_usec = 1;
        let mut out = [0u8; 8];
        t.render(&mut out, &inp, &mut AesRand::from_seed(1));
        assert_eq!(out, [0x83, 0xAA, 0x7E, 0x80, 0, 0, 0x10, 0xC6]);
    }

    #[test]
    fn random_fields_follow_the_generator_word_by_word() {
        let mut rng = AesRand::from_seed(7);
        let words: Vec<u32> = (0..40).map(|_| rng.next_word() as u32).collect();
        let alpha = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut want = Vec::new();
        let mut w = words.iter();
        for _ in 0..3 {
            want.push(((*w.next().unwrap() % 256) as u8).wrapping_add(1));
        }
        want.push(b'-');
        for _ in 0..4 {
            want.push(b'0' + (*w.next().unwrap() % 10) as u8);
        }
        for _ in 0..5 {
            want.push(alpha[(*w.next().unwrap() % 52) as usize]);
        }
        for _ in 0..6 {
            want.push(alnum[(*w.next().unwrap() % 62) as usize]);
        }
        let got = render_str("${RAND_BYTE=3}-${RAND_DIGIT=4}${RAND_ALPHA=5}${RAND_ALPHANUM=6}");
        assert_eq!(got, want);
        assert!(got[4..8].iter().all(u8::is_ascii_digit));
        assert!(got[8..13].iter().all(u8::is_ascii_alphabetic));
        assert!(got[13..].iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn random_fields_cover_their_alphabets() {
        let t = Template::parse(b"${RAND_ALPHA=1000}", "t").unwrap();
        let out = render(&t, 3);
        for c in b"azAZ" {
            assert!(out.contains(c), "{} missing", *c as char);
        }
        let t = Template::parse(b"${RAND_BYTE=1000}", "t").unwrap();
        let out = render(&t, 3);
        assert!(out.contains(&0) && out.contains(&255));
    }

    #[test]
    fn successive_renders_differ_only_in_random_fields() {
        let t = Template::parse(b"id=${RAND_DIGIT=8};to=${DADDR}", "t").unwrap();
        let mut rng = AesRand::from_seed(9);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let na = t.render(&mut a, &input(), &mut rng);
        let nb = t.render(&mut b, &input(), &mut rng);
        assert_eq!(na, nb);
        assert_ne!(a[3..11], b[3..11]);
        assert_eq!(a[11..na], b[11..nb]);
    }

    #[test]
    fn hex_field_is_literal_bytes() {
        assert_eq!(render_str("${HEX=00fFa5}"), [0x00, 0xff, 0xa5]);
        assert_eq!(render_str("x${HEX=0d0a}y"), b"x\r\ny");
        let t = Template::parse(b"x${HEX=0d0a}y", "t").unwrap();
        assert_eq!(t.segments.len(), 1, "adjacent literals merge");
        assert_eq!(t.max_len(), 4);
    }

    #[test]
    fn literals_pass_through_untouched() {
        let raw: Vec<u8> = (0u8..=255).collect();
        let t = Template::parse(&raw, "t").unwrap();
        assert_eq!(render(&t, 1), raw);
        assert_eq!(render_str("plain\r\ntext $ { } $x{y}"), b"plain\r\ntext $ { } $x{y}");
    }

    #[test]
    fn unknown_and_malformed_specifiers_stay_literal() {
        assert_eq!(render_str("${HOST}:${DPORT}"), b"${HOST}:53");
        assert_eq!(render_str("${saddr}"), b"${saddr}", "names are case-sensitive");
        assert_eq!(render_str("${}"), b"${}");
        assert_eq!(render_str("${FOO=3}"), b"${FOO=3}");
        assert_eq!(render_str("$${DPORT}"), b"$53");
        assert_eq!(render_str("${DPORT"), b"${DPORT", "unterminated");
        assert_eq!(render_str("${DPORT}${SPORT"), b"53${SPORT");
        // The specifier runs to the first `}`: the inner one is not rescanned.
        assert_eq!(render_str("${A${DPORT}}"), b"${A${DPORT}}");
        assert_eq!(render_str("${DPORT }"), b"${DPORT }");
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            err(b"ab\ncd ${RAND_BYTE=abc}"),
            "t.tpl:2:16: bad length \"abc\" for RAND_BYTE: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(
            err(b"${RAND_DIGIT=12x}"),
            "t.tpl:1:16: bad length \"12x\" for RAND_DIGIT: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(
            err(b"x\r\n\r\n  ${RAND_ALPHA}"),
            "t.tpl:3:3: field RAND_ALPHA needs a value: write ${RAND_ALPHA=n}"
        );
        assert_eq!(
            err(b"${RAND_ALPHANUM=}"),
            "t.tpl:1:17: missing length for RAND_ALPHANUM: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(
            err(b"${RAND_BYTE=0}"),
            "t.tpl:1:13: length 0 for RAND_BYTE is out of range: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(
            err(b"${RAND_BYTE=1473}"),
            "t.tpl:1:13: length 1473 for RAND_BYTE is out of range: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(
            err(b"${RAND_BYTE=99999999999999999999999}"),
            "t.tpl:1:13: length 99999999999999999999999 for RAND_BYTE is out of range: expected a number of bytes from 1 to 1472"
        );
        assert_eq!(err(b"${SADDR=4}"), "t.tpl:1:8: field SADDR takes no value: write ${SADDR}");
        assert_eq!(err(b"${HEX}"), "t.tpl:1:1: field HEX needs a value: write ${HEX=hexdigits}");
        assert_eq!(err(b"${HEX=}"), "t.tpl:1:7: empty HEX value: expected hex digit pairs");
        assert_eq!(err(b"${HEX=abc}"), "t.tpl:1:9: odd number of hex digits (3) in HEX value");
        assert_eq!(err(b"${HEX=0g}"), "t.tpl:1:8: non-hex character 'g' in HEX value");
        assert_eq!(err(b"${HEX=0\n}"), "t.tpl:1:8: non-hex character byte 0x0a in HEX value");
        assert_eq!(err(b""), "t.tpl: the template is empty");
    }

    #[test]
    fn templates_longer_than_the_limit_are_rejected_where_they_overflow() {
        let ok = vec![b'a'; 1472];
        assert_eq!(Template::parse(&ok, "t").unwrap().max_len(), 1472);
        let mut long = vec![b'a'; 1473];
        assert_eq!(
            err(&long),
            "t.tpl:1:1473: the payload can reach 1473 bytes here, more than the limit of 1472 bytes"
        );
        long.truncate(1460);
        long.extend_from_slice(b"\n${SADDR}");
        assert_eq!(
            err(&long),
            "t.tpl:2:1: the payload can reach 1476 bytes here, more than the limit of 1472 bytes"
        );
        let e = Template::parse_with_limit(b"${RAND_BYTE=20}", "t", 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:1:13: length 20 for RAND_BYTE is out of range: expected a number of bytes from 1 to 10"
        );
        let e = Template::parse_with_limit(b"${HEX=0011223344}", "t", 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:1:1: the payload can reach 5 bytes here, more than the limit of 4 bytes"
        );
        // The specifier text may be longer than the limit as long as its rendering fits.
        let hex = format!("${{HEX={}}}", "ab".repeat(1472));
        assert_eq!(Template::parse(hex.as_bytes(), "t").unwrap().max_len(), 1472);
    }

    #[test]
    #[should_panic(expected = "shorter than the template's maximum")]
    fn render_rejects_a_short_buffer() {
        let t = Template::parse(b"${SADDR}", "t").unwrap();
        t.render(&mut [0u8; 14], &input(), &mut AesRand::from_seed(1));
    }

    #[test]
    fn field_list_names_every_field_once() {
        assert_eq!(TEMPLATE_FIELDS.len(), 16);
        for (name, _) in TEMPLATE_FIELDS {
            assert!(lookup_field(name.as_bytes()).is_some(), "{name}");
        }
        let listing = template_fields_listing();
        assert!(listing.starts_with("List of allowed UDP template fields (name: description)\n\n"));
        assert!(listing.contains("\nNTP_TIMESTAMP: "));
        assert!(listing.ends_with("\n\n"));
        assert_eq!(listing.lines().count(), 2 + 16 + 1);
    }

    #[test]
    fn shipped_examples_render_as_intended() {
        let sip = include_bytes!("../../../../examples/udp-probes/sip_options.tpl");
        let out = render(&Template::parse(sip, "sip_options.tpl").unwrap(), 5);
        assert!(out.starts_with(
            b"OPTIONS sip:198.19.255.7:53 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1:40000;"
        ));
        assert!(out.ends_with(b"\r\nContent-Length: 0\r\n\r\n"));
        // Every line ends in CRLF: no bare LF.
        assert!(out.iter().enumerate().all(|(i, &c)| c != b'\n' || out[i - 1] == b'\r'));

        let fixed = include_bytes!("../../../../examples/udp-probes/dns_53.pkt");
        let tpl = include_bytes!("../../../../examples/udp-probes/dns_53_random_id.tpl");
        let t = Template::parse(tpl, "dns_53_random_id.tpl").unwrap();
        let a = render(&t, 1);
        let b = render(&t, 2);
        assert_eq!(a.len(), fixed.len());
        assert_eq!(a[2..], fixed[2..], "same query after the ID");
        assert_ne!(a[..2], b[..2], "a different ID per generator");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Template text built from pieces that often form (in)valid specifiers.
        fn template_text() -> impl Strategy<Value = Vec<u8>> {
            let names: Vec<&'static str> = TEMPLATE_FIELDS.iter().map(|(n, _)| *n).collect();
            // Whole specifiers, mostly valid, so that rendering is exercised often.
            let specifier = (
                proptest::sample::select(names.clone()),
                proptest::option::weighted(
                    0.2,
                    prop_oneof!["[0-9]{1,3}", "[0-9a-f]{0,6}", "[0-9]{4,5}"],
                ),
            )
                .prop_map(|(name, value)| match (name, value) {
                    ("HEX", None) => "${HEX=0a0b}".to_string().into_bytes(),
                    (n, None) if n.starts_with("RAND_") => format!("${{{n}=5}}").into_bytes(),
                    (n, None) => format!("${{{n}}}").into_bytes(),
                    (n, Some(v)) => format!("${{{n}={v}}}").into_bytes(),
                });
            let piece = prop_oneof![
                4 => specifier,
                1 => Just(b"${".to_vec()),
                1 => Just(b"}".to_vec()),
                1 => Just(b"=".to_vec()),
                1 => Just(b"\n".to_vec()),
                1 => proptest::sample::select(names).prop_map(|n| n.as_bytes().to_vec()),
                1 => "[0-9]{1,4}".prop_map(String::into_bytes),
                1 => "[0-9a-fA-Fg]{0,6}".prop_map(String::into_bytes),
                2 => proptest::collection::vec(any::<u8>(), 0..8),
            ];
            proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
        }

        fn arbitrary_input() -> impl Strategy<Value = TemplateInput> {
            (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>(), any::<u64>(), any::<u32>())
                .prop_map(|(s, d, sp, dp, sec, usec)| TemplateInput {
                    saddr: Ipv4Addr::from(s),
                    daddr: Ipv4Addr::from(d),
                    sport: sp,
                    dport: dp,
                    unix_sec: sec,
                    unix_usec: usec,
                })
        }

        /// Guards the strategy: a good share of generated templates must compile with fields.
        #[test]
        fn generated_templates_often_compile_with_fields() {
            use proptest::strategy::ValueTree;
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            let strategy = template_text();
            let with_fields = (0..500)
                .filter(|_| {
                    let text = strategy.new_tree(&mut runner).unwrap().current();
                    Template::parse(&text, "t").is_ok_and(|t| {
                        t.segments.iter().any(|s| !matches!(s, Segment::Literal { .. }))
                    })
                })
                .count();
            assert!(with_fields >= 150, "only {with_fields} of 500 compiled with fields");
        }

        proptest! {
            #[test]
            fn parse_never_panics_on_arbitrary_bytes(
                bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            ) {
                let _ = Template::parse(&bytes, "fuzz.tpl");
            }

            #[test]
            fn renders_fit_max_len_and_errors_stay_on_one_line(
                text in template_text(),
                input in arbitrary_input(),
                seed in any::<u64>(),
                limit in 1usize..=1472,
            ) {
                match Template::parse_with_limit(&text, "fuzz.tpl", limit) {
                    Ok(t) => {
                        prop_assert!(t.max_len() <= limit);
                        let mut out = vec![0u8; t.max_len()];
                        let n = t.render(&mut out, &input, &mut AesRand::from_seed(seed));
                        prop_assert!(n <= t.max_len());
                        prop_assert!(n > 0);
                    }
                    Err(e) => {
                        let s = e.to_string();
                        prop_assert!(s.starts_with("fuzz.tpl"));
                        prop_assert!(!s.contains('\n'));
                    }
                }
            }

            #[test]
            fn text_without_known_fields_renders_verbatim(
                bytes in proptest::collection::vec(any::<u8>(), 1..1472),
            ) {
                prop_assume!(!bytes.windows(2).any(|w| w == b"${"));
                let t = Template::parse(&bytes, "t").unwrap();
                let mut out = vec![0u8; t.max_len()];
                let n = t.render(&mut out, &input(), &mut AesRand::from_seed(0));
                prop_assert_eq!(&out[..n], &bytes[..]);
            }
        }
    }
}
