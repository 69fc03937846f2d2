//! rzmap's Linux I/O layer: the only crate with `unsafe`, behind small safe wrappers.
//!
//! - [`netns`]: enter a named network namespace (tests and tools);
//! - [`discovery`]: default route, interface addresses and MACs, the gateway's MAC
//!   (netlink + ioctls, with active ARP resolution);
//! - [`batch`] and [`send`]: frame batches filled in place, sent with `sendmmsg` on an
//!   AF_PACKET socket or, for `-X`, an `IPPROTO_RAW` socket;
//! - [`ethtool`]: transmit checksum offload (the lab turns it off);
//! - [`bpf`] and [`ring`]: classic BPF filters built in Rust and a TPACKET_V3 receive ring;
//! - [`process`] and [`signals`]: CPU pinning, dropping root, signal flags.

pub mod batch;
pub mod bpf;
pub mod discovery;
pub mod ethtool;
mod netlink;
pub mod netns;
pub mod process;
pub mod ring;
pub mod send;
pub mod signals;
mod sock;
