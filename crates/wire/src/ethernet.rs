//! Ethernet II frames.

use crate::{WireError, be16, put16};

/// Length of an Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;

/// A view of an Ethernet II frame.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view after checking that the header fits.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        let b = self.buf.as_ref();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        let b = self.buf.as_ref();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }
    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }
    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac);
    }
    /// Sets the source MAC address.
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac);
    }
    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buf.as_mut(), 12, t);
    }
    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// Formats a MAC address as six lowercase two-digit hex bytes separated by colons.
pub fn write_mac(out: &mut impl core::fmt::Write, mac: [u8; 6]) -> core::fmt::Result {
    write!(
        out,
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}
