//! Interface, route and neighbour discovery (rtnetlink, no shelling out), and active ARP
//! resolution of the gateway's MAC.
//!
//! [`discover`] runs the steps the CLI needs, skipping those the user answered with a flag,
//! and says in its error which step failed and which flag supplies the answer.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::netlink::{self, Netlink};
use crate::sock;

/// `ARPHRD_ETHER`: the link carries Ethernet headers.
pub const ARPHRD_ETHER: u16 = 1;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Link type (`ARPHRD_*`; [`ARPHRD_ETHER`] for Ethernet, 0xfffe for tun devices).
    pub link_type: u16,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up (`IFF_RUNNING`: carrier present, ready to send).
    pub running: bool,
    /// MTU, when reported.
    pub mtu: Option<u32>,
    /// Number of transmit queues, when reported.
    pub tx_queues: Option<u32>,
}

/// The IPv4 default route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Output interface.
    pub ifindex: u32,
    /// Next hop; `None` on point-to-point links.
    pub gateway: Option<Ipv4Addr>,
    /// Route metric (lower wins).
    pub metric: u32,
}

/// Which discovery step failed, and the flag that would supply its answer.
#[derive(Debug)]
pub enum DiscoveryError {
    /// No IPv4 default route (in the main table, or through the named interface).
    NoDefaultRoute {
        /// The interface the route was required to use, if any.
        iface: Option<String>,
    },
    /// No interface with this name.
    NoSuchInterface {
        /// The name asked for.
        name: String,
    },
    /// The interface has no IPv4 address.
    NoIpv4Address {
        /// Interface name.
        iface: String,
    },
    /// The interface has no 6-byte hardware address.
    NoSourceMac {
        /// Interface name.
        iface: String,
    },
    /// The default route names no gateway, and the link needs one for Ethernet frames.
    NoGateway {
        /// Interface name.
        iface: String,
    },
    /// The gateway's MAC is not in the neighbour table and did not answer ARP in time.
    GatewayMacUnresolved {
        /// Interface name.
        iface: String,
        /// Gateway address.
        gateway: Ipv4Addr,
    },
    /// A system call failed during `step`.
    Io {
        /// What was being done.
        step: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl DiscoveryError {
    /// The command-line flag that supplies what could not be discovered.
    pub fn flag(&self) -> Option<&'static str> {
        match self {
            DiscoveryError::NoDefaultRoute { iface: None }
            | DiscoveryError::NoSuchInterface { .. } => Some("-i/--interface"),
            DiscoveryError::NoDefaultRoute { iface: Some(_) } => Some("-G/--gateway-mac"),
            DiscoveryError::NoIpv4Address { .. } => Some("-S/--source-ip"),
            DiscoveryError::NoSourceMac { .. } => Some("--source-mac"),
            DiscoveryError::NoGateway { .. } | DiscoveryError::GatewayMacUnresolved { .. } => {
                Some("-G/--gateway-mac")
            }
            DiscoveryError::Io { .. } => None,
        }
    }

    fn io(step: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |error| DiscoveryError::Io { step, error }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NoDefaultRoute { iface: None } => {
                write!(f, "could not find an IPv4 default route; set the interface with -i")
            }
            DiscoveryError::NoDefaultRoute { iface: Some(i) } => write!(
                f,
                "could not find an IPv4 default route through {i}; set the gateway MAC with -G"
            ),
            DiscoveryError::NoSuchInterface { name } => {
                write!(f, "no network interface named {name:?}; check -i")
            }
            DiscoveryError::NoIpv4Address { iface } => {
                write!(f, "interface {iface} has no IPv4 address; set the source address with -S")
            }
            DiscoveryError::NoSourceMac { iface } => {
                write!(f, "interface {iface} has no MAC address; set it with --source-mac")
            }
            DiscoveryError::NoGateway { iface } => {
                write!(f, "the default route on {iface} has no gateway; set its MAC with -G")
            }
            DiscoveryError::GatewayMacUnresolved { iface, gateway } => write!(
                f,
                "could not resolve the MAC of gateway {gateway} on {iface}; set it with -G"
            ),
            DiscoveryError::Io { step, error } => write!(f, "{step}: {error}"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// All interfaces (`RTM_GETLINK` dump).
pub fn links() -> io::Result<Vec<Link>> {
    let mut nl = Netlink::open()?;
    let body = [0u8; 16]; // struct ifinfomsg, family AF_UNSPEC
    let msgs = nl.dump(netlink::RTM_GETLINK, &body, netlink::RTM_NEWLINK)?;
    Ok(msgs.iter().filter_map(|m| parse_link(m)).collect())
}

fn parse_link(m: &[u8]) -> Option<Link> {
    let hdr = m.get(..16)?;
    let link_type = u16::from_ne_bytes([hdr[2], hdr[3]]);
    let index = u32::from_ne_bytes(hdr[4..8].try_into().ok()?);
    let flags = u32::from_ne_bytes(hdr[8..12].try_into().ok()?);
    let mut link = Link {
        index,
        name: String::new(),
        mac: None,
        link_type,
        up: flags & libc::IFF_UP as u32 != 0,
        running: flags & libc::IFF_RUNNING as u32 != 0,
        mtu: None,
        tx_queues: None,
    };
    for (ty, v) in netlink::attrs(&m[16..]) {
        match ty {
            1 => link.mac = netlink::attr_mac(v), // IFLA_ADDRESS
            3 => link.name = String::from_utf8_lossy(v.split(|&b| b == 0).next()?).into_owned(), // IFLA_IFNAME
            4 => link.mtu = netlink::attr_u32(v), // IFLA_MTU
            31 => link.tx_queues = netlink::attr_u32(v), // IFLA_NUM_TX_QUEUES
            _ => {}
        }
    }
    Some(link)
}

/// The interface called `name`.
pub fn link_by_name(name: &str) -> Result<Link, DiscoveryError> {
    links()
        .map_err(DiscoveryError::io("listing interfaces"))?
        .into_iter()
        .find(|l| l.name == name)
        .ok_or_else(|| DiscoveryError::NoSuchInterface { name: name.to_string() })
}

/// The interface with index `index`.
pub fn link_by_index(index: u32) -> Result<Link, DiscoveryError> {
    links()
        .map_err(DiscoveryError::io("listing interfaces"))?
        .into_iter()
        .find(|l| l.index == index)
        .ok_or_else(|| DiscoveryError::NoSuchInterface { name: format!("#{index}") })
}

/// IPv4 addresses and prefix lengths of interface `ifindex` (`RTM_GETADDR` dump).
pub fn ipv4_addresses(ifindex: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let mut nl = Netlink::open()?;
    let body = [libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]; // struct ifaddrmsg
    let msgs = nl.dump(netlink::RTM_GETADDR, &body, netlink::RTM_NEWADDR)?;
    let mut out = Vec::new();
    for m in &msgs {
        let Some(hdr) = m.get(..8) else { continue };
        let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if hdr[0] != libc::AF_INET as u8 || index != ifindex {
            continue;
        }
        let (mut local, mut address) = (None, None);
        for (ty, v) in netlink::attrs(&m[8..]) {
            match ty {
                1 => address = netlink::attr_ipv4(v), // IFA_ADDRESS
                2 => local = netlink::attr_ipv4(v),   // IFA_LOCAL
                _ => {}
            }
        }
        if let Some(a) = local.or(address) {
            out.push((a, hdr[1]));
        }
    }
    Ok(out)
}

/// The best IPv4 default route of the main table, optionally only through `ifindex`.
pub fn default_route(ifindex: Option<u32>) -> io::Result<Option<DefaultRoute>> {
    let mut nl = Netlink::open()?;
    let mut body = [0u8; 12]; // struct rtmsg
    body[0] = libc::AF_INET as u8;
    let msgs = nl.dump(netlink::RTM_GETROUTE, &body, netlink::RTM_NEWROUTE)?;
    let mut best: Option<DefaultRoute> = None;
    for m in &msgs {
        let Some(hdr) = m.get(..12) else { continue };
        // family, dst_len, src_len, tos, table, protocol, scope, type
        if hdr[0] != libc::AF_INET as u8 || hdr[1] != 0 || hdr[7] != libc::RTN_UNICAST {
            continue;
        }
        let mut table = u32::from(hdr[4]);
        let (mut oif, mut gateway, mut metric, mut multipath) = (None, None, 0, None);
        for (ty, v) in netlink::attrs(&m[12..]) {
            match ty {
                4 => oif = netlink::attr_u32(v),                     // RTA_OIF
                5 => gateway = netlink::attr_ipv4(v),                // RTA_GATEWAY
                6 => metric = netlink::attr_u32(v).unwrap_or(0),     // RTA_PRIORITY
                9 => multipath = Some(v),                            // RTA_MULTIPATH
                15 => table = netlink::attr_u32(v).unwrap_or(table), // RTA_TABLE
                _ => {}
            }
        }
        if table != libc::RT_TABLE_MAIN as u32 {
            continue;
        }
        let mut candidates: Vec<(u32, Option<Ipv4Addr>)> = Vec::new();
        if let Some(oif) = oif {
            candidates.push((oif, gateway));
        }
        if let Some(mp) = multipath {
            candidates.extend(nexthops(mp));
        }
        let Some(&(oif, gateway)) =
            candidates.iter().find(|(oif, _)| ifindex.is_none_or(|i| i == *oif))
        else {
            continue;
        };
        if best.is_none_or(|b| metric < b.metric) {
            best = Some(DefaultRoute { ifindex: oif, gateway, metric });
        }
    }
    Ok(best)
}

/// The (interface, gateway) pairs of an `RTA_MULTIPATH` value (a list of `rtnexthop`s,
/// each followed by its own attributes).
fn nexthops(mut v: &[u8]) -> Vec<(u32, Option<Ipv4Addr>)> {
    let mut out = Vec::new();
    while v.len() >= 8 {
        let len = usize::from(u16::from_ne_bytes([v[0], v[1]]));
        if len < 8 || len > v.len() {
            break;
        }
        let ifindex = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
        let gw = netlink::attrs(&v[8..len])
            .find(|(t, _)| *t == 5)
            .and_then(|(_, g)| netlink::attr_ipv4(g));
        out.push((ifindex, gw));
        v = v.get((len + 3) & !3..).unwrap_or(&[]);
    }
    out
}

/// The MAC of `ip` on `ifindex` from the kernel's neighbour table, if the entry is usable
/// (reachable, stale, delay, probe, permanent or noarp, with a non-zero address).
pub fn neighbour_mac(ifindex: u32, ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    let mut nl = Netlink::open()?;
    let mut body = [0u8; 12]; // struct ndmsg
    body[0] = libc::AF_INET as u8;
    let msgs = nl.dump(netlink::RTM_GETNEIGH, &body, netlink::RTM_NEWNEIGH)?;
    const USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
    for m in &msgs {
        let Some(hdr) = m.get(..12) else { continue };
        let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let state = u16::from_ne_bytes([hdr[8], hdr[9]]);
        if index != ifindex || state & USABLE == 0 {
            continue;
        }
        let (mut dst, mut mac) = (None, None);
        for (ty, v) in netlink::attrs(&m[12..]) {
            match ty {
                1 => dst = netlink::attr_ipv4(v), // NDA_DST
                2 => mac = netlink::attr_mac(v),  // NDA_LLADDR
                _ => {}
            }
        }
        if dst == Some(ip) && mac.is_some_and(|m| m != [0; 6]) {
            return Ok(mac);
        }
    }
    Ok(None)
}

/// Asks for `target`'s MAC with ARP requests broadcast from interface `ifindex` (from
/// `src_mac`/`src_ip`), re-sent every 250 ms, until a reply arrives or `timeout` passes.
///
/// Opens an AF_PACKET socket for ARP only. Requires `CAP_NET_RAW`.
pub fn arp_resolve(
    ifindex: u32,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
    timeout: Duration,
) -> io::Result<Option<[u8; 6]>> {
    const ETH_P_ARP: u16 = 0x0806;
    let fd = sock::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(ETH_P_ARP.to_be()))?;
    sock::bind_packet(&fd, ifindex, ETH_P_ARP)?;
    let to = sock::sockaddr_ll(ifindex, ETH_P_ARP, Some([0xff; 6]));
    let mut req = [0u8; 28];
    req[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    req[8..14].copy_from_slice(&src_mac);
    req[14..18].copy_from_slice(&src_ip.octets());
    req[24..28].copy_from_slice(&target.octets());
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 128];
    loop {
        // SAFETY: `req` and `to` are valid for their lengths during the call.
        sock::cvt(unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) as libc::c_int
        })?;
        let resend = Instant::now() + Duration::from_millis(250);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = resend.min(deadline).saturating_duration_since(now);
            if !sock::poll_readable(&fd, wait.as_millis().max(1) as i32)? {
                if Instant::now() >= resend {
                    break;
                }
                continue;
            }
            // SAFETY: `buf` is writable for its length; MSG_DONTWAIT keeps this non-blocking.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                    continue;
                }
                return Err(e);
            }
            if let Some(mac) = parse_arp_reply(&buf[..n as usize], target) {
                return Ok(Some(mac));
            }
        }
    }
}

/// The sender MAC of an ARP reply from `target`, if `p` is one.
fn parse_arp_reply(p: &[u8], target: Ipv4Addr) -> Option<[u8; 6]> {
    let p = p.get(..28)?;
    if p[..8] != [0, 1, 8, 0, 6, 4, 0, 2] || p[14..18] != target.octets() {
        return None;
    }
    p[8..14].try_into().ok()
}

/// The gateway's MAC: from the neighbour table, else by ARP (waiting up to `timeout`),
/// else from the table again (the kernel may have learnt it meanwhile).
pub fn gateway_mac(
    link: &Link,
    src_ip: Option<Ipv4Addr>,
    gateway: Ipv4Addr,
    timeout: Duration,
) -> Result<[u8; 6], DiscoveryError> {
    let table =
        || neighbour_mac(link.index, gateway).map_err(DiscoveryError::io("reading neighbours"));
    if let Some(mac) = table()? {
        return Ok(mac);
    }
    let unresolved = || DiscoveryError::GatewayMacUnresolved { iface: link.name.clone(), gateway };
    let src_mac = link.mac.ok_or_else(unresolved)?;
    let src_ip = src_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    if let Some(mac) = arp_resolve(link.index, src_mac, src_ip, gateway, timeout)
        .map_err(DiscoveryError::io("sending ARP request"))?
    {
        return Ok(mac);
    }
    table()?.ok_or_else(unresolved)
}

/// What the user already told us (each `Some` skips a discovery step).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `-i`: the interface.
    pub iface: Option<String>,
    /// `-S`: source addresses were given, so none need be found.
    pub source_ips_given: bool,
    /// `--source-mac`.
    pub source_mac: Option<[u8; 6]>,
    /// `-G`: the gateway MAC.
    pub gateway_mac: Option<[u8; 6]>,
    /// `-X`: IP-layer sending, no MACs needed.
    pub ip_layer: bool,
}

/// Everything the sender and receiver need to know about the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSetup {
    /// The interface.
    pub link: Link,
    /// Its IPv4 addresses (first = preferred source).
    pub ipv4: Vec<Ipv4Addr>,
    /// Source MAC (`None` only with `-X` on a link without one).
    pub source_mac: Option<[u8; 6]>,
    /// Gateway of the default route, if any.
    pub gateway_ip: Option<Ipv4Addr>,
    /// Gateway MAC (`None` only with `-X`).
    pub gateway_mac: Option<[u8; 6]>,
}

/// Finds interface, addresses, source MAC, gateway and gateway MAC, skipping what
/// `o` supplies. ARP resolution waits up to `arp_timeout`.
pub fn discover(o: &Overrides, arp_timeout: Duration) -> Result<NetworkSetup, DiscoveryError> {
    let route_err = |e| DiscoveryError::Io { step: "reading routes", error: e };
    let (link, route) = match &o.iface {
        Some(name) => {
            let link = link_by_name(name)?;
            let route = default_route(Some(link.index)).map_err(route_err)?;
            (link, route)
        }
        None => {
            let route = default_route(None)
                .map_err(route_err)?
                .ok_or(DiscoveryError::NoDefaultRoute { iface: None })?;
            (link_by_index(route.ifindex)?, Some(route))
        }
    };
    let addrs = ipv4_addresses(link.index).map_err(DiscoveryError::io("reading addresses"))?;
    let mut ipv4: Vec<Ipv4Addr> = addrs.iter().map(|(a, _)| *a).collect();
    let gateway_ip = route.and_then(|r| r.gateway);
    // Prefer an address on the gateway's subnet as the first one.
    let on_gateway_subnet = |gw| addrs.iter().position(|(a, len)| same_subnet(*a, gw, *len));
    if let Some(pos) = gateway_ip.and_then(on_gateway_subnet) {
        ipv4.swap(0, pos);
    }
    if ipv4.is_empty() && !o.source_ips_given {
        return Err(DiscoveryError::NoIpv4Address { iface: link.name.clone() });
    }
    let source_mac = o.source_mac.or(link.mac);
    if o.ip_layer {
        return Ok(NetworkSetup { link, ipv4, source_mac, gateway_ip, gateway_mac: o.gateway_mac });
    }
    if source_mac.is_none() {
        return Err(DiscoveryError::NoSourceMac { iface: link.name.clone() });
    }
    let gateway_mac = match o.gateway_mac {
        Some(m) => m,
        None => {
            let gw = match (gateway_ip, route) {
                (Some(gw), _) => gw,
                (None, Some(_)) => return Err(DiscoveryError::NoGateway { iface: link.name }),
                (None, None) => {
                    return Err(DiscoveryError::NoDefaultRoute { iface: Some(link.name) });
                }
            };
            gateway_mac(&link, ipv4.first().copied(), gw, arp_timeout)?
        }
    };
    Ok(NetworkSetup { link, ipv4, source_mac, gateway_ip, gateway_mac: Some(gateway_mac) })
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_reply_parsing() {
        let mut p = [0u8; 28];
        p[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        p[8..14].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        p[14..18].copy_from_slice(&[198, 18, 0, 2]);
        let gw = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(parse_arp_reply(&p, gw), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(parse_arp_reply(&p, Ipv4Addr::new(198, 18, 0, 3)), None);
        assert_eq!(parse_arp_reply(&p[..27], gw), None);
        p[7] = 1; // a request, not a reply
        assert_eq!(parse_arp_reply(&p, gw), None);
    }

    #[test]
    fn multipath_nexthops() {
        let mut v = Vec::new();
        for (ifindex, gw) in [(3u32, [198, 18, 0, 2]), (4, [198, 18, 1, 2])] {
            v.extend_from_slice(&16u16.to_ne_bytes());
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&ifindex.to_ne_bytes());
            v.extend_from_slice(&8u16.to_ne_bytes());
            v.extend_from_slice(&5u16.to_ne_bytes());
            v.extend_from_slice(&gw);
        }
        v.extend_from_slice(&[99, 0, 0]); // garbage tail is ignored
        assert_eq!(
            nexthops(&v),
            vec![(3, Some(Ipv4Addr::new(198, 18, 0, 2))), (4, Some(Ipv4Addr::new(198, 18, 1, 2)))]
        );
    }

    #[test]
    fn subnets() {
        let a = Ipv4Addr::new(198, 18, 0, 1);
        assert!(same_subnet(a, Ipv4Addr::new(198, 18, 0, 200), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(198, 18, 1, 1), 24));
        assert!(same_subnet(a, Ipv4Addr::new(1, 2, 3, 4), 0));
        assert!(!same_subnet(a, Ipv4Addr::new(198, 18, 0, 2), 32));
    }

    #[test]
    fn errors_name_the_flag() {
        let e = DiscoveryError::GatewayMacUnresolved {
            iface: "eth0".into(),
            gateway: Ipv4Addr::new(198, 18, 0, 2),
        };
        assert_eq!(e.flag(), Some("-G/--gateway-mac"));
        assert!(e.to_string().contains("198.18.0.2") && e.to_string().contains("-G"));
        assert_eq!(
            DiscoveryError::NoIpv4Address { iface: "x".into() }.flag(),
            Some("-S/--source-ip")
        );
        assert_eq!(DiscoveryError::NoSourceMac { iface: "x".into() }.flag(), Some("--source-mac"));
        assert_eq!(DiscoveryError::NoDefaultRoute { iface: None }.flag(), Some("-i/--interface"));
    }

    #[test]
    fn link_message_parsing() {
        let mut m = vec![0u8; 16];
        m[2..4].copy_from_slice(&1u16.to_ne_bytes());
        m[4..8].copy_from_slice(&7u32.to_ne_bytes());
        m[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        // (not running: IFF_RUNNING is clear)
        for (ty, v) in
            [(3u16, &b"veth0\0"[..]), (1, &[2, 0, 0, 0, 0, 1][..]), (4, &1500u32.to_ne_bytes()[..])]
        {
            let len = 4 + v.len();
            m.extend_from_slice(&(len as u16).to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(v);
            m.resize((m.len() + 3) & !3, 0);
        }
        let l = parse_link(&m).unwrap();
        assert_eq!(
            l,
            Link {
                index: 7,
                name: "veth0".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                link_type: ARPHRD_ETHER,
                up: true,
                running: false,
                mtu: Some(1500),
                tx_queues: None,
            }
        );
        assert!(parse_link(&m[..10]).is_none());
    }
}
