//! A minimal rtnetlink client: dump requests and bounds-checked parsing of the replies.
//!
//! Hand-built rather than a netlink crate: rzmap needs four dumps (links, addresses,
//! routes, neighbours) and a few attributes of each; the messages are fixed C layouts that
//! take a page of safe parsing code, while the netlink crates bring many dependencies and
//! change their APIs often. Only the socket calls are `unsafe` (in `sock` and here).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sock;

/// `struct nlmsghdr` size.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300;

pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_GETNEIGH: u16 = 30;
pub(crate) const RTM_NEWNEIGH: u16 = 28;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// An rtnetlink socket.
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket with a 2-second receive timeout.
    pub(crate) fn open() -> io::Result<Self> {
        let fd = sock::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        sock::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends a dump request of `msg_type` with the fixed header `body`, and collects the
    /// payloads (fixed header + attributes) of all reply messages of `reply_type`.
    pub(crate) fn dump(
        &mut self,
        msg_type: u16,
        body: &[u8],
        reply_type: u16,
    ) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = NLMSG_HDRLEN + body.len();
        let mut req = Vec::with_capacity(align4(len));
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&msg_type.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        // SAFETY: `req` is a valid buffer of req.len() bytes; a null address sends to the
        // kernel (the socket's default peer).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is writable for buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDRLEN {
                let mlen = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let mtype = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                if mlen < NLMSG_HDRLEN || mlen > rest.len() {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                let payload = &rest[NLMSG_HDRLEN..mlen];
                rest = rest.get(align4(mlen)..).unwrap_or(&[]);
                if mseq != seq {
                    continue;
                }
                match mtype {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EIO);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(out);
                    }
                    t if t == reply_type => out.push(payload.to_vec()),
                    _ => {}
                }
            }
        }
    }
}

/// Iterates over the `rtattr`s in `data` as (type, value) pairs, stopping at the first
/// malformed one.
pub(crate) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = data.get(align4(len)..).unwrap_or(&[]);
        Some((ty, value))
    })
}

/// Reads a native-endian u32 attribute value.
pub(crate) fn attr_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// Reads an IPv4 address attribute value.
pub(crate) fn attr_ipv4(v: &[u8]) -> Option<std::net::Ipv4Addr> {
    let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
    Some(b.into())
}

/// Reads a MAC address attribute value.
pub(crate) fn attr_mac(v: &[u8]) -> Option<[u8; 6]> {
    if v.len() != 6 {
        return None;
    }
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        a.resize(align4(a.len()), 0);
        a
    }

    #[test]
    fn attributes_parse_and_stop_at_garbage() {
        let mut d = attr(5, &[198, 18, 0, 2]);
        d.extend(attr(4, &7u32.to_ne_bytes()));
        d.extend(attr(2, &[1, 2, 3, 4, 5, 6]));
        d.extend([0xff, 0x00, 0x01]); // truncated trailer
        let v: Vec<_> = attrs(&d).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(attr_ipv4(v[0].1), Some([198, 18, 0, 2].into()));
        assert_eq!(attr_u32(v[1].1), Some(7));
        assert_eq!(attr_mac(v[2].1), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(attrs(&[8, 0, 1, 0, 1, 2]).count(), 0, "length beyond data");
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0, "length below header");
        assert_eq!(attr_mac(&[1, 2, 3]), None);
    }
}
