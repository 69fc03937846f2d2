//! The engine's view of the network: a sender hands batches of frames to a [`PacketTx`], the
//! receiver takes captured IP packets from a [`PacketRx`]. `rzmap-sys` implements them over
//! Linux sockets; [`LoopbackNet`] implements them in memory for tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The default size of one frame slot (as ZMap: 2048 bytes).
pub const SLOT_SIZE: usize = 2048;

/// A sender's batch of frames: `capacity` fixed slots in one buffer, allocated once.
///
/// Slot contents persist across batches (only the lengths are reset), so a probe builder can
/// write a template into every slot once ([`crate::engine::FrameBuilder::prepare`]) and then
/// rewrite only the bytes that change.
#[derive(Debug)]
pub struct FrameBatch {
    buf: Vec<u8>,
    lens: Vec<usize>,
    slot: usize,
    capacity: usize,
    /// Frames in the batch shorter than their slot.
    short: usize,
}

impl FrameBatch {
    /// A batch of `capacity` slots (at least 1) of `slot_size` bytes each.
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            buf: vec![0; capacity * slot_size],
            lens: Vec::with_capacity(capacity),
            slot: slot_size,
            capacity,
            short: 0,
        }
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The size of a slot in bytes.
    #[inline]
    pub fn slot_size(&self) -> usize {
        self.slot
    }

    /// The number of frames in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether the batch holds no frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Whether every slot is used.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.capacity
    }

    /// Slot `i`'s whole buffer (for templates).
    #[inline]
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * self.slot..(i + 1) * self.slot]
    }

    /// The buffer of the next free slot (the batch must not be full).
    #[inline]
    pub fn next_slot(&mut self) -> &mut [u8] {
        let i = self.lens.len();
        self.slot_mut(i)
    }

    /// Adds the frame just written into the next slot, `len` bytes long (clamped to the slot).
    #[inline]
    pub fn commit(&mut self, len: usize) {
        let len = len.min(self.slot);
        self.short += usize::from(len < self.slot);
        self.lens.push(len);
    }

    /// All frames back to back, when every frame fills its slot exactly (fixed-size records,
    /// such as `--fast-dryrun`'s); `None` otherwise.
    #[inline]
    pub fn packed(&self) -> Option<&[u8]> {
        (self.short == 0).then(|| &self.buf[..self.lens.len() * self.slot])
    }

    /// Frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.buf[i * self.slot..i * self.slot + self.lens[i]]
    }

    /// All frames, in order.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.lens.len()).map(|i| self.frame(i))
    }

    /// Empties the batch (slot contents are kept).
    #[inline]
    pub fn clear(&mut self) {
        self.lens.clear();
        self.short = 0;
    }
}

/// What became of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Frames handed to the network.
    pub sent: u32,
    /// Frames that could not be sent (after the link's own retries).
    pub failed: u32,
}

/// Sends batches of frames (full Ethernet frames, or bare IP packets with `-X`).
pub trait PacketTx: Send {
    /// Sends every frame of `batch`, retrying as the link sees fit, and reports the outcome.
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome;
}

impl<T: PacketTx + ?Sized> PacketTx for Box<T> {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        (**self).send_batch(batch)
    }
}

/// Capture statistics, as the kernel counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Packets captured (ZMap's `pcap_recv`).
    pub received: u64,
    /// Packets dropped for lack of buffer space (`pcap_drop`).
    pub dropped: u64,
    /// Packets dropped by the interface (`pcap_ifdrop`).
    pub if_dropped: u64,
}

/// Delivers captured packets.
pub trait PacketRx: Send {
    /// Waits up to `timeout` for packets and passes each captured IP packet (link header
    /// removed) with its capture time to `deliver`. Returns the number delivered.
    fn poll(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> std::io::Result<usize>;

    /// Capture statistics so far: cumulative totals since the capture opened (the engine
    /// stores them as they are, so a link whose kernel counters reset on read must sum them).
    fn stats(&self) -> RxStats;
}

impl<R: PacketRx + ?Sized> PacketRx for Box<R> {
    fn poll(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> std::io::Result<usize> {
        (**self).poll(timeout, deliver)
    }
    fn stats(&self) -> RxStats {
        (**self).stats()
    }
}

/// The answers a [`LoopbackNet`] gives: for one sent frame, push zero or more reply packets.
pub type Responder = dyn Fn(&[u8], &mut dyn FnMut(Vec<u8>)) + Send + Sync;

struct Shared {
    responder: Box<Responder>,
    delay: Duration,
    /// Replies in flight: (deliverable at, packet).
    queue: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    ready: Condvar,
    sent: Mutex<Vec<Vec<u8>>>,
    delivered: AtomicU64,
    /// Every n-th frame fails to send (0 = never).
    fail_every: u64,
    attempts: AtomicU64,
}

/// An in-memory network for tests: every frame sent through a [`LoopbackTx`] is recorded and
/// answered by the responder (the "truth" about which hosts reply), and the replies come out
/// of the [`LoopbackRx`] after a fixed delay.
#[derive(Clone)]
pub struct LoopbackNet {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LoopbackNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackNet").field("delay", &self.shared.delay).finish_non_exhaustive()
    }
}

impl LoopbackNet {
    /// A network answering with `responder`, delivering replies after `delay`.
    pub fn new(
        delay: Duration,
        responder: impl Fn(&[u8], &mut dyn FnMut(Vec<u8>)) + Send + Sync + 'static,
    ) -> Self {
        Self::with_failures(delay, 0, responder)
    }

    /// Like [`LoopbackNet::new`], but every `fail_every`-th frame fails to send (0 = never).
    pub fn with_failures(
        delay: Duration,
        fail_every: u64,
        responder: impl Fn(&[u8], &mut dyn FnMut(Vec<u8>)) + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                responder: Box::new(responder),
                delay,
                queue: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                sent: Mutex::new(Vec::new()),
                delivered: AtomicU64::new(0),
                fail_every,
                attempts: AtomicU64::new(0),
            }),
        }
    }

    /// A sending end (one per sender thread).
    pub fn tx(&self) -> LoopbackTx {
        LoopbackTx { shared: Arc::clone(&self.shared) }
    }

    /// The receiving end.
    pub fn rx(&self) -> LoopbackRx {
        LoopbackRx { shared: Arc::clone(&self.shared) }
    }

    /// Every frame sent successfully so far, in the order the link took them.
    pub fn sent_frames(&self) -> Vec<Vec<u8>> {
        self.shared.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The number of replies delivered to the receiver so far.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }
}

/// The sending end of a [`LoopbackNet`].
pub struct LoopbackTx {
    shared: Arc<Shared>,
}

impl PacketTx for LoopbackTx {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        let mut out = SendOutcome::default();
        let at = Instant::now() + self.shared.delay;
        let mut replies = Vec::new();
        for frame in batch.frames() {
            let n = self.shared.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n.checked_rem(self.shared.fail_every) == Some(0) {
                out.failed += 1;
                continue;
            }
            out.sent += 1;
            if let Ok(mut s) = self.shared.sent.lock() {
                s.push(frame.to_vec());
            }
            (self.shared.responder)(frame, &mut |p| replies.push((at, p)));
        }
        if !replies.is_empty() {
            if let Ok(mut q) = self.shared.queue.lock() {
                q.extend(replies);
            }
            self.shared.ready.notify_all();
        }
        out
    }
}

/// The receiving end of a [`LoopbackNet`].
pub struct LoopbackRx {
    shared: Arc<Shared>,
}

impl PacketRx for LoopbackRx {
    fn poll(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> std::io::Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut ready = Vec::new();
        {
            let mut q = self.shared.queue.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            loop {
                let now = Instant::now();
                while q.front().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, p)) = q.pop_front() {
                        ready.push(p);
                    }
                }
                if !ready.is_empty() || now >= deadline {
                    break;
                }
                // Sleep until the first reply is due, new replies arrive, or the timeout.
                let until = q.front().map_or(deadline, |(at, _)| (*at).min(deadline));
                let (guard, _) = self
                    .shared
                    .ready
                    .wait_timeout(q, until.saturating_duration_since(now))
                    .map_err(|_| std::io::Error::other("poisoned"))?;
                q = guard;
            }
        }
        let now = SystemTime::now();
        for p in &ready {
            self.shared.delivered.fetch_add(1, Ordering::SeqCst);
            deliver(p, now);
        }
        Ok(ready.len())
    }

    fn stats(&self) -> RxStats {
        RxStats { received: self.shared.delivered.load(Ordering::SeqCst), ..RxStats::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_slots_persist_and_clear() {
        let mut b = FrameBatch::new(2, 16);
        assert_eq!(b.capacity(), 2);
        b.next_slot()[..3].copy_from_slice(b"abc");
        b.commit(3);
        b.next_slot()[..2].copy_from_slice(b"xy");
        b.commit(100);
        assert!(b.is_full());
        assert_eq!(b.frame(0), b"abc");
        assert_eq!(b.frame(1).len(), 16);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(&b.slot_mut(0)[..3], b"abc");
    }

    #[test]
    fn packed_frames_are_contiguous_only_when_every_slot_is_filled() {
        let mut b = FrameBatch::new(3, 4);
        assert_eq!(b.slot_size(), 4);
        assert_eq!(b.packed(), Some(&[][..]));
        b.next_slot().copy_from_slice(b"abcd");
        b.commit(4);
        b.next_slot().copy_from_slice(b"efgh");
        b.commit(9);
        assert_eq!(b.packed(), Some(&b"abcdefgh"[..]));
        b.next_slot().copy_from_slice(b"ijkl");
        b.commit(3);
        assert_eq!(b.packed(), None);
        assert_eq!(b.frame(2), b"ijk");
        b.clear();
        assert_eq!(b.packed(), Some(&[][..]));
        b.commit(4);
        assert_eq!(b.packed(), Some(&b"abcd"[..]));
    }

    #[test]
    fn loopback_answers_after_delay() {
        let net = LoopbackNet::new(Duration::from_millis(30), |f, out| {
            if f[0] % 2 == 0 {
                out(vec![f[0], 1]);
            }
        });
        let mut tx = net.tx();
        let mut rx = net.rx();
        let mut b = FrameBatch::new(4, 8);
        for i in 0..4u8 {
            b.next_slot()[0] = i;
            b.commit(1);
        }
        assert_eq!(tx.send_batch(&b), SendOutcome { sent: 4, failed: 0 });
        let mut got = Vec::new();
        let n = rx.poll(Duration::ZERO, &mut |p, _| got.push(p.to_vec())).unwrap();
        assert_eq!(n, 0);
        let start = Instant::now();
        while got.len() < 2 && start.elapsed() < Duration::from_secs(5) {
            rx.poll(Duration::from_millis(100), &mut |p, _| got.push(p.to_vec())).unwrap();
        }
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(got, vec![vec![0, 1], vec![2, 1]]);
        assert_eq!(rx.stats().received, 2);
        assert_eq!(net.sent_frames().len(), 4);
    }

    #[test]
    fn loopback_can_fail_sends() {
        let net = LoopbackNet::with_failures(Duration::ZERO, 3, |_, _| {});
        let mut b = FrameBatch::new(6, 8);
        for _ in 0..6 {
            b.commit(1);
        }
        assert_eq!(net.tx().send_batch(&b), SendOutcome { sent: 4, failed: 2 });
    }
}
