//! Process-level controls: CPU pinning and dropping root after the sockets are open.

use std::ffi::CStr;
use std::io;

use crate::sock::cvt;

/// Pins the calling thread to CPU `cpu` (`sched_setaffinity` on thread id 0 = self).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu` is below the set's capacity (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t and the size passed is its size.
    cvt(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) }).map(drop)
}

/// Number of CPUs the calling thread may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What [`drop_privileges`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivilegeDrop {
    /// The process was not running as root; nothing changed.
    NotRoot,
    /// The whole process now runs as this user and group (with no supplementary groups).
    Dropped {
        /// New user id.
        uid: u32,
        /// New group id.
        gid: u32,
    },
}

/// Drops root the way ZMap does: switch the whole process to user `nobody` (uid/gid from
/// the password database, else 65534), clearing supplementary groups.
///
/// Call it after every socket, ring and output file is open: sockets keep working (the
/// kernel checks `CAP_NET_RAW` when they are created), but nothing privileged can be done
/// afterwards (no new packet sockets, no `setns`, no files only root may write). Moving
/// from uid 0 to a non-zero uid also clears every capability. glibc applies `setuid` and
/// `setgid` to all threads of the process. Checks afterwards that root cannot be regained.
pub fn drop_privileges() -> io::Result<PrivilegeDrop> {
    // SAFETY: these getters have no preconditions.
    if unsafe { libc::geteuid() } != 0 && unsafe { libc::getuid() } != 0 {
        return Ok(PrivilegeDrop::NotRoot);
    }
    let (uid, gid) = lookup_user(c"nobody").unwrap_or((65534, 65534));
    // SAFETY: a zero-length group list with a null pointer is valid for setgroups.
    cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::setgid(gid) })?;
    // SAFETY: plain integer argument.
    cvt(unsafe { libc::setuid(uid) })?;
    // SAFETY: plain integer argument; this must fail now.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other("privileges could be regained after setuid"));
    }
    Ok(PrivilegeDrop::Dropped { uid, gid })
}

/// (uid, gid) of `name` from the password database.
fn lookup_user(name: &CStr) -> Option<(u32, u32)> {
    // SAFETY: passwd is a C struct of pointers and integers; all-zero is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0u8; 4096];
    // SAFETY: all pointers are valid for the call; getpwnam_r writes strings into `buf`
    // (of the given length) and sets `result` to `&mut pw` or null.
    let rc = unsafe {
        libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result)
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some((pw.pw_uid, pw.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_to_an_allowed_cpu_works_and_a_huge_one_fails() {
        // Runs on its own thread so the test harness thread keeps its affinity.
        std::thread::spawn(|| {
            pin_current_thread(0).unwrap();
            assert!(pin_current_thread(1 << 20).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn root_user_lookup() {
        assert_eq!(lookup_user(c"root"), Some((0, 0)));
        assert_eq!(lookup_user(c"no-such-user-rzmap"), None);
    }
}
