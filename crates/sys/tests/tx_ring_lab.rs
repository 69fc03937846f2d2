//! Privileged tests of the TPACKET_V2 transmit ring in the two-namespace lab (see `common`).
//! They fail when the lab cannot be built, unless `RZMAP_SKIP_LAB=1`. Every socket is opened
//! on a thread that has entered one of the lab's namespaces (checked before any test code).

mod common;

use std::time::Duration;

use common::*;
use rzmap_core::link::{FrameBatch, SLOT_SIZE};
use rzmap_sys::discovery;
use rzmap_sys::tx_ring::{TxRingConfig, TxRingSender};

#[test]
fn tx_ring_frames_all_arrive_in_order_with_their_bytes() {
    let Some(lab) = Lab::new() else { return };
    // 700 frames through a 64-slot ring: it wraps many times and waits for released slots.
    let frames: Vec<Vec<u8>> = (0..700u32).map(|i| synack(i, (i as usize * 7) % 300)).collect();
    let (ready, receiver) = receive_on_b(&lab, frames.len(), Duration::from_millis(200));
    ready.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let dev = lab.veth_a.clone();
    let sent = frames.clone();
    let outcomes = lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let mut outcomes = Vec::new();
        for bypass in [false, true] {
            let cfg = TxRingConfig { slots: 64, qdisc_bypass: bypass };
            let mut tx = TxRingSender::open(ifindex, MAC_B, &cfg).unwrap();
            assert_eq!(tx.slots(), 64);
            let half = if bypass { &sent[350..] } else { &sent[..350] };
            // Engine batches of 100 (through FrameBatch) and one batch of slices.
            for chunk in half.chunks(100) {
                let mut batch = FrameBatch::new(100, SLOT_SIZE);
                for f in chunk {
                    batch.next_slot()[..f.len()].copy_from_slice(f);
                    batch.commit(f.len());
                }
                outcomes.push(tx.send_from(batch.frames()));
            }
        }
        outcomes
    });
    let total: usize = outcomes.iter().map(|o| o.sent).sum();
    assert!(outcomes.iter().all(|o| o.failed == 0 && o.last_errno.is_none()), "{outcomes:?}");
    assert_eq!(total, frames.len());
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), frames.len(), "every frame arrives exactly once");
    for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(g, f, "frame {i}: same bytes, same place");
    }
}

#[test]
fn tx_ring_refused_frames_are_counted_and_skipped() {
    let Some(lab) = Lab::new() else { return };
    let ok: Vec<Vec<u8>> = (1..=5u32).map(|i| synack(i, 10)).collect();
    let (ready, receiver) = receive_on_b(&lab, 5, Duration::from_millis(200));
    ready.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let (dev, ns) = (lab.veth_a.clone(), lab.ns_a.clone());
    let sent = ok.clone();
    lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let mut tx = TxRingSender::open(ifindex, MAC_B, &TxRingConfig::default()).unwrap();
        // Beyond the 1500-byte MTU but inside a slot: the kernel refuses it (WRONG_FORMAT).
        let over_mtu = synack(99, 1600);
        // Larger than a slot, and shorter than an Ethernet header: refused before the ring.
        let over_slot = synack(98, 3000);
        let runt = [0u8; 10];
        let frames: [&[u8]; 8] =
            [&sent[0], &over_mtu, &sent[1], &sent[2], &over_slot, &sent[3], &runt, &sent[4]];
        let out = tx.send_frames(&frames);
        assert_eq!((out.sent, out.failed), (5, 3), "{out:?}");
        assert!(out.last_errno.is_some());
        // With the link down every kick fails and the whole batch is withdrawn and counted.
        run(&["ip", "-n", &ns, "link", "set", &dev, "down"]);
        tx.set_retries(2);
        let out = tx.send_frames(&[&sent[0], &sent[1], &sent[2]]);
        assert_eq!((out.sent, out.failed, out.last_errno), (0, 3, Some(libc::ENETDOWN)));
        // The ring stays consistent: the next batch is withdrawn the same way, not stuck.
        let out = tx.send_frames(&[&sent[0]]);
        assert_eq!((out.sent, out.failed), (0, 1));
    });
    let got = receiver.join().unwrap();
    assert_eq!(got, ok, "the good frames arrive, in order, and nothing else");
}
