//! The queue between the stdin reader and the connection pool: FIFO, never blocks the producer.
//!
//! The producer (the stdin reader thread) must never wait for the connection pool, otherwise a
//! scanner writing into our stdin would block on its stdout (the documentation's "Heads Up!").
//! So the queue has no capacity limit. Its memory is accounted and capped instead: up to
//! `memory_limit` bytes of targets stay in memory; beyond that, new targets spill to an unnamed
//! temporary file (deleted by the OS when closed), 19 bytes a target, and come back in order.
//! Order is: the in-memory deque, then the file's unread records, then the not-yet-written
//! spill buffer. New targets go to memory only while the file and buffer are empty.
//! If the temporary file cannot be created or written, the spill buffer keeps growing in memory
//! instead (still in order) and the queue says so once on stderr.

use std::collections::VecDeque;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Bytes of one spilled target: family (4 or 6), 16 address bytes, port (big-endian).
const RECORD: usize = 19;
/// Targets moved between the file and memory at once.
const CHUNK: usize = 4096;

/// Counters describing what the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Targets pushed in total.
    pub pushed: u64,
    /// Targets that went past the memory limit: through the temporary file, or through the
    /// compact in-memory overflow buffer when no file could be used.
    pub spilled: u64,
    /// Largest number of bytes the queue held in memory.
    pub peak_memory_bytes: usize,
    /// Targets lost because the temporary file could not be read back.
    pub lost: u64,
}

/// The result of a non-waiting pop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop {
    /// The oldest target.
    Target(SocketAddr),
    /// Nothing queued now, more may come.
    Empty,
    /// Nothing queued and the producer has finished.
    Closed,
}

struct Spill {
    file: File,
    read_pos: u64,
    write_pos: u64,
}

struct Inner {
    mem: VecDeque<SocketAddr>,
    mem_cap: usize,
    spill: Option<Spill>,
    spill_unavailable: bool,
    buf: Vec<u8>,
    closed: bool,
    stats: QueueStats,
}

/// An unbounded, memory-capped FIFO of targets with one producer thread and async consumers.
pub struct TargetQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl TargetQueue {
    /// A queue keeping at most about `memory_limit` bytes of targets in memory.
    pub fn new(memory_limit: usize) -> Self {
        let mem_cap = (memory_limit / std::mem::size_of::<SocketAddr>()).max(1);
        Self {
            inner: Mutex::new(Inner {
                mem: VecDeque::new(),
                mem_cap,
                spill: None,
                spill_unavailable: false,
                buf: Vec::new(),
                closed: false,
                stats: QueueStats::default(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every step is complete), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a target. Never waits for consumers.
    pub fn push(&self, target: SocketAddr) {
        {
            let mut q = self.lock();
            q.stats.pushed += 1;
            let spilling =
                !q.buf.is_empty() || q.spill.as_ref().is_some_and(|s| s.read_pos < s.write_pos);
            if spilling || q.mem.len() >= q.mem_cap {
                encode(target, &mut q.buf);
                q.stats.spilled += 1;
                if q.buf.len() >= CHUNK * RECORD && !q.spill_unavailable {
                    q.flush_buf();
                }
            } else {
                q.mem.push_back(target);
            }
            q.account();
        }
        self.notify.notify_one();
    }

    /// Marks the end of input; consumers get [`Pop::Closed`] once the queue is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Takes the oldest target without waiting.
    pub fn try_pop(&self) -> Pop {
        let mut q = self.lock();
        if q.mem.is_empty() {
            q.refill();
        }
        match q.mem.pop_front() {
            Some(t) => Pop::Target(t),
            None if q.closed => Pop::Closed,
            None => Pop::Empty,
        }
    }

    /// Takes the oldest target, waiting for one; `None` once input has ended and all is taken.
    pub async fn pop(&self) -> Option<SocketAddr> {
        loop {
            match self.try_pop() {
                Pop::Target(t) => return Some(t),
                Pop::Closed => {
                    // Let another waiting consumer see the end too.
                    self.notify.notify_one();
                    return None;
                }
                // `notify_one` stores a permit when nobody waits, so a push between
                // `try_pop` and this await is not missed.
                Pop::Empty => self.notify.notified().await,
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> QueueStats {
        self.lock().stats
    }
}

impl Inner {
    fn account(&mut self) {
        let bytes = self.mem.len() * std::mem::size_of::<SocketAddr>() + self.buf.len();
        self.stats.peak_memory_bytes = self.stats.peak_memory_bytes.max(bytes);
    }

    /// Writes the spill buffer to the temporary file (creating it on first use).
    fn flush_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.spill.is_none() {
            match tempfile::tempfile() {
                Ok(file) => self.spill = Some(Spill { file, read_pos: 0, write_pos: 0 }),
                Err(e) => {
                    self.give_up_spilling(&format!("cannot create a temporary file: {e}"));
                    return;
                }
            }
        }
        let Some(spill) = self.spill.as_mut() else { return };
        match spill.file.write_all_at(&self.buf, spill.write_pos) {
            Ok(()) => {
                spill.write_pos += self.buf.len() as u64;
                self.buf.clear();
            }
            Err(e) => self.give_up_spilling(&format!("cannot write the temporary file: {e}")),
        }
    }

    /// Lets the (compact, 19 bytes a target) spill buffer grow in memory from now on; it stays
    /// last in order.
    fn give_up_spilling(&mut self, why: &str) {
        eprintln!("rzmap-banner: warning: {why}; queueing all input in memory");
        self.spill_unavailable = true;
    }

    /// Moves the next chunk of spilled targets into the (empty) in-memory deque.
    fn refill(&mut self) {
        if let Some(spill) = self.spill.as_mut()
            && spill.read_pos < spill.write_pos
        {
            let len = (spill.write_pos - spill.read_pos).min((CHUNK * RECORD) as u64) as usize;
            let mut chunk = vec![0u8; len];
            match spill.file.read_exact_at(&mut chunk, spill.read_pos) {
                Ok(()) => {
                    spill.read_pos += len as u64;
                    self.mem.extend(chunk.chunks_exact(RECORD).map(decode));
                }
                Err(e) => {
                    let lost = (spill.write_pos - spill.read_pos) / RECORD as u64;
                    eprintln!(
                        "rzmap-banner: error: cannot read the temporary file back: {e}; \
                             {lost} queued targets lost"
                    );
                    self.stats.lost += lost;
                    spill.read_pos = spill.write_pos;
                }
            }
            if spill.read_pos == spill.write_pos {
                // Drained: start over at the beginning and give the disk space back.
                spill.read_pos = 0;
                spill.write_pos = 0;
                let _ = spill.file.set_len(0);
            }
            return;
        }
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.mem.extend(buf.chunks_exact(RECORD).map(decode));
        }
    }
}

fn encode(target: SocketAddr, out: &mut Vec<u8>) {
    match target.ip() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&target.port().to_be_bytes());
}

fn decode(rec: &[u8]) -> SocketAddr {
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&rec[1..17]);
    let port = u16::from_be_bytes([rec[17], rec[18]]);
    let ip = if rec[0] == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(i: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(i)), (i % 65536) as u16)
    }

    fn drain(q: &TargetQueue) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        while let Pop::Target(x) = q.try_pop() {
            out.push(x);
        }
        out
    }

    #[test]
    fn record_round_trip() {
        for s in ["198.18.0.1:80", "[2001:db8::1]:443", "0.0.0.0:0", "[::]:65535"] {
            let a: SocketAddr = s.parse().unwrap();
            let mut buf = Vec::new();
            encode(a, &mut buf);
            assert_eq!(buf.len(), RECORD);
            assert_eq!(decode(&buf), a);
        }
    }

    #[test]
    fn spills_beyond_the_memory_limit_and_keeps_order() {
        // Room for 10 targets in memory; 20,000 go through the file in several chunks.
        let q = TargetQueue::new(10 * std::mem::size_of::<SocketAddr>());
        for i in 0..20_000 {
            q.push(t(i));
        }
        let s = q.stats();
        assert_eq!(s.pushed, 20_000);
        assert_eq!(s.spilled, 19_990);
        assert!(s.peak_memory_bytes < 10 * 32 + CHUNK * RECORD + 1, "{s:?}");
        assert_eq!(q.try_pop(), Pop::Target(t(0)));
        q.close();
        let rest = drain(&q);
        assert_eq!(rest, (1..20_000).map(t).collect::<Vec<_>>());
        assert_eq!(q.try_pop(), Pop::Closed);
        assert_eq!(q.stats().lost, 0);
    }

    #[test]
    fn empty_then_closed() {
        let q = TargetQueue::new(1 << 20);
        assert_eq!(q.try_pop(), Pop::Empty);
        q.close();
        assert_eq!(q.try_pop(), Pop::Closed);
    }

    #[test]
    fn async_pop_waits_for_the_producer() {
        let q = std::sync::Arc::new(TargetQueue::new(64));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    q.push(t(i));
                    if i % 1000 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                q.close();
            })
        };
        let got = rt.block_on(async {
            let mut got = Vec::new();
            while let Some(x) = q.pop().await {
                got.push(x);
            }
            got
        });
        producer.join().unwrap();
        assert_eq!(got, (0..5000).map(t).collect::<Vec<_>>());
    }

    proptest! {
        /// Any interleaving of pushes and pops under any memory limit is FIFO and loses nothing.
        #[test]
        fn fifo_under_interleaving(
            ops in proptest::collection::vec((0usize..3000, 0usize..3000), 1..8),
            cap in 1usize..200,
        ) {
            let q = TargetQueue::new(cap * std::mem::size_of::<SocketAddr>());
            let mut next = 0u32;
            let mut got = Vec::new();
            for (pushes, pops) in ops {
                for _ in 0..pushes {
                    q.push(t(next));
                    next += 1;
                }
                for _ in 0..pops {
                    if let Pop::Target(x) = q.try_pop() { got.push(x) }
                }
            }
            q.close();
            got.extend(drain(&q));
            prop_assert_eq!(got, (0..next).map(t).collect::<Vec<_>>());
        }
    }
}
