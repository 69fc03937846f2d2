//! UDP payload templates (parse, then render into a max_len buffer) and the fixed --probe-args payload forms.
//! The body lives in `rzmap_fuzz::template_parse` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::template_parse(data));
