//! The csv output module: one RFC 4180 row per record.
//!
//! Written by hand rather than with the `csv` crate: values need rzmap's own formatting
//! anyway (decimal integers, 0/1 bools, lowercase hex bytes, empty NULLs), and encoding straight
//! into the output buffer keeps one copy and no per-record allocation. The `csv` crate is the
//! independent reader in the tests.
//!
//! Values: integers in decimal, bools as 0/1, binary as lowercase hex, NULL as an empty cell;
//! a string is quoted when it contains `,` `"` CR or LF, with quotes doubled. Rows end in `\n`.
//! Repeated and nested fields cannot be written as csv and are refused when the module is
//! created.

use std::io::Write;
use std::time::Instant;

use super::select::{FIELDS_INPUT, FieldSelection};
use super::text::{push_hex, push_u64};
use super::{OutputError, OutputModule, Sink};
use crate::error::InputError;
use crate::fields::{FieldType, Record, Schema, Value};

/// Encodes records (and the header) as csv rows.
#[derive(Clone, Debug)]
pub struct CsvEncoder {
    indices: Vec<usize>,
    header: Vec<u8>,
}

impl CsvEncoder {
    /// An encoder for the selected fields. Refuses repeated and nested fields.
    pub fn new(schema: &Schema, fields: &FieldSelection) -> Result<Self, InputError> {
        let mut header = Vec::new();
        for (k, &i) in fields.indices().iter().enumerate() {
            let def = schema.get(i).ok_or_else(|| {
                InputError::new(FIELDS_INPUT, format!("field index {i} is not in the schema"))
            })?;
            if matches!(def.ty, FieldType::Repeated | FieldType::Nested) {
                return Err(InputError::new(
                    FIELDS_INPUT,
                    format!(
                        "field \"{}\" is {} and cannot be written as csv; use -O json",
                        def.name,
                        def.ty.name()
                    ),
                ));
            }
            if k > 0 {
                header.push(b',');
            }
            push_str(&mut header, def.name);
        }
        header.push(b'\n');
        Ok(Self { indices: fields.indices().to_vec(), header })
    }

    /// The header row, newline included.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Appends one row for `rec`, without the trailing newline.
    #[inline]
    pub fn encode(&self, rec: &Record, out: &mut Vec<u8>) {
        for (k, &i) in self.indices.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            let v = if i < rec.len() { rec.get(i) } else { Value::Null };
            match v {
                Value::Null => {}
                Value::Int(n) => push_u64(out, n),
                Value::Bool(b) => out.push(if b { b'1' } else { b'0' }),
                Value::Str(s) => push_str(out, s),
                Value::Bin(b) => push_hex(out, b),
            }
        }
    }
}

/// Appends a csv cell, quoting it when RFC 4180 requires.
#[inline]
fn push_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !b.iter().any(|&c| matches!(c, b',' | b'"' | b'\r' | b'\n')) {
        out.extend_from_slice(b);
        return;
    }
    out.push(b'"');
    for part in b.split_inclusive(|&c| c == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// The csv output module.
pub struct CsvOutput {
    enc: CsvEncoder,
    header: bool,
    sink: Sink,
}

impl CsvOutput {
    /// A csv module writing the selected fields to `out`, with a header row when `header`.
    pub fn new(
        schema: &Schema,
        fields: &FieldSelection,
        header: bool,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, InputError> {
        Ok(Self { enc: CsvEncoder::new(schema, fields)?, header, sink: Sink::new(out) })
    }
}

impl OutputModule for CsvOutput {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn start(&mut self) -> Result<(), OutputError> {
        if self.header {
            self.sink.buf().extend_from_slice(self.enc.header());
            self.sink.flush()?;
        }
        Ok(())
    }

    #[inline]
    fn record(&mut self, rec: &Record) -> Result<(), OutputError> {
        let buf = self.sink.buf();
        self.enc.encode(rec, buf);
        buf.push(b'\n');
        self.sink.commit()
    }

    fn update(&mut self) -> Result<(), OutputError> {
        self.sink.flush()
    }

    fn close(&mut self, _deadline: Instant) -> Result<(), OutputError> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_rfc_4180() {
        for (s, want) in [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("\"", "\"\"\"\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("cr\r", "\"cr\r\""),
            ("tab\tok", "tab\tok"),
        ] {
            let mut v = Vec::new();
            push_str(&mut v, s);
            assert_eq!(String::from_utf8(v).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn refuses_repeated_and_nested_fields() {
        let schema = Schema::for_module(&[crate::fields::FieldDef::new(
            "dns_answers",
            FieldType::Repeated,
            "answers",
        )]);
        let sel = FieldSelection::parse("saddr,dns_answers", &schema).unwrap();
        let e = CsvEncoder::new(&schema, &sel).unwrap_err().to_string();
        assert_eq!(
            e,
            "--output-fields: field \"dns_answers\" is repeated and cannot be written as csv; use -O json"
        );
    }
}
