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

/// Inode of the calling thread's network namespace.
pub fn current_netns_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Inode the kernel gives the initial network namespace (`PROC_NET_INIT_INO`).
pub const INIT_NETNS_INODE: u64 = 0xEFFF_FFF9;

/// True when the calling thread is in the initial (host) network namespace: its inode is
/// the kernel's fixed one for the initial namespace, or equals pid 1's (when readable).
pub fn in_root_netns() -> io::Result<bool> {
    let here = current_netns_inode()?;
    if here == INIT_NETNS_INODE {
        return Ok(true);
    }
    match std::fs::metadata("/proc/1/ns/net") {
        Ok(m) => Ok(m.ino() == here),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when the calling thread is in the same network namespace as the process's main
/// thread (`/proc/self/ns/net`), i.e. it has not entered another one.
pub fn in_process_netns() -> io::Result<bool> {
    Ok(current_netns_inode()? == std::fs::metadata("/proc/self/ns/net")?.ino())
}

/// Checks that the calling thread is inside the namespace `name_or_path`, and that this is
/// neither the host's namespace nor the one the process started in; a safety gate for
/// tests and tools that open packet sockets.
pub fn require_in_netns(name_or_path: &str) -> io::Result<()> {
    if in_root_netns()? || in_process_netns()? {
        return Err(io::Error::other(
            "refusing: this thread is in the root (or the process's own) network namespace",
        ));
    }
    if std::fs::metadata(netns_path(name_or_path))?.ino() != current_netns_inode()? {
        return Err(io::Error::other(format!(
            "refusing: this thread is not in network namespace {name_or_path}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_the_guard_outside_namespaces() {
        assert_eq!(netns_path("lab-a"), Path::new("/var/run/netns/lab-a"));
        assert_eq!(netns_path("/proc/1/ns/net"), Path::new("/proc/1/ns/net"));
        // A test thread has entered no namespace, so the guard refuses whatever we name.
        assert!(in_process_netns().unwrap());
        assert!(require_in_netns("/proc/thread-self/ns/net").is_err());
    }
}
