//! Pieces shared by the UDP modules (`udp`, and `ntp`, `upnp`, `bacnet` with a fixed datagram):
//! building the datagram, validating UDP replies and ICMP errors exactly as the `udp` module
//! does, and the `udp { .. }` dry-run line.

use std::fmt::Write as _;

use rzmap_wire::ipv4::{self, Ipv4Packet};
use rzmap_wire::udp::{self, UdpPacket};

use super::{
    ETH_IP_LEN, ProbeConfig, ProbeInput, Reject, ReplyCheck, ReplyKind, patch_ip, reply_ip,
    validate_icmp_error, write_c_hex04, write_eth_ip,
};

/// Offset of the UDP payload in a probe frame.
pub(crate) const PAYLOAD_AT: usize = ETH_IP_LEN + udp::HEADER_LEN;

/// Writes Ethernet, IPv4 and UDP headers (checksum 0, as ZMap) and the fixed payload.
pub(crate) fn prepare_udp(buf: &mut [u8], cfg: &ProbeConfig, payload: &[u8]) {
    let ulen = udp::HEADER_LEN + payload.len();
    write_eth_ip(buf, cfg, ipv4::PROTO_UDP, (20 + ulen) as u16);
    let d = &mut buf[ETH_IP_LEN..ETH_IP_LEN + ulen];
    d[..8].fill(0);
    d[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
    d[8..].copy_from_slice(payload);
}

/// Patches ports and the IP header of a prepared datagram with a `payload_len`-byte payload;
/// returns the frame length.
#[inline]
pub(crate) fn make_udp(
    buf: &mut [u8],
    cfg: &ProbeConfig,
    p: &ProbeInput,
    payload_len: usize,
) -> usize {
    let sport = cfg.source_port(p.validation[1], p.probe_num);
    let d = &mut buf[ETH_IP_LEN..ETH_IP_LEN + 8];
    d[0..2].copy_from_slice(&sport.to_be_bytes());
    d[2..4].copy_from_slice(&p.dport.to_be_bytes());
    d[6..8].fill(0);
    patch_ip(buf, p);
    PAYLOAD_AT + payload_len
}

/// Validates a UDP reply or an ICMP error quoting a UDP probe, as the `udp` module:
/// the replying address in scope, the reply's source port a target port (when source-port
/// validation is on; `sport_default` is the module default), the port it went to inside the
/// window of the target's validation word.
pub(crate) fn validate_udp(
    ip: &[u8],
    chk: &ReplyCheck<'_>,
    sport_default: bool,
) -> Result<ReplyKind, Reject> {
    let ip = reply_ip(ip)?;
    match ip.protocol() {
        ipv4::PROTO_UDP => {
            let u = UdpPacket::new_checked(ip.payload())?;
            if !(chk.in_scope)(ip.src()) {
                return Err(Reject::SourceNotInScope);
            }
            if chk.check_source_port(sport_default) && !chk.target_ports.contains(u.src_port()) {
                return Err(Reject::UnexpectedSourcePort);
            }
            let v = chk.validator.words(ip.dst(), ip.src(), u.src_port());
            if !chk.port_in_window(u.dst_port(), v[1]) {
                return Err(Reject::PortOutsideWindow);
            }
            Ok(ReplyKind::Udp)
        }
        ipv4::PROTO_ICMP => validate_icmp_error(&ip, ipv4::PROTO_UDP, chk),
        _ => Err(Reject::WrongProtocol),
    }
}

/// The UDP datagram of a validated reply (`None` for ICMP or when unparsable).
#[inline]
pub(crate) fn reply_udp<'a>(ip: &'a Ipv4Packet<&[u8]>) -> Option<UdpPacket<&'a [u8]>> {
    if ip.protocol() != ipv4::PROTO_UDP {
        return None;
    }
    UdpPacket::new_checked(ip.payload()).ok()
}

/// Appends `udp { source: S | dest: D | checksum: C }` for the UDP header at `at` in `frame`.
pub(crate) fn describe_udp_line(frame: &[u8], at: usize, out: &mut String) {
    if let Some(u) = frame.get(at..).and_then(|s| UdpPacket::new_checked(s).ok()) {
        let _ =
            write!(out, "udp {{ source: {} | dest: {} | checksum: ", u.src_port(), u.dst_port());
        write_c_hex04(out, u.checksum());
        out.push_str(" }\n");
    }
}
