//! Suppressing the kernel's RSTs while rzmap completes TCP handshakes itself.
//!
//! The kernel knows nothing of the connections rzmap's user-space handshake makes, so it
//! answers every SYN-ACK and data segment for them with a RST, killing the connection. An
//! [`RstGuard`] installs an nftables table of its own (`rzmap_<pid>`, family `ip`) whose
//! output-hook rule drops outgoing TCP segments with RST set **from our source addresses and
//! source-port range only**, and deletes the table when dropped (normal exit, error return,
//! and Ctrl-C, which the application turns into a normal return). Tables left behind by a
//! killed rzmap are found by [`remove_stale_tables`]: their pid is in the name.
//!
//! Frames rzmap sends on an AF_PACKET socket never pass the output hook, so its own closing
//! RSTs are unaffected. Packets sent on a raw IP socket (`-X`) do pass it: give that socket a
//! firewall mark (`SO_MARK`) and pass the same value as [`RstGuardSpec::exempt_mark`].
//!
//! This shells out to `nft` (no `unsafe`, no netlink code of our own). Nothing here touches any
//! table but the one it creates, and stale removal touches only `rzmap_<pid>` tables whose
//! process is gone.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every table rzmap creates.
pub const TABLE_PREFIX: &str = "rzmap_";

/// What to guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RstGuardSpec {
    /// First source port of the scan.
    pub port_first: u16,
    /// Last source port of the scan (inclusive).
    pub port_last: u16,
    /// The scan's source addresses (at least one).
    pub src_ips: Vec<Ipv4Addr>,
    /// Packets carrying this firewall mark are never dropped (rzmap's own RSTs on a raw IP
    /// socket).
    pub exempt_mark: Option<u32>,
    /// Run `nft` inside this named network namespace (`ip netns exec`), for tests and labs;
    /// `None` is the current namespace.
    pub netns: Option<String>,
}

impl RstGuardSpec {
    /// A spec for the current namespace without an exempt mark.
    pub fn new(port_first: u16, port_last: u16, src_ips: &[Ipv4Addr]) -> Self {
        Self { port_first, port_last, src_ips: src_ips.to_vec(), exempt_mark: None, netns: None }
    }

    fn check(&self) -> Result<(), String> {
        if self.port_first > self.port_last {
            return Err(format!(
                "RST guard: source port range {}-{} is empty",
                self.port_first, self.port_last
            ));
        }
        if self.src_ips.is_empty() {
            return Err("RST guard: no source address to guard".to_string());
        }
        Ok(())
    }
}

/// The nft script that creates table `table` for `spec`.
pub fn ruleset_script(table: &str, spec: &RstGuardSpec) -> String {
    let addrs: Vec<String> = spec.src_ips.iter().map(|a| a.to_string()).collect();
    let ports = if spec.port_first == spec.port_last {
        spec.port_first.to_string()
    } else {
        format!("{}-{}", spec.port_first, spec.port_last)
    };
    let mark = match spec.exempt_mark {
        Some(m) => format!("meta mark != {m:#x} "),
        None => String::new(),
    };
    // Priority -300 (raw): drop before connection tracking sees the packet.
    format!(
        "table ip {table} {{\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority -300; policy accept;\n\
         \t\tip saddr {{ {} }} tcp sport {ports} tcp flags & rst == rst {mark}counter drop\n\
         \t}}\n\
         }}\n",
        addrs.join(", ")
    )
}

/// An installed RST-suppression table; removed when dropped.
#[derive(Debug)]
pub struct RstGuard {
    table: String,
    netns: Option<String>,
    removed: bool,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl RstGuard {
    /// Installs a table named `rzmap_<pid>` dropping outgoing TCP RSTs from `src_ips` with a
    /// source port in `src_port_first..=src_port_last`, in the current network namespace.
    pub fn install(
        src_port_first: u16,
        src_port_last: u16,
        src_ips: &[Ipv4Addr],
    ) -> Result<RstGuard, String> {
        Self::install_with(&RstGuardSpec::new(src_port_first, src_port_last, src_ips))
    }

    /// Installs a table for a full spec (exempt mark, namespace).
    pub fn install_with(spec: &RstGuardSpec) -> Result<RstGuard, String> {
        spec.check()?;
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let table = if n == 0 {
            format!("{TABLE_PREFIX}{pid}")
        } else {
            format!("{TABLE_PREFIX}{pid}_{n}")
        };
        let netns = spec.netns.clone();
        run_nft(netns.as_deref(), &["-f", "-"], Some(&ruleset_script(&table, spec)))
            .map_err(|e| format!("RST guard: cannot install nftables table {table}: {e}"))?;
        Ok(RstGuard { table, netns, removed: false })
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Removes the table now, reporting failure (dropping the guard does the same silently
    /// except for one warning line on standard error).
    pub fn remove(mut self) -> Result<(), String> {
        self.removed = true;
        delete_table(self.netns.as_deref(), &self.table)
    }
}

impl RstGuard {
    /// Hands removal to a keeper process started now (while rzmap still has the privileges
    /// `nft` needs): a shell that ignores SIGINT/SIGTERM/SIGHUP and waits for its standard
    /// input to close, then deletes the table. Its input closes when the [`GuardKeeper`] is
    /// dropped, and also when rzmap exits in any other way (a second Ctrl-C, a crash,
    /// SIGKILL), so the table is removed even then.
    pub fn into_keeper(mut self) -> Result<GuardKeeper, String> {
        let script = "trap '' INT TERM HUP; read _ignored; exec nft delete table ip \"$1\"";
        let mut cmd = match self.netns.as_deref() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sh"]);
                c
            }
            None => Command::new("sh"),
        };
        cmd.args(["-c", script, "rzmap-rst-guard", &self.table])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child =
            cmd.spawn().map_err(|e| format!("RST guard: cannot start the removal keeper: {e}"))?;
        self.removed = true;
        Ok(GuardKeeper { child, table: std::mem::take(&mut self.table) })
    }
}

/// The process that removes an [`RstGuard`]'s table (see [`RstGuard::into_keeper`]).
#[derive(Debug)]
pub struct GuardKeeper {
    child: std::process::Child,
    table: String,
}

impl GuardKeeper {
    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }
}

impl Drop for GuardKeeper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        match self.child.wait() {
            Ok(st) if st.success() => {}
            Ok(st) => eprintln!("rzmap: warning: RST guard: removing {} failed ({st})", self.table),
            Err(e) => eprintln!("rzmap: warning: RST guard: removing {}: {e}", self.table),
        }
    }
}

impl Drop for RstGuard {
    fn drop(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(e) = delete_table(self.netns.as_deref(), &self.table) {
                eprintln!("rzmap: warning: {e}");
            }
        }
    }
}

fn delete_table(netns: Option<&str>, table: &str) -> Result<(), String> {
    run_nft(netns, &["delete", "table", "ip", table], None)
        .map(|_| ())
        .map_err(|e| format!("RST guard: cannot remove nftables table {table}: {e}"))
}

/// The pid in an rzmap table name (`rzmap_<pid>` or `rzmap_<pid>_<n>`).
pub fn table_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TABLE_PREFIX)?;
    let digits = rest.split('_').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Names of the `ip` family rzmap tables in `nft list tables` output.
pub fn rzmap_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("table"), Some("ip"), Some(name)) if table_pid(name).is_some() => {
                    Some(name.to_string())
                }
                _ => None,
            }
        })
        .collect()
}

/// Removes rzmap tables whose process no longer exists (left by a killed run); returns
/// their names. `netns` as in [`RstGuardSpec::netns`].
pub fn remove_stale_tables(netns: Option<&str>) -> Result<Vec<String>, String> {
    let listing = run_nft(netns, &["list", "tables"], None)
        .map_err(|e| format!("RST guard: cannot list nftables tables: {e}"))?;
    let mut removed = Vec::new();
    for name in rzmap_tables(&listing) {
        let Some(pid) = table_pid(&name) else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete_table(netns, &name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// Runs `nft ARGS` (inside `ip netns exec NS` when given), feeding `stdin`; returns standard
/// output, or the first line of standard error.
fn run_nft(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run nft: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| format!("cannot feed nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft did not finish: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim();
        Err(format!("nft: {line} ({})", out.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const LAB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    #[test]
    fn script_scopes_the_rule() {
        let spec = RstGuardSpec::new(32768, 61000, &[LAB, Ipv4Addr::new(198, 18, 0, 2)]);
        let s = ruleset_script("rzmap_42", &spec);
        assert!(s.starts_with("table ip rzmap_42 {"));
        assert!(s.contains("type filter hook output priority -300; policy accept;"));
        assert!(s.contains(
            "ip saddr { 198.18.0.1, 198.18.0.2 } tcp sport 32768-61000 tcp flags & rst == rst \
             counter drop"
        ));
        let one = RstGuardSpec { exempt_mark: Some(0x525a), ..RstGuardSpec::new(5, 5, &[LAB]) };
        let s = ruleset_script("t", &one);
        assert!(s.contains("tcp sport 5 tcp flags & rst == rst meta mark != 0x525a counter drop"));
    }

    #[test]
    fn bad_specs_are_refused_before_running_nft() {
        let e = RstGuard::install(2, 1, &[LAB]).unwrap_err();
        assert_eq!(e, "RST guard: source port range 2-1 is empty");
        let e = RstGuard::install(1, 2, &[]).unwrap_err();
        assert_eq!(e, "RST guard: no source address to guard");
    }

    #[test]
    fn table_names_and_listing() {
        assert_eq!(table_pid("rzmap_123"), Some(123));
        assert_eq!(table_pid("rzmap_123_4"), Some(123));
        assert_eq!(table_pid("rzmap_"), None);
        assert_eq!(table_pid("rzmap_x1"), None);
        assert_eq!(table_pid("filter"), None);
        let listing = "table inet filter\ntable ip rzmap_77\ntable ip6 rzmap_78\n\
                       table ip rzmap_79_2\ntable ip rzmapx_1\n";
        assert_eq!(rzmap_tables(listing), ["rzmap_77", "rzmap_79_2"]);
    }

    /// A network namespace of our own, deleted on drop (also when the test panics).
    struct Netns(String);

    static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

    impl Netns {
        /// `None` when namespaces cannot be made here (not root, no `ip`/`nft`): the test
        /// fails unless `RZMAP_SKIP_LAB=1`, as the lab's own tests do.
        fn new() -> Option<Netns> {
            let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("rzmap-rstg-{}-{n}", std::process::id());
            let ok = Command::new("ip").args(["netns", "add", &name]).status().ok()?.success();
            if !ok {
                return None;
            }
            let ns = Netns(name);
            ns.exec(&["ip", "link", "set", "lo", "up"]).ok()?;
            ns.exec(&["nft", "list", "tables"]).ok()?;
            Some(ns)
        }

        fn exec(&self, cmd: &[&str]) -> Result<String, String> {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(cmd)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }

        fn spec(&self, first: u16, last: u16, ip: Ipv4Addr) -> RstGuardSpec {
            RstGuardSpec { netns: Some(self.0.clone()), ..RstGuardSpec::new(first, last, &[ip]) }
        }

        /// How a TCP connect from inside the namespace to 127.0.0.1:`port` (no listener)
        /// ends: `true` when refused quickly (the kernel's RST arrived).
        fn connect_refused(&self, port: u16) -> bool {
            let start = Instant::now();
            let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0, "timeout", "2", "bash", "-c", &script])
                .output()
                .expect("run bash");
            let err = String::from_utf8_lossy(&out.stderr);
            err.contains("refused") && start.elapsed() < Duration::from_millis(1900)
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
        }
    }

    fn root_tables() -> String {
        Command::new("nft")
            .args(["list", "tables"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn guard_installs_in_a_namespace_and_removes_on_drop() {
        let Some(ns) = Netns::new() else {
            assert!(rzmap_lab::skip_lab(), "cannot create a network namespace with nft here");
            eprintln!("skipped (RZMAP_SKIP_LAB=1): no network namespace");
            return;
        };
        let guard = RstGuard::install_with(&ns.spec(40000, 40010, LAB)).expect("install");
        let name = guard.table_name().to_string();
        assert!(name.starts_with(&format!("rzmap_{}", std::process::id())));
        let listing = ns.exec(&["nft", "list", "table", "ip", &name]).expect("listed");
        assert!(listing.contains("tcp sport 40000-40010"), "{listing}");
        assert!(listing.contains("hook output"), "{listing}");
        assert!(!root_tables().contains(&name), "the root namespace must stay untouched");
        drop(guard);
        assert!(ns.exec(&["nft", "list", "table", "ip", &name]).is_err(), "table removed");
    }

    #[test]
    fn guard_suppresses_the_kernels_rst_only_for_its_ports() {
        let Some(ns) = Netns::new() else {
            assert!(rzmap_lab::skip_lab(), "cannot create a network namespace with nft here");
            eprintln!("skipped (RZMAP_SKIP_LAB=1): no network namespace");
            return;
        };
        // Without a guard the kernel refuses a connection to a closed port with a RST.
        assert!(ns.connect_refused(40005));
        let guard =
            RstGuard::install_with(&ns.spec(40000, 40010, Ipv4Addr::LOCALHOST)).expect("install");
        // Now the RST from port 40005 is dropped: the connect times out instead.
        assert!(!ns.connect_refused(40005));
        // Ports outside the range are not affected.
        assert!(ns.connect_refused(40011));
        let counters = ns.exec(&["nft", "list", "table", "ip", guard.table_name()]).expect("list");
        assert!(!counters.contains("counter packets 0 "), "the rule counted drops: {counters}");
        guard.remove().expect("removed");
        assert!(ns.connect_refused(40005));
    }

    #[test]
    fn stale_tables_of_dead_processes_are_removed() {
        let Some(ns) = Netns::new() else {
            assert!(rzmap_lab::skip_lab(), "cannot create a network namespace with nft here");
            eprintln!("skipped (RZMAP_SKIP_LAB=1): no network namespace");
            return;
        };
        // A pid that is certainly dead: a child we started and reaped.
        let mut child = Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reaped");
        let stale = format!("rzmap_{dead}");
        ns.exec(&["nft", "add", "table", "ip", &stale]).expect("stale table");
        ns.exec(&["nft", "add", "table", "ip", "unrelated"]).expect("other table");
        let live = RstGuard::install_with(&ns.spec(1000, 1001, LAB)).expect("install");
        let removed = remove_stale_tables(Some(&ns.0)).expect("cleanup");
        assert_eq!(removed, std::slice::from_ref(&stale));
        let tables = ns.exec(&["nft", "list", "tables"]).expect("list");
        assert!(!tables.contains(&stale));
        assert!(tables.contains(live.table_name()), "{tables}");
        assert!(tables.contains("unrelated"), "{tables}");
    }
}
