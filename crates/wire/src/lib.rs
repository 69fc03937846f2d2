//! Zero-copy typed views over packet bytes: Ethernet, IPv4, TCP (with options), UDP, ICMPv4,
//! and Internet checksums. No allocation, no `unsafe`.
#![forbid(unsafe_code)]
