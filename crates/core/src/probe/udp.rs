//! `udp`: a UDP datagram with a fixed or templated payload to each target port; any UDP reply
//! means success, an ICMP error quoting the probe is a failure.

use rzmap_wire::udp::{self, UdpPacket};

use super::payload::{MAX_UDP_PAYLOAD_LEN, PayloadSpec, parse_payload_arg};
use super::template::{Template, TemplateInput};
use super::udp_family::{describe_udp_line, make_udp, prepare_udp, validate_udp};
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    describe_ip_eth, icmp_fields,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends one UDP datagram to each target port. Any UDP answer is \
classified \"udp\" (success); an ICMP error quoting the probe is \"icmp\" (failure). \
--probe-args is required and gives the payload: text:STRING, hex:HEXDIGITS, file:PATH, or \
template:PATH for a payload rebuilt per probe from ${FIELD} specifiers \
(--probe-args=template-fields lists them). Payloads are at most 1472 bytes.";

/// Largest UDP payload (a 1500-byte IP packet).
pub const MAX_PAYLOAD: usize = MAX_UDP_PAYLOAD_LEN;
/// The `--probe-args` value that asks for the list of template fields (the command line prints
/// it and exits; creating the module with it is an error).
pub const TEMPLATE_FIELDS_ARG: &str = "template-fields";

/// The module's output fields, in ZMap 4's order.
pub static FIELDS: [FieldDef; 10] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        c[0],
        c[1],
        FieldDef::new("sport", FieldType::Int, "UDP source port"),
        FieldDef::new("dport", FieldType::Int, "UDP destination port"),
        FieldDef::new("udp_pkt_size", FieldType::Int, "UDP packet length"),
        FieldDef::new("data", FieldType::Bin, "UDP payload"),
        i[0],
        i[1],
        i[2],
        i[3],
    ]
};

const F_CLASS: usize = 0;
const F_SUCCESS: usize = 1;
const F_SPORT: usize = 2;
const F_SIZE: usize = 4;
const F_DATA: usize = 5;
const F_ICMP: usize = 6;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "udp",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(UdpScan::new(args)?)),
};

/// What the module sends: a fixed byte string written once by `prepare`, or a template
/// rendered per packet into the slot without allocating.
#[derive(Clone, Debug)]
enum UdpPayload {
    /// The same bytes in every probe.
    Fixed(Vec<u8>),
    /// A template rendered for every probe.
    Template(Template),
}

impl UdpPayload {
    fn parse(arg: &str) -> Result<Self, InputError> {
        match parse_payload_arg(arg, MAX_PAYLOAD, true)? {
            PayloadSpec::Fixed(b) => Ok(Self::Fixed(b)),
            PayloadSpec::Template(t) => Ok(Self::Template(t)),
            PayloadSpec::ListTemplateFields => Err(InputError::new(
                "--probe-args",
                "template-fields lists the UDP template fields; it cannot be used to scan",
            )),
        }
    }

    fn max_len(&self) -> usize {
        match self {
            Self::Fixed(b) => b.len(),
            Self::Template(t) => t.max_len(),
        }
    }

    /// The constant bytes, when the payload is fixed.
    fn fixed(&self) -> Option<&[u8]> {
        match self {
            Self::Fixed(b) => Some(b),
            Self::Template(_) => None,
        }
    }

    /// Writes the payload of one probe at the start of `out` and returns its length (a fixed
    /// payload was written by `prepare` and is left alone).
    fn render(&self, out: &mut [u8], p: &ProbeInput, sport: u16, rng: &mut AesRand) -> usize {
        match self {
            Self::Fixed(b) => b.len(),
            Self::Template(t) => {
                let input = TemplateInput {
                    saddr: p.src,
                    daddr: p.dst,
                    sport,
                    dport: p.dport,
                    unix_sec: p.now.as_secs(),
                    unix_usec: p.now.subsec_micros(),
                };
                t.render(out, &input, rng)
            }
        }
    }
}

/// The UDP scan module.
#[derive(Clone, Debug)]
pub struct UdpScan {
    payload: UdpPayload,
    args: String,
}

impl UdpScan {
    /// Creates the module from `--probe-args` (required: `text:`, `hex:`, `file:`,
    /// `template:`).
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        let Some(a) = args else {
            return Err(InputError::new(
                "--probe-args",
                "the udp module needs a payload: text:STRING, hex:HEXDIGITS, file:PATH or \
                 template:PATH",
            ));
        };
        Ok(Self { payload: UdpPayload::parse(a)?, args: a.to_owned() })
    }
}

impl ProbeModule for UdpScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        ETH_IP_LEN + udp::HEADER_LEN + self.payload.max_len()
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::UdpOrIcmp, snaplen: 1516 }
    }
    fn validate_source_port_default(&self) -> bool {
        false
    }
    fn probe_args(&self) -> Option<&str> {
        Some(&self.args)
    }
    fn uses_time(&self) -> bool {
        matches!(self.payload, UdpPayload::Template(_))
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        prepare_udp(buf, cfg, self.payload.fixed().unwrap_or(&[]));
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, rng: &mut AesRand) -> usize {
        let sport = cfg.source_port(p.validation[1], p.probe_num);
        let start = ETH_IP_LEN + udp::HEADER_LEN;
        let plen = if self.payload.fixed().is_some() {
            self.payload.max_len()
        } else {
            let n = self.payload.render(&mut buf[start..], p, sport, rng);
            let ulen = (udp::HEADER_LEN + n) as u16;
            buf[ETH_IP_LEN + 4..ETH_IP_LEN + 6].copy_from_slice(&ulen.to_be_bytes());
            buf[16..18].copy_from_slice(&(20 + ulen).to_be_bytes());
            n
        };
        make_udp(buf, cfg, p, plen)
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        describe_udp_line(frame, ETH_IP_LEN, out);
        describe_ip_eth(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        validate_udp(ip, chk, false)
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        if *kind == ReplyKind::Udp {
            let Ok(u) = UdpPacket::new_checked(ip.payload()) else { return };
            rec.set_str(base + F_CLASS, "udp");
            rec.set_bool(base + F_SUCCESS, true);
            rec.set_int(base + F_SPORT, u64::from(u.src_port()));
            rec.set_int(base + F_SPORT + 1, u64::from(u.dst_port()));
            rec.set_int(base + F_SIZE, u64::from(u.len()));
            // Clamped to the UDP length, the IP length and the captured bytes.
            if !u.is_empty() {
                rec.set_bin(base + F_DATA, u.payload());
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

    fn get<'a>(schema: &Schema, rec: &'a Record, n: &str) -> Value<'a> {
        rec.get(schema.index_of(n).unwrap())
    }

    fn build(m: &UdpScan, env: &Env, dst: Ipv4Addr, dport: u16) -> (Vec<u8>, [u32; 4]) {
        let cfg = env.config(&[dport]);
        let mut buf = vec![0u8; 2048];
        m.prepare(&mut buf, &cfg);
        let v = env.validator.words(US, dst, dport);
        let p = ProbeInput {
            src: US,
            dst,
            dport,
            probe_num: 0,
            validation: v,
            now: Default::default(),
        };
        let n = m.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(1));
        buf.truncate(n);
        (buf, v)
    }

    #[test]
    fn builds_datagrams_etherparse_accepts() {
        let env = Env::new(&[5632]);
        let m = UdpScan::new(Some("text:ST")).unwrap();
        assert_eq!(m.max_frame_len(), 44);
        let (f, v) = build(&m, &env, TARGET, 5632);
        assert_eq!(f.len(), 44);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.total_len, 30);
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!() };
        assert_eq!(u.checksum(), 0);
        assert_eq!(u.length(), 10);
        assert_eq!(u.payload(), b"ST");
        assert_eq!(u.destination_port(), 5632);
        assert_eq!(u.source_port(), 40000 + (v[1] % 100) as u16);
        let mut s = String::new();
        m.describe(&f, true, &mut s);
        assert!(
            s.starts_with(&format!(
                "udp {{ source: {} | dest: 5632 | checksum: 0000 }}\nip {{",
                u.source_port()
            )),
            "{s}"
        );
        assert!(UdpScan::new(None).is_err());
        assert!(UdpScan::new(Some("bogus")).is_err());
        assert!(UdpScan::new(Some(TEMPLATE_FIELDS_ARG)).is_err());
        assert_eq!(UdpScan::new(Some("hex:02")).unwrap().max_frame_len(), 43);
    }

    #[test]
    fn template_payload_is_rendered_per_packet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tpl");
        std::fs::write(
            &path,
            b"Via ${SADDR}:${SPORT} to ${DADDR} r=${RAND_DIGIT=4} t=${UNIXTIME_SEC}",
        )
        .unwrap();
        let m = UdpScan::new(Some(&format!("template:{}", path.display()))).unwrap();
        let env = Env::new(&[5060]);
        let cfg = env.config(&[5060]);
        let mut buf = vec![0u8; 2048];
        m.prepare(&mut buf, &cfg);
        let mut rng = AesRand::from_seed(9);
        let mut lens = Vec::new();
        for dst in [TARGET, Ipv4Addr::new(198, 19, 100, 200)] {
            let v = env.validator.words(US, dst, 5060);
            let p = ProbeInput {
                src: US,
                dst,
                dport: 5060,
                probe_num: 0,
                validation: v,
                now: std::time::Duration::from_secs(0x0102_0304),
            };
            let n = m.make(&mut buf, &cfg, &p, &mut rng);
            assert!(n <= m.max_frame_len());
            let pkt = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = pkt.net else { panic!() };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert_eq!(usize::from(h.total_len), n - 14);
            let Some(TransportSlice::Udp(u)) = pkt.transport else { panic!() };
            assert_eq!(usize::from(u.length()), n - 34);
            let sport = cfg.source_port(v[1], 0);
            let text = format!("Via 198.18.0.1:{sport} to {dst} r=");
            assert!(
                u.payload().starts_with(text.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(u.payload())
            );
            let digits = &u.payload()[text.len()..text.len() + 4];
            assert!(digits.iter().all(u8::is_ascii_digit));
            assert!(u.payload().ends_with(b" t=\x01\x02\x03\x04"));
            lens.push(n);
        }
        assert_ne!(lens[0], lens[1], "the payload length follows the address text");
    }

    #[test]
    fn udp_reply_and_port_unreachable() {
        let env = Env::new(&[53]);
        let chk = env.check(None);
        let m = UdpScan::new(Some("hex:0102")).unwrap();
        let (f, _) = build(&m, &env, TARGET, 53);
        let sport = u16::from_be_bytes([f[34], f[35]]);
        let r = udp_reply(TARGET, US, 53, sport, b"answer");
        assert_eq!(m.validate(&r, &chk), Ok(ReplyKind::Udp));
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        m.classify(&r, &ReplyKind::Udp, &mut rec, schema.module_start());
        assert_eq!(get(&schema, &rec, "classification"), Value::Str("udp"));
        assert_eq!(get(&schema, &rec, "success"), Value::Bool(true));
        assert_eq!(get(&schema, &rec, "sport"), Value::Int(53));
        assert_eq!(get(&schema, &rec, "dport"), Value::Int(u64::from(sport)));
        assert_eq!(get(&schema, &rec, "udp_pkt_size"), Value::Int(14));
        assert_eq!(get(&schema, &rec, "data"), Value::Bin(b"answer"));
        // A UDP length claiming more than the IP packet holds is clamped.
        let mut lying = r.clone();
        lying[24..26].copy_from_slice(&200u16.to_be_bytes());
        m.classify(&lying, &ReplyKind::Udp, &mut rec, schema.module_start());
        assert_eq!(get(&schema, &rec, "data"), Value::Bin(b"answer"));
        // Trailing bytes beyond the IP total length (Ethernet padding) are not data.
        let mut padded = r.clone();
        padded.extend_from_slice(&[0xee; 10]);
        m.classify(&padded, &ReplyKind::Udp, &mut rec, schema.module_start());
        assert_eq!(get(&schema, &rec, "data"), Value::Bin(b"answer"));

        // Source ports are not checked by default; forcing the check rejects port 54.
        let r54 = udp_reply(TARGET, US, 54, sport, b"");
        assert_ne!(m.validate(&r54, &chk), Err(Reject::UnexpectedSourcePort));
        assert_eq!(m.validate(&r54, &env.check(Some(true))), Err(Reject::UnexpectedSourcePort));
        let wrong_port = if sport == 40000 { 40001 } else { 40000 };
        assert_eq!(
            m.validate(&udp_reply(TARGET, US, 53, wrong_port, b""), &chk),
            Err(Reject::PortOutsideWindow)
        );
        let out = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(
            m.validate(&udp_reply(out, US, 53, sport, b""), &chk),
            Err(Reject::SourceNotInScope)
        );
        assert_eq!(m.validate(&r[..27], &chk), Err(Reject::Truncated));

        let e = icmp_error(TARGET, US, 3, 3, &f[14..], 28);
        assert_eq!(m.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        m.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        assert_eq!(get(&schema, &rec, "classification"), Value::Str("icmp"));
        assert_eq!(get(&schema, &rec, "success"), Value::Bool(false));
        assert_eq!(get(&schema, &rec, "saddr"), Value::Str("198.19.3.4"));
        assert_eq!(get(&schema, &rec, "icmp_responder"), Value::Str("198.19.3.4"));
        assert_eq!(get(&schema, &rec, "icmp_unreach_str"), Value::Str("port unreachable"));
        assert_eq!(get(&schema, &rec, "data"), Value::Null);
        assert_eq!(get(&schema, &rec, "sport"), Value::Null);
        let mut forged = f[14..].to_vec();
        forged[22..24].copy_from_slice(&54u16.to_be_bytes());
        assert_eq!(
            m.validate(&icmp_error(TARGET, US, 3, 3, &forged, 28), &chk),
            Err(Reject::UnexpectedSourcePort)
        );
        let mut forged = f[14..].to_vec();
        forged[20..22].copy_from_slice(&wrong_port.to_be_bytes());
        assert_eq!(
            m.validate(&icmp_error(TARGET, US, 3, 3, &forged, 28), &chk),
            Err(Reject::PortOutsideWindow)
        );
    }
}
