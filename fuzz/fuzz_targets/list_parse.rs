//! Allowlist/blocklist text, single prefixes, -I list text, and a target space built from the parsed prefixes.
//! The body lives in `rzmap_fuzz::list_parse` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::list_parse(data));
