//! Tests of the redis module: argument parsing, and delivery against a real `redis-server`
//! started per test on a loopback port or a unix socket (no persistence), killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::fields::{FieldDef, FieldType};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

#[test]
fn parses_urls_and_settings() {
    let d = RedisConfig::parse("").unwrap();
    assert_eq!(d, RedisConfig::default());
    let c = RedisConfig::parse("redis://10.0.0.1:6380/2?key=scan&format=json&batch=10&buffer=50")
        .unwrap();
    assert_eq!(c.url, "redis://10.0.0.1:6380/2");
    assert_eq!((c.key.as_str(), c.format, c.batch, c.buffer), ("scan", RedisFormat::Json, 10, 50));
    let c = RedisConfig::parse("redis+unix:///run/redis.sock?db=3&key=k").unwrap();
    assert_eq!((c.url.as_str(), c.key.as_str()), ("redis+unix:///run/redis.sock?db=3", "k"));
    let c = RedisConfig::parse("unix:///run/redis.sock").unwrap();
    assert_eq!(c.url, "unix:///run/redis.sock");
    let c = RedisConfig::parse("?key=only").unwrap();
    assert_eq!((c.url.as_str(), c.key.as_str()), (DEFAULT_URL, "only"));
    let c = RedisConfig::parse("tcp://127.0.0.1:6379/zmap-results").unwrap();
    assert_eq!((c.url.as_str(), c.key.as_str()), ("redis://127.0.0.1:6379/0", "zmap-results"));
    let c = RedisConfig::parse("local:///tmp/redis.sock/results").unwrap();
    assert_eq!((c.url.as_str(), c.key.as_str()), ("unix:///tmp/redis.sock", "results"));
    // buffer never below a batch
    assert_eq!(RedisConfig::parse("?batch=100&buffer=5").unwrap().buffer, 100);
}

#[test]
fn refuses_bad_arguments() {
    let e = |s: &str| RedisConfig::parse(s).unwrap_err().to_string();
    assert!(e("http://x").starts_with("--output-args: expected a redis://host:port/db"));
    assert_eq!(e("?format=xml"), "--output-args: format must be csv or json, not \"xml\"");
    assert_eq!(e("?batch=0"), "--output-args: batch must be a positive integer, not \"0\"");
    assert_eq!(e("?buffer=x"), "--output-args: buffer must be a positive integer, not \"x\"");
    assert_eq!(e("?key="), "--output-args: key must not be empty");
    assert!(e("tcp://nolist").contains("tcp://host:port/LIST"));
    assert!(e("redis://host:notaport/0").starts_with("--output-args: bad redis URL"));
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A throwaway redis-server; killed (and its socket directory removed) on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn tcp() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::launch(port)
    }

    fn unix() -> Self {
        Self::launch(0)
    }

    fn launch(port: u16) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rzmap-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Self { child: None, port, dir };
        s.start();
        s
    }

    fn start(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--unixsocket")
            .arg(self.socket())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(self.unix_url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    fn unix_url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn tcp_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Removes and returns everything pushed so far.
    fn drain(&self, key: &str) -> Vec<String> {
        let mut c =
            redis::Client::open(self.unix_url().as_str()).unwrap().get_connection().unwrap();
        let (items, _): (Vec<String>, i64) = redis::pipe()
            .atomic()
            .cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .cmd("DEL")
            .arg(key)
            .query(&mut c)
            .unwrap();
        items
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn schema() -> Schema {
    Schema::for_module(&[
        FieldDef::new("sport", FieldType::Int, "TCP source port"),
        FieldDef::new("classification", FieldType::Str, "packet classification"),
    ])
}

fn module(args: &str, fields: &str) -> (RedisOutput, Arc<Mutex<Vec<String>>>) {
    let s = schema();
    let sel = FieldSelection::parse(fields, &s).unwrap();
    let mut m = RedisOutput::new(&s, &sel, RedisConfig::parse(args).unwrap()).unwrap();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let w = warnings.clone();
    m.set_warn_sink(Box::new(move |msg| w.lock().unwrap().push(msg.to_string())));
    (m, warnings)
}

fn rec(s: &Schema, n: u64) -> Record {
    let mut r = Record::for_schema(s);
    r.set_ipv4(0, std::net::Ipv4Addr::from(0xc612_0000 + n as u32));
    r.set_int(s.index_of("sport").unwrap(), n);
    r.set_str(
        s.index_of("classification").unwrap(),
        if n.is_multiple_of(2) { "synack" } else { "a,\"b\"" },
    );
    r
}

fn sports(items: &[String]) -> Vec<u64> {
    items
        .iter()
        .map(|i| {
            let v: serde_json::Value = serde_json::from_str(i).unwrap();
            v["sport"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn every_record_arrives_in_order_csv_over_tcp() {
    let srv = Server::tcp();
    let (mut m, warnings) =
        module(&format!("{}?key=res&batch=64", srv.tcp_url()), "saddr,sport,classification");
    let s = schema();
    m.start().unwrap();
    for n in 0..1000 {
        m.record(&rec(&s, n)).unwrap();
    }
    // 15 full batches went out on their own; the rest waits for update/close
    assert_eq!(m.pending(), 1000 % 64);
    m.close(Instant::now() + Duration::from_secs(5)).unwrap();
    let items = srv.drain("res");
    assert_eq!(items.len(), 1000);
    for (n, line) in items.iter().enumerate() {
        let mut rd = ::csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
        let row = rd.records().next().unwrap().unwrap();
        let want_cls = if n % 2 == 0 { "synack" } else { "a,\"b\"" };
        assert_eq!((row[1].parse::<usize>().unwrap(), &row[2]), (n, want_cls));
    }
    assert!(warnings.lock().unwrap().is_empty());
}

#[test]
fn kill_and_restart_mid_stream_loses_nothing() {
    let mut srv = Server::unix();
    let (mut m, warnings) =
        module(&format!("{}?key=res&format=json&batch=10", srv.unix_url()), "saddr,sport");
    let s = schema();
    m.start().unwrap();
    for n in 0..100 {
        m.record(&rec(&s, n)).unwrap();
    }
    m.update().unwrap();
    let mut got = srv.drain("res");
    assert_eq!(got.len(), 100);

    srv.kill();
    for n in 100..250 {
        m.record(&rec(&s, n)).unwrap();
    }
    m.update().unwrap(); // still down: buffered, warned once
    m.update().unwrap();
    assert_eq!(m.pending(), 150);
    assert_eq!(warnings.lock().unwrap().len(), 1, "{:?}", warnings.lock().unwrap());
    assert!(warnings.lock().unwrap()[0].contains("buffering up to"));

    srv.start();
    for n in 250..300 {
        m.record(&rec(&s, n)).unwrap();
    }
    m.update().unwrap();
    assert_eq!(m.pending(), 0);
    m.close(Instant::now() + Duration::from_secs(5)).unwrap();
    got.extend(srv.drain("res"));
    assert_eq!(sports(&got), (0..300).collect::<Vec<_>>());
    assert_eq!(m.delivered(), 300);
    assert!(warnings.lock().unwrap().iter().any(|w| w.contains("reconnected")));
}

#[test]
fn server_that_never_returns_gives_error_with_count() {
    let mut srv = Server::unix();
    let (mut m, _) = module(&format!("{}?key=res&batch=5", srv.unix_url()), "saddr");
    let s = schema();
    m.start().unwrap();
    srv.kill();
    for n in 0..42 {
        m.record(&rec(&s, n)).unwrap();
    }
    let t0 = Instant::now();
    let e = m.close(Instant::now() + Duration::from_millis(400)).unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(400));
    let OutputError::Undelivered { count, .. } = &e else { panic!("{e}") };
    assert_eq!(*count, 42);
    let msg = e.to_string();
    assert!(msg.starts_with("42 records were not delivered: redis at unix://"), "{msg}");
}

#[test]
fn buffer_bound_is_an_error_not_a_silent_loss() {
    let (mut m, warnings) =
        module("redis+unix:///nonexistent/rzmap.sock?batch=10&buffer=20", "saddr");
    let s = schema();
    m.start().unwrap();
    assert_eq!(warnings.lock().unwrap().len(), 1);
    for n in 0..19 {
        m.record(&rec(&s, n)).unwrap();
    }
    let e = m.record(&rec(&s, 19)).unwrap_err();
    assert!(matches!(e, OutputError::Undelivered { count: 20, .. }), "{e}");
}

#[test]
fn a_refused_command_is_fatal() {
    let srv = Server::unix();
    let mut c = redis::Client::open(srv.unix_url().as_str()).unwrap().get_connection().unwrap();
    let () = redis::cmd("SET").arg("res").arg("a string").query(&mut c).unwrap();
    let (mut m, _) = module(&format!("{}?key=res", srv.unix_url()), "saddr");
    let s = schema();
    m.start().unwrap();
    m.record(&rec(&s, 1)).unwrap();
    let e = m.update().unwrap_err().to_string();
    assert!(e.contains("refused the records") && e.contains("WRONGTYPE"), "{e}");
}
