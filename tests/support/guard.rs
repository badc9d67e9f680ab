//! Shared by the property tests of the parsers (`bundle/`, `graphs/`, `runtime/`
//! `tests/parse_props.rs`, each including this file with `#[path]`): run a parse under a time
//! limit and an allocation watch, and the proptest configuration.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::time::Duration;

use proptest::test_runner::Config as ProptestConfig;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

/// The system allocator, recording each thread's largest single allocation.
struct Tracking;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` on its own thread and returns its result; fails if `f` panics, runs longer than
/// `secs` seconds, or makes a single allocation larger than `max_alloc` bytes.
pub fn guarded<T: Send + 'static>(
    secs: u64,
    max_alloc: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        LARGEST.with(|m| m.set(0));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let largest = LARGEST.with(|m| m.get());
        let _ = tx.send((r, largest));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok((Ok(v), largest)) => {
            assert!(
                largest <= max_alloc,
                "one allocation of {largest} bytes (at most {max_alloc} expected)"
            );
            v
        }
        Ok((Err(p), _)) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("the parser panicked: {msg}")
        }
        Err(_) => panic!("the parser did not return within {secs} s"),
    }
}

/// `cases` per property, or `PROPTEST_CASES` when set (for a longer search).
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_time: 60_000,
        // Failing cases go to `parse_props.proptest-regressions` beside this file.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}
