//! Full-IPv4 coverage: every allowed address of the default-blocklisted space is emitted
//! exactly once, one port, split over several subshards. Uses a 2^32-bit (512 MiB) bitmap.
//!
//! Ignored by default (minutes of CPU). Run it in release:
//!
//! ```text
//! cargo test -p rzmap-core --release --test full_space -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;

use rzmap_core::addr::{TargetSpace, default_blocklist};
use rzmap_core::aesrand::AesRand;
use rzmap_core::iter::ScanOrder;

#[test]
#[ignore = "walks all 2^32 elements with a 512 MiB bitmap; run with --release -- --ignored"]
fn full_ipv4_every_allowed_address_exactly_once() {
    let start = Instant::now();
    let space = Arc::new(TargetSpace::new(None, &default_blocklist()));
    assert_eq!(space.count(), 3_702_258_432);
    let order = ScanOrder::new(Arc::clone(&space), vec![443], &mut AesRand::from_seed(42)).unwrap();
    let mut seen = vec![0u64; 1 << 26];
    let mut total = 0u64;
    let (shards, threads) = (3u32, 2u32);
    for shard in 0..shards {
        for thread in 0..threads {
            let mut sub = order.subshard(shard, shards, thread, threads, None).unwrap();
            while let Some((ip, port)) = sub.next_target() {
                assert_eq!(port, 443);
                let (word, bit) = ((ip >> 6) as usize, 1u64 << (ip & 63));
                assert_eq!(seen[word] & bit, 0, "{ip:#x} emitted twice");
                seen[word] |= bit;
                total += 1;
            }
        }
    }
    assert_eq!(total, space.count());
    // Every emitted address is allowed, and (the counts being equal) every allowed one was emitted.
    for (word, &bits) in seen.iter().enumerate() {
        let mut b = bits;
        while b != 0 {
            let ip = ((word as u32) << 6) | b.trailing_zeros();
            assert!(space.is_allowed(ip), "{ip:#x} is not allowed");
            b &= b - 1;
        }
    }
    eprintln!("full IPv4 coverage: {total} targets in {:.1?}", start.elapsed());
}
