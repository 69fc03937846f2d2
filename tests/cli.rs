//! Command-line tests: option parsing, config files, error messages, listings.
//!
//! These never scan: they stop at help, version, listings, errors, or the resolved
//! configuration printed by `RZMAP_DUMP_CONFIG=1`.

use assert_cmd::Command;
use serde_json::Value;
use std::io::Write;
use tempfile::NamedTempFile;

/// rzmap with no default config file and no inherited config dump.
fn rzmap() -> Command {
    let mut c = Command::cargo_bin("rzmap").unwrap();
    c.env("RZMAP_DEFAULT_CONFIG", "").env_remove("RZMAP_DUMP_CONFIG");
    c
}

/// Writes a config file.
fn conf(text: &str) -> NamedTempFile {
    let mut f = NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn path(f: &NamedTempFile) -> String {
    f.path().display().to_string()
}

/// Runs with the config dump on and returns the resolved configuration.
fn resolved(cmd: &mut Command) -> Value {
    let out = cmd.env("RZMAP_DUMP_CONFIG", "1").output().unwrap();
    assert!(out.status.success(), "rzmap failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs and expects exit code 1 with exactly this one line on stderr and nothing on stdout.
fn fails_with(cmd: &mut Command, line: &str) {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{line}\n"));
    assert!(out.stdout.is_empty());
}

/// Like [`fails_with`], for messages other modules word: checks the start of the line.
fn fails_starting_with(cmd: &mut Command, start: &str) {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(start), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn version_prints_name_and_version() {
    rzmap().arg("-V").assert().success().stdout(format!("rzmap {}\n", env!("CARGO_PKG_VERSION")));
    rzmap()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("rzmap {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_both_option_surfaces() {
    let out = rzmap().arg("-h").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--target-ports",
        "--target-port",
        "--blocklist-file",
        "--blacklist-file",
        "--allowlist-file",
        "--whitelist-file",
        "--summary",
        "--fast-dryrun",
        "--list-of-ips-file",
        "--iplayer",
        "--netmap-wait-ping",
        "--dedup-method",
        "--metadata-file",
        "--status-updates-file",
        "--user-metadata",
        "--max-sendto-failures",
        "--min-hitrate",
        "--cores",
        "--ignore-blocklist-errors",
        "--no-header-row",
        "--validate-source-port",
        "--disable-syslog",
        "--probe-ttl",
        "--source-mac",
        "--batch",
        "--retries",
        "--list-output-fields",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
    rzmap().arg("--help").assert().success();
}

#[test]
fn clap_errors_exit_1_with_clap_message() {
    let out = rzmap().arg("--no-such-option").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: unexpected argument '--no-such-option' found"), "{err}");
    assert_eq!(err.matches("error:").count(), 1);

    let out = rzmap().arg("-p").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: a value is required for '--target-ports <PORTS>'"), "{err}");
}

#[test]
fn zmap2_and_zmap4_spellings_resolve_the_same() {
    let a = resolved(rzmap().args([
        "--target-port=443",
        "--blacklist-file=/b",
        "--whitelist-file=/w",
        "-g",
        "-e",
        "5",
    ]));
    let b = resolved(rzmap().args([
        "--target-ports=443",
        "--blocklist-file=/b",
        "--allowlist-file=/w",
        "--summary",
        "--seed=5",
    ]));
    assert_eq!(a, b);
    assert_eq!(a["target_ports"], serde_json::json!([443]));
    assert_eq!(a["blocklist_file"], "/b");
    assert_eq!(a["allowlist_file"], "/w");
    assert_eq!(a["summary"], true);
}

#[test]
fn config_file_values_apply_and_the_command_line_wins() {
    let f = conf(
        "# scan settings\ninterface \"eth1\"\nsource-ip 198.18.0.4-198.18.0.8\n\
         gateway-mac b4:23:f9:28:fa:2d # upstream gateway\ncooldown-time 300 # seconds\n\
         blacklist-file /etc/zmap/blacklist.conf\nquiet\nsummary\nrate 100\nrate 200\n",
    );
    let c = resolved(rzmap().args(["-C", &path(&f)]));
    assert_eq!(c["interface"], "eth1");
    assert_eq!(c["source_ips"].as_array().unwrap().len(), 5);
    assert_eq!(c["gateway_mac"], serde_json::json!([0xb4, 0x23, 0xf9, 0x28, 0xfa, 0x2d]));
    assert_eq!(c["cooldown_secs"], 300);
    assert_eq!(c["blocklist_file"], "/etc/zmap/blacklist.conf");
    assert_eq!(c["quiet"], true);
    assert_eq!(c["summary"], true);
    assert_eq!(c["rate"], serde_json::json!({"Packets": 200}), "the last line of the file wins");

    let c = resolved(rzmap().args(["--config", &path(&f), "-r", "7", "-c", "1", "-i", "veth9"]));
    assert_eq!(c["rate"], serde_json::json!({"Packets": 7}));
    assert_eq!(c["cooldown_secs"], 1);
    assert_eq!(c["interface"], "veth9");
}

#[test]
fn command_line_beats_an_exclusive_option_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().to_str().unwrap();
    let f = conf(&format!("bandwidth 10M\nlog-file {logs}/x.log\n"));
    let c = resolved(rzmap().args(["-C", &path(&f), "-r", "100", "-L", logs]));
    assert_eq!(c["rate"], serde_json::json!({"Packets": 100}));
    assert_eq!(c["log"], serde_json::json!({ "Directory": logs }));
    let c = resolved(rzmap().args(["-C", &path(&f)]));
    assert_eq!(c["rate"], serde_json::json!({"Bandwidth": 10_000_000}));
    // Both from the command line: an error.
    fails_with(
        rzmap().args(["-C", &path(&f), "-r", "100", "-B", "1M"]),
        "rzmap: error: --rate: --rate and --bandwidth cannot be used together",
    );
    // Both from the file: an error naming the file line.
    let g = conf("rate 5\nbandwidth 1M\n");
    fails_with(
        rzmap().args(["-C", &path(&g)]),
        &format!(
            "rzmap: error: {}:1: --rate: --rate and --bandwidth cannot be used together",
            path(&g)
        ),
    );
}

#[test]
fn default_config_is_read_when_present_and_replaced_by_dash_c() {
    let default = conf("probe-module udp\nrate 11\n");
    let other = conf("rate 22\n");
    let c = resolved(rzmap().env("RZMAP_DEFAULT_CONFIG", default.path()));
    assert_eq!(c["probe_module"], "udp");
    assert_eq!(c["rate"], serde_json::json!({"Packets": 11}));
    let c =
        resolved(rzmap().env("RZMAP_DEFAULT_CONFIG", default.path()).args(["-C", &path(&other)]));
    assert_eq!(c["probe_module"], "tcp_synscan", "-C replaces the default file");
    assert_eq!(c["rate"], serde_json::json!({"Packets": 22}));
    // A default path that does not exist is silently skipped.
    let c = resolved(rzmap().env("RZMAP_DEFAULT_CONFIG", "/nonexistent/rzmap.conf"));
    assert_eq!(c["rate"], "Default");
}

#[test]
fn config_file_errors() {
    let f = conf("quiet\nfoo 1\n");
    fails_with(
        rzmap().args(["-C", &path(&f)]),
        &format!("rzmap: error: {}:2: unknown option \"foo\"", path(&f)),
    );
    let f = conf("rate\n");
    fails_with(
        rzmap().args(["-C", &path(&f)]),
        &format!("rzmap: error: {}:1: option \"rate\" needs a value", path(&f)),
    );
    let f = conf("\nbatch 0\n");
    fails_with(
        rzmap().args(["-C", &path(&f)]),
        &format!(
            "rzmap: error: {}:2: --batch: expected a whole number from 1 to 65535, got \"0\"",
            path(&f)
        ),
    );
    // The command line's valid value hides the file's bad one.
    let c = resolved(rzmap().args(["-C", &path(&f), "--batch", "3"]));
    assert_eq!(c["batch"], 3);
    let f = conf("target-ports 80,99999\n");
    fails_with(
        rzmap().args(["-C", &path(&f)]),
        &format!(
            "rzmap: error: {}:1: --target-ports: column 4: bad port \"99999\": ports are 0 to 65535",
            path(&f)
        ),
    );
    fails_with(
        rzmap().args(["-C", "/nonexistent/x.conf"]),
        "rzmap: error: /nonexistent/x.conf: cannot read config file: No such file or directory (os error 2)",
    );
    // An unreadable default file is an error too (it exists but cannot be read as a file).
    let dir = tempfile::tempdir().unwrap();
    let out = rzmap().env("RZMAP_DEFAULT_CONFIG", dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "rzmap: error: {}: cannot read config file:",
            dir.path().display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn tilde_in_config_path_and_values_expands_to_home() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("rz.conf"), "output-file ~/results.csv\n").unwrap();
    let c = resolved(rzmap().env("HOME", home.path()).args(["--config=~/rz.conf"]));
    assert_eq!(
        c["output_file"],
        serde_json::json!({"File": home.path().join("results.csv").display().to_string()})
    );
}

#[test]
fn one_line_errors_for_bad_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "80,,443"], "--target-ports: column 4: empty entry in the port list"),
        (&["-p", "80,70000"], "--target-ports: column 4: bad port \"70000\": ports are 0 to 65535"),
        (&["-s", "9-1"], "--source-port: column 1: bad range \"9-1\": it ends before it starts"),
        (&["-S", "1.2.3.4,x"], "--source-ip: column 9: bad IPv4 address \"x\""),
        (&["-S", "10.0.0.0-10.0.1.0"], "--source-ip: column 1: more than 256 source addresses"),
        (
            &["-B", "10Q"],
            "--bandwidth: expected bits per second such as 10M (suffixes G, M, K), got \"10Q\"",
        ),
        (&["-r", "fast"], "--rate: expected a whole number of at least 0, got \"fast\""),
        (&["-r", "5", "-B", "1M"], "--rate: --rate and --bandwidth cannot be used together"),
        (&["-n", "200%"], "--max-targets: expected a percentage from 0% to 100%, got \"200%\""),
        (
            &["--shards", "2"],
            "--shards: sharding needs --seed, so that every shard walks the same permutation",
        ),
        (
            &["--shards", "2", "--shard", "2", "-e", "1"],
            "--shard: shard 2 does not exist with --shards 2 (shards are numbered from 0)",
        ),
        (&["-P", "0"], "--probes: expected a whole number of at least 1, got \"0\""),
        (
            &["-P", "3", "-s", "7-8"],
            "--probes: 3 probes per target need 3 source ports, but --source-port gives 2",
        ),
        (&["--batch", "0"], "--batch: expected a whole number from 1 to 65535, got \"0\""),
        (&["-T", "256"], "--sender-threads: expected a whole number from 1 to 255, got \"256\""),
        (&["-v", "9"], "--verbosity: expected a whole number from 0 to 5, got \"9\""),
        (
            &["-l", "a", "-L", "b"],
            "--log-file: --log-file and --log-directory cannot be used together",
        ),
        (
            &["--user-metadata", "{\"a\":}"],
            "--user-metadata: column 6: not valid JSON: expected value",
        ),
        (
            &["--dedup-method", "maybe"],
            "--dedup-method: unknown method \"maybe\" (expected default, none, full or window)",
        ),
        (&["--cores", "0,a"], "--cores: column 3: bad CPU number \"a\""),
        (
            &["--probe-ttl", "256"],
            "--probe-ttl: expected a whole number from 1 to 255, got \"256\"",
        ),
        (
            &["-G", "00:11:22:33:44"],
            "--gateway-mac: bad MAC address \"00:11:22:33:44\" (expected six hex bytes such as 00:11:22:aa:bb:cc)",
        ),
        (
            &["--source-mac", "zz:11:22:33:44:55"],
            "--source-mac: column 1: bad MAC address \"zz:11:22:33:44:55\" (expected six hex bytes such as 00:11:22:aa:bb:cc)",
        ),
        (
            &["--netmap-wait-ping", "198.18.0.1", "-d"],
            "--netmap-wait-ping: not supported: rzmap has no netmap back end (the option only matters there)",
        ),
    ];
    for (argv, want) in cases {
        fails_with(rzmap().args(*argv), &format!("rzmap: error: {want}"));
    }
}

#[test]
fn listings_come_from_the_registries() {
    let out = rzmap().arg("--list-probe-modules").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("tcp_synscan\n"), "{text}");
    for m in ["icmp_echoscan", "udp"] {
        assert!(text.lines().any(|l| l == m), "{text}");
    }

    let out = rzmap().arg("--list-output-modules").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("csv\njson\n"));

    let out = rzmap().arg("--list-output-fields").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("saddr           string: source IP address of response\n"), "{text}");
    assert!(text.contains("\nsport              int: "), "{text}");
    assert!(text.contains("\nrepeat            bool: "), "{text}");
}

#[test]
fn list_output_fields_follows_the_module_from_cli_or_file() {
    let out = rzmap().args(["--list-output-fields", "-M", "icmp_echoscan"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nicmp_id            int: "), "{text}");
    assert!(!text.contains("\nsport "), "{text}");
    let f = conf("probe-module icmp_echoscan\n");
    let out = rzmap().args(["-C", &path(&f), "--list-output-fields"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("\nicmp_id "));
    fails_starting_with(
        rzmap().args(["--list-output-fields", "-M", "nosuch"]),
        "rzmap: error: --probe-module: unknown probe module \"nosuch\" (available: tcp_synscan",
    );
}

#[test]
fn help_appends_the_selected_modules_help() {
    let out = rzmap().args(["-M", "icmp_echoscan", "-h"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nProbe module (icmp_echoscan) help:\n"), "{text}");
    assert!(text.contains("\nOutput module (csv) help:\n"), "{text}");
}

#[test]
fn udp_template_fields_listing() {
    let out = rzmap().args(["-M", "udp", "--probe-args=template-fields"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("SADDR") && text.contains("RAND_ALPHA"), "{text}");
}

#[test]
fn module_port_and_target_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["198.18.0.1"],
            "--target-ports: the tcp_synscan probe module needs target ports: give -p (for example -p 80)",
        ),
        (
            &["-M", "icmp_echoscan", "-p", "80", "198.18.0.1"],
            "--target-ports: the icmp_echoscan probe module does not use ports: leave out -p",
        ),
        (
            &["-p", "80", "-b", "/nonexistent/b.txt"],
            "/nonexistent/b.txt: cannot read: No such file or directory (os error 2)",
        ),
        (
            &["-p", "80", "198.18.0.0/24"],
            "targets: no address left to scan: the built-in blocklist of reserved ranges covers every requested address (give -b FILE to replace it)",
        ),
    ];
    for (argv, want) in cases {
        fails_with(rzmap().args(*argv), &format!("rzmap: error: {want}"));
    }
    let prefixes: &[(&[&str], &str)] = &[
        (
            &["-M", "nosuch", "-p", "1"],
            "--probe-module: unknown probe module \"nosuch\" (available: tcp_synscan",
        ),
        (
            &["-p", "80", "-O", "xml"],
            "--output-module: unknown output module \"xml\" (available: csv, json",
        ),
        (&["-p", "80", "-f", "saddr,nosuch"], "--output-fields: column 7: "),
        (&["-p", "80", "--output-filter", "success = = 1"], "--output-filter: "),
        (&["-M", "udp", "-p", "53"], "--probe-args: "),
        (&["-p", "80", "198.18.0.0/33"], "argument \"198.18.0.0/33\": column 12: "),
    ];
    for (argv, start) in prefixes {
        fails_starting_with(rzmap().args(*argv), &format!("rzmap: error: {start}"));
    }
    // localhost resolves from /etc/hosts (no DNS query) to 127.0.0.1, which the built-in
    // blocklist excludes.
    fails_with(
        rzmap().args(["-p", "80", "localhost"]),
        "rzmap: error: targets: no address left to scan: the built-in blocklist of reserved ranges covers every requested address (give -b FILE to replace it)",
    );
    let f = conf("\nprobe-module nosuch\n");
    fails_starting_with(
        rzmap().args(["-C", &path(&f), "-p", "1"]),
        &format!("rzmap: error: {}:2: --probe-module: unknown probe module \"nosuch\"", path(&f)),
    );
    let bad = conf("198.18.0.0/24\n10.0.0.0/40\n");
    let out = rzmap().args(["-p", "80", "-b", &path(&bad)]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with(&format!("rzmap: error: {}:2:", path(&bad))), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn warnings_are_logged_at_warn_level() {
    let out = rzmap()
        .env("RZMAP_DUMP_CONFIG", "1")
        .args(["-P", "2", "-s", "1000-1010"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(" [WARN] rzmap: 2 probes per target over 11 source ports"), "{err}");
    let out = rzmap()
        .env("RZMAP_DUMP_CONFIG", "1")
        .args(["-P", "2", "-s", "1000-1010", "-v", "1"])
        .output()
        .unwrap();
    assert!(out.stderr.is_empty());
}

/// rzmap for a dry run: inside a fresh network namespace when `unshare -n` works (root), so
/// that even a bug could not reach a network; dry runs open no socket in any case.
fn dry() -> Command {
    let isolated = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(assert_cmd::cargo::cargo_bin("rzmap"));
        c
    } else {
        Command::cargo_bin("rzmap").unwrap()
    };
    c.env("RZMAP_DEFAULT_CONFIG", "").env_remove("RZMAP_DUMP_CONFIG").arg("-q");
    c
}

/// Runs a fast dry run and returns its (address, port) records.
fn fast(args: &[&str]) -> Vec<String> {
    let out = dry().arg("--fast-dryrun").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len() % 6, 0);
    out.stdout
        .chunks(6)
        .map(|c| {
            let port = u16::from_be_bytes([c[4], c[5]]);
            format!("{}.{}.{}.{}:{port}", c[0], c[1], c[2], c[3])
        })
        .collect()
}

#[test]
fn fast_dryrun_follows_zmaps_order() {
    // Vectors checked against ZMap's ziterate (compat.md section 4).
    assert_eq!(
        fast(&["-M", "icmp_echoscan", "-e", "1", "-b", "/dev/null", "198.19.0.0/30"]),
        ["198.19.0.1:0", "198.19.0.2:0", "198.19.0.0:0", "198.19.0.3:0"]
    );
    let got = fast(&["-p", "80,443,8080", "-e", "7", "-b", "/dev/null", "198.19.0.0/29"]);
    assert_eq!(
        &got[..6],
        [
            "198.19.0.2:8080",
            "198.19.0.3:80",
            "198.19.0.2:80",
            "198.19.0.1:8080",
            "198.19.0.5:443",
            "198.19.0.6:443"
        ]
    );
    let mut all = got.clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 24);
}

#[test]
fn fast_dryrun_shards_threads_limits_and_lists() {
    let base = ["-M", "icmp_echoscan", "-e", "99", "-b", "/dev/null", "198.19.0.0/28"];
    let shard = |n: &str| {
        let mut a = base.to_vec();
        a.extend(["--shards", "3", "--shard", n]);
        fast(&a)
    };
    let last = |v: Vec<String>| {
        v.iter()
            .map(|t| t.trim_end_matches(":0").rsplit('.').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(last(shard("0")), "12 10 0 11 5 15");
    assert_eq!(last(shard("1")), "14 2 7");
    assert_eq!(last(shard("2")), "3 9 13 1 4 6 8");

    let mut a = base.to_vec();
    a.extend(["-T", "2"]);
    let mut two = fast(&a);
    two.sort();
    let mut one = fast(&base);
    one.sort();
    assert_eq!(two, one, "two threads cover the same set");
    assert_eq!(one.len(), 16);

    let mut a = base.to_vec();
    a.extend(["-P", "3"]);
    let three = fast(&a);
    assert_eq!(three.len(), 48);
    assert!(three.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]), "probes go back to back");

    let mut a = base.to_vec();
    a.extend(["-n", "5"]);
    assert_eq!(fast(&a).len(), 5);

    let ips = conf("198.19.0.3\n198.19.0.9\n# not 198.19.0.4\n");
    let mut a = base.to_vec();
    a.extend(["-I", ips.path().to_str().unwrap()]);
    let mut got = fast(&a);
    got.sort();
    assert_eq!(got, ["198.19.0.3:0", "198.19.0.9:0"]);
}

#[test]
fn text_dryrun_prints_each_probe() {
    let out = dry()
        .args(["-d", "-p", "80", "-e", "1", "-S", "198.18.0.1", "-b", "/dev/null"])
        .arg("198.19.0.0/30")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let separators = text.lines().filter(|l| *l == "-".repeat(54)).count();
    assert_eq!(separators, 4, "{text}");
    let daddrs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("daddr: ").nth(1))
        .map(|r| r.split(' ').next().unwrap())
        .collect();
    assert_eq!(daddrs, ["198.19.0.1", "198.19.0.2", "198.19.0.0", "198.19.0.3"]);
    for l in text.lines().filter(|l| l.starts_with("tcp {")) {
        assert!(l.contains("| dest: 80 |"), "{l}");
    }
    assert!(
        text.lines().filter(|l| l.starts_with("ip {")).all(|l| l.contains("saddr: 198.18.0.1"))
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("eth {")).count(), 4);

    // -X sends bare IP packets: no eth line.
    let out = dry()
        .args(["-d", "-X", "-p", "80", "-e", "1", "-b", "/dev/null", "198.19.0.0/30"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("ip {")).count(), 4);
    assert_eq!(text.lines().filter(|l| l.starts_with("eth {")).count(), 0);
}

#[test]
fn log_file_and_directory_receive_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("scan.log");
    let out = rzmap()
        .env("RZMAP_DUMP_CONFIG", "1")
        .args(["-P", "2", "-s", "1000-1010", "-l", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" [WARN] rzmap: 2 probes per target"), "{text}");

    let out = rzmap()
        .env("RZMAP_DUMP_CONFIG", "1")
        .args(["-P", "2", "-s", "1000-1010", "-L", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("rzmap-") && n.ends_with(".log"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    fails_starting_with(
        rzmap().args(["-l", "/nonexistent/dir/x.log"]),
        "rzmap: error: --log-file: cannot open \"/nonexistent/dir/x.log\": ",
    );
}
