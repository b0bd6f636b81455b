//! How much heap the operator holds: a global allocator that hands every call to the
//! system allocator unchanged and keeps two process-wide counters beside it, the bytes
//! allocated and not yet freed, and their high-water mark.
//!
//! The operator installs it (`#[global_allocator]` in `datajob-operator`), and `/metrics`
//! shows both figures next to the resident memory, so the gap between them is the memory
//! the allocator keeps from the system after the program freed it. The cost is two
//! relaxed atomic additions per allocation.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes allocated and not yet freed, and their high-water mark.
struct Counters {
    live: AtomicUsize,
    peak: AtomicUsize,
    installed: AtomicBool,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            installed: AtomicBool::new(false),
        }
    }

    fn grew(&self, n: usize) {
        let live = self.live.fetch_add(n, Ordering::Relaxed).wrapping_add(n);
        if live > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(live, Ordering::Relaxed);
            self.installed.store(true, Ordering::Relaxed);
        }
    }

    fn shrank(&self, n: usize) {
        self.live.fetch_sub(n, Ordering::Relaxed);
    }

    /// After a `realloc` from `old` to `new` bytes.
    fn resized(&self, old: usize, new: usize) {
        if new >= old {
            self.grew(new - old);
        } else {
            self.shrank(old - new);
        }
    }

    fn usage(&self) -> Option<(usize, usize)> {
        self.installed.load(Ordering::Relaxed).then(|| {
            (
                self.live.load(Ordering::Relaxed),
                self.peak.load(Ordering::Relaxed),
            )
        })
    }
}

static COUNTERS: Counters = Counters::new();

/// The counting allocator. Install it with
/// `#[global_allocator] static A: datajob_operator::heap::Counting = datajob_operator::heap::Counting;`.
pub struct Counting;

// SAFETY: every call goes to the system allocator with the caller's arguments, and its
// result is returned unchanged; only atomic counters (which never allocate) change beside.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            COUNTERS.grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            COUNTERS.grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        COUNTERS.shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            COUNTERS.resized(layout.size(), new_size);
        }
        p
    }
}

/// The heap in use and its high-water mark, in bytes; `None` unless [`Counting`] is the
/// process's allocator.
pub fn usage() -> Option<(usize, usize)> {
    COUNTERS.usage()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_live_bytes_and_their_high_water_mark() {
        let c = Counters::new();
        assert_eq!(c.usage(), None, "nothing counted: not the allocator");
        c.grew(4096);
        c.resized(4096, 8192);
        assert_eq!(c.usage(), Some((8192, 8192)));
        c.resized(8192, 100);
        c.grew(50);
        assert_eq!(c.usage(), Some((150, 8192)));
        c.shrank(150);
        assert_eq!(c.usage(), Some((0, 8192)));
    }

    #[test]
    fn the_test_binary_runs_on_it_as_the_operator_does() {
        let before = usage().map(|u| u.1).unwrap_or(0);
        let v = std::hint::black_box(vec![1u8; 8 << 20]);
        let (_, peak) = usage().expect("the lib's tests install the counting allocator");
        assert!(peak >= before.max(v.len()), "{peak} < {}", v.len());
    }
}
