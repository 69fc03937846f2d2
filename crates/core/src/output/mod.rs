//! Output modules: where records that pass the filter go.
//!
//! An [`OutputModule`] is started once, receives every record that passed the output filter,
//! is updated about once a second (it flushes then) and is closed at the end of the scan. The
//! registry ([`OUTPUT_MODULES`], [`create`]) lists csv, json and redis. File-writing modules
//! write to a `Box<dyn Write + Send>` the caller opens (`-o FILE` or stdout) through a 256 KiB
//! buffer; the caller learns from [`OutputError::is_closed_pipe`] that the reader went away
//! (`rzmap ... | head`), which ends the scan quietly with exit code 0.

pub mod csv;
pub mod json;
pub mod redis;
pub mod select;
pub mod text;

use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use crate::error::InputError;
use crate::fields::{Record, Schema};

pub use select::{FieldSelection, OutputPlan, OutputRequest, plan_output};

/// A sink for warnings (one line each, no trailing newline), e.g. the scan's logger.
pub type WarnSink = Box<dyn FnMut(&str) + Send>;

/// Why an output module failed.
#[derive(Debug)]
pub enum OutputError {
    /// The reader closed the pipe (EPIPE): end the scan quietly, exit status 0.
    ClosedPipe,
    /// Any other I/O error on the output.
    Io(io::Error),
    /// Records could not be delivered (redis unreachable until the deadline, or its buffer
    /// bound was reached); `count` records are lost.
    Undelivered {
        /// How many records were not delivered.
        count: usize,
        /// Why, in one line.
        reason: String,
    },
}

impl OutputError {
    /// True when the output's reader went away (EPIPE).
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, OutputError::ClosedPipe)
    }
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::ClosedPipe
        } else {
            OutputError::Io(e)
        }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::ClosedPipe => write!(f, "output closed by its reader (broken pipe)"),
            OutputError::Io(e) => write!(f, "cannot write output: {e}"),
            OutputError::Undelivered { count, reason } => {
                write!(f, "{count} records were not delivered: {reason}")
            }
        }
    }
}

impl std::error::Error for OutputError {}

/// A results writer. Called from one thread (the receive path) in this order: `start`,
/// `record`* interleaved with `update` (about once a second), `close`.
pub trait OutputModule: Send {
    /// The module's registry name.
    fn name(&self) -> &'static str;
    /// Called once before the first record (csv writes its header here).
    fn start(&mut self) -> Result<(), OutputError>;
    /// Writes one record. Must not allocate per record once warmed up.
    fn record(&mut self, rec: &Record) -> Result<(), OutputError>;
    /// Periodic housekeeping (about 1 Hz): flush buffered output, retry deliveries.
    fn update(&mut self) -> Result<(), OutputError>;
    /// Flushes everything. Modules that deliver over a network may retry until `deadline`.
    fn close(&mut self, deadline: Instant) -> Result<(), OutputError>;
}

/// A registered output module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputModuleInfo {
    /// Name for `-O`.
    pub name: &'static str,
    /// One-line description.
    pub help: &'static str,
    /// Whether it writes to the output file (`-o` or stdout); redis does not.
    pub writes_file: bool,
}

/// Every output module, in `--list-output-modules` order.
pub const OUTPUT_MODULES: &[OutputModuleInfo] = &[
    OutputModuleInfo {
        name: "csv",
        help: "comma-separated values with a header row (RFC 4180 quoting)",
        writes_file: true,
    },
    OutputModuleInfo {
        name: "json",
        help: "one JSON object per line; NULL fields are omitted",
        writes_file: true,
    },
    OutputModuleInfo { name: "redis", help: redis::HELP, writes_file: false },
];

/// Looks a module up by name.
pub fn find_module(name: &str) -> Option<&'static OutputModuleInfo> {
    OUTPUT_MODULES.iter().find(|m| m.name == name)
}

/// The module names, in registry order.
pub fn module_names() -> Vec<&'static str> {
    OUTPUT_MODULES.iter().map(|m| m.name).collect()
}

/// The text `--list-output-modules` prints: one name per line, as ZMap does.
pub fn list_output_modules() -> String {
    let mut s = String::new();
    for m in OUTPUT_MODULES {
        s.push_str(m.name);
        s.push('\n');
    }
    s
}

/// Creates the named module. `out` is the opened output file (or stdout) for modules that
/// [write a file](OutputModuleInfo::writes_file); `args` is `--output-args`; `header` asks csv
/// for a header row. Errors are one-line and name the offending option.
pub fn create(
    name: &str,
    schema: &Schema,
    fields: &FieldSelection,
    header: bool,
    args: Option<&str>,
    out: Option<Box<dyn Write + Send>>,
) -> Result<Box<dyn OutputModule>, InputError> {
    let need_out =
        || InputError::new("--output-file", format!("the {name} output module needs an output"));
    match name {
        "csv" => {
            Ok(Box::new(csv::CsvOutput::new(schema, fields, header, out.ok_or_else(need_out)?)?))
        }
        "json" => Ok(Box::new(json::JsonOutput::new(schema, fields, out.ok_or_else(need_out)?)?)),
        "redis" => {
            let cfg = redis::RedisConfig::parse(args.unwrap_or(""))?;
            Ok(Box::new(redis::RedisOutput::new(schema, fields, cfg)?))
        }
        _ => Err(InputError::new(
            "--output-module",
            format!("unknown output module \"{name}\" (available: {})", module_names().join(", ")),
        )),
    }
}

/// Output buffer size: records are encoded straight into it and written when it fills.
pub const BUFFER_BYTES: usize = 256 * 1024;

/// A write buffer in front of the caller's writer: encoders append to [`Sink::buf`], and
/// [`Sink::commit`] writes it out once it holds [`BUFFER_BYTES`].
pub struct Sink {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Sink {
    /// A sink over `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out, buf: Vec::with_capacity(BUFFER_BYTES + 4096) }
    }

    /// The pending bytes, to append to.
    #[inline]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes the buffer out when it is full.
    #[inline]
    pub fn commit(&mut self) -> Result<(), OutputError> {
        if self.buf.len() >= BUFFER_BYTES { self.write_out() } else { Ok(()) }
    }

    fn write_out(&mut self) -> Result<(), OutputError> {
        let r = self.out.write_all(&self.buf);
        // On error, the bytes are dropped: a failed output ends the scan.
        self.buf.clear();
        r.map_err(OutputError::from)
    }

    /// Writes everything and flushes the writer.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        if !self.buf.is_empty() {
            self.write_out()?;
        }
        self.out.flush().map_err(OutputError::from)
    }
}

#[cfg(test)]
mod tests;
