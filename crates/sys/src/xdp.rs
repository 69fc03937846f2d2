//! Sending frame batches through an AF_XDP socket in copy mode, the third alternative to
//! `sendmmsg` in [`crate::send`] (after [`crate::tx_ring`]).
//!
//! [`XdpSender`] owns a UMEM (an anonymous mapping cut into 2 KiB chunks) and the socket's
//! transmit and completion rings. A frame is copied into a free chunk and described in the
//! transmit ring; once a batch is described, the producer index is published and the kernel is
//! kicked with an empty `sendto`. In copy mode the kernel builds one skb per descriptor and
//! hands it to the driver directly (no queueing discipline), at most a budget of descriptors
//! per kick (32 unless `XDP_MAX_TX_SKB_BUDGET` raises it), so a batch takes several kicks.
//! Chunks come back through the completion ring when the skb is freed.
//!
//! The socket is bound with `XDP_COPY`: veth, the lab's link, has no zero-copy AF_XDP, and in
//! copy mode the kernel reads the transmit ring only inside this socket's own `sendto`/`poll`
//! calls. That is what lets a batch that cannot be sent (link down) be withdrawn: its
//! descriptors are rewritten to point outside the UMEM, so the next kick skips them as invalid
//! (counted in `tx_invalid_descs`) instead of sending them late. Zero-copy drivers read the ring
//! asynchronously and would need a different withdrawal scheme.
//!
//! The API has the shape of [`crate::send::AfPacketSender`]: `send_from(frames) -> SendOutcome`,
//! and every frame is either sent or counted as failed before it returns.

use crate::mapping::Mapping;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::send::{DEFAULT_RETRIES, SendOutcome};
use crate::sock;

/// Bytes per UMEM chunk (the smallest chunk size the kernel accepts; one frame per chunk).
pub const CHUNK_SIZE: usize = 2048;
/// Largest frame a chunk holds.
pub const MAX_FRAME_LEN: usize = CHUNK_SIZE;
/// Smallest frame the kernel takes on an Ethernet device (the header).
const MIN_FRAME_LEN: usize = 14;
/// Size of one transmit descriptor (`struct xdp_desc`).
const DESC_SIZE: usize = size_of::<libc::xdp_desc>();
/// Longest wait for a free chunk before a frame counts as failed.
const CHUNK_WAIT: Duration = Duration::from_secs(1);
/// How long `open` retries a queue another (just closed) socket still holds.
const BIND_WAIT: Duration = Duration::from_secs(1);
/// `setsockopt(SOL_XDP, ..)` raising the per-kick skb budget (Linux 6.17+; older kernels
/// refuse it and keep 32).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Geometry of an [`XdpSender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// UMEM chunks, i.e. frames in flight (a power of two).
    pub chunks: usize,
    /// Transmit ring entries (a power of two, at most `chunks`).
    pub tx_entries: usize,
    /// Interface queue to bind to.
    pub queue: u32,
}

impl Default for XdpConfig {
    fn default() -> Self {
        // 4 MiB of UMEM: inside the default 8 MiB RLIMIT_MEMLOCK even without CAP_IPC_LOCK.
        XdpConfig { chunks: 2048, tx_entries: 1024, queue: 0 }
    }
}

impl XdpConfig {
    /// Refuses a geometry the kernel would not take (checked before any socket is opened).
    pub fn check(&self) -> io::Result<()> {
        let (chunks, entries) = (self.chunks, self.tx_entries);
        if !chunks.is_power_of_two() || !entries.is_power_of_two() || entries > chunks {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AF_XDP chunks and ring entries must be powers of two, entries <= chunks",
            ));
        }
        Ok(())
    }
}

/// One mapped AF_XDP ring: producer and consumer words shared with the kernel, then entries.
struct Ring {
    map: Mapping,
    producer: usize,
    consumer: usize,
    desc: usize,
    mask: u32,
}

impl Ring {
    /// Maps the ring of `entries` entries of `entry_size` bytes at page offset `pgoff`.
    fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        entries: usize,
        entry_size: usize,
        pgoff: libc::off_t,
    ) -> io::Result<Ring> {
        let offset = |v: u64| usize::try_from(v).map_err(|_| io::Error::other("ring offset"));
        let desc = offset(off.desc)?;
        let map = Mapping::ring(fd, desc + entries * entry_size, pgoff, true)?;
        Ok(Ring {
            map,
            producer: offset(off.producer)?,
            consumer: offset(off.consumer)?,
            desc,
            mask: (entries - 1) as u32,
        })
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is the producer or consumer offset the kernel reported, inside the
        // mapping and 4-byte aligned; the kernel updates these words concurrently, so they are
        // only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(at).cast()) }
    }

    fn producer(&self) -> &AtomicU32 {
        self.word(self.producer)
    }

    fn consumer(&self) -> &AtomicU32 {
        self.word(self.consumer)
    }

    /// Pointer to entry `index` (taken modulo the ring size) of `size` bytes.
    fn entry(&self, index: u32, size: usize) -> *mut u8 {
        let i = (index & self.mask) as usize;
        // SAFETY: `i` is below the entry count, so the entry lies inside the mapping.
        unsafe { self.map.as_ptr().add(self.desc + i * size) }
    }
}

/// Sends Ethernet frames through an AF_XDP socket (copy mode) on one interface queue.
pub struct XdpSender {
    // Field order is drop order: the rings and the UMEM are unmapped before the socket closes.
    tx: Ring,
    completion: Ring,
    _fill: Ring,
    umem: Mapping,
    fd: OwnedFd,
    /// Free UMEM chunk addresses (a stack; capacity = every chunk, so pushes never allocate).
    free: Vec<u64>,
    /// The UMEM chunk each transmit entry points to, and whether the entry was withdrawn.
    entry_chunk: Vec<u64>,
    withdrawn: Vec<bool>,
    /// Our transmit producer index and the kernel's consumer index as last seen.
    tx_producer: u32,
    tx_seen: u32,
    /// Entries described and published but not yet consumed by the kernel, nor withdrawn.
    pending: usize,
    /// Longest frame sent: the interface MTU plus the Ethernet header, at most a chunk.
    max_frame: usize,
    retries: u32,
    budget: Option<u32>,
}

// SAFETY: the mappings are owned exclusively by this value (no Rust reference into them exists
// outside `&mut self` calls), so moving the sender moves sole access with it.
unsafe impl Send for XdpSender {}

impl XdpSender {
    /// Opens an AF_XDP socket bound in copy mode to `config.queue` of interface `ifindex`.
    /// Frames carry their own Ethernet header. Requires `CAP_NET_RAW`.
    pub fn open(ifindex: u32, config: &XdpConfig) -> io::Result<Self> {
        config.check()?;
        let (chunks, entries) = (config.chunks, config.tx_entries);
        // In copy mode nothing checks the length against the MTU before the driver (veth
        // would drop the frame silently), so frames over it are refused here, as the
        // AF_PACKET paths refuse them.
        let link = crate::discovery::link_by_index(ifindex)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // A socket bound to a queue the device has for receive only would accept descriptors
        // and send nothing.
        if link.tx_queues.is_some_and(|n| config.queue >= n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {} transmit queue(s), no queue {}",
                    link.name,
                    link.tx_queues.unwrap_or(0),
                    config.queue
                ),
            ));
        }
        let mtu = link.mtu;
        let max_frame = mtu.map_or(MAX_FRAME_LEN, |m| (m as usize + 14).min(MAX_FRAME_LEN));
        let fd = sock::socket(libc::AF_XDP, libc::SOCK_RAW, 0)?;
        let umem = Mapping::anonymous(chunks * CHUNK_SIZE)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: CHUNK_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        sock::setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)?;
        // The fill ring only feeds receive, which this socket never does; the kernel still
        // wants one before it binds. The completion ring holds every chunk at once.
        let fill_entries = 64usize;
        sock::setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &(fill_entries as u32))?;
        sock::setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &(chunks as u32))?;
        sock::setsockopt(&fd, libc::SOL_XDP, libc::XDP_TX_RING, &(entries as u32))?;
        let sndbuf = libc::c_int::try_from(chunks.saturating_mul(1024)).unwrap_or(i32::MAX);
        sock::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf)?;
        let budget = sock::setsockopt(&fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &(entries as u32))
            .ok()
            .map(|()| entries as u32);
        let off = mmap_offsets(&fd)?;
        let fill = Ring::map(&fd, &off.fr, fill_entries, 8, libc::XDP_UMEM_PGOFF_FILL_RING as _)?;
        let completion =
            Ring::map(&fd, &off.cr, chunks, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING as _)?;
        let tx = Ring::map(&fd, &off.tx, entries, DESC_SIZE, libc::XDP_PGOFF_TX_RING)?;
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: config.queue,
            sxdp_shared_umem_fd: 0,
        };
        // The kernel releases a closed socket's hold on the queue a few milliseconds after
        // the close, so a scan started right after another one retries a busy queue briefly.
        let deadline = Instant::now() + BIND_WAIT;
        loop {
            // SAFETY: `addr` is a valid sockaddr_xdp of the length given.
            let bound = sock::cvt(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            });
            match bound {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.map(drop)?,
            };
        }
        let tx_producer = tx.producer().load(Ordering::Relaxed);
        Ok(XdpSender {
            tx,
            completion,
            _fill: fill,
            umem,
            fd,
            free: (0..chunks as u64).rev().map(|c| c * CHUNK_SIZE as u64).collect(),
            entry_chunk: vec![0; entries],
            withdrawn: vec![false; entries],
            tx_producer,
            tx_seen: tx_producer,
            pending: 0,
            max_frame,
            retries: DEFAULT_RETRIES,
            budget,
        })
    }

    /// Sets how many extra kicks a batch gets after kicks that made no progress.
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// The per-kick descriptor budget set with `XDP_MAX_TX_SKB_BUDGET`, or `None` where the
    /// kernel keeps its default of 32.
    pub fn kick_budget(&self) -> Option<u32> {
        self.budget
    }

    /// Descriptors the kernel skipped as invalid so far (`XDP_STATISTICS.tx_invalid_descs`):
    /// exactly the withdrawn frames it has passed over.
    pub fn invalid_descriptors(&self) -> io::Result<u64> {
        let zero = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let stats = sock::getsockopt_into(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS, zero)?;
        Ok(stats.tx_invalid_descs)
    }

    /// Sends `frames` (any slices, e.g. in tests).
    pub fn send_frames(&mut self, frames: &[&[u8]]) -> SendOutcome {
        self.send_from(frames.iter().copied())
    }

    /// Sends frames in order, e.g. `send_from(batch.frames())` for the engine's
    /// `rzmap_core::link::FrameBatch`. Every frame is either sent or counted as failed
    /// before this returns.
    pub fn send_from<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) -> SendOutcome {
        let mut out = SendOutcome::default();
        for f in frames {
            if !(MIN_FRAME_LEN..=self.max_frame).contains(&f.len()) {
                out.failed += 1;
                out.last_errno =
                    Some(if f.len() < MIN_FRAME_LEN { libc::EINVAL } else { libc::EMSGSIZE });
                continue;
            }
            if self.tx_ring_full() || self.free.is_empty() {
                self.flush(&mut out);
                if !self.wait_for_room(&mut out) {
                    out.failed += 1;
                    out.last_errno = Some(libc::ETIMEDOUT);
                    continue;
                }
            }
            self.describe(f);
        }
        self.flush(&mut out);
        out
    }

    /// Whether every transmit entry is described and not yet consumed by the kernel.
    fn tx_ring_full(&self) -> bool {
        self.tx_producer.wrapping_sub(self.tx_seen) > self.tx.mask
    }

    /// Copies `f` into a free chunk and writes its descriptor at our producer index.
    fn describe(&mut self, f: &[u8]) {
        let chunk = self.free.pop().expect("caller made sure a chunk is free");
        // SAFETY: `chunk` is a free chunk's offset (below the UMEM length, CHUNK_SIZE apart) and
        // `f.len() <= CHUNK_SIZE`; the kernel does not touch a chunk until we describe it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                f.as_ptr(),
                self.umem.as_ptr().add(chunk as usize),
                f.len(),
            );
        }
        let desc = libc::xdp_desc { addr: chunk, len: f.len() as u32, options: 0 };
        let i = (self.tx_producer & self.tx.mask) as usize;
        // SAFETY: entry `tx_producer` lies in the mapped ring and is free (producer - seen
        // consumer < entries); the kernel reads it only after the producer store in `flush`.
        unsafe { self.tx.entry(self.tx_producer, DESC_SIZE).cast::<libc::xdp_desc>().write(desc) };
        self.entry_chunk[i] = chunk;
        self.withdrawn[i] = false;
        self.tx_producer = self.tx_producer.wrapping_add(1);
        self.pending += 1;
    }

    /// Takes back the chunks of completed frames.
    fn reap_completions(&mut self) {
        let producer = self.completion.producer().load(Ordering::Acquire);
        let mut consumer = self.completion.consumer().load(Ordering::Relaxed);
        while consumer != producer {
            // SAFETY: entries between the consumer and the producer are written by the kernel
            // and ours to read until we advance the consumer.
            let addr = unsafe { self.completion.entry(consumer, 8).cast::<u64>().read() };
            if (addr as usize) < self.umem.len() && self.free.len() < self.free.capacity() {
                self.free.push(addr - addr % CHUNK_SIZE as u64);
            }
            consumer = consumer.wrapping_add(1);
        }
        self.completion.consumer().store(consumer, Ordering::Release);
    }

    /// Accounts for the transmit entries the kernel consumed since we last looked; returns
    /// how many it consumed and how many of those were sent (withdrawn ones give their chunk
    /// back and count as nothing; the kernel skips one of them per kick).
    fn advance_consumer(&mut self) -> (usize, usize) {
        let consumer = self.tx.consumer().load(Ordering::Acquire);
        let consumed = consumer.wrapping_sub(self.tx_seen) as usize;
        let mut sent = 0;
        while self.tx_seen != consumer {
            let i = (self.tx_seen & self.tx.mask) as usize;
            if self.withdrawn[i] {
                self.withdrawn[i] = false;
                self.free.push(self.entry_chunk[i]);
            } else {
                sent += 1;
                self.pending -= 1;
            }
            self.tx_seen = self.tx_seen.wrapping_add(1);
        }
        (consumed, sent)
    }

    /// Waits until a chunk is free and the transmit ring has an entry free.
    fn wait_for_room(&mut self, out: &mut SendOutcome) -> bool {
        let deadline = Instant::now() + CHUNK_WAIT;
        loop {
            self.reap_completions();
            let _ = self.kick();
            out.sent += self.advance_consumer().1;
            if !self.free.is_empty() && !self.tx_ring_full() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.poll_out();
        }
    }

    fn poll_out(&self) {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
        // SAFETY: `p` is one valid pollfd and we pass a count of 1.
        unsafe { libc::poll(&mut p, 1, 1) };
    }

    /// One non-blocking kick: the kernel sends up to its budget of described frames.
    fn kick(&self) -> Result<(), i32> {
        // SAFETY: no buffer and no address are passed; the kernel reads the transmit ring.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
        } else {
            Ok(())
        }
    }

    /// Publishes the described entries and kicks until every pending one is sent or, after
    /// the attempts are used up, withdrawn (counted as failed).
    fn flush(&mut self, out: &mut SendOutcome) {
        self.tx.producer().store(self.tx_producer, Ordering::Release);
        let mut failures = 0u32;
        while self.pending > 0 {
            let result = self.kick();
            let (consumed, mut sent) = self.advance_consumer();
            if result == Err(libc::EBUSY) && sent > 0 {
                // The driver dropped the last frame taken (no carrier, say): the kernel ends
                // the kick right after such a drop, so it is the last one consumed.
                sent -= 1;
                out.failed += 1;
            }
            out.sent += sent;
            self.reap_completions();
            if self.pending == 0 {
                break;
            }
            let progress = consumed > 0 || result == Err(libc::EBUSY);
            // EAGAIN after progress is the kick budget running out, not an error.
            if progress && matches!(result, Ok(()) | Err(libc::EAGAIN)) {
                continue;
            }
            if let Err(e) = result {
                out.last_errno = Some(e);
                if progress || e == libc::EINTR {
                    continue;
                }
            }
            if matches!(result, Err(libc::EAGAIN) | Err(libc::ENOBUFS) | Err(libc::EBUSY)) {
                // Device busy or socket buffer full of skbs in flight: give it a moment.
                self.poll_out();
            }
            failures += 1;
            if failures > self.retries {
                self.withdraw_pending(out);
            }
        }
    }

    /// Rewrites every pending descriptor to point past the UMEM, so the kernel will skip it as
    /// invalid instead of sending it late; counts them as failed.
    fn withdraw_pending(&mut self, out: &mut SendOutcome) {
        let outside = self.umem.len() as u64;
        let mut index = self.tx_producer.wrapping_sub(self.pending as u32);
        while index != self.tx_producer {
            let i = (index & self.tx.mask) as usize;
            // SAFETY: the entry lies in the mapped ring; in copy mode the kernel reads the
            // transmit ring only inside this socket's own send and poll calls, none of which
            // is running, so rewriting a published entry cannot race with it.
            unsafe {
                let desc = self.tx.entry(index, DESC_SIZE).cast::<libc::xdp_desc>();
                std::ptr::write_volatile(&raw mut (*desc).addr, outside);
            }
            self.withdrawn[i] = true;
            index = index.wrapping_add(1);
        }
        out.failed += self.pending;
        self.pending = 0;
    }
}

impl AsFd for XdpSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `XDP_MMAP_OFFSETS`: where the producer, consumer and entries of each ring are mapped.
fn mmap_offsets(fd: &OwnedFd) -> io::Result<libc::xdp_mmap_offsets> {
    let ring = libc::xdp_ring_offset { producer: 0, consumer: 0, desc: 0, flags: 0 };
    let zero = libc::xdp_mmap_offsets { rx: ring, tx: ring, fr: ring, cr: ring };
    let off = sock::getsockopt_into(fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS, zero)?;
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_chunk_constants_fit() {
        assert_eq!(DESC_SIZE, 16);
        const { assert!(MAX_FRAME_LEN >= 1514) };
        assert!(CHUNK_SIZE.is_power_of_two());
        let c = XdpConfig::default();
        assert!(c.chunks.is_power_of_two() && c.tx_entries.is_power_of_two());
        assert!(c.chunks * CHUNK_SIZE <= 8 << 20, "inside the default RLIMIT_MEMLOCK");
    }

    #[test]
    fn bad_geometry_is_refused() {
        // The pure check `open` runs first: no socket is opened in this (host) namespace.
        for (chunks, tx_entries) in [(1000, 512), (1024, 2048), (1024, 100)] {
            let err = XdpConfig { chunks, tx_entries, queue: 0 }.check().expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        XdpConfig::default().check().expect("the default geometry is valid");
        XdpConfig { chunks: 64, tx_entries: 64, queue: 3 }.check().expect("entries == chunks");
    }
}
