//! Privileged tests of rzmap-sys in a two-namespace lab (see `common`). They fail when the
//! lab cannot be built, unless `RZMAP_SKIP_LAB=1`. Every socket is opened on a thread that
//! has entered one of the lab's namespaces (checked before any test code runs there).

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use etherparse::PacketBuilder;
use rzmap_core::link::{FrameBatch, SLOT_SIZE};
use rzmap_sys::bpf::{self, FilterKind, FilterSpec, LinkLayer};
use rzmap_sys::discovery::{self, DiscoveryError, Overrides};
use rzmap_sys::netns;
use rzmap_sys::ring::{PacketRing, RingConfig};
use rzmap_sys::send::{AfPacketSender, RawIpSender};

/// Appends a frame to an engine batch; false when the batch is full.
fn push(batch: &mut FrameBatch, frame: &[u8]) -> bool {
    if batch.is_full() || frame.len() > SLOT_SIZE {
        return false;
    }
    batch.next_slot()[..frame.len()].copy_from_slice(frame);
    batch.commit(frame.len());
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SynAck,
    Rst,
    Syn,
    Ack,
    Udp,
    EchoReply,
    EchoRequest,
    SynAckFromB,
    Arp,
    /// Addressed to another MAC: seen only because the ring is promiscuous.
    SynAckToOther,
    /// A SYN-ACK behind 12 bytes of IP options (the filter must use the real IHL).
    SynAckIpOptions,
}
const OTHER_MAC: [u8; 6] = [0x02, 0x52, 0x5a, 0x00, 0x00, 0xee];
const KINDS: [Kind; 11] = [
    Kind::SynAck,
    Kind::Rst,
    Kind::Syn,
    Kind::Ack,
    Kind::Udp,
    Kind::EchoReply,
    Kind::EchoRequest,
    Kind::SynAckFromB,
    Kind::Arp,
    Kind::SynAckToOther,
    Kind::SynAckIpOptions,
];

fn accepted(filter: FilterKind, k: Kind) -> bool {
    use Kind::*;
    match filter {
        FilterKind::Tcp => {
            matches!(k, SynAck | Rst | EchoReply | EchoRequest | SynAckToOther | SynAckIpOptions)
        }
        FilterKind::Icmp => matches!(k, EchoReply),
        FilterKind::Udp => matches!(k, Udp | EchoReply | EchoRequest),
        // The banner filter is checked in bpf's unit tests and rzmap's lab_stateless tests.
        FilterKind::TcpSegments { .. } => unreachable!("not exercised by this test"),
    }
}

/// An Ethernet frame A -> B of kind `k` carrying identifier `id` (TCP seq, ICMP seq, UDP
/// source port 40000+id), padded with `pad` payload bytes.
fn frame(k: Kind, id: u16, pad: usize) -> Vec<u8> {
    let src_mac = if k == Kind::SynAckFromB { MAC_B } else { MAC_A };
    let dst_mac = if k == Kind::SynAckToOther { OTHER_MAC } else { MAC_B };
    let ip = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(IP_A.octets(), IP_B.octets(), 64);
    let payload = vec![0xab; pad];
    let mut v = Vec::new();
    match k {
        Kind::SynAck | Kind::SynAckFromB | Kind::SynAckToOther => {
            ip.tcp(80, 40000, u32::from(id), 1024).syn().ack(1).write(&mut v, &payload)
        }
        Kind::Rst => ip.tcp(80, 40000, u32::from(id), 0).rst().write(&mut v, &payload),
        Kind::Syn => ip.tcp(40000, 80, u32::from(id), 1024).syn().write(&mut v, &payload),
        Kind::Ack => ip.tcp(80, 40000, u32::from(id), 1024).ack(1).write(&mut v, &payload),
        Kind::Udp => ip.udp(40000 + id, 9).write(&mut v, &payload),
        Kind::EchoReply => ip.icmpv4_echo_reply(7, id).write(&mut v, &payload),
        Kind::EchoRequest => ip.icmpv4_echo_request(7, id).write(&mut v, &payload),
        Kind::SynAckIpOptions => {
            let mut tcp = etherparse::TcpHeader::new(80, 40000, u32::from(id), 1024);
            tcp.syn = true;
            tcp.ack = true;
            tcp.acknowledgment_number = 1;
            let mut iph = etherparse::Ipv4Header::new(
                (tcp.header_len() + payload.len()) as u16,
                64,
                etherparse::IpNumber::TCP,
                IP_A.octets(),
                IP_B.octets(),
            )
            .unwrap();
            iph.options = etherparse::Ipv4Options::try_from(&[1u8; 12][..]).unwrap();
            iph.header_checksum = iph.calc_header_checksum();
            tcp.checksum = tcp.calc_checksum_ipv4(&iph, &payload).unwrap();
            v.extend_from_slice(&MAC_B);
            v.extend_from_slice(&MAC_A);
            v.extend_from_slice(&[0x08, 0x00]);
            iph.write(&mut v).unwrap();
            tcp.write(&mut v).unwrap();
            v.extend_from_slice(&payload);
            Ok(())
        }
        Kind::Arp => {
            v.extend_from_slice(&[0xff; 6]);
            v.extend_from_slice(&MAC_A);
            v.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
            v.extend_from_slice(&MAC_A);
            v.extend_from_slice(&IP_A.octets());
            v.extend_from_slice(&[0; 6]);
            v.extend_from_slice(&[198, 18, 0, 99]);
            Ok(())
        }
    }
    .unwrap();
    v
}

/// The identifier carried by an IPv4 packet built by [`frame`].
fn id_of(ip: &[u8]) -> Option<u16> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let l4 = &ip[usize::from(ip[0] & 0xf) * 4..];
    match ip[9] {
        6 => Some(u32::from_be_bytes(l4.get(4..8)?.try_into().ok()?) as u16),
        1 => Some(u16::from_be_bytes(l4.get(6..8)?.try_into().ok()?)),
        17 => Some(u16::from_be_bytes(l4.get(..2)?.try_into().ok()?).wrapping_sub(40000)),
        _ => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn af_packet_batches_reach_rings_and_filters_select_replies() {
    let Some(lab) = Lab::new() else { return };
    let ifindex = |ns: &str, dev: &str| {
        let dev = dev.to_string();
        lab.in_ns(ns, move || discovery::link_by_name(&dev).unwrap().index)
    };
    let (if_a, if_b) = (ifindex(&lab.ns_a, &lab.veth_a), ifindex(&lab.ns_b, &lab.veth_b));
    for filter in [FilterKind::Tcp, FilterKind::Icmp, FilterKind::Udp] {
        let mut batch = FrameBatch::new(64, SLOT_SIZE);
        let mut expected = BTreeSet::new();
        for id in 0..45u16 {
            let k = KINDS[usize::from(id) % KINDS.len()];
            assert!(push(&mut batch, &frame(k, id, 40)));
            if accepted(filter, k) {
                expected.insert(id);
            }
        }
        let (ready_tx, ready_rx) = mpsc::channel();
        let want = expected.len();
        let receiver = lab.spawn_in_ns(&lab.ns_b, move || {
            let spec = FilterSpec {
                kind: filter,
                link: LinkLayer::Ethernet,
                our_mac: Some(MAC_B),
                snaplen: 96,
            };
            let cfg = RingConfig { block_size: 1 << 16, block_count: 4, ..RingConfig::default() };
            let mut ring = PacketRing::open(if_b, &bpf::program(&spec), &cfg).unwrap();
            assert_eq!(ring.link_header_len(), 14);
            ready_tx.send(()).unwrap();
            let got = collect(&mut ring, want, Duration::from_millis(200));
            (got, ring.stats().unwrap())
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
        let outcome = lab.in_ns(&lab.ns_a, move || {
            let mut tx = AfPacketSender::open(if_a, MAC_B).unwrap();
            tx.set_qdisc_bypass(false).unwrap();
            let first = tx.send_from(batch.frames());
            // The same sender keeps working for a second batch built from slices.
            let f = frame(Kind::Syn, 999, 0);
            let second = tx.send_frames(&[&f, &f]);
            (first, second)
        });
        assert_eq!((outcome.0.sent, outcome.0.failed), (45, 0), "{filter:?}");
        assert_eq!((outcome.1.sent, outcome.1.failed), (2, 0));
        let (got, stats) = receiver.join().unwrap();
        let ids: BTreeSet<u16> = got
            .iter()
            .map(|(f, _)| {
                assert!(f[..6] == MAC_B || f[..6] == OTHER_MAC, "{filter:?}: frame for B");
                assert_ne!(&f[6..12], &MAC_B, "{filter:?}: our own MAC must be filtered");
                id_of(&f[14..]).unwrap_or_else(|| panic!("{filter:?}: unexpected frame {f:02x?}"))
            })
            .collect();
        assert_eq!(ids, expected, "{filter:?}: accepted set");
        let order: Vec<u16> = got.iter().map(|(f, _)| id_of(&f[14..]).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{filter:?}: capture order {order:?}");
        assert_eq!(got.len(), expected.len(), "{filter:?}: no duplicates");
        let now = now_secs();
        for (_, ts) in &got {
            assert!(u64::from(ts.sec).abs_diff(now) < 60 && ts.nsec < 1_000_000_000);
            let st = ts.to_system_time().duration_since(UNIX_EPOCH).unwrap();
            assert_eq!((st.as_secs(), st.subsec_nanos()), (u64::from(ts.sec), ts.nsec));
        }
        assert_eq!(stats.packets, expected.len() as u64, "{filter:?}: stats");
        assert_eq!(stats.drops, 0);
    }
}

#[test]
fn raw_ip_sender_and_cooked_ring_with_snaplen() {
    let Some(lab) = Lab::new() else { return };
    let veth_b = lab.veth_b.clone();
    let if_b = lab.in_ns(&lab.ns_b, move || discovery::link_by_name(&veth_b).unwrap().index);
    let kinds = [Kind::Udp, Kind::Syn, Kind::EchoRequest, Kind::Udp, Kind::Ack];
    let mut batch = FrameBatch::new(32, SLOT_SIZE);
    let mut expected = BTreeSet::new();
    for id in 0..30u16 {
        let k = kinds[usize::from(id) % kinds.len()];
        assert!(push(&mut batch, &frame(k, id, 200)));
        if matches!(k, Kind::Udp | Kind::EchoRequest) {
            expected.insert(id);
        }
    }
    assert!(push(&mut batch, &[0u8; 10]), "a malformed frame is counted as failed");
    let (ready_tx, ready_rx) = mpsc::channel();
    let want = expected.len();
    let receiver = lab.spawn_in_ns(&lab.ns_b, move || {
        let spec =
            FilterSpec { kind: FilterKind::Udp, link: LinkLayer::Ip, our_mac: None, snaplen: 64 };
        let cfg = RingConfig {
            cooked: true,
            block_size: 1 << 16,
            block_count: 4,
            ..RingConfig::default()
        };
        let mut ring = PacketRing::open(if_b, &bpf::program(&spec), &cfg).unwrap();
        assert_eq!(ring.link_header_len(), 0);
        ready_tx.send(()).unwrap();
        collect(&mut ring, want, Duration::from_millis(200))
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let veth_a = lab.veth_a.clone();
    let outcome = lab.in_ns(&lab.ns_a, move || {
        let mut tx = RawIpSender::open(&veth_a).unwrap();
        tx.send_from(batch.frames())
    });
    assert_eq!((outcome.sent, outcome.failed), (30, 1));
    let got = receiver.join().unwrap();
    let ids: BTreeSet<u16> = got
        .iter()
        .map(|(p, _)| {
            assert_eq!(p[0], 0x45, "cooked packets start at the IPv4 header");
            assert_eq!(p.len(), 64, "truncated to the snaplen");
            assert_eq!(&p[12..16], &IP_A.octets());
            id_of(p).unwrap_or_else(|| panic!("unexpected packet {p:02x?}"))
        })
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(got.len(), expected.len());
}

#[test]
fn discovery_reads_route_addresses_and_neighbour_table() {
    let Some(lab) = Lab::new() else { return };
    // A permanent entry with a made-up MAC proves the table (not ARP) was read.
    let fake = [0x02, 0, 0, 0, 0, 0x77];
    run(&[
        "ip",
        "-n",
        &lab.ns_a,
        "neigh",
        "replace",
        &IP_B.to_string(),
        "lladdr",
        &mac_str(fake),
        "dev",
        &lab.veth_a,
        "nud",
        "permanent",
    ]);
    let veth_a = lab.veth_a.clone();
    lab.in_ns(&lab.ns_a, move || {
        let route = discovery::default_route(None).unwrap().unwrap();
        assert_eq!(route.gateway, Some(IP_B));
        let link = discovery::link_by_index(route.ifindex).unwrap();
        assert_eq!(link.name, veth_a);
        assert_eq!(link.mac, Some(MAC_A));
        assert_eq!(link.link_type, discovery::ARPHRD_ETHER);
        assert!(link.up && link.running);
        assert_eq!(discovery::ipv4_addresses(link.index).unwrap(), vec![(IP_A, 24)]);
        assert_eq!(discovery::neighbour_mac(link.index, IP_B).unwrap(), Some(fake));
        let setup = discovery::discover(&Overrides::default(), Duration::from_secs(1)).unwrap();
        assert_eq!(setup.link, link);
        assert_eq!(setup.ipv4, vec![IP_A]);
        assert_eq!(setup.source_mac, Some(MAC_A));
        assert_eq!(setup.gateway_ip, Some(IP_B));
        assert_eq!(setup.gateway_mac, Some(fake));
        // Flags replace discovery steps.
        let o = Overrides {
            iface: Some(veth_a.clone()),
            gateway_mac: Some([2, 0, 0, 0, 0, 1]),
            source_mac: Some([2, 0, 0, 0, 0, 2]),
            ..Overrides::default()
        };
        let s = discovery::discover(&o, Duration::from_secs(1)).unwrap();
        assert_eq!(
            (s.gateway_mac, s.source_mac),
            (Some([2, 0, 0, 0, 0, 1]), Some([2, 0, 0, 0, 0, 2]))
        );
    });
}

#[test]
fn discovery_resolves_a_missing_gateway_mac_by_arp() {
    let Some(lab) = Lab::new() else { return };
    run(&["ip", "-n", &lab.ns_a, "neigh", "flush", "all"]);
    lab.in_ns(&lab.ns_a, move || {
        let route = discovery::default_route(None).unwrap().unwrap();
        assert_eq!(discovery::neighbour_mac(route.ifindex, IP_B).unwrap(), None);
        let start = Instant::now();
        let setup = discovery::discover(&Overrides::default(), Duration::from_secs(2)).unwrap();
        assert_eq!(setup.gateway_mac, Some(MAC_B));
        assert!(start.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn discovery_errors_name_the_failed_step() {
    let Some(lab) = Lab::new() else { return };
    let veth_a = lab.veth_a.clone();
    // A gateway that does not exist: ARP goes unanswered.
    run(&["ip", "-n", &lab.ns_a, "route", "replace", "default", "via", "198.18.0.77"]);
    let v = veth_a.clone();
    lab.in_ns(&lab.ns_a, move || {
        let e = discovery::discover(&Overrides::default(), Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(&e, DiscoveryError::GatewayMacUnresolved { iface, gateway }
                if *iface == v && *gateway == Ipv4Addr::new(198, 18, 0, 77)),
            "{e}"
        );
        let o = Overrides { iface: Some("nope0".into()), ..Overrides::default() };
        let e = discovery::discover(&o, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, DiscoveryError::NoSuchInterface { .. }), "{e}");
    });
    run(&["ip", "-n", &lab.ns_a, "route", "del", "default"]);
    run(&["ip", "-n", &lab.ns_a, "addr", "flush", "dev", &veth_a]);
    let v = veth_a.clone();
    lab.in_ns(&lab.ns_a, move || {
        let e = discovery::discover(&Overrides::default(), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, DiscoveryError::NoDefaultRoute { iface: None }), "{e}");
        assert_eq!(e.flag(), Some("-i/--interface"));
        let o = Overrides { iface: Some(v.clone()), ..Overrides::default() };
        let e = discovery::discover(&o, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, DiscoveryError::NoIpv4Address { .. }), "{e}");
        let o = Overrides { iface: Some(v), source_ips_given: true, ..Overrides::default() };
        let e = discovery::discover(&o, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, DiscoveryError::NoDefaultRoute { iface: Some(_) }), "{e}");
        assert_eq!(e.flag(), Some("-G/--gateway-mac"));
    });
}

#[test]
fn namespace_guard_refuses_the_host_namespace() {
    let Some(lab) = Lab::new() else { return };
    let ns = lab.ns_a.clone();
    std::thread::spawn(move || {
        assert!(netns::in_root_netns().unwrap());
        assert!(netns::require_in_netns(&ns).is_err());
        netns::enter_netns(&ns).unwrap();
        assert!(!netns::in_root_netns().unwrap());
        netns::require_in_netns(&ns).unwrap();
    })
    .join()
    .unwrap();
    assert!(netns::enter_netns("rzsys-does-not-exist").is_err());
}

/// Re-runs this test binary as a child that opens sockets in the lab, drops root, and
/// checks that the sockets still work while new ones cannot be opened.
#[test]
fn dropping_privileges_keeps_open_sockets_working() {
    if let Ok(spec) = std::env::var("RZMAP_SYS_DROP_CHILD") {
        return drop_child(&spec);
    }
    let Some(lab) = Lab::new() else { return };
    let veth_a = lab.veth_a.clone();
    let if_a = lab.in_ns(&lab.ns_a, move || discovery::link_by_name(&veth_a).unwrap().index);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "dropping_privileges_keeps_open_sockets_working", "--nocapture"])
        .env("RZMAP_SYS_DROP_CHILD", format!("{} {if_a}", lab.ns_a))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn drop_child(spec: &str) {
    let (ns, ifindex) = spec.split_once(' ').unwrap();
    let ifindex: u32 = ifindex.parse().unwrap();
    netns::enter_netns(ns).unwrap();
    assert_in_lab(ns);
    let mut tx = AfPacketSender::open(ifindex, MAC_B).unwrap();
    let drop = rzmap_sys::process::drop_privileges().unwrap();
    assert!(matches!(drop, rzmap_sys::process::PrivilegeDrop::Dropped { uid, .. } if uid != 0));
    let e = AfPacketSender::open(ifindex, MAC_B).err().expect("no new packet socket after drop");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    let f = frame(Kind::Syn, 1, 0);
    let out = tx.send_frames(&[&f, &f, &f]);
    assert_eq!((out.sent, out.failed), (3, 0));
}

#[test]
fn tx_checksum_offload_can_be_switched() {
    let Some(lab) = Lab::new() else { return };
    let dev = lab.veth_a.clone();
    lab.in_ns(&lab.ns_a, move || {
        use rzmap_sys::ethtool::{set_tx_checksum_offload, tx_checksum_offload};
        set_tx_checksum_offload(&dev, true).unwrap();
        assert!(tx_checksum_offload(&dev).unwrap());
        set_tx_checksum_offload(&dev, false).unwrap();
        assert!(!tx_checksum_offload(&dev).unwrap());
        assert!(tx_checksum_offload("rzsys-none0").is_err());
    });
}

#[test]
fn send_failures_are_counted_and_bad_frames_skipped() {
    let Some(lab) = Lab::new() else { return };
    let dev = lab.veth_a.clone();
    let ns = lab.ns_a.clone();
    lab.in_ns(&lab.ns_a, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let mut tx = AfPacketSender::open(ifindex, MAC_B).unwrap();
        let ok = frame(Kind::Syn, 1, 0);
        let too_big = frame(Kind::Syn, 2, 1900); // beyond the 1500-byte MTU
        let out = tx.send_frames(&[&ok, &ok, &too_big, &ok]);
        assert_eq!((out.sent, out.failed, out.last_errno), (3, 1, Some(libc::EMSGSIZE)));
        // With the link down every attempt fails and the whole batch is counted.
        run(&["ip", "-n", &ns, "link", "set", &dev, "down"]);
        tx.set_retries(2);
        let out = tx.send_frames(&[&ok, &ok, &ok]);
        assert_eq!((out.sent, out.failed, out.last_errno), (0, 3, Some(libc::ENETDOWN)));
        assert_eq!(out.last_error().unwrap().raw_os_error(), Some(libc::ENETDOWN));
    });
}

#[test]
fn ring_drops_are_counted_and_statistics_accumulate() {
    let Some(lab) = Lab::new() else { return };
    let (va, vb) = (lab.veth_a.clone(), lab.veth_b.clone());
    let if_a = lab.in_ns(&lab.ns_a, move || discovery::link_by_name(&va).unwrap().index);
    let if_b = lab.in_ns(&lab.ns_b, move || discovery::link_by_name(&vb).unwrap().index);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let receiver = lab.spawn_in_ns(&lab.ns_b, move || {
        let spec = FilterSpec {
            kind: FilterKind::Tcp,
            link: LinkLayer::Ethernet,
            our_mac: Some(MAC_B),
            snaplen: 96,
        };
        // Two 4 KiB blocks hold a few dozen frames; the rest must be dropped.
        let cfg = RingConfig { block_size: 4096, block_count: 2, ..RingConfig::default() };
        let mut ring = PacketRing::open(if_b, &bpf::program(&spec), &cfg).unwrap();
        ready_tx.send(()).unwrap();
        sent_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let first = ring.stats().unwrap();
        let mut seen = 0;
        while ring.wait(Duration::from_millis(50)).unwrap() {
            seen += ring.next_batch(|_, _| {});
        }
        let second = ring.stats().unwrap();
        (first, second, seen)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    lab.in_ns(&lab.ns_a, move || {
        let mut tx = AfPacketSender::open(if_a, MAC_B).unwrap();
        let mut batch = FrameBatch::new(200, SLOT_SIZE);
        for id in 0..200 {
            assert!(push(&mut batch, &frame(Kind::SynAck, id, 0)));
        }
        assert_eq!(tx.send_from(batch.frames()).sent, 200);
    });
    sent_tx.send(()).unwrap();
    let (first, second, seen) = receiver.join().unwrap();
    assert_eq!(first.packets, 200, "tp_packets counts dropped packets too");
    assert!(first.drops > 0 && first.drops < 200, "{first:?}");
    assert_eq!(seen as u64, first.packets - first.drops, "every kept packet is delivered");
    assert_eq!(second, first, "the kernel reset its counters; the totals did not");
}

/// A tun device (no link-layer header) opened by the test, as `-X` users have with VPNs.
struct Tun(std::os::fd::OwnedFd);

impl Tun {
    /// Attaches to the existing tun device `name` in the calling thread's namespace.
    fn attach(name: &str) -> Tun {
        use std::os::fd::FromRawFd;
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        const IFF_TUN: libc::c_short = 0x0001;
        const IFF_NO_PI: libc::c_short = 0x1000;
        #[repr(C)]
        struct IfreqFlags {
            name: [u8; 16],
            flags: libc::c_short,
            _pad: [u8; 22],
        }
        // SAFETY: a NUL-terminated path literal and plain flags.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open /dev/net/tun: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut req = IfreqFlags { name: [0; 16], flags: IFF_TUN | IFF_NO_PI, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a valid ifreq-sized buffer with a NUL-terminated name, alive for
        // the call; TUNSETIFF reads and may update it.
        let rc =
            unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), TUNSETIFF as _, &mut req) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        Tun(fd)
    }

    /// Reads one packet, waiting up to `ms` milliseconds.
    fn read(&self, ms: i32) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 2048];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    /// Injects one IP packet, as if it had arrived on the device.
    fn write(&self, packet: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: `packet` is readable for its length.
        let n = unsafe { libc::write(self.0.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(n, packet.len() as isize, "tun write: {}", std::io::Error::last_os_error());
    }
}

/// A bare IPv4 packet `src -> dst` of kind `k` (only UDP, SYN, echo reply) carrying `id`.
fn ip_packet(k: Kind, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64);
    let mut v = Vec::new();
    match k {
        Kind::Udp => b.udp(40000 + id, 9).write(&mut v, &[0x5a; 100]),
        Kind::Syn => b.tcp(40000, 80, u32::from(id), 1024).syn().write(&mut v, &[]),
        Kind::EchoReply => b.icmpv4_echo_reply(7, id).write(&mut v, &[0; 8]),
        _ => unreachable!(),
    }
    .unwrap();
    v
}

#[test]
fn ip_layer_on_a_tun_device_discovery_send_and_cooked_ring() {
    let Some(lab) = Lab::new() else { return };
    let ns = lab.ns_a.clone();
    let tun_ip = Ipv4Addr::new(198, 18, 2, 1);
    run(&["ip", "-n", &ns, "tuntap", "add", "mode", "tun", "name", "rzt0"]);
    run(&["ip", "-n", &ns, "addr", "add", "198.18.2.1/24", "dev", "rzt0"]);
    run(&["ip", "-n", &ns, "link", "set", "rzt0", "up"]);
    run(&["ip", "-n", &ns, "route", "add", "198.18.3.0/24", "dev", "rzt0"]);
    run(&["ip", "-n", &ns, "route", "add", "default", "dev", "rzt0", "metric", "500"]);
    lab.in_ns(&lab.ns_a, move || {
        let tun = Tun::attach("rzt0");
        // Discovery: no MAC, no gateway; fine with -X, an error naming the flag without.
        let o = Overrides { iface: Some("rzt0".into()), ip_layer: true, ..Overrides::default() };
        let setup = discovery::discover(&o, Duration::from_millis(300)).unwrap();
        assert_eq!(setup.link.link_type, 0xfffe, "ARPHRD_NONE");
        assert_eq!((setup.link.mac, setup.gateway_ip, setup.gateway_mac), (None, None, None));
        assert_eq!(setup.ipv4, vec![tun_ip]);
        let o = Overrides { iface: Some("rzt0".into()), ..Overrides::default() };
        let e = discovery::discover(&o, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, DiscoveryError::NoSourceMac { .. }), "{e}");

        // The kernel starts the device's queue (dropping until then) once it sees the
        // carrier, shortly after the attach: wait until the link is running.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !discovery::link_by_name("rzt0").unwrap().running {
            assert!(Instant::now() < deadline, "tun device never came up");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(20));
        // Send: the IP part of each frame comes out of the tun device, in order.
        let mut tx = RawIpSender::open("rzt0").unwrap();
        let mut batch = FrameBatch::new(16, SLOT_SIZE);
        for id in 0..16u16 {
            let mut f = vec![0u8; 14];
            f.extend(ip_packet(Kind::Udp, tun_ip, Ipv4Addr::new(198, 18, 3, id as u8), id));
            assert!(push(&mut batch, &f));
        }
        let out = tx.send_from(batch.frames());
        assert_eq!((out.sent, out.failed), (16, 0));
        // Bare IP packets (no Ethernet header to skip) work too.
        tx.set_header_skip(0);
        let bare = ip_packet(Kind::Udp, tun_ip, Ipv4Addr::new(198, 18, 3, 200), 200);
        assert_eq!(tx.send_frames(&[&bare]).sent, 1);
        for id in 0..16u16 {
            let p = tun.read(2000).expect("packet on the tun device");
            assert_eq!(&p[12..20], &[198, 18, 2, 1, 198, 18, 3, id as u8]);
            assert_eq!(id_of(&p), Some(id));
            assert_eq!(
                &p[..batch.frame(usize::from(id)).len() - 14],
                &batch.frame(usize::from(id))[14..]
            );
        }

        // Receive: packets injected into the device reach a cooked ring through the filter.
        let spec =
            FilterSpec { kind: FilterKind::Udp, link: LinkLayer::Ip, our_mac: None, snaplen: 64 };
        let cfg = RingConfig {
            cooked: true,
            block_size: 1 << 16,
            block_count: 4,
            ..RingConfig::default()
        };
        let ifindex = setup.link.index;
        let mut ring = PacketRing::open(ifindex, &bpf::program(&spec), &cfg).unwrap();
        let peer = Ipv4Addr::new(198, 18, 3, 9);
        let mut expected = BTreeSet::new();
        for id in 0..12u16 {
            let k = [Kind::Udp, Kind::Syn, Kind::EchoReply][usize::from(id) % 3];
            tun.write(&ip_packet(k, peer, tun_ip, id));
            if k != Kind::Syn {
                expected.insert(id);
            }
        }
        let got = collect(&mut ring, expected.len(), Duration::from_millis(200));
        let ids: BTreeSet<u16> = got
            .iter()
            .map(|(p, _)| {
                assert_eq!(&p[12..16], &peer.octets(), "only the injected packets");
                assert!(p.len() <= 64);
                id_of(p).unwrap()
            })
            .collect();
        assert_eq!(ids, expected);
        assert_eq!(got.len(), expected.len());
    });
}
