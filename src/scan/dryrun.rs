//! The two dry-run links: they take the engine's frames and write them to standard output
//! instead of the network. Neither opens a socket.
//!
//! - [`TextDryRun`] (`-d/--dryrun`) prints [`ProbeModule::describe`] for every frame, in
//!   ZMap's format (the `eth { .. }` line omitted with `-X`);
//! - [`FastDryRun`] (`--fast-dryrun`) writes 6 bytes per probe: the destination IPv4 address
//!   and the destination port (0 for ICMP), both in network order.
//!
//! Each sender thread owns one link with its own buffer. A buffer holds whole probes only and
//! is written in one `write_all` under the stdout lock, so probes of different threads never
//! interleave inside a record. The rest is written when the link is dropped (at the end of
//! the sender thread). A write error (for example a closed pipe) is kept in the shared
//! [`StdoutSlot`] and stops the scan.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use rzmap_core::engine::Controls;
use rzmap_core::link::{FrameBatch, PacketTx, SendOutcome};
use rzmap_core::probe::ProbeModule;

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

/// The destination address and port of a probe frame (Ethernet + IPv4 + transport) as the
/// 6 bytes `--fast-dryrun` writes; the port is 0 unless the frame carries TCP or UDP.
#[inline]
pub fn fast_record(frame: &[u8]) -> Option<[u8; FAST_RECORD]> {
    let ip = frame.get(14..)?;
    let head = ip.get(..20)?;
    let mut rec = [0u8; FAST_RECORD];
    rec[..4].copy_from_slice(&head[16..20]);
    let ihl = usize::from(head[0] & 0x0f) * 4;
    if matches!(head[9], 6 | 17)
        && let Some(p) = ip.get(ihl + 2..ihl + 4)
    {
        rec[4..].copy_from_slice(p);
    }
    Some(rec)
}

/// `--fast-dryrun`: writes 6 bytes per frame.
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
        for frame in batch.frames() {
            match fast_record(frame) {
                Some(rec) => {
                    self.buf.extend_from_slice(&rec);
                    out.sent += 1;
                }
                None => out.failed += 1,
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

    fn frame(proto: u8, ihl: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + usize::from(ihl) * 4 + 8];
        f[14] = 0x40 | ihl;
        f[14 + 9] = proto;
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 7]);
        let t = 14 + usize::from(ihl) * 4;
        f[t + 2..t + 4].copy_from_slice(&443u16.to_be_bytes());
        f
    }

    #[test]
    fn fast_records_read_address_and_port() {
        assert_eq!(fast_record(&frame(6, 5)), Some([198, 18, 0, 7, 1, 187]));
        assert_eq!(fast_record(&frame(17, 6)), Some([198, 18, 0, 7, 1, 187]));
        assert_eq!(fast_record(&frame(1, 5)), Some([198, 18, 0, 7, 0, 0]));
        assert_eq!(fast_record(&frame(6, 5)[..30]), None);
    }

    #[test]
    fn fast_link_buffers_until_dropped() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let slot = StdoutSlot::new(Box::new(Shared(sink.clone())), Controls::new(0));
        let mut tx = FastDryRun::new(slot.clone());
        let mut b = FrameBatch::new(2, 128);
        for f in [frame(6, 5), frame(1, 5)] {
            b.next_slot()[..f.len()].copy_from_slice(&f);
            b.commit(f.len());
        }
        assert_eq!(tx.send_batch(&b), SendOutcome { sent: 2, failed: 0 });
        assert!(sink.lock().unwrap().is_empty());
        drop(tx);
        assert_eq!(*sink.lock().unwrap(), [198, 18, 0, 7, 1, 187, 198, 18, 0, 7, 0, 0]);
        assert!(slot.finish().is_none());
    }

    #[test]
    fn a_closed_pipe_stops_the_scan() {
        let ctl = Controls::new(0);
        let slot = StdoutSlot::new(Box::new(Broken), ctl.clone());
        let mut tx = FastDryRun::new(slot.clone());
        let mut b = FrameBatch::new(1, 128);
        let f = frame(6, 5);
        b.next_slot()[..f.len()].copy_from_slice(&f);
        b.commit(f.len());
        for _ in 0..(FAST_BUFFER / 6) {
            tx.send_batch(&b);
        }
        assert!(ctl.stop.load(std::sync::atomic::Ordering::SeqCst));
        drop(tx);
        let e = slot.finish().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
