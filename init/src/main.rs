//! `moonlit`: a Lua-scripted init. One binary: PID 1 of a machine or a
//! container, a sandbox or user-mode supervisor (`run`), the control client
//! (`ctl`) and the configuration checker (`check`).
//!
//! This file decides the mode and sets the process up (signals blocked from
//! the first lines, panic hook, stage 1); the loop lives in [`init`].

/// Small blocks from moonlit's own size-class allocator for Lua and the
/// loop (see moonlit_sys::alloc: musl's malloc is slow for this load).
#[global_allocator]
static ALLOC: moonlit_sys::alloc::Alloc = moonlit_sys::alloc::Alloc::new();

mod analyze;
mod cgroup;
mod console;
mod control;
mod ctl;
mod decode;
mod entry;
mod envset;
mod idle_pages;
mod init;
mod logs;
mod mode;
mod no_unwind;
mod shutdown;
mod stage1;
mod supervisor;
mod sys;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use crate::console::Console;
use crate::init::{now_ms, Init, Options};
use crate::mode::Mode;

const USAGE: &str = "usage:
  moonlit                         as PID 1: boot the system (config: /etc/moonlit,
                                  or moonlit.config= on the kernel command line)
  moonlit run [--sandbox] [--control PATH] [--watch] [--debug] DIR
                                  run the configuration in DIR: --sandbox as PID 1 of
                                  new pid/mount/uts/ipc/net namespaces (root), else as
                                  a subreaper for development (no root needed);
                                  --watch reloads when DIR changes
  moonlit ctl [--socket PATH] COMMAND ...   talk to a running moonlit (see ctl --help)
  moonlit analyze [--socket PATH] [--json] [--svg FILE]
                                  the running moonlit's boot: timeline, blame, critical
                                  chain; --svg writes a Gantt chart (docs/analyze.md)
  moonlit check DIR               validate a configuration without booting it
  moonlit types DIR               write LuaLS type stubs (sys, syscall, net, moonlit) into DIR
  moonlit lua SCRIPT [ARGS...]    run a Lua script on moonlit's runtime and loop (tasks,
                                  sockets, timers, sys, net); exits when its tasks end
  moonlit [FLAGS] [--] CMD [ARGS...]
                                  a container's init for CMD, as tini and dumb-init are
                                  (services of --config DIR or /etc/moonlit beside it;
                                  flags below; docs/entrypoint.md)
  moonlit --version";

/// Blocks every asynchronous signal; returns the set (for the signalfd).
fn block_signals() -> SigSet {
    let all = SigSet::all();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    all
}

fn unblock_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        eprintln!("moonlit: internal error: {msg}{loc}");
        // PID 1's loop re-executes on its last checkpoint; elsewhere this
        // returns and the panic ends the process.
        init::recover::on_panic(&format!("{msg}{loc}"));
    }));
}

/// Kernel command line as `key=value` pairs (double quotes group words; a
/// bare word maps to "").
fn kernel_cmdline() -> Vec<(String, String)> {
    parse_kernel_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
}

/// The pairs of a kernel command line's text.
fn parse_kernel_cmdline(text: &str) -> Vec<(String, String)> {
    moonlit_sys::util::split_cmdline(text.trim())
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w, String::new()),
        })
        .collect()
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The console for moonlit's messages: /dev/console in system mode,
/// otherwise a duplicate of stdout.
fn open_console(mode: Mode) -> Console {
    let fd: Option<OwnedFd> = if mode == Mode::System {
        rustix::fs::open(
            "/dev/console",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    } else {
        None
    };
    let fd = fd.or_else(|| rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3).ok());
    match fd {
        Some(fd) => Console::new(fd),
        None => Console::new(
            rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap_or_else(|_| rescue("no console and no /dev/null")),
        ),
    }
}

/// Last resort when PID 1 cannot go on: a shell on the console if there is
/// one, else sync and power off. Never returns, never exits.
pub fn rescue(why: &str) -> ! {
    eprintln!("moonlit: cannot continue: {why}");
    for sh in ["/bin/sh", "/bin/busybox"] {
        if std::path::Path::new(sh).exists() {
            unblock_signals();
            let argv: &[&str] = if sh.ends_with("busybox") {
                &[sh, "sh"]
            } else {
                &[sh]
            };
            eprintln!("moonlit: starting rescue shell {sh}");
            let e = sys::exec(argv);
            eprintln!("moonlit: exec {sh}: {e}");
        }
    }
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// The loop's setup, or the end: exit in an exiting mode, rescue as PID 1.
fn new_init(opts: Options, mask: &SigSet, stage1_ms: u64, t0: u64) -> Init {
    let mode = opts.mode;
    let console = open_console(mode);
    match Init::new(opts, mask, console, stage1_ms, t0) {
        Ok(i) => i,
        Err(e) => {
            if mode.exits() {
                eprintln!("moonlit: {e}");
                std::process::exit(70);
            }
            rescue(&e)
        }
    }
}

fn start_init(opts: Options, mask: &SigSet, t0: u64, stage1_ms: u64) -> ! {
    sys::close_inherited_fds();
    let script = opts.script.is_some();
    let mut init = new_init(opts, mask, stage1_ms, t0);
    if script {
        init.script_boot();
    } else {
        init.boot();
    }
    init.run(Vec::new())
}

/// The new image of a re-exec: take over from the old one. `rest`: what
/// follows the descriptor (`--after-panic WHAT --panics T1,T2` when a panic
/// re-executed).
fn handover_boot(fd: &str, rest: &[String], mask: &SigSet) -> ! {
    let h = fd
        .parse::<std::os::fd::RawFd>()
        .map_err(|_| format!("bad --handover descriptor '{fd}'"))
        .and_then(init::reexec::read_handover)
        .and_then(|h| h.check().map(|()| h));
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            eprintln!("moonlit: re-exec handover failed: {e}; booting afresh");
            if rustix::process::getpid().is_init() {
                system_boot(None, None, mask);
            }
            std::process::exit(70);
        }
    };
    let opts = h.options();
    let mode = opts.mode;
    if mode == Mode::User {
        let _ = rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1));
    }
    let t0 = h.t0;
    let mut init = new_init(opts, mask, 0, t0);
    init.adopt(h);
    let panics = init::recover::parse_history(arg_value(rest, "--panics").as_deref());
    if let Some(what) = arg_value(rest, "--after-panic") {
        init.recovered(&what, &panics);
    }
    init.run(panics)
}

/// PID 1 with a configuration: a machine's (stage 1 first) or a
/// container's; `main_cmd` is an entrypoint's command run as the `main`
/// service.
fn system_boot(config: Option<String>, main_cmd: Option<entry::MainCmd>, mask: &SigSet) -> ! {
    let t0 = now_ms();
    let mode = mode::detect_pid1();
    let (_mounted, errors) = stage1::system();
    stage1::ensure_stdio();
    for e in &errors {
        eprintln!("moonlit: stage 1: {e}");
    }
    let cmdline = kernel_cmdline();
    let kv = |k: &str| {
        cmdline
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let config_dir = config
        .or_else(|| std::env::var("MOONLIT_CONFIG").ok())
        .or_else(|| kv("moonlit.config"))
        .unwrap_or_else(|| "/etc/moonlit".into());
    let opts = Options {
        mode,
        config_dir: PathBuf::from(config_dir),
        control_path: std::env::var("MOONLIT_CONTROL")
            .map(PathBuf::from)
            .unwrap_or_else(|_| "/run/moonlit/control.sock".into()),
        debug: kv("moonlit.debug").is_some(),
        rescue: kv("moonlit.rescue").is_some(),
        watch: kv("moonlit.watch").is_some(),
        cmdline,
        limits: Default::default(),
        inherited_control: None,
        main_cmd,
        script: None,
    };
    let stage1_ms = now_ms().saturating_sub(t0);
    start_init(opts, mask, t0, stage1_ms)
}

fn run(args: &[String], mask: &SigSet) -> i32 {
    let mut sandbox = false;
    let mut debug = false;
    let mut watch = false;
    let mut control = None;
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sandbox" => sandbox = true,
            "--debug" => debug = true,
            "--watch" => watch = true,
            "--control" => match it.next() {
                Some(p) => control = Some(PathBuf::from(p)),
                None => return usage_error("--control needs a path"),
            },
            d if !d.starts_with('-') && dir.is_none() => dir = Some(PathBuf::from(d)),
            other => return usage_error(&format!("unexpected argument '{other}'")),
        }
    }
    let Some(dir) = dir else {
        return usage_error("run needs a configuration directory");
    };
    let dir = match std::fs::canonicalize(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moonlit: {}: {e}", dir.display());
            return 2;
        }
    };
    let control_path = control
        .or_else(|| std::env::var("MOONLIT_CONTROL").ok().map(PathBuf::from))
        .unwrap_or_else(ctl::default_socket);
    let mut opts = Options {
        mode: if sandbox { Mode::Sandbox } else { Mode::User },
        config_dir: dir,
        control_path,
        debug,
        rescue: false,
        watch,
        cmdline: kernel_cmdline(),
        limits: Default::default(),
        inherited_control: None,
        main_cmd: None,
        script: None,
    };
    if !sandbox {
        let t0 = now_ms();
        if let Err(e) = rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1)) {
            eprintln!("moonlit: cannot become a subreaper: {e}");
            return 70;
        }
        start_init(opts, mask, t0, 0);
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("moonlit: run --sandbox needs root (it creates namespaces)");
        return 2;
    }
    use nix::sched::CloneFlags;
    let flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    if let Err(e) = nix::sched::unshare(flags) {
        eprintln!("moonlit: unshare(pid, mount, uts, ipc, net): {e}");
        return 70;
    }
    // The sandbox's own cgroup on the host, removed when it ends.
    let cg_dir = cgroup::sandbox_cgroup(rustix::process::getpid().as_raw_nonzero().get() as u32);
    let cg_parent = cg_dir.as_ref().ok().and_then(|d| cgroup::open_parent(d));
    match sys::fork_process() {
        Ok(sys::Forked::Child) => {
            // If `moonlit run` dies, the whole sandbox goes with it.
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            let t0 = now_ms();
            cgroup::sandbox_prepare(&cg_dir);
            let (_m, errors) = stage1::sandbox();
            for e in &errors {
                eprintln!("moonlit: sandbox stage 1: {e}");
            }
            cgroup::sandbox_mount();
            opts.mode = Mode::Sandbox;
            let stage1_ms = now_ms().saturating_sub(t0);
            start_init(opts, mask, t0, stage1_ms)
        }
        Ok(sys::Forked::Parent(child)) => {
            let code = sandbox_parent(child, mask);
            let name = cg_dir
                .as_ref()
                .ok()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            if let (Some(base), Some(name)) = (&cg_parent, name) {
                // The namespace's processes die with its PID 1; give them
                // a moment to leave their cgroups.
                for _ in 0..200 {
                    if cgroup::remove_tree_at(base, &name) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            code
        }
        Err(e) => {
            eprintln!("moonlit: fork: {e}");
            70
        }
    }
}

/// Outside the sandbox: forward signals to its PID 1 and exit with its code.
fn sandbox_parent(child: u32, mask: &SigSet) -> i32 {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let Ok(sfd) = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC) else {
        eprintln!("moonlit: signalfd failed");
        return 70;
    };
    let pid = sys::nix_pid(child);
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo == nix::sys::signal::Signal::SIGCHLD as i32 {
                    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                    loop {
                        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::Exited(_, code)) => return code,
                            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                            Ok(WaitStatus::StillAlive) => break,
                            Ok(_) => continue,
                            Err(_) => return 70,
                        }
                    }
                } else if let Ok(sig) = nix::sys::signal::Signal::try_from(signo) {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
            Ok(None) => {}
            Err(_) => return 70,
        }
    }
}

fn check(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        return usage_error("check needs a configuration directory");
    };
    let dir = PathBuf::from(dir);
    let info = moonlit_config::runtime::BootInfo {
        mode: "check".into(),
        config_dir: dir.display().to_string(),
        debug: false,
        cmdline: Vec::new(),
    };
    let log: moonlit_config::runtime::LogFn = std::rc::Rc::new(|m: &str| println!("lua: {m}"));
    let modules: [moonlit_config::runtime::Registrar; 2] =
        [moonlit_sys::register, moonlit_net::register];
    let rt = match moonlit_config::Runtime::new(Default::default(), &info, log, &modules) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moonlit check: {e}");
            return 70;
        }
    };
    let (files, io_errors) = moonlit_config::modules::discover(&dir);
    let mut results: Vec<moonlit_config::plan::ModuleResult> = io_errors
        .into_iter()
        .map(|e| moonlit_config::plan::ModuleResult {
            module: e.module.clone(),
            decls: Err(e),
        })
        .collect();
    for f in &files {
        results.push(moonlit_config::plan::ModuleResult {
            module: f.name.clone(),
            decls: rt.eval_module(&f.name, &f.source).map(|e| e.decls),
        });
    }
    let (plan, mut errors) = moonlit_config::plan::build(&results);
    match std::fs::read(dir.join("init.lua")) {
        Ok(src) => {
            if let Err(e) = rt.load_script("init.lua", &src) {
                errors.push(e);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(moonlit_config::ConfigError::new(
            moonlit_config::ErrorKind::Io,
            "init.lua",
            format!("init.lua: {e}"),
        )),
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    println!(
        "{}: {} modules, {} services ({}), {} errors",
        dir.display(),
        files.len(),
        plan.services.len(),
        plan.start_order().join(" "),
        errors.len()
    );
    i32::from(!errors.is_empty())
}

/// `moonlit types DIR`: writes the LuaLS stubs so an editor completes the API.
fn types(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        return usage_error("types needs a directory to write the stubs into");
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("moonlit types: {}: {e}", dir.display());
        return 1;
    }
    let mut files: Vec<(&str, &str)> = moonlit_sys::TYPE_STUBS.to_vec();
    files.push(("net.lua", include_str!("../../docs/lua/types/net.lua")));
    files.push((
        "moonlit.lua",
        include_str!("../../docs/lua/types/moonlit.lua"),
    ));
    for (name, content) in files {
        let p = dir.join(name);
        if let Err(e) = std::fs::write(&p, content) {
            eprintln!("moonlit types: {}: {e}", p.display());
            return 1;
        }
        println!("{}", p.display());
    }
    0
}

/// `moonlit [FLAGS] [--] CMD ...`: a container's init, with or without
/// services beside CMD.
fn entry_main(args: &[std::ffi::OsString], mask: &SigSet) -> ! {
    let o = match entry::parse(args) {
        Ok(o) if o.cmd.is_empty() => {
            eprintln!(
                "moonlit: no command to run after the flags\n{}",
                entry::USAGE
            );
            std::process::exit(2);
        }
        Ok(o) => o,
        Err(e) => {
            eprintln!("moonlit: {e}\n{}", entry::USAGE);
            std::process::exit(2);
        }
    };
    let Some(dir) = entry::config_dir(&o) else {
        entry::run(o, mask)
    };
    let dir = match std::fs::canonicalize(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moonlit: configuration {}: {e}", dir.display());
            std::process::exit(2);
        }
    };
    let main_cmd = Some(entry::MainCmd::of(&o));
    if rustix::process::getpid().is_init() {
        system_boot(Some(dir.display().to_string()), main_cmd, mask);
    }
    // Not PID 1: the user-mode supervisor (a subreaper) with CMD as main.
    let t0 = now_ms();
    if let Err(e) = rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1)) {
        eprintln!("moonlit: cannot become a subreaper: {e}");
        std::process::exit(70);
    }
    let opts = Options {
        mode: Mode::User,
        config_dir: dir,
        control_path: std::env::var("MOONLIT_CONTROL")
            .map(PathBuf::from)
            .unwrap_or_else(|_| ctl::default_socket()),
        debug: o.verbosity >= 3,
        rescue: false,
        watch: false,
        cmdline: Vec::new(),
        limits: Default::default(),
        inherited_control: None,
        main_cmd,
        script: None,
    };
    start_init(opts, mask, t0, 0)
}

/// `moonlit lua SCRIPT [ARGS...]`: the PID 1 Lua runtime as a standalone
/// interpreter (as LEM's `lem`): the script is the one task to begin with;
/// the process exits when every task has ended (1 if any failed).
fn lua_script(args: &[String], mask: &SigSet) -> i32 {
    let Some((script, rest)) = args.split_first() else {
        return usage_error("lua needs a script");
    };
    let path = PathBuf::from(script);
    if !path.is_file() {
        eprintln!("moonlit: {script}: no such file");
        return 2;
    }
    let dir = std::fs::canonicalize(&path)
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let opts = Options {
        mode: Mode::User,
        config_dir: dir,
        control_path: PathBuf::new(),
        debug: false,
        rescue: false,
        watch: false,
        cmdline: Vec::new(),
        limits: Default::default(),
        inherited_control: None,
        main_cmd: None,
        script: Some((path, rest.to_vec())),
    };
    start_init(opts, mask, now_ms(), 0)
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("moonlit: {msg}\n{USAGE}");
    2
}

fn main() {
    // Signals first: from here on every asynchronous signal arrives through
    // the signalfd, never as a handler interrupting PID 1.
    let mask = block_signals();
    install_panic_hook();
    // Raw: an entrypoint's command may carry bytes that are not UTF-8.
    let args_os: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args: Vec<String> = args_os
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let sub = args.get(1).map(String::as_str);
    if sub == Some("--handover-check") {
        std::process::exit(init::reexec::handover_check(
            args.get(2).map(String::as_str),
        ));
    }
    // Only as the first argument: an entrypoint's CMD may carry any word.
    if sub == Some("--handover") {
        handover_boot(
            args.get(2).map_or("", String::as_str),
            args.get(3..).unwrap_or_default(),
            &mask,
        );
    }
    let is_pid1 = rustix::process::getpid().is_init();
    let rest = args_os.get(1..).unwrap_or_default();
    if is_pid1 && sub != Some("run") {
        // The kernel hands a machine's init the command line's unknown
        // words: there only `--` starts entrypoint mode.
        let machine = mode::detect_pid1() == Mode::System;
        if entry::wanted(rest, machine) {
            entry_main(rest, &mask);
        }
        system_boot(arg_value(&args, "--config"), None, &mask);
    }
    let subcommand = matches!(
        sub,
        Some(
            "run"
                | "ctl"
                | "analyze"
                | "check"
                | "types"
                | "lua"
                | "--version"
                | "version"
                | "-h"
                | "--help"
                | "help"
        )
    );
    if !subcommand && entry::wanted(rest, false) {
        entry_main(rest, &mask);
    }
    let code = match sub {
        Some("run") => run(&args[2..], &mask),
        Some("lua") => lua_script(&args[2..], &mask),
        Some("ctl") => {
            unblock_signals();
            sys::default_sigpipe();
            ctl::main(&args[2..])
        }
        Some("analyze") => {
            unblock_signals();
            sys::default_sigpipe();
            analyze::main(&args[2..])
        }
        Some("check") => {
            unblock_signals();
            check(&args[2..])
        }
        Some("types") => {
            unblock_signals();
            types(&args[2..])
        }
        Some("--version") | Some("version") => {
            println!("moonlit {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}\n\n{}", entry::USAGE);
            0
        }
        Some(other) => usage_error(&format!(
            "'{other}' is neither a command nor an entrypoint flag"
        )),
        None => usage_error("no command"),
    };
    std::process::exit(code);
}

/// Fuzzing the kernel command line as the init reads it (the words are
/// `split_cmdline`'s, fuzzed in syscall-bindings/tests/fuzz_inputs.rs).
#[cfg(test)]
mod cmdline_fuzz {
    use super::parse_kernel_cmdline;

    #[test]
    fn command_lines_become_key_value_pairs() {
        let seed = std::env::var("MOONLIT_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x6d6f6f6e);
        let n = 20_000
            * std::env::var("MOONLIT_FUZZ_SCALE")
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(1);
        let mut rng = fastrand::Rng::with_seed(seed);
        let kv =
            parse_kernel_cmdline("console=ttyS0 moonlit.config=\"/a b\" moonlit.debug x==y =z\n");
        assert_eq!(
            kv,
            [
                ("console".to_string(), "ttyS0".to_string()),
                ("moonlit.config".into(), "/a b".into()),
                ("moonlit.debug".into(), String::new()),
                ("x".into(), "=y".into()),
                (String::new(), "z".into()),
            ]
        );
        let alpha = ['a', '=', ' ', '"', '.', '\t', '\n', 'm', '\u{a0}', '\0'];
        for _ in 0..n {
            let text: String = (0..rng.usize(0..80))
                .map(|_| {
                    if rng.u8(0..16) == 0 {
                        rng.char(..)
                    } else {
                        alpha[rng.usize(0..alpha.len())]
                    }
                })
                .collect();
            let kv = parse_kernel_cmdline(&text);
            for (k, v) in &kv {
                assert!(
                    !k.contains('=') && !k.contains('"') && !v.contains('"'),
                    "{text:?}: {kv:?}"
                );
            }
            if !text.contains('"') {
                let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                let back: Vec<String> = kv
                    .iter()
                    .zip(&words)
                    .map(|((k, v), w)| {
                        if w.contains('=') {
                            format!("{k}={v}")
                        } else {
                            k.clone()
                        }
                    })
                    .collect();
                assert_eq!(back, words, "{text:?}");
            }
        }
    }
}
