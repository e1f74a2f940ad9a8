//! An allocator that counts the bytes the process holds, to weigh what a structure keeps (the
//! sizes asked for; the allocator's own rounding and bookkeeping come on top). A bench that
//! uses it includes this file as a module of its own (`#[path]`), which makes it the global
//! allocator of that bench only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;

static HELD: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The bytes held now.
pub fn held() -> i64 {
    HELD.load(Ordering::Relaxed)
}
