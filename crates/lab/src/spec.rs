//! What a lab looks like ([`LabSpec`]) and what every address in it does ([`Truth`]).
//!
//! Classification is a pure function of `(seed, address)`: each address draws independent
//! 32-bit hashes for its host class, its TCP state, its echo answer and its UDP state, so the
//! same spec always yields the same truth, whatever order addresses are looked at in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The only block lab addresses may come from: 198.18.0.0/15 (RFC 2544 benchmarking).
pub const LAB_BLOCK: Prefix = Prefix { addr: Ipv4Addr::new(198, 18, 0, 0), len: 15 };

/// An IPv4 prefix such as `198.18.0.0/24` (host bits must be zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Prefix {
    /// First address of the prefix.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Prefix {
    /// A prefix from its first address and length; `None` if host bits are set or `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Prefix> {
        if len > 32 || u32::from(addr) & !Self::mask_of(len) != 0 {
            return None;
        }
        Some(Prefix { addr, len })
    }

    fn mask_of(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
    }

    /// Number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.len) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The address at `offset` from the start (caller keeps `offset < size()`).
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset))
    }

    /// Every address of the prefix, in ascending order.
    pub fn addrs(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let start = u32::from(self.addr) as u64;
        (start..start + self.size()).map(|a| Ipv4Addr::from(a as u32))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr =
            a.parse().map_err(|_| format!("bad IPv4 address {a:?} in prefix {s:?}"))?;
        let len: u8 = l.parse().map_err(|_| format!("bad prefix length {l:?} in {s:?}"))?;
        Prefix::new(addr, len)
            .ok_or_else(|| format!("prefix {s:?} has host bits set or length > 32"))
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(s: String) -> Result<Prefix, String> {
        s.parse()
    }
}

/// Fractions (0.0..=1.0) of addresses in each class; each is an independent draw per address.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shares {
    /// Hosts that drop everything.
    pub silent: f64,
    /// Hosts that answer everything with ICMP host-unreachable (drawn after `silent`;
    /// `silent + unreachable <= 1`).
    pub unreachable: f64,
    /// Of the remaining ("live") hosts: open on the TCP port(s) (SYN-ACK).
    pub tcp_open: f64,
    /// Of the live hosts: silently dropping the TCP port(s) (`tcp_open + tcp_filtered <= 1`;
    /// the rest answer RST).
    pub tcp_filtered: f64,
    /// Of the live hosts: answering ICMP echo.
    pub echo: f64,
    /// Of the live hosts: answering on the UDP port (the rest send ICMP port-unreachable).
    pub udp_open: f64,
}

impl Default for Shares {
    fn default() -> Shares {
        Shares {
            silent: 0.25,
            unreachable: 0.05,
            tcp_open: 0.2,
            tcp_filtered: 0.05,
            echo: 0.6,
            udp_open: 0.2,
        }
    }
}

/// Everything that defines a lab; the same spec always gives the same [`Truth`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabSpec {
    /// The simulated Internet: inside 198.18.0.0/15, length 16..=32.
    pub prefix: Prefix,
    /// Seed of the per-address draws.
    pub seed: u64,
    /// The TCP port whose state follows the `tcp_*` shares (other ports: RST from live hosts).
    pub tcp_port: u16,
    /// The UDP port with a responder (other ports: port-unreachable from live hosts).
    pub udp_port: u16,
    /// Optional second TCP port serving a tiny HTTP/1.0 answer on the same open hosts.
    pub http_port: Option<u16>,
    /// Optional banner written to each accepted connection on `tcp_port`.
    pub greeting: Option<String>,
    /// Class fractions.
    pub shares: Shares,
    /// Addresses a scanner must never probe: they count arriving packets (see
    /// [`crate::Lab::blocklisted_packets`]) and, if reached anyway, answer like open hosts.
    pub blocklisted: Vec<Ipv4Addr>,
}

impl LabSpec {
    /// A spec over `prefix` with default ports (80/TCP, 53/UDP), shares, and no blocklist.
    pub fn new(prefix: Prefix, seed: u64) -> LabSpec {
        LabSpec {
            prefix,
            seed,
            tcp_port: 80,
            udp_port: 53,
            http_port: None,
            greeting: None,
            shares: Shares::default(),
            blocklisted: Vec::new(),
        }
    }

    /// Checks the spec: prefix inside 198.18.0.0/15 and at least /16, shares in range,
    /// blocklisted addresses inside the prefix, distinct ports.
    pub fn validate(&self) -> Result<(), String> {
        if !LAB_BLOCK.covers(&self.prefix) || self.prefix.len < 16 {
            return Err(format!(
                "lab prefix {} must be a /16 or longer inside {LAB_BLOCK}",
                self.prefix
            ));
        }
        let s = &self.shares;
        for (name, v) in [
            ("silent", s.silent),
            ("unreachable", s.unreachable),
            ("tcp_open", s.tcp_open),
            ("tcp_filtered", s.tcp_filtered),
            ("echo", s.echo),
            ("udp_open", s.udp_open),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("share {name}={v} is outside 0..=1"));
            }
        }
        if s.silent + s.unreachable > 1.0 {
            return Err("shares silent + unreachable exceed 1".into());
        }
        if s.tcp_open + s.tcp_filtered > 1.0 {
            return Err("shares tcp_open + tcp_filtered exceed 1".into());
        }
        if let Some(a) = self.blocklisted.iter().find(|a| !self.prefix.contains(**a)) {
            return Err(format!(
                "blocklisted address {a} is outside the lab prefix {}",
                self.prefix
            ));
        }
        if self.tcp_port == 0 || self.udp_port == 0 || self.http_port == Some(0) {
            return Err("ports must be non-zero".into());
        }
        if self.http_port == Some(self.tcp_port) {
            return Err("http_port must differ from tcp_port".into());
        }
        Ok(())
    }
}

/// TCP behaviour of a live host on the lab's TCP port(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// SYN-ACK.
    Open,
    /// RST.
    Closed,
    /// Dropped.
    Filtered,
}

/// What one address does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostClass {
    /// Must never be probed; answers like an open live host (TCP open, echo, UDP open).
    Blocklisted,
    /// Drops everything.
    Silent,
    /// Answers everything with ICMP host-unreachable.
    Unreachable,
    /// Answers according to its per-protocol states.
    Live {
        /// State on the TCP port(s).
        tcp: TcpState,
        /// Answers ICMP echo.
        echo: bool,
        /// The UDP responder answers (else ICMP port-unreachable).
        udp_open: bool,
    },
}

/// The exact expected behaviour of every address of a lab. Every list is sorted ascending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The lab prefix.
    pub prefix: Prefix,
    /// The TCP port the `*_tcp` lists refer to.
    pub tcp_port: u16,
    /// The UDP port the `udp_*` lists refer to.
    pub udp_port: u16,
    /// Addresses that must never be probed.
    pub blocklisted: Vec<Ipv4Addr>,
    /// Hosts that drop everything.
    pub silent: Vec<Ipv4Addr>,
    /// Hosts that answer everything with ICMP host-unreachable.
    pub unreachable: Vec<Ipv4Addr>,
    /// All live hosts (neither blocklisted, silent nor unreachable).
    pub live: Vec<Ipv4Addr>,
    /// Live hosts answering SYN-ACK on the TCP port.
    pub open_tcp: Vec<Ipv4Addr>,
    /// Live hosts answering RST on the TCP port.
    pub closed_tcp: Vec<Ipv4Addr>,
    /// Live hosts dropping the TCP port.
    pub filtered_tcp: Vec<Ipv4Addr>,
    /// Live hosts answering ICMP echo.
    pub echo: Vec<Ipv4Addr>,
    /// Live hosts ignoring ICMP echo.
    pub no_echo: Vec<Ipv4Addr>,
    /// Live hosts whose UDP responder answers.
    pub udp_open: Vec<Ipv4Addr>,
    /// Live hosts answering the UDP port with ICMP port-unreachable.
    pub udp_closed: Vec<Ipv4Addr>,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-bit draw for (seed, address, purpose).
fn draw(seed: u64, addr: Ipv4Addr, salt: u64) -> u64 {
    splitmix64(
        splitmix64(seed ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93)) ^ u64::from(u32::from(addr)),
    ) >> 32
}

fn threshold(share: f64) -> u64 {
    (share * 4_294_967_296.0).round() as u64
}

/// The class of `addr` under `spec` (the address need not be checked against the prefix).
pub fn classify(spec: &LabSpec, addr: Ipv4Addr) -> HostClass {
    if spec.blocklisted.contains(&addr) {
        return HostClass::Blocklisted;
    }
    let s = &spec.shares;
    let host = draw(spec.seed, addr, 1);
    if host < threshold(s.silent) {
        return HostClass::Silent;
    }
    if host < threshold(s.silent + s.unreachable) {
        return HostClass::Unreachable;
    }
    let t = draw(spec.seed, addr, 2);
    let tcp = if t < threshold(s.tcp_open) {
        TcpState::Open
    } else if t < threshold(s.tcp_open + s.tcp_filtered) {
        TcpState::Filtered
    } else {
        TcpState::Closed
    };
    let echo = draw(spec.seed, addr, 3) < threshold(s.echo);
    let udp_open = draw(spec.seed, addr, 4) < threshold(s.udp_open);
    HostClass::Live { tcp, echo, udp_open }
}

impl Truth {
    /// The truth of a (validated) spec.
    pub fn of(spec: &LabSpec) -> Truth {
        let mut t = Truth {
            prefix: spec.prefix,
            tcp_port: spec.tcp_port,
            udp_port: spec.udp_port,
            blocklisted: Vec::new(),
            silent: Vec::new(),
            unreachable: Vec::new(),
            live: Vec::new(),
            open_tcp: Vec::new(),
            closed_tcp: Vec::new(),
            filtered_tcp: Vec::new(),
            echo: Vec::new(),
            no_echo: Vec::new(),
            udp_open: Vec::new(),
            udp_closed: Vec::new(),
        };
        for a in spec.prefix.addrs() {
            match classify(spec, a) {
                HostClass::Blocklisted => t.blocklisted.push(a),
                HostClass::Silent => t.silent.push(a),
                HostClass::Unreachable => t.unreachable.push(a),
                HostClass::Live { tcp, echo, udp_open } => {
                    t.live.push(a);
                    match tcp {
                        TcpState::Open => t.open_tcp.push(a),
                        TcpState::Closed => t.closed_tcp.push(a),
                        TcpState::Filtered => t.filtered_tcp.push(a),
                    }
                    if echo {
                        t.echo.push(a)
                    } else {
                        t.no_echo.push(a)
                    }
                    if udp_open { t.udp_open.push(a) } else { t.udp_closed.push(a) }
                }
            }
        }
        t
    }

    /// The class of `addr`, or `None` outside the prefix.
    pub fn class_of(&self, addr: Ipv4Addr) -> Option<HostClass> {
        if !self.prefix.contains(addr) {
            return None;
        }
        let has = |v: &Vec<Ipv4Addr>| v.binary_search(&addr).is_ok();
        Some(if has(&self.blocklisted) {
            HostClass::Blocklisted
        } else if has(&self.silent) {
            HostClass::Silent
        } else if has(&self.unreachable) {
            HostClass::Unreachable
        } else {
            let tcp = if has(&self.open_tcp) {
                TcpState::Open
            } else if has(&self.filtered_tcp) {
                TcpState::Filtered
            } else {
                TcpState::Closed
            };
            HostClass::Live { tcp, echo: has(&self.echo), udp_open: has(&self.udp_open) }
        })
    }

    /// Addresses that any packet to the TCP port gets an answer from (SYN-ACK, RST or ICMP).
    pub fn answering_tcp(&self) -> Vec<Ipv4Addr> {
        merge(&[&self.open_tcp, &self.closed_tcp, &self.unreachable])
    }
}

/// The sorted union of sorted lists.
pub fn merge(lists: &[&Vec<Ipv4Addr>]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = lists.iter().flat_map(|l| l.iter().copied()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_parse_and_contains() {
        let x = p("198.18.4.0/22");
        assert_eq!(x.size(), 1024);
        assert!(x.contains(Ipv4Addr::new(198, 18, 7, 255)));
        assert!(!x.contains(Ipv4Addr::new(198, 18, 8, 0)));
        assert!("198.18.4.1/22".parse::<Prefix>().is_err());
        assert!("198.18.4.0/33".parse::<Prefix>().is_err());
        assert!("x/3".parse::<Prefix>().is_err());
        assert_eq!(p("198.18.0.7").len, 32);
        assert!(LAB_BLOCK.covers(&p("198.19.0.0/16")));
        assert!(!LAB_BLOCK.covers(&p("198.20.0.0/16")));
        assert_eq!(x.addrs().count(), 1024);
    }

    #[test]
    fn validate_rejects_bad_specs() {
        assert!(LabSpec::new(p("10.0.0.0/24"), 1).validate().is_err());
        assert!(LabSpec::new(p("198.18.0.0/15"), 1).validate().is_err());
        let mut s = LabSpec::new(p("198.18.0.0/24"), 1);
        assert!(s.validate().is_ok());
        s.blocklisted.push(Ipv4Addr::new(198, 18, 1, 1));
        assert!(s.validate().is_err());
        let mut s = LabSpec::new(p("198.18.0.0/24"), 1);
        s.shares.silent = 0.9;
        s.shares.unreachable = 0.2;
        assert!(s.validate().is_err());
        s.shares.unreachable = -0.1;
        assert!(s.validate().is_err());
    }

    #[test]
    fn truth_is_a_partition_and_deterministic() {
        let mut spec = LabSpec::new(p("198.18.0.0/20"), 7);
        spec.blocklisted = vec![Ipv4Addr::new(198, 18, 3, 3)];
        let t = Truth::of(&spec);
        assert_eq!(t, Truth::of(&spec));
        let n = t.blocklisted.len() + t.silent.len() + t.unreachable.len() + t.live.len();
        assert_eq!(n as u64, spec.prefix.size());
        assert_eq!(t.open_tcp.len() + t.closed_tcp.len() + t.filtered_tcp.len(), t.live.len());
        assert_eq!(t.echo.len() + t.no_echo.len(), t.live.len());
        assert_eq!(t.udp_open.len() + t.udp_closed.len(), t.live.len());
        for a in spec.prefix.addrs() {
            assert_eq!(t.class_of(a), Some(classify(&spec, a)), "{a}");
        }
        assert_eq!(t.blocklisted, spec.blocklisted);
        // Roughly the requested shares (4096 addresses).
        let frac = |v: &Vec<Ipv4Addr>| v.len() as f64 / 4096.0;
        assert!((frac(&t.silent) - 0.25).abs() < 0.04, "{}", frac(&t.silent));
        assert!((frac(&t.unreachable) - 0.05).abs() < 0.02);
        let other = Truth::of(&LabSpec::new(p("198.18.0.0/20"), 8));
        assert_ne!(t.open_tcp, other.open_tcp, "the seed matters");
    }

    #[test]
    fn extreme_shares() {
        let mut spec = LabSpec::new(p("198.18.0.0/24"), 1);
        spec.shares = Shares {
            silent: 0.0,
            unreachable: 0.0,
            tcp_open: 1.0,
            tcp_filtered: 0.0,
            echo: 1.0,
            udp_open: 0.0,
        };
        let t = Truth::of(&spec);
        assert_eq!(t.open_tcp.len(), 256);
        assert_eq!(t.echo.len(), 256);
        assert_eq!(t.udp_closed.len(), 256);
    }

    #[test]
    fn truth_json_round_trip() {
        let t = Truth::of(&LabSpec::new(p("198.18.0.0/28"), 3));
        let j = serde_json::to_string(&t).unwrap();
        assert!(j.contains("\"198.18.0.0/28\""));
        assert_eq!(serde_json::from_str::<Truth>(&j).unwrap(), t);
    }
}
