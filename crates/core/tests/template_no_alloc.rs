//! Rendering a template allocates nothing: a counting global allocator proves it.
//!
//! The count is per thread, so allocations by the test harness on other threads do not
//! interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;

use rzmap_core::aesrand::AesRand;
use rzmap_core::probe::template::{Template, TemplateInput};

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only while the thread is being torn down; nothing to count then.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only a
// thread-local `Cell` with a const initialiser, which itself never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System` underneath.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn rendering_every_field_allocates_nothing() {
    let text = concat!(
        "lit ${SADDR_N}${SADDR}${DADDR_N}${DADDR}${SPORT_N}${SPORT}${DPORT_N}${DPORT}",
        "${RAND_BYTE=16}${RAND_DIGIT=16}${RAND_ALPHA=16}${RAND_ALPHANUM=16}${HEX=0d0a}",
        "${UNIXTIME_SEC}${UNIXTIME_USEC}${NTP_TIMESTAMP}${UNKNOWN} tail\r\n",
    );
    let template = Template::parse(text.as_bytes(), "all-fields.tpl").expect("valid template");
    let mut rng = AesRand::from_seed(42);
    let mut out = vec![0u8; template.max_len()];
    let mut input = TemplateInput {
        saddr: Ipv4Addr::new(198, 18, 0, 1),
        daddr: Ipv4Addr::new(198, 19, 0, 0),
        sport: 32768,
        dport: 1,
        unix_sec: 1_700_000_000,
        unix_usec: 0,
    };
    // Warm up, so that anything lazily initialised (none expected) is not counted.
    template.render(&mut out, &input, &mut rng);

    let before = allocations();
    let mut total = 0;
    for i in 0..10_000u32 {
        input.daddr = Ipv4Addr::from(u32::from(input.daddr).wrapping_add(i));
        input.sport = input.sport.wrapping_add(1);
        input.unix_usec = i % 1_000_000;
        total += template.render(&mut out, &input, &mut rng);
    }
    let after = allocations();
    assert!(total > 0);
    assert_eq!(after - before, 0, "template rendering allocated {} times", after - before);

    // The counter does count: a Vec allocation shows up.
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(allocations() > after, "the counting allocator missed an allocation");
    drop(v);
}
