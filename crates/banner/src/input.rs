//! Parsing of the input lines: bare addresses, rzmap csv output, rzmap json lines.
//!
//! Every line is handled on its own, so the three forms may even be mixed:
//! - a line starting with `{` is a JSON object; its `saddr` string is the address and a numeric
//!   `sport` (the port the response came from, i.e. the scanned port) overrides `-p`;
//! - a csv line whose cells include `saddr` and whose first cell is not an address is a header:
//!   later csv lines take the address from the `saddr` column and, when the header has one, the
//!   port from the `sport` column;
//! - any other line is a csv row without header: its first cell is the address.
//!
//! Empty lines and lines starting with `#` are skipped. Anything else that yields no address is
//! a bad line, reported with its line number and never fatal.

use std::net::{IpAddr, SocketAddr};

/// What one input line turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A target to connect to.
    Target(SocketAddr),
    /// A csv header row (remembered for the following rows).
    Header,
    /// An empty or comment line.
    Skip,
}

/// Column positions taken from a csv header row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    saddr: usize,
    sport: Option<usize>,
}

/// Turns input lines into targets, remembering a csv header once seen.
#[derive(Clone, Debug)]
pub struct LineParser {
    default_port: u16,
    header: Option<Header>,
}

impl LineParser {
    /// A parser whose targets use `default_port` unless a row names its own port.
    pub fn new(default_port: u16) -> Self {
        Self { default_port, header: None }
    }

    /// Parses one line (without its line terminator). The error is a one-line reason.
    pub fn parse(&mut self, raw: &[u8]) -> Result<Line, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "line is not valid UTF-8".to_string())?;
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Line::Skip);
        }
        if line.starts_with('{') {
            return self.parse_json(line);
        }
        let cells = split_csv(line)?;
        let first = cells.first().map(|c| c.trim()).unwrap_or("");
        if first.parse::<IpAddr>().is_err()
            && let Some(saddr) = cells.iter().position(|c| c.trim() == "saddr")
        {
            let sport = cells.iter().position(|c| c.trim() == "sport");
            self.header = Some(Header { saddr, sport });
            return Ok(Line::Header);
        }
        let (addr_col, port_col) = match self.header {
            Some(h) => (h.saddr, h.sport),
            None => (0, None),
        };
        let addr_cell = cells
            .get(addr_col)
            .ok_or_else(|| format!("no saddr cell (column {})", addr_col + 1))?;
        let ip = parse_ip(addr_cell)?;
        let port = match port_col {
            Some(col) => match cells.get(col).map(|c| c.trim()) {
                Some(cell) if !cell.is_empty() => parse_port(cell)?,
                _ => self.default_port,
            },
            None => self.default_port,
        };
        Ok(Line::Target(SocketAddr::new(ip, port)))
    }

    fn parse_json(&self, line: &str) -> Result<Line, String> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        let obj = value.as_object().ok_or("JSON line is not an object")?;
        let saddr = obj
            .get("saddr")
            .ok_or("JSON object has no \"saddr\"")?
            .as_str()
            .ok_or("JSON \"saddr\" is not a string")?;
        let ip = parse_ip(saddr)?;
        let port = match obj.get("sport") {
            None | Some(serde_json::Value::Null) => self.default_port,
            Some(v) => {
                let n = v.as_u64().ok_or("JSON \"sport\" is not a non-negative integer")?;
                u16::try_from(n).map_err(|_| format!("JSON \"sport\" {n} is not a port"))?
            }
        };
        Ok(Line::Target(SocketAddr::new(ip, port)))
    }
}

fn parse_ip(cell: &str) -> Result<IpAddr, String> {
    let cell = cell.trim();
    cell.parse::<IpAddr>().map_err(|_| format!("bad address {:?}", shorten(cell)))
}

fn parse_port(cell: &str) -> Result<u16, String> {
    cell.parse::<u16>().map_err(|_| format!("bad port {:?}", shorten(cell)))
}

/// At most 64 characters of a cell, for error messages.
fn shorten(cell: &str) -> String {
    match cell.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &cell[..i]),
        None => cell.to_string(),
    }
}

/// Splits one csv line into cells.
///
/// A cell that starts with `"` runs to the next `"` that is followed by `,` or the end of the
/// line, with `""` read as one quote (RFC 4180). ZMap quotes cells containing `,` without
/// escaping quotes inside, which this reading also accepts as long as such a cell holds no `",`.
pub fn split_csv(line: &str) -> Result<Vec<&str>, String> {
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        if let Some(after_quote) = rest.strip_prefix('"') {
            // Find the closing quote: a `"` followed by `,` or the end.
            let bytes = after_quote.as_bytes();
            let mut i = 0;
            let end = loop {
                match bytes[i..].iter().position(|&b| b == b'"') {
                    None => return Err("unterminated quoted csv cell".to_string()),
                    Some(p) => {
                        let q = i + p;
                        match bytes.get(q + 1) {
                            None | Some(b',') => break q,
                            Some(b'"') => i = q + 2,
                            Some(_) => i = q + 1,
                        }
                    }
                }
            };
            cells.push(&after_quote[..end]);
            rest = &after_quote[end + 1..];
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None => return Ok(cells),
            }
        } else {
            match rest.find(',') {
                Some(p) => {
                    cells.push(&rest[..p]);
                    rest = &rest[p + 1..];
                }
                None => {
                    cells.push(rest);
                    return Ok(cells);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target(s: &str) -> Line {
        Line::Target(s.parse().unwrap())
    }

    #[test]
    fn bare_addresses_and_skips() {
        let mut p = LineParser::new(22);
        assert_eq!(p.parse(b"198.18.0.1"), Ok(target("198.18.0.1:22")));
        assert_eq!(p.parse(b"  198.18.0.2 \r"), Ok(target("198.18.0.2:22")));
        assert_eq!(p.parse(b"::1"), Ok(target("[::1]:22")));
        assert_eq!(p.parse(b""), Ok(Line::Skip));
        assert_eq!(p.parse(b"# comment"), Ok(Line::Skip));
        assert!(p.parse(b"198.18.0.256").unwrap_err().contains("bad address"));
        assert!(p.parse(b"hello").is_err());
        assert!(p.parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn headerless_csv_takes_first_column() {
        let mut p = LineParser::new(80);
        assert_eq!(p.parse(b"198.18.0.1,443,synack"), Ok(target("198.18.0.1:80")));
    }

    #[test]
    fn csv_header_selects_saddr_and_sport() {
        let mut p = LineParser::new(80);
        assert_eq!(p.parse(b"classification,saddr,sport"), Ok(Line::Header));
        assert_eq!(p.parse(b"synack,198.18.0.9,8080"), Ok(target("198.18.0.9:8080")));
        assert_eq!(p.parse(b"synack,198.18.0.9,"), Ok(target("198.18.0.9:80")));
        assert!(p.parse(b"synack,198.18.0.9,70000").unwrap_err().contains("bad port"));
        assert!(p.parse(b"synack").unwrap_err().contains("no saddr cell"));
        // A header without sport: the default port.
        assert_eq!(p.parse(b"saddr,daddr"), Ok(Line::Header));
        assert_eq!(p.parse(b"198.18.0.3,198.18.0.4"), Ok(target("198.18.0.3:80")));
    }

    #[test]
    fn json_lines() {
        let mut p = LineParser::new(25);
        assert_eq!(p.parse(br#"{"saddr": "198.18.0.5"}"#), Ok(target("198.18.0.5:25")));
        assert_eq!(
            p.parse(br#"{"saddr":"198.18.0.5","sport":587,"x":[1]}"#),
            Ok(target("198.18.0.5:587"))
        );
        assert!(p.parse(br#"{"daddr":"198.18.0.5"}"#).unwrap_err().contains("no \"saddr\""));
        assert!(p.parse(br#"{"saddr":5}"#).unwrap_err().contains("not a string"));
        assert!(p.parse(br#"{"saddr":"198.18.0.5","sport":-1}"#).is_err());
        assert!(p.parse(br#"{"saddr":"198.18.0.5","sport":65536}"#).is_err());
        assert!(p.parse(br#"{"saddr":"#).unwrap_err().contains("bad JSON"));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(split_csv("a,b"), Ok(vec!["a", "b"]));
        assert_eq!(split_csv(r#""a,b",c"#), Ok(vec!["a,b", "c"]));
        assert_eq!(split_csv(r#"x,"a""b",c"#), Ok(vec!["x", r#"a""b"#, "c"]));
        // ZMap-style quotes inside a quoted cell are not escaped; `",` inside one is ambiguous
        // and ends the cell there (documented limitation).
        assert_eq!(split_csv(r#""say "hi", ok",c"#), Ok(vec![r#"say "hi"#, r#" ok""#, "c"]));
        assert_eq!(split_csv(r#""a"b",c"#), Ok(vec![r#"a"b"#, "c"]));
        assert_eq!(split_csv(r#"a,"b"#).unwrap_err(), "unterminated quoted csv cell");
        assert_eq!(split_csv(""), Ok(vec![""]));
        assert_eq!(split_csv("a,"), Ok(vec!["a", ""]));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut p = LineParser::new(1);
            let _ = p.parse(&bytes);
        }

        #[test]
        fn unquoted_cells_round_trip(cells in proptest::collection::vec("[^,\"]{0,8}", 1..6)) {
            let line = cells.join(",");
            let got = split_csv(&line).unwrap();
            prop_assert_eq!(got, cells.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
