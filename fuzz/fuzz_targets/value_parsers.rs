//! Value parsers: port lists, -s ranges, source-IP lists, bandwidth, -n, MACs, cores, integers, JSON.
//! The body lives in `rzmap_fuzz::value_parsers` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::value_parsers(data));
