//! `upnp`: an SSDP `M-SEARCH` for root devices to each target port (usually 1900).
//!
//! The probe is the 97-byte query `M-SEARCH * HTTP/1.1`, `Host:239.255.255.250:1900`,
//! `ST:upnp:rootdevice`, `Man:"ssdp:discover"`, `MX:3` (CRLF line ends, blank line last),
//! frame 139 bytes. ZMap 4 builds the same template but sends it with the udp module's
//! `make_packet`, whose frame length counts the udp module's (empty) payload, so its probes
//! are probably cut to the 42-byte headers; rzmap sends the whole query.
//!
//! Replies are validated like the `udp` module's (source port not checked by default, as
//! ZMap). A reply whose first non-empty line is
//! exactly `HTTP/1.1 200 OK` is classified `upnp` (success), any other first line
//! `no-http-header`, an empty payload `none`; ICMP errors are `icmp-unreach` (failure).
//! The headers `Server`, `Location`, `USN`, `ST`, `EXT`, `Cache-Control`, `X-User-Agent`,
//! `Agent` and `Date` are matched case-insensitively; the value is the text after the first
//! colon with surrounding blanks removed (ZMap removes one leading space only), the last one
//! wins when a header repeats, and a value that is not UTF-8 is cut before its first invalid
//! byte. ZMap marks this module "dynamic" only to force JSON output (its CSV writer does not
//! quote); rzmap's CSV writer quotes, so the fields are ordinary strings usable with any
//! output module.

use super::udp_family::{
    PAYLOAD_AT, describe_udp_line, make_udp, prepare_udp, reply_udp, validate_udp,
};
use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInfo, ProbeInput, ProbeModule, Reject, ReplyCheck, ReplyFilter,
    ReplyFilterKind, ReplyKind, begin_classify, classification_fields, classify_icmp_error,
    describe_ip_eth, icmp_fields,
};
use crate::aesrand::AesRand;
use crate::error::InputError;
use crate::fields::{FieldDef, FieldType, Record};

const HELP: &str = "Sends an SSDP M-SEARCH for upnp:rootdevice to each target port (use -p \
1900). A reply starting with \"HTTP/1.1 200 OK\" is classified \"upnp\" (success) and its \
Server, Location, USN, ST, EXT, Cache-Control, X-User-Agent, Agent and Date headers are \
reported; another first line is \"no-http-header\", an ICMP error quoting the probe \
\"icmp-unreach\" (both failures). Takes no --probe-args.";

/// The M-SEARCH query sent to every target.
pub const QUERY: &[u8] = b"M-SEARCH * HTTP/1.1\r\n\
Host:239.255.255.250:1900\r\n\
ST:upnp:rootdevice\r\n\
Man:\"ssdp:discover\"\r\n\
MX:3\r\n\
\r\n";

/// The status line of a successful answer.
const OK_LINE: &[u8] = b"HTTP/1.1 200 OK";

/// Header names, in the order of their fields (starting at `F_HEADERS`).
const HEADERS: [&str; 9] =
    ["server", "location", "usn", "st", "ext", "cache-control", "x-user-agent", "agent", "date"];

/// The module's output fields, in ZMap's order.
pub static FIELDS: [FieldDef; 18] = {
    let c = classification_fields();
    let i = icmp_fields();
    [
        c[0],
        c[1],
        FieldDef::new("server", FieldType::Str, "UPnP server"),
        FieldDef::new("location", FieldType::Str, "UPnP location"),
        FieldDef::new("usn", FieldType::Str, "UPnP usn"),
        FieldDef::new("st", FieldType::Str, "UPnP st"),
        FieldDef::new("ext", FieldType::Str, "UPnP ext"),
        FieldDef::new("cache_control", FieldType::Str, "UPnP cache-control"),
        FieldDef::new("x_user_agent", FieldType::Str, "UPnP x-user-agent"),
        FieldDef::new("agent", FieldType::Str, "UPnP agent"),
        FieldDef::new("date", FieldType::Str, "UPnP date"),
        FieldDef::new("sport", FieldType::Int, "UDP source port"),
        FieldDef::new("dport", FieldType::Int, "UDP destination port"),
        i[0],
        i[1],
        i[2],
        i[3],
        FieldDef::new("data", FieldType::Bin, "UDP payload"),
    ]
};

const F_CLASS: usize = 0;
const F_SUCCESS: usize = 1;
const F_HEADERS: usize = 2;
const F_SPORT: usize = 11;
const F_ICMP: usize = 13;
const F_DATA: usize = 17;

/// The registry entry.
pub const INFO: ProbeInfo = ProbeInfo {
    name: "upnp",
    help: HELP,
    needs_ports: true,
    fields: &FIELDS,
    create: |args| Ok(Box::new(UpnpScan::new(args)?)),
};

/// The UPnP (SSDP) scan module.
#[derive(Clone, Debug, Default)]
pub struct UpnpScan;

impl UpnpScan {
    /// Creates the module; it takes no `--probe-args`.
    pub fn new(args: Option<&str>) -> Result<Self, InputError> {
        match args {
            None => Ok(Self),
            Some(a) => Err(InputError::new(
                "--probe-args",
                format!("upnp takes no probe arguments (got \"{a}\")"),
            )),
        }
    }
}

/// What an SSDP answer says: classification, success, and the known headers' values.
struct Answer<'a> {
    class: &'static str,
    success: bool,
    headers: [Option<&'a [u8]>; 9],
}

fn trim_blanks(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = v {
        v = rest;
    }
    v
}

/// Parses an SSDP answer without allocating.
fn parse_answer(payload: &[u8]) -> Answer<'_> {
    let mut a = Answer { class: "none", success: false, headers: [None; 9] };
    let mut first = true;
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if first {
            if line != OK_LINE {
                a.class = "no-http-header";
                return a;
            }
            first = false;
            a.class = "upnp";
            a.success = true;
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let key = &line[..colon];
        let value = trim_blanks(&line[colon + 1..]);
        if let Some(k) = HEADERS.iter().position(|h| key.eq_ignore_ascii_case(h.as_bytes())) {
            a.headers[k] = Some(value);
        }
    }
    a
}

/// The longest UTF-8 prefix of `b`.
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        // `valid_up_to` bytes are valid UTF-8 by definition.
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    }
}

impl ProbeModule for UpnpScan {
    fn info(&self) -> &'static ProbeInfo {
        &INFO
    }
    fn max_frame_len(&self) -> usize {
        PAYLOAD_AT + QUERY.len()
    }
    fn reply_filter(&self) -> ReplyFilter {
        ReplyFilter { kind: ReplyFilterKind::UdpOrIcmp, snaplen: 2048 }
    }
    fn validate_source_port_default(&self) -> bool {
        false
    }
    fn probe_args(&self) -> Option<&str> {
        None
    }

    fn prepare(&self, buf: &mut [u8], cfg: &ProbeConfig) {
        prepare_udp(buf, cfg, QUERY);
    }

    fn make(&self, buf: &mut [u8], cfg: &ProbeConfig, p: &ProbeInput, _rng: &mut AesRand) -> usize {
        make_udp(buf, cfg, p, QUERY.len())
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
            let Some(u) = reply_udp(&ip) else { return };
            let a = parse_answer(u.payload());
            rec.set_str(base + F_CLASS, a.class);
            rec.set_bool(base + F_SUCCESS, a.success);
            for (k, v) in a.headers.iter().enumerate() {
                if let Some(v) = v {
                    rec.set_str(base + F_HEADERS + k, utf8_prefix(v));
                }
            }
            rec.set_int(base + F_SPORT, u64::from(u.src_port()));
            rec.set_int(base + F_SPORT + 1, u64::from(u.dst_port()));
            if !u.is_empty() {
                rec.set_bin(base + F_DATA, u.payload());
            }
        } else {
            classify_icmp_error(
                &ip,
                rec,
                "icmp-unreach",
                base + F_CLASS,
                base + F_SUCCESS,
                base + F_ICMP,
            );
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

    fn build(env: &Env) -> (Vec<u8>, u16) {
        let (buf, _) = env.build_frame(&UpnpScan, TARGET, 1900, 0);
        let sport = u16::from_be_bytes([buf[34], buf[35]]);
        (buf, sport)
    }

    #[test]
    fn sends_the_whole_query() {
        let env = Env::new(&[1900]);
        let (f, sport) = build(&env);
        assert_eq!(QUERY.len(), 97);
        assert_eq!(f.len(), 139);
        assert_eq!(UpnpScan.max_frame_len(), 139);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(usize::from(h.total_len), 20 + 8 + 97);
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!() };
        assert_eq!(u.payload(), QUERY);
        assert_eq!(u.source_port(), sport);
        assert_eq!(u.destination_port(), 1900);
        assert!(u.payload().starts_with(b"M-SEARCH * HTTP/1.1\r\n"));
        assert!(u.payload().ends_with(b"MX:3\r\n\r\n"));
        assert!(UpnpScan::new(Some("x")).is_err());
        let mut s = String::new();
        UpnpScan.describe(&f, true, &mut s);
        assert!(s.starts_with(&format!(
            "udp {{ source: {sport} | dest: 1900 | checksum: 0000 }}\nip {{"
        )));
    }

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\
CACHE-CONTROL: max-age=1800\r\n\
DATE: Thu, 26 Nov 2026 18:00:00 GMT\r\n\
EXT:\r\n\
LOCATION: http://198.19.3.4:49152/rootDesc.xml\r\n\
SERVER: Linux/5.4 UPnP/1.0 MiniUPnPd/2.1\r\n\
ST: upnp:rootdevice\r\n\
USN: uuid:1234::upnp:rootdevice\r\n\
x-user-agent: redsonic\r\n\
Agent:  a b \r\n\
\r\n";

    #[test]
    fn parses_an_ok_answer() {
        let env = Env::new(&[1900]);
        let chk = env.check(None);
        let (f, sport) = build(&env);
        let r = udp_reply(TARGET, US, 1900, sport, ANSWER);
        assert_eq!(UpnpScan.validate(&r, &chk), Ok(ReplyKind::Udp));
        // Another source port: not checked by default (the window check then fails, as the
        // words are computed for that port), refused up front when forced.
        let r50 = udp_reply(TARGET, US, 50123, sport, ANSWER);
        assert_ne!(UpnpScan.validate(&r50, &chk), Err(Reject::UnexpectedSourcePort));
        assert_eq!(
            UpnpScan.validate(&r50, &env.check(Some(true))),
            Err(Reject::UnexpectedSourcePort)
        );
        let schema = Schema::for_module(UpnpScan.fields());
        let mut rec = Record::for_schema(&schema);
        UpnpScan.classify(&r, &ReplyKind::Udp, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("upnp"));
        assert_eq!(g("success"), Value::Bool(true));
        assert_eq!(g("server"), Value::Str("Linux/5.4 UPnP/1.0 MiniUPnPd/2.1"));
        assert_eq!(g("location"), Value::Str("http://198.19.3.4:49152/rootDesc.xml"));
        assert_eq!(g("usn"), Value::Str("uuid:1234::upnp:rootdevice"));
        assert_eq!(g("st"), Value::Str("upnp:rootdevice"));
        assert_eq!(g("ext"), Value::Str(""));
        assert_eq!(g("cache_control"), Value::Str("max-age=1800"));
        assert_eq!(g("x_user_agent"), Value::Str("redsonic"));
        assert_eq!(g("agent"), Value::Str("a b"));
        assert_eq!(g("date"), Value::Str("Thu, 26 Nov 2026 18:00:00 GMT"));
        assert_eq!(g("sport"), Value::Int(1900));
        assert_eq!(g("dport"), Value::Int(u64::from(sport)));
        assert_eq!(g("data"), Value::Bin(ANSWER));
        assert_eq!(g("icmp_type"), Value::Null);

        let other = if sport == 40099 { 40000 } else { sport + 1 };
        assert_eq!(
            UpnpScan.validate(&udp_reply(TARGET, US, 1900, other, ANSWER), &chk),
            Err(Reject::PortOutsideWindow)
        );
        assert_eq!(
            UpnpScan
                .validate(&udp_reply(Ipv4Addr::new(192, 0, 2, 9), US, 1900, sport, ANSWER), &chk),
            Err(Reject::SourceNotInScope)
        );
        let e = icmp_error(ROUTER, US, 3, 3, &f[14..], 28);
        assert_eq!(UpnpScan.validate(&e, &chk), Ok(ReplyKind::IcmpError));
        UpnpScan.classify(&e, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let g = |n: &str| rec.get(schema.index_of(n).unwrap());
        assert_eq!(g("classification"), Value::Str("icmp-unreach"));
        assert_eq!(g("success"), Value::Bool(false));
        assert_eq!(g("server"), Value::Null);
        assert_eq!(g("icmp_responder"), Value::Str("198.18.200.1"));
    }

    #[test]
    fn other_answers() {
        let a = parse_answer(b"HTTP/1.1 404 Not Found\r\nServer: x\r\n\r\n");
        assert_eq!((a.class, a.success), ("no-http-header", false));
        assert!(a.headers.iter().all(Option::is_none));
        let a = parse_answer(b"");
        assert_eq!((a.class, a.success), ("none", false));
        // Leading blank lines are skipped; bare LF line ends work; names are case-insensitive.
        let a = parse_answer(b"\r\n\nHTTP/1.1 200 OK\nsErVeR:x\nLocation\nDate: a: b\nserver: y");
        assert_eq!((a.class, a.success), ("upnp", true));
        assert_eq!(a.headers[0], Some(&b"y"[..]));
        assert_eq!(a.headers[1], None);
        assert_eq!(a.headers[8], Some(&b"a: b"[..]));
        assert_eq!(utf8_prefix(b"ok\xffno"), "ok");
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK \r\n").class, "no-http-header");
    }
}
