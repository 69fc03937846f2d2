//! The one ethtool setting rzmap needs: transmit checksum offload.
//!
//! With offload on, a veth or NIC hands packets to packet sockets before their checksums
//! are filled in; the lab turns it off on both ends so captured frames carry real
//! checksums (what `ethtool -K IFACE tx off` does), without needing the `ethtool` program.

use std::io;

use crate::sock;

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with its `ifr_data` member (padded to the kernel's 40 bytes).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: &mut value, _pad: [0; 16] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    let fd = sock::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: `req` is a NUL-terminated interface name followed by a pointer to `value`,
    // both alive for the call; SIOCETHTOOL reads `req` and reads/writes `value` only.
    sock::cvt(unsafe {
        libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCETHTOOL as _, &mut req)
    })?;
    Ok(value.data)
}

/// Whether transmit checksum offload is on for `ifname`.
pub fn tx_checksum_offload(ifname: &str) -> io::Result<bool> {
    ethtool(ifname, ETHTOOL_GTXCSUM, 0).map(|v| v != 0)
}

/// Turns transmit checksum offload on or off for `ifname` (needs `CAP_NET_ADMIN`).
pub fn set_tx_checksum_offload(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, ETHTOOL_STXCSUM, u32::from(on)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_rejected_before_any_call() {
        for name in ["", "a-name-that-is-far-too-long", "nul\0name"] {
            assert_eq!(tx_checksum_offload(name).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        }
    }
}
