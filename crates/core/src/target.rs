//! A scan target: one destination address and one destination port.

use std::net::{IpAddr, Ipv4Addr};

/// One (address, port) element of the scan. Portless modules (ICMP) use port 0.
///
/// The address is an [`IpAddr`] so that IPv6 targets need no reshaping later; the IPv4
/// iterator produces only `IpAddr::V4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port (0 for modules without ports).
    pub port: u16,
}

impl Target {
    /// An IPv4 target from a host-order address.
    pub const fn v4(addr: u32, port: u16) -> Self {
        Self { addr: IpAddr::V4(Ipv4Addr::from_bits(addr)), port }
    }
}
