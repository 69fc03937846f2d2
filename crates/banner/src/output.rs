//! Output records: one line per host, csv or JSON.
//!
//! csv (header `saddr,port,outcome,banner,bytes`): the banner is standard base64 with padding,
//! empty when there is none; no cell ever needs quoting.
//! JSON (one object per line): `saddr`, `port`, `outcome`, `bytes`, `banner` (the bytes as text,
//! invalid UTF-8 sequences replaced by U+FFFD) and `banner_b64` (the exact bytes, base64).

use std::io::Write;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::grab::Grab;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row, banner in base64.
    Csv,
    /// One JSON object per line.
    Json,
}

/// The csv header row (with its newline).
pub const CSV_HEADER: &str = "saddr,port,outcome,banner,bytes\n";

/// Appends one record (with its newline) for the grab of `addr` to `out`.
pub fn write_record(out: &mut Vec<u8>, format: Format, addr: SocketAddr, grab: &Grab) {
    let b64 = STANDARD.encode(&grab.data);
    // Writing into a Vec cannot fail.
    let _ = match format {
        Format::Csv => writeln!(
            out,
            "{},{},{},{},{}",
            addr.ip(),
            addr.port(),
            grab.outcome.name(),
            b64,
            grab.data.len()
        ),
        Format::Json => {
            let text = String::from_utf8_lossy(&grab.data);
            let _ = write!(
                out,
                "{{\"saddr\":\"{}\",\"port\":{},\"outcome\":\"{}\",\"bytes\":{},\"banner\":",
                addr.ip(),
                addr.port(),
                grab.outcome.name(),
                grab.data.len()
            );
            let _ = serde_json::to_writer(&mut *out, &text);
            writeln!(out, ",\"banner_b64\":\"{b64}\"}}")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grab::Outcome;
    use proptest::prelude::*;

    fn rec(format: Format, addr: &str, outcome: Outcome, data: &[u8]) -> String {
        let mut out = Vec::new();
        write_record(
            &mut out,
            format,
            addr.parse().unwrap(),
            &Grab { outcome, data: data.to_vec() },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_records() {
        assert_eq!(
            rec(Format::Csv, "198.18.0.1:22", Outcome::Banner, b"SSH-2.0-x\r\n"),
            "198.18.0.1,22,banner,U1NILTIuMC14DQo=,11\n"
        );
        assert_eq!(rec(Format::Csv, "[::1]:80", Outcome::Timeout, b""), "::1,80,timeout,,0\n");
    }

    #[test]
    fn json_records_keep_invalid_utf8_in_base64() {
        let line = rec(Format::Json, "198.18.0.1:80", Outcome::Banner, b"a\"\n\xff\x00");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["saddr"], "198.18.0.1");
        assert_eq!(v["port"], 80);
        assert_eq!(v["outcome"], "banner");
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["banner"], "a\"\n\u{fffd}\u{0}");
        assert_eq!(STANDARD.decode(v["banner_b64"].as_str().unwrap()).unwrap(), b"a\"\n\xff\x00");
    }

    proptest! {
        /// Every record is one line that a strict parser reads back to the same bytes.
        #[test]
        fn records_parse_back(data in proptest::collection::vec(any::<u8>(), 0..300), port: u16) {
            let addr = SocketAddr::from(([198, 18, 3, 4], port));
            let grab = Grab { outcome: Outcome::Banner, data: data.clone() };
            let mut csv = Vec::new();
            write_record(&mut csv, Format::Csv, addr, &grab);
            let csv = String::from_utf8(csv).unwrap();
            prop_assert_eq!(csv.matches('\n').count(), 1);
            let cells: Vec<&str> = csv.trim_end().split(',').collect();
            prop_assert_eq!(cells.len(), 5);
            prop_assert_eq!(STANDARD.decode(cells[3]).unwrap(), data.clone());
            prop_assert_eq!(cells[4].parse::<usize>().unwrap(), data.len());

            let mut json = Vec::new();
            write_record(&mut json, Format::Json, addr, &grab);
            let json = String::from_utf8(json).unwrap();
            prop_assert_eq!(json.matches('\n').count(), 1);
            let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
            prop_assert_eq!(v["port"].as_u64(), Some(u64::from(port)));
            prop_assert_eq!(STANDARD.decode(v["banner_b64"].as_str().unwrap()).unwrap(), data.clone());
            if let Ok(text) = std::str::from_utf8(&data) {
                prop_assert_eq!(v["banner"].as_str(), Some(text));
            }
        }
    }
}
