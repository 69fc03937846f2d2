//! The receive path: an AF_PACKET TPACKET_V3 ring with a classic BPF filter attached.
//!
//! The socket is created with protocol 0 (it receives nothing), gets its filter, ring and
//! options, and only then is bound to the interface, so no unfiltered packet ever enters
//! the ring. Outgoing packets are ignored (`PACKET_IGNORE_OUTGOING`) where the kernel
//! supports it, in addition to the filter's "not ether src OUR_MAC".
//!
//! With [`RingConfig::cooked`] the socket is `SOCK_DGRAM`: packets start at the IPv4
//! header (use [`crate::bpf::LinkLayer::Ip`] filters), as `-X` needs on links without
//! Ethernet headers.

use crate::mapping::Mapping;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::bpf::Insn;
use crate::sock;

/// Ring geometry and socket options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block (rounded up to a multiple of the page size).
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// Milliseconds after which the kernel hands over a block that is not full.
    pub block_timeout_ms: u32,
    /// `SOCK_DGRAM` ring: packets start at the network header.
    pub cooked: bool,
    /// Put the interface in promiscuous mode while the ring is open (as ZMap's pcap does),
    /// so replies to a spoofed `--source-mac` are seen too.
    pub promiscuous: bool,
}

impl Default for RingConfig {
    /// 16 blocks of 1 MiB, retired after 10 ms, Ethernet framing, promiscuous.
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 20,
            block_count: 16,
            block_timeout_ms: 10,
            cooked: false,
            promiscuous: true,
        }
    }
}

/// Kernel capture time of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub sec: u32,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

impl Timestamp {
    /// Microseconds within the second (pcap's `tv_usec`).
    pub fn usec(&self) -> u32 {
        self.nsec / 1000
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::new(u64::from(self.sec), self.nsec.min(999_999_999))
    }
}

/// Cumulative `PACKET_STATISTICS` counters (the kernel resets them on every read; this
/// type accumulates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Packets that passed the filter, including dropped ones (kernel `tp_packets`, which
    /// is what pcap reports as `ps_recv`).
    pub packets: u64,
    /// Packets dropped because the ring was full (`tp_drops`).
    pub drops: u64,
    /// Times the ring froze its queue (`tp_freeze_q_cnt`).
    pub freeze_q_cnt: u64,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct StatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

// Offsets inside `struct tpacket_block_desc` (version u32, offset_to_priv u32, then the
// 8-aligned `tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets inside `struct tpacket3_hdr`.
const PKT_NEXT: usize = 0;
const PKT_SEC: usize = 4;
const PKT_NSEC: usize = 8;
const PKT_SNAPLEN: usize = 12;
const PKT_MAC: usize = 24;
const PKT_HDR_MIN: usize = 28;

/// A TPACKET_V3 receive ring bound to one interface.
pub struct PacketRing {
    // Field order is drop order: the ring is unmapped before the socket closes.
    map: Mapping,
    fd: OwnedFd,
    block_size: usize,
    block_count: usize,
    current: usize,
    link_header_len: usize,
    totals: std::cell::Cell<RingStats>,
}

// SAFETY: the mapping is owned exclusively by this value (no other Rust reference to it
// exists), so moving the ring to another thread moves sole access with it.
unsafe impl Send for PacketRing {}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl PacketRing {
    /// Opens a ring on interface `ifindex` that keeps the packets `filter` accepts.
    /// Requires `CAP_NET_RAW`.
    pub fn open(ifindex: u32, filter: &[Insn], config: &RingConfig) -> io::Result<Self> {
        let ty = if config.cooked { libc::SOCK_DGRAM } else { libc::SOCK_RAW };
        let fd = sock::socket(libc::AF_PACKET, ty, 0)?;
        attach_filter(&fd, filter)?;
        match sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32) {
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {} // kernel < 4.20
            other => other?,
        }
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v3)?;

        let page = page_size();
        let block_size = (config.block_size.max(1) as usize).div_ceil(page) * page;
        let block_count = config.block_count.max(1) as usize;
        let frame_size = 2048usize.min(block_size);
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: block_count as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: (block_size / frame_size * block_count) as u32,
            tp_retire_blk_tov: config.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sock::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let map = Mapping::ring(&fd, block_size * block_count, 0, false)?;
        let ring = PacketRing {
            map,
            fd,
            block_size,
            block_count,
            current: 0,
            link_header_len: if config.cooked { 0 } else { 14 },
            totals: std::cell::Cell::new(RingStats::default()),
        };
        if config.promiscuous {
            // The membership (and so promiscuous mode) ends when the socket is closed.
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as libc::c_int,
                mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            sock::setsockopt(&ring.fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        sock::bind_packet(&ring.fd, ifindex, libc::ETH_P_ALL as u16)?;
        Ok(ring)
    }

    /// Atomic view of a 32-bit field at `off` in block `b`.
    fn block_word(&self, b: usize, off: usize) -> &AtomicU32 {
        debug_assert!(b < self.block_count && off + 4 <= self.block_size);
        // SAFETY: `b * block_size + off` is inside the mapping and 4-aligned (blocks are
        // page-aligned, offsets multiples of 4); the kernel accesses this word concurrently,
        // which is why it is only ever touched through an atomic.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(b * self.block_size + off).cast()) }
    }

    /// True when the next block is ready for user space.
    pub fn ready(&self) -> bool {
        self.block_word(self.current, BLOCK_STATUS).load(Ordering::Acquire) & libc::TP_STATUS_USER
            != 0
    }

    /// Waits up to `timeout` for a ready block; true if one is ready.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        if self.ready() {
            return Ok(true);
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        sock::poll_readable(&self.fd, ms)?;
        Ok(self.ready())
    }

    /// Calls `f` for every packet of the blocks that are ready (at most one pass over the
    /// ring), in capture order, then returns the blocks to the kernel. Returns the number of
    /// packets seen. Frames are truncated to the filter's snaplen.
    pub fn next_batch(&mut self, mut f: impl FnMut(&[u8], Timestamp)) -> usize {
        let mut seen = 0;
        for _ in 0..self.block_count {
            if !self.ready() {
                break;
            }
            let b = self.current;
            seen += self.walk_block(b, &mut f);
            self.block_word(b, BLOCK_STATUS).store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.current = (b + 1) % self.block_count;
        }
        seen
    }

    fn walk_block(&self, b: usize, f: &mut impl FnMut(&[u8], Timestamp)) -> usize {
        // SAFETY: block `b` lies inside the mapping, and its status says user space owns it,
        // so the kernel does not write to it until we hand it back (after this function);
        // the Acquire load in `ready` orders our reads after the kernel's writes.
        let block = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(b * self.block_size), self.block_size)
        };
        let u32_at = |o: usize| -> Option<u32> {
            block.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        };
        let (Some(n), Some(off)) = (u32_at(BLOCK_NUM_PKTS), u32_at(BLOCK_FIRST_PKT)) else {
            return 0;
        };
        let mut off = off as usize;
        let mut seen = 0;
        for _ in 0..n {
            let Some(hdr) = block.get(off..off + PKT_HDR_MIN) else { break };
            let word = |o: usize| u32::from_ne_bytes([hdr[o], hdr[o + 1], hdr[o + 2], hdr[o + 3]]);
            let mac = usize::from(u16::from_ne_bytes([hdr[PKT_MAC], hdr[PKT_MAC + 1]]));
            let start = off + mac;
            let Some(frame) = block.get(start..start + word(PKT_SNAPLEN) as usize) else { break };
            f(frame, Timestamp { sec: word(PKT_SEC), nsec: word(PKT_NSEC) });
            seen += 1;
            let next = word(PKT_NEXT) as usize;
            if next == 0 {
                break;
            }
            off += next;
        }
        seen
    }

    /// Reads `PACKET_STATISTICS` (which resets the kernel's counters) and returns the
    /// totals since the ring was opened.
    pub fn stats(&self) -> io::Result<RingStats> {
        let s: StatsV3 = sock::getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS)?;
        let mut t = self.totals.get();
        t.packets += u64::from(s.tp_packets);
        t.drops += u64::from(s.tp_drops);
        t.freeze_q_cnt += u64::from(s.tp_freeze_q_cnt);
        self.totals.set(t);
        Ok(t)
    }

    /// Bytes before the IPv4 header in delivered frames: 14 (Ethernet), or 0 when cooked.
    /// (Frames from other link types, e.g. VLAN-tagged ones, are rejected by the filters.)
    pub fn link_header_len(&self) -> usize {
        self.link_header_len
    }
}

impl AsFd for PacketRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Attaches a classic BPF program to a socket (`SO_ATTACH_FILTER`).
pub fn attach_filter(fd: &impl AsRawFd, filter: &[Insn]) -> io::Result<()> {
    let len = u16::try_from(filter.len()).map_err(|_| io::Error::other("BPF program too long"))?;
    let prog = libc::sock_fprog { len, filter: filter.as_ptr() as *mut libc::sock_filter };
    // `Insn` has the layout of `sock_filter` (checked at compile time in `bpf`); the kernel
    // copies and validates the program during the call.
    sock::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}
