//! `--fast-dryrun` throughput on one sender thread: the real assembly (plan, scan order,
//! pacing at `-r 0`), the fast-dryrun record builder and link as the binary pairs them,
//! writing to a sink instead of standard output. `scripts/bench-fast-dryrun.sh` measures the
//! binary itself.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap::scan::dryrun::{FAST_RECORD, FastDryRun, FastRecordBuilder, StdoutSlot};
use rzmap::scan::live::NoRx;
use rzmap_core::engine::{
    self, Controls, ReceiverSetup, ResponseFlags, ResponseHandler, SenderSetup, Verdict,
};

struct NoHandler;
impl ResponseHandler for NoHandler {
    fn classify(&mut self, _: &[u8], _: std::time::SystemTime) -> Option<Verdict> {
        None
    }
    fn emit(&mut self, _: &[u8], _: std::time::SystemTime, _: &Verdict, _: ResponseFlags) -> bool {
        false
    }
}

/// Runs one fast dry run of `args` to a sink and returns the number of probes.
fn fast_dryrun(args: &[&str]) -> u64 {
    let argv: Vec<std::ffi::OsString> =
        std::iter::once("rzmap").chain(args.iter().copied()).map(Into::into).collect();
    let parsed = rzmap::args::parse(&argv).expect("arguments");
    let config = rzmap::config::resolve(&parsed.args, || Ok(1)).expect("config");
    let plan = rzmap::plan::plan(config, &|_| Err("no DNS".into())).expect("plan");
    let module: Arc<dyn rzmap_core::probe::ProbeModule> = Arc::from(
        rzmap_core::probe::create(&plan.config.probe_module, plan.config.probe_args.as_deref())
            .expect("module"),
    );
    let addr = rzmap::scan::Addressing::from_flags(&plan.config);
    let asm = rzmap::scan::assemble(
        &plan.config,
        &module,
        &plan.targets,
        &plan.ports,
        plan.max_targets,
        1,
        plan.config.batch,
        plan.dedup,
        true,
        &addr,
        rzmap_core::validate::Validator::new([3; 16]),
    )
    .expect("assembly");
    let ctl = Controls::new(0);
    let slot = StdoutSlot::new(Box::new(std::io::sink()), Arc::clone(&ctl));
    let senders = asm
        .subshards
        .into_iter()
        .map(|targets| SenderSetup {
            targets,
            builder: FastRecordBuilder,
            tx: FastDryRun::new(Arc::clone(&slot)),
        })
        .collect();
    let mut cfg = asm.engine;
    cfg.slot_size = FAST_RECORD;
    cfg.monitor_interval = Duration::from_secs(3600);
    let none: Option<ReceiverSetup<NoRx, NoHandler>> = None;
    let report = engine::run(&cfg, &ctl, &rzmap_core::rate::SystemClock, senders, none, |_| {});
    report.counters.sent
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fast_dryrun");
    g.sample_size(10);
    // 2^24 targets of a /8, one port. (A smaller space walks the same cyclic group, of order
    // 2^24 + 43, and skips what lies outside: a /12 costs about half the time of the /8.)
    let args = ["-r", "0", "-T", "1", "-e", "1", "-p", "80", "-b", "/dev/null", "10.0.0.0/8"];
    g.throughput(Throughput::Elements(1 << 24));
    g.bench_function("tcp_synscan_16M_targets_1_thread", |b| {
        b.iter(|| assert_eq!(black_box(fast_dryrun(&args)), 1 << 24))
    });
    let args =
        ["-r", "0", "-T", "1", "-e", "1", "-M", "icmp_echoscan", "-b", "/dev/null", "10.0.0.0/8"];
    g.bench_function("icmp_echoscan_16M_targets_1_thread", |b| {
        b.iter(|| assert_eq!(black_box(fast_dryrun(&args)), 1 << 24))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
