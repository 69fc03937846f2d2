use super::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const THEM: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 9);
const SPORT: u16 = 40_000;
const DPORT: u16 = 22;
const ISS: u32 = 0x1234_5678; // our ISN (the probe's seq)
const IRS: u32 = 0xffff_fff0; // their ISN: wraps soon after, on purpose
const MAC_US: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_GW: [u8; 6] = [2, 0, 0, 0, 0, 2];
const WS_OPT: [u8; 4] = [1, 3, 3, 7]; // NOP, window scale 7

/// An IPv4/TCP packet from the server to us, built with rzmap-wire.
fn seg_fixed(seq: u32, ack: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let tcp_len = 20 + opts.len();
    let total = 20 + tcp_len + payload.len();
    let mut b = vec![0u8; total];
    b[20 + 12] = ((tcp_len / 4) as u8) << 4;
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..20]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(total as u16);
    ip.set_ident(0x4242);
    ip.set_ttl(57);
    ip.set_protocol(ipv4::PROTO_TCP);
    ip.set_src(THEM);
    ip.set_dst(US);
    ip.fill_checksum();
    let mut t = TcpPacket::new_checked(&mut b[20..]).expect("header");
    t.set_src_port(DPORT);
    t.set_dst_port(SPORT);
    t.set_seq(seq);
    t.set_ack(ack);
    t.set_flags(flags);
    t.set_window(29_200);
    t.options_mut().copy_from_slice(opts);
    b[20 + tcp_len..].copy_from_slice(payload);
    let mut t = TcpPacket::new_checked(&mut b[20..]).expect("header");
    t.fill_checksum(THEM, US);
    b
}

/// Recomputes both checksums after a test edited a packet.
fn refill(p: &mut [u8]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..20]);
    ip.fill_checksum();
    let (src, dst) = (ip.src(), ip.dst());
    let mut t = TcpPacket::new_checked(&mut p[20..]).expect("tcp");
    t.fill_checksum(src, dst);
}

fn synack(opts: &[u8]) -> Vec<u8> {
    seg_fixed(IRS, ISS.wrapping_add(1), tcp::FLAG_SYN | tcp::FLAG_ACK, opts, &[])
}

fn data(off: u32, payload: &[u8], flags: u8) -> Vec<u8> {
    seg_fixed(
        IRS.wrapping_add(1).wrapping_add(off),
        ISS.wrapping_add(1).wrapping_add(PAYLOAD.len() as u32),
        tcp::FLAG_ACK | flags,
        &[],
        payload,
    )
}

const PAYLOAD: &[u8] = b"HEAD / HTTP/1.0\r\n\r\n";

fn config() -> HandshakeConfig {
    HandshakeConfig {
        max_bytes: 64,
        link: LinkHeader::Ethernet { src: MAC_US, dst: MAC_GW },
        our_wscale: Some(8),
        ..HandshakeConfig::new(16, Duration::from_secs(5))
    }
}

/// A frame we wrote, decoded by etherparse, with its checksums verified.
struct Out {
    ttl: u8,
    ip_id: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    ack_flag: bool,
    psh: bool,
    rst: bool,
    fin: bool,
    window: u16,
    ts: Option<(u32, u32)>,
    payload: Vec<u8>,
}

fn decode(frame: &[u8], ethernet: bool) -> Out {
    let p = if ethernet {
        SlicedPacket::from_ethernet(frame).expect("etherparse accepts the frame")
    } else {
        SlicedPacket::from_ip(frame).expect("etherparse accepts the packet")
    };
    if ethernet {
        let eth = p.link.as_ref().expect("ethernet");
        let etherparse::LinkSlice::Ethernet2(e) = eth else { panic!("not ethernet II") };
        assert_eq!(e.source(), MAC_US);
        assert_eq!(e.destination(), MAC_GW);
    }
    let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("not ipv4") };
    let h = ip.header();
    assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum(), "IP checksum");
    assert_eq!(usize::from(h.total_len()), frame.len() - if ethernet { 14 } else { 0 });
    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not tcp") };
    let want =
        t.to_header().calc_checksum_ipv4(&h.to_header(), t.payload()).expect("checksum computable");
    assert_eq!(t.checksum(), want, "TCP checksum");
    let ts = t.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::Timestamp(a, b)) => Some((a, b)),
        _ => None,
    });
    Out {
        ttl: h.ttl(),
        ip_id: h.identification(),
        src: h.source_addr(),
        dst: h.destination_addr(),
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ack_flag: t.ack(),
        psh: t.psh(),
        rst: t.rst(),
        fin: t.fin(),
        window: t.window_size(),
        ts,
        payload: t.payload().to_vec(),
    }
}

fn collect(table: &mut HandshakeTable, now: Instant) -> Vec<(BannerClass, Vec<u8>, Vec<u8>, bool)> {
    let mut out = [0u8; 256];
    let mut v = Vec::new();
    table.expire(now, &mut out, |f| {
        v.push((f.class, f.data.to_vec(), f.close_frame.to_vec(), f.evicted));
    });
    v
}

fn started(cfg: HandshakeConfig, opts: &[u8]) -> (HandshakeTable, Instant) {
    let mut t = HandshakeTable::with_config(cfg);
    let now = Instant::now();
    let mut out = [0u8; 256];
    assert!(matches!(t.on_synack(&synack(opts), now, 0x0bad, PAYLOAD, &mut out), Action::Send(_)));
    (t, now)
}

#[test]
fn synack_is_answered_with_ack_and_payload() {
    let mut t = HandshakeTable::with_config(config());
    let mut out = [0u8; 256];
    let a = t.on_synack(&synack(&WS_OPT), Instant::now(), 0x0bad, PAYLOAD, &mut out);
    let Action::Send(n) = a else { panic!("{a:?}") };
    assert_eq!(n, t.max_frame_len(PAYLOAD.len()));
    let o = decode(&out[..n], true);
    assert_eq!((o.src, o.dst, o.sport, o.dport), (US, THEM, SPORT, DPORT));
    assert_eq!((o.ttl, o.ip_id), (255, 0x0bad));
    assert_eq!(o.seq, ISS.wrapping_add(1));
    assert_eq!(o.ack, IRS.wrapping_add(1));
    assert!(o.ack_flag && o.psh && !o.syn && !o.rst && !o.fin);
    assert_eq!(o.payload, PAYLOAD);
    // Window scaling is on (both sides sent it): 64 bytes wanted >> 8 rounds up to 1.
    assert_eq!(o.window, 1);
    assert_eq!(o.ts, None);
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().started, 1);
}

#[test]
fn synack_without_payload_or_window_scale() {
    let mut t = HandshakeTable::with_config(HandshakeConfig { link: LinkHeader::None, ..config() });
    let mut out = [0u8; 256];
    let Action::Send(n) = t.on_synack(&synack(&[]), Instant::now(), 7, &[], &mut out) else {
        panic!()
    };
    let o = decode(&out[..n], false);
    assert!(o.ack_flag && !o.psh);
    assert!(o.payload.is_empty());
    assert_eq!(o.window, 64, "no scaling: the peer sent no window scale option");
}

#[test]
fn timestamps_are_echoed_when_negotiated() {
    let cfg = HandshakeConfig { our_tsval: Some(1_700_000_000), ..config() };
    // NOP NOP TS(val 777, ecr 1_700_000_000)
    let mut ts = vec![1, 1, 8, 10];
    ts.extend_from_slice(&777u32.to_be_bytes());
    ts.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    let mut t = HandshakeTable::with_config(cfg);
    let now = Instant::now();
    let mut out = [0u8; 256];
    let Action::Send(n) = t.on_synack(&synack(&ts), now, 1, PAYLOAD, &mut out) else { panic!() };
    let o = decode(&out[..n], true);
    assert_eq!(o.ts, Some((1_700_000_000, 777)));
    assert_eq!(n, t.max_frame_len(PAYLOAD.len()));
    // A later data segment with TSval 778 is echoed.
    let mut ts2 = vec![1, 1, 8, 10];
    ts2.extend_from_slice(&778u32.to_be_bytes());
    ts2.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    let d = seg_fixed(
        IRS.wrapping_add(1),
        ISS.wrapping_add(1 + PAYLOAD.len() as u32),
        tcp::FLAG_ACK,
        &ts2,
        b"SSH-2.0-x\r\n",
    );
    let Action::Send(n) = t.on_segment(&d, now, &mut out) else { panic!() };
    assert_eq!(decode(&out[..n], true).ts, Some((1_700_000_000, 778)));
    // Without our own timestamps, the peer's are not echoed.
    let mut t = HandshakeTable::with_config(config());
    let Action::Send(n) = t.on_synack(&synack(&ts), now, 1, PAYLOAD, &mut out) else { panic!() };
    assert_eq!(decode(&out[..n], true).ts, None);
}

#[test]
fn data_is_acknowledged_and_fin_finishes_with_rst() {
    let (mut t, now) = started(HandshakeConfig { our_wscale: None, ..config() }, &[]);
    let mut out = [0u8; 256];
    let banner = b"SSH-2.0-OpenSSH_9.2\r\n";
    // The server acknowledges our payload first: nothing to send.
    let ack_only = data(0, &[], 0);
    assert_eq!(t.on_segment(&ack_only, now, &mut out), Action::Absorbed);
    let Action::Send(n) = t.on_segment(&data(0, banner, tcp::FLAG_PSH), now, &mut out) else {
        panic!()
    };
    let o = decode(&out[..n], true);
    assert!(o.ack_flag && !o.psh && !o.rst && o.payload.is_empty());
    assert_eq!(o.seq, ISS.wrapping_add(1 + PAYLOAD.len() as u32));
    assert_eq!(o.ack, IRS.wrapping_add(1 + banner.len() as u32));
    assert_eq!(o.window, 64 - banner.len() as u16);
    assert_eq!(o.ip_id, 0x0bad + 1);
    let fin = data(banner.len() as u32, &[], tcp::FLAG_FIN);
    let Action::Finished(n) = t.on_segment(&fin, now, &mut out) else { panic!() };
    let o = decode(&out[..n], true);
    assert!(o.rst && o.ack_flag && !o.fin);
    assert_eq!(o.seq, ISS.wrapping_add(1 + PAYLOAD.len() as u32));
    assert_eq!(o.ack, IRS.wrapping_add(1 + banner.len() as u32 + 1));
    assert_eq!(o.window, 0);
    assert_eq!(t.len(), 0);
    assert_eq!(t.pending_reports(), 1);
    // Segments after the finish are ignored.
    assert_eq!(t.on_segment(&fin, now, &mut out), Action::Ignored(Ignored::AfterFinish));
    let r = collect(&mut t, now);
    assert_eq!(r, vec![(BannerClass::Banner, banner.to_vec(), vec![], false)]);
    assert_eq!(t.stats().finished, [1, 0, 0, 0]);
    // Freed: the same segment is now unknown.
    assert_eq!(t.on_segment(&fin, now, &mut out), Action::Ignored(Ignored::Unknown));
}

#[test]
fn fin_without_data_is_no_banner() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    let a = t.on_segment(&data(0, &[], tcp::FLAG_FIN), now, &mut out);
    assert!(matches!(a, Action::Finished(n) if n > 0));
    let r = collect(&mut t, now);
    assert_eq!(r[0].0, BannerClass::NoBanner);
    assert!(r[0].1.is_empty());
}

#[test]
fn data_with_fin_in_one_segment() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    let a = t.on_segment(&data(0, b"220 hi\r\n", tcp::FLAG_FIN | tcp::FLAG_PSH), now, &mut out);
    let Action::Finished(n) = a else { panic!("{a:?}") };
    assert_eq!(decode(&out[..n], true).ack, IRS.wrapping_add(1 + 8 + 1));
    assert_eq!(collect(&mut t, now)[0].1, b"220 hi\r\n");
}

#[test]
fn server_reset_finishes_silently_and_keeps_bytes() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    t.on_segment(&data(0, b"abc", 0), now, &mut out);
    // A RST far outside the window is ignored.
    let bad = seg_fixed(IRS.wrapping_add(5000), 0, tcp::FLAG_RST, &[], &[]);
    assert_eq!(t.on_segment(&bad, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // A RST before what we already have is ignored too.
    let old = seg_fixed(IRS.wrapping_add(1), 0, tcp::FLAG_RST, &[], &[]);
    assert_eq!(t.on_segment(&old, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    let rst = seg_fixed(IRS.wrapping_add(4), 0, tcp::FLAG_RST, &[], &[]);
    assert_eq!(t.on_segment(&rst, now, &mut out), Action::Finished(0));
    let r = collect(&mut t, now);
    assert_eq!(r, vec![(BannerClass::Reset, b"abc".to_vec(), vec![], false)]);
    assert_eq!(t.stats().out_of_window, 2);
}

#[test]
fn reset_before_any_data() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    let rst = seg_fixed(
        IRS.wrapping_add(1),
        ISS.wrapping_add(1),
        tcp::FLAG_RST | tcp::FLAG_ACK,
        &[],
        &[],
    );
    assert_eq!(t.on_segment(&rst, now, &mut out), Action::Finished(0));
    assert_eq!(collect(&mut t, now), vec![(BannerClass::Reset, vec![], vec![], false)]);
}

#[test]
fn eviction_and_finish_all_keep_collected_bytes() {
    let cfg = HandshakeConfig { capacity: 1, ..config() };
    let (mut t, now) = started(cfg, &[]);
    let mut out = [0u8; 256];
    t.on_segment(&data(0, b"partial", 0), now, &mut out);
    // A second connection evicts the first, which had bytes: a banner, flagged evicted.
    assert!(matches!(t.on_synack(&synack_from(1), now, 1, PAYLOAD, &mut out), Action::Send(_)));
    let mut seen = Vec::new();
    t.finish_all(&mut out, |f| {
        assert!(decode(f.close_frame, true).rst);
        seen.push((f.class, f.data.to_vec(), f.evicted));
    });
    assert_eq!(
        seen,
        vec![
            (BannerClass::Banner, b"partial".to_vec(), true),
            (BannerClass::NoBanner, vec![], false),
        ]
    );
    assert_eq!(t.stats().finished, [1, 1, 0, 0]);
}

#[test]
fn limit_reached_is_truncated() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    let big: Vec<u8> = (0..100u8).collect();
    let a = t.on_segment(&data(0, &big[..40], 0), now, &mut out);
    assert!(matches!(a, Action::Send(_)));
    let Action::Finished(n) = t.on_segment(&data(40, &big[40..], 0), now, &mut out) else {
        panic!()
    };
    let o = decode(&out[..n], true);
    assert!(o.rst);
    assert_eq!(o.ack, IRS.wrapping_add(1 + 64));
    let r = collect(&mut t, now);
    assert_eq!(r[0].0, BannerClass::Truncated);
    assert_eq!(r[0].1, &big[..64]);
}

#[test]
fn timeout_reports_with_a_rst_to_send() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    t.on_segment(&data(0, b"220 ready\r\n", 0), now, &mut out);
    assert!(collect(&mut t, now + Duration::from_millis(4999)).is_empty());
    let r = collect(&mut t, now + Duration::from_secs(5));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, BannerClass::Banner);
    assert_eq!(r[0].1, b"220 ready\r\n");
    let o = decode(&r[0].2, true);
    assert!(o.rst && o.ack_flag);
    // The server never acknowledged our payload here... it did (data() acks it).
    assert_eq!(o.seq, ISS.wrapping_add(1 + PAYLOAD.len() as u32));
    assert_eq!(o.ack, IRS.wrapping_add(1 + 11));
    assert!(t.is_empty());
}

#[test]
fn timeout_without_data_and_unacknowledged_payload() {
    let (mut t, now) = started(config(), &[]);
    let r = collect(&mut t, now + Duration::from_secs(6));
    assert_eq!(r[0].0, BannerClass::NoBanner);
    let o = decode(&r[0].2, true);
    // The server never acknowledged the payload: the RST uses what it expects, our ISN+1.
    assert_eq!(o.seq, ISS.wrapping_add(1));
    assert_eq!(o.ack, IRS.wrapping_add(1));
}

#[test]
fn idle_timeout_reports_greeting_servers_early() {
    let cfg = HandshakeConfig { idle_timeout: Some(Duration::from_millis(500)), ..config() };
    let mut t = HandshakeTable::with_config(cfg);
    let now = Instant::now();
    let ms = |m: u64| now + Duration::from_millis(m);
    let mut out = [0u8; 256];
    // Three connections: A greets at 100 ms and again at 400 ms, B greets at 200 ms,
    // C never sends anything.
    for i in 0..3 {
        t.on_synack(&synack_from(i), now, 1, PAYLOAD, &mut out);
    }
    let from = |i: u32, off: u32, d: &[u8]| peer_seg(i as u8, off, d, 0);
    t.on_segment(&from(0, 0, b"220 "), ms(100), &mut out);
    t.on_segment(&from(1, 0, b"SSH-2.0-x\r\n"), ms(200), &mut out);
    t.on_segment(&from(0, 4, b"ready\r\n"), ms(400), &mut out);
    // An out-of-order segment does not restart the idle timer of A.
    t.on_segment(&from(0, 100, b"zz"), ms(450), &mut out);
    let peers = |r: Vec<(BannerClass, Vec<u8>, Vec<u8>, bool)>| {
        r.into_iter()
            .map(|(c, d, close, _)| {
                assert!(decode(&close, true).rst);
                (c, d)
            })
            .collect::<Vec<_>>()
    };
    assert!(collect(&mut t, ms(699)).is_empty());
    assert_eq!(
        peers(collect(&mut t, ms(700))),
        vec![(BannerClass::Banner, b"SSH-2.0-x\r\n".to_vec())]
    );
    assert_eq!(
        peers(collect(&mut t, ms(900))),
        vec![(BannerClass::Banner, b"220 ready\r\n".to_vec())]
    );
    // C waits for the full timeout.
    assert!(collect(&mut t, ms(4999)).is_empty());
    assert_eq!(peers(collect(&mut t, ms(5000))), vec![(BannerClass::NoBanner, vec![])]);
    assert!(t.is_empty());
}

#[test]
fn idle_list_survives_fin_reset_and_eviction() {
    let cfg =
        HandshakeConfig { capacity: 3, idle_timeout: Some(Duration::from_millis(100)), ..config() };
    let mut t = HandshakeTable::with_config(cfg);
    let now = Instant::now();
    let mut out = [0u8; 256];
    for i in 0..3 {
        t.on_synack(&synack_from(i), now, 1, PAYLOAD, &mut out);
        t.on_segment(&peer_seg(i as u8, 0, b"x", 0), now, &mut out);
    }
    // The second closes (FIN), the first resets; then three more arrive, and the last of
    // them evicts the oldest live connection, the third. All leave the idle list.
    assert!(matches!(
        t.on_segment(&peer_seg(1, 1, &[], tcp::FLAG_FIN), now, &mut out),
        Action::Finished(_)
    ));
    let mut rst = peer_seg(0, 1, &[], 0);
    rst[33] = tcp::FLAG_RST;
    refill(&mut rst);
    assert_eq!(t.on_segment(&rst, now, &mut out), Action::Finished(0));
    t.on_synack(&synack_from(3), now, 1, PAYLOAD, &mut out);
    t.on_synack(&synack_from(4), now, 1, PAYLOAD, &mut out);
    t.on_synack(&synack_from(5), now, 1, PAYLOAD, &mut out);
    assert_eq!(t.stats().evicted, 1);
    t.on_segment(&peer_seg(5, 0, b"y", 0), now + Duration::from_millis(50), &mut out);
    let r = collect(&mut t, now + Duration::from_millis(120));
    let classes: Vec<_> = r.iter().map(|x| (x.0, x.1.clone(), x.3)).collect();
    assert_eq!(
        classes,
        vec![
            (BannerClass::Banner, b"x".to_vec(), false),
            (BannerClass::Reset, b"x".to_vec(), false),
            (BannerClass::Banner, b"x".to_vec(), true),
        ]
    );
    let r = collect(&mut t, now + Duration::from_millis(150));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, b"y");
    assert_eq!(t.len(), 2);
}

#[test]
fn out_of_order_and_overlapping_segments_reassemble() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    let s = b"0123456789abcdefghij";
    // Out of order: ACK still says "want offset 0".
    let Action::Send(n) = t.on_segment(&data(10, &s[10..15], 0), now, &mut out) else { panic!() };
    assert_eq!(decode(&out[..n], true).ack, IRS.wrapping_add(1));
    t.on_segment(&data(4, &s[4..12], 0), now, &mut out);
    let Action::Send(n) = t.on_segment(&data(0, &s[..6], 0), now, &mut out) else { panic!() };
    assert_eq!(decode(&out[..n], true).ack, IRS.wrapping_add(1 + 15));
    // A segment starting before their ISN+1 (overlapping the SYN) is clipped.
    let early = seg_fixed(IRS, ISS.wrapping_add(1), tcp::FLAG_ACK, &[], b"Z0123");
    assert!(matches!(t.on_segment(&early, now, &mut out), Action::Send(_)));
    assert_eq!(t.stats().retransmitted_data, 1);
    t.on_segment(&data(15, &s[15..], tcp::FLAG_FIN), now, &mut out);
    let r = collect(&mut t, now);
    assert_eq!(r[0].1, s);
    assert_eq!(r[0].0, BannerClass::Banner);
}

#[test]
fn fin_before_a_gap_waits_for_the_gap() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    assert!(matches!(
        t.on_segment(&data(3, b"def", tcp::FLAG_FIN), now, &mut out),
        Action::Send(_)
    ));
    assert!(matches!(t.on_segment(&data(0, b"abc", 0), now, &mut out), Action::Finished(_)));
    assert_eq!(collect(&mut t, now)[0].1, b"abcdef");
}

#[test]
fn retransmitted_data_is_reacknowledged_not_rewritten() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    t.on_segment(&data(0, b"good", 0), now, &mut out);
    let Action::Send(n) = t.on_segment(&data(0, b"evil", 0), now, &mut out) else { panic!() };
    assert_eq!(decode(&out[..n], true).ack, IRS.wrapping_add(5));
    assert_eq!(t.stats().retransmitted_data, 1);
    t.on_segment(&data(4, &[], tcp::FLAG_FIN), now, &mut out);
    assert_eq!(collect(&mut t, now)[0].1, b"good");
}

#[test]
fn bad_segments_are_ignored_and_counted() {
    let (mut t, now) = started(config(), &[]);
    let mut out = [0u8; 256];
    // Unknown peer port.
    let other = seg_fixed(IRS.wrapping_add(1), ISS.wrapping_add(1), tcp::FLAG_ACK, &[], b"x");
    let mut other2 = other.clone();
    other2[20..22].copy_from_slice(&23u16.to_be_bytes());
    refill(&mut other2);
    assert_eq!(t.on_segment(&other2, now, &mut out), Action::Ignored(Ignored::Unknown));
    // ACK acknowledging data we never sent.
    let bad_ack = seg_fixed(IRS.wrapping_add(1), ISS.wrapping_add(500), tcp::FLAG_ACK, &[], b"x");
    assert_eq!(t.on_segment(&bad_ack, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // ACK older than our ISN+1.
    let old_ack = seg_fixed(IRS.wrapping_add(1), ISS, tcp::FLAG_ACK, &[], b"x");
    assert_eq!(t.on_segment(&old_ack, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // No ACK flag.
    let no_ack = seg_fixed(IRS.wrapping_add(1), 0, tcp::FLAG_PSH, &[], b"x");
    assert_eq!(t.on_segment(&no_ack, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // Beyond the window we advertised.
    let far = data(65, b"x", 0);
    assert_eq!(t.on_segment(&far, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // Far before their ISN.
    let before =
        seg_fixed(IRS.wrapping_sub(100_000), ISS.wrapping_add(1), tcp::FLAG_ACK, &[], b"x");
    assert_eq!(t.on_segment(&before, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // A SYN on the connection.
    let syn = seg_fixed(IRS, ISS.wrapping_add(1), tcp::FLAG_SYN | tcp::FLAG_ACK, &[], &[]);
    assert_eq!(t.on_segment(&syn, now, &mut out), Action::Ignored(Ignored::OutOfWindow));
    // Garbage.
    assert_eq!(t.on_segment(&[0x45, 0, 0], now, &mut out), Action::Ignored(Ignored::Malformed));
    let mut udp = other.clone();
    udp[9] = 17;
    refill(&mut udp);
    assert_eq!(t.on_segment(&udp, now, &mut out), Action::Ignored(Ignored::Malformed));
    let mut frag = other.clone();
    frag[6] = 0x20;
    refill(&mut frag);
    // A corrupted byte.
    let mut corrupt = other.clone();
    corrupt[40] ^= 0x40;
    assert_eq!(t.on_segment(&corrupt, now, &mut out), Action::Ignored(Ignored::BadChecksum));
    let mut corrupt_ip = other.clone();
    corrupt_ip[8] ^= 1;
    assert_eq!(t.on_segment(&corrupt_ip, now, &mut out), Action::Ignored(Ignored::BadChecksum));
    assert_eq!(t.on_segment(&frag, now, &mut out), Action::Ignored(Ignored::Malformed));
    let s = t.stats();
    assert_eq!((s.unknown, s.out_of_window, s.malformed, s.bad_checksum), (1, 6, 3, 2));
    // The connection is still there and clean.
    t.on_segment(&data(0, b"ok", tcp::FLAG_FIN), now, &mut out);
    assert_eq!(collect(&mut t, now)[0].1, b"ok");
}

#[test]
fn synack_retransmission_resends_and_duplicates_are_ignored() {
    let mut t = HandshakeTable::with_config(config());
    let now = Instant::now();
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let Action::Send(n) = t.on_synack(&synack(&[]), now, 9, PAYLOAD, &mut a) else { panic!() };
    let Action::Send(m) = t.on_synack(&synack(&[]), now, 9, PAYLOAD, &mut b) else { panic!() };
    // The same segment again, in a new IP datagram (next IP ID).
    assert_eq!(n, m);
    assert_eq!(a[34..n], b[34..m], "the same TCP segment again");
    assert_eq!(decode(&b[..m], true).ip_id, decode(&a[..n], true).ip_id + 1);
    assert_eq!(t.stats().synack_retransmits, 1);
    // A SYN-ACK with another ISN on the same ports is not ours to restart.
    let other = seg_fixed(5, ISS.wrapping_add(1), tcp::FLAG_SYN | tcp::FLAG_ACK, &[], &[]);
    assert_eq!(
        t.on_synack(&other, now, 9, PAYLOAD, &mut b),
        Action::Ignored(Ignored::DuplicateSynAck)
    );
    // Once data arrived, a SYN-ACK is a duplicate.
    t.on_segment(&data(0, b"x", 0), now, &mut b);
    assert_eq!(
        t.on_synack(&synack(&[]), now, 9, PAYLOAD, &mut b),
        Action::Ignored(Ignored::DuplicateSynAck)
    );
    // Not a SYN-ACK at all.
    assert_eq!(
        t.on_synack(&data(0, b"x", 0), now, 9, PAYLOAD, &mut b),
        Action::Ignored(Ignored::NotSynAck)
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn small_buffer_is_refused_without_inserting() {
    let mut t = HandshakeTable::with_config(config());
    let mut out = [0u8; 60];
    let a = t.on_synack(&synack(&[]), Instant::now(), 1, PAYLOAD, &mut out);
    assert_eq!(a, Action::Ignored(Ignored::BufferTooSmall));
    assert!(t.is_empty());
}

fn synack_from(i: u32) -> Vec<u8> {
    let mut p = seg_fixed(IRS, ISS.wrapping_add(1), tcp::FLAG_SYN | tcp::FLAG_ACK, &[], &[]);
    let src = Ipv4Addr::from(u32::from(THEM) + i);
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..20]);
    ip.set_src(src);
    ip.fill_checksum();
    let mut tp = TcpPacket::new_checked(&mut p[20..]).expect("tcp");
    tp.fill_checksum(src, US);
    p
}

#[test]
fn full_table_evicts_the_oldest() {
    let mut t = HandshakeTable::with_config(HandshakeConfig { capacity: 2, ..config() });
    let now = Instant::now();
    let mut out = [0u8; 256];
    for i in 0..3 {
        let at = now + Duration::from_millis(u64::from(i));
        assert!(matches!(t.on_synack(&synack_from(i), at, 1, PAYLOAD, &mut out), Action::Send(_)));
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.stats().evicted, 1);
    let mut seen = Vec::new();
    t.expire(now, &mut out, |f| {
        seen.push((f.key.their_ip, f.evicted, f.class));
        let o = decode(f.close_frame, true);
        assert!(o.rst);
        assert_eq!(o.dst, f.key.their_ip);
        assert_eq!(f.synack.len(), 40);
    });
    assert_eq!(seen, vec![(THEM, true, BannerClass::NoBanner)]);
    // The evicted connection's segments are unknown now; the others are tracked.
    let d = seg_fixed(IRS.wrapping_add(1), ISS.wrapping_add(1), tcp::FLAG_ACK, &[], b"x");
    assert_eq!(t.on_segment(&d, now, &mut out), Action::Ignored(Ignored::Unknown));
}

#[test]
fn unreported_finishes_beyond_the_reserve_are_dropped_and_counted() {
    let cfg = HandshakeConfig { capacity: 2, done_reserve: 1, ..config() };
    let mut t = HandshakeTable::with_config(cfg);
    let now = Instant::now();
    let mut out = [0u8; 256];
    for i in 0..5 {
        t.on_synack(&synack_from(i), now, 1, PAYLOAD, &mut out);
    }
    assert_eq!(t.stats().evicted, 3);
    assert_eq!(t.stats().lost_unreported, 2);
    assert_eq!(collect(&mut t, now).len(), 1);
    assert_eq!(t.len(), 2);
    let mut n = 0;
    t.finish_all(&mut out, |_| n += 1);
    assert_eq!(n, 2);
    assert!(t.is_empty());
}

#[test]
fn synack_copy_reclassifies_with_tcp_synscan() {
    use crate::fields::{Schema, Value};
    use crate::probe::{self, ReplyKind};
    let module = probe::create("tcp_synscan", None).expect("module");
    let (mut t, now) = started(config(), &[2, 4, 5, 0xb4]);
    let mut out = [0u8; 256];
    t.on_segment(&data(0, b"hi", tcp::FLAG_FIN), now, &mut out);
    let schema = Schema::for_module(module.fields());
    let mut rec = Record::for_schema(&schema);
    let mut extra = Record::new(2);
    t.expire(now, &mut out, |f| {
        module.classify(f.synack, &ReplyKind::SynAck, &mut rec, schema.module_start());
        f.fill_fields(&mut extra, 0);
    });
    let idx = |n: &str| schema.index_of(n).expect(n);
    assert_eq!(rec.get(idx("sport")), Value::Int(u64::from(DPORT)));
    assert_eq!(rec.get(idx("seqnum")), Value::Int(u64::from(IRS)));
    assert_eq!(rec.get(idx("tcpopt_mss")), Value::Int(1460));
    assert_eq!(rec.get(idx("classification")), Value::Str("synack"));
    assert_eq!(extra.get(0), Value::Bin(b"hi"));
    assert_eq!(extra.get(1), Value::Str("banner"));
}

#[test]
fn index_survives_churn() {
    // Many connections from colliding-prone keys, finished in a scrambled order.
    let mut t = HandshakeTable::with_config(HandshakeConfig { capacity: 300, ..config() });
    let now = Instant::now();
    let mut out = [0u8; 256];
    for round in 0..4u32 {
        for i in 0..300 {
            let a = t.on_synack(&synack_from(round * 1000 + i), now, 1, &[], &mut out);
            assert!(matches!(a, Action::Send(_)));
        }
        for i in (0..300).rev().step_by(3) {
            let src = Ipv4Addr::from(u32::from(THEM) + round * 1000 + i);
            let mut p =
                seg_fixed(IRS.wrapping_add(1), ISS.wrapping_add(1), tcp::FLAG_RST, &[], &[]);
            Ipv4Packet::new_unchecked(&mut p[..20]).set_src(src);
            refill(&mut p);
            assert_eq!(t.on_segment(&p, now, &mut out), Action::Finished(0), "{round} {i}");
        }
        collect(&mut t, now);
        assert_eq!(t.len(), 200);
        let n = t.finish_all(&mut out, |_| {});
        assert_eq!(n, 200);
    }
    assert_eq!(t.stats().evicted, 0);
    assert_eq!(t.stats().finished, [0, 800, 400, 0]);
}

#[test]
fn config_follows_the_synscan_option_style() {
    use crate::probe::tcp_synscan::{OptionStyle, TcpSynScan};
    let mut probe = crate::probe::ProbeConfig::new(MAC_US, MAC_GW);
    probe.ttl = 33;
    probe.timestamp = 1234;
    let d = Duration::from_secs(3);
    let c = HandshakeConfig::for_tcp_synscan(&probe, OptionStyle::Linux, 10, d, 99);
    assert_eq!((c.our_wscale, c.our_tsval, c.ttl, c.max_bytes), (Some(7), Some(1234), 33, 99));
    assert_eq!(c.link, LinkHeader::Ethernet { src: MAC_US, dst: MAC_GW });
    let c = HandshakeConfig::for_tcp_synscan(&probe, OptionStyle::Windows, 10, d, 99);
    assert_eq!((c.our_wscale, c.our_tsval), (Some(8), None));
    let c = HandshakeConfig::for_tcp_synscan(&probe, OptionStyle::SmallestProbes, 10, d, 99);
    assert_eq!((c.our_wscale, c.our_tsval), (None, None));
    let c = HandshakeConfig::for_tcp_synscan(&probe, OptionStyle::Bsd, 10, d, 99);
    assert_eq!((c.our_wscale, c.our_tsval), (Some(6), Some(1234)));
    // The shifts agree with the options the module really writes.
    for style in [OptionStyle::Windows, OptionStyle::Linux, OptionStyle::Bsd] {
        let m = TcpSynScan::new(Some(style.name())).expect("style");
        let mut buf = [0u8; 128];
        crate::probe::ProbeModule::prepare(&m, &mut buf, &probe);
        let t = TcpPacket::new_checked(&buf[34..34 + style.tcp_len()]).expect("tcp");
        let ws = TcpOptions::new(t.options()).find_map(|o| match o {
            Ok(TcpOption::WindowScale(s)) => Some(s),
            _ => None,
        });
        let c = HandshakeConfig::for_tcp_synscan(&probe, style, 1, d, 1);
        assert_eq!(ws, c.our_wscale, "{style:?}");
        let ts = TcpOptions::new(t.options()).any(|o| matches!(o, Ok(TcpOption::Timestamp { .. })));
        assert_eq!(ts, c.our_tsval.is_some(), "{style:?}");
    }
}

#[test]
fn combined_field_list() {
    let s = &crate::probe::tcp_synscan::FIELDS;
    assert_eq!(&TCP_SYNSCAN_BANNER_FIELDS[..s.len()], &s[..]);
    assert_eq!(&TCP_SYNSCAN_BANNER_FIELDS[s.len()..], &BANNER_FIELDS[..]);
    let schema = crate::fields::Schema::for_module(&TCP_SYNSCAN_BANNER_FIELDS);
    let at = schema.index_of("data").expect("data");
    assert_eq!(schema.index_of("banner_class"), Some(at + 1));
    assert_eq!(at, schema.module_start() + s.len());
}

#[test]
fn banner_field_definitions() {
    assert_eq!(BANNER_FIELDS[0].name, "data");
    assert_eq!(BANNER_FIELDS[0].ty, FieldType::Bin);
    assert_eq!(BANNER_FIELDS[1].name, "banner_class");
    let names: Vec<_> =
        [BannerClass::Banner, BannerClass::NoBanner, BannerClass::Reset, BannerClass::Truncated]
            .iter()
            .map(|c| c.name())
            .collect();
    assert_eq!(names, ["banner", "no-banner", "reset", "truncated"]);
}

/// One operation of the random-sequence property test.
#[derive(Clone, Debug)]
enum Op {
    SynAck(u8),
    Data { peer: u8, off: u16, len: u8, fin: bool },
    Rst { peer: u8, off: u16 },
    Garbage(Vec<u8>),
    Mutated { peer: u8, at: u8, byte: u8 },
    Expire(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8).prop_map(Op::SynAck),
        (0u8..8, 0u16..80, 0u8..40, any::<bool>()).prop_map(|(peer, off, len, fin)| Op::Data {
            peer,
            off,
            len,
            fin
        }),
        (0u8..8, 0u16..80).prop_map(|(peer, off)| Op::Rst { peer, off }),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Garbage),
        (0u8..8, any::<u8>(), any::<u8>()).prop_map(|(peer, at, byte)| Op::Mutated {
            peer,
            at,
            byte
        }),
        (0u16..3000).prop_map(Op::Expire),
    ]
}

fn peer_seg(peer: u8, off: u32, payload: &[u8], flags: u8) -> Vec<u8> {
    let src = Ipv4Addr::from(u32::from(THEM) + u32::from(peer));
    let mut p = data(off, payload, flags);
    Ipv4Packet::new_unchecked(&mut p[..20]).set_src(src);
    refill(&mut p);
    p
}

proptest! {
    /// Random sequences of SYN-ACKs, data, resets, garbage and clock steps never panic,
    /// keep the counts consistent, and every report's data is a prefix of the peer's stream.
    #[test]
    fn random_traffic_never_panics(ops in proptest::collection::vec(op(), 0..60)) {
        let cfg = HandshakeConfig {
            capacity: 4,
            done_reserve: 2,
            max_bytes: 50,
            idle_timeout: Some(Duration::from_millis(1500)),
            ..config()
        };
        let mut t = HandshakeTable::with_config(cfg);
        let start = Instant::now();
        let mut now = start;
        let mut out = [0u8; 256];
        let stream: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut reported = 0u64;
        for o in ops {
            match o {
                Op::SynAck(p) => { t.on_synack(&synack_from(u32::from(p)), now, 1, PAYLOAD, &mut out); }
                Op::Data { peer, off, len, fin } => {
                    let a = usize::from(off);
                    let b = (a + usize::from(len)).min(stream.len());
                    let f = if fin { tcp::FLAG_FIN } else { 0 };
                    t.on_segment(&peer_seg(peer, off.into(), &stream[a..b], f), now, &mut out);
                }
                Op::Rst { peer, off } => {
                    let mut p = peer_seg(peer, off.into(), &[], 0);
                    p[33] = tcp::FLAG_RST;
                    refill(&mut p);
                    t.on_segment(&p, now, &mut out);
                }
                Op::Garbage(g) => {
                    t.on_segment(&g, now, &mut out);
                    t.on_synack(&g, now, 1, PAYLOAD, &mut out);
                }
                Op::Mutated { peer, at, byte } => {
                    let mut p = peer_seg(peer, 0, &stream[..10], 0);
                    let i = usize::from(at) % p.len();
                    p[i] = byte;
                    t.on_segment(&p, now, &mut out);
                    t.on_synack(&p, now, 1, PAYLOAD, &mut out);
                }
                Op::Expire(ms) => {
                    now += Duration::from_millis(u64::from(ms) * 2);
                    let mut bad = false;
                    reported += t.expire(now, &mut out, |f| {
                        bad |= f.data != &stream[..f.data.len()];
                        bad |= f.data.len() > 50;
                    }) as u64;
                    prop_assert!(!bad);
                }
            }
            prop_assert!(t.len() <= 4);
            prop_assert!(t.pending_reports() <= 2 + 4);
        }
        reported += t.finish_all(&mut out, |_| {}) as u64;
        let s = *t.stats();
        prop_assert_eq!(reported, s.finished.iter().sum::<u64>());
        prop_assert_eq!(s.started, reported + s.lost_unreported);
        prop_assert!(t.is_empty());
    }

    /// Arbitrary bytes handed to either entry point never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                   small in 0usize..80) {
        let (mut t, now) = started(config(), &[]);
        let mut out = vec![0u8; small];
        let _ = t.on_segment(&bytes, now, &mut out);
        let _ = t.on_synack(&bytes, now, 1, PAYLOAD, &mut out);
        let _ = t.expire(now + Duration::from_secs(10), &mut out, |_| {});
    }
}
