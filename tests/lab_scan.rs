//! Live scans in the namespace lab: the `rzmap` binary, driven through its ZMap-compatible
//! command line inside a lab's scanner namespace, must find exactly what the lab's ground truth
//! says, address by address, and must never send a packet to a blocklisted address.
//!
//! Each test builds its own lab (unique namespaces, torn down on drop, also when the test
//! panics) and holds a process-wide lock so the scans do not compete for the two cores. They
//! need root, `ip`, `nft`, `ethtool` and `python3`; a lab that cannot be built FAILS the test,
//! unless `RZMAP_SKIP_LAB=1`.
//!
//! `RZMAP_LAB_SCANNER=/path/to/zmap` runs the same tests against another ZMap-compatible
//! scanner (it is then given `-i` and `-G`, which rzmap must find by itself); that is how the
//! harness itself was checked.
//!
//! Rates: the veth path of a loaded 2-core machine carries about 0.1 Mpps, and the `rzmap`
//! under test is the debug build; rates below are chosen with margin (see `HIGH_RATES`).

use rzmap_lab::{Lab, LabSpec, Prefix, skip_lab};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One lab test at a time: parallel scans on two shared cores would only measure contention.
static SERIAL: Mutex<()> = Mutex::new(());

/// The high rates of the /16 check (packets per second; `-r 0` is unlimited). On the loaded
/// 2-core test machine the debug build sent about 40 kpps unlimited and 33 kpps asked for 100k,
/// with exact results (0 missing, 0 unexpected).
const HIGH_RATES: [&str; 2] = ["0", "200000"];

/// Default cooldown of the scans here (seconds): the lab answers within microseconds.
const COOLDOWN: &str = "2";

/// Upper bound on any single scan's wall time before it is killed and the test fails.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);

type Set = BTreeSet<Ipv4Addr>;

fn scanner() -> (PathBuf, bool) {
    match std::env::var_os("RZMAP_LAB_SCANNER") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(env!("CARGO_BIN_EXE_rzmap")), false),
    }
}

/// A lab owned by one test, with its scratch directory and the serial lock.
struct TestLab {
    lab: Lab,
    dir: tempfile::TempDir,
    blocklist: PathBuf,
    runs: usize,
    _serial: MutexGuard<'static, ()>,
}

/// What one scan produced.
struct Run {
    status: ExitStatus,
    elapsed: Duration,
    /// Header row of the csv output.
    header: Vec<String>,
    /// The data rows.
    rows: Vec<Vec<String>>,
    stderr: String,
    meta: Option<Value>,
    cmdline: String,
}

impl Run {
    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| {
            panic!("no column {name:?} in output header {:?}\n{}", self.header, self.context())
        })
    }

    /// The values of column `name` in rows where `filter` holds.
    fn addrs_where(&self, name: &str, filter: impl Fn(&Run, &[String]) -> bool) -> Vec<Ipv4Addr> {
        let c = self.col(name);
        self.rows
            .iter()
            .filter(|r| filter(self, r))
            .map(|r| {
                r[c].parse().unwrap_or_else(|_| {
                    panic!("column {name} holds {:?}, not an address\n{}", r[c], self.context())
                })
            })
            .collect()
    }

    /// Distinct `saddr` values of every row.
    fn saddrs(&self) -> Set {
        self.addrs_where("saddr", |_, _| true).into_iter().collect()
    }

    /// Distinct `saddr` values of rows whose column `col` equals `value`.
    fn saddrs_with(&self, col: &str, value: &str) -> Set {
        let c = self.col(col);
        self.addrs_where("saddr", |_, r| r[c] == value).into_iter().collect()
    }

    fn get<'a>(&self, row: &'a [String], col: &str) -> &'a str {
        &row[self.col(col)]
    }

    fn meta_u64(&self, key: &str) -> u64 {
        let m = self.meta.as_ref().unwrap_or_else(|| {
            panic!("no metadata file was written\n{}", self.context());
        });
        // ZMap 2.1 (a RZMAP_LAB_SCANNER candidate) says total_sent.
        let old = if key == "packets_sent" { "total_sent" } else { key };
        m[key].as_u64().or_else(|| m[old].as_u64()).unwrap_or_else(|| {
            panic!("metadata has no unsigned {key:?}: {}\n{}", m, self.context())
        })
    }

    /// The last monitor line that reports the send total ("send: N done (X p/s avg)").
    fn last_monitor_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.contains("send:"))
            .unwrap_or("(no monitor line)")
            .trim()
    }

    fn context(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "command: {}\nexit: {}, {:.2?}, {} rows\nstderr (last lines):\n{}",
            self.cmdline,
            self.status,
            self.elapsed,
            self.rows.len(),
            tail.join("\n")
        )
    }

    fn assert_ok(&self) {
        assert!(self.status.success(), "scan failed\n{}", self.context());
    }
}

/// Asserts `found == expected`, printing the symmetric difference.
fn assert_same(what: &str, found: &Set, expected: &Set, run: &Run) {
    if found == expected {
        return;
    }
    let missing: Vec<_> = expected.difference(found).collect();
    let extra: Vec<_> = found.difference(expected).collect();
    panic!(
        "{what}: found {} addresses, expected {}\n  missing ({}): {:?}\n  unexpected ({}): {:?}\n{}",
        found.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(30)],
        extra.len(),
        &extra[..extra.len().min(30)],
        run.context()
    );
}

fn set(v: &[Ipv4Addr]) -> Set {
    v.iter().copied().collect()
}

/// A spec over `prefix` whose blocklist holds single addresses and a /30, all of which would
/// answer like open hosts if probed.
fn spec(prefix: &str, seed: u64) -> LabSpec {
    let prefix: Prefix = prefix.parse().expect("test prefix");
    let mut s = LabSpec::new(prefix, seed);
    s.blocklisted = [7u32, 77, 1000, 1001, 1002, 1003, 4000]
        .into_iter()
        .filter(|&o| u64::from(o) < prefix.size())
        .map(|o| prefix.nth(o))
        .collect();
    s
}

fn build(spec: LabSpec) -> Option<TestLab> {
    if skip_lab() {
        eprintln!("RZMAP_SKIP_LAB=1: skipping live lab test");
        return None;
    }
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let lab = match Lab::build(spec) {
        Ok(l) => l,
        Err(e) => panic!("cannot build the lab (set RZMAP_SKIP_LAB=1 to skip live tests): {e}"),
    };
    eprintln!("lab {} ({}) built in {:.2?}", lab.info().id, lab.prefix(), t0.elapsed());
    let dir = tempfile::tempdir().expect("tempdir");
    let blocklist = dir.path().join("blocklist.conf");
    // The /30 of the spec as one CIDR entry, the rest as single addresses (with a comment).
    let mut text = String::from("# the lab's deliberately blocklisted addresses\n");
    let bl = &lab.truth().blocklisted;
    for a in bl {
        let o = u32::from(*a) - u32::from(lab.prefix().addr);
        match o {
            1000 => text.push_str(&format!("{a}/30 # four addresses\n")),
            1001..=1003 => {}
            _ => text.push_str(&format!("{a}\n")),
        }
    }
    std::fs::write(&blocklist, text).expect("write blocklist");
    Some(TestLab { lab, dir, blocklist, runs: 0, _serial: serial })
}

impl TestLab {
    fn truth(&self) -> &rzmap_lab::Truth {
        self.lab.truth()
    }

    fn prefix(&self) -> String {
        self.lab.prefix().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The scanner command with the blocklist, output and metadata files of run `n`.
    fn command(&mut self, args: &[&str]) -> (Command, PathBuf, PathBuf, String) {
        self.runs += 1;
        let out = self.path(&format!("out{}.csv", self.runs));
        let meta = self.path(&format!("meta{}.json", self.runs));
        let (bin, foreign) = scanner();
        let mut c = self.lab.scanner_cmd(&bin);
        c.env("RZMAP_DEFAULT_CONFIG", "").env_remove("RZMAP_DUMP_CONFIG");
        c.args(args);
        c.arg("-b").arg(&self.blocklist).arg("-o").arg(&out).arg("-m").arg(&meta);
        if foreign {
            let gw = rzmap_lab::lab::mac_string(&self.lab.gateway_mac());
            c.args(["-i", self.lab.scanner_if(), "-G", &gw]);
        }
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let shown = rzmap_lab::cmd::show(&c);
        (c, out, meta, shown)
    }

    fn spawn(&mut self, args: &[&str]) -> Running {
        let (mut c, out, meta, cmdline) = self.command(args);
        let t0 = Instant::now();
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        // Drain stderr on a thread so a chatty scanner never blocks on a full pipe.
        let err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        let fields = args
            .iter()
            .position(|a| *a == "-f")
            .and_then(|i| args.get(i + 1))
            .map_or("saddr".to_string(), |f| f.to_string());
        Running { child, t0, out, meta, cmdline, stderr: Some(stderr), fields }
    }

    /// Runs a scan to completion (killed after [`SCAN_TIMEOUT`]).
    fn scan(&mut self, args: &[&str]) -> Run {
        self.spawn(args).wait(SCAN_TIMEOUT)
    }

    /// Probe-like packets the lab received so far, per destination address.
    fn probes(&self) -> BTreeMap<Ipv4Addr, u64> {
        self.lab.probes_per_address().expect("read the lab's probe counters")
    }

    /// The lab must not have seen a single packet to a blocklisted address.
    fn assert_blocklist_untouched(&self) {
        let n = self.lab.blocklisted_packets().expect("read the blocklisted counter");
        assert_eq!(
            n,
            0,
            "{n} packets reached blocklisted addresses {:?}",
            self.truth().blocklisted
        );
    }
}

/// A scan in progress.
struct Running {
    child: Child,
    t0: Instant,
    out: PathBuf,
    meta: PathBuf,
    cmdline: String,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The `-f` argument, or "saddr".
    fields: String,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait(mut self, timeout: Duration) -> Run {
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the scanner") {
                break s;
            }
            if self.t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "scan did not finish within {timeout:?}: {}\nstderr:\n{}",
                    self.cmdline,
                    err.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.t0.elapsed();
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut lines = text.lines().peekable();
        // rzmap's csv always starts with a header; some older scanners (RZMAP_LAB_SCANNER)
        // write none when -f is not given.
        let headless = lines
            .peek()
            .is_some_and(|l| l.split(',').next().is_some_and(|c| c.parse::<Ipv4Addr>().is_ok()));
        let header: Vec<String> = if headless {
            self.fields.split(',').map(str::to_string).collect()
        } else {
            lines.next().unwrap_or("").split(',').map(str::to_string).collect()
        };
        let rows: Vec<Vec<String>> = lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        let meta = std::fs::read_to_string(&self.meta)
            .ok()
            .and_then(|m| serde_json::from_str(m.trim()).ok());
        let run =
            Run { status, elapsed, header, rows, stderr, meta, cmdline: self.cmdline.clone() };
        for r in &run.rows {
            assert_eq!(r.len(), run.header.len(), "ragged csv row {r:?}\n{}", run.context());
        }
        eprintln!("{:.2?}: {} rows: {}", run.elapsed, run.rows.len(), run.cmdline);
        run
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Per-address probes between two counter snapshots.
fn delta(
    before: &BTreeMap<Ipv4Addr, u64>,
    after: &BTreeMap<Ipv4Addr, u64>,
) -> BTreeMap<Ipv4Addr, u64> {
    after
        .iter()
        .map(|(a, n)| (*a, n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Sends a signal with kill(1) (no `unsafe` in tests).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// The forged-reply injector (tests/common/inject.py) running in the lab's net namespace.
struct Injector {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

#[derive(Debug)]
struct InjectorCounts {
    probes_seen: u64,
    forged: u64,
    genuine: u64,
    targets: Set,
}

impl Injector {
    fn start(t: &TestLab, mode: &str, targets: &Set) -> Injector {
        let list = t.path(&format!("inject-{mode}.txt"));
        let text: String = targets.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&list, text).expect("write injector targets");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/inject.py");
        let mut c = t.lab.net_cmd("python3");
        c.arg(script).args(["--iface", t.lab.net_if(), "--mode", mode, "--targets"]).arg(&list);
        c.args(["--router", &t.lab.gateway_ip().to_string()]);
        c.args(["--scanner-mac", &rzmap_lab::lab::mac_string(&t.lab.scanner_mac())]);
        c.args(["--seconds", "45"]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = c.spawn().expect("run python3 inject.py in the net namespace");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            panic!("injector did not start: {line:?}");
        }
        Injector { child, out }
    }

    fn finish(mut self) -> InjectorCounts {
        signal(self.child.id(), "-TERM");
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        let _ = self.child.wait();
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("injector output {line:?}: {e}"));
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("injector output lacks {k}: {v}"));
        InjectorCounts {
            probes_seen: n("probes_seen"),
            forged: n("forged"),
            genuine: n("genuine"),
            targets: v["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect(),
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- tests ----------------------------------------------------------------------------------

/// tcp_synscan over a /16: the open set at 10 kpps and unlimited, the closed set through an
/// output filter, and `-P 3` with repeats marked.
#[test]
fn tcp_synscan_slash16_matches_truth() {
    let Some(mut t) = build(spec("198.18.0.0/16", 16)) else { return };
    let p = t.prefix();
    let open = set(&t.truth().open_tcp);
    let closed = set(&t.truth().closed_tcp);
    assert!(open.len() > 5000 && closed.len() > 5000, "seed gives a thin lab");

    // Default mode: successes only, no repeats, saddr only.
    let r = t.scan(&["-p", "80", &p, "-r", "10000", "-c", COOLDOWN]);
    r.assert_ok();
    if !scanner().1 {
        assert_eq!(r.header, ["saddr"], "{}", r.context());
    }
    assert_same("-r 10000: open set", &r.saddrs(), &open, &r);
    assert_eq!(r.rows.len(), open.len(), "each open host once\n{}", r.context());
    assert_eq!(r.meta_u64("packets_sent"), t.lab.prefix().size() - 7, "{}", r.context());

    for rate in HIGH_RATES {
        let r = t.scan(&["-p", "80", &p, "-r", rate, "-c", COOLDOWN]);
        r.assert_ok();
        eprintln!("-r {rate}: {:.2?} wall; monitor: {}", r.elapsed, r.last_monitor_line());
        assert_same(&format!("-r {rate}: open set"), &r.saddrs(), &open, &r);
    }

    let r = t.scan(&[
        "-p",
        "80",
        &p,
        "-r",
        "50000",
        "-c",
        COOLDOWN,
        "-f",
        "saddr",
        "--output-filter",
        "classification = rst",
    ]);
    r.assert_ok();
    assert_same("classification = rst: closed set", &r.saddrs(), &closed, &r);
    assert_eq!(r.rows.len(), closed.len(), "each closed host once\n{}", r.context());

    // -P 3: three SYNs per host (different source ports), every reply reported.
    let r = t.scan(&[
        "-p",
        "80",
        &p,
        "-r",
        "50000",
        "-P",
        "3",
        "-c",
        COOLDOWN,
        "-f",
        "saddr,classification,repeat",
        "--output-filter",
        "",
    ]);
    r.assert_ok();
    let syn = r.col("classification");
    let rep = r.col("repeat");
    let mut first: BTreeMap<Ipv4Addr, u32> = BTreeMap::new();
    let mut again: BTreeMap<Ipv4Addr, u32> = BTreeMap::new();
    for row in &r.rows {
        if row[syn] == "synack" {
            let a: Ipv4Addr = row[0].parse().expect("saddr");
            let m = if row[rep] == "0" { &mut first } else { &mut again };
            *m.entry(a).or_default() += 1;
        }
    }
    let once: Set = first.keys().copied().collect();
    assert_same("-P 3: synack with repeat = 0", &once, &open, &r);
    let dup: Vec<_> = first.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "hosts with more than one non-repeat synack: {dup:?}\n{}", r.context());
    let rep_set: Set = again.keys().copied().collect();
    assert_same("-P 3: synack with repeat = 1", &rep_set, &open, &r);
    assert_same("-P 3: rst", &r.saddrs_with("classification", "rst"), &closed, &r);
    assert_eq!(r.meta_u64("packets_sent"), 3 * (t.lab.prefix().size() - 7), "{}", r.context());
    // Per address: one probe in each single-probe run, three in the -P 3 run.
    let want = HIGH_RATES.len() as u64 + 2 + 3;
    let probes = t.probes();
    let odd: Vec<_> = probes.iter().filter(|(_, n)| **n != want).take(10).collect();
    assert!(odd.is_empty(), "addresses not probed exactly {want} times over the scans: {odd:?}");
    assert_eq!(probes.len() as u64, t.lab.prefix().size() - 7);
    t.assert_blocklist_untouched();
}

/// icmp_echoscan: the echo set, the unreachable hosts with saddr = the original target, and
/// errors from a router (injected) with saddr = the target and icmp_responder = the router.
#[test]
fn icmp_echoscan_matches_truth_and_rewrites_errors() {
    let Some(mut t) = build(spec("198.18.0.0/20", 20)) else { return };
    let p = t.prefix();
    let router = t.lab.gateway_ip();
    // Routers answer for a few silent hosts (the lab itself never answers them).
    let routed: Set = t.truth().silent.iter().step_by(7).copied().collect();
    assert!(routed.len() > 20);
    let inj = Injector::start(&t, "icmp", &routed);
    let r = t.scan(&[
        "-M",
        "icmp_echoscan",
        &p,
        "-r",
        "5000",
        "-c",
        COOLDOWN,
        "-f",
        "saddr,classification,icmp_responder,icmp_type,icmp_code",
        "--output-filter",
        "",
    ]);
    let counts = inj.finish();
    r.assert_ok();
    assert_same(
        "echoreply",
        &r.saddrs_with("classification", "echoreply"),
        &set(&t.truth().echo),
        &r,
    );
    let unreach = r.saddrs_with("classification", "unreach");
    assert_same("unreach (saddr = target)", &unreach, &set(&t.truth().unreachable), &r);
    assert_same("injector saw every routed target", &counts.targets, &routed, &r);
    assert_same(
        "timxceed (saddr = target)",
        &r.saddrs_with("classification", "timxceed"),
        &routed,
        &r,
    );
    for row in &r.rows {
        let (class, saddr) = (r.get(row, "classification"), r.get(row, "saddr"));
        let resp = r.get(row, "icmp_responder");
        match class {
            "echoreply" => assert_eq!(resp, "", "echo reply with an icmp_responder: {row:?}"),
            // The lab's unreachable hosts answer for themselves.
            "unreach" => {
                assert_eq!(resp, saddr, "{row:?}");
                assert_eq!((r.get(row, "icmp_type"), r.get(row, "icmp_code")), ("3", "1"));
            }
            "timxceed" => {
                assert_eq!(resp, router.to_string(), "{row:?}");
                assert_eq!(r.get(row, "icmp_type"), "11");
            }
            other => panic!("unexpected classification {other:?} in {row:?}\n{}", r.context()),
        }
    }
    assert_eq!(counts.forged, 2 * routed.len() as u64, "{counts:?}");
    assert_eq!(counts.genuine, routed.len() as u64, "{counts:?}");
    assert!(
        r.meta_u64("validation_failed") >= counts.forged,
        "validation_failed {} < {} forged replies\n{}",
        r.meta_u64("validation_failed"),
        counts.forged,
        r.context()
    );
    t.assert_blocklist_untouched();
}

/// udp with a text payload and with a template: the responding set (echoing the payload) and
/// the port- and host-unreachable sets.
#[test]
fn udp_text_and_template_match_truth() {
    let Some(mut t) = build(spec("198.18.16.0/20", 53)) else { return };
    let p = t.prefix();
    let port = t.truth().udp_port.to_string();
    let fields = "saddr,classification,data,icmp_responder,icmp_code,icmp_unreach_str";
    let tpl = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/udp-probes/sip_options.tpl");
    let tpl_arg = format!("--probe-args=template:{}", tpl.display());
    for (name, arg) in [("text", "--probe-args=text:hello lab"), ("template", tpl_arg.as_str())] {
        let r = t.scan(&[
            "-M",
            "udp",
            "-p",
            &port,
            arg,
            &p,
            "-r",
            "5000",
            "-c",
            COOLDOWN,
            "-f",
            fields,
            "--output-filter",
            "",
        ]);
        r.assert_ok();
        let tr = t.truth();
        assert_same(
            &format!("{name}: udp"),
            &r.saddrs_with("classification", "udp"),
            &set(&tr.udp_open),
            &r,
        );
        let port_unreach = r.saddrs_with("icmp_unreach_str", "port unreachable");
        assert_same(&format!("{name}: port unreachable"), &port_unreach, &set(&tr.udp_closed), &r);
        let host_unreach = r.saddrs_with("icmp_unreach_str", "host unreachable");
        assert_same(&format!("{name}: host unreachable"), &host_unreach, &set(&tr.unreachable), &r);
        assert_eq!(
            r.rows.len(),
            tr.udp_open.len() + tr.udp_closed.len() + tr.unreachable.len(),
            "one record per answering host\n{}",
            r.context()
        );
        for row in &r.rows {
            let saddr = r.get(row, "saddr");
            match r.get(row, "classification") {
                "udp" => {
                    let data = hex_decode(r.get(row, "data"));
                    let data = String::from_utf8_lossy(&data);
                    if name == "text" {
                        assert_eq!(data, "hello lab", "{row:?}");
                    } else {
                        let want = format!("OPTIONS sip:{saddr}:{port} SIP/2.0\r\n");
                        assert!(data.starts_with(&want), "template payload {data:?} for {saddr}");
                    }
                }
                "icmp" => assert_eq!(r.get(row, "icmp_responder"), saddr, "{row:?}"),
                other => panic!("unexpected classification {other:?} in {row:?}"),
            }
        }
    }
    t.assert_blocklist_untouched();
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|_| panic!("hex {s:?}"))
        })
        .collect()
}

/// The blocklist counter works (a positive control), and scans never touch it.
#[test]
fn blocklisted_addresses_are_never_probed() {
    let Some(mut t) = build(spec("198.18.32.0/20", 32)) else { return };
    let p = t.prefix();
    let before = t.probes();
    let r = t.scan(&["-p", "80", &p, "-r", "10000", "-c", "1"]);
    r.assert_ok();
    let d = delta(&before, &t.probes());
    let bl = set(&t.truth().blocklisted);
    let probed: Set = d.keys().copied().collect();
    assert!(probed.is_disjoint(&bl), "blocklisted addresses were probed");
    let expected: Set = t.lab.prefix().addrs().filter(|a| !bl.contains(a)).collect();
    assert_same("every allowed address probed", &probed, &expected, &r);
    t.assert_blocklist_untouched();
    // Positive control: one ordinary UDP datagram to a blocklisted address is counted.
    let target = t.truth().blocklisted[0];
    t.lab
        .in_scanner_ns(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
            s.send_to(b"x", (target, 9)).expect("send");
        })
        .expect("scanner namespace");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(t.lab.blocklisted_packets().expect("counter"), 1, "the counter must see it");
}

/// `-S a-b`: probes leave from every source address, and replies to each are received.
#[test]
fn multiple_source_addresses() {
    let Some(mut t) = build(spec("198.18.48.0/20", 48)) else { return };
    let p = t.prefix();
    let base = u32::from(t.lab.scanner_ip()) & !0xf; // 198.19.255.240
    let srcs: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::from(base + i)).collect();
    for s in &srcs {
        let st = Command::new("ip")
            .args(["-n", t.lab.scanner_ns(), "addr", "add", &format!("{s}/32")])
            .args(["dev", t.lab.scanner_if()])
            .status()
            .expect("ip addr add");
        assert!(st.success(), "ip addr add {s}");
    }
    let range = format!("{}-{}", srcs[0], srcs[3]);
    let r = t.scan(&[
        "-p",
        "80",
        &p,
        "-S",
        &range,
        "-r",
        "10000",
        "-c",
        COOLDOWN,
        "-f",
        "saddr,daddr",
        "--output-filter",
        "success = 1 && repeat = 0",
    ]);
    r.assert_ok();
    assert_same("-S: open set", &r.saddrs(), &set(&t.truth().open_tcp), &r);
    let mut per_src: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    // Each target's source is src_ips[(ntohl(dst) + k) % n] for one constant k (ZMap 4: k = 0;
    // ZMap 2 drew k at random): a deterministic spread over the sources.
    let mut offsets = BTreeSet::new();
    for row in &r.rows {
        let saddr: Ipv4Addr = r.get(row, "saddr").parse().expect("saddr");
        let daddr: Ipv4Addr = r.get(row, "daddr").parse().expect("daddr");
        *per_src.entry(daddr).or_default() += 1;
        let used = srcs.iter().position(|s| *s == daddr).expect("a listed source") as u32;
        offsets.insert((used + 4 - u32::from(saddr) % 4) % 4);
    }
    assert_eq!(
        per_src.keys().copied().collect::<Vec<_>>(),
        srcs,
        "replies per source: {per_src:?}"
    );
    assert_eq!(offsets.len(), 1, "the source is not a function of the target: offsets {offsets:?}");
    t.assert_blocklist_untouched();
}

/// `-T 2`, `-n N`, `-N K`, `-t`, `-c`.
#[test]
fn threads_limits_and_cooldown() {
    let Some(mut t) = build(spec("198.18.0.0/16", 64)) else { return };
    let full = t.prefix();
    let open = set(&t.truth().open_tcp);
    // A /20 inside the lab for the quick runs.
    let sub: Prefix = "198.18.64.0/20".parse().expect("prefix");
    let sub_open: Set = open.iter().copied().filter(|a| sub.contains(*a)).collect();
    let sub_s = sub.to_string();

    // -T 2
    let r = t.scan(&["-p", "80", &sub_s, "-T", "2", "-r", "10000", "-c", COOLDOWN]);
    r.assert_ok();
    assert_same("-T 2: open set", &r.saddrs(), &sub_open, &r);
    assert_eq!(r.meta_u64("senders"), 2, "{}", r.context());

    // -n N: exactly N targets probed, once each; results are the open ones among them.
    let before = t.probes();
    let r = t.scan(&["-p", "80", &full, "-n", "3000", "-r", "10000", "-c", COOLDOWN]);
    r.assert_ok();
    let d = delta(&before, &t.probes());
    assert_eq!(d.len(), 3000, "-n 3000 probed {} addresses\n{}", d.len(), r.context());
    assert!(d.values().all(|n| *n == 1), "an address was probed twice under -n");
    let probed: Set = d.keys().copied().collect();
    let want: Set = probed.intersection(&open).copied().collect();
    assert_same("-n: open among the probed", &r.saddrs(), &want, &r);

    // -n with two sender threads: the limit is split between them, still exactly N.
    let before = t.probes();
    let r = t.scan(&["-p", "80", &full, "-n", "3001", "-T", "2", "-r", "10000", "-c", "1"]);
    r.assert_ok();
    let d = delta(&before, &t.probes());
    assert_eq!(d.len(), 3001, "-n 3001 -T 2 probed {} addresses\n{}", d.len(), r.context());
    assert!(d.values().all(|n| *n == 1), "an address was probed twice under -n -T 2");
    let probed: Set = d.keys().copied().collect();
    let want: Set = probed.intersection(&open).copied().collect();
    assert_same("-n -T 2: open among the probed", &r.saddrs(), &want, &r);

    // -N K: stops after K results, without waiting out the (long) cooldown.
    let r = t.scan(&["-p", "80", &full, "-N", "25", "-r", "5000", "-c", "30"]);
    r.assert_ok();
    assert_eq!(r.rows.len(), 25, "-N 25\n{}", r.context());
    assert!(r.saddrs().is_subset(&open), "-N: a result that is not open\n{}", r.context());
    assert!(
        r.elapsed < Duration::from_secs(12),
        "-N 25 -c 30 took {:.2?}: no early stop?\n{}",
        r.elapsed,
        r.context()
    );

    // -t: stops sending after the time limit (a full /16 at 1000 pps would take 65 s).
    let before = t.probes();
    let r = t.scan(&["-p", "80", &full, "-t", "2", "-r", "1000", "-c", "1"]);
    r.assert_ok();
    let d = delta(&before, &t.probes());
    let sent = d.values().sum::<u64>();
    assert!(
        r.elapsed < Duration::from_secs(9),
        "-t 2 -c 1 took {:.2?}\n{}",
        r.elapsed,
        r.context()
    );
    assert!((1000..=3500).contains(&sent), "-t 2 at 1000 pps sent {sent}\n{}", r.context());
    let probed: Set = d.keys().copied().collect();
    let want: Set = probed.intersection(&open).copied().collect();
    assert_same("-t: open among the probed", &r.saddrs(), &want, &r);

    // -c: the receiver waits the cooldown after the last probe.
    let r = t.scan(&["-p", "80", &sub_s, "-r", "20000", "-c", "4"]);
    r.assert_ok();
    assert!(r.elapsed >= Duration::from_secs(4), "-c 4 ended after {:.2?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(12), "-c 4 took {:.2?}", r.elapsed);
    assert_same("-c 4: open set", &r.saddrs(), &sub_open, &r);
    t.assert_blocklist_untouched();
}

/// SIGINT mid-scan: the scan stops, the output holds every result for what was sent, and the
/// metadata is written.
#[test]
fn sigint_mid_scan_keeps_results_and_metadata() {
    let Some(mut t) = build(spec("198.18.0.0/16", 2)) else { return };
    let p = t.prefix();
    let open = set(&t.truth().open_tcp);
    let before = t.probes();
    // 65 s at 1000 pps: interrupted after 3 s.
    let run = t.spawn(&["-p", "80", &p, "-r", "1000", "-c", COOLDOWN]);
    std::thread::sleep(Duration::from_secs(3));
    signal(run.pid(), "-INT");
    let r = run.wait(Duration::from_secs(20));
    r.assert_ok();
    assert!(r.elapsed < Duration::from_secs(12), "SIGINT: took {:.2?}\n{}", r.elapsed, r.context());
    let d = delta(&before, &t.probes());
    let sent = d.values().sum::<u64>();
    assert!((1000..10_000).contains(&sent), "sent {sent} before SIGINT\n{}", r.context());
    let probed: Set = d.keys().copied().collect();
    let want: Set = probed.intersection(&open).copied().collect();
    assert_same("SIGINT: open among the probed", &r.saddrs(), &want, &r);
    let meta =
        r.meta.as_ref().unwrap_or_else(|| panic!("no metadata after SIGINT\n{}", r.context()));
    assert_eq!(
        r.meta_u64("packets_sent"),
        sent,
        "metadata packets_sent vs the lab's count: {meta}"
    );
    assert_eq!(r.meta_u64("success_unique") as usize, r.rows.len(), "{meta}");
    t.assert_blocklist_untouched();
}

/// `-X`: probes go through the kernel's IP layer; same results.
#[test]
fn iplayer_mode_matches_truth() {
    let Some(mut t) = build(spec("198.18.80.0/20", 80)) else { return };
    let p = t.prefix();
    let r = t.scan(&["-p", "80", &p, "-X", "-r", "10000", "-c", COOLDOWN]);
    r.assert_ok();
    assert_same("-X: open set", &r.saddrs(), &set(&t.truth().open_tcp), &r);
    let r = t.scan(&["-M", "icmp_echoscan", &p, "-X", "-r", "10000", "-c", COOLDOWN]);
    r.assert_ok();
    assert_same("-X icmp: echo set", &r.saddrs(), &set(&t.truth().echo), &r);
    t.assert_blocklist_untouched();
}

/// Every send back end finds exactly the truth: AF_XDP (the default: one socket per sender
/// thread on its own veth queue, the lab's veth has 4), sendmmsg and the transmit ring; with
/// more threads than queues the extra threads fall back to sendmmsg and say so, unless
/// `--send-backend=af-xdp` insists, which fails with a one-line error naming the flag.
#[test]
fn send_back_ends_match_truth() {
    let Some(mut t) = build(spec("198.18.96.0/20", 96)) else { return };
    let p = t.prefix();
    let open = set(&t.truth().open_tcp);
    let sent = t.lab.prefix().size() - 7;
    for backend in [None, Some("af-xdp"), Some("sendmmsg"), Some("tx-ring")] {
        let flag = backend.map(|b| format!("--send-backend={b}"));
        let mut args = vec!["-p", "80", &p, "-r", "20000", "-T", "2", "-c", COOLDOWN, "-v", "5"];
        args.extend(flag.as_deref());
        let r = t.scan(&args);
        r.assert_ok();
        assert_same(&format!("{backend:?}: open set"), &r.saddrs(), &open, &r);
        assert_eq!(r.meta_u64("packets_sent"), sent, "{}", r.context());
        let xdp_threads = r.stderr.matches("AF_XDP on ").count();
        let want = if matches!(backend, None | Some("af-xdp")) { 2 } else { 0 };
        assert_eq!(xdp_threads, want, "{backend:?}: threads on AF_XDP\n{}", r.context());
    }
    // Six threads, four queues: threads 4 and 5 use sendmmsg, and the scan is still exact.
    let r = t.scan(&["-p", "80", &p, "-r", "20000", "-T", "6", "-c", COOLDOWN, "-v", "5"]);
    r.assert_ok();
    assert_same("-T 6: open set", &r.saddrs(), &open, &r);
    assert_eq!(r.stderr.matches("AF_XDP on ").count(), 4, "{}", r.context());
    for thread in [4, 5] {
        let line = format!("sender thread {thread} uses sendmmsg");
        assert!(r.stderr.contains(&line), "no {line:?}\n{}", r.context());
    }
    let r = t.scan(&["-p", "80", &p, "-T", "6", "--send-backend=af-xdp", "-c", "0"]);
    assert!(!r.status.success(), "{}", r.context());
    let err = r.stderr.lines().find(|l| l.contains("error")).unwrap_or_default().to_string();
    assert!(
        err.contains("--send-backend") && err.contains("queue 4"),
        "one-line error naming the flag and the queue: {err:?}\n{}",
        r.context()
    );
    t.assert_blocklist_untouched();
}

/// Forged TCP replies (wrong ack, wrong ports, bad RST) injected for silent hosts are never
/// reported and are counted as validation failures; a router's ICMP error about a probe is
/// reported with the target as saddr.
#[test]
fn forged_tcp_replies_are_rejected() {
    let Some(mut t) = build(spec("198.18.96.0/20", 96)) else { return };
    let p = t.prefix();
    let silent = set(&t.truth().silent);
    let inj = Injector::start(&t, "tcp", &silent);
    let r = t.scan(&[
        "-p",
        "80",
        &p,
        "-r",
        "3000",
        "-c",
        COOLDOWN,
        "-f",
        "saddr,classification,icmp_responder,icmp_unreach_str",
        "--output-filter",
        "",
    ]);
    let counts = inj.finish();
    r.assert_ok();
    let tr = t.truth();
    assert_same("injector saw every silent host", &counts.targets, &silent, &r);
    assert_eq!(counts.probes_seen, silent.len() as u64);
    assert_same(
        "synack: open set only",
        &r.saddrs_with("classification", "synack"),
        &set(&tr.open_tcp),
        &r,
    );
    assert_same(
        "rst: closed set only",
        &r.saddrs_with("classification", "rst"),
        &set(&tr.closed_tcp),
        &r,
    );
    let icmp = r.saddrs_with("classification", "icmp");
    let want: Set = silent.union(&set(&tr.unreachable)).copied().collect();
    assert_same("icmp: unreachable hosts and routed silent hosts", &icmp, &want, &r);
    let router = t.lab.gateway_ip().to_string();
    for row in &r.rows {
        if r.get(row, "classification") != "icmp" {
            continue;
        }
        let saddr: Ipv4Addr = r.get(row, "saddr").parse().expect("saddr");
        let (resp, s) = (r.get(row, "icmp_responder"), r.get(row, "icmp_unreach_str"));
        if silent.contains(&saddr) {
            assert_eq!((resp, s), (router.as_str(), "communication admin. prohibited"), "{row:?}");
        } else {
            assert_eq!((resp, s), (r.get(row, "saddr"), "host unreachable"), "{row:?}");
        }
    }
    assert_eq!(counts.forged, 4 * silent.len() as u64);
    assert_eq!(counts.genuine, silent.len() as u64);
    let failed = r.meta_u64("validation_failed");
    eprintln!(
        "injector: {} probes seen, {} forged, {} genuine; validation_failed = {failed}",
        counts.probes_seen, counts.forged, counts.genuine
    );
    assert!(
        failed >= counts.forged,
        "validation_failed {failed} < {} forged\n{}",
        counts.forged,
        r.context()
    );
    t.assert_blocklist_untouched();
}

/// `--shards 2 --shard 0|1`: the two shards probe disjoint halves that cover every allowed
/// address once, and their results together are the open set.
#[test]
fn shards_partition_the_space() {
    let Some(mut t) = build(spec("198.18.112.0/20", 112)) else { return };
    let p = t.prefix();
    let bl = set(&t.truth().blocklisted);
    let allowed: Set = t.lab.prefix().addrs().filter(|a| !bl.contains(a)).collect();
    let mut seen: BTreeMap<Ipv4Addr, u64> = BTreeMap::new();
    let mut found = Set::new();
    let mut runs = Vec::new();
    for shard in ["0", "1"] {
        let before = t.probes();
        let r = t.scan(&[
            "-p", "80", &p, "--shards", "2", "--shard", shard, "--seed", "7", "-r", "10000", "-c",
            "1",
        ]);
        r.assert_ok();
        let d = delta(&before, &t.probes());
        assert!(
            d.len() > allowed.len() / 3,
            "shard {shard} probed only {} of {}\n{}",
            d.len(),
            allowed.len(),
            r.context()
        );
        for (a, n) in d {
            *seen.entry(a).or_default() += n;
        }
        found.extend(r.saddrs());
        runs.push(r);
    }
    let last = runs.last().expect("two runs");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).take(10).collect();
    assert!(twice.is_empty(), "addresses probed by both shards (or twice): {twice:?}");
    let covered: Set = seen.keys().copied().collect();
    assert_same("shards: union of the probed addresses", &covered, &allowed, last);
    assert_same("shards: union of the results", &found, &set(&t.truth().open_tcp), last);
    t.assert_blocklist_untouched();
}

/// icmp_echo_time: the echo set, each reply with a round-trip time measured from the capture
/// time and the send time carried in the probe.
#[test]
fn icmp_echo_time_reports_round_trip_times() {
    let Some(mut t) = build(spec("198.18.0.0/22", 23)) else { return };
    let p = t.prefix();
    let r = t.scan(&[
        "-M",
        "icmp_echo_time",
        &p,
        "-r",
        "5000",
        "-c",
        COOLDOWN,
        "-f",
        "saddr,classification,rtt_us,sent_timestamp_ts,recv_timestamp_ts",
    ]);
    r.assert_ok();
    assert_same(
        "echo replies",
        &r.saddrs_with("classification", "echoreply"),
        &set(&t.truth().echo),
        &r,
    );
    for row in &r.rows {
        let rtt: u64 = r.get(row, "rtt_us").parse().unwrap_or_else(|_| panic!("rtt_us in {row:?}"));
        assert!(rtt < 5_000_000, "implausible rtt {rtt} µs in {row:?}");
        let sent: u64 = r.get(row, "sent_timestamp_ts").parse().expect("sent_timestamp_ts");
        let recv: u64 = r.get(row, "recv_timestamp_ts").parse().expect("recv_timestamp_ts");
        assert!(recv >= sent && recv - sent <= 5, "{row:?}");
    }
    t.assert_blocklist_untouched();
}

/// tcp_synackscan: every host whose kernel sees the unsolicited SYN-ACK (open and closed TCP
/// hosts) answers with a RST, which is the module's success; filtered, silent and unreachable
/// hosts do not.
#[test]
fn tcp_synackscan_finds_hosts_that_reset() {
    let Some(mut t) = build(spec("198.18.0.0/22", 24)) else { return };
    let p = t.prefix();
    let port = t.lab.spec().tcp_port.to_string();
    let r = t.scan(&["-M", "tcp_synackscan", "-p", &port, &p, "-r", "5000", "-c", COOLDOWN]);
    r.assert_ok();
    let expected: Set = t.truth().open_tcp.iter().chain(&t.truth().closed_tcp).copied().collect();
    assert_same("RST answers", &r.saddrs(), &expected, &r);
    t.assert_blocklist_untouched();
}
