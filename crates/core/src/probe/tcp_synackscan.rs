//! `tcp_synackscan`: an unsolicited TCP SYN-ACK to each target port; a live host answers with
//! a reset.
//!
//! The probe is a 58-byte frame: a 24-byte TCP header with SYN|ACK, window 65535, one MSS 1460
//! option, `seq = v[0]` and `ack = v[2]`. Replies are validated as ZMap 4 does: the source port
//! must be a target port (unless `--validate-source-port` turns that off), the port the reply
//! went to inside the target's window, the source in scope; a RST must have `ack == v[0] + 1`,
//! `seq == v[2]` (what RFC 793 prescribes: a reset takes its sequence number from the
//! offending segment's ACK field) or `seq == v[2] + 1`; a SYN-ACK must have `ack == v[0] + 1`.
//! Any other TCP reply is rejected (ZMap accepts any non-RST as "synack").
//!
//! Success, a deliberate difference from ZMap: ZMap 4 marks both `rst` and `synack` as
//! success although its help text says a SYN-ACK is a failure and a reset a success. rzmap
//! follows the help text: a RST is the answer any live TCP stack gives to an unsolicited
//! SYN-ACK, so `rst` is the success signal (host liveness); a SYN-ACK back is unexpected and
//! counted as a failure; ICMP errors are failures.

use rzmap_wire::ipv4::{self};
use rzmap_wire::tcp::{self, TcpPacket};

use super::tcp_synscan::{describe_tcp, validate_tcp};
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    icmp_fields, patch_ip, write_eth_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends one TCP SYN-ACK (MSS option only) to each target port. A live host \
answers an unsolicited SYN-ACK with a reset: \"rst\" is the success; a SYN-ACK back is \
classified \"synack\" (failure), and an ICMP error quoting the probe \"icmp\" (failure). \
Takes no --probe-args.";

/// TCP header length (20 + the 4-byte MSS option).
pub const TCP_LEN: usize = 24;
/// Frame length of every probe.
pub const FRAME_LEN: usize = ETH_IP_LEN + TCP_LEN;

/// The module's output fields, in ZMap's order.
pub static FIELDS: [FieldDef; 11] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        FieldDef::new("sport", FieldType::Int, "TCP source port"),
        FieldDef::new("dport", FieldType::Int, "TCP destination port"),
        FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
        FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
        FieldDef::new("window", FieldType::Int, "TCP window"),
        c[0],
        c[1],
        i[0],
        i[1],
        i[2],
        i[3],
    ]
};

const F_CLASS: usize = 5;
const F_SUCCESS: usize = 6;
const F_ICMP: usize = 7;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "tcp_synackscan",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(TcpSynAckScan::new(args)?)),
};

/// The TCP SYN-ACK scan module.
#[derive(Clone, Debug, Default)]
pub struct TcpSynAckScan;

impl TcpSynAckScan {
    /// Creates the module; it takes no `--probe-args`.
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        match args {
            None => Ok(Self),
            Some(a) => Err(InputError::new(
                "--probe-args",
                format!("tcp_synackscan takes no probe arguments (got \"{a}\")"),
            )),
        }
    }
}

impl ProbeModule for TcpSynAckScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        FRAME_LEN
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::TcpSynAckRstOrIcmp, snaplen: 96 }
    }
    fn validate_source_port_default(&self) -> bool {
        true
    }
    fn probe_args(&self) -> Option<&str> {
        None
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        write_eth_ip(buf, cfg, ipv4::PROTO_TCP, (20 + TCP_LEN) as u16);
        let seg = &mut buf[ETH_IP_LEN..FRAME_LEN];
        seg.fill(0);
        seg[12] = ((TCP_LEN / 4) as u8) << 4;
        seg[13] = tcp::FLAG_SYN | tcp::FLAG_ACK;
        seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
        seg[20..24].copy_from_slice(&[tcp::kind::MSS, 4, 0x05, 0xb4]);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        patch_ip(buf, p);
        let seg = &mut buf[ETH_IP_LEN..FRAME_LEN];
        let sport = cfg.source_port(p.validation[1], p.probe_num);
        seg[0..2].copy_from_slice(&sport.to_be_bytes());
        seg[2..4].copy_from_slice(&p.dport.to_be_bytes());
        seg[4..8].copy_from_slice(&p.validation[0].to_be_bytes());
        seg[8..12].copy_from_slice(&p.validation[2].to_be_bytes());
        seg[16..18].fill(0);
        let c = rzmap_wire::checksum::transport_checksum(p.src, p.dst, ipv4::PROTO_TCP, seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        FRAME_LEN
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        // ZMap prints SYN-ACK probes with the SYN scan's line.
        describe_tcp(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        validate_tcp(ip, chk, |kind, seq, ack, v| {
            let ack_ok = ack == v[0].wrapping_add(1);
            match kind {
                ReplyKind::Rst => ack_ok || seq == v[2] || seq == v[2].wrapping_add(1),
                _ => ack_ok,
            }
        })
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        match kind {
            ReplyKind::SynAck | ReplyKind::Rst => {
                let Ok(t) = TcpPacket::new_checked(ip.payload()) else { return };
                rec.set_int(base, u64::from(t.src_port()));
                rec.set_int(base + 1, u64::from(t.dst_port()));
                rec.set_int(base + 2, u64::from(t.seq()));
                rec.set_int(base + 3, u64::from(t.ack()));
                rec.set_int(base + 4, u64::from(t.window()));
                let rst = *kind == ReplyKind::Rst;
                rec.set_str(base + F_CLASS, if rst { "rst" } else { "synack" });
                rec.set_bool(base + F_SUCCESS, rst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Schema, Value};
    use crate::probe::testutil::*;
    use etherparse::{SlicedPacket, TcpOptionElement, TransportSlice};
    use std::net::Ipv4Addr;

    fn build(env: &Env, dst: Ipv4Addr, dport: u16, probe: u32) -> (Vec<u8>, [u32; 4], u16) {
        let (buf, v) = env.build_frame(&TcpSynAckScan, dst, dport, probe);
        let sport = u16::from_be_bytes([buf[34], buf[35]]);
        (buf, v, sport)
    }

    fn classify(pkt: &[u8], kind: ReplyKind) -> (Schema, Record) {
        let m = TcpSynAckScan;
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(pkt, &kind, &mut rec, schema.module_start());
        (schema, rec)
    }

    fn get<'a>(s: &Schema, r: &'a Record, name: &str) -> Value<'a> {
        r.get(s.index_of(name).unwrap())
    }

    #[test]
    fn synack_probe_etherparse_accepts() {
        let env = Env::new(&[443]);
        let (f, v, _) = build(&env, TARGET, 443, 0);
        assert_eq!(f.len(), 58);
        assert_eq!(TcpSynAckScan.max_frame_len(), 58);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.identification, (v[3] & 0xffff) as u16);
        assert!(!h.dont_fragment);
        let Some(TransportSlice::Tcp(t)) = p.transport else { panic!() };
        assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, &[]).unwrap());
        assert!(t.syn() && t.ack() && !t.rst() && !t.fin() && !t.psh());
        assert_eq!(t.sequence_number(), v[0]);
        assert_eq!(t.acknowledgment_number(), v[2]);
        assert_eq!(t.window_size(), 65535);
        assert_eq!(t.destination_port(), 443);
        assert_eq!(t.source_port(), 40000 + (v[1] % 100) as u16);
        let opts: Vec<_> = t.options_iterator().collect::<Result<_, _>>().unwrap();
        assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1460)]);
        assert!(TcpSynAckScan::new(Some("windows")).is_err());
        let mut s = String::new();
        TcpSynAckScan.describe(&f, false, &mut s);
        let first = s.lines().next().unwrap();
        let want =
            format!("tcp {{ source: {} | dest: 443 | seq: {} | checksum: ", t.source_port(), v[0]);
        assert!(first.starts_with(&want), "{first}");
        assert!(
            s.lines().nth(1).unwrap().starts_with("ip { saddr: 198.18.0.1 | daddr: 198.19.3.4")
        );
        assert_eq!(s.lines().count(), 3, "no eth line with -X");
    }

    #[test]
    fn rst_is_success_and_each_validation_rule_holds() {
        let env = Env::new(&[443]);
        let chk = env.check(None);
        let (_, v, sport) = build(&env, TARGET, 443, 0);
        let m = TcpSynAckScan;
        let rst = Flags { syn: false, ack: false, rst: true };
        // RFC 793's answer: seq = our ACK, no ACK flag.
        let r = tcp_reply(TARGET, US, 443, sport, v[2], 0, rst, &[]);
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::Rst));
        let (s, rec) = classify(&r, ReplyKind::Rst);
        assert_eq!(get(&s, &rec, "classification"), Value::Str("rst"));
        assert_eq!(get(&s, &rec, "success"), Value::Bool(true));
        assert_eq!(get(&s, &rec, "seqnum"), Value::Int(u64::from(v[2])));
        assert_eq!(get(&s, &rec, "sport"), Value::Int(443));
        assert_eq!(get(&s, &rec, "dport"), Value::Int(u64::from(sport)));
        assert_eq!(get(&s, &rec, "window"), Value::Int(29200));
        assert_eq!(get(&s, &rec, "icmp_type"), Value::Null);
        // The other two accepted forms.
        let r2 = tcp_reply(TARGET, US, 443, sport, v[2].wrapping_add(1), 0, rst, &[]);
        assert_eq!(m.validate(&r2, &chk), Ok(ReplyKind::Rst));
        let rst_ack = Flags { syn: false, ack: true, rst: true };
        let r3 = tcp_reply(TARGET, US, 443, sport, 5, v[0].wrapping_add(1), rst_ack, &[]);
        assert_eq!(m.validate(&r3, &chk), Ok(ReplyKind::Rst));
        // One altered field each.
        let bad_seq = tcp_reply(TARGET, US, 443, sport, v[2].wrapping_add(2), 0, rst, &[]);
        assert_eq!(m.validate(&bad_seq, &chk), Err(Reject::NotOurs));
        let bad_ack = tcp_reply(TARGET, US, 443, sport, 5, v[0], rst_ack, &[]);
        assert_eq!(m.validate(&bad_ack, &chk), Err(Reject::NotOurs));
        let other_port = if sport == 40099 { 40000 } else { sport + 1 };
        let r = tcp_reply(TARGET, US, 443, other_port, v[2], 0, rst, &[]);
        assert_eq!(m.validate(&r, &chk), Err(Reject::PortOutsideWindow));
        let r = tcp_reply(TARGET, US, 444, sport, v[2], 0, rst, &[]);
        assert_eq!(m.validate(&r, &chk), Err(Reject::UnexpectedSourcePort));
        let r = tcp_reply(Ipv4Addr::new(203, 0, 113, 1), US, 443, sport, v[2], 0, rst, &[]);
        assert_eq!(m.validate(&r, &chk), Err(Reject::SourceNotInScope));
        let ack_only = Flags { syn: false, ack: true, rst: false };
        let r = tcp_reply(TARGET, US, 443, sport, 5, v[0].wrapping_add(1), ack_only, &[]);
        assert_eq!(m.validate(&r, &chk), Err(Reject::UnexpectedType));
    }

    #[test]
    fn synack_back_is_a_failure() {
        let env = Env::new(&[443]);
        let chk = env.check(None);
        let (_, v, sport) = build(&env, TARGET, 443, 0);
        let fl = Flags { syn: true, ack: true, rst: false };
        let r = tcp_reply(TARGET, US, 443, sport, 1, v[0].wrapping_add(1), fl, &[]);
        assert_eq!(TcpSynAckScan.validate(&r, &chk), Ok(ReplyKind::SynAck));
        let (s, rec) = classify(&r, ReplyKind::SynAck);
        assert_eq!(get(&s, &rec, "classification"), Value::Str("synack"));
        assert_eq!(get(&s, &rec, "success"), Value::Bool(false));
        // A SYN-ACK must acknowledge seq + 1; the RST-only seq rule does not apply.
        let r = tcp_reply(TARGET, US, 443, sport, v[2], v[0], fl, &[]);
        assert_eq!(TcpSynAckScan.validate(&r, &chk), Err(Reject::NotOurs));
    }

    #[test]
    fn icmp_error_quoting_the_probe() {
        let env = Env::new(&[443]);
        let chk = env.check(None);
        let (f, _, _) = build(&env, TARGET, 443, 0);
        let e = icmp_error(ROUTER, US, 3, 10, &f[14..], 28);
        assert_eq!(TcpSynAckScan.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        let (s, rec) = classify(&e, ReplyKind::IcmpError);
        assert_eq!(get(&s, &rec, "classification"), Value::Str("icmp"));
        assert_eq!(get(&s, &rec, "success"), Value::Bool(false));
        assert_eq!(get(&s, &rec, "saddr"), Value::Str("198.19.3.4"));
        assert_eq!(get(&s, &rec, "icmp_responder"), Value::Str("198.18.200.1"));
        assert_eq!(get(&s, &rec, "icmp_unreach_str"), Value::Str("host admin. prohibited"));
        let mut forged = f[14..].to_vec();
        forged[22..24].copy_from_slice(&444u16.to_be_bytes());
        let e = icmp_error(ROUTER, US, 3, 10, &forged, 28);
        assert_eq!(TcpSynAckScan.validate(&e, &chk), Err(Reject::UnexpectedSourcePort));
        assert_eq!(
            TcpSynAckScan.validate(&icmp_error(ROUTER, US, 3, 10, &f[14..], 27), &chk),
            Err(Reject::Truncated)
        );
    }
}
