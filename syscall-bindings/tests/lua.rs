//! Runs the Lua-written tests in tests/lua/ through the `moonlit-sys-lua` helper
//! binary, each in its own process (cargo test is multithreaded; chdir, umask,
//! setsid and unshare(CLONE_NEWNS) must not happen in it). Root tests go through
//! unshare(1) into fresh mount, uts, ipc and net namespaces and FAIL when not
//! run as root. A script passes only if it exits 0 and prints its "ALL OK" line.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lua")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lua-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

fn run(name: &str, in_namespaces: bool) -> String {
    run_in(name, in_namespaces, &[])
}

/// `wrap` goes in front of the helper (after unshare's own arguments when
/// `in_namespaces`), e.g. another unshare.
fn run_in(name: &str, in_namespaces: bool, wrap: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_moonlit-sys-lua");
    // Each variant gets its own scratch directory: tests run in parallel.
    let dir = scratch(&format!(
        "{name}-{}",
        wrap.first().copied().unwrap_or("plain")
    ));
    let mut cmd = if !wrap.is_empty() {
        assert!(
            rustix::process::geteuid().is_root(),
            "{name} under {wrap:?} needs root: run cargo test as root"
        );
        let mut c = Command::new(wrap[0]);
        c.args(&wrap[1..]).arg(bin);
        c
    } else if in_namespaces {
        assert!(
            rustix::process::geteuid().is_root(),
            "{name} needs root (mount, uts, net namespaces via unshare): run cargo test as root"
        );
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--propagation",
            "private",
            "--",
        ]);
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg(script(name)).arg(&dir);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {name} (unshare from util-linux needed for root tests): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ALL OK ")),
        "{name} did not reach T.done()"
    );
    // Mounts made inside the namespaces are gone with them; remove what is left.
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

#[test]
fn lua_basic() {
    run("basic.lua", false);
}

/// The same script with its session and process group leader outside its pid
/// namespace, as for a container's processes or a CI runner's: getsid,
/// getpgid and getpgrp then return 0 (rustix panics on that; regression).
/// sh stays PID 1 so the helper is an ordinary process (pid > 1).
#[test]
fn lua_basic_in_new_pid_namespace() {
    run_in(
        "basic.lua",
        false,
        &[
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--",
            "sh",
            "-c",
            "\"$0\" \"$@\"; exit $?",
        ],
    );
}

#[test]
fn lua_modprobe_fake_tree() {
    run("modprobe_fake.lua", false);
}

#[test]
fn lua_root_in_namespaces() {
    let out = run("ns_root.lua", true);
    // The real modprobe either loaded a module or said clearly which one is missing.
    if let Some(skip) = out.lines().find(|l| l.starts_with("SKIP modprobe")) {
        eprintln!("NOTE: {skip}");
    }
}

#[test]
fn lua_ljsyscall_port() {
    run("ljsyscall.lua", true);
}

#[test]
fn negative_control_failing_script_fails() {
    // The harness itself must notice a failing Lua assertion.
    let dir = scratch("negative");
    let f = dir.join("bad.lua");
    std::fs::write(
        &f,
        "local T = require 'testlib'\nT.eq(require('sys').getpid(), -1, 'must fail')\nT.done()\n",
    )
    .unwrap();
    // testlib is found next to the script: copy it there.
    std::fs::copy(script("testlib.lua"), dir.join("testlib.lua")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moonlit-sys-lua"))
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a failing Lua test must fail the run"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("must fail"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn register_installs_both_modules_and_stubs_exist() {
    let lua = mlua::Lua::new();
    moonlit_sys::register(&lua).unwrap();
    let (a, b): (bool, bool) = lua
        .load("local s, c = require 'sys', require 'syscall' return type(s.open) == 'function', c.c == s.c")
        .eval()
        .unwrap();
    assert!(a && b);
    let names: Vec<&str> = moonlit_sys::TYPE_STUBS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["sys.lua", "syscall.lua"]);
    for (n, content) in moonlit_sys::TYPE_STUBS {
        assert!(content.starts_with("---@meta"), "{n} is a LuaLS meta file");
    }
}

#[test]
fn every_function_is_called_by_a_lua_test() {
    let lua = mlua::Lua::new();
    moonlit_sys::register(&lua).unwrap();
    let names: Vec<String> = lua
        .load(
            "local s, t = require 'sys', {}
             for k, v in pairs(s) do if type(v) == 'function' then t[#t + 1] = k end end
             for k in pairs(s.util) do t[#t + 1] = k end
             return t",
        )
        .eval()
        .unwrap();
    let mut text = String::new();
    for e in std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lua")).unwrap()
    {
        text += &std::fs::read_to_string(e.unwrap().path()).unwrap();
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            ![
                format!(".{n}("),
                format!(":{n}("),
                format!(".{n},"),
                format!(".{n}{{"),
            ]
            .iter()
            .any(|p| text.contains(p.as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "functions no Lua test calls: {missing:?}"
    );
}
