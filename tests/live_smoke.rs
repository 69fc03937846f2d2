//! Smoke tests of live scans: rzmap runs only inside the scanner namespace of an `rzmap-lab`
//! (whose only link leads to the lab's simulated Internet in 198.18.0.0/15) and its results
//! are compared with the lab's ground truth. Needs root, `ip`, `nft` and `ethtool`; set
//! `RZMAP_SKIP_LAB=1` to skip. The full live suite is in the `lab_*` tests.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rzmap_lab::{Lab, LabSpec, Prefix, skip_lab};

const BIN: &str = env!("CARGO_BIN_EXE_rzmap");

fn lab(prefix: &str, seed: u64) -> Option<(Lab, tempfile::NamedTempFile)> {
    if skip_lab() {
        eprintln!("RZMAP_SKIP_LAB=1: skipping live smoke test");
        return None;
    }
    let prefix: Prefix = prefix.parse().unwrap();
    let mut spec = LabSpec::new(prefix, seed);
    spec.blocklisted = vec![prefix.nth(9)];
    let lab = Lab::build(spec).unwrap_or_else(|e| panic!("cannot build the lab: {e}"));
    let block = tempfile::NamedTempFile::new().unwrap();
    let list: String = lab.truth().blocklisted.iter().map(|a| format!("{a}/32\n")).collect();
    std::fs::write(block.path(), list).unwrap();
    Some((lab, block))
}

fn addresses(stdout: &[u8]) -> BTreeSet<Ipv4Addr> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not an address: {l:?}")))
        .collect()
}

#[test]
fn synscan_finds_exactly_the_open_hosts() {
    let Some((lab, block)) = lab("198.18.0.0/24", 5) else { return };
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    let out = lab
        .scanner_cmd(BIN)
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["-q", "-p", "80", "-r", "2000", "-c", "1", "-b"])
        .arg(block.path())
        .arg("-m")
        .arg(&meta)
        .arg("198.18.0.0/24")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: BTreeSet<Ipv4Addr> = lab.truth().open_tcp.iter().copied().collect();
    assert!(!want.is_empty());
    assert_eq!(addresses(&out.stdout), want);
    assert_eq!(lab.blocklisted_packets().unwrap(), 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(v["packets_sent"], 255);
    assert_eq!(v["success_unique"], want.len());
    assert_eq!(v["iface"], lab.scanner_if());
    assert_eq!(v["dryrun"], false);
    assert_eq!(v["source_ips"], serde_json::json!([lab.scanner_ip().to_string()]));
}

#[test]
fn echoscan_over_the_ip_layer_with_all_fields() {
    let Some((lab, block)) = lab("198.18.1.0/25", 8) else { return };
    let out = lab
        .scanner_cmd(BIN)
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["-q", "-M", "icmp_echoscan", "-X", "-r", "2000", "-c", "1", "-O", "json"])
        .args(["-f", "saddr,success,classification,repeat,cooldown,timestamp_ts", "-b"])
        .arg(block.path())
        .arg("198.18.1.0/25")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut echo = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["repeat"], false, "{line}");
        assert!(v["timestamp_ts"].as_u64().unwrap() > 1_600_000_000);
        if v["success"] == true {
            assert_eq!(v["classification"], "echoreply");
            echo.insert(v["saddr"].as_str().unwrap().parse::<Ipv4Addr>().unwrap());
        }
    }
    let want: BTreeSet<Ipv4Addr> = lab.truth().echo.iter().copied().collect();
    assert_eq!(echo, want);
    assert_eq!(lab.blocklisted_packets().unwrap(), 0);
}

#[test]
fn max_results_ends_the_scan_at_once() {
    let Some((lab, block)) = lab("198.18.2.0/24", 13) else { return };
    let start = std::time::Instant::now();
    let out = lab
        .scanner_cmd(BIN)
        .env("RZMAP_DEFAULT_CONFIG", "")
        .args(["-q", "-p", "80", "-r", "1000", "-c", "20", "-N", "3", "-b"])
        .arg(block.path())
        .arg("198.18.2.0/24")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = addresses(&out.stdout);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|a| lab.truth().open_tcp.contains(a)));
    // No cooldown after -N (the 20 s cooldown would otherwise follow).
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
}
