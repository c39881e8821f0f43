//! What `build-musl.sh` ships (docs/DESIGN.md, "std built for size"): a
//! stripped, fixed-address static executable without unwind tables, whose
//! std was compiled with it, so that neither std's backtrace symbolizer
//! (addr2line, gimli) nor LLVM's libunwind is in it
//! (`init/src/no_unwind.rs`).
//!
//! The two are found by strings they always carry: the source paths in
//! addr2line's panic locations and libunwind's `DW_CFA_` trace formats.
//! Negative control: this test's own executable, linked with the prebuilt
//! std and able to unwind, has both.

mod common;

use std::path::Path;
use std::process::Command;

/// Whether `needle` occurs in the file's bytes.
fn contains(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The section names `readelf -SW` lists.
fn sections(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-hSW")
        .arg(path)
        .output()
        .expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf failed on {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SYMBOLIZER: &str = "addr2line-";
const LIBUNWIND: &str = "DW_CFA_";

#[test]
fn shipped_binary_has_no_symbolizer_no_libunwind_no_unwind_tables() {
    let bin = common::moonlit_bin();
    let elf = sections(&bin);
    assert!(
        elf.contains("EXEC (Executable file)"),
        "not ET_EXEC:\n{elf}"
    );
    for s in [
        ".symtab",
        ".eh_frame",
        ".gcc_except_table",
        ".interp",
        ".dynamic",
    ] {
        assert!(
            !elf.lines().any(|l| l.split_whitespace().any(|w| w == s)),
            "{} has a {s} section:\n{elf}",
            bin.display()
        );
    }
    assert!(
        !contains(&bin, SYMBOLIZER),
        "std's backtrace symbolizer is linked into {}",
        bin.display()
    );
    assert!(
        !contains(&bin, LIBUNWIND),
        "libunwind is linked into {}",
        bin.display()
    );
    // It still runs.
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run moonlit --version");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("moonlit "));
}

#[test]
fn the_detectors_find_both_in_a_binary_with_the_prebuilt_std() {
    let me = std::env::current_exe().expect("current_exe");
    assert!(
        contains(&me, SYMBOLIZER),
        "no symbolizer found in {}",
        me.display()
    );
    assert!(
        contains(&me, LIBUNWIND),
        "no libunwind found in {}",
        me.display()
    );
}
