//! `--banner` on the receive thread: the [`HandshakeTable`] between the capture and the
//! output (see `docs/stateless-banners.md`).
//!
//! - A SYN-ACK that validates as a `tcp_synscan` reply is handed to
//!   [`HandshakeTable::on_synack`] (before the engine's dedup, so a retransmitted SYN-ACK is
//!   answered again) and its ACK+payload is queued; its record waits for the grab to finish.
//! - Every other TCP segment goes to [`HandshakeTable::on_segment`] first
//!   ([`BannerGrab::segment`]); only RSTs unknown to the table go on to validation (they are
//!   ordinary `rst` records). Segments the table ignores are counted in its stats, not as
//!   validation failures.
//! - After every poll [`HandshakeTable::expire`] reports finished connections; at the end
//!   [`HandshakeTable::finish_all`] closes the rest. Each becomes one record: the SYN-ACK's
//!   `tcp_synscan` fields plus `data` and `banner_class`.
//! - Frames go out on the receive thread's own sender in one batch per poll.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rzmap_core::handshake::{Action, Finished, HandshakeConfig, HandshakeStats, HandshakeTable};
use rzmap_core::link::{FrameBatch, PacketTx};
use rzmap_core::probe::ProbeConfig;
use rzmap_core::probe::tcp_synscan::OptionStyle;
use rzmap_core::validate::Validator;

use crate::config::BannerConfig;

/// Frames queued per send call from the receive thread.
const BATCH: usize = 64;

/// The receive thread's handshake state and sender.
pub struct BannerGrab {
    table: HandshakeTable,
    payload: Vec<u8>,
    validator: Validator,
    tx: Box<dyn PacketTx>,
    batch: FrameBatch,
    close_buf: Vec<u8>,
    sent: u64,
    failed: u64,
}

impl BannerGrab {
    /// A table for the scan's SYNs (`probe`, option style from `--probe-args`) holding
    /// `capacity` connections, sending on `tx`.
    pub fn new(
        cfg: &BannerConfig,
        probe: &ProbeConfig,
        style: OptionStyle,
        capacity: usize,
        hash_seed: u64,
        validator: Validator,
        tx: Box<dyn PacketTx>,
    ) -> Self {
        let mut hc = HandshakeConfig::for_tcp_synscan(
            probe,
            style,
            capacity.max(1),
            Duration::from_secs(u64::from(cfg.timeout_secs)),
            cfg.max_bytes.max(1),
        );
        hc.idle_timeout =
            (cfg.idle_secs > 0).then(|| Duration::from_secs(u64::from(cfg.idle_secs)));
        hc.hash_seed = hash_seed;
        let table = HandshakeTable::with_config(hc);
        let frame_len = table.max_frame_len(cfg.payload.len());
        Self {
            table,
            payload: cfg.payload.clone(),
            validator,
            tx,
            batch: FrameBatch::new(BATCH, frame_len),
            close_buf: vec![0; frame_len],
            sent: 0,
            failed: 0,
        }
    }

    /// The table's counters.
    pub fn stats(&self) -> &HandshakeStats {
        self.table.stats()
    }

    /// Frames sent and failed from the receive thread.
    pub fn frames(&self) -> (u64, u64) {
        (self.sent, self.failed)
    }

    fn room(&mut self) {
        if self.batch.is_full() {
            self.flush();
        }
    }

    /// Sends the queued frames.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let out = self.tx.send_batch(&self.batch);
        self.sent += u64::from(out.sent);
        self.failed += u64::from(out.failed);
        self.batch.clear();
    }

    /// A validated SYN-ACK (the IP packet): starts (or re-answers) its connection.
    pub fn synack(&mut self, ip: &[u8], now: Instant) {
        let Some((our, their, their_port)) = endpoints(ip) else { return };
        let ip_id = (self.validator.words(our, their, their_port)[3] & 0xffff) as u16;
        self.room();
        let out = self.batch.next_slot();
        if let Action::Send(n) = self.table.on_synack(ip, now, ip_id, &self.payload, out) {
            self.batch.commit(n);
        }
    }

    /// Any TCP segment other than a SYN-ACK: `true` when the table took it (or it is of no
    /// use to validation); `false` for RSTs of connections the table does not know, which
    /// are validated as ordinary `tcp_synscan` replies.
    pub fn segment(&mut self, ip: &[u8], now: Instant) -> bool {
        self.room();
        let out = self.batch.next_slot();
        match self.table.on_segment(ip, now, out) {
            Action::Send(n) | Action::Finished(n) => {
                if n > 0 {
                    self.batch.commit(n);
                }
                true
            }
            Action::Absorbed => true,
            Action::Ignored(rzmap_core::handshake::Ignored::Unknown) => !is_rst(ip),
            Action::Ignored(_) => true,
        }
    }

    /// Reports finished connections (all of them with `all`, at the end of the scan) to
    /// `emit`, queuing their closing RSTs; returns how many were reported.
    pub fn report(
        &mut self,
        now: Instant,
        all: bool,
        mut emit: impl FnMut(&Finished<'_>),
    ) -> usize {
        let Self { table, batch, close_buf, tx, sent, failed, .. } = self;
        let mut on_done = |f: &Finished<'_>| {
            if !f.close_frame.is_empty() {
                if batch.is_full() {
                    let out = tx.send_batch(batch);
                    *sent += u64::from(out.sent);
                    *failed += u64::from(out.failed);
                    batch.clear();
                }
                let slot = batch.next_slot();
                let n = f.close_frame.len().min(slot.len());
                slot[..n].copy_from_slice(&f.close_frame[..n]);
                batch.commit(n);
            }
            emit(f);
        };
        let n = if all {
            table.finish_all(close_buf, &mut on_done)
        } else {
            table.expire(now, close_buf, &mut on_done)
        };
        self.flush();
        n
    }
}

/// The TCP flags byte of an IPv4/TCP packet.
fn tcp_flags(ip: &[u8]) -> Option<u8> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9) != Some(&6) {
        return None;
    }
    ip.get(ihl + 13).copied()
}

fn is_rst(ip: &[u8]) -> bool {
    tcp_flags(ip).is_some_and(|f| f & 0x04 != 0)
}

/// Whether a captured IP packet is TCP with exactly SYN and ACK of SYN|ACK|RST set (what goes
/// to validation and `on_synack`).
pub fn is_synack(ip: &[u8]) -> bool {
    tcp_flags(ip).is_some_and(|f| f & 0x16 == 0x12)
}

/// Whether a captured IP packet is TCP.
pub fn is_tcp(ip: &[u8]) -> bool {
    ip.len() >= 20 && ip[0] >> 4 == 4 && ip[9] == 6
}

/// (our address, their address, their port) of a reply.
fn endpoints(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16)> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let their = Ipv4Addr::new(*ip.get(12)?, ip[13], ip[14], ip[15]);
    let our = Ipv4Addr::new(*ip.get(16)?, ip[17], ip[18], ip[19]);
    let port = u16::from_be_bytes([*ip.get(ihl)?, *ip.get(ihl + 1)?]);
    Some((our, their, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(flags: u8) -> Vec<u8> {
        let mut h = etherparse::TcpHeader::new(80, 40000, 7, 1000);
        h.syn = flags & 0x02 != 0;
        h.ack = flags & 0x10 != 0;
        h.rst = flags & 0x04 != 0;
        h.fin = flags & 0x01 != 0;
        let b = etherparse::PacketBuilder::ipv4([198, 18, 0, 9], [198, 18, 0, 1], 64).tcp_header(h);
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    #[test]
    fn packet_kinds() {
        assert!(is_synack(&tcp(0x12)));
        assert!(!is_synack(&tcp(0x16)));
        assert!(!is_synack(&tcp(0x10)));
        assert!(is_rst(&tcp(0x14)) && !is_rst(&tcp(0x11)));
        assert!(is_tcp(&tcp(0x10)) && !is_tcp(&[0x45, 0, 0]));
        assert_eq!(
            endpoints(&tcp(0x12)),
            Some((Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 9), 80))
        );
        assert_eq!(endpoints(&[0x45]), None);
        assert_eq!(tcp_flags(&[0x4f, 0, 0, 0, 0, 0, 0, 0, 0, 6]), None);
    }
}
