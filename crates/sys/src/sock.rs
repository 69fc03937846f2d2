//! Small safe wrappers over socket system calls shared by the other modules.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Turns a -1 return into the thread's `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `socket(2)` with `SOCK_CLOEXEC`.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` with a plain-old-data value.
///
/// Crate-internal: a caller passing a struct that holds pointers (e.g. `sock_fprog`) must
/// make them valid for the call.
pub(crate) fn setsockopt<T: Copy>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to size_of::<T>() readable bytes for the duration of the call;
    // the kernel copies them and checks their meaning for (level, name).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `setsockopt(2)` with a byte string value (e.g. `SO_BINDTODEVICE`).
pub(crate) fn setsockopt_bytes(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: `value` is a valid slice of `value.len()` bytes for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(2)` into a zero-initialised plain-old-data value.
///
/// Only used with structs made of integers, whose `Default` is all-zero.
pub(crate) fn getsockopt<T: Copy + Default>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    getsockopt_into(fd, level, name, T::default())
}

/// `getsockopt(2)` into `value`, a struct of integers passed in zeroed (for `libc` structs
/// without `Default`). Fails when the kernel answers with fewer bytes than the struct has
/// (an older layout), so no field is silently left at zero.
pub(crate) fn getsockopt_into<T: Copy>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    mut value: T,
) -> io::Result<T> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable T of `len` bytes; the kernel writes at most `len` bytes,
    // and every T used here is made of integers, so any bytes it writes form a valid T.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len)
    })?;
    if len as usize != size_of::<T>() {
        return Err(io::Error::other(format!(
            "getsockopt({level}, {name}) gave {len} bytes, expected {}",
            size_of::<T>()
        )));
    }
    Ok(value)
}

/// Binds an AF_PACKET socket to an interface and an ethertype (network order inside).
pub(crate) fn bind_packet(fd: &impl AsRawFd, ifindex: u32, ethertype: u16) -> io::Result<()> {
    let addr = sockaddr_ll(ifindex, ethertype, None);
    // SAFETY: `addr` is a fully initialised sockaddr_ll and the length passed is its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A `sockaddr_ll` for `ifindex`, `ethertype` (host order in, network order stored) and an
/// optional destination MAC.
pub(crate) fn sockaddr_ll(ifindex: u32, ethertype: u16, mac: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a C struct of integers; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ethertype.to_be();
    addr.sll_ifindex = ifindex as i32;
    if let Some(mac) = mac {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}

/// Waits until `fd` is readable or `timeout_ms` passes; true if readable.
pub(crate) fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is one valid pollfd and we pass a count of 1.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) }
        }
    }
}
