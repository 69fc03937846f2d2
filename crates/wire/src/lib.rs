//! Zero-copy typed views over packet bytes: Ethernet, IPv4, TCP (with options), UDP, ICMPv4,
//! and Internet checksums. No allocation, no `unsafe`.
//!
//! Every view is a `Packet<T: AsRef<[u8]>>` whose `new_checked` proves that all its getters are
//! in bounds, so getters never panic on a checked view. Setters exist when `T: AsMut<[u8]>`.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use ethernet::EthernetFrame;
pub use icmpv4::Icmpv4Packet;
pub use ipv4::Ipv4Packet;
pub use tcp::{TcpOption, TcpOptionSummary, TcpOptions, TcpPacket};
pub use udp::UdpPacket;

/// Why a view could not be made over some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length the header claims).
    Truncated,
    /// A header field is inconsistent (bad version, header length, length field).
    Malformed,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated packet"),
            WireError::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for WireError {}

/// The first eight bytes of a transport header quoted inside an ICMP error (RFC 792 guarantees
/// no more). Reads ports and the TCP sequence number, or the ICMP type, id and sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Head8(pub [u8; 8]);

impl L4Head8 {
    /// The first eight bytes of `buf`, if it has that many.
    pub fn new(buf: &[u8]) -> Option<Self> {
        let b: [u8; 8] = buf.get(..8)?.try_into().ok()?;
        Some(Self(b))
    }
    /// TCP/UDP source port.
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }
    /// TCP/UDP destination port.
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.0[2], self.0[3]])
    }
    /// TCP sequence number.
    pub fn tcp_seq(&self) -> u32 {
        u32::from_be_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
    }
    /// ICMP type.
    pub fn icmp_type(&self) -> u8 {
        self.0[0]
    }
    /// ICMP echo identifier.
    pub fn icmp_ident(&self) -> u16 {
        u16::from_be_bytes([self.0[4], self.0[5]])
    }
    /// ICMP echo sequence number.
    pub fn icmp_seq(&self) -> u16 {
        u16::from_be_bytes([self.0[6], self.0[7]])
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
