//! `rzmap-lab`: build, inspect and use the namespace lab from the command line.
//!
//! - `serve`: the responders (run inside the net namespace by the library).
//! - `probe`: kernel-socket checker (run inside the scanner namespace).
//! - `up` / `down`: keep a lab around for manual work.
//! - `demo`: build a lab, run rzmap (or any ZMap-compatible binary) in it, compare with truth.

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use rzmap_lab::probe::{ProbeConfig, probe_all};
use rzmap_lab::serve::{Responder, ServeConfig};
use rzmap_lab::{Lab, LabSpec, Prefix, ResponderMode, Shares};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "rzmap-lab", about = "A simulated Internet in network namespaces for rzmap")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the TCP/UDP responders in the current network namespace until signalled.
    Serve {
        #[arg(long)]
        tcp_port: u16,
        #[arg(long)]
        udp_port: u16,
        /// Banner written to each connection on the TCP port.
        #[arg(long)]
        greeting: Option<String>,
        /// Also serve a one-line HTTP/1.0 answer on this TCP port.
        #[arg(long)]
        http: Option<u16>,
    },
    /// Probe addresses with ordinary sockets; prints one JSON observation per line.
    Probe {
        #[arg(long, default_value_t = 80)]
        tcp_port: u16,
        #[arg(long, default_value_t = 53)]
        udp_port: u16,
        /// Per-probe wait; keep it under the 1 s initial TCP retransmission timeout so every
        /// address receives exactly one SYN.
        #[arg(long, default_value_t = 700)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 128)]
        threads: usize,
        /// Addresses or prefixes.
        #[arg(required = true)]
        targets: Vec<Prefix>,
    },
    /// Build a lab, print its description and truth as JSON, and keep it until `down`.
    Up {
        #[command(flatten)]
        spec: SpecArgs,
        /// Print only the description, not the truth lists.
        #[arg(long)]
        no_truth: bool,
    },
    /// Remove a lab made by `up` (by its id), or with --stale every test lab of a dead process
    /// and every lab made by `up` whose serve process is gone.
    Down {
        id: Option<String>,
        #[arg(long)]
        stale: bool,
    },
    /// Build a lab, scan it with rzmap from the scanner namespace, compare with the truth.
    Demo {
        #[command(flatten)]
        spec: SpecArgs,
        /// The scanner binary (rzmap, or any ZMap-compatible one).
        #[arg(long, default_value = "rzmap")]
        rzmap: PathBuf,
        /// Send rate (packets per second).
        #[arg(long, default_value_t = 10000)]
        rate: u64,
        /// Cooldown seconds.
        #[arg(long, default_value_t = 2)]
        cooldown: u64,
        /// Also pass `-i <iface> -G <gateway MAC> -S <scanner IP>` instead of relying on the
        /// scanner's own detection (Debian's zmap 4 hangs detecting the gateway MAC here).
        #[arg(long)]
        explicit_link: bool,
        /// Kill the scanner after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Extra arguments for the scanner (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
}

#[derive(Args)]
struct SpecArgs {
    #[arg(long, default_value = "198.18.0.0/20")]
    prefix: Prefix,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 80)]
    tcp_port: u16,
    #[arg(long, default_value_t = 53)]
    udp_port: u16,
    #[arg(long)]
    http: Option<u16>,
    #[arg(long)]
    greeting: Option<String>,
    #[arg(long, default_value_t = Shares::default().silent)]
    silent: f64,
    #[arg(long, default_value_t = Shares::default().unreachable)]
    unreachable: f64,
    #[arg(long, default_value_t = Shares::default().tcp_open)]
    tcp_open: f64,
    #[arg(long, default_value_t = Shares::default().tcp_filtered)]
    tcp_filtered: f64,
    #[arg(long, default_value_t = Shares::default().echo)]
    echo: f64,
    #[arg(long, default_value_t = Shares::default().udp_open)]
    udp_open: f64,
    /// Addresses the scanner must not probe (repeatable); by default the prefix's 7th and
    /// 77th addresses.
    #[arg(long = "blocklisted")]
    blocklisted: Vec<Ipv4Addr>,
    #[arg(long)]
    no_blocklisted: bool,
}

impl SpecArgs {
    fn spec(&self) -> LabSpec {
        let mut s = LabSpec::new(self.prefix, self.seed);
        s.tcp_port = self.tcp_port;
        s.udp_port = self.udp_port;
        s.http_port = self.http;
        s.greeting = self.greeting.clone();
        s.shares = Shares {
            silent: self.silent,
            unreachable: self.unreachable,
            tcp_open: self.tcp_open,
            tcp_filtered: self.tcp_filtered,
            echo: self.echo,
            udp_open: self.udp_open,
        };
        s.blocklisted = if !self.blocklisted.is_empty() {
            self.blocklisted.clone()
        } else if self.no_blocklisted {
            Vec::new()
        } else {
            [7u32, 77]
                .iter()
                .filter(|&&o| u64::from(o) < self.prefix.size())
                .map(|&o| self.prefix.nth(o))
                .collect()
        };
        s
    }
}

/// Pid of the scanner child while the demo waits for it (for the signal thread).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Blocks SIGINT/SIGTERM/SIGHUP in every thread and returns the set; children get a clean mask
/// (std resets it on spawn).
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = set.thread_block();
    set
}

fn serve(cfg: ServeConfig) -> ExitCode {
    let signals = block_signals();
    let r = match Responder::start(&cfg) {
        Ok(r) => r,
        Err(e) => {
            println!("error: rzmap-lab serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    let _ = signals.wait();
    r.stop();
    ExitCode::SUCCESS
}

fn probe(cfg: ProbeConfig, targets: &[Prefix]) -> ExitCode {
    let addrs: Vec<Ipv4Addr> = targets.iter().flat_map(|p| p.addrs()).collect();
    let mut out = std::io::stdout().lock();
    for o in probe_all(&addrs, &cfg) {
        let _ = serde_json::to_writer(&mut out, &o);
        let _ = writeln!(out);
    }
    ExitCode::SUCCESS
}

fn up(spec: LabSpec, no_truth: bool) -> ExitCode {
    let bin = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rzmap-lab up: cannot find own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Lab::build_with(spec, ResponderMode::Process(bin)) {
        Ok(lab) => {
            let truth = (!no_truth).then(|| lab.truth().clone());
            let info = lab.keep();
            let v = serde_json::json!({ "lab": info, "truth": truth });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            eprintln!(
                "rzmap-lab: lab {} is up; remove it with `rzmap-lab down {}`",
                info.id, info.id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rzmap-lab up: {e}");
            ExitCode::FAILURE
        }
    }
}

fn down(id: Option<String>, stale: bool) -> ExitCode {
    let mut ok = true;
    if stale {
        match rzmap_lab::reap_stale() {
            Ok(v) => v.iter().for_each(|n| eprintln!("rzmap-lab: removed stale namespace {n}")),
            Err(e) => {
                eprintln!("rzmap-lab down: {e}");
                ok = false;
            }
        }
        match rzmap_lab::reap_orphaned_kept_labs() {
            Ok(v) => v.iter().for_each(|id| {
                eprintln!("rzmap-lab: removed lab {id} (its serve process was gone)")
            }),
            Err(e) => {
                eprintln!("rzmap-lab down: {e}");
                ok = false;
            }
        }
    }
    if let Some(id) = id {
        if let Err(e) = rzmap_lab::remove_lab(&id) {
            eprintln!("rzmap-lab down: {e}");
            ok = false;
        }
    } else if !stale {
        eprintln!("rzmap-lab down: give a lab id or --stale");
        ok = false;
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Options of `rzmap-lab demo`.
struct DemoOpts {
    rzmap: PathBuf,
    rate: u64,
    cooldown: u64,
    explicit_link: bool,
    timeout: Duration,
    extra: Vec<String>,
}

/// Sends `sig` to the scanner child, if one is running.
fn signal_child(sig: Signal) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Stops the scanner: SIGTERM, then SIGKILL if it is still there 3 s later.
fn stop_child() {
    signal_child(Signal::SIGTERM);
    std::thread::sleep(Duration::from_secs(3));
    signal_child(Signal::SIGKILL);
}

fn demo(spec: LabSpec, o: DemoOpts) -> ExitCode {
    let DemoOpts { rzmap, rate, cooldown, explicit_link, timeout, extra } = o;
    let signals = block_signals();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            eprintln!("rzmap-lab: interrupted; stopping the scanner and tearing the lab down");
            stop_child();
        }
    });
    let t0 = Instant::now();
    let lab = match Lab::build(spec) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rzmap-lab demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = lab.truth();
    let i = lab.info();
    eprintln!(
        "rzmap-lab: lab {} built in {:.2?}: prefix {}, scanner {} ({}) in netns {}, gateway {} ({})",
        i.id,
        t0.elapsed(),
        i.prefix,
        i.scanner_ip,
        i.scan_if,
        i.scan_ns,
        i.gateway_ip,
        i.gateway_mac
    );
    eprintln!(
        "rzmap-lab: truth on TCP/{}: {} open, {} closed, {} filtered, {} unreachable, {} silent, {} blocklisted",
        t.tcp_port,
        t.open_tcp.len(),
        t.closed_tcp.len(),
        t.filtered_tcp.len(),
        t.unreachable.len(),
        t.silent.len(),
        t.blocklisted.len()
    );
    // rzmap's default blocklist excludes 198.18.0.0/15, so give it one with only the lab's
    // blocklisted test addresses.
    let bl = std::env::temp_dir().join(format!("{}-blocklist.txt", i.id));
    let text: String = t.blocklisted.iter().map(|a| format!("{a}/32\n")).collect();
    if let Err(e) = std::fs::write(&bl, text) {
        eprintln!("rzmap-lab demo: write {}: {e}", bl.display());
        return ExitCode::FAILURE;
    }
    let mut cmd = lab.scanner_cmd(&rzmap);
    cmd.args(["-p", &t.tcp_port.to_string(), &i.prefix.to_string(), "-r", &rate.to_string()]);
    cmd.args(["-c", &cooldown.to_string(), "-b"]).arg(&bl);
    if explicit_link {
        cmd.args(["-i", &i.scan_if, "-G", &i.gateway_mac, "-S", &i.scanner_ip.to_string()]);
    }
    cmd.args(&extra);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
    eprintln!("rzmap-lab: running {}", rzmap_lab::cmd::show(&cmd));
    let t1 = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rzmap-lab demo: cannot run {}: {e}", rzmap.display());
            let _ = std::fs::remove_file(&bl);
            return ExitCode::FAILURE;
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        if CHILD.load(Ordering::SeqCst) == pid {
            eprintln!("rzmap-lab: the scanner is still running after {timeout:?}; stopping it");
            stop_child();
        }
    });
    let mut found = BTreeSet::new();
    let mut other_lines = 0usize;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            match line.split(',').next().and_then(|f| f.trim().parse::<Ipv4Addr>().ok()) {
                Some(a) => {
                    found.insert(a);
                }
                None => other_lines += 1,
            }
        }
    }
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    let _ = std::fs::remove_file(&bl);
    let elapsed = t1.elapsed();
    let expected: BTreeSet<Ipv4Addr> = t.open_tcp.iter().copied().collect();
    let missing = expected.difference(&found).count();
    let unexpected = found.difference(&expected).count();
    let blocked = lab.blocklisted_packets();
    let probes = lab.probe_packets();
    eprintln!(
        "rzmap-lab: scanner exited with {} after {:.2?}",
        status.map(|s| s.to_string()).unwrap_or_default(),
        elapsed
    );
    eprintln!(
        "rzmap-lab: {} results ({} expected open): {} missing, {} unexpected, {} non-address lines",
        found.len(),
        expected.len(),
        missing,
        unexpected,
        other_lines
    );
    eprintln!(
        "rzmap-lab: probe packets received by the lab: {} (prefix has {} addresses); packets to blocklisted addresses: {}",
        probes.as_ref().map(|n| n.to_string()).unwrap_or_else(|e| e.to_string()),
        i.prefix.size(),
        blocked.as_ref().map(|n| n.to_string()).unwrap_or_else(|e| e.to_string()),
    );
    for (what, r) in [
        ("sent by the lab", lab.replies_sent()),
        ("delivered to the scanner ns", lab.replies_delivered()),
    ] {
        if let Ok(r) = r {
            eprintln!(
                "rzmap-lab: answers {what}: {} SYN-ACK, {} RST, {} ICMP unreachable, {} echo replies, {} UDP",
                r.synack, r.rst, r.unreachable, r.echo_reply, r.udp
            );
        }
    }
    let exact = missing == 0 && unexpected == 0 && matches!(blocked, Ok(0));
    eprintln!(
        "rzmap-lab: {}",
        if exact {
            "PASS: results match the ground truth exactly"
        } else {
            "FAIL: results differ from the ground truth"
        }
    );
    drop(lab);
    if exact { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { tcp_port, udp_port, greeting, http } => {
            serve(ServeConfig { tcp_port, udp_port, http_port: http, greeting })
        }
        Cmd::Probe { tcp_port, udp_port, timeout_ms, threads, targets } => probe(
            ProbeConfig { tcp_port, udp_port, timeout: Duration::from_millis(timeout_ms), threads },
            &targets,
        ),
        Cmd::Up { spec, no_truth } => up(spec.spec(), no_truth),
        Cmd::Down { id, stale } => down(id, stale),
        Cmd::Demo { spec, rzmap, rate, cooldown, explicit_link, timeout, extra } => {
            let timeout = Duration::from_secs(timeout);
            demo(spec.spec(), DemoOpts { rzmap, rate, cooldown, explicit_link, timeout, extra })
        }
    }
}
