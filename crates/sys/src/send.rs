//! Sending frame batches with `sendmmsg`.
//!
//! [`AfPacketSender`] sends whole Ethernet frames on an AF_PACKET socket bound to one
//! interface (the default path). [`RawIpSender`] sends only the IPv4 part of each frame
//! (skipping the 14-byte Ethernet header) on an `IPPROTO_RAW` socket bound to a device
//! (`-X/--iplayer`). Both reuse their `mmsghdr`/`iovec` arrays, so a send allocates nothing
//! once the arrays have grown to the batch size.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sock;

/// Default number of extra attempts after a failed `sendmmsg` (ZMap's `--retries`).
pub const DEFAULT_RETRIES: u32 = 10;

/// Length of the Ethernet header [`RawIpSender`] skips.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// `sendmmsg` never takes more than this many messages per call (UIO_MAXIOV).
const MAX_MSGS_PER_CALL: usize = 1024;

/// What happened to one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Frames the kernel accepted.
    pub sent: usize,
    /// Frames given up on (after all attempts, or malformed for the socket type).
    pub failed: usize,
    /// The last `errno` seen, if any call failed.
    pub last_errno: Option<i32>,
}

impl SendOutcome {
    /// The last error as an `io::Error`.
    pub fn last_error(&self) -> Option<io::Error> {
        self.last_errno.map(io::Error::from_raw_os_error)
    }
}

/// Reusable `sendmmsg` argument arrays.
///
/// Holds raw pointers into the frames and names of the current call only; they are rewritten
/// before every call and never read by Rust code.
struct MsgVec {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `hdrs`/`iovs` are scratch values written and consumed within a
// single `&mut self` send call; nothing dereferences them between calls, so moving the
// arrays to another thread cannot create shared access.
unsafe impl Send for MsgVec {}

impl MsgVec {
    fn new() -> Self {
        MsgVec { hdrs: Vec::new(), iovs: Vec::new() }
    }

    /// Makes room for `n` messages (allocates only when growing).
    fn reserve(&mut self, n: usize) {
        if self.hdrs.len() < n {
            // SAFETY: mmsghdr and iovec are C structs of integers and pointers; all-zero
            // (null pointers, zero lengths) is a valid value for both.
            self.hdrs.resize_with(n, || unsafe { std::mem::zeroed() });
            self.iovs.resize_with(n, || unsafe { std::mem::zeroed() });
        }
    }

    /// Points message `i`'s buffer at `data`.
    fn set_data(&mut self, i: usize, data: &[u8]) {
        self.iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    }

    /// Links headers `0..n` to their iovecs and to destination `names` (`namelen` bytes each,
    /// `stride` bytes apart; stride 0 = one shared name). Done after every `set_data` and
    /// name write, so the pointers taken here stay valid until the send.
    fn link(&mut self, n: usize, names: *const libc::c_void, stride: usize, namelen: u32) {
        let iovs = self.iovs.as_mut_ptr();
        for (i, m) in self.hdrs[..n].iter_mut().enumerate() {
            let h = &mut m.msg_hdr;
            h.msg_name = names.wrapping_byte_add(i * stride) as *mut _;
            h.msg_namelen = namelen;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            m.msg_len = 0;
        }
    }

    /// Sends messages `0..n`, resending the unsent tail after a partial send. A call that
    /// fails (or sends nothing) uses up one of `retries + 1` attempts, and once they are used
    /// up the rest of the batch counts as failed (as in ZMap); progress costs no attempt. A
    /// message the kernel rejects for itself (`EMSGSIZE`, `EINVAL`) is skipped at once and
    /// counted as failed, so it cannot take the frames behind it down with it.
    ///
    /// The caller must have set and linked messages `0..n` from data and names that are
    /// still borrowed.
    fn send(&mut self, fd: BorrowedFd<'_>, n: usize, retries: u32) -> SendOutcome {
        let mut out = SendOutcome::default();
        let (mut pos, mut failures) = (0usize, 0u32);
        while pos < n && failures <= retries {
            let chunk = (n - pos).min(MAX_MSGS_PER_CALL);
            // SAFETY: messages `pos..pos+chunk` were set by `set_data`/`link` from slices and
            // names that the caller keeps borrowed for this call, and `pos + chunk <= n <= hdrs.len()`.
            // The kernel only reads them (and writes `msg_len`).
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(pos),
                    chunk as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                pos += rc as usize;
                out.sent += rc as usize;
                continue;
            }
            if rc < 0 {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                out.last_errno = Some(errno);
                match errno {
                    libc::EINTR => continue,
                    libc::EMSGSIZE | libc::EINVAL => {
                        pos += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            failures += 1;
        }
        out.failed = n - out.sent;
        out
    }
}

/// Sends Ethernet frames on an AF_PACKET `SOCK_RAW` socket bound to one interface.
pub struct AfPacketSender {
    fd: OwnedFd,
    addr: Box<libc::sockaddr_ll>,
    msgs: MsgVec,
    retries: u32,
}

impl AfPacketSender {
    /// Opens a send-only packet socket on interface `ifindex`; frames are addressed to
    /// `dst_mac` (normally the gateway's; the frames carry their own Ethernet header too).
    ///
    /// The socket is created with protocol 0, so it never queues received packets.
    /// Requires `CAP_NET_RAW`.
    pub fn open(ifindex: u32, dst_mac: [u8; 6]) -> io::Result<Self> {
        let fd = sock::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        sock::bind_packet(&fd, ifindex, 0)?;
        let addr = Box::new(sock::sockaddr_ll(ifindex, libc::ETH_P_IP as u16, Some(dst_mac)));
        Ok(AfPacketSender { fd, addr, msgs: MsgVec::new(), retries: DEFAULT_RETRIES })
    }

    /// Sets how many extra attempts a batch gets after failed calls.
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// Turns `PACKET_QDISC_BYPASS` on or off (frames skip the interface's queueing
    /// discipline; faster, but drops instead of queueing when the device is busy).
    pub fn set_qdisc_bypass(&self, on: bool) -> io::Result<()> {
        sock::setsockopt(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &libc::c_int::from(on),
        )
    }

    /// Sends `frames` (any slices, e.g. in tests).
    pub fn send_frames(&mut self, frames: &[&[u8]]) -> SendOutcome {
        self.send_iter(frames.len(), frames.iter().copied())
    }

    /// Sends frames in order, e.g. `send_from(batch.frames())` for the engine's
    /// `rzmap_core::link::FrameBatch`.
    pub fn send_from<'a>(
        &mut self,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> SendOutcome {
        self.send_iter(frames.len(), frames)
    }

    fn send_iter<'a>(&mut self, n: usize, frames: impl Iterator<Item = &'a [u8]>) -> SendOutcome {
        self.msgs.reserve(n);
        // Count what the iterator really yields (a wrong `len()` must not leave stale
        // pointers from an earlier batch in the messages sent).
        let mut k = 0;
        for f in frames.take(n) {
            self.msgs.set_data(k, f);
            k += 1;
        }
        let name: *const libc::sockaddr_ll = &*self.addr;
        self.msgs.link(k, name.cast(), 0, size_of::<libc::sockaddr_ll>() as u32);
        self.msgs.send(self.fd.as_fd(), k, self.retries)
    }
}

impl AsFd for AfPacketSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends the IPv4 part of frames on an `IPPROTO_RAW` socket bound to one device (`-X`).
///
/// The kernel fills in the IP checksum and total length (and the IP ID and source address
/// when zero) and routes by the destination address read from each IPv4 header.
pub struct RawIpSender {
    fd: OwnedFd,
    skip: usize,
    names: Vec<libc::sockaddr_in>,
    msgs: MsgVec,
    retries: u32,
}

impl RawIpSender {
    /// Opens a raw IP socket bound to interface `ifname` (`SO_BINDTODEVICE`).
    /// Requires `CAP_NET_RAW`.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let fd = sock::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
        sock::setsockopt_bytes(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, ifname.as_bytes())?;
        Ok(RawIpSender {
            fd,
            skip: ETHERNET_HEADER_LEN,
            names: Vec::new(),
            msgs: MsgVec::new(),
            retries: DEFAULT_RETRIES,
        })
    }

    /// Sets the socket's firewall mark (`SO_MARK`, needs `CAP_NET_ADMIN`): every packet it
    /// sends carries `mark`, so an nftables rule can exempt them (rzmap's RST guard).
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        sock::setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_MARK, &mark)
    }

    /// Sets how many leading bytes of each frame to skip: 14 (the default, frames built
    /// with an Ethernet header as ZMap does) or 0 (frames that are bare IPv4 packets).
    pub fn set_header_skip(&mut self, bytes: usize) {
        self.skip = bytes;
    }

    /// Sets how many extra attempts a batch gets after failed calls.
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// Sends the IP part (bytes 14.., see [`RawIpSender::set_header_skip`]) of each of `frames`.
    pub fn send_frames(&mut self, frames: &[&[u8]]) -> SendOutcome {
        self.send_iter(frames.len(), frames.iter().copied())
    }

    /// Sends the IP part (bytes 14.., see [`RawIpSender::set_header_skip`]) of frames in order,
    /// e.g. `send_from(batch.frames())` for the engine's `rzmap_core::link::FrameBatch`.
    pub fn send_from<'a>(
        &mut self,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> SendOutcome {
        self.send_iter(frames.len(), frames)
    }

    fn send_iter<'a>(&mut self, n: usize, frames: impl Iterator<Item = &'a [u8]>) -> SendOutcome {
        self.msgs.reserve(n);
        if self.names.len() < n {
            // SAFETY: sockaddr_in is a C struct of integers; all-zero is valid.
            self.names.resize_with(n, || unsafe { std::mem::zeroed() });
        }
        let mut malformed = 0;
        let mut k = 0;
        for f in frames.take(n) {
            let Some(ip) = f.get(self.skip..).filter(|ip| ip.len() >= 20 && ip[0] >> 4 == 4) else {
                malformed += 1;
                continue;
            };
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let name = &mut self.names[k];
            name.sin_family = libc::AF_INET as libc::sa_family_t;
            name.sin_port = 0;
            name.sin_addr = libc::in_addr { s_addr: u32::from(dst).to_be() };
            self.msgs.set_data(k, ip);
            k += 1;
        }
        let names = self.names.as_ptr();
        let len = size_of::<libc::sockaddr_in>();
        self.msgs.link(k, names.cast(), len, len as u32);
        let mut out = self.msgs.send(self.fd.as_fd(), k, self.retries);
        out.failed += malformed;
        out
    }
}

impl AsFd for RawIpSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
