//! The input reader: runs on its own thread, reads every line as fast as it arrives, and queues
//! the targets without ever waiting for the connection pool.

use std::io::{BufRead, Read, Write};

use rzmap_core::error::InputError;

use crate::input::{Line, LineParser};
use crate::queue::TargetQueue;

/// Longest accepted input line in bytes; longer lines are bad lines.
pub const MAX_LINE: usize = 64 * 1024;
/// Bad lines reported one by one; later ones are only counted.
pub const MAX_BAD_SHOWN: u64 = 100;

/// What the reader saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines read.
    pub lines: u64,
    /// Targets queued.
    pub targets: u64,
    /// Lines that were neither a target, a header, a comment nor empty.
    pub bad: u64,
}

/// Reads `input` (named `name` in messages) to its end, queueing targets, then closes `queue`.
///
/// Bad lines are reported on `diag` as `name:LINE: reason` (the first [`MAX_BAD_SHOWN`]) and
/// counted. A read error ends the input early, with a message.
pub fn read_targets<R: BufRead>(
    mut input: R,
    name: &str,
    default_port: u16,
    queue: &TargetQueue,
    diag: &mut dyn Write,
) -> ReadStats {
    let mut parser = LineParser::new(default_port);
    let mut stats = ReadStats::default();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let got = match (&mut input).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => {
                let _ = writeln!(diag, "rzmap-banner: error: reading {name}: {e}; input ends here");
                break;
            }
        };
        if got == 0 {
            break;
        }
        stats.lines += 1;
        let result = if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input);
            Err(format!("line longer than {MAX_LINE} bytes"))
        } else {
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            parser.parse(body)
        };
        match result {
            Ok(Line::Target(t)) => {
                stats.targets += 1;
                queue.push(t);
            }
            Ok(Line::Header | Line::Skip) => {}
            Err(reason) => {
                stats.bad += 1;
                if stats.bad <= MAX_BAD_SHOWN {
                    let e = InputError::at_line(name, stats.lines as usize, reason);
                    let _ = writeln!(diag, "rzmap-banner: bad input line: {e}");
                    if stats.bad == MAX_BAD_SHOWN {
                        let _ = writeln!(
                            diag,
                            "rzmap-banner: further bad input lines are only counted"
                        );
                    }
                }
            }
        }
    }
    queue.close();
    let _ = writeln!(
        diag,
        "rzmap-banner: input done: {} lines, {} hosts, {} bad lines",
        stats.lines, stats.targets, stats.bad
    );
    stats
}

/// Discards input up to and including the next newline.
fn skip_rest_of_line<R: BufRead>(input: &mut R) {
    loop {
        let (consumed, done) = match input.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(p) => (p + 1, true),
                None => (buf.len(), false),
            },
        };
        input.consume(consumed);
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Pop;

    fn run(input: &[u8]) -> (ReadStats, Vec<String>, String) {
        let q = TargetQueue::new(1 << 20);
        let mut diag = Vec::new();
        let stats = read_targets(input, "stdin", 80, &q, &mut diag);
        let mut got = Vec::new();
        while let Pop::Target(t) = q.try_pop() {
            got.push(t.to_string());
        }
        assert_eq!(q.try_pop(), Pop::Closed);
        (stats, got, String::from_utf8(diag).unwrap())
    }

    #[test]
    fn mixed_input_with_bad_lines() {
        let input = b"198.18.0.1\nnot an ip\n\n# c\n{\"saddr\":\"198.18.0.2\",\"sport\":81}\r\n\
                      saddr,sport\n198.18.0.3,82\n198.18.0.4";
        let (stats, got, diag) = run(input);
        assert_eq!(got, ["198.18.0.1:80", "198.18.0.2:81", "198.18.0.3:82", "198.18.0.4:80"]);
        assert_eq!(stats, ReadStats { lines: 8, targets: 4, bad: 1 });
        assert!(diag.contains("bad input line: stdin:2: bad address \"not an ip\""), "{diag}");
        assert!(diag.contains("input done: 8 lines, 4 hosts, 1 bad lines"), "{diag}");
    }

    #[test]
    fn overlong_lines_are_bad_and_skipped_whole() {
        let mut input = vec![b'1'; MAX_LINE * 3];
        input.extend_from_slice(b"\n198.18.0.9\n");
        let (stats, got, diag) = run(&input);
        assert_eq!(got, ["198.18.0.9:80"]);
        assert_eq!(stats, ReadStats { lines: 2, targets: 1, bad: 1 });
        assert!(diag.contains("stdin:1: line longer than"), "{diag}");
        // Exactly MAX_LINE bytes plus the newline is still accepted as a line (here a bad one).
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        let (stats, _, diag) = run(&input);
        assert_eq!(stats.bad, 1);
        assert!(diag.contains("bad address"), "{diag}");
    }

    #[test]
    fn bad_line_reports_are_capped() {
        let input = "x\n".repeat(MAX_BAD_SHOWN as usize + 50);
        let (stats, _, diag) = run(input.as_bytes());
        assert_eq!(stats.bad, MAX_BAD_SHOWN + 50);
        assert_eq!(diag.matches("bad input line:").count(), MAX_BAD_SHOWN as usize);
        assert!(diag.contains("only counted"));
    }
}
