//! Engine tests over the in-memory [`LoopbackNet`].
//!
//! The test "probe" is a 14-byte frame: destination address (4 bytes), port (2), probe number
//! (4), source address (4). The truth: hosts with `addr % 3 == 0` answer with a success,
//! `addr % 3 == 1` with a failure, the rest are silent. A reply is 7 bytes: source address,
//! source port, and 1 (success) or 0 (failure); anything else fails validation.

use super::*;
use crate::link::{LoopbackNet, LoopbackRx, LoopbackTx};
use crate::rate::SystemClock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

fn build(buf: &mut [u8], t: &Target, probe: u32, src: Ipv4Addr) -> usize {
    let IpAddr::V4(a) = t.addr else { return 0 };
    buf[..4].copy_from_slice(&a.octets());
    buf[4..6].copy_from_slice(&t.port.to_be_bytes());
    buf[6..10].copy_from_slice(&probe.to_be_bytes());
    buf[10..14].copy_from_slice(&src.octets());
    14
}

type Builder = fn(&mut [u8], &Target, u32, Ipv4Addr) -> usize;

struct Frame {
    dst: u32,
    port: u16,
    probe: u32,
    src: Ipv4Addr,
}

fn parse_frame(f: &[u8]) -> Frame {
    Frame {
        dst: u32::from_be_bytes([f[0], f[1], f[2], f[3]]),
        port: u16::from_be_bytes([f[4], f[5]]),
        probe: u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
        src: Ipv4Addr::new(f[10], f[11], f[12], f[13]),
    }
}

fn truth(frame: &[u8], out: &mut dyn FnMut(Vec<u8>)) {
    let dst = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    match dst % 3 {
        0 => out([&frame[..6], &[1u8][..]].concat()),
        1 => out([&frame[..6], &[0u8][..]].concat()),
        _ => {}
    }
}

type Emitted = Arc<Mutex<Vec<(u32, u16, bool, ResponseFlags)>>>;

#[derive(Default)]
struct Handler {
    emitted: Emitted,
    flushes: Arc<AtomicU64>,
}

impl ResponseHandler for Handler {
    fn classify(&mut self, p: &[u8], _ts: SystemTime) -> Option<Verdict> {
        if p.len() != 7 {
            return None;
        }
        Some(Verdict {
            src_ip: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            src_port: u16::from_be_bytes([p[4], p[5]]),
            success: p[6] == 1,
            app_success: false,
        })
    }
    fn emit(&mut self, _p: &[u8], _ts: SystemTime, v: &Verdict, f: ResponseFlags) -> bool {
        self.emitted.lock().unwrap().push((v.src_ip, v.src_port, v.success, f));
        true
    }
    fn flush(&mut self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }
}

type Source = Box<dyn FnMut() -> Option<Target> + Send>;

fn list_source(addrs: Vec<u32>, port: u16) -> Source {
    let mut it = addrs.into_iter();
    Box::new(move || it.next().map(|a| Target::v4(a, port)))
}

/// 0x0A000000 + i for i in 0..n.
fn addrs(n: u32) -> Vec<u32> {
    (0..n).map(|i| 0x0A00_0000 + i).collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        cooldown: Duration::from_millis(50),
        batch_size: 16,
        monitor_interval: Duration::from_millis(20),
        ..EngineConfig::default()
    }
}

struct Outcome {
    report: ScanReport<Source>,
    frames: Vec<Frame>,
    emitted: Vec<(u32, u16, bool, ResponseFlags)>,
    ticks: Vec<MonitorTick>,
    elapsed: Duration,
    delivered: u64,
}

fn scan(
    cfg: &EngineConfig,
    ctl: &Controls,
    net: &LoopbackNet,
    sources: Vec<Source>,
    receive: bool,
) -> Outcome {
    let senders: Vec<SenderSetup<Source, Builder, LoopbackTx>> = sources
        .into_iter()
        .map(|targets| SenderSetup { targets, builder: build as Builder, tx: net.tx() })
        .collect();
    let handler = Handler::default();
    let emitted = Arc::clone(&handler.emitted);
    let receiver: Option<ReceiverSetup<LoopbackRx, Handler>> =
        receive.then(|| ReceiverSetup { rx: net.rx(), handler });
    let mut ticks = Vec::new();
    let start = Instant::now();
    let report = run(cfg, ctl, &SystemClock, senders, receiver, |t: &MonitorTick| ticks.push(*t));
    let elapsed = start.elapsed();
    let frames = net.sent_frames().iter().map(|f| parse_frame(f)).collect();
    let emitted = emitted.lock().unwrap().clone();
    Outcome { report, frames, emitted, ticks, elapsed, delivered: net.delivered() }
}

#[test]
fn every_target_is_probed_once_and_results_are_counted() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let o = scan(&config(), &ctl, &net, vec![list_source(addrs(1000), 80)], true);
    let sent: BTreeSet<u32> = o.frames.iter().map(|f| f.dst).collect();
    assert_eq!(o.frames.len(), 1000);
    assert_eq!(sent, addrs(1000).into_iter().collect());
    assert!(o.frames.iter().all(|f| f.port == 80 && f.probe == 0));
    let c = o.report.counters;
    let successes = addrs(1000).iter().filter(|a| *a % 3 == 0).count() as u64;
    let failures = addrs(1000).iter().filter(|a| *a % 3 == 1).count() as u64;
    assert_eq!(c.sent, 1000);
    assert_eq!(c.targets_scanned, 1000);
    assert_eq!(c.success_total, successes);
    assert_eq!(c.success_unique, successes);
    assert_eq!(c.failure_total, failures);
    assert_eq!(c.validation_passed, successes + failures);
    assert_eq!(c.recv_total, successes + failures);
    // Default mode: only unique successes reach the output.
    assert_eq!(o.emitted.len() as u64, successes);
    assert!(o.emitted.iter().all(|e| e.2 && !e.3.repeat));
    assert_eq!(c.filter_success, successes);
    assert_eq!(o.report.reason, StopReason::Completed);
    assert!(o.report.senders[0].exhausted);
    assert_eq!(c.active_senders, 0);
    assert!(o.elapsed >= Duration::from_millis(50), "cooldown observed");
}

#[test]
fn two_senders_split_the_work() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let all = addrs(2000);
    let even: Vec<u32> = all.iter().copied().filter(|a| a % 2 == 0).collect();
    let odd: Vec<u32> = all.iter().copied().filter(|a| a % 2 == 1).collect();
    let o = scan(&config(), &ctl, &net, vec![list_source(even, 443), list_source(odd, 443)], true);
    let mut count: BTreeMap<u32, u32> = BTreeMap::new();
    for f in &o.frames {
        *count.entry(f.dst).or_default() += 1;
    }
    assert_eq!(count.len(), 2000);
    assert!(count.values().all(|&n| n == 1));
    assert_eq!(o.report.senders.len(), 2);
    assert_eq!(o.report.senders[0].sent, 1000);
    assert_eq!(o.report.senders[1].sent, 1000);
    assert_eq!(o.report.counters.sent, 2000);
}

#[test]
fn probes_per_target_go_back_to_back_with_rotating_sources() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let srcs = vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
    let cfg = EngineConfig { probes_per_target: 3, src_ips: srcs.clone(), ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(100), 80)], true);
    assert_eq!(o.frames.len(), 300);
    for (i, f) in o.frames.iter().enumerate() {
        assert_eq!(f.dst, addrs(100)[i / 3]);
        assert_eq!(f.probe, (i % 3) as u32);
        assert_eq!(f.src, srcs[((f.dst as usize) + (i % 3)) % 2]);
    }
    let c = o.report.counters;
    let hosts = addrs(100).iter().filter(|a| *a % 3 == 0).count() as u64;
    assert_eq!(c.success_total, 3 * hosts);
    assert_eq!(c.success_unique, hosts);
    assert_eq!(c.targets_scanned, 100);
    assert_eq!(o.emitted.len() as u64, hosts, "repeats dropped in default mode");
}

#[test]
fn outside_default_mode_every_validated_response_is_emitted_with_flags() {
    let net = LoopbackNet::new(Duration::ZERO, |f: &[u8], out: &mut dyn FnMut(Vec<u8>)| {
        truth(f, out);
        out(vec![0xde, 0xad]); // junk: fails validation
    });
    let ctl = Controls::new(0);
    let cfg = EngineConfig {
        probes_per_target: 2,
        drop_failures_and_repeats: false,
        dedup: DedupMethod::Window,
        dedup_window_size: 1000,
        ..config()
    };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(30), 80)], true);
    let c = o.report.counters;
    assert_eq!(c.validation_failed, 60);
    assert_eq!(c.validation_passed, 40); // 10 successes + 10 failures, twice each
    assert_eq!(o.emitted.len(), 40);
    assert_eq!(o.emitted.iter().filter(|e| e.3.repeat).count(), 20);
    assert_eq!(c.failure_unique, 10);
}

#[test]
fn max_results_stops_senders_at_once_without_cooldown() {
    let net = LoopbackNet::new(Duration::ZERO, |f: &[u8], out: &mut dyn FnMut(Vec<u8>)| {
        out([&f[..6], &[1u8][..]].concat())
    });
    let ctl = Controls::new(20_000);
    let cfg = EngineConfig { max_results: Some(10), cooldown: Duration::from_secs(30), ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(100_000), 80)], true);
    assert_eq!(o.report.reason, StopReason::MaxResults);
    assert_eq!(o.report.counters.filter_success, 10);
    assert_eq!(o.emitted.len(), 10);
    assert!(o.report.counters.sent < 50_000, "{}", o.report.counters.sent);
    assert!(o.elapsed < Duration::from_secs(5), "no cooldown: {:?}", o.elapsed);
    assert!(!o.report.senders[0].exhausted);
}

#[test]
fn max_runtime_stops_sending_and_the_cooldown_follows() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(1000);
    let cfg = EngineConfig {
        max_runtime: Some(Duration::from_millis(300)),
        cooldown: Duration::from_millis(200),
        ..config()
    };
    let mut next = 0x0A00_0000u32;
    let endless: Source = Box::new(move || {
        next += 1;
        Some(Target::v4(next, 80))
    });
    let o = scan(&cfg, &ctl, &net, vec![endless], true);
    assert!(o.report.max_runtime_hit);
    assert_eq!(o.report.reason, StopReason::Completed);
    let sent = o.report.counters.sent;
    // 300 ms at 1000 pps; fewer if the machine is loaded, never more.
    assert!((50..=400).contains(&sent), "{sent}");
    assert!(o.elapsed >= Duration::from_millis(500), "{:?}", o.elapsed);
}

#[test]
fn cooldown_collects_late_replies_and_marks_them() {
    let ctl = Controls::new(0);
    let net = LoopbackNet::new(Duration::from_millis(100), truth);
    let cfg = EngineConfig { cooldown: Duration::from_millis(400), ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(30), 80)], true);
    let c = o.report.counters;
    assert_eq!(c.success_unique, 10);
    assert_eq!(c.cooldown_unique, 10);
    assert!(o.emitted.iter().all(|e| e.3.cooldown));
    assert!(o.elapsed >= Duration::from_millis(400));

    // Without a cooldown the late replies are never read.
    let ctl = Controls::new(0);
    let net = LoopbackNet::new(Duration::from_millis(1000), truth);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(30), 80)], true);
    assert!(o.elapsed < Duration::from_millis(1000));
    assert_eq!(o.report.counters.success_total, 0);
}

#[test]
fn stop_flag_ends_the_scan_and_keeps_every_received_result() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(2000);
    let cfg = EngineConfig {
        cooldown: Duration::from_secs(30),
        drop_failures_and_repeats: false,
        ..config()
    };
    let o = std::thread::scope(|s| {
        let ctl = &ctl;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            ctl.request_stop();
        });
        scan(&cfg, ctl, &net, vec![list_source(addrs(1_000_000), 80)], true)
    });
    assert_eq!(o.report.reason, StopReason::Interrupted);
    assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
    let c = o.report.counters;
    assert!(c.sent > 0 && c.sent < 10_000, "{}", c.sent);
    assert_eq!(o.emitted.len() as u64, c.validation_passed);
    assert_eq!(c.validation_passed, o.delivered, "every delivered reply was handled");
    let st = o.report.senders[0];
    assert!(!st.exhausted);
    assert_eq!(st.targets, c.targets_scanned);
    // The handed-back source continues right after the last target started.
    let mut src = o.report.sources.into_iter().next().unwrap();
    assert_eq!(src(), Some(Target::v4(0x0A00_0000 + st.targets as u32, 80)));
}

#[test]
fn dry_run_without_receiver_needs_no_cooldown() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let cfg = EngineConfig { cooldown: Duration::from_secs(30), ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(500), 80)], false);
    assert_eq!(o.report.counters.sent, 500);
    assert_eq!(o.report.counters.validation_passed, 0);
    assert_eq!(o.report.reason, StopReason::Completed);
    assert!(o.elapsed < Duration::from_secs(5));
}

#[test]
fn send_failures_are_counted() {
    let net = LoopbackNet::with_failures(Duration::ZERO, 10, truth);
    let ctl = Controls::new(0);
    let o = scan(&config(), &ctl, &net, vec![list_source(addrs(1000), 80)], true);
    assert_eq!(o.report.counters.send_failures, 100);
    assert_eq!(o.report.counters.sent, 900);
    assert_eq!(o.report.senders[0].failed, 100);
}

#[test]
fn pacing_and_monitor_ticks_over_a_real_clock() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(1000);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(300), 80)], true);
    // 300 packets at 1000 pps: about 0.3 s.
    assert!(o.elapsed >= Duration::from_millis(290), "{:?}", o.elapsed);
    assert!(o.elapsed < Duration::from_secs(3), "{:?}", o.elapsed);
    assert!(o.ticks.len() >= 5, "{}", o.ticks.len());
    for w in o.ticks.windows(2) {
        assert!(w[0].counters.sent <= w[1].counters.sent);
        assert!(w[0].elapsed < w[1].elapsed);
    }
    // Partial batches were flushed before each wait: replies arrived while sending.
    assert!(o.ticks.iter().any(|t| t.send_finished.is_none() && t.counters.success_total > 0));
}

#[test]
fn source_address_rotation() {
    let srcs = [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2), Ipv4Addr::new(3, 3, 3, 3)];
    let t = Target::v4(10, 0);
    assert_eq!(source_ip(&srcs, &t, 0), srcs[1]);
    assert_eq!(source_ip(&srcs, &t, 1), srcs[2]);
    assert_eq!(
        source_ip(&srcs, &Target::v4(u32::MAX, 0), 1),
        srcs[(0x1_0000_0000u64 % 3) as usize]
    );
    assert_eq!(source_ip(&[], &t, 0), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn rate_changes_take_effect_while_sending() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(500);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..config() };
    let o = std::thread::scope(|s| {
        let ctl = &ctl;
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            ctl.rate.set(0);
        });
        scan(&cfg, ctl, &net, vec![list_source(addrs(20_000), 80)], true)
    });
    // At 500 pps this would take 40 s; unlimited after 0.1 s it takes a moment.
    assert_eq!(o.report.counters.sent, 20_000);
    assert!(o.elapsed < Duration::from_secs(10), "{:?}", o.elapsed);
}

#[test]
fn senders_share_the_global_rate() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(2000);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..config() };
    let all = addrs(800);
    let (a, b) = all.split_at(400);
    let o = scan(
        &cfg,
        &ctl,
        &net,
        vec![list_source(a.to_vec(), 80), list_source(b.to_vec(), 80)],
        true,
    );
    assert_eq!(o.report.counters.sent, 800);
    // 800 probes at 2000 pps in total: about 0.4 s, not 0.2 s (each at the full rate).
    assert!(o.elapsed >= Duration::from_millis(380), "{:?}", o.elapsed);
    assert!(o.elapsed < Duration::from_secs(4), "{:?}", o.elapsed);
}

#[test]
fn monitor_ticks_feed_the_status_line() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(1000);
    let cfg = EngineConfig { cooldown: Duration::from_millis(100), ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(200), 80)], true);
    let mut progress = crate::monitor::Progress::new(crate::monitor::ScanShape {
        probes_per_target: 1,
        expected_probes: Some(200),
        cooldown_secs: 0,
        ..Default::default()
    });
    let last = o.ticks.iter().map(|t| t.report(&mut progress)).last().unwrap();
    let line = crate::monitor::status_line(&last, false);
    assert!(line.starts_with(" 0:00 "), "{line}");
    assert!(line.contains("; send: 200 done ("), "{line}");
}

#[test]
fn a_stop_inside_a_target_leaves_its_remaining_probes_pending() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let cfg = EngineConfig { probes_per_target: 3, ..config() };
    let ctl_ref = &ctl;
    // The builder raises the stop flag while building probe 1 of the first target. The
    // sender honours it once the group of probes it gathered is built: GROUP probes, which
    // with 3 probes per target ends inside target GROUP / 3.
    let builder = move |buf: &mut [u8], t: &Target, probe: u32, src: Ipv4Addr| {
        if *t == Target::v4(0x0A00_0000, 80) && probe == 1 {
            ctl_ref.request_stop();
        }
        build(buf, t, probe, src)
    };
    let senders = vec![SenderSetup { targets: list_source(addrs(100), 80), builder, tx: net.tx() }];
    let none: Option<ReceiverSetup<LoopbackRx, Handler>> = None;
    let report = run(&cfg, &ctl, &SystemClock, senders, none, |_| {});
    let st = report.senders[0];
    let (last, next) = ((GROUP / 3) as u32, (GROUP % 3) as u32);
    assert!(next > 0, "the group must end inside a target for this test");
    assert_eq!(st.pending, Some((Target::v4(0x0A00_0000 + last, 80), next)));
    assert_eq!((st.targets, st.sent), (u64::from(last) + 1, GROUP as u64));
    assert!(!st.exhausted);
    assert_eq!(report.counters.targets_scanned, u64::from(last) + 1);
    assert_eq!(report.counters.sent, GROUP as u64);
    assert_eq!(net.sent_frames().len(), GROUP);
}

#[test]
fn targets_without_frames_are_counted_but_not_sent() {
    // The test builder makes nothing for IPv6 targets (as the probe modules do).
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(0);
    let v6 = Target { addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port: 80 };
    let mut list = vec![Target::v4(0x0A00_0001, 80), v6, Target::v4(0x0A00_0002, 81)].into_iter();
    let source: Source = Box::new(move || list.next());
    let cfg = EngineConfig { probes_per_target: 2, ..config() };
    let o = scan(&cfg, &ctl, &net, vec![source], false);
    let got: Vec<(u32, u16, u32)> = o.frames.iter().map(|f| (f.dst, f.port, f.probe)).collect();
    let a = 0x0A00_0001;
    assert_eq!(got, [(a, 80, 0), (a, 80, 1), (a + 1, 81, 0), (a + 1, 81, 1)]);
    assert_eq!(o.report.counters.targets_scanned, 3);
    assert_eq!(o.report.counters.sent, 4);
    assert_eq!(o.report.senders[0].pending, None);
    assert!(o.report.senders[0].exhausted);
}

#[test]
fn target_counts_reach_the_monitor_while_sending() {
    let net = LoopbackNet::new(Duration::ZERO, truth);
    let ctl = Controls::new(500);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..config() };
    let o = scan(&cfg, &ctl, &net, vec![list_source(addrs(100), 80)], false);
    let during: Vec<u64> = o
        .ticks
        .iter()
        .filter(|t| t.send_finished.is_none())
        .map(|t| t.counters.targets_scanned)
        .collect();
    assert!(during.iter().any(|&n| n > 0 && n < 100), "{during:?}");
    assert!(during.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(o.report.counters.targets_scanned, 100);
}

#[test]
fn one_source_address_serves_every_probe() {
    let one = [Ipv4Addr::new(198, 18, 0, 9)];
    for (addr, probe) in [(0, 0), (7, 3), (u32::MAX, u32::MAX)] {
        assert_eq!(source_ip(&one, &Target::v4(addr, 1), probe), one[0]);
    }
}
