//! Fuzzing the text PID 1 reads from the kernel and the module tree:
//! kernel command lines (`util::split_cmdline`), /proc/self/mounts
//! (`util::parse_mounts`, `unescape_mount_field`), and modules.dep /
//! modules.alias / modules.builtin / modules.softdep (`kmod::ModDb` with
//! `names`, `plan`, and the alias `glob`). Generated and mutated inputs;
//! oracles where there is one (a round trip through the mounts escaping, a
//! whitespace split for unquoted command lines, the recursive glob as a
//! reference on small inputs, the order of a module plan). Every case runs
//! in a worker thread whose progress is bounded (a hang fails the test).
//!
//! Short pass: 20,000 cases per target. `MOONLIT_FUZZ_SCALE=N` multiplies;
//! `MOONLIT_FUZZ_SEED` replays.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moonlit_sys::kmod::{self, ModDb};
use moonlit_sys::util::{parse_mounts, split_cmdline, unescape_mount_field};

const BASE: u64 = 20_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name} must be an integer"))
    })
}

fn seed() -> u64 {
    env_u64("MOONLIT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    })
}

fn cases() -> u64 {
    BASE * env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1)
}

fn corpus(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/fuzz_inputs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `f(rng, i)` for every case in a worker thread; fails on a panic
/// or on 60 s without progress, naming the case (its description is kept
/// before each case runs).
fn run(name: &str, seed: u64, f: fn(&mut fastrand::Rng, &Mutex<String>)) {
    let n = cases();
    eprintln!("fuzz_inputs {name}: MOONLIT_FUZZ_SEED={seed}, {n} cases");
    let current = Arc::new(Mutex::new(String::new()));
    let cur = current.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let w = std::thread::Builder::new()
        .stack_size(8 << 20) // the main thread's, as in PID 1
        .spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            for i in 0..n {
                f(&mut rng, &cur);
                if i % 200 == 0 && tx.send(()).is_err() {
                    return;
                }
            }
        })
        .expect("spawn");
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let c = current.lock().map(|c| c.clone()).unwrap_or_default();
                panic!(
                    "{name} (seed {seed}): no progress for 60 s on:\n{}",
                    clip(&c)
                );
            }
        }
    }
    if let Err(p) = w.join() {
        let c = current
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{name} (seed {seed}): {msg}\non:\n{}", clip(&c));
    }
    eprintln!("fuzz_inputs {name}: {n} cases, 0 panics, 0 hangs");
}

fn clip(s: &str) -> &str {
    &s[..s.floor_char_boundary(4000)]
}

fn text(rng: &mut fastrand::Rng, alphabet: &[char], max: usize) -> String {
    (0..rng.usize(0..=max))
        .map(|_| {
            if rng.u8(0..20) == 0 {
                rng.char(..)
            } else {
                alphabet[rng.usize(0..alphabet.len())]
            }
        })
        .collect()
}

fn mutate(rng: &mut fastrand::Rng, s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    for _ in 0..rng.usize(1..6) {
        if b.is_empty() {
            break;
        }
        let i = rng.usize(0..b.len());
        match rng.u8(0..5) {
            0 => b[i] = rng.u8(..),
            1 => {
                b.remove(i);
            }
            2 => b.truncate(i),
            3 => {
                let j = rng.usize(i..b.len());
                let c = b[i..j].to_vec();
                b.splice(i..i, c);
            }
            _ => {
                let set = b"\"=\\ \t\n:*?[]!-_";
                b.insert(i, set[rng.usize(0..set.len())])
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

// ---- kernel command line ----------------------------------------------

fn cmdline_case(rng: &mut fastrand::Rng, cur: &Mutex<String>) {
    let seeds = corpus("cmdline.txt");
    let lines: Vec<&str> = seeds.lines().filter(|l| !l.starts_with('#')).collect();
    let s = match rng.u8(0..3) {
        0 => text(
            rng,
            &['a', '=', ' ', '"', '.', '\t', '\n', 'x', '-', '\u{a0}'],
            200,
        ),
        1 => "\"a b\" ".repeat(rng.usize(0..2_000)),
        _ => {
            let k = rng.usize(0..lines.len());
            mutate(rng, lines[k])
        }
    };
    *cur.lock().expect("lock") = s.clone();
    let words = split_cmdline(&s);
    for w in &words {
        assert!(!w.contains('"'), "a quote left in {w:?}");
    }
    if !s.contains('"') {
        let plain: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(words, plain, "unquoted: a whitespace split");
    }
    // As the init reads it: key=value, a bare word maps to "".
    for w in &words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        assert!(k.len() + v.len() <= w.len());
    }
}

#[test]
fn kernel_command_lines() {
    let words = split_cmdline(r#"console=ttyS0 moonlit.config="/etc/my conf" quiet "#);
    assert_eq!(
        words,
        ["console=ttyS0", "moonlit.config=/etc/my conf", "quiet"]
    );
    run("cmdline", seed(), cmdline_case);
}

// ---- /proc/self/mounts -------------------------------------------------

fn escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            ' ' => o.push_str("\\040"),
            '\t' => o.push_str("\\011"),
            '\n' => o.push_str("\\012"),
            '\\' => o.push_str("\\134"),
            c => o.push(c),
        }
    }
    o
}

fn mounts_case(rng: &mut fastrand::Rng, cur: &Mutex<String>) {
    let seeds = corpus("mounts.txt");
    if rng.bool() {
        // Round trip: fields with spaces, tabs, newlines and backslashes.
        let alpha = ['a', '/', ' ', '\t', '\n', '\\', '0', '4', 'é', ','];
        let mut want = Vec::new();
        let mut text_all = String::new();
        for _ in 0..rng.usize(0..8) {
            let f: Vec<String> = (0..4)
                .map(|_| {
                    let t = text(rng, &alpha, 12);
                    if t.is_empty() {
                        "x".into()
                    } else {
                        t
                    }
                })
                .collect();
            text_all.push_str(&format!(
                "{} {} {} {} 0 0\n",
                escape(&f[0]),
                escape(&f[1]),
                escape(&f[2]),
                escape(&f[3])
            ));
            want.push(f);
        }
        *cur.lock().expect("lock") = text_all.clone();
        let got = parse_mounts(&text_all);
        let got: Vec<Vec<String>> = got
            .into_iter()
            .map(|m| vec![m.source, m.target, m.fstype, m.options])
            .collect();
        assert_eq!(got, want, "round trip of:\n{text_all}");
    } else {
        let s = mutate(rng, &seeds);
        *cur.lock().expect("lock") = s.clone();
        let ms = parse_mounts(&s);
        assert!(ms.len() <= s.lines().count());
        let _ = unescape_mount_field(&s);
    }
}

#[test]
fn proc_mounts() {
    let ms = parse_mounts(&corpus("mounts.txt"));
    assert!(ms.iter().any(|m| m.target == "/mnt/with space"), "{ms:?}");
    // Regression: an escape past a byte (\777) overflowed; it stays literal.
    assert_eq!(unescape_mount_field("a\\777b\\101"), "a\\777bA");
    // Regression: a Unicode space inside a field is not a separator.
    let m = parse_mounts("none /mnt/a\u{2005}b tmpfs rw 0 0\n");
    assert_eq!(m[0].target, "/mnt/a\u{2005}b");
    run("mounts", seed(), mounts_case);
}

// ---- modules.dep / alias / builtin / softdep ---------------------------

/// The recursive glob kmod.rs had: the reference on small inputs.
fn glob_ref(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob_ref(&pat[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob_ref(&pat[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = pat.iter().skip(1).position(|&c| c == b']').map(|e| e + 1) else {
                return s.first() == Some(&b'[') && glob_ref(&pat[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let set = &pat[1..end];
            let (neg, set) = match set.first() {
                Some(b'!') | Some(b'^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_ref(&pat[end + 1..], &s[1..])
        }
        Some(&p) => s.first() == Some(&p) && glob_ref(&pat[1..], &s[1..]),
    }
}

fn glob_case(rng: &mut fastrand::Rng, cur: &Mutex<String>) {
    let pa = ['a', 'b', '*', '?', '[', ']', '!', '-', '^', 'c'];
    let sa = ['a', 'b', 'c', '[', ']', '-'];
    let p = text(rng, &pa, 10);
    let s = text(rng, &sa, 12);
    *cur.lock().expect("lock") = format!("pattern {p:?} text {s:?}");
    assert_eq!(
        kmod::glob(p.as_bytes(), s.as_bytes()),
        glob_ref(p.as_bytes(), s.as_bytes()),
        "glob({p:?}, {s:?})"
    );
}

#[test]
fn alias_globs_agree_with_the_reference_and_stay_linear() {
    run("glob", seed(), glob_case);
    // Regression: stars against a long mismatching text took exponential
    // time in the recursive glob (a modules.alias line with many `*`).
    let pat = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    let s = "a".repeat(200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(kmod::glob(pat.as_bytes(), s.as_bytes()));
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Ok(false),
        "glob of 12 stars over 200 characters did not end"
    );
}

fn module_name(rng: &mut fastrand::Rng, n: usize) -> String {
    format!("m{}{}", rng.usize(0..n), ["", "-x", "_x"][rng.usize(0..3)])
}

/// A generated module tree: dependencies (cycles, missing ones, long
/// chains), aliases with globs, built-ins, soft dependencies.
fn tree(rng: &mut fastrand::Rng) -> (String, String, String, String) {
    let n = rng.usize(1..40);
    let mut dep = String::new();
    if rng.u8(0..40) == 0 {
        // A long chain.
        let len = rng.usize(100..2_000);
        for i in 0..len {
            dep.push_str(&format!("c/m{i}.ko: c/m{}.ko\n", i + 1));
        }
        dep.push_str(&format!("c/m{len}.ko:\n"));
    }
    for _ in 0..n {
        let name = module_name(rng, n);
        let ext = [".ko", ".ko.xz", ".ko.zst", ""][rng.usize(0..4)];
        let ds: Vec<String> = (0..rng.usize(0..4))
            .map(|_| format!("kernel/{}.ko", module_name(rng, n + 2)))
            .collect();
        dep.push_str(&format!("kernel/{name}{ext}: {}\n", ds.join(" ")));
    }
    let mut alias = String::new();
    for _ in 0..rng.usize(0..20) {
        let pa = ['p', 'c', 'i', ':', 'v', '0', '1', '*', '?', '[', ']', '-'];
        alias.push_str(&format!(
            "alias {} {}\n",
            text(rng, &pa, 12),
            module_name(rng, n + 2)
        ));
    }
    let mut builtin = String::new();
    for _ in 0..rng.usize(0..5) {
        builtin.push_str(&format!("kernel/{}.ko\n", module_name(rng, n + 2)));
    }
    let mut soft = String::new();
    for _ in 0..rng.usize(0..5) {
        soft.push_str(&format!(
            "softdep {} pre: {} post: {}\n",
            module_name(rng, n),
            module_name(rng, n + 2),
            module_name(rng, n + 2)
        ));
    }
    (dep, alias, builtin, soft)
}

fn kmod_case(rng: &mut fastrand::Rng, cur: &Mutex<String>) {
    let (mut dep, mut alias, mut builtin, mut soft) = tree(rng);
    if rng.u8(0..4) == 0 {
        dep = mutate(rng, &corpus("modules.dep"));
        alias = mutate(rng, &corpus("modules.alias"));
        builtin = mutate(rng, &corpus("modules.builtin"));
        soft = mutate(rng, &corpus("modules.softdep"));
    }
    let asked: Vec<String> = (0..4)
        .map(|_| match rng.u8(0..4) {
            0 => text(rng, &['p', 'c', 'i', ':', 'v', '0', '1', '-', '_'], 12),
            1 => ["e1000", "virtio_net", "veth", "m0", "dummy"][rng.usize(0..5)].into(),
            _ => module_name(rng, 40),
        })
        .collect();
    *cur.lock().expect("lock") = format!(
        "modules.dep:\n{dep}\nmodules.alias:\n{alias}\nmodules.builtin:\n{builtin}\nmodules.softdep:\n{soft}\nasked: {asked:?}"
    );
    let db = ModDb::parse(Path::new("/lib/modules/x"), &dep, &alias, &builtin).with_softdeps(&soft);
    for a in &asked {
        let _ = db.names(a);
        match db.plan(a) {
            Ok(plan) => {
                // Each file once; the asked module (when it is a file) last
                // among the hard loads before its post soft dependencies.
                let mut seen = std::collections::HashSet::new();
                for l in &plan {
                    assert!(
                        seen.insert(l.path.clone()),
                        "{} twice in {plan:?}",
                        l.path.display()
                    );
                }
                let _ = db.resolve(a);
            }
            Err(e) => {
                let m = e.to_string();
                assert!(!m.is_empty());
            }
        }
    }
}

#[test]
fn module_indexes() {
    let db = ModDb::parse(
        Path::new("/lib/modules/x"),
        &corpus("modules.dep"),
        &corpus("modules.alias"),
        &corpus("modules.builtin"),
    )
    .with_softdeps(&corpus("modules.softdep"));
    let files: Vec<String> = db
        .resolve("pci:v00008086d0000100Esv0000sd0000bc02sc00i00")
        .expect("the e1000 alias resolves")
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        files,
        ["/lib/modules/x/kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz"]
    );
    let chain: Vec<String> = db
        .resolve("virtio-net")
        .expect("virtio_net")
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        chain,
        [
            "loop.ko.xz",
            "failover.ko.xz",
            "net_failover.ko.xz",
            "virtio_net.ko.xz"
        ],
        "soft pre dependency, dependencies, the module"
    );
    run("kmod", seed(), kmod_case);
}

/// A modules.dep whose dependency chain is 100,000 modules long (a broken
/// or hostile tree) is planned or refused on PID 1's 8 MiB stack, not a
/// stack overflow.
#[test]
fn a_very_long_dependency_chain_does_not_overflow_the_stack() {
    let mut dep = String::new();
    let n = 100_000;
    for i in 0..n {
        dep.push_str(&format!("c/m{i}.ko: c/m{}.ko\n", i + 1));
    }
    dep.push_str(&format!("c/m{n}.ko:\n"));
    let r = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let db = ModDb::parse(Path::new("/lib/modules/x"), &dep, "", "");
            db.plan("m0").map(|p| p.len()).map_err(|e| e.to_string())
        })
        .expect("spawn")
        .join()
        .expect("no panic");
    let e = r.expect_err("refused");
    assert!(e.contains("nested deeper than"), "{e}");
    // A chain within the bound is planned, dependencies first.
    let mut dep = String::new();
    for i in 0..100 {
        dep.push_str(&format!("c/m{i}.ko: c/m{}.ko\n", i + 1));
    }
    dep.push_str("c/m100.ko:\n");
    let db = ModDb::parse(Path::new("/x"), &dep, "", "");
    let plan = db.resolve("m0").expect("planned");
    assert_eq!(plan.len(), 101);
    assert_eq!(plan[0], Path::new("/x/c/m100.ko"));
}
