//! Network namespaces: enter one for the calling thread, and tell where a thread is.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so tests and tools run their
//! namespace-bound work on a dedicated thread that enters the namespace first.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` puts its bind mounts.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// The path for a namespace given by name (`/var/run/netns/NAME`) or by path (contains `/`).
pub fn netns_path(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new(NETNS_RUN_DIR).join(name_or_path)
    }
}

/// Moves the calling thread into the network namespace `name_or_path`.
///
/// Other threads are unaffected. Requires `CAP_SYS_ADMIN`.
pub fn enter_netns(name_or_path: &str) -> io::Result<()> {
    let file = File::open(netns_path(name_or_path))?;
    // SAFETY: setns takes a descriptor we hold open for the call and a flag constant.
    crate::sock::cvt(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Identity (device, inode) of a namespace file.
fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Inode of the calling thread's network namespace.
pub fn current_netns_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// True when the calling thread is in the initial (host) network namespace, i.e. the
/// namespace of pid 1.
pub fn in_root_netns() -> io::Result<bool> {
    Ok(current_netns_inode()? == std::fs::metadata("/proc/1/ns/net")?.ino())
}

/// Checks that the calling thread is inside the namespace `name_or_path` and that this is
/// not the host's namespace; a safety gate for code that opens packet sockets in tests.
pub fn require_in_netns(name_or_path: &str) -> io::Result<()> {
    if in_root_netns()? {
        return Err(io::Error::other("refusing: this thread is in the root network namespace"));
    }
    let want = ns_id(&netns_path(name_or_path))?;
    let here = ns_id(Path::new("/proc/thread-self/ns/net"))?;
    if want.1 != here.1 {
        return Err(io::Error::other(format!(
            "refusing: this thread is not in network namespace {name_or_path}"
        )));
    }
    Ok(())
}
