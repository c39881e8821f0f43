//! moonlit's memory allocator: size classes in 64 KiB spans, for the small
//! blocks Lua and the init allocate all the time (table parts, strings,
//! closures, netlink buffers), in front of the C library's malloc.
//!
//! Why: musl's malloc (mallocng) is compact but slow for this load. Creating a
//! Lua state with the `sys` module, building a `stat` table or a netlink
//! message spends much of its time in malloc/free; this allocator makes those
//! a few pointer operations. Everything else (larger than 2 KiB, or aligned
//! to more than 16) still goes to the C library.
//!
//! Shape: 256 MiB of address space is reserved once (`PROT_NONE`, no
//! commit charge, no RSS) and handed out in 64 KiB spans, made writable 1 MiB
//! at a time as they are first needed. A span holds blocks of one size class
//! (24 classes, 16 to 2048 bytes, at most 25% rounding), with its header at
//! its start: a free list, a bump offset for never-used blocks (so untouched
//! pages never become resident) and a count of live blocks. A block's span is
//! found by masking its address. When a span's last block is freed while its
//! class has another span with room, the span's pages are returned to the
//! kernel (`MADV_DONTNEED`) and the span is kept for any class: memory a
//! runaway config allocated does not stay resident after it is freed. When
//! the reservation is used up (or could not be made), allocations fall back
//! to the C library, so the allocator never fails where malloc would not.
//!
//! PID 1 is single-threaded, but tests and tools built with this allocator
//! are not: one spin lock (uncontended: one atomic exchange) guards the state.
//! Nothing inside the lock allocates, panics or blocks.
//!
//! Install it with `#[global_allocator] static A: moonlit_sys::alloc::Alloc =
//! moonlit_sys::alloc::Alloc::new();`.

// The allocator is unsafe by nature: it hands out raw memory, writes span
// headers and free-list links into it and calls mmap/mprotect/madvise. Every
// unsafe block below says what it relies on.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const SPAN: usize = 64 << 10;
const RESERVE: usize = 256 << 20;
const MAX_SPANS: usize = RESERVE / SPAN;
/// Spans are made writable this many bytes at a time.
const COMMIT: usize = 16 * SPAN;
/// The span header's size; blocks start here (a multiple of 16).
const HEADER: usize = 64;
/// Largest size served from spans.
pub const MAX_SMALL: usize = 2048;
/// Largest alignment served from spans (every class is a multiple of it).
const MAX_ALIGN: usize = 16;
const CLASS_SIZES: [u16; 24] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048,
];
const NCLASS: usize = CLASS_SIZES.len();

/// Class index for each size rounded up to 16 bytes (`(size + 15) / 16`).
const CLASS_OF: [u8; MAX_SMALL / 16 + 1] = {
    let mut t = [0u8; MAX_SMALL / 16 + 1];
    let mut i = 0;
    let mut c = 0;
    while i < t.len() {
        while (CLASS_SIZES[c] as usize) < i * 16 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

fn class_of(size: usize) -> usize {
    CLASS_OF[size.div_ceil(16)] as usize
}

#[repr(C)]
struct Span {
    free: *mut Free,
    next: *mut Span,
    prev: *mut Span,
    /// Offset of the first never-used block.
    bump: u32,
    live: u32,
    class: u8,
    /// On its class's list of spans with room.
    listed: bool,
}

const _: () = assert!(std::mem::size_of::<Span>() <= HEADER);

struct Free {
    next: *mut Free,
}

struct State {
    /// Start of the reservation (span-aligned); 0 before the first use.
    base: usize,
    /// The reservation could not be made: everything goes to the C library.
    failed: bool,
    /// Spans handed out so far (indexes below this exist).
    carved: usize,
    /// Bytes at the start of the reservation that are writable.
    committed: usize,
    /// Per class: spans with room (doubly linked through `next`/`prev`).
    partial: [*mut Span; NCLASS],
    /// Indexes of released spans, ready for any class.
    released: [u16; MAX_SPANS],
    nreleased: usize,
}

/// Counters for tests and `ctl status`-style reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Spans holding at least one class's blocks (or ready to).
    pub spans_in_use: usize,
    /// Spans whose pages went back to the kernel, kept for reuse.
    pub spans_released: usize,
}

/// The allocator. One per program (as the global allocator); tests may make
/// their own.
pub struct Alloc {
    lock: AtomicBool,
    /// Copy of `State::base` readable without the lock (set once).
    base: AtomicUsize,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only touched with `lock` held (see `with`), which makes
// the accesses exclusive across threads; the raw pointers inside point into
// the allocator's own reservation.
unsafe impl Sync for Alloc {}

impl Default for Alloc {
    fn default() -> Self {
        Self::new()
    }
}

impl Alloc {
    pub const fn new() -> Self {
        Alloc {
            lock: AtomicBool::new(false),
            base: AtomicUsize::new(0),
            state: UnsafeCell::new(State {
                base: 0,
                failed: false,
                carved: 0,
                committed: 0,
                partial: [null_mut(); NCLASS],
                released: [0; MAX_SPANS],
                nreleased: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: the lock is held: no other reference to the state exists
        // until it is released below.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }

    /// Whether `p` is a block of this allocator's spans.
    fn owns(&self, p: *mut u8) -> bool {
        let base = self.base.load(Ordering::Relaxed);
        let a = p as usize;
        base != 0 && a >= base && a < base + RESERVE
    }

    pub fn stats(&self) -> Stats {
        self.with(|s| Stats {
            spans_in_use: s.carved - s.nreleased,
            spans_released: s.nreleased,
        })
    }

    fn alloc_small(&self, size: usize) -> *mut u8 {
        let class = class_of(size);
        self.with(|s| {
            let p = s.alloc(class);
            if s.base != 0 {
                self.base.store(s.base, Ordering::Relaxed);
            }
            p
        })
    }
}

impl State {
    /// Reserves the address space on first use. False when that failed.
    fn ready(&mut self) -> bool {
        if self.base != 0 {
            return true;
        }
        if self.failed {
            return false;
        }
        // SAFETY: a fresh anonymous PROT_NONE mapping chosen by the kernel;
        // it overlaps nothing of ours and no Rust reference points into it.
        let r = unsafe {
            rustix::mm::mmap_anonymous(
                null_mut(),
                RESERVE + SPAN,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
        };
        match r {
            Ok(p) => {
                self.base = (p as usize).next_multiple_of(SPAN);
                true
            }
            Err(_) => {
                self.failed = true;
                false
            }
        }
    }

    fn alloc(&mut self, class: usize) -> *mut u8 {
        let mut s = self.partial[class];
        if s.is_null() {
            s = self.new_span(class);
            if s.is_null() {
                return null_mut();
            }
            self.push(class, s);
        }
        // SAFETY: `s` is a span header in committed memory (on the partial
        // list only while it has room); blocks lie inside the span.
        unsafe {
            let size = CLASS_SIZES[class] as usize;
            let b = if !(*s).free.is_null() {
                let f = (*s).free;
                (*s).free = (*f).next;
                f.cast::<u8>()
            } else {
                let b = s.cast::<u8>().add((*s).bump as usize);
                (*s).bump += size as u32;
                b
            };
            (*s).live += 1;
            if (*s).free.is_null() && (*s).bump as usize + size > SPAN {
                self.unlink(class, s);
            }
            b
        }
    }

    /// # Safety
    /// `p` is a live block of this allocator.
    unsafe fn free(&mut self, p: *mut u8) {
        let s = (p as usize & !(SPAN - 1)) as *mut Span;
        // SAFETY (caller): `p` is a block inside span `s`, so `s` is a
        // committed span header; the block is free from now on and holds
        // the free-list link.
        unsafe {
            let f = p.cast::<Free>();
            (*f).next = (*s).free;
            (*s).free = f;
            (*s).live -= 1;
            let class = (*s).class as usize;
            if !(*s).listed {
                self.push(class, s);
            }
            if (*s).live == 0 && !(self.partial[class] == s && (*s).next.is_null()) {
                // Another span of this class has room: give this one back.
                self.unlink(class, s);
                self.release(s);
            }
        }
    }

    fn new_span(&mut self, class: usize) -> *mut Span {
        if !self.ready() {
            return null_mut();
        }
        let index = if self.nreleased > 0 {
            self.nreleased -= 1;
            self.released[self.nreleased] as usize
        } else if self.carved < MAX_SPANS {
            let i = self.carved;
            let end = (i + 1) * SPAN;
            if end > self.committed {
                let grow = COMMIT.min(RESERVE - self.committed);
                // SAFETY: the range lies inside our own reservation and
                // past everything in use; making it writable moves nothing.
                let r = unsafe {
                    rustix::mm::mprotect(
                        (self.base + self.committed) as *mut _,
                        grow,
                        rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
                    )
                };
                if r.is_err() {
                    return null_mut();
                }
                self.committed += grow;
            }
            self.carved += 1;
            i
        } else {
            return null_mut();
        };
        let s = (self.base + index * SPAN) as *mut Span;
        // SAFETY: the span is committed and unused (fresh, or released and
        // zeroed by the kernel); its first HEADER bytes hold the header.
        unsafe {
            s.write(Span {
                free: null_mut(),
                next: null_mut(),
                prev: null_mut(),
                bump: HEADER as u32,
                live: 0,
                class: class as u8,
                listed: false,
            });
        }
        s
    }

    /// # Safety
    /// `s` is an empty span, on no list.
    unsafe fn release(&mut self, s: *mut Span) {
        let index = (s as usize - self.base) / SPAN;
        // SAFETY (caller): nothing lives in the span; dropping its pages
        // makes them read back as zeros, which `new_span` overwrites.
        let _ = unsafe { rustix::mm::madvise(s.cast(), SPAN, rustix::mm::Advice::LinuxDontNeed) };
        // At most MAX_SPANS spans exist, so there is always room here.
        if let Some(slot) = self.released.get_mut(self.nreleased) {
            *slot = index as u16;
            self.nreleased += 1;
        }
    }

    fn push(&mut self, class: usize, s: *mut Span) {
        let head = self.partial[class];
        // SAFETY: `s` and `head` (when not null) are committed span headers.
        unsafe {
            (*s).prev = null_mut();
            (*s).next = head;
            (*s).listed = true;
            if !head.is_null() {
                (*head).prev = s;
            }
        }
        self.partial[class] = s;
    }

    fn unlink(&mut self, class: usize, s: *mut Span) {
        // SAFETY: `s` is on the class's list; its neighbours are committed
        // span headers of the same list.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.partial[class] = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*s).prev = null_mut();
            (*s).next = null_mut();
            (*s).listed = false;
        }
    }
}

fn small(layout: &Layout) -> bool {
    layout.size() <= MAX_SMALL && layout.align() <= MAX_ALIGN
}

// SAFETY: blocks handed out are at least `layout.size()` bytes, aligned to
// 16 (>= layout.align() for every small layout), exclusive until freed; all
// other layouts are the C library's, which upholds the same contract.
unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if small(&layout) {
            let p = self.alloc_small(layout.size());
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if self.owns(p) {
            // SAFETY (caller): `p` is a live block of ours.
            self.with(|s| unsafe { s.free(p) })
        } else {
            // SAFETY (caller): `p` came from System with this layout.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ours = self.owns(p);
        if ours {
            let old_class = class_of(layout.size());
            if new_size <= MAX_SMALL && class_of(new_size) == old_class {
                return p;
            }
        } else if new_size > MAX_SMALL || layout.align() > MAX_ALIGN {
            // SAFETY (caller): `p` came from System with `layout`.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // Moving between the spans and the C library, or between classes.
        // SAFETY (caller): new_size is non-zero and, rounded up to the
        // alignment, does not overflow; `layout.align()` is a power of two.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn classes_cover_every_small_size_with_little_waste() {
        for size in 1..=MAX_SMALL {
            let c = CLASS_SIZES[class_of(size)] as usize;
            assert!(c >= size, "size {size} got class {c}");
            assert!(
                size <= 16 || c * 4 <= size * 5 + 16 * 4,
                "size {size} class {c}"
            );
            assert_eq!(c % MAX_ALIGN, 0);
        }
    }

    #[test]
    fn blocks_are_distinct_aligned_and_keep_their_contents() {
        let a = Box::leak(Box::new(Alloc::new()));
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200_000 {
            let r = next();
            if live.len() < 2000 && (r % 3 != 0 || live.is_empty()) {
                let size = 1 + (next() % 4000) as usize; // both sides of MAX_SMALL
                                                         // SAFETY: non-zero size.
                let p = unsafe { a.alloc(layout(size)) };
                assert!(!p.is_null());
                assert_eq!(p as usize % 16, 0, "alignment");
                let tag = (round % 251) as u8;
                // SAFETY: the block is ours and `size` long.
                unsafe { std::ptr::write_bytes(p, tag, size) };
                live.push((p, size, tag));
            } else {
                let i = (next() as usize) % live.len();
                let (p, size, tag) = live.swap_remove(i);
                // SAFETY: the block is live and `size` long.
                let bytes = unsafe { std::slice::from_raw_parts(p, size) };
                assert!(bytes.iter().all(|&b| b == tag), "block contents changed");
                if next() % 4 == 0 {
                    let new = 1 + (next() % 3000) as usize;
                    // SAFETY: live block with this layout; non-zero size.
                    let q = unsafe { a.realloc(p, layout(size), new) };
                    // SAFETY: q is live and `new` long.
                    let kept = unsafe { std::slice::from_raw_parts(q, size.min(new)) };
                    assert!(kept.iter().all(|&b| b == tag), "realloc lost contents");
                    // SAFETY: q is `new` long.
                    unsafe { std::ptr::write_bytes(q, tag, new) };
                    live.push((q, new, tag));
                } else {
                    // SAFETY: live block with this layout.
                    unsafe { a.dealloc(p, layout(size)) };
                }
            }
        }
        for (p, size, _) in live {
            // SAFETY: live block with this layout.
            unsafe { a.dealloc(p, layout(size)) };
        }
    }

    #[test]
    fn freed_spans_go_back_to_the_kernel_and_are_reused() {
        let a = Box::leak(Box::new(Alloc::new()));
        // 8 MiB of 1 KiB blocks: 128+ spans.
        let blocks: Vec<*mut u8> = (0..8192)
            // SAFETY: non-zero size.
            .map(|_| unsafe { a.alloc(layout(1000)) })
            .collect();
        for &p in &blocks {
            // SAFETY: the block is 1000 bytes long.
            unsafe { std::ptr::write_bytes(p, 1, 1000) };
        }
        let full = a.stats();
        assert!(full.spans_in_use >= 128, "{full:?}");
        assert_eq!(full.spans_released, 0);
        for p in blocks {
            // SAFETY: live block with this layout.
            unsafe { a.dealloc(p, layout(1000)) };
        }
        let after = a.stats();
        assert!(
            after.spans_in_use <= 1,
            "all but one span released: {after:?}"
        );
        // A different class reuses a released span instead of carving more.
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout(24)) };
        let reused = a.stats();
        assert_eq!(reused.spans_in_use, after.spans_in_use + 1);
        assert_eq!(reused.spans_released, after.spans_released - 1);
        // Released memory reads back as zeros under the new header.
        // SAFETY: the block is 24 bytes long.
        assert!(unsafe { std::slice::from_raw_parts(p, 24) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(p, layout(24)) };
    }

    #[test]
    fn large_and_overaligned_blocks_come_from_the_c_library() {
        let a = Box::leak(Box::new(Alloc::new()));
        // SAFETY: valid non-zero layouts.
        unsafe {
            let big = a.alloc(layout(MAX_SMALL + 1));
            assert!(!a.owns(big));
            let aligned = a.alloc(Layout::from_size_align(64, 64).unwrap());
            assert_eq!(aligned as usize % 64, 0);
            assert!(!a.owns(aligned));
            let small = a.alloc(layout(64));
            assert!(a.owns(small));
            // Growing a small block past MAX_SMALL moves it out, and back.
            std::ptr::write_bytes(small, 7, 64);
            let grown = a.realloc(small, layout(64), 10_000);
            assert!(!a.owns(grown));
            let back = a.realloc(grown, layout(10_000), 32);
            assert!(a.owns(back));
            assert!(std::slice::from_raw_parts(back, 32).iter().all(|&b| b == 7));
            a.dealloc(back, layout(32));
            a.dealloc(aligned, Layout::from_size_align(64, 64).unwrap());
            a.dealloc(big, layout(MAX_SMALL + 1));
        }
    }

    #[test]
    fn threads_share_one_allocator() {
        let a: &'static Alloc = Box::leak(Box::new(Alloc::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    for i in 0..20_000usize {
                        let size = 8 + (i * 37 + t) % 700;
                        // SAFETY: non-zero size.
                        let p = unsafe { a.alloc(layout(size)) };
                        // SAFETY: the block is `size` long.
                        unsafe { std::ptr::write_bytes(p, t as u8, size) };
                        v.push((p, size));
                        if v.len() > 100 {
                            let (p, size) = v.swap_remove(i % v.len());
                            // SAFETY: the block is live and `size` long.
                            let ok = unsafe { std::slice::from_raw_parts(p, size) }
                                .iter()
                                .all(|&b| b == t as u8);
                            assert!(ok, "another thread wrote into our block");
                            // SAFETY: live block with this layout.
                            unsafe { a.dealloc(p, layout(size)) };
                        }
                    }
                    for (p, size) in v {
                        // SAFETY: live block with this layout.
                        unsafe { a.dealloc(p, layout(size)) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
