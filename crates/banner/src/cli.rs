//! The command line and the run: reader thread, connection pool, writer thread, summary.
//!
//! Threads and runtime: the input is read on its own OS thread and the output written on
//! another, so neither a fast producer on stdin nor a slow consumer of stdout can stall the
//! connections (and a busy pool can never stall the producer). The connections run on a tokio
//! **current-thread** runtime: each connection costs a few system calls and almost no CPU, one
//! thread drives thousands of sockets through epoll, and leaving the other cores free matters
//! because rzmap itself usually runs alongside, feeding our stdin.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use rzmap_core::error::InputError;
use tokio::sync::Semaphore;

use crate::grab::{GrabConfig, Outcome, grab};
use crate::output::{CSV_HEADER, Format, write_record};
use crate::queue::{QueueStats, TargetQueue};
use crate::reader::{ReadStats, read_targets};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "rzmap-banner",
    version,
    about = "Connect to each address read on stdin and record the first response (banner grab)",
    long_about = "Reads addresses from stdin, one a line: bare addresses, rzmap csv output (a \
                  header row selects the saddr and, if present, sport columns; without a header \
                  the first column is the address) or rzmap json lines ({\"saddr\": ...}, an \
                  optional \"sport\"). Bad lines are reported with their line number and \
                  skipped. stdin is always drained at once, whatever the connections do, so \
                  `rzmap ... -o - | rzmap-banner` never blocks rzmap."
)]
pub struct Args {
    /// TCP port to connect to (a row's sport column or field overrides it).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: u16,
    /// Connections open at once.
    #[arg(short = 'c', long = "concurrency", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub concurrency: u32,
    /// Seconds to wait for a connection to be set up.
    #[arg(long = "connect-timeout", value_name = "SECONDS", default_value = "4", value_parser = parse_seconds)]
    pub connect_timeout: Duration,
    /// Seconds to wait for the payload to be sent and then for the first response bytes.
    #[arg(long = "read-timeout", value_name = "SECONDS", default_value = "4", value_parser = parse_seconds)]
    pub read_timeout: Duration,
    /// File whose bytes are sent right after connecting (e.g. an HTTP request).
    #[arg(short = 'd', long = "data", value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Most bytes kept from each response.
    #[arg(long = "max-read", value_name = "BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    pub max_read: u32,
    /// Output file; `-` or none means stdout.
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// No csv header row.
    #[arg(long = "no-header-row")]
    pub no_header_row: bool,
    /// Memory for queued input (bytes, or with a K, M or G suffix); more spills to a temp file.
    #[arg(long = "queue-memory", value_name = "BYTES", default_value = "256M", value_parser = parse_size)]
    pub queue_memory: usize,
}

/// Parses a positive, finite number of seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("bad number of seconds {s:?}"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("seconds must be above 0 and at most 86400, not {s:?}"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parses a byte count with an optional K, M or G (binary) suffix.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Counters of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// What the reader saw.
    pub input: ReadStats,
    /// Grabs per outcome, indexed by [`Outcome::index`].
    pub outcomes: [u64; 7],
    /// What the queue did.
    pub queue: QueueStats,
}

impl Summary {
    /// The final stderr line.
    pub fn line(&self) -> String {
        let n = |o: Outcome| self.outcomes[o.index()];
        format!(
            "rzmap-banner: done: {} hosts read, {} banners, {} closed, {} timeouts, {} refused, \
             {} resets, {} unreachable, {} errors, {} bad input lines; queue peak {} KiB in \
             memory, {} spilled, {} lost",
            self.input.targets,
            n(Outcome::Banner),
            n(Outcome::Closed),
            n(Outcome::Timeout),
            n(Outcome::Refused),
            n(Outcome::Reset),
            n(Outcome::Unreachable),
            n(Outcome::Error),
            self.input.bad,
            self.queue.peak_memory_bytes.div_ceil(1024),
            self.queue.spilled,
            self.queue.lost,
        )
    }
}

/// Runs the program with these arguments; returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(&args) {
        Ok(summary) => {
            eprintln!("{}", summary.line());
            0
        }
        Err(e) => {
            eprintln!("rzmap-banner: error: {e}");
            1
        }
    }
}

/// Where records go.
enum Sink {
    Stdout,
    File(File),
}

/// Runs a whole banner grab reading stdin; returns the counters or a fatal one-line error.
pub fn run(args: &Args) -> Result<Summary, InputError> {
    let payload = match &args.data {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            InputError::new(format!("--data {}", path.display()), format!("cannot read: {e}"))
        })?),
        None => None,
    };
    let sink = match &args.output_file {
        Some(p) if p.as_os_str() != "-" => Sink::File(File::create(p).map_err(|e| {
            InputError::new(format!("--output-file {}", p.display()), format!("cannot create: {e}"))
        })?),
        _ => Sink::Stdout,
    };
    let plan = crate::limits::fit_concurrency(args.concurrency as usize);
    for note in &plan.notes {
        eprintln!("rzmap-banner: {note}");
    }
    let cfg = Arc::new(GrabConfig {
        connect_timeout: args.connect_timeout,
        read_timeout: args.read_timeout,
        payload,
        max_read: args.max_read as usize,
    });

    // Writer thread: batches records and flushes whenever it has caught up.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let output_failed = Arc::new(AtomicBool::new(false));
    let header = (args.format == Format::Csv && !args.no_header_row).then_some(CSV_HEADER);
    let writer = {
        let failed = output_failed.clone();
        std::thread::spawn(move || {
            let result = match sink {
                Sink::Stdout => write_all_records(
                    std::io::BufWriter::new(std::io::stdout().lock()),
                    header,
                    &rx,
                ),
                Sink::File(f) => write_all_records(std::io::BufWriter::new(f), header, &rx),
            };
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            result
        })
    };

    // Reader thread: drains stdin into the queue, independent of the connections.
    let queue = Arc::new(TargetQueue::new(args.queue_memory));
    let reader = {
        let queue = queue.clone();
        let port = args.port;
        std::thread::spawn(move || {
            let stdin = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
            read_targets(stdin, "stdin", port, &queue, &mut std::io::stderr())
        })
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InputError::new("rzmap-banner", format!("cannot start the runtime: {e}")))?;
    let counts = Arc::new(std::array::from_fn::<AtomicU64, 7, _>(|_| AtomicU64::new(0)));
    runtime.block_on(pool(
        queue.clone(),
        cfg,
        plan.concurrency,
        args.format,
        tx,
        counts.clone(),
        output_failed,
    ));
    drop(runtime);

    let write_result = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("panicked")));
    let mut summary = Summary {
        outcomes: std::array::from_fn(|i| counts[i].load(Ordering::Relaxed)),
        queue: queue.stats(),
        ..Summary::default()
    };
    if let Err(e) = write_result {
        // The reader may still be blocked on stdin; it is not waited for.
        return Err(InputError::new("output", format!("write failed: {e}")));
    }
    summary.input = reader.join().unwrap_or_default();
    Ok(summary)
}

fn write_all_records(
    mut out: impl Write,
    header: Option<&str>,
    rx: &mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    if let Some(h) = header {
        out.write_all(h.as_bytes())?;
        out.flush()?;
    }
    while let Ok(rec) = rx.recv() {
        out.write_all(&rec)?;
        while let Ok(more) = rx.try_recv() {
            out.write_all(&more)?;
        }
        out.flush()?;
    }
    out.flush()
}

/// Runs grabs for every queued target, at most `concurrency` at once, until the queue closes.
async fn pool(
    queue: Arc<TargetQueue>,
    cfg: Arc<GrabConfig>,
    concurrency: usize,
    format: Format,
    out: mpsc::Sender<Vec<u8>>,
    counts: Arc<[AtomicU64; 7]>,
    output_failed: Arc<AtomicBool>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        if output_failed.load(Ordering::Relaxed) {
            break;
        }
        let Some(addr) = queue.pop().await else { break };
        let cfg = cfg.clone();
        let out = out.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let result = grab(addr, &cfg).await;
            counts[result.outcome.index()].fetch_add(1, Ordering::Relaxed);
            let mut rec = Vec::with_capacity(64 + result.data.len() * 2);
            write_record(&mut rec, format, addr, &result);
            let _ = out.send(rec);
            drop(permit);
        });
    }
    // Wait for the grabs still running.
    let _ = permits.acquire_many(concurrency as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "nan", "inf", "x", "100000"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_are_validated() {
        let parse = |v: &[&str]| Args::try_parse_from(v.iter().copied());
        assert!(parse(&["b"]).is_err(), "-p is required");
        assert!(parse(&["b", "-p", "70000"]).is_err());
        assert!(parse(&["b", "-p", "22", "-c", "0"]).is_err());
        assert!(parse(&["b", "-p", "22", "--max-read", "0"]).is_err());
        assert!(parse(&["b", "-p", "22", "--format", "xml"]).is_err());
        let a = parse(&["b", "-p", "22"]).unwrap();
        assert_eq!(a.concurrency, 100);
        assert_eq!(a.connect_timeout, Duration::from_secs(4));
        assert_eq!(a.read_timeout, Duration::from_secs(4));
        assert_eq!(a.max_read, 1024);
        assert_eq!(a.format, Format::Csv);
    }

    #[test]
    fn summary_line_names_every_counter() {
        let s = Summary {
            input: ReadStats { lines: 10, targets: 9, bad: 1 },
            outcomes: [1, 2, 3, 4, 5, 6, 7],
            queue: QueueStats { pushed: 9, spilled: 0, peak_memory_bytes: 2048, lost: 0 },
        };
        assert_eq!(
            s.line(),
            "rzmap-banner: done: 9 hosts read, 1 banners, 2 closed, 3 timeouts, 4 refused, \
             5 resets, 6 unreachable, 7 errors, 1 bad input lines; queue peak 2 KiB in memory, \
             0 spilled, 0 lost"
        );
    }
}
