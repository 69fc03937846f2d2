//! IPv4 headers: a strict view for whole packets and a lax view for truncated captures and
//! datagrams quoted inside ICMP errors.

use std::net::Ipv4Addr;

use crate::{WireError, be16, checksum, put16};

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A view of an IPv4 packet.
///
/// [`Ipv4Packet::new_checked`] proves the header and the whole `total_len` are present;
/// [`Ipv4Packet::new_lax`] proves only the header, and [`Ipv4Packet::payload`] then returns
/// whatever part of the payload was captured.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view after checking the version, header length and total length against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let p = Self::new_lax(buf)?;
        if usize::from(p.total_len()) > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    /// A view after checking only the header: version 4, a header length of at least 20 bytes
    /// that fits in the buffer, and a total length no smaller than the header.
    pub fn new_lax(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let hl = usize::from(b[0] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        if usize::from(be16(b, 2)) < hl {
            return Err(WireError::Malformed);
        }
        Ok(Self { buf })
    }

    /// A view over a buffer known to hold at least 20 bytes, for writing a fresh header.
    /// Getters other than the fixed fields may panic until the header is filled in.
    pub fn new_unchecked(buf: T) -> Self {
        Self { buf }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
    /// The IP version.
    pub fn version(&self) -> u8 {
        self.buf.as_ref()[0] >> 4
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }
    /// Type of service byte.
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    /// Total length field.
    pub fn total_len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }
    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf.as_ref(), 6) & 0x1fff
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }
    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buf.as_ref()[..self.header_len()], 0)) == 0xffff
    }
    /// The payload: from the end of the header to `total_len`, cut at the end of the buffer
    /// (so a lax view of a truncated capture returns the captured part).
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let end = usize::from(self.total_len()).min(b.len());
        let start = self.header_len().min(end);
        &b[start..end]
    }
    /// True when the buffer holds less than `total_len` bytes.
    pub fn is_truncated(&self) -> bool {
        usize::from(self.total_len()) > self.buf.as_ref().len()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and a header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buf.as_mut()[0] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }
    /// Sets the type of service byte.
    pub fn set_tos(&mut self, v: u8) {
        self.buf.as_mut()[1] = v;
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }
    /// Sets the flags and fragment offset word (0 means DF clear, MF clear, offset 0).
    pub fn set_flags_frag(&mut self, v: u16) {
        put16(self.buf.as_mut(), 6, v);
    }
    /// Sets the time to live.
    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[8] = v;
    }
    /// Sets the protocol number.
    pub fn set_protocol(&mut self, v: u8) {
        self.buf.as_mut()[9] = v;
    }
    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 10, v);
    }
    /// Sets the source address.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[12..16].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[16..20].copy_from_slice(&a.octets());
    }
    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buf.as_ref()[..hl]);
        self.set_checksum(c);
    }
    /// The payload up to `total_len` (cut at the buffer's end), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        let b = self.buf.as_mut();
        let end = tl.min(b.len());
        let start = hl.min(end);
        &mut b[start..end]
    }
}

/// Writes a dotted-quad address.
pub fn write_addr(out: &mut impl core::fmt::Write, a: Ipv4Addr) -> core::fmt::Result {
    let o = a.octets();
    write!(out, "{}.{}.{}.{}", o[0], o[1], o[2], o[3])
}
