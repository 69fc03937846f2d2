//! Live tests of rzmap's results output: every output module, field selection, output filter,
//! `-N`, `-o`, closed pipes and SIGINT, checked address by address against the ground truth of
//! an `rzmap-lab`. rzmap (and redis-server, for the redis module) run only inside the lab's
//! scanner namespace, whose only link leads to the lab's simulated Internet in 198.18.0.0/15.
//! Needs root, `ip`, `nft`, `ethtool` and, for the redis test, `redis-server` and `redis-cli`.
//! A lab that cannot be built fails the test unless `RZMAP_SKIP_LAB=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rzmap_lab::{Lab, LabSpec, Prefix, skip_lab};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rzmap");

/// ZMap's default source port range (the `dport` of every TCP answer).
const SOURCE_PORTS: std::ops::RangeInclusive<u64> = 32768..=61000;

type Addrs = BTreeSet<Ipv4Addr>;

/// A lab, a blocklist file naming only its blocklisted addresses, and a scratch directory.
struct OutputLab {
    lab: Lab,
    block: PathBuf,
    dir: tempfile::TempDir,
}

/// Builds a lab over `prefix` (two blocklisted addresses), or `None` with `RZMAP_SKIP_LAB=1`.
fn output_lab(prefix: &str, seed: u64, http_port: Option<u16>) -> Option<OutputLab> {
    if skip_lab() {
        eprintln!("RZMAP_SKIP_LAB=1: skipping live output test");
        return None;
    }
    let prefix: Prefix = prefix.parse().expect("test prefix");
    let mut spec = LabSpec::new(prefix, seed);
    spec.blocklisted = vec![prefix.nth(9), prefix.nth(300)];
    spec.http_port = http_port;
    let lab = Lab::build(spec).unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let block = dir.path().join("blocklist.conf");
    let list: String = lab.truth().blocklisted.iter().map(|a| format!("{a}/32\n")).collect();
    std::fs::write(&block, list).expect("write the blocklist");
    Some(OutputLab { lab, block, dir })
}

impl OutputLab {
    /// rzmap inside the scanner namespace: no config file, quiet, 1 s cooldown, the lab's
    /// blocklist, and the lab prefix as the only target; `args` come before the prefix.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.lab.scanner_cmd(BIN);
        c.env("RZMAP_DEFAULT_CONFIG", "")
            .args(["-q", "-c", "1", "-b"])
            .arg(&self.block)
            .args(args)
            .arg(self.lab.prefix().to_string());
        c
    }

    /// Runs rzmap to the end; it must succeed. Returns the whole output.
    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run rzmap");
        assert!(
            out.status.success(),
            "rzmap {args:?} exited with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs rzmap to the end and returns its standard output.
    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.run(args).stdout).expect("rzmap's output is UTF-8")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open(&self) -> Addrs {
        let v: Addrs = self.lab.truth().open_tcp.iter().copied().collect();
        assert!(v.len() >= 10, "the lab has too few open hosts to test with: {}", v.len());
        v
    }

    fn closed(&self) -> Addrs {
        let v: Addrs = self.lab.truth().closed_tcp.iter().copied().collect();
        assert!(v.len() >= 10, "the lab has too few closed hosts to test with: {}", v.len());
        v
    }

    fn unreachable(&self) -> Addrs {
        self.lab.truth().unreachable.iter().copied().collect()
    }

    /// Panics with the addresses missing from and unexpected in `got`, compared with `want`,
    /// and the lab's counters (to tell a lab loss from a scanner loss).
    fn assert_same(&self, got: &Addrs, want: &Addrs, what: &str) {
        if got != want {
            let missing: Vec<_> = want.difference(got).collect();
            let extra: Vec<_> = got.difference(want).collect();
            panic!(
                "{what}: {} results, {} expected; missing {missing:?}; unexpected {extra:?}; {}",
                got.len(),
                want.len(),
                self.counters()
            );
        }
    }

    /// The lab's answer counters so far, for failure messages.
    fn counters(&self) -> String {
        format!(
            "lab counters (all scans so far): probes {:?}, answers sent {:?}, delivered {:?}",
            self.lab.probe_packets(),
            self.lab.replies_sent(),
            self.lab.replies_delivered()
        )
    }

    /// No packet reached a blocklisted address during all the scans of this lab.
    fn assert_blocklist_respected(&self) {
        assert_eq!(self.lab.blocklisted_packets().expect("nft counter"), 0);
    }
}

fn addr(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|_| panic!("not an IPv4 address: {s:?}"))
}

/// A set from a list, failing on any duplicate (each host must appear exactly once).
fn unique(items: impl IntoIterator<Item = Ipv4Addr>, what: &str) -> Addrs {
    let mut set = Addrs::new();
    for a in items {
        assert!(set.insert(a), "{what}: {a} appears more than once");
    }
    set
}

/// Parses csv text with a header row; returns the header and the rows.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let header = r.headers().expect("csv header").iter().map(str::to_owned).collect();
    let rows =
        r.records().map(|rec| rec.expect("csv row").iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

/// Parses one JSON object per line.
fn parse_json_lines(text: &str) -> Vec<serde_json::Map<String, Value>> {
    text.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l:?} ({other:?})"),
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn uint(rec: &serde_json::Map<String, Value>, key: &str) -> u64 {
    rec.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("no integer {key:?} in {rec:?}"))
}

fn string<'a>(rec: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    rec.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no string {key:?} in {rec:?}"))
}

fn boolean(rec: &serde_json::Map<String, Value>, key: &str) -> bool {
    rec.get(key).and_then(Value::as_bool).unwrap_or_else(|| panic!("no bool {key:?} in {rec:?}"))
}

/// Checks the system and IP fields of one `-f '*'` json record of a scan that ran between
/// `start` and `end` (seconds since the epoch) from `scanner`.
fn check_common_fields(
    rec: &serde_json::Map<String, Value>,
    scanner: Ipv4Addr,
    start: u64,
    end: u64,
) {
    let saddr = addr(string(rec, "saddr"));
    assert_eq!(uint(rec, "saddr_raw"), u64::from(u32::from_ne_bytes(saddr.octets())), "{rec:?}");
    assert_eq!(addr(string(rec, "daddr")), scanner, "{rec:?}");
    assert_eq!(uint(rec, "daddr_raw"), u64::from(u32::from_ne_bytes(scanner.octets())), "{rec:?}");
    assert!(uint(rec, "ipid") <= 0xffff, "{rec:?}");
    let ttl = uint(rec, "ttl");
    assert!((1..=255).contains(&ttl), "{rec:?}");
    assert!(!boolean(rec, "repeat"), "no host answers twice: {rec:?}");
    boolean(rec, "cooldown");
    let ts = uint(rec, "timestamp_ts");
    let us = uint(rec, "timestamp_us");
    assert!((start..=end).contains(&ts), "timestamp_ts {ts} outside the run {start}..={end}");
    assert!(us < 1_000_000, "{rec:?}");
    let text = string(rec, "timestamp_str");
    let t = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap_or_else(|e| panic!("timestamp_str {text:?} is not ISO 8601 with ms: {e}"));
    assert_eq!(t.timestamp() as u64, ts, "timestamp_str and timestamp_ts disagree: {rec:?}");
    assert_eq!(
        u64::from(t.timestamp_subsec_millis()),
        us / 1000,
        "timestamp_str and timestamp_us disagree: {rec:?}"
    );
}

/// 1. `-O json -f '*' --output-filter ""`: every validated answer, every field consistent, and
///    the classifications split the lab exactly into its open, closed and unreachable hosts.
#[test]
fn json_all_fields_every_reply_matches_the_truth() {
    let Some(l) = output_lab("198.18.8.0/22", 101, None) else { return };
    let meta = l.path("meta.json");
    let start = now_secs();
    let out = l.stdout(&[
        "-p",
        "80",
        "-r",
        "5000",
        "-O",
        "json",
        "-f",
        "*",
        "--output-filter",
        "",
        "-m",
        meta.to_str().expect("utf-8"),
    ]);
    let end = now_secs();
    let recs = parse_json_lines(&out);
    let scanner = l.lab.scanner_ip();
    let mut by_class: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut last = (0, 0);
    let mut in_cooldown = false;
    let mut success_cooldown = 0;
    for rec in &recs {
        check_common_fields(rec, scanner, start, end);
        // Records come out in capture order, and the cooldown starts once.
        let t = (uint(rec, "timestamp_ts"), uint(rec, "timestamp_us"));
        assert!(t >= last, "capture times go back from {last:?} at {rec:?}");
        last = t;
        let cooldown = boolean(rec, "cooldown");
        assert!(cooldown || !in_cooldown, "cooldown ended before {rec:?}");
        in_cooldown = cooldown;
        success_cooldown += usize::from(cooldown && boolean(rec, "success"));
        let saddr = addr(string(rec, "saddr"));
        let class = string(rec, "classification");
        assert_eq!(boolean(rec, "success"), class == "synack", "{rec:?}");
        match class {
            "synack" | "rst" => {
                assert_eq!(uint(rec, "sport"), 80, "{rec:?}");
                assert!(SOURCE_PORTS.contains(&uint(rec, "dport")), "{rec:?}");
                let (seq, ack, win) =
                    (uint(rec, "seqnum"), uint(rec, "acknum"), uint(rec, "window"));
                assert!(seq <= u64::from(u32::MAX) && ack <= u64::from(u32::MAX), "{rec:?}");
                assert!(!rec.contains_key("icmp_responder"), "{rec:?}");
                if class == "synack" {
                    assert!(win > 0, "{rec:?}");
                    assert!(uint(rec, "tcpopt_mss") > 0, "{rec:?}");
                } else {
                    assert!(!rec.contains_key("tcpopt_mss"), "an RST has no options: {rec:?}");
                }
            }
            "icmp" => {
                assert!(!rec.contains_key("sport"), "an ICMP error has no TCP fields: {rec:?}");
                assert_eq!(uint(rec, "icmp_type"), 3, "{rec:?}");
                assert_eq!(uint(rec, "icmp_code"), 1, "{rec:?}");
                assert_eq!(string(rec, "icmp_unreach_str"), "host unreachable", "{rec:?}");
                assert!(l.lab.prefix().contains(addr(string(rec, "icmp_responder"))), "{rec:?}");
            }
            other => panic!("unexpected classification {other:?}: {rec:?}"),
        }
        by_class.entry(class.to_owned()).or_default().push(saddr);
    }
    let mut take = |c: &str| unique(by_class.remove(c).unwrap_or_default(), c);
    l.assert_same(&take("synack"), &l.open(), "synack");
    l.assert_same(&take("rst"), &l.closed(), "rst");
    l.assert_same(&take("icmp"), &l.unreachable(), "icmp");
    assert!(!l.unreachable().is_empty());
    // The metadata's counters describe the same answers.
    let v: Value = serde_json::from_str(&read(&meta)).expect("the metadata is JSON");
    let (open, failures) = (l.open().len(), l.closed().len() + l.unreachable().len());
    assert_eq!(v["output_results"], recs.len(), "{v}");
    assert_eq!(v["validation_passed"], recs.len(), "{v}");
    assert_eq!(v["success_total"], open, "{v}");
    assert_eq!(v["success_unique"], open, "{v}");
    assert_eq!(v["failure_total"], failures, "{v}");
    assert_eq!(v["success_cooldown_total"], success_cooldown, "{v}");
    assert_eq!(v["packets_sent"], 1022, "{v}");
    l.assert_blocklist_respected();
}

/// 2. `--output-filter "success = 1 && repeat = 0"` with `-f saddr,classification`: exactly
///    the open hosts, one line each, in csv (header row) and in json (only those two keys).
#[test]
fn success_filter_gives_exactly_the_open_hosts() {
    let Some(l) = output_lab("198.18.16.0/22", 202, None) else { return };
    let filter = ["--output-filter", "success = 1 && repeat = 0"];
    let base = ["-p", "80", "-r", "5000", "-f", "saddr,classification"];

    let text = l.stdout(&[&base[..], &filter[..]].concat());
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, ["saddr", "classification"]);
    for r in &rows {
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1], "synack", "{r:?}");
    }
    let got = unique(rows.iter().map(|r| addr(&r[0])), "csv");
    l.assert_same(&got, &l.open(), "csv, success = 1 && repeat = 0");

    let text = l.stdout(&[&base[..], &filter[..], &["-O", "json"][..]].concat());
    assert!(text.lines().all(|l| l.starts_with("{\"saddr\":")), "-f order: {text}");
    let recs = parse_json_lines(&text);
    for rec in &recs {
        let keys: BTreeSet<&str> = rec.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["classification", "saddr"]), "only these: {rec:?}");
        assert_eq!(string(rec, "classification"), "synack");
    }
    let got = unique(recs.iter().map(|r| addr(string(r, "saddr"))), "json");
    l.assert_same(&got, &l.open(), "json, success = 1 && repeat = 0");
    l.assert_blocklist_respected();
}

/// 3. csv with a filter on a string field, the default mode (bare addresses) and the default
///    mode with two ports (`saddr,sport`).
#[test]
fn csv_filter_and_default_mode_on_one_and_two_ports() {
    let Some(l) = output_lab("198.18.24.0/22", 303, Some(81)) else { return };
    let text = l.stdout(&[
        "-p",
        "80",
        "-r",
        "5000",
        "-f",
        "saddr,sport,classification,success",
        "--output-filter",
        "classification = rst",
    ]);
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, ["saddr", "sport", "classification", "success"]);
    for r in &rows {
        assert_eq!(r[1..], ["80", "rst", "0"], "{r:?}");
    }
    let got = unique(rows.iter().map(|r| addr(&r[0])), "rst rows");
    l.assert_same(&got, &l.closed(), "csv, classification = rst");

    // Every field of every answer: as many cells as header names, NULL as an empty cell.
    let text = l.stdout(&["-p", "80", "-r", "5000", "-f", "*", "--output-filter", ""]);
    let (header, rows) = parse_csv(&text);
    let names = field_names();
    assert_eq!(header, names, "the header lists every field in schema order");
    let col = |name: &str| names.iter().position(|n| n == name).expect("field");
    let (saddr, sport, class, success, responder) =
        (col("saddr"), col("sport"), col("classification"), col("success"), col("icmp_responder"));
    let mut by_class: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{r:?}");
        let tcp = r[class] != "icmp";
        assert_eq!(r[sport], if tcp { "80" } else { "" }, "{r:?}");
        assert_eq!(r[responder].is_empty(), tcp, "{r:?}");
        assert_eq!(r[success], if r[class] == "synack" { "1" } else { "0" }, "{r:?}");
        by_class.entry(r[class].clone()).or_default().push(addr(&r[saddr]));
    }
    let mut take = |c: &str| unique(by_class.remove(c).unwrap_or_default(), c);
    l.assert_same(&take("synack"), &l.open(), "csv -f '*' synack");
    l.assert_same(&take("rst"), &l.closed(), "csv -f '*' rst");
    l.assert_same(&take("icmp"), &l.unreachable(), "csv -f '*' icmp");
    assert!(by_class.is_empty(), "other classifications: {by_class:?}");

    // Default mode: first successes only, field saddr, no header.
    let text = l.stdout(&["-p", "80", "-r", "5000"]);
    let got = unique(text.lines().map(addr), "default mode");
    l.assert_same(&got, &l.open(), "default mode, one port");

    // Two ports: `saddr,sport` per open (host, port), still no header.
    let meta = l.path("two-ports.json");
    let text = l.stdout(&["-p", "80,81", "-r", "5000", "-m", meta.to_str().expect("utf-8")]);
    let mut got = BTreeSet::new();
    for line in text.lines() {
        let (a, p) = line.split_once(',').unwrap_or_else(|| panic!("not saddr,sport: {line:?}"));
        assert!(got.insert((addr(a), p.parse::<u16>().expect("port"))), "twice: {line:?}");
    }
    let want: BTreeSet<(Ipv4Addr, u16)> =
        l.open().into_iter().flat_map(|a| [(a, 80), (a, 81)]).collect();
    if got != want {
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        panic!(
            "default mode, two ports: missing {missing:?}; unexpected {extra:?}; {}; rzmap: {}",
            l.counters(),
            read(&meta)
        );
    }
    l.assert_blocklist_respected();
}

/// The redis-server's TCP port on the scanner namespace's own loopback.
const REDIS_PORT: u16 = 6390;

/// A redis-server started (by this test) inside the lab's scanner namespace, listening on a
/// unix socket in a temp dir and on that namespace's loopback; killed on drop.
struct RedisServer {
    child: Child,
    socket: PathBuf,
    port: u16,
}

impl RedisServer {
    fn start(l: &OutputLab) -> RedisServer {
        let socket = l.path("redis.sock");
        let port = REDIS_PORT;
        let child = l
            .lab
            .scanner_cmd("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(l.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        let server = RedisServer { child, socket, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `redis-cli --raw` over the unix socket (reachable from any namespace).
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .arg("--raw")
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn list(&self, key: &str) -> Vec<String> {
        let n: usize = self.cli(&["LLEN", key]).trim().parse().expect("LLEN");
        let items: Vec<String> =
            self.cli(&["LRANGE", key, "0", "-1"]).lines().map(str::to_owned).collect();
        assert_eq!(items.len(), n, "LRANGE {key} returned {} of {n} items", items.len());
        items
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 4. `-O redis`: json records over a unix socket, csv records over the scanner namespace's
///    loopback; each list holds exactly the open hosts.
#[test]
fn redis_lists_hold_exactly_the_open_hosts() {
    let Some(l) = output_lab("198.18.32.0/22", 404, None) else { return };
    let redis = RedisServer::start(&l);
    let filter = ["--output-filter", "success = 1 && repeat = 0"];

    let url = format!("unix://{}?key=rzj&format=json", redis.socket.display());
    let args = ["-p", "80", "-r", "5000", "-O", "redis", "--output-args", &url];
    let out = l.stdout(&[&args[..], &["-f", "saddr,sport,classification"], &filter[..]].concat());
    assert_eq!(out, "", "redis output writes nothing to stdout");
    let recs: Vec<Value> = redis
        .list("rzj")
        .iter()
        .map(|s| serde_json::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
        .collect();
    for r in &recs {
        assert_eq!(r["sport"], 80, "{r}");
        assert_eq!(r["classification"], "synack", "{r}");
    }
    let got = unique(recs.iter().map(|r| addr(r["saddr"].as_str().expect("saddr"))), "json");
    l.assert_same(&got, &l.open(), "redis json");

    // Small batches: many RPUSHes, still each record exactly once.
    let url = format!("redis://127.0.0.1:{}/0?key=rzc&format=csv&batch=7", redis.port);
    let args = ["-p", "80", "-r", "5000", "-O", "redis", "--output-args", &url];
    l.stdout(&[&args[..], &["-f", "saddr,success"], &filter[..]].concat());
    let rows = redis.list("rzc");
    let got = unique(
        rows.iter().map(|row| match row.split_once(',') {
            Some((a, "1")) => addr(a),
            _ => panic!("not a saddr,success row of a success: {row:?}"),
        }),
        "csv",
    );
    l.assert_same(&got, &l.open(), "redis csv");
    assert!(redis.list("rzj").len() == got.len(), "the json list is untouched");
    l.assert_blocklist_respected();
}

/// 5. `-N 5` counts records that passed the output filter: five open hosts, even though most
///    answers are RSTs, and the scan ends without its cooldown.
#[test]
fn max_results_counts_filtered_records() {
    let Some(l) = output_lab("198.18.40.0/22", 505, None) else { return };
    let meta = l.path("meta.json");
    let started = Instant::now();
    let text = l.stdout(&[
        "-p",
        "80",
        "-r",
        "1000",
        "-c",
        "20",
        "-N",
        "5",
        "--output-filter",
        "success = 1",
        "-m",
        meta.to_str().expect("utf-8 path"),
    ]);
    assert!(started.elapsed() < Duration::from_secs(15), "-N skips the 20 s cooldown");
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, ["saddr"]);
    assert_eq!(rows.len(), 5, "{text}");
    let got = unique(rows.iter().map(|r| addr(&r[0])), "-N 5");
    let open = l.open();
    assert!(got.is_subset(&open), "not open: {:?}", got.difference(&open).collect::<Vec<_>>());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&meta).expect("metadata"))
        .expect("metadata is JSON");
    assert_eq!(v["max_results"], 5);
    assert_eq!(v["cooldown_secs"], 20, "the later -c wins");
    assert_eq!(v["output_results"], 5, "{v}");
    assert!(v["packets_sent"].as_u64().expect("packets_sent") < 1022, "stopped early: {v}");
    l.assert_blocklist_respected();
}

/// tcp_synscan's output fields, from `rzmap --list-output-fields` (no socket is opened).
fn field_names() -> Vec<String> {
    let out = Command::new(BIN)
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["-M", "tcp_synscan", "--list-output-fields"])
        .output()
        .expect("run rzmap --list-output-fields");
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(names.len() > 20 && names[0] == "saddr", "{names:?}");
    names
}

/// Waits for rzmap, whose output pipe was just closed, to end within `limit` (about one
/// output flush), and checks that it said nothing about the pipe. Returns the exit status
/// and standard error.
fn wait_quietly(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let closed_at = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for rzmap") {
            break s;
        }
        if closed_at.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rzmap kept running {limit:?} after its output pipe was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("rzmap exited {:?} after its output pipe was closed", closed_at.elapsed());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    let lower = err.to_lowercase();
    for word in ["error", "pipe", "panic", "fatal"] {
        assert!(!lower.contains(word), "rzmap is quiet about the closed pipe: {err}");
    }
    (status, err)
}

/// Reads a file or fails with its name.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 6. `-o FILE` writes what stdout would get (replacing an older, longer file); a write error
///    ends the scan with status 1; a reader that closes the pipe, before the first write or
///    after three lines (`rzmap | head -n 3`), ends it promptly and quietly with status 0.
#[test]
fn output_file_and_closed_pipe() {
    let Some(l) = output_lab("198.18.48.0/22", 606, None) else { return };
    let file = l.path("out.csv");
    let args = ["-p", "80", "-r", "5000", "-O", "csv", "-f", "saddr,classification,success"];
    let filter = ["--output-filter", "success = 1 || classification = rst"];
    // An existing, longer file is replaced, not overwritten in place.
    std::fs::write(&file, "stale\n".repeat(100_000)).expect("write the stale file");
    let to_file =
        l.stdout(&[&args[..], &filter[..], &["-o", file.to_str().expect("utf-8")]].concat());
    assert_eq!(to_file, "", "-o FILE leaves stdout empty");
    let to_stdout = l.stdout(&[&args[..], &filter[..]].concat());
    let (fh, frows) = parse_csv(&read(&file));
    let (sh, srows) = parse_csv(&to_stdout);
    assert_eq!(fh, sh);
    assert_eq!(fh, ["saddr", "classification", "success"]);
    let as_set = |rows: &[Vec<String>]| -> BTreeSet<Vec<String>> {
        let set: BTreeSet<Vec<String>> = rows.iter().cloned().collect();
        assert_eq!(set.len(), rows.len(), "duplicate rows");
        set
    };
    assert_eq!(as_set(&frows), as_set(&srows), "-o FILE and stdout hold the same rows");
    let open = unique(
        frows.iter().filter(|r| r[1..] == ["synack", "1"]).map(|r| addr(&r[0])),
        "synack rows",
    );
    l.assert_same(&open, &l.open(), "-o FILE synack rows");
    let closed =
        unique(frows.iter().filter(|r| r[1..] == ["rst", "0"]).map(|r| addr(&r[0])), "rst rows");
    l.assert_same(&closed, &l.closed(), "-o FILE rst rows");
    assert_eq!(frows.len(), open.len() + closed.len(), "only synack and rst rows");

    // Any other write error (here ENOSPC) ends the scan at once with status 1 and says why.
    let probes_before = l.lab.probe_packets().expect("nft counter");
    let out = l.cmd(&["-p", "80", "-r", "300", "-o", "/dev/full"]).output().expect("run rzmap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let probes = l.lab.probe_packets().expect("nft counter") - probes_before;
    assert!(probes < 800, "the scan stopped at the write error, not after {probes} probes");

    // `| true`: the reader is gone before the first write (the csv header): status 0.
    for args in [&["-O", "csv", "--output-filter", "success = 1"][..], &[][..]] {
        let mut child = l
            .cmd(&[&["-p", "80", "-r", "5000"][..], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rzmap");
        drop(child.stdout.take());
        let (status, err) = wait_quietly(child, Duration::from_secs(5));
        assert!(status.success(), "{args:?}: a closed pipe is status 0, got {status:?}: {err}");
    }

    // `| head -n 3`: a slow scan (about 10 s) whose reader goes away after three lines.
    let probes_before = l.lab.probe_packets().expect("nft counter");
    let mut child = l
        .cmd(&["-p", "80", "-r", "100", "-c", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rzmap");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout pipe"));
    let open = l.open();
    for _ in 0..3 {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read a result") > 0, "rzmap ended early");
        assert!(open.contains(&addr(line.trim_end())), "{line:?}");
    }
    drop(reader);
    let (status, err) = wait_quietly(child, Duration::from_secs(3));
    assert!(status.success(), "a closed pipe ends rzmap with status 0, got {status:?}: {err}");
    let probes = l.lab.probe_packets().expect("nft counter") - probes_before;
    assert!(probes < 800, "the scan stopped when the reader went away, not after {probes} probes");
    l.assert_blocklist_respected();
}

/// 7. SIGINT mid-scan with `-O json -o FILE -m META`: the file holds every record output
///    before the signal (whole lines, each an open host that was probed) and the metadata
///    is valid JSON whose counters agree with the file.
#[test]
fn sigint_keeps_every_record_and_writes_the_metadata() {
    let Some(l) = output_lab("198.18.56.0/21", 707, None) else { return };
    let file = l.path("out.json");
    let meta = l.path("meta.json");
    let child = l
        .cmd(&[
            "-p",
            "80",
            "-r",
            "200",
            "-O",
            "json",
            "-f",
            "saddr,classification,success",
            "--output-filter",
            "success = 1",
            "-o",
            file.to_str().expect("utf-8"),
            "-m",
            meta.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rzmap");
    std::thread::sleep(Duration::from_millis(3500));
    // `ip netns exec` execs rzmap in place, so the child is rzmap itself.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
    assert_eq!(comm.trim(), "rzmap", "the child process is rzmap");
    let signalled =
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("run kill");
    assert!(signalled.success());
    let out = child.wait_with_output().expect("wait for rzmap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SIGINT is a clean stop, got {:?}: {err}", out.status);

    let text = read(&file);
    assert!(text.is_empty() || text.ends_with('\n'), "the last record is complete: {text:?}");
    let recs = parse_json_lines(&text);
    for r in &recs {
        assert_eq!(string(r, "classification"), "synack", "{r:?}");
        assert!(boolean(r, "success"), "{r:?}");
    }
    let got = unique(recs.iter().map(|r| addr(string(r, "saddr"))), "SIGINT output");
    let probed: Addrs = l.lab.probes_per_address().expect("nft set").into_keys().collect();
    let open = l.open();
    let reachable: Addrs = open.intersection(&probed).copied().collect();
    assert!(probed.len() > 300 && probed.len() < 1500, "stopped mid-scan: {} probed", probed.len());
    assert!(
        got.is_subset(&reachable),
        "not open or never probed: {:?}",
        got.difference(&reachable).collect::<Vec<_>>()
    );
    // Answers in flight at the moment of the signal may be lost; nothing older may be.
    let lost: Vec<_> = reachable.difference(&got).collect();
    eprintln!(
        "SIGINT after {} probes: {} records, {} open hosts probed, lost {lost:?}",
        probed.len(),
        got.len(),
        reachable.len()
    );
    assert!(lost.len() <= 2, "open hosts probed before the signal but missing: {lost:?}");

    let v: Value = serde_json::from_str(&read(&meta)).expect("the metadata is JSON");
    assert_eq!(v["output_results"], recs.len(), "{v}");
    assert_eq!(v["success_unique"], recs.len(), "{v}");
    assert_eq!(v["packets_sent"], probed.len(), "{v}");
    assert_eq!(v["output_filter"], "success = 1", "{v}");
    l.assert_blocklist_respected();
}

/// 4b. `-O redis` while the server is away: records are buffered and all delivered once it
///     comes up mid-scan; if it never comes up, rzmap fails (status 1) and says how many
///     records were not delivered, which is exactly the number of open hosts.
#[test]
fn redis_buffers_until_the_server_comes_up() {
    let Some(l) = output_lab("198.18.64.0/22", 808, None) else { return };
    let open = l.open();
    // TCP on the scanner namespace's loopback: rzmap reconnects after it dropped root (it
    // runs as `nobody` then), and a root-only unix socket would refuse it.
    let url = "redis://127.0.0.1:6390/0?key=late&format=csv";
    let args = ["-p", "80", "-O", "redis", "--output-args", url, "--output-filter", "success = 1"];

    // Never up: the records are reported lost, the exit status is 1.
    let out = l.cmd(&[&args[..], &["-r", "5000"][..]].concat()).output().expect("run rzmap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "undelivered records are an error: {err}");
    let lost = format!("{} records were not delivered", open.len());
    assert!(err.contains(&lost), "expected {lost:?} in: {err}");

    // Up about 1.5 s into a 3.5 s scan: nothing is lost.
    let child = l
        .cmd(&[&args[..], &["-r", "300"][..]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rzmap");
    std::thread::sleep(Duration::from_millis(1500));
    let redis = RedisServer::start(&l);
    let out = child.wait_with_output().expect("wait for rzmap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rzmap failed: {err}");
    assert!(err.contains("reconnected"), "the reconnection is reported: {err}");
    let got = unique(redis.list("late").iter().map(|a| addr(a)), "late redis");
    l.assert_same(&got, &open, "redis that came up mid-scan");
    l.assert_blocklist_respected();
}

/// Filter expressions evaluated on live answers, each compared with the truth: an IPv4
/// literal (`=` and a range), NULL as 0 (`sport = 0` holds only for ICMP errors), the
/// documentation's example with `&&`, `||` and parentheses, and `!=` on a string. The fields
/// come out in `-f` order.
#[test]
fn filter_expressions_on_live_answers() {
    let Some(l) = output_lab("198.18.72.0/22", 909, None) else { return };
    let (open, closed, unreachable) = (l.open(), l.closed(), l.unreachable());
    assert!(!unreachable.is_empty());
    let scan = |filter: &str| -> Vec<Vec<String>> {
        let text = l.stdout(&[
            "-p",
            "80",
            "-r",
            "5000",
            "-f",
            "classification,saddr",
            "--output-filter",
            filter,
        ]);
        let (header, rows) = parse_csv(&text);
        assert_eq!(header, ["classification", "saddr"], "-f order");
        rows
    };
    let saddrs = |rows: &[Vec<String>], what: &str| unique(rows.iter().map(|r| addr(&r[1])), what);

    let one = *open.iter().nth(open.len() / 2).expect("an open host");
    let rows = scan(&format!("saddr = {one}"));
    assert_eq!(rows, [vec!["synack".to_owned(), one.to_string()]]);

    let (lo, hi) = (l.lab.prefix().nth(256), l.lab.prefix().nth(768));
    let rows = scan(&format!("saddr >= {lo} && saddr < {hi} && success = 1"));
    let want: Addrs = open.iter().copied().filter(|a| (lo..hi).contains(a)).collect();
    l.assert_same(&saddrs(&rows, "range"), &want, "saddr range");

    let rows = scan("sport = 0");
    assert!(rows.iter().all(|r| r[0] == "icmp"), "{rows:?}");
    l.assert_same(&saddrs(&rows, "sport = 0"), &unreachable, "sport = 0 (NULL)");

    let rows = scan("(classification = rst && ttl > 10) || classification = synack");
    let want: Addrs = open.union(&closed).copied().collect();
    l.assert_same(&saddrs(&rows, "rst or synack"), &want, "(rst && ttl > 10) || synack");

    let rows = scan("classification != \"synack\"");
    let want: Addrs = closed.union(&unreachable).copied().collect();
    l.assert_same(&saddrs(&rows, "!= synack"), &want, "classification != \"synack\"");
    l.assert_blocklist_respected();
}

/// The `repeat` field with two probes per host (`-P 2`): with full dedup the second SYN-ACK
/// of an open host is a repeat, while RSTs and ICMP errors never are (only successes mark a
/// host as seen); `--dedup-method none` marks nothing; `repeat = 1` selects the open hosts.
#[test]
fn repeat_field_with_two_probes() {
    let Some(l) = output_lab("198.18.80.0/22", 1010, None) else { return };
    let (open, closed, unreachable) = (l.open(), l.closed(), l.unreachable());
    let base = ["-p", "80", "-r", "5000", "-P", "2", "-O", "json"];
    let fields = ["-f", "saddr,classification,repeat,sport,dport"];
    let count = |recs: &[serde_json::Map<String, Value>]| {
        let mut m: BTreeMap<(String, Ipv4Addr, bool), usize> = BTreeMap::new();
        for r in recs {
            let key = (
                string(r, "classification").to_owned(),
                addr(string(r, "saddr")),
                boolean(r, "repeat"),
            );
            *m.entry(key).or_default() += 1;
        }
        m
    };
    let expect = |repeats: bool| {
        let mut m = BTreeMap::new();
        for &a in &open {
            if repeats {
                m.insert(("synack".to_owned(), a, false), 1);
                m.insert(("synack".to_owned(), a, true), 1);
            } else {
                m.insert(("synack".to_owned(), a, false), 2);
            }
        }
        for &a in &closed {
            m.insert(("rst".to_owned(), a, false), 2);
        }
        for &a in &unreachable {
            m.insert(("icmp".to_owned(), a, false), 2);
        }
        m
    };
    let check = |args: &[&str], repeats: bool, what: &str| {
        let recs = parse_json_lines(&l.stdout(args));
        // The two probes of a host leave from two different source ports.
        let mut ports: BTreeMap<Ipv4Addr, BTreeSet<u64>> = BTreeMap::new();
        for r in recs.iter().filter(|r| string(r, "classification") != "icmp") {
            ports.entry(addr(string(r, "saddr"))).or_default().insert(uint(r, "dport"));
        }
        assert!(ports.values().all(|p| p.len() == 2), "{what}: two source ports per host");
        let (got, want) = (count(&recs), expect(repeats));
        if got != want {
            let diff: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(k) != Some(v))
                .chain(want.iter().filter(|(k, _)| !got.contains_key(k)))
                .take(10)
                .collect();
            panic!(
                "{what}: {} keys, {} expected; first differences {diff:?}",
                got.len(),
                want.len()
            );
        }
    };
    check(&[&base[..], &fields[..], &["--output-filter", ""]].concat(), true, "full dedup");
    check(
        &[&base[..], &fields[..], &["--output-filter", "", "--dedup-method", "none"]].concat(),
        false,
        "no dedup",
    );
    let recs = parse_json_lines(
        &l.stdout(&[&base[..], &fields[..], &["--output-filter", "repeat = 1"]].concat()),
    );
    assert!(recs.iter().all(|r| string(r, "classification") == "synack" && boolean(r, "repeat")));
    let got = unique(recs.iter().map(|r| addr(string(r, "saddr"))), "repeat = 1");
    l.assert_same(&got, &open, "repeat = 1");
    // Default mode drops failures and repeats: each open host once.
    let text = l.stdout(&["-p", "80", "-r", "5000", "-P", "2"]);
    l.assert_same(&unique(text.lines().map(addr), "default mode"), &open, "default mode, -P 2");
    l.assert_blocklist_respected();
}

/// UDP answers in csv: binary fields as lowercase hex (the lab echoes the probe's payload),
/// NULL cells empty; the classifications and ICMP reasons split the lab exactly into its
/// UDP-open hosts, its UDP-closed hosts (port unreachable) and its unreachable hosts.
#[test]
fn udp_payloads_and_icmp_errors_in_csv() {
    let Some(l) = output_lab("198.18.88.0/22", 1111, None) else { return };
    let payload = "rzmap lab, output";
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    let probe_args = format!("text:{payload}");
    let text = l.stdout(&[
        "-M",
        "udp",
        "-p",
        "53",
        "-r",
        "5000",
        "--probe-args",
        &probe_args,
        "-f",
        "saddr,classification,success,sport,udp_pkt_size,data,icmp_unreach_str",
        "--output-filter",
        "",
    ]);
    let (header, rows) = parse_csv(&text);
    assert_eq!(
        header,
        ["saddr", "classification", "success", "sport", "udp_pkt_size", "data", "icmp_unreach_str"]
    );
    let mut by_class: BTreeMap<(String, String), Vec<Ipv4Addr>> = BTreeMap::new();
    for r in &rows {
        match r[1].as_str() {
            "udp" => {
                let size = (8 + payload.len()).to_string();
                assert_eq!(r[2..], ["1", "53", size.as_str(), hex.as_str(), ""], "{r:?}");
            }
            "icmp" => assert_eq!(r[2..6], ["0", "", "", ""], "{r:?}"),
            other => panic!("unexpected classification {other:?}: {r:?}"),
        }
        by_class.entry((r[1].clone(), r[6].clone())).or_default().push(addr(&r[0]));
    }
    let t = l.lab.truth();
    let mut take = |c: &str, why: &str| {
        unique(by_class.remove(&(c.to_owned(), why.to_owned())).unwrap_or_default(), c)
    };
    let set = |v: &[Ipv4Addr]| -> Addrs { v.iter().copied().collect() };
    l.assert_same(&take("udp", ""), &set(&t.udp_open), "udp");
    l.assert_same(&take("icmp", "port unreachable"), &set(&t.udp_closed), "port unreachable");
    l.assert_same(&take("icmp", "host unreachable"), &set(&t.unreachable), "host unreachable");
    assert!(by_class.is_empty(), "other rows: {by_class:?}");
    l.assert_blocklist_respected();
}
