//! Privileged tests of the AF_XDP sender in the two-namespace lab (see `common`).
//! They fail when the lab cannot be built, unless `RZMAP_SKIP_LAB=1`. Every socket is opened
//! on a thread that has entered one of the lab's namespaces (checked before any test code).

mod common;

use std::time::{Duration, Instant};

use common::*;
use rzmap_core::link::{FrameBatch, SLOT_SIZE};
use rzmap_sys::discovery;
use rzmap_sys::xdp::{XdpConfig, XdpSender};

#[test]
fn af_xdp_frames_all_arrive_in_order_with_their_bytes() {
    let Some(lab) = Lab::new() else { return };
    // 700 frames through 64 chunks and a 32-entry ring: both wrap many times, and the sender
    // waits for completions to reuse chunks.
    let frames: Vec<Vec<u8>> = (0..700u32).map(|i| synack(i, (i as usize * 7) % 300)).collect();
    let (ready, receiver) = receive_on_b(&lab, frames.len(), Duration::from_millis(300));
    ready.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let dev = lab.veth_a.clone();
    let sent = frames.clone();
    let (outcomes, invalid) = lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let cfg = XdpConfig { chunks: 64, tx_entries: 32, queue: 0 };
        let mut tx = XdpSender::open(ifindex, &cfg).unwrap();
        let mut outcomes = Vec::new();
        // Engine batches of 100 (through FrameBatch), then batches of slices.
        for chunk in sent[..400].chunks(100) {
            let mut batch = FrameBatch::new(100, SLOT_SIZE);
            for f in chunk {
                batch.next_slot()[..f.len()].copy_from_slice(f);
                batch.commit(f.len());
            }
            outcomes.push(tx.send_from(batch.frames()));
        }
        for chunk in sent[400..].chunks(7) {
            let slices: Vec<&[u8]> = chunk.iter().map(|f| f.as_slice()).collect();
            outcomes.push(tx.send_frames(&slices));
        }
        (outcomes, tx.invalid_descriptors().unwrap())
    });
    let total: usize = outcomes.iter().map(|o| o.sent).sum();
    assert!(outcomes.iter().all(|o| o.failed == 0 && o.last_errno.is_none()), "{outcomes:?}");
    assert_eq!(total, frames.len());
    assert_eq!(invalid, 0, "no descriptor was refused");
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), frames.len(), "every frame arrives exactly once");
    for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(g, f, "frame {i}: same bytes, same place");
    }
}

#[test]
fn af_xdp_refused_and_withdrawn_frames_are_counted_and_never_sent() {
    let Some(lab) = Lab::new() else { return };
    let ok: Vec<Vec<u8>> = (1..=8u32).map(|i| synack(i, 10)).collect();
    let (ready, receiver) = receive_on_b(&lab, ok.len(), Duration::from_millis(300));
    ready.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let (dev, ns) = (lab.veth_a.clone(), lab.ns_a.clone());
    let sent = ok.clone();
    lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let mut tx = XdpSender::open(ifindex, &XdpConfig::default()).unwrap();
        // Beyond the 1500-byte MTU, larger than a chunk, and shorter than an Ethernet
        // header: all refused before the ring, the good frames around them still go.
        let over_mtu = synack(99, 1600);
        let over_chunk = synack(98, 3000);
        let runt = [0u8; 10];
        let frames: [&[u8]; 8] =
            [&sent[0], &over_mtu, &sent[1], &sent[2], &over_chunk, &sent[3], &runt, &sent[4]];
        let out = tx.send_frames(&frames);
        assert_eq!((out.sent, out.failed), (5, 3), "{out:?}");
        assert_eq!(out.last_errno, Some(libc::EINVAL));
        // With the link down every kick fails: the batch is withdrawn and counted.
        run(&["ip", "-n", &ns, "link", "set", &dev, "down"]);
        tx.set_retries(2);
        let junk: Vec<Vec<u8>> = (100..103u32).map(|i| synack(i, 10)).collect();
        let out = tx.send_frames(&[&junk[0], &junk[1], &junk[2]]);
        assert_eq!((out.sent, out.failed, out.last_errno), (0, 3, Some(libc::ENETDOWN)));
        let out = tx.send_frames(&[&junk[0]]);
        assert_eq!((out.sent, out.failed), (0, 1));
        // Link up again: the withdrawn descriptors are skipped as invalid (not sent late),
        // and the next frames go out normally.
        run(&["ip", "-n", &ns, "link", "set", &dev, "up"]);
        std::thread::sleep(Duration::from_millis(200));
        let out = tx.send_frames(&[&sent[5], &sent[6], &sent[7]]);
        assert_eq!((out.sent, out.failed), (3, 0), "{out:?}");
        assert_eq!(tx.invalid_descriptors().unwrap(), 4, "the 4 withdrawn frames");
    });
    let got = receiver.join().unwrap();
    assert_eq!(got, ok, "the good frames arrive, in order, and nothing else");
}

#[test]
fn af_xdp_refuses_missing_and_busy_queues_and_counts_drops_without_carrier() {
    let Some(lab) = Lab::new() else { return };
    let dev = lab.veth_a.clone();
    let (dev_b, ns_b) = (lab.veth_b.clone(), lab.ns_b.clone());
    lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let queues = discovery::link_by_index(ifindex).unwrap().tx_queues.unwrap();
        let err = XdpSender::open(ifindex, &XdpConfig { queue: queues, ..Default::default() })
            .err()
            .expect("no such queue");
        assert!(err.to_string().contains("transmit queue"), "{err}");
        let first = XdpSender::open(ifindex, &XdpConfig::default()).unwrap();
        // A second socket on the same queue waits for it (up to a second), then gives up.
        let t0 = Instant::now();
        let err = XdpSender::open(ifindex, &XdpConfig::default()).err().expect("busy");
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(900));
        // Once the first is closed the queue is free again (after the kernel's deferred
        // release, which `open` waits out).
        drop(first);
        let mut tx = XdpSender::open(ifindex, &XdpConfig::default()).expect("queue released");
        // No carrier (the far end is down): the kernel drops each frame; counted as failed.
        let frames: Vec<Vec<u8>> = (1..=3u32).map(|i| synack(i, 10)).collect();
        run(&["ip", "-n", &ns_b, "link", "set", &dev_b, "down"]);
        std::thread::sleep(Duration::from_millis(100));
        let out = tx.send_frames(&[&frames[0], &frames[1], &frames[2]]);
        assert_eq!((out.sent, out.failed, out.last_errno), (0, 3, Some(libc::EBUSY)), "{out:?}");
        run(&["ip", "-n", &ns_b, "link", "set", &dev_b, "up"]);
    });
}
