//! Entrypoint mode, differentially: every case runs against moonlit and
//! against Debian's `tini` and `dumb-init` in the same run, with the flags
//! mapped (docs/entrypoint.md has the table), and the peers' behaviour is
//! the reference. Where a peer has no equivalent (dumb-init is never a
//! subreaper and has no -e or -p), the case says so and runs the others.
//!
//! Needs root (pid namespaces for the PID 1 cases) and the peers
//! (setup.sh installs them); fails loudly without either.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, scratch, BIN};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    Moonlit,
    Tini,
    DumbInit,
}

const ALL: [Peer; 3] = [Peer::Moonlit, Peer::Tini, Peer::DumbInit];

/// What a case asks of the init, in moonlit's words.
#[derive(Default, Clone)]
struct Flags {
    subreaper: bool,
    group: bool,
    remap: Vec<i32>,
    pdeath: Option<&'static str>,
}

fn program(p: Peer) -> String {
    match p {
        Peer::Moonlit => BIN.to_string(),
        Peer::Tini | Peer::DumbInit => {
            let name = if p == Peer::Tini { "tini" } else { "dumb-init" };
            for d in ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"] {
                let f = Path::new(d).join(name);
                if f.exists() {
                    return f.display().to_string();
                }
            }
            panic!("{name} is not installed: setup.sh installs it (the differential tests need it)")
        }
    }
}

/// The argv that asks `p` for `f` and runs `cmd`.
fn argv(p: Peer, f: &Flags, cmd: &[&str]) -> Vec<String> {
    let mut v = vec![program(p)];
    match p {
        Peer::Moonlit | Peer::Tini => {
            if f.subreaper {
                v.push("-s".into());
            }
            if f.group {
                v.push("-g".into());
            }
            for c in &f.remap {
                v.push("-e".into());
                v.push(c.to_string());
            }
            if let Some(s) = f.pdeath {
                v.push("-p".into());
                v.push(s.into());
            }
        }
        Peer::DumbInit => {
            assert!(
                !f.subreaper && f.remap.is_empty() && f.pdeath.is_none(),
                "dumb-init has no subreaper, -e or -p: the case must not ask it"
            );
            // dumb-init signals the child's session (its group) by default;
            // --single-child is "the child only", tini's default.
            if !f.group {
                v.push("--single-child".into());
            }
        }
    }
    v.push("--".into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn command(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c.env_remove("MOONLIT_CONFIG")
        .env_remove("TINI_SUBREAPER")
        .env_remove("TINI_KILL_PROCESS_GROUP");
    c
}

fn wait_timeout(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs to the end; (exit code, stdout, stderr). A death by signal is
/// reported as 128 + n, as a shell would.
fn run(argv: &[String], secs: u64) -> (i32, String, String) {
    let mut c = command(argv);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut o = String::new();
    let _ = out.read_to_string(&mut o);
    let st = wait_timeout(&mut child, secs, &format!("{argv:?}"));
    let e = t.join().unwrap();
    (code(st), o, e)
}

fn code(st: ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

fn wait_file(p: &Path, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn exit_codes_and_deaths_by_signal_are_passed_on() {
    for p in ALL {
        for n in [0, 1, 42, 255] {
            let (c, _, e) = run(
                &argv(
                    p,
                    &Flags::default(),
                    &["/bin/sh", "-c", &format!("exit {n}")],
                ),
                20,
            );
            assert_eq!(c, n, "{p:?}: exit {n} gave {c}: {e}");
        }
        for (sig, n) in [("TERM", 15), ("KILL", 9), ("USR1", 10), ("SEGV", 11)] {
            let (c, _, e) = run(
                &argv(
                    p,
                    &Flags::default(),
                    &["/bin/sh", "-c", &format!("kill -{sig} $$")],
                ),
                20,
            );
            assert_eq!(c, 128 + n, "{p:?}: kill -{sig} gave {c}: {e}");
        }
    }
}

/// Starts `cmd` under `p`, waits for `ready`, returns the child.
fn start(argv: &[String], ready: &Path) -> Child {
    let mut c = command(argv);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    if !wait_file(ready, 20) {
        let _ = child.kill();
        let mut e = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut e);
        panic!("{argv:?}: never got ready: {e}");
    }
    child
}

fn kill(pid: u32, sig: i32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    let sig = rustix::process::Signal::from_named_raw(sig).expect("signal");
    rustix::process::kill_process(pid, sig)
        .unwrap_or_else(|e| panic!("kill({pid:?}, {sig:?}): {e}"));
}

#[test]
fn signals_are_forwarded_to_the_child() {
    let dir = scratch("entry-signals");
    for p in ALL {
        for (name, n) in [
            ("TERM", 15),
            ("INT", 2),
            ("HUP", 1),
            ("USR1", 10),
            ("USR2", 12),
            ("QUIT", 3),
            ("WINCH", 28),
        ] {
            let ready = dir.join(format!("{p:?}-{name}.ready"));
            let got = dir.join(format!("{p:?}-{name}.got"));
            let script = format!(
                "trap 'echo {name} > {got}; exit 10' {name}; touch {ready}; \
                 i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 99",
                got = got.display(),
                ready = ready.display()
            );
            let mut child = start(&argv(p, &Flags::default(), &strs(&sh(&script))), &ready);
            kill(child.id(), n);
            let st = wait_timeout(&mut child, 20, &format!("{p:?} {name}"));
            assert_eq!(
                code(st),
                10,
                "{p:?}: SIG{name} did not reach the child's trap"
            );
            assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), name);
        }
    }
}

/// A grandchild in the child's process group gets the signal with -g (for
/// dumb-init: its default), and not without it (the negative control).
#[test]
fn group_flag_reaches_the_grandchild_in_the_childs_group() {
    let dir = scratch("entry-group");
    for p in ALL {
        for group in [true, false] {
            let tag = format!("{p:?}-{group}");
            let ready = dir.join(format!("{tag}.ready"));
            let got = dir.join(format!("{tag}.got"));
            // The outer shell catches USR1 (so it lives on); the grandchild,
            // a background job and so in the same group, records it.
            let script = format!(
                "trap 'echo outer' USR1; \
                 sh -c 'trap \"echo usr1 > {got}; exit 0\" USR1; while :; do sleep 0.01; done' & \
                 sleep 0.2; touch {ready}; \
                 i=0; while [ ! -e {got} ] && [ $i -lt 150 ]; do sleep 0.01; i=$((i+1)); done; \
                 kill $! 2>/dev/null; [ -e {got} ] && exit 0; exit 1",
                got = got.display(),
                ready = ready.display()
            );
            let f = Flags {
                group,
                ..Flags::default()
            };
            let mut child = start(&argv(p, &f, &strs(&sh(&script))), &ready);
            kill(child.id(), 10);
            let st = wait_timeout(&mut child, 20, &tag);
            assert_eq!(
                got.exists(),
                group,
                "{tag}: grandchild got USR1: {}",
                got.exists()
            );
            assert_eq!(code(st), if group { 0 } else { 1 }, "{tag}");
        }
    }
}

/// The child makes an orphan that exits at once, then counts zombies
/// whose parent is `$1` ("1": PID 1 of the namespace; else its own parent,
/// the subreaper). Exit code: the count.
const ZOMBIES: &str = "want=$1; (sleep 0.05 &); sleep 0.6; n=0; \
    for f in /proc/[0-9]*/stat; do \
      s=$(cat $f 2>/dev/null) || continue; s=${s##*) }; set -- $s; \
      [ \"$1\" = Z ] && [ \"$2\" = \"$want\" ] && n=$((n+1)); \
    done; exit $n";

fn zombie_cmd(parent: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        ZOMBIES.into(),
        "sh".into(),
        parent.into(),
    ]
}

fn in_pid_namespace(inner: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["unshare", "--pid", "--fork", "--mount-proc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(inner.iter().cloned());
    v
}

#[test]
fn orphans_are_reaped_as_pid1_of_a_namespace() {
    require_root();
    for p in ALL {
        let (c, _, e) = run(
            &in_pid_namespace(&argv(p, &Flags::default(), &strs(&zombie_cmd("1")))),
            30,
        );
        assert_eq!(c, 0, "{p:?} as PID 1 left {c} zombies: {e}");
    }
    // Negative control: a PID 1 that waits only for its own child leaves
    // the orphan a zombie, and the same check sees it.
    let mut lazy = vec![
        "python3".to_string(),
        "-c".into(),
        "import os,sys\npid=os.fork()\nif pid==0:\n os.execv(sys.argv[1], sys.argv[1:])\n_,st=os.waitpid(pid,0)\nsys.exit(os.waitstatus_to_exitcode(st))".into(),
    ];
    lazy.extend(zombie_cmd("1"));
    let (c, _, e) = run(&in_pid_namespace(&lazy), 30);
    assert_eq!(c, 1, "the non-reaping PID 1 should leave one zombie: {e}");
}

#[test]
fn orphans_are_reaped_as_a_subreaper() {
    let f = Flags {
        subreaper: true,
        ..Flags::default()
    };
    // The child's parent is the init: $PPID.
    let cmd = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!(
            "exec /bin/sh -c '{}' sh $PPID",
            ZOMBIES.replace('\'', "'\\''")
        ),
    ];
    for p in [Peer::Moonlit, Peer::Tini] {
        let (c, _, e) = run(&argv(p, &f, &strs(&cmd)), 30);
        assert_eq!(c, 0, "{p:?} as subreaper left {c} zombies: {e}");
    }
    // Negative control: a subreaper that reaps only its own child.
    let mut lazy = vec![
        "python3".to_string(),
        "-c".into(),
        "import ctypes,os,sys\nctypes.CDLL(None).prctl(36,1,0,0,0)\npid=os.fork()\nif pid==0:\n os.execv(sys.argv[1], sys.argv[1:])\n_,st=os.waitpid(pid,0)\nsys.exit(os.waitstatus_to_exitcode(st))".into(),
    ];
    lazy.extend(cmd);
    let (c, _, e) = run(&lazy, 30);
    assert_eq!(
        c, 1,
        "the non-reaping subreaper should leave one zombie: {e}"
    );
}

#[test]
fn without_pid1_or_subreaper_there_is_a_warning() {
    for p in [Peer::Moonlit, Peer::Tini] {
        let (c, _, e) = run(&argv(p, &Flags::default(), &["/bin/true"]), 20);
        assert_eq!(c, 0);
        assert!(
            e.to_lowercase().contains("subreaper"),
            "{p:?} did not warn: {e}"
        );
        let f = Flags {
            subreaper: true,
            ..Flags::default()
        };
        let (_, _, e) = run(&argv(p, &f, &["/bin/true"]), 20);
        assert!(
            !e.to_lowercase().contains("subreaper"),
            "{p:?} warned with -s: {e}"
        );
    }
    let mut c = command(&argv(Peer::Moonlit, &Flags::default(), &["/bin/true"]));
    let out = c.env("TINI_SUBREAPER", "1").output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "TINI_SUBREAPER is not honoured: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exit_codes_are_remapped_with_e() {
    for p in [Peer::Moonlit, Peer::Tini] {
        let f = Flags {
            subreaper: true,
            remap: vec![3, 143],
            ..Flags::default()
        };
        for (script, want) in [
            ("exit 3", 0),
            ("exit 4", 4),
            ("kill $$", 0),
            ("kill -INT $$", 130),
        ] {
            let (c, _, e) = run(&argv(p, &f, &strs(&sh(script))), 20);
            assert_eq!(c, want, "{p:?} -e 3 -e 143, {script}: {e}");
        }
    }
}

/// -p: the init's parent dies, the init gets the signal and forwards it.
#[test]
fn parent_death_signal_is_forwarded() {
    let dir = scratch("entry-pdeath");
    for p in [Peer::Moonlit, Peer::Tini] {
        let got = dir.join(format!("{p:?}.got"));
        let ready = dir.join(format!("{p:?}.ready"));
        let f = Flags {
            subreaper: true,
            pdeath: Some("SIGUSR1"),
            ..Flags::default()
        };
        let script = format!(
            "trap 'touch {got}; exit 0' USR1; touch {ready}; i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done",
            got = got.display(),
            ready = ready.display()
        );
        let init = argv(p, &f, &strs(&sh(&script)));
        // The parent: starts the init, waits until it is ready, and exits.
        let quoted: Vec<String> = init
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let parent = format!(
            "{} & while [ ! -e {} ]; do sleep 0.01; done; exit 0",
            quoted.join(" "),
            ready.display()
        );
        let (c, _, _) = run(&sh(&parent), 20);
        assert_eq!(c, 0);
        assert!(
            wait_file(&got, 10),
            "{p:?}: the child never got USR1 after the parent died"
        );
    }
}

#[test]
fn arguments_stdio_and_environment_pass_through_unchanged() {
    let dir = scratch("entry-stdio");
    // Words moonlit itself knows are CMD's too after it.
    let args = [
        "a b",
        "--",
        "-s",
        "",
        "'q'",
        "x\ty",
        "--handover",
        "3",
        "run",
    ];
    let mut cmd = vec![
        "/bin/sh",
        "-c",
        "for a; do printf '[%s]\\n' \"$a\"; done",
        "sh",
    ];
    cmd.extend(args);
    let mut outputs = Vec::new();
    for p in ALL {
        let (c, out, _) = run(&argv(p, &Flags::default(), &cmd), 20);
        assert_eq!(c, 0);
        outputs.push((p, out));
    }
    let want: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    for (p, out) in &outputs {
        assert_eq!(out, &want, "{p:?}");
    }
    // Environment: exactly the init's own, in order.
    let direct = command(&["/usr/bin/env".to_string()])
        .env("SPACED", "a b  c")
        .env("EMPTY", "")
        .output()
        .unwrap();
    for p in ALL {
        let out = command(&argv(p, &Flags::default(), &["/usr/bin/env"]))
            .env("SPACED", "a b  c")
            .env("EMPTY", "")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&direct.stdout),
            "{p:?}: the environment changed"
        );
    }
    // Standard streams: the very files the init got, no pipe between.
    for p in ALL {
        let inp = dir.join(format!("{p:?}.in"));
        let outp = dir.join(format!("{p:?}.out"));
        let errp = dir.join(format!("{p:?}.err"));
        std::fs::write(&inp, "input line\n").unwrap();
        let script =
            "cat; readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; echo to-stderr >&2";
        let st = command(&argv(p, &Flags::default(), &strs(&sh(script))))
            .stdin(std::fs::File::open(&inp).unwrap())
            .stdout(std::fs::File::create(&outp).unwrap())
            .stderr(std::fs::File::create(&errp).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        let out = std::fs::read_to_string(&outp).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "input line", "{p:?}");
        assert_eq!(
            lines[1..],
            [
                inp.to_str().unwrap(),
                outp.to_str().unwrap(),
                errp.to_str().unwrap()
            ],
            "{p:?}"
        );
        assert!(std::fs::read_to_string(&errp)
            .unwrap()
            .contains("to-stderr"));
    }
}

/// The child starts with no signal blocked or ignored, even when the init
/// was started with some (asserted for moonlit; the peers' values printed).
#[test]
fn the_child_starts_with_a_clean_signal_state() {
    for p in ALL {
        let mut v = vec![
            "python3".to_string(),
            "-c".into(),
            "import os,signal,sys\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\nsignal.signal(signal.SIGUSR2, signal.SIG_IGN)\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGRTMIN})\nos.execv(sys.argv[1], sys.argv[1:])".into(),
        ];
        v.extend(argv(
            p,
            &Flags::default(),
            &["/bin/sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"],
        ));
        let (c, out, e) = run(&v, 20);
        assert_eq!(c, 0, "{e}");
        eprintln!("{p:?}: {}", out.replace('\n', " "));
        if p == Peer::Moonlit {
            assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
            assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
        }
    }
    // The control: the parent's state really is not clean.
    let v = [
        "python3",
        "-c",
        "import os,signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\nos.execv('/bin/grep', ['grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status'])",
    ];
    let (_, out, _) = run(&v.map(String::from), 20);
    assert!(
        !out.contains("SigBlk:\t0000000000000000") && !out.contains("SigIgn:\t0000000000000000"),
        "{out}"
    );
}

#[test]
fn missing_and_unexecutable_commands_exit_127_and_126() {
    let dir = scratch("entry-noexec");
    let noexec = dir.join("script");
    std::fs::write(&noexec, "#!/bin/sh\necho hi\n").unwrap();
    let missing = dir.join("no-such-program");
    for p in ALL {
        let (c1, _, e1) = run(
            &argv(p, &Flags::default(), &[missing.to_str().unwrap()]),
            20,
        );
        let (c2, _, e2) = run(&argv(p, &Flags::default(), &[noexec.to_str().unwrap()]), 20);
        let (c3, _, e3) = run(
            &argv(p, &Flags::default(), &["no-such-program-on-path"]),
            20,
        );
        eprintln!("{p:?}: {c1} {c2} {c3}");
        if p == Peer::DumbInit {
            // dumb-init exits 2 for every exec failure (documented).
            assert_eq!((c1, c2, c3), (2, 2, 2));
            continue;
        }
        assert_eq!((c1, c2, c3), (127, 126, 127), "{p:?}: {e1} {e2} {e3}");
        if p == Peer::Moonlit {
            assert!(e1.contains("no-such-program"), "{e1}");
            assert!(
                e2.contains("script") && e2.contains("Permission denied"),
                "{e2}"
            );
            assert!(
                e3.contains("no-such-program-on-path: command not found"),
                "{e3}"
            );
        }
    }
}

/// After the child's end, what it left behind gets TERM, then KILL after
/// the grace; moonlit exits only when all of it is gone.
#[test]
fn the_rest_get_term_then_kill_after_the_grace() {
    let dir = scratch("entry-grace");
    let pidf = dir.join("pid");
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 0.05; done' & \
         while [ ! -e {p} ]; do sleep 0.01; done; exit 5",
        p = pidf.display()
    );
    let mut v = vec![
        BIN.to_string(),
        "-s".into(),
        "--grace".into(),
        "0.5".into(),
        "--".into(),
    ];
    v.extend(sh(&script));
    let t = Instant::now();
    let (c, _, e) = run(&v, 20);
    let took = t.elapsed();
    assert_eq!(c, 5, "{e}");
    let pid: u32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the TERM-ignoring leftover {pid} survived"
    );
    assert!(
        took >= Duration::from_millis(450),
        "KILL came before the grace: {took:?}"
    );
}

/// Bad flags are named, and nothing runs.
#[test]
fn bad_flags_are_refused_by_name() {
    for (args, needle) in [
        (vec!["-e", "999", "--", "/bin/true"], "-e: '999'"),
        (vec!["-p", "SIGNOPE", "--", "/bin/true"], "SIGNOPE"),
        (vec!["--rewrite", "15", "--", "/bin/true"], "S:R"),
        (vec!["--"], "no command"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

/// --rewrite (dumb-init's spelling and semantics): TERM arrives as INT;
/// S:0 drops S.
#[test]
fn signals_are_rewritten() {
    let dir = scratch("entry-rewrite");
    for p in [Peer::Moonlit, Peer::DumbInit] {
        let ready = dir.join(format!("{p:?}.ready"));
        let got = dir.join(format!("{p:?}.got"));
        let script = format!(
            "trap 'echo INT >> {g}; exit 3' INT; trap 'echo HUP >> {g}' HUP; touch {r}; \
             i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 99",
            g = got.display(),
            r = ready.display()
        );
        let mut v = vec![program(p)];
        if p == Peer::DumbInit {
            v.push("--single-child".into());
        } else {
            v.push("-s".into());
        }
        v.extend(["--rewrite", "15:2", "--rewrite", "1:0", "--"].map(String::from));
        v.extend(sh(&script));
        let mut child = start(&v, &ready);
        kill(child.id(), 1); // dropped
        std::thread::sleep(Duration::from_millis(200));
        kill(child.id(), 15); // arrives as INT
        let st = wait_timeout(&mut child, 20, &format!("{p:?} rewrite"));
        assert_eq!(code(st), 3, "{p:?}");
        assert_eq!(std::fs::read_to_string(&got).unwrap(), "INT\n", "{p:?}");
    }
}

/// In a terminal (a pty made by python's pty module): the child leads the
/// terminal's foreground process group, and ctrl-C reaches it.
#[test]
fn in_a_terminal_the_child_is_in_the_foreground_and_gets_ctrl_c() {
    const DRIVER: &str = r#"
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
buf = b""
def read_until(needle, secs):
    global buf
    end = time.time() + secs
    while needle not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return needle in buf
if not read_until(b"READY", 20):
    print("never ready:", buf); sys.exit(90)
os.write(fd, b"\x03")
read_until(b"GOT-INT", 10)
_, st = os.waitpid(pid, 0)
sys.stdout.write(buf.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(st))
"#;
    let script = "s=$(cat /proc/self/stat); s=${s##*) }; set -- $s; \
                  echo \"pgrp=$3 tpgid=$6\"; trap 'echo GOT-INT; exit 7' INT; echo READY; \
                  i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 99";
    for p in ALL {
        let mut v = vec!["python3".to_string(), "-c".into(), DRIVER.into()];
        v.extend(argv(p, &Flags::default(), &strs(&sh(script))));
        let (c, out, e) = run(&v, 40);
        assert_eq!(c, 7, "{p:?}: ctrl-C did not reach the child: {out} {e}");
        assert!(out.contains("GOT-INT"), "{p:?}: {out}");
        let line = out
            .lines()
            .find(|l| l.contains("pgrp="))
            .unwrap_or_default();
        let nums: Vec<&str> = line
            .trim()
            .split(' ')
            .map(|kv| kv.split('=').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(nums.len(), 2, "{p:?}: {out}");
        assert_eq!(
            nums[0], nums[1],
            "{p:?}: the child's group is not the terminal's foreground: {line}"
        );
    }
}

/// With a configuration: its services start first (readiness honoured),
/// CMD runs as `main` with the init's stdio and environment, and CMD's end
/// stops the services in reverse order with CMD's code.
#[test]
fn services_beside_the_main_command_start_first_and_stop_in_reverse() {
    let dir = scratch("entry-services");
    let log = dir.join("log");
    let ready = dir.join("db.ready");
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("services")).unwrap();
    std::fs::write(
        cfg.join("services/app.lua"),
        format!(
            r#"service "db" {{
  exec = {{ "/bin/sh", "-c", "trap 'echo db-stop >> {log}; exit 0' TERM; sleep 0.3; echo db-up >> {log}; touch {ready}; while :; do sleep 0.05; done" }},
  ready = {{ path = "{ready}" }},
}}
service "web" {{
  requires = {{ "db" }},
  exec = {{ "/bin/sh", "-c", "trap 'echo web-stop >> {log}; exit 0' TERM; echo web-up >> {log}; touch {web_ready}; while :; do sleep 0.05; done" }},
  ready = {{ path = "{web_ready}" }},
}}
"#,
            log = log.display(),
            ready = ready.display(),
            web_ready = dir.join("web.ready").display()
        ),
    )
    .unwrap();
    let sock = dir.join("control.sock");
    let script = format!(
        "echo main-up >> {}; echo \"to stdout $FROM_ENV\"; exit 9",
        log.display()
    );
    let mut v = vec![
        BIN.to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--".into(),
    ];
    v.extend(sh(&script));
    let out = command(&v)
        .env("MOONLIT_CONTROL", &sock)
        .env("FROM_ENV", "passed")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stdout}\n{stderr}");
    assert!(stdout.contains("to stdout passed"), "{stdout}");
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["db-up", "web-up", "main-up", "web-stop", "db-stop"],
        "{stdout}\n{stderr}"
    );
    // Negative control: a broken configuration is named, CMD still runs.
    std::fs::write(cfg.join("services/bad.lua"), "service \"x\" { exec = 5 }\n").unwrap();
    let out = command(&v)
        .env("MOONLIT_CONTROL", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9));
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(all.contains("services/bad.lua:1"), "{all}");
}

/// One-letter state of a process ("S", "T", ...).
fn state(pid: u32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit_once(") ")
        .map(|(_, r)| r.split(' ').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn wait_state(pid: u32, want: &[&str], what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if want.contains(&state(pid).as_str()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{what}: pid {pid} is in state {:?}, not {want:?}",
        state(pid)
    );
}

/// dumb-init's documented job control (setsid mode, its default): SIGTSTP,
/// SIGTTIN or SIGTTOU to the init stops the child and then the init; SIGCONT
/// to the init resumes both. moonlit does the same; dumb-init is the
/// reference (tini forwards TSTP as it is and ignores TTIN/TTOU).
#[test]
fn job_control_signals_stop_child_and_init_and_cont_resumes_both() {
    let dir = scratch("entry-tstp");
    for p in [Peer::Moonlit, Peer::DumbInit] {
        let ready = dir.join(format!("{p:?}.ready"));
        let pidf = dir.join(format!("{p:?}.pid"));
        let script = format!(
            // The child forks nothing once ready: a shell stopped between
            // vfork and exec of a loop's `sleep` sits in state D, not T.
            "echo $$ > {pf}; touch {r}; exec sleep 1000",
            pf = pidf.display(),
            r = ready.display()
        );
        let mut v = vec![program(p)];
        if p == Peer::Moonlit {
            v.push("-s".into());
        }
        v.push("--".into());
        v.extend(sh(&script));
        let mut init = start(&v, &ready);
        let child: u32 = std::fs::read_to_string(&pidf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for (name, sig) in [("TSTP", 20), ("TTIN", 21), ("TTOU", 22)] {
            wait_state(child, &["S", "R"], &format!("{p:?} child before {name}"));
            kill(init.id(), sig);
            wait_state(child, &["T"], &format!("{p:?} child after {name}"));
            wait_state(init.id(), &["T"], &format!("{p:?} init after {name}"));
            kill(init.id(), 18); // CONT
            wait_state(init.id(), &["S", "R"], &format!("{p:?} init after CONT"));
            wait_state(child, &["S", "R"], &format!("{p:?} child after CONT"));
        }
        kill(init.id(), 15);
        let st = wait_timeout(&mut init, 20, &format!("{p:?} TERM"));
        assert_eq!(code(st), 143, "{p:?}");
    }
}

/// `ctl reexec` with CMD as the main service: the same CMD process runs on
/// and its code is still the exit code (CMD is carried in the handover).
#[test]
fn the_main_command_survives_a_reexec() {
    let dir = scratch("entry-reexec");
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("services")).unwrap();
    std::fs::write(
        cfg.join("services/side.lua"),
        "service \"side\" { exec = { \"/bin/sleep\", \"1000\" } }\n",
    )
    .unwrap();
    let sock = dir.join("control.sock");
    let ready = dir.join("ready");
    let script = format!("echo $$ > {r}; sleep 2; exit 4", r = ready.display());
    let mut v = vec![
        BIN.to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--".into(),
    ];
    v.extend(sh(&script));
    let mut c = command(&v);
    c.env("MOONLIT_CONTROL", &sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    assert!(wait_file(&ready, 20), "CMD never started");
    std::thread::sleep(Duration::from_millis(100));
    let pid: u32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("ctl")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(ctl(&["reexec"]).contains("re-executed"));
    let st = ctl(&["--json", "status", "main"]);
    assert!(
        st.contains(&format!("\"pid\":{pid}")),
        "main is not the same process after the re-exec: {st}"
    );
    let status = wait_timeout(&mut child, 30, "entry reexec");
    assert_eq!(code(status), 4);
}
