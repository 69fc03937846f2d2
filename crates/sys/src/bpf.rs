//! Classic BPF receive filters, generated in Rust (no libpcap).
//!
//! One program per family of probe modules, equivalent to ZMap's pcap filters:
//! - [`FilterKind::Tcp`]: `(tcp && (tcp[13] & 4 != 0 || tcp[13] == 18)) || icmp`
//!   (RST set, or exactly SYN|ACK, or any ICMP);
//! - [`FilterKind::Icmp`]: `icmp && icmp[0] != 8` (anything but an echo request);
//! - [`FilterKind::Udp`]: `udp || icmp`;
//! - [`FilterKind::TcpSegments`]: `(tcp && dst portrange FIRST-LAST) || icmp` (every TCP
//!   segment to the scan's source ports, for banner grabbing).
//!
//! Each is IPv4 only, ANDed with "not ether src OUR_MAC" when a MAC is given (Ethernet
//! framing only), reads the TCP flags / ICMP type behind a variable-length IP header (IHL),
//! rejects non-first fragments where it reads transport bytes (as pcap does), and accepts
//! with a return value of `snaplen`, which makes the kernel truncate the capture.
//!
//! [`LinkLayer::Ip`] builds the same programs for sockets whose packets start at the IPv4
//! header (a `SOCK_DGRAM` packet ring, as used with `-X`, or a tun device).

/// One classic BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode (class | size | mode, or class | op | source).
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when the condition fails.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

const _: () = assert!(size_of::<Insn>() == size_of::<libc::sock_filter>());

/// Opcode pieces of classic BPF (from `linux/filter.h`), public for test interpreters.
pub mod op {
    /// Load into A.
    pub const LD: u16 = 0x00;
    /// Load into X.
    pub const LDX: u16 = 0x01;
    /// Arithmetic on A.
    pub const ALU: u16 = 0x04;
    /// Jumps.
    pub const JMP: u16 = 0x05;
    /// Return.
    pub const RET: u16 = 0x06;
    /// 32-bit word.
    pub const W: u16 = 0x00;
    /// 16-bit half word.
    pub const H: u16 = 0x08;
    /// Byte.
    pub const B: u16 = 0x10;
    /// Absolute offset.
    pub const ABS: u16 = 0x20;
    /// Offset X + k.
    pub const IND: u16 = 0x40;
    /// `X = 4 * (P[k] & 0xf)`, the IPv4 header-length idiom.
    pub const MSH: u16 = 0xa0;
    /// Operand is the constant k.
    pub const K: u16 = 0x00;
    /// A &= k.
    pub const AND: u16 = 0x50;
    /// Unconditional jump.
    pub const JA: u16 = 0x00;
    /// Jump if A == k.
    pub const JEQ: u16 = 0x10;
    /// Jump if A > k.
    pub const JGT: u16 = 0x20;
    /// Jump if A >= k.
    pub const JGE: u16 = 0x30;
    /// Jump if A & k != 0.
    pub const JSET: u16 = 0x40;
}

/// Which replies a probe module wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// TCP modules: RST, or exactly SYN|ACK, or any ICMP.
    Tcp,
    /// ICMP modules: ICMP except echo requests.
    Icmp,
    /// UDP-based modules: any UDP or ICMP.
    Udp,
    /// Banner grabbing: every TCP segment whose destination port is in `first..=last` (the
    /// scan's source ports), whatever its flags, or any ICMP.
    TcpSegments {
        /// First port of the range.
        first: u16,
        /// Last port of the range (inclusive).
        last: u16,
    },
}

/// Where captured packets start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayer {
    /// A 14-byte Ethernet header precedes the IPv4 header.
    Ethernet,
    /// Packets start at the IPv4 header (cooked `SOCK_DGRAM` ring, tun devices).
    Ip,
}

/// Everything a filter program depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// Which replies to accept.
    pub kind: FilterKind,
    /// Framing of captured packets.
    pub link: LinkLayer,
    /// Reject frames whose Ethernet source is this MAC (ignored for [`LinkLayer::Ip`]).
    pub our_mac: Option<[u8; 6]>,
    /// Bytes kept of each accepted packet (at least 1).
    pub snaplen: u32,
}

/// The classic BPF program for `spec`.
pub fn program(spec: &FilterSpec) -> Vec<Insn> {
    use op::*;
    let mut a = Asm::default();
    let (accept, reject) = (a.label(), a.label());
    let ip = match spec.link {
        LinkLayer::Ethernet => 14u32,
        LinkLayer::Ip => 0u32,
    };
    match spec.link {
        LinkLayer::Ethernet => {
            if let Some(mac) = spec.our_mac {
                let hi = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                let lo = u32::from(u16::from_be_bytes([mac[4], mac[5]]));
                let (check_lo, not_ours) = (a.label(), a.label());
                a.stmt(LD | W | ABS, 6);
                a.jump(JMP | JEQ | K, hi, check_lo, not_ours);
                a.place(check_lo);
                a.stmt(LD | H | ABS, 10);
                a.jump(JMP | JEQ | K, lo, reject, not_ours);
                a.place(not_ours);
            }
            let is_ip = a.label();
            a.stmt(LD | H | ABS, 12);
            a.jump(JMP | JEQ | K, 0x0800, is_ip, reject);
            a.place(is_ip);
        }
        LinkLayer::Ip => {
            let is_ip = a.label();
            a.stmt(LD | B | ABS, 0);
            a.stmt(ALU | AND | K, 0xf0);
            a.jump(JMP | JEQ | K, 0x40, is_ip, reject);
            a.place(is_ip);
        }
    }
    // A = IP protocol.
    a.stmt(LD | B | ABS, ip + 9);
    match spec.kind {
        FilterKind::Tcp => {
            let (tcp, not_tcp) = (a.label(), a.label());
            a.jump(JMP | JEQ | K, 6, tcp, not_tcp);
            a.place(not_tcp);
            a.jump(JMP | JEQ | K, 1, accept, reject);
            a.place(tcp);
            first_fragment_header(&mut a, ip, reject);
            a.stmt(LD | B | IND, ip + 13);
            let not_rst = a.label();
            a.jump(JMP | JSET | K, 0x04, accept, not_rst);
            a.place(not_rst);
            a.jump(JMP | JEQ | K, 0x12, accept, reject);
        }
        FilterKind::TcpSegments { first, last } => {
            let (tcp, not_tcp, ge_first) = (a.label(), a.label(), a.label());
            a.jump(JMP | JEQ | K, 6, tcp, not_tcp);
            a.place(not_tcp);
            a.jump(JMP | JEQ | K, 1, accept, reject);
            a.place(tcp);
            first_fragment_header(&mut a, ip, reject);
            // A = destination port.
            a.stmt(LD | H | IND, ip + 2);
            a.jump(JMP | JGE | K, u32::from(first), ge_first, reject);
            a.place(ge_first);
            a.jump(JMP | JGT | K, u32::from(last), reject, accept);
        }
        FilterKind::Icmp => {
            let icmp = a.label();
            a.jump(JMP | JEQ | K, 1, icmp, reject);
            a.place(icmp);
            first_fragment_header(&mut a, ip, reject);
            a.stmt(LD | B | IND, ip);
            a.jump(JMP | JEQ | K, 8, reject, accept);
        }
        FilterKind::Udp => {
            let not_udp = a.label();
            a.jump(JMP | JEQ | K, 17, accept, not_udp);
            a.place(not_udp);
            a.jump(JMP | JEQ | K, 1, accept, reject);
        }
    }
    a.place(accept);
    a.stmt(RET | K, spec.snaplen.max(1));
    a.place(reject);
    a.stmt(RET | K, 0);
    a.finish()
}

/// Rejects non-first fragments, then sets X to the IP header length.
fn first_fragment_header(a: &mut Asm, ip: u32, reject: Label) {
    use op::*;
    let first = a.label();
    a.stmt(LD | H | ABS, ip + 6);
    a.jump(JMP | JSET | K, 0x1fff, reject, first);
    a.place(first);
    a.stmt(LDX | B | MSH, ip);
}

#[derive(Clone, Copy)]
struct Label(usize);

enum Item {
    Stmt(u16, u32),
    Jump(u16, u32, Label, Label),
    Place(Label),
}

/// A tiny forward-only assembler with symbolic labels.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.items.push(Item::Stmt(code, k));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Jump(code, k, jt, jf));
    }
    fn place(&mut self, l: Label) {
        self.items.push(Item::Place(l));
    }
    fn finish(self) -> Vec<Insn> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for item in &self.items {
            match item {
                Item::Place(l) => at[l.0] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for item in &self.items {
            let pc = out.len();
            // Programs are fixed and short; a backward or long jump is a bug in this file.
            let rel = |l: &Label| -> u8 {
                let d = at[l.0].checked_sub(pc + 1).expect("BPF jumps go forward");
                u8::try_from(d).expect("BPF jump fits in 8 bits")
            };
            match item {
                Item::Stmt(code, k) => out.push(Insn { code: *code, jt: 0, jf: 0, k: *k }),
                Item::Jump(code, k, jt, jf) => {
                    out.push(Insn { code: *code, jt: rel(jt), jf: rel(jf), k: *k })
                }
                Item::Place(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, Ipv4Options, PacketBuilder};

    /// An independent classic-BPF interpreter (the subset the kernel accepts, enough for
    /// filters): returns the program's verdict, 0 when a load runs past the packet.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: u32, size: usize| -> Option<u32> {
            let off = off as usize;
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            let class = i.code & 0x07;
            match class {
                0x00 | 0x01 => {
                    let size = match i.code & 0x18 {
                        0x00 => 4,
                        0x08 => 2,
                        _ => 1,
                    };
                    let mode = i.code & 0xe0;
                    match (class, mode) {
                        (0x00, 0x20) => match load(i.k, size) {
                            Some(v) => a = v,
                            None => return 0,
                        },
                        (0x00, 0x40) => match load(x.wrapping_add(i.k), size) {
                            Some(v) => a = v,
                            None => return 0,
                        },
                        (0x01, 0xa0) => match load(i.k, 1) {
                            Some(v) => x = 4 * (v & 0xf),
                            None => return 0,
                        },
                        _ => panic!("unsupported load {:#x}", i.code),
                    }
                }
                0x04 => match i.code & 0xf0 {
                    0x50 => a &= i.k,
                    _ => panic!("unsupported alu {:#x}", i.code),
                },
                0x05 => {
                    let cond = match i.code & 0xf0 {
                        0x00 => {
                            pc += i.k as usize;
                            continue;
                        }
                        0x10 => a == i.k,
                        0x20 => a > i.k,
                        0x30 => a >= i.k,
                        0x40 => a & i.k != 0,
                        _ => panic!("unsupported jump {:#x}", i.code),
                    };
                    pc += usize::from(if cond { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                _ => panic!("unsupported class {:#x}", i.code),
            }
        }
    }

    const OURS: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    const THEIRS: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];
    const SRC: [u8; 4] = [198, 18, 0, 2];
    const DST: [u8; 4] = [198, 18, 0, 1];

    fn tcp(flags: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(THEIRS, OURS).ipv4(SRC, DST, 64).tcp(80, 40000, 7, 1000);
        let b = match flags {
            0x12 => b.syn().ack(9),
            0x02 => b.syn(),
            0x10 => b.ack(9),
            0x04 => b.rst(),
            0x14 => b.rst().ack(9),
            0x11 => b.fin().ack(9),
            _ => unreachable!(),
        };
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }
    fn icmp_echo(request: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(THEIRS, OURS).ipv4(SRC, DST, 64);
        let b = if request { b.icmpv4_echo_request(1, 2) } else { b.icmpv4_echo_reply(1, 2) };
        let mut v = Vec::new();
        b.write(&mut v, &[0; 20]).unwrap();
        v
    }
    fn udp() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(THEIRS, OURS)
            .ipv4(SRC, DST, 64)
            .udp(53, 40000)
            .write(&mut v, b"answer")
            .unwrap();
        v
    }
    fn arp() -> Vec<u8> {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&THEIRS);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        v.extend_from_slice(&THEIRS);
        v.extend_from_slice(&SRC);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&DST);
        v
    }
    /// Same frame with the Ethernet source set to `mac`.
    fn from(mut f: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
        f[6..12].copy_from_slice(&mac);
        f
    }
    /// A frame with `opt_len` bytes of IP options (NOPs + EOL) and the given L4 header bytes.
    fn with_ip_options(proto: u8, l4: &[u8], opt_len: usize) -> Vec<u8> {
        let opts = vec![1u8; opt_len];
        let mut h = Ipv4Header::new(l4.len() as u16, 64, IpNumber(proto), SRC, DST).unwrap();
        h.options = Ipv4Options::try_from(&opts[..]).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = Vec::new();
        v.extend_from_slice(&OURS);
        v.extend_from_slice(&THEIRS);
        v.extend_from_slice(&[0x08, 0x00]);
        h.write(&mut v).unwrap();
        v.extend_from_slice(l4);
        v
    }
    fn tcp_header(flags: u8) -> [u8; 20] {
        let mut t = [0u8; 20];
        t[0..2].copy_from_slice(&80u16.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }
    fn fragment(mut f: Vec<u8>, offset_units: u16) -> Vec<u8> {
        f[20..22].copy_from_slice(&offset_units.to_be_bytes());
        f
    }
    fn strip_eth(f: &[u8]) -> Vec<u8> {
        f[14..].to_vec()
    }
    fn spec(kind: FilterKind, link: LinkLayer) -> FilterSpec {
        FilterSpec { kind, link, our_mac: Some(OURS), snaplen: 96 }
    }

    /// (frame, accepted by tcp, by icmp, by udp)
    fn cases() -> Vec<(&'static str, Vec<u8>, [bool; 3])> {
        vec![
            ("synack", tcp(0x12), [true, false, false]),
            ("rst", tcp(0x04), [true, false, false]),
            ("rst-ack", tcp(0x14), [true, false, false]),
            ("bare syn", tcp(0x02), [false, false, false]),
            ("ack", tcp(0x10), [false, false, false]),
            ("fin-ack", tcp(0x11), [false, false, false]),
            ("echo request", icmp_echo(true), [true, false, true]),
            ("echo reply", icmp_echo(false), [true, true, true]),
            ("udp", udp(), [false, false, true]),
            ("arp", arp(), [false, false, false]),
            ("synack from us", from(tcp(0x12), OURS), [false, false, false]),
            ("echo reply from us", from(icmp_echo(false), OURS), [false, false, false]),
            ("udp from us", from(udp(), OURS), [false, false, false]),
            (
                "synack from near-us mac",
                from(tcp(0x12), [2, 0, 0x5e, 0x10, 9, 1]),
                [true, false, false],
            ),
            (
                "synack + 8B ip options",
                with_ip_options(6, &tcp_header(0x12), 8),
                [true, false, false],
            ),
            (
                "syn + 40B ip options",
                with_ip_options(6, &tcp_header(0x02), 40),
                [false, false, false],
            ),
            ("rst + 4B ip options", with_ip_options(6, &tcp_header(0x04), 4), [true, false, false]),
            // With options, the byte at the option-less ICMP type offset would be 1 (NOP).
            (
                "echo request + options",
                with_ip_options(1, &[8, 0, 0, 0, 0, 0, 0, 0], 12),
                [true, false, true],
            ),
            (
                "echo reply + options",
                with_ip_options(1, &[0, 0, 0, 0, 0, 0, 0, 0], 12),
                [true, true, true],
            ),
            ("synack non-first fragment", fragment(tcp(0x12), 3), [false, false, false]),
            ("echo reply non-first fragment", fragment(icmp_echo(false), 3), [true, false, true]),
            ("truncated synack", tcp(0x12)[..40].to_vec(), [false, false, false]),
            (
                "ipv6 ethertype",
                {
                    let mut f = tcp(0x12);
                    f[12..14].copy_from_slice(&[0x86, 0xdd]);
                    f
                },
                [false, false, false],
            ),
        ]
    }

    #[test]
    fn ethernet_programs_match_zmap_filters() {
        for (k, kind) in [FilterKind::Tcp, FilterKind::Icmp, FilterKind::Udp].iter().enumerate() {
            let prog = program(&spec(*kind, LinkLayer::Ethernet));
            for (name, frame, want) in cases() {
                let got = run(&prog, &frame);
                assert_eq!(got != 0, want[k], "{kind:?} on {name}");
                if got != 0 {
                    assert_eq!(got, 96);
                }
            }
        }
    }

    #[test]
    fn ip_programs_match_on_l3_packets() {
        for (k, kind) in [FilterKind::Tcp, FilterKind::Icmp, FilterKind::Udp].iter().enumerate() {
            let prog = program(&spec(*kind, LinkLayer::Ip));
            for (name, frame, want) in cases() {
                if name == "arp" || name == "ipv6 ethertype" || name.contains("from us") {
                    continue;
                }
                assert_eq!(run(&prog, &strip_eth(&frame)) != 0, want[k], "{kind:?} on {name}");
            }
            // An IPv6 packet (version 6) is rejected whatever follows.
            let mut v6 = strip_eth(&tcp(0x12));
            v6[0] = 0x60;
            assert_eq!(run(&prog, &v6), 0, "{kind:?} on ipv6");
        }
    }

    #[test]
    fn without_mac_frames_from_anyone_pass() {
        let prog = program(&FilterSpec {
            kind: FilterKind::Tcp,
            link: LinkLayer::Ethernet,
            our_mac: None,
            snaplen: 1516,
        });
        assert_eq!(run(&prog, &from(tcp(0x12), OURS)), 1516);
        assert_eq!(run(&prog, &tcp(0x02)), 0);
    }

    /// The banner filter for a port range in the test frames' destination-port region.
    const SEGMENTS: FilterKind = FilterKind::TcpSegments { first: 39_990, last: 40_010 };

    #[test]
    fn segment_filter_passes_every_tcp_flag_inside_the_port_range_only() {
        let frame = tcp(0x10);
        let dport = u16::from_be_bytes([frame[14 + 20 + 2], frame[14 + 20 + 3]]);
        for (first, last, want) in [
            (dport, dport, true),
            (dport.saturating_sub(5), dport.saturating_add(5), true),
            (dport.wrapping_add(1), dport.wrapping_add(9), false),
            (0, dport.wrapping_sub(1), false),
        ] {
            let kind = FilterKind::TcpSegments { first, last };
            for flags in [0x10u8, 0x14, 0x11, 0x12, 0x04, 0x02] {
                let prog = program(&spec(kind, LinkLayer::Ethernet));
                let mut f = tcp(flags);
                f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&dport.to_be_bytes());
                assert_eq!(run(&prog, &f) != 0, want, "{first}-{last} flags {flags:#x}");
                assert_eq!(run(&prog, &f) != 0, reference(&spec(kind, LinkLayer::Ethernet), &f));
            }
        }
    }

    #[test]
    fn jumps_are_in_bounds_and_programs_end_in_returns() {
        for kind in [FilterKind::Tcp, FilterKind::Icmp, FilterKind::Udp, SEGMENTS] {
            for link in [LinkLayer::Ethernet, LinkLayer::Ip] {
                let prog = program(&spec(kind, link));
                assert_eq!(prog.last().unwrap().code, op::RET | op::K);
                for (pc, i) in prog.iter().enumerate() {
                    if i.code & 0x07 == op::JMP {
                        assert!(pc + 1 + usize::from(i.jt.max(i.jf)) < prog.len());
                    }
                }
            }
        }
    }

    /// A direct reading of the three pcap filters, written independently of the program.
    fn reference(spec: &FilterSpec, p: &[u8]) -> bool {
        let ip = match spec.link {
            LinkLayer::Ethernet => {
                if p.len() < 14 || spec.our_mac.is_some_and(|m| p[6..12] == m) {
                    return false;
                }
                if p[12..14] != [0x08, 0x00] {
                    return false;
                }
                14
            }
            LinkLayer::Ip => {
                if p.first().is_none_or(|b| b >> 4 != 4) {
                    return false;
                }
                0
            }
        };
        let Some(&proto) = p.get(ip + 9) else { return false };
        let first_fragment = u16::from_be_bytes([p[ip + 6], p[ip + 7]]) & 0x1fff == 0;
        let l4 = ip + usize::from(p[ip] & 0xf) * 4;
        match spec.kind {
            FilterKind::Tcp => {
                proto == 1
                    || (proto == 6
                        && first_fragment
                        && p.get(l4 + 13).is_some_and(|&f| f & 4 != 0 || f == 0x12))
            }
            FilterKind::Icmp => proto == 1 && first_fragment && p.get(l4).is_some_and(|&t| t != 8),
            FilterKind::Udp => proto == 17 || proto == 1,
            FilterKind::TcpSegments { first, last } => {
                proto == 1
                    || (proto == 6
                        && first_fragment
                        && p.get(l4 + 2..l4 + 4).is_some_and(|d| {
                            (first..=last).contains(&u16::from_be_bytes([d[0], d[1]]))
                        }))
            }
        }
    }

    fn arb_spec() -> impl proptest::strategy::Strategy<Value = FilterSpec> {
        use proptest::prelude::*;
        (0..4usize, any::<bool>(), any::<bool>(), 1..2000u32).prop_map(|(k, eth, mac, snaplen)| {
            FilterSpec {
                kind: [FilterKind::Tcp, FilterKind::Icmp, FilterKind::Udp, SEGMENTS][k],
                link: if eth { LinkLayer::Ethernet } else { LinkLayer::Ip },
                our_mac: mac.then_some(OURS),
                snaplen,
            }
        })
    }

    proptest::proptest! {
        /// Real frames with a few bytes overwritten and a random length, or plain noise:
        /// the program and the reference agree on every one.
        #[test]
        fn programs_agree_with_the_reference(
            spec in arb_spec(),
            base in 0..1000usize,
            edits in proptest::collection::vec((0..120usize, proptest::prelude::any::<u8>()), 0..4),
            cut in 0..130usize,
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            use_noise in proptest::prelude::any::<bool>(),
        ) {
            let mut p = if use_noise {
                noise
            } else {
                let mut all = cases();
                let mut f = all.swap_remove(base % all.len()).1;
                if spec.link == LinkLayer::Ip {
                    f.drain(..14);
                }
                for (at, v) in edits {
                    if let Some(b) = f.get_mut(at) {
                        *b = v;
                    }
                }
                f
            };
            p.truncate(cut);
            let prog = program(&spec);
            let got = run(&prog, &p);
            proptest::prop_assert_eq!(got != 0, reference(&spec, &p));
            if got != 0 {
                proptest::prop_assert_eq!(got, spec.snaplen);
            }
        }
    }
}
