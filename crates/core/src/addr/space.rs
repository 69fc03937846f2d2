//! The set of addresses a scan may probe, and ZMap's index → address order over it.
//!
//! A binary prefix tree is painted like ZMap's `constraint.c`: start all-blocked when there is
//! an allowlist (then paint each allowlist entry allowed) or all-allowed otherwise, paint each
//! blocklist entry blocked, and finally block `0.0.0.0/32`. Uniform sibling leaves merge, so
//! every uniform subtree is one leaf and the leaves are the minimal CIDR cover of both sets.
//!
//! Index order (which fixes the scan order): every fully allowed /18 comes first, ascending,
//! then every other allowed address, ascending.

use super::prefix::Ipv4Prefix;

/// Prefix length of the cached blocks that come first in index order (ZMap's `RADIX_LENGTH`).
pub const RADIX_LENGTH: u32 = 18;
const RADIX_SHIFT: u32 = 32 - RADIX_LENGTH;
const RADIX_SIZE: u64 = 1 << RADIX_SHIFT;
/// Up to this many addresses outside the radix blocks are also kept in a flat table (4 MiB),
/// making `nth` O(1) for small scans; beyond it `nth` walks the tree.
const DENSE_TAIL_MAX: u64 = 1 << 20;

/// A compacted tree node. Children of an inner node sit at `left` and `left + 1`.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Index of the left child; 0 marks a leaf (the root, index 0, is nobody's child).
    left: u32,
    /// A leaf's value: true when its addresses may be scanned.
    allowed: bool,
    /// Allowed addresses below this node, not counting leaves of /18 or larger.
    count: u64,
}

/// A painting-time node (children anywhere in the arena).
#[derive(Clone, Copy)]
struct PaintNode {
    children: Option<(u32, u32)>,
    allowed: bool,
}

struct Painter {
    nodes: Vec<PaintNode>,
}

impl Painter {
    fn new(allowed: bool) -> Self {
        Self { nodes: vec![PaintNode { children: None, allowed }] }
    }

    fn leaf(&mut self, allowed: bool) -> u32 {
        self.nodes.push(PaintNode { children: None, allowed });
        (self.nodes.len() - 1) as u32
    }

    /// Paints `value` over the prefix (`net` host order, host bits already cleared).
    fn set(&mut self, node: u32, net: u32, len: u32, depth: u32, value: bool) {
        let i = node as usize;
        if depth == len {
            self.nodes[i] = PaintNode { children: None, allowed: value };
            return;
        }
        let (l, r) = match self.nodes[i].children {
            Some(c) => c,
            None => {
                if self.nodes[i].allowed == value {
                    return;
                }
                let v = self.nodes[i].allowed;
                let c = (self.leaf(v), self.leaf(v));
                self.nodes[i].children = Some(c);
                c
            }
        };
        let child = if net & (0x8000_0000 >> depth) != 0 { r } else { l };
        self.set(child, net, len, depth + 1, value);
        let (ln, rn) = (self.nodes[l as usize], self.nodes[r as usize]);
        if ln.children.is_none() && rn.children.is_none() && ln.allowed == rn.allowed {
            self.nodes[i] = PaintNode { children: None, allowed: ln.allowed };
        }
    }
}

/// The scan's address space: an allowlist minus a blocklist minus `0.0.0.0/32`, with
/// `count()`, ZMap-order `nth(i)` and a fast `is_allowed(ip)`.
#[derive(Clone, Debug)]
pub struct TargetSpace {
    nodes: Vec<Node>,
    /// Network addresses of the fully allowed /18 blocks, ascending.
    radix: Vec<u32>,
    /// The allowed addresses outside the radix blocks, ascending, when there are at most
    /// `DENSE_TAIL_MAX` of them (otherwise empty and `nth` walks the tree).
    tail: Vec<u32>,
    /// Per /16: 0 blocked, 1 allowed, otherwise 2 + the index of the subtree node at depth 16.
    table16: Vec<u32>,
    count: u64,
    allow_entries: Option<Vec<Ipv4Prefix>>,
    block_entries: Vec<Ipv4Prefix>,
}

impl TargetSpace {
    /// Builds the space from an optional allowlist (positional subnets and `-w` together) and
    /// a blocklist. The blocklist wins over the allowlist; `0.0.0.0/32` is always excluded.
    pub fn new(allow: Option<&[Ipv4Prefix]>, block: &[Ipv4Prefix]) -> Self {
        let mut painter = Painter::new(allow.is_none());
        for p in allow.unwrap_or(&[]) {
            painter.set(0, p.network(), u32::from(p.len.min(32)), 0, true);
        }
        for p in block {
            painter.set(0, p.network(), u32::from(p.len.min(32)), 0, false);
        }
        painter.set(0, 0, 32, 0, false);

        let mut space = TargetSpace {
            nodes: Vec::with_capacity(painter.nodes.len()),
            radix: Vec::new(),
            tail: Vec::new(),
            table16: vec![0; 1 << 16],
            count: 0,
            allow_entries: allow.map(|a| a.iter().map(Ipv4Prefix::normalized).collect()),
            block_entries: block
                .iter()
                .map(Ipv4Prefix::normalized)
                .chain(std::iter::once(Ipv4Prefix { addr: 0, len: 32 }))
                .collect(),
        };
        space.nodes.push(Node { left: 0, allowed: false, count: 0 });
        space.compact(&painter, 0, 0, 0, 0);
        space.fill_table(0, 0, 0);
        space.count = space.radix.len() as u64 * RADIX_SIZE + space.nodes[0].count;
        if space.nodes[0].count <= DENSE_TAIL_MAX {
            let mut tail = Vec::with_capacity(space.nodes[0].count as usize);
            for p in space.leaves(true).into_iter().filter(|p| u32::from(p.len) > RADIX_LENGTH) {
                tail.extend(p.addr..=p.last());
            }
            space.tail = tail;
        }
        space
    }

    /// Copies painter node `src` (covering `ip`/`depth`) into slot `dst`, allocating its
    /// children as an adjacent pair; fills the counts and the radix list in ascending order.
    fn compact(&mut self, painter: &Painter, src: u32, dst: u32, ip: u32, depth: u32) -> u64 {
        let p = painter.nodes[src as usize];
        let count = match p.children {
            None => {
                if p.allowed && depth <= RADIX_LENGTH {
                    let first_block = ip >> RADIX_SHIFT;
                    let blocks = 1u64 << (RADIX_LENGTH - depth);
                    self.radix.extend((0..blocks).map(|b| (first_block + b as u32) << RADIX_SHIFT));
                    0
                } else if p.allowed {
                    1u64 << (32 - depth)
                } else {
                    0
                }
            }
            Some((l, r)) => {
                let left = self.nodes.len() as u32;
                self.nodes.push(Node { left: 0, allowed: false, count: 0 });
                self.nodes.push(Node { left: 0, allowed: false, count: 0 });
                self.nodes[dst as usize].left = left;
                let bit = 0x8000_0000u32 >> depth;
                self.compact(painter, l, left, ip, depth + 1)
                    + self.compact(painter, r, left + 1, ip | bit, depth + 1)
            }
        };
        let n = &mut self.nodes[dst as usize];
        n.allowed = p.allowed && p.children.is_none();
        n.count = count;
        count
    }

    /// Fills the /16 lookup table below `node` (covering `ip`/`depth`).
    fn fill_table(&mut self, node: u32, ip: u32, depth: u32) {
        let n = self.nodes[node as usize];
        if n.left == 0 || depth == 16 {
            let entry = if n.left != 0 { node + 2 } else { u32::from(n.allowed) };
            let first = (ip >> 16) as usize;
            let span = 1usize << (16 - depth.min(16));
            self.table16[first..first + span].fill(entry);
            return;
        }
        self.fill_table(n.left, ip, depth + 1);
        self.fill_table(n.left + 1, ip | (0x8000_0000 >> depth), depth + 1);
    }

    /// How many addresses may be scanned.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when no address may be scanned.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many addresses sit in fully allowed /18 blocks (the first indices).
    pub fn radix_count(&self) -> u64 {
        self.radix.len() as u64 * RADIX_SIZE
    }

    /// The address (host order) with index `i` in ZMap's order: fully allowed /18 blocks
    /// first, ascending, then the other allowed addresses, ascending. `i` must be below
    /// [`count`](Self::count); larger values give an unspecified address (never a panic).
    #[inline]
    pub fn nth(&self, i: u64) -> u32 {
        let block = (i >> RADIX_SHIFT) as usize;
        if let Some(&net) = self.radix.get(block) {
            return net | (i & (RADIX_SIZE - 1)) as u32;
        }
        let j = i - self.radix.len() as u64 * RADIX_SIZE;
        match self.tail.get(j as usize) {
            Some(&ip) => ip,
            None => self.nth_in_tree(j),
        }
    }

    /// The `n`th allowed address outside the radix blocks.
    #[inline]
    fn nth_in_tree(&self, mut n: u64) -> u32 {
        let mut node = self.nodes[0];
        let mut ip = 0u32;
        let mut bit = 0x8000_0000u32;
        while node.left != 0 {
            let left = self.nodes[node.left as usize];
            if n < left.count {
                node = left;
            } else {
                n -= left.count;
                node = self.nodes[node.left as usize + 1];
                ip |= bit;
            }
            bit >>= 1;
        }
        ip | n as u32
    }

    /// The address with index `i`, or `None` when `i >= count()`.
    pub fn get(&self, i: u64) -> Option<u32> {
        (i < self.count).then(|| self.nth(i))
    }

    /// Whether `ip` (host order) may be scanned: a /16 table hit, then at most 16 tree steps.
    #[inline]
    pub fn is_allowed(&self, ip: u32) -> bool {
        let entry = self.table16[(ip >> 16) as usize];
        if entry < 2 {
            return entry == 1;
        }
        let mut node = self.nodes[(entry - 2) as usize];
        let mut bit = 0x8000u32;
        while node.left != 0 {
            node = self.nodes[(node.left + u32::from(ip & bit != 0)) as usize];
            bit >>= 1;
        }
        node.allowed
    }

    /// The minimal CIDR list of the allowed addresses (the tree's allowed leaves), ascending.
    pub fn allowed_prefixes(&self) -> Vec<Ipv4Prefix> {
        self.leaves(true)
    }

    /// The minimal CIDR list of the excluded addresses (always covering `0.0.0.0/32`).
    pub fn blocked_prefixes(&self) -> Vec<Ipv4Prefix> {
        self.leaves(false)
    }

    /// The allowlist as given (host bits cleared), or `None` without an allowlist. This and
    /// [`blocklist_entries`](Self::blocklist_entries) are what ZMap's metadata lists.
    pub fn allowlist_entries(&self) -> Option<&[Ipv4Prefix]> {
        self.allow_entries.as_deref()
    }

    /// The blocklist as given (host bits cleared), followed by the implicit `0.0.0.0/32`.
    pub fn blocklist_entries(&self) -> &[Ipv4Prefix] {
        &self.block_entries
    }

    fn leaves(&self, allowed: bool) -> Vec<Ipv4Prefix> {
        let mut out = Vec::new();
        let mut stack = vec![(0u32, 0u32, 0u8)];
        while let Some((i, ip, depth)) = stack.pop() {
            let n = self.nodes[i as usize];
            if n.left == 0 {
                if n.allowed == allowed {
                    out.push(Ipv4Prefix { addr: ip, len: depth });
                }
            } else {
                // Right first so the left (lower) half is popped first.
                stack.push((n.left + 1, ip | (0x8000_0000 >> depth), depth + 1));
                stack.push((n.left, ip, depth + 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::defaults::default_blocklist;
    use crate::addr::prefix::parse_prefix;
    use proptest::prelude::*;

    fn pfx(list: &[&str]) -> Vec<Ipv4Prefix> {
        list.iter().map(|s| parse_prefix(s).unwrap()).collect()
    }

    #[test]
    fn full_space_with_default_blocklist() {
        let s = TargetSpace::new(None, &default_blocklist());
        assert_eq!(s.count(), 3_702_258_432);
        assert!(!s.is_allowed(0));
        assert!(!s.is_allowed(0x0a01_0203));
        assert!(!s.is_allowed(0xc612_0001)); // 198.18.0.1
        assert!(!s.is_allowed(0xc613_ffff)); // 198.19.255.255
        assert!(s.is_allowed(0xc614_0000)); // 198.20.0.0
        assert!(s.is_allowed(0x0808_0808));
        assert!(!s.is_allowed(u32::MAX));
        assert!(!s.is_allowed(0xe000_0001));
        // Blocked leaves are the merged blocklist: 0/8 already covers 0.0.0.0/32.
        let blocked: Vec<String> = s.blocked_prefixes().iter().map(|p| p.to_string()).collect();
        assert_eq!(blocked.len(), 14);
        assert_eq!(blocked[0], "0.0.0.0/8");
        assert_eq!(blocked[13], "224.0.0.0/3");
        assert_eq!(s.blocklist_entries().len(), 17);
        assert_eq!(s.blocklist_entries()[16].to_string(), "0.0.0.0/32");
        assert_eq!(s.allowlist_entries(), None);
        // The first index is the first fully allowed /18: 1.0.0.0.
        assert_eq!(s.nth(0), 0x0100_0000);
        assert_eq!(s.get(s.count()), None);
    }

    #[test]
    fn empty_blocklist_excludes_only_zero() {
        let s = TargetSpace::new(None, &[]);
        assert_eq!(s.count(), (1 << 32) - 1);
        assert!(!s.is_allowed(0));
        assert!(s.is_allowed(1));
        // 0.0.0.0/18 is not fully allowed, so index 0 is 0.0.64.0 and the tail is 0.0.0.1...
        assert_eq!(s.nth(0), 0x0000_4000);
        assert_eq!(s.nth(s.radix_count()), 1);
        assert_eq!(s.nth(s.count() - 1), 0x0000_3fff);
        assert_eq!(s.allowed_prefixes().len(), 32);
        assert_eq!(s.blocked_prefixes(), pfx(&["0.0.0.0/32"]));
    }

    #[test]
    fn index_order_radix_blocks_first() {
        // compat §4.1: allowlist 1.0.0.0/24 2.0.0.0/17 puts 2.0.0.0/17 at 0..32767.
        let s = TargetSpace::new(Some(&pfx(&["1.0.0.0/24", "2.0.0.0/17"])), &[]);
        assert_eq!(s.count(), 32768 + 256);
        assert_eq!(s.nth(0), 0x0200_0000);
        assert_eq!(s.nth(32767), 0x0200_7fff);
        assert_eq!(s.nth(32768), 0x0100_0000);
        assert_eq!(s.nth(32768 + 255), 0x0100_00ff);
        assert_eq!(s.allowed_prefixes(), pfx(&["1.0.0.0/24", "2.0.0.0/17"]));
        assert_eq!(s.allowlist_entries().unwrap().len(), 2);
    }

    #[test]
    fn blocklist_wins_and_host_bits_are_ignored() {
        let s = TargetSpace::new(Some(&pfx(&["10.0.0.0/8"])), &pfx(&["10.1.2.3/16"]));
        assert_eq!(s.count(), (1 << 24) - (1 << 16));
        assert!(!s.is_allowed(0x0a01_0000));
        assert!(s.is_allowed(0x0a02_0000));
        let none = TargetSpace::new(Some(&pfx(&["0.0.0.0/32"])), &[]);
        assert!(none.is_empty());
        let none = TargetSpace::new(Some(&[]), &[]);
        assert!(none.is_empty());
        assert_eq!(none.allowed_prefixes(), vec![]);
    }

    #[test]
    fn large_tails_use_the_tree_walk() {
        // One blocked address in each of 101 /18s: 1.65M addresses outside the radix blocks.
        let block: Vec<Ipv4Prefix> =
            (0..=100u32).map(|k| Ipv4Prefix::new((k << 14) | 5, 32)).collect();
        let s = TargetSpace::new(None, &block);
        assert!(s.tail.is_empty());
        let tail: Vec<u32> =
            (0..=100u32 << 14 | 0x3fff).filter(|&ip| ip != 0 && ip & 0x3fff != 5).collect();
        assert_eq!(s.count() - s.radix_count(), tail.len() as u64);
        for j in (0..tail.len()).step_by(997).chain([tail.len() - 1]) {
            assert_eq!(s.nth(s.radix_count() + j as u64), tail[j], "tail index {j}");
        }
        assert_eq!(s.nth(0), 101 << 14);
    }

    /// The model: the allowed addresses of a space made of small prefixes near a few bases.
    fn model(allow: &Option<Vec<Ipv4Prefix>>, block: &[Ipv4Prefix], universe: &[u32]) -> Vec<u32> {
        universe
            .iter()
            .copied()
            .filter(|&ip| {
                ip != 0
                    && allow.as_ref().is_none_or(|a| a.iter().any(|p| p.contains(ip)))
                    && !block.iter().any(|p| p.contains(ip))
            })
            .collect()
    }

    fn arb_prefix() -> impl Strategy<Value = Ipv4Prefix> {
        // Bases at 0.0.0.0, 10.0.0.0 and 255.255.0.0 keep the space small enough to enumerate
        // while still crossing /18 boundaries and the 0.0.0.0 exclusion.
        (prop::sample::select(vec![0u32, 0x0a00_0000, 0xffff_0000]), 0u32..(1 << 17), 15u8..=32)
            .prop_map(|(base, off, len)| Ipv4Prefix::new(base.wrapping_add(off), len))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn nth_and_is_allowed_match_a_naive_model(
            allow in prop::option::of(prop::collection::vec(arb_prefix(), 0..6)),
            block in prop::collection::vec(arb_prefix(), 0..6),
        ) {
            let space = TargetSpace::new(allow.as_deref(), &block);
            // Every address of every /15 touched by a prefix (all prefixes are /15 or smaller).
            let mut bases: Vec<u32> = allow.iter().flatten().chain(&block)
                .map(|p| p.network() & 0xfffe_0000).collect();
            bases.extend([0u32, 0x0a00_0000, 0xfffe_0000]);
            bases.sort_unstable();
            bases.dedup();
            let universe: Vec<u32> = bases.iter().flat_map(|&b| b..=b | 0x1_ffff).collect();
            let allowed = model(&allow, &block, &universe);
            if allow.is_some() {
                prop_assert_eq!(space.count(), allowed.len() as u64);
            }
            // ZMap's order: full /18s ascending first, then the rest ascending.
            let full = |ip: u32| allowed.binary_search(&(ip & !0x3fff)).is_ok()
                && allowed.binary_search(&(ip | 0x3fff)).is_ok()
                && {
                    let a = allowed.binary_search(&(ip & !0x3fff)).unwrap_or(0);
                    let b = allowed.binary_search(&(ip | 0x3fff)).unwrap_or(0);
                    b - a == 0x3fff
                };
            let mut order: Vec<u32> = allowed.iter().copied().filter(|&ip| full(ip)).collect();
            order.extend(allowed.iter().copied().filter(|&ip| !full(ip)));
            if allow.is_some() {
                for (i, &ip) in order.iter().enumerate() {
                    prop_assert_eq!(space.nth(i as u64), ip, "index {}", i);
                }
            }
            // The tree walk agrees with the flat tail table.
            if allow.is_some() {
                for j in 0..(space.count() - space.radix_count()) {
                    prop_assert_eq!(space.nth_in_tree(j), space.nth(space.radix_count() + j));
                }
            }
            for &ip in &universe {
                prop_assert_eq!(space.is_allowed(ip), allowed.binary_search(&ip).is_ok(), "ip {:#x}", ip);
            }
            // The leaves partition the universe.
            let a: u64 = space.allowed_prefixes().iter().map(|p| p.size()).sum();
            let b: u64 = space.blocked_prefixes().iter().map(|p| p.size()).sum();
            prop_assert_eq!(a + b, 1u64 << 32);
            prop_assert_eq!(a, space.count());
        }
    }
}
