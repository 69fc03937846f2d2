//! Response deduplication: which responses are `repeat`s.
//!
//! - [`Dedup::Full`]: a paged bitmap over the IPv4 space keyed on the source address (65536
//!   pages of 8 KiB, each allocated when first needed, at most 512 MiB). A bit is set only by a
//!   *successful* response, so a failure (say an RST) never hides a later success; any
//!   response from a marked address is a repeat.
//! - [`Dedup::Window`]: the most recent `n` (source address, source port) pairs, in an LRU that
//!   is allocated once at start. Every validated response is inserted, success or not, and a hit
//!   refreshes its recency, so a failure makes a later success from the same pair a repeat (as
//!   in ZMap).
//! - [`Dedup::None`]: nothing is ever a repeat.
//!
//! The key always comes from the outer packet (for ICMP errors, the router's address).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::error::InputError;

/// The `--dedup-method` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupMethod {
    /// `full` for one target port, `window` for several.
    Default,
    /// No deduplication.
    None,
    /// The paged bitmap over source addresses.
    Full,
    /// The LRU window over (source address, source port).
    Window,
}

/// ZMap's default `--dedup-window-size`.
pub const DEFAULT_WINDOW_SIZE: u32 = 1_000_000;

impl DedupMethod {
    /// Parses a `--dedup-method` value.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        match s {
            "default" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            "window" => Ok(Self::Window),
            _ => Err(InputError::new(
                "--dedup-method",
                format!("unknown method \"{s}\" (expected default, none, full or window)"),
            )),
        }
    }

    /// The method's name as the metadata prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::None => "none",
            Self::Full => "full",
            Self::Window => "window",
        }
    }

    /// Resolves `default` for a scan of `nports` target ports; `full` with several ports is an
    /// error (a host answering on two ports would hide the second answer).
    pub fn resolve(self, nports: usize) -> Result<Self, InputError> {
        match self {
            Self::Default if nports > 1 => Ok(Self::Window),
            Self::Default => Ok(Self::Full),
            Self::Full if nports > 1 => Err(InputError::new(
                "--dedup-method",
                "full deduplication cannot be used with more than one target port; use window",
            )),
            m => Ok(m),
        }
    }
}

/// A dedup state for one scan.
#[derive(Debug)]
pub enum Dedup {
    /// Never a repeat.
    None,
    /// Source-address bitmap, set on success.
    Full(PagedBitmap),
    /// LRU of (source address, source port).
    Window(LruWindow),
}

impl Dedup {
    /// Builds the state for a resolved method (`default` is treated as `full`); the window is
    /// allocated here, once.
    pub fn new(method: DedupMethod, window_size: u32) -> Self {
        match method {
            DedupMethod::None => Self::None,
            DedupMethod::Full | DedupMethod::Default => Self::Full(PagedBitmap::new()),
            DedupMethod::Window => Self::Window(LruWindow::new(window_size)),
        }
    }

    /// Records a validated response and tells whether it is a repeat.
    pub fn check(&mut self, src_ip: u32, src_port: u16, success: bool) -> bool {
        match self {
            Self::None => false,
            Self::Full(b) => {
                if b.get(src_ip) {
                    true
                } else {
                    if success {
                        b.set(src_ip);
                    }
                    false
                }
            }
            Self::Window(w) => w.check_and_insert(src_ip, src_port),
        }
    }
}

const PAGE_BITS: usize = 1 << 16;
const PAGE_WORDS: usize = PAGE_BITS / 64;

/// A bitmap over all IPv4 addresses (host order), in 65536 pages of 8 KiB allocated lazily.
#[derive(Debug)]
pub struct PagedBitmap {
    pages: Vec<Option<Box<[u64; PAGE_WORDS]>>>,
    allocated: usize,
}

impl Default for PagedBitmap {
    fn default() -> Self {
        Self::new()
    }
}

impl PagedBitmap {
    /// An empty bitmap (only the page table is allocated).
    pub fn new() -> Self {
        Self { pages: (0..PAGE_BITS).map(|_| None).collect(), allocated: 0 }
    }

    /// Whether `addr` is set.
    pub fn get(&self, addr: u32) -> bool {
        let (page, word, bit) = split(addr);
        self.pages[page].as_ref().is_some_and(|p| p[word] & bit != 0)
    }

    /// Sets `addr`, returning whether it was already set.
    pub fn set(&mut self, addr: u32) -> bool {
        let (page, word, bit) = split(addr);
        let slot = &mut self.pages[page];
        let p = match slot {
            Some(p) => p,
            None => {
                self.allocated += 1;
                slot.insert(Box::new([0u64; PAGE_WORDS]))
            }
        };
        let was = p[word] & bit != 0;
        p[word] |= bit;
        was
    }

    /// The number of allocated pages.
    pub fn pages_allocated(&self) -> usize {
        self.allocated
    }
}

fn split(addr: u32) -> (usize, usize, u64) {
    let page = (addr >> 16) as usize;
    let low = (addr & 0xFFFF) as usize;
    (page, low / 64, 1u64 << (low % 64))
}

const EMPTY: u32 = u32::MAX;

/// A fixed-capacity LRU set of 48-bit keys (source address, source port).
///
/// An open-addressing table with linear probing (keys mixed with a per-run random seed, so
/// responders cannot aim at collisions) maps keys to nodes of a doubly linked recency list.
/// Table entries carry their key, so probing touches one cache line per step.
/// Everything is allocated in [`LruWindow::new`]; each operation is O(1) expected and allocates
/// nothing.
#[derive(Debug)]
pub struct LruWindow {
    seed: u64,
    /// Slot -> (key, node index), node EMPTY when free.
    table: Vec<(u64, u32)>,
    mask: usize,
    keys: Vec<u64>,
    prev: Vec<u32>,
    next: Vec<u32>,
    /// Most recently used node, or EMPTY.
    head: u32,
    /// Least recently used node, or EMPTY.
    tail: u32,
    len: u32,
    capacity: u32,
}

impl LruWindow {
    /// A window of `capacity` entries (at least 1), allocated now.
    pub fn new(capacity: u32) -> Self {
        let capacity = capacity.clamp(1, EMPTY - 1);
        let slots = (capacity as usize * 2).next_power_of_two();
        Self {
            seed: RandomState::new().hash_one(0x5eed_u64),
            table: vec![(0, EMPTY); slots],
            mask: slots - 1,
            keys: vec![0; capacity as usize],
            prev: vec![EMPTY; capacity as usize],
            next: vec![EMPTY; capacity as usize],
            head: EMPTY,
            tail: EMPTY,
            len: 0,
            capacity,
        }
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, key: u64) -> usize {
        // A 64-bit finalizer (murmur3's) over the seeded key.
        let mut h = key ^ self.seed;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as usize & self.mask
    }

    /// The table slot holding `key`, if present.
    fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let (k, n) = self.table[i];
            if n == EMPTY {
                return None;
            }
            if k == key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts (or refreshes) the pair and tells whether it was already present.
    pub fn check_and_insert(&mut self, src_ip: u32, src_port: u16) -> bool {
        let key = (u64::from(src_ip) << 16) | u64::from(src_port);
        if let Some(slot) = self.find(key) {
            let n = self.table[slot].1;
            self.unlink(n);
            self.push_front(n);
            return true;
        }
        let node = if self.len < self.capacity {
            self.len += 1;
            self.len - 1
        } else {
            // Evict the least recently used key and reuse its node.
            let victim = self.tail;
            let old = self.keys[victim as usize];
            if let Some(slot) = self.find(old) {
                self.remove_slot(slot);
            }
            self.unlink(victim);
            victim
        };
        self.keys[node as usize] = key;
        let mut i = self.home(key);
        while self.table[i].1 != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.table[i] = (key, node);
        self.push_front(node);
        false
    }

    /// Empties a table slot, shifting later entries of the probe run back (no tombstones).
    fn remove_slot(&mut self, mut hole: usize) {
        self.table[hole].1 = EMPTY;
        let mut i = (hole + 1) & self.mask;
        while self.table[i].1 != EMPTY {
            let entry = self.table[i];
            let home = self.home(entry.0);
            // Move the entry into the hole if its home is not cyclically in (hole, i].
            let dist_home = i.wrapping_sub(home) & self.mask;
            let dist_hole = i.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.table[hole] = entry;
                self.table[i].1 = EMPTY;
                hole = i;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn unlink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        if p == EMPTY {
            self.head = x;
        } else {
            self.next[p as usize] = x;
        }
        if x == EMPTY {
            self.tail = p;
        } else {
            self.prev[x as usize] = p;
        }
        self.prev[n as usize] = EMPTY;
        self.next[n as usize] = EMPTY;
    }

    fn push_front(&mut self, n: u32) {
        self.prev[n as usize] = EMPTY;
        self.next[n as usize] = self.head;
        if self.head != EMPTY {
            self.prev[self.head as usize] = n;
        }
        self.head = n;
        if self.tail == EMPTY {
            self.tail = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashSet, VecDeque};

    #[test]
    fn default_resolution() {
        assert_eq!(DedupMethod::Default.resolve(1), Ok(DedupMethod::Full));
        assert_eq!(DedupMethod::Default.resolve(2), Ok(DedupMethod::Window));
        assert_eq!(DedupMethod::Window.resolve(1), Ok(DedupMethod::Window));
        assert_eq!(DedupMethod::None.resolve(9), Ok(DedupMethod::None));
        let e = DedupMethod::Full.resolve(2).unwrap_err();
        assert!(e.to_string().starts_with("--dedup-method: full deduplication"), "{e}");
        assert_eq!(DedupMethod::parse("window"), Ok(DedupMethod::Window));
        assert_eq!(
            DedupMethod::parse("lru").unwrap_err().to_string(),
            "--dedup-method: unknown method \"lru\" (expected default, none, full or window)"
        );
    }

    #[test]
    fn full_marks_only_successes() {
        let mut d = Dedup::new(DedupMethod::Full, 0);
        assert!(!d.check(0x0A000001, 80, false)); // RST
        assert!(!d.check(0x0A000001, 80, true)); // later SYN-ACK is not hidden
        assert!(d.check(0x0A000001, 80, true));
        assert!(d.check(0x0A000001, 80, false));
        assert!(!d.check(0xFFFF_FFFF, 1, true));
        assert!(d.check(0xFFFF_FFFF, 2, true));
        if let Dedup::Full(b) = &d {
            assert_eq!(b.pages_allocated(), 2);
        }
    }

    #[test]
    fn window_marks_failures_too() {
        let mut d = Dedup::new(DedupMethod::Window, 2);
        assert!(!d.check(1, 80, false));
        assert!(d.check(1, 80, true));
        assert!(!d.check(1, 443, true));
        assert!(!d.check(2, 80, true)); // evicts (1,80)
        assert!(!d.check(1, 80, true));
        assert!(!Dedup::new(DedupMethod::None, 0).check(1, 1, true));
    }

    /// A naive LRU: a queue, most recent at the front.
    fn naive_lru(cap: usize, ops: &[(u32, u16)]) -> Vec<bool> {
        let mut q: VecDeque<(u32, u16)> = VecDeque::new();
        ops.iter()
            .map(|&k| {
                let hit = if let Some(pos) = q.iter().position(|&x| x == k) {
                    q.remove(pos);
                    true
                } else {
                    if q.len() == cap {
                        q.pop_back();
                    }
                    false
                };
                q.push_front(k);
                hit
            })
            .collect()
    }

    proptest! {
        #[test]
        fn window_matches_naive_lru(
            cap in 1u32..12,
            ops in proptest::collection::vec((0u32..6, 0u16..4), 0..300),
        ) {
            let mut w = LruWindow::new(cap);
            let got: Vec<bool> = ops.iter().map(|&(a, p)| w.check_and_insert(a, p)).collect();
            prop_assert_eq!(got, naive_lru(cap as usize, &ops));
            prop_assert!(w.len() <= cap as usize);
        }

        #[test]
        fn full_matches_naive_set(
            ops in proptest::collection::vec((any::<u32>().prop_map(|x| x & 0x0003_00FF), any::<bool>()), 0..300),
        ) {
            let mut d = Dedup::new(DedupMethod::Full, 0);
            let mut set = HashSet::new();
            for (addr, success) in ops {
                let expect = set.contains(&addr);
                if success { set.insert(addr); }
                prop_assert_eq!(d.check(addr, 0, success), expect);
            }
        }
    }

    #[test]
    fn large_window_stays_consistent() {
        let cap = 1000;
        let mut w = LruWindow::new(cap);
        let ops: Vec<(u32, u16)> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) % 1500, (i % 3) as u16))
            .collect();
        let got: Vec<bool> = ops.iter().map(|&(a, p)| w.check_and_insert(a, p)).collect();
        assert_eq!(got, naive_lru(cap as usize, &ops));
    }
}
