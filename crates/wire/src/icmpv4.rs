//! ICMPv4 messages: echo request/reply, and errors that quote a datagram.

use crate::ipv4::Ipv4Packet;
use crate::{WireError, be16, checksum, put16};

/// Length of the fixed ICMP header (type, code, checksum, and the 4-byte rest of header).
pub const HEADER_LEN: usize = 8;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const TYPE_DEST_UNREACH: u8 = 3;
/// Source quench.
pub const TYPE_SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const TYPE_REDIRECT: u8 = 5;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 12;

/// A view of an ICMPv4 message.
#[derive(Clone, Copy, Debug)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// A view after checking that the 8-byte header fits.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
    /// True when the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buf.as_ref(), 0)) == 0xffff
    }
    /// True for the error types that quote the offending datagram (3, 4, 5, 11, 12).
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_DEST_UNREACH
                | TYPE_SOURCE_QUENCH
                | TYPE_REDIRECT
                | TYPE_TIME_EXCEEDED
                | TYPE_PARAM_PROBLEM
        )
    }
    /// The quoted datagram of an error message, as a lax IPv4 view (its payload is usually
    /// cut short). `None` for non-error types or when the quoted header is incomplete.
    pub fn quoted(&self) -> Option<Ipv4Packet<&[u8]>> {
        if !self.is_error() {
            return None;
        }
        Ipv4Packet::new_lax(self.data()).ok()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buf.as_mut()[0] = v;
    }
    /// Sets the code.
    pub fn set_code(&mut self, v: u8) {
        self.buf.as_mut()[1] = v;
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }
    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buf.as_mut(), 4, v);
    }
    /// Sets the echo sequence number.
    pub fn set_echo_seq(&mut self, v: u16) {
        put16(self.buf.as_mut(), 6, v);
    }
    /// Sets the 4-byte rest-of-header (unused/pointer/MTU field of errors).
    pub fn set_rest_of_header(&mut self, v: [u8; 4]) {
        self.buf.as_mut()[4..8].copy_from_slice(&v);
    }
    /// Everything after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buf.as_ref());
        self.set_checksum(c);
    }
}
