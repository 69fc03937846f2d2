//! Output fields: their definitions, the schema of one scan, and reusable records.
//!
//! A record holds one value per field of the scan's [`Schema`] (IP fields, then the probe
//! module's fields, then the system fields). Consumers (filters, output modules) look fields up
//! **by name** once, when the scan starts, and then read values by the resolved index. Records
//! are reused from packet to packet: strings and bytes live in two arenas whose capacity is
//! kept, so filling a record allocates nothing once it has warmed up.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

/// The type of a field, as `--list-output-fields` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text.
    Str,
    /// An unsigned 64-bit integer.
    Int,
    /// A boolean (printed as 0/1 in csv, true/false in json).
    Bool,
    /// Raw bytes (printed as lowercase hex).
    Bin,
    /// A list of values (json only).
    Repeated,
    /// A nested record (json only).
    Nested,
}

impl FieldType {
    /// The type name as ZMap's `--list-output-fields` prints it.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Str => "string",
            FieldType::Int => "int",
            FieldType::Bool => "bool",
            FieldType::Bin => "binary",
            FieldType::Repeated => "repeated",
            FieldType::Nested => "nested",
        }
    }
}

/// One output field: its name, type and one-line description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// Canonical name (ZMap 4 spelling, with underscores).
    pub name: &'static str,
    /// Value type.
    pub ty: FieldType,
    /// One-line description.
    pub desc: &'static str,
}

impl FieldDef {
    /// A field definition.
    pub const fn new(name: &'static str, ty: FieldType, desc: &'static str) -> Self {
        Self { name, ty, desc }
    }
}

/// Fields every record starts with, in this order.
pub const IP_FIELDS: &[FieldDef] = &[
    FieldDef::new("saddr", FieldType::Str, "source IP address of response"),
    FieldDef::new("saddr_raw", FieldType::Int, "network order integer form of source IP address"),
    FieldDef::new("daddr", FieldType::Str, "destination IP address of response"),
    FieldDef::new(
        "daddr_raw",
        FieldType::Int,
        "network order integer form of destination IP address",
    ),
    FieldDef::new("ipid", FieldType::Int, "IP identification number of response"),
    FieldDef::new("ttl", FieldType::Int, "time-to-live of response packet"),
];

/// Fields every record ends with, in this order.
pub const SYSTEM_FIELDS: &[FieldDef] = &[
    FieldDef::new("repeat", FieldType::Bool, "Is response a repeat response from host"),
    FieldDef::new("cooldown", FieldType::Bool, "Was response received during the cooldown period"),
    FieldDef::new(
        "timestamp_str",
        FieldType::Str,
        "timestamp of when response arrived in ISO8601 format.",
    ),
    FieldDef::new(
        "timestamp_ts",
        FieldType::Int,
        "timestamp of when response arrived in seconds since Epoch",
    ),
    FieldDef::new(
        "timestamp_us",
        FieldType::Int,
        "microsecond part of timestamp (e.g. microseconds since 'timestamp-ts')",
    ),
];

/// The ordered field list of one scan: IP fields, module fields, system fields.
#[derive(Clone, Debug)]
pub struct Schema {
    fields: Vec<FieldDef>,
    module_start: usize,
    system_start: usize,
}

impl Schema {
    /// The schema for a probe module with the given fields.
    pub fn for_module(module_fields: &[FieldDef]) -> Self {
        let mut fields =
            Vec::with_capacity(IP_FIELDS.len() + module_fields.len() + SYSTEM_FIELDS.len());
        fields.extend_from_slice(IP_FIELDS);
        let module_start = fields.len();
        fields.extend_from_slice(module_fields);
        let system_start = fields.len();
        fields.extend_from_slice(SYSTEM_FIELDS);
        Self { fields, module_start, system_start }
    }

    /// All fields in order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields (never the case for a module schema).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Index of the first module field.
    pub fn module_start(&self) -> usize {
        self.module_start
    }

    /// Index of the first system field.
    pub fn system_start(&self) -> usize {
        self.system_start
    }

    /// Looks a field up by name. ZMap 2's documented hyphenated spellings
    /// (`saddr-raw`, `timestamp-str`) are accepted as aliases of the underscore names.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.fields.iter().position(|f| f.name == name) {
            return Some(i);
        }
        if name.contains('-') {
            let alt = name.replace('-', "_");
            return self.fields.iter().position(|f| f.name == alt);
        }
        None
    }

    /// The definition at an index.
    pub fn get(&self, index: usize) -> Option<&FieldDef> {
        self.fields.get(index)
    }

    /// Comma-separated names, for error messages that list the valid fields.
    pub fn names(&self) -> String {
        let mut s = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(f.name);
        }
        s
    }
}

/// A value slot inside a record. Strings point into the record's text arena, bytes into its
/// byte arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Null,
    Int(u64),
    Bool(bool),
    Str { start: u32, len: u32 },
    Bin { start: u32, len: u32 },
}

/// A borrowed view of one value of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// No value (for example ICMP fields of a TCP reply).
    Null,
    /// An integer.
    Int(u64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
    /// Raw bytes.
    Bin(&'a [u8]),
}

/// One result: a value for each field of a schema. Reused between packets.
///
/// String values live in a `String` arena, so reading one back is a slice (no UTF-8
/// re-validation: every string slot starts and ends where a whole `&str` was appended, which
/// is always a char boundary). Byte values live in a separate arena.
#[derive(Clone, Debug)]
pub struct Record {
    slots: Vec<Slot>,
    text: String,
    bytes: Vec<u8>,
}

impl Record {
    /// An all-null record with room for `fields` values.
    pub fn new(fields: usize) -> Self {
        Self {
            slots: vec![Slot::Null; fields],
            text: String::with_capacity(1024),
            bytes: Vec::with_capacity(1024),
        }
    }

    /// A record sized for a schema.
    pub fn for_schema(schema: &Schema) -> Self {
        Self::new(schema.len())
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the record has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Resets every value to null, keeping the arenas' capacity.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::Null);
        self.text.clear();
        self.bytes.clear();
    }

    /// Sets a null value.
    pub fn set_null(&mut self, i: usize) {
        self.slots[i] = Slot::Null;
    }

    /// Sets an integer.
    pub fn set_int(&mut self, i: usize, v: u64) {
        self.slots[i] = Slot::Int(v);
    }

    /// Sets a boolean.
    pub fn set_bool(&mut self, i: usize, v: bool) {
        self.slots[i] = Slot::Bool(v);
    }

    /// Sets a string (copied into the text arena).
    pub fn set_str(&mut self, i: usize, v: &str) {
        let start = self.text.len();
        self.text.push_str(v);
        self.end_str(i, start);
    }

    /// Sets bytes (copied into the byte arena).
    pub fn set_bin(&mut self, i: usize, v: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(v);
        self.slots[i] = Slot::Bin { start, len: v.len() as u32 };
    }

    /// Sets a string formatted in place, without a temporary `String`.
    pub fn set_fmt(&mut self, i: usize, args: fmt::Arguments<'_>) {
        let start = self.text.len();
        // Writing into a String cannot fail.
        let _ = self.text.write_fmt(args);
        self.end_str(i, start);
    }

    /// Sets a dotted-quad IPv4 address string, formatted by hand (this runs twice per reply;
    /// `core::fmt` costs several times more).
    pub fn set_ipv4(&mut self, i: usize, addr: Ipv4Addr) {
        let start = self.text.len();
        for (k, o) in addr.octets().into_iter().enumerate() {
            if k > 0 {
                self.text.push('.');
            }
            if o >= 100 {
                self.text.push(char::from(b'0' + o / 100));
            }
            if o >= 10 {
                self.text.push(char::from(b'0' + (o / 10) % 10));
            }
            self.text.push(char::from(b'0' + o % 10));
        }
        self.end_str(i, start);
    }

    /// Points slot `i` at the text appended since `start`.
    fn end_str(&mut self, i: usize, start: usize) {
        let len = self.text.len() - start;
        self.slots[i] = Slot::Str { start: start as u32, len: len as u32 };
    }

    /// Reads a value.
    pub fn get(&self, i: usize) -> Value<'_> {
        match self.slots[i] {
            Slot::Null => Value::Null,
            Slot::Int(v) => Value::Int(v),
            Slot::Bool(v) => Value::Bool(v),
            Slot::Str { start, len } => {
                let (start, end) = (start as usize, (start + len) as usize);
                // Str slots only ever span whole appended `&str`s, so both ends are char
                // boundaries and this never falls back.
                Value::Str(self.text.get(start..end).unwrap_or(""))
            }
            Slot::Bin { start, len } => {
                Value::Bin(&self.bytes[start as usize..(start + len) as usize])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOD: &[FieldDef] = &[
        FieldDef::new("sport", FieldType::Int, "TCP source port"),
        FieldDef::new("classification", FieldType::Str, "packet classification"),
        FieldDef::new("success", FieldType::Bool, "is response considered success"),
    ];

    #[test]
    fn schema_orders_ip_module_system_fields() {
        let s = Schema::for_module(MOD);
        assert_eq!(s.fields()[0].name, "saddr");
        assert_eq!(s.module_start(), IP_FIELDS.len());
        assert_eq!(s.fields()[s.module_start()].name, "sport");
        assert_eq!(s.fields()[s.system_start()].name, "repeat");
        assert_eq!(s.len(), IP_FIELDS.len() + 3 + SYSTEM_FIELDS.len());
        assert_eq!(s.index_of("timestamp-str"), s.index_of("timestamp_str"));
        assert!(s.index_of("timestamp_str").is_some());
        assert_eq!(s.index_of("nope"), None);
    }

    #[test]
    fn record_values_round_trip_and_reuse_arena() {
        let s = Schema::for_module(MOD);
        let mut r = Record::for_schema(&s);
        r.set_ipv4(0, Ipv4Addr::new(198, 18, 0, 7));
        r.set_int(1, 7);
        r.set_str(7, "synack");
        r.set_bin(2, &[0xde, 0xad]);
        r.set_bool(8, true);
        assert_eq!(r.get(0), Value::Str("198.18.0.7"));
        assert_eq!(r.get(1), Value::Int(7));
        assert_eq!(r.get(7), Value::Str("synack"));
        assert_eq!(r.get(2), Value::Bin(&[0xde, 0xad]));
        assert_eq!(r.get(8), Value::Bool(true));
        assert_eq!(r.get(3), Value::Null);
        let caps = (r.text.capacity(), r.bytes.capacity());
        r.clear();
        assert_eq!(r.get(0), Value::Null);
        r.set_ipv4(0, Ipv4Addr::new(1, 2, 3, 4));
        r.set_bin(2, &[1]);
        assert_eq!((r.text.capacity(), r.bytes.capacity()), caps);
    }

    #[test]
    fn set_ipv4_matches_display() {
        let mut r = Record::new(1);
        let mut addrs: Vec<u32> = (0..=255u32).map(|o| o * 0x0101_0101).collect();
        addrs.extend([0xffff_ffff, 0x010a_6409, 0xc613_0328, 0x0a00_6365, 0x6400_0a09]);
        for a in addrs {
            let a = Ipv4Addr::from(a);
            r.clear();
            r.set_str(0, "x");
            r.set_ipv4(0, a);
            assert_eq!(r.get(0), Value::Str(&a.to_string()));
        }
    }

    #[test]
    fn strings_and_bytes_do_not_overlap() {
        let mut r = Record::new(4);
        r.set_str(0, "h\u{e9}llo \u{2603}");
        r.set_bin(1, &[0xff, 0xfe]);
        r.set_fmt(2, format_args!("{}-\u{e9}", 42));
        r.set_str(3, "");
        assert_eq!(r.get(0), Value::Str("h\u{e9}llo \u{2603}"));
        assert_eq!(r.get(1), Value::Bin(&[0xff, 0xfe]));
        assert_eq!(r.get(2), Value::Str("42-\u{e9}"));
        assert_eq!(r.get(3), Value::Str(""));
    }
}
