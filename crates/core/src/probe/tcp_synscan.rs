//! `tcp_synscan`: a TCP SYN to each target port; SYN-ACK means open, RST closed.

use std::fmt::Write as _;

use rzmap_wire::ipv4::{self};
use rzmap_wire::tcp::{self, TcpOptionSummary, TcpPacket};

use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    describe_ip_eth, icmp_fields, patch_ip, reply_ip, validate_icmp_error, write_c_hex04,
    write_eth_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends one TCP SYN to each target port. A SYN-ACK is classified \"synack\" \
(success), a reset \"rst\" (failure), and an ICMP error quoting the probe \"icmp\" (failure). \
--probe-args chooses the TCP options, imitating an operating system: \"windows\" (default: MSS, \
window scale 8, SACK permitted), \"linux\", \"bsd\", or \"smallest-probes\" (MSS only, the \
smallest frame that still gets good answers).";

/// The module's output fields, in ZMap's order.
pub static FIELDS: [FieldDef; 16] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        FieldDef::new("sport", FieldType::Int, "TCP source port"),
        FieldDef::new("dport", FieldType::Int, "TCP destination port"),
        FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
        FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
        FieldDef::new("window", FieldType::Int, "TCP window"),
        FieldDef::new("tcpopt_mss", FieldType::Int, "TCP MSS option"),
        FieldDef::new("tcpopt_wscale", FieldType::Int, "TCP Window scale option"),
        FieldDef::new("tcpopt_sack_perm", FieldType::Int, "TCP SACK permitted option"),
        FieldDef::new("tcpopt_ts_val", FieldType::Int, "TCP timestamp option value"),
        FieldDef::new("tcpopt_ts_ecr", FieldType::Int, "TCP timestamp option echo reply"),
        c[0],
        c[1],
        i[0],
        i[1],
        i[2],
        i[3],
    ]
};

const F_SPORT: usize = 0;
const F_CLASS: usize = 10;
const F_SUCCESS: usize = 11;
const F_ICMP: usize = 12;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "tcp_synscan",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(TcpSynScan::new(args)?)),
};

/// Which operating system's SYN options to imitate (`--probe-args`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionStyle {
    /// MSS 1460, NOP, WS 8, NOP, NOP, SACK-permitted (TCP header 32 bytes, frame 66).
    Windows,
    /// MSS 1460, SACK-permitted, timestamps, NOP, WS 7 (40/74).
    Linux,
    /// MSS 1460, NOP, WS 6, NOP, NOP, timestamps, SACK-permitted, EOL (44/78).
    Bsd,
    /// MSS 1460 only (24/58).
    SmallestProbes,
}

impl OptionStyle {
    /// Parses a `--probe-args` value.
    pub fn parse(arg: &str) -> Result<Self, InputError> {
        match arg {
            "windows" => Ok(Self::Windows),
            "linux" => Ok(Self::Linux),
            "bsd" => Ok(Self::Bsd),
            "smallest-probes" => Ok(Self::SmallestProbes),
            other => Err(InputError::new(
                "--probe-args",
                format!(
                    "unknown tcp_synscan option style \"{other}\" (expected \"smallest-probes\", \
                     \"bsd\", \"windows\" or \"linux\")"
                ),
            )),
        }
    }

    /// The `--probe-args` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::Linux => "linux",
            Self::Bsd => "bsd",
            Self::SmallestProbes => "smallest-probes",
        }
    }

    /// TCP header length with these options.
    pub fn tcp_len(self) -> usize {
        match self {
            Self::Windows => 32,
            Self::Linux => 40,
            Self::Bsd => 44,
            Self::SmallestProbes => 24,
        }
    }

    /// Writes the option bytes (`tcp_len() - 20` of them) with timestamp value `ts`.
    fn write(self, out: &mut [u8], ts: u32) {
        const MSS: [u8; 4] = [2, 4, 0x05, 0xb4];
        let t = ts.to_be_bytes();
        match self {
            Self::Windows => {
                out[..12].copy_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]);
            }
            Self::Linux => {
                out[..4].copy_from_slice(&MSS);
                out[4..8].copy_from_slice(&[4, 2, 8, 10]);
                out[8..12].copy_from_slice(&t);
                out[12..16].fill(0);
                out[16..20].copy_from_slice(&[1, 3, 3, 7]);
            }
            Self::Bsd => {
                out[..4].copy_from_slice(&MSS);
                out[4..10].copy_from_slice(&[1, 3, 3, 6, 1, 1]);
                out[10..12].copy_from_slice(&[8, 10]);
                out[12..16].copy_from_slice(&t);
                out[16..20].fill(0);
                out[20..24].copy_from_slice(&[4, 2, 0, 0]);
            }
            Self::SmallestProbes => out[..4].copy_from_slice(&MSS),
        }
    }
}

/// The TCP SYN scan module.
#[derive(Clone, Debug)]
pub struct TcpSynScan {
    style: OptionStyle,
    /// TCP header length with the options.
    tcp_len: usize,
    /// The unfolded checksum sum of the template's constant TCP words (acknowledgment,
    /// offset and flags, window, urgent pointer, options with a zero timestamp).
    constant_sum: u64,
    /// Whether the options carry the `prepare`-time timestamp (which then adds its two words).
    has_timestamp: bool,
}

impl TcpSynScan {
    /// Creates the module from `--probe-args` (default `windows`).
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        let style = match args {
            None => OptionStyle::Windows,
            Some(a) => OptionStyle::parse(a)?,
        };
        let tcp_len = style.tcp_len();
        // The sum of the constant words, from the segment `prepare` writes; the timestamp
        // enters the sum as two plain words, so a zero one tells which styles carry it.
        let constant = |ts: u32| {
            let mut seg = [0u8; 64];
            write_segment(&mut seg[..tcp_len], style, ts);
            rzmap_wire::checksum::sum(&seg[8..16], 0)
                + rzmap_wire::checksum::sum(&seg[18..tcp_len], 0)
        };
        let constant_sum = constant(0);
        let has_timestamp = constant(0x0001_0001) != constant_sum;
        Ok(Self { style, tcp_len, constant_sum, has_timestamp })
    }

    /// The option style in use.
    pub fn style(&self) -> OptionStyle {
        self.style
    }
}

/// Writes a SYN's TCP header template (ports, sequence number and checksum zero) with the
/// options of `style` and timestamp value `ts` into `seg` (`style.tcp_len()` bytes).
fn write_segment(seg: &mut [u8], style: OptionStyle, ts: u32) {
    seg.fill(0);
    seg[12] = ((seg.len() / 4) as u8) << 4;
    seg[13] = tcp::FLAG_SYN;
    seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
    style.write(&mut seg[20..], ts);
}

impl ProbeModule for TcpSynScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        ETH_IP_LEN + self.tcp_len
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::TcpSynAckRstOrIcmp, snaplen: 96 }
    }
    fn validate_source_port_default(&self) -> bool {
        true
    }
    fn probe_args(&self) -> Option<&str> {
        Some(self.style.name())
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        write_eth_ip(buf, cfg, ipv4::PROTO_TCP, (20 + self.tcp_len) as u16);
        write_segment(&mut buf[ETH_IP_LEN..ETH_IP_LEN + self.tcp_len], self.style, cfg.timestamp);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        let tcp_len = self.tcp_len;
        let end = ETH_IP_LEN + tcp_len;
        use rzmap_wire::checksum::{fold, pseudo_header_sum};
        patch_ip(buf, p);
        let seg = &mut buf[ETH_IP_LEN..end];
        let sport = cfg.source_port(p.validation[1], p.probe_num);
        let seq = p.validation[0];
        // The template's constant words, summed once at creation, plus the new values; no
        // byte of the frame is read back (see `patch_ip`).
        let ts =
            if self.has_timestamp { (cfg.timestamp >> 16) + (cfg.timestamp & 0xffff) } else { 0 };
        let s = pseudo_header_sum(p.src, p.dst, ipv4::PROTO_TCP, tcp_len as u16)
            + self.constant_sum
            + u64::from(ts)
            + u64::from(sport)
            + u64::from(p.dport)
            + u64::from(seq >> 16)
            + u64::from(seq & 0xffff);
        seg[0..2].copy_from_slice(&sport.to_be_bytes());
        seg[2..4].copy_from_slice(&p.dport.to_be_bytes());
        seg[4..8].copy_from_slice(&seq.to_be_bytes());
        seg[16..18].copy_from_slice(&(!fold(s)).to_be_bytes());
        end
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        describe_tcp(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        // An RST may acknowledge the SYN's sequence number or the one after it.
        validate_tcp(ip, chk, |kind, _seq, ack, v| match kind {
            ReplyKind::Rst => ack == v[0] || ack == v[0].wrapping_add(1),
            _ => ack == v[0].wrapping_add(1),
        })
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        match kind {
            ReplyKind::SynAck | ReplyKind::Rst => {
                let Ok(t) = TcpPacket::new_checked(ip.payload()) else { return };
                let b = base + F_SPORT;
                rec.set_int(b, u64::from(t.src_port()));
                rec.set_int(b + 1, u64::from(t.dst_port()));
                rec.set_int(b + 2, u64::from(t.seq()));
                rec.set_int(b + 3, u64::from(t.ack()));
                rec.set_int(b + 4, u64::from(t.window()));
                let o = TcpOptionSummary::parse(t.options());
                if let Some(m) = o.mss {
                    rec.set_int(b + 5, u64::from(m));
                }
                if let Some(shift) = o.wscale.and_then(|s| 1u64.checked_shl(u32::from(s))) {
                    rec.set_int(b + 6, shift);
                }
                if o.sack_perm {
                    rec.set_int(b + 7, 1);
                }
                if let Some((val, ecr)) = o.timestamp {
                    rec.set_int(b + 8, u64::from(val));
                    rec.set_int(b + 9, u64::from(ecr));
                }
                let synack = *kind == ReplyKind::SynAck;
                rec.set_str(base + F_CLASS, if synack { "synack" } else { "rst" });
                rec.set_bool(base + F_SUCCESS, synack);
            }
            _ => {
                classify_icmp_error(
                    &ip,
                    rec,
                    "icmp",
                    base + F_CLASS,
                    base + F_SUCCESS,
                    base + F_ICMP,
                );
            }
        }
    }
}

/// Appends the dry-run block of a TCP probe frame (`tcp { .. }`, then IP and Ethernet), as
/// ZMap prints both SYN and SYN-ACK probes.
pub(crate) fn describe_tcp(frame: &[u8], with_eth: bool, out: &mut String) {
    if let Some(t) = frame.get(ETH_IP_LEN..).and_then(|s| TcpPacket::new_checked(s).ok()) {
        let _ = write!(
            out,
            "tcp {{ source: {} | dest: {} | seq: {} | checksum: ",
            t.src_port(),
            t.dst_port(),
            t.seq()
        );
        write_c_hex04(out, t.checksum());
        out.push_str(" }\n");
    }
    describe_ip_eth(frame, with_eth, out);
}

/// Validates a reply to a TCP probe: a SYN-ACK or RST from a target port (when source-port
/// validation is on), from an address in scope, to a port inside the target's window, that
/// `answers(kind, seq, ack, validation words)` accepts; or an ICMP error quoting our probe.
pub(crate) fn validate_tcp(
    ip: &[u8],
    chk: &ReplyCheck<'_>,
    answers: impl Fn(ReplyKind, u32, u32, &[u32; 4]) -> bool,
) -> Result<ReplyKind, Reject> {
    let ip = reply_ip(ip)?;
    match ip.protocol() {
        ipv4::PROTO_TCP => {
            let t = TcpPacket::new_checked(ip.payload())?;
            let kind = if t.rst() {
                ReplyKind::Rst
            } else if t.syn() && t.ack_flag() {
                ReplyKind::SynAck
            } else {
                return Err(Reject::UnexpectedType);
            };
            if chk.check_source_port(true) && !chk.target_ports.contains(t.src_port()) {
                return Err(Reject::UnexpectedSourcePort);
            }
            if !(chk.in_scope)(ip.src()) {
                return Err(Reject::SourceNotInScope);
            }
            let v = chk.validator.words(ip.dst(), ip.src(), t.src_port());
            if !chk.port_in_window(t.dst_port(), v[1]) {
                return Err(Reject::PortOutsideWindow);
            }
            if answers(kind, t.seq(), t.ack(), &v) { Ok(kind) } else { Err(Reject::NotOurs) }
        }
        ipv4::PROTO_ICMP => validate_icmp_error(&ip, ipv4::PROTO_TCP, chk),
        _ => Err(Reject::WrongProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Schema, Value};
    use crate::probe::testutil::*;
    use etherparse::{SlicedPacket, TcpOptionElement};
    use rzmap_wire::ipv4::Ipv4Packet;
    use std::net::Ipv4Addr;

    fn build(
        m: &TcpSynScan,
        env: &Env,
        dst: Ipv4Addr,
        dport: u16,
        probe: u32,
    ) -> (Vec<u8>, [u32; 4]) {
        env.build_frame(m, dst, dport, probe)
    }

    #[test]
    fn frame_sizes_and_option_layouts() {
        let env = Env::new(&[80]);
        for (arg, len, opts) in [
            ("windows", 66, vec![2u8, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]),
            ("smallest-probes", 58, vec![2, 4, 5, 0xb4]),
            ("linux", 74, {
                let mut o = vec![2, 4, 5, 0xb4, 4, 2, 8, 10];
                o.extend_from_slice(&1_700_000_000u32.to_be_bytes());
                o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
                o
            }),
            ("bsd", 78, {
                let mut o = vec![2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10];
                o.extend_from_slice(&1_700_000_000u32.to_be_bytes());
                o.extend_from_slice(&[0, 0, 0, 0, 4, 2, 0, 0]);
                o
            }),
        ] {
            let m = TcpSynScan::new(Some(arg)).unwrap();
            assert_eq!(m.max_frame_len(), len);
            let (f, v) = build(&m, &env, TARGET, 80, 0);
            assert_eq!(f.len(), len, "{arg}");
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "{arg}");
            assert_eq!(h.time_to_live, 64);
            assert!(!h.dont_fragment && !h.more_fragments);
            assert_eq!(h.dscp.value(), 0);
            assert_eq!(h.identification, (v[3] & 0xffff) as u16);
            assert_eq!(h.source, US.octets());
            assert_eq!(h.destination, TARGET.octets());
            let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!() };
            assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, &[]).unwrap(), "{arg}");
            assert!(t.syn() && !t.ack() && !t.rst());
            assert_eq!(t.window_size(), 65535);
            assert_eq!(t.sequence_number(), v[0]);
            assert_eq!(t.destination_port(), 80);
            assert_eq!(t.source_port(), 40000 + (v[1] % 100) as u16);
            assert_eq!(t.options(), &opts[..], "{arg}");
        }
        assert!(TcpSynScan::new(Some("solaris")).is_err());
    }

    #[test]
    fn dryrun_text_format() {
        let env = Env::new(&[80]);
        let m = TcpSynScan::new(None).unwrap();
        let (f, v) = build(&m, &env, TARGET, 80, 0);
        let mut s = String::new();
        m.describe(&f, true, &mut s);
        let t = TcpPacket::new_checked(&f[34..]).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let mut tc = String::new();
        write_c_hex04(&mut tc, t.checksum());
        let mut ic = String::new();
        write_c_hex04(&mut ic, ip.checksum());
        let expect = format!(
            "tcp {{ source: {} | dest: 80 | seq: {} | checksum: {tc} }}\n\
             ip {{ saddr: 198.18.0.1 | daddr: 198.19.3.4 | checksum: {ic} }}\n\
             eth {{ shost: 02:00:00:00:00:01 | dhost: 02:00:00:00:00:02 }}\n\
             ------------------------------------------------------\n",
            40000 + v[1] % 100,
            v[0]
        );
        assert_eq!(s, expect);
        let mut s2 = String::new();
        m.describe(&f, false, &mut s2);
        assert!(!s2.contains("eth {"));
        assert_eq!(s2.lines().count(), 3);
    }

    #[test]
    fn reproduces_the_zmap_dryrun_example() {
        // compat §6: `tcp { source: 36522 | dest: 80 | seq: 3383833940 | checksum: 0X9BFA }`
        // from 127.0.0.1 to 198.19.0.1 with the default (windows) options. Every byte of that
        // segment is known, so our checksum must match ZMap's.
        let m = TcpSynScan::new(None).unwrap();
        let cfg =
            ProbeConfig { sport_first: 36522, sport_count: 1, ..ProbeConfig::new([0; 6], [0; 6]) };
        let mut buf = vec![0u8; 128];
        m.prepare(&mut buf, &cfg);
        let p = ProbeInput {
            src: Ipv4Addr::new(127, 0, 0, 1),
            dst: Ipv4Addr::new(198, 19, 0, 1),
            dport: 80,
            probe_num: 0,
            validation: [3383833940, 0, 0, 0x1234],
            now: Default::default(),
        };
        let n = m.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(0));
        let mut s = String::new();
        m.describe(&buf[..n], true, &mut s);
        let mut lines = s.lines();
        assert_eq!(
            lines.next(),
            Some("tcp { source: 36522 | dest: 80 | seq: 3383833940 | checksum: 0X9BFA }")
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("ip { saddr: 127.0.0.1 | daddr: 198.19.0.1 | checksum: 0X")
        );
        assert_eq!(
            lines.next(),
            Some("eth { shost: 00:00:00:00:00:00 | dhost: 00:00:00:00:00:00 }")
        );
        assert_eq!(lines.next(), Some("------------------------------------------------------"));
    }

    fn classify(m: &TcpSynScan, pkt: &[u8], kind: ReplyKind) -> (Schema, Record) {
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(pkt, &kind, &mut rec, schema.module_start());
        (schema, rec)
    }

    fn get<'a>(s: &Schema, r: &'a Record, name: &str) -> Value<'a> {
        r.get(s.index_of(name).unwrap())
    }

    #[test]
    fn synack_validates_and_classifies() {
        let env = Env::new(&[80]);
        let m = TcpSynScan::new(None).unwrap();
        let (f, v) = build(&m, &env, TARGET, 80, 0);
        let sport = TcpPacket::new_checked(&f[34..]).unwrap().src_port();
        let opts = [
            TcpOptionElement::MaximumSegmentSize(1400),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(5, 6),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ];
        let fl = Flags { syn: true, ack: true, rst: false };
        let r = tcp_reply(TARGET, US, 80, sport, 1234, v[0].wrapping_add(1), fl, &opts);
        assert_eq!(m.validate(&r, &env.check(None)), Ok(ReplyKind::SynAck));
        let (s, rec) = classify(&m, &r, ReplyKind::SynAck);
        assert_eq!(get(&s, &rec, "saddr"), Value::Str("198.19.3.4"));
        assert_eq!(
            get(&s, &rec, "saddr_raw"),
            Value::Int(u64::from(u32::from_ne_bytes([198, 19, 3, 4])))
        );
        assert_eq!(get(&s, &rec, "ttl"), Value::Int(57));
        assert_eq!(get(&s, &rec, "sport"), Value::Int(80));
        assert_eq!(get(&s, &rec, "dport"), Value::Int(u64::from(sport)));
        assert_eq!(get(&s, &rec, "seqnum"), Value::Int(1234));
        assert_eq!(get(&s, &rec, "acknum"), Value::Int(u64::from(v[0].wrapping_add(1))));
        assert_eq!(get(&s, &rec, "window"), Value::Int(29200));
        assert_eq!(get(&s, &rec, "tcpopt_mss"), Value::Int(1400));
        assert_eq!(get(&s, &rec, "tcpopt_wscale"), Value::Int(128));
        assert_eq!(get(&s, &rec, "tcpopt_sack_perm"), Value::Int(1));
        assert_eq!(get(&s, &rec, "tcpopt_ts_val"), Value::Int(5));
        assert_eq!(get(&s, &rec, "tcpopt_ts_ecr"), Value::Int(6));
        assert_eq!(get(&s, &rec, "classification"), Value::Str("synack"));
        assert_eq!(get(&s, &rec, "success"), Value::Bool(true));
        assert_eq!(get(&s, &rec, "icmp_responder"), Value::Null);

        // Altered fields are rejected.
        let chk = env.check(None);
        let bad_ack = tcp_reply(TARGET, US, 80, sport, 1, v[0], fl, &[]);
        assert_eq!(m.validate(&bad_ack, &chk), Err(Reject::NotOurs));
        let wrong_dport = sport.wrapping_add(1).max(40000);
        let wrong_dport = if wrong_dport >= 40100 { 40000 } else { wrong_dport };
        let r2 = tcp_reply(TARGET, US, 80, wrong_dport, 1, v[0].wrapping_add(1), fl, &[]);
        assert_eq!(m.validate(&r2, &chk), Err(Reject::PortOutsideWindow));
        let r3 = tcp_reply(TARGET, US, 80, 39999, 1, v[0].wrapping_add(1), fl, &[]);
        assert_eq!(m.validate(&r3, &chk), Err(Reject::PortOutsideWindow));
        let out = Ipv4Addr::new(203, 0, 113, 9);
        let r4 = tcp_reply(out, US, 80, sport, 1, v[0].wrapping_add(1), fl, &[]);
        assert_eq!(m.validate(&r4, &chk), Err(Reject::SourceNotInScope));
        let r5 = tcp_reply(TARGET, US, 8080, sport, 1, v[0].wrapping_add(1), fl, &[]);
        assert_eq!(m.validate(&r5, &chk), Err(Reject::UnexpectedSourcePort));
        // With source-port validation disabled, the port 8080 reply still fails validation
        // (its words differ: either the port window or the ACK number no longer match).
        let res = m.validate(&r5, &env.check(Some(false)));
        assert!(matches!(res, Err(Reject::PortOutsideWindow | Reject::NotOurs)), "{res:?}");
        for cut in [0, 10, 19, 20, 30, 39] {
            assert!(m.validate(&r[..cut], &chk).is_err(), "cut {cut}");
        }
        let mut frag = r.clone();
        frag[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
        assert_eq!(m.validate(&frag, &chk), Err(Reject::Fragment));
        let ack_only = tcp_reply(
            TARGET,
            US,
            80,
            sport,
            1,
            v[0].wrapping_add(1),
            Flags { syn: false, ack: true, rst: false },
            &[],
        );
        assert_eq!(m.validate(&ack_only, &chk), Err(Reject::UnexpectedType));
    }

    #[test]
    fn rst_accepts_seq_and_seq_plus_one() {
        let env = Env::new(&[443]);
        let m = TcpSynScan::new(Some("smallest-probes")).unwrap();
        let (f, v) = build(&m, &env, TARGET, 443, 0);
        let sport = TcpPacket::new_checked(&f[34..]).unwrap().src_port();
        let fl = Flags { syn: false, ack: true, rst: true };
        let chk = env.check(None);
        for ack in [v[0], v[0].wrapping_add(1)] {
            let r = tcp_reply(TARGET, US, 443, sport, 0, ack, fl, &[]);
            assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::Rst));
            let (s, rec) = classify(&m, &r, ReplyKind::Rst);
            assert_eq!(get(&s, &rec, "classification"), Value::Str("rst"));
            assert_eq!(get(&s, &rec, "success"), Value::Bool(false));
            assert_eq!(get(&s, &rec, "tcpopt_mss"), Value::Null);
        }
        let r = tcp_reply(TARGET, US, 443, sport, 0, v[0].wrapping_add(2), fl, &[]);
        assert_eq!(m.validate(&r, &chk), Err(Reject::NotOurs));
    }

    #[test]
    fn icmp_error_quoting_our_probe() {
        let env = Env::new(&[80]);
        let m = TcpSynScan::new(None).unwrap();
        let (f, _) = build(&m, &env, TARGET, 80, 0);
        let probe_ip = &f[14..];
        let chk = env.check(None);
        // Quoting only 8 bytes of TCP (RFC 792 minimum) and the whole probe both validate.
        for qlen in [28, probe_ip.len()] {
            let e = icmp_error(ROUTER, US, 3, 13, probe_ip, qlen);
            assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError), "qlen {qlen}");
        }
        let e = icmp_error(ROUTER, US, 3, 13, probe_ip, 28);
        let (s, rec) = classify(&m, &e, ReplyKind::IcmpError);
        assert_eq!(get(&s, &rec, "saddr"), Value::Str("198.19.3.4"));
        assert_eq!(get(&s, &rec, "icmp_responder"), Value::Str("198.18.200.1"));
        assert_eq!(get(&s, &rec, "icmp_type"), Value::Int(3));
        assert_eq!(get(&s, &rec, "icmp_code"), Value::Int(13));
        assert_eq!(
            get(&s, &rec, "icmp_unreach_str"),
            Value::Str("communication admin. prohibited")
        );
        assert_eq!(get(&s, &rec, "classification"), Value::Str("icmp"));
        assert_eq!(get(&s, &rec, "success"), Value::Bool(false));
        assert_eq!(get(&s, &rec, "sport"), Value::Null);
        let e = icmp_error(ROUTER, US, 11, 0, probe_ip, 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        let (s, rec) =
            classify(&m, &icmp_error(ROUTER, US, 3, 200, probe_ip, 28), ReplyKind::IcmpError);
        assert_eq!(get(&s, &rec, "icmp_unreach_str"), Value::Str("unknown"));

        // Rejections: quoted too short, wrong type, target out of scope, other source port.
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, probe_ip, 27), &chk),
            Err(Reject::Truncated)
        );
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 0, 0, probe_ip, 28), &chk),
            Err(Reject::UnexpectedType)
        );
        let mut forged = probe_ip.to_vec();
        forged[16..20].copy_from_slice(&[203, 0, 113, 1]);
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &forged, 28), &chk),
            Err(Reject::SourceNotInScope)
        );
        let mut forged = probe_ip.to_vec();
        forged[20] ^= 0x55; // quoted source port, now far outside 40000..40100
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &forged, 28), &chk),
            Err(Reject::PortOutsideWindow)
        );
        let mut forged = probe_ip.to_vec();
        forged[22..24].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &forged, 28), &chk),
            Err(Reject::UnexpectedSourcePort)
        );
        let udp = udp_reply(US, TARGET, 40000, 80, b"x");
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 3, &udp, 28), &chk),
            Err(Reject::WrongProtocol)
        );
        assert_eq!(
            m.validate(&udp_reply(TARGET, US, 80, 40000, b"x"), &chk),
            Err(Reject::WrongProtocol)
        );
    }

    #[test]
    fn multiple_probes_use_a_window_of_ports() {
        let mut env = Env::new(&[80]);
        env.probes = 3;
        let m = TcpSynScan::new(None).unwrap();
        let chk = env.check(None);
        for probe in 0..3 {
            let (f, v) = build(&m, &env, TARGET, 80, probe);
            let sport = TcpPacket::new_checked(&f[34..]).unwrap().src_port();
            let fl = Flags { syn: true, ack: true, rst: false };
            let r = tcp_reply(TARGET, US, 80, sport, 1, v[0].wrapping_add(1), fl, &[]);
            assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::SynAck));
        }
    }
}
