//! Measures how much heap a piece of code makes its thread hold at its peak: the fuzzer's
//! bound per input, and the bytes per message of the structures that hold backlogs.
//!
//! A counting wrapper around the system allocator is the global allocator of the unit-test
//! binary (this module exists only under `cfg(test)`; the broker binary keeps mimalloc). It
//! counts only on a thread that asked for it, through a const-initialised thread-local that
//! needs no destructor, so the other tests pay one thread-local read per allocation. Frees of
//! memory allocated before the measurement began make the live count go below its start,
//! which is why the peak is taken relative to the start and not as an absolute figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed on this thread since the measurement began.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(delta_bytes: isize) {
    // try_with: an allocation during thread teardown must not panic inside the allocator.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let live = LIVE_BYTES.with(|live| {
                let value = live.get() + delta_bytes;
                live.set(value);
                value
            });
            PEAK_BYTES.with(|peak| peak.set(peak.get().max(live)));
        }
    });
}

// SAFETY (for every method): each call is passed on unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counting around it touches only plain thread-locals and never
// allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is handed on as it came.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            note(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            note(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `pointer` came from this allocator with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees for `realloc` are passed on unchanged.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Runs `work` and returns its result with the most heap it held at once beyond what was live
/// when it started (bytes), counting allocations of this thread only.
pub(crate) fn peak_bytes_during<R>(work: impl FnOnce() -> R) -> (R, usize) {
    LIVE_BYTES.with(|live| live.set(0));
    PEAK_BYTES.with(|peak| peak.set(0));
    COUNTING.with(|counting| counting.set(true));
    let guard = StopCounting;
    let result = work();
    drop(guard);
    (result, PEAK_BYTES.with(Cell::get).max(0) as usize)
}

/// Runs `work` and returns its result with the heap still held when it returned beyond what
/// was live when it started (bytes), counting allocations of this thread only.
pub(crate) fn held_bytes_after<R>(work: impl FnOnce() -> R) -> (R, usize) {
    let (result, _) = peak_bytes_during(work);
    (result, LIVE_BYTES.with(Cell::get).max(0) as usize)
}

/// Stops counting when dropped, also when `work` panics.
struct StopCounting;

impl Drop for StopCounting {
    fn drop(&mut self) {
        COUNTING.with(|counting| counting.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_allocation_is_measured_and_a_freed_one_only_at_its_peak() {
        let (held, peak) = peak_bytes_during(|| vec![0u8; 100_000]);
        assert!((100_000..110_000).contains(&peak), "{peak}");
        let ((), peak) = peak_bytes_during(|| {
            for _ in 0..10 {
                drop(std::hint::black_box(vec![0u8; 50_000]));
            }
        });
        assert!((50_000..60_000).contains(&peak), "{peak}");
        drop(held);
        let (held, live) = held_bytes_after(|| {
            drop(std::hint::black_box(vec![0u8; 50_000]));
            vec![0u8; 10_000]
        });
        assert!((10_000..11_000).contains(&live), "{live}");
        drop(held);
    }
}
