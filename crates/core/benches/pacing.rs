//! Pacing: achieved rate and CPU cost of the real sender loop, plus the cost of one poll.
//!
//! The first part runs the engine (dry run: a link that only counts, no receiver) over the
//! real clock and prints, per case, the achieved rate and the process CPU time it cost
//! (`getrusage`). The criterion part measures `Pacer::poll`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rzmap_core::engine::{Controls, EngineConfig, SenderSetup};
use rzmap_core::rate::{Pacer, RateControl};
use rzmap_core::target::Target;

#[path = "support/engine_stubs.rs"]
mod engine_stubs;
use engine_stubs::CountingTx;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage owned by this frame.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

type Builder = fn(&mut [u8], &Target, u32, Ipv4Addr) -> usize;
type Source = Box<dyn FnMut() -> Option<Target> + Send>;

fn build(buf: &mut [u8], t: &Target, _p: u32, _s: Ipv4Addr) -> usize {
    buf[0] = t.port as u8;
    60
}

fn paced_run(rate: u64, threads: u32, probes: u64) {
    let ctl = Controls::new(rate);
    let cfg = EngineConfig { cooldown: Duration::ZERO, ..EngineConfig::default() };
    let per = probes / u64::from(threads);
    let senders: Vec<SenderSetup<Source, Builder, CountingTx>> = (0..threads)
        .map(|_| {
            let mut left = per;
            let targets: Source = Box::new(move || {
                left = left.checked_sub(1)?;
                Some(Target::v4(left as u32, 80))
            });
            SenderSetup { targets, builder: build as Builder, tx: CountingTx }
        })
        .collect();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let r = engine_stubs::run_senders(&cfg, &ctl, senders);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let sent = r.counters.sent;
    // The first burst goes out at t=0, so n packets span (n-1)/rate seconds.
    let achieved = (sent.saturating_sub(1)) as f64 / wall;
    let err = if rate > 0 { 100.0 * (achieved - rate as f64) / rate as f64 } else { 0.0 };
    println!(
        "pacing: rate {rate:>8} pps, {threads} thread(s), {sent:>7} probes: {wall:6.3} s wall, achieved {achieved:>10.0} pps ({err:+.2}%), CPU {cpu:.3} s"
    );
}

fn main() {
    // The real-clock runs take about 20 s: only under `cargo bench` (which passes `--bench`),
    // not under `cargo test --all-targets`; `cargo bench -- poll` or `-- send_loop` runs only
    // that criterion part.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "poll" || a == "send_loop")
    {
        paced_run(1, 1, 4);
        paced_run(100, 1, 200);
        paced_run(10_000, 1, 65_536);
        paced_run(10_000, 4, 65_536);
        paced_run(100_000, 2, 200_000);
        paced_run(1_000_000, 1, 1_000_000);
        paced_run(0, 1, 1_000_000);
    }
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("pacer_poll_1mpps", |b| {
        let control = RateControl::new(1_000_000);
        let mut p = Pacer::new(&control, 1, Instant::now());
        b.iter(|| {
            let r = p.poll(&control, black_box(Instant::now()));
            if let rzmap_core::rate::Pace::Send(n) = r {
                p.sent(n);
            }
            r
        })
    });
    // The whole send loop at no rate limit (source, builder, batching, counters), without the
    // real-clock runs' 20 s: `cargo bench --bench pacing -- send_loop`.
    c.bench_function("send_loop_unlimited_100k", |b| {
        b.iter(|| {
            let ctl = Controls::new(0);
            let cfg = EngineConfig { cooldown: Duration::ZERO, ..EngineConfig::default() };
            let mut left = 100_000u32;
            let targets: Source = Box::new(move || {
                left = left.checked_sub(1)?;
                Some(Target::v4(left, 80))
            });
            let senders = vec![SenderSetup { targets, builder: build as Builder, tx: CountingTx }];
            engine_stubs::run_senders(&cfg, &ctl, senders).counters.sent
        })
    });
    c.final_summary();
}
