//! A TCP segment as a scanned peer would send it, shared by the handshake benchmark and the
//! handshake allocation test (`#[path]`-included by both).

use std::net::Ipv4Addr;

use rzmap_wire::ipv4::{self, Ipv4Packet};
use rzmap_wire::tcp::TcpPacket;

/// An IPv4+TCP segment `src:ports.0 -> dst:ports.1` with valid checksums, TTL 60, window 1000.
pub fn peer_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    (seq, ack, flags): (u32, u32, u8),
    payload: &[u8],
) -> Vec<u8> {
    let total = 40 + payload.len();
    let mut b = vec![0u8; total];
    b[32] = 5 << 4;
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..20]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(total as u16);
    ip.set_ttl(60);
    ip.set_protocol(ipv4::PROTO_TCP);
    ip.set_src(src);
    ip.set_dst(dst);
    ip.fill_checksum();
    b[40..].copy_from_slice(payload);
    let mut t = TcpPacket::new_checked(&mut b[20..]).expect("tcp header");
    t.set_src_port(ports.0);
    t.set_dst_port(ports.1);
    t.set_seq(seq);
    t.set_ack(ack);
    t.set_flags(flags);
    t.set_window(1000);
    t.fill_checksum(src, dst);
    b
}
