//! `--banner` (stateless banner grabbing) against real Linux TCP servers in an `rzmap-lab`.
//! rzmap runs only inside the lab's scanner namespace, whose only link leads to the lab's
//! simulated Internet in 198.18.0.0/15. Needs root, `ip`, `nft`, `ss` and `ethtool`; fails when
//! the lab cannot be built unless `RZMAP_SKIP_LAB=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rzmap_lab::{Lab, LabSpec, Prefix, skip_lab};

const BIN: &str = env!("CARGO_BIN_EXE_rzmap");
const GREETING: &str = "SSH-2.0-rzlab_banner_test\r\n";
const HTTP_GET: &str = "GET / HTTP/1.0\r\n\r\n";
/// What the lab's HTTP responder answers.
const HTTP_RESPONSE: &str = "HTTP/1.0 200 OK\r\nServer: rzmap-lab\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nrzmap-lab\n";

struct Setup {
    lab: Lab,
    block: tempfile::NamedTempFile,
}

fn lab(prefix: &str, seed: u64, greeting: Option<&str>, http: Option<u16>) -> Option<Setup> {
    if skip_lab() {
        eprintln!("RZMAP_SKIP_LAB=1: skipping the stateless banner lab test");
        return None;
    }
    let prefix: Prefix = prefix.parse().unwrap();
    let mut spec = LabSpec::new(prefix, seed);
    spec.blocklisted = vec![prefix.nth(9)];
    spec.greeting = greeting.map(str::to_string);
    spec.http_port = http;
    let lab = Lab::build(spec).unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let block = tempfile::NamedTempFile::new().unwrap();
    let list: String = lab.truth().blocklisted.iter().map(|a| format!("{a}/32\n")).collect();
    std::fs::write(block.path(), list).unwrap();
    Some(Setup { lab, block })
}

impl Setup {
    /// rzmap in the scanner namespace with the common options, JSON records.
    fn cmd(&self, port: u16, extra: &[&str]) -> Command {
        let mut c = self.lab.scanner_cmd(BIN);
        c.env("RZMAP_DEFAULT_CONFIG", "")
            .args(["-q", "-r", "500", "-c", "1", "-s", "40000-40999", "-O", "json"])
            .args(["-f", "saddr,sport,classification,success,data,banner_class"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-b")
            .arg(self.block.path())
            .args(extra)
            .arg(self.lab.prefix().to_string());
        c
    }

    fn run(&self, port: u16, extra: &[&str]) -> Output {
        let out = self.cmd(port, extra).output().unwrap();
        assert!(out.status.success(), "rzmap failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs rzmap and, `at` after the start (while rzmap is still in its cooldown), lists the
    /// net namespace's connections: every grab has finished by then, and each server socket
    /// must be gone, closed by our RST (a dropped RST would leave it retransmitting its FIN
    /// until rzmap exits and the kernel answers).
    fn run_checking_midway(
        &self,
        port: u16,
        extra: &[&str],
        at: Duration,
    ) -> (Output, Vec<String>) {
        let mut c = self.cmd(port, extra);
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(at);
        let midway = self.lingering();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rzmap failed: {}", String::from_utf8_lossy(&out.stderr));
        (out, midway)
    }

    fn open(&self) -> BTreeSet<Ipv4Addr> {
        self.lab.truth().open_tcp.iter().copied().collect()
    }

    /// Every address of the prefix except the blocklisted got exactly one SYN.
    fn assert_one_syn_each(&self) {
        let per = self.lab.probes_per_address().unwrap();
        let want: BTreeSet<Ipv4Addr> = self
            .lab
            .prefix()
            .addrs()
            .filter(|a| !self.lab.truth().blocklisted.contains(a))
            .collect();
        // The prefix's network and broadcast addresses are scanned too (rzmap scans all).
        let got: BTreeSet<Ipv4Addr> = per.keys().copied().collect();
        assert_eq!(got, want, "addresses probed");
        let multi: Vec<_> = per.iter().filter(|(_, n)| **n != 1).collect();
        assert!(multi.is_empty(), "addresses with more than one SYN: {multi:?}");
        assert_eq!(self.lab.blocklisted_packets().unwrap(), 0);
    }

    /// The net namespace's TCP sockets other than listeners, for the lab prefix.
    fn lingering(&self) -> Vec<String> {
        let out = self.lab.net_cmd("ss").args(["-tan"]).output().unwrap();
        assert!(out.status.success());
        let prefix = self.lab.prefix();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("LISTEN"))
            .filter(|l| {
                l.split_whitespace()
                    .filter_map(|w| w.rsplit_once(':').and_then(|(a, _)| a.parse().ok()))
                    .any(|a: Ipv4Addr| prefix.contains(a))
            })
            .map(str::to_string)
            .collect()
    }

    fn rzmap_tables(&self) -> Vec<String> {
        let out = self.lab.scanner_cmd("nft").args(["list", "tables"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("rzmap_"))
            .map(str::to_string)
            .collect()
    }
}

/// One grabbed connection: (data as text, class).
type Grab = (String, String);

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> =
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Banner records by address (each address at most once), and the addresses of `rst`
/// records.
fn parse(out: &Output) -> (BTreeMap<Ipv4Addr, Grab>, BTreeSet<Ipv4Addr>) {
    let mut grabs = BTreeMap::new();
    let mut others = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let a: Ipv4Addr = v["saddr"].as_str().unwrap().parse().unwrap();
        match v["banner_class"].as_str() {
            Some(class) => {
                assert_eq!(v["classification"], "synack", "{line}");
                let data = unhex(v["data"].as_str().unwrap_or(""));
                let old = grabs.insert(a, (data, class.to_string()));
                assert!(old.is_none(), "two banner records for {a}");
            }
            None if v["classification"] == "rst" => {
                others.insert(a);
            }
            None => {
                // ICMP errors (the lab's unreachable hosts).
                assert_eq!(v["success"], false, "{line}");
                assert!(v["data"].is_null(), "{line}");
            }
        }
    }
    (grabs, others)
}

fn wait_until_quiet(s: &Setup) -> Vec<String> {
    // Server sockets close on our RST at once; allow the responders' threads a moment.
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let l = s.lingering();
        if l.is_empty() || Instant::now() > end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn greeting_is_grabbed_from_every_open_host_with_one_syn_each() {
    let Some(s) = lab("198.18.4.0/26", 21, Some(GREETING), None) else { return };
    let (out, midway) =
        s.run_checking_midway(80, &["--banner", "--banner-timeout", "5"], Duration::from_secs(3));
    assert!(midway.is_empty(), "server sockets not reset by rzmap: {midway:#?}");
    let (grabs, rsts) = parse(&out);
    assert!(!s.open().is_empty());
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open(), "banner hosts");
    for (a, (data, class)) in &grabs {
        assert_eq!((data.as_str(), class.as_str()), (GREETING, "banner"), "{a}");
    }
    let closed: BTreeSet<Ipv4Addr> = s.lab.truth().closed_tcp.iter().copied().collect();
    assert_eq!(rsts, closed, "closed hosts are ordinary rst records");
    s.assert_one_syn_each();
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
    assert!(s.rzmap_tables().is_empty(), "{:?}", s.rzmap_tables());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("RST guard"), "{stderr}");
}

#[test]
fn http_payload_gets_the_responses() {
    let Some(s) = lab("198.18.5.0/26", 22, None, Some(8080)) else { return };
    let payload = format!("text:{HTTP_GET}");
    let out = s.run(8080, &["--banner", "--banner-timeout", "3", "--banner-payload", &payload]);
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open());
    for (a, (data, class)) in &grabs {
        assert_eq!((data.as_str(), class.as_str()), (HTTP_RESPONSE, "banner"), "{a}");
    }
    s.assert_one_syn_each();
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
}

#[test]
fn over_the_ip_layer_the_marked_rsts_pass_the_guard() {
    let Some(s) = lab("198.18.6.0/27", 23, Some(GREETING), None) else { return };
    let (out, midway) = s.run_checking_midway(
        80,
        &["-X", "--banner", "--banner-timeout", "5"],
        Duration::from_secs(3),
    );
    assert!(midway.is_empty(), "server sockets not reset by rzmap: {midway:#?}");
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open());
    for (a, (data, class)) in &grabs {
        assert_eq!((data.as_str(), class.as_str()), (GREETING, "banner"), "{a}");
    }
    s.assert_one_syn_each();
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
    assert!(s.rzmap_tables().is_empty());
}

#[test]
fn silent_reset_and_long_servers_are_classified() {
    // A listener that accepts and closes at once: FIN without data.
    let Some(s) = lab("198.18.7.0/27", 24, None, Some(8080)) else { return };
    let out = s.run(80, &["--banner", "--banner-timeout", "2"]);
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open());
    for (a, g) in &grabs {
        assert_eq!(g, &(String::new(), "no-banner".to_string()), "{a}");
    }
    // Closing with unread request bytes makes Linux reset (RFC 2525): the HTTP responder
    // reads 512 bytes at most, answers and closes.
    let payload = format!("text:{HTTP_GET}{}", "x".repeat(1000));
    let out = s.run(8080, &["--banner", "--banner-timeout", "2", "--banner-payload", &payload]);
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open());
    for (a, (data, class)) in &grabs {
        assert_eq!(class, "reset", "{a}");
        assert!(HTTP_RESPONSE.starts_with(data.as_str()), "{a}: {data:?}");
    }
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
    drop(s);

    let Some(s) = lab("198.18.8.0/27", 25, Some(GREETING), None) else { return };
    let out = s.run(80, &["--banner", "--banner-timeout", "2", "--banner-max", "7"]);
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open());
    for (a, g) in &grabs {
        assert_eq!(g, &(GREETING[..7].to_string(), "truncated".to_string()), "{a}");
    }
    s.assert_one_syn_each();
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
}

#[test]
fn sigint_mid_scan_removes_the_guard_table() {
    let Some(s) = lab("198.18.9.0/24", 26, Some(GREETING), None) else { return };
    // 255 targets at 20 per second: about 13 s of sending.
    let c = s.cmd(80, &["--banner", "--banner-timeout", "3"]);
    let idx = c.get_args().position(|a| a == "500").unwrap();
    let mut args: Vec<_> = c.get_args().map(|a| a.to_os_string()).collect();
    args[idx] = "20".into();
    let mut c = Command::new(c.get_program());
    c.args(args).env("RZMAP_DEFAULT_CONFIG", "").stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(5);
    let table = format!("rzmap_{pid}");
    while !s.rzmap_tables().iter().any(|l| l.contains(&table)) {
        assert!(Instant::now() < end, "the guard table {table} never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let st = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.rzmap_tables().is_empty(), "{:?}", s.rzmap_tables());
    // What was grabbed before the stop is reported, with correct banners.
    let (grabs, _) = parse(&out);
    assert!(!grabs.is_empty());
    for (a, (data, class)) in &grabs {
        assert!(s.open().contains(a));
        assert!(GREETING.starts_with(data.as_str()), "{a}: {data:?} {class}");
    }
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
}

#[test]
fn sigkill_leaves_no_table_either() {
    let Some(s) = lab("198.18.10.0/24", 27, Some(GREETING), None) else { return };
    let mut c = s.cmd(80, &["--banner"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    let table = format!("rzmap_{pid}");
    let end = Instant::now() + Duration::from_secs(5);
    while !s.rzmap_tables().iter().any(|l| l.contains(&table)) {
        assert!(Instant::now() < end, "the guard table {table} never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The keeper process sees its pipe close and deletes the table.
    let end = Instant::now() + Duration::from_secs(3);
    while !s.rzmap_tables().is_empty() {
        assert!(Instant::now() < end, "{:?}", s.rzmap_tables());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_option_style_completes_the_handshake() {
    let Some(s) = lab("198.18.11.0/27", 28, Some(GREETING), None) else { return };
    assert!(!s.open().is_empty());
    for style in ["windows", "linux", "bsd", "smallest-probes"] {
        let out = s.run(80, &["--banner", "--banner-timeout", "2", "--probe-args", style]);
        let (grabs, _) = parse(&out);
        assert_eq!(grabs.keys().copied().collect::<BTreeSet<_>>(), s.open(), "{style}");
        for (a, (data, class)) in &grabs {
            assert_eq!((data.as_str(), class.as_str()), (GREETING, "banner"), "{style} {a}");
        }
    }
}

#[test]
fn max_results_counts_grabs_and_closes_the_rest() {
    let Some(s) = lab("198.18.12.0/26", 29, Some(GREETING), None) else { return };
    assert!(s.open().len() > 3);
    let out = s.run(
        80,
        &["--banner", "--banner-timeout", "3", "-N", "3", "--output-filter", "success = 1"],
    );
    let (grabs, _) = parse(&out);
    assert_eq!(grabs.len(), 3, "{}", String::from_utf8_lossy(&out.stdout));
    for (a, (data, _)) in &grabs {
        assert!(s.open().contains(a));
        assert!(GREETING.starts_with(data.as_str()));
    }
    let left = wait_until_quiet(&s);
    assert!(left.is_empty(), "connections left in the net namespace: {left:#?}");
    assert!(s.rzmap_tables().is_empty());
}
