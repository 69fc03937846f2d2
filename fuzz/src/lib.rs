//! The bodies of rzmap's fuzz targets, shared by the libFuzzer binaries (`fuzz_targets/*.rs`)
//! and the stable-toolchain smoke test (`tests/fuzz_smoke.rs` in the root package includes
//! this file as a module, so it must only use crates that package can see: `rzmap`,
//! `rzmap_core`, `rzmap_wire` and `arbitrary`).
//!
//! Every target takes arbitrary input, must never panic, and asserts cheap invariants beyond
//! that: errors are one line naming their input, parsed values re-format and re-parse to the
//! same value, and a reply that validation accepts is long enough for every header it read.
#![allow(clippy::missing_panics_doc)]

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use rzmap_core::addr::{self, IpList, Ipv4Prefix, TargetSpace};
use rzmap_core::aesrand::AesRand;
use rzmap_core::error::InputError;
use rzmap_core::fields::{FieldDef, FieldType, Record, Schema};
use rzmap_core::probe::adapter::{ReplyProcessor, ScopeFn};
use rzmap_core::probe::payload::{PayloadSpec, parse_payload_arg};
use rzmap_core::probe::template::{MAX_UDP_PAYLOAD, Template, TemplateInput};
use rzmap_core::probe::{
    self, DRYRUN_SEPARATOR, ETH_IP_LEN, PortBitmap, ProbeConfig, ProbeInput, ProbeModule,
    ReplyCheck, ReplyKind,
};
use rzmap_core::validate::Validator;
use rzmap_wire::tcp::{TcpOption, TcpOptionSummary, TcpOptions};
use rzmap_wire::{EthernetFrame, Icmpv4Packet, Ipv4Packet, L4Head8, TcpPacket, UdpPacket};

/// Asserts that an error displays as one line starting with `prefix`.
fn assert_one_line(e: &InputError, prefix: &str) {
    let msg = e.to_string();
    assert!(!msg.contains('\n') && !msg.contains('\r'), "multi-line error: {msg:?}");
    assert!(msg.starts_with(prefix), "error {msg:?} does not start with {prefix:?}");
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

// ---------------------------------------------------------------------------------------------
// wire_parse

/// Every packet view over arbitrary bytes: accessors stay in bounds and agree with the raw
/// bytes read independently; TCP options never run past the option bytes; ICMP quotes are
/// inside the ICMP data.
pub fn wire_parse(data: &[u8]) {
    if let Ok(eth) = EthernetFrame::new_checked(data) {
        assert_eq!(eth.payload().len(), data.len() - 14);
        assert_eq!(usize::from(eth.ethertype()), be16(data, 12));
        let mut s = String::new();
        let _ = rzmap_wire::ethernet::write_mac(&mut s, eth.src());
        assert_eq!(s.len(), 17);
    }
    ipv4(data);
    if let Some(rest) = data.get(14..) {
        ipv4(rest);
    }
    tcp(data);
    udp(data);
    icmp(data);
    if let Some(h) = L4Head8::new(data) {
        assert_eq!(usize::from(h.src_port()), be16(data, 0));
        assert_eq!(usize::from(h.icmp_seq()), be16(data, 6));
    } else {
        assert!(data.len() < 8);
    }
    let _ = TcpOptionSummary::parse(data);
}

fn ipv4(data: &[u8]) {
    let lax = Ipv4Packet::new_lax(data);
    let checked = Ipv4Packet::new_checked(data);
    assert!(!(checked.is_ok() && lax.is_err()));
    let Ok(ip) = lax else {
        // Independent check of the rejection reasons.
        let ok = data.len() >= 20
            && data[0] >> 4 == 4
            && usize::from(data[0] & 15) * 4 >= 20
            && usize::from(data[0] & 15) * 4 <= data.len()
            && be16(data, 2) >= usize::from(data[0] & 15) * 4;
        assert!(!ok, "new_lax refused a well-formed header");
        return;
    };
    let hl = ip.header_len();
    assert!(data.len() >= 20 && (20..=60).contains(&hl) && hl <= data.len());
    assert_eq!(ip.version(), 4);
    assert_eq!(usize::from(ip.total_len()), be16(data, 2));
    assert!(usize::from(ip.total_len()) >= hl);
    assert_eq!(ip.src().octets(), [data[12], data[13], data[14], data[15]]);
    assert_eq!(ip.dst().octets(), [data[16], data[17], data[18], data[19]]);
    let p = ip.payload();
    assert_eq!(p.len(), usize::from(ip.total_len()).min(data.len()) - hl);
    assert_eq!(ip.is_truncated(), checked.is_err());
    let _ = (ip.verify_checksum(), ip.tos(), ip.ident(), ip.ttl(), ip.protocol(), ip.checksum());
    let _ = (ip.dont_frag(), ip.more_frags(), ip.frag_offset());
    tcp(p);
    udp(p);
    icmp(p);
}

fn tcp(data: &[u8]) {
    let Ok(t) = TcpPacket::new_checked(data) else {
        assert!(
            data.len() < 20
                || usize::from(data[12] >> 4) * 4 < 20
                || usize::from(data[12] >> 4) * 4 > data.len()
        );
        return;
    };
    let hl = t.header_len();
    assert!((20..=60).contains(&hl) && hl <= data.len());
    assert_eq!(t.options().len(), hl - 20);
    assert_eq!(t.payload().len(), data.len() - hl);
    let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags(), t.window(), t.urgent());
    let _ = (t.syn(), t.ack_flag(), t.rst(), t.checksum());
    let _ = t.verify_checksum(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 19, 0, 1));
    tcp_options(t.options());
    tcp_options(data);
}

/// The option iterator: each option's bytes lie inside the input, the iterator stops after an
/// error, and the summary equals the fold of the iterator.
fn tcp_options(opts: &[u8]) {
    let mut consumed = 0usize;
    let mut n = 0usize;
    let mut summary = TcpOptionSummary::default();
    let mut it = TcpOptions::new(opts);
    for o in it.by_ref() {
        n += 1;
        assert!(n <= opts.len(), "more options than bytes");
        match o {
            Err(_) => break,
            Ok(TcpOption::EndOfList | TcpOption::Nop) => consumed += 1,
            Ok(TcpOption::Mss(v)) => {
                consumed += 4;
                summary.mss = Some(v);
            }
            Ok(TcpOption::WindowScale(v)) => {
                consumed += 3;
                summary.wscale = Some(v);
            }
            Ok(TcpOption::SackPermitted) => {
                consumed += 2;
                summary.sack_perm = true;
            }
            Ok(TcpOption::Timestamp { val, ecr }) => {
                consumed += 10;
                summary.timestamp = Some((val, ecr));
            }
            Ok(TcpOption::Unknown { kind, data }) => {
                assert!(!matches!(kind, 0 | 1 | 2 | 3 | 4 | 8), "known kind {kind} as unknown");
                consumed += 2 + data.len();
            }
        }
        assert!(consumed <= opts.len(), "options ran past their bytes");
    }
    assert!(it.next().is_none(), "iterator resumed after the end or an error");
    assert_eq!(TcpOptionSummary::parse(opts), summary);
}

fn udp(data: &[u8]) {
    let Ok(u) = UdpPacket::new_checked(data) else {
        assert!(data.len() < 8);
        return;
    };
    let p = u.payload();
    assert!(p.len() <= data.len() - 8);
    assert!(p.len() <= usize::from(u.len()).saturating_sub(8));
    assert_eq!(u.is_empty(), usize::from(u.len()) <= 8);
    let _ = (u.src_port(), u.dst_port(), u.checksum());
}

fn icmp(data: &[u8]) {
    let Ok(m) = Icmpv4Packet::new_checked(data) else {
        assert!(data.len() < 8);
        return;
    };
    assert_eq!(m.data().len(), data.len() - 8);
    assert_eq!(m.as_bytes().len(), data.len());
    let _ = (m.msg_type(), m.code(), m.checksum(), m.echo_ident(), m.echo_seq());
    let _ = m.verify_checksum();
    match m.quoted() {
        Some(q) => {
            assert!(m.is_error());
            assert!(q.header_len() <= m.data().len());
            assert!(q.payload().len() <= m.data().len() - q.header_len());
            ipv4(m.data());
            if let Some(h) = L4Head8::new(q.payload()) {
                let _ = (h.dst_port(), h.tcp_seq(), h.icmp_type(), h.icmp_ident());
            }
        }
        None => assert!(!m.is_error() || Ipv4Packet::new_lax(m.data()).is_err()),
    }
}

// ---------------------------------------------------------------------------------------------
// reply_validate

/// Our scanner's address.
pub const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// A router that sends ICMP errors.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
/// The target ports of the fixed [`ReplyCheck`].
pub const TARGET_PORTS: [u16; 3] = [80, 443, 53];

/// The scanned space: 198.19.0.0/16.
pub fn in_scope(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && o[1] == 19
}

/// The modules the reply target exercises (with their `--probe-args`).
pub const MODULES: &[(&str, Option<&str>)] = &[
    ("tcp_synscan", None),
    ("tcp_synscan", Some("bsd")),
    ("icmp_echoscan", None),
    ("icmp_echoscan", Some("hex:00ff00ff")),
    ("udp", Some("text:hello")),
    ("udp", Some("hex:")),
];

/// One reply to validate: built from a real probe of one module, or raw bytes, then mutated.
#[derive(Arbitrary, Clone, Debug)]
pub struct ReplyCase {
    /// Index into [`MODULES`] (modulo its length).
    pub module: u8,
    /// What the packet starts as.
    pub shape: Shape,
    /// The probe number the probe was sent with.
    pub probe_num: u8,
    /// Which target port (index into [`TARGET_PORTS`]).
    pub port: u8,
    /// The low 16 bits of the target (198.19.x.y).
    pub target_low: u16,
    /// Mutations applied in order (at most 16 are used).
    pub mutations: Vec<Mutation>,
}

/// The starting packet of a [`ReplyCase`].
#[derive(Arbitrary, Clone, Debug)]
pub enum Shape {
    /// The answer the module expects (SYN-ACK or RST, UDP reply, echo reply).
    Answer {
        /// For TCP: answer with RST instead of SYN-ACK.
        rst: bool,
        /// TCP, UDP or echo payload.
        payload: Vec<u8>,
    },
    /// An ICMP error quoting the probe.
    IcmpError {
        /// ICMP type (low 2 bits pick 3, 4, 5 or 11 unless `raw_type`).
        ty: u8,
        /// Use `ty` as is.
        raw_type: bool,
        /// ICMP code.
        code: u8,
        /// How many bytes of the probe's IP packet are quoted (28 + this, capped).
        quote_extra: u8,
        /// Quote everything but this many bytes short of 28 (when `quote_extra` is 0).
        quote_short: u8,
    },
    /// Arbitrary bytes.
    Raw(Vec<u8>),
}

/// A structured change to a reply.
#[derive(Arbitrary, Clone, Debug)]
pub enum Mutation {
    /// Overwrite one byte (index modulo the length).
    SetByte { at: u16, value: u8 },
    /// Flip bits of one byte.
    XorByte { at: u16, mask: u8 },
    /// Cut the packet.
    Truncate { len: u16 },
    /// Add bytes at the end.
    Append(Vec<u8>),
    /// Set the IP total length.
    SetTotalLen(u16),
    /// Set the IP header length nibble.
    SetIhl(u8),
    /// Set the IP protocol.
    SetProtocol(u8),
    /// Set the flags and fragment offset word.
    SetFragment(u16),
    /// Overwrite a byte after the outer IP header.
    SetL4Byte { at: u8, value: u8 },
    /// Set the TCP data offset nibble.
    SetTcpOffset(u8),
    /// Overwrite a byte of the quoted datagram of an ICMP error (outer header + 8 + at).
    SetQuotedByte { at: u8, value: u8 },
    /// Insert TCP options after a 20-byte TCP header and fix the data offset.
    InsertTcpOptions(Vec<u8>),
    /// Recompute the outer IP header checksum.
    FixIpChecksum,
}

/// Everything a [`ReplyCheck`] borrows, fixed for the whole run.
pub struct ReplyEnv {
    /// The run's validator (fixed key).
    pub validator: Validator,
    /// The probe configuration (source ports 40000..40100, two probes).
    pub cfg: ProbeConfig,
    /// Target ports as a bitmap.
    pub ports: PortBitmap,
}

impl Default for ReplyEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyEnv {
    /// The fixed environment.
    pub fn new() -> Self {
        let cfg = ProbeConfig {
            sport_first: 40000,
            sport_count: 100,
            probes: 2,
            target_ports: TARGET_PORTS.to_vec(),
            ttl: 64,
            timestamp: 1_700_000_000,
            ..ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        };
        Self {
            validator: Validator::new(*b"rzmap-fuzz-key!!"),
            ports: PortBitmap::new(&TARGET_PORTS),
            cfg,
        }
    }

    /// A checker with an optional source-port override.
    pub fn check(&self, override_sport: Option<bool>) -> ReplyCheck<'_> {
        ReplyCheck {
            validator: &self.validator,
            sport_first: self.cfg.sport_first,
            sport_count: self.cfg.sport_count,
            probes: self.cfg.probes,
            in_scope: &in_scope,
            target_ports: &self.ports,
            validate_source_port: override_sport,
        }
    }
}

fn put_ip_header(out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) {
    let total = (20 + l4_len) as u16;
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0x12, 0x34, 0x40, 0, 57, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = rzmap_wire::checksum::checksum(&out[out.len() - 20..]);
    let at = out.len() - 10;
    out[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Builds the probe the module sends for this case and the reply the case describes.
/// Returns (reply, expected kind when the unmutated reply must validate).
fn build_reply(
    m: &dyn ProbeModule,
    env: &ReplyEnv,
    case: &ReplyCase,
) -> (Vec<u8>, Option<ReplyKind>) {
    let target = Ipv4Addr::from(0xc613_0000 | u32::from(case.target_low));
    // Modules without ports (icmp_echoscan) get port 0 from the engine.
    let dport =
        if m.needs_ports() { TARGET_PORTS[usize::from(case.port) % TARGET_PORTS.len()] } else { 0 };
    let probe_num = u32::from(case.probe_num);
    let p = ProbeInput {
        src: US,
        dst: target,
        dport,
        probe_num,
        validation: env.validator.words(US, target, dport),
        now: Duration::from_secs(1_700_000_000),
    };
    let mut frame = vec![0u8; m.max_frame_len().max(ETH_IP_LEN + 64)];
    m.prepare(&mut frame, &env.cfg);
    let mut rng = AesRand::from_seed(7);
    let n = m.make(&mut frame, &env.cfg, &p, &mut rng);
    let mut described = String::new();
    m.describe(&frame[..n], true, &mut described);
    assert!(described.ends_with(&format!("{DRYRUN_SEPARATOR}\n")));
    let probe_ip = &frame[14..n];
    let l4 = &probe_ip[20..];
    let in_window = probe_num < env.cfg.probes;
    let mut out = Vec::with_capacity(128);
    match &case.shape {
        Shape::Raw(bytes) => (bytes.clone(), None),
        Shape::Answer { rst, payload } => {
            let payload = &payload[..payload.len().min(256)];
            match probe_ip[9] {
                6 => {
                    let seg_len = 20 + payload.len();
                    put_ip_header(&mut out, target, US, 6, seg_len);
                    let start = out.len();
                    let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
                    let ack = if *rst { seq } else { seq.wrapping_add(1) };
                    out.extend_from_slice(&l4[2..4]);
                    out.extend_from_slice(&l4[0..2]);
                    out.extend_from_slice(&99u32.to_be_bytes());
                    out.extend_from_slice(&ack.to_be_bytes());
                    out.extend_from_slice(&[0x50, if *rst { 0x14 } else { 0x12 }, 0x72, 0x10]);
                    out.extend_from_slice(&[0, 0, 0, 0]);
                    out.extend_from_slice(payload);
                    let c = rzmap_wire::checksum::transport_checksum(target, US, 6, &out[start..]);
                    out[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
                    let kind = if *rst { ReplyKind::Rst } else { ReplyKind::SynAck };
                    (out, in_window.then_some(kind))
                }
                17 => {
                    put_ip_header(&mut out, target, US, 17, 8 + payload.len());
                    out.extend_from_slice(&l4[2..4]);
                    out.extend_from_slice(&l4[0..2]);
                    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(payload);
                    (out, in_window.then_some(ReplyKind::Udp))
                }
                _ => {
                    put_ip_header(&mut out, target, US, 1, 8 + payload.len());
                    let start = out.len();
                    out.extend_from_slice(&[0, 0, 0, 0]);
                    out.extend_from_slice(&l4[4..8]);
                    out.extend_from_slice(payload);
                    let c = rzmap_wire::checksum::checksum(&out[start..]);
                    out[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
                    (out, Some(ReplyKind::EchoReply))
                }
            }
        }
        Shape::IcmpError { ty, raw_type, code, quote_extra, quote_short } => {
            let ty = if *raw_type { *ty } else { [3, 4, 5, 11][usize::from(*ty & 3)] };
            let quote_len = if *quote_extra > 0 {
                28 + usize::from(*quote_extra)
            } else {
                28usize.saturating_sub(usize::from(*quote_short))
            };
            let quote = &probe_ip[..quote_len.min(probe_ip.len())];
            put_ip_header(&mut out, ROUTER, US, 1, 8 + quote.len());
            let start = out.len();
            out.extend_from_slice(&[ty, *code, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(quote);
            let c = rzmap_wire::checksum::checksum(&out[start..]);
            out[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
            let valid_type = matches!(ty, 3 | 4 | 5 | 11);
            let expect =
                (valid_type && quote.len() >= 28 && in_window).then_some(ReplyKind::IcmpError);
            (out, expect)
        }
    }
}

fn apply(pkt: &mut Vec<u8>, mu: &Mutation) {
    let len = pkt.len();
    let ihl = pkt.first().map_or(20, |b| usize::from(b & 15) * 4);
    let set = |pkt: &mut Vec<u8>, at: usize, v: u8| {
        if let Some(b) = pkt.get_mut(at) {
            *b = v;
        }
    };
    match mu {
        Mutation::SetByte { at, value } if len > 0 => pkt[usize::from(*at) % len] = *value,
        Mutation::XorByte { at, mask } if len > 0 => pkt[usize::from(*at) % len] ^= *mask,
        Mutation::Truncate { len: l } => pkt.truncate(usize::from(*l)),
        Mutation::Append(b) => pkt.extend_from_slice(&b[..b.len().min(128)]),
        Mutation::SetTotalLen(v) if len >= 4 => pkt[2..4].copy_from_slice(&v.to_be_bytes()),
        Mutation::SetIhl(v) if len > 0 => pkt[0] = (pkt[0] & 0xf0) | (v & 15),
        Mutation::SetProtocol(v) => set(pkt, 9, *v),
        Mutation::SetFragment(v) if len >= 8 => pkt[6..8].copy_from_slice(&v.to_be_bytes()),
        Mutation::SetL4Byte { at, value } => set(pkt, ihl + usize::from(*at), *value),
        Mutation::SetTcpOffset(v) => {
            if let Some(b) = pkt.get_mut(ihl + 12) {
                *b = (v << 4) | (*b & 15);
            }
        }
        Mutation::SetQuotedByte { at, value } => set(pkt, ihl + 8 + usize::from(*at), *value),
        Mutation::InsertTcpOptions(opts) if len >= ihl + 20 => {
            let opts = &opts[..opts.len().min(40) / 4 * 4];
            let at = ihl + 20;
            pkt.splice(at..at, opts.iter().copied());
            pkt[ihl + 12] = ((((20 + opts.len()) / 4) as u8) << 4) | (pkt[ihl + 12] & 15);
            let total = (pkt.len().min(usize::from(u16::MAX))) as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
        }
        Mutation::FixIpChecksum if len >= ihl && ihl >= 20 => {
            pkt[10..12].fill(0);
            let c = rzmap_wire::checksum::checksum(&pkt[..ihl]);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// What validation accepted must hold every header it read, independently re-checked.
fn check_accepted(ip: &[u8], kind: ReplyKind, sport_checked: bool) {
    assert!(ip.len() >= 20 && ip[0] >> 4 == 4, "accepted a packet without an IPv4 header");
    let ihl = usize::from(ip[0] & 15) * 4;
    assert!(ihl >= 20 && ihl <= ip.len(), "accepted a bad IHL");
    assert_eq!(be16(ip, 6) & 0x1fff, 0, "accepted a non-first fragment");
    let end = be16(ip, 2).min(ip.len());
    assert!(end >= ihl, "accepted a total length below the header");
    let l4 = &ip[ihl..end];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    match kind {
        ReplyKind::SynAck | ReplyKind::Rst => {
            assert_eq!(ip[9], 6);
            assert!(l4.len() >= 20, "accepted a TCP reply shorter than its header");
            let off = usize::from(l4[12] >> 4) * 4;
            assert!(off >= 20 && off <= l4.len(), "accepted a bad TCP data offset");
            if kind == ReplyKind::Rst {
                assert!(l4[13] & 0x04 != 0);
            } else {
                assert_eq!(l4[13] & 0x12, 0x12);
            }
            assert!(in_scope(src));
            if sport_checked {
                assert!(TARGET_PORTS.contains(&(be16(l4, 0) as u16)));
            }
        }
        ReplyKind::Udp => {
            assert_eq!(ip[9], 17);
            assert!(l4.len() >= 8, "accepted a UDP reply shorter than its header");
            assert!(in_scope(src));
        }
        ReplyKind::EchoReply => {
            assert_eq!(ip[9], 1);
            assert!(l4.len() >= 8 && l4[0] == 0);
            assert!(in_scope(src));
        }
        ReplyKind::IcmpError => {
            assert_eq!(ip[9], 1);
            assert!(l4.len() >= 8 && matches!(l4[0], 3 | 4 | 5 | 11));
            let q = &l4[8..];
            assert!(q.len() >= 20 && q[0] >> 4 == 4, "accepted a quote without an IP header");
            let qihl = usize::from(q[0] & 15) * 4;
            assert!(qihl >= 20 && qihl <= q.len());
            let qend = be16(q, 2).min(q.len());
            assert!(qend >= qihl + 8, "accepted a quote without 8 transport bytes");
            assert!(in_scope(Ipv4Addr::new(q[16], q[17], q[18], q[19])));
        }
    }
}

/// Validates and classifies one reply with every path: the module's `validate` (with each
/// source-port override) and `classify` (with every kind), and the [`ReplyProcessor`].
fn validate_all(m: &Arc<dyn ProbeModule>, env: &ReplyEnv, pkt: &[u8]) -> Option<ReplyKind> {
    let schema = Schema::for_module(m.fields());
    let mut rec = Record::for_schema(&schema);
    let mut base_kind = None;
    for ovr in [None, Some(true), Some(false)] {
        let r = m.validate(pkt, &env.check(ovr));
        if let Ok(kind) = r {
            check_accepted(pkt, kind, ovr.unwrap_or(m.validate_source_port_default()));
            rec.clear();
            m.classify(pkt, &kind, &mut rec, schema.module_start());
        }
        if ovr.is_none() {
            base_kind = r.ok();
        }
    }
    for kind in [
        ReplyKind::SynAck,
        ReplyKind::Rst,
        ReplyKind::Udp,
        ReplyKind::EchoReply,
        ReplyKind::IcmpError,
    ] {
        rec.clear();
        m.classify(pkt, &kind, &mut rec, schema.module_start());
    }
    let scope: ScopeFn = Arc::new(in_scope);
    let mut proc = ReplyProcessor::new(m.clone(), &env.cfg, env.validator.clone(), scope);
    match proc.process(pkt) {
        Ok(v) => {
            let kind = base_kind.expect("processor accepted what validate refused");
            // The dedup key: the replying host, or for an ICMP error the quoted target.
            let key_at = if kind == ReplyKind::IcmpError {
                usize::from(pkt[0] & 15) * 4 + 8 + 16
            } else {
                12
            };
            let k = &pkt[key_at..key_at + 4];
            assert_eq!(u32::from_be_bytes([k[0], k[1], k[2], k[3]]), v.src_ip, "{kind:?}");
            let success = matches!(kind, ReplyKind::SynAck | ReplyKind::Udp | ReplyKind::EchoReply);
            assert_eq!(v.success, success, "{kind:?}");
            assert_eq!(proc.passed(), 1);
        }
        Err(r) => {
            assert!(base_kind.is_none(), "processor refused what validate accepted");
            assert_eq!(proc.rejects().get(r), 1);
            assert!(!r.name().is_empty());
        }
    }
    // The module's dry-run description of arbitrary bytes as a frame.
    let mut s = String::new();
    m.describe(pkt, pkt.first().is_some_and(|b| b & 1 == 1), &mut s);
    assert!(s.ends_with(&format!("{DRYRUN_SEPARATOR}\n")));
    base_kind
}

/// Creates the modules of [`MODULES`].
pub fn modules() -> Vec<Arc<dyn ProbeModule>> {
    MODULES
        .iter()
        .map(|(name, args)| Arc::from(probe::create(name, *args).expect("module args are valid")))
        .collect()
}

/// The reply target: builds the case's packet, validates it unmutated (a genuine answer must
/// pass), then after each mutation (which must never panic, and whose accepted packets must
/// hold every header read).
pub fn reply_validate(case: &ReplyCase, mods: &[Arc<dyn ProbeModule>], env: &ReplyEnv) {
    let m = &mods[usize::from(case.module) % mods.len()];
    let (mut pkt, expect) = build_reply(&**m, env, case);
    let got = validate_all(m, env, &pkt);
    if let Some(k) = expect {
        assert_eq!(got, Some(k), "{} refused its own answer {case:?}", m.name());
    }
    for mu in case.mutations.iter().take(16) {
        apply(&mut pkt, mu);
        validate_all(m, env, &pkt);
    }
}

/// The reply target over raw bytes (for the smoke test and corpora): decodes a [`ReplyCase`]
/// with `arbitrary`.
pub fn reply_validate_bytes(data: &[u8], mods: &[Arc<dyn ProbeModule>], env: &ReplyEnv) {
    if let Ok(case) = ReplyCase::arbitrary_take_rest(arbitrary::Unstructured::new(data)) {
        reply_validate(&case, mods, env);
    }
    // The bytes as a raw packet too, for every module.
    for m in mods {
        validate_all(m, env, data);
    }
}

// ---------------------------------------------------------------------------------------------
// template_parse

/// Templates and `--probe-args` payloads: parse errors are one line naming `tpl:` (with a
/// position) or `--probe-args`; a parsed template renders into exactly `max_len` bytes, never
/// more than the limit, deterministically for one generator seed.
pub fn template_parse(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let limit = if sel & 0x80 != 0 { MAX_UDP_PAYLOAD } else { usize::from(sel) * 12 };
    match Template::parse_with_limit(body, "tpl", limit) {
        Err(e) => assert_one_line(&e, "tpl:"),
        Ok(t) => {
            let max = t.max_len();
            assert!(max <= limit.min(MAX_UDP_PAYLOAD), "max_len {max} over limit {limit}");
            let input = TemplateInput {
                saddr: Ipv4Addr::new(198, 18, 0, sel),
                daddr: Ipv4Addr::new(255, 255, 255, 255),
                sport: u16::MAX,
                dport: u16::from(sel).wrapping_mul(257),
                unix_sec: u64::MAX - u64::from(sel),
                unix_usec: u32::from(sel) * 4000,
            };
            let mut a = vec![0u8; max];
            let mut b = vec![0xffu8; max];
            let na = t.render(&mut a, &input, &mut AesRand::from_seed(u64::from(sel)));
            let nb = t.render(&mut b, &input, &mut AesRand::from_seed(u64::from(sel)));
            assert!(na <= max);
            assert_eq!(na, nb);
            assert_eq!(a[..na], b[..nb], "render is not deterministic");
            // The text form of the payload never renders more than the widest values allow.
            let small =
                TemplateInput { saddr: Ipv4Addr::new(0, 0, 0, 0), sport: 0, dport: 0, ..input };
            let mut c = vec![0u8; max];
            assert!(t.render(&mut c, &small, &mut AesRand::from_seed(1)) <= na);
        }
    }
    // `--probe-args` forms that read no file.
    let Ok(arg) = std::str::from_utf8(body) else { return };
    if arg.starts_with("file:") || arg.starts_with("template:") {
        return;
    }
    let allow = sel & 1 == 1;
    match parse_payload_arg(arg, limit, allow) {
        Err(e) => assert_one_line(&e, "--probe-args"),
        Ok(PayloadSpec::Fixed(b)) => {
            assert!(b.len() <= limit);
            if let Some(t) = arg.strip_prefix("text:") {
                assert_eq!(b, t.as_bytes());
            } else if let Some(h) = arg.strip_prefix("hex:") {
                assert_eq!(b.len() * 2, h.len());
            } else {
                panic!("fixed payload from an unknown form {arg:?}");
            }
        }
        Ok(PayloadSpec::ListTemplateFields) => assert!(allow && arg == "template-fields"),
        Ok(PayloadSpec::Template(_)) => panic!("a template without reading a file"),
    }
    for name in ["udp", "icmp_echoscan", "tcp_synscan"] {
        match probe::create(name, Some(arg)) {
            Err(e) => assert_one_line(&e, "--probe-args"),
            Ok(m) => {
                assert!(m.max_frame_len() <= 14 + 1500);
                let env = ReplyEnv::new();
                let mut frame = vec![0u8; m.max_frame_len()];
                m.prepare(&mut frame, &env.cfg);
                let p = ProbeInput {
                    src: US,
                    dst: Ipv4Addr::new(198, 19, 1, 2),
                    dport: 53,
                    probe_num: 0,
                    validation: [1, 2, 3, 4],
                    now: Duration::ZERO,
                };
                let n = m.make(&mut frame, &env.cfg, &p, &mut AesRand::from_seed(3));
                assert!(n <= frame.len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// list_parse

const LIST: &str = "list.txt";

/// Allow/block list text, prefixes and `-I` list text: errors are one line naming the file and
/// line; every parsed prefix re-formats and re-parses to its normalized self; the text and the
/// streaming `-I` readers agree; a target space built from the lists is consistent.
pub fn list_parse(data: &[u8]) {
    // First byte: which extra checks run (1: the space has an allowlist, 2: build a space,
    // 4: `-I` readers); the rest is the list text.
    let Some((&flags, body)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(body);
    let lines = text.lines().count();
    let (entries, errors) = addr::parse_list_lenient(&text, LIST);
    let mut last = 0;
    for e in &entries {
        assert!(e.line > last && e.line <= lines, "entry line {} out of order", e.line);
        last = e.line;
        if let addr::EntryKind::Prefix(p) = e.kind {
            prefix_round_trip(p);
        }
    }
    for e in &errors {
        assert_one_line(e, &format!("{LIST}:"));
    }
    match addr::parse_list(&text, LIST, false) {
        Ok(es) => {
            assert!(errors.is_empty());
            assert_eq!(es, entries);
        }
        Err(e) => assert_eq!(Some(&e), errors.first()),
    }
    assert_eq!(addr::parse_list(&text, LIST, true).ok(), Some(entries.clone()));

    // Each line's first token as a prefix, and the whole text as one.
    for token in text.split_whitespace().take(64).chain(std::iter::once(&*text)) {
        match addr::parse_prefix(token) {
            Ok(p) => prefix_round_trip(p),
            Err(e) => {
                assert!(
                    e.column >= 1 && e.column <= token.len() + 1,
                    "column {} in {token:?}",
                    e.column
                );
                assert_one_line(&e.to_input_error("-w"), "-w: column ");
            }
        }
    }

    // `-I`: the text parser and the streaming reader agree. Only when the first byte asks (an
    // `IpList` is 65,536 page slots, slow to create and drop under coverage instrumentation).
    if flags & 4 == 4 {
        ip_list(&text);
    }

    // A target space from the prefixes: odd entries allow, even ones block. Only when the
    // first byte asks (building a space can enumerate up to 2^20 addresses, which is slow).
    let prefixes = addr::list::prefixes_of(&entries);
    if prefixes.len() <= 64 && flags & 2 == 2 {
        let allow: Vec<Ipv4Prefix> = prefixes.iter().copied().step_by(2).collect();
        let block: Vec<Ipv4Prefix> = prefixes.iter().copied().skip(1).step_by(2).collect();
        let with_allow = flags & 1 == 1;
        let space = TargetSpace::new(with_allow.then_some(&allow[..]), &block);
        let count = space.count();
        assert!(count < 1 << 32);
        assert!(space.get(count).is_none());
        for p in &block {
            assert!(!space.is_allowed(p.network()) && !space.is_allowed(p.last()));
        }
        assert!(!space.is_allowed(0));
        let step = (count / 16).max(1);
        let mut i = 0;
        while i < count {
            let ip = space.get(i).expect("index below count");
            assert!(space.is_allowed(ip), "nth({i}) = {ip:#x} is not allowed");
            if with_allow {
                assert!(allow.iter().any(|p| p.contains(ip)));
            }
            i += step;
        }
    }
}

/// `-I` list text through the text parser and the streaming reader.
fn ip_list(text: &str) {
    let parsed = IpList::parse(text, "ips");
    let streamed = IpList::read_from(text.as_bytes(), "ips");
    match (&parsed, &streamed) {
        (Ok(a), Ok(b)) => assert_eq!(a.len(), b.len()),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert_one_line(a, "ips:");
        }
        _ => panic!("-I readers disagree: {parsed:?} vs {streamed:?}"),
    }
    if let Ok(l) = &parsed {
        for token in text.lines().filter_map(|l| l.split('#').next()?.split_whitespace().next()) {
            let ip = addr::iplist::inet_aton(token).expect("accepted token parses");
            assert!(l.contains(ip));
        }
    }
}

fn prefix_round_trip(p: Ipv4Prefix) {
    assert!(p.len <= 32);
    let text = p.to_string();
    let q = addr::parse_prefix(&text).expect("a formatted prefix parses");
    assert_eq!(q, p.normalized(), "{text}");
    assert!(p.contains(p.addr) && p.contains(p.network()) && p.contains(p.last()));
    assert_eq!(u64::from(p.last() - p.network()) + 1, p.size());
}

// ---------------------------------------------------------------------------------------------
// conffile_parse

const CONF: &str = "rzmap.conf";

/// The config-file parser: errors are one line `rzmap.conf:LINE: ...`; parsed entries are in
/// file order and re-parse through the command-line parser, and resolving them either works
/// or gives a one-line error.
pub fn conffile_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    let conf = match rzmap::conffile::ConfigFile::parse(CONF, text) {
        Err(e) => {
            assert_one_line(&e, &format!("{CONF}:"));
            return;
        }
        Ok(c) => c,
    };
    let mut last = 0;
    for e in &conf.entries {
        assert!(e.line > last && e.line <= lines);
        last = e.line;
        assert_eq!(e.value.is_some(), e.option.takes_value);
        assert_eq!(conf.line_of(&e.option.id).map(|l| l >= e.line), Some(true));
    }
    let mut argv = vec![OsString::from("rzmap")];
    argv.extend(conf.to_argv());
    assert_eq!(argv.len(), conf.entries.len() + 1);
    let Ok(parsed) = rzmap::args::parse(&argv) else { return };
    match rzmap::config::resolve(&parsed.args, || Ok(1)) {
        Ok(c) => assert!(c.warnings.iter().all(|w| !w.to_string().contains('\n'))),
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
}

// ---------------------------------------------------------------------------------------------
// value_parsers

/// Port lists, source-IP lists, bandwidth, `-n`, MACs, cores and integers: errors are one line
/// naming the flag (with a column inside the value when one is given); accepted values
/// re-format and re-parse to the same value.
pub fn value_parsers(data: &[u8]) {
    use rzmap::config::{self, MaxTargets};
    let Ok(s) = std::str::from_utf8(data) else { return };
    let cols = s.chars().count() + 1;
    let column_ok = |e: &InputError| match e.position {
        rzmap_core::error::Position::Column(c) => c >= 1 && c <= cols,
        _ => true,
    };

    match config::parse_port_list("-p", s) {
        Ok(ports) => {
            assert!(!ports.is_empty() && ports.len() <= config::MAX_TARGET_PORTS);
            if ports.len() <= 256 {
                let text: Vec<String> = ports.iter().map(u16::to_string).collect();
                assert_eq!(config::parse_port_list("-p", &text.join(",")).ok(), Some(ports));
            }
        }
        Err(e) => {
            assert_one_line(&e, "-p: ");
            assert!(column_ok(&e), "{e}");
        }
    }
    match config::parse_port_range("-s", s) {
        Ok((lo, hi)) => {
            assert!(lo <= hi);
            assert_eq!(config::parse_port_range("-s", &format!("{lo}-{hi}")).ok(), Some((lo, hi)));
        }
        Err(e) => {
            assert_one_line(&e, "-s: ");
            assert!(column_ok(&e), "{e}");
        }
    }
    match config::parse_source_ips("-S", s) {
        Ok(ips) => {
            assert!(!ips.is_empty() && ips.len() <= config::MAX_SOURCE_IPS);
            let text: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
            assert_eq!(config::parse_source_ips("-S", &text.join(",")).ok(), Some(ips));
        }
        Err(e) => {
            assert_one_line(&e, "-S: ");
            assert!(column_ok(&e), "{e}");
        }
    }
    match config::parse_bandwidth("-B", s) {
        Ok(bps) => {
            assert!(bps >= 1);
            assert_eq!(config::parse_bandwidth("-B", &bps.to_string()).ok(), Some(bps));
            if bps % 1000 == 0 {
                let k = format!("{}K", bps / 1000);
                assert_eq!(config::parse_bandwidth("-B", &k).ok(), Some(bps));
            }
        }
        Err(e) => assert_one_line(&e, "-B: "),
    }
    match config::parse_max_targets("-n", s) {
        Ok(MaxTargets::Count(n)) => {
            assert_eq!(
                config::parse_max_targets("-n", &n.to_string()).ok(),
                Some(MaxTargets::Count(n))
            );
        }
        Ok(MaxTargets::Percent(p)) => {
            assert!(p.is_finite() && (0.0..=100.0).contains(&p));
            assert_eq!(
                config::parse_max_targets("-n", &format!("{p}%")).ok(),
                Some(MaxTargets::Percent(p))
            );
        }
        Err(e) => assert_one_line(&e, "-n: "),
    }
    match config::parse_mac("--gateway-mac", s) {
        Ok(mac) => {
            let mut t = String::new();
            let _ = rzmap_wire::ethernet::write_mac(&mut t, mac);
            assert_eq!(config::parse_mac("--gateway-mac", &t).ok(), Some(mac));
        }
        Err(e) => {
            assert_one_line(&e, "--gateway-mac: ");
            assert!(column_ok(&e), "{e}");
        }
    }
    match config::parse_cores("--cores", s) {
        Ok(c) => {
            let t: Vec<String> = c.iter().map(u32::to_string).collect();
            assert_eq!(config::parse_cores("--cores", &t.join(",")).ok(), Some(c));
        }
        Err(e) => {
            assert_one_line(&e, "--cores: ");
            assert!(column_ok(&e), "{e}");
        }
    }
    match config::parse_uint("--rate", s, 1, 1_000_000) {
        Ok(v) => assert!((1..=1_000_000).contains(&v)),
        Err(e) => assert_one_line(&e, "--rate: "),
    }
    if let Err(e) = config::parse_json("--user-metadata", s) {
        assert_one_line(&e, "--user-metadata: ");
    }
}

// ---------------------------------------------------------------------------------------------
// filter_parse

const FILTER_FIELDS: &[FieldDef] = &[
    FieldDef::new("sport", FieldType::Int, "TCP source port"),
    FieldDef::new("classification", FieldType::Str, "packet classification"),
    FieldDef::new("success", FieldType::Bool, "is response considered success"),
    FieldDef::new("data", FieldType::Bin, "payload"),
];

/// The output filter: any text either compiles or gives a one-line `--output-filter` error;
/// compiled filters agree with the reference interpreter. Also feeds the text to `-f`.
pub fn filter_parse(data: &[u8]) {
    use rzmap_core::filter::{Filter, eval, parse};
    use rzmap_core::output::FieldSelection;
    // First byte seeds the record, the rest is the expression.
    let Some((&seed, text)) = data.split_first() else { return };
    let Ok(expr) = std::str::from_utf8(text) else { return };
    let schema = Schema::for_module(FILTER_FIELDS);
    let _ = FieldSelection::parse(expr, &schema);
    match Filter::compile(expr, &schema) {
        Err(e) => assert_one_line(&e, "--output-filter"),
        Ok(f) => {
            let mut rec = Record::for_schema(&schema);
            let i = |n: &str| schema.index_of(n).unwrap_or(0);
            if seed & 1 != 0 {
                rec.set_ipv4(i("saddr"), Ipv4Addr::new(198, 18, 0, seed));
            }
            if seed & 2 != 0 {
                rec.set_int(i("ttl"), u64::from(seed));
                rec.set_int(i("sport"), u64::from(seed) << 56);
            }
            if seed & 4 != 0 {
                rec.set_bool(i("success"), seed & 8 != 0);
            }
            if seed & 16 != 0 {
                rec.set_str(i("classification"), if seed & 32 != 0 { "synack" } else { "rst" });
            }
            let naive = match parse(expr) {
                Ok(Some(tree)) => eval::interpret(&tree, &schema, &rec),
                Ok(None) => true,
                Err(e) => panic!("compiled but does not parse: {e}"),
            };
            assert_eq!(f.matches(&rec), naive, "{expr:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// seeds

/// Seed inputs per target (valid and nearly valid), for corpora and the smoke test.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let s = |v: &[&str]| v.iter().map(|t| t.as_bytes().to_vec()).collect::<Vec<_>>();
    match target {
        "wire_parse" => {
            let env = ReplyEnv::new();
            let mut out = Vec::new();
            for (i, m) in modules().iter().enumerate() {
                for shape in [
                    Shape::Answer { rst: false, payload: vec![2, 4, 5, 0xb4, 1, 3, 3, 7] },
                    Shape::IcmpError {
                        ty: 0,
                        raw_type: false,
                        code: 3,
                        quote_extra: 40,
                        quote_short: 0,
                    },
                ] {
                    let case = ReplyCase {
                        module: i as u8,
                        shape,
                        probe_num: 0,
                        port: 0,
                        target_low: 0x0304,
                        mutations: vec![],
                    };
                    let (pkt, _) = build_reply(&**m, &env, &case);
                    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
                    frame.extend_from_slice(&pkt);
                    out.push(pkt);
                    out.push(frame);
                }
            }
            out
        }
        "template_parse" => s(&[
            "\u{7f}GET / HTTP/1.1\r\nHost: ${DADDR}:${DPORT}\r\n\r\n",
            "\u{ff}${SADDR_N}${DADDR_N}${SPORT_N}${DPORT_N}${RAND_BYTE=4}${RAND_DIGIT=3}",
            "\u{ff}${RAND_ALPHA=5}${RAND_ALPHANUM=6}${HEX=0d0a}${UNIXTIME_SEC}${UNIXTIME_USEC}",
            "\u{ff}${NTP_TIMESTAMP}${HOST}${ ${SPORT=1}${RAND_BYTE=0}${HEX=abc}",
            "\u{1}hex:0d0a00ff",
            "\u{1}text:hello",
            "\u{1}template-fields",
        ]),
        "list_parse" => s(&[
            "\u{3}10.0.0.0/8\n192.168.0.0/16 # private\n  1.2.3.4\n\nexample.com\n::1/128\n",
            "\u{2}0.0.0.0/0\n198.18.0.0/15\n198.19.3.4/32\n",
            "\u{0}1.2.3.256\n1.2.3/24\n01.2.3.4\n1.2.3.4/33\n-bad-.host\n",
            "\u{4}1.2.772\n0x7f.1\n010.0.0.1\n4294967295\r\n",
            "\u{7}10.0.0.0/8\n10.1.2.3\n",
        ]),
        "conffile_parse" => s(&[
            "# comment\ntarget-ports 80,443\nrate=1000\nprobe-module \"tcp_synscan\"\nseed 1\n",
            "dryrun\nsource-port 40000-40100\nbandwidth 10M\nmax-targets 0.1%\n",
            "output-fields 'saddr,daddr'\nblocklist-file ~/b.txt\nconfig x\nhelp\n",
            "unknown-option 1\nrate\nquiet yes\nrate = \"unterminated\n",
        ]),
        "value_parsers" => s(&[
            "80,443,8000-8010",
            "*",
            " 1 - 65535 ",
            "198.18.0.1-198.18.0.9,198.18.0.20",
            "1.5G",
            "10m",
            "0.1%",
            "00:11:22:aa:bb:cc",
            "0,1,2",
            "{\"a\": [1, 2]}",
            "65536",
            "5-4",
            "\u{85}",
            "1-\u{3000}x",
        ]),
        "filter_parse" => s(&[
            "\u{3f}success = 1 && (sport > 1000 || classification = synack)",
            "\u{1}saddr = 198.18.0.1",
            "\u{0}ttl >= 0 and not (data = x)",
            "\u{5}sport != 80 ||",
        ]),
        _ => Vec::new(),
    }
}

/// The names of all targets, as the binaries and the smoke test call them.
pub const TARGETS: &[&str] = &[
    "wire_parse",
    "reply_validate",
    "template_parse",
    "list_parse",
    "conffile_parse",
    "value_parsers",
    "filter_parse",
];
