//! The payload forms of `--probe-args` for the `udp` and `icmp_echoscan` modules.
//!
//! `text:STR`, `hex:HEX`, `file:PATH` give fixed bytes; `template:PATH` (udp only) gives a
//! [`Template`] rendered per packet; `template-fields` (udp only) asks for the field list.
//! Unlike ZMap, which truncates an oversized payload with a warning, rzmap refuses it.

use std::fs::File;
use std::io::Read;

use super::template::{MAX_UDP_PAYLOAD, Template};
use crate::error::InputError;

/// The largest udp payload (1500 - 20 - 8), re-exported for callers of [`parse_payload_arg`].
pub const MAX_UDP_PAYLOAD_LEN: usize = MAX_UDP_PAYLOAD;

/// The largest ICMP echo payload ZMap accepts: 1500 minus the Ethernet (14), IP (20) and
/// ICMP echo (8) headers.
pub const MAX_ICMP_PAYLOAD_LEN: usize = 1458;

/// Template files larger than this are refused before parsing (the rendered payload is capped
/// separately; a template's text can exceed it, e.g. with `${HEX=...}`).
const MAX_TEMPLATE_FILE_LEN: usize = 64 * 1024;

/// The input name used in every error.
const INPUT: &str = "--probe-args";

/// A parsed `--probe-args` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadSpec {
    /// The same bytes in every probe.
    Fixed(Vec<u8>),
    /// A template rendered for every probe.
    Template(Template),
    /// `template-fields`: print [`super::template::template_fields_listing`] and exit 0.
    ListTemplateFields,
}

/// Parses a `--probe-args` payload value.
///
/// `max_len` is the module's payload limit ([`MAX_UDP_PAYLOAD_LEN`] for udp,
/// [`MAX_ICMP_PAYLOAD_LEN`] for icmp_echoscan); `allow_template` enables `template:` and
/// `template-fields` (udp only). File paths are used as written (relative to the working
/// directory). Errors name `--probe-args` (with the column for `hex:` values), the payload
/// file, or `PATH:line:column` inside a template.
pub fn parse_payload_arg(
    arg: &str,
    max_len: usize,
    allow_template: bool,
) -> Result<PayloadSpec, InputError> {
    if arg == "template-fields" {
        if !allow_template {
            return Err(not_here(allow_template));
        }
        return Ok(PayloadSpec::ListTemplateFields);
    }
    let Some((kind, value)) = arg.split_once(':') else {
        return Err(InputError::at_column(INPUT, 1, unknown_form(arg, allow_template)));
    };
    let bytes = match kind {
        "text" => value.as_bytes().to_vec(),
        "hex" => decode_hex(value, kind.len() + 2)?,
        "file" => read_file(value, max_len)?,
        "template" if allow_template => {
            let text = read_file(value, MAX_TEMPLATE_FILE_LEN)?;
            return Template::parse_with_limit(&text, value, max_len).map(PayloadSpec::Template);
        }
        "template" => return Err(not_here(allow_template)),
        _ => return Err(InputError::at_column(INPUT, 1, unknown_form(arg, allow_template))),
    };
    if bytes.len() > max_len {
        return Err(InputError::new(
            INPUT,
            format!("the payload is {} bytes, more than the limit of {max_len} bytes", bytes.len()),
        ));
    }
    Ok(PayloadSpec::Fixed(bytes))
}

/// The valid forms, for error messages.
fn valid_forms(allow_template: bool) -> &'static str {
    if allow_template {
        "text:STRING, hex:HEXDIGITS, file:PATH, template:PATH or template-fields"
    } else {
        "text:STRING, hex:HEXDIGITS or file:PATH"
    }
}

fn unknown_form(arg: &str, allow_template: bool) -> String {
    let shown: String = arg.chars().take(32).collect();
    format!("unknown payload \"{shown}\": expected {}", valid_forms(allow_template))
}

fn not_here(allow_template: bool) -> InputError {
    InputError::at_column(
        INPUT,
        1,
        format!(
            "templates are supported only by the udp module: expected {}",
            valid_forms(allow_template)
        ),
    )
}

/// Decodes pairs of hex digits; `first_column` is the 1-based column of `digits[0]` in the
/// whole `--probe-args` value.
fn decode_hex(digits: &str, first_column: usize) -> Result<Vec<u8>, InputError> {
    let bytes = digits.as_bytes();
    if let Some(i) = bytes.iter().position(|c| !c.is_ascii_hexdigit()) {
        // Columns count characters, so a multi-byte character is reported where it starts.
        let column = first_column + digits[..i].chars().count();
        let bad = digits[i..].chars().next().unwrap_or('?');
        return Err(InputError::at_column(
            INPUT,
            column,
            format!("non-hex character {bad:?} in hex payload"),
        ));
    }
    if bytes.len() % 2 == 1 {
        return Err(InputError::at_column(
            INPUT,
            first_column + bytes.len() - 1,
            format!("odd number of hex digits ({}): each byte needs two", bytes.len()),
        ));
    }
    Ok(bytes.chunks_exact(2).map(|p| hex_digit(p[0]) << 4 | hex_digit(p[1])).collect())
}

/// The value of an ASCII hex digit (checked by the caller).
fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Reads a payload or template file of at most `limit` bytes.
fn read_file(path: &str, limit: usize) -> Result<Vec<u8>, InputError> {
    if path.is_empty() {
        return Err(InputError::new(INPUT, "missing file path after ':'"));
    }
    let cannot = |e: std::io::Error| {
        // Drop Rust's " (os error N)" suffix: the OS reason alone reads better.
        let reason = e.to_string();
        let reason = reason.split(" (os error").next().unwrap_or_default().to_string();
        InputError::new(INPUT, format!("cannot read \"{path}\": {reason}"))
    };
    let file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it", without
    // slurping a huge file or a device such as /dev/zero.
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() > limit {
        let size = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map_or_else(|| format!("more than {limit}"), |m| m.len().to_string());
        return Err(InputError::new(
            INPUT,
            format!("\"{path}\" is {size} bytes, more than the limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::template::TemplateInput;
    use std::io::Write;

    fn udp(arg: &str) -> Result<PayloadSpec, String> {
        parse_payload_arg(arg, MAX_UDP_PAYLOAD_LEN, true).map_err(|e| e.to_string())
    }

    fn icmp(arg: &str) -> Result<PayloadSpec, String> {
        parse_payload_arg(arg, MAX_ICMP_PAYLOAD_LEN, false).map_err(|e| e.to_string())
    }

    fn temp_file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f.flush().unwrap();
        f
    }

    #[test]
    fn text_and_hex_forms() {
        assert_eq!(udp("text:ST"), Ok(PayloadSpec::Fixed(b"ST".to_vec())));
        assert_eq!(udp("text:a:b c"), Ok(PayloadSpec::Fixed(b"a:b c".to_vec())));
        assert_eq!(udp("text:"), Ok(PayloadSpec::Fixed(Vec::new())));
        assert_eq!(udp("hex:02"), Ok(PayloadSpec::Fixed(vec![2])));
        assert_eq!(icmp("hex:00fFA5"), Ok(PayloadSpec::Fixed(vec![0, 0xff, 0xa5])));
        assert_eq!(udp("hex:"), Ok(PayloadSpec::Fixed(Vec::new())));
    }

    #[test]
    fn hex_errors_name_the_column() {
        assert_eq!(
            udp("hex:0102z3"),
            Err("--probe-args: column 9: non-hex character 'z' in hex payload".into())
        );
        assert_eq!(
            udp("hex:12 34"),
            Err("--probe-args: column 7: non-hex character ' ' in hex payload".into())
        );
        assert_eq!(
            udp("hex:éa"),
            Err("--probe-args: column 5: non-hex character 'é' in hex payload".into())
        );
        assert_eq!(
            icmp("hex:abc"),
            Err("--probe-args: column 7: odd number of hex digits (3): each byte needs two".into())
        );
    }

    #[test]
    fn size_limits_are_enforced() {
        let at_limit = format!("text:{}", "a".repeat(1472));
        assert!(udp(&at_limit).is_ok());
        let over = format!("text:{}", "a".repeat(1473));
        assert_eq!(
            udp(&over),
            Err("--probe-args: the payload is 1473 bytes, more than the limit of 1472 bytes".into())
        );
        assert!(icmp(&format!("hex:{}", "00".repeat(1458))).is_ok());
        assert_eq!(
            icmp(&format!("hex:{}", "00".repeat(1459))),
            Err("--probe-args: the payload is 1459 bytes, more than the limit of 1458 bytes".into())
        );
    }

    #[test]
    fn file_form_reads_bytes() {
        let f = temp_file(&[0, 1, 2, 0xff, b'\n']);
        let arg = format!("file:{}", f.path().display());
        assert_eq!(udp(&arg), Ok(PayloadSpec::Fixed(vec![0, 1, 2, 0xff, b'\n'])));
        assert_eq!(icmp(&arg), Ok(PayloadSpec::Fixed(vec![0, 1, 2, 0xff, b'\n'])));
    }

    #[test]
    fn file_errors_name_the_path_and_reason() {
        assert_eq!(
            udp("file:/nonexistent/rzmap-payload.pkt"),
            Err("--probe-args: cannot read \"/nonexistent/rzmap-payload.pkt\": No such file or \
                 directory"
                .into())
        );
        let dir = tempfile::tempdir().unwrap();
        let e = udp(&format!("file:{}", dir.path().display())).unwrap_err();
        assert!(e.contains("Is a directory"), "{e}");
        assert_eq!(udp("file:"), Err("--probe-args: missing file path after ':'".into()));
        let big = temp_file(&[7u8; 1459]);
        let path = big.path().display().to_string();
        assert_eq!(
            icmp(&format!("file:{path}")),
            Err(format!(
                "--probe-args: \"{path}\" is 1459 bytes, more than the limit of 1458 bytes"
            ))
        );
        // A device is read only up to the limit.
        assert_eq!(
            icmp("file:/dev/zero"),
            Err("--probe-args: \"/dev/zero\" is more than 1458 bytes, more than the limit of \
                 1458 bytes"
                .into())
        );
    }

    #[test]
    fn template_form_compiles_the_file() {
        let f = temp_file(b"to ${DADDR}:${DPORT}");
        let Ok(PayloadSpec::Template(t)) = udp(&format!("template:{}", f.path().display())) else {
            panic!("not a template");
        };
        let input = TemplateInput {
            saddr: "198.18.0.1".parse().unwrap(),
            daddr: "198.18.0.2".parse().unwrap(),
            sport: 1,
            dport: 5060,
            unix_sec: 0,
            unix_usec: 0,
        };
        let mut out = vec![0u8; t.max_len()];
        let n = t.render(&mut out, &input, &mut crate::aesrand::AesRand::from_seed(1));
        assert_eq!(&out[..n], b"to 198.18.0.2:5060");
    }

    #[test]
    fn template_errors_name_path_line_and_column() {
        let f = temp_file(b"line one\r\nx=${RAND_DIGIT=ten}\r\n");
        let path = f.path().display().to_string();
        assert_eq!(
            udp(&format!("template:{path}")),
            Err(format!(
                "{path}:2:16: bad length \"ten\" for RAND_DIGIT: expected a number of bytes \
                 from 1 to 1472"
            ))
        );
        assert_eq!(
            udp("template:/nonexistent/x.tpl"),
            Err("--probe-args: cannot read \"/nonexistent/x.tpl\": No such file or directory"
                .into())
        );
    }

    #[test]
    fn template_fields_request() {
        assert_eq!(udp("template-fields"), Ok(PayloadSpec::ListTemplateFields));
    }

    #[test]
    fn templates_are_udp_only() {
        let expected = "--probe-args: column 1: templates are supported only by the udp module: \
                        expected text:STRING, hex:HEXDIGITS or file:PATH";
        assert_eq!(icmp("template-fields"), Err(expected.into()));
        assert_eq!(icmp("template:/x.tpl"), Err(expected.into()));
    }

    #[test]
    fn unknown_forms_list_the_valid_ones() {
        assert_eq!(
            udp("ST"),
            Err("--probe-args: column 1: unknown payload \"ST\": expected text:STRING, \
                 hex:HEXDIGITS, file:PATH, template:PATH or template-fields"
                .into())
        );
        assert_eq!(
            icmp("TEXT:x"),
            Err("--probe-args: column 1: unknown payload \"TEXT:x\": expected text:STRING, \
                 hex:HEXDIGITS or file:PATH"
                .into())
        );
        assert!(udp("").is_err());
    }
}
