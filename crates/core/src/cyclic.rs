//! ZMap's cyclic-group permutation: prime groups, the generator and offset chosen from the
//! seed's [`AesRand`], and exact modular arithmetic.
//!
//! Elements of the multiplicative group mod p are `1..p`; element `v` stands for target index
//! `v - 1`, split into an address index (high bits) and a port index (low `bits_port` bits).
//! Unlike ZMap, the step `cur * g mod p` never overflows (ZMap's 64-bit product wraps for the
//! 2^44+7 and 2^48+21 groups); for every group ZMap handles correctly the results are identical.

use serde::{Deserialize, Serialize};

use crate::aesrand::AesRand;
use crate::error::InputError;

/// A prime group: `prime` and the distinct prime factors of `prime - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// The prime modulus p.
    pub prime: u64,
    /// Distinct prime factors of p - 1 (for the primitive-root test).
    pub factors: &'static [u64],
}

/// ZMap 4's groups, ascending; a scan uses the first with `prime > 2^(bits_ip + bits_port)`.
pub const GROUPS: &[Group] = &[
    Group { prime: (1 << 8) + 1, factors: &[2] },
    Group { prime: (1 << 16) + 1, factors: &[2] },
    Group { prime: (1 << 24) + 43, factors: &[2, 23, 103, 3541] },
    Group { prime: (1 << 28) + 3, factors: &[2, 3, 19, 87211] },
    Group { prime: (1 << 32) + 15, factors: &[2, 3, 5, 131, 364289] },
    Group { prime: (1 << 33) + 17, factors: &[2, 3, 59, 3033169] },
    Group { prime: (1 << 34) + 25, factors: &[2, 83, 1277, 20261] },
    Group { prime: (1 << 36) + 31, factors: &[2, 163, 883, 238727] },
    Group { prime: (1 << 40) + 15, factors: &[2, 3, 5, 36650387593] },
    Group { prime: (1 << 44) + 7, factors: &[2, 11, 53, 97, 155542661] },
    // Upstream's comment (and compat §4.2) says 2^48+23, which is not prime; the value ZMap
    // uses, and whose p - 1 the factors belong to, is 2^48+21.
    Group { prime: (1 << 48) + 21, factors: &[2, 3, 7, 1361, 2462081249] },
];

/// Generators are kept below 2^22 (ZMap's bound).
pub const MAX_GENERATOR: u64 = 1 << 22;

/// Bits needed to index `n` items: the bit length of `n - 1` (0 for `n <= 1`).
pub fn bits_needed(n: u64) -> u32 {
    if n <= 1 { 0 } else { 64 - (n - 1).leading_zeros() }
}

/// The first group whose prime exceeds `2^bits`, if any.
pub fn group_for_bits(bits: u32) -> Option<&'static Group> {
    if bits >= 63 {
        return None;
    }
    GROUPS.iter().find(|g| g.prime > 1u64 << bits)
}

/// `a * b mod m`, exact for any 64-bit operands (128-bit product).
#[inline]
pub fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

/// `base^exp mod m` by square-and-multiply with exact products. `m` must be at least 1.
pub fn pow_mod(base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    let mut b = base % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, b, m);
        }
        b = mul_mod(b, b, m);
        exp >>= 1;
    }
    result
}

/// Multiplication by a fixed `w` modulo a fixed `p < 2^63` without division (Shoup's method:
/// a precomputed `floor(w * 2^64 / p)` gives the quotient up to one, fixed by a subtraction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulModConst {
    w: u64,
    w_shoup: u64,
    p: u64,
}

impl MulModConst {
    /// Prepares multiplication by `w mod p`. Requires `1 <= p < 2^63`.
    pub fn new(w: u64, p: u64) -> Self {
        debug_assert!((1..1 << 63).contains(&p));
        let w = w % p;
        let w_shoup = ((u128::from(w) << 64) / u128::from(p)) as u64;
        Self { w, w_shoup, p }
    }

    /// The multiplier `w mod p`.
    pub fn multiplier(&self) -> u64 {
        self.w
    }

    /// `x * w mod p` for any `x < 2^64`.
    #[inline(always)]
    pub fn apply(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.w_shoup)) >> 64) as u64;
        let r = x.wrapping_mul(self.w).wrapping_sub(q.wrapping_mul(self.p));
        if r >= self.p { r - self.p } else { r }
    }
}

/// Whether `g` generates the whole multiplicative group of `group`.
pub fn is_primitive_root(g: u64, group: &Group) -> bool {
    let p = group.prime;
    !g.is_multiple_of(p) && group.factors.iter().all(|&q| pow_mod(g, (p - 1) / q, p) != 1)
}

/// ZMap's generator search: start from the low 32 bits of the next word mod p (kept as a
/// 32-bit value), then step `c = (c + 1) mod p mod 2^22`, skipping 0, until `c` is a
/// primitive root.
pub fn find_generator(group: &Group, rand: &mut AesRand) -> u64 {
    let p = group.prime;
    let mut c = ((rand.next_word() & 0xffff_ffff) % p) as u32;
    loop {
        c = c.wrapping_add(1);
        c = ((u64::from(c) % p) % MAX_GENERATOR) as u32;
        if c != 0 && is_primitive_root(u64::from(c), group) {
            return u64::from(c);
        }
    }
}

/// The permutation of one scan: group, generator, offset, and the element layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cycle {
    /// The group's prime p; the cycle has order `p - 1`.
    pub prime: u64,
    /// A primitive root mod p below 2^22.
    pub generator: u64,
    /// The exponent where subshard 0 starts, in `[0, p - 1)`.
    pub offset: u64,
    /// Bits of the element index used for the address index.
    pub bits_ip: u8,
    /// Low bits of the element index used for the port index.
    pub bits_port: u8,
}

impl Cycle {
    /// Chooses the cycle for `num_ips` addresses and `num_ports` ports from `rand`, exactly as
    /// ZMap: group by bit counts, generator from the next word, offset from the word after.
    pub fn new(num_ips: u64, num_ports: u64, rand: &mut AesRand) -> Result<Self, InputError> {
        let bits_ip = bits_needed(num_ips);
        let bits_port = bits_needed(num_ports);
        let group = group_for_bits(bits_ip + bits_port).ok_or_else(|| {
            InputError::new(
                "targets",
                format!(
                    "{num_ips} addresses x {num_ports} ports need 2^{} elements, more than the \
                     largest cyclic group (2^48+21); use fewer ports",
                    bits_ip + bits_port
                ),
            )
        })?;
        let generator = find_generator(group, rand);
        let offset = (rand.next_word() & 0xffff_ffff) % group.prime;
        Ok(Self {
            prime: group.prime,
            generator,
            offset,
            bits_ip: bits_ip as u8,
            bits_port: bits_port as u8,
        })
    }

    /// The number of group elements, `p - 1`.
    pub fn order(&self) -> u64 {
        self.prime - 1
    }

    /// `g^e mod p`.
    pub fn element_at(&self, exponent: u64) -> u64 {
        pow_mod(self.generator, exponent, self.prime)
    }

    /// The fast multiply-by-generator step for this cycle.
    pub fn stepper(&self) -> MulModConst {
        MulModConst::new(self.generator, self.prime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn group_table_is_sound() {
        for g in GROUPS {
            // p - 1 factors completely into the listed primes.
            let mut rest = g.prime - 1;
            for &q in g.factors {
                assert!(rest % q == 0, "{} not a factor of {}", q, g.prime - 1);
                while rest % q == 0 {
                    rest /= q;
                }
                // Each factor is prime (trial division is quick for all but the large ones).
                if q < 1 << 40 {
                    let mut d = 2;
                    while d * d <= q {
                        assert!(q % d != 0, "{q} is not prime");
                        d += 1;
                    }
                }
            }
            assert_eq!(rest, 1, "factors of {} incomplete", g.prime - 1);
            // p is a (Fermat/Miller) probable prime for several bases.
            for a in [2u64, 3, 5, 7, 11, 13] {
                assert_eq!(pow_mod(a, g.prime - 1, g.prime), 1);
            }
        }
        assert_eq!(group_for_bits(2).unwrap().prime, 257);
        assert_eq!(group_for_bits(8).unwrap().prime, 257);
        assert_eq!(group_for_bits(9).unwrap().prime, 65537);
        assert_eq!(group_for_bits(32).unwrap().prime, (1 << 32) + 15);
        assert_eq!(group_for_bits(48).unwrap().prime, 281_474_976_710_677);
        assert_eq!(group_for_bits(49), None);
        assert_eq!(bits_needed(1), 0);
        assert_eq!(bits_needed(2), 1);
        assert_eq!(bits_needed(3), 2);
        assert_eq!(bits_needed(256), 8);
        assert_eq!(bits_needed(257), 9);
    }

    #[test]
    fn generators_of_the_spec_vectors() {
        // compat §4.2: seed 1 over a /30 or /24 → g = 74 (group 257).
        let c = Cycle::new(4, 1, &mut AesRand::from_seed(1)).unwrap();
        assert_eq!((c.prime, c.generator), (257, 74));
        let c = Cycle::new(256, 1, &mut AesRand::from_seed(1)).unwrap();
        assert_eq!((c.prime, c.generator), (257, 74));
        let c = Cycle::new(8, 3, &mut AesRand::from_seed(7)).unwrap();
        assert_eq!((c.prime, c.generator), (257, 115));
        let c = Cycle::new(65536, 1, &mut AesRand::from_seed(5)).unwrap();
        assert_eq!((c.prime, c.generator), (65537, 3842));
        let c = Cycle::new(3_702_258_432, 1, &mut AesRand::from_seed(1)).unwrap();
        assert_eq!((c.prime, c.generator), ((1 << 32) + 15, 1_576_669));
        let c = Cycle::new(3_702_258_432, 2, &mut AesRand::from_seed(1)).unwrap();
        assert_eq!((c.prime, c.generator), ((1 << 33) + 17, 1_576_673));
        assert!(Cycle::new(u32::MAX as u64, 131_070, &mut AesRand::from_seed(1)).is_err());
    }

    #[test]
    fn small_group_generator_is_a_permutation() {
        let c = Cycle::new(200, 1, &mut AesRand::from_seed(3)).unwrap();
        let step = c.stepper();
        let mut seen = vec![false; c.prime as usize];
        let mut x = 1;
        for _ in 0..c.order() {
            assert!(!seen[x as usize]);
            seen[x as usize] = true;
            x = step.apply(x);
        }
        assert_eq!(x, 1);
    }

    proptest! {
        #[test]
        fn shoup_step_matches_u128(gi in 0usize..GROUPS.len(), w in 1u64..MAX_GENERATOR, x in any::<u64>()) {
            let p = GROUPS[gi].prime;
            let x = x % p;
            prop_assert_eq!(MulModConst::new(w, p).apply(x), mul_mod(x, w, p));
        }

        #[test]
        fn pow_mod_matches_repeated_multiplication(b in 0u64..1 << 48, e in 0u64..64) {
            let p = GROUPS[10].prime;
            let mut r = 1u64;
            for _ in 0..e {
                r = mul_mod(r, b, p);
            }
            prop_assert_eq!(pow_mod(b, e, p), r);
        }
    }
}
