//! The output filter against the reference interpreter, and the -f field list parser.
//! The body lives in `rzmap_fuzz::filter_parse` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::filter_parse(data));
