//! Send-rate pacing.
//!
//! A [`Pacer`] keeps an absolute schedule per sender thread: packet `k` (counted since the last
//! rate change) is due at `anchor + k / rate`. Because the schedule is absolute, late wake-ups
//! never lower the achieved rate: whatever is due is sent in the next burst. The pacer never
//! reads a clock itself; the caller passes `now`, which makes the schedule exactly testable.
//!
//! CPU cost stays low at low rates because the pacer releases packets in small bursts (about
//! 2 ms worth of the global rate, at most [`MAX_BURST`]), so the senders together wake up about
//! 500 times a second, and [`wait`] sleeps for any wait longer than [`SPIN_BELOW`] and spins
//! only for the final short stretch. A burst is released when its *last* packet is due, so no
//! window ever sees more than the set rate.
//!
//! The global rate lives in a shared [`RateControl`] (an atomic), so it can be changed while
//! the scan runs (`SIGUSR1`/`SIGUSR2` raise or lower it by 5%); each pacer takes its thread's
//! share `rate / threads` and re-anchors its schedule when the rate changes. A rate of 0 means
//! "no limit".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The largest number of packets released at once.
pub const MAX_BURST: u32 = 256;

/// Waits shorter than this are spun, longer ones are slept.
pub const SPIN_BELOW: Duration = Duration::from_micros(60);

/// The longest single sleep: a sender wakes at least this often to check stop conditions.
pub const MAX_SLEEP: Duration = Duration::from_millis(50);

/// The target spacing between one thread's bursts, per sender thread: with `T` threads each
/// wakes every `T × 2 ms`, so the process wakes about 500 times a second whatever `T` is, and
/// the wire sees about one burst every 2 ms.
const BURST_SPACING_PER_THREAD: f64 = 2e-3;

/// The longest spacing between one thread's bursts.
const MAX_BURST_SPACING: f64 = 20e-3;

/// The most a thread may fall behind its schedule before the debt is forgiven, in seconds
/// (after a pause or a stall, the sender resumes at the set rate instead of bursting).
const MAX_DEBT_SECS: f64 = 0.1;

/// A source of time: the real clock in production, a fake one in tests.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Blocks the calling thread for about `d` (may oversleep).
    fn sleep(&self, d: Duration);
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The scan's global send rate in packets per second, shared by every sender (0 = unlimited).
#[derive(Debug, Default)]
pub struct RateControl {
    pps: AtomicU64,
}

impl RateControl {
    /// A control set to `pps` packets per second (0 = unlimited).
    pub fn new(pps: u64) -> Self {
        Self { pps: AtomicU64::new(pps) }
    }

    /// The current global rate (0 = unlimited).
    pub fn get(&self) -> u64 {
        self.pps.load(Ordering::Relaxed)
    }

    /// Sets the global rate (0 = unlimited).
    pub fn set(&self, pps: u64) {
        self.pps.store(pps, Ordering::Relaxed);
    }

    /// Raises the rate by 5% (at least 1 pps); no effect when unlimited. Returns the new rate.
    pub fn raise_5pct(&self) -> u64 {
        self.update(|r| if r == 0 { 0 } else { r.saturating_add((r / 20).max(1)) })
    }

    /// Lowers the rate by 5% (never below 1 pps); no effect when unlimited. Returns the new rate.
    pub fn lower_5pct(&self) -> u64 {
        self.update(|r| if r == 0 { 0 } else { (r - r / 20).max(1) })
    }

    fn update(&self, f: impl Fn(u64) -> u64) -> u64 {
        let mut cur = self.pps.load(Ordering::Relaxed);
        loop {
            let new = f(cur);
            match self.pps.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return new,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// What a sender should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Send up to this many packets now (then call [`Pacer::sent`]).
    Send(u32),
    /// Nothing is due yet: wait this long, then ask again.
    Wait(Duration),
}

/// One sender thread's pacing schedule.
#[derive(Debug)]
pub struct Pacer {
    threads: u32,
    /// The global rate the schedule was built for (to notice changes).
    global: u64,
    /// This thread's share, packets per second (0 = unlimited).
    rate: f64,
    /// Packets per burst.
    burst: u32,
    /// Schedule origin.
    anchor: Instant,
    /// Packets sent since `anchor`.
    sent: u64,
}

impl Pacer {
    /// A pacer for one of `threads` senders sharing the rate in `control`, starting at `now`.
    pub fn new(control: &RateControl, threads: u32, now: Instant) -> Self {
        let mut p = Self {
            threads: threads.max(1),
            global: 0,
            rate: 0.0,
            burst: MAX_BURST,
            anchor: now,
            sent: 0,
        };
        p.reanchor(control.get(), now);
        p
    }

    /// This thread's share of the global rate, in packets per second (0 = unlimited).
    pub fn thread_rate(&self) -> f64 {
        self.rate
    }

    /// The number of packets released per burst at the current rate.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn reanchor(&mut self, global: u64, now: Instant) {
        self.global = global;
        self.rate = global as f64 / f64::from(self.threads);
        self.burst = if global == 0 {
            MAX_BURST
        } else {
            let spacing =
                (BURST_SPACING_PER_THREAD * f64::from(self.threads)).min(MAX_BURST_SPACING);
            ((self.rate * spacing).floor() as u32).clamp(1, MAX_BURST)
        };
        self.anchor = now;
        self.sent = 0;
    }

    /// Decides what to do at `now`, reading the current global rate from `control`.
    pub fn poll(&mut self, control: &RateControl, now: Instant) -> Pace {
        let global = control.get();
        if global != self.global {
            self.reanchor(global, now);
        }
        if global == 0 {
            return Pace::Send(MAX_BURST);
        }
        let elapsed = now.saturating_duration_since(self.anchor).as_nanos();
        // Packets due by now, counting the one due exactly at the anchor (exact integers:
        // packet k is due at k * threads / global seconds).
        let per = u128::from(self.threads) * 1_000_000_000;
        let due = (elapsed * u128::from(global) / per) as u64 + 1;
        if due > self.sent {
            let behind = due - self.sent;
            if behind as f64 > (self.rate * MAX_DEBT_SECS).max(f64::from(self.burst) * 4.0) {
                // Forgive a large debt: restart the schedule here.
                self.reanchor(global, now);
                return Pace::Send(self.burst);
            }
            // Wait for a whole burst unless the backlog already holds one.
            if behind >= u64::from(self.burst) {
                return Pace::Send(behind.min(u64::from(MAX_BURST)) as u32);
            }
        }
        // The moment the next full burst is due: when packet `sent + burst - 1` is due.
        let next = u128::from(self.sent + u64::from(self.burst) - 1);
        let at_ns = (next * per).div_ceil(u128::from(global));
        let wait_ns = at_ns.saturating_sub(elapsed);
        if wait_ns == 0 {
            Pace::Send(self.burst)
        } else {
            Pace::Wait(Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX)))
        }
    }

    /// Records that `n` packets were sent.
    pub fn sent(&mut self, n: u32) {
        self.sent += u64::from(n);
    }
}

/// Waits `d` on `clock`: sleeps for long waits (leaving [`SPIN_BELOW`] to spin, capped at
/// [`MAX_SLEEP`] so stop conditions are checked often), and only spins for short ones. Returns
/// after at most one sleep, so the caller polls again.
pub fn wait<C: Clock + ?Sized>(clock: &C, d: Duration) {
    if d >= SPIN_BELOW {
        clock.sleep(d.min(MAX_SLEEP));
    } else {
        let until = clock.now() + d;
        while clock.now() < until {
            std::hint::spin_loop();
        }
    }
}

/// ZMap's low-rate rule, as rzmap applies it: when a positive rate is below
/// `2 * threads * batch`, use one thread and batches of one. ZMap applies this also to `-r 0`;
/// rzmap does not (0 means "no limit").
///
/// The engine paces correctly with any thread count (fractional per-thread shares, partial
/// batches flushed before every wait), so the rule is kept only because it changes the subshard
/// split and therefore the target order, which rzmap matches.
pub fn low_rate_rule(rate: u64, threads: u32, batch: u32) -> (u32, u32) {
    if rate > 0 && rate < 2 * u64::from(threads) * u64::from(batch) {
        (1, 1)
    } else {
        (threads, batch)
    }
}

/// A clock for tests: time moves only when slept or advanced.
#[derive(Debug)]
pub struct FakeClock {
    base: Instant,
    nanos: AtomicU64,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A fake clock at an arbitrary origin.
    pub fn new() -> Self {
        Self { base: Instant::now(), nanos: AtomicU64::new(0) }
    }
    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
    /// Time since the origin.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pacer over a fake clock until `total` packets are sent; returns each packet's
    /// send time (since the start) and the number of sleeps.
    fn simulate(control: &RateControl, threads: u32, total: u64) -> (Vec<Duration>, u64) {
        let clock = FakeClock::new();
        let mut p = Pacer::new(control, threads, clock.now());
        let mut times = Vec::new();
        let mut waits = 0;
        while (times.len() as u64) < total {
            match p.poll(control, clock.now()) {
                Pace::Send(n) => {
                    let n = n.min((total - times.len() as u64) as u32);
                    for _ in 0..n {
                        times.push(clock.elapsed());
                    }
                    p.sent(n);
                }
                Pace::Wait(d) => {
                    assert!(!d.is_zero());
                    waits += 1;
                    clock.advance(d.min(MAX_SLEEP));
                }
            }
        }
        (times, waits)
    }

    #[test]
    fn one_pps_sends_one_packet_per_second() {
        let control = RateControl::new(1);
        let (times, _) = simulate(&control, 1, 5);
        let secs: Vec<u64> = times.iter().map(|t| t.as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 3, 4]);
        for t in &times {
            assert_eq!(t.subsec_nanos(), 0);
        }
    }

    #[test]
    fn exact_schedule_at_500_pps() {
        let control = RateControl::new(500);
        let (times, _) = simulate(&control, 1, 10);
        let expect: Vec<Duration> = (0..10).map(|k| Duration::from_millis(2 * k)).collect();
        assert_eq!(times, expect);
    }

    #[test]
    fn bursts_leave_when_their_last_packet_is_due() {
        // 10 kpps: bursts of 20, released at 1.9 ms, 3.9 ms, ...
        let control = RateControl::new(10_000);
        let (times, _) = simulate(&control, 1, 60);
        for (k, t) in times.iter().enumerate() {
            let last_of_burst = (k / 20) * 20 + 19;
            assert_eq!(*t, Duration::from_micros(100 * last_of_burst as u64), "{k}");
        }
    }

    #[test]
    fn high_rates_release_bursts_on_schedule() {
        let control = RateControl::new(1_000_000);
        let clock = FakeClock::new();
        let mut p = Pacer::new(&control, 1, clock.now());
        assert_eq!(p.burst(), 256);
        // The first burst is due when its last packet (index 255) is due: 255 µs.
        assert_eq!(p.poll(&control, clock.now()), Pace::Wait(Duration::from_micros(255)));
        clock.advance(Duration::from_micros(255));
        assert_eq!(p.poll(&control, clock.now()), Pace::Send(256));
        p.sent(256);
        assert_eq!(p.poll(&control, clock.now()), Pace::Wait(Duration::from_micros(256)));
    }

    #[test]
    fn achieved_rate_is_within_two_percent_across_rates() {
        for &rate in &[1u64, 7, 100, 999, 1000, 10_000, 65_536, 250_000, 1_000_000, 3_000_000] {
            let control = RateControl::new(rate);
            let total = (rate * 2).clamp(5, 200_000);
            let (times, _) = simulate(&control, 1, total);
            let span = times.last().unwrap().as_secs_f64();
            let achieved = (total - 1) as f64 / span;
            let err = (achieved - rate as f64).abs() / rate as f64;
            assert!(err < 0.02, "rate {rate}: achieved {achieved}");
        }
    }

    #[test]
    fn late_wakeups_do_not_lower_the_rate() {
        // Every sleep oversleeps by 80 µs; the absolute schedule makes up for it.
        let control = RateControl::new(10_000);
        let clock = FakeClock::new();
        let mut p = Pacer::new(&control, 1, clock.now());
        let mut sent = 0u64;
        while sent < 50_000 {
            match p.poll(&control, clock.now()) {
                Pace::Send(n) => {
                    p.sent(n);
                    sent += u64::from(n);
                }
                Pace::Wait(d) => clock.advance(d + Duration::from_micros(80)),
            }
        }
        let achieved = sent as f64 / clock.elapsed().as_secs_f64();
        assert!((achieved - 10_000.0).abs() < 200.0, "{achieved}");
    }

    #[test]
    fn threads_share_the_rate() {
        let control = RateControl::new(10);
        let p = Pacer::new(&control, 3, Instant::now());
        assert!((p.thread_rate() * 3.0 - 10.0).abs() < 1e-9);
        let (times, _) = simulate(&control, 4, 6);
        // 2.5 pps per thread: packets at 0, 0.4, 0.8, ...
        assert_eq!(times[1], Duration::from_millis(400));
        assert_eq!(times[5], Duration::from_secs(2));
    }

    #[test]
    fn few_wakeups_at_moderate_rates() {
        let control = RateControl::new(10_000);
        let (_, waits) = simulate(&control, 1, 65_536);
        // About one wake-up per burst of 20 packets.
        assert!(waits <= 65_536 / 20 + 10, "{waits}");
    }

    #[test]
    fn unlimited_never_waits() {
        let control = RateControl::new(0);
        let mut p = Pacer::new(&control, 4, Instant::now());
        assert_eq!(p.poll(&control, Instant::now()), Pace::Send(MAX_BURST));
    }

    #[test]
    fn rate_changes_reanchor_the_schedule() {
        let control = RateControl::new(1000);
        let clock = FakeClock::new();
        let mut p = Pacer::new(&control, 1, clock.now());
        assert_eq!(p.burst(), 2);
        clock.advance(Duration::from_millis(1));
        assert_eq!(p.poll(&control, clock.now()), Pace::Send(2));
        p.sent(2);
        assert_eq!(control.raise_5pct(), 1050);
        // New schedule starts now: the first burst of 2 is due when its second packet is.
        match p.poll(&control, clock.now()) {
            Pace::Wait(d) => assert_eq!(d, Duration::from_nanos(952_381)),
            other => panic!("{other:?}"),
        }
        assert_eq!(control.lower_5pct(), 998);
        control.set(1);
        assert_eq!(control.lower_5pct(), 1);
        assert_eq!(control.raise_5pct(), 2);
        control.set(0);
        assert_eq!(control.raise_5pct(), 0);
    }

    #[test]
    fn a_stall_does_not_cause_a_flood() {
        let control = RateControl::new(1000);
        let clock = FakeClock::new();
        let mut p = Pacer::new(&control, 1, clock.now());
        p.sent(1);
        clock.advance(Duration::from_secs(10));
        let mut burst = 0;
        while let Pace::Send(n) = p.poll(&control, clock.now()) {
            p.sent(n);
            burst += n;
        }
        assert!(burst <= 100, "{burst}");
    }

    #[test]
    fn low_rate_rule_spares_unlimited() {
        assert_eq!(low_rate_rule(0, 4, 64), (4, 64));
        assert_eq!(low_rate_rule(100, 4, 64), (1, 1));
        assert_eq!(low_rate_rule(512, 4, 64), (4, 64));
    }

    #[test]
    fn wait_sleeps_long_and_spins_short() {
        let clock = FakeClock::new();
        wait(&clock, Duration::from_secs(3));
        assert_eq!(clock.elapsed(), MAX_SLEEP);
        wait(&clock, Duration::from_micros(100));
        assert_eq!(clock.elapsed(), MAX_SLEEP + Duration::from_micros(100));
    }
}
