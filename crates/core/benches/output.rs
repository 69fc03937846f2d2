//! Records per second through the csv and json encoders/modules and the output filter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap_core::fields::{FieldDef, FieldType, Record, Schema};
use rzmap_core::filter::Filter;
use rzmap_core::output::{FieldSelection, create};

const TCP: &[FieldDef] = &[
    FieldDef::new("sport", FieldType::Int, "TCP source port"),
    FieldDef::new("dport", FieldType::Int, "TCP destination port"),
    FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
    FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
    FieldDef::new("window", FieldType::Int, "TCP window"),
    FieldDef::new("classification", FieldType::Str, "packet classification"),
    FieldDef::new("success", FieldType::Bool, "is response considered success"),
];

const N: usize = 1024;

/// Counts allocations, to prove the per-record paths allocate nothing.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Panics unless `f` allocates nothing once warmed up.
fn assert_no_alloc(what: &str, mut f: impl FnMut()) {
    for _ in 0..50 {
        f();
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..50 {
        f();
    }
    let n = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(n, 0, "{what}: {n} allocations in 50 x {N} records");
}

fn records(s: &Schema) -> Vec<Record> {
    (0..N)
        .map(|n| {
            let i = |name: &str| s.index_of(name).unwrap();
            let mut r = Record::for_schema(s);
            r.set_ipv4(i("saddr"), Ipv4Addr::from(0xc612_0000 + n as u32));
            r.set_int(i("saddr_raw"), 0xc612_0000 + n as u64);
            r.set_ipv4(i("daddr"), Ipv4Addr::new(198, 19, 0, 1));
            r.set_int(i("daddr_raw"), 0xc613_0001);
            r.set_int(i("ipid"), 54321);
            r.set_int(i("ttl"), 64);
            r.set_int(i("sport"), 80);
            r.set_int(i("dport"), 40000 + n as u64);
            r.set_int(i("seqnum"), 3_050_964_427);
            r.set_int(i("acknum"), 3_515_084_203);
            r.set_int(i("window"), 65535);
            r.set_str(i("classification"), if n % 3 == 0 { "rst" } else { "synack" });
            r.set_bool(i("success"), n % 3 != 0);
            r.set_bool(i("repeat"), n % 7 == 0);
            r.set_bool(i("cooldown"), false);
            r.set_str(i("timestamp_str"), "2026-11-26T17:34:01.123+0000");
            r.set_int(i("timestamp_ts"), 1_795_714_441);
            r.set_int(i("timestamp_us"), 123_456);
            r
        })
        .collect()
}

/// Discards bytes, like writing to /dev/null, but keeps the compiler honest.
struct Null(u64);
impl Write for Null {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 = self.0.wrapping_add(b.len() as u64);
        black_box(self.0);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let s = Schema::for_module(TCP);
    let recs = records(&s);
    let mut g = c.benchmark_group("output");
    g.throughput(Throughput::Elements(N as u64));
    for (module, fields) in [("csv", "saddr"), ("csv", "*"), ("json", "saddr"), ("json", "*")] {
        let sel = FieldSelection::parse(fields, &s).unwrap();
        let mut m = create(module, &s, &sel, true, None, Some(Box::new(Null(0)))).unwrap();
        m.start().unwrap();
        let name = format!("{module} -f {fields}");
        assert_no_alloc(&name, || {
            for r in &recs {
                m.record(r).unwrap();
            }
        });
        g.bench_function(&name, |b| {
            b.iter(|| {
                for r in &recs {
                    m.record(black_box(r)).unwrap();
                }
            })
        });
        m.close(Instant::now()).unwrap();
    }
    for expr in [
        "success = 1 && repeat = 0",
        "(classification = rst && ttl > 10) || classification = synack",
        "saddr >= 198.18.1.0 && saddr < 198.18.2.0",
    ] {
        let f = Filter::compile(expr, &s).unwrap();
        assert_no_alloc(expr, || {
            for r in &recs {
                black_box(f.matches(r));
            }
        });
        g.bench_function(format!("filter {expr}"), |b| {
            b.iter(|| {
                let mut n = 0usize;
                for r in &recs {
                    n += usize::from(f.matches(black_box(r)));
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
