//! What a scan reports: the 1 Hz status line and `-u` CSV (through [`Reporter`], the
//! engine's monitor callback), the `--max-sendto-failures`/`--min-hitrate` limits, and at the
//! end the `-m` metadata JSON and the `-g` summary.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use rzmap_core::addr::{Ipv4Prefix, TargetSpace};
use rzmap_core::dedup::DedupMethod;
use rzmap_core::engine::{Controls, MonitorTick, ScanReport};
use rzmap_core::monitor::{
    Limits, Logger, Progress, ScanMetadata, ScanShape, Summary, metadata_time, now_local,
    status_csv_row, status_line, to_local,
};

use crate::config::{DryRun, LogDest, ScanConfig, SendRate, Sink};

/// The engine's monitor callback: prints the status line (unless `-q`), writes `-u` rows,
/// checks the fatal limits and polls nothing else.
pub struct Reporter {
    progress: Progress,
    limits: Limits,
    quiet: bool,
    app_success: bool,
    status_csv: Option<Box<dyn Write + Send>>,
    logger: Arc<Logger>,
    controls: Arc<Controls>,
    cpu: Option<usize>,
    /// The fatal limit that stopped the scan, if any.
    pub fatal: Option<String>,
}

impl Reporter {
    /// A reporter for a scan of `shape`; `status_csv` receives the `-u` header now.
    pub fn new(
        shape: ScanShape,
        limits: Limits,
        quiet: bool,
        mut status_csv: Option<Box<dyn Write + Send>>,
        logger: Arc<Logger>,
        controls: Arc<Controls>,
        cpu: Option<usize>,
    ) -> Self {
        if let Some(w) = status_csv.as_mut()
            && writeln!(w, "{}", rzmap_core::monitor::STATUS_CSV_HEADER).is_err()
        {
            logger.warn("monitor", format_args!("cannot write the status updates file"));
            status_csv = None;
        }
        let app_success = shape.app_success;
        Self {
            progress: Progress::new(shape),
            limits,
            quiet,
            app_success,
            status_csv,
            logger,
            controls,
            cpu,
            fatal: None,
        }
    }

    /// Called by the engine's monitor thread once a second.
    pub fn tick(&mut self, m: &MonitorTick) {
        if let Some(cpu) = self.cpu.take() {
            let _ = rzmap_sys::process::pin_current_thread(cpu);
        }
        let t = m.report(&mut self.progress);
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", status_line(&t, self.app_success));
        }
        for w in Progress::warnings(&t) {
            self.logger.warn("monitor", format_args!("{w}"));
        }
        if let Some(w) = self.status_csv.as_mut() {
            let row = status_csv_row(&t, &now_local());
            if writeln!(w, "{row}").and_then(|_| w.flush()).is_err() {
                self.logger.warn("monitor", format_args!("cannot write the status updates file"));
                self.status_csv = None;
            }
        }
        if self.fatal.is_none()
            && let Some(msg) = self.limits.check(&t)
        {
            self.logger.log(rzmap_core::monitor::Level::Fatal, "monitor", format_args!("{msg}"));
            self.fatal = Some(msg);
            self.controls.request_stop();
        }
    }

    /// Flushes the status file.
    pub fn finish(&mut self) {
        if let Some(w) = self.status_csv.as_mut() {
            let _ = w.flush();
        }
    }
}

/// Facts about a run that the metadata and the summary show.
#[derive(Debug)]
pub struct RunFacts<'a> {
    /// The options.
    pub config: &'a ScanConfig,
    /// Probe module name and its probe-args in effect.
    pub probe_module: &'static str,
    /// Probe args in effect.
    pub probe_args: Option<String>,
    /// Whether the module has `app_success`.
    pub app_success: bool,
    /// Output module name.
    pub output_module: &'static str,
    /// The address space.
    pub space: &'a TargetSpace,
    /// `-I` list size.
    pub ip_list_len: Option<u64>,
    /// Positional prefixes.
    pub cli_destinations: &'a [Ipv4Prefix],
    /// Target ports as scanned.
    pub ports: &'a [u16],
    /// `-n` resolved.
    pub max_targets: Option<u64>,
    /// Dedup method in effect.
    pub dedup: DedupMethod,
    /// Sender threads.
    pub threads: u8,
    /// Packets per second (0 = unlimited).
    pub pps: u64,
    /// The cycle's generator.
    pub generator: u64,
    /// Interface name ("" for dry runs without `-i`).
    pub iface: String,
    /// Gateway address, if known.
    pub gateway_ip: Option<Ipv4Addr>,
    /// Source MAC.
    pub source_mac: [u8; 6],
    /// Gateway MAC.
    pub gateway_mac: [u8; 6],
    /// Source addresses.
    pub source_ips: &'a [Ipv4Addr],
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

fn sink_name(s: &Sink) -> String {
    match s {
        Sink::Stdout => "-".into(),
        Sink::File(p) => p.display().to_string(),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The `-m` document for a finished run.
pub fn metadata<S>(f: &RunFacts<'_>, r: &ScanReport<S>) -> ScanMetadata {
    let c = f.config;
    let host = host_name();
    let time = |t: SystemTime| metadata_time(&to_local(t));
    let mut m = ScanMetadata {
        local_hostname: host.clone(),
        full_hostname: host,
        source_port_first: c.source_ports.0,
        source_port_last: c.source_ports.1,
        target_ports: f.ports.to_vec(),
        max_targets: f.max_targets.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
        max_runtime: c.max_runtime.map_or(0, u64::from),
        max_results: c.max_results.unwrap_or(0),
        iface: f.iface.clone(),
        rate: f.pps,
        bandwidth: match c.rate {
            SendRate::Bandwidth(b) => b,
            _ => 0,
        },
        cooldown_secs: u64::from(c.cooldown_secs),
        senders: u32::from(f.threads),
        seed: c.seed,
        seed_provided: c.seed_provided,
        generator: f.generator,
        shard_num: u32::from(c.shard),
        total_shards: u32::from(c.shards),
        min_hitrate: c.min_hitrate,
        max_sendto_failures: c
            .max_sendto_failures
            .map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
        syslog: c.syslog,
        default_mode: c.default_mode,
        blocklist_total_allowed: f.space.count(),
        blocklist_total_not_allowed: (1u64 << 32) - f.space.count().min(1 << 32),
        packet_streams: c.probes,
        probe_module: f.probe_module.to_string(),
        output_module: f.output_module.to_string(),
        send_start_time: time(r.send_start),
        send_end_time: time(r.send_end),
        recv_start_time: time(r.recv_start),
        recv_end_time: time(r.recv_end),
        output_filter: c.output_filter.clone(),
        cli_cidr_destinations: (!f.cli_destinations.is_empty())
            .then(|| f.cli_destinations.iter().map(|p| p.to_string()).collect()),
        probe_args: f.probe_args.clone(),
        probe_ttl: Some(c.probe_ttl),
        output_args: c.output_args.clone(),
        gateway_mac: mac_string(&f.gateway_mac),
        gateway_ip: f.gateway_ip.map(|g| g.to_string()).unwrap_or_default(),
        source_mac: mac_string(&f.source_mac),
        source_ips: f.source_ips.iter().map(|a| a.to_string()).collect(),
        output_filename: Some(sink_name(&c.output_file)),
        blocklist_filename: c.blocklist_file.as_ref().map(|p| p.display().to_string()),
        allowlist_filename: c.allowlist_file.as_ref().map(|p| p.display().to_string()),
        list_of_ips_filename: c.list_of_ips_file.as_ref().map(|p| p.display().to_string()),
        list_of_ips_count: f.ip_list_len,
        dryrun: c.dryrun != DryRun::Off,
        quiet: c.quiet,
        log_level: c.verbosity,
        deduplication_method: f.dedup.name().to_string(),
        deduplication_window_size: c.dedup_window_size,
        user_metadata: c.user_metadata.clone(),
        notes: c.notes.clone(),
        blocklisted_networks: f.space.blocklist_entries().iter().map(|p| p.to_string()).collect(),
        allowlisted_networks: f
            .space
            .allowlist_entries()
            .map(|a| a.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default(),
        ..ScanMetadata::default()
    };
    match &c.log {
        LogDest::Stderr => {}
        LogDest::File(p) => m.log_file = Some(p.display().to_string()),
        LogDest::Directory(p) => m.log_directory = Some(p.display().to_string()),
    }
    m.set_counters(&r.counters, c.probes, f.dedup == DedupMethod::None, f.app_success);
    m
}

/// The `-g` report for a finished run.
pub fn summary<S>(f: &RunFacts<'_>, r: &ScanReport<S>, success: &str, failure: &str) -> Summary {
    let c = f.config;
    let ports: Vec<String> = f.ports.iter().map(|p| p.to_string()).collect();
    let meta_hitrate = {
        let p = u64::from(c.probes.max(1));
        let sent = r.counters.sent;
        let denom = if f.dedup == DedupMethod::None { sent } else { sent.div_ceil(p) };
        if denom > 0 { r.counters.success_unique as f64 * 100.0 / denom as f64 } else { 0.0 }
    };
    Summary {
        target_port: ports.join(","),
        source_port_first: c.source_ports.0,
        source_port_last: c.source_ports.1,
        source_addr_first: f.source_ips.first().map(|a| a.to_string()).unwrap_or_default(),
        source_addr_last: f.source_ips.last().map(|a| a.to_string()).unwrap_or_default(),
        maximum_packets: f.max_targets.unwrap_or(u64::from(u32::MAX)),
        maximum_runtime: c.max_runtime.map_or(0, u64::from),
        permutation_seed: c.seed,
        cooldown_period: u64::from(c.cooldown_secs),
        send_interface: f.iface.clone(),
        rate: f.pps,
        nprocessors: rzmap_sys::process::available_cpus(),
        send_start_time: Some(to_local(r.send_start)),
        send_end_time: Some(to_local(r.send_end)),
        recv_start_time: Some(to_local(r.recv_start)),
        recv_end_time: Some(to_local(r.recv_end)),
        sent: r.counters.sent,
        blacklisted: (1u64 << 32) - f.space.count().min(1 << 32),
        first_scanned: 0,
        hit_rate: meta_hitrate,
        success_name: success.to_string(),
        failure_name: failure.to_string(),
        success_unique: r.counters.success_unique,
        success_total: r.counters.success_total,
        cooldown_unique: r.counters.cooldown_unique,
        cooldown_total: r.counters.cooldown_total,
        failure_unique: r.counters.failure_unique,
        failure_total: r.counters.failure_total,
        // The validation key is secret; ZMap 2 showed a number here, rzmap shows 0.
        source_port_secret: 0,
        permutation_gen: f.generator,
    }
}

/// The module's names for a success and a failure in the summary (ZMap 2's `synack`/`rst`).
pub fn outcome_names(module: &str) -> (&'static str, &'static str) {
    match module {
        "tcp_synscan" => ("synack", "rst"),
        "icmp_echoscan" => ("echoreply", "icmp-error"),
        _ => ("success", "failure"),
    }
}
