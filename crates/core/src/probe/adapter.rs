//! Glue between probe modules and the engine: a [`FrameBuilder`] for each sender thread and a
//! [`ReplyProcessor`] that validates and classifies captured packets into a reusable record.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rzmap_wire::ipv4::{self, Ipv4Packet};

use super::{PortBitmap, ProbeConfig, ProbeInput, ProbeModule, Reject, ReplyCheck};
use crate::aesrand::AesRand;
use crate::engine::{FrameBuilder, GROUP, ProbeSpec, Verdict};
use crate::fields::{Record, Schema, Value};
use crate::link::FrameBatch;
use crate::target::Target;
use crate::validate::Validator;

/// "Is this address one we scan?", shared by the receive side.
pub type ScopeFn = Arc<dyn Fn(Ipv4Addr) -> bool + Send + Sync>;

/// One sender thread's probe builder.
pub struct ProbeSender {
    module: Arc<dyn ProbeModule>,
    cfg: Arc<ProbeConfig>,
    validator: Validator,
    rng: AesRand,
    /// `module.uses_time()`, read once: it is fixed for a module and asked per probe.
    uses_time: bool,
}

impl ProbeSender {
    /// A builder for one thread. `rng` is the thread's own generator for template random
    /// fields (ZMap seeds it with a word drawn from the scan's generator).
    pub fn new(
        module: Arc<dyn ProbeModule>,
        cfg: Arc<ProbeConfig>,
        validator: Validator,
        rng: AesRand,
    ) -> Self {
        let uses_time = module.uses_time();
        Self { module, cfg, validator, rng, uses_time }
    }
}

impl ProbeSender {
    /// The send time for a probe: the wall clock for modules that write it, else zero
    /// (no clock read per probe).
    #[inline]
    fn send_time(&self) -> Duration {
        if self.uses_time {
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        }
    }
}

impl FrameBuilder for ProbeSender {
    fn prepare(&mut self, slot: &mut [u8]) {
        self.module.prepare(slot, &self.cfg);
    }

    fn build(&mut self, buf: &mut [u8], target: &Target, probe: u32, src_ip: Ipv4Addr) -> usize {
        let IpAddr::V4(dst) = target.addr else { return 0 };
        let validation = self.validator.words(src_ip, dst, target.port);
        let now = self.send_time();
        let p =
            ProbeInput { src: src_ip, dst, dport: target.port, probe_num: probe, validation, now };
        self.module.make(buf, &self.cfg, &p, &mut self.rng)
    }

    fn build_group(&mut self, batch: &mut FrameBatch, probes: &[ProbeSpec]) -> usize {
        // The validation words of the whole group in one cipher call.
        let mut keys = [(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0u16); GROUP];
        let mut n = 0;
        for p in probes {
            let IpAddr::V4(dst) = p.target.addr else { continue };
            keys[n] = (p.src, dst, p.target.port);
            n += 1;
        }
        let mut words = [[0u32; 4]; GROUP];
        self.validator.words_many(&keys[..n], &mut words);
        let mut built = 0;
        let v4 = probes.iter().filter(|p| p.target.addr.is_ipv4());
        for ((p, &(src, dst, dport)), validation) in v4.zip(&keys[..n]).zip(words) {
            let now = self.send_time();
            let input = ProbeInput { src, dst, dport, probe_num: p.probe, validation, now };
            let len = self.module.make(batch.next_slot(), &self.cfg, &input, &mut self.rng);
            if len > 0 {
                batch.commit(len);
                built += 1;
            }
        }
        built
    }
}

/// Counts of rejected packets, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    counts: [u64; REJECT_KINDS],
}

const REJECT_KINDS: usize = 9;

fn reject_index(r: Reject) -> usize {
    match r {
        Reject::Truncated => 0,
        Reject::Malformed => 1,
        Reject::Fragment => 2,
        Reject::WrongProtocol => 3,
        Reject::UnexpectedType => 4,
        Reject::NotOurs => 5,
        Reject::PortOutsideWindow => 6,
        Reject::SourceNotInScope => 7,
        Reject::UnexpectedSourcePort => 8,
    }
}

impl RejectCounts {
    /// How many packets were rejected for `r`.
    pub fn get(&self, r: Reject) -> u64 {
        self.counts[reject_index(r)]
    }
    /// All rejections (ZMap's `validation_failed`).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Validates captured IP packets and classifies the valid ones into one reused record.
pub struct ReplyProcessor {
    module: Arc<dyn ProbeModule>,
    validator: Validator,
    ports: PortBitmap,
    scope: ScopeFn,
    sport_first: u16,
    sport_count: u32,
    probes: u32,
    validate_source_port: Option<bool>,
    schema: Schema,
    record: Record,
    success_index: usize,
    app_success_index: Option<usize>,
    rejects: RejectCounts,
    passed: u64,
}

impl ReplyProcessor {
    /// A processor for `module` with the scan's settings and the run's validator.
    pub fn new(
        module: Arc<dyn ProbeModule>,
        cfg: &ProbeConfig,
        validator: Validator,
        scope: ScopeFn,
    ) -> Self {
        let schema = Schema::for_module(module.fields());
        let record = Record::for_schema(&schema);
        // Every module defines `success` (checked by the registry test).
        let success_index = schema.index_of("success").unwrap_or(0);
        let app_success_index = schema.index_of("app_success");
        Self {
            ports: PortBitmap::new(&cfg.target_ports),
            sport_first: cfg.sport_first,
            sport_count: cfg.sport_count,
            probes: cfg.probes,
            validate_source_port: cfg.validate_source_port,
            module,
            validator,
            scope,
            schema,
            record,
            success_index,
            app_success_index,
            rejects: RejectCounts::default(),
            passed: 0,
        }
    }

    /// Validates an IP packet; when it answers one of our probes, fills [`Self::record`]
    /// (IP and module fields; the caller adds the system fields) and returns the verdict.
    pub fn process(&mut self, ip: &[u8]) -> Result<Verdict, Reject> {
        let chk = ReplyCheck {
            validator: &self.validator,
            sport_first: self.sport_first,
            sport_count: self.sport_count,
            probes: self.probes,
            in_scope: &*self.scope,
            target_ports: &self.ports,
            validate_source_port: self.validate_source_port,
        };
        let kind = match self.module.validate(ip, &chk) {
            Ok(k) => k,
            Err(r) => {
                self.rejects.counts[reject_index(r)] += 1;
                return Err(r);
            }
        };
        self.passed += 1;
        self.record.clear();
        self.module.classify(ip, &kind, &mut self.record, self.schema.module_start());
        let bool_at = |i: usize| matches!(self.record.get(i), Value::Bool(true) | Value::Int(1));
        let (src_ip, src_port) = dedup_key(ip);
        Ok(Verdict {
            src_ip,
            src_port,
            success: bool_at(self.success_index),
            app_success: self.app_success_index.is_some_and(bool_at),
        })
    }

    /// Fills the capture-time fields of the last valid packet's record (`icmp_echo_time`'s
    /// `recv_timestamp_*` and `rtt_us`); call it after [`Self::process`] with the pcap
    /// timestamp (time since the Epoch). Other modules ignore it.
    pub fn set_capture_time(&mut self, captured: Duration) {
        self.module.set_capture_time(&mut self.record, self.schema.module_start(), captured);
    }

    /// The record of the last valid packet.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record, for the caller to add the system fields.
    pub fn record_mut(&mut self) -> &mut Record {
        &mut self.record
    }

    /// The scan's schema (IP, module and system fields).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Rejected packets by reason.
    pub fn rejects(&self) -> &RejectCounts {
        &self.rejects
    }

    /// Packets that passed validation (ZMap's `validation_passed`).
    pub fn passed(&self) -> u64 {
        self.passed
    }
}

/// The outer packet's source address (host order) and transport source port (0 for ICMP),
/// the dedup keys.
/// The dedup key of a validated reply: the host the record reports as `saddr`, and its port.
///
/// For a direct reply that is the packet's source. For an ICMP error quoting our probe it is
/// the quoted datagram's destination (the original target), not the router: ZMap keys on the
/// router, so one router's errors for many targets would mark all but the first a repeat.
fn dedup_key(ip: &[u8]) -> (u32, u16) {
    let Ok(p) = Ipv4Packet::new_lax(ip) else { return (0, 0) };
    match p.protocol() {
        ipv4::PROTO_ICMP => {
            let icmp = p.payload();
            let is_error = matches!(icmp.first(), Some(3 | 4 | 5 | 11 | 12));
            if is_error
                && let Some(quoted) = icmp.get(8..)
                && let Ok(inner) = Ipv4Packet::new_lax(quoted)
            {
                return (u32::from(inner.dst()), transport_port(&inner, 2));
            }
            (u32::from(p.src()), 0)
        }
        _ => (u32::from(p.src()), transport_port(&p, 0)),
    }
}

/// The TCP/UDP port at `offset` (0: source, 2: destination) of a packet, or 0.
fn transport_port(p: &Ipv4Packet<&[u8]>, offset: usize) -> u16 {
    match p.protocol() {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
            p.payload().get(offset..offset + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::create;
    use crate::probe::testutil::*;

    #[test]
    fn sender_and_processor_round_trip() {
        let env = Env::new(&[80]);
        let cfg = Arc::new(env.config(&[80]));
        let module: Arc<dyn ProbeModule> = Arc::from(create("tcp_synscan", None).unwrap());
        let mut tx = ProbeSender::new(
            module.clone(),
            cfg.clone(),
            env.validator.clone(),
            AesRand::from_seed(5),
        );
        let mut slot = vec![0u8; 2048];
        tx.prepare(&mut slot);
        let target = Target::v4(u32::from(TARGET), 80);
        let n = tx.build(&mut slot, &target, 0, US);
        assert_eq!(n, 66);
        let v6 = Target { addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port: 80 };
        assert_eq!(tx.build(&mut slot, &v6, 0, US), 0);
        let n = tx.build(&mut slot, &target, 0, US);

        let scope: ScopeFn = Arc::new(in_scope);
        let mut rx = ReplyProcessor::new(module.clone(), &cfg, env.validator.clone(), scope);
        let v = env.validator.words(US, TARGET, 80);
        let sport = u16::from_be_bytes([slot[34], slot[35]]);
        let fl = Flags { syn: true, ack: true, rst: false };
        let ok = tcp_reply(TARGET, US, 80, sport, 9, v[0].wrapping_add(1), fl, &[]);
        let verdict = rx.process(&ok).unwrap();
        assert_eq!(
            verdict,
            Verdict { src_ip: u32::from(TARGET), src_port: 80, success: true, app_success: false }
        );
        let i = rx.schema().index_of("classification").unwrap();
        assert_eq!(rx.record().get(i), Value::Str("synack"));
        let rst = tcp_reply(
            TARGET,
            US,
            80,
            sport,
            9,
            v[0],
            Flags { syn: false, ack: true, rst: true },
            &[],
        );
        assert!(!rx.process(&rst).unwrap().success);
        let e = icmp_error(ROUTER, US, 3, 1, &slot[14..n], 28);
        let verdict = rx.process(&e).unwrap();
        assert_eq!(
            (verdict.src_ip, verdict.src_port, verdict.success),
            (u32::from(TARGET), 80, false),
            "an ICMP error is keyed on the original target, not the router"
        );
        assert_eq!(rx.process(&ok[..10]), Err(Reject::Truncated));
        assert_eq!(
            rx.process(&tcp_reply(TARGET, US, 80, sport, 9, 1, fl, &[])),
            Err(Reject::NotOurs)
        );
        assert_eq!(rx.passed(), 3);
        assert_eq!(rx.rejects().total(), 2);
        assert_eq!(rx.rejects().get(Reject::NotOurs), 1);
    }

    #[test]
    fn sender_reads_the_clock_for_modules_that_use_time() {
        let env = Env::new(&[]);
        let cfg = Arc::new(env.config(&[]));
        let module: Arc<dyn ProbeModule> = Arc::from(create("icmp_echo_time", None).unwrap());
        assert!(module.uses_time());
        let mut tx = ProbeSender::new(module, cfg, env.validator.clone(), AesRand::from_seed(5));
        let mut slot = vec![0u8; 2048];
        tx.prepare(&mut slot);
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
        let n = tx.build(&mut slot, &Target::v4(u32::from(TARGET), 0), 0, US);
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
        // The ICMP message starts after Ethernet and IPv4; bytes 8..12 are the send seconds.
        let icmp = &slot[34..n];
        let sent = u32::from_le_bytes(icmp[8..12].try_into().unwrap());
        assert!((before..=after).contains(&sent), "{before} <= {sent} <= {after}");
    }

    #[test]
    fn every_module_defines_success_and_classification() {
        for info in super::super::REGISTRY {
            let s = Schema::for_module(info.fields);
            assert!(s.index_of("success").is_some(), "{}", info.name);
            assert!(s.index_of("classification").is_some(), "{}", info.name);
        }
    }
}
