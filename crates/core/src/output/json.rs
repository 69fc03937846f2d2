//! The json output module: one JSON object per line.
//!
//! NULL fields are omitted, bools are `true`/`false`, integers are numbers, binary values are
//! lowercase hex strings, strings are escaped (quote, backslash and every control character),
//! so each line parses as JSON whatever the field contents. Encoding writes straight into the
//! output buffer; keys are escaped once, when the module is created.

use std::io::Write;
use std::time::Instant;

use super::select::{FIELDS_INPUT, FieldSelection};
use super::text::{HEX, push_hex, push_u64};
use super::{OutputError, OutputModule, Sink};
use crate::error::InputError;
use crate::fields::{Record, Schema, Value};

/// Encodes records as single-line JSON objects.
#[derive(Clone, Debug)]
pub struct JsonEncoder {
    /// (schema index, `"key":` bytes) per selected field.
    keys: Vec<(usize, Vec<u8>)>,
}

impl JsonEncoder {
    /// An encoder for the selected fields.
    pub fn new(schema: &Schema, fields: &FieldSelection) -> Result<Self, InputError> {
        let mut keys = Vec::with_capacity(fields.indices().len());
        for &i in fields.indices() {
            let def = schema.get(i).ok_or_else(|| {
                InputError::new(FIELDS_INPUT, format!("field index {i} is not in the schema"))
            })?;
            let mut k = Vec::new();
            push_json_str(&mut k, def.name);
            k.push(b':');
            keys.push((i, k));
        }
        Ok(Self { keys })
    }

    /// Appends one object for `rec`, without the trailing newline.
    #[inline]
    pub fn encode(&self, rec: &Record, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (i, key) in &self.keys {
            let v = if *i < rec.len() { rec.get(*i) } else { Value::Null };
            if v == Value::Null {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
            match v {
                Value::Null => {}
                Value::Int(n) => push_u64(out, n),
                Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                Value::Str(s) => push_json_str(out, s),
                Value::Bin(b) => {
                    out.push(b'"');
                    push_hex(out, b);
                    out.push(b'"');
                }
            }
        }
        out.push(b'}');
    }
}

/// Appends `s` as a JSON string literal.
#[inline]
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[run..i]);
        run = i + 1;
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// The json output module.
pub struct JsonOutput {
    enc: JsonEncoder,
    sink: Sink,
}

impl JsonOutput {
    /// A json module writing the selected fields to `out`.
    pub fn new(
        schema: &Schema,
        fields: &FieldSelection,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, InputError> {
        Ok(Self { enc: JsonEncoder::new(schema, fields)?, sink: Sink::new(out) })
    }
}

impl OutputModule for JsonOutput {
    fn name(&self) -> &'static str {
        "json"
    }

    fn start(&mut self) -> Result<(), OutputError> {
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes() {
        let mut v = Vec::new();
        push_json_str(&mut v, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀");
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c\n\r\t\b\f\u0001\u007fé😀""#);
    }

    proptest! {
        #[test]
        fn any_string_round_trips_through_serde_json(s in any::<String>()) {
            let mut v = Vec::new();
            push_json_str(&mut v, &s);
            let back: String = serde_json::from_slice(&v).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
