//! Stateless banner grabbing: handshakes per second through the connection table, and the
//! memory one in-flight handshake costs.
//!
//! - `handshake/full_cycle`: SYN-ACK (ACK+payload written), one data segment (ACK written),
//!   FIN (RST written), report. One element = one whole connection.
//! - `handshake/loaded_table`: a table holding 100,000 connections; each element is one new
//!   SYN-ACK (evicting the oldest), one data segment to a connection in the middle of the
//!   table, and a report. This is the cache-missing steady state of a large scan.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap_core::handshake::{Action, HandshakeConfig, HandshakeTable, LinkHeader};
use rzmap_wire::tcp;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ISS: u32 = 77;
const IRS: u32 = 9000;
const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[path = "../tests/support/peer_segment.rs"]
mod peer_segment;

fn packet(peer: u32, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::from(0xc612_0000 | peer);
    peer_segment::peer_segment(src, US, (80, 41_000), (seq, ack, flags), payload)
}

const BANNER: &[u8] = b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Length: 0\r\n\r\n";

fn synack(peer: u32) -> Vec<u8> {
    packet(peer, IRS, ISS + 1, tcp::FLAG_SYN | tcp::FLAG_ACK, &[])
}

fn data(peer: u32, fin: bool) -> Vec<u8> {
    let ack = ISS + 1 + PAYLOAD.len() as u32;
    let f = tcp::FLAG_ACK | tcp::FLAG_PSH | if fin { tcp::FLAG_FIN } else { 0 };
    packet(peer, IRS + 1, ack, f, BANNER)
}

fn config(capacity: usize, max_bytes: usize) -> HandshakeConfig {
    HandshakeConfig {
        max_bytes,
        link: LinkHeader::Ethernet { src: [2, 0, 0, 0, 0, 1], dst: [2, 0, 0, 0, 0, 2] },
        ..HandshakeConfig::new(capacity, Duration::from_secs(5))
    }
}

fn report_memory() {
    for max in [256usize, 1024, 4096] {
        let t = HandshakeTable::with_config(config(1 << 16, max));
        eprintln!(
            "memory per in-flight handshake, max_bytes {max}: entry {} B + arena {} B \
             (SYN-ACK copy {} + banner {max}) + index {} B = {} B/slot \
             ({} slots incl. done reserve, {:.1} MiB for 65536 connections)",
            HandshakeTable::entry_size(),
            rzmap_core::handshake::SYNACK_KEEP + max,
            rzmap_core::handshake::SYNACK_KEEP,
            t.bytes_per_slot()
                - HandshakeTable::entry_size()
                - rzmap_core::handshake::SYNACK_KEEP
                - max,
            t.bytes_per_slot(),
            t.config().capacity + t.config().done_reserve,
            t.allocated_bytes() as f64 / (1024.0 * 1024.0),
        );
    }
}

fn bench_full_cycle(c: &mut Criterion) {
    report_memory();
    const PEERS: u32 = 4096;
    let synacks: Vec<_> = (0..PEERS).map(synack).collect();
    let first: Vec<_> = (0..PEERS).map(|p| data(p, false)).collect();
    let fins: Vec<_> = (0..PEERS)
        .map(|p| {
            let ack = ISS + 1 + PAYLOAD.len() as u32;
            packet(p, IRS + 1 + BANNER.len() as u32, ack, tcp::FLAG_ACK | tcp::FLAG_FIN, &[])
        })
        .collect();
    let mut table = HandshakeTable::with_config(config(1 << 16, 1024));
    let mut out = vec![0u8; 2048];
    let mut close = vec![0u8; 256];
    let now = Instant::now();
    let mut i = 0usize;
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full_cycle", |b| {
        b.iter(|| {
            let k = i % PEERS as usize;
            i += 1;
            let mut bytes = 0usize;
            for (p, syn) in [(&synacks[k], true), (&first[k], false), (&fins[k], false)] {
                let a = if syn {
                    table.on_synack(p, now, 1, PAYLOAD, &mut out)
                } else {
                    table.on_segment(p, now, &mut out)
                };
                if let Action::Send(n) | Action::Finished(n) = a {
                    bytes += n;
                }
            }
            table.expire(now, &mut close, |f| bytes += f.data.len());
            black_box(bytes)
        })
    });
    assert_eq!(table.stats().finished[0], table.stats().started);
    g.finish();
}

fn bench_loaded(c: &mut Criterion) {
    const CAP: usize = 100_000;
    const PEERS: u32 = 1 << 18;
    let synacks: Vec<_> = (0..PEERS).map(synack).collect();
    let datas: Vec<_> = (0..PEERS).map(|p| data(p, false)).collect();
    let mut table = HandshakeTable::with_config(config(CAP, 512));
    let mut out = vec![0u8; 2048];
    let mut close = vec![0u8; 256];
    let now = Instant::now();
    for s in &synacks[..CAP] {
        table.on_synack(s, now, 1, PAYLOAD, &mut out);
    }
    let mut i = CAP;
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("loaded_table", |b| {
        b.iter(|| {
            let k = i % PEERS as usize;
            let mid = (i - CAP / 2) % PEERS as usize;
            i += 1;
            let mut bytes = 0usize;
            if let Action::Send(n) = table.on_synack(&synacks[k], now, 1, PAYLOAD, &mut out) {
                bytes += n;
            }
            if let Action::Send(n) = table.on_segment(&datas[mid], now, &mut out) {
                bytes += n;
            }
            table.expire(now, &mut close, |f| bytes += f.close_frame.len());
            black_box(bytes)
        })
    });
    g.finish();
    eprintln!("loaded_table: {} in flight, {} evicted", table.len(), table.stats().evicted);
}

criterion_group!(benches, bench_full_cycle, bench_loaded);
criterion_main!(benches);
