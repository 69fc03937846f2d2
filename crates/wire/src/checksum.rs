//! The Internet checksum (RFC 1071): full, with the IPv4 pseudo-header, and incremental
//! updates (RFC 1624). The carry is always folded completely.

use std::net::Ipv4Addr;

/// Adds `data` as big-endian 16-bit words to a running sum (an odd last byte is padded with
/// zero). The sum is kept unfolded in a `u64`, which cannot overflow for buffers below 16 GiB.
///
/// Words are added 32 bits at a time (a 32-bit one's-complement sum folds to the same 16-bit
/// sum, RFC 1071), halving the additions of a header-sized input.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut quads = data.chunks_exact(4);
    for c in &mut quads {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let mut pairs = quads.remainder().chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (end-around carry): a fixed four steps, no loop, so the send
/// path has no data-dependent branch here. Equal to folding until no carry is left.
#[inline]
pub fn fold(s: u64) -> u16 {
    let s = (s & 0xffff_ffff) + (s >> 32); // < 2^33
    let s = (s & 0xffff) + (s >> 16); // < 2^18
    let s = (s & 0xffff) + (s >> 16); // <= 0x10001
    let s = (s & 0xffff) + (s >> 16); // <= 0xffff
    s as u16
}

/// The checksum of `data`: the one's complement of its folded one's-complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// The unfolded sum of an IPv4 address's two 16-bit words.
#[inline]
pub fn addr_sum(a: Ipv4Addr) -> u64 {
    let v = a.to_bits();
    u64::from(v >> 16) + u64::from(v & 0xffff)
}

/// The unfolded sum of the IPv4 pseudo-header for a transport segment of `len` bytes.
#[inline]
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    addr_sum(src) + addr_sum(dst) + u64::from(protocol) + u64::from(len)
}

/// The TCP or UDP checksum of `segment` (whose checksum field must be zero, or be included
/// on purpose to verify: a correct segment then gives 0).
pub fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let len = segment.len().min(usize::from(u16::MAX)) as u16;
    !fold(sum(segment, pseudo_header_sum(src, dst, protocol, len)))
}

/// Updates checksum `old_sum` after one 16-bit word changed from `old` to `new`
/// (RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`).
pub fn update16(old_sum: u16, old: u16, new: u16) -> u16 {
    let s = u64::from(!old_sum) + u64::from(!old) + u64::from(new);
    !fold(s)
}

/// Updates checksum `old_sum` after a 32-bit field (two words) changed from `old` to `new`.
pub fn update32(old_sum: u16, old: u32, new: u32) -> u16 {
    let s = u64::from(!old_sum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from(new >> 16)
        + u64::from(new as u16);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (after folding).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn fold_handles_double_carry() {
        // 0x1fffe folds to 0xffff in one step; 0x2fffd needs two steps to be exact.
        assert_eq!(fold(0x1fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        // A long run of 0xffff words must still fold completely.
        let data = vec![0xffu8; 1 << 16];
        assert_eq!(fold(sum(&data, 0)), 0xffff);
    }

    #[test]
    fn wide_words_fold_like_16_bit_words() {
        // The reference: RFC 1071's 16-bit word sum, one word at a time.
        fn reference(data: &[u8]) -> u16 {
            let mut acc = 0u64;
            for w in data.chunks(2) {
                acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            fold(acc)
        }
        let mut data = Vec::new();
        let mut x = 0x9e37_79b9u32;
        for len in 0..200usize {
            data.clear();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                data.push(x as u8);
            }
            assert_eq!(fold(sum(&data, 0)), reference(&data), "len {len}");
        }
        assert_eq!(fold(sum(&[0xff; 64], 0)), reference(&[0xff; 64]));
        assert_eq!(fold(sum(&[], 0)), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12], 0), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data = [0u8; 20];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let c0 = checksum(&data);
        let old = u16::from_be_bytes([data[4], data[5]]);
        data[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        assert_eq!(update16(c0, old, 0xbeef), checksum(&data));
        let old32 = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        data[8..12].copy_from_slice(&0xdead_0001u32.to_be_bytes());
        let c1 = checksum(&data);
        let mut again = data;
        again[8..12].copy_from_slice(&old32.to_be_bytes());
        assert_eq!(update32(checksum(&again), old32, 0xdead_0001), c1);
    }

    /// Folding until no carry is left, the definition `fold` must agree with.
    fn fold_by_loop(mut s: u64) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn fold_edges() {
        for s in [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x2_fffd,
            0xffff_ffff,
            1 << 32,
            u64::MAX,
            u64::MAX - 1,
        ] {
            assert_eq!(fold(s), fold_by_loop(s), "{s:#x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fold_equals_folding_until_no_carry(s in proptest::num::u64::ANY, small in 0u64..0x4_0000) {
            proptest::prop_assert_eq!(fold(s), fold_by_loop(s));
            proptest::prop_assert_eq!(fold(small), fold_by_loop(small));
        }

        #[test]
        fn incremental_equals_recompute(mut data in proptest::collection::vec(proptest::num::u8::ANY, 2..64),
                                        idx in 0usize..32, new in proptest::num::u16::ANY) {
            let n = data.len() / 2;
            let i = (idx % n) * 2;
            let c0 = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let full = checksum(&data);
            let inc = update16(c0, old, new);
            // 0x0000 and 0xffff are the same value in one's complement; RFC 1624 can yield
            // either only when the sum is all-ones/zero. Compare as one's-complement values.
            proptest::prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }
    }
}
