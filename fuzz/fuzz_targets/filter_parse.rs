//! Fuzzes the output filter: any text either compiles or gives a one-line `--output-filter`
//! error, never a panic; compiled filters agree with the reference interpreter. Also feeds the
//! text to `-f` parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rzmap_core::fields::{FieldDef, FieldType, Record, Schema};
use rzmap_core::filter::{Filter, eval, parse};
use rzmap_core::output::FieldSelection;

const TCP: &[FieldDef] = &[
    FieldDef::new("sport", FieldType::Int, "TCP source port"),
    FieldDef::new("classification", FieldType::Str, "packet classification"),
    FieldDef::new("success", FieldType::Bool, "is response considered success"),
    FieldDef::new("data", FieldType::Bin, "payload"),
];

fuzz_target!(|data: &[u8]| {
    // First byte seeds the record, the rest is the expression.
    let Some((&seed, text)) = data.split_first() else { return };
    let Ok(expr) = std::str::from_utf8(text) else { return };
    let schema = Schema::for_module(TCP);
    let _ = FieldSelection::parse(expr, &schema);
    match Filter::compile(expr, &schema) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("--output-filter") && !msg.contains('\n'));
        }
        Ok(f) => {
            let mut rec = Record::for_schema(&schema);
            let i = |n: &str| schema.index_of(n).unwrap_or(0);
            if seed & 1 != 0 {
                rec.set_ipv4(i("saddr"), std::net::Ipv4Addr::new(198, 18, 0, seed));
            }
            if seed & 2 != 0 {
                rec.set_int(i("ttl"), u64::from(seed));
                rec.set_int(i("sport"), u64::from(seed) << 56);
            }
            if seed & 4 != 0 {
                rec.set_bool(i("success"), seed & 8 != 0);
            }
            if seed & 16 != 0 {
                rec.set_str(i("classification"), if seed & 32 != 0 { "synack" } else { "rst" });
            }
            let naive = match parse(expr) {
                Ok(Some(tree)) => eval::interpret(&tree, &schema, &rec),
                Ok(None) => true,
                Err(e) => panic!("compiled but does not parse: {e}"),
            };
            assert_eq!(f.matches(&rec), naive, "{expr:?}");
        }
    }
});
