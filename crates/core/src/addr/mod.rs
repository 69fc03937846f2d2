//! Addresses: CIDR prefixes, allow/block list files, the default blocklist, the scan's address
//! space with ZMap's index order, and the `-I` address list.

pub mod defaults;
pub mod iplist;
pub mod list;
pub mod prefix;
pub mod space;

pub use defaults::{DEFAULT_BLOCKLIST, default_blocklist};
pub use iplist::IpList;
pub use list::{EntryKind, ListEntry, parse_list, parse_list_lenient};
pub use prefix::{Ipv4Prefix, PrefixError, parse_prefix};
pub use space::TargetSpace;
