//! Links the moonlit binary with lld in the order of link-order.txt (the
//! idle loop's functions together; bench/core/order.sh writes the file,
//! docs/footprint.md says why). Cargo does not watch a linker's input
//! files, so this script is what makes a new ordering relink the binary.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATH");
    // build-musl.sh compiles std with the program (panic = abort, no
    // landing pads): then nothing references libunwind's unwinder and
    // src/no_unwind.rs may stand in for the rest of it.
    println!("cargo:rustc-check-cfg=cfg(moonlit_own_std)");
    println!("cargo:rerun-if-env-changed=MOONLIT_OWN_STD");
    if std::env::var_os("MOONLIT_OWN_STD").is_some() {
        println!("cargo:rustc-cfg=moonlit_own_std");
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let order = Path::new(&dir).join("link-order.txt");
    let lld = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("ld.lld").is_file()))
        .unwrap_or(false);
    if !lld {
        println!(
            "cargo:warning=ld.lld not found: moonlit is linked without link-order.txt, \
             so its idle RSS is higher (setup.sh installs Debian's lld)"
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
