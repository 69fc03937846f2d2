//! The scan order: the address space × the port list walked along one cyclic-group
//! permutation, split into `shards × threads` subshards exactly as ZMap 4 does.
//!
//! Subshard `i = shard * threads + thread` of `S = shards * threads` walks the exponents
//! `[floor(Q/S) * i + offset, floor(Q/S) * (i + 1) + offset)` (mod `Q = p - 1`; the last one
//! ends where subshard 0 begins). An element `v` is the target index `v - 1`: address index in
//! the high bits, port index in the low `bits_port` bits; elements outside the space are skipped.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::addr::{IpList, TargetSpace};
use crate::aesrand::AesRand;
use crate::cyclic::{Cycle, MulModConst, bits_needed, group_for_bits};
use crate::error::InputError;

/// Everything that fixes the target order of a scan: space, ports (user order, duplicates
/// kept) and the cycle chosen from the seed.
#[derive(Clone, Debug)]
pub struct ScanOrder {
    space: Arc<TargetSpace>,
    ports: Arc<[u16]>,
    cycle: Cycle,
}

impl ScanOrder {
    /// Chooses the cycle from `rand` (the seed's generator, fresh) as ZMap does.
    ///
    /// `ports` is the `-p` list in user order with duplicates kept; portless modules pass `[0]`.
    pub fn new(
        space: Arc<TargetSpace>,
        ports: Vec<u16>,
        rand: &mut AesRand,
    ) -> Result<Self, InputError> {
        Self::check_inputs(&space, &ports)?;
        let cycle = Cycle::new(space.count(), ports.len() as u64, rand)?;
        Ok(Self { space, ports: ports.into(), cycle })
    }

    /// Uses a given cycle (e.g. restored from a saved scan); it must fit the space and ports.
    pub fn with_cycle(
        space: Arc<TargetSpace>,
        ports: Vec<u16>,
        cycle: Cycle,
    ) -> Result<Self, InputError> {
        Self::check_inputs(&space, &ports)?;
        let bits_ip = bits_needed(space.count());
        let bits_port = bits_needed(ports.len() as u64);
        let fits = u32::from(cycle.bits_ip) == bits_ip
            && u32::from(cycle.bits_port) == bits_port
            && group_for_bits(bits_ip + bits_port).is_some_and(|g| g.prime == cycle.prime)
            && cycle.generator > 1
            && cycle.generator < cycle.prime
            && cycle.offset < cycle.prime;
        if !fits {
            return Err(InputError::new(
                "saved scan",
                "the saved cycle does not fit these targets",
            ));
        }
        Ok(Self { space, ports: ports.into(), cycle })
    }

    fn check_inputs(space: &TargetSpace, ports: &[u16]) -> Result<(), InputError> {
        if space.is_empty() {
            return Err(InputError::new(
                "targets",
                "no addresses are eligible to be scanned: the allowlist is empty or the \
                 blocklist excludes every allowlisted address",
            ));
        }
        if ports.is_empty() {
            return Err(InputError::new("--target-ports", "no target ports"));
        }
        Ok(())
    }

    /// The cycle (prime, generator, offset, bit layout), e.g. for the metadata.
    pub fn cycle(&self) -> &Cycle {
        &self.cycle
    }

    /// The address space.
    pub fn space(&self) -> &Arc<TargetSpace> {
        &self.space
    }

    /// The port list, in user order with duplicates.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Number of (address, port) targets: allowed addresses × ports.
    pub fn target_count(&self) -> u64 {
        self.space.count() * self.ports.len() as u64
    }

    /// Checks a shard × thread split: `1 <= shards <= 65535`, `shard < shards`,
    /// `1 <= threads <= 255`, `S = shards × threads < p - 1`, `S <= targets`, and
    /// `S <= max_targets` when a limit is set.
    pub fn check_split(
        &self,
        shard: u32,
        shards: u32,
        thread: u32,
        threads: u32,
        max_targets: Option<u64>,
    ) -> Result<(), InputError> {
        if shards == 0 || shards > 65535 {
            return Err(InputError::new("--shards", format!("{shards} is not in 1..65535")));
        }
        if shard >= shards {
            return Err(InputError::new(
                "--shard",
                format!("shard {shard} does not exist: shards are numbered 0..{}", shards - 1),
            ));
        }
        if threads == 0 || threads > 255 {
            return Err(InputError::new("--sender-threads", format!("{threads} is not in 1..255")));
        }
        if thread >= threads {
            return Err(InputError::new(
                "--sender-threads",
                format!("thread {thread} does not exist with {threads} threads"),
            ));
        }
        let s = u64::from(shards) * u64::from(threads);
        if s >= self.cycle.order() {
            return Err(InputError::new(
                "--shards",
                format!(
                    "{shards} shards x {threads} sender threads = {s} subshards, too many for \
                     a cycle of {} elements",
                    self.cycle.order()
                ),
            ));
        }
        if s > self.target_count() {
            return Err(InputError::new(
                "--shards",
                format!(
                    "{shards} shards x {threads} sender threads = {s} subshards, more than the \
                     {} targets",
                    self.target_count()
                ),
            ));
        }
        if let Some(m) = max_targets.filter(|&m| s > m) {
            return Err(InputError::new(
                "--max-targets",
                format!("{m} targets cannot be split over {s} subshards (shards x threads)"),
            ));
        }
        Ok(())
    }

    /// The subshard walked by sender `thread` of shard `shard`, with its share of the
    /// `-n` limit `max_targets` (`None` means no limit).
    pub fn subshard(
        &self,
        shard: u32,
        shards: u32,
        thread: u32,
        threads: u32,
        max_targets: Option<u64>,
    ) -> Result<Subshard, InputError> {
        self.check_split(shard, shards, thread, threads, max_targets)?;
        let count = shards * threads;
        let index = shard * threads + thread;
        let (first, last) = subshard_bounds(&self.cycle, index, count);
        let budget = max_targets.map(|m| max_targets_share(m, index, count));
        Ok(self.make_subshard(index, count, first, last, first, false, false, budget))
    }

    /// Rebuilds a subshard from a saved [`SubshardState`] (same seed, space and ports).
    pub fn resume(&self, state: &SubshardState) -> Result<Subshard, InputError> {
        let c = &self.cycle;
        if (state.prime, state.generator, state.offset) != (c.prime, c.generator, c.offset) {
            return Err(InputError::new(
                "saved scan",
                "the saved state belongs to a different permutation (seed, targets or ports differ)",
            ));
        }
        if state.subshards == 0
            || state.subshard >= state.subshards
            || u64::from(state.subshards) >= c.order()
            || state.current == 0
            || state.current >= c.prime
        {
            return Err(InputError::new("saved scan", "the saved subshard position is invalid"));
        }
        let (first, last) = subshard_bounds(c, state.subshard, state.subshards);
        let mut s = self.make_subshard(
            state.subshard,
            state.subshards,
            first,
            last,
            state.current,
            state.started,
            state.done,
            state.remaining,
        );
        s.emitted = state.emitted;
        s.filtered = state.filtered;
        s.walked = state.emitted + state.skipped + state.filtered;
        Ok(s)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_subshard(
        &self,
        index: u32,
        count: u32,
        first: u64,
        last: u64,
        current: u64,
        started: bool,
        done: bool,
        budget: Option<u64>,
    ) -> Subshard {
        let bits_port = u32::from(self.cycle.bits_port);
        let step = self.cycle.stepper();
        let mut powers = [step; AHEAD];
        for k in 1..AHEAD {
            powers[k] = MulModConst::new(step.apply(powers[k - 1].multiplier()), self.cycle.prime);
        }
        Subshard {
            space: Arc::clone(&self.space),
            ports: Arc::clone(&self.ports),
            filter: None,
            powers,
            last,
            current,
            started,
            done,
            first,
            ahead: [0; AHEAD],
            targets_ahead: 0,
            ahead_len: 0,
            next_base: 0,
            block_start: 0,
            walked: 0,
            limit: self.space.count() << bits_port,
            port_mask: (1u64 << bits_port) - 1,
            bits_port,
            nports: self.ports.len() as u64,
            budget: budget.unwrap_or(u64::MAX),
            limited: budget.is_some(),
            index,
            count,
            cycle: self.cycle,
            emitted: 0,
            filtered: 0,
        }
    }
}

/// First and last (exclusive) elements of subshard `index` of `count`.
fn subshard_bounds(cycle: &Cycle, index: u32, count: u32) -> (u64, u64) {
    let q = cycle.order();
    let step = q / u64::from(count);
    let begin = (step * u64::from(index) + cycle.offset) % q;
    let end = (step * u64::from((index + 1) % count) + cycle.offset) % q;
    (cycle.element_at(begin), cycle.element_at(end))
}

/// Subshard `index`'s share of a `-n` limit `max` split over `count` subshards:
/// `floor(max / count)`, plus one for the first `max mod count` subshards.
pub fn max_targets_share(max: u64, index: u32, count: u32) -> u64 {
    let count = u64::from(count.max(1));
    max / count + u64::from(u64::from(index) < max % count)
}

/// `-n p%`: `p` percent of `2^32 × num_ports` (not of the allowed space, as ZMap), truncated,
/// clamped to `[0, 2^32 × num_ports]`; NaN gives 0. (ZMap treats a resulting 0 as no limit.)
pub fn max_targets_from_percent(percent: f64, num_ports: usize) -> u64 {
    let whole = (1u64 << 32).saturating_mul(num_ports as u64);
    let v = percent * 4_294_967_296.0 * num_ports as f64 / 100.0;
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= whole as f64 {
        whole
    } else {
        v as u64
    }
}

/// Cycle elements a [`Subshard`] computes at once, ahead of the targets it returns.
///
/// The walk is one chain of modular multiplications, each waiting for the last; computing
/// the next `AHEAD` elements from one base with `g^1 … g^(AHEAD-1)` makes them independent,
/// and testing them all against the space at once takes the unpredictable "is this element a
/// target?" branch out of the walk (in a scan of 2^22 targets in the group of order 2^24+43,
/// three of four elements are not).
const AHEAD: usize = 16;
const _: () = assert!(AHEAD <= 32, "the targets mask is a u32");

/// One arc of the cycle, walked by one sender thread.
#[derive(Clone, Debug)]
pub struct Subshard {
    space: Arc<TargetSpace>,
    ports: Arc<[u16]>,
    filter: Option<Arc<IpList>>,
    /// Multiplication by `g^k`, `k = 1..=AHEAD` (index `k - 1`).
    powers: [MulModConst; AHEAD],
    last: u64,
    /// The element last walked (the first element until `started`).
    current: u64,
    started: bool,
    done: bool,
    first: u64,
    /// The elements after `current` up to where the look-ahead reached, in walk order:
    /// `ahead[k]` is `walked + 1 + k` (positions counted from the arc's first element = 1).
    ahead: [u64; AHEAD],
    /// Bits of the `ahead` elements that are targets (in the space and the port list) and
    /// not yet returned.
    targets_ahead: u32,
    /// How many `ahead` entries are valid (fewer than `AHEAD` where the arc ends; 0 before
    /// the first block).
    ahead_len: u32,
    /// The element after the look-ahead block (`ahead[0] × g^AHEAD`).
    next_base: u64,
    /// Position of `ahead[0]` minus one: the elements walked before the look-ahead block.
    block_start: u64,
    /// Elements walked (returned, filtered or skipped), i.e. the position of `current`.
    walked: u64,
    /// Valid elements satisfy `v - 1 < limit` (address index below the space's count).
    limit: u64,
    port_mask: u64,
    bits_port: u32,
    nports: u64,
    budget: u64,
    limited: bool,
    index: u32,
    count: u32,
    cycle: Cycle,
    emitted: u64,
    filtered: u64,
}

impl Subshard {
    /// Skips addresses not on `list` (`-I`); skipped targets do not use the `-n` budget.
    pub fn with_filter(mut self, list: Arc<IpList>) -> Self {
        self.filter = Some(list);
        self
    }

    /// The next target as (host-order address, port), or `None` when the arc is finished or
    /// the `-n` share is used up.
    #[inline]
    pub fn next_target(&mut self) -> Option<(u32, u16)> {
        if self.budget == 0 {
            return None;
        }
        loop {
            if self.targets_ahead == 0 {
                if !self.look_ahead() {
                    return None;
                }
                continue;
            }
            let k = self.targets_ahead.trailing_zeros();
            self.targets_ahead &= self.targets_ahead - 1;
            let elem = self.ahead[k as usize];
            self.current = elem;
            self.walked = self.block_start + 1 + u64::from(k);
            let v = elem - 1;
            let port = self.ports[(v & self.port_mask) as usize];
            let ip = self.space.nth(v >> self.bits_port);
            if self.filter.as_ref().is_some_and(|list| !list.contains(ip)) {
                self.filtered += 1;
                continue;
            }
            self.emitted += 1;
            self.budget -= 1;
            return Some((ip, port));
        }
    }

    /// Moves past the current look-ahead block and computes the next one; `false` (and the
    /// subshard done) when the arc has no element left.
    #[inline(never)]
    fn look_ahead(&mut self) -> bool {
        if self.done {
            return false;
        }
        // Everything in the old block was walked: the walk stands at its end.
        let base = if self.ahead_len > 0 {
            let len = self.ahead_len as usize;
            self.current = self.ahead[len - 1];
            self.walked = self.block_start + len as u64;
            if len < AHEAD {
                // That block stopped at `last`.
                self.done = true;
                return false;
            }
            self.next_base
        } else if self.started {
            // Resumed: the walk continues right after `current`.
            self.powers[0].apply(self.current)
        } else {
            self.current
        };
        let from_start = !self.started;
        self.started = true;
        self.block_start = self.walked;
        self.ahead[0] = base;
        for k in 1..AHEAD {
            self.ahead[k] = self.powers[k - 1].apply(base);
        }
        self.next_base = self.powers[AHEAD - 1].apply(base);
        // The arc stops before `last` (never at the very first element: a single subshard's
        // arc is the whole cycle, from `first` back round to `first`).
        let mut len = AHEAD as u32;
        for (k, &e) in self.ahead.iter().enumerate() {
            if e == self.last && !(k == 0 && from_start) {
                len = k as u32;
                break;
            }
        }
        self.ahead_len = len;
        let mut mask = 0u32;
        for (k, &e) in self.ahead.iter().enumerate() {
            let v = e.wrapping_sub(1);
            let target = (v < self.limit) & ((v & self.port_mask) < self.nports);
            mask |= u32::from(target) << k;
        }
        self.targets_ahead = mask & u32::MAX.checked_shr(32 - len).unwrap_or(0);
        if len == 0 {
            self.done = true;
            return false;
        }
        true
    }

    /// This subshard's index `i = shard × threads + thread`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// First element of the arc and the element where it stops (exclusive).
    pub fn bounds(&self) -> (u64, u64) {
        (self.first, self.last)
    }

    /// Targets emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Elements skipped because they fall outside the space or the port list.
    pub fn skipped(&self) -> u64 {
        self.walked - self.emitted - self.filtered
    }

    /// Targets skipped because their address is not on the `-I` list.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// The remaining `-n` share, or `None` without a limit.
    pub fn remaining(&self) -> Option<u64> {
        self.limited.then_some(self.budget)
    }

    /// A small serialisable snapshot for pause/resume (see [`ScanOrder::resume`]).
    pub fn state(&self) -> SubshardState {
        SubshardState {
            prime: self.cycle.prime,
            generator: self.cycle.generator,
            offset: self.cycle.offset,
            subshard: self.index,
            subshards: self.count,
            current: self.current,
            started: self.started,
            done: self.done,
            remaining: self.remaining(),
            emitted: self.emitted,
            skipped: self.skipped(),
            filtered: self.filtered,
        }
    }
}

impl Iterator for Subshard {
    type Item = (u32, u16);

    #[inline]
    fn next(&mut self) -> Option<(u32, u16)> {
        self.next_target()
    }
}

/// Where a subshard stands; restore it with [`ScanOrder::resume`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubshardState {
    /// The cycle's prime (checked on resume).
    pub prime: u64,
    /// The cycle's generator (checked on resume).
    pub generator: u64,
    /// The cycle's offset (checked on resume).
    pub offset: u64,
    /// Subshard index `i`.
    pub subshard: u32,
    /// Number of subshards `S`.
    pub subshards: u32,
    /// The element last walked (the first element when not started).
    pub current: u64,
    /// Whether the first element has been considered.
    pub started: bool,
    /// Whether the arc is finished.
    pub done: bool,
    /// The remaining `-n` share, `None` without a limit.
    pub remaining: Option<u64>,
    /// Targets emitted so far.
    pub emitted: u64,
    /// Elements skipped outside the space.
    pub skipped: u64,
    /// Targets skipped by the `-I` list.
    pub filtered: u64,
}

impl crate::engine::TargetSource for Subshard {
    /// The engine's view of [`Subshard::next_target`].
    #[inline]
    fn next_target(&mut self) -> Option<crate::target::Target> {
        Subshard::next_target(self).map(|(ip, port)| crate::target::Target::v4(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4Prefix, default_blocklist, parse_prefix};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn order(seed: u64, ports: &[u16], allow: Option<&[&str]>, block: &[Ipv4Prefix]) -> ScanOrder {
        let allow: Option<Vec<Ipv4Prefix>> =
            allow.map(|a| a.iter().map(|s| parse_prefix(s).unwrap()).collect());
        let space = Arc::new(TargetSpace::new(allow.as_deref(), block));
        ScanOrder::new(space, ports.to_vec(), &mut AesRand::from_seed(seed)).unwrap()
    }

    fn walk(o: &ScanOrder, shard: u32, shards: u32) -> Vec<String> {
        o.subshard(shard, shards, 0, 1, None)
            .unwrap()
            .map(|(ip, port)| {
                if o.ports() == [0] {
                    Ipv4Addr::from(ip).to_string()
                } else {
                    format!("{}:{port}", Ipv4Addr::from(ip))
                }
            })
            .collect()
    }

    fn with_prefix(prefix: &str, tails: &[&str]) -> Vec<String> {
        tails.iter().map(|t| format!("{prefix}{t}")).collect()
    }

    #[test]
    fn vector_seed1_slash30() {
        let o = order(1, &[0], Some(&["198.19.0.0/30"]), &[]);
        assert_eq!(o.cycle().generator, 74);
        assert_eq!(walk(&o, 0, 1), with_prefix("198.19.0.", &["1", "2", "0", "3"]));
    }

    #[test]
    fn vector_seed1_slash24() {
        let o = order(1, &[0], Some(&["198.19.0.0/24"]), &[]);
        assert_eq!(o.cycle().generator, 74);
        let got = walk(&o, 0, 1);
        assert_eq!(got.len(), 256);
        assert_eq!(
            got[..8],
            with_prefix("198.19.0.", &["19", "194", "37", "241", "174", "99", "203", "189"])[..]
        );
    }

    #[test]
    fn vector_seed7_three_ports() {
        let o = order(7, &[80, 443, 8080], Some(&["198.19.0.0/29"]), &[]);
        assert_eq!(o.cycle().generator, 115);
        let got = walk(&o, 0, 1);
        assert_eq!(got.len(), 24);
        let want = ["2:8080", "3:80", "2:80", "1:8080", "5:443", "6:443"];
        assert_eq!(got[..6], with_prefix("198.19.0.", &want)[..]);
    }

    #[test]
    fn vector_seed99_three_shards() {
        let o = order(99, &[0], Some(&["198.19.0.0/28"]), &[]);
        let p = "198.19.0.";
        assert_eq!(walk(&o, 0, 3), with_prefix(p, &["12", "10", "0", "11", "5", "15"]));
        assert_eq!(walk(&o, 1, 3), with_prefix(p, &["14", "2", "7"]));
        assert_eq!(walk(&o, 2, 3), with_prefix(p, &["3", "9", "13", "1", "4", "6", "8"]));
        // The shards are consecutive pieces of the single-shard sequence.
        let all: Vec<String> = (0..3).flat_map(|s| walk(&o, s, 3)).collect();
        assert_eq!(walk(&o, 0, 1), all);
    }

    #[test]
    fn vector_seed5_slash16() {
        let o = order(5, &[0], Some(&["198.18.0.0/16"]), &[]);
        assert_eq!((o.cycle().prime, o.cycle().generator), (65537, 3842));
        let got: Vec<String> = walk(&o, 0, 1).into_iter().take(4).collect();
        assert_eq!(got, with_prefix("198.18.", &["58.13", "66.180", "28.128", "198.86"]));
    }

    #[test]
    fn vector_full_ipv4_default_blocklist() {
        let o = order(1, &[0], None, &default_blocklist());
        assert_eq!(o.space().count(), 3_702_258_432);
        assert_eq!(o.cycle().generator, 1_576_669);
        let mut s = o.subshard(0, 1, 0, 1, None).unwrap();
        let got: Vec<String> =
            (0..5).map(|_| Ipv4Addr::from(s.next_target().unwrap().0).to_string()).collect();
        assert_eq!(
            got,
            [
                "204.150.148.199",
                "71.100.173.44",
                "168.120.35.223",
                "17.132.81.138",
                "72.162.31.108"
            ]
        );
    }

    #[test]
    fn vector_full_ipv4_two_ports() {
        let o = order(1, &[80, 443], None, &default_blocklist());
        assert_eq!(o.cycle().generator, 1_576_673);
        assert_eq!(o.target_count(), 2 * 3_702_258_432);
        let mut s = o.subshard(0, 1, 0, 1, None).unwrap();
        let got: Vec<String> = (0..3)
            .map(|_| {
                let (ip, port) = s.next_target().unwrap();
                format!("{}:{port}", Ipv4Addr::from(ip))
            })
            .collect();
        assert_eq!(got, ["190.101.252.137:80", "65.144.8.181:443", "146.46.213.204:443"]);
    }

    #[test]
    fn split_constraints_and_errors() {
        let o = order(1, &[0], Some(&["198.19.0.0/30"]), &[]);
        assert!(o.subshard(0, 4, 0, 1, None).is_ok());
        assert!(o.subshard(0, 5, 0, 1, None).is_err()); // more subshards than targets
        assert!(o.subshard(0, 2, 0, 2, Some(3)).is_err()); // more subshards than -n
        assert!(o.subshard(2, 2, 0, 1, None).is_err());
        assert!(o.subshard(0, 1, 1, 1, None).is_err());
        assert!(o.subshard(0, 0, 0, 1, None).is_err());
        // S must stay below the group order (256 for p = 257).
        let big = order(1, &[0], Some(&["198.19.0.0/24"]), &[]);
        let e = big.subshard(0, 256, 0, 1, None).unwrap_err();
        assert!(e.to_string().contains("too many"), "{e}");
        assert!(big.subshard(0, 255, 0, 1, None).is_ok());
        let empty = Arc::new(TargetSpace::new(Some(&[]), &[]));
        let e = ScanOrder::new(empty, vec![80], &mut AesRand::from_seed(1)).unwrap_err();
        assert!(e.to_string().starts_with("targets: no addresses are eligible"), "{e}");
        let space = Arc::new(TargetSpace::new(None, &[]));
        let e = ScanOrder::new(space, vec![1; 131_070], &mut AesRand::from_seed(1)).unwrap_err();
        assert!(e.to_string().contains("largest cyclic group"), "{e}");
    }

    #[test]
    fn max_targets_arithmetic() {
        let shares: Vec<u64> = (0..4).map(|i| max_targets_share(10, i, 4)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!(max_targets_share(2, 3, 4), 0);
        assert_eq!(max_targets_from_percent(100.0, 1), 1 << 32);
        assert_eq!(max_targets_from_percent(50.0, 2), 1 << 32);
        assert_eq!(max_targets_from_percent(0.001, 1), 42_949);
        assert_eq!(max_targets_from_percent(-1.0, 1), 0);
        assert_eq!(max_targets_from_percent(f64::NAN, 1), 0);
        assert_eq!(max_targets_from_percent(1e9, 3), 3 << 32);
        // The budget stops a subshard after its share.
        let o = order(1, &[0], Some(&["198.19.0.0/24"]), &[]);
        let counts: Vec<usize> =
            (0..3).map(|t| o.subshard(0, 1, t, 3, Some(10)).unwrap().count()).collect();
        assert_eq!(counts, [4, 3, 3]);
    }

    #[test]
    fn ip_list_filter_uses_the_right_port() {
        let o = order(7, &[80, 443, 8080], Some(&["198.19.0.0/29"]), &[]);
        let mut list = IpList::new();
        list.insert(u32::from(Ipv4Addr::new(198, 19, 0, 2)));
        let list = Arc::new(list);
        let all: Vec<(u32, u16)> = o.subshard(0, 1, 0, 1, None).unwrap().collect();
        let want: Vec<(u32, u16)> = all.iter().copied().filter(|t| list.contains(t.0)).collect();
        let mut s = o.subshard(0, 1, 0, 1, Some(2)).unwrap().with_filter(Arc::clone(&list));
        let got: Vec<(u32, u16)> = s.by_ref().collect();
        assert_eq!(got, want[..2]);
        assert_eq!(got[0].1, 8080); // .2:8080 comes first in the unfiltered order
        assert_eq!(s.emitted(), 2);
        let got: Vec<(u32, u16)> =
            o.subshard(0, 1, 0, 1, None).unwrap().with_filter(list).collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn engine_target_source() {
        fn drain<S: crate::engine::TargetSource>(mut s: S) -> Vec<crate::target::Target> {
            std::iter::from_fn(|| s.next_target()).collect()
        }
        let o = order(1, &[0], Some(&["198.19.0.0/30"]), &[]);
        let got = drain(o.subshard(0, 1, 0, 1, None).unwrap());
        assert_eq!(got[0], crate::target::Target::v4(0xc613_0001, 0));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn state_round_trips_through_json() {
        let o = order(3, &[22, 80, 443], Some(&["198.19.0.0/22"]), &[]);
        let full: Vec<(u32, u16)> = o.subshard(1, 2, 0, 2, Some(1000)).unwrap().collect();
        for cut in [0usize, 1, 17, full.len()] {
            let mut s = o.subshard(1, 2, 0, 2, Some(1000)).unwrap();
            let mut got: Vec<(u32, u16)> = s.by_ref().take(cut).collect();
            let json = serde_json::to_string(&s.state()).unwrap();
            let state: SubshardState = serde_json::from_str(&json).unwrap();
            let mut r = o.resume(&state).unwrap();
            got.extend(r.by_ref());
            assert_eq!(got, full, "cut {cut}");
            assert_eq!(r.emitted(), full.len() as u64);
            assert_eq!(r.remaining(), Some(250 - full.len() as u64));
        }
        let mut bad = o.subshard(0, 1, 0, 1, None).unwrap().state();
        bad.generator += 1;
        assert!(o.resume(&bad).is_err());
        let mut bad = o.subshard(0, 1, 0, 1, None).unwrap().state();
        bad.current = 0;
        assert!(o.resume(&bad).is_err());
    }

    #[test]
    fn large_groups_stay_permutations() {
        // 2^44+7 and 2^48+21 overflow a 64-bit product; the walk must still reach `last`.
        for bits in [44u32, 48] {
            let group = group_for_bits(bits).unwrap();
            let cycle = Cycle {
                prime: group.prime,
                generator: (1u64 << 21..)
                    .find(|&g| crate::cyclic::is_primitive_root(g, group))
                    .unwrap(),
                offset: 12345,
                bits_ip: 32,
                bits_port: (bits - 32) as u8,
            };
            let step = cycle.stepper();
            let mut x = cycle.element_at(cycle.order() - 1000);
            for _ in 0..1000 {
                x = step.apply(x);
            }
            assert_eq!(x, 1, "g^(Q) must be 1 for p = {}", group.prime);
            // Where upstream's 64-bit product wraps, the exact step differs from it.
            let big = group.prime - 2;
            let wrapped = big.wrapping_mul(cycle.generator) % group.prime;
            assert_eq!(step.apply(big), crate::cyclic::mul_mod(big, cycle.generator, group.prime));
            assert_ne!(step.apply(big), wrapped);
        }
    }

    /// Small allow/block lists near a few bases, so the space stays small.
    fn arb_prefix() -> impl Strategy<Value = Ipv4Prefix> {
        (prop::sample::select(vec![0u32, 0x0a00_0000, 0xc613_0000]), 0u32..4096, 22u8..=32)
            .prop_map(|(base, off, len)| Ipv4Prefix::new(base + off, len))
    }

    /// A target of the plain walk, the element it came from and the elements skipped before it.
    type Walked = ((u32, u16), u64, u64);

    /// The arc walked one element at a time with the plain step, as ZMap does: each target
    /// as [`Walked`], then the total skipped.
    fn naive_walk(o: &ScanOrder, s: &Subshard) -> (Vec<Walked>, u64) {
        let (first, last) = s.bounds();
        let step = o.cycle().stepper();
        let bits_port = u32::from(o.cycle().bits_port);
        let limit = o.space().count() << bits_port;
        let (mut out, mut skipped, mut e) = (Vec::new(), 0, first);
        loop {
            let v = e - 1;
            let port = o.ports().get((v & ((1 << bits_port) - 1)) as usize);
            match port {
                Some(&port) if v < limit => {
                    out.push(((o.space().nth(v >> bits_port), port), e, skipped));
                }
                _ => skipped += 1,
            }
            e = step.apply(e);
            if e == last {
                return (out, skipped);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_target_exactly_once_across_subshards(
            allow in prop::collection::vec(arb_prefix(), 1..5),
            block in prop::collection::vec(arb_prefix(), 0..4),
            ports in prop::collection::vec(prop::sample::select(vec![0u16, 22, 80, 443, 65535]), 1..5),
            seed in any::<u64>(),
            shards in 1u32..4,
            threads in 1u32..4,
        ) {
            let space = Arc::new(TargetSpace::new(Some(&allow), &block));
            prop_assume!(!space.is_empty());
            let o = ScanOrder::new(Arc::clone(&space), ports.clone(), &mut AesRand::from_seed(seed)).unwrap();
            prop_assume!(o.check_split(0, shards, 0, threads, None).is_ok());
            let mut got = Vec::new();
            for shard in 0..shards {
                for thread in 0..threads {
                    got.extend(o.subshard(shard, shards, thread, threads, None).unwrap());
                }
            }
            for &(ip, _) in &got {
                prop_assert!(ip != 0 && allow.iter().any(|p| p.contains(ip)));
                prop_assert!(!block.iter().any(|p| p.contains(ip)));
            }
            let mut want: Vec<(u32, u16)> = Vec::new();
            for i in 0..space.count() {
                want.extend(ports.iter().map(|&p| (space.nth(i), p)));
            }
            want.sort_unstable();
            got.sort_unstable();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn look_ahead_walk_matches_the_plain_walk(
            allow in prop::collection::vec(arb_prefix(), 1..4),
            block in prop::collection::vec(arb_prefix(), 0..3),
            ports in prop::collection::vec(prop::sample::select(vec![22u16, 80, 443]), 1..6),
            seed in any::<u64>(),
            subshards in 1u32..6,
            cut_at in any::<prop::sample::Index>(),
        ) {
            let space = Arc::new(TargetSpace::new(Some(&allow), &block));
            prop_assume!(!space.is_empty());
            let o = ScanOrder::new(space, ports, &mut AesRand::from_seed(seed)).unwrap();
            prop_assume!(o.check_split(0, 1, 0, subshards, None).is_ok());
            for t in 0..subshards {
                let mut s = o.subshard(0, 1, t, subshards, None).unwrap();
                let (want, skipped) = naive_walk(&o, &s);
                // Target by target: the same target, and the state names its element and the
                // elements skipped so far.
                let cut = cut_at.index(want.len() + 1);
                let mut saved = None;
                for (i, &(target, elem, skipped_before)) in want.iter().enumerate() {
                    if i == cut {
                        saved = Some(s.state());
                    }
                    prop_assert_eq!(s.next_target(), Some(target));
                    let st = s.state();
                    prop_assert_eq!((st.current, st.skipped, st.emitted), (elem, skipped_before, i as u64 + 1));
                }
                prop_assert_eq!(s.next_target(), None);
                prop_assert_eq!(s.next_target(), None);
                prop_assert_eq!((s.skipped(), s.emitted()), (skipped, want.len() as u64));
                // Resuming from the state saved at the cut gives the rest.
                let saved = saved.unwrap_or_else(|| s.state());
                let rest: Vec<(u32, u16)> = o.resume(&saved).unwrap().collect();
                let want_rest: Vec<(u32, u16)> = want[cut..].iter().map(|w| w.0).collect();
                prop_assert_eq!(rest, want_rest);
            }
        }

        #[test]
        fn budgets_cap_each_subshard(
            seed in any::<u64>(),
            threads in 1u32..5,
            max in 1u64..600,
        ) {
            let o = order(seed, &[80, 443], Some(&["198.19.0.0/24"]), &[]);
            prop_assume!(max >= u64::from(threads));
            let mut total = 0;
            for t in 0..threads {
                let unlimited = o.subshard(0, 1, t, threads, None).unwrap().count() as u64;
                let share = max_targets_share(max, t, threads);
                let n = o.subshard(0, 1, t, threads, Some(max)).unwrap().count() as u64;
                prop_assert_eq!(n, share.min(unlimited));
                total += n;
            }
            prop_assert!(total <= max);
        }
    }
}
