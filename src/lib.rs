//! The rzmap application: command line, config files, resolution into a scan configuration,
//! and the wiring of the core and the I/O layer. `main.rs` is a thin wrapper around [`run`].
//!
//! Option precedence: values from the command line win over the config file (`-C FILE`, or
//! the default file [`conffile::DEFAULT_CONFIG_PATH`] when it exists; the environment
//! variable [`conffile::DEFAULT_CONFIG_ENV`] names another default, empty for none). Two
//! options that exclude each other (`-r`/`-B`, `-l`/`-L`, `-d`/`--fast-dryrun`) are an error
//! when both come from the same source; when one comes from the command line and the other
//! from a config file, the command line's wins.
//!
//! Flow of [`run`]: parse the command line alone (to find `-C`), read the config file, parse
//! both together, handle listings, validate into a [`config::ScanConfig`], build the
//! [`plan::ScanPlan`] (probe module, ports, output plan, address space), then run the scan
//! ([`scan::run`]: dry runs and live scans share one assembly).
//!
//! Debugging aid: with the environment variable [`DUMP_CONFIG_ENV`] set to `1`, rzmap prints
//! the validated [`config::ScanConfig`] as JSON on standard output and exits without scanning.

pub mod args;
pub mod conffile;
pub mod config;
pub mod listing;
pub mod plan;
pub mod rst_guard;
pub mod scan;
pub mod syslog;
pub mod targets;

use crate::args::Parsed;
use crate::conffile::{ConfigFile, default_config_path, expand_tilde};
use rzmap_core::error::{InputError, Position};
use rzmap_core::monitor::Logger;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

/// Environment variable that makes rzmap print its resolved configuration and exit.
pub const DUMP_CONFIG_ENV: &str = "RZMAP_DUMP_CONFIG";

/// Why a run stopped early.
enum Failure {
    /// A bad input: printed as `rzmap: error: <error>`.
    Input(InputError),
    /// clap's own message (usage errors, and also `--help` / `--version` output).
    Clap(clap::Error),
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure::Input(e)
    }
}

impl From<clap::Error> for Failure {
    fn from(e: clap::Error) -> Self {
        Failure::Clap(e)
    }
}

/// Runs rzmap with a full argv (program name first) and returns the process exit code:
/// 0 on success, 1 on any error (reported on one line of standard error; clap's usage
/// errors keep clap's format).
pub fn run(argv: Vec<OsString>) -> i32 {
    match run_inner(argv) {
        Ok(code) => code,
        Err(Failure::Input(e)) => {
            let _ = writeln!(std::io::stderr(), "rzmap: error: {e}");
            1
        }
        Err(Failure::Clap(e)) => {
            let _ = e.print();
            if e.use_stderr() { 1 } else { 0 }
        }
    }
}

/// Reads the config file named by `-C`, or the default one when it exists.
fn load_config(cli: &Parsed) -> Result<Option<ConfigFile>, InputError> {
    match &cli.args.config {
        Some(path) => {
            if path.trim().is_empty() {
                return Err(InputError::new("--config", "the value is empty"));
            }
            ConfigFile::load(Path::new(&expand_tilde(path))).map(Some)
        }
        None => match default_config_path() {
            Some(p) if p.exists() => ConfigFile::load(&p).map(Some),
            _ => Ok(None),
        },
    }
}

/// Parses the command line and the config file into the final options.
fn parse_all(argv: &[OsString]) -> Result<(Parsed, Parsed, Option<ConfigFile>), Failure> {
    let cli = args::parse(argv)?;
    let conf = load_config(&cli)?;
    let merged = match &conf {
        None => cli.clone(),
        Some(c) => {
            let mut all = Vec::with_capacity(argv.len() + c.entries.len() + 1);
            all.push(argv.first().cloned().unwrap_or_else(|| OsString::from("rzmap")));
            all.extend(c.to_argv());
            all.extend(argv.iter().skip(1).cloned());
            args::parse(&all)?
        }
    };
    Ok((cli, merged, conf))
}

/// When two exclusive options come from different sources, keeps the command line's.
fn prefer_command_line(cli: &Parsed, args: &mut args::Args) {
    if args.rate.is_some() && args.bandwidth.is_some() {
        match (cli.given("rate"), cli.given("bandwidth")) {
            (true, false) => args.bandwidth = None,
            (false, true) => args.rate = None,
            _ => {}
        }
    }
    if args.log_file.is_some() && args.log_directory.is_some() {
        match (cli.given("log_file"), cli.given("log_directory")) {
            (true, false) => args.log_directory = None,
            (false, true) => args.log_file = None,
            _ => {}
        }
    }
    if args.dryrun && args.fast_dryrun {
        match (cli.given("dryrun"), cli.given("fast_dryrun")) {
            (true, false) => args.fast_dryrun = false,
            (false, true) => args.dryrun = false,
            _ => {}
        }
    }
}

/// Re-attributes an error about an option that came from the config file to its line there.
fn attribute(e: InputError, cli: &Parsed, conf: Option<&ConfigFile>) -> InputError {
    let Some(conf) = conf else { return e };
    let Some(opt) = args::find_flag(&e.input) else { return e };
    if cli.given(&opt.id) {
        return e;
    }
    match conf.line_of(&opt.id) {
        Some(line) => InputError {
            input: conf.path.clone(),
            position: Position::Line(line),
            message: e.to_string(),
        },
        None => e,
    }
}

/// Prints clap's help followed by the help of the probe and output modules named on the
/// command line (ZMap does the same).
fn print_help(help: &clap::Error, argv: &[OsString]) -> i32 {
    let rest: Vec<OsString> =
        argv.iter().filter(|a| *a != "-h" && *a != "--help").cloned().collect();
    let (probe_name, output_name) = match args::parse(&rest) {
        Ok(p) => (p.args.probe_module, p.args.output_module),
        Err(_) => (None, None),
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", help.render());
    let _ = out.write_all(
        listing::module_help(
            probe_name.as_deref().unwrap_or(rzmap_core::probe::DEFAULT_MODULE),
            output_name.as_deref().unwrap_or("csv"),
        )
        .as_bytes(),
    );
    0
}

/// The logger `-v`, `-l` and `-L` ask for. `-L DIR` writes
/// `DIR/rzmap-%Y-%m-%dT%H%M%S%z.log` (ZMap's name pattern with rzmap's name).
fn open_logger(config: &config::ScanConfig) -> Result<Logger, InputError> {
    let path = match &config.log {
        config::LogDest::Stderr => return Ok(Logger::stderr(config.verbosity)),
        config::LogDest::File(p) => p.clone(),
        config::LogDest::Directory(d) => d.join(format!(
            "rzmap-{}.log",
            rzmap_core::monitor::now_local().format("%Y-%m-%dT%H%M%S%z")
        )),
    };
    let flag = match config.log {
        config::LogDest::Directory(_) => "--log-directory",
        _ => "--log-file",
    };
    let file =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
            InputError::new(flag, format!("cannot open \"{}\": {e}", path.display()))
        })?;
    Ok(Logger::new(config.verbosity, false, Box::new(file)))
}

/// Writes to standard output, ignoring errors (a closed pipe is not worth a panic).
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn run_inner(argv: Vec<OsString>) -> Result<i32, Failure> {
    let (cli, merged, conf) = match parse_all(&argv) {
        Err(Failure::Clap(e)) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Ok(print_help(&e, &argv));
        }
        other => other?,
    };
    let mut args = merged.args;
    prefer_command_line(&cli, &mut args);

    if args.list_probe_modules {
        print_stdout(&listing::probe_modules());
        return Ok(0);
    }
    if args.list_output_modules {
        print_stdout(&listing::output_modules());
        return Ok(0);
    }
    if args.list_output_fields {
        let module = args.probe_module.as_deref().unwrap_or("tcp_synscan");
        let text = if args.banner && module == "tcp_synscan" {
            listing::banner_output_fields()
        } else {
            listing::output_fields(module).map_err(|e| attribute(e, &cli, conf.as_ref()))?
        };
        print_stdout(&text);
        return Ok(0);
    }

    let config = config::resolve(&args, config::os_random_seed)
        .map_err(|e| attribute(e, &cli, conf.as_ref()))?;
    let mut logger = open_logger(&config)?;
    // Syslog as ZMap (on unless --disable-syslog), but never in a dry run: it opens no socket.
    if config.syslog
        && matches!(config.dryrun, config::DryRun::Off)
        && let Some(sys) = syslog::Syslog::connect(std::path::Path::new(syslog::DEFAULT_SOCKET))
    {
        logger = logger.with_system_log(Box::new(sys));
    }
    for w in &config.warnings {
        logger.warn("rzmap", format_args!("{w}"));
    }
    if std::env::var_os(DUMP_CONFIG_ENV).is_some_and(|v| v == "1") {
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| InputError::new(DUMP_CONFIG_ENV, e.to_string()))?;
        print_stdout(&format!("{json}\n"));
        return Ok(0);
    }
    if config.netmap_wait_ping.is_some() {
        return Err(attribute(
            InputError::new(
                "--netmap-wait-ping",
                "not supported: rzmap has no netmap back end (the option only matters there)",
            ),
            &cli,
            conf.as_ref(),
        )
        .into());
    }
    if config.probe_module == "udp" && config.probe_args.as_deref() == Some("template-fields") {
        print_stdout(&rzmap_core::probe::template::template_fields_listing());
        return Ok(0);
    }
    let plan = plan::plan(config, &targets::system_resolver)
        .map_err(|e| attribute(e, &cli, conf.as_ref()))?;
    for w in &plan.targets.warnings {
        logger.warn("targets", format_args!("{w}"));
    }
    // Dry runs and live scans: one assembly, different links.
    Ok(scan::run(plan, logger)?)
}
