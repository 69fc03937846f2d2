//! ZMap-style config files: one option per line, named by its long name.
//!
//! ```text
//! interface "eth1"
//! source-ip 1.1.1.4-1.1.1.8
//! gateway-mac b4:23:f9:28:fa:2d # upstream gateway
//! output-file ~/zmap-output
//! quiet
//! ```
//!
//! Rules: blank lines and lines starting with `#` are ignored; a `#` outside quotes starts a
//! trailing comment; the name may be followed by whitespace or `=`; a value containing spaces
//! must be quoted with `"` (or `'`), with no escapes inside; bare flags take no value. A
//! leading `~` in the value of a path option is replaced by `$HOME`.
//!
//! The entries become `--name=value` argv items placed *before* the real command line, so the
//! command line wins (see [`crate::args`]).

use crate::args::{self, OptionInfo};
use rzmap_core::error::InputError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The default config file, read when it exists and no `-C` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rzmap/rzmap.conf";

/// Environment variable naming another default config file (empty: no default file).
pub const DEFAULT_CONFIG_ENV: &str = "RZMAP_DEFAULT_CONFIG";

/// Long names of the options whose values are paths (for `~` expansion).
pub const PATH_OPTIONS: &[&str] = &[
    "config",
    "output-file",
    "blocklist-file",
    "allowlist-file",
    "list-of-ips-file",
    "log-file",
    "log-directory",
    "metadata-file",
    "status-updates-file",
];

/// One option read from a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The option as the command line knows it.
    pub option: OptionInfo,
    /// Its value (`None` for bare flags).
    pub value: Option<String>,
    /// The 1-based line it was read from.
    pub line: usize,
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFile {
    /// The path as given (used in error messages).
    pub path: String,
    /// The options in file order.
    pub entries: Vec<ConfigEntry>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let name = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|e| InputError::new(&name, format!("cannot read config file: {e}")))?;
        let text = String::from_utf8(text).map_err(|e| {
            let bytes = e.as_bytes();
            let line =
                1 + bytes[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            InputError::at_line(&name, line, "not valid UTF-8")
        })?;
        Self::parse(&name, &text)
    }

    /// Parses config text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, InputError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if let Some(entry) = parse_line(raw).map_err(|m| InputError::at_line(name, line, m))? {
                let (opt_name, value) = entry;
                let option = match args::find_option(&opt_name) {
                    Some(o) => o,
                    None if opt_name == "help" || opt_name == "version" => {
                        return Err(InputError::at_line(
                            name,
                            line,
                            format!("\"{opt_name}\" cannot be used in a config file"),
                        ));
                    }
                    None => {
                        return Err(InputError::at_line(
                            name,
                            line,
                            format!("unknown option \"{opt_name}\""),
                        ));
                    }
                };
                if option.long == "config" {
                    return Err(InputError::at_line(
                        name,
                        line,
                        "\"config\" cannot be used inside a config file",
                    ));
                }
                let value = match (option.takes_value, value) {
                    (true, Some(v)) => Some(v),
                    (true, None) => {
                        return Err(InputError::at_line(
                            name,
                            line,
                            format!("option \"{opt_name}\" needs a value"),
                        ));
                    }
                    (false, None) => None,
                    (false, Some(v)) => {
                        return Err(InputError::at_line(
                            name,
                            line,
                            format!("option \"{opt_name}\" takes no value, got \"{v}\""),
                        ));
                    }
                };
                let value = match value {
                    Some(v) if PATH_OPTIONS.contains(&option.long.as_str()) => {
                        Some(expand_tilde(&v))
                    }
                    v => v,
                };
                entries.push(ConfigEntry { option, value, line });
            }
        }
        Ok(Self { path: name.to_string(), entries })
    }

    /// The entries as argv items (`--name=value` or `--name`), to go before the real argv.
    pub fn to_argv(&self) -> Vec<OsString> {
        self.entries
            .iter()
            .map(|e| match &e.value {
                Some(v) => OsString::from(format!("--{}={}", e.option.long, v)),
                None => OsString::from(format!("--{}", e.option.long)),
            })
            .collect()
    }

    /// The line of the last entry for the option with this clap id, if the file sets it.
    pub fn line_of(&self, id: &str) -> Option<usize> {
        self.entries.iter().rev().find(|e| e.option.id == id).map(|e| e.line)
    }
}

/// Splits one line into an option name and its optional value; `Ok(None)` for blank lines
/// and comments. Errors are messages without the position.
fn parse_line(raw: &str) -> Result<Option<(String, Option<String>)>, String> {
    let s = raw.trim_end_matches('\r').trim_start();
    if s.is_empty() || s.starts_with('#') {
        return Ok(None);
    }
    let name_end = s.find(|c: char| c.is_whitespace() || c == '=' || c == '#').unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() {
        return Err(format!("expected an option name, got \"{}\"", s.trim()));
    }
    let name = name.strip_prefix("--").unwrap_or(name).to_string();
    let mut rest = s[name_end..].trim_start();
    let had_equals = rest.starts_with('=');
    if had_equals {
        rest = rest[1..].trim_start();
    }
    if rest.is_empty() || rest.starts_with('#') {
        if had_equals {
            return Err(format!("option \"{name}\" needs a value after \"=\""));
        }
        return Ok(Some((name, None)));
    }
    let (value, after) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let body = &rest[1..];
            let Some(end) = body.find(q) else {
                return Err(format!("missing closing {q} in the value of \"{name}\""));
            };
            (body[..end].to_string(), &body[end + 1..])
        }
        _ => {
            let end = rest.find(|c: char| c.is_whitespace() || c == '#').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        }
    };
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!(
            "unexpected text \"{}\" after the value of \"{name}\" (quote values that contain spaces)",
            after.trim_end()
        ));
    }
    Ok(Some((name, Some(value))))
}

/// Replaces a leading `~` or `~/` with `$HOME`. Other values (and `~user`) are unchanged.
pub fn expand_tilde(value: &str) -> String {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (value, home) {
        ("~", Some(h)) => h.to_string_lossy().into_owned(),
        (v, Some(h)) if v.starts_with("~/") => {
            let mut p = PathBuf::from(h);
            p.push(&v[2..]);
            p.to_string_lossy().into_owned()
        }
        (v, _) => v.to_string(),
    }
}

/// The default config file: `$RZMAP_DEFAULT_CONFIG` if set (empty: none), else
/// [`DEFAULT_CONFIG_PATH`].
pub fn default_config_path() -> Option<PathBuf> {
    match std::env::var_os(DEFAULT_CONFIG_ENV) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse("t.conf", text).map_err(|e| e.to_string())
    }

    fn argv(text: &str) -> Vec<String> {
        parse(text).unwrap().to_argv().into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn documentation_example_parses() {
        let text = "interface \"eth1\"\nsource-ip 1.1.1.4-1.1.1.8\n\
                    gateway-mac b4:23:f9:28:fa:2d # upstream gateway\n\
                    cooldown-time 300 # seconds\nblacklist-file /etc/zmap/blacklist.conf\n\
                    quiet\nsummary\n";
        assert_eq!(
            argv(text),
            vec![
                "--interface=eth1",
                "--source-ip=1.1.1.4-1.1.1.8",
                "--gateway-mac=b4:23:f9:28:fa:2d",
                "--cooldown-time=300",
                "--blocklist-file=/etc/zmap/blacklist.conf",
                "--quiet",
                "--summary",
            ]
        );
    }

    #[test]
    fn comments_blank_lines_equals_and_crlf() {
        let text = "# a comment\n\n   \n  rate=100\r\nbandwidth = 10M\n--seed 5\nquiet # why\n\
                    probe-module\ttcp_synscan#c\n";
        assert_eq!(
            argv(text),
            vec![
                "--rate=100",
                "--bandwidth=10M",
                "--seed=5",
                "--quiet",
                "--probe-module=tcp_synscan"
            ]
        );
    }

    #[test]
    fn quoted_values_keep_spaces_and_hashes() {
        let text = "output-filter \"success = 1 && repeat = 0\" # filter\nnotes \"a # b\"\n\
                    user-metadata '{\"a\": 1}'\noutput-filter \"\"\n";
        assert_eq!(
            argv(text),
            vec![
                "--output-filter=success = 1 && repeat = 0",
                "--notes=a # b",
                "--user-metadata={\"a\": 1}",
                "--output-filter=",
            ]
        );
    }

    #[test]
    fn tilde_expands_in_path_options_only() {
        let home = std::env::var("HOME").unwrap_or_default();
        if home.is_empty() {
            return;
        }
        let out = argv("output-file ~/zmap-output\nnotes ~/not-a-path\nlog-directory ~\n");
        assert_eq!(
            out[0],
            format!("--output-file={}", Path::new(&home).join("zmap-output").display())
        );
        assert_eq!(out[1], "--notes=~/not-a-path");
        assert_eq!(out[2], format!("--log-directory={home}"));
        assert_eq!(expand_tilde("~user/x"), "~user/x");
        assert_eq!(expand_tilde("/abs"), "/abs");
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(parse("quiet\nfoo 1\n").unwrap_err(), "t.conf:2: unknown option \"foo\"");
        assert_eq!(parse("\n\nrate\n").unwrap_err(), "t.conf:3: option \"rate\" needs a value");
        assert_eq!(
            parse("rate =\n").unwrap_err(),
            "t.conf:1: option \"rate\" needs a value after \"=\""
        );
        assert_eq!(
            parse("quiet yes\n").unwrap_err(),
            "t.conf:1: option \"quiet\" takes no value, got \"yes\""
        );
        assert_eq!(
            parse("notes \"abc\n").unwrap_err(),
            "t.conf:1: missing closing \" in the value of \"notes\""
        );
        assert_eq!(
            parse("output-filter success = 1\n").unwrap_err(),
            "t.conf:1: unexpected text \"= 1\" after the value of \"output-filter\" (quote values that contain spaces)"
        );
        assert_eq!(
            parse("config other.conf\n").unwrap_err(),
            "t.conf:1: \"config\" cannot be used inside a config file"
        );
        assert_eq!(
            parse("help\n").unwrap_err(),
            "t.conf:1: \"help\" cannot be used in a config file"
        );
        assert_eq!(parse("=5\n").unwrap_err(), "t.conf:1: expected an option name, got \"=5\"");
    }

    #[test]
    fn unreadable_file_is_one_line_error() {
        let e = ConfigFile::load(Path::new("/nonexistent/rzmap.conf")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/rzmap.conf: cannot read config file: "), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"rate 5\n# ok\nnotes \xff\n").unwrap();
        let e = ConfigFile::load(f.path()).unwrap_err().to_string();
        assert_eq!(e, format!("{}:3: not valid UTF-8", f.path().display()));
    }

    #[test]
    fn line_of_finds_last_entry() {
        let c = parse("rate 1\nquiet\nrate 2\n").unwrap();
        assert_eq!(c.line_of("rate"), Some(3));
        assert_eq!(c.line_of("quiet"), Some(2));
        assert_eq!(c.line_of("seed"), None);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use proptest::prelude::*;
        proptest!(|(s in "\\PC*")| {
            let _ = ConfigFile::parse("x", &s);
        });
    }
}
