//! An independent checker of a lab's behaviour using only ordinary kernel sockets (no raw
//! sockets, no rzmap): a TCP connect, a connected-UDP exchange and an unprivileged ICMP echo
//! per address. Run it inside the scanner namespace (`rzmap-lab probe` under
//! `ip netns exec`, or [`crate::Lab::in_scanner_ns`]).

use crate::spec::{HostClass, TcpState, Truth};
use nix::sys::socket::{setsockopt, sockopt};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// TCP connected, UDP reply from the probed address with our payload, or echo reply.
    Answered,
    /// TCP RST (ECONNREFUSED) or ICMP port-unreachable on connected UDP.
    Refused,
    /// ICMP host-unreachable (EHOSTUNREACH).
    Unreachable,
    /// Nothing before the timeout.
    Silent,
    /// Any other error (errno).
    Error(i32),
}

/// The three outcomes for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The probed address.
    pub addr: Ipv4Addr,
    /// TCP connect to the lab's TCP port.
    pub tcp: Outcome,
    /// UDP datagram to the lab's UDP port.
    pub udp: Outcome,
    /// ICMP echo request.
    pub icmp: Outcome,
}

/// How to probe.
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// TCP port to connect to.
    pub tcp_port: u16,
    /// UDP port to send to.
    pub udp_port: u16,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Worker threads (addresses probed in parallel).
    pub threads: usize,
}

fn classify(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        Some(libc::EHOSTUNREACH) => Outcome::Unreachable,
        Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINPROGRESS) => Outcome::Silent,
        Some(n) => Outcome::Error(n),
        None if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
            Outcome::Silent
        }
        None => Outcome::Error(-1),
    }
}

fn probe_tcp(addr: Ipv4Addr, port: u16, timeout: Duration) -> Outcome {
    let sock = match Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    match sock.connect_timeout(&SocketAddr::from((addr, port)).into(), timeout) {
        Ok(()) => Outcome::Answered,
        Err(e) => classify(&e),
    }
}

/// Sends `payload` on a connected datagram socket (so only the probed address can answer)
/// and waits for an answer that `accept` approves, or an ICMP error (IP_RECVERR).
fn exchange(
    sock: &Socket,
    to: SocketAddr,
    payload: &[u8],
    timeout: Duration,
    accept: impl Fn(&[u8]) -> bool,
) -> Outcome {
    let sent = (|| {
        setsockopt(sock, sockopt::Ipv4RecvErr, &true)?;
        sock.connect(&to.into())?;
        sock.send(payload)?;
        Ok::<(), io::Error>(())
    })();
    if let Err(e) = sent {
        return classify(&e);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::Silent;
        }
        if let Err(e) = sock.set_read_timeout(Some(left)) {
            return classify(&e);
        }
        match (&*sock).read(&mut buf) {
            Ok(n) if accept(&buf[..n]) => return Outcome::Answered,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return classify(&e),
        }
    }
}

fn probe_udp(addr: Ipv4Addr, port: u16, timeout: Duration) -> Outcome {
    let sock = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let payload = format!("rzmap-lab probe {addr}");
    let p = payload.as_bytes();
    exchange(&sock, SocketAddr::from((addr, port)), p, timeout, |d| d == p)
}

fn probe_icmp(addr: Ipv4Addr, timeout: Duration) -> Outcome {
    // Unprivileged "ping" socket (needs net.ipv4.ping_group_range to cover our group, which
    // the lab sets in the scanner namespace); the kernel fills the identifier and checksum.
    let sock = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let mut req = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
    req.extend_from_slice(b"rzmap-lab");
    exchange(&sock, SocketAddr::from((addr, 0)), &req, timeout, |d| d.first() == Some(&0))
}

/// Probes one address three ways.
pub fn probe_one(addr: Ipv4Addr, cfg: &ProbeConfig) -> Observation {
    Observation {
        addr,
        tcp: probe_tcp(addr, cfg.tcp_port, cfg.timeout),
        udp: probe_udp(addr, cfg.udp_port, cfg.timeout),
        icmp: probe_icmp(addr, cfg.timeout),
    }
}

/// Probes every address (in parallel over `cfg.threads` threads, which inherit the calling
/// thread's network namespace); the result is in the order of `addrs`.
pub fn probe_all(addrs: &[Ipv4Addr], cfg: &ProbeConfig) -> Vec<Observation> {
    let next = AtomicUsize::new(0);
    let threads = cfg.threads.clamp(1, addrs.len().max(1));
    let mut found: Vec<(usize, Observation)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&a) = addrs.get(i) else { break };
                        mine.push((i, probe_one(a, cfg)));
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    found.sort_unstable_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, o)| o).collect()
}

/// What [`probe_one`] must see for `addr` according to the truth (`None` outside the prefix).
pub fn expected(truth: &Truth, addr: Ipv4Addr) -> Option<Observation> {
    let all = |o| Observation { addr, tcp: o, udp: o, icmp: o };
    Some(match truth.class_of(addr)? {
        HostClass::Blocklisted => all(Outcome::Answered),
        HostClass::Silent => all(Outcome::Silent),
        HostClass::Unreachable => all(Outcome::Unreachable),
        HostClass::Live { tcp, echo, udp_open } => Observation {
            addr,
            tcp: match tcp {
                TcpState::Open => Outcome::Answered,
                TcpState::Closed => Outcome::Refused,
                TcpState::Filtered => Outcome::Silent,
            },
            udp: if udp_open { Outcome::Answered } else { Outcome::Refused },
            icmp: if echo { Outcome::Answered } else { Outcome::Silent },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    #[test]
    fn expectations_follow_classes() {
        let mut spec = LabSpec::new("198.18.0.0/24".parse().unwrap(), 5);
        spec.blocklisted = vec![Ipv4Addr::new(198, 18, 0, 9)];
        let t = Truth::of(&spec);
        let e = expected(&t, Ipv4Addr::new(198, 18, 0, 9)).unwrap();
        assert_eq!(e.tcp, Outcome::Answered);
        for a in &t.silent {
            assert_eq!(expected(&t, *a).unwrap().udp, Outcome::Silent);
        }
        for a in &t.closed_tcp {
            assert_eq!(expected(&t, *a).unwrap().tcp, Outcome::Refused);
        }
        for a in &t.unreachable {
            assert_eq!(expected(&t, *a).unwrap().icmp, Outcome::Unreachable);
        }
        assert!(expected(&t, Ipv4Addr::new(198, 18, 1, 0)).is_none());
    }

    #[test]
    fn errno_classes() {
        assert_eq!(classify(&io::Error::from_raw_os_error(libc::ECONNREFUSED)), Outcome::Refused);
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            Outcome::Unreachable
        );
        assert_eq!(classify(&io::Error::from(io::ErrorKind::TimedOut)), Outcome::Silent);
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EACCES)),
            Outcome::Error(libc::EACCES)
        );
    }
}
