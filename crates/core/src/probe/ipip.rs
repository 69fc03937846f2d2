//! `ipip`: finds hosts that decapsulate IP-in-IP from anyone.
//!
//! Each probe is an IPv4 packet from us to the target with protocol 4 (IP-in-IP) whose
//! payload is a second IPv4 packet **from the target to us**: UDP from our source port
//! (the usual window port, `sport_first + (v[1] + probe) % count`) to the target port, carrying
//! the payload (`--probe-args` `text:`, `hex:` or `file:`, at most 200 bytes; default
//! `GET / HTTP/1.1\r\nHost: www\r\n\r\n`, 29 bytes, frame 91). A host that decapsulates forwards the inner packet
//! back to us, so the "reply" is that UDP datagram: from the target, from one of our window
//! ports, to a target port. It is validated so: the sender in scope, the destination port a
//! target port (ZMap always checks this; `--validate-source-port=0` turns it off here), and
//! the source port inside the window of the words computed for (us, target, destination
//! port). Classification `udp` (success).
//!
//! An ICMP destination-unreachable quoting the probe is `icmp-unreach` (failure, as ZMap only
//! for type 3). It must quote the outer header, the whole inner header and 8 bytes of UDP; the
//! inner addresses must be the outer ones swapped, the quoted target in scope, the quoted UDP
//! destination a target port and its source port in the window. ZMap reads past a short
//! capture's end there; rzmap rejects it as truncated.
//!
//! Differences from ZMap 4: an oversized payload is refused rather than cut to 200 bytes
//! with a warning (as the other payload modules do); a `hex:` payload with an odd digit count
//! is refused rather than silently dropping the last digit.

use std::net::Ipv4Addr;

use rzmap_wire::L4Head8;
use rzmap_wire::icmpv4::{self, Icmpv4Packet};
use rzmap_wire::ipv4::{self, Ipv4Packet};
use rzmap_wire::udp::{self, UdpPacket};

use super::payload::{PayloadSpec, parse_payload_arg};
use super::udp_family::{describe_udp_line, reply_udp};
use super::{
    DRYRUN_SEPARATOR, ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject,
    ReplyCheck, ReplyFilter, ReplyFilterKind, ReplyKind, begin_classify, check_icmp_error,
    check_quoted_ports, classification_fields, classify_icmp_error, describe_ip_eth, icmp_fields,
    patch_ip, reply_ip, write_c_hex04, write_eth_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends each target an IP-in-IP packet (protocol 4) whose inner packet is a \
UDP datagram from the target to us, to find hosts that decapsulate IP-in-IP from anyone. The \
inner datagram coming back is classified \"udp\" (success); an ICMP unreachable quoting the \
probe is \"icmp-unreach\" (failure). --probe-args gives the inner payload: text:STRING, \
hex:HEXDIGITS or file:PATH (at most 200 bytes; default an HTTP GET).";

/// Protocol number of IP-in-IP.
pub const PROTO_IPIP: u8 = 4;
/// Largest inner UDP payload.
pub const MAX_PAYLOAD: usize = 200;
/// Default inner UDP payload.
pub const DEFAULT_PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: www\r\n\r\n";
/// Offset of the inner IPv4 header in a probe frame.
pub const INNER_AT: usize = ETH_IP_LEN;
/// Offset of the inner UDP header in a probe frame.
pub const UDP_AT: usize = INNER_AT + 20;
/// Offset of the payload in a probe frame.
pub const PAYLOAD_AT: usize = UDP_AT + udp::HEADER_LEN;

/// The module's output fields, in ZMap's order.
pub static FIELDS: [FieldDef; 10] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        c[0],
        c[1],
        FieldDef::new("sport", FieldType::Int, "UDP source port"),
        FieldDef::new("dport", FieldType::Int, "UDP destination port"),
        i[0],
        i[1],
        i[2],
        i[3],
        FieldDef::new("udp_pkt_size", FieldType::Int, "UDP packet length"),
        FieldDef::new("data", FieldType::Bin, "UDP payload"),
    ]
};

const F_CLASS: usize = 0;
const F_SUCCESS: usize = 1;
const F_SPORT: usize = 2;
const F_ICMP: usize = 4;
const F_SIZE: usize = 8;
const F_DATA: usize = 9;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "ipip",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(IpipScan::new(args)?)),
};

/// The IP-in-IP scan module.
#[derive(Clone, Debug)]
pub struct IpipScan {
    payload: Vec<u8>,
    args: Option<String>,
}

impl IpipScan {
    /// Creates the module from optional `--probe-args` (`text:`, `hex:` or `file:`).
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        let payload = match args {
            None => DEFAULT_PAYLOAD.to_vec(),
            Some(a) => match parse_payload_arg(a, MAX_PAYLOAD, false)? {
                PayloadSpec::Fixed(b) => b,
                _ => {
                    return Err(InputError::new(
                        "--probe-args",
                        "ipip takes text:, hex: or file: payloads only",
                    ));
                }
            },
        };
        Ok(Self { payload, args: args.map(str::to_owned) })
    }
}

/// Appends `ip { saddr: .. | daddr: .. | checksum: .. }` for an IPv4 header.
fn write_ip_line(ip: &Ipv4Packet<&[u8]>, out: &mut String) {
    out.push_str("ip { saddr: ");
    let _ = rzmap_wire::ipv4::write_addr(out, ip.src());
    out.push_str(" | daddr: ");
    let _ = rzmap_wire::ipv4::write_addr(out, ip.dst());
    out.push_str(" | checksum: ");
    write_c_hex04(out, ip.checksum());
    out.push_str(" }\n");
}

/// The quoted probe of an ICMP unreachable: (our address, target, inner UDP head).
fn quoted_probe(
    outer: &Ipv4Packet<&[u8]>,
    icmp: &Icmpv4Packet<&[u8]>,
    chk: &ReplyCheck<'_>,
) -> Result<(Ipv4Addr, Ipv4Addr, L4Head8), Reject> {
    if icmp.msg_type() != icmpv4::TYPE_DEST_UNREACH {
        return Err(Reject::UnexpectedType);
    }
    let q = check_icmp_error(outer, icmp, PROTO_IPIP, chk)?;
    let quoted = Ipv4Packet::new_lax(icmp.data())?;
    let inner = Ipv4Packet::new_lax(quoted.payload())?;
    if inner.protocol() != ipv4::PROTO_UDP {
        return Err(Reject::WrongProtocol);
    }
    if inner.src() != quoted.dst() || inner.dst() != quoted.src() {
        return Err(Reject::NotOurs);
    }
    let head = L4Head8::new(inner.payload()).ok_or(Reject::Truncated)?;
    Ok((q.our_addr, q.target, head))
}

impl ProbeModule for IpipScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        PAYLOAD_AT + self.payload.len()
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::UdpOrIcmp, snaplen: 1500 }
    }
    fn validate_source_port_default(&self) -> bool {
        true
    }
    fn probe_args(&self) -> Option<&str> {
        self.args.as_deref()
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        let plen = self.payload.len();
        write_eth_ip(buf, cfg, PROTO_IPIP, (20 + 20 + 8 + plen) as u16);
        buf[INNER_AT..PAYLOAD_AT].fill(0);
        let mut inner = Ipv4Packet::new_unchecked(&mut buf[INNER_AT..UDP_AT]);
        inner.set_version_and_header_len(20);
        inner.set_tos(0);
        inner.set_total_len((20 + 8 + plen) as u16);
        inner.set_flags_frag(0);
        inner.set_ttl(cfg.ttl);
        inner.set_protocol(ipv4::PROTO_UDP);
        buf[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&((8 + plen) as u16).to_be_bytes());
        buf[PAYLOAD_AT..PAYLOAD_AT + plen].copy_from_slice(&self.payload);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        patch_ip(buf, p);
        let mut inner = Ipv4Packet::new_unchecked(&mut buf[INNER_AT..UDP_AT]);
        inner.set_src(p.dst);
        inner.set_dst(p.src);
        inner.set_ident((p.validation[3] & 0xffff) as u16);
        inner.fill_checksum();
        let sport = cfg.source_port(p.validation[1], p.probe_num);
        let u = &mut buf[UDP_AT..PAYLOAD_AT];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&p.dport.to_be_bytes());
        u[6..8].fill(0);
        PAYLOAD_AT + self.payload.len()
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        describe_udp_line(frame, UDP_AT, out);
        if let Some(inner) = frame.get(INNER_AT..).and_then(|s| Ipv4Packet::new_lax(s).ok()) {
            write_ip_line(&inner, out);
        }
        if frame.len() < ETH_IP_LEN {
            out.push_str(DRYRUN_SEPARATOR);
            out.push('\n');
            return;
        }
        describe_ip_eth(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        let ip = reply_ip(ip)?;
        match ip.protocol() {
            ipv4::PROTO_UDP => {
                let u = UdpPacket::new_checked(ip.payload())?;
                if !(chk.in_scope)(ip.src()) {
                    return Err(Reject::SourceNotInScope);
                }
                // The reflected datagram goes *to* the target port, *from* our port.
                if chk.check_source_port(true) && !chk.target_ports.contains(u.dst_port()) {
                    return Err(Reject::UnexpectedSourcePort);
                }
                let v = chk.validator.words(ip.dst(), ip.src(), u.dst_port());
                if !chk.port_in_window(u.src_port(), v[1]) {
                    return Err(Reject::PortOutsideWindow);
                }
                Ok(ReplyKind::Udp)
            }
            ipv4::PROTO_ICMP => {
                let icmp = Icmpv4Packet::new_checked(ip.payload())?;
                let (us, target, head) = quoted_probe(&ip, &icmp, chk)?;
                check_quoted_ports(us, target, &head, chk)
            }
            _ => Err(Reject::WrongProtocol),
        }
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        if *kind == ReplyKind::Udp {
            let Some(u) = reply_udp(&ip) else { return };
            rec.set_str(base + F_CLASS, "udp");
            rec.set_bool(base + F_SUCCESS, true);
            rec.set_int(base + F_SPORT, u64::from(u.src_port()));
            rec.set_int(base + F_SPORT + 1, u64::from(u.dst_port()));
            rec.set_int(base + F_SIZE, u64::from(u.len()));
            if !u.is_empty() {
                rec.set_bin(base + F_DATA, u.payload());
            }
        } else {
            classify_icmp_error(
                &ip,
                rec,
                "icmp-unreach",
                base + F_CLASS,
                base + F_SUCCESS,
                base + F_ICMP,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Schema, Value};
    use crate::probe::testutil::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn build(m: &IpipScan, env: &Env) -> (Vec<u8>, u16) {
        let (buf, _) = env.build_frame(m, TARGET, 80, 0);
        let sport = u16::from_be_bytes([buf[UDP_AT], buf[UDP_AT + 1]]);
        (buf, sport)
    }

    #[test]
    fn outer_and_inner_packets() {
        let env = Env::new(&[80]);
        let m = IpipScan::new(None).unwrap();
        let (f, sport) = build(&m, &env);
        assert_eq!(DEFAULT_PAYLOAD.len(), 29);
        assert_eq!(f.len(), 91);
        assert_eq!(m.max_frame_len(), 91);
        // The outer packet.
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(outer)) = &p.net else { panic!() };
        let h = outer.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.protocol.0, PROTO_IPIP);
        assert_eq!(h.source, US.octets());
        assert_eq!(h.destination, TARGET.octets());
        assert_eq!(usize::from(h.total_len), f.len() - 14);
        // The inner packet, parsed on its own.
        let inner = SlicedPacket::from_ip(&f[INNER_AT..]).unwrap();
        let Some(NetSlice::Ipv4(ip2)) = inner.net else { panic!() };
        let h2 = ip2.header().to_header();
        assert_eq!(h2.header_checksum, h2.calc_header_checksum());
        assert_eq!(h2.source, TARGET.octets());
        assert_eq!(h2.destination, US.octets());
        assert_eq!(h2.time_to_live, 64);
        assert_eq!(usize::from(h2.total_len), f.len() - INNER_AT);
        let Some(TransportSlice::Udp(u)) = inner.transport else { panic!() };
        assert_eq!(u.source_port(), sport);
        assert!((40000..40100).contains(&sport));
        assert_eq!(u.destination_port(), 80);
        assert_eq!(u.payload(), DEFAULT_PAYLOAD);
        assert_eq!(u.checksum(), 0);

        let mut s = String::new();
        m.describe(&f, true, &mut s);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], format!("udp {{ source: {sport} | dest: 80 | checksum: 0000 }}"));
        assert!(lines[1].starts_with("ip { saddr: 198.19.3.4 | daddr: 198.18.0.1 | checksum: 0X"));
        assert!(lines[2].starts_with("ip { saddr: 198.18.0.1 | daddr: 198.19.3.4 | checksum: 0X"));
        assert!(lines[3].starts_with("eth { "));
        assert_eq!(lines[4], DRYRUN_SEPARATOR);

        let m = IpipScan::new(Some("text:hi")).unwrap();
        assert_eq!(m.max_frame_len(), 64);
        let (f, _) = build(&m, &env);
        assert_eq!(&f[PAYLOAD_AT..], b"hi");
        assert!(IpipScan::new(Some(&format!("text:{}", "x".repeat(201)))).is_err());
        assert!(IpipScan::new(Some(&format!("text:{}", "x".repeat(200)))).is_ok());
        assert!(IpipScan::new(Some("nope")).is_err());
    }

    #[test]
    fn the_reflected_inner_packet_validates() {
        let env = Env::new(&[80]);
        let chk = env.check(None);
        let m = IpipScan::new(None).unwrap();
        let (f, sport) = build(&m, &env);
        // What a decapsulating host forwards: exactly the inner packet.
        let r = f[INNER_AT..].to_vec();
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::Udp));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&r, &ReplyKind::Udp, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
        assert_eq!(g("classification"), Value::Str("udp"));
        assert_eq!(g("success"), Value::Bool(true));
        assert_eq!(g("sport"), Value::Int(u64::from(sport)));
        assert_eq!(g("dport"), Value::Int(80));
        assert_eq!(g("udp_pkt_size"), Value::Int(37));
        assert_eq!(g("data"), Value::Bin(DEFAULT_PAYLOAD));
        assert_eq!(g("icmp_type"), Value::Null);

        // One altered field each.
        let wrong = if sport == 40099 { 40000 } else { sport + 1 };
        let r2 = udp_reply(TARGET, US, wrong, 80, DEFAULT_PAYLOAD);
        assert_eq!(m.validate(&r2, &chk), Err(Reject::PortOutsideWindow));
        let r3 = udp_reply(TARGET, US, sport, 81, DEFAULT_PAYLOAD);
        assert_eq!(m.validate(&r3, &chk), Err(Reject::UnexpectedSourcePort));
        let r4 = udp_reply(Ipv4Addr::new(192, 0, 2, 1), US, sport, 80, DEFAULT_PAYLOAD);
        assert_eq!(m.validate(&r4, &chk), Err(Reject::SourceNotInScope));
        // An ordinary answer from the target port to our port is not the reflected packet.
        let r5 = udp_reply(TARGET, US, 80, sport, b"HTTP/1.1 200 OK\r\n");
        assert!(m.validate(&r5, &chk).is_err());
        assert_eq!(m.validate(&r[..27], &chk), Err(Reject::Truncated));
    }

    #[test]
    fn icmp_unreachable_quoting_the_probe() {
        let env = Env::new(&[80]);
        let chk = env.check(None);
        let m = IpipScan::new(None).unwrap();
        let (f, _) = build(&m, &env);
        let probe = &f[14..];
        let e = icmp_error(ROUTER, US, 3, 2, probe, 48);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("icmp-unreach"));
        assert_eq!(g("success"), Value::Bool(false));
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
        assert_eq!(g("icmp_responder"), Value::Str("198.18.200.1"));
        assert_eq!(g("icmp_unreach_str"), Value::Str("protocol unreachable"));
        assert_eq!(g("sport"), Value::Null);
        // Too short a quote, another type, swapped addresses, another port.
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 2, probe, 47), &chk),
            Err(Reject::Truncated)
        );
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 11, 0, probe, 48), &chk),
            Err(Reject::UnexpectedType)
        );
        let mut forged = probe.to_vec();
        forged[32] ^= 1; // inner source address
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 2, &forged, 48), &chk),
            Err(Reject::NotOurs)
        );
        let mut forged = probe.to_vec();
        forged[42..44].copy_from_slice(&81u16.to_be_bytes()); // inner UDP destination port
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 2, &forged, 48), &chk),
            Err(Reject::UnexpectedSourcePort)
        );
        let mut forged = probe.to_vec();
        forged[40] ^= 0x40; // inner UDP source port, far outside the window
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 2, &forged, 48), &chk),
            Err(Reject::PortOutsideWindow)
        );
    }

    proptest::proptest! {
        #[test]
        fn every_probe_reflected_or_quoted_validates(
            host in proptest::num::u16::ANY, dport in 1u16.., probe in 0u32..4, plen in 0usize..=200,
        ) {
            let mut env = Env::new(&[dport]);
            env.probes = 4;
            let chk = env.check(None);
            let cfg = env.config(&[dport]);
            let m = IpipScan::new(Some(&format!("text:{}", "p".repeat(plen)))).unwrap();
            let dst = Ipv4Addr::new(198, 19, (host >> 8) as u8, host as u8);
            let mut buf = vec![0u8; 512];
            m.prepare(&mut buf, &cfg);
            let v = env.validator.words(US, dst, dport);
            let p = ProbeInput { src: US, dst, dport, probe_num: probe, validation: v, now: Default::default() };
            let n = m.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(2));
            proptest::prop_assert_eq!(n, 62 + plen);
            let inner = SlicedPacket::from_ip(&buf[INNER_AT..n]).unwrap();
            let Some(TransportSlice::Udp(u)) = inner.transport else { panic!() };
            proptest::prop_assert_eq!(u.source_port(), cfg.source_port(v[1], probe));
            proptest::prop_assert_eq!(u.payload().len(), plen);
            proptest::prop_assert_eq!(m.validate(&buf[INNER_AT..n], &chk), Ok(ReplyKind::Udp));
            let e = icmp_error(ROUTER, US, 3, 2, &buf[14..n], 48);
            proptest::prop_assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        }
    }
}
