//! Every rzmap-wire view (Ethernet, IPv4, TCP and its options, UDP, ICMP and its quoted datagram) over arbitrary bytes.
//! The body lives in `rzmap_fuzz::wire_parse` (shared with the stable smoke test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rzmap_fuzz::wire_parse(data));
