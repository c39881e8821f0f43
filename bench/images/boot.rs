//! Boot-time benchmark of `images/` (run by bench/images/run.sh).
//!
//! Boots the Debian kernel under qemu (TCG, one vCPU, no NIC, the same
//! flags for every run) with two initramfs images that do the same work:
//! - moonlit as /init (bench/images/moonlit-config: stage 1 mounts /proc,
//!   /sys, /dev, /dev/pts, /dev/shm, /run; a hostname; one service, busybox
//!   httpd, then a oneshot marker service);
//! - busybox init as /init with an inittab doing the same mounts, the
//!   hostname, httpd as a respawn entry and a `once` entry writing
//!   `busybox-init: READY` to /dev/kmsg.
//!
//! Figure: guest time from the kernel's "Run /init as init process" line to
//! a READY line that a shell started by the init writes to /dev/kmsg (the
//! same way for both inits, on the kernel's printk clock). Then the demo
//! (examples/demo) is booted once and moonlit PID 1's VmRSS read through
//! its status CGI. Writes docs/bench-images.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moonlit_images::qemu::{self, Vm, VmConfig};
use moonlit_images::{host, rootfs};

const INITTAB: &str = "\
::sysinit:/bin/busybox mount -t proc -o nosuid,nodev,noexec proc /proc
::sysinit:/bin/busybox mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
::sysinit:/bin/busybox mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
::sysinit:/bin/busybox mkdir -p /dev/pts /dev/shm
::sysinit:/bin/busybox mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
::sysinit:/bin/busybox mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
::sysinit:/bin/busybox mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
::sysinit:/bin/busybox hostname bench
::respawn:/bin/busybox httpd -f -p 80 -h /www
::once:/bin/busybox sh -c 'echo busybox-init: READY > /dev/kmsg'
";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Fails the benchmark. A panic, not an exit: unwinding drops the running
/// `Vm`, which kills its qemu (an exit would leave it behind).
fn die(msg: String) -> ! {
    panic!("bench-images: {msg}")
}

fn boot(kernel: &Path, initrd: &Path, log: &Path, marker: &str, forward: Option<u16>) -> Vm {
    let mut c = VmConfig::new(kernel);
    c.initrd = Some(initrd.to_path_buf());
    c.console_log = Some(log.to_path_buf());
    match forward {
        Some(p) => c.forwards.push((p, 80)),
        None => c.nic = None,
    }
    let vm = Vm::start(&c).unwrap_or_else(|e| die(e.to_string()));
    vm.wait_for(marker, Duration::from_secs(240))
        .unwrap_or_else(|e| die(e.to_string()));
    vm
}

/// Seconds from "Run /init" to the kmsg READY marker, and moonlit's own
/// "boot complete in N ms" figure.
fn measure_moonlit(console: &str) -> Option<(f64, u64)> {
    let summary = console.lines().find(|l| l.contains("boot complete in "))?;
    if !summary.contains(" 0 failed") || console.contains("web: exited") {
        die(format!(
            "the web service did not start cleanly:\n{}",
            qemu::tail_lines(console, 20)
        ));
    }
    let start = qemu::stamp_of(console, "Run /init as init process")?;
    let ready = qemu::stamp_of(console, "moonlit-bench: READY")?;
    let own: u64 = console
        .lines()
        .find_map(|l| l.split("boot complete in ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some((ready - start, own))
}

fn measure_busybox(console: &str) -> Option<f64> {
    // A failed step would make busybox init look faster than it is.
    if console.contains("can't run") || console.contains("No such file") {
        die(format!(
            "a busybox init step failed:\n{}",
            qemu::tail_lines(console, 20)
        ));
    }
    Some(
        qemu::stamp_of(console, "busybox-init: READY")?
            - qemu::stamp_of(console, "Run /init as init process")?,
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let moonlit = std::env::var_os("MOONLIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| die("set MOONLIT_BIN (run bench/images/run.sh)".into()));
    let (kernel, modules) = host::debian_kernel().unwrap_or_else(|e| die(e.to_string()));
    let busybox = host::static_busybox().unwrap_or_else(|e| die(e.to_string()));
    let ws = workspace();
    let dir = std::env::temp_dir().join("moonlit-bench-images");
    let _ = std::fs::create_dir_all(&dir);

    let page = (
        "www/index.html".to_string(),
        0o644,
        b"<h1>bench</h1>\n".to_vec(),
    );
    // moonlit image.
    let ml_spec = rootfs::RootSpec {
        moonlit: moonlit.clone(),
        init_path: "init".into(),
        configs: vec![("etc/moonlit".into(), ws.join("bench/images/moonlit-config"))],
        busybox: Some(busybox.clone()),
        module_tree: Some(modules.clone()),
        modules: Vec::new(),
        scan_modules: true,
        device_nodes: true,
        extra_files: vec![page.clone()],
    };
    let ml = rootfs::build(&ml_spec).unwrap_or_else(|e| die(e.to_string()));
    let ml_img = dir.join("moonlit.cpio");
    std::fs::write(&ml_img, ml.archive.to_bytes())
        .unwrap_or_else(|e| die(format!("write {}: {e}", ml_img.display())));
    // busybox init image: the same tree, /init is busybox, plus the inittab.
    let mut bb = ml.archive.clone();
    bb.symlink("init", "/bin/busybox");
    bb.file("etc/inittab", 0o644, INITTAB.as_bytes().to_vec());
    let bb_img = dir.join("busybox.cpio");
    std::fs::write(&bb_img, bb.to_bytes())
        .unwrap_or_else(|e| die(format!("write {}: {e}", bb_img.display())));

    let mut ml_times = Vec::new();
    let mut ml_own = Vec::new();
    let mut breakdown = String::new();
    let mut bb_times = Vec::new();
    for i in 0..runs {
        // Alternate so that a slow phase of the machine hits both.
        let log = dir.join(format!("moonlit-{i}.log"));
        let mut vm = boot(&kernel, &ml_img, &log, "moonlit-bench: READY", None);
        // moonlit's own summary line may come just after the marker.
        let _ = vm.wait_for("moonlit: READY", Duration::from_secs(30));
        if let Some(l) = vm
            .console()
            .lines()
            .find(|l| l.contains("boot complete in "))
        {
            breakdown = l.trim().to_string();
        }
        let (t, own) = measure_moonlit(&vm.console())
            .unwrap_or_else(|| die(format!("no timestamps in {}", log.display())));
        vm.kill();
        eprintln!(
            "moonlit run {i}: {:.0} ms (moonlit's own figure {own} ms)",
            t * 1e3
        );
        ml_times.push(t);
        ml_own.push(own as f64 / 1e3);

        let log = dir.join(format!("busybox-{i}.log"));
        let mut vm = boot(&kernel, &bb_img, &log, "busybox-init: READY", None);
        let t = measure_busybox(&vm.console())
            .unwrap_or_else(|| die(format!("no timestamps in {}", log.display())));
        vm.kill();
        eprintln!("busybox run {i}: {:.0} ms", t * 1e3);
        bb_times.push(t);
    }

    // RSS of moonlit PID 1 with the demo running.
    let demo_spec = rootfs::RootSpec {
        configs: vec![("etc/moonlit".into(), ws.join("examples/demo"))],
        extra_files: Vec::new(),
        ..ml_spec
    };
    let demo = rootfs::build(&demo_spec).unwrap_or_else(|e| die(e.to_string()));
    let demo_img = dir.join("demo.cpio");
    std::fs::write(&demo_img, demo.archive.to_bytes())
        .unwrap_or_else(|e| die(format!("write: {e}")));
    let port = host::free_port().unwrap_or_else(|e| die(e.to_string()));
    let mut vm = boot(
        &kernel,
        &demo_img,
        &dir.join("demo.log"),
        "moonlit: READY",
        Some(port),
    );
    // Let the crasher go through its restarts first (it gives up after ~17 s).
    let _ = vm.wait_for("giving up", Duration::from_secs(60));
    let status = std::process::Command::new(
        host::find_program("curl").unwrap_or_else(|e| die(e.to_string())),
    )
    .args([
        "-sS",
        "-f",
        "--max-time",
        "20",
        &format!("http://127.0.0.1:{port}/cgi-bin/status"),
    ])
    .output()
    .unwrap_or_else(|e| die(format!("curl: {e}")));
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let kb = |key: &str| -> String {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| "?".into())
    };
    let (rss, hwm) = (kb("VmRSS:"), kb("VmHWM:"));
    vm.kill();

    let ml_med = median(&ml_times);
    let bb_med = median(&bb_times);
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{:.0}", t * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let date = std::env::var("BENCH_DATE").unwrap_or_else(|_| "(date not given)".into());
    let machine = std::env::var("BENCH_MACHINE").unwrap_or_else(|_| {
        format!(
            "{} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        )
    });
    let kver = modules
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let moonlit_size = std::fs::metadata(&moonlit)
        .map(|m| m.len() / 1024)
        .unwrap_or(0);
    let verdict = if ml_med <= bb_med {
        format!(
            "moonlit ({:.0} ms) is no slower than busybox init ({:.0} ms): the goal is met.",
            ml_med * 1e3,
            bb_med * 1e3
        )
    } else {
        format!(
            "moonlit ({:.0} ms) is {:.1} times as slow as busybox init ({:.0} ms): the goal \
             \"no slower than busybox init\" is NOT met in this setup. The largest step is \
             creating the Lua runtime (\"lua runtime\" minus \"stage 1\" above).",
            ml_med * 1e3,
            ml_med / bb_med,
            bb_med * 1e3
        )
    };
    let md = format!(
        "# Boot-time figures of images/\n\n\
Date: {date}. Machine: {machine}. Guest: Debian kernel {kver} (linux-image-amd64) under \
qemu-system-x86_64 with TCG (no KVM), 1 vCPU, 512 MiB, no NIC, serial console, initramfs \
(uncompressed cpio). moonlit static binary: {moonlit_size} KiB. Produced by \
`bench/images/run.sh {runs}` ({runs} boots per init, alternating).\n\n\
## Kernel starting /init to READY (guest time)\n\n\
Both images hold the same tree (busybox-static, a page, no modules) and do the same \
work: mount /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run; set the hostname; \
start one service (busybox httpd). Measured on the kernel's printk clock from its \
\"Run /init as init process\" line to the READY line.\n\n\
| init | median | runs (ms) |\n|---|---|---|\n\
| moonlit (Lua config, supervised service) | {:.0} ms | {} |\n\
| busybox init (inittab) | {:.0} ms | {} |\n\n\
moonlit's own \"boot complete in N ms\" (from its first instruction to its READY \
log line, on its own clock): {} ms. Its steps in the last run (cumulative from \
its start up to \"lua runtime\", then per step):\n\n```\n{breakdown}\n```\n\n\
Both READY markers are written to /dev/kmsg by a shell the init starts: busybox \
init's by a `once` entry (started after the `sysinit` entries, just before the \
`respawn` httpd), moonlit's by a oneshot service ordered after the web service. \
Under TCG every guest instruction is \
emulated, so both figures are several times what a KVM guest or real hardware would \
show: compare the rows, not the absolute numbers. The 2 cores were shared with other \
builds during the run; the spread of the runs shows that noise.\n\n\
Verdict: {verdict}\n\n\
Why (from `bench/images/tcg-profile.sh`, run of 2026-11-21 on the same machine): \
under TCG the cost of code is mostly the cost of translating it the first time it \
runs, not of running it. `moonlit check` on this configuration (Lua runtime plus the \
two modules: the \"lua runtime\" and \"modules\" steps) takes 2.0 ms natively and \
49.4 ms under qemu's user-mode TCG (12.4 ms of which is qemu starting `moonlit \
--version`); TCG translated 6,438 guest code blocks for it, and perf puts 75% of \
qemu's samples in qemu itself (its translator: tcg_gen_code, tcg_optimize...) and \
under 3% in the translated code. A boot's time under TCG therefore follows how much \
distinct code runs once (moonlit: the Lua runtime, parser and the configuration \
code; busybox init: a small loop plus the busybox applets it runs over and over, \
whose translations are reused), which is not what a KVM guest or real hardware \
pays. Natively, as PID 1 of a sandbox (`moonlit run --sandbox \
bench/images/moonlit-config`), the same boot completes in 2-5 ms.\n\n\
systemd on a minimal Debian root is measured by a separate script, \
`bench/images/systemd.sh --write-doc` (it builds the root with debootstrap from \
Debian's packages, about a minute a run once cached): see its section below.\n\n\
## moonlit PID 1 memory with the demo running\n\n\
examples/demo booted (e1000 loaded, network up, busybox httpd serving, the crashing \
service given up after 5 restarts), read from /proc/1/status through the demo's \
status CGI: VmRSS {rss} kB, VmHWM {hwm} kB.\n",
        ml_med * 1e3,
        list(&ml_times),
        bb_med * 1e3,
        list(&bb_times),
        list(&ml_own),
    );
    let out = ws.join("docs/bench-images.md");
    // Keep the section bench/images/systemd.sh wrote (between its markers).
    let mut md = md;
    if let Ok(old) = std::fs::read_to_string(&out) {
        if let (Some(a), Some(b)) = (
            old.find("<!-- systemd-bench:begin"),
            old.find("<!-- systemd-bench:end -->"),
        ) {
            md.push('\n');
            md.push_str(&old[a..b + "<!-- systemd-bench:end -->".len()]);
            md.push('\n');
        }
    }
    std::fs::write(&out, &md).unwrap_or_else(|e| die(format!("write {}: {e}", out.display())));
    println!("{md}");
    eprintln!("bench-images: wrote {}", out.display());
}
