//! Placeholder for `text:`/`hex:`/`file:` payload arguments, used by icmp_echoscan and udp
//! until the shared `probe::payload::PayloadSpec` parser (another branch) is merged; then this
//! file goes away and the modules call that parser instead.

use crate::error::InputError;

/// Parses a `text:STR`, `hex:HEX` or `file:PATH` argument into bytes of at most `max` bytes.
/// Returns `Ok(None)` when the argument has none of these prefixes.
pub(crate) fn parse(arg: &str, max: usize) -> Result<Option<Vec<u8>>, InputError> {
    const INPUT: &str = "--probe-args";
    let bytes = if let Some(t) = arg.strip_prefix("text:") {
        t.as_bytes().to_vec()
    } else if let Some(h) = arg.strip_prefix("hex:") {
        if h.len() % 2 != 0 {
            return Err(InputError::at_column(INPUT, arg.len(), "odd number of hex digits"));
        }
        let mut out = Vec::with_capacity(h.len() / 2);
        for (i, pair) in h.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("");
            match u8::from_str_radix(s, 16) {
                Ok(b) if pair.iter().all(u8::is_ascii_hexdigit) => out.push(b),
                _ => {
                    return Err(InputError::at_column(
                        INPUT,
                        4 + 2 * i + 1,
                        format!("bad hex byte \"{}\"", String::from_utf8_lossy(pair)),
                    ));
                }
            }
        }
        out
    } else if let Some(path) = arg.strip_prefix("file:") {
        std::fs::read(path)
            .map_err(|e| InputError::new(INPUT, format!("cannot read payload file {path}: {e}")))?
    } else {
        return Ok(None);
    };
    if bytes.len() > max {
        return Err(InputError::new(
            INPUT,
            format!("payload is {} bytes, more than the maximum of {max}", bytes.len()),
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse("text:ST", 10).unwrap(), Some(b"ST".to_vec()));
        assert_eq!(parse("hex:02ff", 10).unwrap(), Some(vec![2, 0xff]));
        assert_eq!(parse("other", 10).unwrap(), None);
        assert!(parse("hex:0", 10).is_err());
        let e = parse("hex:02zz", 10).unwrap_err();
        assert_eq!(e.to_string(), "--probe-args: column 7: bad hex byte \"zz\"");
        assert!(parse("text:abcdef", 3).is_err());
        assert!(parse("file:/nonexistent/x", 3).is_err());
    }
}
