//! Bounded reassembly of the first bytes of a TCP byte stream into a fixed buffer.
//!
//! Offsets are relative to the peer's ISN+1 (the first data byte). Only the contiguous prefix
//! counts as received; up to [`MAX_RANGES`] out-of-order ranges are held beyond it, and a
//! segment that would need one more range is dropped (the sender retransmits it). Bytes that
//! are already held are never overwritten: a retransmission cannot change what was received.

/// Out-of-order ranges held beyond the contiguous prefix.
pub const MAX_RANGES: usize = 4;

/// What one [`Reassembly::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// New bytes were held; `advanced` of them extended the contiguous prefix (0 when the
    /// segment landed out of order).
    New {
        /// Growth of the contiguous prefix.
        advanced: u32,
    },
    /// Every byte (within the buffer) was already held: a retransmission, or an empty segment.
    Duplicate,
    /// The segment starts at or beyond the end of the buffer.
    BeyondLimit,
    /// The segment lies beyond a gap and no range was free to hold it.
    NoRoom,
}

/// The state of one stream's reassembly: the contiguous length and the out-of-order ranges
/// (sorted, disjoint and non-adjacent, all starting above the contiguous length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reassembly {
    contig: u32,
    ranges: [(u32, u32); MAX_RANGES],
    n: u8,
}

impl Reassembly {
    /// An empty stream.
    pub const fn new() -> Self {
        Self { contig: 0, ranges: [(0, 0); MAX_RANGES], n: 0 }
    }

    /// Length of the contiguous prefix received.
    pub fn contiguous(&self) -> u32 {
        self.contig
    }

    /// The out-of-order ranges held, as `[start, end)` offsets.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..usize::from(self.n)]
    }

    /// Adds `data`, whose first byte is at stream offset `offset`, into `buf` (whose length is
    /// the limit: bytes at or past it are discarded).
    pub fn insert(&mut self, buf: &mut [u8], offset: u32, data: &[u8]) -> Inserted {
        let limit = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let start = u64::from(offset);
        if start >= limit {
            return if data.is_empty() { Inserted::Duplicate } else { Inserted::BeyondLimit };
        }
        let end = (start + data.len() as u64).min(limit);
        let contig = u64::from(self.contig);
        if end <= contig || end <= start {
            return Inserted::Duplicate;
        }
        let s = start.max(contig);
        // Ranges [i, j) overlap or touch [s, end).
        let n = usize::from(self.n);
        let i = self.ranges[..n].iter().position(|r| u64::from(r.1) >= s).unwrap_or(n);
        let j = self.ranges[..n].iter().position(|r| u64::from(r.0) > end).unwrap_or(n);
        if s > contig && i == j && n == MAX_RANGES {
            return Inserted::NoRoom;
        }
        if s > contig
            && (i..j)
                .all(|k| u64::from(self.ranges[k].0) <= s && u64::from(self.ranges[k].1) >= end)
            && i < j
        {
            return Inserted::Duplicate;
        }
        // Write the bytes of [s, end) that no range holds yet.
        let mut cur = s;
        for &(rs, re) in &self.ranges[i..j] {
            let (rs, re) = (u64::from(rs), u64::from(re));
            if rs > cur {
                copy(buf, data, start, cur, rs.min(end));
            }
            cur = cur.max(re);
        }
        if cur < end {
            copy(buf, data, start, cur, end);
        }
        // Update the bookkeeping (all values are below the limit, which fits in u32 here
        // because the buffer's offsets came from a u32).
        let before = self.contig;
        if s == contig {
            let mut c = end;
            let mut k = 0;
            while k < n && u64::from(self.ranges[k].0) <= c {
                c = c.max(u64::from(self.ranges[k].1));
                k += 1;
            }
            self.ranges.copy_within(k..n, 0);
            self.n = (n - k) as u8;
            self.contig = c as u32;
        } else {
            let mut lo = s;
            let mut hi = end;
            if i < j {
                lo = lo.min(u64::from(self.ranges[i].0));
                hi = hi.max(u64::from(self.ranges[j - 1].1));
            }
            let merged = (lo as u32, hi as u32);
            if i == j {
                self.ranges.copy_within(i..n, i + 1);
                self.ranges[i] = merged;
                self.n += 1;
            } else {
                self.ranges[i] = merged;
                self.ranges.copy_within(j..n, i + 1);
                self.n = (n - (j - i - 1)) as u8;
            }
        }
        Inserted::New { advanced: self.contig - before }
    }
}

/// Copies stream bytes `[from, to)` of a segment starting at `seg_start` into `buf`.
fn copy(buf: &mut [u8], data: &[u8], seg_start: u64, from: u64, to: u64) {
    if to <= from {
        return;
    }
    let (a, b) = (from as usize, to as usize);
    let (da, db) = ((from - seg_start) as usize, (to - seg_start) as usize);
    buf[a..b].copy_from_slice(&data[da..db]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(r: &mut Reassembly, buf: &mut [u8], stream: &[u8], a: usize, b: usize) -> Inserted {
        r.insert(buf, a as u32, &stream[a..b])
    }

    #[test]
    fn in_order_segments_extend_the_prefix() {
        let s = b"hello world";
        let mut buf = [0u8; 64];
        let mut r = Reassembly::new();
        assert_eq!(feed(&mut r, &mut buf, s, 0, 5), Inserted::New { advanced: 5 });
        assert_eq!(feed(&mut r, &mut buf, s, 5, 11), Inserted::New { advanced: 6 });
        assert_eq!(&buf[..r.contiguous() as usize], s);
    }

    #[test]
    fn out_of_order_is_held_then_joined() {
        let s = b"abcdefghij";
        let mut buf = [0u8; 64];
        let mut r = Reassembly::new();
        assert_eq!(feed(&mut r, &mut buf, s, 6, 8), Inserted::New { advanced: 0 });
        assert_eq!(feed(&mut r, &mut buf, s, 3, 5), Inserted::New { advanced: 0 });
        assert_eq!(r.ranges(), &[(3, 5), (6, 8)]);
        assert_eq!(feed(&mut r, &mut buf, s, 0, 3), Inserted::New { advanced: 5 });
        assert_eq!(r.ranges(), &[(6, 8)]);
        assert_eq!(feed(&mut r, &mut buf, s, 5, 6), Inserted::New { advanced: 3 });
        assert!(r.ranges().is_empty());
        assert_eq!(&buf[..8], b"abcdefgh");
    }

    #[test]
    fn retransmission_does_not_overwrite() {
        let mut buf = [0u8; 16];
        let mut r = Reassembly::new();
        r.insert(&mut buf, 0, b"good");
        assert_eq!(r.insert(&mut buf, 0, b"evil"), Inserted::Duplicate);
        assert_eq!(r.insert(&mut buf, 2, b"XXzz"), Inserted::New { advanced: 2 });
        assert_eq!(&buf[..6], b"goodzz");
        // Held out-of-order bytes are not overwritten either.
        r.insert(&mut buf, 10, b"kept");
        assert_eq!(r.insert(&mut buf, 10, b"lost"), Inserted::Duplicate);
        r.insert(&mut buf, 8, b"89XXXXYY");
        assert_eq!(&buf[8..16], b"89keptYY");
    }

    #[test]
    fn limit_truncates_and_rejects_beyond() {
        let mut buf = [0u8; 4];
        let mut r = Reassembly::new();
        assert_eq!(r.insert(&mut buf, 0, b"abcdef"), Inserted::New { advanced: 4 });
        assert_eq!(r.insert(&mut buf, 4, b"gh"), Inserted::BeyondLimit);
        assert_eq!(&buf, b"abcd");
    }

    #[test]
    fn full_range_set_drops_new_gaps_but_accepts_in_order() {
        let mut buf = [0u8; 64];
        let mut r = Reassembly::new();
        for k in 0..MAX_RANGES as u32 {
            assert_eq!(r.insert(&mut buf, 10 + 4 * k, b"x"), Inserted::New { advanced: 0 });
        }
        assert_eq!(r.insert(&mut buf, 40, b"y"), Inserted::NoRoom);
        // Extending an existing range or the prefix still works.
        assert_eq!(r.insert(&mut buf, 11, b"z"), Inserted::New { advanced: 0 });
        assert_eq!(r.insert(&mut buf, 0, b"0123456789"), Inserted::New { advanced: 12 });
    }

    /// One segment of a stream: `[start, start + len)`.
    fn segments(len: usize) -> impl Strategy<Value = Vec<(usize, usize)>> {
        // A partition of the stream into chunks, plus random extra (overlapping) segments.
        let cuts = proptest::collection::vec(0..=len, 0..12);
        let extra = proptest::collection::vec((0..=len, 0usize..300), 0..10);
        (cuts, extra).prop_map(move |(mut cuts, extra)| {
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            cuts.dedup();
            let mut segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            for (a, l) in extra {
                segs.push((a, (a + l).min(len)));
            }
            segs
        })
    }

    proptest! {
        /// Random segmentation, duplication and reordering of a stream, with the sender
        /// retransmitting whatever was not taken, yields exactly the stream's prefix up to the
        /// limit; and the contiguous prefix is a prefix of the stream at every step.
        #[test]
        fn reassembles_exactly_the_prefix(
            (stream, mut segs) in proptest::collection::vec(any::<u8>(), 0..1500)
                .prop_flat_map(|s| { let n = s.len(); (Just(s), segments(n)) }),
            limit in 1usize..1200,
            seed in any::<u64>(),
            dup in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let len = stream.len();
            for d in &dup {
                if !segs.is_empty() {
                    let s = segs[d.index(segs.len())];
                    segs.push(s);
                }
            }
            // Deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..segs.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                segs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut buf = vec![0u8; limit];
            let mut r = Reassembly::new();
            let want = len.min(limit);
            for _pass in 0..=segs.len() {
                for &(a, b) in &segs {
                    r.insert(&mut buf, a as u32, &stream[a..b]);
                    let c = r.contiguous() as usize;
                    prop_assert!(c <= want);
                    prop_assert_eq!(&buf[..c], &stream[..c]);
                    for &(rs, re) in r.ranges() {
                        prop_assert!(rs as usize > c && re as usize <= want && rs < re);
                        prop_assert_eq!(&buf[rs as usize..re as usize], &stream[rs as usize..re as usize]);
                    }
                }
                if r.contiguous() as usize == want { break; }
            }
            prop_assert_eq!(r.contiguous() as usize, want);
            prop_assert_eq!(&buf[..want], &stream[..want]);
        }

        /// Arbitrary offsets and lengths never panic and keep the invariants.
        #[test]
        fn arbitrary_inserts_never_panic(
            limit in 0usize..300,
            ops in proptest::collection::vec((any::<u32>(), 0usize..400), 0..40),
        ) {
            let mut buf = vec![0u8; limit];
            let mut r = Reassembly::new();
            let data = [7u8; 400];
            for (off, l) in ops {
                let off = if off % 2 == 0 { off % 320 } else { off };
                r.insert(&mut buf, off, &data[..l]);
                prop_assert!(r.contiguous() as usize <= limit);
                let mut prev = r.contiguous();
                for &(rs, re) in r.ranges() {
                    prop_assert!(rs > prev && rs < re && re as usize <= limit);
                    prev = re;
                }
            }
        }
    }
}
