//! Entrypoint mode: `moonlit [FLAGS] [--] CMD [ARGS...]`, the container
//! init that tini and dumb-init are (docs/entrypoint.md).
//!
//! Without a configuration directory this is a small loop with no Lua at
//! all: CMD runs as the one main child with moonlit's own environment and
//! standard streams, signals are forwarded to it, every orphan is reaped, and
//! when it ends the rest get TERM, a grace period and KILL before moonlit
//! exits with CMD's status. With a configuration directory (`--config DIR`,
//! `MOONLIT_CONFIG`, or `/etc/moonlit`) the full init boots instead and CMD
//! becomes its `main` service, started after the configured ones (the role
//! s6-overlay plays).
//!
//! The API is two calls: [`parse`] (the flags, in tini's and dumb-init's
//! spelling) and [`run`] (never returns).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;

use moonlit_config::spawn::{self, ExitStatus, SpawnError, SpawnSpec, StdioSpec};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

pub const USAGE: &str = "usage: moonlit [FLAGS] [--] CMD [ARGS...]
run CMD as a container's init: forward signals to it, reap orphans, exit with its status
  -s                 become a child subreaper when not PID 1 (also: TINI_SUBREAPER set)
  -g                 send forwarded signals to CMD's whole process group (TINI_KILL_PROCESS_GROUP)
  -c, --single-child CMD stays in moonlit's process group and session (DUMB_INIT_SETSID=0)
  -e CODE            exit 0 when CMD exits with CODE (repeatable)
  -p SIG             signal moonlit gets when its parent dies (forwarded to CMD like any other)
  -r, --rewrite S:R  forward signal S as R (R = 0: do not forward S); numbers or names
  -w                 warn for every orphan reaped
  -v                 more messages on stderr (repeat: -vv, -vvv; TINI_VERBOSITY=N)
  --grace SECS       after CMD ends, wait this long between TERM and KILL for the rest (3)
  --config DIR       start DIR's services first, then CMD as the `main` service
  --no-config        ignore MOONLIT_CONFIG and /etc/moonlit: no services, no Lua";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryOpts {
    pub subreaper: bool,
    pub group: bool,
    pub single_child: bool,
    pub remap: Vec<i32>,
    pub pdeathsig: Option<i32>,
    /// Signal number -> what to forward instead (0 = drop).
    pub rewrite: Vec<(i32, i32)>,
    pub warn_reap: bool,
    pub verbosity: u8,
    pub grace_ms: u64,
    pub config: Option<PathBuf>,
    pub no_config: bool,
    pub cmd: Vec<OsString>,
}

/// Flags that start entrypoint mode when they come first (`-vv`, `-sg`...
/// are combinations of these).
fn is_entry_flag(a: &str) -> bool {
    if let Some(long) = a.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or("");
        return matches!(
            name,
            "" | "single-child" | "rewrite" | "grace" | "no-config" | "config" | "verbose"
        );
    }
    match a.strip_prefix('-') {
        Some(short) if !short.is_empty() => short.chars().all(|c| "sgcepvrw0123456789".contains(c)),
        _ => false,
    }
}

/// Is this argv (after the program name) an entrypoint invocation? `--`
/// always is; a leading entrypoint flag or a word that is not a subcommand
/// is, unless the caller says only `--` counts (the kernel passes unknown
/// command-line words to the machine's init).
pub fn wanted(args: &[OsString], only_dashdash: bool) -> bool {
    let Some(first) = args.first() else {
        return false;
    };
    let first = first.to_string_lossy();
    if first == "--" {
        return true;
    }
    if only_dashdash {
        return false;
    }
    if first.starts_with('-') {
        // `moonlit --config DIR` alone is the system boot it always was.
        // (Bad flags are entrypoint mode too, to be refused by name.)
        return is_entry_flag(&first) && parse(args).map_or(true, |o| !o.cmd.is_empty());
    }
    true
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

/// Parses the flags (tini's and dumb-init's spellings) and the command.
pub fn parse(args: &[OsString]) -> Result<EntryOpts, String> {
    use lexopt::prelude::*;
    let mut o = EntryOpts {
        subreaper: env_set("TINI_SUBREAPER"),
        group: env_set("TINI_KILL_PROCESS_GROUP"),
        single_child: std::env::var_os("DUMB_INIT_SETSID").is_some_and(|v| v == "0"),
        remap: Vec::new(),
        pdeathsig: None,
        rewrite: Vec::new(),
        warn_reap: false,
        verbosity: std::env::var("TINI_VERBOSITY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        grace_ms: 3000,
        config: None,
        no_config: false,
        cmd: Vec::new(),
    };
    if env_set("DUMB_INIT_DEBUG") {
        o.verbosity = o.verbosity.max(3);
    }
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let text = |v: OsString, what: &str| -> Result<String, String> {
        v.into_string()
            .map_err(|v| format!("{what}: '{}' is not valid UTF-8", v.to_string_lossy()))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('s') => o.subreaper = true,
            Short('g') => o.group = true,
            Short('c') | Long("single-child") => o.single_child = true,
            Short('w') => o.warn_reap = true,
            Short('v') | Long("verbose") => o.verbosity = o.verbosity.saturating_add(1),
            Short('e') => {
                let v = text(p.value().map_err(|e| e.to_string())?, "-e")?;
                let code: i32 = v
                    .parse()
                    .ok()
                    .filter(|c| (0..=255).contains(c))
                    .ok_or_else(|| format!("-e: '{v}' is not an exit code (0 to 255)"))?;
                o.remap.push(code);
            }
            Short('p') => {
                let v = text(p.value().map_err(|e| e.to_string())?, "-p")?;
                o.pdeathsig = Some(signal_arg(&v, "-p")?);
            }
            Short('r') | Long("rewrite") => {
                let v = text(p.value().map_err(|e| e.to_string())?, "--rewrite")?;
                let (from, to) = v.split_once(':').ok_or_else(|| {
                    format!("--rewrite: '{v}' is not S:R (e.g. 15:2 or TERM:INT)")
                })?;
                let from = signal_arg(from, "--rewrite")?;
                let to = if to == "0" {
                    0
                } else {
                    signal_arg(to, "--rewrite")?
                };
                o.rewrite.retain(|(f, _)| *f != from);
                o.rewrite.push((from, to));
            }
            Long("grace") => {
                let v = text(p.value().map_err(|e| e.to_string())?, "--grace")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| format!("--grace: '{v}' is not a number of seconds"))?;
                o.grace_ms = (secs * 1000.0) as u64;
            }
            Long("config") => o.config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("no-config") => o.no_config = true,
            Value(v) => {
                o.cmd.push(v);
                o.cmd.extend(p.raw_args().map_err(|e| e.to_string())?);
                break;
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(o)
}

fn signal_arg(s: &str, flag: &str) -> Result<i32, String> {
    spawn::parse_signal(s).ok_or_else(|| format!("{flag}: '{s}' is not a signal name or number"))
}

/// The configuration directory entrypoint mode boots with, if any.
pub fn config_dir(o: &EntryOpts) -> Option<PathBuf> {
    if o.no_config {
        return None;
    }
    if let Some(d) = &o.config {
        return Some(d.clone());
    }
    if let Some(d) = std::env::var_os("MOONLIT_CONFIG") {
        return Some(PathBuf::from(d));
    }
    let etc = PathBuf::from("/etc/moonlit");
    etc.is_dir().then_some(etc)
}

fn say(o: &EntryOpts, level: u8, msg: &str) {
    if o.verbosity >= level {
        eprintln!("moonlit: {msg}");
    }
}

/// Signals the kernel raises for a fault of the receiving process itself:
/// never forwarded (and they cannot reach us by a fault: we block them).
fn synchronous(sig: i32) -> bool {
    [
        nix::libc::SIGILL,
        nix::libc::SIGTRAP,
        nix::libc::SIGABRT,
        nix::libc::SIGBUS,
        nix::libc::SIGFPE,
        nix::libc::SIGSEGV,
        nix::libc::SIGSYS,
    ]
    .contains(&sig)
}

/// The exit code for a command that could not be started, as a shell
/// gives: 127 not found, 126 found but not executable.
pub fn spawn_failure_code(e: &SpawnError) -> i32 {
    match e {
        SpawnError::Exec { source, .. } => match source.raw_os_error() {
            Some(nix::libc::ENOENT) | Some(nix::libc::ENOTDIR) => 127,
            _ => 126,
        },
        _ => 126,
    }
}

/// Runs CMD as the main child without any configuration; exits with its
/// status. `mask` is every signal, blocked since main's first line.
pub fn run(o: EntryOpts, mask: &SigSet) -> ! {
    std::process::exit(run_inner(&o, mask))
}

fn run_inner(o: &EntryOpts, mask: &SigSet) -> i32 {
    let pid1 = rustix::process::getpid().is_init();
    let mut subreaper = false;
    if !pid1 && o.subreaper {
        match rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1)) {
            Ok(()) => subreaper = true,
            Err(e) => say(o, 1, &format!("cannot become a child subreaper: {e}")),
        }
    }
    if !pid1 && !subreaper {
        say(
            o,
            1,
            "warning: not PID 1 and not a child subreaper: orphans will not be \
             re-parented to moonlit and it cannot reap them (use -s or set TINI_SUBREAPER, \
             or run moonlit as PID 1)",
        );
    }
    if let Some(sig) = o.pdeathsig {
        let sig = Signal::try_from(sig)
            .ok()
            .and_then(|s| rustix::process::Signal::from_named_raw(s as i32));
        if let Err(e) = rustix::process::set_parent_process_death_signal(sig) {
            say(
                o,
                1,
                &format!("-p: cannot set the parent-death signal: {e}"),
            );
        }
    }
    let sfd = match SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("moonlit: signalfd: {e}");
            return 70;
        }
    };
    let name = o.cmd[0].to_string_lossy().into_owned();
    let mut spec = SpawnSpec::new(
        o.cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    );
    spec.raw_argv = Some(o.cmd.clone());
    spec.inherit_env = true;
    spec.stdin = StdioSpec::Inherit;
    spec.setsid = false;
    spec.pgroup = !o.single_child;
    spec.foreground = !o.single_child;
    let child = match spawn::spawn(spec) {
        Ok(pid) => Pid::from_raw(pid as i32),
        Err(e) => {
            let code = spawn_failure_code(&e);
            match &e {
                SpawnError::Exec { source, .. }
                    if source.raw_os_error() == Some(nix::libc::ENOENT) =>
                {
                    eprintln!("moonlit: {name}: command not found");
                }
                _ => eprintln!("moonlit: {e}"),
            }
            return code;
        }
    };
    say(o, 2, &format!("started {name} as pid {child}"));
    let mut status: Option<ExitStatus> = None;
    // After CMD's end: when the rest get KILL.
    let mut kill_at: Option<u64> = None;
    loop {
        // Wait for a signal, or for the next step of the end.
        let timeout = match (status, kill_at) {
            (None, _) => -1,
            (Some(_), Some(at)) => at.saturating_sub(crate::init::now_ms()).min(100) as i32,
            (Some(_), None) => 100,
        };
        let sfd_fd = sfd.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &sfd_fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = (timeout >= 0).then(|| rustix::time::Timespec {
            tv_sec: (timeout / 1000) as i64,
            tv_nsec: (timeout % 1000) as i64 * 1_000_000,
        });
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == nix::libc::SIGCHLD {
                continue;
            }
            if status.is_some() {
                say(
                    o,
                    2,
                    &format!("{}: CMD has ended, not forwarded", spawn::signal_name(sig)),
                );
                continue;
            }
            forward(o, sig, child, pid1);
        }
        // Reap everything that ended: CMD, and any orphan.
        let mut none_left = false;
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, ws))) => {
                    let pid = Pid::from_raw(pid.as_raw_nonzero().get());
                    let st = ExitStatus::from_wait(ws);
                    if pid == child {
                        say(o, 2, &format!("{name} ended: {}", describe(st)));
                        status = Some(st);
                        // The rest get TERM now, KILL after the grace.
                        signal_rest(child, pid1, Signal::SIGTERM);
                        kill_at = Some(crate::init::now_ms() + o.grace_ms);
                    } else if o.warn_reap || o.verbosity >= 3 {
                        say(o, 1, &format!("reaped orphan pid {pid} ({})", describe(st)));
                    }
                }
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    none_left = true; // ECHILD
                    break;
                }
            }
        }
        let Some(st) = status else { continue };
        if none_left {
            return exit_code(o, st);
        }
        if kill_at.is_some_and(|at| crate::init::now_ms() >= at) {
            say(o, 2, "grace period over: KILL to the rest");
            signal_rest(child, pid1, Signal::SIGKILL);
        }
    }
}

fn describe(st: ExitStatus) -> String {
    match st {
        ExitStatus::Exited(c) => format!("exit code {c}"),
        ExitStatus::Signaled(s) => format!("killed by SIG{}", spawn::signal_name(s)),
    }
}

fn exit_code(o: &EntryOpts, st: ExitStatus) -> i32 {
    remap(&o.remap, st.code())
}

/// `-e CODE`: CMD's code (128 + signal included, as tini counts it) as 0.
pub fn remap(codes: &[i32], code: i32) -> i32 {
    if codes.contains(&code) {
        0
    } else {
        code
    }
}

/// CMD as the `main` service of a configured init (carried across re-exec).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MainCmd {
    pub argv: Vec<String>,
    pub remap: Vec<i32>,
}

/// Adds CMD to a configuration's plan as the `main` service, after every
/// other one. A configured service of that name is an error: CMD wins.
pub fn add_main_service(
    plan: &mut moonlit_config::plan::Plan,
    m: &MainCmd,
    errors: &mut Vec<moonlit_config::ConfigError>,
) {
    if let Some(prev) = plan.services.remove("main") {
        errors.push(moonlit_config::ConfigError::new(
            moonlit_config::ErrorKind::Duplicate,
            plan.module_of.get("main").map_or("?", String::as_str),
            format!(
                "{}: the service name \"main\" belongs to the entrypoint's command; \
                 this declaration is ignored",
                prev.location
            ),
        ));
        plan.module_of.remove("main");
    }
    let after: Vec<String> = plan.services.keys().cloned().collect();
    let spec = moonlit_config::plan::ServiceSpec::main_command(m.argv.clone(), after);
    plan.services.insert("main".into(), spec);
}

/// Starts the `main` service of a configured entrypoint: CMD keeps the
/// init's standard streams and environment and leads its own process group
/// in the foreground of the terminal, as without a configuration.
pub fn spawn_main(spec: &moonlit_config::plan::ServiceSpec) -> Result<u32, (String, i32)> {
    let mut s = SpawnSpec::new(spec.exec.clone());
    s.inherit_env = true;
    s.env = spec.env.clone();
    s.stdin = StdioSpec::Inherit;
    s.setsid = false;
    s.pgroup = true;
    s.foreground = true;
    spawn::spawn(s).map_err(|e| (e.to_string(), spawn_failure_code(&e)))
}

impl MainCmd {
    pub fn of(o: &EntryOpts) -> MainCmd {
        MainCmd {
            argv: o
                .cmd
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            remap: o.remap.clone(),
        }
    }
}

/// Signals everything left after CMD's end: as PID 1 every process of the
/// namespace; otherwise CMD's process group and every child re-parented to
/// us (all of them, when we are a subreaper).
fn signal_rest(child: Pid, pid1: bool, sig: Signal) {
    if pid1 {
        let _ = nix::sys::signal::kill(Pid::from_raw(-1), sig);
        return;
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(-child.as_raw()), sig);
    for pid in crate::shutdown::children() {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
    }
}

/// Forwards one signal to CMD (or its group), rewritten as asked. Job
/// control signals follow dumb-init: the child is stopped with SIGSTOP
/// (it cannot ignore it; it lives in its own group, so a TSTP meant for
/// moonlit would otherwise stop nobody), then moonlit stops itself unless
/// it is PID 1; the SIGCONT that resumes moonlit is forwarded like any other.
fn forward(o: &EntryOpts, sig: i32, child: Pid, pid1: bool) {
    if synchronous(sig) {
        return;
    }
    let job = [nix::libc::SIGTSTP, nix::libc::SIGTTIN, nix::libc::SIGTTOU].contains(&sig);
    let to = match o.rewrite.iter().find(|(f, _)| *f == sig) {
        Some((_, t)) => *t,
        None if job => nix::libc::SIGSTOP,
        None => sig,
    };
    if to != 0 {
        let target = if o.group {
            Pid::from_raw(-child.as_raw())
        } else {
            child
        };
        // The raw call: real-time signals have no nix `Signal`.
        // SAFETY: kill(2) takes plain integers and touches no memory.
        #[allow(unsafe_code)]
        let r = unsafe { nix::libc::kill(target.as_raw(), to) };
        say(
            o,
            2,
            &format!(
                "forwarded SIG{} as SIG{} to {}{}{}",
                spawn::signal_name(sig),
                spawn::signal_name(to),
                if o.group { "process group " } else { "pid " },
                child,
                if r < 0 { " (failed)" } else { "" }
            ),
        );
    } else {
        say(
            o,
            2,
            &format!("SIG{} dropped (--rewrite)", spawn::signal_name(sig)),
        );
    }
    if job && !pid1 {
        let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_in_tini_and_dumb_init_spelling() {
        let o = parse(&os(&[
            "-sg", "-e", "143", "-e", "2", "-vv", "-p", "SIGUSR1", "--", "sh", "-c", "x",
        ]))
        .unwrap();
        assert!(o.subreaper && o.group && !o.single_child);
        assert_eq!(o.remap, vec![143, 2]);
        assert_eq!(o.pdeathsig, Some(10));
        assert_eq!(o.cmd, os(&["sh", "-c", "x"]));
        let o = parse(&os(&[
            "--single-child",
            "--rewrite",
            "15:2",
            "-r",
            "TERM:0",
            "app",
            "--",
            "-s",
        ]))
        .unwrap();
        assert!(o.single_child);
        assert_eq!(o.rewrite, vec![(15, 0)]);
        // Everything after CMD belongs to CMD, flags and `--` included.
        assert_eq!(o.cmd, os(&["app", "--", "-s"]));
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse(&os(&["-e", "300", "x"]))
            .unwrap_err()
            .contains("-e: '300'"));
        assert!(parse(&os(&["-p", "NOPE", "x"]))
            .unwrap_err()
            .contains("'NOPE'"));
        assert!(parse(&os(&["--rewrite", "15", "x"]))
            .unwrap_err()
            .contains("S:R"));
        assert!(parse(&os(&["-x", "cmd"])).is_err());
        assert!(parse(&os(&["--grace", "soon", "x"]))
            .unwrap_err()
            .contains("--grace"));
    }

    #[test]
    fn which_argvs_are_entrypoint_invocations() {
        assert!(wanted(&os(&["--", "sh"]), true));
        assert!(!wanted(&os(&["single"]), true));
        assert!(wanted(&os(&["nginx", "-g", "daemon off;"]), false));
        assert!(wanted(&os(&["-s", "nginx"]), false));
        assert!(!wanted(&os(&["--config", "/etc/moonlit"]), false));
        assert!(wanted(&os(&["--config", "/etc/moonlit", "app"]), false));
        assert!(!wanted(&os(&[]), false));
        assert!(!wanted(&os(&["--debug"]), false));
    }
}
