//! Dry runs (`-d/--dryrun`, `--fast-dryrun`): what they print, the target order they follow,
//! and the guarantee that they open no socket.
//!
//! Most tests run the `rzmap` binary; the checksum tests build the same frames in-process with
//! a known validation key and check them with `etherparse`, an independent parser, beside the
//! dry-run text the same link prints for them.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;

const SEP: &str = "------------------------------------------------------";

fn cmd() -> Command {
    let mut c = Command::cargo_bin("rzmap").expect("rzmap binary");
    // No default config file, quiet monitor.
    c.env("RZMAP_DEFAULT_CONFIG", "").arg("-q");
    c
}

fn run(args: &[&str]) -> Output {
    let out = cmd().args(args).output().expect("rzmap runs");
    assert!(
        out.status.success(),
        "rzmap {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One printed probe: the lines' names and their `key: value` pairs.
#[derive(Debug, Default)]
struct Block {
    lines: Vec<(String, HashMap<String, String>)>,
}

impl Block {
    fn get(&self, line: &str, key: &str) -> &str {
        self.lines
            .iter()
            .find(|(n, _)| n == line)
            .and_then(|(_, kv)| kv.get(key))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {line}.{key} in {self:?}"))
    }
    fn num(&self, line: &str, key: &str) -> u64 {
        self.get(line, key).parse().unwrap_or_else(|_| panic!("{line}.{key} is not a number"))
    }
    fn names(&self) -> Vec<&str> {
        self.lines.iter().map(|(n, _)| n.as_str()).collect()
    }
    fn daddr(&self) -> Ipv4Addr {
        self.get("ip", "daddr").parse().expect("daddr is an address")
    }
}

/// Parses `name { k: v | k: v }` lines grouped by the separator; every block must end with it.
fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut cur = Block::default();
    for line in text.lines() {
        if line == SEP {
            assert!(!cur.lines.is_empty(), "empty block");
            blocks.push(std::mem::take(&mut cur));
            continue;
        }
        let (name, rest) = line.split_once(" { ").unwrap_or_else(|| panic!("bad line {line:?}"));
        let body = rest.strip_suffix(" }").unwrap_or_else(|| panic!("unclosed line {line:?}"));
        let kv = body
            .split(" | ")
            .map(|f| {
                let (k, v) = f.split_once(": ").unwrap_or_else(|| panic!("bad field {f:?}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        cur.lines.push((name.to_string(), kv));
    }
    assert!(cur.lines.is_empty(), "output ends inside a block: {cur:?}");
    blocks
}

/// A checksum as dry runs print it: C's `%#04X` (`0X1A2B`, or `0000` for zero).
fn checksum(s: &str) -> u16 {
    if s == "0000" {
        return 0;
    }
    let hex = s.strip_prefix("0X").unwrap_or_else(|| panic!("checksum {s:?} lacks 0X"));
    assert!(hex.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{s}");
    u16::from_str_radix(hex, 16).expect("hex checksum")
}

fn addrs(prefix: &str, n: u32) -> BTreeSet<Ipv4Addr> {
    let base = u32::from(prefix.parse::<Ipv4Addr>().unwrap());
    (0..n).map(|i| Ipv4Addr::from(base + i)).collect()
}

const NET_FLAGS: [&str; 8] = [
    "-S",
    "198.18.0.1",
    "--source-mac",
    "02:00:00:00:00:01",
    "-G",
    "02:00:00:00:00:02",
    "-b",
    "/dev/null",
];

#[test]
fn synscan_dry_run_for_every_probe_args_value() {
    for style in ["windows", "linux", "bsd", "smallest-probes"] {
        let mut args = vec!["-d", "-e", "5", "-p", "80,443", "-s", "40000-40100"];
        args.extend(NET_FLAGS);
        args.extend(["--probe-args", style, "198.19.0.0/29"]);
        let out = run(&args);
        let blocks = parse_blocks(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(blocks.len(), 16, "{style}");
        let mut seen = BTreeSet::new();
        for b in &blocks {
            assert_eq!(b.names(), ["tcp", "ip", "eth"], "{style}");
            let (sport, dport) = (b.num("tcp", "source"), b.num("tcp", "dest"));
            assert!((40000..=40100).contains(&sport), "{style}: source port {sport}");
            assert!(dport == 80 || dport == 443);
            assert!(b.num("tcp", "seq") <= u64::from(u32::MAX));
            checksum(b.get("tcp", "checksum"));
            assert_ne!(checksum(b.get("ip", "checksum")), 0);
            assert_eq!(b.get("ip", "saddr"), "198.18.0.1");
            assert_eq!(b.get("eth", "shost"), "02:00:00:00:00:01");
            assert_eq!(b.get("eth", "dhost"), "02:00:00:00:00:02");
            assert!(seen.insert((b.daddr(), dport)), "{style}: target twice");
        }
        let daddrs: BTreeSet<_> = seen.iter().map(|(a, _)| *a).collect();
        assert_eq!(daddrs, addrs("198.19.0.0", 8));
    }
}

#[test]
fn icmp_and_udp_dry_runs() {
    let mut args = vec!["-d", "-e", "2", "-M", "icmp_echoscan"];
    args.extend(NET_FLAGS);
    args.push("198.19.0.0/30");
    let blocks = parse_blocks(&String::from_utf8(run(&args).stdout).unwrap());
    assert_eq!(blocks.len(), 4);
    for b in &blocks {
        assert_eq!(b.names(), ["icmp", "ip", "eth"]);
        assert_eq!((b.num("icmp", "type"), b.num("icmp", "code")), (8, 0));
        assert!(b.num("icmp", "id") <= 0xffff && b.num("icmp", "seq") <= 0xffff);
        assert_ne!(checksum(b.get("icmp", "checksum")), 0);
    }
    let got: BTreeSet<_> = blocks.iter().map(Block::daddr).collect();
    assert_eq!(got, addrs("198.19.0.0", 4));

    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("probe.tpl");
    std::fs::write(&tpl, "Q ${DADDR}:${DPORT} ${RAND_ALPHA=5}\n").unwrap();
    let tpl_arg = format!("template:{}", tpl.display());
    for payload in ["text:hello", "hex:00ff10", tpl_arg.as_str()] {
        let mut args = vec!["-d", "-e", "2", "-M", "udp", "-p", "53,5060"];
        args.extend(NET_FLAGS);
        args.extend(["--probe-args", payload, "198.19.0.0/31"]);
        let blocks = parse_blocks(&String::from_utf8(run(&args).stdout).unwrap());
        assert_eq!(blocks.len(), 4, "{payload}");
        for b in &blocks {
            assert_eq!(b.names(), ["udp", "ip", "eth"], "{payload}");
            assert!([53, 5060].contains(&b.num("udp", "dest")));
            assert!((32768..=61000).contains(&b.num("udp", "source")));
            checksum(b.get("udp", "checksum"));
        }
    }
}

#[test]
fn iplayer_omits_the_ethernet_line() {
    for module in [&["-M", "tcp_synscan", "-p", "22"][..], &["-M", "icmp_echoscan"][..]] {
        let mut args = vec!["-d", "-X", "-e", "3", "-b", "/dev/null", "198.19.0.0/30"];
        args.extend(module);
        let blocks = parse_blocks(&String::from_utf8(run(&args).stdout).unwrap());
        assert_eq!(blocks.len(), 4);
        for b in &blocks {
            assert_eq!(b.names().len(), 2, "{b:?}");
            assert_eq!(b.names()[1], "ip");
            // No -S and no discovery in a dry run: the placeholder source.
            assert_eq!(b.get("ip", "saddr"), "0.0.0.0");
        }
    }
}

#[test]
fn several_probes_per_target_are_sent_back_to_back() {
    let args = ["-d", "-P", "3", "-e", "4", "-p", "80", "-b", "/dev/null", "198.19.0.0/30"];
    let blocks = parse_blocks(&String::from_utf8(run(&args).stdout).unwrap());
    assert_eq!(blocks.len(), 12);
    for chunk in blocks.chunks(3) {
        let d = chunk[0].daddr();
        assert!(chunk.iter().all(|b| b.daddr() == d), "probes of one target are consecutive");
        // Probe i uses source port first + ((v1 + i) mod range): consecutive, wrapping.
        let ports: Vec<u64> = chunk.iter().map(|b| b.num("tcp", "source")).collect();
        for w in ports.windows(2) {
            assert!(w[1] == w[0] + 1 || (w[0] == 61000 && w[1] == 32768), "{ports:?}");
        }
        let seqs: BTreeSet<u64> = chunk.iter().map(|b| b.num("tcp", "seq")).collect();
        assert_eq!(seqs.len(), 1, "one validation per target: same seq");
    }
    let targets: BTreeSet<_> = blocks.iter().map(Block::daddr).collect();
    assert_eq!(targets.len(), 4);
}

/// `--fast-dryrun` records as `a.b.c.d:port` (or the bare address for port 0).
fn fast(args: &[&str]) -> Vec<String> {
    let mut full = vec!["--fast-dryrun", "-r", "0"];
    full.extend(args);
    let out = run(&full).stdout;
    assert_eq!(out.len() % 6, 0, "whole 6-byte records");
    out.chunks(6)
        .map(|r| {
            let ip = Ipv4Addr::new(r[0], r[1], r[2], r[3]);
            match u16::from_be_bytes([r[4], r[5]]) {
                0 => ip.to_string(),
                p => format!("{ip}:{p}"),
            }
        })
        .collect()
}

fn with_prefix(prefix: &str, tails: &[&str]) -> Vec<String> {
    tails.iter().map(|t| format!("{prefix}{t}")).collect()
}

#[test]
fn fast_dry_run_follows_zmaps_order() {
    // compat §4.2 vectors (verified against ZMap's ziterate).
    let icmp = ["-M", "icmp_echoscan", "-T", "1", "-b", "/dev/null"];
    let mut a = icmp.to_vec();
    a.extend(["-e", "1", "198.19.0.0/30"]);
    assert_eq!(fast(&a), with_prefix("198.19.0.", &["1", "2", "0", "3"]));
    let mut a = icmp.to_vec();
    a.extend(["-e", "1", "198.19.0.0/24"]);
    let got = fast(&a);
    assert_eq!(got.len(), 256);
    assert_eq!(
        got[..8],
        with_prefix("198.19.0.", &["19", "194", "37", "241", "174", "99", "203", "189"])[..]
    );
    let got =
        fast(&["-T", "1", "-b", "/dev/null", "-e", "7", "-p", "80,443,8080", "198.19.0.0/29"]);
    assert_eq!(got.len(), 24);
    let want = ["2:8080", "3:80", "2:80", "1:8080", "5:443", "6:443"];
    assert_eq!(got[..6], with_prefix("198.19.0.", &want)[..]);
    for (shard, want) in [
        ("0", &["12", "10", "0", "11", "5", "15"][..]),
        ("1", &["14", "2", "7"][..]),
        ("2", &["3", "9", "13", "1", "4", "6", "8"][..]),
    ] {
        let mut a = icmp.to_vec();
        a.extend(["-e", "99", "--shards", "3", "--shard", shard, "198.19.0.0/28"]);
        assert_eq!(fast(&a), with_prefix("198.19.0.", want), "shard {shard}");
    }
    let mut a = icmp.to_vec();
    a.extend(["-e", "5", "-n", "4", "198.18.0.0/16"]);
    assert_eq!(fast(&a), with_prefix("198.18.", &["58.13", "66.180", "28.128", "198.86"]));
    // The whole IPv4 space with the built-in blocklist (no -b), first targets only.
    let got = fast(&["-M", "icmp_echoscan", "-T", "1", "-e", "1", "-n", "5"]);
    let want =
        ["204.150.148.199", "71.100.173.44", "168.120.35.223", "17.132.81.138", "72.162.31.108"];
    assert_eq!(got, want);
    let got = fast(&["-T", "1", "-e", "1", "-n", "3", "-p", "80,443"]);
    assert_eq!(got, ["190.101.252.137:80", "65.144.8.181:443", "146.46.213.204:443"]);
}

#[test]
fn fast_records_carry_the_target_port_for_every_module() {
    // The record is the target's, whatever the frame: ipip's outer header (IP in IP) has no
    // port, yet its record carries -p. The addresses are the text dry run's outer `ip` lines.
    let list = run(&["--list-probe-modules"]).stdout;
    let modules: Vec<&str> = std::str::from_utf8(&list).unwrap().lines().collect();
    assert!(modules.contains(&"ipip"), "{modules:?}");
    for module in modules {
        let portless = module.starts_with("icmp");
        let mut a = vec!["-M", module, "-T", "1", "-e", "3", "-b", "/dev/null", "-P", "2"];
        if !portless {
            a.extend(["-p", "4242"]);
        }
        if module == "udp" {
            a.extend(["--probe-args", "text:hi"]);
        }
        a.push("198.19.0.0/29");
        let got = fast(&a);
        assert_eq!(got.len(), 16, "{module}");
        let mut text = vec!["-d"];
        text.extend(&a);
        let blocks = parse_blocks(&String::from_utf8(run(&text).stdout).unwrap());
        let want: Vec<String> = blocks
            .iter()
            .map(|b| {
                let outer = b.lines.iter().rev().find(|(n, _)| n == "ip").expect("an ip line");
                let daddr = &outer.1["daddr"];
                if portless { daddr.clone() } else { format!("{daddr}:4242") }
            })
            .collect();
        assert_eq!(got, want, "{module}");
    }
}

#[test]
fn max_targets_caps_both_dry_runs() {
    let base = ["-e", "9", "-p", "80", "-b", "/dev/null", "198.19.0.0/24"];
    let mut a = vec!["-d", "-n", "7"];
    a.extend(base);
    assert_eq!(parse_blocks(&String::from_utf8(run(&a).stdout).unwrap()).len(), 7);
    for (n, threads) in [("10", "1"), ("10", "3"), ("1", "1")] {
        let mut a = vec!["-n", n, "-T", threads];
        a.extend(base);
        let got = fast(&a);
        assert_eq!(got.len(), n.parse::<usize>().unwrap(), "-n {n} -T {threads}");
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), got.len());
    }
    // -n counts targets, not probes.
    let mut a = vec!["-n", "5", "-P", "2"];
    a.extend(base);
    assert_eq!(fast(&a).len(), 10);
}

#[test]
fn shards_and_threads_cover_the_space_exactly_once() {
    let base = ["-e", "1234", "-b", "/dev/null", "-p", "22,80,443", "198.19.0.0/22"];
    let all: BTreeSet<String> = {
        let mut a = vec!["-T", "1"];
        a.extend(base);
        let v = fast(&a);
        assert_eq!(v.len(), 1024 * 3);
        let s: BTreeSet<String> = v.into_iter().collect();
        assert_eq!(s.len(), 1024 * 3, "no duplicates");
        s
    };
    let mut union = Vec::new();
    for shard in ["0", "1", "2"] {
        let mut a = vec!["--shards", "3", "--shard", shard, "-T", "2"];
        a.extend(base);
        union.extend(fast(&a));
    }
    assert_eq!(union.len(), all.len(), "every target once across the shards");
    assert_eq!(union.into_iter().collect::<BTreeSet<_>>(), all);
    // Threads of one shard split its arc: same set as a single thread.
    let mut a = vec!["-T", "4"];
    a.extend(base);
    let four = fast(&a);
    assert_eq!(four.len(), all.len());
    assert_eq!(four.into_iter().collect::<BTreeSet<_>>(), all);
}

#[test]
fn a_closed_pipe_ends_a_dry_run_quietly() {
    let mut child = cmd()
        .args([
            "--fast-dryrun",
            "-r",
            "0",
            "-e",
            "1",
            "-b",
            "/dev/null",
            "-p",
            "1-1000",
            "198.18.0.0/16",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 60];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ERROR"));
}

#[test]
fn dry_run_metadata_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    let m = meta.display().to_string();
    let out =
        run(&["-d", "-g", "-e", "11", "-p", "80", "-b", "/dev/null", "-m", &m, "198.19.0.0/30"]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(v["dryrun"], true);
    assert_eq!(v["seed"], 11);
    assert_eq!(v["packets_sent"], 4);
    assert_eq!(v["targets_scanned"], 4);
    assert_eq!(v["target_ports"], serde_json::json!([80]));
    assert_eq!(v["probe_module"], "tcp_synscan");
    assert_eq!(v["probe_args"], "windows");
    assert_eq!(v["max_targets"], -1);
    assert_eq!(v["blocklist_total_allowed"], 4);
    assert_eq!(v["cli_cidr_destinations"], serde_json::json!(["198.19.0.0/30"]));
    assert!(v["generator"].as_u64().unwrap() > 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cnf\ttarget-port"), "{err}");
    assert!(err.contains("permutation-seed\t\t\t11"), "{err}");
}

// ---- no sockets --------------------------------------------------------------------------

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn bin() -> String {
    assert_cmd::cargo::cargo_bin("rzmap").display().to_string()
}

#[test]
fn dry_runs_work_in_an_empty_network_namespace() {
    if !is_root() {
        eprintln!("skipped: unshare -n needs root");
        return;
    }
    for mode in ["-d", "--fast-dryrun"] {
        let args = ["-q", mode, "-e", "8", "-p", "443", "-b", "/dev/null", "198.19.0.0/28"];
        let here = run(&args[1..]).stdout;
        let out = Command::new("unshare")
            .arg("-n")
            .arg(bin())
            .args(args)
            .env("RZMAP_DEFAULT_CONFIG", "")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if mode == "--fast-dryrun" {
            assert_eq!(out.stdout, here);
        } else {
            // The text differs only in the (random per run) validation fields.
            assert_eq!(
                parse_blocks(&String::from_utf8(out.stdout).unwrap()).len(),
                parse_blocks(&String::from_utf8(here).unwrap()).len()
            );
        }
    }
}

#[test]
fn dry_runs_make_no_socket_call() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, mode) in ["-d", "--fast-dryrun"].into_iter().enumerate() {
        let log = dir.path().join(format!("trace{i}"));
        let status = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=socket,socketpair", "-o"])
            .arg(&log)
            .arg(bin())
            .args([mode, "-e", "8", "-p", "443", "-T", "2", "-b", "/dev/null", "198.19.0.0/24"])
            .args(["-S", "198.18.0.1", "-m", "-", "-u", "/dev/null", "-g"])
            .env("RZMAP_DEFAULT_CONFIG", "")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let trace = std::fs::read_to_string(&log).unwrap();
        assert!(!trace.contains("socket("), "{mode} made a socket call:\n{trace}");
        assert!(!trace.contains("socketpair("), "{mode}:\n{trace}");
    }
}

// ---- in-process: frames and their checksums ----------------------------------------------

/// A link that records each frame and also feeds it to the real dry-run printer.
struct Tee {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    text: rzmap::scan::dryrun::TextDryRun,
}

impl rzmap_core::link::PacketTx for Tee {
    fn send_batch(
        &mut self,
        batch: &rzmap_core::link::FrameBatch,
    ) -> rzmap_core::link::SendOutcome {
        self.frames.lock().unwrap().extend(batch.frames().map(<[u8]>::to_vec));
        self.text.send_batch(batch)
    }
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);
impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds the plan from arguments and runs the real assembly over [`Tee`] links with a fixed
/// validation key; returns the frames and the printed text.
fn frames_of(args: &[&str]) -> (Vec<Vec<u8>>, String) {
    let argv: Vec<std::ffi::OsString> =
        std::iter::once("rzmap").chain(args.iter().copied()).map(Into::into).collect();
    let parsed = rzmap::args::parse(&argv).unwrap();
    let config = rzmap::config::resolve(&parsed.args, || Ok(1)).unwrap();
    let plan = rzmap::plan::plan(config, &|_| Err("no DNS".into())).unwrap();
    let (threads, batch, _) = plan.threads_and_batch(2);
    let module: Arc<dyn rzmap_core::probe::ProbeModule> = Arc::from(
        rzmap_core::probe::create(&plan.config.probe_module, plan.config.probe_args.as_deref())
            .unwrap(),
    );
    let addr = rzmap::scan::Addressing::from_flags(&plan.config);
    let asm = rzmap::scan::assemble(
        &plan.config,
        &module,
        &plan.targets,
        &plan.ports,
        plan.max_targets,
        threads,
        batch,
        plan.dedup,
        true,
        &addr,
        rzmap_core::validate::Validator::new([7; 16]),
    )
    .unwrap();
    let ctl = rzmap_core::engine::Controls::new(0);
    let frames = Arc::new(Mutex::new(Vec::new()));
    let text = Arc::new(Mutex::new(Vec::new()));
    let slot = rzmap::scan::dryrun::StdoutSlot::new(Box::new(SharedBuf(text.clone())), ctl.clone());
    let senders = asm
        .subshards
        .into_iter()
        .zip(asm.builders)
        .map(|(targets, builder)| rzmap_core::engine::SenderSetup {
            targets,
            builder,
            tx: Tee {
                frames: frames.clone(),
                text: rzmap::scan::dryrun::TextDryRun::new(
                    module.clone(),
                    !plan.config.iplayer,
                    slot.clone(),
                ),
            },
        })
        .collect();
    let none: Option<rzmap_core::engine::ReceiverSetup<rzmap::scan::live::NoRx, NoHandler>> = None;
    let mut cfg = asm.engine;
    cfg.monitor_interval = std::time::Duration::from_secs(3600);
    rzmap_core::engine::run(&cfg, &ctl, &rzmap_core::rate::SystemClock, senders, none, |_| {});
    assert!(slot.finish().is_none());
    let frames = frames.lock().unwrap().clone();
    let text = String::from_utf8(text.lock().unwrap().clone()).unwrap();
    (frames, text)
}

struct NoHandler;
impl rzmap_core::engine::ResponseHandler for NoHandler {
    fn classify(
        &mut self,
        _: &[u8],
        _: std::time::SystemTime,
    ) -> Option<rzmap_core::engine::Verdict> {
        None
    }
    fn emit(
        &mut self,
        _: &[u8],
        _: std::time::SystemTime,
        _: &rzmap_core::engine::Verdict,
        _: rzmap_core::engine::ResponseFlags,
    ) -> bool {
        false
    }
}

#[test]
fn frames_have_valid_lengths_and_checksums_and_the_text_matches_them() {
    use etherparse::{SlicedPacket, TransportSlice};
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("p.tpl");
    std::fs::write(&tpl, "GET ${DADDR} ${RAND_DIGIT=4}\n").unwrap();
    let tpl_arg = format!("template:{}", tpl.display());
    let common = ["-e", "21", "-b", "/dev/null", "-S", "198.18.0.1,198.18.0.2", "-T", "1"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["-p", "80,443", "--probe-args", "windows"],
        vec!["-p", "80,443", "--probe-args", "linux"],
        vec!["-p", "80,443", "--probe-args", "bsd"],
        vec!["-p", "80,443", "--probe-args", "smallest-probes"],
        vec!["-M", "icmp_echoscan", "-P", "2"],
        vec!["-M", "udp", "-p", "53", "--probe-args", "text:hello"],
        vec!["-M", "udp", "-p", "53", "--probe-args", "hex:0a0b0c"],
        vec!["-M", "udp", "-p", "53", "--probe-args", tpl_arg.as_str()],
    ];
    for case in cases {
        let mut args = case.clone();
        args.extend(common);
        args.push("198.19.0.0/28");
        let (frames, text) = frames_of(&args);
        let blocks = parse_blocks(&text);
        assert_eq!(frames.len(), blocks.len(), "{case:?}");
        assert!(frames.len() >= 16, "{case:?}");
        for (f, b) in frames.iter().zip(&blocks) {
            let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
            let h = ip.header();
            assert_eq!(usize::from(h.total_len()), f.len() - 14, "{case:?}: IP length");
            let h4 = h.to_header();
            assert_eq!(h4.calc_header_checksum(), h.header_checksum(), "{case:?}: IP checksum");
            assert_eq!(checksum(b.get("ip", "checksum")), h.header_checksum());
            assert_eq!(b.daddr(), h.destination_addr());
            assert_eq!(b.get("ip", "saddr"), h.source_addr().to_string());
            let payload = ip.payload().payload;
            match p.transport {
                Some(TransportSlice::Tcp(t)) => {
                    let want = t.to_header().calc_checksum_ipv4(&h4, t.payload()).unwrap();
                    assert_eq!(t.checksum(), want, "{case:?}: TCP checksum");
                    assert_eq!(checksum(b.get("tcp", "checksum")), t.checksum());
                    assert_eq!(b.num("tcp", "seq"), u64::from(t.sequence_number()));
                    assert_eq!(b.num("tcp", "dest"), u64::from(t.destination_port()));
                    assert!(t.syn() && !t.ack());
                }
                Some(TransportSlice::Udp(u)) => {
                    assert_eq!(usize::from(u.length()), payload.len(), "{case:?}: UDP length");
                    let c = u.checksum();
                    if c != 0 {
                        let want = u.to_header().calc_checksum_ipv4(&h4, u.payload()).unwrap();
                        assert_eq!(c, want, "{case:?}: UDP checksum");
                    }
                    assert_eq!(checksum(b.get("udp", "checksum")), c);
                    assert_eq!(b.num("udp", "dest"), u64::from(u.destination_port()));
                }
                Some(TransportSlice::Icmpv4(i)) => {
                    let want = i.header().icmp_type.calc_checksum(i.payload());
                    assert_eq!(i.checksum(), want, "{case:?}: ICMP checksum");
                    assert_eq!(checksum(b.get("icmp", "checksum")), i.checksum());
                }
                other => panic!("{case:?}: unexpected transport {other:?}"),
            }
        }
        // Probe i to dst comes from src_ips[(dst + i) % 2] (ZMap's rule).
        let probes = if case.contains(&"-P") { 2 } else { 1 };
        for (k, b) in blocks.iter().enumerate() {
            let i = (k % probes) as u32;
            let want = if (u32::from(b.daddr()) + i).is_multiple_of(2) {
                "198.18.0.1"
            } else {
                "198.18.0.2"
            };
            assert_eq!(b.get("ip", "saddr"), want, "{case:?}");
        }
    }
}

#[test]
fn sigint_stops_cleanly_and_sigusr1_raises_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    let status = dir.path().join("status.csv");
    let child = Command::cargo_bin("rzmap")
        .unwrap()
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["--fast-dryrun", "-r", "1000", "-e", "1", "-p", "80", "-b", "/dev/null", "-g"])
        .arg("-m")
        .arg(&meta)
        .arg("-u")
        .arg(&status)
        .arg("198.18.0.0/16")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let kill = |sig: &str| {
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    kill("-USR1");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    kill("-INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(err.contains("rate raised to 1050 packets per second"), "{err}");
    assert!(err.contains("cnf\ttarget-port"), "the summary is printed after a stop: {err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    let sent = v["packets_sent"].as_u64().unwrap();
    assert!(sent > 500 && sent < 65536, "stopped early: {sent} sent");
    let csv = std::fs::read_to_string(&status).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("real-time,time-elapsed,"));
    assert!(lines.count() >= 2, "a row per second: {csv}");
}

#[test]
fn ip_list_limits_the_probed_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ips.txt");
    std::fs::write(&list, "198.19.0.7\n198.19.0.200 # comment\n198.19.1.1\n").unwrap();
    let l = list.display().to_string();
    let mut got = fast(&["-e", "3", "-p", "80", "-b", "/dev/null", "-I", &l, "198.19.0.0/24"]);
    got.sort();
    // 198.19.1.1 is on the list but outside the allowed space.
    assert_eq!(got, ["198.19.0.200:80", "198.19.0.7:80"]);
}

#[test]
fn cores_pin_the_dry_run_threads() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let mut child = Command::cargo_bin("rzmap")
        .unwrap()
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["-q", "--fast-dryrun", "-r", "500", "-n", "2000", "-T", "1", "--cores", "1"])
        .args(["-e", "1", "-p", "80", "-b", "/dev/null", "198.19.0.0/16"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let mut pinned = 0;
    for task in std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "1"])
        {
            pinned += 1;
        }
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    // The sender and the monitor (the main thread and the signal watcher are not pinned).
    assert_eq!(pinned, 2);
}
