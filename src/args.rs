//! rzmap's command-line options: ZMap 4's names, short flags and meanings, plus the options
//! ZMap 2 documented (`--target-port`, `--blacklist-file`, `--whitelist-file`, `-g/--summary`).
//!
//! Values are kept as the user's strings here; [`crate::config`] validates them and turns them
//! into a [`crate::config::ScanConfig`], so every error can name the flag and the column.
//! Repeating a single-value option is allowed and the last occurrence wins
//! (`args_override_self`): that is how config-file values placed before the command line
//! are overridden by it.

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;

const BASIC: &str = "Basic arguments";
const SCAN: &str = "Scan options";
const SHARD: &str = "Scan sharding";
const NET: &str = "Network options";
const PROBE: &str = "Probe modules";
const OUTPUT: &str = "Results output";
const DEDUP: &str = "Response deduplication";
const LOGGING: &str = "Logging and metadata";
const MORE: &str = "Additional options";
const BANNER: &str = "Banner grabbing (rzmap extension; tcp_synscan only)";

/// Every option rzmap accepts, as typed by the user.
#[derive(Parser, Debug, Clone, Default, PartialEq)]
#[command(
    name = "rzmap",
    version,
    about = "A fast single-packet network scanner for Internet-wide surveys, compatible with ZMap.",
    long_about = None,
    args_override_self = true,
    max_term_width = 100,
    after_help = "Positional SUBNETS are CIDR prefixes, single addresses or host names (every \
                  IPv4 address of a host name is scanned); they restrict the scan like an \
                  allowlist.\n\nWithout -C, options are also read from /etc/rzmap/rzmap.conf when \
                  that file exists (the RZMAP_DEFAULT_CONFIG environment variable names another \
                  default file; set it to an empty string to read none). The command line wins \
                  over config files."
)]
pub struct Args {
    // ----- Basic arguments -----
    /// Target ports: a comma list of ports and a-b ranges, or `*` for all ports
    #[arg(short = 'p', long = "target-ports", visible_alias = "target-port", value_name = "PORTS", help_heading = BASIC)]
    pub target_ports: Option<String>,

    /// Where to write results (`-` or unset: standard output)
    #[arg(short = 'o', long = "output-file", value_name = "FILE", help_heading = BASIC)]
    pub output_file: Option<String>,

    /// File of prefixes never to scan (replaces the built-in reserved-space blocklist)
    #[arg(short = 'b', long = "blocklist-file", visible_alias = "blacklist-file", value_name = "FILE", help_heading = BASIC)]
    pub blocklist_file: Option<String>,

    /// File of prefixes to limit the scan to
    #[arg(short = 'w', long = "allowlist-file", visible_alias = "whitelist-file", value_name = "FILE", help_heading = BASIC)]
    pub allowlist_file: Option<String>,

    /// File of individual addresses to scan (the walk still covers the allowed space)
    #[arg(short = 'I', long = "list-of-ips-file", value_name = "FILE", help_heading = BASIC)]
    pub list_of_ips_file: Option<String>,

    /// Prefixes, addresses or host names to scan
    #[arg(value_name = "SUBNETS", action = ArgAction::Append)]
    pub subnets: Vec<String>,

    // ----- Scan options -----
    /// Send rate in packets per second, every probe counted (default 10000; 0: unlimited)
    #[arg(short = 'r', long = "rate", value_name = "PPS", help_heading = SCAN)]
    pub rate: Option<String>,

    /// Send rate in bits per second; G, M and K suffixes are powers of ten (e.g. 10M)
    #[arg(short = 'B', long = "bandwidth", value_name = "BPS", help_heading = SCAN)]
    pub bandwidth: Option<String>,

    /// Packets handed to the kernel per send call, 1..65535 (default 64)
    #[arg(long = "batch", value_name = "N", help_heading = SCAN)]
    pub batch: Option<String>,

    /// Stop after this many targets (address-port pairs), or a percentage such as 0.1%
    #[arg(short = 'n', long = "max-targets", value_name = "N|N%", help_heading = SCAN)]
    pub max_targets: Option<String>,

    /// Stop sending after this many seconds
    #[arg(short = 't', long = "max-runtime", value_name = "SECS", help_heading = SCAN)]
    pub max_runtime: Option<String>,

    /// Stop once this many results have passed the output filter
    #[arg(short = 'N', long = "max-results", value_name = "N", help_heading = SCAN)]
    pub max_results: Option<String>,

    /// Probes sent to each target (default 1)
    #[arg(short = 'P', long = "probes", value_name = "N", help_heading = SCAN)]
    pub probes: Option<String>,

    /// Seconds to keep receiving after the last probe was sent (default 8)
    #[arg(short = 'c', long = "cooldown-time", value_name = "SECS", help_heading = SCAN)]
    pub cooldown_time: Option<String>,

    /// Permutation seed: the same seed gives the same target order (default: random)
    #[arg(short = 'e', long = "seed", value_name = "N", help_heading = SCAN)]
    pub seed: Option<String>,

    /// Extra attempts for a batch the kernel refused (default 10)
    #[arg(long = "retries", value_name = "N", help_heading = SCAN)]
    pub retries: Option<String>,

    /// Send nothing: print each probe as text on standard output
    #[arg(short = 'd', long = "dryrun", action = ArgAction::SetTrue, help_heading = SCAN)]
    pub dryrun: bool,

    /// Send nothing: write 6 bytes per probe (address and port, network order) to stdout
    #[arg(long = "fast-dryrun", action = ArgAction::SetTrue, help_heading = SCAN)]
    pub fast_dryrun: bool,

    // ----- Sharding -----
    /// Number of shards the scan is split into, 1..65535 (needs --seed)
    #[arg(long = "shards", value_name = "N", help_heading = SHARD)]
    pub shards: Option<String>,

    /// Which shard this instance scans, counted from 0
    #[arg(long = "shard", value_name = "N", help_heading = SHARD)]
    pub shard: Option<String>,

    // ----- Network options -----
    /// Source port or a-b range of source ports (default 32768-61000)
    #[arg(short = 's', long = "source-port", value_name = "PORT|A-B", help_heading = NET)]
    pub source_port: Option<String>,

    /// Check that replies come from a target port: enable or disable (default: per module)
    #[arg(long = "validate-source-port", value_name = "enable|disable", help_heading = NET)]
    pub validate_source_port: Option<String>,

    /// Source addresses: single addresses, a-b ranges and comma lists, at most 256
    #[arg(short = 'S', long = "source-ip", value_name = "IPS", help_heading = NET)]
    pub source_ip: Option<String>,

    /// Gateway MAC address, when it cannot be found automatically
    #[arg(short = 'G', long = "gateway-mac", value_name = "MAC", help_heading = NET)]
    pub gateway_mac: Option<String>,

    /// Source MAC address (default: the interface's)
    #[arg(long = "source-mac", value_name = "MAC", help_heading = NET)]
    pub source_mac: Option<String>,

    /// Network interface (default: the one holding the default route)
    #[arg(short = 'i', long = "interface", value_name = "NAME", help_heading = NET)]
    pub interface: Option<String>,

    /// Send bare IP packets and let the kernel add the link layer (VPN and tun links)
    #[arg(short = 'X', long = "iplayer", action = ArgAction::SetTrue, help_heading = NET)]
    pub iplayer: bool,

    /// rzmap: how frames reach the kernel: auto (default; AF_XDP for each sender thread
    /// whose interface queue takes it, else sendmmsg), af-xdp, sendmmsg or tx-ring
    /// (see BENCHMARKS.md "Send back ends")
    #[arg(long = "send-backend", value_name = "NAME", help_heading = NET)]
    pub send_backend: Option<String>,

    /// netmap only: wait for an echo reply from this address (not supported by rzmap)
    #[arg(long = "netmap-wait-ping", value_name = "IP", help_heading = NET)]
    pub netmap_wait_ping: Option<String>,

    // ----- Probe modules -----
    /// Probe module (default tcp_synscan)
    #[arg(short = 'M', long = "probe-module", value_name = "NAME", help_heading = PROBE)]
    pub probe_module: Option<String>,

    /// Arguments for the probe module
    #[arg(long = "probe-args", value_name = "ARGS", help_heading = PROBE)]
    pub probe_args: Option<String>,

    /// IP time-to-live of probes, 1..255 (default 64)
    #[arg(long = "probe-ttl", value_name = "N", help_heading = PROBE)]
    pub probe_ttl: Option<String>,

    /// Print the available probe modules and exit
    #[arg(long = "list-probe-modules", action = ArgAction::SetTrue, help_heading = PROBE)]
    pub list_probe_modules: bool,

    // ----- Results output -----
    /// Fields to output, comma separated, or `*` for all (default saddr)
    #[arg(short = 'f', long = "output-fields", value_name = "FIELDS", help_heading = OUTPUT)]
    pub output_fields: Option<String>,

    /// Output module (default csv)
    #[arg(short = 'O', long = "output-module", value_name = "NAME", help_heading = OUTPUT)]
    pub output_module: Option<String>,

    /// Arguments for the output module
    #[arg(long = "output-args", value_name = "ARGS", help_heading = OUTPUT)]
    pub output_args: Option<String>,

    /// Only output results matching this expression ("" outputs every validated reply)
    #[arg(long = "output-filter", value_name = "EXPR", help_heading = OUTPUT)]
    pub output_filter: Option<String>,

    /// Print the available output modules and exit
    #[arg(long = "list-output-modules", action = ArgAction::SetTrue, help_heading = OUTPUT)]
    pub list_output_modules: bool,

    /// Print the fields the selected probe module produces and exit
    #[arg(long = "list-output-fields", action = ArgAction::SetTrue, help_heading = OUTPUT)]
    pub list_output_fields: bool,

    /// Leave out the CSV header line
    #[arg(long = "no-header-row", action = ArgAction::SetTrue, help_heading = OUTPUT)]
    pub no_header_row: bool,

    // ----- Deduplication -----
    /// How repeated replies are recognised: default, none, full or window
    #[arg(long = "dedup-method", value_name = "METHOD", help_heading = DEDUP)]
    pub dedup_method: Option<String>,

    /// Number of recent responders remembered by the window method (default 1000000)
    #[arg(long = "dedup-window-size", value_name = "N", help_heading = DEDUP)]
    pub dedup_window_size: Option<String>,

    // ----- Logging and metadata -----
    /// Log detail, 0 (fatal only) to 5 (trace) (default 3)
    #[arg(short = 'v', long = "verbosity", value_name = "N", help_heading = LOGGING)]
    pub verbosity: Option<String>,

    /// Write the log to this file
    #[arg(short = 'l', long = "log-file", value_name = "FILE", help_heading = LOGGING)]
    pub log_file: Option<String>,

    /// Write the log to a time-stamped file in this directory
    #[arg(short = 'L', long = "log-directory", value_name = "DIR", help_heading = LOGGING)]
    pub log_directory: Option<String>,

    /// Write scan metadata as JSON to this file at the end (`-` for standard output)
    #[arg(short = 'm', long = "metadata-file", value_name = "FILE", help_heading = LOGGING)]
    pub metadata_file: Option<String>,

    /// Write a CSV line of progress counters to this file every second
    #[arg(short = 'u', long = "status-updates-file", value_name = "FILE", help_heading = LOGGING)]
    pub status_updates_file: Option<String>,

    /// Do not print the once-a-second status line
    #[arg(short = 'q', long = "quiet", action = ArgAction::SetTrue, help_heading = LOGGING)]
    pub quiet: bool,

    /// Print the configuration and a summary of the results at the end
    #[arg(short = 'g', long = "summary", action = ArgAction::SetTrue, help_heading = LOGGING)]
    pub summary: bool,

    /// Do not log to syslog
    #[arg(long = "disable-syslog", action = ArgAction::SetTrue, help_heading = LOGGING)]
    pub disable_syslog: bool,

    /// Free text stored in the metadata
    #[arg(long = "notes", value_name = "TEXT", help_heading = LOGGING)]
    pub notes: Option<String>,

    /// A JSON value stored in the metadata
    #[arg(long = "user-metadata", value_name = "JSON", help_heading = LOGGING)]
    pub user_metadata: Option<String>,

    // ----- Additional options -----
    /// Read options from this config file (default /etc/rzmap/rzmap.conf when it exists)
    #[arg(short = 'C', long = "config", value_name = "FILE", help_heading = MORE)]
    pub config: Option<String>,

    /// Abort once more than this many sends have failed (default -1: never)
    #[arg(long = "max-sendto-failures", value_name = "N", allow_negative_numbers = true, help_heading = MORE)]
    pub max_sendto_failures: Option<String>,

    /// Abort when the hit rate stays below this percentage (default 0: never)
    #[arg(long = "min-hitrate", value_name = "RATE", help_heading = MORE)]
    pub min_hitrate: Option<String>,

    /// Sender threads, 1..255 (default: up to 4, one core left free)
    #[arg(short = 'T', long = "sender-threads", value_name = "N", help_heading = MORE)]
    pub sender_threads: Option<String>,

    /// Pin threads to these CPU cores, comma separated
    #[arg(long = "cores", value_name = "LIST", help_heading = MORE)]
    pub cores: Option<String>,

    /// Skip allowlist and blocklist entries that cannot be parsed
    #[arg(long = "ignore-blocklist-errors", visible_alias = "ignore-blacklist-errors", action = ArgAction::SetTrue, help_heading = MORE)]
    pub ignore_blocklist_errors: bool,

    // ----- Banner grabbing (rzmap extension) -----
    /// Complete the handshake of every SYN-ACK from user space and record the first bytes the
    /// server sends (adds the fields data and banner_class; needs -M tcp_synscan and root for
    /// an nftables rule that keeps the kernel from resetting these connections)
    #[arg(long = "banner", action = ArgAction::SetTrue, help_heading = BANNER)]
    pub banner: bool,

    /// Bytes sent with the handshake's ACK: text:STRING, hex:HEXDIGITS or file:PATH (at most
    /// 1400 bytes; default none)
    #[arg(long = "banner-payload", value_name = "PAYLOAD", help_heading = BANNER)]
    pub banner_payload: Option<String>,

    /// Bytes kept per connection, 1..65535 (default 1024)
    #[arg(long = "banner-max", value_name = "BYTES", help_heading = BANNER)]
    pub banner_max: Option<String>,

    /// Seconds a connection may last from its SYN-ACK, 1..3600 (default 5; the cooldown is at
    /// least this long)
    #[arg(long = "banner-timeout", value_name = "SECS", help_heading = BANNER)]
    pub banner_timeout: Option<String>,

    /// Seconds without a new byte after which a connection that sent data is finished, 0..3600
    /// (default 1; 0: only --banner-timeout)
    #[arg(long = "banner-idle", value_name = "SECS", help_heading = BANNER)]
    pub banner_idle: Option<String>,

    /// Connections kept at once, 1..1000000 (default rate x timeout x 1.25, at least 1024); the
    /// oldest is finished early when full
    #[arg(long = "banner-connections", value_name = "N", help_heading = BANNER)]
    pub banner_connections: Option<String>,
}

/// The parsed options together with clap's matches (which know where each value came from).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The options.
    pub args: Args,
    /// clap's matches, for [`Parsed::given`].
    pub matches: clap::ArgMatches,
}

impl Parsed {
    /// True when the option with this clap id (the field name, e.g. `rate`) was given.
    pub fn given(&self, id: &str) -> bool {
        matches!(
            self.matches.try_contains_id(id),
            Ok(true) if self.matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        )
    }
}

/// Parses an argv (program name first) with clap.
pub fn parse(argv: &[OsString]) -> Result<Parsed, clap::Error> {
    let matches = Args::command().try_get_matches_from(argv)?;
    let args = Args::from_arg_matches(&matches)?;
    Ok(Parsed { args, matches })
}

/// One option as a config file may name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionInfo {
    /// clap's id (the field name, e.g. `target_ports`).
    pub id: String,
    /// The canonical long name (e.g. `target-ports`).
    pub long: String,
    /// Whether the option takes a value (false for bare flags such as `quiet`).
    pub takes_value: bool,
}

/// Looks up an option by a long name or alias (`target-port` finds `target-ports`).
/// `help` and `version` are not options in this sense and are not found.
pub fn find_option(name: &str) -> Option<OptionInfo> {
    let cmd = Args::command();
    cmd.get_arguments().find_map(|a| {
        let long = a.get_long()?;
        let matches_name = long == name || a.get_all_aliases().is_some_and(|al| al.contains(&name));
        if !matches_name || long == "help" || long == "version" {
            return None;
        }
        Some(OptionInfo {
            id: a.get_id().to_string(),
            long: long.to_string(),
            takes_value: a.get_action().takes_values(),
        })
    })
}

/// Finds the option of a long name given as `--name`, for attributing errors to config lines.
pub fn find_flag(flag: &str) -> Option<OptionInfo> {
    flag.strip_prefix("--").and_then(find_option)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<OsString> {
        std::iter::once("rzmap").chain(items.iter().copied()).map(OsString::from).collect()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn long_and_short_names_match_zmap() {
        let p = parse(&argv(&[
            "-p",
            "80,443",
            "-o",
            "out.csv",
            "-b",
            "bl",
            "-w",
            "al",
            "-I",
            "ips",
            "-r",
            "100",
            "-n",
            "5",
            "-t",
            "9",
            "-N",
            "3",
            "-P",
            "2",
            "-c",
            "1",
            "-e",
            "7",
            "-d",
            "-s",
            "40000",
            "-S",
            "198.18.0.1",
            "-G",
            "00:11:22:33:44:55",
            "-i",
            "eth0",
            "-X",
            "-M",
            "udp",
            "-f",
            "saddr",
            "-O",
            "json",
            "-v",
            "4",
            "-l",
            "log",
            "-m",
            "meta",
            "-u",
            "status",
            "-q",
            "-g",
            "-T",
            "2",
            "198.18.0.0/24",
        ]))
        .unwrap();
        let a = p.args;
        assert_eq!(a.target_ports.as_deref(), Some("80,443"));
        assert_eq!(a.output_file.as_deref(), Some("out.csv"));
        assert_eq!(a.blocklist_file.as_deref(), Some("bl"));
        assert_eq!(a.allowlist_file.as_deref(), Some("al"));
        assert_eq!(a.list_of_ips_file.as_deref(), Some("ips"));
        assert_eq!(a.rate.as_deref(), Some("100"));
        assert_eq!(a.max_targets.as_deref(), Some("5"));
        assert_eq!(a.max_runtime.as_deref(), Some("9"));
        assert_eq!(a.max_results.as_deref(), Some("3"));
        assert_eq!(a.probes.as_deref(), Some("2"));
        assert_eq!(a.cooldown_time.as_deref(), Some("1"));
        assert_eq!(a.seed.as_deref(), Some("7"));
        assert!(a.dryrun && a.iplayer && a.quiet && a.summary);
        assert_eq!(a.source_port.as_deref(), Some("40000"));
        assert_eq!(a.source_ip.as_deref(), Some("198.18.0.1"));
        assert_eq!(a.gateway_mac.as_deref(), Some("00:11:22:33:44:55"));
        assert_eq!(a.interface.as_deref(), Some("eth0"));
        assert_eq!(a.probe_module.as_deref(), Some("udp"));
        assert_eq!(a.output_fields.as_deref(), Some("saddr"));
        assert_eq!(a.output_module.as_deref(), Some("json"));
        assert_eq!(a.verbosity.as_deref(), Some("4"));
        assert_eq!(a.log_file.as_deref(), Some("log"));
        assert_eq!(a.metadata_file.as_deref(), Some("meta"));
        assert_eq!(a.status_updates_file.as_deref(), Some("status"));
        assert_eq!(a.sender_threads.as_deref(), Some("2"));
        assert_eq!(a.subnets, vec!["198.18.0.0/24"]);
    }

    #[test]
    fn zmap2_aliases_are_accepted() {
        let p = parse(&argv(&[
            "--target-port=443",
            "--blacklist-file=b",
            "--whitelist-file=w",
            "--summary",
        ]))
        .unwrap();
        assert_eq!(p.args.target_ports.as_deref(), Some("443"));
        assert_eq!(p.args.blocklist_file.as_deref(), Some("b"));
        assert_eq!(p.args.allowlist_file.as_deref(), Some("w"));
        assert!(p.args.summary);
    }

    #[test]
    fn last_occurrence_wins_and_flags_may_repeat() {
        let p =
            parse(&argv(&["-r", "1", "--rate=2", "-q", "--quiet", "-p", "1", "-p", "2"])).unwrap();
        assert_eq!(p.args.rate.as_deref(), Some("2"));
        assert_eq!(p.args.target_ports.as_deref(), Some("2"));
        assert!(p.args.quiet);
    }

    #[test]
    fn negative_sendto_failures_and_empty_filter_are_values() {
        let p = parse(&argv(&["--max-sendto-failures", "-1", "--output-filter="])).unwrap();
        assert_eq!(p.args.max_sendto_failures.as_deref(), Some("-1"));
        assert_eq!(p.args.output_filter.as_deref(), Some(""));
        let p = parse(&argv(&["-o", "-"])).unwrap();
        assert_eq!(p.args.output_file.as_deref(), Some("-"));
    }

    #[test]
    fn given_reports_only_user_supplied_options() {
        let p = parse(&argv(&["-r", "5"])).unwrap();
        assert!(p.given("rate"));
        assert!(!p.given("bandwidth"));
        assert!(!p.given("quiet"));
        assert!(!p.given("no_such_id"));
    }

    #[test]
    fn options_are_found_by_long_name_and_alias() {
        let o = find_option("target-port").unwrap();
        assert_eq!(
            (o.id.as_str(), o.long.as_str(), o.takes_value),
            ("target_ports", "target-ports", true)
        );
        let o = find_option("quiet").unwrap();
        assert!(!o.takes_value);
        assert_eq!(find_option("blacklist-file").unwrap().long, "blocklist-file");
        assert!(find_option("help").is_none());
        assert!(find_option("version").is_none());
        assert!(find_option("nonsense").is_none());
        assert_eq!(find_flag("--rate").unwrap().id, "rate");
        assert!(find_flag("rate").is_none());
    }

    #[test]
    fn seed_is_e_and_source_port_is_s() {
        let p = parse(&argv(&["-e", "3", "-s", "4"])).unwrap();
        assert_eq!(p.args.seed.as_deref(), Some("3"));
        assert_eq!(p.args.source_port.as_deref(), Some("4"));
    }
}
