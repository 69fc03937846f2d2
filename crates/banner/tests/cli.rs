//! The built `rzmap-banner` binary against real TCP servers on loopback addresses.

mod servers;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use servers::{Behaviour, Lab, Server, lo};

const BIN: &str = env!("CARGO_BIN_EXE_rzmap-banner");
const MAX_READ: usize = 100;

/// One parsed output record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    port: u16,
    outcome: String,
    data: Vec<u8>,
}

/// Parses csv output strictly (fixed column count, header required unless `header` is false).
fn parse_csv(out: &str, header: bool) -> HashMap<IpAddr, Rec> {
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(header).flexible(false).from_reader(out.as_bytes());
    if header {
        let h = rdr.headers().expect("header").clone();
        assert_eq!(h.iter().collect::<Vec<_>>(), ["saddr", "port", "outcome", "banner", "bytes"]);
    }
    let mut map = HashMap::new();
    for row in rdr.records() {
        let row = row.expect("strict csv");
        assert_eq!(row.len(), 5);
        let data = STANDARD.decode(&row[3]).expect("base64");
        assert_eq!(row[4].parse::<usize>().unwrap(), data.len());
        let ip: IpAddr = row[0].parse().unwrap();
        let rec = Rec { port: row[1].parse().unwrap(), outcome: row[2].to_string(), data };
        assert!(map.insert(ip, rec).is_none(), "one record per host");
    }
    map
}

/// Parses JSON-lines output strictly (every line one object).
fn parse_json(out: &str) -> HashMap<IpAddr, Rec> {
    let mut map = HashMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("strict JSON line");
        let data = STANDARD.decode(v["banner_b64"].as_str().unwrap()).unwrap();
        assert_eq!(v["bytes"].as_u64().unwrap() as usize, data.len());
        assert_eq!(v["banner"].as_str().unwrap(), String::from_utf8_lossy(&data));
        let ip: IpAddr = v["saddr"].as_str().unwrap().parse().unwrap();
        let rec = Rec {
            port: v["port"].as_u64().unwrap() as u16,
            outcome: v["outcome"].as_str().unwrap().to_string(),
            data,
        };
        assert!(map.insert(ip, rec).is_none(), "one record per host");
    }
    map
}

/// Checks every lab host's record.
fn check_lab(lab: &Lab, recs: &HashMap<IpAddr, Rec>) {
    let expect = |outcome: &str, data: &[u8]| Rec {
        port: lab.port,
        outcome: outcome.into(),
        data: data.to_vec(),
    };
    for (ip, behaviour, _) in &lab.servers {
        let want = match behaviour {
            Behaviour::Greeting => expect("banner", servers::GREETING),
            Behaviour::Http => expect("banner", servers::HTTP_REPLY),
            Behaviour::Silent => expect("timeout", b""),
            Behaviour::Reset => expect("reset", b""),
            Behaviour::Flood => expect("banner", &servers::flood_bytes()[..MAX_READ]),
            Behaviour::Closer => expect("closed", b""),
            Behaviour::Slow(_) => unreachable!(),
        };
        assert_eq!(recs.get(ip), Some(&want), "{behaviour:?} at {ip}");
    }
    assert_eq!(recs.get(&lab.refused), Some(&expect("refused", b"")));
    assert_eq!(recs.get(&lab.backlogged), Some(&expect("timeout", b"")));
    assert_eq!(recs.len(), lab.servers.len() + 2);
}

fn lab_hosts(lab: &Lab) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = lab.servers.iter().map(|s| s.0).collect();
    v.push(lab.refused);
    v.push(lab.backlogged);
    v
}

fn request_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(servers::HTTP_REQUEST).unwrap();
    f
}

fn banner_cmd(port: u16, req: &tempfile::NamedTempFile) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["-p", &port.to_string(), "-c", "4", "--connect-timeout", "3", "--read-timeout", "3"])
        .args(["--max-read", &MAX_READ.to_string(), "-d"])
        .arg(req.path())
        .timeout(Duration::from_secs(60));
    cmd
}

/// The summary's counters, by name.
fn summary(stderr: &str) -> HashMap<String, u64> {
    let line =
        stderr.lines().find(|l| l.starts_with("rzmap-banner: done: ")).expect("summary line");
    let body = line.trim_start_matches("rzmap-banner: done: ");
    body.split([',', ';'])
        .filter_map(|part| {
            let part = part.trim();
            let (n, name) = part.split_once(' ')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

#[test]
fn plain_addresses_every_outcome_csv() {
    let lab = Lab::start();
    let req = request_file();
    let mut input = String::from("# lab hosts\n");
    for ip in lab_hosts(&lab) {
        input.push_str(&format!("{ip}\n"));
    }
    input.push_str("127.0.0.300\n\nnonsense here\n");
    let out = banner_cmd(lab.port, &req).write_stdin(input).assert().success();
    let out = out.get_output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_lab(&lab, &parse_csv(&String::from_utf8(out.stdout.clone()).unwrap(), true));
    assert!(stderr.contains("stdin:10: bad address \"127.0.0.300\""), "{stderr}");
    assert!(stderr.contains("stdin:12: bad address \"nonsense here\""), "{stderr}");
    let s = summary(&stderr);
    assert_eq!(s["hosts read"], 8);
    assert_eq!(s["banners"], 3);
    assert_eq!(s["closed"], 1);
    assert_eq!(s["timeouts"], 2);
    assert_eq!(s["refused"], 1);
    assert_eq!(s["resets"], 1);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["bad input lines"], 2);
}

#[test]
fn rzmap_csv_with_header_and_sport_column() {
    let lab = Lab::start();
    let req = request_file();
    // rzmap -f saddr,sport,classification output; -p names a wrong port, sport overrides it.
    let mut input = String::from("saddr,sport,classification\n");
    for ip in lab_hosts(&lab) {
        input.push_str(&format!("{ip},{},synack\n", lab.port));
    }
    input.push_str("127.0.0.1,99999,synack\n");
    let wrong_port = if lab.port == 1 { 2 } else { lab.port - 1 };
    let out =
        banner_cmd(wrong_port, &req).arg("--no-header-row").write_stdin(input).assert().success();
    let out = out.get_output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    check_lab(&lab, &parse_csv(&String::from_utf8(out.stdout.clone()).unwrap(), false));
    assert!(stderr.contains("stdin:10: bad port \"99999\""), "{stderr}");
    assert_eq!(summary(&stderr)["bad input lines"], 1);

    // Headerless csv: the first column is the address and -p is the port.
    let mut input = String::new();
    for ip in lab_hosts(&lab) {
        input.push_str(&format!("{ip},12345,synack\n"));
    }
    let out = banner_cmd(lab.port, &req).write_stdin(input).assert().success();
    check_lab(&lab, &parse_csv(&String::from_utf8(out.get_output().stdout.clone()).unwrap(), true));
}

#[test]
fn rzmap_json_lines_to_json_file() {
    let lab = Lab::start();
    let req = request_file();
    let mut input = String::new();
    for ip in lab_hosts(&lab) {
        input.push_str(&format!(
            "{{\"saddr\": \"{ip}\", \"sport\": {}, \"success\": true}}\n",
            lab.port
        ));
    }
    input.push_str("{\"daddr\": \"127.0.0.2\"}\n{\"saddr\": \"127.0.0.2\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let out = banner_cmd(lab.port, &req)
        .args(["--format", "json", "-o"])
        .arg(&path)
        .write_stdin(input)
        .assert()
        .success();
    let out = out.get_output();
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdin:9: JSON object has no \"saddr\""), "{stderr}");
    assert!(stderr.contains("stdin:10: bad JSON"), "{stderr}");
    check_lab(&lab, &parse_json(&std::fs::read_to_string(&path).unwrap()));
}

#[test]
fn bad_flags_and_unreadable_payload_are_one_line_errors() {
    let out = Command::new(BIN)
        .args(["-p", "22", "-d", "/nonexistent/req"])
        .write_stdin("")
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("rzmap-banner: error: --data /nonexistent/req: cannot read"),
        "{stderr}"
    );
    Command::new(BIN).args(["-p", "22", "-c", "0"]).write_stdin("").assert().code(2);
    Command::new(BIN).args(["-c", "5"]).write_stdin("").assert().code(2);
    Command::new(BIN).args(["-p", "22", "--read-timeout", "nan"]).write_stdin("").assert().code(2);
}

#[test]
fn spilled_queue_delivers_every_host() {
    let server = Server::start(SocketAddr::new(lo(10), 0), Behaviour::Greeting).unwrap();
    let n = 3000;
    let input = "127.0.0.10\n".repeat(n);
    let out = Command::new(BIN)
        .args(["-p", &server.addr.port().to_string(), "-c", "50", "--queue-memory", "4K"])
        .args(["--read-timeout", "10", "--connect-timeout", "10"])
        .timeout(Duration::from_secs(120))
        .write_stdin(input)
        .assert()
        .success();
    let out = out.get_output();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), n);
    let b64 = STANDARD.encode(servers::GREETING);
    let want =
        format!("127.0.0.10,{},banner,{b64},{}", server.addr.port(), servers::GREETING.len());
    assert!(lines.iter().all(|l| *l == want), "{:?}", lines.iter().find(|l| **l != want));
    let s = summary(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(s["hosts read"], n as u64);
    assert_eq!(s["banners"], n as u64);
    assert!(s["spilled"] > 0, "the queue never spilled: {s:?}");
    assert_eq!(s["lost"], 0);
}

#[test]
fn stdin_is_drained_long_before_the_connections_finish() {
    // 20,000 hosts at concurrency 10 against a server that answers after 1 s would take over
    // half an hour; the input (≈ 220 KB, several times a pipe's buffer) must still be taken
    // at once, or a scanner writing it would block.
    let server =
        Server::start(SocketAddr::new(lo(11), 0), Behaviour::Slow(Duration::from_secs(1))).unwrap();
    let mut child = StdCommand::new(BIN)
        .args(["-p", &server.addr.port().to_string(), "-c", "10", "--queue-memory", "64K"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every wait below is bounded, so a grabber that stops reading fails the test instead of
    // hanging it.
    let mut stdin = child.stdin.take().unwrap();
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let line = b"127.0.0.11\n";
        for _ in 0..20_000 {
            if stdin.write_all(line).is_err() {
                return;
            }
        }
        drop(stdin);
        let _ = written_tx.send(start.elapsed());
    });
    let stdout = child.stdout.take().unwrap();
    let records = std::thread::spawn(move || BufReader::new(stdout).lines().count());
    let stderr = child.stderr.take().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let diag = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("input done") {
                let _ = done_tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let write_time = written_rx.recv_timeout(Duration::from_secs(20));
    let input_done = done_rx.recv_timeout(Duration::from_secs(5));
    // Stop the grabber (it would run for half an hour) and count what it had finished.
    child.kill().unwrap();
    let _ = child.wait();
    writer.join().unwrap();
    let diag = diag.join().unwrap();
    let finished = records.join().unwrap().saturating_sub(1);
    let write_time = write_time.expect("the writes did not complete within 20 s");
    assert!(write_time < Duration::from_secs(10), "writes took {write_time:?}");
    assert_eq!(
        input_done.as_deref(),
        Ok("rzmap-banner: input done: 20000 lines, 20000 hosts, 0 bad lines"),
        "{diag}"
    );
    assert!(finished < 1000, "{finished} grabs finished: the test proves nothing");
    eprintln!("20,000 lines written in {write_time:?}; {finished} grabs had finished");
}

#[test]
fn concurrency_is_fitted_to_the_open_file_limit() {
    let server = Server::start(SocketAddr::new(lo(12), 0), Behaviour::Greeting).unwrap();
    let port = server.addr.port().to_string();
    let run = |ulimit: &str| {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!("ulimit {ulimit} && exec \"$0\" \"$@\""),
                BIN,
                "-p",
                &port,
                "-c",
                "1000",
            ])
            .write_stdin("127.0.0.12\n")
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
        let out = out.get_output().clone();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().lines().nth(1).map(|l| l.split(',').nth(2)),
            Some(Some("banner"))
        );
        String::from_utf8(out.stderr).unwrap()
    };
    // Hard limit 64: lowered to 64 - 32 reserved descriptors.
    let stderr = run("-n 64");
    assert!(stderr.contains("too low for -c 1000; using concurrency 32"), "{stderr}");
    // Soft limit 64, hard limit higher: raised, if the hard limit allows.
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().1;
    if hard >= 1032 {
        let stderr = run("-Sn 64");
        assert!(stderr.contains("raised the open-file limit from 64 to 1032"), "{stderr}");
        assert!(!stderr.contains("using concurrency"), "{stderr}");
    }
}

#[test]
fn a_closed_output_pipe_ends_the_run_with_an_error() {
    let server = Server::start(SocketAddr::new(lo(13), 0), Behaviour::Greeting).unwrap();
    let mut child = StdCommand::new(BIN)
        .args(["-p", &server.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end of stdout before any record can exist.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&b"127.0.0.13\n".repeat(5));
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rzmap-banner did not stop after its output closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rzmap-banner: error: output: write failed: Broken pipe"), "{stderr}");
}
