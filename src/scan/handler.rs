//! The receive side of a live scan after the engine: a validated reply becomes a record
//! (module fields from the [`ReplyProcessor`], then the system fields), goes through the
//! output filter, and is written by the output module.
//!
//! The engine itself applies dedup and ZMap's default-mode rule (only first successful
//! replies reach [`ResponseHandler::emit`] when none of `-O`, `-f`, `--output-filter` was
//! given); this handler counts what passed the filter (for `-N`) by returning `true`.
//!
//! The first [`OutputError`] is kept and stops the scan: a closed pipe ends it quietly
//! (exit status 0), any other error ends it with a message.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, Timelike};
use rzmap_core::engine::{Controls, ResponseFlags, ResponseHandler, Verdict};
use rzmap_core::fields::{Record, Schema, Value};
use rzmap_core::filter::Filter;
use rzmap_core::handshake::HandshakeStats;
use rzmap_core::monitor::to_local;
use rzmap_core::output::{OutputError, OutputModule};
use rzmap_core::probe::adapter::ReplyProcessor;

use super::banner::{self, BannerGrab};
use std::sync::atomic::Ordering;

/// Validation, system fields, filter and output for the receiver thread.
pub struct OutputHandler {
    processor: ReplyProcessor,
    filter: Filter,
    output: Box<dyn OutputModule>,
    system_start: usize,
    controls: Arc<Controls>,
    error: Option<OutputError>,
    banner: Option<Banner>,
}

/// `--banner` state: the grabber and the record of the output's (longer) schema.
struct Banner {
    grab: Box<BannerGrab>,
    /// Record with the banner fields (IP, module, `data`, `banner_class`, system).
    record: Record,
    /// Fields copied from the processor's record (IP and module fields).
    copy: usize,
    /// Index of `data` in `record`.
    at: usize,
    /// Index of the first system field in `record`.
    system: usize,
    /// Index of `saddr`.
    saddr: usize,
}

fn copy_value(from: &Record, i: usize, to: &mut Record) {
    match from.get(i) {
        Value::Null => to.set_null(i),
        Value::Int(v) => to.set_int(i, v),
        Value::Bool(v) => to.set_bool(i, v),
        Value::Str(v) => to.set_str(i, v),
        Value::Bin(v) => to.set_bin(i, v),
    }
}

impl OutputHandler {
    /// A handler writing through `output` (already started) what `filter` accepts.
    pub fn new(
        processor: ReplyProcessor,
        filter: Filter,
        output: Box<dyn OutputModule>,
        controls: Arc<Controls>,
    ) -> Self {
        let system_start = processor.schema().system_start();
        Self { processor, filter, output, system_start, controls, error: None, banner: None }
    }

    /// Turns banner grabbing on: `schema` is the output's schema (the module's fields, then
    /// `data` and `banner_class`, then the system fields).
    pub fn with_banner(mut self, grab: BannerGrab, schema: &Schema) -> Self {
        let copy = self.processor.schema().system_start();
        self.banner = Some(Banner {
            grab: Box::new(grab),
            record: Record::for_schema(schema),
            copy,
            at: copy,
            system: schema.system_start(),
            saddr: schema.index_of("saddr").unwrap_or(0),
        });
        self
    }

    /// The banner grabber's counters, when `--banner` is on.
    pub fn banner_stats(&self) -> Option<(HandshakeStats, (u64, u64))> {
        self.banner.as_ref().map(|b| (*b.grab.stats(), b.grab.frames()))
    }

    /// Flushes the grabber's queued segments, then emits the records of finished grabs (every
    /// one with `all`); returns how many passed the filter.
    fn report_banners(&mut self, now: SystemTime, all: bool, budget: Option<u64>) -> u64 {
        let Some(b) = self.banner.as_mut() else { return 0 };
        b.grab.flush();
        let cooldown = self.controls.counters.active_senders.load(Ordering::Relaxed) == 0;
        let flags = ResponseFlags { repeat: false, cooldown };
        let (processor, filter, output) = (&mut self.processor, &self.filter, &mut self.output);
        let Banner { grab, record, copy, at, system, saddr } = b;
        let mut passed = 0;
        let mut error = None;
        let budget = if self.error.is_some() { Some(0) } else { budget };
        grab.report(Instant::now(), all, |f| {
            // The closing RSTs go out whatever happens to the records.
            if error.is_some() || budget.is_some_and(|b| passed >= b) {
                return;
            }
            record.clear();
            if processor.process(f.synack).is_ok() {
                let from = processor.record();
                for i in 0..*copy {
                    copy_value(from, i, record);
                }
            } else {
                record.set_ipv4(*saddr, f.key.their_ip);
            }
            f.fill_fields(record, *at);
            set_system_fields(record, *system, flags, now);
            if !filter.matches(record) {
                return;
            }
            match output.record(record) {
                Ok(()) => passed += 1,
                Err(e) => error = Some(e),
            }
        });
        if let Some(e) = error {
            self.fail(e);
        }
        passed
    }

    /// The reply processor (its reject counts).
    pub fn processor(&self) -> &ReplyProcessor {
        &self.processor
    }

    fn fail(&mut self, e: OutputError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.controls.request_stop();
    }

    /// Closes the output (redis may keep delivering until `deadline`) and returns the first
    /// output error of the run.
    pub fn close(mut self, deadline: Instant) -> Option<OutputError> {
        if self.error.is_none()
            && let Err(e) = self.output.close(deadline)
        {
            self.error = Some(e);
        }
        self.error
    }
}

/// Writes the system fields (`repeat`, `cooldown`, `timestamp_str`, `timestamp_ts`,
/// `timestamp_us`) into `rec` from index `start`. The time is the capture time, shown in local
/// time as `%Y-%m-%dT%H:%M:%S.mmm%z`, as ZMap does.
pub fn set_system_fields(rec: &mut Record, start: usize, flags: ResponseFlags, ts: SystemTime) {
    rec.set_bool(start, flags.repeat);
    rec.set_bool(start + 1, flags.cooldown);
    let since = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut text = [0u8; TIMESTAMP_LEN];
    timestamp_str(ts, since, &mut text);
    // Only ASCII digits and punctuation were written.
    rec.set_str(start + 2, std::str::from_utf8(&text).unwrap_or_default());
    rec.set_int(start + 3, since.as_secs());
    rec.set_int(start + 4, u64::from(since.subsec_micros()));
}

/// Length of `timestamp_str`: `YYYY-MM-DDTHH:MM:SS.mmm+hhmm`.
const TIMESTAMP_LEN: usize = 28;

thread_local! {
    /// The local-time text of the last whole second seen by this thread (the receive thread):
    /// `YYYY-MM-DDTHH:MM:SS` and the UTC offset `+hhmm`. Converting to local time and formatting
    /// happens once a second instead of once per reply.
    static SECOND: std::cell::Cell<(u64, [u8; 19], [u8; 5])> =
        const { std::cell::Cell::new((u64::MAX, [0; 19], [0; 5])) };
}

/// Writes ZMap's `timestamp_str` (`%Y-%m-%dT%H:%M:%S.mmm%z`, local time) for a capture time.
fn timestamp_str(ts: SystemTime, since: Duration, out: &mut [u8; TIMESTAMP_LEN]) {
    let secs = since.as_secs();
    let (cached, mut date, mut zone) = SECOND.get();
    if cached != secs {
        let t = to_local(ts);
        let off = t.offset().local_minus_utc();
        let (sign, off) = if off < 0 { (b'-', -off) } else { (b'+', off) };
        let mut w = &mut date[..];
        let _ = write!(
            w,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        zone[0] = sign;
        let (h, m) = ((off / 3600) as u32, (off % 3600 / 60) as u32);
        zone[1..].copy_from_slice(&[digit(h / 10), digit(h % 10), digit(m / 10), digit(m % 10)]);
        SECOND.set((secs, date, zone));
    }
    let ms = since.subsec_millis();
    out[..19].copy_from_slice(&date);
    out[19] = b'.';
    out[20..23].copy_from_slice(&[digit(ms / 100), digit(ms / 10 % 10), digit(ms % 10)]);
    out[23..].copy_from_slice(&zone);
}

fn digit(d: u32) -> u8 {
    b'0' + (d % 10) as u8
}

impl ResponseHandler for &mut OutputHandler {
    fn intercept(&mut self, packet: &[u8], _ts: SystemTime) -> bool {
        match self.banner.as_mut() {
            Some(b) if banner::is_tcp(packet) && !banner::is_synack(packet) => {
                b.grab.segment(packet, Instant::now())
            }
            _ => false,
        }
    }

    fn classify(&mut self, packet: &[u8], ts: SystemTime) -> Option<Verdict> {
        let v = self.processor.process(packet).ok()?;
        // Modules that report timing (icmp_echo_time's rtt_us) need the capture time.
        self.processor.set_capture_time(ts.duration_since(UNIX_EPOCH).unwrap_or_default());
        // Before the engine's dedup: a retransmitted SYN-ACK is answered again.
        if let Some(b) = self.banner.as_mut()
            && banner::is_synack(packet)
        {
            b.grab.synack(packet, Instant::now());
        }
        Some(v)
    }

    fn emit(&mut self, packet: &[u8], ts: SystemTime, _v: &Verdict, flags: ResponseFlags) -> bool {
        if self.error.is_some() {
            return false;
        }
        if let Some(b) = self.banner.as_mut() {
            // A SYN-ACK's record comes when its grab finishes.
            if banner::is_synack(packet) {
                return false;
            }
            b.record.clear();
            for i in 0..b.copy {
                copy_value(self.processor.record(), i, &mut b.record);
            }
            set_system_fields(&mut b.record, b.system, flags, ts);
            if !self.filter.matches(&b.record) {
                return false;
            }
            return match self.output.record(&b.record) {
                Ok(()) => true,
                Err(e) => {
                    self.fail(e);
                    false
                }
            };
        }
        let start = self.system_start;
        let rec = self.processor.record_mut();
        set_system_fields(rec, start, flags, ts);
        if !self.filter.matches(self.processor.record()) {
            return false;
        }
        match self.output.record(self.processor.record()) {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn after_poll(&mut self, now: SystemTime, budget: Option<u64>) -> u64 {
        self.report_banners(now, false, budget)
    }

    fn finish(&mut self, now: SystemTime, budget: Option<u64>) -> u64 {
        self.report_banners(now, true, budget)
    }

    fn flush(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.output.update()
        {
            self.fail(e);
        }
    }
}

/// "Is this address one we scan?": allowed by the lists and, with `-I`, on the list.
pub fn scope(
    space: Arc<rzmap_core::addr::TargetSpace>,
    list: Option<Arc<rzmap_core::addr::IpList>>,
) -> rzmap_core::probe::adapter::ScopeFn {
    Arc::new(move |ip: Ipv4Addr| {
        let ip = u32::from(ip);
        space.is_allowed(ip) && list.as_ref().is_none_or(|l| l.contains(ip))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzmap_core::fields::{Schema, Value};
    use rzmap_core::output::FieldSelection;
    use rzmap_core::probe::{ProbeConfig, ProbeModule};
    use rzmap_core::validate::Validator;

    #[test]
    fn timestamp_str_matches_chrono_across_seconds_and_cache_hits() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_170_000);
        // Same second twice (cache hit), the next second, a far-away date, and back.
        for (s, ms) in [(0u64, 5u32), (0, 999), (1, 0), (86_400 * 200 + 7, 123), (0, 42)] {
            let ts = base + Duration::from_secs(s) + Duration::from_millis(u64::from(ms));
            let since = ts.duration_since(UNIX_EPOCH).unwrap();
            let mut out = [0u8; TIMESTAMP_LEN];
            timestamp_str(ts, since, &mut out);
            let want = to_local(ts).format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        }
    }
    use std::io::{self, Write};
    use std::sync::Mutex;
    use std::time::Duration;

    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 9);

    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>, bool);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.1 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A TCP reply from HOST:80 to the port our probe used, with the given flags and ack.
    fn reply(cfg: &ProbeConfig, v: [u32; 4], syn: bool, rst: bool, ack: u32) -> Vec<u8> {
        let dport = cfg.source_port(v[1], 0);
        let mut tcp = etherparse::TcpHeader::new(80, dport, 1000, 8192);
        tcp.syn = syn;
        tcp.rst = rst;
        tcp.ack = true;
        tcp.acknowledgment_number = ack;
        let b = etherparse::PacketBuilder::ipv4(HOST.octets(), US.octets(), 50).tcp_header(tcp);
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn handler(filter: &str, broken: bool) -> (OutputHandler, Arc<Controls>, Buf, ProbeConfig) {
        let module: Arc<dyn ProbeModule> =
            Arc::from(rzmap_core::probe::create("tcp_synscan", None).unwrap());
        let mut cfg = ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        cfg.target_ports = vec![80];
        let validator = Validator::new([9; 16]);
        let processor =
            ReplyProcessor::new(module.clone(), &cfg, validator, Arc::new(|_: Ipv4Addr| true));
        let schema = processor.schema().clone();
        let fields =
            FieldSelection::parse("saddr,classification,repeat,cooldown", &schema).unwrap();
        let buf = Buf(Arc::new(Mutex::new(Vec::new())), broken);
        let mut out = rzmap_core::output::create(
            "csv",
            &schema,
            &fields,
            !broken,
            None,
            Some(Box::new(buf.clone())),
        )
        .unwrap();
        out.start().unwrap();
        let controls = Controls::new(0);
        let filter = Filter::compile(filter, &schema).unwrap();
        (OutputHandler::new(processor, filter, out, controls.clone()), controls, buf, cfg)
    }

    #[test]
    fn validated_replies_are_filtered_and_written() {
        let (mut h, controls, buf, cfg) = handler("success = 1", false);
        let v = Validator::new([9; 16]).words(US, HOST, 80);
        let ts = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut hr = &mut h;
        let synack = reply(&cfg, v, true, false, v[0].wrapping_add(1));
        let verdict = hr.classify(&synack, ts).expect("a valid SYN-ACK");
        assert!(verdict.success);
        let flags = ResponseFlags { repeat: false, cooldown: true };
        assert!(hr.emit(&synack, ts, &verdict, flags));
        let rst = reply(&cfg, v, false, true, v[0]);
        let verdict = hr.classify(&rst, ts).expect("a valid RST");
        assert!(!verdict.success);
        assert!(!hr.emit(&rst, ts, &verdict, flags), "the filter drops failures");
        let forged = reply(&cfg, v, true, false, 12345);
        assert!(hr.classify(&forged, ts).is_none());
        hr.flush();
        assert_eq!(h.processor().rejects().total(), 1);
        assert!(h.close(Instant::now()).is_none());
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "saddr,classification,repeat,cooldown\n198.19.0.9,synack,0,1\n");
        assert!(!controls.stop.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_closed_pipe_is_kept_and_stops_the_scan() {
        let (mut h, controls, _buf, cfg) = handler("", true);
        let v = Validator::new([9; 16]).words(US, HOST, 80);
        let ts = SystemTime::now();
        let mut hr = &mut h;
        let synack = reply(&cfg, v, true, false, v[0].wrapping_add(1));
        let verdict = hr.classify(&synack, ts).unwrap();
        // Buffered: the failure shows at the next flush.
        assert!(hr.emit(&synack, ts, &verdict, ResponseFlags::default()));
        hr.flush();
        assert!(controls.stop.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!hr.emit(&synack, ts, &verdict, ResponseFlags::default()));
        let e = h.close(Instant::now()).expect("the first error is kept");
        assert!(e.is_closed_pipe());
    }

    #[test]
    fn system_fields_from_the_capture_time() {
        let schema = Schema::for_module(&[]);
        let mut rec = Record::for_schema(&schema);
        let s = schema.system_start();
        let ts = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        set_system_fields(&mut rec, s, ResponseFlags { repeat: true, cooldown: false }, ts);
        assert_eq!(rec.get(s), Value::Bool(true));
        assert_eq!(rec.get(s + 1), Value::Bool(false));
        assert_eq!(rec.get(s + 3), Value::Int(1_700_000_000));
        assert_eq!(rec.get(s + 4), Value::Int(123_456));
        let Value::Str(text) = rec.get(s + 2) else { panic!("timestamp_str is a string") };
        let want = to_local(ts).format("%Y-%m-%dT%H:%M:%S.123%z").to_string();
        assert_eq!(text, want);
    }
}

#[cfg(test)]
mod banner_tests {
    use super::*;
    use rzmap_core::engine::ResponseHandler;
    use rzmap_core::handshake::TCP_SYNSCAN_BANNER_FIELDS;
    use rzmap_core::link::{FrameBatch, PacketTx, SendOutcome};
    use rzmap_core::output::FieldSelection;
    use rzmap_core::probe::tcp_synscan::OptionStyle;
    use rzmap_core::probe::{ProbeConfig, ProbeModule};
    use rzmap_core::validate::Validator;
    use std::io::{self, Write};
    use std::sync::Mutex;

    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 9);

    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<Vec<u8>>>>);
    impl PacketTx for Sent {
        fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
            let mut v = self.0.lock().unwrap();
            v.extend(batch.frames().map(<[u8]>::to_vec));
            SendOutcome { sent: batch.len() as u32, failed: 0 }
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn segment(dport: u16, seq: u32, ack: u32, flags: (bool, bool, bool), data: &[u8]) -> Vec<u8> {
        let mut tcp = etherparse::TcpHeader::new(80, dport, seq, 8192);
        (tcp.syn, tcp.fin, tcp.rst) = flags;
        tcp.ack = true;
        tcp.acknowledgment_number = ack;
        let b = etherparse::PacketBuilder::ipv4(HOST.octets(), US.octets(), 50).tcp_header(tcp);
        let mut out = Vec::new();
        b.write(&mut out, data).unwrap();
        out
    }

    #[test]
    fn a_grab_becomes_one_record_with_the_banner_fields() {
        let module: Arc<dyn ProbeModule> =
            Arc::from(rzmap_core::probe::create("tcp_synscan", None).unwrap());
        let mut cfg = ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        cfg.target_ports = vec![80];
        let validator = Validator::new([9; 16]);
        let processor =
            ReplyProcessor::new(module, &cfg, validator.clone(), Arc::new(|_: Ipv4Addr| true));
        let schema = Schema::for_module(&TCP_SYNSCAN_BANNER_FIELDS);
        let fields =
            FieldSelection::parse("saddr,sport,classification,data,banner_class,cooldown", &schema)
                .unwrap();
        let buf = Buf::default();
        let mut out = rzmap_core::output::create(
            "csv",
            &schema,
            &fields,
            true,
            None,
            Some(Box::new(buf.clone())),
        )
        .unwrap();
        out.start().unwrap();
        let controls = Controls::new(0);
        let filter = Filter::compile("", &schema).unwrap();
        let sent = Sent::default();
        let bc = crate::config::BannerConfig {
            payload: b"hi".to_vec(),
            max_bytes: 64,
            timeout_secs: 5,
            idle_secs: 1,
            connections: None,
        };
        let grab = BannerGrab::new(
            &bc,
            &cfg,
            OptionStyle::Windows,
            16,
            1,
            validator.clone(),
            Box::new(sent.clone()),
        );
        let mut h = OutputHandler::new(processor, filter, out, controls).with_banner(grab, &schema);
        let mut hr = &mut h;
        let v = validator.words(US, HOST, 80);
        let dport = cfg.source_port(v[1], 0);
        let ts = SystemTime::now();

        let synack = segment(dport, 1000, v[0].wrapping_add(1), (true, false, false), &[]);
        assert!(!hr.intercept(&synack, ts), "SYN-ACKs go to validation");
        let verdict = hr.classify(&synack, ts).expect("valid");
        assert!(!hr.emit(&synack, ts, &verdict, ResponseFlags::default()), "record deferred");
        assert_eq!(hr.after_poll(ts, None), 0);
        {
            let frames = sent.0.lock().unwrap();
            assert_eq!(frames.len(), 1, "the ACK with the payload");
            let p = etherparse::SlicedPacket::from_ethernet(&frames[0]).unwrap();
            let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!() };
            assert_eq!((t.source_port(), t.destination_port()), (dport, 80));
            assert_eq!(t.sequence_number(), v[0].wrapping_add(1));
            assert_eq!(t.acknowledgment_number(), 1001);
            assert_eq!(t.payload(), b"hi");
        }

        // Data and FIN: taken by the table, never validated; the grab finishes.
        let ack = v[0].wrapping_add(3);
        let data = segment(dport, 1001, ack, (false, true, false), b"HELLO\r\n");
        assert!(hr.intercept(&data, ts));
        // An unrelated RST is left to validation (and fails it).
        let stray = segment(dport ^ 1, 5, 5, (false, false, true), &[]);
        assert!(!hr.intercept(&stray, ts));
        assert_eq!(hr.after_poll(ts, None), 1);
        assert_eq!(sent.0.lock().unwrap().len(), 2, "the closing RST");
        assert_eq!(hr.finish(ts, None), 0);
        hr.flush();
        let (st, (frames, failed)) = h.banner_stats().unwrap();
        assert_eq!((st.started, st.finished, frames, failed), (1, [1, 0, 0, 0], 2, 0));
        assert!(h.close(Instant::now()).is_none());
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "saddr,sport,classification,data,banner_class,cooldown\n\
             198.19.0.9,80,synack,48454c4c4f0d0a,banner,1\n"
        );
    }
}
