//! Running a scan from a [`ScanPlan`]: one assembly for the three modes, which differ only
//! in their links.
//!
//! 1. The [`ScanOrder`] comes from the seed (`AesRand` → cycle); the plan has already applied
//!    the thread-count rules and the low-rate rule (which, as in ZMap, changes the subshard
//!    split; `-r 0` is exempt). Sender thread `t` of shard `n` walks subshard `n × T + t`, with
//!    its share of `-n` and the `-I` filter.
//! 2. Each sender thread gets a [`ProbeSender`] whose template generator is seeded with the
//!    low 32 bits of the next word of the scan's generator (after the cycle's two words), in
//!    thread order, as ZMap's modules do in their per-thread setup.
//! 3. The validation key is random per run ([`Validator::from_os_random`]).
//! 4. Links: `--dryrun` prints frames, `--fast-dryrun` writes 6 bytes per probe, a live scan
//!    sends on AF_PACKET (or raw IP with `-X`) and captures on a TPACKET_V3 ring. A fast dry
//!    run builds no packets: its record depends only on the target, so its senders use
//!    [`FastRecordBuilder`] (6-byte slots) instead of the probe builders, in the same engine
//!    loop.
//!
//! Dry runs open **no socket at all**: no interface discovery (it needs netlink), no capture,
//! no output module (redis would connect; csv would write a header among the probes). They
//! use `-S`, `--source-mac` and `-G` when given and otherwise 0.0.0.0 and all-zero MACs.
//! (ZMap fills these from the interface even in a dry run; rzmap prefers the guarantee that a
//! dry run never touches the network stack.)
//!
//! Ending: SIGINT/SIGTERM stop the senders; the output is flushed and closed, the metadata
//! and summary are written, and rzmap exits with status 0 as ZMap does after a clean stop
//! (a second signal exits at once with status 1). SIGUSR1/SIGUSR2 raise/lower the rate by 5%.
//! A closed output pipe (`rzmap … | head`) also ends the scan quietly with status 0. Other
//! output errors and the `--max-sendto-failures`/`--min-hitrate` limits end it with status 1.

pub mod banner;
pub mod dryrun;
pub mod handler;
pub mod live;
pub mod report;

use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rzmap_core::aesrand::AesRand;
use rzmap_core::engine::{
    self, Controls, EngineConfig, FrameBuilder, ReceiverSetup, ResponseHandler, ScanReport,
    SenderSetup, StopReason,
};
use rzmap_core::error::InputError;
use rzmap_core::fields::Schema;
use rzmap_core::iter::{ScanOrder, Subshard};
use rzmap_core::link::{PacketRx, PacketTx};
use rzmap_core::monitor::{Limits, Logger, ScanShape};
use rzmap_core::output;
use rzmap_core::output::OutputPlan;
use rzmap_core::probe::adapter::{ProbeSender, ReplyProcessor};
use rzmap_core::probe::{ProbeConfig, ProbeModule, Reject};
use rzmap_core::rate::SystemClock;
use rzmap_core::validate::Validator;

use crate::config::{DryRun, ScanConfig, SendBackend, Sink};
use crate::plan::ScanPlan;
use crate::targets::Targets;

use self::dryrun::{FastDryRun, FastRecordBuilder, StdoutSlot, TextDryRun};
use self::handler::OutputHandler;
use self::live::{
    EthernetTx, IpLayerTx, LiveTx, NoRx, Pinned, RingRx, SendErrors, TxRingTx, XdpTx,
};
use self::report::{Reporter, RunFacts};

/// How long discovery waits for the gateway to answer ARP.
const ARP_TIMEOUT: Duration = Duration::from_secs(3);

/// The addresses frames are built with.
#[derive(Clone, Debug)]
pub struct Addressing {
    /// Source addresses (`-S`, or the interface's first address).
    pub src_ips: Vec<Ipv4Addr>,
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination (the gateway).
    pub gw_mac: [u8; 6],
    /// Interface name ("" when unknown).
    pub iface: String,
    /// Interface index (0 when unknown).
    pub ifindex: u32,
    /// Gateway address, if known.
    pub gateway_ip: Option<Ipv4Addr>,
}

impl Addressing {
    /// A dry run's addressing: the flags, or placeholders (no discovery).
    pub fn from_flags(c: &ScanConfig) -> Self {
        Self {
            src_ips: if c.source_ips.is_empty() {
                vec![Ipv4Addr::UNSPECIFIED]
            } else {
                c.source_ips.clone()
            },
            src_mac: c.source_mac.unwrap_or([0; 6]),
            gw_mac: c.gateway_mac.unwrap_or([0; 6]),
            iface: c.interface.clone().unwrap_or_default(),
            ifindex: 0,
            gateway_ip: None,
        }
    }

    /// A live scan's addressing: discovery for whatever the flags leave open. Errors name the
    /// flag that supplies the missing piece.
    pub fn discover(c: &ScanConfig) -> Result<Self, InputError> {
        let o = rzmap_sys::discovery::Overrides {
            iface: c.interface.clone(),
            source_ips_given: !c.source_ips.is_empty(),
            source_mac: c.source_mac,
            gateway_mac: c.gateway_mac,
            ip_layer: c.iplayer,
        };
        let setup = rzmap_sys::discovery::discover(&o, ARP_TIMEOUT)
            .map_err(|e| InputError::new(e.flag().unwrap_or("network setup"), e.to_string()))?;
        let src_ips = if c.source_ips.is_empty() {
            setup.ipv4.first().copied().into_iter().collect()
        } else {
            c.source_ips.clone()
        };
        Ok(Self {
            src_ips,
            src_mac: setup.source_mac.unwrap_or([0; 6]),
            gw_mac: setup.gateway_mac.unwrap_or([0; 6]),
            iface: setup.link.name.clone(),
            ifindex: setup.link.index,
            gateway_ip: setup.gateway_ip,
        })
    }
}

/// Everything built from the plan before any link exists.
pub struct Assembly {
    /// The scan order (for the generator in the metadata).
    pub order: ScanOrder,
    /// One subshard per sender thread, in thread order.
    pub subshards: Vec<Subshard>,
    /// One probe builder per sender thread.
    pub builders: Vec<ProbeSender>,
    /// The engine's parameters.
    pub engine: EngineConfig,
    /// The probe constants.
    pub probe_config: Arc<ProbeConfig>,
    /// The run's validator.
    pub validator: Validator,
}

/// Builds the scan order, subshards, probe builders and engine parameters.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    config: &ScanConfig,
    module: &Arc<dyn ProbeModule>,
    targets: &Targets,
    ports: &[u16],
    max_targets: Option<u64>,
    threads: u8,
    batch: u16,
    dedup: rzmap_core::dedup::DedupMethod,
    default_mode: bool,
    addr: &Addressing,
    validator: Validator,
) -> Result<Assembly, InputError> {
    let mut rand = AesRand::from_seed(config.seed);
    let order = ScanOrder::new(Arc::clone(&targets.space), ports.to_vec(), &mut rand)?;
    // ZMap treats a zero -n (e.g. a tiny percentage) as no limit.
    let max_targets = max_targets.filter(|&m| m > 0);
    let list = targets.ip_list.clone();
    let (shard, shards, t_count) =
        (u32::from(config.shard), u32::from(config.shards), u32::from(threads));
    let mut subshards = Vec::with_capacity(usize::from(threads));
    for t in 0..t_count {
        let mut s = order.subshard(shard, shards, t, t_count, max_targets)?;
        if let Some(l) = &list {
            s = s.with_filter(Arc::clone(l));
        }
        subshards.push(s);
    }
    let mut pc = ProbeConfig::new(addr.src_mac, addr.gw_mac);
    pc.ttl = config.probe_ttl;
    pc.sport_first = config.source_ports.0;
    pc.sport_count = u32::from(config.source_ports.1 - config.source_ports.0) + 1;
    pc.probes = config.probes;
    pc.target_ports = ports.to_vec();
    pc.validate_source_port = config.validate_source_port;
    pc.timestamp =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
    let probe_config = Arc::new(pc);
    let builders = (0..threads)
        .map(|_| {
            ProbeSender::new(
                Arc::clone(module),
                Arc::clone(&probe_config),
                validator.clone(),
                // ZMap keeps a 32-bit word: `uint32_t seed = aesrand_getword(zconf.aes)`.
                AesRand::from_seed(rand.next_word() & 0xffff_ffff),
            )
        })
        .collect();
    let engine = EngineConfig {
        probes_per_target: config.probes,
        src_ips: addr.src_ips.clone(),
        batch_size: usize::from(batch),
        // Slots as small as the module's largest frame allows (whole cache lines): 2 KiB
        // slots put every slot of a batch in the same few L1 cache sets.
        slot_size: module.max_frame_len().max(64).next_multiple_of(64),
        cooldown: Duration::from_secs(u64::from(config.cooldown_secs)),
        max_runtime: config
            .max_runtime
            .filter(|&t| t > 0)
            .map(|t| Duration::from_secs(u64::from(t))),
        max_results: config.max_results.filter(|&n| n > 0),
        dedup,
        dedup_window_size: config.dedup_window_size,
        drop_failures_and_repeats: default_mode,
        monitor_interval: Duration::from_secs(1),
    };
    Ok(Assembly { order, subshards, builders, engine, probe_config, validator })
}

/// A writer on standard output that bypasses Rust's line buffering (our links buffer).
fn raw_stdout() -> io::Result<Box<dyn Write + Send>> {
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(Box::new(File::from(fd)))
}

fn open_sink(sink: &Sink, flag: &str) -> Result<Box<dyn Write + Send>, InputError> {
    match sink {
        Sink::Stdout => raw_stdout().map_err(|e| InputError::new(flag, e.to_string())),
        Sink::File(p) => File::create(p)
            .map(|f| Box::new(io::BufWriter::new(f)) as Box<dyn Write + Send>)
            .map_err(|e| InputError::new(p.display().to_string(), format!("cannot create: {e}"))),
    }
}

/// The run's links.
enum Links {
    Dry(Arc<StdoutSlot>),
    Live {
        txs: Vec<LiveTx>,
        rx: RingRx,
        handler: Box<OutputHandler>,
        errors: Arc<SendErrors>,
        /// `--banner`: removes the RST guard's table when dropped.
        guard: Option<crate::rst_guard::GuardKeeper>,
    },
}

/// The firewall mark of the receive thread's raw IP socket with `--banner -X`: the RST
/// guard lets packets with this mark through (our own closing RSTs).
pub const BANNER_MARK: u32 = 0x727a_6d70;

/// Runs the scan the plan describes, logging through `logger`, and returns the exit status.
/// (The caller has logged the plan's warnings.)
pub fn run(plan: ScanPlan, logger: Logger) -> Result<i32, InputError> {
    let cores = rzmap_sys::process::available_cpus();
    let (threads, batch, notes) = plan.threads_and_batch(cores);
    let pps = plan.packets_per_second();
    let ScanPlan { config, probe, schema, ports, max_targets, dedup, output, targets, .. } = plan;
    let logger = Arc::new(logger);
    for n in &notes {
        logger.warn("send", format_args!("{n}"));
    }
    let module: Arc<dyn ProbeModule> = Arc::from(probe);
    let app_success = schema.index_of("app_success").is_some();
    let controls = Controls::new(pps);

    let addr = match config.dryrun {
        DryRun::Off => Addressing::discover(&config)?,
        DryRun::Text | DryRun::Fast => Addressing::from_flags(&config),
    };
    let validator = Validator::from_os_random().map_err(|e| {
        InputError::new("/dev/urandom", format!("cannot read a validation key: {e}"))
    })?;
    let asm = assemble(
        &config,
        &module,
        &targets,
        &ports,
        max_targets,
        threads,
        batch,
        dedup,
        output.default_mode,
        &addr,
        validator,
    )?;
    let generator = asm.order.cycle().generator;
    logger.debug(
        "send",
        format_args!(
            "{} sender threads, batch {batch}, {pps} packets per second, generator {generator}",
            threads
        ),
    );

    let metadata_out =
        config.metadata_file.as_ref().map(|s| open_sink(s, "--metadata-file")).transpose()?;
    let status_out = config
        .status_updates_file
        .as_ref()
        .map(|s| open_sink(s, "--status-updates-file"))
        .transpose()?;

    let ctx = Context {
        config: &config,
        module: &module,
        schema: &schema,
        output: &output,
        targets: &targets,
        addr: &addr,
        logger: &logger,
        controls: &controls,
        pps,
    };
    let links = match config.dryrun {
        DryRun::Text | DryRun::Fast => Links::Dry(StdoutSlot::new(
            raw_stdout().map_err(|e| InputError::new("standard output", e.to_string()))?,
            Arc::clone(&controls),
        )),
        DryRun::Off => match ctx.open_live(&asm, threads)? {
            Some(links) => links,
            // The output's reader is already gone: nothing to do.
            None => return Ok(0),
        },
    };

    let shape = ScanShape {
        probes_per_target: config.probes,
        dedup_none: dedup == rzmap_core::dedup::DedupMethod::None,
        expected_probes: expected_probes(&asm, max_targets, config.probes),
        max_runtime: config.max_runtime.filter(|&t| t > 0).map(u64::from),
        max_results: config.max_results.filter(|&n| n > 0),
        cooldown_secs: if config.dryrun == DryRun::Off {
            u64::from(config.cooldown_secs)
        } else {
            0
        },
        app_success,
    };
    let mut reporter = Reporter::new(
        shape,
        // A dry run receives nothing: its hitrate is always 0, so --min-hitrate does not apply.
        Limits::new(
            config.max_sendto_failures,
            if config.dryrun == DryRun::Off { config.min_hitrate } else { 0.0 },
        ),
        config.quiet,
        status_out,
        Arc::clone(&logger),
        Arc::clone(&controls),
        core_for(&config, usize::from(threads) + 1),
    );
    let signals = rzmap_sys::signals::SignalFlags::install()
        .map_err(|e| InputError::new("rzmap", format!("cannot install signal handlers: {e}")))?;
    if config.dryrun == DryRun::Off {
        logger.info("rzmap", format_args!("output module: {}", output.module));
    }

    let Assembly { subshards, builders, engine: mut ecfg, .. } = asm;
    let mut exit = 0;
    let (report, out_error) = match links {
        Links::Dry(slot) => {
            let none: Option<ReceiverSetup<NoRx, NoHandler>> = None;
            let cpu = |t: usize| core_for(&config, t + 1);
            let report = if config.dryrun == DryRun::Fast {
                // The record depends only on the target: no packet is built (see `dryrun`).
                ecfg.slot_size = dryrun::FAST_RECORD;
                let txs = (0..).map(|t| Pinned::new(FastDryRun::new(Arc::clone(&slot)), cpu(t)));
                let senders = sender_setups(subshards, std::iter::repeat(FastRecordBuilder), txs);
                execute(&ecfg, &controls, senders, none, &mut reporter, &signals, &logger)
            } else {
                let with_eth = !config.iplayer;
                let txs = (0..).map(|t| {
                    let text = TextDryRun::new(Arc::clone(&module), with_eth, Arc::clone(&slot));
                    Pinned::new(text, cpu(t))
                });
                let senders = sender_setups(subshards, builders, txs);
                execute(&ecfg, &controls, senders, none, &mut reporter, &signals, &logger)
            };
            let err = slot.finish();
            match err {
                Some(e) if e.kind() == io::ErrorKind::BrokenPipe => (report, None),
                Some(e) => (report, Some(format!("cannot write the dry-run output: {e}"))),
                None => (report, None),
            }
        }
        Links::Live { txs, rx, mut handler, errors, guard } => {
            let receiver = Some(ReceiverSetup { rx, handler: &mut *handler });
            let senders = sender_setups(subshards, builders, txs);
            let report =
                execute(&ecfg, &controls, senders, receiver, &mut reporter, &signals, &logger);
            if let Some(e) = errors.last()
                && report.counters.send_failures > 0
            {
                let n = report.counters.send_failures;
                logger.warn("send", format_args!("{n} probes failed to send; last error: {e}"));
            }
            log_rejects(&logger, handler.processor());
            if let Some((st, (sent, failed))) = handler.banner_stats() {
                log_banner(&logger, &st, sent, failed);
            }
            let deadline = Instant::now() + ecfg.cooldown;
            let err = handler.close(deadline);
            // Every closing RST is sent: the kernel may reset again.
            drop(guard);
            match err {
                Some(e) if e.is_closed_pipe() => (report, None),
                Some(e) => (report, Some(e.to_string())),
                None => (report, None),
            }
        }
    };
    reporter.finish();
    if let Some(msg) = &out_error {
        logger.error("output", format_args!("{msg}"));
        exit = 1;
    }
    if reporter.fatal.is_some() {
        exit = 1;
    }
    match report.reason {
        StopReason::Interrupted => logger.info("rzmap", format_args!("scan stopped early")),
        StopReason::MaxResults => logger.info("rzmap", format_args!("maximum results reached")),
        StopReason::Completed => logger.info("rzmap", format_args!("completed")),
    }

    let (success, failure) = report::outcome_names(module.name());
    let facts = RunFacts {
        config: &config,
        probe_module: module.name(),
        probe_args: module.probe_args().map(str::to_string),
        app_success,
        output_module: output.module,
        space: &targets.space,
        ip_list_len: targets.ip_list.as_ref().map(|l| l.len()),
        cli_destinations: &targets.cli_destinations,
        ports: &ports,
        max_targets: max_targets.filter(|&m| m > 0),
        dedup,
        threads,
        pps,
        generator,
        iface: addr.iface.clone(),
        gateway_ip: addr.gateway_ip,
        source_mac: addr.src_mac,
        gateway_mac: addr.gw_mac,
        source_ips: &addr.src_ips,
    };
    if let Some(mut w) = metadata_out {
        let line = report::metadata(&facts, &report).to_json_line();
        if let Err(e) = writeln!(w, "{line}").and_then(|_| w.flush()) {
            logger.error("rzmap", format_args!("cannot write the metadata: {e}"));
            exit = 1;
        }
    }
    if config.summary {
        let text = report::summary(&facts, &report, success, failure).render();
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
    Ok(exit)
}

/// `--cores`: the CPU for thread `i` of the order receiver, senders, monitor (round-robin).
fn core_for(config: &ScanConfig, i: usize) -> Option<usize> {
    config.cores.as_ref().filter(|c| !c.is_empty()).map(|c| c[i % c.len()] as usize)
}

/// Logs validation results by reject reason (DEBUG).
fn log_rejects(logger: &Logger, p: &ReplyProcessor) {
    let r = p.rejects();
    logger.debug("recv", format_args!("{} replies validated, {} rejected", p.passed(), r.total()));
    for reason in [
        Reject::Truncated,
        Reject::Malformed,
        Reject::Fragment,
        Reject::WrongProtocol,
        Reject::UnexpectedType,
        Reject::NotOurs,
        Reject::PortOutsideWindow,
        Reject::SourceNotInScope,
        Reject::UnexpectedSourcePort,
    ] {
        let n = r.get(reason);
        if n > 0 {
            logger.debug("recv", format_args!("rejected as {}: {n}", reason.name()));
        }
    }
}

/// Logs the banner grabber's counters (INFO: classes; DEBUG: the rest).
fn log_banner(logger: &Logger, st: &rzmap_core::handshake::HandshakeStats, sent: u64, failed: u64) {
    let f = st.finished;
    logger.info(
        "banner",
        format_args!(
            "{} handshakes: {} banner, {} no-banner, {} reset, {} truncated; {} evicted, {} lost",
            st.started, f[0], f[1], f[2], f[3], st.evicted, st.lost_unreported
        ),
    );
    logger.debug(
        "banner",
        format_args!(
            "frames sent {sent}, failed {failed}; synack retransmits {}, duplicate {}, \
             malformed {}, bad checksum {}, unknown {}, after finish {}, out of window {}, \
             retransmitted data {}, reassembly full {}",
            st.synack_retransmits,
            st.duplicate_synacks,
            st.malformed,
            st.bad_checksum,
            st.unknown,
            st.after_finish,
            st.out_of_window,
            st.retransmitted_data,
            st.reassembly_full
        ),
    );
}

/// What opening the live links needs.
struct Context<'a> {
    config: &'a ScanConfig,
    module: &'a Arc<dyn ProbeModule>,
    schema: &'a Schema,
    output: &'a OutputPlan,
    targets: &'a Targets,
    addr: &'a Addressing,
    logger: &'a Logger,
    controls: &'a Arc<Controls>,
    pps: u64,
}

impl Context<'_> {
    /// Opens sender thread `t`'s link, pinned to `cpu` on first use: a raw IP socket with
    /// `-X`; else the `--send-backend` asked for; by default AF_XDP on queue `t`, falling back
    /// to `sendmmsg` (logged) where that queue cannot be bound.
    fn open_sender(
        &self,
        t: usize,
        cpu: Option<usize>,
        errors: &Arc<SendErrors>,
    ) -> Result<LiveTx, InputError> {
        let (config, addr, errors) = (self.config, self.addr, Arc::clone(errors));
        let iface = &addr.iface;
        if config.iplayer {
            let mut s = rzmap_sys::send::RawIpSender::open(iface).map_err(|e| {
                let msg = format!("cannot open a raw IP socket on {iface}: {e}");
                InputError::new("--iplayer", msg)
            })?;
            s.set_retries(config.retries);
            return Ok(LiveTx::IpLayer(IpLayerTx::new(s, cpu, errors)));
        }
        match config.send_backend {
            SendBackend::TxRing => {
                let ring = rzmap_sys::tx_ring::TxRingConfig::default();
                let mut s =
                    rzmap_sys::tx_ring::TxRingSender::open(addr.ifindex, addr.gw_mac, &ring)
                        .map_err(|e| {
                            let msg = format!("cannot open a transmit ring on {iface}: {e}");
                            InputError::new("--send-backend", msg)
                        })?;
                s.set_retries(config.retries);
                return Ok(LiveTx::TxRing(TxRingTx::new(s, cpu, errors)));
            }
            SendBackend::Auto | SendBackend::AfXdp => {
                let xdp = rzmap_sys::xdp::XdpConfig { queue: t as u32, ..Default::default() };
                match rzmap_sys::xdp::XdpSender::open(addr.ifindex, &xdp) {
                    Ok(mut s) => {
                        s.set_retries(config.retries);
                        let budget = s.kick_budget().unwrap_or(32);
                        let msg = format_args!(
                            "sender thread {t}: AF_XDP on {iface} queue {t}, up to {budget} \
                             frames per kick"
                        );
                        self.logger.debug("send", msg);
                        return Ok(LiveTx::AfXdp(XdpTx::new(s, cpu, errors)));
                    }
                    Err(e) if config.send_backend == SendBackend::AfXdp => {
                        let msg = format!(
                            "cannot open an AF_XDP socket on {iface} queue {t}: {e} (af-xdp \
                             needs one interface transmit queue per sender thread)"
                        );
                        return Err(InputError::new("--send-backend", msg));
                    }
                    Err(e) => self.logger.info(
                        "send",
                        format_args!(
                            "AF_XDP not available on {iface} queue {t}: {e}; sender thread {t} \
                             uses sendmmsg"
                        ),
                    ),
                }
            }
            SendBackend::Sendmmsg => {}
        }
        let mut s =
            rzmap_sys::send::AfPacketSender::open(addr.ifindex, addr.gw_mac).map_err(|e| {
                InputError::new(
                    "--interface",
                    format!("cannot open a packet socket on {iface}: {e}"),
                )
            })?;
        s.set_retries(config.retries);
        Ok(LiveTx::Ethernet(EthernetTx::new(s, cpu, errors)))
    }

    /// Opens the senders, the capture and the output, then drops root. `None`: the output's
    /// reader went away before the scan started.
    fn open_live(&self, asm: &Assembly, threads: u8) -> Result<Option<Links>, InputError> {
        let (config, addr) = (self.config, self.addr);
        // `--banner`: the RST guard goes in first (before any probe, while we are root), and
        // its removal is handed to a keeper process (we will not be root when it must go).
        let guard = match &config.banner {
            Some(_) => Some(self.install_guard()?),
            None => None,
        };
        let errors = Arc::new(SendErrors::default());
        let mut txs = Vec::with_capacity(usize::from(threads));
        for t in 0..usize::from(threads) {
            txs.push(self.open_sender(t, core_for(config, t + 1), &errors)?);
        }
        let banner_ports = config.banner.as_ref().map(|_| config.source_ports);
        let ring = live::open_ring(
            self.module.as_ref(),
            addr.ifindex,
            Some(addr.src_mac),
            config.iplayer,
            banner_ports,
        )
        .map_err(|e| {
            InputError::new(
                "--interface",
                format!("cannot open the capture on {}: {e}", addr.iface),
            )
        })?;
        let out = match output::find_module(self.output.module) {
            Some(i) if i.writes_file => Some(open_sink(&config.output_file, "--output-file")?),
            _ => None,
        };
        let mut out_mod = output::create(
            self.output.module,
            self.schema,
            &self.output.fields,
            self.output.header,
            config.output_args.as_deref(),
            out,
        )?;
        if let Err(e) = out_mod.start() {
            if e.is_closed_pipe() {
                return Ok(None);
            }
            return Err(InputError::new("--output-file", e.to_string()));
        }
        let scope = handler::scope(Arc::clone(&self.targets.space), self.targets.ip_list.clone());
        let processor = ReplyProcessor::new(
            Arc::clone(self.module),
            &asm.probe_config,
            asm.validator.clone(),
            scope,
        );
        let mut handler = OutputHandler::new(
            processor,
            self.output.filter.clone(),
            out_mod,
            Arc::clone(self.controls),
        );
        if let Some(b) = &config.banner {
            let style = match config.probe_args.as_deref() {
                Some(a) => rzmap_core::probe::tcp_synscan::OptionStyle::parse(a)?,
                None => rzmap_core::probe::tcp_synscan::OptionStyle::Windows,
            };
            // A secret hash seed: derived from the run's random validation key.
            let w = asm.validator.words(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 0);
            let seed = (u64::from(w[0]) << 32) | u64::from(w[1]);
            let capacity = b.capacity(self.pps);
            let grab = banner::BannerGrab::new(
                b,
                &asm.probe_config,
                style,
                capacity,
                seed,
                asm.validator.clone(),
                self.banner_tx(Arc::clone(&errors))?,
            );
            self.logger.debug(
                "banner",
                format_args!(
                    "table of {capacity} connections, timeout {} s, idle {} s, {} bytes each",
                    b.timeout_secs, b.idle_secs, b.max_bytes
                ),
            );
            handler = handler.with_banner(grab, self.schema);
        }
        let handler = Box::new(handler);
        // Every socket and file is open: switch to `nobody` (as ZMap does).
        match rzmap_sys::process::drop_privileges() {
            Ok(rzmap_sys::process::PrivilegeDrop::Dropped { uid, gid }) => self.logger.debug(
                "rzmap",
                format_args!("dropped privileges: now uid {uid}, gid {gid} (nobody)"),
            ),
            Ok(_) => {}
            Err(e) => {
                return Err(InputError::new("rzmap", format!("cannot drop privileges: {e}")));
            }
        }
        let rx = RingRx::new(ring, core_for(config, 0));
        Ok(Some(Links::Live { txs, rx, handler, errors, guard }))
    }

    /// Removes stale tables, installs the RST guard for the source ports and addresses, and
    /// hands its removal to a keeper process.
    fn install_guard(&self) -> Result<crate::rst_guard::GuardKeeper, InputError> {
        use crate::rst_guard::{self, RstGuard, RstGuardSpec};
        let (config, addr) = (self.config, self.addr);
        match rst_guard::remove_stale_tables(None) {
            Ok(gone) => {
                for t in gone {
                    self.logger.info("banner", format_args!("removed stale nftables table {t}"));
                }
            }
            Err(e) => return Err(InputError::new("--banner", e)),
        }
        let mut spec =
            RstGuardSpec::new(config.source_ports.0, config.source_ports.1, &addr.src_ips);
        if config.iplayer {
            spec.exempt_mark = Some(BANNER_MARK);
        }
        let guard = RstGuard::install_with(&spec).map_err(|e| InputError::new("--banner", e))?;
        self.logger
            .debug("banner", format_args!("RST guard: nftables table {}", guard.table_name()));
        guard.into_keeper().map_err(|e| InputError::new("--banner", e))
    }

    /// The receive thread's own sender for `--banner` (with `-X`, marked for the RST guard).
    fn banner_tx(&self, errors: Arc<SendErrors>) -> Result<Box<dyn PacketTx>, InputError> {
        let (config, addr) = (self.config, self.addr);
        if config.iplayer {
            let mut s = rzmap_sys::send::RawIpSender::open(&addr.iface).map_err(|e| {
                InputError::new(
                    "--iplayer",
                    format!("cannot open a raw IP socket on {}: {e}", addr.iface),
                )
            })?;
            s.set_mark(BANNER_MARK).map_err(|e| {
                InputError::new("--banner", format!("cannot set the socket's firewall mark: {e}"))
            })?;
            s.set_retries(config.retries);
            Ok(Box::new(LiveTx::IpLayer(IpLayerTx::new(s, None, errors))))
        } else {
            let mut s =
                rzmap_sys::send::AfPacketSender::open(addr.ifindex, addr.gw_mac).map_err(|e| {
                    InputError::new(
                        "--interface",
                        format!("cannot open a packet socket on {}: {e}", addr.iface),
                    )
                })?;
            s.set_retries(config.retries);
            Ok(Box::new(LiveTx::Ethernet(EthernetTx::new(s, None, errors))))
        }
    }
}

/// Probes this run sends if it runs to the end, for the progress estimate.
fn expected_probes(asm: &Assembly, max_targets: Option<u64>, probes: u32) -> Option<u64> {
    // This shard's part of the targets (shards are of nearly equal size).
    let shards = asm.subshards.first().map_or(1, |s| s.state().subshards) as u64
        / asm.subshards.len().max(1) as u64;
    let mut targets = asm.order.target_count() / shards.max(1);
    if let Some(m) = max_targets.filter(|&m| m > 0) {
        targets = targets.min(m);
    }
    Some(targets.saturating_mul(u64::from(probes.max(1))))
}

/// The handler type of runs without a receiver.
struct NoHandler;

impl ResponseHandler for NoHandler {
    fn classify(&mut self, _: &[u8], _: SystemTime) -> Option<engine::Verdict> {
        None
    }
    fn emit(
        &mut self,
        _: &[u8],
        _: SystemTime,
        _: &engine::Verdict,
        _: engine::ResponseFlags,
    ) -> bool {
        false
    }
}

/// One sender setup per subshard, in thread order.
fn sender_setups<B, T>(
    subshards: Vec<Subshard>,
    builders: impl IntoIterator<Item = B>,
    txs: impl IntoIterator<Item = T>,
) -> Vec<SenderSetup<Subshard, B, T>> {
    subshards
        .into_iter()
        .zip(builders)
        .zip(txs)
        .map(|((targets, builder), tx)| SenderSetup { targets, builder, tx })
        .collect()
}

/// Runs the engine with a signal watcher beside it.
fn execute<B, T, R, H>(
    cfg: &EngineConfig,
    controls: &Arc<Controls>,
    senders: Vec<SenderSetup<Subshard, B, T>>,
    receiver: Option<ReceiverSetup<R, H>>,
    reporter: &mut Reporter,
    signals: &rzmap_sys::signals::SignalFlags,
    logger: &Logger,
) -> ScanReport<Subshard>
where
    B: FrameBuilder,
    T: PacketTx,
    R: PacketRx,
    H: ResponseHandler,
{
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if signals.stop_requested() && !controls.stop.load(Ordering::Relaxed) {
                    logger.info("rzmap", format_args!("stop requested: finishing"));
                    controls.request_stop();
                }
                if signals.take_usr1() {
                    let r = controls.rate.raise_5pct();
                    logger.info("send", format_args!("rate raised to {r} packets per second"));
                }
                if signals.take_usr2() {
                    let r = controls.rate.lower_5pct();
                    logger.info("send", format_args!("rate lowered to {r} packets per second"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let report =
            engine::run(cfg, controls, &SystemClock, senders, receiver, |t| reporter.tick(t));
        done.store(true, Ordering::Relaxed);
        report
    })
}
