//! Steady-state handshake handling (SYN-ACK, data, ACKs, FIN, RST, timeouts, evictions,
//! reports) allocates nothing, measured with a counting global allocator (`stats_alloc`).
//!
//! Everything runs in one `#[test]` so no other test thread allocates while we count.

use std::alloc::System;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rzmap_core::handshake::{Action, HandshakeConfig, HandshakeTable, LinkHeader};
use rzmap_wire::tcp;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ISS: u32 = 1000;
const IRS: u32 = 5000;
const PAYLOAD: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

#[path = "support/peer_segment.rs"]
mod peer_segment;

fn packet(peer: u32, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::from(0xc613_0000 | peer);
    peer_segment::peer_segment(src, US, (443, 40_000), (seq, ack, flags), payload)
}

/// The packets of one connection: SYN-ACK, two data segments (the second out of order
/// first), a retransmission, and an end chosen by `peer % 4`: FIN, RST, limit, or silence.
fn conversation(peer: u32) -> Vec<Vec<u8>> {
    let a = ISS + 1 + PAYLOAD.len() as u32;
    let d = IRS + 1;
    let mut v = vec![
        packet(peer, IRS, ISS + 1, tcp::FLAG_SYN | tcp::FLAG_ACK, &[]),
        packet(peer, d, a, tcp::FLAG_ACK, &[]),
        packet(peer, d + 10, a, tcp::FLAG_ACK, b"0123456789"),
        packet(peer, d, a, tcp::FLAG_ACK | tcp::FLAG_PSH, b"SSH-2.0-x\r"),
        packet(peer, d, a, tcp::FLAG_ACK, b"SSH-2.0-x\r"),
    ];
    match peer % 4 {
        0 => v.push(packet(peer, d + 20, a, tcp::FLAG_ACK | tcp::FLAG_FIN, &[])),
        1 => v.push(packet(peer, d + 20, a, tcp::FLAG_RST, &[])),
        2 => v.push(packet(peer, d + 20, a, tcp::FLAG_ACK, &[b'x'; 40])),
        _ => {}
    }
    v
}

#[test]
fn steady_state_handling_does_not_allocate() {
    let cfg = HandshakeConfig {
        max_bytes: 48,
        link: LinkHeader::Ethernet { src: [2, 0, 0, 0, 0, 1], dst: [2, 0, 0, 0, 0, 2] },
        idle_timeout: Some(Duration::from_millis(50)),
        ..HandshakeConfig::new(32, Duration::from_millis(100))
    };
    let mut table = HandshakeTable::with_config(cfg);
    // 200 peers (50 of them silent) through a table of 32: evictions happen too.
    let convs: Vec<Vec<Vec<u8>>> = (0..200).map(conversation).collect();
    let garbage = vec![0x45u8; 60];
    let mut out = vec![0u8; 256];
    let mut close = vec![0u8; 256];
    let start = Instant::now();
    let mut run = |table: &mut HandshakeTable, round: u64| -> (u64, u64) {
        let mut sent = 0u64;
        let mut reported = 0u64;
        let now = start + Duration::from_secs(round);
        for conv in &convs {
            for (i, p) in conv.iter().enumerate() {
                let a = if i == 0 {
                    table.on_synack(p, now, 7, PAYLOAD, &mut out)
                } else {
                    table.on_segment(p, now, &mut out)
                };
                if let Action::Send(n) | Action::Finished(n) = a {
                    sent += n as u64;
                }
            }
            table.on_segment(&garbage, now, &mut out);
            reported += table.expire(now, &mut close, |f| {
                sent += f.close_frame.len() as u64 + f.data.len() as u64;
            }) as u64;
        }
        // Let the silent ones time out.
        reported += table.expire(now + Duration::from_millis(200), &mut close, |f| {
            sent += f.close_frame.len() as u64;
        }) as u64;
        (sent, reported)
    };
    // Warm up once (nothing should allocate even here, but only steady state is the claim).
    let (_, warm) = run(&mut table, 0);
    assert_eq!(warm, 200);
    let region = Region::new(GLOBAL);
    let mut total = 0;
    for round in 1..4 {
        let (sent, reported) = run(&mut table, round);
        assert!(sent > 0);
        total += reported;
    }
    let stats = region.change();
    assert_eq!(total, 600);
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "handshake handling allocated: {stats:?}"
    );
    assert!(table.stats().evicted > 0);
    assert_eq!(table.stats().finished.iter().sum::<u64>(), 800);
}
