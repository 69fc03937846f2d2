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
    let f = conf("bandwidth 10M\nlog-file /tmp/x.log\n");
    let c = resolved(rzmap().args(["-C", &path(&f), "-r", "100", "-L", "/tmp/logs"]));
    assert_eq!(c["rate"], serde_json::json!({"Packets": 100}));
    assert_eq!(c["log"], serde_json::json!({"Directory": "/tmp/logs"}));
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
fn listings_exit_zero() {
    rzmap().arg("--list-probe-modules").assert().success();
    rzmap().arg("--list-output-modules").assert().success();
    let out = rzmap().arg("--list-output-fields").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("saddr           string: source IP address of response\n"), "{text}");
    assert!(text.contains("\nrepeat            bool: "), "{text}");
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
