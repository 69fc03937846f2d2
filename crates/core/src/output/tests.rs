//! Golden tests: records of a TCP-like schema through csv and json, read back with the `csv`
//! crate and serde_json and compared field by field.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::fields::{FieldDef, FieldType, Value};

const TCP: &[FieldDef] = &[
    FieldDef::new("sport", FieldType::Int, "TCP source port"),
    FieldDef::new("dport", FieldType::Int, "TCP destination port"),
    FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
    FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
    FieldDef::new("window", FieldType::Int, "TCP window"),
    FieldDef::new("classification", FieldType::Str, "packet classification"),
    FieldDef::new("success", FieldType::Bool, "is response considered success"),
    FieldDef::new("options", FieldType::Bin, "raw TCP options"),
];

fn schema() -> Schema {
    Schema::for_module(TCP)
}

/// A `Write` whose bytes the test can read after the module is done with it.
#[derive(Clone, Default)]
pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn fill(s: &Schema, r: &mut Record, n: u64, class: &str, opts: &[u8]) {
    r.clear();
    let i = |name: &str| s.index_of(name).unwrap();
    r.set_ipv4(i("saddr"), Ipv4Addr::new(198, 18, 0, n as u8));
    r.set_int(
        i("saddr_raw"),
        u64::from(u32::from(Ipv4Addr::new(198, 18, 0, n as u8)).swap_bytes()),
    );
    r.set_ipv4(i("daddr"), Ipv4Addr::new(198, 19, 0, 1));
    r.set_int(i("ipid"), 54321);
    r.set_int(i("ttl"), 64);
    r.set_int(i("sport"), 80);
    r.set_int(i("dport"), 40000 + n);
    r.set_int(i("seqnum"), 4_000_000_000 + n);
    r.set_int(i("acknum"), u64::from(u32::MAX));
    r.set_int(i("window"), 65535);
    r.set_str(i("classification"), class);
    r.set_bool(i("success"), class == "synack");
    r.set_bin(i("options"), opts);
    r.set_bool(i("repeat"), false);
    r.set_bool(i("cooldown"), n % 2 == 1);
    r.set_str(i("timestamp_str"), "2026-11-26T17:34:01.123+0000");
    r.set_int(i("timestamp_ts"), 1_795_714_441);
    r.set_int(i("timestamp_us"), 123_456);
    // acknum of rst replies left NULL to exercise empty cells / omitted keys
    if class == "rst" {
        r.set_null(i("seqnum"));
    }
}

fn records() -> Vec<Record> {
    let s = schema();
    let mut out = Vec::new();
    for (n, class, opts) in [
        (1, "synack", &[0x02, 0x04, 0x05, 0xb4][..]),
        (2, "rst", &[][..]),
        (3, "weird, \"quoted\"\nclass", &[0xff][..]),
    ] {
        let mut r = Record::for_schema(&s);
        fill(&s, &mut r, n, class, opts);
        out.push(r);
    }
    out
}

fn run(module: &str, fields: Option<&str>, header: bool, recs: &[Record]) -> String {
    let s = schema();
    let sel = match fields {
        Some(f) => FieldSelection::parse(f, &s).unwrap(),
        None => FieldSelection::all(&s),
    };
    let buf = Shared::default();
    let mut m = create(module, &s, &sel, header, None, Some(Box::new(buf.clone()))).unwrap();
    m.start().unwrap();
    for r in recs {
        m.record(r).unwrap();
    }
    m.update().unwrap();
    m.close(Instant::now()).unwrap();
    buf.text()
}

/// The csv text a value must become.
fn csv_cell(v: Value<'_>) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => u8::from(b).to_string(),
        Value::Str(s) => s.to_string(),
        Value::Bin(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// The JSON value a field must become (`None` = key omitted).
fn json_value(v: Value<'_>) -> Option<serde_json::Value> {
    match v {
        Value::Null => None,
        Value::Int(n) => Some(n.into()),
        Value::Bool(b) => Some(b.into()),
        Value::Str(s) => Some(s.into()),
        Value::Bin(b) => Some(b.iter().map(|x| format!("{x:02x}")).collect::<String>().into()),
    }
}

fn check_csv(text: &str, header: bool, sel: &FieldSelection, s: &Schema, recs: &[Record]) {
    let mut rd = ::csv::ReaderBuilder::new().has_headers(header).from_reader(text.as_bytes());
    if header {
        let h: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(h, sel.names(s).collect::<Vec<_>>());
    }
    let rows: Vec<::csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), recs.len());
    for (row, rec) in rows.iter().zip(recs) {
        assert_eq!(row.len(), sel.indices().len());
        for (cell, &i) in row.iter().zip(sel.indices()) {
            assert_eq!(cell, csv_cell(rec.get(i)), "field {}", s.fields()[i].name);
        }
    }
}

fn check_json(text: &str, sel: &FieldSelection, s: &Schema, recs: &[Record]) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), recs.len());
    for (line, rec) in lines.iter().zip(recs) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        let mut want = 0;
        for &i in sel.indices() {
            let name = s.fields()[i].name;
            match json_value(rec.get(i)) {
                None => assert!(!obj.contains_key(name), "{name} should be omitted"),
                Some(j) => {
                    want += 1;
                    assert_eq!(obj.get(name), Some(&j), "field {name}");
                }
            }
        }
        assert_eq!(obj.len(), want);
        // keys appear in selection order
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let order: Vec<&str> = sel.names(s).filter(|n| keys.contains(n)).collect();
        let mut sorted_by_pos = keys.clone();
        sorted_by_pos.sort_by_key(|k| line.find(&format!("\"{k}\":")).unwrap());
        assert_eq!(sorted_by_pos, order);
    }
}

#[test]
fn csv_all_fields_with_header() {
    let s = schema();
    let recs = records();
    let text = run("csv", None, true, &recs);
    check_csv(&text, true, &FieldSelection::all(&s), &s, &recs);
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "saddr,saddr_raw,daddr,daddr_raw,ipid,ttl,sport,dport,seqnum,acknum,window,classification,success,options,repeat,cooldown,timestamp_str,timestamp_ts,timestamp_us"
    );
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "198.18.0.1,16782022,198.19.0.1,,54321,64,80,40001,4000000001,4294967295,65535,synack,1,020405b4,0,1,2026-11-26T17:34:01.123+0000,1795714441,123456"
    );
    // NULL seqnum of the rst record is an empty cell, and empty binary too
    assert_eq!(
        text.lines().nth(2).unwrap(),
        "198.18.0.2,33559238,198.19.0.1,,54321,64,80,40002,,4294967295,65535,rst,0,,0,0,2026-11-26T17:34:01.123+0000,1795714441,123456"
    );
}

#[test]
fn csv_selected_fields_without_header() {
    let s = schema();
    let recs = records();
    let spec = "classification,saddr,sport,seqnum,success";
    let text = run("csv", Some(spec), false, &recs);
    check_csv(&text, false, &FieldSelection::parse(spec, &s).unwrap(), &s, &recs);
    assert_eq!(
        text,
        "synack,198.18.0.1,80,4000000001,1\nrst,198.18.0.2,80,,0\n\"weird, \"\"quoted\"\"\nclass\",198.18.0.3,80,4000000003,0\n"
    );
}

#[test]
fn csv_header_only_when_no_records() {
    assert_eq!(run("csv", Some("saddr,ttl"), true, &[]), "saddr,ttl\n");
    assert_eq!(run("csv", Some("saddr,ttl"), false, &[]), "");
}

#[test]
fn json_all_and_selected_fields() {
    let s = schema();
    let recs = records();
    let text = run("json", None, true, &recs);
    check_json(&text, &FieldSelection::all(&s), &s, &recs);
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "{\"saddr\":\"198.18.0.2\",\"saddr_raw\":33559238,\"daddr\":\"198.19.0.1\",\"ipid\":54321,\"ttl\":64,\"sport\":80,\"dport\":40002,\"acknum\":4294967295,\"window\":65535,\"classification\":\"rst\",\"success\":false,\"options\":\"\",\"repeat\":false,\"cooldown\":false,\"timestamp_str\":\"2026-11-26T17:34:01.123+0000\",\"timestamp_ts\":1795714441,\"timestamp_us\":123456}"
    );
    let spec = "success,saddr,seqnum,options";
    let text = run("json", Some(spec), false, &recs);
    check_json(&text, &FieldSelection::parse(spec, &s).unwrap(), &s, &recs);
    assert_eq!(
        text.lines().next().unwrap(),
        "{\"success\":true,\"saddr\":\"198.18.0.1\",\"seqnum\":4000000001,\"options\":\"020405b4\"}"
    );
}

#[test]
fn closed_pipe_is_recognised() {
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let s = schema();
    let sel = FieldSelection::parse("saddr", &s).unwrap();
    let mut m = create("csv", &s, &sel, true, None, Some(Box::new(Closed))).unwrap();
    let e = m.start().unwrap_err();
    assert!(e.is_closed_pipe(), "{e}");
    let mut m = create("json", &s, &sel, true, None, Some(Box::new(Full))).unwrap();
    m.start().unwrap();
    m.record(&records()[0]).unwrap(); // buffered
    let e = m.update().unwrap_err();
    assert!(!e.is_closed_pipe());
    assert_eq!(e.to_string(), "cannot write output: disk full");
}

#[test]
fn a_real_pipe_whose_reader_left_is_a_closed_pipe() {
    let (reader, writer) = io::pipe().unwrap();
    drop(reader);
    let s = schema();
    let sel = FieldSelection::parse("saddr", &s).unwrap();
    let mut m = create("csv", &s, &sel, false, None, Some(Box::new(writer))).unwrap();
    m.start().unwrap();
    m.record(&records()[0]).unwrap(); // still buffered
    let e = m.update().unwrap_err();
    assert!(e.is_closed_pipe(), "{e}");
}

#[test]
fn big_outputs_are_written_in_buffer_sized_chunks() {
    #[derive(Clone, Default)]
    struct Counting(Arc<Mutex<(usize, usize)>>);
    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0 += 1;
            g.1 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let s = schema();
    let sel = FieldSelection::all(&s);
    let c = Counting::default();
    let mut m = create("csv", &s, &sel, false, None, Some(Box::new(c.clone()))).unwrap();
    m.start().unwrap();
    let recs = records();
    for k in 0..20_000 {
        m.record(&recs[k % 3]).unwrap();
    }
    let (writes_before, bytes_before) = *c.0.lock().unwrap();
    assert!(writes_before > 0 && bytes_before >= BUFFER_BYTES);
    assert!(writes_before <= bytes_before / BUFFER_BYTES + 1, "{writes_before} writes");
    m.close(Instant::now()).unwrap();
    let (_, total) = *c.0.lock().unwrap();
    assert!(total > bytes_before);
}

#[test]
fn registry_lists_modules_and_refuses_unknown() {
    assert_eq!(list_output_modules(), "csv\njson\nredis\n");
    assert!(find_module("redis").is_some_and(|m| !m.writes_file));
    let s = schema();
    let sel = FieldSelection::all(&s);
    let e = create("xml", &s, &sel, true, None, None).err().unwrap().to_string();
    assert_eq!(e, "--output-module: unknown output module \"xml\" (available: csv, json, redis)");
    let e = create("csv", &s, &sel, true, None, None).err().unwrap().to_string();
    assert!(e.starts_with("--output-file:"), "{e}");
}

#[test]
fn filter_then_output_end_to_end() {
    let s = schema();
    let f = crate::filter::Filter::compile(
        "(classification = rst && ttl > 10) || classification = synack",
        &s,
    )
    .unwrap();
    let recs: Vec<Record> = records().into_iter().filter(|r| f.matches(r)).collect();
    assert_eq!(
        run("csv", Some("saddr,classification"), false, &recs),
        "198.18.0.1,synack\n198.18.0.2,rst\n"
    );
}

fn arb_str() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[,\"\r\n\\\\a\u{0}\u{1f}\u{7f}é]{0,12}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_strings_and_bytes_give_valid_lines(
        cls in arb_str(),
        ts in arb_str(),
        opts in prop::collection::vec(any::<u8>(), 0..40),
        n in any::<u8>(),
    ) {
        let s = schema();
        let mut r = Record::for_schema(&s);
        fill(&s, &mut r, u64::from(n), "x", &opts);
        r.set_str(s.index_of("classification").unwrap(), &cls);
        r.set_str(s.index_of("timestamp_str").unwrap(), &ts);
        let recs = vec![r.clone(), r];
        let all = FieldSelection::all(&s);
        let text = run("csv", None, true, &recs);
        check_csv(&text, true, &all, &s, &recs);
        let text = run("json", None, false, &recs);
        prop_assert_eq!(text.matches('\n').count(), 2);
        check_json(&text, &all, &s, &recs);
    }
}
