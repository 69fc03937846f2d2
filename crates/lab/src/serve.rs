//! The responders of the net namespace: a TCP listener (accept and close, or greet), an
//! optional tiny HTTP server, and a UDP echo responder that answers *from the probed address*
//! (IP_PKTINFO: the destination of each datagram becomes the source of its reply), since a
//! wildcard socket would otherwise answer from the gateway address.
//!
//! Which addresses reach these sockets is decided by the nftables rules, not here.

use crate::cmd::LabError;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often blocked loops look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Listen backlog (the kernel caps it at `net.core.somaxconn`, raised in the net namespace).
const BACKLOG: i32 = 65535;

/// What the responders serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// TCP port: accept, optionally write `greeting`, close.
    pub tcp_port: u16,
    /// UDP port: echo each datagram back from the address it was sent to.
    pub udp_port: u16,
    /// Optional TCP port answering one HTTP/1.0 response per connection.
    pub http_port: Option<u16>,
    /// Optional banner for `tcp_port`.
    pub greeting: Option<String>,
}

/// Counts of what the responders did.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// TCP connections accepted (both ports).
    pub tcp_accepted: AtomicU64,
    /// UDP replies sent.
    pub udp_replies: AtomicU64,
}

/// Running responder threads; [`Responder::stop`] (or drop) ends them.
pub struct Responder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// What they did so far.
    pub stats: Arc<ServeStats>,
}

struct Sockets {
    tcp: Socket,
    http: Option<Socket>,
    udp: Socket,
}

fn listener(port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.listen(BACKLOG)?;
    s.set_read_timeout(Some(POLL))?;
    Ok(s)
}

fn open_sockets(cfg: &ServeConfig) -> io::Result<Sockets> {
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    udp.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.udp_port)).into())?;
    setsockopt(&udp, sockopt::Ipv4PacketInfo, &true)?;
    udp.set_read_timeout(Some(POLL))?;
    // Best effort: a deep queue keeps high-rate UDP scans exact; the kernel caps the value.
    let _ = udp.set_recv_buffer_size(16 << 20);
    Ok(Sockets {
        tcp: listener(cfg.tcp_port)?,
        http: cfg.http_port.map(listener).transpose()?,
        udp,
    })
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn accept_loop(
    l: Socket,
    stop: Arc<AtomicBool>,
    stats: Arc<ServeStats>,
    greeting: Option<Vec<u8>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((conn, _)) => {
                stats.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                if let Some(g) = &greeting {
                    let _ = conn.set_write_timeout(Some(POLL));
                    let _ = (&conn).write_all(g);
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => std::thread::sleep(POLL / 10),
        }
    }
}

fn http_answer(conn: Socket) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while req.len() < 8192 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match (&conn).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let body = "rzmap-lab\n";
    let resp = format!(
        "HTTP/1.0 200 OK\r\nServer: rzmap-lab\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = (&conn).write_all(resp.as_bytes());
}

fn http_loop(l: Socket, stop: Arc<AtomicBool>, stats: Arc<ServeStats>) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((conn, _)) => {
                stats.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || http_answer(conn));
            }
            Err(e) if would_block(&e) => {}
            Err(_) => std::thread::sleep(POLL / 10),
        }
    }
}

/// Receives one datagram and echoes it from the address it was sent to.
/// Returns `Ok(false)` when nothing arrived before the poll timeout.
fn udp_echo_once(udp: &Socket, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<bool> {
    let fd = udp.as_raw_fd();
    let (len, from, to) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<SockaddrIn>(fd, &mut iov, Some(cmsg), MsgFlags::empty()) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let mut to = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                to = Some(info.ipi_addr.s_addr);
            }
        }
        (msg.bytes, msg.address, to)
    };
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(true);
    };
    // ipi_spec_dst selects the reply's source address; ipi_addr is ignored on send.
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr { s_addr: to },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    sendmsg(
        fd,
        &[IoSlice::new(&buf[..len])],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&from),
    )?;
    Ok(true)
}

fn udp_loop(udp: Socket, stop: Arc<AtomicBool>, stats: Arc<ServeStats>) {
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    while !stop.load(Ordering::Relaxed) {
        match udp_echo_once(&udp, &mut buf, &mut cmsg) {
            Ok(true) => {
                stats.udp_replies.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => std::thread::sleep(POLL / 10),
        }
    }
}

impl Responder {
    /// Starts the responders in the calling thread's network namespace.
    pub fn start(cfg: &ServeConfig) -> io::Result<Responder> {
        Ok(Self::run(open_sockets(cfg)?, cfg))
    }

    /// Starts the responders with sockets created inside network namespace `ns` (sockets stay
    /// in the namespace they were created in, so the threads serving them can run anywhere).
    pub fn start_in(ns: &str, cfg: &ServeConfig) -> Result<Responder, LabError> {
        let sockets = crate::netns::in_netns(ns, || open_sockets(cfg))?
            .map_err(|e| LabError::Other(format!("responder sockets in {ns}: {e}")))?;
        Ok(Self::run(sockets, cfg))
    }

    fn run(s: Sockets, cfg: &ServeConfig) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServeStats::default());
        let mut threads = Vec::new();
        let (st, ss) = (stop.clone(), stats.clone());
        let greeting = cfg.greeting.as_ref().map(|g| g.as_bytes().to_vec());
        threads.push(std::thread::spawn(move || accept_loop(s.tcp, st, ss, greeting)));
        if let Some(h) = s.http {
            let (st, ss) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || http_loop(h, st, ss)));
        }
        let (st, ss) = (stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || udp_loop(s.udp, st, ss)));
        Responder { stop, threads, stats }
    }

    /// Stops the threads and closes the sockets.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.halt();
    }
}
