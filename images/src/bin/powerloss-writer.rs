//! The guest side of the power-loss tests (`images/tests/vm_powerloss.rs`),
//! run as a moonlit service on the ext4 root: `powerloss-writer DIR`.
//!
//! 1. Verifies every `*.rec` file already in DIR (the kernel has replayed
//!    the journal when it mounted the disk) and prints one line per file,
//!    `powerloss: verify NAME records=N tail=B ok` (or `BAD: why`), then
//!    `powerloss: verified F files`.
//! 2. With `powerloss.name=NAME` on the kernel command line: creates
//!    DIR/NAME.rec (it must not exist), fsyncs it and DIR once, then appends
//!    records 1, 2, 3, ... (see `moonlit_images::powerloss`), each written
//!    whole and fsynced before `powerloss: fsynced NAME N ok` is printed.
//!    It never stops by itself below `powerloss.max=N` records (default
//!    1,000,000); at the limit it prints `powerloss: holding` and sleeps.
//!    `powerloss.nofsync` (the negative control) skips every fsync and prints
//!    `powerloss: written NAME N ok` instead.
//! 3. Without a name it exits 0 after the verification (it is the main
//!    service: the machine powers off).
//!
//! Exit status 1 with a message on any I/O error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use moonlit_images::powerloss;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    println!("powerloss: error: {what}: {e}");
    std::process::exit(1);
}

fn verify(dir: &Path) {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".rec"))
                    .map(str::to_string)
            })
            .collect(),
        Err(e) => fail(&format!("read dir {}", dir.display()), e),
    };
    names.sort();
    for name in &names {
        let path = dir.join(format!("{name}.rec"));
        match std::fs::read(&path) {
            Ok(data) => println!(
                "powerloss: verify {name} {}",
                powerloss::scan(name, &data).summary()
            ),
            Err(e) => println!("powerloss: verify {name} records=0 tail=0 BAD: read: {e}"),
        }
    }
    println!("powerloss: verified {} files", names.len());
}

fn write(dir: &Path, name: &str, fsync: bool, max: u64) -> ! {
    let path = dir.join(format!("{name}.rec"));
    let mut f: File = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| fail(&format!("create {}", path.display()), e));
    if fsync {
        f.sync_all()
            .unwrap_or_else(|e| fail(&format!("fsync {}", path.display()), e));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .unwrap_or_else(|e| fail(&format!("fsync dir {}", dir.display()), e));
    }
    println!(
        "powerloss: created {name} ({})",
        if fsync {
            "file and directory fsynced"
        } else {
            "no fsync"
        }
    );
    let word = if fsync { "fsynced" } else { "written" };
    for n in 1..=max {
        f.write_all(&powerloss::record(name, n))
            .unwrap_or_else(|e| fail(&format!("write record {n}"), e));
        if fsync {
            f.sync_all()
                .unwrap_or_else(|e| fail(&format!("fsync record {n}"), e));
        }
        // Only now: the record is on the disk (as far as fsync promises).
        println!("powerloss: {word} {name} {n} ok");
    }
    println!("powerloss: holding");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        fail("usage", "powerloss-writer DIR");
    };
    let dir = Path::new(&dir);
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| fail("read /proc/cmdline", e));
    let mut name = None;
    let mut fsync = true;
    let mut max = 1_000_000u64;
    for w in cmdline.split_whitespace() {
        if let Some(v) = w.strip_prefix("powerloss.name=") {
            name = Some(v.to_string());
        } else if w == "powerloss.nofsync" {
            fsync = false;
        } else if let Some(v) = w.strip_prefix("powerloss.max=") {
            max = v
                .parse()
                .unwrap_or_else(|e| fail(&format!("powerloss.max={v}"), e));
        }
    }
    verify(dir);
    match name {
        Some(n) if powerloss::valid_name(&n) => write(dir, &n, fsync, max),
        Some(n) => fail("powerloss.name", format!("invalid name {n:?}")),
        None => {
            println!("powerloss: verify only; exiting");
        }
    }
}
