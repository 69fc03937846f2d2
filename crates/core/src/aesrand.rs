//! ZMap's AES-based random number generator, seeded from `--seed`.
//!
//! The key is the seed as 8 little-endian bytes followed by 8 zero bytes; the state is a
//! 16-byte block starting at zero. Each fresh word encrypts the state in place and returns its
//! first 8 bytes (little-endian); the next call returns the other 8 bytes of the same block.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use serde::{Deserialize, Serialize};

/// A deterministic 64-bit word generator, identical to ZMap's `aesrand`.
#[derive(Clone)]
pub struct AesRand {
    cipher: Aes128,
    state: [u8; 16],
    /// True when the second half of `state` has not been returned yet.
    half_left: bool,
}

/// The serialisable position of an [`AesRand`] (the key is re-derived from the seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AesRandState {
    /// The seed the key came from.
    pub seed: u64,
    /// The current block.
    pub block: [u8; 16],
    /// Whether the block's second word is still unused.
    pub half_left: bool,
}

impl AesRand {
    /// A generator whose key is derived from a 64-bit seed, as ZMap's `aesrand_init_from_seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Self::from_key(key)
    }

    /// A generator with an explicit 128-bit key and a zero state.
    pub fn from_key(key: [u8; 16]) -> Self {
        Self {
            cipher: Aes128::new(GenericArray::from_slice(&key)),
            state: [0u8; 16],
            half_left: false,
        }
    }

    /// Restores a generator at a saved position.
    pub fn restore(s: &AesRandState) -> Self {
        let mut r = Self::from_seed(s.seed);
        r.state = s.block;
        r.half_left = s.half_left;
        r
    }

    /// The next 64-bit word.
    pub fn next_word(&mut self) -> u64 {
        if self.half_left {
            self.half_left = false;
            return u64::from_le_bytes(self.state[8..16].try_into().expect("8 bytes"));
        }
        let block = GenericArray::from_mut_slice(&mut self.state);
        self.cipher.encrypt_block(block);
        self.half_left = true;
        u64::from_le_bytes(self.state[0..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_of_one_block_are_consecutive_words() {
        let mut a = AesRand::from_seed(1);
        let w1 = a.next_word();
        let w2 = a.next_word();
        let w3 = a.next_word();
        let mut b = AesRand::from_seed(1);
        assert_eq!((w1, w2, w3), (b.next_word(), b.next_word(), b.next_word()));
        assert_ne!(w1, w2);
        assert_ne!(w2, w3);
        // The first word is the low half of AES(key(seed), 0^16).
        let mut key = [0u8; 16];
        key[0] = 1;
        let c = Aes128::new(GenericArray::from_slice(&key));
        let mut blk = GenericArray::from([0u8; 16]);
        c.encrypt_block(&mut blk);
        assert_eq!(w1, u64::from_le_bytes(blk[..8].try_into().unwrap()));
        assert_eq!(w2, u64::from_le_bytes(blk[8..].try_into().unwrap()));
    }
}
