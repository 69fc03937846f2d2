//! Test helpers: reply packets built with etherparse (an independent implementation), and a
//! ready-made reply checker.

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Type, PacketBuilder, TcpOptionElement};

use super::{PortBitmap, ReplyCheck};
use crate::validate::Validator;

/// Our scanner's address in tests.
pub const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// A target in scope (198.19.0.0/16 is the scanned space).
pub const TARGET: Ipv4Addr = Ipv4Addr::new(198, 19, 3, 4);
/// A router that sends ICMP errors.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// True for 198.19.0.0/16.
pub fn in_scope(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && o[1] == 19
}

/// Owns what a [`ReplyCheck`] borrows.
pub struct Env {
    /// Fixed-key validator.
    pub validator: Validator,
    /// Target ports.
    pub ports: PortBitmap,
    /// First source port.
    pub sport_first: u16,
    /// Number of source ports.
    pub sport_count: u32,
    /// Probes per target.
    pub probes: u32,
}

impl Env {
    /// Ports 40000..40100, target ports 80 and 443 (plus `extra`), one probe.
    pub fn new(target_ports: &[u16]) -> Self {
        Self {
            validator: Validator::new(*b"rzmap-test-key!!"),
            ports: PortBitmap::new(target_ports),
            sport_first: 40000,
            sport_count: 100,
            probes: 1,
        }
    }
    /// A checker with an optional source-port override.
    pub fn check(&self, override_sport: Option<bool>) -> ReplyCheck<'_> {
        ReplyCheck {
            validator: &self.validator,
            sport_first: self.sport_first,
            sport_count: self.sport_count,
            probes: self.probes,
            in_scope: &in_scope,
            target_ports: &self.ports,
            validate_source_port: override_sport,
        }
    }
    /// A probe config matching this environment.
    pub fn config(&self, ports: &[u16]) -> super::ProbeConfig {
        super::ProbeConfig {
            sport_first: self.sport_first,
            sport_count: self.sport_count,
            probes: self.probes,
            target_ports: ports.to_vec(),
            ttl: 64,
            timestamp: 1_700_000_000,
            ..super::ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        }
    }
    /// The frame `m` sends from [`US`] to `dst:dport` as probe number `probe` (with this
    /// environment's config for target port `dport`; none for port 0, as ICMP), and the
    /// validation words it used.
    pub fn build_frame(
        &self,
        m: &dyn super::ProbeModule,
        dst: Ipv4Addr,
        dport: u16,
        probe: u32,
    ) -> (Vec<u8>, [u32; 4]) {
        let cfg = self.config(if dport == 0 { &[] } else { std::slice::from_ref(&dport) });
        let mut buf = vec![0u8; 2048];
        m.prepare(&mut buf, &cfg);
        let validation = self.validator.words(US, dst, dport);
        let p = super::ProbeInput {
            src: US,
            dst,
            dport,
            probe_num: probe,
            validation,
            now: Default::default(),
        };
        let n = m.make(&mut buf, &cfg, &p, &mut crate::aesrand::AesRand::from_seed(1));
        buf.truncate(n);
        (buf, validation)
    }
}

/// TCP flags for [`tcp_reply`].
#[derive(Clone, Copy)]
pub struct Flags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// RST.
    pub rst: bool,
}

/// A TCP reply (IP packet).
#[allow(clippy::too_many_arguments)]
pub fn tcp_reply(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    f: Flags,
    options: &[TcpOptionElement],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.octets(), dst.octets(), 57).tcp(sport, dport, seq, 29200);
    if f.syn {
        b = b.syn();
    }
    if f.ack {
        b = b.ack(ack);
    } else if ack != 0 {
        // RST without the ACK flag still carries an ack field for our tests.
        b = b.ack(ack);
    }
    if f.rst {
        b = b.rst();
    }
    let b = b.options(options).expect("options fit");
    let mut out = Vec::new();
    b.write(&mut out, &[]).expect("write");
    out
}

/// A UDP reply (IP packet).
pub fn udp_reply(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), 50)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("write");
    out
}

/// An ICMP echo reply (IP packet).
pub fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), 50)
        .icmpv4_echo_reply(id, seq)
        .write(&mut out, payload)
        .expect("write");
    out
}

/// An ICMP error from `router` to `dst` quoting `quoted` (an IP packet, cut to `quote_len`).
pub fn icmp_error(
    router: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(router.octets(), dst.octets(), 250)
        .icmpv4(Icmpv4Type::Unknown { type_u8: ty, code_u8: code, bytes5to8: [0; 4] })
        .write(&mut out, &quoted[..quote_len.min(quoted.len())])
        .expect("write");
    out
}
