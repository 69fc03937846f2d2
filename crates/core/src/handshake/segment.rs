//! Writing the segments the handshake sends: ACK (+ payload), and the closing RST.

use std::net::Ipv4Addr;

use rzmap_wire::checksum;
use rzmap_wire::ethernet::ETHERTYPE_IPV4;
use rzmap_wire::ipv4::{self, Ipv4Packet};
use rzmap_wire::tcp::{TcpPacket, kind};

/// What goes in front of the IP header of each frame we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHeader {
    /// Bare IP packets (`-X`, or a raw IP sender).
    None,
    /// An Ethernet header from `src` to `dst` (the gateway), as the probes carry.
    Ethernet {
        /// Our MAC address.
        src: [u8; 6],
        /// The gateway's MAC address.
        dst: [u8; 6],
    },
}

impl LinkHeader {
    /// The header length in bytes.
    pub fn len(self) -> usize {
        match self {
            LinkHeader::None => 0,
            LinkHeader::Ethernet { .. } => 14,
        }
    }

    /// True for bare IP.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// TCP header length when the timestamp option is carried (NOP, NOP, TS).
pub(crate) const TCP_LEN_TS: usize = 32;

/// Everything one outgoing segment needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentSpec<'a> {
    pub link: LinkHeader,
    pub ttl: u8,
    pub ip_id: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// (TSval, TSecr) when timestamps were negotiated.
    pub ts: Option<(u32, u32)>,
    pub payload: &'a [u8],
}

/// Frame length of a segment with `payload_len` bytes of payload.
pub(crate) fn frame_len(link: LinkHeader, ts: bool, payload_len: usize) -> usize {
    link.len() + ipv4::MIN_HEADER_LEN + if ts { TCP_LEN_TS } else { 20 } + payload_len
}

/// Writes the frame into `out` and returns its length, or `None` when `out` is too small
/// (or the packet would exceed 65535 bytes).
pub(crate) fn write(out: &mut [u8], s: &SegmentSpec<'_>) -> Option<usize> {
    let tcp_len = if s.ts.is_some() { TCP_LEN_TS } else { 20 };
    let total = frame_len(s.link, s.ts.is_some(), s.payload.len());
    let ip_len = u16::try_from(total - s.link.len()).ok()?;
    let frame = out.get_mut(..total)?;
    let (l2, rest) = frame.split_at_mut(s.link.len());
    if let LinkHeader::Ethernet { src, dst } = s.link {
        l2[0..6].copy_from_slice(&dst);
        l2[6..12].copy_from_slice(&src);
        l2[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    }
    let (iph, seg) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
    let mut ip = Ipv4Packet::new_unchecked(&mut *iph);
    ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
    ip.set_tos(0);
    ip.set_total_len(ip_len);
    ip.set_ident(s.ip_id);
    ip.set_flags_frag(0);
    ip.set_ttl(s.ttl);
    ip.set_protocol(ipv4::PROTO_TCP);
    ip.set_src(s.src);
    ip.set_dst(s.dst);
    ip.fill_checksum();
    seg[..tcp_len].fill(0);
    seg[tcp_len..].copy_from_slice(s.payload);
    {
        let h = &mut seg[..tcp_len];
        h[0..2].copy_from_slice(&s.sport.to_be_bytes());
        h[2..4].copy_from_slice(&s.dport.to_be_bytes());
        h[4..8].copy_from_slice(&s.seq.to_be_bytes());
        h[8..12].copy_from_slice(&s.ack.to_be_bytes());
        h[12] = ((tcp_len / 4) as u8) << 4;
        h[13] = s.flags;
        h[14..16].copy_from_slice(&s.window.to_be_bytes());
        if let Some((val, ecr)) = s.ts {
            h[20] = kind::NOP;
            h[21] = kind::NOP;
            h[22] = kind::TIMESTAMP;
            h[23] = 10;
            h[24..28].copy_from_slice(&val.to_be_bytes());
            h[28..32].copy_from_slice(&ecr.to_be_bytes());
        }
    }
    let c = checksum::transport_checksum(s.src, s.dst, ipv4::PROTO_TCP, seg);
    if let Ok(mut t) = TcpPacket::new_checked(&mut *seg) {
        t.set_checksum(c);
    }
    Some(total)
}
