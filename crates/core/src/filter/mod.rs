//! The output filter (`--output-filter`): which records reach the output module.
//!
//! The language is ZMap's (comparisons `field op value` joined by `&&` and `||`, parentheses,
//! `&&` binding tighter, both left-associative, bare words as string literals) plus rzmap's
//! superset: `"quoted strings"` with escapes, dotted IPv4 literals compared as addresses with
//! string address fields (`saddr = 198.18.0.7`, `saddr < 198.18.0.128`), full 64-bit unsigned
//! integers (too large is an error, not a wrap), `true`/`false` for bool fields, and `==`.
//! Nothing is ever written to stdout. See [`eval`] for the comparison rules.
//!
//! [`Filter::compile`] checks names and types once against the scan's schema; every error is a
//! one-line [`InputError`] naming `--output-filter` and the 1-based column.
//! [`Filter::matches`] then runs a flat branch program and allocates nothing.

pub mod eval;
pub mod lexer;
pub mod parser;

use crate::error::InputError;
use crate::fields::{Record, Schema};

pub use lexer::CmpOp;
pub use parser::{Expr, Literal, parse};

/// A compiled output filter, bound to one schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    prog: Vec<eval::Insn>,
    entry: u32,
}

impl Filter {
    /// A filter every record passes (what an empty `--output-filter=""` means).
    pub fn accept_all() -> Self {
        Self { prog: Vec::new(), entry: eval::ACCEPT }
    }

    /// Parses `expr` and binds its field names and literals to `schema`.
    ///
    /// Field names may use the hyphenated aliases [`Schema::index_of`] accepts and the ZMap 1
    /// names of [`lookup_field`](crate::output::select::lookup_field). An empty or blank
    /// expression passes every record.
    pub fn compile(expr: &str, schema: &Schema) -> Result<Self, InputError> {
        let Some(tree) = parse(expr)? else { return Ok(Self::accept_all()) };
        let mut prog = Vec::new();
        let entry = eval::compile(expr, &tree, schema, eval::ACCEPT, eval::REJECT, &mut prog)?;
        if prog.len() >= eval::REJECT as usize {
            return Err(InputError::new(lexer::INPUT, "filter has too many comparisons"));
        }
        Ok(Self { prog, entry })
    }

    /// True when the record passes the filter. Allocates nothing.
    #[inline]
    pub fn matches(&self, rec: &Record) -> bool {
        eval::run(&self.prog, self.entry, rec)
    }

    /// True when every record passes (no filter, or an empty one).
    pub fn is_accept_all(&self) -> bool {
        self.entry == eval::ACCEPT
    }

    /// Number of comparisons in the compiled program.
    pub fn comparisons(&self) -> usize {
        self.prog.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::fields::{FieldDef, FieldType};

    const TCP: &[FieldDef] = &[
        FieldDef::new("sport", FieldType::Int, "TCP source port"),
        FieldDef::new("dport", FieldType::Int, "TCP destination port"),
        FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
        FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
        FieldDef::new("window", FieldType::Int, "TCP window"),
        FieldDef::new("classification", FieldType::Str, "packet classification"),
        FieldDef::new("success", FieldType::Bool, "is response considered success"),
        FieldDef::new("data", FieldType::Bin, "payload"),
    ];

    fn schema() -> Schema {
        Schema::for_module(TCP)
    }

    struct Rec {
        s: Schema,
        r: Record,
    }

    impl Rec {
        fn new() -> Self {
            let s = schema();
            let r = Record::for_schema(&s);
            Self { s, r }
        }
        fn int(mut self, f: &str, v: u64) -> Self {
            self.r.set_int(self.s.index_of(f).unwrap(), v);
            self
        }
        fn boolean(mut self, f: &str, v: bool) -> Self {
            self.r.set_bool(self.s.index_of(f).unwrap(), v);
            self
        }
        fn string(mut self, f: &str, v: &str) -> Self {
            self.r.set_str(self.s.index_of(f).unwrap(), v);
            self
        }
        fn m(&self, expr: &str) -> bool {
            let f = Filter::compile(expr, &self.s).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let tree = parse(expr).unwrap().unwrap();
            let naive = eval::interpret(&tree, &self.s, &self.r);
            assert_eq!(f.matches(&self.r), naive, "compiled and naive disagree on {expr}");
            naive
        }
    }

    fn err(expr: &str) -> String {
        Filter::compile(expr, &schema()).unwrap_err().to_string()
    }

    #[test]
    fn every_operator_on_integers() {
        let r = Rec::new().int("ttl", 10).int("seqnum", u64::MAX);
        for (e, want) in [
            ("ttl = 10", true),
            ("ttl == 10", true),
            ("ttl = 11", false),
            ("ttl != 10", false),
            ("ttl != 9", true),
            ("ttl < 11", true),
            ("ttl < 10", false),
            ("ttl > 9", true),
            ("ttl > 10", false),
            ("ttl <= 10", true),
            ("ttl <= 9", false),
            ("ttl >= 10", true),
            ("ttl >= 11", false),
            ("seqnum = 18446744073709551615", true),
            ("seqnum > 4294967295", true),
            ("seqnum > 2147483647", true),
            // NULL int counts as 0
            ("acknum = 0", true),
            ("acknum < 1", true),
        ] {
            assert_eq!(r.m(e), want, "{e}");
        }
    }

    #[test]
    fn every_operator_on_bools() {
        let r = Rec::new().boolean("success", true).boolean("repeat", false);
        for (e, want) in [
            ("success = 1", true),
            ("success = true", true),
            ("success != false", true),
            ("success = 0", false),
            ("success > 0", true),
            ("success >= 1", true),
            ("success < 1", false),
            ("success <= 0", false),
            ("repeat = 0", true),
            ("repeat = false", true),
            ("repeat != 0", false),
            ("repeat < 1", true),
            ("cooldown = 0", true), // NULL bool counts as 0
            ("cooldown = false", true),
        ] {
            assert_eq!(r.m(e), want, "{e}");
        }
    }

    #[test]
    fn every_operator_on_strings() {
        let r = Rec::new().string("classification", "synack").string("timestamp_str", "a \"q\"");
        for (e, want) in [
            ("classification = synack", true),
            ("classification = \"synack\"", true),
            ("classification != synack", false),
            ("classification != rst", true),
            ("classification = rst", false),
            ("classification = SYNACK", false),
            ("timestamp_str = \"a \\\"q\\\"\"", true),
            ("timestamp-str = \"a \\\"q\\\"\"", true),
            ("response = synack", true),
            // NULL string counts as empty
            ("daddr = \"\"", true),
            ("daddr != \"\"", false),
        ] {
            assert_eq!(r.m(e), want, "{e}");
        }
    }

    #[test]
    fn every_operator_on_addresses() {
        let r = Rec::new().string("saddr", "198.18.0.7").string("classification", "rst");
        for (e, want) in [
            ("saddr = 198.18.0.7", true),
            ("saddr = 198.18.0.8", false),
            ("saddr != 198.18.0.8", true),
            ("saddr < 198.18.0.8", true),
            ("saddr < 198.18.0.7", false),
            ("saddr > 198.17.255.255", true),
            ("saddr > 198.18.0.7", false),
            ("saddr <= 198.18.0.7", true),
            ("saddr >= 198.18.0.7", true),
            ("saddr >= 198.18.1.0", false),
            // compared as addresses, not text: "198.18.0.7" > "198.18.0.10" as strings
            ("saddr < 198.18.0.10", true),
            ("saddr = \"198.18.0.7\"", true),
            // NULL is 0.0.0.0
            ("daddr = 0.0.0.0", true),
            ("daddr < 0.0.0.1", true),
            // a string that is not an address equals no address
            ("classification = 1.2.3.4", false),
            ("classification != 1.2.3.4", true),
            ("classification < 255.255.255.255", false),
            ("classification > 0.0.0.0", false),
        ] {
            assert_eq!(r.m(e), want, "{e}");
        }
    }

    #[test]
    fn precedence_and_parentheses() {
        let r = Rec::new().int("ttl", 5);
        // && binds tighter: true || (false && false) = true
        assert!(r.m("ttl = 5 || ttl = 6 && ttl = 7"));
        // (true || false) && false = false
        assert!(!r.m("(ttl = 5 || ttl = 6) && ttl = 7"));
        // false && false || true = true
        assert!(r.m("ttl = 1 && ttl = 2 || ttl = 5"));
        assert!(!r.m("ttl = 1 && (ttl = 2 || ttl = 5)"));
        assert!(r.m("((((ttl = 5))))"));
        assert!(r.m("ttl=5&&ttl<6||ttl>100"));
    }

    #[test]
    fn documentation_examples() {
        let schema = schema();
        let f = Filter::compile("success = 1 && repeat = 0", &schema).unwrap();
        let mut rec = Record::for_schema(&schema);
        let (succ, rep) = (schema.index_of("success").unwrap(), schema.index_of("repeat").unwrap());
        for (s, r, want) in [(true, false, true), (true, true, false), (false, false, false)] {
            rec.set_bool(succ, s);
            rec.set_bool(rep, r);
            assert_eq!(f.matches(&rec), want);
        }
        let e = "(classification = rst && ttl > 10) || classification = synack";
        let f = Filter::compile(e, &schema).unwrap();
        let (cls, ttl) =
            (schema.index_of("classification").unwrap(), schema.index_of("ttl").unwrap());
        for (c, t, want) in [
            ("rst", 11, true),
            ("rst", 10, false),
            ("synack", 1, true),
            ("synack", 200, true),
            ("other", 200, false),
        ] {
            rec.set_str(cls, c);
            rec.set_int(ttl, t);
            assert_eq!(f.matches(&rec), want, "{c} {t}");
        }
    }

    #[test]
    fn empty_filter_accepts_everything() {
        let f = Filter::compile("   ", &schema()).unwrap();
        assert!(f.is_accept_all());
        assert!(f.matches(&Record::for_schema(&schema())));
        assert!(!Filter::compile("ttl = 1", &schema()).unwrap().is_accept_all());
    }

    #[test]
    fn type_errors_name_field_and_column() {
        assert_eq!(
            err("classification > rst"),
            "--output-filter: column 16: field \"classification\" is a string: strings can only be compared with = and !=, not >"
        );
        let e = err("ttl > 1 && bogus = 3");
        assert!(e.starts_with("--output-filter: column 12: unknown field \"bogus\" (valid fields: saddr, saddr_raw,"), "{e}");
        assert!(e.contains("classification, success, data, repeat"), "{e}");
        assert_eq!(
            err("classification = 5"),
            "--output-filter: column 18: field \"classification\" is a string: compare it with a word or a \"quoted string\", not the number 5"
        );
        assert_eq!(
            err("ttl = abc"),
            "--output-filter: column 7: field \"ttl\" is an integer: compare it with a number, not with the string \"abc\""
        );
        assert!(
            err("ttl = \"5\"")
                .starts_with("--output-filter: column 7: field \"ttl\" is an integer")
        );
        assert!(
            err("success = yes")
                .starts_with("--output-filter: column 11: field \"success\" is a boolean")
        );
        assert!(
            err("ttl = 1.2.3.4")
                .starts_with("--output-filter: column 7: field \"ttl\" is int: an address")
        );
        assert!(
            err("data = abc")
                .starts_with("--output-filter: column 1: field \"data\" has type binary")
        );
        assert!(
            err("saddr >= x").starts_with("--output-filter: column 7: field \"saddr\" is a string")
        );
    }

    // ---- property test: compiled program == reference interpreter ----

    const INT_FIELDS: &[&str] = &["ttl", "sport", "seqnum", "saddr-raw", "timestamp_ts"];
    const BOOL_FIELDS: &[&str] = &["success", "repeat", "cooldown"];
    const STR_FIELDS: &[&str] = &["classification", "timestamp_str", "daddr"];

    fn small_u64() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..4, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
    }

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["synack", "rst", "a", "other", "x-y_z"]).prop_map(String::from)
    }

    fn addr() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            (0u8..3).prop_map(|d| Ipv4Addr::new(198, 18, 0, d)),
            Just(Ipv4Addr::UNSPECIFIED),
            any::<u32>().prop_map(Ipv4Addr::from)
        ]
    }

    fn op() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["=", "!=", "<", ">", "<=", ">=", "=="])
    }

    fn comparison() -> impl Strategy<Value = String> {
        prop_oneof![
            (prop::sample::select(INT_FIELDS), op(), small_u64())
                .prop_map(|(f, o, v)| format!("{f} {o} {v}")),
            (
                prop::sample::select(BOOL_FIELDS),
                op(),
                prop_oneof![
                    (0u64..3).prop_map(|v| v.to_string()),
                    Just("true".to_string()),
                    Just("false".to_string())
                ]
            )
                .prop_map(|(f, o, v)| format!("{f} {o} {v}")),
            (
                prop::sample::select(STR_FIELDS),
                prop::sample::select(vec!["=", "!="]),
                word(),
                any::<bool>()
            )
                .prop_map(|(f, o, v, q)| if q {
                    format!("{f} {o} \"{v}\"")
                } else {
                    format!("{f} {o} {v}")
                }),
            (prop::sample::select(vec!["saddr", "daddr", "classification"]), op(), addr())
                .prop_map(|(f, o, a)| format!("{f} {o} {a}")),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        comparison().prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(" && ")),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(" || ")),
                inner.prop_map(|e| format!("({e})")),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            prop::collection::vec(prop::option::of(small_u64()), INT_FIELDS.len()),
            prop::collection::vec(prop::option::of(any::<bool>()), BOOL_FIELDS.len()),
            prop::collection::vec(prop::option::of(word()), STR_FIELDS.len()),
            prop::option::of(addr()),
        )
            .prop_map(|(ints, bools, strs, sa)| {
                let s = schema();
                let mut r = Record::for_schema(&s);
                for (f, v) in INT_FIELDS.iter().zip(ints) {
                    if let Some(v) = v {
                        r.set_int(s.index_of(f).unwrap(), v);
                    }
                }
                for (f, v) in BOOL_FIELDS.iter().zip(bools) {
                    if let Some(v) = v {
                        r.set_bool(s.index_of(f).unwrap(), v);
                    }
                }
                for (f, v) in STR_FIELDS.iter().zip(strs) {
                    if let Some(v) = v {
                        r.set_str(s.index_of(f).unwrap(), &v);
                    }
                }
                if let Some(a) = sa {
                    r.set_ipv4(0, a);
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn compiled_agrees_with_interpreter(expr in expression(), recs in prop::collection::vec(record(), 1..6)) {
            let s = schema();
            let f = Filter::compile(&expr, &s).unwrap();
            let tree = parse(&expr).unwrap().unwrap();
            for r in &recs {
                prop_assert_eq!(f.matches(r), eval::interpret(&tree, &s, r), "{}", expr);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(expr in "\\PC{0,40}") {
            let s = schema();
            if let Err(e) = Filter::compile(&expr, &s) {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("--output-filter"));
                prop_assert!(!msg.contains('\n'));
            }
        }

        #[test]
        fn token_soup_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
            "ttl", "saddr", "success", "classification", "(", ")", "&&", "||", "=", "!=", "<", ">=",
            "1", "1.2.3.4", "\"x\"", "synack", "true", " ", "99999999999999999999",
        ]), 0..16)) {
            let s = schema();
            let expr = parts.join(" ");
            if let Ok(f) = Filter::compile(&expr, &s) {
                let r = Record::for_schema(&s);
                let tree = parse(&expr).unwrap();
                let naive = tree.is_none_or(|t| eval::interpret(&t, &s, &r));
                prop_assert_eq!(f.matches(&r), naive);
            }
        }
    }
}
