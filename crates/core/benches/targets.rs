//! Target-order benchmarks: the permutation step, `nth`, `is_allowed`, and `next_target`
//! throughput over the full IPv4 space with the default blocklist (the `--fast-dryrun` path).
//!
//! Run: `cargo bench -p rzmap-core --bench targets`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap_core::addr::{TargetSpace, default_blocklist, parse_prefix};
use rzmap_core::aesrand::AesRand;
use rzmap_core::cyclic::{Cycle, mul_mod};
use rzmap_core::iter::ScanOrder;

const BATCH: u64 = 1 << 16;

fn step(c: &mut Criterion) {
    let cycle = Cycle::new(3_702_258_432, 1, &mut AesRand::from_seed(1)).unwrap();
    let mut g = c.benchmark_group("permutation_step");
    g.throughput(Throughput::Elements(BATCH));
    let stepper = cycle.stepper();
    g.bench_function("shoup", |b| {
        b.iter(|| {
            let mut x = black_box(12345u64);
            for _ in 0..BATCH {
                x = stepper.apply(x);
            }
            x
        })
    });
    g.bench_function("u128_rem", |b| {
        b.iter(|| {
            let mut x = black_box(12345u64);
            for _ in 0..BATCH {
                x = mul_mod(x, cycle.generator, cycle.prime);
            }
            x
        })
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let full = TargetSpace::new(None, &default_blocklist());
    let small: Vec<_> = ["198.19.0.0/22", "10.1.2.0/23", "172.16.5.128/25"]
        .iter()
        .map(|s| parse_prefix(s).unwrap())
        .collect();
    let small = TargetSpace::new(Some(&small), &[]);
    let mut g = c.benchmark_group("space");
    g.throughput(Throughput::Elements(BATCH));
    for (name, space) in [("full", &full), ("small", &small)] {
        let n = space.count();
        g.bench_function(format!("nth_{name}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                let mut i = 0x9e37_79b9u64 % n;
                for _ in 0..BATCH {
                    acc ^= space.nth(i);
                    i = (i + 0x9e37_79b9) % n;
                }
                acc
            })
        });
        g.bench_function(format!("is_allowed_{name}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                let mut ip = 0x1234_5678u32;
                for _ in 0..BATCH {
                    acc += u32::from(space.is_allowed(ip));
                    ip = ip.wrapping_mul(0x9e37_79b9).wrapping_add(1);
                }
                acc
            })
        });
    }
    g.finish();
}

fn next_target(c: &mut Criterion) {
    let space = Arc::new(TargetSpace::new(None, &default_blocklist()));
    let mut g = c.benchmark_group("next_target");
    g.throughput(Throughput::Elements(BATCH));
    for ports in [vec![80u16], vec![80, 443, 8080]] {
        let order =
            ScanOrder::new(Arc::clone(&space), ports.clone(), &mut AesRand::from_seed(1)).unwrap();
        let mut sub = order.subshard(0, 1, 0, 1, None).unwrap();
        g.bench_function(format!("full_ipv4_{}_ports", ports.len()), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for _ in 0..BATCH {
                    match sub.next_target() {
                        Some((ip, port)) => acc ^= ip ^ u32::from(port),
                        None => sub = order.subshard(0, 1, 0, 1, None).unwrap(),
                    }
                }
                acc
            })
        });
    }
    let small = Arc::new(TargetSpace::new(Some(&[parse_prefix("198.19.0.0/20").unwrap()]), &[]));
    let order = ScanOrder::new(small, vec![80], &mut AesRand::from_seed(1)).unwrap();
    let mut sub = order.subshard(0, 1, 0, 1, None).unwrap();
    g.bench_function("slash20_1_port", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for _ in 0..BATCH {
                match sub.next_target() {
                    Some((ip, port)) => acc ^= ip ^ u32::from(port),
                    None => sub = order.subshard(0, 1, 0, 1, None).unwrap(),
                }
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, step, lookups, next_target);
criterion_main!(benches);
