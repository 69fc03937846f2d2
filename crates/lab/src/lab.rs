//! Building, querying and tearing down one lab.

use crate::cmd::{LabError, command, in_netns, run, run_with_input};
use crate::nft;
use crate::serve::{Responder, ServeConfig};
use crate::spec::{LabSpec, Prefix, Truth};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// MAC address of the scanner's interface (locally administered, fixed: every lab is isolated).
pub const SCANNER_MAC: [u8; 6] = [0x02, 0x72, 0x7a, 0x00, 0x00, 0x02];
/// MAC address of the net side of the link (the scanner's gateway).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x72, 0x7a, 0x00, 0x00, 0x01];

/// Prefix of the namespace names of labs owned by a live process (`rzl-<pid>-<n>`).
pub const TEST_LAB_PREFIX: &str = "rzl-";
/// Prefix of the namespace names of labs kept by `rzmap-lab up` until `down`.
pub const KEPT_LAB_PREFIX: &str = "rzu-";
/// Transmit and receive queues on each end of the lab's veth pair (as a string for `ip`).
pub const VETH_QUEUES: &str = "4";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Where the responders run.
#[derive(Clone, Debug, Default)]
pub enum ResponderMode {
    /// Threads of this process, with sockets created in the net namespace (default; they end
    /// with this process, so nothing outlives a crashed test).
    #[default]
    Threads,
    /// A `rzmap-lab serve` process (this binary path) run under `ip netns exec`; used by
    /// `rzmap-lab up`, whose lab outlives the command.
    Process(PathBuf),
}

enum Responders {
    None,
    Threads(Responder),
    Process(Child),
}

/// The names and addresses of a lab, as `rzmap-lab up` prints them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabInfo {
    /// Lab id (`rzl-<pid>-<n>` or `rzu-<pid>-<n>`), the argument of `rzmap-lab down`.
    pub id: String,
    /// The scanner's network namespace.
    pub scan_ns: String,
    /// The simulated Internet's network namespace.
    pub net_ns: String,
    /// The scanner's interface (in `scan_ns`).
    pub scan_if: String,
    /// The net side of the link (in `net_ns`).
    pub net_if: String,
    /// The scanner's address.
    pub scanner_ip: Ipv4Addr,
    /// The scanner's MAC address.
    pub scanner_mac: String,
    /// The scanner's default gateway (net side).
    pub gateway_ip: Ipv4Addr,
    /// The gateway's MAC address.
    pub gateway_mac: String,
    /// The simulated prefix.
    pub prefix: Prefix,
    /// Pid of the `serve` process, in [`ResponderMode::Process`].
    pub serve_pid: Option<u32>,
}

/// Answers the net namespace has sent towards the scanner (counted at its output hook), to
/// tell losses in the lab from losses in the scanner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCounts {
    /// TCP SYN-ACKs.
    pub synack: u64,
    /// TCP RSTs (from nftables for closed hosts, from the kernel for other ports).
    pub rst: u64,
    /// ICMP echo replies.
    pub echo_reply: u64,
    /// ICMP destination-unreachable messages (host and port unreachable).
    pub unreachable: u64,
    /// UDP datagrams (responder replies).
    pub udp: u64,
}

/// A running lab. Dropping it tears everything down (responders, processes left in its
/// namespaces, both namespaces), also while unwinding from a panic.
pub struct Lab {
    spec: LabSpec,
    truth: Truth,
    info: LabInfo,
    responders: Responders,
    created: Vec<String>,
    keep: bool,
}

fn link_for(prefix: &Prefix) -> (Ipv4Addr, Ipv4Addr) {
    let a = "198.19.255.252/30".parse::<Prefix>().expect("constant");
    let b = "198.18.255.252/30".parse::<Prefix>().expect("constant");
    let l = if prefix.overlaps(&a) { b } else { a };
    (l.nth(1), l.nth(2))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn netns_exists(name: &str) -> bool {
    Path::new(&format!("/run/netns/{name}")).exists()
}

impl Lab {
    /// Builds a lab with in-process responder threads.
    pub fn build(spec: LabSpec) -> Result<Lab, LabError> {
        Self::build_with(spec, ResponderMode::Threads)
    }

    /// Builds a lab; on failure everything made so far is torn down and the error names the
    /// failing command and its stderr.
    pub fn build_with(spec: LabSpec, mode: ResponderMode) -> Result<Lab, LabError> {
        spec.validate().map_err(LabError::Spec)?;
        let _ = reap_stale();
        let truth = Truth::of(&spec);
        let pid = std::process::id();
        let keep = matches!(mode, ResponderMode::Process(_));
        let tag = if keep { KEPT_LAB_PREFIX } else { TEST_LAB_PREFIX };
        let (gateway_ip, scanner_ip) = link_for(&spec.prefix);
        let mut lab = Lab {
            spec,
            truth,
            info: LabInfo {
                id: String::new(),
                scan_ns: String::new(),
                net_ns: String::new(),
                scan_if: String::new(),
                net_if: String::new(),
                scanner_ip,
                scanner_mac: mac_string(&SCANNER_MAC),
                gateway_ip,
                gateway_mac: mac_string(&GATEWAY_MAC),
                prefix: Prefix { addr: Ipv4Addr::UNSPECIFIED, len: 0 },
                serve_pid: None,
            },
            responders: Responders::None,
            created: Vec::new(),
            keep: false,
        };
        lab.info.prefix = lab.spec.prefix;
        // Pick a free id and create both namespaces (recorded at once for teardown).
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xf_ffff;
            let id = format!("{tag}{pid}-{n}");
            let (s, t) = (format!("{id}-scan"), format!("{id}-net"));
            if netns_exists(&s) || netns_exists(&t) {
                continue;
            }
            run(command("ip", &["netns", "add", &s]))?;
            lab.created.push(s.clone());
            run(command("ip", &["netns", "add", &t]))?;
            lab.created.push(t.clone());
            lab.info.scan_if = format!("rzs{pid:x}-{n:x}");
            lab.info.net_if = format!("rzn{pid:x}-{n:x}");
            (lab.info.id, lab.info.scan_ns, lab.info.net_ns) = (id, s, t);
            break;
        }
        lab.setup(mode)?;
        Ok(lab)
    }

    fn ip(&self, ns: &str, args: &[&str]) -> Result<String, LabError> {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        run(command("ip", &a))
    }

    /// Sets `key=value` sysctls of namespace `ns` by writing `/proc/sys` from a thread inside
    /// it (network sysctls are per namespace; no `sysctl` binary needed).
    fn sysctl(&self, ns: &str, settings: &[&str]) -> Result<(), LabError> {
        crate::netns::in_netns(ns, || {
            for kv in settings {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let path = format!("/proc/sys/{}", k.replace('.', "/"));
                std::fs::write(&path, v).map_err(|e| LabError::Command {
                    command: format!("sysctl -w {kv} (in {ns})"),
                    status: "write failed".into(),
                    stderr: format!("{path}: {e}"),
                })?;
            }
            Ok(())
        })?
    }

    fn setup(&mut self, mode: ResponderMode) -> Result<(), LabError> {
        let i = self.info.clone();
        let (scan, net) = (i.scan_ns.as_str(), i.net_ns.as_str());
        if Path::new("/proc/sys/net/ipv6").exists() {
            // No IPv6 chatter (router solicitations, DAD, MLD) on the link.
            for ns in [scan, net] {
                self.sysctl(
                    ns,
                    &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                )?;
            }
        }
        self.sysctl(scan, &["net.ipv4.ping_group_range=0 2147483647"])?;
        // Exact ground truth at high rates: no ICMP rate limits, no SYN cookies, deep queues.
        self.sysctl(
            net,
            &[
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv4.icmp_ratemask=0",
                "net.ipv4.icmp_msgs_per_sec=2147483647",
                "net.ipv4.icmp_msgs_burst=2147483647",
                "net.ipv4.tcp_syncookies=0",
                "net.core.somaxconn=65535",
                "net.ipv4.tcp_max_syn_backlog=65535",
            ],
        )?;
        run(command(
            "ip",
            &[
                "link",
                "add",
                &i.scan_if,
                "netns",
                scan,
                "address",
                &i.scanner_mac,
                // Several queues, like a multi-queue NIC: each sender thread of an AF_XDP
                // scan binds its own transmit queue.
                "numtxqueues",
                VETH_QUEUES,
                "numrxqueues",
                VETH_QUEUES,
                "type",
                "veth",
                "peer",
                "name",
                &i.net_if,
                "netns",
                net,
                "address",
                &i.gateway_mac,
                "numtxqueues",
                VETH_QUEUES,
                "numrxqueues",
                VETH_QUEUES,
            ],
        ))?;
        let (sip, gip) = (i.scanner_ip.to_string(), i.gateway_ip.to_string());
        let prefix = i.prefix.to_string();
        for (ns, dev) in [(scan, &i.scan_if), (net, &i.net_if)] {
            run(in_netns(ns, "ethtool", &["-K", dev, "tx", "off"]))?;
        }
        self.ip(scan, &["addr", "add", &format!("{sip}/30"), "dev", &i.scan_if])?;
        self.ip(scan, &["link", "set", "lo", "up"])?;
        self.ip(scan, &["link", "set", &i.scan_if, "up"])?;
        self.ip(scan, &["route", "add", "default", "via", &gip, "dev", &i.scan_if])?;
        self.ip(
            scan,
            &[
                "neigh",
                "replace",
                &gip,
                "lladdr",
                &i.gateway_mac,
                "dev",
                &i.scan_if,
                "nud",
                "permanent",
            ],
        )?;
        self.ip(net, &["addr", "add", &format!("{gip}/30"), "dev", &i.net_if])?;
        self.ip(net, &["link", "set", "lo", "up"])?;
        self.ip(net, &["link", "set", &i.net_if, "up"])?;
        self.ip(net, &["route", "add", "local", &prefix, "dev", "lo"])?;
        self.ip(net, &["route", "add", "default", "via", &sip, "dev", &i.net_if])?;
        self.ip(
            net,
            &[
                "neigh",
                "replace",
                &sip,
                "lladdr",
                &i.scanner_mac,
                "dev",
                &i.net_if,
                "nud",
                "permanent",
            ],
        )?;
        let rules = nft::ruleset(&self.truth, &i.net_if, self.spec.http_port);
        run_with_input(in_netns(net, "nft", &["-f", "-"]), Some(rules.as_bytes()))?;
        let rules = nft::scanner_ruleset(&i.scan_if);
        run_with_input(in_netns(scan, "nft", &["-f", "-"]), Some(rules.as_bytes()))?;
        let cfg = ServeConfig {
            tcp_port: self.spec.tcp_port,
            udp_port: self.spec.udp_port,
            http_port: self.spec.http_port,
            greeting: self.spec.greeting.clone(),
        };
        self.responders = match mode {
            ResponderMode::Threads => Responders::Threads(Responder::start_in(net, &cfg)?),
            ResponderMode::Process(bin) => {
                let child = spawn_serve(net, &bin, &cfg)?;
                self.info.serve_pid = Some(child.id());
                Responders::Process(child)
            }
        };
        Ok(())
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }
    /// The exact expected behaviour of every address.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }
    /// Names and addresses.
    pub fn info(&self) -> &LabInfo {
        &self.info
    }
    /// The scanner's network namespace.
    pub fn scanner_ns(&self) -> &str {
        &self.info.scan_ns
    }
    /// The simulated Internet's network namespace.
    pub fn net_ns(&self) -> &str {
        &self.info.net_ns
    }
    /// The scanner's interface name (inside [`Lab::scanner_ns`]).
    pub fn scanner_if(&self) -> &str {
        &self.info.scan_if
    }
    /// The net side's interface name (inside [`Lab::net_ns`]).
    pub fn net_if(&self) -> &str {
        &self.info.net_if
    }
    /// The scanner's address.
    pub fn scanner_ip(&self) -> Ipv4Addr {
        self.info.scanner_ip
    }
    /// The scanner's MAC address.
    pub fn scanner_mac(&self) -> [u8; 6] {
        SCANNER_MAC
    }
    /// The scanner's gateway (net side) address.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.info.gateway_ip
    }
    /// The gateway's MAC address.
    pub fn gateway_mac(&self) -> [u8; 6] {
        GATEWAY_MAC
    }
    /// The simulated prefix.
    pub fn prefix(&self) -> Prefix {
        self.info.prefix
    }

    /// `ip netns exec <scanner ns> <program>`: add arguments and run it.
    pub fn scanner_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.info.scan_ns]).arg(program);
        c
    }

    /// `ip netns exec <net ns> <program>`: add arguments and run it.
    pub fn net_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.info.net_ns]).arg(program);
        c
    }

    /// Runs `f` on a thread inside the scanner namespace (see [`crate::netns::in_netns`]).
    pub fn in_scanner_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        crate::netns::in_netns(&self.info.scan_ns, f)
    }

    /// Runs `f` on a thread inside the net namespace.
    pub fn in_net_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        crate::netns::in_netns(&self.info.net_ns, f)
    }

    fn nft_json(&self, args: &[&str]) -> Result<serde_json::Value, LabError> {
        self.nft_json_in(&self.info.net_ns, args)
    }

    fn nft_json_in(&self, ns: &str, args: &[&str]) -> Result<serde_json::Value, LabError> {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        let out = run(in_netns(ns, "nft", &a))?;
        serde_json::from_str(&out).map_err(|e| LabError::Other(format!("nft -j output: {e}")))
    }

    fn counter(&self, name: &str) -> Result<u64, LabError> {
        self.counter_in(&self.info.net_ns, name)
    }

    fn counter_in(&self, ns: &str, name: &str) -> Result<u64, LabError> {
        let v = self.nft_json_in(ns, &["list", "counter", "ip", nft::TABLE, name])?;
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|o| o["counter"]["packets"].as_u64())
            .ok_or_else(|| LabError::Other(format!("nft counter {name} not found")))
    }

    /// Packets (of any kind) that reached a blocklisted address so far; a correct scanner
    /// keeps this at 0.
    pub fn blocklisted_packets(&self) -> Result<u64, LabError> {
        self.counter(nft::BLOCKLISTED_COUNTER)
    }

    /// Probe-like packets (TCP SYN without ACK, ICMP echo request, UDP) that reached the
    /// prefix over the link so far.
    pub fn probe_packets(&self) -> Result<u64, LabError> {
        self.counter(nft::PROBES_COUNTER)
    }

    fn reply_counts(&self, ns: &str) -> Result<ReplyCounts, LabError> {
        let [a, b, c, d, e] = nft::REPLY_COUNTERS;
        Ok(ReplyCounts {
            synack: self.counter_in(ns, a)?,
            rst: self.counter_in(ns, b)?,
            echo_reply: self.counter_in(ns, c)?,
            unreachable: self.counter_in(ns, d)?,
            udp: self.counter_in(ns, e)?,
        })
    }

    /// Answers the net namespace sent towards the scanner so far, by kind.
    pub fn replies_sent(&self) -> Result<ReplyCounts, LabError> {
        self.reply_counts(&self.info.net_ns)
    }

    /// Answers that arrived in the scanner namespace over the link so far, by kind (counted at
    /// prerouting, after AF_PACKET taps saw them): if these equal [`Lab::replies_sent`] but a
    /// scanner missed results, the scanner's own receive path lost them.
    pub fn replies_delivered(&self) -> Result<ReplyCounts, LabError> {
        self.reply_counts(&self.info.scan_ns)
    }

    /// Probe-like packets received per destination address (addresses never probed are
    /// absent): proves coverage and the absence of duplicates.
    pub fn probes_per_address(&self) -> Result<BTreeMap<Ipv4Addr, u64>, LabError> {
        let v = self.nft_json(&["list", "set", "ip", nft::TABLE, nft::PROBED_SET])?;
        let mut m = BTreeMap::new();
        let sets = v["nftables"].as_array().into_iter().flatten();
        for elem in sets.filter_map(|o| o["set"]["elem"].as_array()).flatten() {
            let e = &elem["elem"];
            let (Some(a), Some(n)) = (e["val"].as_str(), e["counter"]["packets"].as_u64()) else {
                return Err(LabError::Other(format!("unexpected nft set element {elem}")));
            };
            let a =
                a.parse().map_err(|_| LabError::Other(format!("bad address {a:?} in nft set")))?;
            m.insert(a, n);
        }
        Ok(m)
    }

    /// Sum of [`Lab::probes_per_address`] over `addrs`.
    pub fn packets_to(&self, addrs: &[Ipv4Addr]) -> Result<u64, LabError> {
        let m = self.probes_per_address()?;
        Ok(addrs.iter().filter_map(|a| m.get(a)).sum())
    }

    /// Sends a raw IPv4 packet (header included; the kernel fills in the header checksum and
    /// total length) from the net namespace, so it travels over the link to the scanner: use
    /// it for forged or malformed replies. Frames below the IP layer need AF_PACKET, which is
    /// `unsafe` territory: that belongs in rzmap-sys.
    pub fn inject_ip(&self, packet: &[u8]) -> Result<(), LabError> {
        if packet.len() < 20 {
            return Err(LabError::Other("inject_ip: packet shorter than an IPv4 header".into()));
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let r = self.in_net_ns(|| -> std::io::Result<()> {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
            s.send_to(packet, &std::net::SocketAddr::from((dst, 0)).into())?;
            Ok(())
        })?;
        r.map_err(|e| LabError::Other(format!("inject_ip: {e}")))
    }

    /// Keeps the lab after this value is gone (for `rzmap-lab up`); returns its description.
    /// `rzmap-lab down <id>` removes it.
    pub fn keep(mut self) -> LabInfo {
        self.keep = true;
        self.info.clone()
    }

    fn teardown(&mut self) {
        match std::mem::replace(&mut self.responders, Responders::None) {
            Responders::None => {}
            Responders::Threads(r) => r.stop(),
            Responders::Process(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for ns in self.created.drain(..).rev() {
            remove_netns(&ns);
        }
    }
}

/// Ends the processes still inside namespace `ns` (our tests' children), then deletes it.
fn remove_netns(ns: &str) {
    if let Ok(pids) = run(command("ip", &["netns", "pids", ns])) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = run(command("ip", &["netns", "del", ns]));
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            self.teardown();
        }
    }
}

fn spawn_serve(net: &str, bin: &Path, cfg: &ServeConfig) -> Result<Child, LabError> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", net]).arg(bin);
    c.args([
        "serve",
        "--tcp-port",
        &cfg.tcp_port.to_string(),
        "--udp-port",
        &cfg.udp_port.to_string(),
    ]);
    if let Some(h) = cfg.http_port {
        c.args(["--http", &h.to_string()]);
    }
    if let Some(g) = &cfg.greeting {
        c.args(["--greeting", g]);
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0);
    let shown = crate::cmd::show(&c);
    let mut child = c.spawn().map_err(|e| LabError::Command {
        command: shown.clone(),
        status: e.to_string(),
        stderr: String::new(),
    })?;
    // `serve` prints "ready" once its sockets are bound, or "error: …" (its stderr is not
    // kept: the process outlives this one).
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        let why =
            if line.trim().is_empty() { "serve exited before it was ready" } else { line.trim() };
        return Err(LabError::Command { command: shown, status, stderr: why.to_string() });
    }
    Ok(child)
}

/// The pid in a lab namespace or id named `<prefix><pid>-…`, if it is one.
fn maker_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// Removes labs whose owning process is gone (`rzl-<pid>-…` namespaces of dead pids), e.g.
/// after a test process was killed. Returns the namespaces removed.
pub fn reap_stale() -> Result<Vec<String>, LabError> {
    let mut gone = Vec::new();
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return Ok(gone) };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = maker_pid(&name, TEST_LAB_PREFIX) else { continue };
        if !pid_alive(pid) {
            let _ = run(command("ip", &["netns", "del", &name]));
            gone.push(name);
        }
    }
    Ok(gone)
}

/// Removes labs kept by `rzmap-lab up` (`rzu-<pid>-…`) that nothing serves any more: the
/// process that built the lab has exited and the net namespace has no process left (its
/// `serve` is gone), e.g. after a benchmark run was killed. A kept lab outlives its maker, so
/// unlike [`reap_stale`] the maker's pid alone says nothing; while the maker lives, the lab is
/// being built (its namespaces exist before its `serve` starts) and is left alone. Only
/// `rzmap-lab down --stale` calls this. Returns the lab ids removed.
pub fn reap_orphaned_kept_labs() -> Result<Vec<String>, LabError> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return Ok(Vec::new()) };
    let mut ids: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix("-net").or_else(|| name.strip_suffix("-scan"))?;
            id.starts_with(KEPT_LAB_PREFIX).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut gone = Vec::new();
    for id in ids {
        if maker_pid(&id, KEPT_LAB_PREFIX).is_none_or(pid_alive) {
            continue;
        }
        let net = format!("{id}-net");
        // No net namespace left (half a lab), or no process in it. A namespace that vanishes
        // meanwhile was removed by someone else.
        let orphaned = match run(command("ip", &["netns", "pids", &net])) {
            Ok(pids) => pids.trim().is_empty(),
            Err(_) => !netns_exists(&net),
        };
        if orphaned && remove_lab(&id).is_ok() {
            gone.push(id);
        }
    }
    Ok(gone)
}

/// Tears down a lab kept by `rzmap-lab up` (or any lab by id): stops its `serve` process if
/// `serve_pid` is given, and deletes `<id>-scan` and `<id>-net`. Errors if neither exists.
pub fn remove_lab(id: &str) -> Result<(), LabError> {
    let names = [format!("{id}-scan"), format!("{id}-net")];
    if !names.iter().any(|n| netns_exists(n)) {
        return Err(LabError::Other(format!(
            "no lab named {id:?} (no /run/netns/{id}-scan or -net)"
        )));
    }
    for n in names.iter().filter(|n| netns_exists(n)) {
        remove_netns(n);
    }
    Ok(())
}
