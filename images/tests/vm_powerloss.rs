//! Power loss and power-off with writes in flight, on an ext4 virtio disk
//! under qemu (TCG). The disk boots as in `vm_disk` (examples/switch-root
//! mounts it and hands over to its moonlit); its configuration
//! (`configs/powerloss-root`) runs `powerloss-writer` (src/bin) as the main
//! service. At each boot the writer first reads back every record file left
//! by earlier boots (so the guest kernel's own journal replay is checked),
//! then creates this boot's file, fsyncs it and the directory, and appends
//! 100-byte checksummed records, each fsynced before its number is printed.
//!
//! - `sigkill_at_a_random_point_loses_no_fsynced_record`: qemu is killed
//!   (SIGKILL, no shutdown) at a random delay after the first record shows.
//!   Then, in this order: (1) the image as qemu left it must need journal
//!   recovery (else the kill was no power loss); (2) on a copy, e2fsprogs
//!   replays the journal alone (`e2fsck -E journal_only -y`), after which
//!   `e2fsck -fn` must find nothing to fix (exit 0) and every record
//!   reported before the kill must be in the file, in order, uncorrupted;
//!   (3) the next boot mounts the original image, so the guest kernel
//!   replays the journal, and the writer's read-back must again find every
//!   such record. After the last round a verify-only boot powers off
//!   cleanly, and the image must pass `e2fsck -fn` with a clean superblock
//!   and hold every record, read by `debugfs`.
//! - `poweroff_while_writing_leaves_a_clean_fs`: the same writer, and
//!   `moonlit ctl poweroff` typed on the rescue shell at a random delay:
//!   qemu must exit after the kernel's power-down, `e2fsck -fn` must exit 0
//!   with a clean superblock (no journal recovery left) and every record
//!   reported fsynced must be there.
//! - Two kinds of disk, alternating: odd rounds give qemu the image file
//!   (what qemu wrote survives it in the host's page cache: the guest loses
//!   its page cache and requests in flight), even rounds put it behind
//!   `moonlit_images::nbd::CacheDisk`, a disk with a volatile write cache:
//!   only FLUSH makes writes durable, and at the cut (qemu killed, or the
//!   line `moonlit: shutdown complete` seen) each cached write survives by a
//!   seeded coin. Those rounds need the guest's flushes; the power-off rounds
//!   also require the cache to be empty at the power-down. A second service
//!   (`noise`) rewrites another file without fsync there, with writeback
//!   after 0.5 s, so the cache holds unflushed writes when the power goes.
//! - `without_fsync_the_kill_loses_records` (negative control): the writer
//!   skips every fsync; the same kill and checks must find reported records
//!   missing. That shows the kill really drops what the guest had not
//!   flushed, so the checks above can fail.
//! - `without_barriers_the_cache_disk_loses_fsynced_records` (negative
//!   control): with ext4 remounted `barrier=0` (no flushes), the cut of the
//!   cache disk must lose fsynced records: the cache rounds can fail.
//!
//! Settings: `MOONLIT_POWER_ROUNDS` (default 3; the long pass is 20),
//! `MOONLIT_POWER_SEED` (printed at the start of each test),
//! `MOONLIT_POWER_MAX_DELAY_MS` (default 4000: the kill or power-off comes
//! 0..that after the host sees record 1). Each round prints one
//! `powerloss:` line with its figures; `bench/reliability/powerloss.sh`
//! runs the long pass.
//!
//! Not simulated: tearing inside one write request (the cache keeps or
//! loses a request whole), and a host crash.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static,
//! e2fsprogs (mkfs.ext4, e2fsck, dumpe2fs, debugfs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use moonlit_images::nbd::{CacheDisk, Stats};
use moonlit_images::qemu::Vm;
use moonlit_images::{disk, host, powerloss, rootfs};

const DIR: &str = "/var/lib/powerloss";

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

fn rounds() -> u64 {
    let r = env_u64("MOONLIT_POWER_ROUNDS", 3);
    assert!(r >= 1, "MOONLIT_POWER_ROUNDS must be at least 1");
    r
}

fn max_delay_ms() -> u64 {
    env_u64("MOONLIT_POWER_MAX_DELAY_MS", 4000).max(1)
}

/// splitmix64: a small, reproducible generator for the kill delays.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = match std::env::var("MOONLIT_POWER_SEED") {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("MOONLIT_POWER_SEED={v:?}: {e}")),
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                t.as_secs() ^ u64::from(t.subsec_nanos()) << 20 ^ u64::from(std::process::id())
            }
        };
        println!(
            "powerloss: {test}: seed {seed} (MOONLIT_POWER_SEED={seed} repeats the delays), {} rounds, delays 0..{} ms",
            rounds(),
            max_delay_ms()
        );
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The switch-root initramfs and a pristine disk with the writer, built
/// once per test program; each test works on its own copy of the disk.
fn images() -> &'static (PathBuf, PathBuf) {
    static IMAGES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGES.get_or_init(|| {
        require_program("mkfs.ext4");
        require_program("e2fsck");
        require_program("dumpe2fs");
        require_program("debugfs");
        let dir = scratch("powerloss-images");
        let writer = PathBuf::from(env!("CARGO_BIN_EXE_powerloss-writer"));
        assert!(
            host::is_static_elf(&writer).unwrap_or_else(|e| panic!("{e}")),
            "{} is not a static program (the guest has no libc)",
            writer.display()
        );
        let initrd = write_initramfs(
            &spec("init", &examples().join("switch-root"), false),
            &dir.join("switch-root.cpio"),
        );
        let mut tree = rootfs::build(&spec("sbin/init", &configs().join("powerloss-root"), true))
            .unwrap_or_else(|e| panic!("disk tree: {e}"));
        let bin = std::fs::read(&writer).expect("read powerloss-writer");
        tree.archive.file("usr/bin/powerloss-writer", 0o755, bin);
        tree.archive.dir(DIR.trim_start_matches('/'), 0o755);
        let img = dir.join("pristine.img");
        let opts = disk::DiskOptions {
            size_mib: 48,
            ..disk::DiskOptions::default()
        };
        disk::make_ext4(&tree.archive, &img, &opts).unwrap_or_else(|e| panic!("mkfs.ext4 -d: {e}"));
        disk::fsck(&img).unwrap_or_else(|e| panic!("the fresh image is not clean: {e}"));
        (initrd, img)
    })
}

/// A test's own copy of the pristine disk.
fn fresh_disk(dir: &Path) -> PathBuf {
    let img = dir.join("root.img");
    std::fs::copy(&images().1, &img).expect("copy the pristine disk");
    img
}

fn boot(dir: &Path, img: &Path, append: &str) -> Vm {
    let mut cfg = vm_config(dir, &images().0, &format!("root=/dev/vda {append}"));
    cfg.disk = Some(img.to_path_buf());
    cfg.nic = None;
    start(&cfg)
}

/// The same boot with the image behind [`CacheDisk`]: a volatile write
/// cache that only FLUSH and FUA make durable, partly lost at a power cut.
fn boot_cached(dir: &Path, img: &Path, append: &str, seed: u64) -> (Vm, CacheDisk) {
    // Short: a unix socket path has at most 107 bytes.
    let sock = std::env::temp_dir().join(format!("moonlit-powerloss-{}.sock", std::process::id()));
    let disk = CacheDisk::serve(img, &sock, seed).unwrap_or_else(|e| panic!("nbd server: {e}"));
    let mut cfg = vm_config(dir, &images().0, &format!("root=/dev/vda {append}"));
    cfg.nic = None;
    cfg.extra = vec!["-drive".into(), disk.drive_arg()];
    (start(&cfg), disk)
}

/// Odd rounds use the image file directly, even rounds the cache disk.
fn cached_round(r: u64) -> bool {
    r.is_multiple_of(2)
}

fn cache_figures(st: &Stats) -> String {
    format!(
        "disk=cache writes={} fua={} flushes={} cached_at_cut={} lost_at_cut={} after_cut={}",
        st.writes,
        st.fua_writes,
        st.flushes,
        st.cut_applied + st.cut_dropped,
        st.cut_dropped,
        st.after_cut
    )
}

/// The highest N in `powerloss: WORD NAME N ok` lines on the console. The
/// ` ok` after the number means a line cut by the kill (or shared with a
/// kernel message) never counts as a bigger number than was printed.
fn reported(console: &str, word: &str, name: &str) -> u64 {
    let pat = format!("powerloss: {word} {name} ");
    let mut best = 0;
    let mut rest = console;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with(" ok") {
            if let Ok(n) = digits.parse::<u64>() {
                best = best.max(n);
            }
        }
    }
    best
}

/// The writer's read-back at boot: waits for `powerloss: verified`, then
/// checks that it read exactly the files in `want`, each clean and with at
/// least the records reported fsynced for it.
fn check_guest_verify(vm: &Vm, want: &BTreeMap<String, u64>, when: &str) -> BTreeMap<String, u64> {
    let at = expect(vm, "powerloss: verified ", BOOT_TIMEOUT);
    // The whole line, not just its start (the console arrives in pieces).
    let end = vm
        .wait_for_from(at, " files", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    let console = vm.console_range(0, end);
    let count: Option<usize> = console[console.rfind("powerloss: verified ").unwrap_or(0)..]
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok());
    assert_eq!(
        count,
        Some(want.len()),
        "{when}: the guest read back a different number of record files:\n{}",
        vm.tail(40)
    );
    let mut found = BTreeMap::new();
    for (name, k) in want {
        let pat = format!("powerloss: verify {name} ");
        let line = console
            .lines()
            .rev()
            .find_map(|l| l.find(&pat).map(|i| &l[i + pat.len()..]))
            .unwrap_or_else(|| panic!("{when}: no read-back line for {name}:\n{}", vm.tail(40)));
        let records: u64 = line
            .strip_prefix("records=")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{when}: unreadable read-back line for {name}: {line}"));
        assert!(
            line.ends_with(" ok") && records >= *k,
            "{when}: after the guest kernel's journal replay, {name} holds {line}, but {k} records were reported fsynced"
        );
        found.insert(name.clone(), records);
    }
    found
}

/// Reads every record file of `want` from `img` with debugfs and checks it:
/// no damage, at least the records reported fsynced. Returns the scans, or
/// what is wrong.
fn host_files(
    img: &Path,
    want: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, powerloss::Scan>, String> {
    let mut scans = BTreeMap::new();
    for (name, k) in want {
        let data = disk::read_file(img, &format!("{DIR}/{name}.rec")).map_err(|e| {
            format!("{name}.rec is not in the image ({k} records were reported): {e}")
        })?;
        let s = powerloss::scan(name, &data);
        if s.problem.is_some() || s.records < *k {
            return Err(format!(
                "{name}.rec: {} ({} bytes), but {k} records were reported",
                s.summary(),
                data.len()
            ));
        }
        scans.insert(name.clone(), s);
    }
    Ok(scans)
}

fn check_host_files(
    img: &Path,
    want: &BTreeMap<String, u64>,
    when: &str,
) -> BTreeMap<String, powerloss::Scan> {
    host_files(img, want).unwrap_or_else(|e| panic!("{when}: {e}"))
}

fn run(tool: &str, args: &[&str], img: &Path) -> (i32, String) {
    let out = Command::new(require_program(tool))
        .args(args)
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The host-side check of a killed image, on a copy (the original goes on
/// to the next boot, for the guest kernel's replay): e2fsprogs replays the
/// journal and nothing else, then `e2fsck -fn` must find nothing to fix.
/// Journal recovery is what a journal is for; anything more is a failure.
fn try_replay_on_copy(img: &Path, copy: &Path) -> Result<String, String> {
    std::fs::copy(img, copy).expect("copy the killed image");
    let (code, replay) = run("e2fsck", &["-E", "journal_only", "-y"], copy);
    // 0: nothing to do or replayed, 1: file system modified; else an error.
    if code != 0 && code != 1 {
        return Err(format!(
            "e2fsck -E journal_only -y exited {code}:\n{replay}"
        ));
    }
    // e2fsck -fn exits 0 (it reports ext4's lazily kept free counts of the
    // superblock, and that is no error), the superblock says clean and no
    // recovery is left: the same check as after a clean power-off.
    disk::fsck(copy).map_err(|e| {
        format!("after the journal replay the filesystem is not clean: {e}\n(replay:\n{replay})")
    })?;
    Ok(if replay.contains("recovering journal") {
        format!("journal replay (exit {code})")
    } else {
        format!("check, no journal to replay (exit {code})")
    })
}

fn replay_on_copy(img: &Path, copy: &Path, when: &str) -> String {
    try_replay_on_copy(img, copy).unwrap_or_else(|e| panic!("{when}: {e}"))
}

fn save_console(dir: &Path, label: &str) {
    let _ = std::fs::copy(
        dir.join("console.log"),
        dir.join(format!("console-{label}.log")),
    );
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn sigkill_at_a_random_point_loses_no_fsynced_record() {
    require_root();
    let _l = vm_lock();
    let mut rng = Rng::from_env("sigkill");
    let dir = scratch("powerloss-kill");
    let img = fresh_disk(&dir);
    let copy = dir.join("replayed.img");
    // name -> records reported fsynced before its boot was killed.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut delays = Vec::new();
    for r in 1..=rounds() {
        let started = Instant::now();
        let name = format!("kill{r}");
        let append = format!("powerloss.name={name}");
        let (mut vm, cache) = if cached_round(r) {
            let append = format!("{append} powerloss.noise");
            let (vm, d) = boot_cached(&dir, &img, &append, rng.next());
            (vm, Some(d))
        } else {
            (boot(&dir, &img, &append), None)
        };
        expect(
            &vm,
            "powerloss-root: running on / = /dev/vda ext4 rw",
            BOOT_TIMEOUT,
        );
        let guest = check_guest_verify(&vm, &want, &format!("round {r}, boot"));
        let guest_prev = guest.get(&format!("kill{}", r - 1)).copied();
        expect(
            &vm,
            &format!("powerloss: fsynced {name} 1 ok"),
            BOOT_TIMEOUT,
        );
        let first = Instant::now();
        let delay = rng.below(max_delay_ms());
        std::thread::sleep(Duration::from_millis(delay));
        vm.kill();
        let after = first.elapsed();
        let k = reported(&vm.console(), "fsynced", &name);
        let disk_figures = match cache {
            None => "disk=file".to_string(),
            Some(d) => {
                let st = d.finish().unwrap_or_else(|e| panic!("round {r}: {e}"));
                assert!(
                    st.cut,
                    "round {r}: the cache disk saw a clean disconnect from a killed qemu"
                );
                assert!(
                    st.flushes > 0,
                    "round {r}: the guest never flushed the disk's cache: {st:?}"
                );
                cache_figures(&st)
            }
        };
        save_console(&dir, &format!("kill{r}"));
        assert!(k >= 1, "round {r}: no record was reported");
        let when = format!("round {r} (seed delay {delay} ms, {k} records reported)");
        // (1) qemu died with the filesystem mounted: the journal must need
        // recovery, else this was no power loss and proves nothing.
        assert!(
            disk::fsck(&img).is_err(),
            "{when}: the killed VM left a filesystem that needs no recovery"
        );
        // (2) e2fsprogs' replay on a copy.
        let replay = replay_on_copy(&img, &copy, &when);
        want.insert(name.clone(), k);
        let scans = check_host_files(&copy, &want, &when);
        let s = &scans[&name];
        delays.push(delay);
        println!(
            "powerloss: kill round={r} {disk_figures} delay_ms={delay} killed_after_ms={} reported={k} found={} tail={} guest_prev={} round_ms={} (e2fsprogs {replay}, then e2fsck -fn exit 0, superblock clean, earlier files intact)",
            ms(after),
            s.records,
            s.tail,
            guest_prev.map_or("-".to_string(), |n| n.to_string()),
            ms(started.elapsed())
        );
    }
    // (3) for the last round (the earlier ones were read back at the next
    // boot): the guest kernel replays the journal, the writer reads every
    // file back and exits, which powers off.
    let mut vm = boot(&dir, &img, "");
    expect(&vm, "powerloss: verify only; exiting", BOOT_TIMEOUT);
    expect_clean_poweroff(&mut vm);
    save_console(&dir, "final");
    disk::fsck(&img)
        .unwrap_or_else(|e| panic!("after the final clean power-off the image is not clean: {e}"));
    check_host_files(&img, &want, "after the final power-off");
    delays.sort_unstable();
    let final_guest = check_guest_verify(&vm, &want, "final boot");
    println!(
        "powerloss: kill done rounds={} delays_sorted_ms={delays:?} guest_last={}",
        rounds(),
        final_guest
            .get(&format!("kill{}", rounds()))
            .copied()
            .unwrap_or(0)
    );
}

#[test]
fn poweroff_while_writing_leaves_a_clean_fs() {
    require_root();
    let _l = vm_lock();
    let mut rng = Rng::from_env("poweroff");
    let dir = scratch("powerloss-poweroff");
    let img = fresh_disk(&dir);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in 1..=rounds() {
        let started = Instant::now();
        let name = format!("off{r}");
        let append = format!("powerloss.name={name} moonlit.rescue");
        let (mut vm, cache) = if cached_round(r) {
            let append = format!("{append} powerloss.noise");
            let (vm, d) = boot_cached(&dir, &img, &append, rng.next());
            (vm, Some(d))
        } else {
            (boot(&dir, &img, &append), None)
        };
        check_guest_verify(&vm, &want, &format!("round {r}, boot"));
        expect(&vm, "rescue shell started on", BOOT_TIMEOUT);
        expect(
            &vm,
            &format!("powerloss: fsynced {name} 1 ok"),
            BOOT_TIMEOUT,
        );
        let first = Instant::now();
        let delay = rng.below(max_delay_ms());
        std::thread::sleep(Duration::from_millis(delay));
        let at_request = reported(&vm.console(), "fsynced", &name);
        let from = vm.console_len();
        let mut asked = false;
        for _ in 0..3 {
            vm.send("/bin/moonlit ctl poweroff\n")
                .expect("type on the console");
            if vm
                .wait_for_from(from, "shutting down to power off", Duration::from_secs(20))
                .is_ok()
            {
                asked = true;
                break;
            }
        }
        assert!(
            asked,
            "round {r}: the typed power-off was not taken:\n{}",
            vm.tail(40)
        );
        let requested = first.elapsed();
        let disk_figures = match cache {
            None => {
                expect_clean_poweroff(&mut vm);
                "disk=file".to_string()
            }
            Some(d) => {
                // The power goes once moonlit says its shutdown is complete
                // (its last sync is done; reboot(2) follows): what comes
                // after, up to qemu's own flush at exit, does not count.
                expect(&vm, "moonlit: shutdown complete in", POWEROFF_TIMEOUT);
                d.cut()
                    .unwrap_or_else(|e| panic!("round {r}: the cut: {e}"));
                expect_clean_poweroff(&mut vm);
                let st = d.finish().unwrap_or_else(|e| panic!("round {r}: {e}"));
                // moonlit synced and remounted / read-only before powering
                // off: nothing may still wait in the disk's cache.
                assert_eq!(
                    st.cut_applied + st.cut_dropped,
                    0,
                    "round {r}: the guest powered off with writes still in the disk's volatile cache (never flushed): {st:?}"
                );
                cache_figures(&st)
            }
        };
        save_console(&dir, &format!("off{r}"));
        let console = vm.console();
        let k = reported(&console, "fsynced", &name);
        let when = format!("round {r} (delay {delay} ms, {k} records reported)");
        // The writer was still writing: the shutdown stopped it.
        assert!(
            console.contains("writer: stopped"),
            "{when}: the writer was not stopped by the shutdown:\n{}",
            vm.tail(40)
        );
        let report = disk::fsck(&img)
            .unwrap_or_else(|e| panic!("{when}: the image is not clean after the power-off: {e}"));
        assert!(report.contains("clean"), "{report}");
        want.insert(name.clone(), k);
        let scans = check_host_files(&img, &want, &when);
        let s = &scans[&name];
        println!(
            "powerloss: poweroff round={r} {disk_figures} delay_ms={delay} asked_after_ms={} at_request={at_request} reported={k} found={} tail={} round_ms={} (e2fsck -fn exit 0, superblock clean, earlier files intact)",
            ms(requested),
            s.records,
            s.tail,
            ms(started.elapsed())
        );
    }
}

/// Negative control: without fsync the same kill must lose reported
/// records (the data was still in the guest's page cache), so the kill is
/// a real loss of what the guest had not flushed and the checks can fail.
#[test]
fn without_fsync_the_kill_loses_records() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("powerloss-nofsync");
    let img = fresh_disk(&dir);
    let copy = dir.join("replayed.img");
    let name = "nofsync";
    let mut vm = boot(
        &dir,
        &img,
        &format!("powerloss.name={name} powerloss.nofsync powerloss.max=300"),
    );
    expect(&vm, "powerloss: holding", BOOT_TIMEOUT);
    vm.kill();
    let k = reported(&vm.console(), "written", name);
    assert_eq!(
        k,
        300,
        "the writer reported {k} of 300 records:\n{}",
        vm.tail(20)
    );
    replay_on_copy(&img, &copy, "no-fsync control");
    let found = match disk::read_file(&copy, &format!("{DIR}/{name}.rec")) {
        Ok(d) => powerloss::scan(name, &d).summary(),
        Err(_) => "no file (its directory entry was not on the disk either)".to_string(),
    };
    println!("powerloss: nofsync written={k} found: {found}");
    let mut want = BTreeMap::new();
    want.insert(name.to_string(), k);
    assert!(
        host_files(&copy, &want).is_err(),
        "all {k} records written without fsync survived the kill: the kill did not lose the guest's page cache, so the power-loss test proves nothing"
    );
}

/// Negative control of the cache disk: with `barrier=0` ext4 sends no
/// flushes, so fsynced records stay in the disk's volatile cache and the
/// cut must lose some of them (or leave a filesystem that needs more than a
/// journal replay). The flushes are what the cache rounds above rely on.
#[test]
fn without_barriers_the_cache_disk_loses_fsynced_records() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("powerloss-nobarrier");
    let img = fresh_disk(&dir);
    let copy = dir.join("replayed.img");
    let name = "nobarrier";
    let (mut vm, cache) = boot_cached(
        &dir,
        &img,
        &format!("powerloss.name={name} powerloss.nobarrier powerloss.max=300"),
        0x5eed,
    );
    expect(&vm, "powerloss-root: remount barrier=0: true", BOOT_TIMEOUT);
    expect(&vm, "powerloss: holding", BOOT_TIMEOUT);
    vm.kill();
    let st = cache.finish().unwrap_or_else(|e| panic!("{e}"));
    let k = reported(&vm.console(), "fsynced", name);
    assert_eq!(
        k,
        300,
        "the writer reported {k} of 300 records:\n{}",
        vm.tail(20)
    );
    let mut want = BTreeMap::new();
    want.insert(name.to_string(), k);
    let outcome = try_replay_on_copy(&img, &copy).and_then(|_| host_files(&copy, &want));
    println!(
        "powerloss: nobarrier {} reported={k} outcome: {}",
        cache_figures(&st),
        match &outcome {
            Ok(_) => "everything survived".to_string(),
            Err(e) => e.lines().next().unwrap_or_default().to_string(),
        }
    );
    assert!(
        outcome.is_err(),
        "with barrier=0 all {k} fsynced records survived the cut of the cache disk: the cache loses nothing, so its rounds prove nothing ({st:?})"
    );
}
