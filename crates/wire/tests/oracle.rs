//! The wire views checked against etherparse, an independent implementation.

use std::net::Ipv4Addr;

use etherparse::{
    Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header, PacketBuilder, SlicedPacket, TcpHeader,
    TcpOptionElement, UdpHeader,
};
use proptest::prelude::*;
use rzmap_wire::checksum;
use rzmap_wire::{
    EthernetFrame, Icmpv4Packet, Ipv4Packet, L4Head8, TcpOptionSummary, TcpPacket, UdpPacket,
};

const SRC: [u8; 4] = [198, 18, 0, 1];
const DST: [u8; 4] = [198, 19, 7, 200];

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
        .ipv4(SRC, DST, 61)
        .tcp(40000, 443, 0xdead_beef, 29200)
        .syn()
        .ack(0x0102_0304)
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(111, 222),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn parses_etherparse_tcp() {
    let f = tcp_frame(b"hello");
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(eth.src(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(eth.dst(), [7, 8, 9, 10, 11, 12]);
    assert_eq!(eth.ethertype(), 0x0800);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src(), Ipv4Addr::from(SRC));
    assert_eq!(ip.dst(), Ipv4Addr::from(DST));
    assert_eq!(ip.ttl(), 61);
    assert_eq!(ip.protocol(), 6);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 443));
    assert_eq!(tcp.seq(), 0xdead_beef);
    assert_eq!(tcp.ack(), 0x0102_0304);
    assert!(tcp.syn() && tcp.ack_flag() && !tcp.rst());
    assert_eq!(tcp.window(), 29200);
    assert_eq!(tcp.payload(), b"hello");
    assert!(tcp.verify_checksum(ip.src(), ip.dst()));
    let s = TcpOptionSummary::parse(tcp.options());
    assert_eq!(s.mss, Some(1460));
    assert_eq!(s.wscale, Some(7));
    assert!(s.sack_perm);
    assert_eq!(s.timestamp, Some((111, 222)));
    // Our checksum of the same header equals etherparse's.
    let eh = Ipv4Header::from_slice(eth.payload()).unwrap().0;
    assert_eq!(ip.checksum(), eh.calc_header_checksum());
    let th = TcpHeader::from_slice(ip.payload()).unwrap().0;
    assert_eq!(tcp.checksum(), th.calc_checksum_ipv4(&eh, b"hello").unwrap());
}

#[test]
fn builds_what_etherparse_accepts() {
    let mut f = vec![0u8; 14 + 20 + 24 + 3];
    let mut eth = EthernetFrame::new_checked(&mut f[..]).unwrap();
    eth.set_src([2; 6]);
    eth.set_dst([3; 6]);
    eth.set_ethertype(0x0800);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.set_version_and_header_len(20);
    ip.set_total_len(20 + 24 + 3);
    ip.set_ident(0x1234);
    ip.set_ttl(255);
    ip.set_protocol(6);
    ip.set_src(SRC.into());
    ip.set_dst(DST.into());
    ip.fill_checksum();
    // The data offset is still 0 in a zeroed buffer, so a checked TCP view is refused.
    assert!(TcpPacket::new_checked(ip.payload_mut()).is_err());
    let seg = &mut f[34..];
    seg[12] = 6 << 4;
    let mut tcp = TcpPacket::new_checked(&mut seg[..]).unwrap();
    tcp.set_src_port(5555);
    tcp.set_dst_port(80);
    tcp.set_seq(42);
    tcp.set_flags(0x02);
    tcp.set_window(65535);
    tcp.options_mut().copy_from_slice(&[2, 4, 5, 0xb4]);
    seg[24..27].copy_from_slice(b"abc");
    let mut tcp = TcpPacket::new_checked(&mut seg[..]).unwrap();
    tcp.fill_checksum(SRC.into(), DST.into());
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ipv4)) = p.net else { panic!("not ipv4") };
    let h = ipv4.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("not tcp") };
    assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, b"abc").unwrap());
    assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
    assert_eq!(t.sequence_number(), 42);
}

#[test]
fn udp_and_icmp_against_etherparse() {
    let mut out = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64).udp(53, 33000).write(&mut out, b"odd").unwrap();
    let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (53, 33000, 11));
    assert_eq!(udp.payload(), b"odd");
    let eh = Ipv4Header::from_slice(&out).unwrap().0;
    let uh = UdpHeader::from_slice(ip.payload()).unwrap().0;
    assert_eq!(udp.checksum(), uh.calc_checksum_ipv4(&eh, b"odd").unwrap());
    assert_eq!(
        checksum::transport_checksum(ip.src(), ip.dst(), 17, ip.payload()),
        0,
        "a correct UDP checksum verifies to zero"
    );

    let mut out = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .icmpv4_echo_request(0x1111, 0x2222)
        .write(&mut out, &[9; 20])
        .unwrap();
    let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (8, 0));
    assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (0x1111, 0x2222));
    assert!(icmp.verify_checksum());
    let (ih, _) = Icmpv4Header::from_slice(ip.payload()).unwrap();
    assert_eq!(icmp.checksum(), ih.checksum);
    assert!(icmp.quoted().is_none());

    // An unreachable quoting a truncated UDP datagram.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(DST, SRC, 64).udp(33000, 53).write(&mut quoted, &[0; 100]).unwrap();
    let mut err = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], DST, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port))
        .write(&mut err, &quoted[..28])
        .unwrap();
    let ip = Ipv4Packet::new_checked(&err[..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 3));
    let inner = icmp.quoted().unwrap();
    assert!(inner.is_truncated());
    assert!(Ipv4Packet::new_checked(icmp.data()).is_err());
    assert_eq!(inner.dst(), Ipv4Addr::from(SRC));
    let h = L4Head8::new(inner.payload()).unwrap();
    assert_eq!((h.src_port(), h.dst_port()), (33000, 53));
}

#[test]
fn malformed_options_stop_without_panic() {
    // length 0, length 1, length past the end, wrong MSS length, missing length byte.
    for opts in
        [&[2u8, 0, 1, 1][..], &[3, 1, 0, 0], &[8, 40, 0, 0], &[2, 3, 5, 1, 1, 1], &[1, 1, 1, 4]]
    {
        let s = TcpOptionSummary::parse(opts);
        assert_eq!(s.mss, None, "{opts:?}");
    }
    // Options found before the malformed one are kept.
    let s = TcpOptionSummary::parse(&[4, 2, 2, 4, 1, 0x2c, 3, 0]);
    assert!(s.sack_perm);
    assert_eq!(s.mss, Some(300));
    assert_eq!(s.wscale, None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = EthernetFrame::new_checked(&data[..]) {
            let _ = (e.src(), e.dst(), e.ethertype(), e.payload());
        }
        for ip in [Ipv4Packet::new_checked(&data[..]), Ipv4Packet::new_lax(&data[..])].into_iter().flatten() {
            let _ = (ip.src(), ip.dst(), ip.ttl(), ip.ident(), ip.verify_checksum(), ip.frag_offset());
            let pl = ip.payload();
            if let Ok(t) = TcpPacket::new_checked(pl) {
                let _ = (t.seq(), t.ack(), t.window(), t.payload(), t.verify_checksum(ip.src(), ip.dst()));
                let _ = TcpOptionSummary::parse(t.options());
            }
            if let Ok(u) = UdpPacket::new_checked(pl) {
                let _ = (u.payload(), u.len());
            }
            if let Ok(i) = Icmpv4Packet::new_checked(pl) {
                let _ = (i.verify_checksum(), i.echo_ident(), i.data());
                if let Some(q) = i.quoted() {
                    let _ = (q.dst(), q.payload(), L4Head8::new(q.payload()));
                }
            }
        }
        let _ = TcpOptionSummary::parse(&data);
    }

    #[test]
    fn ip_checksum_matches_etherparse(ttl in any::<u8>(), id in any::<u16>(), a in any::<[u8;4]>(), b in any::<[u8;4]>(), plen in 0u16..1400) {
        let mut h = Ipv4Header::new(plen, ttl, IpNumber::UDP, a, b).unwrap();
        h.identification = id;
        h.header_checksum = 0;
        let bytes = h.to_bytes();
        prop_assert_eq!(checksum::checksum(&bytes), h.calc_header_checksum());
    }

    #[test]
    fn tcp_checksum_matches_etherparse(a in any::<[u8;4]>(), b in any::<[u8;4]>(), sp in any::<u16>(), dp in any::<u16>(),
                                       seq in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let ip = Ipv4Header::new(0, 64, IpNumber::TCP, a, b).unwrap();
        let t = TcpHeader::new(sp, dp, seq, 1000);
        let mut seg = t.to_bytes().to_vec();
        seg.extend_from_slice(&payload);
        prop_assert_eq!(
            checksum::transport_checksum(a.into(), b.into(), 6, &seg),
            t.calc_checksum_ipv4(&ip, &payload).unwrap()
        );
    }
}

proptest! {
    #[test]
    fn udp_checksum_matches_etherparse(a in any::<[u8;4]>(), b in any::<[u8;4]>(), sp in any::<u16>(), dp in any::<u16>(),
                                       payload in proptest::collection::vec(any::<u8>(), 0..80)) {
        let ip = Ipv4Header::new(0, 64, IpNumber::UDP, a, b).unwrap();
        let u = UdpHeader::without_ipv4_checksum(sp, dp, payload.len()).unwrap();
        let mut seg = u.to_bytes().to_vec();
        seg.extend_from_slice(&payload);
        let ours = checksum::transport_checksum(a.into(), b.into(), 17, &seg);
        let theirs = u.calc_checksum_ipv4(&ip, &payload).unwrap();
        // UDP transmits a computed 0 as 0xffff; etherparse applies that rule, we do not.
        prop_assert!(ours == theirs || (ours == 0 && theirs == 0xffff));
    }

    #[test]
    fn icmp_echo_checksum_matches_etherparse(id in any::<u16>(), seq in any::<u16>(),
                                             payload in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut out = Vec::new();
        PacketBuilder::ipv4(SRC, DST, 64).icmpv4_echo_request(id, seq).write(&mut out, &payload).unwrap();
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        let mut msg = ip.payload().to_vec();
        let theirs = Icmpv4Packet::new_checked(&msg[..]).unwrap().checksum();
        let mut m = Icmpv4Packet::new_checked(&mut msg[..]).unwrap();
        m.fill_checksum();
        prop_assert_eq!(m.checksum(), theirs);
        prop_assert!(m.verify_checksum());
    }

    #[test]
    fn incremental_ip_update_matches_recompute(ttl in any::<u8>(), id in any::<u16>(), new_id in any::<u16>(),
                                               a in any::<[u8;4]>(), b in any::<[u8;4]>()) {
        let mut h = Ipv4Header::new(40, ttl, IpNumber::TCP, a, b).unwrap();
        h.identification = id;
        h.header_checksum = h.calc_header_checksum();
        let inc = checksum::update16(h.header_checksum, id, new_id);
        h.identification = new_id;
        let full = h.calc_header_checksum();
        // One's complement has two zeros; a header sum is never zero, so both agree here.
        prop_assert_eq!(inc, full);
    }
}
