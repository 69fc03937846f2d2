//! TCP headers and options (MSS, window scale, SACK-permitted, timestamps).

use std::net::Ipv4Addr;

use crate::{WireError, be16, be32, checksum, put16, put32};

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// FIN flag.
pub const FLAG_FIN: u8 = 0x01;
/// SYN flag.
pub const FLAG_SYN: u8 = 0x02;
/// RST flag.
pub const FLAG_RST: u8 = 0x04;
/// PSH flag.
pub const FLAG_PSH: u8 = 0x08;
/// ACK flag.
pub const FLAG_ACK: u8 = 0x10;

/// A view of a TCP segment; `new_checked` proves the full header (with options) is present.
#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view after checking the data offset against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(b[12] >> 4) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
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
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }
    /// Acknowledgement number.
    pub fn ack(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[12] >> 4) * 4
    }
    /// The flags byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[13]
    }
    /// True when SYN is set.
    pub fn syn(&self) -> bool {
        self.flags() & FLAG_SYN != 0
    }
    /// True when ACK is set.
    pub fn ack_flag(&self) -> bool {
        self.flags() & FLAG_ACK != 0
    }
    /// True when RST is set.
    pub fn rst(&self) -> bool {
        self.flags() & FLAG_RST != 0
    }
    /// Window.
    pub fn window(&self) -> u16 {
        be16(self.buf.as_ref(), 14)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }
    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        be16(self.buf.as_ref(), 18)
    }
    /// The option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }
    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
    /// True when the checksum over the whole buffer (as the segment) is correct.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::transport_checksum(src, dst, crate::ipv4::PROTO_TCP, self.buf.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 0, v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), 2, v);
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u32) {
        put32(self.buf.as_mut(), 4, v);
    }
    /// Sets the acknowledgement number.
    pub fn set_ack(&mut self, v: u32) {
        put32(self.buf.as_mut(), 8, v);
    }
    /// Sets the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buf.as_mut();
        b[12] = (((len / 4) as u8) << 4) | (b[12] & 0x0f);
    }
    /// Sets the flags byte.
    pub fn set_flags(&mut self, v: u8) {
        self.buf.as_mut()[13] = v;
    }
    /// Sets the window.
    pub fn set_window(&mut self, v: u16) {
        put16(self.buf.as_mut(), 14, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), 16, v);
    }
    /// Sets the urgent pointer.
    pub fn set_urgent(&mut self, v: u16) {
        put16(self.buf.as_mut(), 18, v);
    }
    /// The option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buf.as_mut()[MIN_HEADER_LEN..hl]
    }
    /// Computes and stores the checksum over the whole buffer as the segment.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::transport_checksum(src, dst, crate::ipv4::PROTO_TCP, self.buf.as_ref());
        self.set_checksum(c);
    }
}

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// Timestamps.
    pub const TIMESTAMP: u8 = 8;
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0).
    EndOfList,
    /// No operation (kind 1).
    Nop,
    /// Maximum segment size.
    Mss(u16),
    /// Window scale shift count.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// Timestamps: value and echo reply.
    Timestamp {
        /// TSval.
        val: u32,
        /// TSecr.
        ecr: u32,
    },
    /// Any other well-formed option.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (after kind and length).
        data: &'a [u8],
    },
}

/// An iterator over TCP options. It stops (after yielding `Err` once) at the first malformed
/// option: a length byte that is missing, below 2, past the end, or wrong for a known kind.
/// Every step consumes at least one byte, so it always ends.
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> TcpOptions<'a> {
    /// Iterates over option bytes (as returned by [`TcpPacket::options`]).
    pub fn new(options: &'a [u8]) -> Self {
        Self { rest: options, failed: false }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let (&k, after) = self.rest.split_first()?;
        match k {
            kind::EOL => {
                self.rest = after;
                return Some(Ok(TcpOption::EndOfList));
            }
            kind::NOP => {
                self.rest = after;
                return Some(Ok(TcpOption::Nop));
            }
            _ => {}
        }
        let Some(&len) = after.first() else {
            self.failed = true;
            return Some(Err(WireError::Truncated));
        };
        let len = usize::from(len);
        if len < 2 || len > self.rest.len() {
            self.failed = true;
            return Some(Err(WireError::Malformed));
        }
        let data = &self.rest[2..len];
        let opt = match (k, len) {
            (kind::MSS, 4) => TcpOption::Mss(be16(data, 0)),
            (kind::WINDOW_SCALE, 3) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::TIMESTAMP, 10) => {
                TcpOption::Timestamp { val: be32(data, 0), ecr: be32(data, 4) }
            }
            (kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::TIMESTAMP, _) => {
                self.failed = true;
                return Some(Err(WireError::Malformed));
            }
            _ => TcpOption::Unknown { kind: k, data },
        };
        self.rest = &self.rest[len..];
        Some(Ok(opt))
    }
}

/// The options ZMap reports for a reply, each `None` when absent. Parsing stops at the first
/// malformed option and keeps what was found before it; EOL is stepped over like NOP (as ZMap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptionSummary {
    /// MSS value.
    pub mss: Option<u16>,
    /// Window scale shift count (not the factor).
    pub wscale: Option<u8>,
    /// SACK permitted present.
    pub sack_perm: bool,
    /// Timestamp value and echo reply.
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptionSummary {
    /// Summarises option bytes.
    pub fn parse(options: &[u8]) -> Self {
        let mut s = Self::default();
        for o in TcpOptions::new(options) {
            match o {
                Ok(TcpOption::Mss(v)) => s.mss = Some(v),
                Ok(TcpOption::WindowScale(v)) => s.wscale = Some(v),
                Ok(TcpOption::SackPermitted) => s.sack_perm = true,
                Ok(TcpOption::Timestamp { val, ecr }) => s.timestamp = Some((val, ecr)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        s
    }
}
