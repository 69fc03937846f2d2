//! UDP headers.

use crate::{WireError, be16, put16};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram. `new_checked` proves only that the 8-byte header is present; the
/// length field is reported as sent and [`UdpPacket::payload`] is cut to what is really there.
#[derive(Clone, Copy, Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view after checking that the header fits.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Length field (header plus payload, as claimed by the sender).
    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    /// True when the length field claims no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    /// Checksum field (0 means none).
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    /// The payload, clamped to both the length field and the buffer.
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let end = usize::from(self.len()).min(b.len()).max(HEADER_LEN);
        &b[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 0, v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }
    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 6, v);
    }
    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}
