//! Stateless banner grabbing: completing TCP handshakes from user space.
//!
//! When a SYN-ACK answers one of our SYN probes, [`HandshakeTable::on_synack`] writes the
//! third packet of the handshake (an ACK carrying the payload, with the numbers from the
//! SYN-ACK) and remembers the connection in a bounded table. [`HandshakeTable::on_segment`]
//! takes the server's later segments: in-order data is collected up to `max_bytes`
//! ([`reassembly`]), each data segment is acknowledged, and the connection is finished (a RST
//! is written) when the limit is reached or the server sends FIN; a server RST finishes it
//! silently. [`HandshakeTable::expire`] finishes connections whose timeout (or idle timeout)
//! passed and hands every finished connection to the caller as a [`Finished`] (banner bytes,
//! [`BannerClass`]).
//!
//! Everything here is pure: no clock (callers pass `now`), no I/O, and no allocation after
//! [`HandshakeTable::with_config`]: entries live in a fixed slab, banner bytes in a fixed arena
//! (`max_bytes` per slot), the index is an open-addressing table of slot numbers, and the
//! age, idle, done and free lists are threaded through the slab.
//!
//! The table is bounded on purpose: a scan can find far more open ports per second than it can
//! keep connections for, so when `capacity` connections are in flight the oldest is finished
//! early (counted as an eviction) to make room. See `docs/stateless-banners.md`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rzmap_wire::ipv4::{self, Ipv4Packet};
use rzmap_wire::tcp::{self, TcpOption, TcpOptions, TcpPacket};

use crate::fields::{FieldDef, FieldType, Record};
use crate::probe::ProbeConfig;
use crate::probe::tcp_synscan::OptionStyle;

pub mod reassembly;
mod segment;
#[cfg(test)]
mod tests;

pub use reassembly::{Inserted, MAX_RANGES, Reassembly};
pub use segment::LinkHeader;

use segment::SegmentSpec;

/// Bytes of the SYN-ACK kept per connection (IP and TCP headers with their largest options),
/// so the finished record can carry the usual `tcp_synscan` fields.
pub const SYNACK_KEEP: usize = 120;

/// The fields banner grabbing adds to a `tcp_synscan` record (after the module's own).
pub static BANNER_FIELDS: [FieldDef; 2] = [
    FieldDef::new(
        "data",
        FieldType::Bin,
        "first bytes the server sent after the handshake (up to --banner-max)",
    ),
    FieldDef::new(
        "banner_class",
        FieldType::Str,
        "how the grab ended: banner, no-banner, reset or truncated",
    ),
];

/// The `tcp_synscan` fields followed by [`BANNER_FIELDS`]: the module field list of a scan
/// with banner grabbing (what `--list-output-fields` shows and `-f` accepts with `--banner`).
pub static TCP_SYNSCAN_BANNER_FIELDS: [FieldDef; 18] = {
    let s = &crate::probe::tcp_synscan::FIELDS;
    let mut out = [BANNER_FIELDS[0]; 18];
    let mut i = 0;
    while i < 16 {
        out[i] = s[i];
        i += 1;
    }
    out[16] = BANNER_FIELDS[0];
    out[17] = BANNER_FIELDS[1];
    out
};

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BannerClass {
    /// Some bytes arrived, then the server closed (FIN) or the timeout passed.
    Banner,
    /// The server closed or the timeout passed with no byte received.
    NoBanner,
    /// The server reset the connection (bytes received before are kept).
    Reset,
    /// `max_bytes` were received; the rest was not read.
    Truncated,
}

impl BannerClass {
    /// The `banner_class` field value.
    pub fn name(self) -> &'static str {
        match self {
            BannerClass::Banner => "banner",
            BannerClass::NoBanner => "no-banner",
            BannerClass::Reset => "reset",
            BannerClass::Truncated => "truncated",
        }
    }
}

/// A connection: our address and port, and the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Our address (the SYN-ACK's destination).
    pub our_ip: Ipv4Addr,
    /// Our port (the probe's source port).
    pub our_port: u16,
    /// The server's address.
    pub their_ip: Ipv4Addr,
    /// The server's port.
    pub their_port: u16,
}

impl FlowKey {
    fn hash(&self, seed: u64) -> u64 {
        let a = (u64::from(u32::from(self.our_ip)) << 32) | u64::from(u32::from(self.their_ip));
        let b = (u64::from(self.our_port) << 16) | u64::from(self.their_port);
        let mut h = (a ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= (b ^ seed.rotate_left(29)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        h ^= h >> 31;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 29)
    }
}

/// Settings of a [`HandshakeTable`]; fixed for its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Connections in flight at most; one more evicts the oldest.
    pub capacity: usize,
    /// How long a connection may last from its SYN-ACK.
    pub timeout: Duration,
    /// Banner bytes kept per connection (`--banner-max`); at least 1.
    pub max_bytes: usize,
    /// IP TTL of the segments we send (the probes' TTL).
    pub ttl: u8,
    /// Link header of the frames we write.
    pub link: LinkHeader,
    /// The window scale shift our SYN announced (`None`: no window scale option).
    pub our_wscale: Option<u8>,
    /// The TSval our SYN carried (`None`: no timestamp option). Used as our TSval throughout.
    pub our_tsval: Option<u32>,
    /// Seed of the index hash (take it from the scan's random seed, so peers cannot aim
    /// collisions).
    pub hash_seed: u64,
    /// Finished connections that may wait for [`HandshakeTable::expire`] beyond `capacity`
    /// (older ones are dropped unreported and counted). `0` picks `max(capacity / 8, 64)`.
    pub done_reserve: usize,
    /// Finish a connection that has sent bytes once no new byte arrived for this long
    /// (`--banner-idle`); servers that greet and then wait (SSH, SMTP, FTP) are reported
    /// then instead of at `timeout`. `None`: only `timeout` applies.
    pub idle_timeout: Option<Duration>,
    /// Verify the IP header and TCP checksums of received packets (a corrupted segment
    /// would otherwise corrupt the banner). Turn it off only where captured packets carry
    /// unfinished checksums (a veth peer with transmit checksum offload).
    pub verify_checksums: bool,
}

impl HandshakeConfig {
    /// Defaults: 1024 bytes per banner, TTL 255, Ethernet header with zero MACs, the
    /// `tcp_synscan` default ("windows") options (window scale 8, no timestamps).
    pub fn new(capacity: usize, timeout: Duration) -> Self {
        Self {
            capacity,
            timeout,
            max_bytes: 1024,
            ttl: 255,
            link: LinkHeader::Ethernet { src: [0; 6], dst: [0; 6] },
            our_wscale: Some(8),
            our_tsval: None,
            hash_seed: 0x5eed_0f2a_11d5,
            done_reserve: 0,
            idle_timeout: None,
            verify_checksums: true,
        }
    }
}

impl HandshakeConfig {
    /// The settings matching the SYNs `tcp_synscan` sends with `style` and `probe` (TTL,
    /// MACs, the window scale and timestamp our SYN announced), for `capacity` connections
    /// of at most `timeout` and `max_bytes`.
    pub fn for_tcp_synscan(
        probe: &ProbeConfig,
        style: OptionStyle,
        capacity: usize,
        timeout: Duration,
        max_bytes: usize,
    ) -> Self {
        let (our_wscale, our_tsval) = match style {
            OptionStyle::Windows => (Some(8), None),
            OptionStyle::Linux => (Some(7), Some(probe.timestamp)),
            OptionStyle::Bsd => (Some(6), Some(probe.timestamp)),
            OptionStyle::SmallestProbes => (None, None),
        };
        Self {
            max_bytes,
            ttl: probe.ttl,
            link: LinkHeader::Ethernet { src: probe.src_mac, dst: probe.gw_mac },
            our_wscale,
            our_tsval,
            ..Self::new(capacity, timeout)
        }
    }
}

/// What the caller must do after handing the table a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The packet was not used (see the reason; each is counted in [`HandshakeStats`]).
    Ignored(Ignored),
    /// Accepted; nothing to send (for example the server's ACK of our payload).
    Absorbed,
    /// Send the frame in `out[..len]`; the connection continues.
    Send(usize),
    /// The connection finished: send `out[..len]` when `len > 0` (the closing RST). Its
    /// result is reported by the next [`HandshakeTable::expire`].
    Finished(usize),
}

/// Why a packet was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Not a whole IPv4/TCP packet (or a fragment).
    Malformed,
    /// A wrong IP header or TCP checksum.
    BadChecksum,
    /// `on_synack` got something that is not a SYN-ACK.
    NotSynAck,
    /// A SYN-ACK for a connection already in the table (other than a retransmission while
    /// waiting for data, which is answered).
    DuplicateSynAck,
    /// No connection in the table for this segment.
    Unknown,
    /// The connection has finished and awaits reporting.
    AfterFinish,
    /// Sequence or acknowledgement number outside what the connection allows, a segment
    /// without ACK, or a SYN on an established connection.
    OutOfWindow,
    /// The frame buffer is too small for the segment to write.
    BufferTooSmall,
}

/// Counters, cumulative since the table was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// Connections started (ACK+payload written).
    pub started: u64,
    /// SYN-ACK retransmissions answered by re-sending the ACK+payload.
    pub synack_retransmits: u64,
    /// Other SYN-ACKs for known connections.
    pub duplicate_synacks: u64,
    /// Connections finished early to make room.
    pub evicted: u64,
    /// Finished connections dropped before being reported (expire was not called often
    /// enough).
    pub lost_unreported: u64,
    /// Connections reported, by class: banner, no-banner, reset, truncated.
    pub finished: [u64; 4],
    /// Segments ignored because they were malformed.
    pub malformed: u64,
    /// Segments ignored because of a wrong checksum.
    pub bad_checksum: u64,
    /// Segments for no known connection.
    pub unknown: u64,
    /// Segments for finished connections.
    pub after_finish: u64,
    /// Segments outside the window.
    pub out_of_window: u64,
    /// Data segments that brought nothing new (retransmissions); they are re-acknowledged.
    pub retransmitted_data: u64,
    /// Out-of-order segments dropped because every reassembly range was in use.
    pub reassembly_full: u64,
    /// Frames not written because the caller's buffer was too small.
    pub buffer_too_small: u64,
}

/// A finished connection, as [`HandshakeTable::expire`] reports it.
#[derive(Clone, Copy, Debug)]
pub struct Finished<'a> {
    /// The connection.
    pub key: FlowKey,
    /// How it ended.
    pub class: BannerClass,
    /// The contiguous bytes received from the server's ISN+1 (at most `max_bytes`).
    pub data: &'a [u8],
    /// The SYN-ACK's IP packet, cut after its TCP header (for the `tcp_synscan` fields).
    pub synack: &'a [u8],
    /// The RST to send now (timeouts and evictions), or empty when none is needed.
    pub close_frame: &'a [u8],
    /// True when the connection was finished early to make room.
    pub evicted: bool,
}

impl Finished<'_> {
    /// Sets the [`BANNER_FIELDS`] of a record, starting at index `at`.
    pub fn fill_fields(&self, rec: &mut Record, at: usize) {
        rec.set_bin(at, self.data);
        rec.set_str(at + 1, self.class.name());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    AckSent,
    Collecting,
    Done,
}

const NIL: u32 = u32::MAX;
const NO_FIN: u32 = u32::MAX;

/// One connection. Its banner bytes and SYN-ACK copy live in the table's arena.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FlowKey,
    state: State,
    class: BannerClass,
    needs_rst: bool,
    evicted: bool,
    ts_ok: bool,
    wshift: u8,
    synack_len: u8,
    ip_id: u16,
    /// Our ISN + 1: the first byte of our payload.
    iss1: u32,
    /// Our next sequence number (after the payload).
    snd_nxt: u32,
    /// The highest acknowledgement the server sent (what it expects next from us).
    snd_una: u32,
    /// The server's ISN + 1: stream offset 0.
    irs1: u32,
    /// Stream offset of the server's FIN, once seen.
    fin_at: u32,
    /// The server's latest TSval (echoed in our TSecr).
    ts_recent: u32,
    reasm: Reassembly,
    /// When the connection times out (`None` for a free slot).
    deadline: Option<Instant>,
    prev: u32,
    next: u32,
    /// When the connection goes idle (`None`: not on the idle list).
    idle_deadline: Option<Instant>,
    idle_prev: u32,
    idle_next: u32,
}

/// A doubly linked list threaded through the slab (the age list) or a singly linked FIFO
/// (done and free lists use only `next`).
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List { head: NIL, tail: NIL };
}

/// The bounded, expiring table of connections being grabbed.
#[derive(Debug)]
pub struct HandshakeTable {
    cfg: HandshakeConfig,
    entries: Vec<Entry>,
    arena: Vec<u8>,
    slot_bytes: usize,
    index: Vec<u32>,
    mask: usize,
    age: List,
    /// Connections that sent bytes, least recently active first (all idle timeouts are
    /// equal, so this is also idle-deadline order).
    idle: List,
    done: List,
    free: List,
    live: usize,
    done_count: usize,
    stats: HandshakeStats,
}

impl HandshakeTable {
    /// A table for `capacity` connections that time out after `timeout`, with the other
    /// settings of [`HandshakeConfig::new`].
    pub fn new(capacity: usize, timeout: Duration) -> Self {
        Self::with_config(HandshakeConfig::new(capacity, timeout))
    }

    /// A table with explicit settings. Allocates everything it will ever use.
    pub fn with_config(mut cfg: HandshakeConfig) -> Self {
        cfg.capacity = cfg.capacity.max(1);
        cfg.max_bytes = cfg.max_bytes.clamp(1, u32::MAX as usize / 2);
        if cfg.done_reserve == 0 {
            cfg.done_reserve = (cfg.capacity / 8).max(64);
        }
        let slots = cfg.capacity + cfg.done_reserve;
        let slot_bytes = SYNACK_KEEP + cfg.max_bytes;
        let blank = Entry {
            key: FlowKey {
                our_ip: Ipv4Addr::UNSPECIFIED,
                our_port: 0,
                their_ip: Ipv4Addr::UNSPECIFIED,
                their_port: 0,
            },
            state: State::Free,
            class: BannerClass::NoBanner,
            needs_rst: false,
            evicted: false,
            ts_ok: false,
            wshift: 0,
            synack_len: 0,
            ip_id: 0,
            iss1: 0,
            snd_nxt: 0,
            snd_una: 0,
            irs1: 0,
            fin_at: NO_FIN,
            ts_recent: 0,
            reasm: Reassembly::new(),
            deadline: None,
            prev: NIL,
            next: NIL,
            idle_deadline: None,
            idle_prev: NIL,
            idle_next: NIL,
        };
        let mut entries = vec![blank; slots];
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < slots { (i + 1) as u32 } else { NIL };
        }
        let index_len = (slots * 2).next_power_of_two();
        Self {
            cfg,
            entries,
            arena: vec![0; slots * slot_bytes],
            slot_bytes,
            index: vec![NIL; index_len],
            mask: index_len - 1,
            age: List::EMPTY,
            idle: List::EMPTY,
            done: List::EMPTY,
            free: List { head: 0, tail: (slots - 1) as u32 },
            live: 0,
            done_count: 0,
            stats: HandshakeStats::default(),
        }
    }

    /// The settings in effect (capacity and `max_bytes` clamped to at least 1).
    pub fn config(&self) -> &HandshakeConfig {
        &self.cfg
    }

    /// Connections in flight (not counting finished ones awaiting report).
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no connection is in flight.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Finished connections awaiting [`Self::expire`].
    pub fn pending_reports(&self) -> usize {
        self.done_count
    }

    /// The counters.
    pub fn stats(&self) -> &HandshakeStats {
        &self.stats
    }

    /// Size of one connection entry (without its arena share).
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Entry>()
    }

    /// Bytes of memory one slot costs: the entry, its arena share and its index share.
    pub fn bytes_per_slot(&self) -> usize {
        std::mem::size_of::<Entry>()
            + self.slot_bytes
            + self.index.len() * std::mem::size_of::<u32>() / self.entries.len()
    }

    /// Total bytes allocated by the table (entries, arena, index).
    pub fn allocated_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>()
            + self.arena.len()
            + self.index.len() * std::mem::size_of::<u32>()
    }

    /// The largest frame this table writes for a payload of `payload_len` bytes: the size
    /// the caller's `out` buffers need.
    pub fn max_frame_len(&self, payload_len: usize) -> usize {
        segment::frame_len(self.cfg.link, self.cfg.our_tsval.is_some(), payload_len)
    }

    /// Handles a validated SYN-ACK (the IP packet, link header removed): writes the ACK
    /// carrying `payload` (PSH set when non-empty; seq = our ISN+1, ack = their ISN+1; IP ID
    /// `ip_id`, the probe's) into `out` and starts tracking the connection. A retransmitted
    /// SYN-ACK of a connection still waiting for data is answered with the same segment.
    pub fn on_synack(
        &mut self,
        ip: &[u8],
        now: Instant,
        ip_id: u16,
        payload: &[u8],
        out: &mut [u8],
    ) -> Action {
        let Some((ipp, t)) = parse(ip) else { return self.ignore(Ignored::Malformed) };
        if self.cfg.verify_checksums && !checksums_ok(&ipp, &t) {
            return self.ignore(Ignored::BadChecksum);
        }
        if t.flags() & (tcp::FLAG_SYN | tcp::FLAG_ACK | tcp::FLAG_RST)
            != tcp::FLAG_SYN | tcp::FLAG_ACK
        {
            return self.ignore(Ignored::NotSynAck);
        }
        let key = key_of(&ipp, &t);
        let irs1 = t.seq().wrapping_add(1);
        let iss1 = t.ack();
        if let Some(slot) = self.lookup(&key) {
            let e = self.entries[slot];
            return match e.state {
                State::AckSent if e.irs1 == irs1 && e.iss1 == iss1 => {
                    self.stats.synack_retransmits += 1;
                    let seg = self.spec(&e, e.iss1, e.irs1, tcp::FLAG_ACK | psh(payload), payload);
                    match segment::write(out, &seg) {
                        Some(n) => {
                            self.entries[slot].ip_id = e.ip_id.wrapping_add(1);
                            Action::Send(n)
                        }
                        None => self.ignore(Ignored::BufferTooSmall),
                    }
                }
                State::Done => self.ignore(Ignored::AfterFinish),
                _ => self.ignore(Ignored::DuplicateSynAck),
            };
        }
        // Options the server answered with decide window scaling and timestamps.
        let mut peer_ws = false;
        let mut peer_ts = None;
        for o in TcpOptions::new(t.options()) {
            match o {
                Ok(TcpOption::WindowScale(_)) => peer_ws = true,
                Ok(TcpOption::Timestamp { val, .. }) => peer_ts = Some(val),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let ts_ok = self.cfg.our_tsval.is_some() && peer_ts.is_some();
        let wshift = match (peer_ws, self.cfg.our_wscale) {
            (true, Some(s)) => s.min(14),
            _ => 0,
        };
        let mut e = Entry {
            key,
            state: State::AckSent,
            class: BannerClass::NoBanner,
            needs_rst: false,
            evicted: false,
            ts_ok,
            wshift,
            synack_len: 0,
            ip_id,
            iss1,
            snd_nxt: iss1.wrapping_add(payload.len() as u32),
            snd_una: iss1,
            irs1,
            fin_at: NO_FIN,
            ts_recent: peer_ts.unwrap_or(0),
            reasm: Reassembly::new(),
            deadline: now.checked_add(self.cfg.timeout),
            prev: NIL,
            next: NIL,
            idle_deadline: None,
            idle_prev: NIL,
            idle_next: NIL,
        };
        let seg = self.spec(&e, iss1, irs1, tcp::FLAG_ACK | psh(payload), payload);
        let Some(n) = segment::write(out, &seg) else {
            return self.ignore(Ignored::BufferTooSmall);
        };
        e.ip_id = e.ip_id.wrapping_add(1);
        let slot = self.insert(e);
        let keep = tcp_end(&ipp, &t).min(SYNACK_KEEP).min(ip.len());
        let base = slot * self.slot_bytes;
        self.arena[base..base + keep].copy_from_slice(&ip[..keep]);
        self.entries[slot].synack_len = keep as u8;
        self.stats.started += 1;
        Action::Send(n)
    }

    /// Handles any later TCP segment (the IP packet) from a server: collects its data,
    /// acknowledges it, or finishes the connection. Unknown, malformed and out-of-window
    /// segments are ignored and counted. `now` restarts the idle timeout when new contiguous
    /// bytes arrive; timeouts themselves are applied by [`Self::expire`].
    pub fn on_segment(&mut self, ip: &[u8], now: Instant, out: &mut [u8]) -> Action {
        let Some((ipp, t)) = parse(ip) else { return self.ignore(Ignored::Malformed) };
        if self.cfg.verify_checksums && !checksums_ok(&ipp, &t) {
            return self.ignore(Ignored::BadChecksum);
        }
        let key = key_of(&ipp, &t);
        let Some(slot) = self.lookup(&key) else { return self.ignore(Ignored::Unknown) };
        let mut e = self.entries[slot];
        if e.state == State::Done {
            return self.ignore(Ignored::AfterFinish);
        }
        let max = self.cfg.max_bytes as u32;
        let contig = e.reasm.contiguous();
        // Offset of the segment's first byte in the server's stream (negative: before it).
        let rel = i64::from(t.seq().wrapping_sub(e.irs1) as i32);
        if t.rst() {
            // Acceptable from what we have to one past what we allow (a FIN's place).
            if rel >= i64::from(contig) && rel <= i64::from(max) + 1 {
                self.finish(slot, BannerClass::Reset, false);
                return Action::Finished(0);
            }
            return self.ignore(Ignored::OutOfWindow);
        }
        if t.syn() || !t.ack_flag() {
            return self.ignore(Ignored::OutOfWindow);
        }
        // The server may acknowledge anything from our ISN+1 to the end of our payload.
        let acked = t.ack().wrapping_sub(e.iss1);
        if acked > e.snd_nxt.wrapping_sub(e.iss1) {
            return self.ignore(Ignored::OutOfWindow);
        }
        let data = t.payload();
        let fin = t.flags() & tcp::FLAG_FIN != 0;
        let seg_end = rel + data.len() as i64;
        if rel > i64::from(max) || seg_end + i64::from(fin) < -65_536 {
            return self.ignore(Ignored::OutOfWindow);
        }
        if acked > e.snd_una.wrapping_sub(e.iss1) {
            e.snd_una = t.ack();
        }
        // RFC 7323: remember the TSval of segments that do not start beyond what we have.
        let in_order = e.ts_ok && rel <= i64::from(contig);
        if let Some(val) = tsval(&t).filter(|_| in_order) {
            e.ts_recent = val;
        }
        if !data.is_empty() {
            let skip = usize::try_from((-rel).max(0)).unwrap_or(usize::MAX).min(data.len());
            let off = rel.max(0) as u32;
            let base = slot * self.slot_bytes + SYNACK_KEEP;
            let buf = &mut self.arena[base..base + self.cfg.max_bytes];
            match e.reasm.insert(buf, off, &data[skip..]) {
                Inserted::New { advanced } => {
                    // New contiguous bytes restart the idle timer.
                    if let Some(idle) = self.cfg.idle_timeout.filter(|_| advanced > 0) {
                        e.idle_deadline = now.checked_add(idle);
                        self.entries[slot] = e;
                        self.touch_idle(slot);
                        e = self.entries[slot];
                    }
                }
                Inserted::Duplicate => self.stats.retransmitted_data += 1,
                Inserted::NoRoom => self.stats.reassembly_full += 1,
                Inserted::BeyondLimit => {}
            }
            if e.state == State::AckSent {
                e.state = State::Collecting;
            }
        }
        if fin && e.fin_at == NO_FIN && (0..=i64::from(max)).contains(&seg_end) {
            e.fin_at = seg_end as u32;
        }
        let contig = e.reasm.contiguous();
        self.entries[slot] = e;
        if contig >= max {
            return self.close(slot, BannerClass::Truncated, out);
        }
        if e.fin_at == contig {
            let class = if contig > 0 { BannerClass::Banner } else { BannerClass::NoBanner };
            return self.close(slot, class, out);
        }
        if data.is_empty() && !fin {
            return Action::Absorbed;
        }
        let ack = e.irs1.wrapping_add(contig);
        let seg = self.spec(&e, e.snd_nxt, ack, tcp::FLAG_ACK, &[]);
        let sent = segment::write(out, &seg);
        self.entries[slot].ip_id = e.ip_id.wrapping_add(1);
        match sent {
            Some(n) => Action::Send(n),
            None => self.ignore(Ignored::BufferTooSmall),
        }
    }

    /// Finishes connections whose timeout passed (class `banner` or `no-banner`) or whose idle
    /// timeout passed after their last new byte (`banner`), then reports
    /// every finished connection to `emit`, oldest first, and frees it. Timed-out and evicted
    /// connections come with the RST to send (written in `out`). Returns how many were
    /// reported. Call it every receive poll.
    pub fn expire(
        &mut self,
        now: Instant,
        out: &mut [u8],
        mut emit: impl FnMut(&Finished<'_>),
    ) -> usize {
        while self.age.head != NIL {
            let slot = self.age.head as usize;
            // A timeout too large to represent never expires.
            if self.entries[slot].deadline.is_none_or(|d| d > now) {
                break;
            }
            let class = timeout_class(&self.entries[slot]);
            self.finish(slot, class, true);
        }
        while self.idle.head != NIL {
            let slot = self.idle.head as usize;
            if self.entries[slot].idle_deadline.is_none_or(|d| d > now) {
                break;
            }
            self.finish(slot, BannerClass::Banner, true);
        }
        self.report_done(out, &mut emit)
    }

    /// Finishes every connection in flight (at the end of a scan) as if it timed out, and
    /// reports everything; returns how many were reported.
    pub fn finish_all(&mut self, out: &mut [u8], mut emit: impl FnMut(&Finished<'_>)) -> usize {
        while self.age.head != NIL {
            let slot = self.age.head as usize;
            let class = timeout_class(&self.entries[slot]);
            self.finish(slot, class, true);
        }
        self.report_done(out, &mut emit)
    }

    fn report_done(&mut self, out: &mut [u8], emit: &mut impl FnMut(&Finished<'_>)) -> usize {
        let mut n = 0;
        while self.done.head != NIL {
            let slot = self.done.head as usize;
            self.done.head = self.entries[slot].next;
            if self.done.head == NIL {
                self.done.tail = NIL;
            }
            self.done_count -= 1;
            let e = self.entries[slot];
            let close_len = if e.needs_rst {
                let seg = self.rst_spec(&e);
                segment::write(out, &seg).unwrap_or_else(|| {
                    self.stats.buffer_too_small += 1;
                    0
                })
            } else {
                0
            };
            let base = slot * self.slot_bytes;
            let data_len = e.reasm.contiguous() as usize;
            let f = Finished {
                key: e.key,
                class: e.class,
                data: &self.arena[base + SYNACK_KEEP..base + SYNACK_KEEP + data_len],
                synack: &self.arena[base..base + usize::from(e.synack_len)],
                close_frame: &out[..close_len],
                evicted: e.evicted,
            };
            self.stats.finished[class_index(e.class)] += 1;
            emit(&f);
            self.release(slot);
            n += 1;
        }
        n
    }

    /// Finishes a connection now and writes its RST into `out`.
    fn close(&mut self, slot: usize, class: BannerClass, out: &mut [u8]) -> Action {
        self.finish(slot, class, false);
        let e = self.entries[slot];
        let seg = self.rst_spec(&e);
        match segment::write(out, &seg) {
            Some(n) => Action::Finished(n),
            None => {
                self.stats.buffer_too_small += 1;
                Action::Finished(0)
            }
        }
    }

    /// Moves a live connection to the done list.
    fn finish(&mut self, slot: usize, class: BannerClass, needs_rst: bool) {
        self.unlink_age(slot);
        self.unlink_idle(slot);
        self.live -= 1;
        let e = &mut self.entries[slot];
        e.state = State::Done;
        e.class = class;
        e.needs_rst = needs_rst;
        e.next = NIL;
        if self.done.tail == NIL {
            self.done.head = slot as u32;
        } else {
            self.entries[self.done.tail as usize].next = slot as u32;
        }
        self.done.tail = slot as u32;
        self.done_count += 1;
    }

    /// Puts a connection in a free slot (evicting the oldest when full) and returns the slot.
    fn insert(&mut self, mut e: Entry) -> usize {
        if self.live >= self.cfg.capacity && self.age.head != NIL {
            let oldest = self.age.head as usize;
            let class = timeout_class(&self.entries[oldest]);
            self.entries[oldest].evicted = true;
            self.finish(oldest, class, true);
            self.stats.evicted += 1;
        }
        if self.free.head == NIL {
            // Every spare slot holds an unreported connection: drop the oldest of them.
            let slot = self.done.head as usize;
            self.done.head = self.entries[slot].next;
            if self.done.head == NIL {
                self.done.tail = NIL;
            }
            self.done_count -= 1;
            self.stats.lost_unreported += 1;
            self.release(slot);
        }
        let slot = self.free.head as usize;
        self.free.head = self.entries[slot].next;
        if self.free.head == NIL {
            self.free.tail = NIL;
        }
        e.prev = self.age.tail;
        e.next = NIL;
        self.entries[slot] = e;
        if self.age.tail == NIL {
            self.age.head = slot as u32;
        } else {
            self.entries[self.age.tail as usize].next = slot as u32;
        }
        self.age.tail = slot as u32;
        self.live += 1;
        self.index_insert(&e.key, slot as u32);
        slot
    }

    /// Frees a slot that is on no list.
    fn release(&mut self, slot: usize) {
        let key = self.entries[slot].key;
        self.index_remove(&key, slot as u32);
        let e = &mut self.entries[slot];
        e.state = State::Free;
        e.next = NIL;
        e.prev = NIL;
        if self.free.tail == NIL {
            self.free.head = slot as u32;
        } else {
            self.entries[self.free.tail as usize].next = slot as u32;
        }
        self.free.tail = slot as u32;
    }

    /// Puts a connection (its `idle_deadline` already set) at the tail of the idle list.
    fn touch_idle(&mut self, slot: usize) {
        self.unlink_idle_links(slot);
        let s = slot as u32;
        self.entries[slot].idle_prev = self.idle.tail;
        self.entries[slot].idle_next = NIL;
        if self.idle.tail == NIL {
            self.idle.head = s;
        } else {
            self.entries[self.idle.tail as usize].idle_next = s;
        }
        self.idle.tail = s;
    }

    /// Takes a connection off the idle list, if it is on it.
    fn unlink_idle(&mut self, slot: usize) {
        if self.entries[slot].idle_deadline.take().is_some() {
            self.unlink_idle_links(slot);
        }
    }

    /// Unlinks a slot's idle-list links when they are in use (head or linked).
    fn unlink_idle_links(&mut self, slot: usize) {
        let s = slot as u32;
        let Entry { idle_prev: prev, idle_next: next, .. } = self.entries[slot];
        if prev == NIL && self.idle.head != s {
            return; // not on the list
        }
        if prev == NIL {
            self.idle.head = next;
        } else {
            self.entries[prev as usize].idle_next = next;
        }
        if next == NIL {
            self.idle.tail = prev;
        } else {
            self.entries[next as usize].idle_prev = prev;
        }
        self.entries[slot].idle_prev = NIL;
        self.entries[slot].idle_next = NIL;
    }

    fn unlink_age(&mut self, slot: usize) {
        let Entry { prev, next, .. } = self.entries[slot];
        if prev == NIL {
            self.age.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.age.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }

    fn lookup(&self, key: &FlowKey) -> Option<usize> {
        let mut i = key.hash(self.cfg.hash_seed) as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == NIL {
                return None;
            }
            if self.entries[s as usize].key == *key {
                return Some(s as usize);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn index_insert(&mut self, key: &FlowKey, slot: u32) {
        let mut i = key.hash(self.cfg.hash_seed) as usize & self.mask;
        while self.index[i] != NIL {
            i = (i + 1) & self.mask;
        }
        self.index[i] = slot;
    }

    /// Removes `slot` from the index, shifting later members of its probe run back so that
    /// lookups never meet a hole (no tombstones).
    fn index_remove(&mut self, key: &FlowKey, slot: u32) {
        let mut i = key.hash(self.cfg.hash_seed) as usize & self.mask;
        while self.index[i] != slot {
            if self.index[i] == NIL {
                return;
            }
            i = (i + 1) & self.mask;
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s == NIL {
                break;
            }
            let home = self.entries[s as usize].key.hash(self.cfg.hash_seed) as usize & self.mask;
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.index[hole] = s;
                hole = j;
            }
        }
        self.index[hole] = NIL;
    }

    fn ignore(&mut self, why: Ignored) -> Action {
        let s = &mut self.stats;
        match why {
            Ignored::Malformed | Ignored::NotSynAck => s.malformed += 1,
            Ignored::BadChecksum => s.bad_checksum += 1,
            Ignored::DuplicateSynAck => s.duplicate_synacks += 1,
            Ignored::Unknown => s.unknown += 1,
            Ignored::AfterFinish => s.after_finish += 1,
            Ignored::OutOfWindow => s.out_of_window += 1,
            Ignored::BufferTooSmall => s.buffer_too_small += 1,
        }
        Action::Ignored(why)
    }

    /// The window we advertise: what is still wanted, scaled, at least 1 while anything is.
    fn window(&self, e: &Entry) -> u16 {
        let wanted = (self.cfg.max_bytes as u32).saturating_sub(e.reasm.contiguous());
        if wanted == 0 {
            return 0;
        }
        u16::try_from((wanted >> e.wshift).max(1)).unwrap_or(u16::MAX)
    }

    fn spec<'p>(
        &self,
        e: &Entry,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'p [u8],
    ) -> SegmentSpec<'p> {
        SegmentSpec {
            link: self.cfg.link,
            ttl: self.cfg.ttl,
            ip_id: e.ip_id,
            src: e.key.our_ip,
            dst: e.key.their_ip,
            sport: e.key.our_port,
            dport: e.key.their_port,
            seq,
            ack,
            flags,
            window: self.window(e),
            ts: match (e.ts_ok, self.cfg.our_tsval) {
                (true, Some(v)) => Some((v, e.ts_recent)),
                _ => None,
            },
            payload,
        }
    }

    /// The closing RST+ACK: seq is what the server last acknowledged of ours (our next
    /// sequence number once it has our payload), ack covers the bytes (and FIN) received.
    fn rst_spec(&self, e: &Entry) -> SegmentSpec<'static> {
        let contig = e.reasm.contiguous();
        let fin = u32::from(e.fin_at == contig);
        let mut s = self.spec(
            e,
            e.snd_una,
            e.irs1.wrapping_add(contig).wrapping_add(fin),
            tcp::FLAG_RST | tcp::FLAG_ACK,
            &[],
        );
        s.window = 0;
        s.ts = None;
        s
    }
}

fn psh(payload: &[u8]) -> u8 {
    if payload.is_empty() { 0 } else { tcp::FLAG_PSH }
}

fn class_index(c: BannerClass) -> usize {
    match c {
        BannerClass::Banner => 0,
        BannerClass::NoBanner => 1,
        BannerClass::Reset => 2,
        BannerClass::Truncated => 3,
    }
}

fn timeout_class(e: &Entry) -> BannerClass {
    if e.reasm.contiguous() > 0 { BannerClass::Banner } else { BannerClass::NoBanner }
}

/// Views of a received packet's IP header and TCP segment.
type Views<'a> = (Ipv4Packet<&'a [u8]>, TcpPacket<&'a [u8]>);

/// A whole, unfragmented IPv4/TCP packet.
fn parse(ip: &[u8]) -> Option<Views<'_>> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    if p.protocol() != ipv4::PROTO_TCP || p.more_frags() || p.frag_offset() != 0 {
        return None;
    }
    // `new_checked` proved header_len <= total_len <= ip.len().
    let seg = ip.get(p.header_len()..usize::from(p.total_len()))?;
    let t = TcpPacket::new_checked(seg).ok()?;
    Some((p, t))
}

fn checksums_ok(ip: &Ipv4Packet<&[u8]>, t: &TcpPacket<&[u8]>) -> bool {
    ip.verify_checksum() && t.verify_checksum(ip.src(), ip.dst())
}

fn key_of(ip: &Ipv4Packet<&[u8]>, t: &TcpPacket<&[u8]>) -> FlowKey {
    FlowKey {
        our_ip: ip.dst(),
        our_port: t.dst_port(),
        their_ip: ip.src(),
        their_port: t.src_port(),
    }
}

/// Length of the IP and TCP headers together.
fn tcp_end(ip: &Ipv4Packet<&[u8]>, t: &TcpPacket<&[u8]>) -> usize {
    ip.header_len() + t.header_len()
}

fn tsval(t: &TcpPacket<&[u8]>) -> Option<u32> {
    TcpOptions::new(t.options()).find_map(|o| match o {
        Ok(TcpOption::Timestamp { val, .. }) => Some(val),
        _ => None,
    })
}
