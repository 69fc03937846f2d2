//! Building the scan's address space from a [`ScanConfig`]: positional subnets and `-w`
//! (together the allowlist), `-b` (or the built-in default blocklist when `-b` is absent),
//! and the `-I` address list.
//!
//! Host names, on the command line or in list files, are resolved to every IPv4 address
//! they have (IPv6 entries are ignored, as ZMap does). Resolution goes through a
//! caller-supplied function so tests never touch DNS.

use crate::config::ScanConfig;
use rzmap_core::addr::list::prefixes_of;
use rzmap_core::addr::{
    EntryKind, IpList, Ipv4Prefix, ListEntry, TargetSpace, default_blocklist, parse_list,
    parse_list_lenient,
};
use rzmap_core::error::InputError;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

/// ZMap warns when an `-I` list is smaller than this: the walk still covers the whole space.
pub const SMALL_IP_LIST: u64 = 43_000;

/// Resolves a host name to its IPv4 addresses; errors are short reasons.
pub type Resolver<'a> = &'a dyn Fn(&str) -> Result<Vec<Ipv4Addr>, String>;

/// The address side of a scan.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The allowed addresses with ZMap's index order.
    pub space: Arc<TargetSpace>,
    /// `-I`: the only addresses actually probed (the walk skips the others).
    pub ip_list: Option<Arc<IpList>>,
    /// The positional subnets as prefixes (host names expanded to /32s), for the metadata.
    pub cli_destinations: Vec<Ipv4Prefix>,
    /// Whether the built-in default blocklist was used (no `-b`).
    pub default_blocklist: bool,
    /// Things worth a warning (skipped list entries, blocklisted requests, a small `-I` list).
    pub warnings: Vec<String>,
}

/// Resolves through the system resolver (`getaddrinfo`), keeping every IPv4 address.
pub fn system_resolver(host: &str) -> Result<Vec<Ipv4Addr>, String> {
    let addrs = (host, 0).to_socket_addrs().map_err(|e| e.to_string())?;
    let mut v4: Vec<Ipv4Addr> = Vec::new();
    for a in addrs {
        if let IpAddr::V4(ip) = a.ip()
            && !v4.contains(&ip)
        {
            v4.push(ip);
        }
    }
    Ok(v4)
}

fn resolve_host(
    host: &str,
    resolver: Resolver<'_>,
    err: impl Fn(String) -> InputError,
) -> Result<Vec<Ipv4Prefix>, InputError> {
    let ips =
        resolver(host).map_err(|e| err(format!("cannot resolve host name \"{host}\": {e}")))?;
    if ips.is_empty() {
        return Err(err(format!("host name \"{host}\" has no IPv4 address")));
    }
    Ok(ips.into_iter().map(|ip| Ipv4Prefix::new(u32::from(ip), 32)).collect())
}

/// Parses one positional subnet: a prefix, an address, a host name, or (ignored) IPv6.
pub fn parse_subnet_arg(arg: &str, resolver: Resolver<'_>) -> Result<Vec<Ipv4Prefix>, InputError> {
    let input = format!("argument \"{arg}\"");
    if arg.trim().is_empty() {
        return Err(InputError::new(&input, "empty target"));
    }
    if arg.split_whitespace().count() > 1 || arg.contains('#') {
        return Err(InputError::new(&input, "one prefix, address or host name per argument"));
    }
    let entries = parse_list(arg, &input, false).map_err(|e| {
        // parse_list reports "input:1:col: msg"; an argument has no lines.
        match e.position {
            rzmap_core::error::Position::LineColumn(_, c) => {
                InputError::at_column(&input, c, e.message)
            }
            _ => InputError::new(&input, e.message),
        }
    })?;
    let mut out = Vec::new();
    for entry in entries {
        match entry.kind {
            EntryKind::Prefix(p) => out.push(p),
            EntryKind::Hostname(h) => {
                out.extend(resolve_host(&h, resolver, |m| InputError::new(&input, m))?)
            }
            EntryKind::Ipv6 => {}
        }
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| InputError::new(path.display().to_string(), "not a text file (invalid UTF-8)"))
}

/// Reads an allowlist or blocklist file into prefixes, resolving host names. With
/// `ignore_errors`, bad lines (and unresolvable names) are skipped and reported as warnings.
pub fn read_list_file(
    path: &Path,
    ignore_errors: bool,
    resolver: Resolver<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Ipv4Prefix>, InputError> {
    let name = path.display().to_string();
    let text = read_text(path)?;
    let entries: Vec<ListEntry> = if ignore_errors {
        let (entries, errors) = parse_list_lenient(&text, &name);
        warnings.extend(errors.iter().map(|e| format!("skipped {e}")));
        entries
    } else {
        parse_list(&text, &name, false)?
    };
    let mut out = prefixes_of(&entries);
    for entry in &entries {
        if let EntryKind::Hostname(h) = &entry.kind {
            match resolve_host(h, resolver, |m| InputError::at_line(&name, entry.line, m)) {
                Ok(p) => out.extend(p),
                Err(e) if ignore_errors => warnings.push(format!("skipped {e}")),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Builds the address space of a scan.
pub fn build_targets(cfg: &ScanConfig, resolver: Resolver<'_>) -> Result<Targets, InputError> {
    let mut warnings = Vec::new();
    let mut cli_destinations = Vec::new();
    for arg in &cfg.subnets {
        cli_destinations.extend(parse_subnet_arg(arg, resolver)?);
    }
    let mut allow: Option<Vec<Ipv4Prefix>> =
        if cfg.subnets.is_empty() { None } else { Some(cli_destinations.clone()) };
    if let Some(path) = &cfg.allowlist_file {
        let list = read_list_file(path, cfg.ignore_blocklist_errors, resolver, &mut warnings)?;
        allow.get_or_insert_with(Vec::new).extend(list);
    }
    let default_blocklist_used = cfg.blocklist_file.is_none();
    let block = match &cfg.blocklist_file {
        Some(path) => read_list_file(path, cfg.ignore_blocklist_errors, resolver, &mut warnings)?,
        None => default_blocklist(),
    };
    let space = TargetSpace::new(allow.as_deref(), &block);
    if default_blocklist_used && let Some(allow) = &allow {
        let unblocked = TargetSpace::new(Some(allow), &[]).count();
        let excluded = unblocked - space.count().min(unblocked);
        if excluded > 0 {
            warnings.push(format!(
                "the built-in blocklist of reserved ranges excludes {excluded} of the \
                 {unblocked} requested addresses; give -b FILE (for example -b /dev/null) \
                 to replace it"
            ));
        }
    }
    if space.is_empty() {
        return Err(InputError::new(
            "targets",
            if default_blocklist_used && allow.is_some() {
                "no address left to scan: the built-in blocklist of reserved ranges covers \
                 every requested address (give -b FILE to replace it)"
            } else {
                "no address left to scan: the allowlist is empty or entirely blocklisted"
            },
        ));
    }
    let ip_list = match &cfg.list_of_ips_file {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let file = std::fs::File::open(path)
                .map_err(|e| InputError::new(&name, format!("cannot read: {e}")))?;
            let list = IpList::read_from(BufReader::new(file), &name)?;
            if list.len() < SMALL_IP_LIST {
                warnings.push(format!(
                    "the -I list holds only {} addresses, but the scan still walks all {} \
                     allowed addresses; for small lists, giving them as an allowlist (-w) is faster",
                    list.len(),
                    space.count()
                ));
            }
            Some(Arc::new(list))
        }
    };
    Ok(Targets {
        space: Arc::new(space),
        ip_list,
        cli_destinations,
        default_blocklist: default_blocklist_used,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzmap_core::addr::parse_prefix;

    fn prefix(s: &str) -> Option<Ipv4Prefix> {
        parse_prefix(s).ok()
    }
    use std::io::Write;

    fn no_dns(host: &str) -> Result<Vec<Ipv4Addr>, String> {
        match host {
            "two.example" => Ok(vec![Ipv4Addr::new(198, 18, 0, 7), Ipv4Addr::new(198, 18, 1, 9)]),
            "v6only.example" => Ok(vec![]),
            _ => Err("Name or service not known".into()),
        }
    }

    fn cfg(subnets: &[&str]) -> ScanConfig {
        let argv: Vec<std::ffi::OsString> =
            std::iter::once("rzmap").chain(subnets.iter().copied()).map(Into::into).collect();
        let p = crate::args::parse(&argv).unwrap();
        crate::config::resolve(&p.args, || Ok(1)).unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn subnet_arguments() {
        assert_eq!(
            parse_subnet_arg("198.18.0.0/24", &no_dns).unwrap(),
            vec![prefix("198.18.0.0/24").unwrap()]
        );
        assert_eq!(
            parse_subnet_arg("198.18.0.9", &no_dns).unwrap(),
            vec![prefix("198.18.0.9/32").unwrap()]
        );
        assert_eq!(
            parse_subnet_arg("two.example", &no_dns).unwrap(),
            vec![prefix("198.18.0.7/32").unwrap(), prefix("198.18.1.9/32").unwrap()]
        );
        assert!(parse_subnet_arg("2001:db8::/32", &no_dns).unwrap().is_empty());
        let e = parse_subnet_arg("198.18.0.0/33", &no_dns).unwrap_err().to_string();
        assert!(e.starts_with("argument \"198.18.0.0/33\": column "), "{e}");
        assert_eq!(
            parse_subnet_arg("nohost.invalid", &no_dns).unwrap_err().to_string(),
            "argument \"nohost.invalid\": cannot resolve host name \"nohost.invalid\": Name or service not known"
        );
        assert_eq!(
            parse_subnet_arg("v6only.example", &no_dns).unwrap_err().to_string(),
            "argument \"v6only.example\": host name \"v6only.example\" has no IPv4 address"
        );
    }

    #[test]
    fn default_blocklist_applies_without_b_and_warns() {
        let t = build_targets(&cfg(&["198.18.0.0/24", "1.2.3.0/24"]), &no_dns).unwrap();
        assert!(t.default_blocklist);
        assert_eq!(t.space.count(), 256);
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("excludes 256 of the 512 requested addresses"));
        let e = build_targets(&cfg(&["198.18.0.0/24"]), &no_dns).unwrap_err().to_string();
        assert!(e.starts_with("targets: no address left to scan: the built-in blocklist"), "{e}");
        // The full space minus the default blocklist, as ZMap counts it.
        let t = build_targets(&cfg(&[]), &no_dns).unwrap();
        assert_eq!(t.space.count(), 3_702_258_432);
    }

    #[test]
    fn blocklist_file_replaces_the_default() {
        let empty = file("# nothing\n");
        let p = empty.path().display().to_string();
        let t = build_targets(&cfg(&["-b", &p, "198.18.0.0/24"]), &no_dns).unwrap();
        assert!(!t.default_blocklist && t.warnings.is_empty());
        assert_eq!(t.space.count(), 256);
        let block = file("198.18.0.128/25 # half\ntwo.example\n");
        let p = block.path().display().to_string();
        let t = build_targets(&cfg(&["-b", &p, "198.18.0.0/24"]), &no_dns).unwrap();
        assert_eq!(t.space.count(), 127);
        assert!(!t.space.is_allowed(u32::from(Ipv4Addr::new(198, 18, 0, 7))));
    }

    #[test]
    fn allowlist_file_joins_positional_subnets() {
        let allow = file("198.18.2.0/30\n");
        let empty = file("");
        let (a, b) = (allow.path().display().to_string(), empty.path().display().to_string());
        let t = build_targets(&cfg(&["-w", &a, "-b", &b, "198.18.0.0/30"]), &no_dns).unwrap();
        assert_eq!(t.space.count(), 8);
        assert_eq!(t.cli_destinations, vec![prefix("198.18.0.0/30").unwrap()]);
    }

    #[test]
    fn list_errors_and_ignore_flag() {
        let bad = file("198.18.0.0/24\n1.2.3.4/40\nnohost.invalid\n");
        let p = bad.path().display().to_string();
        let e = build_targets(&cfg(&["-b", &p]), &no_dns).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{p}:2:")), "{e}");
        let t = build_targets(&cfg(&["-b", &p, "--ignore-blocklist-errors"]), &no_dns).unwrap();
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(t.warnings[0].starts_with(&format!("skipped {p}:2:")));
        assert!(t.warnings[1].starts_with(&format!("skipped {p}:3: cannot resolve host name")));
        let e =
            build_targets(&cfg(&["-w", "/nonexistent/allow"]), &no_dns).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/allow: cannot read: "), "{e}");
    }

    #[test]
    fn ip_list_file() {
        let ips = file("198.18.0.1\n198.18.0.2 # x\n");
        let empty = file("");
        let (i, b) = (ips.path().display().to_string(), empty.path().display().to_string());
        let t = build_targets(&cfg(&["-I", &i, "-b", &b, "198.18.0.0/24"]), &no_dns).unwrap();
        assert_eq!(t.ip_list.as_ref().map(|l| l.len()), Some(2));
        assert!(t.warnings.iter().any(|w| w.contains("the -I list holds only 2 addresses")));
    }
}
