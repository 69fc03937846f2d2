//! Scan counters and everything that reports them: the 1 Hz status line, the `-u`
//! status-updates CSV, the `-m` metadata JSON, the `--summary` tab report and log lines.
//!
//! Times are shown in **local time**, as ZMap does. rzmap uses `chrono` for this: it reads the
//! time zone (`TZ`, `/etc/localtime`) without `unsafe` or `localtime_r` calls in our code, and it
//! formats `strftime`-style patterns (`%b`, `%z`) exactly. Every formatter takes the time as a
//! value, so the formats are tested with fixed times; [`now_local`] and [`to_local`] give the
//! real ones.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Local};
use serde::Serialize;

/// Counters shared (through an `Arc`) by the senders, the receiver and the monitor.
#[derive(Debug, Default)]
pub struct Counters {
    /// Probes handed to the link successfully.
    pub sent: AtomicU64,
    /// Probes the link failed to send.
    pub send_failures: AtomicU64,
    /// Targets started, i.e. their first probe built (ZMap's `targets_scanned`). Senders
    /// publish it once per batch.
    pub targets_scanned: AtomicU64,
    /// Sender threads still sending.
    pub active_senders: AtomicU64,
    /// Packets captured (the kernel's receive count, ZMap's `pcap_recv`).
    pub recv_total: AtomicU64,
    /// Captured packets that passed validation.
    pub validation_passed: AtomicU64,
    /// Captured packets that failed validation.
    pub validation_failed: AtomicU64,
    /// Validated responses classified as success.
    pub success_total: AtomicU64,
    /// Successes that were not repeats.
    pub success_unique: AtomicU64,
    /// Successes received during the cooldown.
    pub cooldown_total: AtomicU64,
    /// Unique successes received during the cooldown.
    pub cooldown_unique: AtomicU64,
    /// Validated responses classified as failure.
    pub failure_total: AtomicU64,
    /// Failures that were not repeats.
    pub failure_unique: AtomicU64,
    /// Application-level successes (modules that define `app_success`).
    pub app_success_total: AtomicU64,
    /// Application-level successes that were not repeats.
    pub app_success_unique: AtomicU64,
    /// Records that passed the output filter and reached the output.
    pub filter_success: AtomicU64,
    /// Packets the kernel dropped before capture (ZMap's `pcap_drop`).
    pub kernel_drops: AtomicU64,
    /// Packets the interface dropped (ZMap's `pcap_ifdrop`).
    pub if_drops: AtomicU64,
    /// Captured IP fragments.
    pub ip_fragments: AtomicU64,
}

/// A plain copy of [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CounterSnapshot {
    pub sent: u64,
    pub send_failures: u64,
    pub targets_scanned: u64,
    pub active_senders: u64,
    pub recv_total: u64,
    pub validation_passed: u64,
    pub validation_failed: u64,
    pub success_total: u64,
    pub success_unique: u64,
    pub cooldown_total: u64,
    pub cooldown_unique: u64,
    pub failure_total: u64,
    pub failure_unique: u64,
    pub app_success_total: u64,
    pub app_success_unique: u64,
    pub filter_success: u64,
    pub kernel_drops: u64,
    pub if_drops: u64,
    pub ip_fragments: u64,
}

impl Counters {
    /// Adds `n` to a counter (relaxed: counters are statistics).
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            sent: r(&self.sent),
            send_failures: r(&self.send_failures),
            targets_scanned: r(&self.targets_scanned),
            active_senders: r(&self.active_senders),
            recv_total: r(&self.recv_total),
            validation_passed: r(&self.validation_passed),
            validation_failed: r(&self.validation_failed),
            success_total: r(&self.success_total),
            success_unique: r(&self.success_unique),
            cooldown_total: r(&self.cooldown_total),
            cooldown_unique: r(&self.cooldown_unique),
            failure_total: r(&self.failure_total),
            failure_unique: r(&self.failure_unique),
            app_success_total: r(&self.app_success_total),
            app_success_unique: r(&self.app_success_unique),
            filter_success: r(&self.filter_success),
            kernel_drops: r(&self.kernel_drops),
            if_drops: r(&self.if_drops),
            ip_fragments: r(&self.ip_fragments),
        }
    }
}

/// ZMap's compact number format, used before a unit: below 1000 the integer and a space
/// (`"42 "`), then thousands with 2, 1 or 0 decimals (`"1.23 K"`, `"18.6 K"`, `"186 K"`), then
/// millions with 2 decimals (`"1.23 M"`, `"186.42 M"`). ZMap rounds through a `float`; so does
/// this, so the digits agree.
pub fn number_string(n: u64) -> String {
    if n < 1000 {
        format!("{n} ")
    } else if n < 1_000_000 {
        let figs = if n < 10_000 {
            2
        } else if n < 100_000 {
            1
        } else {
            0
        };
        format!("{:.*} K", figs, f64::from(n as f32 / 1000.0))
    } else {
        format!("{:.2} M", f64::from(n as f32 / 1_000_000.0))
    }
}

/// ZMap's duration format. Elapsed times (`estimate == false`) are `m:ss`, `h:mm:ss` or
/// `NdH:mm:ss`; estimates are the two largest units, e.g. `45s`, `3m07s`, `16m`, `2h05m`, `11h`,
/// `3d04h`, `12d`, `2 years`.
pub fn time_string(secs: u64, estimate: bool) -> String {
    const YEAR: u64 = 31_556_736;
    let y = secs / YEAR;
    let d = (secs % YEAR) / 86_400;
    let h = (secs % 86_400) / 3600;
    let m = (secs % 3600) / 60;
    let s = secs % 60;
    if estimate {
        if y > 0 {
            format!("{y} years")
        } else if d > 9 {
            format!("{d}d")
        } else if d > 0 {
            format!("{d}d{h:02}h")
        } else if h > 9 {
            format!("{h}h")
        } else if h > 0 {
            format!("{h}h{m:02}m")
        } else if m > 9 {
            format!("{m}m")
        } else if m > 0 {
            format!("{m}m{s:02}s")
        } else {
            format!("{s}s")
        }
    } else {
        let d = secs / 86_400;
        if d > 0 {
            format!("{d}d{h}:{m:02}:{s:02}")
        } else if h > 0 {
            format!("{h}:{m:02}:{s:02}")
        } else {
            format!("{m}:{s:02}")
        }
    }
}

/// What the monitor needs to know about the scan to estimate progress.
#[derive(Clone, Debug, Default)]
pub struct ScanShape {
    /// `-P`.
    pub probes_per_target: u32,
    /// Whether dedup is `none` (the hitrate then divides by all probes).
    pub dedup_none: bool,
    /// Probes this run will send if it runs to the end (targets × `-P`), if known.
    pub expected_probes: Option<u64>,
    /// `-t`, in seconds.
    pub max_runtime: Option<u64>,
    /// `-N`.
    pub max_results: Option<u64>,
    /// `-c`, in seconds.
    pub cooldown_secs: u64,
    /// Whether the probe module defines `app_success`.
    pub app_success: bool,
}

/// One monitor report: every number the status line and the status CSV show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tick {
    /// Seconds since the scan started.
    pub elapsed: f64,
    /// Estimated seconds left (including the cooldown).
    pub remaining: f64,
    /// Percent complete.
    pub percent: f64,
    /// Hitrate in percent.
    pub hitrate: f64,
    /// Application hitrate in percent.
    pub app_hitrate: f64,
    /// Whether every sender has finished.
    pub send_done: bool,
    /// The counters.
    pub counters: CounterSnapshot,
    /// Per-second rates over the last interval.
    pub sent_rate: f64,
    /// Average send rate over the sending period.
    pub sent_avg: f64,
    /// Successes per second, last interval.
    pub success_rate: f64,
    /// Successes per second, average.
    pub success_avg: f64,
    /// App successes per second, last interval.
    pub app_success_rate: f64,
    /// App successes per second, average.
    pub app_success_avg: f64,
    /// Captured packets per second, last interval.
    pub recv_rate: f64,
    /// Captured packets per second, average.
    pub recv_avg: f64,
    /// Drops per second, last interval.
    pub drop_rate: f64,
    /// Drops per second, average.
    pub drop_avg: f64,
    /// Send failures per second, last interval.
    pub fail_rate: f64,
    /// Send failures per second, average.
    pub fail_avg: f64,
}

/// Computes [`Tick`]s from successive counter snapshots.
#[derive(Debug, Default)]
pub struct Progress {
    shape: ScanShape,
    last: CounterSnapshot,
    last_elapsed: f64,
}

fn per_sec(delta: u64, secs: f64) -> f64 {
    if secs > 0.0 { delta as f64 / secs } else { 0.0 }
}

impl Progress {
    /// A progress tracker for a scan of this shape.
    pub fn new(shape: ScanShape) -> Self {
        Self { shape, ..Self::default() }
    }

    /// The report at `elapsed` seconds, given the counters, how long sending took (once every
    /// sender has finished) and when sending finished (seconds since start).
    pub fn tick(
        &mut self,
        elapsed: f64,
        c: CounterSnapshot,
        send_finished_at: Option<f64>,
    ) -> Tick {
        let sh = &self.shape;
        let dt = elapsed - self.last_elapsed;
        let drops = c.kernel_drops + c.if_drops;
        let last_drops = self.last.kernel_drops + self.last.if_drops;
        let send_secs = send_finished_at.unwrap_or(elapsed);
        let remaining = match send_finished_at {
            Some(end) => (sh.cooldown_secs as f64 - (elapsed - end)).max(0.0),
            None => {
                let mut rem = f64::INFINITY;
                if let Some(t) = sh.max_runtime.filter(|&t| t > 0) {
                    rem = rem.min((t as f64 - elapsed).max(0.0));
                }
                if let Some(total) = sh.expected_probes.filter(|&t| t > 0 && c.sent > 0) {
                    let rate = c.sent as f64 / elapsed.max(1e-9);
                    rem = rem.min(total.saturating_sub(c.sent) as f64 / rate);
                }
                if let Some(n) = sh.max_results.filter(|&n| n > 0 && c.filter_success > 0) {
                    let rate = c.filter_success as f64 / elapsed.max(1e-9);
                    rem = rem.min(n.saturating_sub(c.filter_success) as f64 / rate);
                }
                if rem.is_finite() { rem + sh.cooldown_secs as f64 } else { 0.0 }
            }
        };
        let percent =
            if elapsed + remaining > 0.0 { 100.0 * elapsed / (elapsed + remaining) } else { 0.0 };
        let p = u64::from(sh.probes_per_target.max(1));
        let denom = if sh.dedup_none { c.sent } else { c.sent.div_ceil(p) };
        let hit = |n: u64| if denom > 0 { n as f64 * 100.0 / denom as f64 } else { 0.0 };
        let t = Tick {
            elapsed,
            remaining,
            percent,
            hitrate: hit(c.success_unique),
            app_hitrate: hit(c.app_success_unique),
            send_done: send_finished_at.is_some(),
            counters: c,
            sent_rate: per_sec(c.sent - self.last.sent.min(c.sent), dt),
            sent_avg: per_sec(c.sent, send_secs),
            success_rate: per_sec(c.success_unique.saturating_sub(self.last.success_unique), dt),
            success_avg: per_sec(c.success_unique, elapsed),
            app_success_rate: per_sec(
                c.app_success_unique.saturating_sub(self.last.app_success_unique),
                dt,
            ),
            app_success_avg: per_sec(c.app_success_unique, elapsed),
            recv_rate: per_sec(c.recv_total.saturating_sub(self.last.recv_total), dt),
            recv_avg: per_sec(c.recv_total, elapsed),
            drop_rate: per_sec(drops.saturating_sub(last_drops), dt),
            drop_avg: per_sec(drops, elapsed),
            fail_rate: per_sec(c.send_failures.saturating_sub(self.last.send_failures), dt),
            fail_avg: per_sec(c.send_failures, send_secs),
        };
        self.last = c;
        self.last_elapsed = elapsed;
        t
    }

    /// Warnings ZMap prints beside the status line: drops above 5% of the receive rate, send
    /// failures above 1% of the send rate.
    pub fn warnings(t: &Tick) -> Vec<String> {
        let mut w = Vec::new();
        if t.drop_rate > t.recv_rate * 0.05 && t.drop_rate > 0.0 {
            w.push(format!(
                "dropped {} packets in the last second ({:.1}% of received)",
                t.drop_rate as u64,
                if t.recv_rate > 0.0 { t.drop_rate * 100.0 / t.recv_rate } else { 100.0 }
            ));
        }
        if t.fail_rate > t.sent_rate * 0.01 && t.fail_rate > 0.0 {
            w.push(format!("failed to send {} packets in the last second", t.fail_rate as u64));
        }
        w
    }
}

/// ZMap's fatal run-time limits, checked by the monitor once per tick.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// `--max-sendto-failures` (`None` = unlimited, ZMap's −1).
    pub max_sendto_failures: Option<u64>,
    /// `--min-hitrate` in percent (0 = off).
    pub min_hitrate: f64,
    below_since: Option<f64>,
}

/// The warm-up before `--min-hitrate` applies, and how long the hitrate must stay below it.
const HITRATE_GRACE_SECS: f64 = 5.0;

impl Limits {
    /// Limits from the two options.
    pub fn new(max_sendto_failures: Option<u64>, min_hitrate: f64) -> Self {
        Self { max_sendto_failures, min_hitrate, below_since: None }
    }

    /// The fatal error to report, if a limit was crossed at this tick: send failures above
    /// the maximum, or (after a 5 s warm-up, while sending) the hitrate below the minimum for
    /// 5 s in a row.
    pub fn check(&mut self, t: &Tick) -> Option<String> {
        let failures = t.counters.send_failures;
        if let Some(max) = self.max_sendto_failures.filter(|&m| failures > m) {
            return Some(format!("maximum number of send failures ({max}) exceeded: {failures}"));
        }
        if self.min_hitrate <= 0.0 || t.send_done || t.elapsed < HITRATE_GRACE_SECS {
            self.below_since = None;
            return None;
        }
        if t.hitrate >= self.min_hitrate {
            self.below_since = None;
            return None;
        }
        let since = *self.below_since.get_or_insert(t.elapsed);
        (t.elapsed - since >= HITRATE_GRACE_SECS).then(|| {
            format!(
                "hitrate {:.4}% stayed below the minimum {:.4}% for {} s",
                t.hitrate, self.min_hitrate, HITRATE_GRACE_SECS
            )
        })
    }
}

/// The 1 Hz status line (without newline), as ZMap 4 prints it on stderr:
/// ` 0:01 22%; send: 18601 18.6 Kp/s (18.5 Kp/s avg); recv: 0 0 p/s (0 p/s avg); drops: 0 p/s
/// (0 p/s avg); hitrate: 0.00%`, with ` (16m left)` after the percent from the 5th second on,
/// `send: N done (… avg)` once sending finished, and the `sent: … app success: … app hitrate:`
/// variant for modules with `app_success`. `recv:` counts unique successes.
pub fn status_line(t: &Tick, app_success: bool) -> String {
    let c = &t.counters;
    let mut s = String::with_capacity(200);
    let _ = write!(s, "{:>5} {:.0}%", time_string(t.elapsed as u64, false), t.percent);
    if t.elapsed >= 5.0 {
        let _ = write!(s, " ({} left)", time_string(t.remaining.ceil() as u64, true));
    }
    let ns = |x: f64| number_string(x as u64);
    let word = if app_success { "sent" } else { "send" };
    if t.send_done {
        let _ = write!(s, "; {word}: {} done ({}p/s avg)", c.sent, ns(t.sent_avg));
    } else {
        let _ =
            write!(s, "; {word}: {} {}p/s ({}p/s avg)", c.sent, ns(t.sent_rate), ns(t.sent_avg));
    }
    let _ = write!(
        s,
        "; recv: {} {}p/s ({}p/s avg)",
        c.success_unique,
        ns(t.success_rate),
        ns(t.success_avg)
    );
    if app_success {
        let _ = write!(
            s,
            "; app success: {} {}p/s ({}p/s avg)",
            c.app_success_unique,
            ns(t.app_success_rate),
            ns(t.app_success_avg)
        );
    }
    let _ = write!(
        s,
        "; drops: {}p/s ({}p/s avg); hitrate: {:.2}%",
        ns(t.drop_rate),
        ns(t.drop_avg),
        t.hitrate
    );
    if app_success {
        let _ = write!(s, " app hitrate: {:.2}%", t.app_hitrate);
    }
    s
}

/// The status-updates CSV header (21 names).
pub const STATUS_CSV_HEADER: &str = "real-time,time-elapsed,time-remaining,percent-complete,hit-rate,active-send-threads,sent-total,sent-last-one-sec,sent-avg-per-sec,recv-success-total,recv-success-last-one-sec,recv-success-avg-per-sec,recv-total,recv-total-last-one-sec,recv-total-avg-per-sec,pcap-drop-total,drop-last-one-sec,drop-avg-per-sec,sendto-fail-total,sendto-fail-last-one-sec,sendto-fail-avg-per-sec";

/// One status-updates CSV row (without newline): exactly one cell per header name (ZMap
/// writes an extra empty cell after `sendto-fail-total`; rzmap does not).
pub fn status_csv_row(t: &Tick, wall: &DateTime<FixedOffset>) -> String {
    let c = &t.counters;
    let drops = c.kernel_drops + c.if_drops;
    let u = |x: f64| x as u64;
    format!(
        "{},{},{},{:.6},{:.6},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        wall.format("%Y-%m-%d %H:%M:%S"),
        u(t.elapsed),
        u(t.remaining),
        t.percent,
        t.hitrate,
        c.active_senders,
        c.sent,
        u(t.sent_rate),
        u(t.sent_avg),
        c.success_unique,
        u(t.success_rate),
        u(t.success_avg),
        c.recv_total,
        u(t.recv_rate),
        u(t.recv_avg),
        drops,
        u(t.drop_rate),
        u(t.drop_avg),
        c.send_failures,
        u(t.fail_rate),
        u(t.fail_avg),
    )
}

/// The current local time.
pub fn now_local() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

/// A system time in local time.
pub fn to_local(t: SystemTime) -> DateTime<FixedOffset> {
    DateTime::<Local>::from(t).fixed_offset()
}

/// The metadata time format, `%Y-%m-%dT%H:%M:%S%z` (e.g. `2026-11-26T15:11:07+0000`).
pub fn metadata_time(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

/// The `-m` metadata document, with ZMap 4's keys (written as one JSON line at exit).
///
/// Optional keys are omitted when `None`, as ZMap omits them when unset.
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct ScanMetadata {
    pub local_hostname: String,
    pub full_hostname: String,
    pub source_port_first: u16,
    pub source_port_last: u16,
    pub target_ports: Vec<u16>,
    /// −1 when unlimited.
    pub max_targets: i64,
    pub max_runtime: u64,
    pub max_results: u64,
    pub output_results: u64,
    pub iface: String,
    pub rate: u64,
    pub bandwidth: u64,
    pub cooldown_secs: u64,
    pub senders: u32,
    pub seed: u64,
    pub seed_provided: bool,
    pub generator: u64,
    pub hitrate: f64,
    pub shard_num: u32,
    pub total_shards: u32,
    pub min_hitrate: f64,
    /// −1 when unlimited.
    pub max_sendto_failures: i64,
    pub syslog: bool,
    pub default_mode: bool,
    pub pcap_recv: u64,
    pub pcap_drop: u64,
    pub pcap_ifdrop: u64,
    pub ip_fragments: u64,
    pub blocklist_total_allowed: u64,
    pub blocklist_total_not_allowed: u64,
    pub validation_passed: u64,
    pub validation_failed: u64,
    /// Always 0, as in ZMap (never set there).
    pub first_scanned: u64,
    pub send_to_failures: u64,
    pub packets_sent: u64,
    pub targets_scanned: u64,
    pub success_total: u64,
    pub success_unique: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_success_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_success_unique: Option<u64>,
    pub success_cooldown_total: u64,
    pub success_cooldown_unique: u64,
    pub failure_total: u64,
    /// `-P`, under its old name.
    pub packet_streams: u32,
    pub probe_module: String,
    pub output_module: String,
    pub send_start_time: String,
    pub send_end_time: String,
    pub recv_start_time: String,
    pub recv_end_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_directory: Option<String>,
    /// Kept with their `/len` (ZMap loses it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli_cidr_destinations: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_args: Option<String>,
    pub gateway_mac: String,
    pub gateway_ip: String,
    pub source_mac: String,
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocklist_filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowlist_filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_of_ips_filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_of_ips_count: Option<u64>,
    pub dryrun: bool,
    pub quiet: bool,
    pub log_level: u8,
    pub deduplication_method: String,
    pub deduplication_window_size: u32,
    #[serde(rename = "user-metadata", skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    pub blocklisted_networks: Vec<String>,
    pub allowlisted_networks: Vec<String>,
}

impl ScanMetadata {
    /// Copies the final counters into the counter keys (and the hitrate, given `-P` and
    /// whether dedup is `none`); `app_success_*` are set only when the module defines it.
    pub fn set_counters(
        &mut self,
        c: &CounterSnapshot,
        probes: u32,
        dedup_none: bool,
        app_success: bool,
    ) {
        self.output_results = c.filter_success;
        self.pcap_recv = c.recv_total;
        self.pcap_drop = c.kernel_drops;
        self.pcap_ifdrop = c.if_drops;
        self.ip_fragments = c.ip_fragments;
        self.validation_passed = c.validation_passed;
        self.validation_failed = c.validation_failed;
        self.send_to_failures = c.send_failures;
        self.packets_sent = c.sent;
        self.targets_scanned = c.targets_scanned;
        self.success_total = c.success_total;
        self.success_unique = c.success_unique;
        self.success_cooldown_total = c.cooldown_total;
        self.success_cooldown_unique = c.cooldown_unique;
        self.failure_total = c.failure_total;
        if app_success {
            self.app_success_total = Some(c.app_success_total);
            self.app_success_unique = Some(c.app_success_unique);
        }
        let denom = if dedup_none { c.sent } else { c.sent.div_ceil(u64::from(probes.max(1))) };
        self.hitrate = if denom > 0 { c.success_unique as f64 * 100.0 / denom as f64 } else { 0.0 };
    }

    /// The document as one JSON line (no newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings and numbers cannot fail; NaN/inf floats become null.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

/// The `--summary` report (ZMap 2's grep-able form), one `section<TAB>key<TABs>value` line each.
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)]
pub struct Summary {
    /// The target port(s), comma-separated for several.
    pub target_port: String,
    pub source_port_first: u16,
    pub source_port_last: u16,
    pub source_addr_first: String,
    pub source_addr_last: String,
    /// `-n`, or 4294967295 when unlimited.
    pub maximum_packets: u64,
    pub maximum_runtime: u64,
    pub permutation_seed: u64,
    pub cooldown_period: u64,
    pub send_interface: String,
    pub rate: u64,
    pub nprocessors: usize,
    pub send_start_time: Option<DateTime<FixedOffset>>,
    pub send_end_time: Option<DateTime<FixedOffset>>,
    pub recv_start_time: Option<DateTime<FixedOffset>>,
    pub recv_end_time: Option<DateTime<FixedOffset>>,
    pub sent: u64,
    /// Addresses excluded by the blocklist.
    pub blacklisted: u64,
    pub first_scanned: u64,
    /// Hitrate in percent.
    pub hit_rate: f64,
    /// The module's name for a success (`synack` for tcp_synscan).
    pub success_name: String,
    /// The module's name for a failure (`rst` for tcp_synscan).
    pub failure_name: String,
    pub success_unique: u64,
    pub success_total: u64,
    pub cooldown_unique: u64,
    pub cooldown_total: u64,
    pub failure_unique: u64,
    pub failure_total: u64,
    /// The validation secret shown as `source-port-secret`.
    pub source_port_secret: u64,
    pub permutation_gen: u64,
}

/// Appends one summary line: the key is padded with tabs to column 48 (tab stops of 8).
fn summary_line(out: &mut String, section: &str, key: &str, value: impl fmt::Display) {
    out.push_str(section);
    out.push('\t');
    out.push_str(key);
    let col = 8 + key.len();
    let tabs = if col >= 48 { 1 } else { (48 - col).div_ceil(8) };
    for _ in 0..tabs {
        out.push('\t');
    }
    let _ = writeln!(out, "{value}");
}

/// `ctime`-style time without newline: `Fri Jan 18 01:47:35 2013`.
pub fn ctime(t: &DateTime<FixedOffset>) -> String {
    t.format("%a %b %e %H:%M:%S %Y").to_string()
}

impl Summary {
    /// The report, newline-terminated lines.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(1500);
        let time = |t: &Option<DateTime<FixedOffset>>| t.as_ref().map(ctime).unwrap_or_default();
        summary_line(&mut o, "cnf", "target-port", &self.target_port);
        summary_line(&mut o, "cnf", "source-port-range-begin", self.source_port_first);
        summary_line(&mut o, "cnf", "source-port-range-end", self.source_port_last);
        summary_line(&mut o, "cnf", "source-addr-range-begin", &self.source_addr_first);
        summary_line(&mut o, "cnf", "source-addr-range-end", &self.source_addr_last);
        summary_line(&mut o, "cnf", "maximum-packets", self.maximum_packets);
        summary_line(&mut o, "cnf", "maximum-runtime", self.maximum_runtime);
        summary_line(&mut o, "cnf", "permutation-seed", self.permutation_seed);
        summary_line(&mut o, "cnf", "cooldown-period", self.cooldown_period);
        summary_line(&mut o, "cnf", "send-interface", &self.send_interface);
        summary_line(&mut o, "cnf", "rate", self.rate);
        summary_line(&mut o, "env", "nprocessors", self.nprocessors);
        summary_line(&mut o, "exc", "send-start-time", time(&self.send_start_time));
        summary_line(&mut o, "exc", "send-end-time", time(&self.send_end_time));
        summary_line(&mut o, "exc", "recv-start-time", time(&self.recv_start_time));
        summary_line(&mut o, "exc", "recv-end-time", time(&self.recv_end_time));
        summary_line(&mut o, "exc", "sent", self.sent);
        summary_line(&mut o, "exc", "blacklisted", self.blacklisted);
        summary_line(&mut o, "exc", "first-scanned", self.first_scanned);
        summary_line(&mut o, "exc", "hit-rate", format_args!("{:.6}", self.hit_rate));
        let (s, f) = (&self.success_name, &self.failure_name);
        summary_line(&mut o, "exc", &format!("{s}-received-unique"), self.success_unique);
        summary_line(&mut o, "exc", &format!("{s}-received-total"), self.success_total);
        summary_line(&mut o, "exc", &format!("{s}-cooldown-received-unique"), self.cooldown_unique);
        summary_line(&mut o, "exc", &format!("{s}-cooldown-received-total"), self.cooldown_total);
        summary_line(&mut o, "exc", &format!("{f}-received-unique"), self.failure_unique);
        summary_line(&mut o, "exc", &format!("{f}-received-total"), self.failure_total);
        summary_line(&mut o, "adv", "source-port-secret", self.source_port_secret);
        summary_line(&mut o, "adv", "permutation-gen", self.permutation_gen);
        o
    }
}

/// Log levels, numbered as `-v` counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// 0.
    Fatal = 0,
    /// 1.
    Error = 1,
    /// 2.
    Warn = 2,
    /// 3 (the default verbosity).
    Info = 3,
    /// 4.
    Debug = 4,
    /// 5.
    Trace = 5,
}

impl Level {
    /// The name shown between brackets.
    pub fn name(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// One log line without newline: `Aug 11 16:16:12.813 [INFO] zmap: started`.
pub fn log_line(t: &DateTime<FixedOffset>, level: Level, module: &str, msg: &str) -> String {
    format!("{} [{}] {}: {}", t.format("%b %d %H:%M:%S%.3f"), level.name(), module, msg)
}

/// The file name `-L/--log-directory` logs to: `zmap-%Y-%m-%dT%H%M%S%z.log`, as ZMap names it.
pub fn log_file_name(t: &DateTime<FixedOffset>) -> String {
    t.format("zmap-%Y-%m-%dT%H%M%S%z.log").to_string()
}

/// A logger writing ZMap-style lines to stderr or a file, filtered by verbosity.
pub struct Logger {
    verbosity: u8,
    color: bool,
    sink: Mutex<Box<dyn Write + Send>>,
    /// A second destination for lines at INFO or more severe (syslog, unless disabled).
    system_log: Option<Mutex<Box<dyn SystemLog>>>,
}

/// A system log (syslog) receiving the logger's lines at INFO or more severe.
pub trait SystemLog: Send {
    /// Records one message; errors are ignored by the logger.
    fn record(&mut self, level: Level, module: &str, msg: &str);
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").field("verbosity", &self.verbosity).finish_non_exhaustive()
    }
}

impl Logger {
    /// A logger keeping levels `<= verbosity` (0..=5), writing to `sink`. With `color` (a
    /// terminal), FATAL and ERROR lines are red and WARN lines yellow.
    pub fn new(verbosity: u8, color: bool, sink: Box<dyn Write + Send>) -> Self {
        Self { verbosity: verbosity.min(5), color, sink: Mutex::new(sink), system_log: None }
    }

    /// Also sends lines at INFO or more severe (and enabled by the verbosity) to `log`.
    pub fn with_system_log(mut self, log: Box<dyn SystemLog>) -> Self {
        self.system_log = Some(Mutex::new(log));
        self
    }

    /// A logger to stderr, coloured when stderr is a terminal.
    pub fn stderr(verbosity: u8) -> Self {
        use std::io::IsTerminal;
        let color = std::io::stderr().is_terminal();
        Self::new(verbosity, color, Box::new(std::io::stderr()))
    }

    /// Whether `level` would be written.
    pub fn enabled(&self, level: Level) -> bool {
        level as u8 <= self.verbosity
    }

    /// Writes one line at `level` from `module`, if enabled. Write errors are ignored (a
    /// logger has nowhere to report them).
    pub fn log(&self, level: Level, module: &str, msg: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let text = msg.to_string();
        if level <= Level::Info
            && let Some(sys) = &self.system_log
            && let Ok(mut sys) = sys.lock()
        {
            sys.record(level, module, &text);
        }
        let line = log_line(&now_local(), level, module, &text);
        let (pre, post) = match (self.color, level) {
            (true, Level::Fatal | Level::Error) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::Warn) => ("\x1b[33m", "\x1b[0m"),
            _ => ("", ""),
        };
        if let Ok(mut w) = self.sink.lock() {
            let _ = writeln!(w, "{pre}{line}{post}");
            let _ = w.flush();
        }
    }

    /// Logs at INFO.
    pub fn info(&self, module: &str, msg: fmt::Arguments<'_>) {
        self.log(Level::Info, module, msg);
    }

    /// Logs at WARN.
    pub fn warn(&self, module: &str, msg: fmt::Arguments<'_>) {
        self.log(Level::Warn, module, msg);
    }

    /// Logs at DEBUG.
    pub fn debug(&self, module: &str, msg: fmt::Arguments<'_>) {
        self.log(Level::Debug, module, msg);
    }

    /// Logs at ERROR.
    pub fn error(&self, module: &str, msg: fmt::Arguments<'_>) {
        self.log(Level::Error, module, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn number_strings() {
        let cases = [
            (0, "0 "),
            (999, "999 "),
            (1000, "1.00 K"),
            (1234, "1.23 K"),
            (9999, "10.00 K"),
            (18_601, "18.6 K"),
            (99_999, "100.0 K"),
            (186_420, "186 K"),
            (999_999, "1000 K"),
            (1_000_000, "1.00 M"),
            (14_880_000, "14.88 M"),
            (186_420_000, "186.42 M"),
        ];
        for (n, s) in cases {
            assert_eq!(number_string(n), s, "{n}");
        }
    }

    #[test]
    fn time_strings() {
        assert_eq!(time_string(1, false), "0:01");
        assert_eq!(time_string(754, false), "12:34");
        assert_eq!(time_string(3 * 3600 + 5, false), "3:00:05");
        assert_eq!(time_string(2 * 86_400 + 3661, false), "2d1:01:01");
        assert_eq!(time_string(45, true), "45s");
        assert_eq!(time_string(187, true), "3m07s");
        assert_eq!(time_string(16 * 60 + 3, true), "16m");
        assert_eq!(time_string(2 * 3600 + 300, true), "2h05m");
        assert_eq!(time_string(11 * 3600, true), "11h");
        assert_eq!(time_string(3 * 86_400 + 4 * 3600, true), "3d04h");
        assert_eq!(time_string(12 * 86_400, true), "12d");
        assert_eq!(time_string(2 * 31_556_736, true), "2 years");
    }

    fn shape() -> ScanShape {
        ScanShape {
            probes_per_target: 1,
            expected_probes: Some(65_536),
            cooldown_secs: 8,
            ..ScanShape::default()
        }
    }

    #[test]
    fn golden_status_line_while_sending() {
        let mut p = Progress::new(shape());
        let c = CounterSnapshot { sent: 18_601, active_senders: 1, ..Default::default() };
        let t = p.tick(1.0, c, None);
        assert_eq!(
            status_line(&t, false),
            " 0:01 9%; send: 18601 18.6 Kp/s (18.6 Kp/s avg); recv: 0 0 p/s (0 p/s avg); drops: 0 p/s (0 p/s avg); hitrate: 0.00%"
        );
    }

    #[test]
    fn golden_status_line_with_eta_and_done() {
        let mut p = Progress::new(ScanShape { cooldown_secs: 8, ..shape() });
        let c = CounterSnapshot {
            sent: 50_000,
            success_unique: 500,
            recv_total: 800,
            ..Default::default()
        };
        p.tick(4.0, CounterSnapshot { sent: 40_000, success_unique: 400, ..c }, None);
        let t = p.tick(5.0, c, None);
        // 15,536 probes left at 10 Kp/s avg = 1.55 s, plus 8 s cooldown.
        assert_eq!(
            status_line(&t, false),
            " 0:05 34% (10s left); send: 50000 10.0 Kp/s (10.0 Kp/s avg); recv: 500 100 p/s (100 p/s avg); drops: 0 p/s (0 p/s avg); hitrate: 1.00%"
        );
        let done = CounterSnapshot { sent: 65_536, success_unique: 655, kernel_drops: 30, ..c };
        let t = p.tick(10.0, done, Some(6.5536));
        assert_eq!(
            status_line(&t, false),
            " 0:10 69% (5s left); send: 65536 done (10.0 Kp/s avg); recv: 655 31 p/s (65 p/s avg); drops: 6 p/s (3 p/s avg); hitrate: 1.00%"
        );
    }

    #[test]
    fn golden_status_line_app_success() {
        let mut p = Progress::new(ScanShape { app_success: true, ..shape() });
        let c = CounterSnapshot {
            sent: 2000,
            success_unique: 20,
            app_success_unique: 5,
            ..Default::default()
        };
        let t = p.tick(1.0, c, None);
        assert_eq!(
            status_line(&t, true),
            " 0:01 2%; sent: 2000 2.00 Kp/s (2.00 Kp/s avg); recv: 20 20 p/s (20 p/s avg); app success: 5 5 p/s (5 p/s avg); drops: 0 p/s (0 p/s avg); hitrate: 1.00% app hitrate: 0.25%"
        );
    }

    #[test]
    fn hitrate_divides_by_targets_or_probes() {
        let c = CounterSnapshot { sent: 30, success_unique: 5, ..Default::default() };
        let mut p = Progress::new(ScanShape { probes_per_target: 3, ..shape() });
        assert_eq!(p.tick(1.0, c, None).hitrate, 50.0);
        let mut p = Progress::new(ScanShape { probes_per_target: 3, dedup_none: true, ..shape() });
        assert!((p.tick(1.0, c, None).hitrate - 100.0 * 5.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn golden_status_csv() {
        let mut p = Progress::new(shape());
        let c = CounterSnapshot {
            sent: 18_601,
            active_senders: 1,
            send_failures: 2,
            recv_total: 7,
            success_unique: 3,
            kernel_drops: 1,
            ..Default::default()
        };
        let t = p.tick(1.0, c, None);
        let row = status_csv_row(&t, &at("2026-11-26T15:11:07+00:00"));
        assert_eq!(
            row,
            "2026-11-26 15:11:07,1,10,8.678106,0.016128,1,18601,18601,18601,3,3,3,7,7,7,1,1,1,2,2,2"
        );
        assert_eq!(row.split(',').count(), STATUS_CSV_HEADER.split(',').count());
        assert_eq!(STATUS_CSV_HEADER.split(',').count(), 21);
    }

    #[test]
    fn limits_trip_on_failures_and_sustained_low_hitrate() {
        let tick = |elapsed: f64, hitrate: f64, failures: u64| Tick {
            elapsed,
            hitrate,
            counters: CounterSnapshot { send_failures: failures, ..Default::default() },
            ..Tick::default()
        };
        let mut l = Limits::new(Some(10), 0.0);
        assert_eq!(l.check(&tick(1.0, 0.0, 10)), None);
        assert_eq!(
            l.check(&tick(2.0, 0.0, 11)).as_deref(),
            Some("maximum number of send failures (10) exceeded: 11")
        );
        let mut l = Limits::new(None, 1.0);
        assert_eq!(l.check(&tick(1.0, 0.0, 0)), None, "warm-up");
        assert_eq!(l.check(&tick(5.0, 0.5, 0)), None);
        assert_eq!(l.check(&tick(8.0, 0.5, 0)), None);
        assert_eq!(l.check(&tick(9.0, 2.0, 0)), None, "recovered");
        assert_eq!(l.check(&tick(10.0, 0.5, 0)), None);
        assert!(l.check(&tick(15.0, 0.5, 0)).is_some());
    }

    #[test]
    fn golden_log_line() {
        let t = at("2026-08-01T16:16:12.813+02:00");
        assert_eq!(
            log_line(&t, Level::Info, "zmap", "started"),
            "Aug 01 16:16:12.813 [INFO] zmap: started"
        );
        assert_eq!(
            log_line(&t, Level::Debug, "recv", "thread started"),
            "Aug 01 16:16:12.813 [DEBUG] recv: thread started"
        );
    }

    #[test]
    fn log_directory_file_name() {
        let t = at("2026-11-26T15:11:07-05:00");
        assert_eq!(log_file_name(&t), "zmap-2026-11-26T151107-0500.log");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logger_filters_by_verbosity() {
        let buf = Buf::default();
        let log = Logger::new(2, false, Box::new(buf.clone()));
        log.info("zmap", format_args!("hidden"));
        log.warn("send", format_args!("shown {}", 1));
        log.log(Level::Fatal, "zmap", format_args!("bye"));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [WARN] send: shown 1"), "{}", lines[0]);
        assert!(lines[1].ends_with(" [FATAL] zmap: bye"));
        // "Mon DD HH:MM:SS.mmm " is 19 characters.
        assert_eq!(lines[0].find(" [").unwrap(), 19);
    }

    #[test]
    fn golden_summary() {
        let s = Summary {
            target_port: "443".into(),
            source_port_first: 32768,
            source_port_last: 61000,
            source_addr_first: "1.1.1.4".into(),
            source_addr_last: "1.1.1.8".into(),
            maximum_packets: 4_294_967_295,
            maximum_runtime: 0,
            permutation_seed: 0,
            cooldown_period: 300,
            send_interface: "eth1".into(),
            rate: 45000,
            nprocessors: 16,
            send_start_time: Some(at("2013-01-18T01:47:35+00:00")),
            send_end_time: Some(at("2013-01-19T00:47:07+00:00")),
            recv_start_time: Some(at("2013-01-18T01:47:35+00:00")),
            recv_end_time: Some(at("2013-01-19T00:52:07+00:00")),
            sent: 3_722_335_150,
            blacklisted: 572_632_145,
            first_scanned: 1_318_129_262,
            hit_rate: 0.874102,
            success_name: "synack".into(),
            failure_name: "rst".into(),
            success_unique: 32_537_000,
            success_total: 36_689_941,
            cooldown_unique: 193,
            cooldown_total: 1543,
            failure_unique: 141_901_021,
            failure_total: 166_779_002,
            source_port_secret: 37952,
            permutation_gen: 4_215_763_218,
        };
        // The documentation's example, verbatim (tabs as in the spec).
        let expect = "cnf\ttarget-port\t\t\t\t443
cnf\tsource-port-range-begin\t\t\t32768
cnf\tsource-port-range-end\t\t\t61000
cnf\tsource-addr-range-begin\t\t\t1.1.1.4
cnf\tsource-addr-range-end\t\t\t1.1.1.8
cnf\tmaximum-packets\t\t\t\t4294967295
cnf\tmaximum-runtime\t\t\t\t0
cnf\tpermutation-seed\t\t\t0
cnf\tcooldown-period\t\t\t\t300
cnf\tsend-interface\t\t\t\teth1
cnf\trate\t\t\t\t\t45000
env\tnprocessors\t\t\t\t16
exc\tsend-start-time\t\t\t\tFri Jan 18 01:47:35 2013
exc\tsend-end-time\t\t\t\tSat Jan 19 00:47:07 2013
exc\trecv-start-time\t\t\t\tFri Jan 18 01:47:35 2013
exc\trecv-end-time\t\t\t\tSat Jan 19 00:52:07 2013
exc\tsent\t\t\t\t\t3722335150
exc\tblacklisted\t\t\t\t572632145
exc\tfirst-scanned\t\t\t\t1318129262
exc\thit-rate\t\t\t\t0.874102
exc\tsynack-received-unique\t\t\t32537000
exc\tsynack-received-total\t\t\t36689941
exc\tsynack-cooldown-received-unique\t\t193
exc\tsynack-cooldown-received-total\t\t1543
exc\trst-received-unique\t\t\t141901021
exc\trst-received-total\t\t\t166779002
adv\tsource-port-secret\t\t\t37952
adv\tpermutation-gen\t\t\t\t4215763218
";
        assert_eq!(s.render(), expect);
    }

    #[test]
    fn golden_metadata_keys() {
        let mut m = ScanMetadata {
            max_targets: -1,
            max_sendto_failures: -1,
            target_ports: vec![80],
            packet_streams: 1,
            send_start_time: metadata_time(&at("2026-11-26T15:11:07+01:00")),
            deduplication_method: "full".into(),
            deduplication_window_size: 1_000_000,
            ..Default::default()
        };
        let c = CounterSnapshot {
            sent: 200,
            success_unique: 3,
            success_total: 4,
            ..Default::default()
        };
        m.set_counters(&c, 2, false, false);
        let v: serde_json::Value = serde_json::from_str(&m.to_json_line()).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o["max_targets"], -1);
        assert_eq!(o["hitrate"], 3.0);
        assert_eq!(o["packets_sent"], 200);
        assert_eq!(o["send_start_time"], "2026-11-26T15:11:07+0100");
        assert_eq!(o["first_scanned"], 0);
        assert!(!o.contains_key("app_success_total"));
        assert!(!o.contains_key("notes"));
        for key in [
            "local_hostname",
            "full_hostname",
            "source_port_first",
            "source_port_last",
            "target_ports",
            "max_runtime",
            "max_results",
            "output_results",
            "iface",
            "rate",
            "bandwidth",
            "cooldown_secs",
            "senders",
            "seed",
            "seed_provided",
            "generator",
            "shard_num",
            "total_shards",
            "min_hitrate",
            "max_sendto_failures",
            "syslog",
            "default_mode",
            "pcap_recv",
            "pcap_drop",
            "pcap_ifdrop",
            "ip_fragments",
            "blocklist_total_allowed",
            "blocklist_total_not_allowed",
            "validation_passed",
            "validation_failed",
            "send_to_failures",
            "targets_scanned",
            "success_total",
            "success_unique",
            "success_cooldown_total",
            "success_cooldown_unique",
            "failure_total",
            "packet_streams",
            "probe_module",
            "output_module",
            "send_end_time",
            "recv_start_time",
            "recv_end_time",
            "gateway_mac",
            "gateway_ip",
            "source_mac",
            "source_ips",
            "dryrun",
            "quiet",
            "log_level",
            "deduplication_method",
            "deduplication_window_size",
            "blocklisted_networks",
            "allowlisted_networks",
        ] {
            assert!(o.contains_key(key), "missing {key}");
        }
        m.user_metadata = Some(serde_json::json!({"a": 1}));
        m.set_counters(&c, 1, false, true);
        let v: serde_json::Value = serde_json::from_str(&m.to_json_line()).unwrap();
        assert_eq!(v["user-metadata"]["a"], 1);
        assert_eq!(v["app_success_unique"], 0);
        assert!(!m.to_json_line().contains('\n'));
    }
}
