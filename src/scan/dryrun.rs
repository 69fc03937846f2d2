//! The two dry-run links: they take the engine's frames and write them to standard output
//! instead of the network. Neither opens a socket.
//!
//! - [`TextDryRun`] (`-d/--dryrun`) prints [`ProbeModule::describe`] for every frame, in
//!   ZMap's format (the `eth { .. }` line omitted with `-X`);
//! - [`FastDryRun`] (`--fast-dryrun`) writes 6 bytes per probe: the destination IPv4 address
//!   and the destination port (0 for ICMP), both in network order.
//!
//! The fast record depends only on the target, so a fast dry run builds no packet at all: its
//! frame builder is [`FastRecordBuilder`], which writes the 6-byte record into a 6-byte slot
//! (no template, no validation block), and [`FastDryRun`] copies the records out. The engine
//! loop is the same as for every other run, so targets, order, `-P`, `-n`, `-t`, `-I`, the
//! rate, the stop flag and the counters behave exactly as in a real scan.
//!
//! Each sender thread owns one link with its own buffer. A buffer holds whole probes only and
//! is written in one `write_all` under the stdout lock, so probes of different threads never
//! interleave inside a record. The rest is written when the link is dropped (at the end of
//! the sender thread). A write error (for example a closed pipe) is kept in the shared
//! [`StdoutSlot`] and stops the scan.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use std::net::{IpAddr, Ipv4Addr};

use rzmap_core::engine::{Controls, FrameBuilder};
use rzmap_core::link::{FrameBatch, PacketTx, SendOutcome};
use rzmap_core::probe::ProbeModule;
use rzmap_core::target::Target;

/// Text buffered per thread before it is written (about 300 probes).
const TEXT_BUFFER: usize = 64 * 1024;
/// Fast-dryrun bytes buffered per thread before they are written: a multiple of 6.
const FAST_BUFFER: usize = 6 * 256 * 1024;
/// Bytes per fast-dryrun record.
pub const FAST_RECORD: usize = 6;

/// Where dry-run links write and how a failed write ends the scan.
pub struct StdoutSlot {
    out: Mutex<Box<dyn Write + Send>>,
    error: Mutex<Option<io::Error>>,
    controls: Arc<Controls>,
}

impl std::fmt::Debug for StdoutSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutSlot").finish_non_exhaustive()
    }
}

impl StdoutSlot {
    /// A slot writing to `out`; the first write error asks `controls` to stop the scan.
    pub fn new(out: Box<dyn Write + Send>, controls: Arc<Controls>) -> Arc<Self> {
        Arc::new(Self { out: Mutex::new(out), error: Mutex::new(None), controls })
    }

    /// Writes `bytes` as one unit; false (and the scan is stopped) if writing failed now or
    /// earlier.
    fn write(&self, bytes: &[u8]) -> bool {
        if self.failed() {
            return false;
        }
        let r = match self.out.lock() {
            Ok(mut w) => w.write_all(bytes),
            Err(_) => Err(io::Error::other("output lock poisoned")),
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().map(|e| e.is_some()).unwrap_or(true)
    }

    fn fail(&self, e: io::Error) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.controls.request_stop();
    }

    /// Flushes the writer; returns the first write error of the run, if any.
    pub fn finish(&self) -> Option<io::Error> {
        if !self.failed() {
            let r = match self.out.lock() {
                Ok(mut w) => w.flush(),
                Err(_) => Err(io::Error::other("output lock poisoned")),
            };
            if let Err(e) = r {
                self.fail(e);
            }
        }
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// `-d/--dryrun`: prints each frame as text.
pub struct TextDryRun {
    module: Arc<dyn ProbeModule>,
    with_eth: bool,
    buf: String,
    out: Arc<StdoutSlot>,
}

impl TextDryRun {
    /// A link printing frames of `module`; `with_eth` is false with `-X`.
    pub fn new(module: Arc<dyn ProbeModule>, with_eth: bool, out: Arc<StdoutSlot>) -> Self {
        Self { module, with_eth, buf: String::with_capacity(TEXT_BUFFER + 4096), out }
    }

    fn write_out(&mut self) -> bool {
        let ok = self.buf.is_empty() || self.out.write(self.buf.as_bytes());
        self.buf.clear();
        ok
    }
}

impl PacketTx for TextDryRun {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        for frame in batch.frames() {
            self.module.describe(frame, self.with_eth, &mut self.buf);
        }
        let n = batch.len() as u32;
        if self.buf.len() >= TEXT_BUFFER && !self.write_out() {
            return SendOutcome { sent: 0, failed: n };
        }
        SendOutcome { sent: n, failed: 0 }
    }
}

impl Drop for TextDryRun {
    fn drop(&mut self) {
        self.write_out();
    }
}

/// `--fast-dryrun`'s frame builder: the record of (target, probe) is the destination address
/// and port in network order, whatever the probe module (the port is the target's, so it is
/// right for encapsulating modules such as `ipip` too, and 0 for the portless ICMP modules).
/// It builds no packet; use it with slots of [`FAST_RECORD`] bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastRecordBuilder;

impl FrameBuilder for FastRecordBuilder {
    #[inline]
    fn build(&mut self, buf: &mut [u8], target: &Target, _probe: u32, _src: Ipv4Addr) -> usize {
        // IPv6 targets have no 6-byte record (and the IPv4 scan never makes them).
        let IpAddr::V4(dst) = target.addr else { return 0 };
        let Some(rec) = buf.get_mut(..FAST_RECORD) else { return 0 };
        rec[..4].copy_from_slice(&dst.octets());
        rec[4..].copy_from_slice(&target.port.to_be_bytes());
        FAST_RECORD
    }
}

/// `--fast-dryrun`: writes the [`FastRecordBuilder`] records of each batch (a frame that is
/// not a 6-byte record counts as failed).
pub struct FastDryRun {
    buf: Vec<u8>,
    out: Arc<StdoutSlot>,
}

impl FastDryRun {
    /// A link writing to `out`.
    pub fn new(out: Arc<StdoutSlot>) -> Self {
        Self { buf: Vec::with_capacity(FAST_BUFFER + 6 * 1024), out }
    }

    fn write_out(&mut self) -> bool {
        let ok = self.buf.is_empty() || self.out.write(&self.buf);
        self.buf.clear();
        ok
    }
}

impl PacketTx for FastDryRun {
    #[inline]
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        let mut out = SendOutcome::default();
        if batch.slot_size() == FAST_RECORD
            && let Some(records) = batch.packed()
        {
            // The usual case: every frame is a record, back to back.
            self.buf.extend_from_slice(records);
            out.sent = batch.len() as u32;
        } else {
            for frame in batch.frames() {
                match <&[u8; FAST_RECORD]>::try_from(frame) {
                    Ok(rec) => {
                        self.buf.extend_from_slice(rec);
                        out.sent += 1;
                    }
                    Err(_) => out.failed += 1,
                }
            }
        }
        if self.buf.len() >= FAST_BUFFER && !self.write_out() {
            return SendOutcome { sent: 0, failed: out.sent + out.failed };
        }
        out
    }
}

impl Drop for FastDryRun {
    fn drop(&mut self) {
        self.write_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A batch of fast records built by [`FastRecordBuilder`] for `targets`.
    fn records(targets: &[Target]) -> FrameBatch {
        let mut b = FrameBatch::new(targets.len(), FAST_RECORD);
        for t in targets {
            let n = FastRecordBuilder.build(b.next_slot(), t, 0, Ipv4Addr::UNSPECIFIED);
            b.commit(n);
        }
        b
    }

    #[test]
    fn the_builder_writes_address_and_port_in_network_order() {
        let mut slot = [0xffu8; 16];
        let t = Target::v4(u32::from(Ipv4Addr::new(198, 18, 0, 7)), 443);
        assert_eq!(FastRecordBuilder.build(&mut slot, &t, 3, Ipv4Addr::LOCALHOST), 6);
        assert_eq!(slot[..6], [198, 18, 0, 7, 1, 187]);
        assert_eq!(slot[6], 0xff, "nothing beyond the record");
        let icmp = Target::v4(0xc612_0008, 0);
        assert_eq!(FastRecordBuilder.build(&mut slot, &icmp, 0, Ipv4Addr::LOCALHOST), 6);
        assert_eq!(slot[..6], [198, 18, 0, 8, 0, 0]);
        let v6 = Target { addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port: 80 };
        assert_eq!(FastRecordBuilder.build(&mut slot, &v6, 0, Ipv4Addr::LOCALHOST), 0);
        assert_eq!(FastRecordBuilder.build(&mut slot[..5], &t, 0, Ipv4Addr::LOCALHOST), 0);
    }

    /// For every module, the record names the frame's destination address and the target's
    /// port, also where the frame's outer header has no port (`ipip`: IP in IP, protocol 4,
    /// for which reading the port out of the frame gave 0).
    #[test]
    fn records_match_the_probe_frames_of_every_module() {
        use rzmap_core::aesrand::AesRand;
        use rzmap_core::engine::FrameBuilder as _;
        use rzmap_core::probe::adapter::ProbeSender;
        use rzmap_core::probe::{ProbeConfig, REGISTRY, create};
        use rzmap_core::validate::Validator;

        for info in REGISTRY {
            let args = (info.name == "udp").then_some("text:hello");
            let module: Arc<dyn ProbeModule> = Arc::from(create(info.name, args).unwrap());
            let port = if info.needs_ports { 4242 } else { 0 };
            let mut cfg = ProbeConfig::new([2; 6], [4; 6]);
            cfg.target_ports = vec![port];
            let mut sender = ProbeSender::new(
                Arc::clone(&module),
                Arc::new(cfg),
                Validator::new([7; 16]),
                AesRand::from_seed(1),
            );
            let mut frame = vec![0u8; 2048];
            sender.prepare(&mut frame);
            let target = Target::v4(u32::from(Ipv4Addr::new(198, 18, 3, 9)), port);
            let len = sender.build(&mut frame, &target, 0, Ipv4Addr::new(198, 19, 0, 1));
            assert!(len >= 34, "{}", info.name);
            let mut rec = [0u8; FAST_RECORD];
            assert_eq!(FastRecordBuilder.build(&mut rec, &target, 0, Ipv4Addr::UNSPECIFIED), 6);
            assert_eq!(rec[..4], frame[30..34], "{}: destination address", info.name);
            assert_eq!(u16::from_be_bytes([rec[4], rec[5]]), port, "{}: port", info.name);
            if info.name == "ipip" {
                assert_eq!(frame[14 + 9], 4, "ipip frames are IP in IP");
                assert_ne!(port, 0);
            }
        }
    }

    #[test]
    fn fast_link_buffers_until_dropped() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let slot = StdoutSlot::new(Box::new(Shared(sink.clone())), Controls::new(0));
        let mut tx = FastDryRun::new(slot.clone());
        let b = records(&[Target::v4(0xc612_0007, 443), Target::v4(0xc612_0007, 0)]);
        assert_eq!(tx.send_batch(&b), SendOutcome { sent: 2, failed: 0 });
        assert!(sink.lock().unwrap().is_empty());
        drop(tx);
        assert_eq!(*sink.lock().unwrap(), [198, 18, 0, 7, 1, 187, 198, 18, 0, 7, 0, 0]);
        assert!(slot.finish().is_none());
    }

    #[test]
    fn frames_that_are_not_records_fail() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let slot = StdoutSlot::new(Box::new(Shared(sink.clone())), Controls::new(0));
        let mut tx = FastDryRun::new(slot.clone());
        let mut b = FrameBatch::new(3, 64);
        for len in [6, 54, 5] {
            b.commit(len);
        }
        assert_eq!(tx.send_batch(&b), SendOutcome { sent: 1, failed: 2 });
        // Record-sized slots with a short frame: the frame by frame path.
        let mut b = FrameBatch::new(2, FAST_RECORD);
        b.next_slot().copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        b.commit(6);
        b.commit(0);
        assert_eq!(tx.send_batch(&b), SendOutcome { sent: 1, failed: 1 });
        drop(tx);
        assert_eq!(*sink.lock().unwrap(), [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_closed_pipe_stops_the_scan() {
        let ctl = Controls::new(0);
        let slot = StdoutSlot::new(Box::new(Broken), ctl.clone());
        let mut tx = FastDryRun::new(slot.clone());
        let b = records(&[Target::v4(0xc612_0007, 443)]);
        for _ in 0..(FAST_BUFFER / 6) {
            tx.send_batch(&b);
        }
        assert!(ctl.stop.load(std::sync::atomic::Ordering::SeqCst));
        drop(tx);
        let e = slot.finish().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
