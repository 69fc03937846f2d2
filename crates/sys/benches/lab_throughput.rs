//! Send and receive throughput over the lab's veth pair (needs root; prints figures).
//!
//! `cargo bench -p rzmap-sys --bench lab_throughput` sends 64-frame `sendmmsg` batches of
//! 54-byte SYN-ACK frames from namespace A for ~2 s while a TPACKET_V3 ring with the TCP
//! filter counts them in namespace B. Skipped with `RZMAP_SKIP_LAB=1`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rzmap_core::link::{FrameBatch, SLOT_SIZE};
use rzmap_sys::bpf::{self, FilterKind, FilterSpec, LinkLayer};
use rzmap_sys::discovery;
use rzmap_sys::ring::{PacketRing, RingConfig};
use rzmap_sys::send::AfPacketSender;

/// Appends a frame to an engine batch; false when the batch is full.
fn push(batch: &mut FrameBatch, frame: &[u8]) -> bool {
    if batch.is_full() || frame.len() > SLOT_SIZE {
        return false;
    }
    batch.next_slot()[..frame.len()].copy_from_slice(frame);
    batch.commit(frame.len());
    true
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs a 100 ms smoke run.
    let run_for = if std::env::args().any(|a| a == "--bench") {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(100)
    };
    let Some(lab) = Lab::new() else { return };
    let (va, vb) = (lab.veth_a.clone(), lab.veth_b.clone());
    let if_a = lab.in_ns(&lab.ns_a, move || discovery::link_by_name(&va).unwrap().index);
    let if_b = lab.in_ns(&lab.ns_b, move || discovery::link_by_name(&vb).unwrap().index);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(IP_A.octets(), IP_B.octets(), 64)
        .tcp(80, 40000, 1, 1024)
        .syn()
        .ack(1)
        .write(&mut frame, &[])
        .unwrap();
    let frame = frame[..54].to_vec();
    for qdisc_bypass in [false, true] {
        let frame = frame.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx_ready, rx_ready) = std::sync::mpsc::channel();
        let stop_rx = Arc::clone(&stop);
        let receiver = lab.spawn_in_ns(&lab.ns_b, move || {
            let spec = FilterSpec {
                kind: FilterKind::Tcp,
                link: LinkLayer::Ethernet,
                our_mac: Some(MAC_B),
                snaplen: 96,
            };
            let mut ring =
                PacketRing::open(if_b, &bpf::program(&spec), &RingConfig::default()).unwrap();
            tx_ready.send(()).unwrap();
            let mut n = 0u64;
            let mut bytes = 0u64;
            while !stop_rx.load(Ordering::Relaxed) {
                ring.wait(Duration::from_millis(10)).unwrap();
                n += ring.next_batch(|f, _| bytes += f.len() as u64) as u64;
            }
            // Drain what is left.
            let end = Instant::now() + Duration::from_millis(100);
            while Instant::now() < end {
                ring.wait(Duration::from_millis(10)).unwrap();
                n += ring.next_batch(|f, _| bytes += f.len() as u64) as u64;
            }
            (n, ring.stats().unwrap())
        });
        rx_ready.recv().unwrap();
        let (sent, failed, secs) = lab.in_ns(&lab.ns_a, move || {
            let mut tx = AfPacketSender::open(if_a, MAC_B).unwrap();
            tx.set_qdisc_bypass(qdisc_bypass).unwrap();
            let mut batch = FrameBatch::new(64, SLOT_SIZE);
            while push(&mut batch, &frame) {}
            let (mut sent, mut failed) = (0u64, 0u64);
            let start = Instant::now();
            while start.elapsed() < run_for {
                let o = tx.send_from(batch.frames());
                sent += o.sent as u64;
                failed += o.failed as u64;
            }
            (sent, failed, start.elapsed().as_secs_f64())
        });
        stop.store(true, Ordering::Relaxed);
        let (received, stats) = receiver.join().unwrap();
        println!(
            "qdisc_bypass={qdisc_bypass}: sent {sent} ({:.0} pps), failed {failed}; ring saw {received} ({:.0} pps), kernel packets {} drops {}",
            sent as f64 / secs,
            received as f64 / secs,
            stats.packets,
            stats.drops
        );
    }
}
