//! Live tests of the lab: build real namespaces and check the ground truth with ordinary kernel
//! sockets from the scanner namespace. They need root, `ip`, `nft`, `ethtool`; a lab that cannot
//! be built FAILS the test unless `RZMAP_SKIP_LAB=1`.

use rzmap_lab::probe::{Observation, Outcome, ProbeConfig, expected, probe_all};
use rzmap_lab::{Lab, LabSpec, Prefix, skip_lab};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rzmap-lab");

fn build(spec: LabSpec) -> Option<Lab> {
    if skip_lab() {
        eprintln!("RZMAP_SKIP_LAB=1: skipping live lab test");
        return None;
    }
    match Lab::build(spec) {
        Ok(l) => Some(l),
        Err(e) => panic!("cannot build the lab (set RZMAP_SKIP_LAB=1 to skip live tests): {e}"),
    }
}

fn mixed_spec(prefix: &str, seed: u64) -> LabSpec {
    let prefix: Prefix = prefix.parse().unwrap();
    let mut spec = LabSpec::new(prefix, seed);
    spec.tcp_port = 8080;
    spec.udp_port = 5353;
    spec.blocklisted = [7u32, 77]
        .into_iter()
        .filter(|&o| u64::from(o) < prefix.size())
        .map(|o| prefix.nth(o))
        .collect();
    spec
}

fn compare(lab: &Lab, seen: &[Observation]) {
    let mut bad = Vec::new();
    for o in seen {
        let want = expected(lab.truth(), o.addr).expect("probed address inside the prefix");
        if *o != want {
            bad.push(format!("{}: saw {o:?}, expected {want:?}", o.addr));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} addresses differ from the truth:\n{}",
        bad.len(),
        seen.len(),
        bad.join("\n")
    );
}

#[test]
fn ground_truth_matches_kernel_sockets_via_probe_subcommand() {
    let Some(lab) = build(mixed_spec("198.18.0.0/24", 11)) else { return };
    let t = lab.truth();
    // The /24 must exercise every class.
    for (name, v) in [
        ("silent", &t.silent),
        ("unreachable", &t.unreachable),
        ("open", &t.open_tcp),
        ("closed", &t.closed_tcp),
        ("filtered", &t.filtered_tcp),
        ("echo", &t.echo),
        ("no_echo", &t.no_echo),
        ("udp_open", &t.udp_open),
        ("udp_closed", &t.udp_closed),
    ] {
        assert!(!v.is_empty(), "seed gives no {name} host");
    }
    let targets: Vec<String> = lab
        .prefix()
        .addrs()
        .filter(|a| !t.blocklisted.contains(a))
        .map(|a| a.to_string())
        .collect();
    let out = lab
        .scanner_cmd(BIN)
        .args([
            "probe",
            "--tcp-port",
            "8080",
            "--udp-port",
            "5353",
            "--timeout-ms",
            "500",
            "--threads",
            "128",
        ])
        .args(&targets)
        .output()
        .expect("run rzmap-lab probe");
    assert!(out.status.success(), "probe failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<Observation> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("probe JSON line"))
        .collect();
    assert_eq!(seen.len(), 254);
    compare(&lab, &seen);

    // Exactly three probe packets (SYN, UDP, echo) reached each probed address, none reached
    // the blocklisted ones.
    assert_eq!(lab.blocklisted_packets().unwrap(), 0);
    // (The probe's 500 ms wait stays under the kernel's 1 s SYN retransmission timer, so a
    // silent or filtered host sees one SYN unless this process stalls for half a second.)
    let per = lab.probes_per_address().unwrap();
    assert_eq!(per.len(), 254);
    let odd: Vec<_> =
        per.iter().filter(|(_, n)| **n != 3).map(|(a, n)| (a, n, t.class_of(*a))).collect();
    assert!(odd.is_empty(), "addresses not probed exactly 3 times: {odd:?}");
    assert_eq!(lab.probe_packets().unwrap(), 3 * 254);
    assert_eq!(lab.packets_to(&t.blocklisted).unwrap(), 0);
    // The answers the lab sent, by kind, match the truth (kernel sockets answer a SYN-ACK
    // with an ACK, not a RST, so RSTs are exactly the closed hosts').
    let sent = lab.replies_sent().unwrap();
    assert_eq!(sent.synack, t.open_tcp.len() as u64);
    assert_eq!(sent.rst, t.closed_tcp.len() as u64);
    assert_eq!(sent.echo_reply, t.echo.len() as u64);
    assert_eq!(sent.unreachable, 3 * t.unreachable.len() as u64 + t.udp_closed.len() as u64);
    assert_eq!(sent.udp, t.udp_open.len() as u64);
    assert_eq!(lab.replies_delivered().unwrap(), sent);

    // The blocklist counter does count: probe one blocklisted address (it answers like an
    // open host).
    let b = t.blocklisted[0];
    let out = lab
        .scanner_cmd(BIN)
        .args(["probe", "--tcp-port", "8080", "--udp-port", "5353", &b.to_string()])
        .output()
        .unwrap();
    let o: Observation = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(o, expected(t, b).unwrap());
    assert_eq!(o.tcp, Outcome::Answered);
    assert!(lab.blocklisted_packets().unwrap() >= 3);
    assert_eq!(lab.packets_to(&[b]).unwrap(), 3);
}

#[test]
fn in_process_probe_in_a_second_lab_with_other_prefix() {
    // Runs alongside the other tests: labs are isolated and uniquely named.
    let Some(lab) = build(mixed_spec("198.19.7.0/25", 3)) else { return };
    let addrs: Vec<Ipv4Addr> =
        lab.prefix().addrs().filter(|a| !lab.truth().blocklisted.contains(a)).collect();
    let cfg = ProbeConfig {
        tcp_port: 8080,
        udp_port: 5353,
        timeout: Duration::from_millis(700),
        threads: 64,
    };
    let seen = lab.in_scanner_ns(|| probe_all(&addrs, &cfg)).unwrap();
    assert_eq!(seen.len(), addrs.len());
    compare(&lab, &seen);
    assert_eq!(lab.blocklisted_packets().unwrap(), 0);
}

#[test]
fn teardown_removes_namespaces_even_on_panic() {
    let Some(lab) = build(mixed_spec("198.18.200.0/28", 1)) else { return };
    let names = [lab.scanner_ns().to_string(), lab.net_ns().to_string()];
    for n in &names {
        assert!(Path::new(&format!("/run/netns/{n}")).exists(), "{n} missing while the lab lives");
        assert!(n.contains(&std::process::id().to_string()));
    }
    assert!(lab.scanner_if().len() <= 15 && lab.net_if().len() <= 15);
    drop(lab);
    for n in &names {
        assert!(!Path::new(&format!("/run/netns/{n}")).exists(), "{n} survived drop");
    }

    let r = std::panic::catch_unwind(|| {
        let lab = Lab::build(mixed_spec("198.18.201.0/28", 2)).unwrap();
        let names = [lab.scanner_ns().to_string(), lab.net_ns().to_string()];
        std::panic::panic_any(names);
    });
    let names = r.unwrap_err().downcast::<[String; 2]>().unwrap();
    for n in names.iter() {
        assert!(!Path::new(&format!("/run/netns/{n}")).exists(), "{n} survived a panic");
    }
}

#[test]
fn invalid_spec_is_refused_before_touching_the_system() {
    let e = Lab::build(LabSpec::new("10.1.0.0/24".parse().unwrap(), 1)).err().expect("must refuse");
    assert!(e.to_string().contains("198.18.0.0/15"), "{e}");
}

#[test]
fn scanner_side_addresses_and_routes() {
    let Some(lab) = build(mixed_spec("198.19.255.0/24", 4)) else { return };
    // The link moves out of the way of a prefix that would cover it.
    assert!(!lab.prefix().contains(lab.scanner_ip()));
    assert!(!lab.prefix().contains(lab.gateway_ip()));
    let out =
        lab.scanner_cmd("ip").args(["-o", "link", "show", lab.scanner_if()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("02:72:7a:00:00:02"), "{text}");
    let out = lab.scanner_cmd("ip").args(["route", "get", "198.19.255.9"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("via {}", lab.gateway_ip())), "{text}");
    assert!(text.contains(&format!("src {}", lab.scanner_ip())), "{text}");
    let out =
        lab.scanner_cmd("ip").args(["neigh", "show", "dev", lab.scanner_if()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("02:72:7a:00:00:01 PERMANENT"));
    let out = lab.net_cmd("ethtool").args(["-k", lab.net_if()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("tx-checksumming: off"));
    let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{k}")).unwrap();
    let (cookies, ratelimit) =
        lab.in_net_ns(|| (read("tcp_syncookies"), read("icmp_ratelimit"))).unwrap();
    assert_eq!((cookies.trim(), ratelimit.trim()), ("0", "0"));
    // Only the net namespace changed: this process's own namespace keeps its limit.
    assert_ne!(read("icmp_ratelimit").trim(), "0", "this namespace's sysctl was changed");
}

#[test]
fn greeting_and_http_on_open_hosts() {
    let mut spec = mixed_spec("198.18.9.0/26", 9);
    spec.greeting = Some("hello from rzmap-lab\n".into());
    spec.http_port = Some(8000);
    let Some(lab) = build(spec) else { return };
    let open = lab.truth().open_tcp[0];
    let closed = lab.truth().closed_tcp[0];
    let (greeting, http, refused) = lab
        .in_scanner_ns(|| {
            let t = Duration::from_secs(2);
            let mut g = String::new();
            let mut s = TcpStream::connect_timeout(&SocketAddr::from((open, 8080)), t).unwrap();
            s.set_read_timeout(Some(t)).unwrap();
            s.read_to_string(&mut g).unwrap();
            let mut h = String::new();
            let mut s = TcpStream::connect_timeout(&SocketAddr::from((open, 8000)), t).unwrap();
            s.set_read_timeout(Some(t)).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            s.read_to_string(&mut h).unwrap();
            let refused =
                TcpStream::connect_timeout(&SocketAddr::from((closed, 8000)), t).unwrap_err();
            (g, h, refused.kind())
        })
        .unwrap();
    assert_eq!(greeting, "hello from rzmap-lab\n");
    assert!(http.starts_with("HTTP/1.0 200 OK\r\n"), "{http}");
    assert_eq!(refused, std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn injected_ip_packets_reach_the_scanner_with_forged_source() {
    let Some(lab) = build(mixed_spec("198.18.10.0/28", 5)) else { return };
    let sock = lab
        .in_scanner_ns(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 40000)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .unwrap();
    let src = Ipv4Addr::new(198, 18, 10, 3);
    let dst = lab.scanner_ip();
    let payload = b"forged";
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let udp_len = (8 + payload.len()) as u16;
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    p.extend_from_slice(payload);
    lab.inject_ip(&p).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).expect("injected datagram");
    assert_eq!(&buf[..n], payload);
    assert_eq!(from, SocketAddr::from((src, 53)));
}

#[test]
fn a_failing_step_tears_down_and_names_the_command() {
    if skip_lab() {
        return;
    }
    let spec = mixed_spec("198.18.30.0/28", 1);
    let bogus = std::path::PathBuf::from("/nonexistent/rzmap-lab");
    let e =
        Lab::build_with(spec, rzmap_lab::ResponderMode::Process(bogus)).err().expect("must fail");
    let m = e.to_string();
    assert!(m.contains("/nonexistent/rzmap-lab serve"), "{m}");
    let mine = format!("{}{}-", rzmap_lab::lab::KEPT_LAB_PREFIX, std::process::id());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|n| n.starts_with(&mine)), "left behind: {left:?}");
}

/// `rzmap-lab down --stale` leaves a kept lab (`up`) alone while its `serve` process lives,
/// and removes it once that process is gone.
#[test]
fn down_stale_removes_a_kept_lab_only_when_its_serve_is_gone() {
    if skip_lab() {
        return;
    }
    let out = std::process::Command::new(BIN)
        .args(["up", "--prefix", "198.18.202.0/28", "--seed", "3", "--no-truth"])
        .output()
        .expect("run rzmap-lab up");
    assert!(out.status.success(), "up failed: {}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("up prints json");
    let id = info["lab"]["id"].as_str().expect("lab id").to_string();
    let serve = info["lab"]["serve_pid"].as_u64().expect("serve pid") as i32;
    // Whatever happens below, the lab goes.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = rzmap_lab::remove_lab(&self.0);
        }
    }
    let _down = Down(id.clone());
    let exists = |suffix: &str| Path::new(&format!("/run/netns/{id}-{suffix}")).exists();
    let down_stale = || {
        let o = std::process::Command::new(BIN).args(["down", "--stale"]).output().unwrap();
        assert!(o.status.success(), "down --stale: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    let said = down_stale();
    assert!(exists("scan") && exists("net"), "a live kept lab was removed: {said}");
    assert!(!said.contains(&id), "{said}");

    // Kill its serve process (as a crashed run would leave it) and wait until it is gone.
    let _ = std::process::Command::new("kill").args(["-KILL", &serve.to_string()]).status();
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{serve}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let said = down_stale();
    assert!(said.contains(&format!("removed lab {id}")), "{said}");
    assert!(!exists("scan") && !exists("net"), "the orphaned lab survived down --stale");
}
