//! `icmp_echo_time`: an ICMP echo request carrying its own send time, so the round-trip time
//! can be computed from the reply alone (the scanner keeps no per-target state).
//!
//! The probe is the `icmp_echoscan` echo request (id = `v[1] & 0xffff`, seq = `v[2] & 0xffff`)
//! with a 12-byte payload: the send time's seconds and microseconds as two u32 in
//! little-endian order (ZMap writes them in host order, which is little-endian on the hosts it
//! runs on; rzmap fixes the order so the reading side never depends on the host), then the
//! target address (4 bytes, network order). The frame is 54 bytes. Replies are validated
//! exactly as `icmp_echoscan` validates them.
//!
//! Fields: `sent_timestamp_ts`/`_us` and `dst_raw` come from the echoed payload (for an ICMP
//! error, from the quoted request when the router quoted enough of it; ZMap reads the error's
//! own bytes there, which are the quoted IP header, so its values are garbage); `dst_raw` is
//! the address read as a host-order u32, like `saddr_raw`. `recv_timestamp_ts`/`_us` are the
//! capture time of the reply and `rtt_us` = receive − send in microseconds (null when the
//! clock went backwards or no send time was echoed). `classify` cannot see the capture time,
//! so these three are filled by [`ProbeModule::set_capture_time`], which the receive path
//! calls after `classify` (via `ReplyProcessor::set_capture_time`).

use std::fmt::Write as _;
use std::time::Duration;

use rzmap_wire::checksum;
use rzmap_wire::icmpv4::{self, Icmpv4Packet};
use rzmap_wire::ipv4::{self};

use super::icmp_echoscan::IcmpEchoScan;
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, describe_ip_eth, patch_ip, write_c_hex04,
    write_eth_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record, Value};

const HELP: &str = "Sends one ICMP echo request to each address, carrying the time it was sent \
(12-byte payload: seconds, microseconds, target address), so the round-trip time of each \
reply is reported in rtt_us. An echo reply is classified \"echoreply\" (success); ICMP errors \
quoting the request are \"unreach\", \"sourcequench\", \"redirect\" or \"timxceed\" (failure). \
Takes no --probe-args.";

/// Payload length: sent seconds, sent microseconds, target address.
pub const PAYLOAD_LEN: usize = 12;
/// ICMP message length.
const ICMP_LEN: usize = icmpv4::HEADER_LEN + PAYLOAD_LEN;
/// Frame length of every probe.
pub const FRAME_LEN: usize = ETH_IP_LEN + ICMP_LEN;

/// The module's output fields, in ZMap 4's order.
pub static FIELDS: [FieldDef; 12] = [
    FieldDef::new("type", FieldType::Int, "icmp message type"),
    FieldDef::new("code", FieldType::Int, "icmp message sub type code"),
    FieldDef::new("icmp_id", FieldType::Int, "icmp id number"),
    FieldDef::new("seq", FieldType::Int, "icmp sequence number"),
    FieldDef::new(
        "sent_timestamp_ts",
        FieldType::Int,
        "timestamp of sent probe in seconds since Epoch",
    ),
    FieldDef::new("sent_timestamp_us", FieldType::Int, "microsecond part of sent timestamp"),
    FieldDef::new(
        "recv_timestamp_ts",
        FieldType::Int,
        "timestamp of received probe in seconds since Epoch",
    ),
    FieldDef::new("recv_timestamp_us", FieldType::Int, "microsecond part of received timestamp"),
    FieldDef::new("rtt_us", FieldType::Int, "round-trip time in microseconds"),
    FieldDef::new("dst_raw", FieldType::Int, "raw destination IP address of sent probe"),
    FieldDef::new("classification", FieldType::Str, "probe module classification"),
    FieldDef::new("success", FieldType::Bool, "did probe module classify response as success"),
];

const F_SENT: usize = 4;
const F_RECV: usize = 6;
const F_RTT: usize = 8;
const F_DST: usize = 9;
const F_CLASS: usize = 10;
const F_SUCCESS: usize = 11;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "icmp_echo_time",
    help: HELP,
    needs_ports: false,
    fields: &FIELDS,
    create: |args| Ok(Box::new(IcmpEchoTime::new(args)?)),
};

/// The timed ICMP echo module.
#[derive(Clone, Debug)]
pub struct IcmpEchoTime {
    /// Validation is exactly the echo scan's.
    echo: IcmpEchoScan,
}

impl IcmpEchoTime {
    /// Creates the module; it takes no `--probe-args`.
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        if let Some(a) = args {
            return Err(InputError::new(
                "--probe-args",
                format!("icmp_echo_time takes no probe arguments (got \"{a}\")"),
            ));
        }
        Ok(Self { echo: IcmpEchoScan::new(None)? })
    }
}

/// The send time and target echoed in a payload, when it is long enough.
fn parse_payload(data: &[u8]) -> Option<(u32, u32, [u8; 4])> {
    let b: &[u8; PAYLOAD_LEN] = data.get(..PAYLOAD_LEN)?.try_into().ok()?;
    Some((
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        [b[8], b[9], b[10], b[11]],
    ))
}

impl ProbeModule for IcmpEchoTime {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        FRAME_LEN
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::IcmpNotEchoRequest, snaplen: 96 }
    }
    fn validate_source_port_default(&self) -> bool {
        false
    }
    fn probe_args(&self) -> Option<&str> {
        None
    }
    fn uses_time(&self) -> bool {
        true
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        write_eth_ip(buf, cfg, ipv4::PROTO_ICMP, (20 + ICMP_LEN) as u16);
        let m = &mut buf[ETH_IP_LEN..FRAME_LEN];
        m.fill(0);
        m[0] = icmpv4::TYPE_ECHO_REQUEST;
    }

    fn make(
        &self,
        buf: &mut [u8],
        _cfg: &ProbeConfig,
        p: &ProbeInput,
        _rng: &mut AesRand,
    ) -> usize {
        patch_ip(buf, p);
        let m = &mut buf[ETH_IP_LEN..FRAME_LEN];
        m[2..4].fill(0);
        m[4..6].copy_from_slice(&((p.validation[1] & 0xffff) as u16).to_be_bytes());
        m[6..8].copy_from_slice(&((p.validation[2] & 0xffff) as u16).to_be_bytes());
        // Seconds wrap in 2106, as ZMap's 32-bit field does.
        m[8..12].copy_from_slice(&(p.now.as_secs() as u32).to_le_bytes());
        m[12..16].copy_from_slice(&p.now.subsec_micros().to_le_bytes());
        m[16..20].copy_from_slice(&p.dst.octets());
        let c = checksum::checksum(m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        FRAME_LEN
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
        self.echo.validate(ip, chk)
    }

    fn classify(&self, ip: &[u8], _kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return };
        rec.set_int(base, u64::from(icmp.msg_type()));
        rec.set_int(base + 1, u64::from(icmp.code()));
        rec.set_int(base + 2, u64::from(icmp.echo_ident()));
        rec.set_int(base + 3, u64::from(icmp.echo_seq()));
        let echo_reply = icmp.msg_type() == icmpv4::TYPE_ECHO_REPLY;
        // The echoed payload, or the payload of the request an ICMP error quotes.
        let payload = if echo_reply {
            parse_payload(icmp.data())
        } else {
            icmp.quoted()
                .and_then(|q| q.payload().get(icmpv4::HEADER_LEN..).and_then(parse_payload))
        };
        if let Some((sec, usec, dst)) = payload {
            rec.set_int(base + F_SENT, u64::from(sec));
            rec.set_int(base + F_SENT + 1, u64::from(usec));
            rec.set_int(base + F_DST, u64::from(u32::from_ne_bytes(dst)));
        }
        let class = match icmp.msg_type() {
            icmpv4::TYPE_ECHO_REPLY => "echoreply",
            icmpv4::TYPE_DEST_UNREACH => "unreach",
            icmpv4::TYPE_SOURCE_QUENCH => "sourcequench",
            icmpv4::TYPE_REDIRECT => "redirect",
            icmpv4::TYPE_TIME_EXCEEDED => "timxceed",
            _ => "other",
        };
        rec.set_str(base + F_CLASS, class);
        rec.set_bool(base + F_SUCCESS, echo_reply);
    }

    fn set_capture_time(&self, rec: &mut Record, base: usize, captured: Duration) {
        if base + F_SUCCESS >= rec.len() {
            return;
        }
        rec.set_int(base + F_RECV, captured.as_secs());
        rec.set_int(base + F_RECV + 1, u64::from(captured.subsec_micros()));
        let sent = match (rec.get(base + F_SENT), rec.get(base + F_SENT + 1)) {
            (Value::Int(s), Value::Int(us)) => Some(s * 1_000_000 + us),
            _ => None,
        };
        let recv = captured
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(captured.subsec_micros()));
        match sent.and_then(|s| recv.checked_sub(s)) {
            Some(rtt) => rec.set_int(base + F_RTT, rtt),
            None => rec.set_null(base + F_RTT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Schema;
    use crate::probe::testutil::*;
    use etherparse::{Icmpv4Type, SlicedPacket, TransportSlice};

    const SENT: Duration = Duration::from_micros(1_700_000_000_123_456);

    fn build(env: &Env) -> (Vec<u8>, [u32; 4]) {
        let m = IcmpEchoTime::new(None).unwrap();
        let cfg = env.config(&[]);
        let mut buf = vec![0u8; 256];
        m.prepare(&mut buf, &cfg);
        let v = env.validator.words(US, TARGET, 0);
        let p =
            ProbeInput { src: US, dst: TARGET, dport: 0, probe_num: 0, validation: v, now: SENT };
        let n = m.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(1));
        buf.truncate(n);
        (buf, v)
    }

    #[test]
    fn probe_carries_send_time_and_target() {
        let env = Env::new(&[]);
        let (f, v) = build(&env);
        assert_eq!(f.len(), 54);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.total_len, 40);
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!() };
        let Icmpv4Type::EchoRequest(e) = icmp.icmp_type() else { panic!() };
        assert_eq!(u32::from(e.id), v[1] & 0xffff);
        assert_eq!(u32::from(e.seq), v[2] & 0xffff);
        assert_eq!(icmp.checksum(), icmp.header().icmp_type.calc_checksum(icmp.payload()));
        let pl = icmp.payload();
        assert_eq!(pl.len(), 12);
        assert_eq!(u32::from_le_bytes(pl[0..4].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(pl[4..8].try_into().unwrap()), 123_456);
        assert_eq!(&pl[8..12], &TARGET.octets());
        assert!(IcmpEchoTime::new(Some("text:x")).is_err());
        let mut s = String::new();
        IcmpEchoTime::new(None).unwrap().describe(&f, true, &mut s);
        assert!(s.starts_with("icmp { type: 8 | code: 0 | checksum: "), "{s}");
        assert_eq!(s.lines().count(), 4);
    }

    #[test]
    fn echo_reply_gives_rtt() {
        let env = Env::new(&[]);
        let chk = env.check(None);
        let m = IcmpEchoTime::new(None).unwrap();
        let (f, v) = build(&env);
        let (id, seq) = ((v[1] & 0xffff) as u16, (v[2] & 0xffff) as u16);
        let r = echo_reply(TARGET, US, id, seq, &f[42..]);
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::EchoReply));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&r, &ReplyKind::EchoReply, &mut rec, schema.module_start());
        m.set_capture_time(&mut rec, schema.module_start(), SENT + Duration::from_micros(2_345));
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("sent_timestamp_ts"), Value::Int(1_700_000_000));
        assert_eq!(g("sent_timestamp_us"), Value::Int(123_456));
        assert_eq!(g("recv_timestamp_ts"), Value::Int(1_700_000_000));
        assert_eq!(g("recv_timestamp_us"), Value::Int(125_801));
        assert_eq!(g("rtt_us"), Value::Int(2_345));
        assert_eq!(g("dst_raw"), Value::Int(u64::from(u32::from_ne_bytes(TARGET.octets()))));
        assert_eq!(g("classification"), Value::Str("echoreply"));
        assert_eq!(g("success"), Value::Bool(true));
        assert_eq!(g("icmp_id"), Value::Int(u64::from(id)));

        // A clock that went backwards gives no rtt; a short echo gives no sent time.
        m.set_capture_time(&mut rec, schema.module_start(), SENT - Duration::from_secs(1));
        assert_eq!(rec.get(schema.index_of("rtt_us").unwrap()), Value::Null);
        let short = echo_reply(TARGET, US, id, seq, &f[42..50]);
        assert_eq!(m.validate(&short, &chk), Ok(ReplyKind::EchoReply));
        m.classify(&short, &ReplyKind::EchoReply, &mut rec, schema.module_start());
        m.set_capture_time(&mut rec, schema.module_start(), SENT);
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("sent_timestamp_ts"), Value::Null);
        assert_eq!(g("rtt_us"), Value::Null);
        assert_eq!(g("recv_timestamp_ts"), Value::Int(1_700_000_000));

        // Altered id or seq: rejected.
        assert_eq!(
            m.validate(&echo_reply(TARGET, US, id ^ 1, seq, &f[42..]), &chk),
            Err(Reject::NotOurs)
        );
        assert_eq!(
            m.validate(&echo_reply(TARGET, US, id, seq ^ 1, &f[42..]), &chk),
            Err(Reject::NotOurs)
        );
        // A record too small for the module is left alone.
        let mut tiny = Record::new(3);
        m.set_capture_time(&mut tiny, 0, SENT);
    }

    #[test]
    fn icmp_error_reads_the_quoted_request() {
        let env = Env::new(&[]);
        let chk = env.check(None);
        let m = IcmpEchoTime::new(None).unwrap();
        let (f, _) = build(&env);
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        let e = icmp_error(ROUTER, US, 11, 0, &f[14..], f.len() - 14);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("timxceed"));
        assert_eq!(g("success"), Value::Bool(false));
        assert_eq!(g("sent_timestamp_us"), Value::Int(123_456));
        // Only the RFC 792 minimum quoted: no sent time.
        let e = icmp_error(ROUTER, US, 3, 1, &f[14..], 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        assert_eq!(rec.get(schema.index_of("sent_timestamp_ts").unwrap()), Value::Null);
        let mut forged = f[14..].to_vec();
        forged[26] ^= 1; // quoted seq
        assert_eq!(
            m.validate(&icmp_error(ROUTER, US, 3, 1, &forged, 28), &chk),
            Err(Reject::NotOurs)
        );
    }

    proptest::proptest! {
        #[test]
        fn rtt_is_receive_minus_send(
            sent_us in 0u64..(u64::from(u32::MAX) * 1_000_000), rtt in 0u64..10_000_000,
            host in proptest::num::u16::ANY,
        ) {
            let env = Env::new(&[]);
            let chk = env.check(None);
            let m = IcmpEchoTime::new(None).unwrap();
            let cfg = env.config(&[]);
            let dst = std::net::Ipv4Addr::new(198, 19, (host >> 8) as u8, host as u8);
            let mut buf = vec![0u8; 128];
            m.prepare(&mut buf, &cfg);
            let v = env.validator.words(US, dst, 0);
            let now = Duration::from_micros(sent_us);
            let p = ProbeInput { src: US, dst, dport: 0, probe_num: 0, validation: v, now };
            let n = m.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(1));
            let r = echo_reply(dst, US, (v[1] & 0xffff) as u16, (v[2] & 0xffff) as u16, &buf[42..n]);
            proptest::prop_assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::EchoReply));
            let schema = Schema::for_module(m.fields());
            let mut rec = Record::for_schema(&schema);
            m.classify(&r, &ReplyKind::EchoReply, &mut rec, schema.module_start());
            m.set_capture_time(&mut rec, schema.module_start(), now + Duration::from_micros(rtt));
            proptest::prop_assert_eq!(rec.get(schema.index_of("rtt_us").unwrap()), Value::Int(rtt));
            proptest::prop_assert_eq!(
                rec.get(schema.index_of("dst_raw").unwrap()),
                Value::Int(u64::from(u32::from_ne_bytes(dst.octets())))
            );
        }
    }
}
