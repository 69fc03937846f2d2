//! The sender thread's own work per probe, end to end, as in the sink lab's scan: ZMap-order
//! targets of a /16 × 64 ports (2^22 targets in the group of order 2^24+43, so three of four
//! cycle elements are skipped), tcp_synscan frames built in groups, batches of 64 handed to a
//! link that copies each frame into a 4 MiB ring of 2 KiB chunks (the AF_XDP sender's copy
//! into its UMEM) and sends nothing.
//!
//! This is the user-space part of a lab send; the kernel part is the same for every sender,
//! so a change here moves the lab's rzmap/blaster ratio. It prints, per stage and median of
//! the runs, nanoseconds of CPU per probe: the walk alone, walk + build, and walk + build +
//! copy.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rzmap_core::addr::{TargetSpace, parse_prefix};
use rzmap_core::aesrand::AesRand;
use rzmap_core::engine::{Controls, EngineConfig, FrameBuilder, SenderSetup};
use rzmap_core::iter::{ScanOrder, Subshard};
use rzmap_core::link::{FrameBatch, PacketTx, SendOutcome};
use rzmap_core::probe::adapter::ProbeSender;
use rzmap_core::probe::{self, ProbeConfig, ProbeModule};
use rzmap_core::validate::Validator;

#[path = "support/engine_stubs.rs"]
mod engine_stubs;
use engine_stubs::CountingTx;

const CHUNK: usize = 2048;
const CHUNKS: usize = 2048;

/// Copies every frame into the next chunk of a ring, as the AF_XDP sender does.
struct CopyTx {
    ring: Vec<u8>,
    next: usize,
}

impl PacketTx for CopyTx {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        for f in batch.frames() {
            let at = self.next * CHUNK;
            self.ring[at..at + f.len()].copy_from_slice(f);
            self.next = (self.next + 1) % CHUNKS;
        }
        std::hint::black_box(&self.ring);
        SendOutcome { sent: batch.len() as u32, failed: 0 }
    }
}

/// CPU time of the calling thread (the engine runs its sender on another thread, so the
/// process clock is used around whole runs instead).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn subshard() -> Subshard {
    let allow = [parse_prefix("198.18.0.0/16").unwrap()];
    let space = Arc::new(TargetSpace::new(Some(&allow), &[]));
    let ports: Vec<u16> = (1000..1064).collect();
    let order = ScanOrder::new(space, ports, &mut AesRand::from_seed(1)).unwrap();
    order.subshard(0, 1, 0, 1, None).unwrap()
}

fn sender(module: &Arc<dyn ProbeModule>) -> ProbeSender {
    let cfg = ProbeConfig {
        target_ports: (1000..1064).collect(),
        ..ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    };
    ProbeSender::new(
        Arc::clone(module),
        Arc::new(cfg),
        Validator::new([9; 16]),
        AesRand::from_seed(1),
    )
}

/// One engine run of the whole scan; returns (probes, CPU time).
fn engine_run<B: FrameBuilder, T: PacketTx>(builder: B, tx: T, slot: usize) -> (u64, Duration) {
    let ctl = Controls::new(0);
    let cfg = EngineConfig {
        cooldown: Duration::ZERO,
        src_ips: vec![Ipv4Addr::new(198, 19, 255, 254)],
        batch_size: 64,
        slot_size: slot,
        ..EngineConfig::default()
    };
    let senders = vec![SenderSetup { targets: subshard(), builder, tx }];
    let c0 = process_cpu();
    let r = engine_stubs::run_senders(&cfg, &ctl, senders);
    (r.counters.sent, process_cpu() - c0)
}

fn walk_only() -> (u64, Duration) {
    let mut s = subshard();
    let c0 = process_cpu();
    let mut n = 0u64;
    let mut acc = 0u32;
    while let Some((ip, port)) = s.next_target() {
        acc ^= ip ^ u32::from(port);
        n += 1;
    }
    std::hint::black_box(acc);
    (n, process_cpu() - c0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // Under `cargo test --all-targets` (no `--bench`) one short pass proves it runs.
    let bench = std::env::args().any(|a| a == "--bench");
    let runs = if bench { 7 } else { 0 };
    let module: Arc<dyn ProbeModule> = probe::create("tcp_synscan", None).unwrap().into();
    let slot = module.max_frame_len().max(64).next_multiple_of(64);
    if runs == 0 {
        let (n, _) = walk_only();
        assert_eq!(n, 1 << 22);
        return;
    }
    let per = |f: &dyn Fn() -> (u64, Duration)| {
        median(
            (0..runs)
                .map(|_| {
                    let (n, cpu) = f();
                    assert_eq!(n, 1 << 22, "every target once");
                    cpu.as_nanos() as f64 / n as f64
                })
                .collect(),
        )
    };
    let walk = per(&walk_only);
    let build = per(&|| engine_run(sender(&module), CountingTx, slot));
    let copy = per(&|| {
        engine_run(sender(&module), CopyTx { ring: vec![0; CHUNK * CHUNKS], next: 0 }, slot)
    });
    println!(
        "send_path (/16 x 64 ports, 4,194,304 tcp_synscan probes, median of {runs} runs, CPU ns per probe):"
    );
    println!("  walk only               {walk:6.1}");
    println!("  walk + build            {build:6.1}");
    println!("  walk + build + copy     {copy:6.1}");
}
