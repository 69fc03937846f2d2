//! `icmp_echoscan`: an ICMP echo request to each address; an echo reply means up.
//!
//! As ZMap 4: id = `v[1] & 0xffff`, seq = `v[2] & 0xffff` (so all `-P` probes are identical);
//! an echo reply must carry both; an ICMP error (3, 4, 5, 11) must quote an echo request whose
//! id and seq match the words recomputed for the quoted destination.
//!
//! ICMP errors are reported as every other module reports them (compat §2): `saddr` is the
//! original target (the quoted datagram's destination), the error's sender goes in
//! `icmp_responder`, with `icmp_type`, `icmp_code` and `icmp_unreach_str`. ZMap 4's echo module
//! has no `icmp_*` fields and leaves `saddr` as the router, so an unreachable target could not be
//! told from the router that said so; rzmap appends the four fields after ZMap's seven and, for
//! errors, reports the *quoted* request's `icmp_id` and `seq` (the outer header's bytes 4..8
//! are unused in an error). Two more deliberate differences: echo replies from outside the
//! scanned space are rejected before the AES check (they could never validate), and `data`
//! (which starts 4 bytes into the ICMP header, as ZMap's) ends at the IP total length rather
//! than at the end of the capture, so Ethernet padding is not reported as data.

use std::fmt::Write as _;

use rzmap_wire::L4Head8;
use rzmap_wire::checksum;
use rzmap_wire::icmpv4::{self, Icmpv4Packet};
use rzmap_wire::ipv4::{self};

use super::payload::{MAX_ICMP_PAYLOAD_LEN, PayloadSpec, parse_payload_arg};
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, check_icmp_error, describe_ip_eth,
    fill_icmp_error_fields, icmp_fields, patch_ip, reply_ip, write_c_hex04, write_eth_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends one ICMP echo request to each address. An echo reply is \
classified \"echoreply\" (success); ICMP errors quoting the request are \"unreach\", \
\"sourcequench\", \"redirect\" or \"timxceed\" (failure). The payload is 20 zero bytes unless \
--probe-args gives text:STRING, hex:HEXDIGITS or file:PATH (at most 1458 bytes).";

/// Largest echo payload (ZMap's limit: 1500 minus Ethernet, IP and ICMP headers).
pub const MAX_PAYLOAD: usize = MAX_ICMP_PAYLOAD_LEN;
/// Default payload: 20 zero bytes.
pub const DEFAULT_PAYLOAD_LEN: usize = 20;

/// The module's output fields: ZMap's seven, then the shared `icmp_*` fields (null for echo
/// replies).
pub static FIELDS: [FieldDef; 11] = {
    let i = icmp_fields();
    [
        FieldDef::new("type", FieldType::Int, "icmp message type"),
        FieldDef::new("code", FieldType::Int, "icmp message sub type code"),
        FieldDef::new("icmp_id", FieldType::Int, "icmp id number"),
        FieldDef::new("seq", FieldType::Int, "icmp sequence number"),
        FieldDef::new("classification", FieldType::Str, "probe module classification"),
        FieldDef::new("success", FieldType::Bool, "did probe module classify response as success"),
        FieldDef::new("data", FieldType::Bin, "ICMP payload"),
        i[0],
        i[1],
        i[2],
        i[3],
    ]
};

const F_TYPE: usize = 0;
const F_CODE: usize = 1;
const F_ID: usize = 2;
const F_SEQ: usize = 3;
const F_CLASS: usize = 4;
const F_SUCCESS: usize = 5;
const F_DATA: usize = 6;
const F_ICMP: usize = 7;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "icmp_echoscan",
    help: HELP,
    needs_ports: false,
    fields: &FIELDS,
    create: |args| Ok(Box::new(IcmpEchoScan::new(args)?)),
};

/// The ICMP echo scan module.
#[derive(Clone, Debug)]
pub struct IcmpEchoScan {
    payload: Vec<u8>,
    /// Unfolded one's-complement sum of the payload, so `make` sums only the 8-byte header.
    payload_sum: u64,
    args: Option<String>,
}

impl IcmpEchoScan {
    /// Creates the module from `--probe-args` (`text:`, `hex:` or `file:`; default 20 zeros).
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        let payload = match args {
            None => vec![0u8; DEFAULT_PAYLOAD_LEN],
            Some(a) => match parse_payload_arg(a, MAX_PAYLOAD, false)? {
                PayloadSpec::Fixed(b) => b,
                // Templates are refused by the parser when not allowed; keep a clear error.
                _ => {
                    return Err(InputError::new(
                        "--probe-args",
                        "icmp_echoscan takes text:, hex: or file: payloads only",
                    ));
                }
            },
        };
        let payload_sum = checksum::sum(&payload, 0);
        Ok(Self { payload, payload_sum, args: args.map(str::to_owned) })
    }

    fn icmp_len(&self) -> usize {
        icmpv4::HEADER_LEN + self.payload.len()
    }
}

impl ProbeModule for IcmpEchoScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        ETH_IP_LEN + self.icmp_len()
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::IcmpNotEchoRequest, snaplen: 96 }
    }
    fn validate_source_port_default(&self) -> bool {
        false
    }
    fn probe_args(&self) -> Option<&str> {
        self.args.as_deref()
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        write_eth_ip(buf, cfg, ipv4::PROTO_ICMP, (20 + self.icmp_len()) as u16);
        let m = &mut buf[ETH_IP_LEN..ETH_IP_LEN + self.icmp_len()];
        m[..8].fill(0);
        m[0] = icmpv4::TYPE_ECHO_REQUEST;
        m[8..].copy_from_slice(&self.payload);
    }

    fn make(
        &self,
        buf: &mut [u8],
        _cfg: &ProbeConfig,
        p: &ProbeInput,
        _rng: &mut AesRand,
    ) -> usize {
        let end = ETH_IP_LEN + self.icmp_len();
        patch_ip(buf, p);
        let m = &mut buf[ETH_IP_LEN..end];
        m[2..4].fill(0);
        m[4..6].copy_from_slice(&((p.validation[1] & 0xffff) as u16).to_be_bytes());
        m[6..8].copy_from_slice(&((p.validation[2] & 0xffff) as u16).to_be_bytes());
        let c = !checksum::fold(checksum::sum(&m[..8], self.payload_sum));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        end
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        if let Some(m) = frame.get(ETH_IP_LEN..).and_then(|s| Icmpv4Packet::new_checked(s).ok()) {
            let _ = write!(out, "icmp {{ type: {} | code: {} | checksum: ", m.msg_type(), m.code());
            write_c_hex04(out, m.checksum());
            let _ = writeln!(out, " | id: {} | seq: {} }}", m.echo_ident(), m.echo_seq());
        }
        describe_ip_eth(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        let ip = reply_ip(ip)?;
        if ip.protocol() != ipv4::PROTO_ICMP {
            return Err(Reject::WrongProtocol);
        }
        let icmp = Icmpv4Packet::new_checked(ip.payload())?;
        let (v, id, seq, kind) = if icmp.msg_type() == icmpv4::TYPE_ECHO_REPLY {
            if !(chk.in_scope)(ip.src()) {
                return Err(Reject::SourceNotInScope);
            }
            let v = chk.validator.words(ip.dst(), ip.src(), 0);
            (v, icmp.echo_ident(), icmp.echo_seq(), ReplyKind::EchoReply)
        } else {
            let q = check_icmp_error(&ip, &icmp, ipv4::PROTO_ICMP, chk)?;
            if q.head.icmp_type() != icmpv4::TYPE_ECHO_REQUEST {
                return Err(Reject::UnexpectedType);
            }
            let v = chk.validator.words(q.our_addr, q.target, 0);
            (v, q.head.icmp_ident(), q.head.icmp_seq(), ReplyKind::IcmpError)
        };
        if u32::from(id) == v[1] & 0xffff && u32::from(seq) == v[2] & 0xffff {
            Ok(kind)
        } else {
            Err(Reject::NotOurs)
        }
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return };
        rec.set_int(base + F_TYPE, u64::from(icmp.msg_type()));
        rec.set_int(base + F_CODE, u64::from(icmp.code()));
        let class = match icmp.msg_type() {
            icmpv4::TYPE_ECHO_REPLY => "echoreply",
            icmpv4::TYPE_DEST_UNREACH => "unreach",
            icmpv4::TYPE_SOURCE_QUENCH => "sourcequench",
            icmpv4::TYPE_REDIRECT => "redirect",
            icmpv4::TYPE_TIME_EXCEEDED => "timxceed",
            _ => "other",
        };
        rec.set_str(base + F_CLASS, class);
        rec.set_bool(base + F_SUCCESS, icmp.msg_type() == icmpv4::TYPE_ECHO_REPLY);
        // As ZMap: the data starts 4 bytes into the ICMP header (so it includes id and seq).
        let data = &icmp.as_bytes()[4..];
        if !data.is_empty() {
            rec.set_bin(base + F_DATA, data);
        }
        if *kind == ReplyKind::IcmpError {
            // Rewrites saddr to the original target; the sender becomes icmp_responder.
            fill_icmp_error_fields(&ip, &icmp, rec, base + F_ICMP);
            let head = icmp.quoted().and_then(|q| L4Head8::new(q.payload()));
            if let Some(h) = head {
                rec.set_int(base + F_ID, u64::from(h.icmp_ident()));
                rec.set_int(base + F_SEQ, u64::from(h.icmp_seq()));
            }
        } else {
            rec.set_int(base + F_ID, u64::from(icmp.echo_ident()));
            rec.set_int(base + F_SEQ, u64::from(icmp.echo_seq()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Schema, Value};
    use crate::probe::testutil::*;
    use etherparse::{Icmpv4Type, SlicedPacket, TransportSlice};
    use std::net::Ipv4Addr;

    fn build(m: &IcmpEchoScan, env: &Env, dst: Ipv4Addr) -> (Vec<u8>, [u32; 4]) {
        env.build_frame(m, dst, 0, 0)
    }

    #[test]
    fn builds_echo_requests_etherparse_accepts() {
        let env = Env::new(&[]);
        for (args, plen) in [(None, 20), (Some("text:hello"), 5), (Some("hex:0001ff"), 3)] {
            let m = IcmpEchoScan::new(args).unwrap();
            let (f, v) = build(&m, &env, TARGET);
            assert_eq!(f.len(), 42 + plen);
            assert_eq!(m.max_frame_len(), 42 + plen);
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!() };
            let Icmpv4Type::EchoRequest(e) = icmp.icmp_type() else { panic!() };
            assert_eq!(u32::from(e.id), v[1] & 0xffff);
            assert_eq!(u32::from(e.seq), v[2] & 0xffff);
            assert_eq!(icmp.checksum(), icmp.header().icmp_type.calc_checksum(icmp.payload()));
            assert_eq!(icmp.payload().len(), plen);
        }
        assert!(IcmpEchoScan::new(Some("bogus")).is_err());
        let too_long = format!("text:{}", "x".repeat(MAX_PAYLOAD + 1));
        assert!(IcmpEchoScan::new(Some(&too_long)).is_err());
    }

    #[test]
    fn field_order_is_zmaps_then_icmp() {
        let names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "type",
                "code",
                "icmp_id",
                "seq",
                "classification",
                "success",
                "data",
                "icmp_responder",
                "icmp_type",
                "icmp_code",
                "icmp_unreach_str"
            ]
        );
    }

    #[test]
    fn dryrun_line() {
        let env = Env::new(&[]);
        let m = IcmpEchoScan::new(None).unwrap();
        let (f, v) = build(&m, &env, TARGET);
        let mut s = String::new();
        m.describe(&f, false, &mut s);
        let first = s.lines().next().unwrap();
        assert!(first.starts_with("icmp { type: 8 | code: 0 | checksum: 0"), "{first}");
        assert!(first.ends_with(&format!("| id: {} | seq: {} }}", v[1] & 0xffff, v[2] & 0xffff)));
        assert!(
            s.lines().nth(1).unwrap().starts_with("ip { saddr: 198.18.0.1 | daddr: 198.19.3.4 |")
        );
    }

    #[test]
    fn echo_reply_and_errors() {
        let env = Env::new(&[]);
        let chk = env.check(None);
        let m = IcmpEchoScan::new(None).unwrap();
        let (f, v) = build(&m, &env, TARGET);
        let (id, seq) = ((v[1] & 0xffff) as u16, (v[2] & 0xffff) as u16);
        let r = echo_reply(TARGET, US, id, seq, &[0; 20]);
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::EchoReply));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&r, &ReplyKind::EchoReply, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("type"), Value::Int(0));
        assert_eq!(g("icmp_id"), Value::Int(u64::from(id)));
        assert_eq!(g("seq"), Value::Int(u64::from(seq)));
        assert_eq!(g("classification"), Value::Str("echoreply"));
        assert_eq!(g("success"), Value::Bool(true));
        let Value::Bin(d) = g("data") else { panic!() };
        assert_eq!(d.len(), 24);
        assert_eq!(&d[..2], &id.to_be_bytes());
        for n in ["icmp_responder", "icmp_type", "icmp_code", "icmp_unreach_str"] {
            assert_eq!(g(n), Value::Null, "{n}");
        }
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));

        assert_eq!(
            m.validate(&echo_reply(TARGET, US, id ^ 1, seq, &[]), &chk),
            Err(Reject::NotOurs)
        );
        assert_eq!(
            m.validate(&echo_reply(TARGET, US, id, seq ^ 1, &[]), &chk),
            Err(Reject::NotOurs)
        );
        let other = Ipv4Addr::new(198, 19, 3, 5);
        assert_eq!(m.validate(&echo_reply(other, US, id, seq, &[]), &chk), Err(Reject::NotOurs));
        let out = Ipv4Addr::new(203, 0, 113, 5);
        assert_eq!(
            m.validate(&echo_reply(out, US, id, seq, &[]), &chk),
            Err(Reject::SourceNotInScope)
        );
        // Our own echo request seen on the wire is not a reply.
        assert_eq!(m.validate(&f[14..], &chk), Err(Reject::UnexpectedType));

        let e = icmp_error(ROUTER, US, 11, 0, &f[14..], 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        let mut rec = Record::for_schema(&schema);
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("timxceed"));
        assert_eq!(g("success"), Value::Bool(false));
        // The original target is saddr; the router that sent the error is icmp_responder.
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
        assert_eq!(g("daddr"), Value::Str("198.18.0.1"));
        assert_eq!(g("icmp_responder"), Value::Str("198.18.200.1"));
        assert_eq!(g("icmp_type"), Value::Int(11));
        assert_eq!(g("icmp_code"), Value::Int(0));
        assert_eq!(g("icmp_unreach_str"), Value::Str("network unreachable"));
        assert_eq!(g("type"), Value::Int(11));
        // id and seq are those of the quoted request.
        assert_eq!(g("icmp_id"), Value::Int(u64::from(id)));
        assert_eq!(g("seq"), Value::Int(u64::from(seq)));
        for (ty, class) in [(3, "unreach"), (4, "sourcequench"), (5, "redirect")] {
            let e = icmp_error(ROUTER, US, ty, 1, &f[14..], 28);
            assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
            m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
            let g = |n: &str| rec.get(schema.index_of(n).unwrap());
            assert_eq!(g("classification"), Value::Str(class));
            assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
            assert_eq!(g("icmp_responder"), Value::Str("198.18.200.1"));
            assert_eq!(g("icmp_type"), Value::Int(u64::from(ty)));
            assert_eq!(g("icmp_code"), Value::Int(1));
            assert_eq!(g("icmp_unreach_str"), Value::Str("host unreachable"));
        }
        // A host answering for itself (the lab's unreachable hosts): both are the target.
        let e = icmp_error(TARGET, US, 3, 1, &f[14..], 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        assert_eq!(rec.get(schema.index_of("saddr").unwrap()), Value::Str("198.19.3.4"));
        assert_eq!(rec.get(schema.index_of("icmp_responder").unwrap()), Value::Str("198.19.3.4"));
        let mut forged = f[14..].to_vec();
        forged[24] ^= 1; // quoted id
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &forged, 28), &chk),
            Err(Reject::NotOurs)
        );
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &f[14..], 27), &chk),
            Err(Reject::Truncated)
        );
        assert_eq!(m.validate(&r[..23], &chk), Err(Reject::Truncated));
        assert_eq!(m.validate(&udp_reply(TARGET, US, 1, 2, b""), &chk), Err(Reject::WrongProtocol));
    }
}
