//! Running the system tools the lab is built with (`ip`, `nft`, `ethtool`, `sysctl`).

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

/// Why a lab could not be built, queried or torn down.
#[derive(Debug)]
pub enum LabError {
    /// The spec is invalid.
    Spec(String),
    /// A command could not be started or exited unsuccessfully.
    Command {
        /// The command line, as a shell would show it.
        command: String,
        /// Exit status, or the spawn error.
        status: String,
        /// The start of its standard error.
        stderr: String,
    },
    /// Anything else (I/O, unexpected tool output).
    Other(String),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Spec(m) => write!(f, "bad lab spec: {m}"),
            LabError::Command { command, status, stderr } => {
                write!(f, "lab command `{command}` failed ({status})")?;
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            LabError::Other(m) => write!(f, "lab error: {m}"),
        }
    }
}

impl std::error::Error for LabError {}

/// Renders a command line for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn clip(s: &str) -> String {
    const MAX: usize = 600;
    let t = s.trim();
    if t.len() <= MAX {
        return t.to_string();
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &t[..end])
}

/// Runs `cmd` (optionally feeding `stdin`), returns its standard output, and turns a spawn
/// failure or non-zero exit into [`LabError::Command`] naming the command and its stderr.
pub fn run_with_input(mut cmd: Command, stdin: Option<&[u8]>) -> Result<String, LabError> {
    let command = show(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let spawn_err = |e: std::io::Error| LabError::Command {
        command: command.clone(),
        status: format!("could not run: {e}"),
        stderr: String::new(),
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            status: out.status.to_string(),
            stderr: clip(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run_with_input`] without standard input.
pub fn run(cmd: Command) -> Result<String, LabError> {
    run_with_input(cmd, None)
}

/// A `Command` for `program args…`.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// A `Command` running `program args…` inside network namespace `ns` (`ip netns exec`).
pub fn in_netns(ns: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]).args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_is_named_with_stderr() {
        let e = run(command("sh", &["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("sh -c echo oops"), "{m}");
        assert!(m.contains("oops"), "{m}");
        assert!(m.contains('3'), "{m}");
    }

    #[test]
    fn missing_program_is_an_error() {
        let e = run(command("/nonexistent/rzmap-lab-tool", &[])).unwrap_err();
        assert!(e.to_string().contains("could not run"));
    }

    #[test]
    fn stdin_and_stdout() {
        assert_eq!(run_with_input(command("cat", &[]), Some(b"hi")).unwrap(), "hi");
        assert!(clip(&"x".repeat(5000)).len() < 700);
    }
}
