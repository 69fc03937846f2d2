//! The redis output module: records are RPUSHed onto a Redis list.
//!
//! `--output-args` is a connection URL whose query string also carries the module's settings:
//!
//! ```text
//! redis://[user:pass@]host[:port][/db][?key=LIST][&format=csv|json][&batch=N][&buffer=N]
//! redis+unix:///path/to/redis.sock[?db=N&key=LIST&...]      (also unix:///path...)
//! ?key=LIST&format=json                                      (default server)
//! ```
//! Defaults: `redis://127.0.0.1:6379/0`, `key=zmap`, `format=csv`, `batch=1000`,
//! `buffer=1000000`. ZMap 2's forms `tcp://host:port/LIST` and `local:///path/sock/LIST` are
//! accepted too. Each list element is one record: a csv row (no header, no newline) or a JSON
//! object, with the selected fields.
//!
//! Delivery: records are buffered and sent as one multi-value `RPUSH` per `batch` records,
//! when a batch fills and on every `update` (about once a second). If the server goes away, the
//! module warns once, keeps buffering up to `buffer` records and reconnects on each `update`;
//! nothing is lost if the server comes back. Reaching the bound is an error (records are never
//! dropped silently). `close(deadline)` retries until the deadline (the cooldown's end) and then
//! reports how many records were not delivered. Delivery is at least once: a batch whose reply
//! was lost with the connection is sent again. A connection attempt gives up after 0.5 s and a
//! command after 5 s, so one `update` (or `close`, past its deadline) blocks at most that long.
//! Errors the server gives a command (e.g. `WRONGTYPE` for a key that is not a list) are fatal.
//!
//! This module performs network I/O, the one exception to the core crate's no-syscall rule,
//! because output modules live in one registry here.

use std::time::{Duration, Instant};

use super::csv::CsvEncoder;
use super::json::JsonEncoder;
use super::select::FieldSelection;
use super::{OutputError, OutputModule, WarnSink};
use crate::error::InputError;
use crate::fields::{Record, Schema};

/// The input name of configuration errors.
const INPUT: &str = "--output-args";

/// `--list-output-modules` help for redis.
pub const HELP: &str =
    "RPUSH records onto a Redis list; --output-args=redis://host:port/db?key=LIST&format=csv|json";

/// The default server.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How each record is encoded in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisFormat {
    /// A csv row without header or newline.
    Csv,
    /// A JSON object.
    Json,
}

/// Parsed `--output-args` of the redis module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Connection URL given to the redis client (module settings removed).
    pub url: String,
    /// The list to RPUSH onto.
    pub key: String,
    /// Record encoding.
    pub format: RedisFormat,
    /// Records per RPUSH.
    pub batch: usize,
    /// Most records held while the server is unreachable.
    pub buffer: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.into(),
            key: "zmap".into(),
            format: RedisFormat::Csv,
            batch: 1000,
            buffer: 1_000_000,
        }
    }
}

fn bad(msg: impl Into<String>) -> InputError {
    InputError::new(INPUT, msg)
}

impl RedisConfig {
    /// Parses `--output-args` (see the module documentation). Checks the URL's syntax without
    /// connecting.
    pub fn parse(args: &str) -> Result<Self, InputError> {
        let mut cfg = Self::default();
        let args = args.trim();
        if args.is_empty() {
            return Ok(cfg);
        }
        let (base, query) = match args.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (args, None),
        };
        let mut pass = Vec::new();
        if let Some(rest) = base.strip_prefix("tcp://") {
            // ZMap 2: tcp://host:port/LIST
            let (hostport, list) =
                rest.split_once('/').ok_or_else(|| bad("expected tcp://host:port/LIST"))?;
            if hostport.is_empty() || list.is_empty() {
                return Err(bad("expected tcp://host:port/LIST"));
            }
            cfg.url = format!("redis://{hostport}/0");
            cfg.key = list.to_string();
        } else if let Some(rest) = base.strip_prefix("local://") {
            // ZMap 2: local:///path/to/socket/LIST
            let (path, list) = rest
                .rsplit_once('/')
                .ok_or_else(|| bad("expected local:///path/to/socket/LIST"))?;
            if path.is_empty() || list.is_empty() {
                return Err(bad("expected local:///path/to/socket/LIST"));
            }
            cfg.url = format!("unix://{path}");
            cfg.key = list.to_string();
        } else if base.is_empty() {
            // only settings: default server
        } else if ["redis://", "redis+unix://", "unix://"].iter().any(|p| base.starts_with(p)) {
            cfg.url = base.to_string();
        } else {
            return Err(bad(format!(
                "expected a redis://host:port/db, redis+unix:///path or unix:///path URL, not \"{base}\""
            )));
        }
        for kv in query.into_iter().flat_map(|q| q.split('&')).filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let num = |v: &str| -> Result<usize, InputError> {
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(bad(format!("{k} must be a positive integer, not \"{v}\""))),
                }
            };
            match k {
                "key" if !v.is_empty() => cfg.key = v.to_string(),
                "key" => return Err(bad("key must not be empty")),
                "format" => {
                    cfg.format = match v {
                        "csv" => RedisFormat::Csv,
                        "json" => RedisFormat::Json,
                        _ => return Err(bad(format!("format must be csv or json, not \"{v}\""))),
                    }
                }
                "batch" => cfg.batch = num(v)?,
                "buffer" => cfg.buffer = num(v)?,
                _ => pass.push(kv),
            }
        }
        if !pass.is_empty() {
            cfg.url.push('?');
            cfg.url.push_str(&pass.join("&"));
        }
        cfg.buffer = cfg.buffer.max(cfg.batch);
        redis::Client::open(cfg.url.as_str())
            .map_err(|e| bad(format!("bad redis URL \"{}\": {e}", cfg.url)))?;
        Ok(cfg)
    }
}

enum Encoder {
    Csv(CsvEncoder),
    Json(JsonEncoder),
}

/// The redis output module.
pub struct RedisOutput {
    cfg: RedisConfig,
    client: redis::Client,
    conn: Option<redis::Connection>,
    enc: Encoder,
    /// Encoded pending records, back to back; `ends[i]` is where record i ends.
    data: Vec<u8>,
    ends: Vec<usize>,
    /// The last delivery error while the server is unreachable.
    down: Option<String>,
    delivered: u64,
    warn: WarnSink,
}

impl RedisOutput {
    /// A redis module for the selected fields. Does not connect yet (see [`OutputModule::start`]).
    pub fn new(
        schema: &Schema,
        fields: &FieldSelection,
        cfg: RedisConfig,
    ) -> Result<Self, InputError> {
        let enc = match cfg.format {
            RedisFormat::Csv => Encoder::Csv(CsvEncoder::new(schema, fields)?),
            RedisFormat::Json => Encoder::Json(JsonEncoder::new(schema, fields)?),
        };
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| bad(format!("bad redis URL \"{}\": {e}", cfg.url)))?;
        Ok(Self {
            client,
            conn: None,
            enc,
            data: Vec::with_capacity(cfg.batch * 64),
            ends: Vec::with_capacity(cfg.batch),
            down: None,
            delivered: 0,
            warn: Box::new(|m| eprintln!("[WARN] redis: {m}")),
            cfg,
        })
    }

    /// Sends warnings somewhere else than stderr (e.g. the scan's log).
    pub fn set_warn_sink(&mut self, warn: WarnSink) {
        self.warn = warn;
    }

    /// Records buffered but not yet delivered.
    pub fn pending(&self) -> usize {
        self.ends.len()
    }

    /// Records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn connect(&mut self) -> redis::RedisResult<()> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            c.set_read_timeout(Some(IO_TIMEOUT))?;
            c.set_write_timeout(Some(IO_TIMEOUT))?;
            self.conn = Some(c);
        }
        Ok(())
    }

    /// Sends every pending record, one RPUSH per batch; delivered batches leave the buffer
    /// even when a later one fails.
    fn deliver(&mut self) -> redis::RedisResult<()> {
        self.connect()?;
        if self.ends.is_empty() {
            return Ok(());
        }
        let mut sent = 0; // records delivered in this call
        let mut result = Ok(());
        while sent < self.ends.len() {
            let upto = (sent + self.cfg.batch).min(self.ends.len());
            let mut cmd = redis::cmd("RPUSH");
            cmd.arg(&self.cfg.key);
            let mut start = if sent == 0 { 0 } else { self.ends[sent - 1] };
            for &end in &self.ends[sent..upto] {
                cmd.arg(&self.data[start..end]);
                start = end;
            }
            let Some(conn) = self.conn.as_mut() else { break };
            match cmd.query::<i64>(conn) {
                Ok(_) => sent = upto,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if sent > 0 {
            let cut = self.ends[sent - 1];
            self.data.drain(..cut);
            self.ends.drain(..sent);
            self.ends.iter_mut().for_each(|e| *e -= cut);
            self.delivered += sent as u64;
        }
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Tries to deliver; classifies failures into "keep buffering" and fatal ones.
    fn try_deliver(&mut self) -> Result<(), OutputError> {
        match self.deliver() {
            Ok(()) => {
                if self.down.take().is_some() {
                    let msg = format!(
                        "reconnected to {}; buffered records delivered ({} in total)",
                        self.cfg.url, self.delivered
                    );
                    (self.warn)(&msg);
                }
                Ok(())
            }
            Err(e) if transient(&e) => {
                let reason = format!("{e}");
                if self.down.is_none() {
                    let msg = format!(
                        "cannot deliver to {} ({reason}); buffering up to {} records and retrying every update",
                        self.cfg.url, self.cfg.buffer
                    );
                    (self.warn)(&msg);
                }
                self.down = Some(reason);
                Ok(())
            }
            Err(e) => Err(OutputError::Undelivered {
                count: self.ends.len(),
                reason: format!("redis at {} refused the records: {e}", self.cfg.url),
            }),
        }
    }

    fn undelivered(&self) -> OutputError {
        OutputError::Undelivered {
            count: self.ends.len(),
            reason: format!(
                "redis at {} unreachable ({})",
                self.cfg.url,
                self.down.as_deref().unwrap_or("unknown error")
            ),
        }
    }
}

/// Errors worth retrying: the connection, not the command, failed.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN"))
}

impl OutputModule for RedisOutput {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Connects once; an unreachable server is only a warning (records are buffered).
    fn start(&mut self) -> Result<(), OutputError> {
        if let Err(e) = self.connect() {
            if !transient(&e) {
                return Err(OutputError::Undelivered {
                    count: 0,
                    reason: format!("cannot use redis at {}: {e}", self.cfg.url),
                });
            }
            let msg = format!("cannot connect to {} ({e}); will retry", self.cfg.url);
            (self.warn)(&msg);
            self.down = Some(e.to_string());
        }
        Ok(())
    }

    fn record(&mut self, rec: &Record) -> Result<(), OutputError> {
        match &self.enc {
            Encoder::Csv(c) => c.encode(rec, &mut self.data),
            Encoder::Json(j) => j.encode(rec, &mut self.data),
        }
        self.ends.push(self.data.len());
        if self.ends.len() >= self.cfg.buffer {
            // Full: one last synchronous attempt, then give up loudly.
            self.try_deliver()?;
            if self.ends.len() >= self.cfg.buffer {
                return Err(self.undelivered());
            }
        } else if self.down.is_none() && self.ends.len() >= self.cfg.batch {
            self.try_deliver()?;
        }
        Ok(())
    }

    fn update(&mut self) -> Result<(), OutputError> {
        self.try_deliver()
    }

    fn close(&mut self, deadline: Instant) -> Result<(), OutputError> {
        loop {
            self.try_deliver()?;
            if self.ends.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.undelivered());
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
    }
}

#[cfg(test)]
mod tests;
