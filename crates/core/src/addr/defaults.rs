//! ZMap's default blocklist (`conf/blocklist.conf`): IANA special-purpose and multicast space.

use super::prefix::{Ipv4Prefix, parse_prefix};

/// The default blocklist as `(prefix, comment)` pairs, in the order of ZMap's file.
///
/// ZMap's documentation prints the benchmarking range as `192.18.0.0/15`, a typo: the range
/// (and ZMap's shipped file) is `198.18.0.0/15`. With this list the allowed count of the full
/// IPv4 space is 3,702,258,432.
pub const DEFAULT_BLOCKLIST: &[(&str, &str)] = &[
    ("0.0.0.0/8", "RFC1122: \"This host on this network\""),
    ("10.0.0.0/8", "RFC1918: Private-Use"),
    ("100.64.0.0/10", "RFC6598: Shared Address Space"),
    ("127.0.0.0/8", "RFC1122: Loopback"),
    ("169.254.0.0/16", "RFC3927: Link Local"),
    ("172.16.0.0/12", "RFC1918: Private-Use"),
    ("192.0.0.0/24", "RFC6890: IETF Protocol Assignments"),
    ("192.0.2.0/24", "RFC5737: Documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "RFC3068: 6to4 Relay Anycast"),
    ("192.168.0.0/16", "RFC1918: Private-Use"),
    ("198.18.0.0/15", "RFC2544: Benchmarking"),
    ("198.51.100.0/24", "RFC5737: Documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "RFC5737: Documentation (TEST-NET-3)"),
    ("240.0.0.0/4", "RFC1112: Reserved"),
    ("255.255.255.255/32", "RFC0919: Limited Broadcast"),
    ("224.0.0.0/4", "RFC5771: Multicast/Reserved"),
];

/// The default blocklist as parsed prefixes.
pub fn default_blocklist() -> Vec<Ipv4Prefix> {
    DEFAULT_BLOCKLIST.iter().filter_map(|(p, _)| parse_prefix(p).ok()).collect()
}

/// The default blocklist as the text of a blocklist file (with comments), e.g. to install as
/// `/etc/rzmap/blocklist.conf`.
pub fn default_blocklist_text() -> String {
    let mut s = String::from(
        "# From the IANA IPv4 Special-Purpose Address Registry and the Multicast Address Space Registry\n",
    );
    for (p, c) in DEFAULT_BLOCKLIST {
        s.push_str(&format!("{p:<20}# {c}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_ranges_all_parse() {
        assert_eq!(DEFAULT_BLOCKLIST.len(), 16);
        assert_eq!(default_blocklist().len(), 16);
        assert!(default_blocklist().iter().all(|p| p.addr == p.network()));
        let parsed = crate::addr::list::parse_list(&default_blocklist_text(), "x", false).unwrap();
        assert_eq!(crate::addr::list::prefixes_of(&parsed), default_blocklist());
    }
}
