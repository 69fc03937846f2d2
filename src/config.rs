//! Turning the user's option strings into a validated [`ScanConfig`].
//!
//! Every parser here is pure and reports a one-line [`InputError`] that names the flag
//! (by its long name, e.g. `--target-ports`) and, for lists, the 1-based column of the bad
//! item. Things that need the network or the module registries (interface lookups, target
//! lists, module names) are resolved later; their inputs are kept here as given.

use crate::args::Args;
use crate::conffile::expand_tilde;
use rzmap_core::dedup::DedupMethod;
use rzmap_core::error::InputError;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Default send rate in packets per second when neither `-r` nor `-B` is given.
pub const DEFAULT_RATE: u64 = 10_000;
/// Default source port range (ZMap's).
pub const DEFAULT_SOURCE_PORTS: (u16, u16) = (32768, 61000);
/// Most source addresses `-S` may give.
pub const MAX_SOURCE_IPS: usize = 256;
/// Most entries a `-p` list may have.
pub const MAX_TARGET_PORTS: usize = 65536;
/// The smallest frame `-B` charges for: an 84-byte minimum Ethernet frame on the wire.
pub const MIN_WIRE_FRAME: u64 = 84;

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SendRate {
    /// Neither `-r` nor `-B`: [`DEFAULT_RATE`] packets per second.
    Default,
    /// `-r`: packets per second, every probe counted; 0 means no limit.
    Packets(u64),
    /// `-B`: bits per second on the wire.
    Bandwidth(u64),
}

impl SendRate {
    /// Packets per second (0: unlimited) for probes whose frame, without the 24 bytes of
    /// preamble, inter-frame gap and FCS, is `frame_len` bytes long. A bandwidth never gives
    /// 0 (which would mean "unlimited"): it gives at least 1 packet per second.
    pub fn packets_per_second(self, frame_len: usize) -> u64 {
        match self {
            SendRate::Default => DEFAULT_RATE,
            SendRate::Packets(pps) => pps,
            SendRate::Bandwidth(bps) => {
                let bits = ((frame_len as u64).saturating_add(24)).max(MIN_WIRE_FRAME) * 8;
                (bps / bits).max(1)
            }
        }
    }
}

/// `-n`: a count of targets or a percentage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum MaxTargets {
    /// A number of (address, port) targets.
    Count(u64),
    /// A percentage of 2^32 × the number of ports (ZMap 4's meaning).
    Percent(f64),
}

impl MaxTargets {
    /// The number of targets for a scan over `ports` ports (1 for portless modules).
    pub fn resolve(self, ports: usize) -> u64 {
        match self {
            MaxTargets::Count(n) => n,
            MaxTargets::Percent(p) => rzmap_core::iter::max_targets_from_percent(p, ports.max(1)),
        }
    }
}

/// What to do instead of sending, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DryRun {
    /// Send probes.
    Off,
    /// `-d`: print every probe as text.
    Text,
    /// `--fast-dryrun`: write 6 bytes (address, port) per probe.
    Fast,
}

/// How the live path hands Ethernet frames to the kernel (`--send-backend`, hidden).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum SendBackend {
    /// AF_XDP where the interface and kernel allow it (a transmit queue per sender thread),
    /// `sendmmsg` for the threads where they do not (the default).
    #[default]
    Auto,
    /// `sendmmsg` batches on an AF_PACKET socket.
    Sendmmsg,
    /// A TPACKET_V2 `PACKET_TX_RING`, one kick per batch.
    TxRing,
    /// An AF_XDP socket in copy mode, sender thread `t` on interface queue `t`.
    AfXdp,
}

/// Where a stream of output goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Sink {
    /// Standard output (`-`).
    Stdout,
    /// A file.
    File(PathBuf),
}

impl Sink {
    fn from_arg(s: &str) -> Sink {
        if s == "-" { Sink::Stdout } else { Sink::File(PathBuf::from(expand_tilde(s))) }
    }
}

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LogDest {
    /// Standard error.
    Stderr,
    /// `-l`: this file.
    File(PathBuf),
    /// `-L`: a time-stamped file in this directory.
    Directory(PathBuf),
}

/// `--banner` settings (rzmap extension; see `docs/stateless-banners.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BannerConfig {
    /// `--banner-payload` bytes (empty: none).
    pub payload: Vec<u8>,
    /// `--banner-max`.
    pub max_bytes: usize,
    /// `--banner-timeout` in seconds.
    pub timeout_secs: u32,
    /// `--banner-idle` in seconds (0: off).
    pub idle_secs: u32,
    /// `--banner-connections` (`None`: from the rate and timeout).
    pub connections: Option<usize>,
}

/// The largest `--banner-payload` (it must fit one segment under our MSS of 1460).
pub const MAX_BANNER_PAYLOAD: usize = 1400;

impl BannerConfig {
    /// The table capacity: `--banner-connections`, or `pps × timeout × 1.25` clamped to
    /// 1024..=1,000,000 (`pps` 0, unlimited, takes the maximum).
    pub fn capacity(&self, pps: u64) -> usize {
        if let Some(n) = self.connections {
            return n;
        }
        if pps == 0 {
            return 1_000_000;
        }
        let n = pps.saturating_mul(u64::from(self.timeout_secs)).saturating_mul(5) / 4;
        n.clamp(1024, 1_000_000) as usize
    }
}

/// Validates the `--banner*` options (`module` is the resolved `-M`).
fn banner_config(args: &Args, module: &str) -> Result<Option<BannerConfig>, InputError> {
    if !args.banner {
        let given = [
            ("--banner-payload", args.banner_payload.is_some()),
            ("--banner-max", args.banner_max.is_some()),
            ("--banner-timeout", args.banner_timeout.is_some()),
            ("--banner-idle", args.banner_idle.is_some()),
            ("--banner-connections", args.banner_connections.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            return Err(InputError::new(*flag, "needs --banner"));
        }
        return Ok(None);
    }
    if module != "tcp_synscan" {
        return Err(InputError::new(
            "--banner",
            format!("needs the tcp_synscan probe module (got {module})"),
        ));
    }
    let payload = match args.banner_payload.as_deref() {
        None => Vec::new(),
        Some(a) => {
            use rzmap_core::probe::payload::{PayloadSpec, parse_payload_arg};
            match parse_payload_arg(a, MAX_BANNER_PAYLOAD, false) {
                Ok(PayloadSpec::Fixed(b)) => b,
                Ok(_) => {
                    return Err(InputError::new("--banner-payload", "expected a fixed payload"));
                }
                Err(mut e) => {
                    if e.input == "--probe-args" {
                        e.input = "--banner-payload".into();
                    }
                    return Err(e);
                }
            }
        }
    };
    let max_bytes = parse_or("--banner-max", args.banner_max.as_deref(), 1, 65535, 1024)? as usize;
    let timeout_secs =
        parse_or("--banner-timeout", args.banner_timeout.as_deref(), 1, 3600, 5)? as u32;
    let idle_secs = parse_or("--banner-idle", args.banner_idle.as_deref(), 0, 3600, 1)? as u32;
    let connections = args
        .banner_connections
        .as_deref()
        .map(|s| parse_uint("--banner-connections", s, 1, 1_000_000).map(|n| n as usize))
        .transpose()?;
    Ok(Some(BannerConfig { payload, max_bytes, timeout_secs, idle_secs, connections }))
}

/// A validated scan configuration: plain data, no open files or sockets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScanConfig {
    // --- target space (resolved into addresses by the target code) ---
    /// Positional prefixes, addresses or host names, as given.
    pub subnets: Vec<String>,
    /// `-w`.
    pub allowlist_file: Option<PathBuf>,
    /// `-b` (when `None`, the built-in default blocklist applies).
    pub blocklist_file: Option<PathBuf>,
    /// `-I`.
    pub list_of_ips_file: Option<PathBuf>,
    /// `--ignore-blocklist-errors`.
    pub ignore_blocklist_errors: bool,
    /// `-p`: target ports in the user's order, duplicates kept; empty when not given.
    pub target_ports: Vec<u16>,

    // --- scan ---
    /// `-r` / `-B`.
    pub rate: SendRate,
    /// `--batch`.
    pub batch: u16,
    /// `-n`.
    pub max_targets: Option<MaxTargets>,
    /// `-t` in seconds (`None`: no limit; `-t 0` also means no limit).
    pub max_runtime: Option<u32>,
    /// `-N` (`None`: no limit; `-N 0` also means no limit).
    pub max_results: Option<u64>,
    /// `-P`.
    pub probes: u32,
    /// `-c` in seconds.
    pub cooldown_secs: u32,
    /// The permutation seed (`-e`, or random).
    pub seed: u64,
    /// Whether `-e` gave the seed.
    pub seed_provided: bool,
    /// `--retries`.
    pub retries: u32,
    /// `-d` / `--fast-dryrun`.
    pub dryrun: DryRun,
    /// `--shards`.
    pub shards: u16,
    /// `--shard`.
    pub shard: u16,

    // --- network ---
    /// `-s`: first and last source port.
    pub source_ports: (u16, u16),
    /// `--validate-source-port` (`None`: the module's default).
    pub validate_source_port: Option<bool>,
    /// `-S` in the user's order (empty: the interface's address).
    pub source_ips: Vec<Ipv4Addr>,
    /// `-G`.
    pub gateway_mac: Option<[u8; 6]>,
    /// `--source-mac`.
    pub source_mac: Option<[u8; 6]>,
    /// `-i`.
    pub interface: Option<String>,
    /// `-X`.
    pub iplayer: bool,
    /// `--send-backend` (not part of ZMap's interface, so left out of the metadata).
    #[serde(skip)]
    pub send_backend: SendBackend,
    /// `--netmap-wait-ping`, as given (rzmap has no netmap back end and refuses it at run time).
    pub netmap_wait_ping: Option<String>,

    // --- probe ---
    /// `-M`.
    pub probe_module: String,
    /// `--probe-args`.
    pub probe_args: Option<String>,
    /// `--probe-ttl`.
    pub probe_ttl: u8,

    // --- output ---
    /// `-o`.
    pub output_file: Sink,
    /// `-O` as given (`None`: csv; checked against the output registry later).
    pub output_module: Option<String>,
    /// `--output-args`.
    pub output_args: Option<String>,
    /// `-f` as given (`None`: `saddr`, or `saddr,sport` with several ports; checked
    /// against the probe module's fields later).
    pub output_fields: Option<String>,
    /// `--output-filter` (`Some("")` outputs every validated reply).
    pub output_filter: Option<String>,
    /// `--no-header-row`.
    pub no_header_row: bool,
    /// True when none of `-O`, `-f`, `--output-filter` was given: only first successful
    /// replies are output, as `saddr` (or `saddr,sport`) csv without a header.
    pub default_mode: bool,

    // --- dedup ---
    /// `--dedup-method` (`default` is resolved once the port count is final).
    #[serde(serialize_with = "serialize_dedup")]
    pub dedup_method: DedupMethod,
    /// `--dedup-window-size`.
    pub dedup_window_size: u32,

    // --- logging and metadata ---
    /// `-v`.
    pub verbosity: u8,
    /// `-l` / `-L`.
    pub log: LogDest,
    /// `-m`.
    pub metadata_file: Option<Sink>,
    /// `-u`.
    pub status_updates_file: Option<Sink>,
    /// `-q`.
    pub quiet: bool,
    /// `-g`: print ZMap 2's grep-able summary at the end.
    pub summary: bool,
    /// Syslog on unless `--disable-syslog`.
    pub syslog: bool,
    /// `--notes`.
    pub notes: Option<String>,
    /// `--user-metadata`, parsed.
    pub user_metadata: Option<serde_json::Value>,

    // --- additional ---
    /// `--max-sendto-failures` (`None`: unlimited, the `-1` default).
    pub max_sendto_failures: Option<u64>,
    /// `--min-hitrate` in percent (0: never abort).
    pub min_hitrate: f64,
    /// `-T` (`None`: chosen from the core count at start).
    pub sender_threads: Option<u8>,
    /// `--cores`.
    pub cores: Option<Vec<u32>>,

    /// `--banner` and its settings (`None`: no banner grabbing).
    pub banner: Option<BannerConfig>,

    /// Warnings found while validating (for example many probes over few source ports).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Validates parsed options. The seed comes from `--seed`, or from `random_seed` when absent.
pub fn resolve(
    args: &Args,
    random_seed: impl FnOnce() -> Result<u64, InputError>,
) -> Result<ScanConfig, InputError> {
    let mut warnings = Vec::new();
    fn opt(s: &Option<String>) -> Option<&str> {
        s.as_deref()
    }

    let target_ports = match opt(&args.target_ports) {
        Some(s) => parse_port_list("--target-ports", s)?,
        None => Vec::new(),
    };

    let rate = match (opt(&args.rate), opt(&args.bandwidth)) {
        (Some(_), Some(_)) => {
            return Err(InputError::new(
                "--rate",
                "--rate and --bandwidth cannot be used together",
            ));
        }
        (Some(r), None) => SendRate::Packets(parse_uint("--rate", r, 0, u64::MAX)?),
        (None, Some(b)) => SendRate::Bandwidth(parse_bandwidth("--bandwidth", b)?),
        (None, None) => SendRate::Default,
    };
    let batch = parse_or("--batch", opt(&args.batch), 1, 65535, 64)? as u16;
    let max_targets =
        opt(&args.max_targets).map(|s| parse_max_targets("--max-targets", s)).transpose()?;
    let max_runtime = opt(&args.max_runtime)
        .map(|s| parse_uint("--max-runtime", s, 0, u32::MAX.into()))
        .transpose()?;
    let max_results =
        opt(&args.max_results).map(|s| parse_uint("--max-results", s, 0, u64::MAX)).transpose()?;
    let probes = parse_or("--probes", opt(&args.probes), 1, u32::MAX.into(), 1)? as u32;
    let cooldown_secs =
        parse_or("--cooldown-time", opt(&args.cooldown_time), 0, u32::MAX.into(), 8)? as u32;
    let retries = parse_or("--retries", opt(&args.retries), 0, u32::MAX.into(), 10)? as u32;

    let send_backend = match opt(&args.send_backend) {
        None | Some("auto") => SendBackend::Auto,
        Some("sendmmsg") => SendBackend::Sendmmsg,
        Some(name @ ("tx-ring" | "af-xdp")) if args.iplayer => {
            return Err(InputError::new(
                "--send-backend",
                format!("{name} sends Ethernet frames and cannot be used with --iplayer"),
            ));
        }
        Some("tx-ring") => SendBackend::TxRing,
        Some("af-xdp") => SendBackend::AfXdp,
        Some(other) => {
            return Err(InputError::new(
                "--send-backend",
                format!(
                    "unknown send back end {other:?} (expected auto, af-xdp, sendmmsg or tx-ring)"
                ),
            ));
        }
    };

    let (seed, seed_provided) = match opt(&args.seed) {
        Some(s) => (parse_uint("--seed", s, 0, u64::MAX)?, true),
        None => (random_seed()?, false),
    };

    let dryrun = match (args.dryrun, args.fast_dryrun) {
        (true, true) => {
            return Err(InputError::new(
                "--fast-dryrun",
                "--dryrun and --fast-dryrun cannot be used together",
            ));
        }
        (true, false) => DryRun::Text,
        (false, true) => DryRun::Fast,
        (false, false) => DryRun::Off,
    };

    let shards = parse_or("--shards", opt(&args.shards), 1, 65535, 1)? as u16;
    let shard = parse_or("--shard", opt(&args.shard), 0, 65534, 0)? as u16;
    if args.shards.is_some() && !seed_provided {
        return Err(InputError::new(
            "--shards",
            "sharding needs --seed, so that every shard walks the same permutation",
        ));
    }
    if shard >= shards {
        return Err(InputError::new(
            "--shard",
            format!(
                "shard {shard} does not exist with --shards {shards} (shards are numbered from 0)"
            ),
        ));
    }

    let source_ports = match opt(&args.source_port) {
        Some(s) => parse_port_range("--source-port", s)?,
        None => DEFAULT_SOURCE_PORTS,
    };
    let nsource = u64::from(source_ports.1 - source_ports.0) + 1;
    if u64::from(probes) > nsource {
        return Err(InputError::new(
            "--probes",
            format!(
                "{probes} probes per target need {probes} source ports, but --source-port gives {nsource}"
            ),
        ));
    }
    if u64::from(probes) * 10 > nsource {
        warnings.push(format!(
            "{probes} probes per target over {nsource} source ports: replies to different probes \
             are hard to tell apart"
        ));
    }
    let validate_source_port = match opt(&args.validate_source_port) {
        None => None,
        Some("enable") => Some(true),
        Some("disable") => Some(false),
        Some(other) => {
            return Err(InputError::new(
                "--validate-source-port",
                format!("expected \"enable\" or \"disable\", got \"{other}\""),
            ));
        }
    };
    let source_ips = match opt(&args.source_ip) {
        Some(s) => parse_source_ips("--source-ip", s)?,
        None => Vec::new(),
    };
    let gateway_mac = opt(&args.gateway_mac).map(|s| parse_mac("--gateway-mac", s)).transpose()?;
    let source_mac = opt(&args.source_mac).map(|s| parse_mac("--source-mac", s)).transpose()?;
    let interface = opt(&args.interface).map(|s| parse_interface("--interface", s)).transpose()?;

    let probe_module =
        nonempty("--probe-module", opt(&args.probe_module).unwrap_or("tcp_synscan"))?;
    let probe_ttl = parse_or("--probe-ttl", opt(&args.probe_ttl), 1, 255, 64)? as u8;

    let default_mode = args.output_module.is_none()
        && args.output_fields.is_none()
        && args.output_filter.is_none();
    let output_module =
        opt(&args.output_module).map(|m| nonempty("--output-module", m)).transpose()?;
    let output_fields = args.output_fields.clone();

    let dedup_method = match opt(&args.dedup_method) {
        None => DedupMethod::Default,
        Some(m) => DedupMethod::parse(m.trim())?,
    };
    // Rejects `full` with several ports now; portless modules scan port 0 only.
    dedup_method.resolve(target_ports.len().max(1))?;
    let dedup_window_size = parse_or(
        "--dedup-window-size",
        opt(&args.dedup_window_size),
        1,
        u32::MAX.into(),
        1_000_000,
    )? as u32;

    let verbosity = parse_or("--verbosity", opt(&args.verbosity), 0, 5, 3)? as u8;
    let log = match (opt(&args.log_file), opt(&args.log_directory)) {
        (Some(_), Some(_)) => {
            return Err(InputError::new(
                "--log-file",
                "--log-file and --log-directory cannot be used together",
            ));
        }
        (Some(f), None) => LogDest::File(PathBuf::from(expand_tilde(&nonempty("--log-file", f)?))),
        (None, Some(d)) => {
            LogDest::Directory(PathBuf::from(expand_tilde(&nonempty("--log-directory", d)?)))
        }
        (None, None) => LogDest::Stderr,
    };
    let user_metadata =
        opt(&args.user_metadata).map(|s| parse_json("--user-metadata", s)).transpose()?;

    let max_sendto_failures = match opt(&args.max_sendto_failures) {
        None => None,
        Some(s) if s.trim() == "-1" => None,
        Some(s) => Some(parse_uint("--max-sendto-failures", s, 0, u64::MAX).map_err(|_| {
            InputError::new(
                "--max-sendto-failures",
                format!("expected -1 (no limit) or a whole number, got \"{s}\""),
            )
        })?),
    };
    let min_hitrate = match opt(&args.min_hitrate) {
        None => 0.0,
        Some(s) => parse_percent("--min-hitrate", s)?,
    };
    let sender_threads =
        opt(&args.sender_threads).map(|s| parse_uint("--sender-threads", s, 1, 255)).transpose()?;
    let cores = opt(&args.cores).map(|s| parse_cores("--cores", s)).transpose()?;

    let path = |s: &Option<String>, flag: &str| -> Result<Option<PathBuf>, InputError> {
        s.as_deref().map(|v| nonempty(flag, v).map(|v| PathBuf::from(expand_tilde(&v)))).transpose()
    };

    let banner = banner_config(args, &probe_module)?;
    // The cooldown lasts at least the banner timeout, so every grab can finish.
    let cooldown_secs = match &banner {
        Some(b) => cooldown_secs.max(b.timeout_secs),
        None => cooldown_secs,
    };

    Ok(ScanConfig {
        banner,
        subnets: args.subnets.clone(),
        allowlist_file: path(&args.allowlist_file, "--allowlist-file")?,
        blocklist_file: path(&args.blocklist_file, "--blocklist-file")?,
        list_of_ips_file: path(&args.list_of_ips_file, "--list-of-ips-file")?,
        ignore_blocklist_errors: args.ignore_blocklist_errors,
        target_ports,
        rate,
        batch,
        max_targets,
        max_runtime: max_runtime.filter(|&t| t > 0).map(|t| t as u32),
        max_results: max_results.filter(|&n| n > 0),
        probes,
        cooldown_secs,
        seed,
        seed_provided,
        retries,
        dryrun,
        shards,
        shard,
        source_ports,
        validate_source_port,
        source_ips,
        gateway_mac,
        source_mac,
        interface,
        iplayer: args.iplayer,
        send_backend,
        netmap_wait_ping: args.netmap_wait_ping.clone(),
        probe_module,
        probe_args: args.probe_args.clone(),
        probe_ttl,
        output_file: opt(&args.output_file).map(Sink::from_arg).unwrap_or(Sink::Stdout),
        output_module,
        output_args: args.output_args.clone(),
        output_fields,
        output_filter: args.output_filter.clone(),
        no_header_row: args.no_header_row,
        default_mode,
        dedup_method,
        dedup_window_size,
        verbosity,
        log,
        metadata_file: opt(&args.metadata_file).map(Sink::from_arg),
        status_updates_file: opt(&args.status_updates_file).map(Sink::from_arg),
        quiet: args.quiet,
        summary: args.summary,
        syslog: !args.disable_syslog,
        notes: args.notes.clone(),
        user_metadata,
        max_sendto_failures,
        min_hitrate,
        sender_threads: sender_threads.map(|t| t as u8),
        cores,
        warnings,
    })
}

fn serialize_dedup<S: serde::Serializer>(m: &DedupMethod, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

/// Reads a random 64-bit seed from `/dev/urandom`.
pub fn os_random_seed() -> Result<u64, InputError> {
    use std::io::Read;
    let mut buf = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| InputError::new("/dev/urandom", format!("cannot read a random seed: {e}")))?;
    Ok(u64::from_le_bytes(buf))
}

// ---------------------------------------------------------------------------------------------
// Value parsers. Each names the flag; list parsers give the 1-based column of the bad item.

fn range_text(min: u64, max: u64) -> String {
    if max >= u64::from(u32::MAX) {
        format!("a whole number of at least {min}")
    } else {
        format!("a whole number from {min} to {max}")
    }
}

/// Parses a decimal integer in `min..=max`.
pub fn parse_uint(flag: &str, s: &str, min: u64, max: u64) -> Result<u64, InputError> {
    let t = s.trim();
    match t.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(InputError::new(flag, format!("expected {}, got \"{s}\"", range_text(min, max)))),
    }
}

fn parse_or(
    flag: &str,
    s: Option<&str>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, InputError> {
    s.map_or(Ok(default), |s| parse_uint(flag, s, min, max))
}

fn nonempty(flag: &str, s: &str) -> Result<String, InputError> {
    if s.trim().is_empty() {
        Err(InputError::new(flag, "the value is empty"))
    } else {
        Ok(s.to_string())
    }
}

/// Splits a comma list into (1-based column of the trimmed item, trimmed item).
fn comma_items(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut col = 1;
    s.split(',').map(move |item| {
        let lead = item.len() - item.trim_start().len();
        let at = col + item[..lead].chars().count();
        col += item.chars().count() + 1;
        (at, item.trim())
    })
}

/// How many characters of leading whitespace `s` has (columns count characters, and Unicode
/// whitespace such as U+0085 or U+3000 takes more than one byte).
fn leading_blank_chars(s: &str) -> usize {
    s.chars().take_while(|c| c.is_whitespace()).count()
}

fn parse_port_at(flag: &str, s: &str, col: usize) -> Result<u16, InputError> {
    if s.is_empty() {
        return Err(InputError::at_column(flag, col, "missing port number"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::at_column(flag, col, format!("bad port \"{s}\"")));
    }
    s.parse::<u16>().map_err(|_| {
        InputError::at_column(flag, col, format!("bad port \"{s}\": ports are 0 to 65535"))
    })
}

/// Parses `port` or `first-last` (inclusive) starting at `col`.
fn parse_range_at(flag: &str, s: &str, col: usize) -> Result<(u16, u16), InputError> {
    match s.split_once('-') {
        Some((a, b)) => {
            let lo = parse_port_at(flag, a.trim(), col)?;
            let bcol = col + a.chars().count() + 1 + leading_blank_chars(b);
            let hi = parse_port_at(flag, b.trim(), bcol)?;
            if hi < lo {
                return Err(InputError::at_column(
                    flag,
                    col,
                    format!("bad range \"{s}\": it ends before it starts"),
                ));
            }
            Ok((lo, hi))
        }
        None => parse_port_at(flag, s, col).map(|p| (p, p)),
    }
}

/// Parses a `-p` list: ports and `a-b` ranges separated by commas, or `*` for every port.
/// The order is kept and duplicates are kept.
pub fn parse_port_list(flag: &str, s: &str) -> Result<Vec<u16>, InputError> {
    if s.trim() == "*" {
        return Ok((0..=u16::MAX).collect());
    }
    if s.trim().is_empty() {
        return Err(InputError::new(flag, "the port list is empty"));
    }
    let mut ports = Vec::new();
    for (col, item) in comma_items(s) {
        if item == "*" {
            return Err(InputError::at_column(flag, col, "\"*\" must be the whole port list"));
        }
        if item.is_empty() {
            return Err(InputError::at_column(flag, col, "empty entry in the port list"));
        }
        let (lo, hi) = parse_range_at(flag, item, col)?;
        if ports.len() + usize::from(hi - lo) + 1 > MAX_TARGET_PORTS {
            return Err(InputError::at_column(
                flag,
                col,
                format!("more than {MAX_TARGET_PORTS} ports in the list"),
            ));
        }
        ports.extend(lo..=hi);
    }
    Ok(ports)
}

/// Parses `-s`: a port or a `first-last` range.
pub fn parse_port_range(flag: &str, s: &str) -> Result<(u16, u16), InputError> {
    let lead = leading_blank_chars(s);
    parse_range_at(flag, s.trim(), 1 + lead)
}

fn parse_ipv4_at(flag: &str, s: &str, col: usize) -> Result<Ipv4Addr, InputError> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| InputError::at_column(flag, col, format!("bad IPv4 address \"{s}\"")))
}

/// Parses `-S`: addresses and `a-b` ranges separated by commas, at most 256 addresses.
pub fn parse_source_ips(flag: &str, s: &str) -> Result<Vec<Ipv4Addr>, InputError> {
    if s.trim().is_empty() {
        return Err(InputError::new(flag, "the address list is empty"));
    }
    let mut ips = Vec::new();
    for (col, item) in comma_items(s) {
        if item.is_empty() {
            return Err(InputError::at_column(flag, col, "empty entry in the address list"));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => {
                let lo = parse_ipv4_at(flag, a.trim(), col)?;
                let bcol = col + a.chars().count() + 1 + leading_blank_chars(b);
                let hi = parse_ipv4_at(flag, b.trim(), bcol)?;
                if u32::from(hi) < u32::from(lo) {
                    return Err(InputError::at_column(
                        flag,
                        col,
                        format!("bad range \"{item}\": it ends before it starts"),
                    ));
                }
                (u32::from(lo), u32::from(hi))
            }
            None => {
                let ip = u32::from(parse_ipv4_at(flag, item, col)?);
                (ip, ip)
            }
        };
        if (ips.len() as u64) + u64::from(hi - lo) + 1 > MAX_SOURCE_IPS as u64 {
            return Err(InputError::at_column(
                flag,
                col,
                format!("more than {MAX_SOURCE_IPS} source addresses"),
            ));
        }
        ips.extend((lo..=hi).map(Ipv4Addr::from));
    }
    Ok(ips)
}

/// Parses `-B`: bits per second, with an optional G, M or K suffix (powers of ten, either
/// case) and an optional decimal fraction (`1.5G`). The result is at least 1.
pub fn parse_bandwidth(flag: &str, s: &str) -> Result<u64, InputError> {
    let t = s.trim();
    let bad = || {
        InputError::new(
            flag,
            format!("expected bits per second such as 10M (suffixes G, M, K), got \"{s}\""),
        )
    };
    let (num, mult) = match t.as_bytes().last() {
        Some(b'G' | b'g') => (&t[..t.len() - 1], 1_000_000_000u64),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 1_000_000),
        Some(b'K' | b'k') => (&t[..t.len() - 1], 1_000),
        _ => (t, 1),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole = int.parse::<u64>().ok().and_then(|v| v.checked_mul(mult)).ok_or_else(bad)?;
    // The fraction, exactly: digits beyond the multiplier's precision are dropped.
    let mut frac_val = 0u64;
    let mut scale = mult;
    for d in frac.bytes() {
        scale /= 10;
        frac_val += u64::from(d - b'0') * scale;
        if scale == 0 {
            break;
        }
    }
    let bps = whole.checked_add(frac_val).ok_or_else(bad)?;
    if bps == 0 {
        return Err(InputError::new(flag, format!("the bandwidth must be positive, got \"{s}\"")));
    }
    Ok(bps)
}

/// Parses `-n`: a count, or a percentage such as `0.1%`.
pub fn parse_max_targets(flag: &str, s: &str) -> Result<MaxTargets, InputError> {
    let t = s.trim();
    match t.strip_suffix('%') {
        Some(p) => {
            let v =
                p.trim().parse::<f64>().ok().filter(|v| v.is_finite() && (0.0..=100.0).contains(v));
            v.map(MaxTargets::Percent).ok_or_else(|| {
                InputError::new(flag, format!("expected a percentage from 0% to 100%, got \"{s}\""))
            })
        }
        None => t.parse::<u64>().map(MaxTargets::Count).map_err(|_| {
            InputError::new(
                flag,
                format!("expected a number of targets or a percentage such as 0.1%, got \"{s}\""),
            )
        }),
    }
}

fn parse_percent(flag: &str, s: &str) -> Result<f64, InputError> {
    s.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
        .ok_or_else(|| {
            InputError::new(flag, format!("expected a percentage from 0 to 100, got \"{s}\""))
        })
}

/// Parses a MAC address: six hex bytes separated by colons (`00:11:22:aa:bb:cc`).
pub fn parse_mac(flag: &str, s: &str) -> Result<[u8; 6], InputError> {
    let t = s.trim();
    let mut mac = [0u8; 6];
    let mut col = 1 + leading_blank_chars(s);
    let mut n = 0;
    for part in t.split(':') {
        let ok = (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
        if n >= 6 || !ok {
            return Err(InputError::at_column(
                flag,
                col,
                format!(
                    "bad MAC address \"{t}\" (expected six hex bytes such as 00:11:22:aa:bb:cc)"
                ),
            ));
        }
        mac[n] = u8::from_str_radix(part, 16).unwrap_or(0);
        n += 1;
        col += part.len() + 1;
    }
    if n != 6 {
        return Err(InputError::new(
            flag,
            format!("bad MAC address \"{t}\" (expected six hex bytes such as 00:11:22:aa:bb:cc)"),
        ));
    }
    Ok(mac)
}

fn parse_interface(flag: &str, s: &str) -> Result<String, InputError> {
    let s = nonempty(flag, s)?;
    if s.len() > 15 || s.contains(['/', ' ', '\0']) {
        return Err(InputError::new(
            flag,
            format!("\"{s}\" is not an interface name (at most 15 bytes, no '/' or spaces)"),
        ));
    }
    Ok(s)
}

/// Parses `--cores`: CPU numbers separated by commas.
pub fn parse_cores(flag: &str, s: &str) -> Result<Vec<u32>, InputError> {
    comma_items(s)
        .map(|(col, item)| {
            item.parse::<u32>()
                .map_err(|_| InputError::at_column(flag, col, format!("bad CPU number \"{item}\"")))
        })
        .collect()
}

/// Parses `--user-metadata` as JSON.
pub fn parse_json(flag: &str, s: &str) -> Result<serde_json::Value, InputError> {
    serde_json::from_str(s).map_err(|e| {
        let text = e.to_string();
        let msg = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
        if e.line() == 1 && e.column() > 0 {
            InputError::at_column(flag, e.column(), format!("not valid JSON: {msg}"))
        } else {
            InputError::new(flag, format!("not valid JSON: {text}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err<T: std::fmt::Debug>(r: Result<T, InputError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn columns_count_characters_after_unicode_whitespace() {
        // Found by the value_parsers fuzz target: U+0085 and U+3000 are whitespace of 2 and 3
        // bytes, and columns used to count their bytes.
        assert_eq!(err(parse_port_range("-s", "\u{85}")), "-s: column 2: missing port number");
        assert_eq!(err(parse_port_range("-s", "\u{85}x")), "-s: column 2: bad port \"x\"");
        assert_eq!(err(parse_port_list("-p", "1-\u{3000}x")), "-p: column 4: bad port \"x\"");
        assert_eq!(
            err(parse_source_ips("-S", "1.2.3.4-\u{3000}x")),
            "-S: column 10: bad IPv4 address \"x\""
        );
        assert!(err(parse_mac("-G", "\u{3000}zz")).starts_with("-G: column 2: bad MAC address"));
    }

    #[test]
    fn port_lists_keep_order_and_duplicates() {
        assert_eq!(parse_port_list("-p", "80").unwrap(), vec![80]);
        assert_eq!(parse_port_list("-p", "443,80,443").unwrap(), vec![443, 80, 443]);
        assert_eq!(parse_port_list("-p", "8000-8002, 22").unwrap(), vec![8000, 8001, 8002, 22]);
        assert_eq!(parse_port_list("-p", "0,65535").unwrap(), vec![0, 65535]);
        let all = parse_port_list("-p", "*").unwrap();
        assert_eq!((all.len(), all[0], all[65535]), (65536, 0, 65535));
        assert_eq!(parse_port_list("-p", "5-5").unwrap(), vec![5]);
    }

    #[test]
    fn port_list_errors_name_the_column() {
        let f = "--target-ports";
        assert_eq!(
            err(parse_port_list(f, "80,70000")),
            "--target-ports: column 4: bad port \"70000\": ports are 0 to 65535"
        );
        assert_eq!(
            err(parse_port_list(f, "80,,443")),
            "--target-ports: column 4: empty entry in the port list"
        );
        assert_eq!(
            err(parse_port_list(f, "80,http")),
            "--target-ports: column 4: bad port \"http\""
        );
        assert_eq!(
            err(parse_port_list(f, "90-80")),
            "--target-ports: column 1: bad range \"90-80\": it ends before it starts"
        );
        assert_eq!(err(parse_port_list(f, "1,10-x")), "--target-ports: column 6: bad port \"x\"");
        assert_eq!(
            err(parse_port_list(f, "1,-5")),
            "--target-ports: column 3: missing port number"
        );
        assert_eq!(
            err(parse_port_list(f, "80,*")),
            "--target-ports: column 4: \"*\" must be the whole port list"
        );
        assert_eq!(err(parse_port_list(f, "")), "--target-ports: the port list is empty");
        assert_eq!(err(parse_port_list(f, "-80")), "--target-ports: column 1: missing port number");
        assert_eq!(
            err(parse_port_list(f, "0-65535,1")),
            "--target-ports: column 9: more than 65536 ports in the list"
        );
    }

    #[test]
    fn source_port_ranges() {
        assert_eq!(parse_port_range("-s", "40000").unwrap(), (40000, 40000));
        assert_eq!(parse_port_range("-s", "50000-60000").unwrap(), (50000, 60000));
        assert_eq!(
            err(parse_port_range("--source-port", "6-5")),
            "--source-port: column 1: bad range \"6-5\": it ends before it starts"
        );
        assert_eq!(
            err(parse_port_range("--source-port", "1-99999")),
            "--source-port: column 3: bad port \"99999\": ports are 0 to 65535"
        );
        assert_eq!(
            err(parse_port_range("--source-port", "1,2")),
            "--source-port: column 1: bad port \"1,2\""
        );
    }

    #[test]
    fn source_ips_mix_singles_ranges_and_lists() {
        let ips = parse_source_ips("-S", "198.18.0.1,198.18.0.5-198.18.0.7, 198.18.0.1").unwrap();
        let want: Vec<Ipv4Addr> =
            ["198.18.0.1", "198.18.0.5", "198.18.0.6", "198.18.0.7", "198.18.0.1"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        assert_eq!(ips, want);
        assert_eq!(parse_source_ips("-S", "10.0.0.0-10.0.0.255").unwrap().len(), 256);
        assert_eq!(
            err(parse_source_ips("--source-ip", "10.0.0.0-10.0.1.0")),
            "--source-ip: column 1: more than 256 source addresses"
        );
        assert_eq!(
            err(parse_source_ips("--source-ip", "10.0.0.0-10.0.0.254,1.1.1.1,1.1.1.2")),
            "--source-ip: column 29: more than 256 source addresses"
        );
        assert_eq!(
            err(parse_source_ips("--source-ip", "1.2.3.4,1.2.3")),
            "--source-ip: column 9: bad IPv4 address \"1.2.3\""
        );
        assert_eq!(
            err(parse_source_ips("--source-ip", "1.2.3.9-1.2.3.4")),
            "--source-ip: column 1: bad range \"1.2.3.9-1.2.3.4\": it ends before it starts"
        );
        assert_eq!(
            err(parse_source_ips("--source-ip", "1.2.3.4-x")),
            "--source-ip: column 9: bad IPv4 address \"x\""
        );
    }

    #[test]
    fn bandwidth_suffixes_are_powers_of_ten() {
        assert_eq!(parse_bandwidth("-B", "10M").unwrap(), 10_000_000);
        assert_eq!(parse_bandwidth("-B", "10m").unwrap(), 10_000_000);
        assert_eq!(parse_bandwidth("-B", "1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bandwidth("-B", "200G").unwrap(), 200_000_000_000);
        assert_eq!(parse_bandwidth("-B", "5k").unwrap(), 5_000);
        assert_eq!(parse_bandwidth("-B", "1234").unwrap(), 1234);
        assert_eq!(parse_bandwidth("-B", "1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_bandwidth("-B", "0.001K").unwrap(), 1);
        assert_eq!(
            err(parse_bandwidth("--bandwidth", "10X")),
            "--bandwidth: expected bits per second such as 10M (suffixes G, M, K), got \"10X\""
        );
        assert_eq!(
            err(parse_bandwidth("--bandwidth", "0")),
            "--bandwidth: the bandwidth must be positive, got \"0\""
        );
        assert!(parse_bandwidth("-B", "99999999999999G").is_err());
        assert!(parse_bandwidth("-B", "M").is_err());
        assert!(parse_bandwidth("-B", "-5M").is_err());
    }

    #[test]
    fn bandwidth_conversion_uses_frame_size_with_84_byte_floor() {
        // 10 Mbit/s of minimum-size frames: 10e6 / (84 * 8) = 14880 (the documented figure).
        assert_eq!(SendRate::Bandwidth(10_000_000).packets_per_second(54), 14880);
        assert_eq!(SendRate::Bandwidth(10_000_000).packets_per_second(60), 14880);
        // A 74-byte linux-options SYN is 98 bytes on the wire.
        assert_eq!(SendRate::Bandwidth(10_000_000).packets_per_second(74), 10_000_000 / (98 * 8));
        assert_eq!(SendRate::Bandwidth(1).packets_per_second(60), 1);
        assert_eq!(SendRate::Default.packets_per_second(60), 10_000);
        assert_eq!(SendRate::Packets(0).packets_per_second(60), 0);
    }

    #[test]
    fn max_targets_counts_and_percentages() {
        assert_eq!(parse_max_targets("-n", "1000").unwrap(), MaxTargets::Count(1000));
        assert_eq!(parse_max_targets("-n", "0.1%").unwrap(), MaxTargets::Percent(0.1));
        assert_eq!(MaxTargets::Percent(100.0).resolve(1), 1 << 32);
        assert_eq!(MaxTargets::Percent(50.0).resolve(2), 1 << 32);
        assert_eq!(MaxTargets::Count(7).resolve(3), 7);
        assert_eq!(
            err(parse_max_targets("--max-targets", "101%")),
            "--max-targets: expected a percentage from 0% to 100%, got \"101%\""
        );
        assert_eq!(
            err(parse_max_targets("--max-targets", "lots")),
            "--max-targets: expected a number of targets or a percentage such as 0.1%, got \"lots\""
        );
        assert!(parse_max_targets("-n", "nan%").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("-G", "b4:23:f9:28:fa:2d").unwrap(),
            [0xb4, 0x23, 0xf9, 0x28, 0xfa, 0x2d]
        );
        assert_eq!(parse_mac("-G", "0:1:2:3:4:5").unwrap(), [0, 1, 2, 3, 4, 5]);
        let msg = "(expected six hex bytes such as 00:11:22:aa:bb:cc)";
        assert_eq!(
            err(parse_mac("--gateway-mac", "b4:23:f9:28:fa")),
            format!("--gateway-mac: bad MAC address \"b4:23:f9:28:fa\" {msg}")
        );
        assert_eq!(
            err(parse_mac("--gateway-mac", "b4:23:g9:28:fa:2d")),
            format!("--gateway-mac: column 7: bad MAC address \"b4:23:g9:28:fa:2d\" {msg}")
        );
        assert_eq!(
            err(parse_mac("--gateway-mac", "b4:23:f9:28:fa:2d:00")),
            format!("--gateway-mac: column 19: bad MAC address \"b4:23:f9:28:fa:2d:00\" {msg}")
        );
        assert!(parse_mac("-G", "b423f928fa2d").is_err());
        assert!(parse_mac("-G", "b4:23:f9:28:fa:2d0").is_err());
    }

    #[test]
    fn integers_name_flag_and_range() {
        assert_eq!(parse_uint("--batch", "64", 1, 65535).unwrap(), 64);
        assert_eq!(
            err(parse_uint("--batch", "0", 1, 65535)),
            "--batch: expected a whole number from 1 to 65535, got \"0\""
        );
        assert_eq!(
            err(parse_uint("--rate", "-5", 0, u64::MAX)),
            "--rate: expected a whole number of at least 0, got \"-5\""
        );
        assert_eq!(
            err(parse_uint("--seed", "18446744073709551616", 0, u64::MAX)),
            "--seed: expected a whole number of at least 0, got \"18446744073709551616\""
        );
    }

    #[test]
    fn cores_fields_and_json() {
        assert_eq!(parse_cores("--cores", "0,2, 3").unwrap(), vec![0, 2, 3]);
        assert_eq!(err(parse_cores("--cores", "0,x")), "--cores: column 3: bad CPU number \"x\"");
        assert_eq!(parse_json("--user-metadata", "{\"a\": [1]}").unwrap()["a"][0], 1);
        assert_eq!(
            err(parse_json("--user-metadata", "{\"a\": }")),
            "--user-metadata: column 7: not valid JSON: expected value"
        );
    }

    fn resolve_args(items: &[&str]) -> Result<ScanConfig, String> {
        let argv: Vec<std::ffi::OsString> =
            std::iter::once("rzmap").chain(items.iter().copied()).map(Into::into).collect();
        let p = crate::args::parse(&argv).map_err(|e| e.to_string())?;
        resolve(&p.args, || Ok(42)).map_err(|e| e.to_string())
    }

    #[test]
    fn banner_flags() {
        let c = resolve_args(&["-p", "22"]).unwrap();
        assert_eq!(c.banner, None);
        let c = resolve_args(&["-p", "22", "--banner", "-c", "2"]).unwrap();
        let b = c.banner.clone().unwrap();
        assert_eq!((b.payload.len(), b.max_bytes, b.timeout_secs, b.idle_secs), (0, 1024, 5, 1));
        assert_eq!(b.connections, None);
        assert_eq!(c.cooldown_secs, 5, "the cooldown lasts at least the banner timeout");
        assert_eq!((b.capacity(10_000), b.capacity(100), b.capacity(0)), (62_500, 1024, 1_000_000));
        let c = resolve_args(&[
            "-p",
            "80",
            "--banner",
            "--banner-payload=text:GET / HTTP/1.0\r\n",
            "--banner-max",
            "7",
            "--banner-timeout",
            "2",
            "--banner-idle",
            "0",
            "--banner-connections",
            "10",
            "-c",
            "9",
        ])
        .unwrap();
        let b = c.banner.unwrap();
        assert_eq!(b.payload, b"GET / HTTP/1.0\r\n");
        assert_eq!((b.max_bytes, b.timeout_secs, b.idle_secs, b.capacity(1)), (7, 2, 0, 10));
        assert_eq!(c.cooldown_secs, 9);
        let c = resolve_args(&["-p", "1", "--banner", "--banner-payload", "hex:0d0a"]).unwrap();
        assert_eq!(c.banner.unwrap().payload, b"\r\n");

        for (args, want) in [
            (&["--banner-max", "5"][..], "--banner-max: needs --banner"),
            (&["--banner-payload", "text:x"][..], "--banner-payload: needs --banner"),
            (
                &["--banner", "-M", "icmp_echoscan"][..],
                "--banner: needs the tcp_synscan probe module (got icmp_echoscan)",
            ),
            (
                &["--banner", "--banner-max", "0"][..],
                "--banner-max: expected a whole number from 1 to 65535, got \"0\"",
            ),
            (
                &["--banner", "--banner-timeout", "0"][..],
                "--banner-timeout: expected a whole number from 1 to 3600, got \"0\"",
            ),
            (
                &["--banner", "--banner-connections", "2000000"][..],
                "--banner-connections: expected a whole number from 1 to 1000000, got \"2000000\"",
            ),
            (&["--banner", "--banner-payload", "hex:0g"][..], "--banner-payload: column 6:"),
            (&["--banner", "--banner-payload", "nope"][..], "--banner-payload: column 1:"),
        ] {
            let e = resolve_args(args).unwrap_err();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
        let long = format!("text:{}", "x".repeat(MAX_BANNER_PAYLOAD + 1));
        let e = resolve_args(&["--banner", "--banner-payload", &long]).unwrap_err();
        assert_eq!(
            e,
            "--banner-payload: the payload is 1401 bytes, more than the limit of 1400 bytes"
        );
    }

    #[test]
    fn defaults_match_zmap() {
        let c = resolve_args(&[]).unwrap();
        assert_eq!(c.rate, SendRate::Default);
        assert_eq!(c.batch, 64);
        assert_eq!(c.probes, 1);
        assert_eq!(c.cooldown_secs, 8);
        assert_eq!(c.retries, 10);
        assert_eq!((c.seed, c.seed_provided), (42, false));
        assert_eq!((c.shards, c.shard), (1, 0));
        assert_eq!(c.source_ports, (32768, 61000));
        assert_eq!(c.probe_module, "tcp_synscan");
        assert_eq!(c.probe_ttl, 64);
        assert_eq!(c.output_module, None);
        assert_eq!(c.output_file, Sink::Stdout);
        assert_eq!(c.output_fields, None);
        assert!(c.default_mode);
        assert_eq!(c.dedup_method, DedupMethod::Default);
        assert_eq!(c.dedup_window_size, 1_000_000);
        assert_eq!(c.verbosity, 3);
        assert_eq!(c.log, LogDest::Stderr);
        assert!(c.syslog && !c.quiet && !c.summary && !c.iplayer);
        assert_eq!(c.max_sendto_failures, None);
        assert_eq!(c.min_hitrate, 0.0);
        assert_eq!(c.sender_threads, None);
        assert_eq!(c.dryrun, DryRun::Off);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn values_are_resolved() {
        let c = resolve_args(&[
            "-p",
            "80,443",
            "-B",
            "10M",
            "--batch",
            "256",
            "-n",
            "0.1%",
            "-t",
            "0",
            "-N",
            "5",
            "-P",
            "2",
            "-c",
            "0",
            "-e",
            "7",
            "--shards",
            "4",
            "--shard",
            "3",
            "-s",
            "40000-40099",
            "-S",
            "198.18.0.1-198.18.0.2",
            "-G",
            "00:11:22:33:44:55",
            "--source-mac",
            "66:77:88:99:aa:bb",
            "-i",
            "veth0",
            "-X",
            "--fast-dryrun",
            "--probe-ttl",
            "255",
            "-o",
            "-",
            "-f",
            "*",
            "--dedup-method",
            "window",
            "--dedup-window-size",
            "10",
            "-v",
            "5",
            "-L",
            "/tmp/logs",
            "-m",
            "-",
            "-u",
            "st.csv",
            "--disable-syslog",
            "--user-metadata",
            "{\"k\": 1}",
            "--max-sendto-failures",
            "3",
            "--min-hitrate",
            "0.5",
            "-T",
            "255",
            "--cores",
            "0,1",
            "--validate-source-port",
            "disable",
            "198.18.0.0/24",
            "host.example",
        ])
        .unwrap();
        assert_eq!(c.target_ports, vec![80, 443]);
        assert_eq!(c.rate, SendRate::Bandwidth(10_000_000));
        assert_eq!(c.batch, 256);
        assert_eq!(c.max_targets, Some(MaxTargets::Percent(0.1)));
        assert_eq!(c.max_runtime, None);
        assert_eq!(c.max_results, Some(5));
        assert_eq!((c.probes, c.cooldown_secs, c.seed, c.seed_provided), (2, 0, 7, true));
        assert_eq!((c.shards, c.shard), (4, 3));
        assert_eq!(c.source_ports, (40000, 40099));
        assert_eq!(c.source_ips.len(), 2);
        assert_eq!(c.gateway_mac, Some([0, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert_eq!(c.source_mac, Some([0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]));
        assert_eq!(c.interface.as_deref(), Some("veth0"));
        assert!(c.iplayer);
        assert_eq!(c.send_backend, SendBackend::Auto);
        let ring = resolve_args(&["--send-backend=tx-ring"]).unwrap();
        assert_eq!(ring.send_backend, SendBackend::TxRing);
        let xdp = resolve_args(&["--send-backend=af-xdp"]).unwrap();
        assert_eq!(xdp.send_backend, SendBackend::AfXdp);
        let mmsg = resolve_args(&["--send-backend", "sendmmsg"]).unwrap();
        assert_eq!(mmsg.send_backend, SendBackend::Sendmmsg);
        assert_eq!(c.dryrun, DryRun::Fast);
        assert_eq!(c.probe_ttl, 255);
        assert_eq!(c.output_fields.as_deref(), Some("*"));
        assert!(!c.default_mode);
        assert_eq!(c.dedup_method, DedupMethod::Window);
        assert_eq!(c.dedup_window_size, 10);
        assert_eq!(c.verbosity, 5);
        assert_eq!(c.log, LogDest::Directory("/tmp/logs".into()));
        assert_eq!(c.metadata_file, Some(Sink::Stdout));
        assert_eq!(c.status_updates_file, Some(Sink::File("st.csv".into())));
        assert!(!c.syslog);
        assert_eq!(c.user_metadata, Some(serde_json::json!({"k": 1})));
        assert_eq!(c.max_sendto_failures, Some(3));
        assert_eq!(c.min_hitrate, 0.5);
        assert_eq!(c.sender_threads, Some(255));
        assert_eq!(c.cores, Some(vec![0, 1]));
        assert_eq!(c.validate_source_port, Some(false));
        assert_eq!(c.subnets, vec!["198.18.0.0/24", "host.example"]);
        // ScanConfig serialises (for metadata and debugging).
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["target_ports"], serde_json::json!([80, 443]));
    }

    #[test]
    fn default_mode_needs_none_of_o_f_and_filter() {
        let c = resolve_args(&["-p", "80,443"]).unwrap();
        assert!(c.default_mode);
        assert!(!resolve_args(&["--output-filter="]).unwrap().default_mode);
        assert!(!resolve_args(&["-O", "csv"]).unwrap().default_mode);
    }

    #[test]
    fn combination_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["-r", "5", "-B", "1M"], "--rate: --rate and --bandwidth cannot be used together"),
            (
                &["--shards", "2"],
                "--shards: sharding needs --seed, so that every shard walks the same permutation",
            ),
            (
                &["--shards", "2", "--shard", "2", "-e", "1"],
                "--shard: shard 2 does not exist with --shards 2 (shards are numbered from 0)",
            ),
            (
                &["--shard", "1"],
                "--shard: shard 1 does not exist with --shards 1 (shards are numbered from 0)",
            ),
            (
                &["-P", "3", "-s", "1000-1001"],
                "--probes: 3 probes per target need 3 source ports, but --source-port gives 2",
            ),
            (&["-P", "0"], "--probes: expected a whole number of at least 1, got \"0\""),
            (
                &["--batch", "65536"],
                "--batch: expected a whole number from 1 to 65535, got \"65536\"",
            ),
            (&["-T", "0"], "--sender-threads: expected a whole number from 1 to 255, got \"0\""),
            (
                &["-T", "256"],
                "--sender-threads: expected a whole number from 1 to 255, got \"256\"",
            ),
            (&["-v", "6"], "--verbosity: expected a whole number from 0 to 5, got \"6\""),
            (
                &["--send-backend", "xdp"],
                "--send-backend: unknown send back end \"xdp\" (expected auto, af-xdp, sendmmsg or tx-ring)",
            ),
            (
                &["--send-backend=tx-ring", "-X"],
                "--send-backend: tx-ring sends Ethernet frames and cannot be used with --iplayer",
            ),
            (
                &["--probe-ttl", "0"],
                "--probe-ttl: expected a whole number from 1 to 255, got \"0\"",
            ),
            (
                &["-l", "a", "-L", "b"],
                "--log-file: --log-file and --log-directory cannot be used together",
            ),
            (
                &["-d", "--fast-dryrun"],
                "--fast-dryrun: --dryrun and --fast-dryrun cannot be used together",
            ),
            (
                &["--user-metadata", "{x"],
                "--user-metadata: column 2: not valid JSON: key must be a string",
            ),
            (
                &["--dedup-method", "lru"],
                "--dedup-method: unknown method \"lru\" (expected default, none, full or window)",
            ),
            (
                &["--dedup-method", "full", "-p", "1,2"],
                "--dedup-method: full deduplication cannot be used with more than one target port; use window",
            ),
            (
                &["--validate-source-port", "yes"],
                "--validate-source-port: expected \"enable\" or \"disable\", got \"yes\"",
            ),
            (
                &["--max-sendto-failures", "-2"],
                "--max-sendto-failures: expected -1 (no limit) or a whole number, got \"-2\"",
            ),
            (
                &["--min-hitrate", "x"],
                "--min-hitrate: expected a percentage from 0 to 100, got \"x\"",
            ),
            (
                &["-i", "a-very-long-interface-name"],
                "--interface: \"a-very-long-interface-name\" is not an interface name (at most 15 bytes, no '/' or spaces)",
            ),
            (&["-M", ""], "--probe-module: the value is empty"),
        ];
        for (argv, want) in cases {
            assert_eq!(resolve_args(argv).unwrap_err(), *want, "{argv:?}");
        }
    }

    #[test]
    fn many_probes_over_few_ports_warn() {
        let c = resolve_args(&["-P", "2", "-s", "1000-1010"]).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("2 probes per target over 11 source ports"));
        assert!(resolve_args(&["-P", "2", "-s", "1000-1020"]).unwrap().warnings.is_empty());
    }

    #[test]
    fn os_seed_is_random() {
        assert_ne!(os_random_seed().unwrap(), os_random_seed().unwrap());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_port_list("-p", &s);
            let _ = parse_port_range("-s", &s);
            let _ = parse_source_ips("-S", &s);
            let _ = parse_bandwidth("-B", &s);
            let _ = parse_max_targets("-n", &s);
            let _ = parse_mac("-G", &s);
            let _ = parse_cores("--cores", &s);
            let _ = parse_json("--user-metadata", &s);
        }

        #[test]
        fn random_command_lines_never_panic(
            items in proptest::collection::vec(
                prop_oneof![
                    Just("-p".to_string()), Just("-r".to_string()), Just("-B".to_string()),
                    Just("-n".to_string()), Just("-s".to_string()), Just("-S".to_string()),
                    Just("-P".to_string()), Just("--shards".to_string()),
                    Just("--shard".to_string()), Just("-e".to_string()), Just("-G".to_string()),
                    Just("--user-metadata".to_string()), Just("--cores".to_string()),
                    Just("-T".to_string()), Just("--batch".to_string()), Just("-d".to_string()),
                    "\\PC{0,12}",
                ],
                0..12,
            )
        ) {
            let argv: Vec<std::ffi::OsString> =
                std::iter::once("rzmap".to_string()).chain(items).map(Into::into).collect();
            if let Ok(p) = crate::args::parse(&argv) {
                let _ = resolve(&p.args, || Ok(0));
            }
        }

        #[test]
        fn port_lists_round_trip(ports in proptest::collection::vec(any::<u16>(), 1..20)) {
            let text = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_port_list("-p", &text).unwrap(), ports);
        }
    }
}
