//! A two-namespace lab for rzmap-sys's privileged tests.
//!
//! `a` and `b` are fresh network namespaces joined by one veth pair (198.18.0.1/24 in `a`,
//! 198.18.0.2/24 in `b`), with TX checksum offload off (checked) and IPv6 disabled; `a`'s default
//! route goes via `b`. Nothing else is reachable from either. Dropping the lab deletes both
//! namespaces (and with them the veth pair), also when a test panics.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use rzmap_sys::bpf::{self, FilterKind, FilterSpec, LinkLayer};
use rzmap_sys::ring::{PacketRing, RingConfig, Timestamp};
use rzmap_sys::{discovery, netns};

pub const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const MAC_A: [u8; 6] = [0x02, 0x52, 0x5a, 0x00, 0x00, 0x01];
pub const MAC_B: [u8; 6] = [0x02, 0x52, 0x5a, 0x00, 0x00, 0x02];

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub veth_a: String,
    pub veth_b: String,
    created: Vec<String>,
}

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| {
        panic!("lab: cannot run {args:?}: {e} (set RZMAP_SKIP_LAB=1 to skip lab tests)")
    });
    assert!(
        out.status.success(),
        "lab: {args:?} failed: {} (lab tests need root; set RZMAP_SKIP_LAB=1 to skip them)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    /// Builds the lab, or returns `None` when `RZMAP_SKIP_LAB=1`. Panics when it cannot.
    pub fn new() -> Option<Lab> {
        if std::env::var("RZMAP_SKIP_LAB").as_deref() == Ok("1") {
            eprintln!("RZMAP_SKIP_LAB=1: lab test skipped");
            return None;
        }
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            ns_a: format!("rzsys-{pid}-{n}-a"),
            ns_b: format!("rzsys-{pid}-{n}-b"),
            veth_a: format!("rs{pid}x{n}a"),
            veth_b: format!("rs{pid}x{n}b"),
            created: Vec::new(),
        };
        assert!(lab.veth_a.len() <= 15, "interface name too long");
        for ns in [lab.ns_a.clone(), lab.ns_b.clone()] {
            run(&["ip", "netns", "add", &ns]);
            lab.created.push(ns.clone());
            run(&["ip", "netns", "exec", &ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        }
        let (a, b) = (lab.ns_a.clone(), lab.ns_b.clone());
        let (va, vb) = (lab.veth_a.clone(), lab.veth_b.clone());
        run(&[
            "ip", "link", "add", "name", &va, "netns", &a, "type", "veth", "peer", "name", &vb,
            "netns", &b,
        ]);
        for (ns, dev, mac, ip) in [(&a, &va, MAC_A, IP_A), (&b, &vb, MAC_B, IP_B)] {
            run(&["ip", "-n", ns, "link", "set", dev, "address", &mac_str(mac)]);
            run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        run(&["ip", "-n", &a, "route", "add", "default", "via", &IP_B.to_string()]);
        // `ethtool -K DEV tx off`, done with the ioctl so the ethtool program is not needed.
        for (ns, dev) in [(a, va), (b, vb)] {
            lab.in_ns(&ns.clone(), move || {
                rzmap_sys::ethtool::set_tx_checksum_offload(&dev, false).unwrap();
                assert!(!rzmap_sys::ethtool::tx_checksum_offload(&dev).unwrap());
                // The kernel starts a device's queue (dropping until then) shortly after it
                // sees the carrier: wait until the link is running.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
                while !rzmap_sys::discovery::link_by_name(&dev).unwrap().running {
                    assert!(std::time::Instant::now() < deadline, "{dev} never came up");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            });
        }
        Some(lab)
    }

    /// Runs `f` on a new thread that has entered namespace `ns` (one of this lab's), after
    /// checking that the thread really is there and not in the host's namespace.
    pub fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        assert!(self.created.iter().any(|c| c == ns), "{ns} is not a namespace of this lab");
        let ns = ns.to_string();
        std::thread::spawn(move || {
            netns::enter_netns(&ns).expect("enter lab namespace");
            assert_in_lab(&ns);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Spawns (without joining) a thread inside namespace `ns`.
    pub fn spawn_in_ns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        assert!(self.created.iter().any(|c| c == ns), "{ns} is not a namespace of this lab");
        let ns = ns.to_string();
        std::thread::spawn(move || {
            netns::enter_netns(&ns).expect("enter lab namespace");
            assert_in_lab(&ns);
            f()
        })
    }
}

/// Panics unless the calling thread is inside lab namespace `ns` (never the host's).
pub fn assert_in_lab(ns: &str) {
    assert!(ns.starts_with("rzsys-"), "{ns} is not a lab namespace");
    assert!(!netns::in_root_netns().unwrap(), "refusing to run in the root network namespace");
    netns::require_in_netns(ns).expect("thread is in its lab namespace");
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// A SYN-ACK A -> B carrying `id` as its sequence number and `pad` payload bytes of `id`
/// (the send-path tests' frames).
pub fn synack(id: u32, pad: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(IP_A.octets(), IP_B.octets(), 64)
        .tcp(80, 40000, id, 1024)
        .syn()
        .ack(1)
        .write(&mut v, &vec![id as u8; pad])
        .unwrap();
    v
}

/// Receives from `ring` until `want` packets arrived or 3 s passed, then `extra` more to
/// catch extras (or frames sent late); returns (packet, timestamp) pairs.
pub fn collect(ring: &mut PacketRing, want: usize, extra: Duration) -> Vec<(Vec<u8>, Timestamp)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut extra_until = None;
    loop {
        let now = Instant::now();
        if got.len() >= want && extra_until.is_none() {
            extra_until = Some(now + extra);
        }
        if now >= deadline || extra_until.is_some_and(|t| now >= t) {
            return got;
        }
        ring.wait(Duration::from_millis(20)).unwrap();
        ring.next_batch(|f, ts| got.push((f.to_vec(), ts)));
    }
}

/// Receives whole TCP frames addressed to B on B's veth (see [`collect`]) on a thread in
/// `ns_b`; the channel says when the ring is open.
pub fn receive_on_b(
    lab: &Lab,
    want: usize,
    extra: Duration,
) -> (mpsc::Receiver<()>, std::thread::JoinHandle<Vec<Vec<u8>>>) {
    let dev = lab.veth_b.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = lab.spawn_in_ns(&lab.ns_b, move || {
        let ifindex = discovery::link_by_name(&dev).unwrap().index;
        let spec = FilterSpec {
            kind: FilterKind::Tcp,
            link: LinkLayer::Ethernet,
            our_mac: Some(MAC_B),
            snaplen: 2048,
        };
        let cfg = RingConfig { block_size: 1 << 20, block_count: 8, ..RingConfig::default() };
        let mut ring = PacketRing::open(ifindex, &bpf::program(&spec), &cfg).unwrap();
        ready_tx.send(()).unwrap();
        collect(&mut ring, want, extra).into_iter().map(|(f, _)| f).collect()
    });
    (ready_rx, h)
}
