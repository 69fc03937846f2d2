//! Dedup cost per response: the paged bitmap and the 1,000,000-entry LRU window.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rzmap_core::dedup::{Dedup, DedupMethod, LruWindow};

fn keys(n: usize) -> Vec<u32> {
    let mut x = 0x1234_5678u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ks = keys(1 << 20);
    // Responders inside one /8 (256 pages, 2 MiB), pages already allocated.
    let in8: Vec<u32> = ks.iter().map(|k| 0x0A00_0000 | (k & 0x00FF_FFFF)).collect();
    c.bench_function("dedup_full_check", |b| {
        let mut d = Dedup::new(DedupMethod::Full, 0);
        for &k in &in8 {
            d.check(k, 80, true);
        }
        let ks = &in8;
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            d.check(black_box(ks[i]), 80, true)
        })
    });
    c.bench_function("dedup_window_10k_insert_evict", |b| {
        let mut w = LruWindow::new(10_000);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            w.check_and_insert(black_box(ks[i] & 0x3FFF), (i & 1) as u16)
        })
    });
    c.bench_function("dedup_window_1m_insert_evict", |b| {
        let mut w = LruWindow::new(1_000_000);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            w.check_and_insert(black_box(ks[i]), (i & 7) as u16)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
