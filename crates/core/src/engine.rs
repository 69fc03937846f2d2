//! Scan orchestration, independent of the operating system.
//!
//! [`run`] starts one receiver thread (unless it is a dry run), `T` sender threads and a
//! monitor thread, and returns when the scan is over:
//!
//! - each sender walks its own target source (its subshard), builds `-P` probes per target
//!   back to back into a [`FrameBatch`], paces them with a [`Pacer`] and hands full batches
//!   (and partial ones before every wait) to its [`PacketTx`]; it publishes its counts to the
//!   shared counters once per batch, not per target;
//! - the receiver validates and classifies every captured packet through a
//!   [`ResponseHandler`], marks repeats through [`Dedup`], counts, and emits records;
//! - the monitor thread calls a callback once per interval (1 s) with the counters.
//!
//! The scan ends:
//! - normally: the cooldown `-c` after the last sender finished (senders finish when their
//!   source is exhausted, which includes the `-n` budget, or when `-t` expires);
//! - at once, with no cooldown, when `-N` results have passed the output filter;
//! - at once when the external stop flag is raised (SIGINT/SIGTERM): senders stop, the
//!   receiver handles what it already captured and stops; the handler is flushed either way.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use crate::dedup::{Dedup, DedupMethod};
use crate::link::{FrameBatch, PacketRx, PacketTx, SLOT_SIZE};
use crate::monitor::{CounterSnapshot, Counters, Progress, Tick};
use crate::rate::{self, Clock, Pace, Pacer, RateControl};
use crate::target::Target;

/// Where a sender's targets come from (its subshard of the permutation).
pub trait TargetSource: Send {
    /// The next target, or `None` when the subshard (or its `-n` budget) is exhausted.
    fn next_target(&mut self) -> Option<Target>;
}

impl<F: FnMut() -> Option<Target> + Send> TargetSource for F {
    fn next_target(&mut self) -> Option<Target> {
        self()
    }
}

/// Builds probe frames (the probe module's send side, for one sender thread).
pub trait FrameBuilder: Send {
    /// Writes constant bytes into a slot once, before sending starts (templates).
    fn prepare(&mut self, _slot: &mut [u8]) {}

    /// Writes the frame of probe `probe` (0-based, `< -P`) to `target` from `src_ip` into
    /// `buf` and returns its length (0 = nothing to send).
    fn build(&mut self, buf: &mut [u8], target: &Target, probe: u32, src_ip: Ipv4Addr) -> usize;

    /// Writes the frames of up to [`GROUP`] probes into the next slots of `batch` (which has
    /// room for all of them), committing each non-empty one; returns how many it committed.
    /// The default builds them one by one; a builder can override it to share work across
    /// the group (e.g. several AES blocks in one pipelined call).
    fn build_group(&mut self, batch: &mut FrameBatch, probes: &[ProbeSpec]) -> usize {
        let mut built = 0;
        for p in probes {
            let len = self.build(batch.next_slot(), &p.target, p.probe, p.src);
            if len > 0 {
                batch.commit(len);
                built += 1;
            }
        }
        built
    }
}

/// Probes the send loop hands to [`FrameBuilder::build_group`] at once (at most).
pub const GROUP: usize = 8;
const _: () = assert!(GROUP <= crate::validate::MAX_GROUP);

/// One probe to build: its target, its number (`< -P`) and its source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The target.
    pub target: Target,
    /// The probe's number for this target (0-based).
    pub probe: u32,
    /// Our source address for it.
    pub src: Ipv4Addr,
}

impl ProbeSpec {
    /// A placeholder (fills unused entries of a group array).
    pub const EMPTY: ProbeSpec =
        ProbeSpec { target: Target::v4(0, 0), probe: 0, src: Ipv4Addr::UNSPECIFIED };
}

impl<F: FnMut(&mut [u8], &Target, u32, Ipv4Addr) -> usize + Send> FrameBuilder for F {
    fn build(&mut self, buf: &mut [u8], target: &Target, probe: u32, src_ip: Ipv4Addr) -> usize {
        self(buf, target, probe, src_ip)
    }
}

/// What a validated response is, as far as the engine needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The responding host as the record reports it (host order): the dedup key. For ICMP
    /// errors that is the original target, not the router.
    pub src_ip: u32,
    /// That host's port (0 without ports): the window dedup key.
    pub src_port: u16,
    /// The module's `success` classification.
    pub success: bool,
    /// The module's `app_success` (false when the module has none).
    pub app_success: bool,
}

/// The system fields the engine decides for a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlags {
    /// Already seen (per the dedup method).
    pub repeat: bool,
    /// Received after every sender finished.
    pub cooldown: bool,
}

/// The receive side of a probe module plus the output: validates, classifies, emits records.
pub trait ResponseHandler: Send {
    /// Validates a captured IP packet; `None` if it is not a response to our probes.
    fn classify(&mut self, packet: &[u8], ts: SystemTime) -> Option<Verdict>;

    /// Builds the record of a validated response, applies the output filter and writes it;
    /// returns whether it passed the filter (what `-N` counts).
    fn emit(
        &mut self,
        packet: &[u8],
        ts: SystemTime,
        verdict: &Verdict,
        flags: ResponseFlags,
    ) -> bool;

    /// Flushes buffered output (called about once a second and at the end).
    fn flush(&mut self) {}

    /// Offered every captured packet before [`Self::classify`]: `true` when the handler
    /// consumed it outside validation (a later segment of a connection the handler keeps,
    /// as banner grabbing does); such packets are neither validated nor counted.
    fn intercept(&mut self, _packet: &[u8], _ts: SystemTime) -> bool {
        false
    }

    /// Called after every receive poll: emits records that became ready outside
    /// [`Self::emit`] (finished banner grabs), applying the output filter itself; returns
    /// how many passed it (counted for `-N`). At most `budget` may pass (`None`: no limit;
    /// the rest are dropped).
    fn after_poll(&mut self, _now: SystemTime, _budget: Option<u64>) -> u64 {
        0
    }

    /// Called once when receiving ends (any reason), before the last flush: finishes
    /// whatever is still pending and emits at most `budget` records (`Some(0)` once `-N` is
    /// reached); returns how many passed the filter.
    fn finish(&mut self, _now: SystemTime, _budget: Option<u64>) -> u64 {
        0
    }
}

/// One sender thread's inputs.
pub struct SenderSetup<S, B, T> {
    /// Its targets.
    pub targets: S,
    /// Its probe builder.
    pub builder: B,
    /// Its link.
    pub tx: T,
}

/// The receive side's inputs.
pub struct ReceiverSetup<R, H> {
    /// The capture.
    pub rx: R,
    /// Validation, classification and output.
    pub handler: H,
}

/// Scan parameters the engine uses.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `-P`: probes per target, sent back to back.
    pub probes_per_target: u32,
    /// Source addresses; probe `i` to `dst` uses `src_ips[(dst + i) % n]`.
    pub src_ips: Vec<Ipv4Addr>,
    /// `--batch`: frames per send call.
    pub batch_size: usize,
    /// Bytes per frame slot.
    pub slot_size: usize,
    /// `-c`.
    pub cooldown: Duration,
    /// `-t` (senders stop; the cooldown still follows).
    pub max_runtime: Option<Duration>,
    /// `-N`: stop once this many records passed the output filter.
    pub max_results: Option<u64>,
    /// The resolved dedup method.
    pub dedup: DedupMethod,
    /// `--dedup-window-size`.
    pub dedup_window_size: u32,
    /// ZMap's default mode (no `-f`/filter given): failures and repeats are dropped before
    /// the output.
    pub drop_failures_and_repeats: bool,
    /// The monitor's period (1 s).
    pub monitor_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            probes_per_target: 1,
            src_ips: vec![Ipv4Addr::UNSPECIFIED],
            batch_size: 64,
            slot_size: SLOT_SIZE,
            cooldown: Duration::from_secs(8),
            max_runtime: None,
            max_results: None,
            dedup: DedupMethod::Full,
            dedup_window_size: crate::dedup::DEFAULT_WINDOW_SIZE,
            drop_failures_and_repeats: true,
            monitor_interval: Duration::from_secs(1),
        }
    }
}

/// Run-time controls shared with the rest of the program (signal handlers).
#[derive(Debug, Default)]
pub struct Controls {
    /// The global rate (SIGUSR1/SIGUSR2 adjust it).
    pub rate: RateControl,
    /// Raised on SIGINT/SIGTERM: stop sending and receiving, flush, return.
    pub stop: AtomicBool,
    /// The shared counters.
    pub counters: Counters,
}

impl Controls {
    /// Controls for a scan at `pps` packets per second (0 = unlimited).
    pub fn new(pps: u64) -> Arc<Self> {
        Arc::new(Self { rate: RateControl::new(pps), ..Self::default() })
    }

    /// Asks the scan to stop (idempotent).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the monitor callback sees once per interval.
#[derive(Clone, Copy, Debug)]
pub struct MonitorTick {
    /// Time since the scan started.
    pub elapsed: Duration,
    /// When the last sender finished (since the start), once it has.
    pub send_finished: Option<Duration>,
    /// The counters.
    pub counters: CounterSnapshot,
}

impl MonitorTick {
    /// The monitor report for this tick (rates since the previous call on `progress`), ready
    /// for [`crate::monitor::status_line`] and [`crate::monitor::status_csv_row`].
    pub fn report(&self, progress: &mut Progress) -> Tick {
        progress.tick(
            self.elapsed.as_secs_f64(),
            self.counters,
            self.send_finished.map(|d| d.as_secs_f64()),
        )
    }
}

/// Why the scan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Every sender finished (targets exhausted or `-t`) and the cooldown passed.
    Completed,
    /// `-N` results were reached.
    MaxResults,
    /// The stop flag was raised.
    Interrupted,
}

/// One sender's state: small enough to keep for pause/resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderState {
    /// Thread index.
    pub index: usize,
    /// Frames sent successfully.
    pub sent: u64,
    /// Frames that failed to send.
    pub failed: u64,
    /// Targets started.
    pub targets: u64,
    /// A target whose probes were not all sent when the sender stopped, and the next probe.
    pub pending: Option<(Target, u32)>,
    /// Whether the source was exhausted (not stopped early).
    pub exhausted: bool,
}

/// The result of [`run`].
#[derive(Debug)]
pub struct ScanReport<S> {
    /// Why the scan ended.
    pub reason: StopReason,
    /// Whether `-t` cut sending short.
    pub max_runtime_hit: bool,
    /// Final counters.
    pub counters: CounterSnapshot,
    /// When sending started and ended.
    pub send_start: SystemTime,
    /// When the last sender finished.
    pub send_end: SystemTime,
    /// When receiving started (= send start for dry runs).
    pub recv_start: SystemTime,
    /// When receiving ended.
    pub recv_end: SystemTime,
    /// Each sender's final state.
    pub senders: Vec<SenderState>,
    /// The target sources, handed back (positioned after the last target started).
    pub sources: Vec<S>,
}

/// State shared by the engine's threads.
struct Shared<'a, C: Clock> {
    cfg: &'a EngineConfig,
    ctl: &'a Controls,
    clock: &'a C,
    start: Instant,
    /// Set by the receiver when `-N` is reached: senders stop.
    results_done: AtomicBool,
    senders_left: AtomicU64,
    /// Nanoseconds after `start` when the last sender finished (0 = not yet).
    send_end_ns: AtomicU64,
    runtime_hit: AtomicBool,
}

impl<C: Clock> Shared<'_, C> {
    fn send_finished(&self) -> Option<Duration> {
        match self.send_end_ns.load(Ordering::SeqCst) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// Runs a scan: `senders.len()` sender threads, the receiver (none for dry runs), and the
/// monitor calling `on_tick` every `cfg.monitor_interval`. Returns when the scan has ended
/// (see the module documentation).
pub fn run<S, B, T, R, H, C, M>(
    cfg: &EngineConfig,
    ctl: &Controls,
    clock: &C,
    senders: Vec<SenderSetup<S, B, T>>,
    receiver: Option<ReceiverSetup<R, H>>,
    mut on_tick: M,
) -> ScanReport<S>
where
    S: TargetSource,
    B: FrameBuilder,
    T: PacketTx,
    R: PacketRx,
    H: ResponseHandler,
    C: Clock,
    M: FnMut(&MonitorTick) + Send,
{
    let nsenders = senders.len();
    let shared = Shared {
        cfg,
        ctl,
        clock,
        start: clock.now(),
        results_done: AtomicBool::new(false),
        senders_left: AtomicU64::new(nsenders as u64),
        send_end_ns: AtomicU64::new(0),
        runtime_hit: AtomicBool::new(false),
    };
    if nsenders == 0 {
        shared.send_end_ns.store(1, Ordering::SeqCst);
    }
    Counters::add(&ctl.counters.active_senders, nsenders as u64);
    let wall_start = SystemTime::now();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let shared = &shared;

    let (states, sources, recv_end, reason) = std::thread::scope(|scope| {
        // Named threads, so profiles and `top -H` tell senders, receiver and monitor apart.
        let named = |name: String| std::thread::Builder::new().name(name);
        let monitor = spawn_in(scope, named("rzmap-monitor".into()), move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(cfg.monitor_interval)
            {
                on_tick(&MonitorTick {
                    elapsed: clock.now().saturating_duration_since(shared.start),
                    send_finished: shared.send_finished(),
                    counters: ctl.counters.snapshot(),
                });
            }
        });
        let recv = receiver
            .map(|r| spawn_in(scope, named("rzmap-recv".into()), move || receive_loop(shared, r)));
        let handles: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                spawn_in(scope, named(format!("rzmap-send-{i}")), move || {
                    send_loop(shared, nsenders, i, s)
                })
            })
            .collect();
        let mut states = Vec::with_capacity(nsenders);
        let mut sources = Vec::with_capacity(nsenders);
        for h in handles {
            // A panicking sender is a bug; propagate it.
            let (st, src) = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            states.push(st);
            sources.push(src);
        }
        let (recv_end, reason) = match recv {
            Some(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            None => {
                let reason = if ctl.stop.load(Ordering::SeqCst) {
                    StopReason::Interrupted
                } else {
                    StopReason::Completed
                };
                (SystemTime::now(), reason)
            }
        };
        drop(done_tx);
        let _ = monitor.join();
        (states, sources, recv_end, reason)
    });

    let send_end = shared.send_finished().unwrap_or_default();
    ScanReport {
        reason,
        max_runtime_hit: shared.runtime_hit.load(Ordering::SeqCst),
        counters: ctl.counters.snapshot(),
        send_start: wall_start,
        send_end: wall_start + send_end,
        recv_start: wall_start,
        recv_end,
        senders: states,
        sources,
    }
}

/// Whether senders must stop now (stop flag or `-N`).
fn must_stop<C: Clock>(sh: &Shared<'_, C>) -> bool {
    sh.ctl.stop.load(Ordering::Relaxed) || sh.results_done.load(Ordering::Relaxed)
}

/// Hands the built frames to the link and publishes the sender's progress to the shared
/// counters: one atomic update per batch instead of one per target.
fn flush<T: PacketTx>(
    tx: &mut T,
    batch: &mut FrameBatch,
    st: &mut SenderState,
    published_targets: &mut u64,
    c: &Counters,
) {
    if st.targets != *published_targets {
        Counters::add(&c.targets_scanned, st.targets - *published_targets);
        *published_targets = st.targets;
    }
    if batch.is_empty() {
        return;
    }
    let out = tx.send_batch(batch);
    st.sent += u64::from(out.sent);
    st.failed += u64::from(out.failed);
    if out.sent > 0 {
        Counters::add(&c.sent, u64::from(out.sent));
    }
    if out.failed > 0 {
        Counters::add(&c.send_failures, u64::from(out.failed));
    }
    batch.clear();
}

/// The source address of probe `probe` to `target`: `src_ips[(dst + probe) % n]`.
#[inline]
fn source_ip(src_ips: &[Ipv4Addr], target: &Target, probe: u32) -> Ipv4Addr {
    match src_ips {
        [] => Ipv4Addr::UNSPECIFIED,
        // The usual case: no division per probe.
        [one] => *one,
        _ => {
            let dst = match target.addr {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(a) => u128::from(a) as u32,
            };
            let i = (u64::from(dst) + u64::from(probe)) % src_ips.len() as u64;
            src_ips[i as usize]
        }
    }
}

/// A sender's current target, with an IPv4 target held as plain integers.
///
/// This is about speed only: copying a whole [`Target`] reads its 16-byte address area, of
/// which a source returning an IPv4 target wrote 4 bytes, and the CPU stalls on the failed
/// store forwarding (measured on a fast dry run of 16.8 M targets: 232 ms of CPU with the
/// copy, 190 ms without). Taking the address out as a `u32` reads just the bytes written.
#[derive(Clone, Copy)]
enum Current {
    V4(u32, u16),
    Other(Target),
}

impl Current {
    #[inline(always)]
    fn new(t: Target) -> Self {
        match t.addr {
            IpAddr::V4(a) => Current::V4(u32::from(a), t.port),
            IpAddr::V6(_) => Current::Other(t),
        }
    }

    #[inline(always)]
    fn target(self) -> Target {
        match self {
            Current::V4(a, port) => Target::v4(a, port),
            Current::Other(t) => t,
        }
    }
}

fn send_loop<S, B, T, C>(
    sh: &Shared<'_, C>,
    nsenders: usize,
    index: usize,
    setup: SenderSetup<S, B, T>,
) -> (SenderState, S)
where
    S: TargetSource,
    B: FrameBuilder,
    T: PacketTx,
    C: Clock,
{
    let SenderSetup { mut targets, mut builder, mut tx } = setup;
    let cfg = sh.cfg;
    let counters = &sh.ctl.counters;
    let probes = cfg.probes_per_target.max(1);
    let mut st = SenderState { index, ..SenderState::default() };
    let mut batch = FrameBatch::new(cfg.batch_size, cfg.slot_size);
    for i in 0..batch.capacity() {
        builder.prepare(batch.slot_mut(i));
    }
    let deadline = cfg.max_runtime.map(|t| sh.start + t);
    let mut pacer = Pacer::new(&sh.ctl.rate, nsenders as u32, sh.clock.now());
    // Targets already added to the shared `targets_scanned` (published once per batch).
    let mut published = 0u64;
    // The target being probed and its next probe number; `probe == probes` means the next
    // probe starts a new target.
    let mut current: Option<Current> = None;
    let mut probe = probes;
    'scan: loop {
        let now = sh.clock.now();
        if deadline.is_some_and(|d| now >= d) {
            sh.runtime_hit.store(true, Ordering::SeqCst);
            break;
        }
        if must_stop(sh) {
            break;
        }
        match pacer.poll(&sh.ctl.rate, now) {
            Pace::Wait(d) => {
                // Nothing is due: put what is built on the wire before waiting.
                flush(&mut tx, &mut batch, &mut st, &mut published, counters);
                rate::wait(sh.clock, d);
            }
            Pace::Send(n) => {
                let mut built = 0;
                let mut group = [ProbeSpec::EMPTY; GROUP];
                while built < n {
                    // Gather up to GROUP probes (no more than are due or fit in the batch),
                    // then build them together.
                    let due = usize::try_from(n - built).unwrap_or(usize::MAX);
                    let room = due.min(batch.capacity() - batch.len()).min(GROUP);
                    let mut k = 0;
                    let mut last = false;
                    while k < room {
                        if must_stop(sh) {
                            last = true;
                            break;
                        }
                        if probe >= probes {
                            let Some(t) = targets.next_target() else {
                                current = None;
                                st.exhausted = true;
                                last = true;
                                break;
                            };
                            current = Some(Current::new(t));
                            st.targets += 1;
                            probe = 0;
                        }
                        let Some(cur) = current else {
                            last = true;
                            break;
                        };
                        let target = cur.target();
                        let src = source_ip(&cfg.src_ips, &target, probe);
                        group[k] = ProbeSpec { target, probe, src };
                        probe += 1;
                        k += 1;
                    }
                    built += builder.build_group(&mut batch, &group[..k]) as u32;
                    if batch.is_full() {
                        flush(&mut tx, &mut batch, &mut st, &mut published, counters);
                    }
                    if last {
                        break 'scan;
                    }
                }
                pacer.sent(built);
            }
        }
    }
    flush(&mut tx, &mut batch, &mut st, &mut published, counters);
    st.pending = current.filter(|_| probe < probes).map(|c| (c.target(), probe));
    counters.active_senders.fetch_sub(1, Ordering::SeqCst);
    if sh.senders_left.fetch_sub(1, Ordering::SeqCst) == 1 {
        let ns = sh.clock.now().saturating_duration_since(sh.start).as_nanos();
        sh.send_end_ns.store(u64::try_from(ns).unwrap_or(u64::MAX).max(1), Ordering::SeqCst);
    }
    (st, targets)
}

/// The receive loop's poll timeout: short enough to notice stop conditions promptly.
const RECV_POLL: Duration = Duration::from_millis(10);

fn receive_loop<R, H, C>(sh: &Shared<'_, C>, setup: ReceiverSetup<R, H>) -> (SystemTime, StopReason)
where
    R: PacketRx,
    H: ResponseHandler,
    C: Clock,
{
    let ReceiverSetup { mut rx, mut handler } = setup;
    let cfg = sh.cfg;
    let c = &sh.ctl.counters;
    let mut dedup = Dedup::new(cfg.dedup, cfg.dedup_window_size);
    let mut last_flush = sh.clock.now();
    let reason = loop {
        if sh.ctl.stop.load(Ordering::SeqCst) {
            break StopReason::Interrupted;
        }
        if sh.results_done.load(Ordering::SeqCst) {
            break StopReason::MaxResults;
        }
        let now = sh.clock.now();
        let mut timeout = RECV_POLL;
        if let Some(end) = sh.send_finished() {
            let since = now.saturating_duration_since(sh.start).saturating_sub(end);
            if since >= cfg.cooldown {
                break StopReason::Completed;
            }
            timeout = timeout.min(cfg.cooldown - since);
        }
        let cooldown = sh.send_finished().is_some();
        let mut deliver = |pkt: &[u8], ts: SystemTime| {
            // ZMap drops the rest of a dispatch once -N is reached.
            if sh.results_done.load(Ordering::Relaxed) {
                return;
            }
            if handler.intercept(pkt, ts) {
                return;
            }
            let Some(v) = handler.classify(pkt, ts) else {
                Counters::add(&c.validation_failed, 1);
                return;
            };
            Counters::add(&c.validation_passed, 1);
            let repeat = dedup.check(v.src_ip, v.src_port, v.success);
            if v.success {
                Counters::add(&c.success_total, 1);
                if !repeat {
                    Counters::add(&c.success_unique, 1);
                }
                if cooldown {
                    Counters::add(&c.cooldown_total, 1);
                    if !repeat {
                        Counters::add(&c.cooldown_unique, 1);
                    }
                }
            } else {
                Counters::add(&c.failure_total, 1);
                if !repeat {
                    Counters::add(&c.failure_unique, 1);
                }
            }
            if v.app_success {
                Counters::add(&c.app_success_total, 1);
                if !repeat {
                    Counters::add(&c.app_success_unique, 1);
                }
            }
            if cfg.drop_failures_and_repeats && (!v.success || repeat) {
                return;
            }
            if handler.emit(pkt, ts, &v, ResponseFlags { repeat, cooldown }) {
                let n = c.filter_success.fetch_add(1, Ordering::SeqCst) + 1;
                if cfg.max_results.is_some_and(|max| n >= max) {
                    sh.results_done.store(true, Ordering::SeqCst);
                }
            }
        };
        // A capture error is transient for the engine: the link reports and retries.
        let _ = rx.poll(timeout, &mut deliver);
        let extra = handler.after_poll(SystemTime::now(), budget(sh));
        count_extra(sh, extra);
        let stats = rx.stats();
        c.recv_total.store(stats.received, Ordering::Relaxed);
        c.kernel_drops.store(stats.dropped, Ordering::Relaxed);
        c.if_drops.store(stats.if_dropped, Ordering::Relaxed);
        let now = sh.clock.now();
        if now.saturating_duration_since(last_flush) >= cfg.monitor_interval {
            handler.flush();
            last_flush = now;
        }
    };
    let extra = handler.finish(SystemTime::now(), budget(sh));
    count_extra(sh, extra);
    handler.flush();
    (SystemTime::now(), reason)
}

/// Records that may still pass the filter before `-N` (`None`: no limit).
fn budget<C: Clock>(sh: &Shared<'_, C>) -> Option<u64> {
    if sh.results_done.load(Ordering::SeqCst) {
        return Some(0);
    }
    let n = sh.ctl.counters.filter_success.load(Ordering::SeqCst);
    sh.cfg.max_results.map(|max| max.saturating_sub(n))
}

/// Counts records emitted outside `emit` for `-N`.
fn count_extra<C: Clock>(sh: &Shared<'_, C>, n: u64) {
    if n == 0 {
        return;
    }
    let c = &sh.ctl.counters;
    let total = c.filter_success.fetch_add(n, Ordering::SeqCst) + n;
    if sh.cfg.max_results.is_some_and(|max| total >= max) {
        sh.results_done.store(true, Ordering::SeqCst);
    }
}

/// Spawns a scoped thread with a name. Failing to create a thread is as fatal here as it is in
/// `Scope::spawn`, which panics too.
fn spawn_in<'scope, 'env, F, T>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    builder: std::thread::Builder,
    f: F,
) -> std::thread::ScopedJoinHandle<'scope, T>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    builder.spawn_scoped(scope, f).unwrap_or_else(|e| panic!("cannot start a scan thread: {e}"))
}

#[cfg(test)]
mod tests;
