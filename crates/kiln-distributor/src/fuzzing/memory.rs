//! A counting global allocator: what one fuzz input costs at its peak, in heap bytes.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: kiln_distributor::fuzzing::memory::Counting =
//!     kiln_distributor::fuzzing::memory::Counting;
//! ```
//!
//! It forwards every call to [`System`] and keeps, per thread, the net bytes allocated minus
//! freed and the highest value they reached since the last [`measure`]. Per thread, so that
//! tests running in parallel in one process (`cargo test`) do not count each other's memory;
//! the decoders run on the calling thread, so nothing they allocate is missed. Sizes are those
//! asked for ([`Layout::size`]), not what the underlying allocator rounds them up to, so a
//! measurement is the same under AddressSanitizer, in debug and in release builds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting;

thread_local! {
    /// Net heap bytes allocated minus freed by this thread (negative when it frees memory
    /// allocated before a measurement started, or by another thread).
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    /// The highest `CURRENT` since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // `try_with`: never panics inside the allocator, even while the thread's locals are torn
    // down (these have no destructor, so in practice they are always there).
    let _ = CURRENT.try_with(|current| {
        let now = current.get().wrapping_add(bytes);
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn size(layout: Layout) -> isize {
    // A layout's size never exceeds isize::MAX.
    layout.size() as isize
}

// SAFETY: every call goes to `System` unchanged, with the caller's arguments; the counters are
// const-initialized thread locals without destructors, which neither allocate nor re-enter
// the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(size(layout));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(size(layout));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        add(-size(layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // `new_size` is at most isize::MAX, as for any layout.
            add((new_size as isize).wrapping_sub(size(layout)));
        }
        new
    }
}

/// Whether [`Counting`] is the global allocator (if not, every measurement would read 0).
pub fn installed() -> bool {
    let before = CURRENT.with(Cell::get);
    // black_box: the allocation must happen, not be optimized away.
    let probe = std::hint::black_box(Box::new([0u8; 64]));
    let counted = CURRENT.with(Cell::get) != before;
    drop(probe);
    counted
}

/// Runs `f` and returns its result with the peak of the heap bytes the calling thread held
/// during it, above what it held when `f` started.
///
/// Measurements do not nest: one inside `f` restarts the peak of this one.
///
/// # Panics
/// When [`Counting`] is not the global allocator: a check that always measures 0 would pass
/// anything.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    assert!(
        installed(),
        "kiln_distributor::fuzzing::memory::Counting is not the #[global_allocator]"
    );
    let start = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, usize::try_from(peak - start).unwrap_or(0))
}
