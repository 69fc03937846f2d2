//! `bacnet`: a BACnet/IP ReadProperty request to each target port (usually 47808).
//!
//! The 17-byte payload: BVLC (type 0x81 BACnet/IP, function 0x0a original-unicast-NPDU,
//! length 17), NPDU (version 1, control 0x04 "expecting reply"), APDU confirmed request
//! (type/flags 0x00, max segments/APDU 0x05, invoke id = `v[1] >> 24`, service 0x0c
//! ReadProperty) asking object (device, instance 4194303 = "any") for property 75
//! (object-identifier). Frame 59 bytes.
//!
//! Replies are validated like the `udp` module's, with source-port validation on by default
//! (as ZMap); a UDP reply must also start with a BVLC header of type 0x81, otherwise it is
//! rejected. A valid UDP reply is classified `bacnet` (success), an ICMP error `icmp`
//! (failure).
//!
//! Deliberate differences from ZMap 4: ZMap adds the null ICMP fields twice for UDP replies,
//! which shifts its positional field mapping and scrambles the output; rzmap fills each field
//! once, in the definition order below. `udp_payload` ends at the UDP/IP length, not at the
//! end of the capture (so Ethernet padding is not reported). ZMap compares the UDP length in
//! network byte order against the BVLC minimum; rzmap checks the real length.

use rzmap_wire::ipv4::{self};

use super::udp_family::{
    PAYLOAD_AT, describe_udp_line, make_udp, prepare_udp, reply_udp, validate_udp,
};
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    describe_ip_eth, icmp_fields, reply_ip,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends a BACnet/IP ReadProperty request (object-identifier of any device) \
to each target port (use -p 47808). A UDP answer starting with a BACnet/IP header (BVLC type \
0x81) is classified \"bacnet\" (success); an ICMP error quoting the probe is \"icmp\" \
(failure). Takes no --probe-args.";

/// BVLC type of BACnet/IP.
pub const BVLC_TYPE_BACNET_IP: u8 = 0x81;
/// Length of the BVLC header (type, function, length).
pub const BVLC_LEN: usize = 4;
/// The request with invoke id 0 (byte [`INVOKE_ID_AT`] is patched per probe).
pub const REQUEST: [u8; 17] = [
    BVLC_TYPE_BACNET_IP,
    0x0a, // original-unicast-NPDU
    0x00,
    0x11, // BVLC length 17
    0x01, // NPDU version
    0x04, // NPDU control: expecting reply
    0x00, // APDU: confirmed request, no segmentation
    0x05, // max segments unspecified, max APDU 1476
    0x00, // invoke id
    0x0c, // service: ReadProperty
    0x0c, // context tag 0, length 4: object identifier
    0x02,
    0x3f,
    0xff,
    0xff, // device, instance 4194303
    0x19, // context tag 1, length 1: property identifier
    0x4b, // 75: object-identifier
];
/// Offset of the invoke id in [`REQUEST`].
pub const INVOKE_ID_AT: usize = 8;

/// The module's output fields (ZMap's definition order).
pub static FIELDS: [FieldDef; 9] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        FieldDef::new("sport", FieldType::Int, "UDP source port"),
        FieldDef::new("dport", FieldType::Int, "UDP destination port"),
        c[0],
        c[1],
        FieldDef::new("udp_payload", FieldType::Bin, "UDP payload"),
        i[0],
        i[1],
        i[2],
        i[3],
    ]
};

const F_SPORT: usize = 0;
const F_CLASS: usize = 2;
const F_SUCCESS: usize = 3;
const F_PAYLOAD: usize = 4;
const F_ICMP: usize = 5;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "bacnet",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(BacnetScan::new(args)?)),
};

/// The invoke id of the probe to a target with validation words `v`.
#[inline]
pub fn invoke_id(v: &[u32; 4]) -> u8 {
    (v[1] >> 24) as u8
}

/// The BACnet scan module.
#[derive(Clone, Debug, Default)]
pub struct BacnetScan;

impl BacnetScan {
    /// Creates the module; it takes no `--probe-args`.
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        match args {
            None => Ok(Self),
            Some(a) => Err(InputError::new(
                "--probe-args",
                format!("bacnet takes no probe arguments (got \"{a}\")"),
            )),
        }
    }
}

impl ProbeModule for BacnetScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        PAYLOAD_AT + REQUEST.len()
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::UdpOrIcmp, snaplen: 1500 }
    }
    fn validate_source_port_default(&self) -> bool {
        true
    }
    fn probe_args(&self) -> Option<&str> {
        None
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        prepare_udp(buf, cfg, &REQUEST);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        buf[PAYLOAD_AT + INVOKE_ID_AT] = invoke_id(&p.validation);
        make_udp(buf, cfg, p, REQUEST.len())
    }

    fn describe(&self, frame: &[u8], with_eth: bool, out: &mut String) {
        describe_udp_line(frame, ETH_IP_LEN, out);
        describe_ip_eth(frame, with_eth, out);
    }

    fn validate(&self, ip: &[u8], chk: &ReplyCheck<'_>) -> Result<ReplyKind, Reject> {
        let kind = validate_udp(ip, chk, true)?;
        if kind == ReplyKind::Udp {
            let ip = reply_ip(ip)?;
            let u = reply_udp(&ip).ok_or(Reject::Truncated)?;
            match u.payload() {
                [BVLC_TYPE_BACNET_IP, _, _, _, ..] => {}
                p if p.len() < BVLC_LEN => return Err(Reject::Truncated),
                _ => return Err(Reject::UnexpectedType),
            }
        }
        Ok(kind)
    }

    fn classify(&self, ip: &[u8], kind: &ReplyKind, rec: &mut Record, base: usize) {
        let Some(ip) = begin_classify(ip, rec, base, FIELDS.len()) else { return };
        if *kind == ReplyKind::Udp && ip.protocol() == ipv4::PROTO_UDP {
            let Some(u) = reply_udp(&ip) else { return };
            rec.set_int(base + F_SPORT, u64::from(u.src_port()));
            rec.set_int(base + F_SPORT + 1, u64::from(u.dst_port()));
            rec.set_str(base + F_CLASS, "bacnet");
            rec.set_bool(base + F_SUCCESS, true);
            rec.set_bin(base + F_PAYLOAD, u.payload());
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

    fn build(env: &Env) -> (Vec<u8>, [u32; 4], u16) {
        let (buf, v) = env.build_frame(&BacnetScan, TARGET, 47808, 0);
        let sport = u16::from_be_bytes([buf[34], buf[35]]);
        (buf, v, sport)
    }

    #[test]
    fn read_property_request() {
        let env = Env::new(&[47808]);
        let (f, v, sport) = build(&env);
        assert_eq!(f.len(), 59);
        assert_eq!(BacnetScan.max_frame_len(), 59);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!() };
        assert_eq!(u.length(), 25);
        assert_eq!(u.source_port(), sport);
        assert_eq!(u.destination_port(), 47808);
        let want = [
            0x81,
            0x0a,
            0x00,
            0x11,
            0x01,
            0x04,
            0x00,
            0x05,
            (v[1] >> 24) as u8,
            0x0c,
            0x0c,
            0x02,
            0x3f,
            0xff,
            0xff,
            0x19,
            0x4b,
        ];
        assert_eq!(u.payload(), &want);
        assert!(BacnetScan::new(Some("x")).is_err());
        let mut s = String::new();
        BacnetScan.describe(&f, false, &mut s);
        assert!(
            s.starts_with(&format!("udp {{ source: {sport} | dest: 47808 | checksum: 0000 }}\n"))
        );
    }

    #[test]
    fn replies_and_field_order() {
        let env = Env::new(&[47808]);
        let chk = env.check(None);
        let (f, _, sport) = build(&env);
        let answer = [0x81, 0x0a, 0x00, 0x0a, 0x01, 0x00, 0x30, 0x01, 0x0c, 0x0c];
        let r = udp_reply(TARGET, US, 47808, sport, &answer);
        assert_eq!(BacnetScan.validate(&r, &chk), Ok(ReplyKind::Udp));
        let schema = Schema::for_module(BacnetScan.fields());
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name).collect();
        let m0 = schema.module_start();
        assert_eq!(
            &names[m0..m0 + 9],
            &[
                "sport",
                "dport",
                "classification",
                "success",
                "udp_payload",
                "icmp_responder",
                "icmp_type",
                "icmp_code",
                "icmp_unreach_str"
            ]
        );
        assert_eq!(names[m0 + 9], "repeat");
        let mut rec = Record::for_schema(&schema);
        BacnetScan.classify(&r, &ReplyKind::Udp, &mut rec, m0);
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("sport"), Value::Int(47808));
        assert_eq!(g("dport"), Value::Int(u64::from(sport)));
        assert_eq!(g("classification"), Value::Str("bacnet"));
        assert_eq!(g("success"), Value::Bool(true));
        assert_eq!(g("udp_payload"), Value::Bin(&answer));
        assert_eq!(g("icmp_responder"), Value::Null);
        assert_eq!(g("repeat"), Value::Null, "system fields are left to the caller");

        // One altered field each.
        let mut other = answer;
        other[0] = 0x82;
        assert_eq!(
            BacnetScan.validate(&udp_reply(TARGET, US, 47808, sport, &other), &chk),
            Err(Reject::UnexpectedType)
        );
        assert_eq!(
            BacnetScan.validate(&udp_reply(TARGET, US, 47808, sport, &answer[..3]), &chk),
            Err(Reject::Truncated)
        );
        assert_eq!(
            BacnetScan.validate(&udp_reply(TARGET, US, 47809, sport, &answer), &chk),
            Err(Reject::UnexpectedSourcePort)
        );
        let wrong = if sport == 40099 { 40000 } else { sport + 1 };
        assert_eq!(
            BacnetScan.validate(&udp_reply(TARGET, US, 47808, wrong, &answer), &chk),
            Err(Reject::PortOutsideWindow)
        );
        assert_eq!(
            BacnetScan
                .validate(&udp_reply(Ipv4Addr::new(192, 0, 2, 3), US, 47808, sport, &answer), &chk),
            Err(Reject::SourceNotInScope)
        );

        let e = icmp_error(ROUTER, US, 3, 3, &f[14..], 28);
        assert_eq!(BacnetScan.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        BacnetScan.classify(&e, &ReplyKind::IcmpError, &mut rec, m0);
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("icmp"));
        assert_eq!(g("success"), Value::Bool(false));
        assert_eq!(g("udp_payload"), Value::Null);
        assert_eq!(g("icmp_code"), Value::Int(3));
        assert_eq!(g("saddr"), Value::Str("198.19.3.4"));
    }

    proptest::proptest! {
        #[test]
        fn invoke_id_is_the_top_byte_of_v1(host in proptest::num::u16::ANY, dport in 1u16..) {
            let env = Env::new(&[dport]);
            let cfg = env.config(&[dport]);
            let dst = Ipv4Addr::new(198, 19, (host >> 8) as u8, host as u8);
            let mut buf = vec![0u8; 128];
            BacnetScan.prepare(&mut buf, &cfg);
            let v = env.validator.words(US, dst, dport);
            let p = ProbeInput { src: US, dst, dport, probe_num: 0, validation: v, now: Default::default() };
            let n = BacnetScan.make(&mut buf, &cfg, &p, &mut AesRand::from_seed(1));
            proptest::prop_assert_eq!(buf[PAYLOAD_AT + INVOKE_ID_AT], (v[1] >> 24) as u8);
            let mut want = REQUEST;
            want[INVOKE_ID_AT] = (v[1] >> 24) as u8;
            proptest::prop_assert_eq!(&buf[PAYLOAD_AT..n], &want[..]);
        }
    }
}
