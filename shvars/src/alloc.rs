//! [`CountingAlloc`]: the system allocator, counting the allocations each thread makes, so a
//! daemon can prove (and show in a variable) that its hot loop allocates nothing.
//!
//! Install it in a binary with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`,
//! then read [`thread_allocations`] on the thread in question. In a binary without it installed,
//! [`installed`] is false and the counts stay 0: a caller must check [`installed`] before it
//! trusts a zero.
//!
//! The counter is a plain thread-local cell with a constant initialiser and no destructor, so
//! touching it never allocates (which an allocator must not do) and costs one TLS access.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting each thread's allocations (`alloc`, `alloc_zeroed` and
/// `realloc`; frees are not counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

#[inline]
fn count() {
    // `try_with`: during a thread's teardown the cell may be gone; that allocation is not
    // counted (the thread's loop has ended by then).
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// GlobalAlloc contract (layouts, pointers, sizes) is exactly System's; counting touches only a
// thread-local `Cell<u64>` and an atomic flag, neither of which allocates or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on as is.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the size rules.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by the calling thread (0 if [`CountingAlloc`] is not the global
/// allocator).
pub fn thread_allocations() -> u64 {
    ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// Whether [`CountingAlloc`] is the global allocator (it has counted at least one allocation,
/// which any Rust program makes before `main`).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}
