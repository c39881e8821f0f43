//! Stand-ins for the libunwind entry points that std references, in the
//! binary build-musl.sh ships (std compiled with the program, panic =
//! abort; docs/DESIGN.md, "std built for size").
//!
//! That binary can never unwind: there are no landing pads, and
//! build-musl.sh removes `.eh_frame`, so libunwind would find no frame
//! information anyway. Still, std's backtrace code and its (never called)
//! personality routine name a few libunwind functions, and those names alone
//! made the linker pull in LLVM's libunwind: about 50 KB of code. Defined
//! here, they leave every member of libunwind.a out of the link. Should a
//! later std reference another libunwind symbol, the member that defines it
//! comes in with its own copies of these and the link fails on the duplicate
//! definitions: loudly, never silently.
//!
//! - `_Unwind_Backtrace` reports an empty stack, which is what the real one
//!   reports without unwind tables.
//! - The others are called only by a personality routine during an unwind,
//!   which cannot happen here; they abort if ever reached.
//!
//! `#[no_mangle]` is what the `unsafe_code` lint flags: these functions are
//! found by name at link time. No `unsafe` block is involved, and none of
//! them dereferences its pointer arguments.
#![cfg(all(moonlit_own_std, panic = "abort"))]

use std::ffi::{c_int, c_void};

/// libunwind's `_URC_END_OF_STACK`.
const END_OF_STACK: c_int = 5;

/// The frame callback of `_Unwind_Backtrace`.
type TraceFn = Option<extern "C" fn(*mut c_void, *mut c_void) -> c_int>;

/// No frames: the callback is never called.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_Backtrace(_trace: TraceFn, _arg: *mut c_void) -> c_int {
    END_OF_STACK
}

/// Reached only during an unwind, which this binary cannot start.
fn unreachable_unwind() -> ! {
    eprintln!("moonlit: libunwind called in a binary that cannot unwind");
    std::process::abort()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetIP(_ctx: *mut c_void) -> usize {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetIPInfo(_ctx: *mut c_void, _before: *mut c_int) -> usize {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetLanguageSpecificData(_ctx: *mut c_void) -> *mut c_void {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetRegionStart(_ctx: *mut c_void) -> usize {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetTextRelBase(_ctx: *mut c_void) -> usize {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_GetDataRelBase(_ctx: *mut c_void) -> usize {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_SetGR(_ctx: *mut c_void, _reg: c_int, _value: usize) {
    unreachable_unwind()
}

#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn _Unwind_SetIP(_ctx: *mut c_void, _value: usize) {
    unreachable_unwind()
}
