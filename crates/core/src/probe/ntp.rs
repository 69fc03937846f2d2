//! `ntp`: an NTP client request (mode 3) to each target port (usually 123).
//!
//! The probe is a 48-byte NTP header with LI_VN_MODE = 0xE3 (leap 3 "unsynchronised",
//! version 4, mode 3 "client") and every other byte zero (frame 90 bytes). Replies are
//! validated like the `udp` module's, except that the reply's source port must be a target port
//! by default (as ZMap's ntp module; `--validate-source-port` overrides).
//!
//! Deliberate differences from ZMap 4:
//! - `--probe-args` is optional. ZMap requires it (it runs the udp module's initialisation)
//!   yet sends only the 48-byte header, with the wire length taken from the probe-args
//!   payload. rzmap sends the 48-byte request by default, and a `text:`/`hex:`/`file:`
//!   payload given in `--probe-args` *replaces* it (at most 1472 bytes), so a mode 6/7 query
//!   or a longer request can be sent as is.
//! - The NTP fields are parsed at their real offsets (big-endian: root delay at byte 4, root
//!   dispersion 8, reference id 12, the four 64-bit timestamps at 16, 24, 32, 40) whenever the
//!   reply's UDP payload holds 48 bytes. ZMap indexes in 4- and 8-byte units and reads host
//!   order, so its values come from the wrong bytes (some past the packet).
//! - `precision` is the raw byte, as ZMap prints it (NTP defines it as a signed exponent).
//! - ICMP errors get `icmp_unreach_str` (ZMap leaves it null for this module).

use std::fmt::Write as _;

use super::payload::{MAX_UDP_PAYLOAD_LEN, PayloadSpec, parse_payload_arg};
use super::udp_family::{
    PAYLOAD_AT, describe_udp_line, make_udp, prepare_udp, reply_udp, validate_udp,
};
use super::{
    ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    describe_ip_eth, icmp_fields,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends an NTP client request (48 bytes, version 4, mode 3) to each target \
port (use -p 123). Any UDP answer is classified \"ntp\" (success) and its NTP header fields \
are reported when it holds at least 48 bytes; an ICMP error quoting the probe is \"icmp\" \
(failure). --probe-args is optional: text:STRING, hex:HEXDIGITS or file:PATH sends that payload \
instead of the default request (at most 1472 bytes).";

/// Length of an NTP header (no extension fields).
pub const NTP_HEADER_LEN: usize = 48;
/// The first byte of the default request: leap 3, version 4, mode 3.
pub const CLIENT_LI_VN_MODE: u8 = 0xE3;

/// The module's output fields, in ZMap's order.
pub static FIELDS: [FieldDef; 19] = {
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
        FieldDef::new("LI_VN_MODE", FieldType::Int, "leap indication, version number, mode"),
        FieldDef::new("stratum", FieldType::Int, "stratum"),
        FieldDef::new("poll", FieldType::Int, "poll"),
        FieldDef::new("precision", FieldType::Int, "precision"),
        FieldDef::new("root_delay", FieldType::Int, "root delay"),
        FieldDef::new("root_dispersion", FieldType::Int, "root dispersion"),
        FieldDef::new(
            "reference_clock_identifier",
            FieldType::Int,
            "code identifying clock reference",
        ),
        FieldDef::new(
            "reference_timestamp",
            FieldType::Int,
            "local time at which local clock was last set or corrected",
        ),
        FieldDef::new(
            "originate_timestamp",
            FieldType::Int,
            "local time at which request departed client for service",
        ),
        FieldDef::new(
            "receive_timestamp",
            FieldType::Int,
            "local time at which request arrived at service host",
        ),
        FieldDef::new(
            "transmit_timestamp",
            FieldType::Int,
            "local time which reply departed service host for client",
        ),
    ]
};

const F_CLASS: usize = 0;
const F_SUCCESS: usize = 1;
const F_SPORT: usize = 2;
const F_ICMP: usize = 4;
const F_NTP: usize = 8;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "ntp",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(NtpScan::new(args)?)),
};

/// The NTP scan module.
#[derive(Clone, Debug)]
pub struct NtpScan {
    payload: Vec<u8>,
    args: Option<String>,
}

/// The default 48-byte client request.
pub fn client_request() -> [u8; NTP_HEADER_LEN] {
    let mut r = [0u8; NTP_HEADER_LEN];
    r[0] = CLIENT_LI_VN_MODE;
    r
}

impl NtpScan {
    /// Creates the module from optional `--probe-args` (`text:`, `hex:` or `file:` replaces
    /// the default request).
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        let payload = match args {
            None => client_request().to_vec(),
            Some(a) => match parse_payload_arg(a, MAX_UDP_PAYLOAD_LEN, false)? {
                PayloadSpec::Fixed(b) => b,
                _ => {
                    return Err(InputError::new(
                        "--probe-args",
                        "ntp takes text:, hex: or file: payloads only",
                    ));
                }
            },
        };
        Ok(Self { payload, args: args.map(str::to_owned) })
    }
}

/// The NTP header fields of a reply payload (at least 48 bytes), in field order.
fn ntp_fields(d: &[u8]) -> Option<[u64; 11]> {
    let h: &[u8; NTP_HEADER_LEN] = d.get(..NTP_HEADER_LEN)?.try_into().ok()?;
    let be32 = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let be64 = |i: usize| (be32(i) << 32) | be32(i + 4);
    Some([
        u64::from(h[0]),
        u64::from(h[1]),
        u64::from(h[2]),
        u64::from(h[3]),
        be32(4),
        be32(8),
        be32(12),
        be64(16),
        be64(24),
        be64(32),
        be64(40),
    ])
}

impl ProbeModule for NtpScan {
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
        prepare_udp(buf, cfg, &self.payload);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        make_udp(buf, cfg, p, self.payload.len())
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        if let Some(h) = frame.get(PAYLOAD_AT..PAYLOAD_AT + 3) {
            let _ = writeln!(
                out,
                "ntp {{ LI_VN_MODE: {} | stratum: {} | poll: {} }}",
                h[0], h[1], h[2]
            );
        }
        describe_udp_line(frame, super::ETH_IP_LEN, out);
        describe_ip_eth(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        validate_udp(ip, chk, true)
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        if *kind == ReplyKind::Udp {
            let Some(u) = reply_udp(&ip) else { return };
            rec.set_str(base + F_CLASS, "ntp");
            rec.set_bool(base + F_SUCCESS, true);
            rec.set_int(base + F_SPORT, u64::from(u.src_port()));
            rec.set_int(base + F_SPORT + 1, u64::from(u.dst_port()));
            if let Some(vals) = ntp_fields(u.payload()) {
                for (k, v) in vals.into_iter().enumerate() {
                    rec.set_int(base + F_NTP + k, v);
                }
            }
        } else {
            classify_icmp_error(&ip, rec, "icmp", base + F_CLASS, base + F_SUCCESS, base + F_ICMP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Schema, Value};
    use crate::probe::testutil::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::net::Ipv4Addr;

    fn build(m: &NtpScan, env: &Env, dst: Ipv4Addr) -> (Vec<u8>, u16) {
        let (buf, _) = env.build_frame(m, dst, 123, 0);
        let sport = u16::from_be_bytes([buf[34], buf[35]]);
        (buf, sport)
    }

    #[test]
    fn default_request_and_payload_override() {
        let env = Env::new(&[123]);
        let m = NtpScan::new(None).unwrap();
        assert_eq!(m.max_frame_len(), 90);
        let (f, sport) = build(&m, &env, TARGET);
        assert_eq!(f.len(), 90);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.total_len, 76);
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!() };
        assert_eq!(u.length(), 56);
        assert_eq!(u.destination_port(), 123);
        assert_eq!(u.source_port(), sport);
        assert_eq!(u.payload()[0], 0xE3);
        assert!(u.payload()[1..].iter().all(|&b| b == 0));
        let mut s = String::new();
        m.describe(&f, true, &mut s);
        let mut lines = s.lines();
        assert_eq!(lines.next(), Some("ntp { LI_VN_MODE: 227 | stratum: 0 | poll: 0 }"));
        assert_eq!(
            lines.next(),
            Some(format!("udp {{ source: {sport} | dest: 123 | checksum: 0000 }}").as_str())
        );
        assert!(lines.next().unwrap().starts_with("ip { saddr: 198.18.0.1 | daddr: 198.19.3.4"));

        let m = NtpScan::new(Some("hex:17000304")).unwrap();
        assert_eq!(m.max_frame_len(), 46);
        assert_eq!(m.probe_args(), Some("hex:17000304"));
        let (f, _) = build(&m, &env, TARGET);
        assert_eq!(&f[42..], &[0x17, 0, 3, 4]);
        assert!(NtpScan::new(Some("bogus")).is_err());
        assert!(NtpScan::new(Some("template-fields")).is_err());
    }

    fn server_reply() -> Vec<u8> {
        let mut r = vec![0u8; 48];
        r[0] = 0x24; // version 4, mode 4
        r[1] = 2;
        r[2] = 3;
        r[3] = 0xe9; // precision -23
        r[4..8].copy_from_slice(&0x0000_1234u32.to_be_bytes());
        r[8..12].copy_from_slice(&0x0000_5678u32.to_be_bytes());
        r[12..16].copy_from_slice(b"GPS\0");
        r[16..24].copy_from_slice(&0x1111_2222_3333_4444u64.to_be_bytes());
        r[24..32].copy_from_slice(&0u64.to_be_bytes());
        r[32..40].copy_from_slice(&0x5555_6666_7777_8888u64.to_be_bytes());
        r[40..48].copy_from_slice(&0x9999_aaaa_bbbb_ccccu64.to_be_bytes());
        r
    }

    #[test]
    fn reply_fields_at_their_real_offsets() {
        let env = Env::new(&[123]);
        let chk = env.check(None);
        let m = NtpScan::new(None).unwrap();
        let (f, sport) = build(&m, &env, TARGET);
        let r = udp_reply(TARGET, US, 123, sport, &server_reply());
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::Udp));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&r, &ReplyKind::Udp, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("ntp"));
        assert_eq!(g("success"), Value::Bool(true));
        assert_eq!(g("sport"), Value::Int(123));
        assert_eq!(g("dport"), Value::Int(u64::from(sport)));
        assert_eq!(g("LI_VN_MODE"), Value::Int(0x24));
        assert_eq!(g("stratum"), Value::Int(2));
        assert_eq!(g("poll"), Value::Int(3));
        assert_eq!(g("precision"), Value::Int(0xe9));
        assert_eq!(g("root_delay"), Value::Int(0x1234));
        assert_eq!(g("root_dispersion"), Value::Int(0x5678));
        assert_eq!(
            g("reference_clock_identifier"),
            Value::Int(u64::from(u32::from_be_bytes(*b"GPS\0")))
        );
        assert_eq!(g("reference_timestamp"), Value::Int(0x1111_2222_3333_4444));
        assert_eq!(g("originate_timestamp"), Value::Int(0));
        assert_eq!(g("receive_timestamp"), Value::Int(0x5555_6666_7777_8888));
        assert_eq!(g("transmit_timestamp"), Value::Int(0x9999_aaaa_bbbb_cccc));
        assert_eq!(g("icmp_responder"), Value::Null);

        // 47 bytes: a success, but no NTP fields.
        let short = udp_reply(TARGET, US, 123, sport, &server_reply()[..47]);
        assert_eq!(m.validate(&short, &chk), Ok(ReplyKind::Udp));
        m.classify(&short, &ReplyKind::Udp, &mut rec, schema.module_start());
        assert_eq!(rec.get(schema.index_of("stratum").unwrap()), Value::Null);
        assert_eq!(rec.get(schema.index_of("success").unwrap()), Value::Bool(true));

        // One altered field each.
        let r = udp_reply(TARGET, US, 124, sport, &server_reply());
        assert_eq!(m.validate(&r, &chk), Err(Reject::UnexpectedSourcePort));
        assert_ne!(m.validate(&r, &env.check(Some(false))), Err(Reject::UnexpectedSourcePort));
        let other = if sport == 40099 { 40000 } else { sport + 1 };
        let r = udp_reply(TARGET, US, 123, other, &server_reply());
        assert_eq!(m.validate(&r, &chk), Err(Reject::PortOutsideWindow));
        let r = udp_reply(Ipv4Addr::new(192, 0, 2, 1), US, 123, sport, &server_reply());
        assert_eq!(m.validate(&r, &chk), Err(Reject::SourceNotInScope));

        let e = icmp_error(ROUTER, US, 3, 3, &f[14..], 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("icmp"));
        assert_eq!(g("success"), Value::Bool(false));
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
        assert_eq!(g("icmp_unreach_str"), Value::Str("port unreachable"));
        assert_eq!(g("LI_VN_MODE"), Value::Null);
    }
}
