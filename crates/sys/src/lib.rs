//! rzmap's Linux I/O layer: the only crate with `unsafe`, behind small safe wrappers.
//!
//! - [`netns`]: enter a named network namespace (tests and tools), and a guard that refuses
//!   to run in the host's namespace;
//! - [`discovery`]: default route, interface addresses and MACs, the gateway's MAC
//!   (rtnetlink, with active ARP resolution), with errors that name the flag to use;
//! - [`ethtool`]: transmit checksum offload (the lab turns it off);
//! - [`send`]: frames (any iterator of slices, such as the engine's
//!   `rzmap_core::link::FrameBatch`) sent with `sendmmsg` on an AF_PACKET socket or, for `-X`,
//!   an `IPPROTO_RAW` socket;
//! - [`tx_ring`]: the same frames through a TPACKET_V2 `PACKET_TX_RING` (one kick per batch);
//! - [`bpf`] and [`ring`]: classic BPF filters built in Rust and a TPACKET_V3 receive ring;
//! - [`process`] and [`signals`]: CPU pinning, dropping root, signal flags.
//!
//! Decisions:
//! - Netlink messages are built and parsed by hand (`netlink`, private): four dump
//!   requests and a handful of attributes, parsed by bounds-checked safe code, rather than
//!   the netlink crates' many dependencies and changing APIs.
//! - Root is dropped by switching to `nobody` (ZMap's behaviour), which also clears all
//!   capabilities and, through glibc, applies to every thread; see
//!   [`process::drop_privileges`].
//! - Receive sockets get their filter, ring and options before they are bound, so no
//!   unfiltered packet is ever queued; outgoing packets are ignored by the kernel
//!   (`PACKET_IGNORE_OUTGOING`) as well as by the "not ether src" filter clause.
//! - Send sockets use protocol 0 so they never queue received packets.
//!
//! Every `unsafe` block carries a `SAFETY:` comment. Privileged tests live in `tests/lab.rs`
//! and only open sockets on threads inside namespaces they built.

pub mod bpf;
pub mod discovery;
pub mod ethtool;
mod mapping;
mod netlink;
pub mod netns;
pub mod process;
pub mod ring;
pub mod send;
pub mod signals;
mod sock;
pub mod tx_ring;
pub mod xdp;
