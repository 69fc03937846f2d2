//! `--dryrun` and `--fast-dryrun`: the whole send path (permutation, shards, threads, `-n`,
//! `-P`, pacing, probe building) with a link that writes to standard output instead of the
//! network. Nothing here opens a socket of any kind: without `-S`, probes come from 0.0.0.0,
//! and without `-G` / `--source-mac` the MAC addresses are zero.

use crate::plan::ScanPlan;
use rzmap_core::aesrand::AesRand;
use rzmap_core::engine::{
    self, Controls, EngineConfig, FrameBuilder, ResponseFlags, ResponseHandler, SenderSetup,
    Verdict,
};
use rzmap_core::error::InputError;
use rzmap_core::link::{FrameBatch, PacketRx, PacketTx, RxStats, SendOutcome};
use rzmap_core::monitor::{Logger, Progress, ScanShape, status_line};
use rzmap_core::probe::{ProbeConfig, ProbeInput, ProbeModule};
use rzmap_core::rate::SystemClock;
use rzmap_core::target::Target;
use rzmap_core::validate::Validator;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a dry run writes per probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRunFormat {
    /// The probe module's text description, then the 54-dash separator.
    Text,
    /// Six bytes: destination address and destination port, network order.
    Fast,
}

/// Builds probes with the plan's module, for one sender thread.
struct Builder<'a> {
    probe: &'a dyn ProbeModule,
    cfg: &'a ProbeConfig,
    validator: &'a Validator,
    rng: AesRand,
}

impl FrameBuilder for Builder<'_> {
    fn prepare(&mut self, slot: &mut [u8]) {
        self.probe.prepare(slot, self.cfg);
    }

    fn build(&mut self, buf: &mut [u8], target: &Target, probe: u32, src_ip: Ipv4Addr) -> usize {
        let IpAddr::V4(dst) = target.addr else { return 0 };
        let input = ProbeInput {
            src: src_ip,
            dst,
            dport: target.port,
            probe_num: probe,
            validation: self.validator.words(src_ip, dst, target.port),
            now: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
        };
        self.probe.make(buf, self.cfg, &input, &mut self.rng)
    }
}

/// The destination address and port of a frame (port 0 when it has no TCP or UDP header).
pub fn frame_destination(frame: &[u8], with_eth: bool) -> Option<([u8; 4], u16)> {
    let ip = frame.get(if with_eth { 14 } else { 0 }..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
    let port = match ip.get(9)? {
        6 | 17 => u16::from_be_bytes(ip.get(ihl + 2..ihl + 4)?.try_into().ok()?),
        _ => 0,
    };
    Some((dst, port))
}

/// A link that writes probes to standard output.
struct StdoutTx<'a> {
    probe: &'a dyn ProbeModule,
    format: DryRunFormat,
    with_eth: bool,
    ctl: &'a Controls,
    text: String,
    bytes: Vec<u8>,
}

impl PacketTx for StdoutTx<'_> {
    fn send_batch(&mut self, batch: &FrameBatch) -> SendOutcome {
        self.text.clear();
        self.bytes.clear();
        for frame in batch.frames() {
            match self.format {
                DryRunFormat::Text => self.probe.describe(frame, self.with_eth, &mut self.text),
                DryRunFormat::Fast => {
                    if let Some((dst, port)) = frame_destination(frame, self.with_eth) {
                        self.bytes.extend_from_slice(&dst);
                        self.bytes.extend_from_slice(&port.to_be_bytes());
                    }
                }
            }
        }
        let data = match self.format {
            DryRunFormat::Text => self.text.as_bytes(),
            DryRunFormat::Fast => &self.bytes,
        };
        let n = batch.len() as u32;
        if std::io::stdout().lock().write_all(data).is_err() {
            // Standard output is gone (for example `| head`): stop the scan.
            self.ctl.request_stop();
            return SendOutcome { sent: 0, failed: n };
        }
        SendOutcome { sent: n, failed: 0 }
    }
}

/// The receive side of a dry run: there is none.
struct NoRx;

impl PacketRx for NoRx {
    fn poll(
        &mut self,
        _timeout: Duration,
        _deliver: &mut dyn FnMut(&[u8], SystemTime),
    ) -> std::io::Result<usize> {
        Ok(0)
    }

    fn stats(&self) -> RxStats {
        RxStats::default()
    }
}

struct NoHandler;

impl ResponseHandler for NoHandler {
    fn classify(&mut self, _packet: &[u8], _ts: SystemTime) -> Option<Verdict> {
        None
    }

    fn emit(&mut self, _: &[u8], _: SystemTime, _: &Verdict, _: ResponseFlags) -> bool {
        false
    }
}

/// The probe-module settings of a plan (MACs default to zero without discovery).
pub fn probe_config(plan: &ScanPlan) -> ProbeConfig {
    let c = &plan.config;
    let mut p = ProbeConfig::new(c.source_mac.unwrap_or([0; 6]), c.gateway_mac.unwrap_or([0; 6]));
    p.ttl = c.probe_ttl;
    p.sport_first = c.source_ports.0;
    p.sport_count = u32::from(c.source_ports.1 - c.source_ports.0) + 1;
    p.probes = c.probes;
    p.target_ports = plan.ports.clone();
    p.validate_source_port = c.validate_source_port;
    p.timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    p
}

/// Runs a dry run of the plan; returns the exit code.
pub fn run(plan: &ScanPlan, format: DryRunFormat, logger: &Logger) -> Result<i32, InputError> {
    let cfg = &plan.config;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (threads, batch, notes) = plan.threads_and_batch(cores);
    for n in &notes {
        logger.warn("send", format_args!("{n}"));
    }
    let order = plan.scan_order()?;
    let subshards = plan.subshards(&order, threads)?;
    let pcfg = probe_config(plan);
    let validator = Validator::from_os_random()
        .map_err(|e| InputError::new("/dev/urandom", format!("cannot read a random key: {e}")))?;
    let src_ips = if cfg.source_ips.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED]
    } else {
        cfg.source_ips.clone()
    };
    let ecfg = EngineConfig {
        probes_per_target: cfg.probes,
        src_ips,
        batch_size: usize::from(batch),
        cooldown: Duration::ZERO,
        max_runtime: cfg.max_runtime.map(|s| Duration::from_secs(u64::from(s))),
        max_results: None,
        dedup: plan.dedup,
        dedup_window_size: cfg.dedup_window_size,
        drop_failures_and_repeats: plan.output.default_mode,
        ..EngineConfig::default()
    };
    let ctl = Controls::new(plan.packets_per_second());
    let probe = plan.probe.as_ref();
    let with_eth = !cfg.iplayer;
    let mut senders = Vec::with_capacity(subshards.len());
    for s in subshards {
        senders.push(SenderSetup {
            targets: s,
            builder: Builder {
                probe,
                cfg: &pcfg,
                validator: &validator,
                rng: AesRand::from_seed(crate::config::os_random_seed()?),
            },
            tx: StdoutTx {
                probe,
                format,
                with_eth,
                ctl: &ctl,
                text: String::new(),
                bytes: Vec::new(),
            },
        });
    }
    let mut progress = Progress::new(ScanShape {
        probes_per_target: cfg.probes,
        dedup_none: plan.dedup == rzmap_core::dedup::DedupMethod::None,
        expected_probes: None,
        max_runtime: cfg.max_runtime.map(u64::from),
        max_results: None,
        cooldown_secs: 0,
        app_success: false,
    });
    let quiet = cfg.quiet;
    let report = engine::run::<_, _, _, NoRx, NoHandler, _, _>(
        &ecfg,
        &ctl,
        &SystemClock,
        senders,
        None,
        |tick: &engine::MonitorTick| {
            if !quiet {
                let t = tick.report(&mut progress);
                let _ = writeln!(std::io::stderr(), "{}", status_line(&t, false));
            }
        },
    );
    let _ = std::io::stdout().flush();
    logger.debug("rzmap", format_args!("dry run complete: {} probes", report.counters.sent));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_of_frames() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 9]);
        f[14 + 22..14 + 24].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(frame_destination(&f, true), Some(([198, 18, 0, 9], 53)));
        assert_eq!(frame_destination(&f[14..], false), Some(([198, 18, 0, 9], 53)));
        f[14 + 9] = 1;
        assert_eq!(frame_destination(&f, true), Some(([198, 18, 0, 9], 0)));
        assert_eq!(frame_destination(&f[..20], true), None);
        assert_eq!(frame_destination(&[], false), None);
    }
}
