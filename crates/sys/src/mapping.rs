//! An owned memory mapping (`mmap`), unmapped when dropped: the packet rings, the AF_XDP rings
//! and the UMEM all live in one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// `len` bytes mapped read/write at `ptr`, owned by this value.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of the kernel ring behind `fd`, starting at byte offset `offset`
    /// (shared; `populate` faults every page in now).
    pub(crate) fn ring(
        fd: &OwnedFd,
        len: usize,
        offset: libc::off_t,
        populate: bool,
    ) -> io::Result<Mapping> {
        let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
        Self::new(len, flags, fd.as_raw_fd(), offset)
    }

    /// `len` bytes of fresh private memory, every page faulted in now.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        Self::new(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0)
    }

    fn new(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: libc::off_t,
    ) -> io::Result<Self> {
        // SAFETY: a fresh mapping at an address the kernel chooses; no existing memory is
        // affected. For a ring, `len` and `offset` are what the kernel reported for `fd`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` created; its owner lends no reference into it
        // beyond its own borrows, so none outlives this.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
