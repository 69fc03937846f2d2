//! Real TCP test servers on loopback addresses, stopped and joined on drop.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The greeting the SSH-like server sends on connect.
pub const GREETING: &[u8] = b"SSH-2.0-rzmapTest_1.0\r\n";
/// The HTTP server's complete reply to a GET.
pub const HTTP_REPLY: &[u8] =
    b"HTTP/1.0 200 OK\r\nServer: rzmap-test\r\nContent-Length: 2\r\n\r\nok";
/// The request the tests send with `-d`.
pub const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: test\r\n\r\n";

/// What a server does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Sends [`GREETING`] at once, then waits for the client to close.
    Greeting,
    /// Reads a request up to an empty line, answers [`HTTP_REPLY`] to a GET (nothing else).
    Http,
    /// Never sends anything; waits for the client to close.
    Silent,
    /// Closes at once with SO_LINGER 0, so the client gets a reset.
    Reset,
    /// Sends [`flood_bytes`] at once, then waits for the client to close.
    Flood,
    /// Reads whatever the client sends first, then closes normally without sending anything.
    Closer,
    /// Waits this long, then sends "slow\n" and waits for the client to close.
    Slow(Duration),
}

/// 5000 bytes that are not valid UTF-8.
pub fn flood_bytes() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 251) as u8 ^ 0x80).collect()
}

/// A listening server thread that ends when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on `addr` (port 0 picks one).
    pub fn start(addr: SocketAddr, behaviour: Behaviour) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        std::thread::spawn(move || serve(conn, behaviour));
                    }
                }
            })
        };
        Ok(Server { addr, stop, thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until the client closes (or 10 s pass, so every handler ends by itself).
fn wait_for_close(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn serve(mut conn: TcpStream, behaviour: Behaviour) {
    match behaviour {
        Behaviour::Greeting => {
            let _ = conn.write_all(GREETING);
            wait_for_close(conn);
        }
        Behaviour::Http => {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if req.starts_with(b"GET ") {
                let _ = conn.write_all(HTTP_REPLY);
            }
            wait_for_close(conn);
        }
        Behaviour::Silent => wait_for_close(conn),
        Behaviour::Reset => {
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            drop(conn);
        }
        Behaviour::Flood => {
            let _ = conn.write_all(&flood_bytes());
            wait_for_close(conn);
        }
        Behaviour::Closer => {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            drop(conn);
        }
        Behaviour::Slow(delay) => {
            std::thread::sleep(delay);
            let _ = conn.write_all(b"slow\n");
            wait_for_close(conn);
        }
    }
}

/// A loopback address 127.0.0.`last`.
pub fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One server per behaviour, each on its own loopback address but all on one port, plus a
/// refused address (nothing listens) and a backlogged one (SYNs dropped: connect times out).
pub struct Lab {
    pub port: u16,
    pub servers: Vec<(IpAddr, Behaviour, Server)>,
    /// Nothing listens here.
    pub refused: IpAddr,
    /// A listener whose accept queue is full, with the connections that fill it.
    pub backlogged: IpAddr,
    _backlog: (socket2::Socket, Vec<TcpStream>),
}

const LAB: [(u8, Behaviour); 6] = [
    (2, Behaviour::Greeting),
    (3, Behaviour::Http),
    (4, Behaviour::Silent),
    (5, Behaviour::Reset),
    (6, Behaviour::Flood),
    (7, Behaviour::Closer),
];

impl Lab {
    /// Starts the lab, retrying with another port if one is taken on some address.
    pub fn start() -> Lab {
        for _ in 0..20 {
            if let Some(lab) = Self::try_start() {
                return lab;
            }
        }
        panic!("could not find a port free on all lab loopback addresses");
    }

    fn try_start() -> Option<Lab> {
        let first = Server::start(SocketAddr::new(lo(LAB[0].0), 0), LAB[0].1).ok()?;
        let port = first.addr.port();
        let mut servers = vec![(lo(LAB[0].0), LAB[0].1, first)];
        for &(last, b) in &LAB[1..] {
            let s = Server::start(SocketAddr::new(lo(last), port), b).ok()?;
            servers.push((lo(last), b, s));
        }
        // Refused: make sure nothing listens on 127.0.0.8:port.
        let refused = lo(8);
        TcpListener::bind((refused, port)).ok()?;
        // Backlogged: listen(0) and never accept; fill the queue.
        let backlogged = lo(9);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        sock.bind(&SocketAddr::new(backlogged, port).into()).ok()?;
        sock.listen(0).ok()?;
        let mut fill = Vec::new();
        for _ in 0..3 {
            if let Ok(c) = TcpStream::connect_timeout(
                &SocketAddr::new(backlogged, port),
                Duration::from_millis(300),
            ) {
                fill.push(c);
            }
        }
        Some(Lab { port, servers, refused, backlogged, _backlog: (sock, fill) })
    }
}
