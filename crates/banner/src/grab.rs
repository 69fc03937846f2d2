//! One banner grab: connect, optionally send the payload, read the first response, close.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How one grab ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The host sent at least one byte.
    Banner,
    /// The connection was set up but the host closed it without sending anything.
    Closed,
    /// The connect, the payload write or the first read did not finish in time.
    Timeout,
    /// The connection was refused (RST in answer to the SYN).
    Refused,
    /// The connection was reset (or aborted) after it was set up, before any byte arrived.
    Reset,
    /// The host or network was reported unreachable.
    Unreachable,
    /// Any other error (for example no local port or file descriptor left).
    Error,
}

impl Outcome {
    /// Every outcome, in the order of [`Outcome::index`].
    pub const ALL: [Outcome; 7] = [
        Outcome::Banner,
        Outcome::Closed,
        Outcome::Timeout,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Unreachable,
        Outcome::Error,
    ];

    /// The name written in the output's `outcome` field.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Banner => "banner",
            Outcome::Closed => "closed",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Unreachable => "unreachable",
            Outcome::Error => "error",
        }
    }

    /// A dense index, for counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The outcome a socket error stands for.
    pub fn from_error(e: &io::Error) -> Outcome {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Outcome::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Outcome::Reset,
            K::HostUnreachable | K::NetworkUnreachable => Outcome::Unreachable,
            K::TimedOut => Outcome::Timeout,
            _ => Outcome::Error,
        }
    }
}

/// What every grab does.
#[derive(Clone, Debug)]
pub struct GrabConfig {
    /// Longest wait for the connection to be set up.
    pub connect_timeout: Duration,
    /// Longest wait for the payload to be sent, and then for the first response bytes.
    pub read_timeout: Duration,
    /// Bytes sent right after connecting, if any.
    pub payload: Option<Vec<u8>>,
    /// Most bytes kept from the response (at least 1).
    pub max_read: usize,
}

/// The result of one grab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grab {
    /// How it ended.
    pub outcome: Outcome,
    /// The response bytes (non-empty exactly when the outcome is [`Outcome::Banner`]).
    pub data: Vec<u8>,
}

impl Grab {
    fn failed(outcome: Outcome) -> Self {
        Self { outcome, data: Vec::new() }
    }
}

/// Connects to `addr`, sends the payload, reads the first response and closes.
///
/// The response is the first read that returns data, plus whatever else is already buffered by
/// the kernel at that moment, up to `max_read` bytes; the grab does not wait for more.
pub async fn grab(addr: SocketAddr, cfg: &GrabConfig) -> Grab {
    let mut stream = match timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Grab::failed(Outcome::Timeout),
        Ok(Err(e)) => return Grab::failed(Outcome::from_error(&e)),
        Ok(Ok(s)) => s,
    };
    let mut buf = vec![0u8; cfg.max_read.max(1)];
    if let Some(payload) = &cfg.payload {
        let failure = match timeout(cfg.read_timeout, stream.write_all(payload)).await {
            Err(_) => Some(Outcome::Timeout),
            Ok(Err(e)) => Some(Outcome::from_error(&e)),
            Ok(Ok(())) => None,
        };
        if let Some(outcome) = failure {
            // The host may have spoken and closed before taking the payload: keep what it said.
            let n = drain_ready(&stream, &mut buf, 0);
            if n > 0 {
                buf.truncate(n);
                return Grab { outcome: Outcome::Banner, data: buf };
            }
            return Grab::failed(outcome);
        }
    }
    let first = match timeout(cfg.read_timeout, stream.read(&mut buf)).await {
        Err(_) => return Grab::failed(Outcome::Timeout),
        Ok(Err(e)) => return Grab::failed(Outcome::from_error(&e)),
        Ok(Ok(0)) => return Grab::failed(Outcome::Closed),
        Ok(Ok(n)) => n,
    };
    let n = drain_ready(&stream, &mut buf, first);
    buf.truncate(n);
    Grab { outcome: Outcome::Banner, data: buf }
}

/// Reads what is already buffered into `buf[filled..]` without waiting; returns the new fill.
fn drain_ready(stream: &TcpStream, buf: &mut [u8], mut filled: usize) -> usize {
    while filled < buf.len() {
        match stream.try_read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => filled += k,
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_to_outcomes() {
        use io::ErrorKind as K;
        let cases = [
            (K::ConnectionRefused, Outcome::Refused),
            (K::ConnectionReset, Outcome::Reset),
            (K::ConnectionAborted, Outcome::Reset),
            (K::BrokenPipe, Outcome::Reset),
            (K::HostUnreachable, Outcome::Unreachable),
            (K::NetworkUnreachable, Outcome::Unreachable),
            (K::TimedOut, Outcome::Timeout),
            (K::AddrNotAvailable, Outcome::Error),
            (K::PermissionDenied, Outcome::Error),
        ];
        for (kind, want) in cases {
            assert_eq!(Outcome::from_error(&io::Error::from(kind)), want, "{kind:?}");
        }
        // Raw errno values as the kernel reports them (Linux numbering).
        assert_eq!(Outcome::from_error(&io::Error::from_raw_os_error(113)), Outcome::Unreachable);
        assert_eq!(Outcome::from_error(&io::Error::from_raw_os_error(101)), Outcome::Unreachable);
        assert_eq!(Outcome::from_error(&io::Error::from_raw_os_error(111)), Outcome::Refused);
    }

    #[test]
    fn indices_are_dense_and_names_distinct() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        let mut names: Vec<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
