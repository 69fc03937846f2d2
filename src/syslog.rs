//! ZMap logs to syslog unless `--disable-syslog`; rzmap does too, over the local syslog socket.
//!
//! Messages use the BSD syslog format (RFC 3164) with facility `user`:
//! `<PRI>Mon DD HH:MM:SS rzmap[PID]: module: message`. When no syslog daemon listens (containers,
//! CI) the logger simply has no system log; nothing is retried. Dry runs never open it, because
//! a dry run opens no socket at all.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use rzmap_core::monitor::{Level, SystemLog, now_local};

/// The conventional local syslog socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Facility `user` (1), shifted as RFC 3164 encodes it.
const FACILITY_USER: u8 = 1 << 3;

/// A connection to a local syslog daemon.
pub struct Syslog {
    socket: UnixDatagram,
    pid: u32,
    buf: Vec<u8>,
}

impl Syslog {
    /// Connects to the syslog socket at `path`; `None` when nothing listens there.
    pub fn connect(path: &Path) -> Option<Self> {
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect(path).ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Self { socket, pid: std::process::id(), buf: Vec::with_capacity(512) })
    }
}

/// The RFC 3164 severity of a log level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Fatal => 2, // critical
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl SystemLog for Syslog {
    fn record(&mut self, level: Level, module: &str, msg: &str) {
        use std::io::Write;
        self.buf.clear();
        let stamp = now_local().format("%b %e %H:%M:%S");
        let _ = write!(
            self.buf,
            "<{}>{stamp} rzmap[{}]: {module}: {msg}",
            FACILITY_USER | severity(level),
            self.pid
        );
        // A full or vanished daemon must never slow or stop the scan.
        let _ = self.socket.send(&self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_rfc3164_lines_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        let mut log = Syslog::connect(&path).expect("connects");
        log.record(Level::Warn, "send", "only 3 source ports");
        log.record(Level::Info, "rzmap", "completed");
        let mut buf = [0u8; 512];
        let n = daemon.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<12>"), "user.warning is 8|4: {line}");
        assert!(
            line.ends_with(&format!("rzmap[{}]: send: only 3 source ports", std::process::id()))
        );
        let n = daemon.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("<14>"));
    }

    #[test]
    fn no_daemon_means_no_system_log() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Syslog::connect(&dir.path().join("absent")).is_none());
    }

    #[test]
    fn the_logger_forwards_info_and_above_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon.set_nonblocking(true).unwrap();
        let logger = rzmap_core::monitor::Logger::new(5, false, Box::new(std::io::sink()))
            .with_system_log(Box::new(Syslog::connect(&path).unwrap()));
        logger.debug("x", format_args!("not for syslog"));
        logger.info("x", format_args!("for syslog"));
        let mut buf = [0u8; 512];
        let n = daemon.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("x: for syslog"));
        assert!(daemon.recv(&mut buf).is_err(), "DEBUG lines stay out of syslog");
    }
}
