//! Batches of frames that sender threads fill in place and the senders hand to `sendmmsg`.
//!
//! Each slot is [`SLOT_SIZE`] bytes, 16-byte aligned. A frame starts [`FRAME_OFFSET`] bytes
//! into its slot, so that the IPv4 header behind a 14-byte Ethernet header is 4-byte aligned
//! (as in ZMap). Probe templates are written once per slot with [`FrameBatch::slot_mut`];
//! per target the engine patches [`FrameBatch::next_mut`] and calls [`FrameBatch::commit`].

/// Bytes reserved per slot.
pub const SLOT_SIZE: usize = 2048;
/// Offset of the frame inside its slot (aligns the IP header).
pub const FRAME_OFFSET: usize = 2;
/// Largest frame a slot holds.
pub const MAX_FRAME: usize = SLOT_SIZE - FRAME_OFFSET;

#[repr(C, align(16))]
#[derive(Clone)]
struct Slot([u8; SLOT_SIZE]);

/// A fixed number of frame slots plus the length of each committed frame.
#[derive(Clone)]
pub struct FrameBatch {
    slots: Vec<Slot>,
    lens: Vec<u16>,
}

impl std::fmt::Debug for FrameBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBatch")
            .field("capacity", &self.capacity())
            .field("lens", &self.lens)
            .finish()
    }
}

impl FrameBatch {
    /// A batch of `capacity` zeroed slots (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FrameBatch {
            slots: vec![Slot([0; SLOT_SIZE]); capacity],
            lens: Vec::with_capacity(capacity),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of committed frames.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when no frame is committed.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// True when every slot holds a committed frame.
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.slots.len()
    }

    /// Forgets the committed frames; slot contents (templates) are kept.
    pub fn clear(&mut self) {
        self.lens.clear();
    }

    /// The whole frame area of slot `i` ([`MAX_FRAME`] bytes), for writing templates.
    ///
    /// # Panics
    /// If `i >= capacity()`.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.slots[i].0[FRAME_OFFSET..]
    }

    /// The frame area of the next free slot, or `None` when the batch is full.
    pub fn next_mut(&mut self) -> Option<&mut [u8]> {
        let i = self.lens.len();
        self.slots.get_mut(i).map(|s| &mut s.0[FRAME_OFFSET..])
    }

    /// Commits the next free slot as a frame of `len` bytes (clamped to [`MAX_FRAME`]).
    /// Returns false (and commits nothing) when the batch is full.
    pub fn commit(&mut self, len: usize) -> bool {
        if self.is_full() {
            return false;
        }
        self.lens.push(len.min(MAX_FRAME) as u16);
        true
    }

    /// Copies `frame` into the next free slot and commits it; false if full or too long.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            return false;
        }
        match self.next_mut() {
            Some(slot) => {
                slot[..frame.len()].copy_from_slice(frame);
                self.commit(frame.len())
            }
            None => false,
        }
    }

    /// Committed frame `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.slots[i].0[FRAME_OFFSET..FRAME_OFFSET + usize::from(self.lens[i])]
    }

    /// Iterates over the committed frames.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.frame(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_commit_and_read_back() {
        let mut b = FrameBatch::new(3);
        for i in 0..3 {
            b.slot_mut(i)[..4].copy_from_slice(&[9, 9, 9, 9]);
        }
        let s = b.next_mut().unwrap();
        s[0] = 1;
        assert!(b.commit(4));
        assert!(b.push(&[7; 60]));
        assert!(!b.push(&[0; MAX_FRAME + 1]));
        assert!(b.commit(5000));
        assert!(b.is_full());
        assert!(b.next_mut().is_none());
        assert!(!b.commit(1));
        assert_eq!(b.frame(0), &[1, 9, 9, 9]);
        assert_eq!(b.frame(1), &[7; 60][..]);
        assert_eq!(b.frame(2).len(), MAX_FRAME);
        assert_eq!(b.frames().count(), 3);
        b.clear();
        assert!(b.is_empty());
        // Templates survive a clear.
        assert_eq!(&b.slot_mut(2)[..4], &[9, 9, 9, 9]);
    }

    #[test]
    fn ip_header_is_four_byte_aligned() {
        let mut b = FrameBatch::new(2);
        for i in 0..2 {
            let p = b.slot_mut(i).as_ptr() as usize;
            assert_eq!((p + 14) % 4, 0);
        }
    }
}
