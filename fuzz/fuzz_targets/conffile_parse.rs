//! The config-file parser, then the command-line parser and resolution of what it produced.
//! The body lives in `rzmap_fuzz::conffile_parse` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::conffile_parse(data));
