//! Sending frame batches through a `PACKET_TX_RING` (TPACKET_V2), the alternative to
//! `sendmmsg` in [`crate::send`].
//!
//! [`TxRingSender`] copies each frame into the next free slot of a ring shared with the kernel,
//! marks it `TP_STATUS_SEND_REQUEST`, and kicks the kernel once per batch with a non-blocking
//! `sendto` (no per-frame `msghdr`, no per-frame copy from a user buffer by the syscall). When
//! the writer catches up with slots the kernel has not released yet it waits for them (`poll`
//! for `POLLOUT`). Frames the kernel refuses (`TP_STATUS_WRONG_FORMAT`, e.g. longer than the
//! MTU) are counted as failed and removed from the ring so the frames behind them still go;
//! frames it could not queue (`ENOBUFS`, link down) are retried like a failed `sendmmsg`
//! and, once the attempts are used up, withdrawn and counted as failed.
//!
//! The API has the shape of [`crate::send::AfPacketSender`]: `send_from(frames) -> SendOutcome`.

use crate::mapping::Mapping;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::send::{DEFAULT_RETRIES, SendOutcome};
use crate::sock;

/// Bytes per ring slot (a TPACKET_V2 header plus a 1500-byte-MTU Ethernet frame fit).
pub const SLOT_SIZE: usize = 2048;
/// Offset of the frame data in a slot: the aligned `tpacket2_hdr` (32 bytes); the kernel
/// reads TX data at `TPACKET2_HDRLEN - sizeof(sockaddr_ll)`.
const DATA_OFFSET: usize = 32;
/// Largest frame a slot holds.
pub const MAX_FRAME_LEN: usize = SLOT_SIZE - DATA_OFFSET;
/// Smallest frame the kernel takes on an Ethernet device (the header).
const MIN_FRAME_LEN: usize = 14;
/// Offset of `tp_len` in `tpacket2_hdr` (after `tp_status`).
const HDR_LEN: usize = 4;
/// Ring blocks are this large (a multiple of the page size and of [`SLOT_SIZE`]).
const BLOCK_SIZE: usize = 1 << 16;
/// Longest wait for a slot the kernel still holds before a frame counts as failed.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Geometry and options of a [`TxRingSender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRingConfig {
    /// Number of frame slots (rounded up to whole 64 KiB blocks of 32 slots).
    pub slots: usize,
    /// `PACKET_QDISC_BYPASS`: frames skip the interface's queueing discipline.
    pub qdisc_bypass: bool,
}

impl Default for TxRingConfig {
    fn default() -> Self {
        TxRingConfig { slots: 4096, qdisc_bypass: false }
    }
}

/// Sends Ethernet frames through a TPACKET_V2 transmit ring on one interface.
pub struct TxRingSender {
    // Field order is drop order: the ring is unmapped before the socket closes.
    map: Mapping,
    fd: OwnedFd,
    addr: Box<libc::sockaddr_ll>,
    slots: usize,
    /// Next slot to write (equals the kernel's send head when nothing is pending).
    tail: usize,
    /// Slots written and marked SEND_REQUEST but not yet taken by the kernel.
    pending: usize,
    retries: u32,
}

// SAFETY: the mapping is owned exclusively by this value (no other Rust reference into it
// exists outside `&mut self` calls), so moving the sender moves sole access with it.
unsafe impl Send for TxRingSender {}

impl TxRingSender {
    /// Opens a send-only packet socket with a transmit ring on interface `ifindex`; frames are
    /// addressed to `dst_mac` (the frames carry their own Ethernet header too).
    /// Requires `CAP_NET_RAW`.
    pub fn open(ifindex: u32, dst_mac: [u8; 6], config: &TxRingConfig) -> io::Result<Self> {
        let fd = sock::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        let v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v2)?;
        if config.qdisc_bypass {
            sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &1i32)?;
        }
        // Room for a full ring of in-flight skbs (the kernel caps this at wmem_max).
        let sndbuf = libc::c_int::try_from(config.slots.saturating_mul(1024)).unwrap_or(i32::MAX);
        sock::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf)?;
        let per_block = BLOCK_SIZE / SLOT_SIZE;
        let blocks = config.slots.max(1).div_ceil(per_block);
        let slots = blocks * per_block;
        let req = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: u32::try_from(blocks).map_err(|_| io::Error::other("ring too large"))?,
            tp_frame_size: SLOT_SIZE as u32,
            tp_frame_nr: u32::try_from(slots).map_err(|_| io::Error::other("ring too large"))?,
        };
        sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)?;
        let map = Mapping::ring(&fd, blocks * BLOCK_SIZE, 0, false)?;
        let sender = TxRingSender {
            map,
            fd,
            addr: Box::new(sock::sockaddr_ll(ifindex, libc::ETH_P_IP as u16, Some(dst_mac))),
            slots,
            tail: 0,
            pending: 0,
            retries: DEFAULT_RETRIES,
        };
        // Protocol 0: the socket never queues received packets.
        sock::bind_packet(&sender.fd, ifindex, 0)?;
        Ok(sender)
    }

    /// Sets how many extra kicks a batch gets after kicks that made no progress.
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// Number of slots in the ring.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Sends `frames` (any slices, e.g. in tests).
    pub fn send_frames(&mut self, frames: &[&[u8]]) -> SendOutcome {
        self.send_from(frames.iter().copied())
    }

    /// Sends frames in order, e.g. `send_from(batch.frames())` for the engine's
    /// `rzmap_core::link::FrameBatch`. Every frame is either sent or counted as failed
    /// before this returns (nothing stays queued in the ring).
    pub fn send_from<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) -> SendOutcome {
        let mut out = SendOutcome::default();
        for f in frames {
            if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&f.len()) {
                out.failed += 1;
                out.last_errno =
                    Some(if f.len() < MIN_FRAME_LEN { libc::EINVAL } else { libc::EMSGSIZE });
                continue;
            }
            if self.status(self.tail) != libc::TP_STATUS_AVAILABLE {
                // The ring is full: hand over what is written, then wait for the slot.
                self.flush(&mut out);
                if !self.wait_available(self.tail) {
                    out.failed += 1;
                    out.last_errno = Some(libc::ETIMEDOUT);
                    continue;
                }
            }
            self.write_slot(self.tail, f);
            self.tail = (self.tail + 1) % self.slots;
            self.pending += 1;
        }
        self.flush(&mut out);
        out
    }

    /// The status word of slot `i`, shared with the kernel (only touched atomically).
    fn status_word(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.slots);
        // SAFETY: slot `i` starts inside the mapping at a 2048-aligned offset, so its first 4
        // bytes are in bounds and aligned; the kernel reads and writes this word concurrently,
        // which is why it is only ever accessed through an atomic.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(i * SLOT_SIZE).cast()) }
    }

    fn status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    /// The header-length word and data area of slot `i`, which user space owns.
    fn slot_mut(&mut self, i: usize) -> (&mut [u8; 4], &mut [u8]) {
        debug_assert!(i < self.slots);
        // SAFETY: bytes `i*SLOT_SIZE + 4 .. (i+1)*SLOT_SIZE` lie inside the mapping. The caller
        // only asks for a slot whose status it has read as AVAILABLE (or that it marked
        // SEND_REQUEST itself and the kernel refused or has not taken yet, with no send call
        // running), so the kernel does not touch these bytes while the borrow of `&mut self`
        // lasts; the status word (bytes 0..4) is excluded and stays atomic-only.
        unsafe {
            let base = self.map.as_ptr().add(i * SLOT_SIZE);
            let len = &mut *base.add(HDR_LEN).cast::<[u8; 4]>();
            let data = std::slice::from_raw_parts_mut(base.add(DATA_OFFSET), MAX_FRAME_LEN);
            (len, data)
        }
    }

    /// Copies `f` into slot `i` and hands the slot to the kernel's send queue.
    fn write_slot(&mut self, i: usize, f: &[u8]) {
        let (len, data) = self.slot_mut(i);
        data[..f.len()].copy_from_slice(f);
        *len = (f.len() as u32).to_ne_bytes();
        // Release: the frame bytes and length are visible before the kernel sees the request.
        self.status_word(i).store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
    }

    /// Moves a pending frame from slot `from` to slot `to` (both owned by user space).
    fn move_slot(&mut self, from: usize, to: usize) {
        let (len, data) = self.slot_mut(from);
        let n = (u32::from_ne_bytes(*len) as usize).min(MAX_FRAME_LEN);
        let mut tmp = [0u8; MAX_FRAME_LEN];
        tmp[..n].copy_from_slice(&data[..n]);
        self.write_slot(to, &tmp[..n]);
    }

    /// Waits until slot `i` is AVAILABLE again (the kernel has released its frame).
    fn wait_available(&self, i: usize) -> bool {
        let deadline = Instant::now() + SLOT_WAIT;
        loop {
            if self.status(i) == libc::TP_STATUS_AVAILABLE {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            // SAFETY: `p` is one valid pollfd and we pass a count of 1.
            unsafe { libc::poll(&mut p, 1, 1) };
        }
    }

    /// One non-blocking kick: the kernel sends every SEND_REQUEST slot from its head on.
    fn kick(&self) -> Result<(), i32> {
        let addr: *const libc::sockaddr_ll = &*self.addr;
        // SAFETY: no data buffer is passed (the kernel reads the ring); `addr` points to a
        // valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                addr.cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
        } else {
            Ok(())
        }
    }

    /// Kicks until every pending slot is sent, refused (counted, removed) or, after the
    /// attempts are used up, withdrawn (counted).
    fn flush(&mut self, out: &mut SendOutcome) {
        let mut failures = 0u32;
        while self.pending > 0 {
            let result = self.kick();
            if let Err(e) = result {
                out.last_errno = Some(e);
            }
            // The kernel takes slots in order: sent ones form a prefix of the pending run.
            let mut first = (self.tail + self.slots - self.pending) % self.slots;
            let mut progress = false;
            while self.pending > 0 {
                let s = self.status(first);
                if s == libc::TP_STATUS_SEND_REQUEST || s == libc::TP_STATUS_WRONG_FORMAT {
                    break;
                }
                out.sent += 1;
                self.pending -= 1;
                first = (first + 1) % self.slots;
                progress = true;
            }
            if self.pending == 0 {
                break;
            }
            if self.status(first) == libc::TP_STATUS_WRONG_FORMAT {
                // Refused frame: the kernel's head stays on it, so close the gap by moving the
                // frames behind it one slot back.
                out.failed += 1;
                self.remove_pending(first);
                continue;
            }
            if progress || result == Err(libc::EINTR) {
                continue;
            }
            if result == Err(libc::EAGAIN) {
                // Send buffer full of frames in flight: give the device a moment.
                let mut p =
                    libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                // SAFETY: `p` is one valid pollfd and we pass a count of 1.
                unsafe { libc::poll(&mut p, 1, 1) };
            }
            failures += 1;
            if failures > self.retries {
                // Withdraw the rest; the kernel's head is on `first`, where we write next.
                for k in 0..self.pending {
                    let i = (first + k) % self.slots;
                    self.status_word(i).store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
                }
                out.failed += self.pending;
                self.pending = 0;
                self.tail = first;
            }
        }
    }

    /// Removes pending slot `gap` (refused by the kernel), shifting the pending slots after it
    /// one place back and releasing the last one.
    fn remove_pending(&mut self, gap: usize) {
        let mut to = gap;
        let mut from = (gap + 1) % self.slots;
        while from != self.tail {
            self.move_slot(from, to);
            to = from;
            from = (from + 1) % self.slots;
        }
        self.status_word(to).store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
        self.tail = to;
        self.pending -= 1;
    }
}

impl AsFd for TxRingSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_constants_fit() {
        assert_eq!(BLOCK_SIZE % SLOT_SIZE, 0);
        assert_eq!(BLOCK_SIZE % 4096, 0);
        // TPACKET_ALIGN(sizeof(tpacket2_hdr)) is the data offset for TX.
        assert_eq!(size_of::<libc::tpacket2_hdr>().div_ceil(16) * 16, DATA_OFFSET);
        const { assert!(MAX_FRAME_LEN >= 1514) };
    }
}
