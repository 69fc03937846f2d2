//! The nftables ruleset of the net namespace: per-address behaviour from the truth's sets.

use crate::spec::Truth;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// Name of the nftables table (family `ip`) in the net namespace.
pub const TABLE: &str = "rzlab";
/// Named counter of every packet that reached a blocklisted address.
pub const BLOCKLISTED_COUNTER: &str = "blocklisted";
/// Named counter of probe-like packets (TCP SYN without ACK, ICMP echo request, any UDP)
/// that reached the prefix from the link.
pub const PROBES_COUNTER: &str = "probes";
/// Named counters of the answers the net namespace sent over the link, by kind
/// (see [`crate::lab::ReplyCounts`]).
pub const REPLY_COUNTERS: [&str; 5] =
    ["sent_synack", "sent_rst", "sent_echo_reply", "sent_unreach", "sent_udp"];
/// Dynamic set with a per-element counter of probe-like packets per destination address.
pub const PROBED_SET: &str = "probed";

fn set(out: &mut String, name: &str, addrs: &[Ipv4Addr]) {
    let _ = write!(out, "  set {name} {{ type ipv4_addr;");
    if !addrs.is_empty() {
        out.push_str(" elements = { ");
        for (i, a) in addrs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{a}");
        }
        out.push_str(" }");
    }
    out.push_str(" }\n");
}

/// The ruleset (for `nft -f -`) that makes the net namespace behave as `truth` says.
/// `link_if` is the net side of the veth pair; `http_port` shares the TCP port's sets.
pub fn ruleset(truth: &Truth, link_if: &str, http_port: Option<u16>) -> String {
    let mut r = String::with_capacity(64 + 16 * truth.prefix.size() as usize);
    let _ = writeln!(r, "table ip {TABLE} {{");
    let _ = writeln!(r, "  counter {BLOCKLISTED_COUNTER} {{ }}");
    let _ = writeln!(r, "  counter {PROBES_COUNTER} {{ }}");
    for c in REPLY_COUNTERS {
        let _ = writeln!(r, "  counter {c} {{ }}");
    }
    let _ = writeln!(
        r,
        "  set {PROBED_SET} {{ type ipv4_addr; size {}; flags dynamic; counter; }}",
        truth.prefix.size().max(16)
    );
    set(&mut r, "blocklisted", &truth.blocklisted);
    set(&mut r, "silent", &truth.silent);
    set(&mut r, "unreachable", &truth.unreachable);
    set(&mut r, "tcp_open", &truth.open_tcp);
    set(&mut r, "tcp_filtered", &truth.filtered_tcp);
    set(&mut r, "echo", &truth.echo);
    set(&mut r, "udp_open", &truth.udp_open);
    let tcp_ports = match http_port {
        Some(h) => format!("{{ {}, {h} }}", truth.tcp_port),
        None => truth.tcp_port.to_string(),
    };
    let p = truth.prefix;
    let _ = write!(
        r,
        "  chain input {{
    type filter hook input priority filter; policy accept;
    iifname != \"{link_if}\" accept
    ip daddr != {p} accept
    tcp flags & (syn | ack) == syn goto probe
    icmp type echo-request goto probe
    meta l4proto udp goto probe
    goto decide
  }}
  chain probe {{
    counter name \"{PROBES_COUNTER}\"
    update @{PROBED_SET} {{ ip daddr }}
    goto decide
  }}
  chain decide {{
    ip daddr @blocklisted counter name \"{BLOCKLISTED_COUNTER}\" accept
    ip daddr @silent drop
    ip daddr @unreachable reject with icmp type host-unreachable
    icmp type echo-request ip daddr != @echo drop
    tcp dport {tcp_ports} ip daddr @tcp_filtered drop
    tcp dport {tcp_ports} ip daddr != @tcp_open reject with tcp reset
    udp dport {udp} ip daddr != @udp_open reject with icmp type port-unreachable
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname != \"{link_if}\" accept
    tcp flags & (syn | ack) == syn | ack counter name \"sent_synack\" accept
    tcp flags & rst == rst counter name \"sent_rst\" accept
    icmp type echo-reply counter name \"sent_echo_reply\" accept
    icmp type destination-unreachable counter name \"sent_unreach\" accept
    meta l4proto udp counter name \"sent_udp\" accept
  }}
}}
",
        udp = truth.udp_port
    );
    r
}

/// The scanner namespace's ruleset: the same reply counters, counted where frames from the
/// link enter the scanner's IP stack (prerouting; AF_PACKET taps have seen them by then).
pub fn scanner_ruleset(link_if: &str) -> String {
    let mut r = format!("table ip {TABLE} {{\n");
    for c in REPLY_COUNTERS {
        let _ = writeln!(r, "  counter {c} {{ }}");
    }
    let _ = write!(
        r,
        "  chain prerouting {{
    type filter hook prerouting priority raw; policy accept;
    iifname != \"{link_if}\" accept
    tcp flags & (syn | ack) == syn | ack counter name \"sent_synack\" accept
    tcp flags & rst == rst counter name \"sent_rst\" accept
    icmp type echo-reply counter name \"sent_echo_reply\" accept
    icmp type destination-unreachable counter name \"sent_unreach\" accept
    meta l4proto udp counter name \"sent_udp\" accept
  }}
}}
"
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    #[test]
    fn ruleset_names_every_set_and_port() {
        let mut spec = LabSpec::new("198.18.0.0/28".parse().unwrap(), 1);
        spec.blocklisted = vec![Ipv4Addr::new(198, 18, 0, 3)];
        let t = Truth::of(&spec);
        let r = ruleset(&t, "rzn1-0", Some(8080));
        assert!(r.contains("iifname != \"rzn1-0\" accept"));
        assert!(r.contains("ip daddr != 198.18.0.0/28 accept"));
        assert!(r.contains("tcp dport { 80, 8080 }"));
        assert!(r.contains("udp dport 53 "));
        assert!(r.contains("set blocklisted { type ipv4_addr; elements = { 198.18.0.3 } }"));
        for a in &t.open_tcp {
            assert!(r.contains(&a.to_string()));
        }
        let empty =
            ruleset(&Truth::of(&LabSpec::new("198.18.0.0/32".parse().unwrap(), 1)), "x", None);
        assert!(empty.contains("set blocklisted { type ipv4_addr; }"));
    }
}
