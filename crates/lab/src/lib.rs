//! A simulated Internet built from Linux network namespaces, with exact ground truth.
//!
//! [`Lab::build`] creates a scanner namespace and a "net" namespace joined by a veth pair.
//! The net namespace answers for a whole prefix inside 198.18.0.0/15 (an AnyIP local route),
//! and nftables sets filled from the spec's seed decide, address by address, which hosts are
//! silent, unreachable, open/closed/filtered on the TCP port, answering echo, or answering on
//! the UDP port. [`Truth`] lists the exact expected answers. Everything is torn down on drop.
//!
//! Needs root and the `ip`, `nft`, `ethtool` and `sysctl` tools.
#![forbid(unsafe_code)]

pub mod cmd;
pub mod lab;
pub mod netns;
pub mod nft;
pub mod probe;
pub mod serve;
pub mod spec;

pub use cmd::LabError;
pub use lab::{
    Lab, LabInfo, ReplyCounts, ResponderMode, reap_orphaned_kept_labs, reap_stale, remove_lab,
};
pub use spec::{HostClass, LabSpec, Prefix, Shares, TcpState, Truth};

/// Whether live lab tests should be skipped (`RZMAP_SKIP_LAB=1`); otherwise a lab that cannot
/// be built is a test failure.
pub fn skip_lab() -> bool {
    std::env::var("RZMAP_SKIP_LAB").is_ok_and(|v| v == "1")
}
