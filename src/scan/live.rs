//! The live links: `rzmap-sys` sockets behind the engine's [`PacketTx`] and [`PacketRx`].
//!
//! - [`EthernetTx`]: an [`AfPacketSender`] sending whole Ethernet frames;
//! - [`IpLayerTx`]: a [`RawIpSender`] sending frames from byte 14 (`-X`);
//! - [`TxRingTx`]: a [`TxRingSender`] sending whole Ethernet frames through a transmit ring
//!   (`--send-backend=tx-ring`);
//! - [`XdpTx`]: an [`XdpSender`] sending whole Ethernet frames through an AF_XDP socket
//!   (`--send-backend=af-xdp`);
//! - [`RingRx`]: a [`PacketRing`] with the probe module's BPF filter; it strips the link header
//!   (14 bytes, or none on the cooked ring used with `-X`) and hands IP packets to the engine.
//!
//! `--cores` pinning happens on each link's first use, which is on the engine thread that owns
//! it (the engine spawns its own threads).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use rzmap_core::link::{FrameBatch, PacketRx, PacketTx, RxStats, SendOutcome};
use rzmap_core::probe::{ProbeModule, ReplyFilterKind};
use rzmap_sys::bpf::{self, FilterKind, FilterSpec, LinkLayer};
use rzmap_sys::process::pin_current_thread;
use rzmap_sys::ring::{PacketRing, RingConfig};
use rzmap_sys::send::{AfPacketSender, RawIpSender};
use rzmap_sys::tx_ring::TxRingSender;
use rzmap_sys::xdp::XdpSender;

/// The last send error number seen by any sender (0 = none), for the log.
#[derive(Debug, Default)]
pub struct SendErrors {
    last_errno: AtomicI32,
}

impl SendErrors {
    /// The last error, if any.
    pub fn last(&self) -> Option<io::Error> {
        match self.last_errno.load(Ordering::Relaxed) {
            0 => None,
            e => Some(io::Error::from_raw_os_error(e)),
        }
    }
}

fn pin(cpu: &mut Option<usize>) {
    if let Some(c) = cpu.take() {
        // Pinning is best effort: a CPU outside the allowed set leaves the thread unpinned.
        let _ = pin_current_thread(c);
    }
}

fn outcome(o: rzmap_sys::send::SendOutcome, errors: &SendErrors) -> SendOutcome {
    if let Some(e) = o.last_errno {
        errors.last_errno.store(e, Ordering::Relaxed);
    }
    SendOutcome {
        sent: u32::try_from(o.sent).unwrap_or(u32::MAX),
        failed: u32::try_from(o.failed).unwrap_or(u32::MAX),
    }
}

/// Any link, pinned to a CPU on first use (`--cores` for the dry-run links).
pub struct Pinned<T> {
    inner: T,
    cpu: Option<usize>,
}

impl<T: PacketTx> Pinned<T> {
    /// Wraps `inner`; the thread that first sends through it is pinned to `cpu`.
    pub fn new(inner: T, cpu: Option<usize>) -> Self {
        Self { inner, cpu }
    }
}

impl<T: PacketTx> PacketTx for Pinned<T> {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        pin(&mut self.cpu);
        self.inner.send_batch(batch)
    }
}

/// A `rzmap-sys` sender that takes a batch's frames (each back end's `send_from`).
pub trait FrameSender: Send {
    /// Sends the frames in order; every frame is sent or counted as failed.
    fn send_frames<'a>(
        &mut self,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> rzmap_sys::send::SendOutcome;
}

macro_rules! frame_sender {
    ($($t:ty),*) => {$(
        impl FrameSender for $t {
            fn send_frames<'a>(
                &mut self,
                frames: impl ExactSizeIterator<Item = &'a [u8]>,
            ) -> rzmap_sys::send::SendOutcome {
                self.send_from(frames)
            }
        }
    )*};
}
frame_sender!(AfPacketSender, RawIpSender, TxRingSender, XdpSender);

/// One opened sender behind the engine's [`PacketTx`]: pins its thread to `cpu` on first
/// use and records the last error in the shared [`SendErrors`].
pub struct SocketTx<S> {
    sender: S,
    cpu: Option<usize>,
    errors: Arc<SendErrors>,
}

impl<S: FrameSender> SocketTx<S> {
    /// Wraps an opened sender; pins its thread to `cpu` on first use.
    pub fn new(sender: S, cpu: Option<usize>, errors: Arc<SendErrors>) -> Self {
        Self { sender, cpu, errors }
    }
}

impl<S: FrameSender> PacketTx for SocketTx<S> {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        pin(&mut self.cpu);
        outcome(self.sender.send_frames(batch.frames()), &self.errors)
    }
}

/// Whole Ethernet frames on an AF_PACKET socket (`sendmmsg`).
pub type EthernetTx = SocketTx<AfPacketSender>;
/// IP packets (frames from byte 14) on a raw IP socket (`-X`).
pub type IpLayerTx = SocketTx<RawIpSender>;
/// Whole Ethernet frames through an AF_PACKET transmit ring (`--send-backend=tx-ring`).
pub type TxRingTx = SocketTx<TxRingSender>;
/// Whole Ethernet frames through an AF_XDP socket in copy mode (`--send-backend=af-xdp`).
pub type XdpTx = SocketTx<XdpSender>;

/// Any live sender, so all sender threads have one type.
pub enum LiveTx {
    /// AF_PACKET, `sendmmsg`.
    Ethernet(EthernetTx),
    /// Raw IP (`-X`).
    IpLayer(IpLayerTx),
    /// AF_PACKET transmit ring.
    TxRing(TxRingTx),
    /// AF_XDP, copy mode.
    AfXdp(XdpTx),
}

impl PacketTx for LiveTx {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        match self {
            LiveTx::Ethernet(t) => t.send_batch(batch),
            LiveTx::IpLayer(t) => t.send_batch(batch),
            LiveTx::TxRing(t) => t.send_batch(batch),
            LiveTx::AfXdp(t) => t.send_batch(batch),
        }
    }
}

/// The sys filter family of a probe module's reply filter.
pub fn filter_kind(k: ReplyFilterKind) -> FilterKind {
    match k {
        ReplyFilterKind::TcpSynAckRstOrIcmp => FilterKind::Tcp,
        ReplyFilterKind::IcmpNotEchoRequest => FilterKind::Icmp,
        ReplyFilterKind::UdpOrIcmp => FilterKind::Udp,
    }
}

/// Capture length with `--banner`: a whole Ethernet frame (data segments carry the banner).
pub const BANNER_SNAPLEN: u32 = 1514;

/// Opens the capture for `module` on `ifindex`: Ethernet framing with "not from our MAC",
/// or (with `ip_layer`) a cooked ring whose packets start at the IP header. With
/// `banner_ports` (`--banner`: the source-port range) every TCP segment to those ports is
/// captured whole, not only SYN-ACKs and RSTs.
pub fn open_ring(
    module: &dyn ProbeModule,
    ifindex: u32,
    our_mac: Option<[u8; 6]>,
    ip_layer: bool,
    banner_ports: Option<(u16, u16)>,
) -> io::Result<PacketRing> {
    let f = module.reply_filter();
    let (kind, snaplen) = match banner_ports {
        Some((first, last)) => (FilterKind::TcpSegments { first, last }, BANNER_SNAPLEN),
        None => (filter_kind(f.kind), f.snaplen.max(1)),
    };
    let spec = FilterSpec {
        kind,
        link: if ip_layer { LinkLayer::Ip } else { LinkLayer::Ethernet },
        our_mac: if ip_layer { None } else { our_mac },
        snaplen,
    };
    let program = bpf::program(&spec);
    // Many small blocks rather than a few large ones: a block is handed to us when it fills
    // *or* after the 10 ms timeout, so at modest hit rates each block holds only a few frames
    // and the ring's stall tolerance is block_count × 10 ms. 128 × 256 KiB (32 MiB) rides out
    // a 1.3 s scheduling stall of the receive thread at low rates and holds ~200k replies at
    // high rates; 16 × 1 MiB lost replies on a loaded 2-core machine after a 160 ms stall.
    let config = RingConfig {
        block_size: 256 << 10,
        block_count: 128,
        cooked: ip_layer,
        ..RingConfig::default()
    };
    PacketRing::open(ifindex, &program, &config)
}

/// The receive link over a [`PacketRing`].
pub struct RingRx {
    ring: PacketRing,
    skip: usize,
    cpu: Option<usize>,
}

impl RingRx {
    /// Wraps an opened ring; pins its thread to `cpu` on first use.
    pub fn new(ring: PacketRing, cpu: Option<usize>) -> Self {
        let skip = ring.link_header_len();
        Self { ring, skip, cpu }
    }
}

impl PacketRx for RingRx {
    fn poll(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> io::Result<usize> {
        pin(&mut self.cpu);
        if !self.ring.wait(timeout)? {
            return Ok(0);
        }
        let skip = self.skip;
        let mut n = 0;
        self.ring.next_batch(|frame, ts| {
            if let Some(ip) = frame.get(skip..) {
                deliver(ip, ts.to_system_time());
                n += 1;
            }
        });
        Ok(n)
    }

    fn stats(&self) -> RxStats {
        let s = self.ring.stats().unwrap_or_default();
        RxStats { received: s.packets, dropped: s.drops, if_dropped: 0 }
    }
}

/// No capture (dry runs): never delivers anything.
pub struct NoRx;

impl PacketRx for NoRx {
    fn poll(
        &mut self,
        timeout: Duration,
        _deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> io::Result<usize> {
        std::thread::sleep(timeout);
        Ok(0)
    }

    fn stats(&self) -> RxStats {
        RxStats::default()
    }
}
