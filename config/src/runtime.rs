//! The Lua runtime of PID 1: one Lua 5.4 state, its limits, and its tasks.
//!
//! Owns: the state (safe standard library, `sys`, `net`, the prelude), the
//! memory limit, the per-slice instruction budget enforced by a count hook,
//! tasks (coroutines the event loop resumes) and the Lua-side process
//! handles. Does not own: the event loop, timers, reaping: a task that wants
//! to block yields a [`Request`] and the init performs it, then resumes the
//! task with the answer (the Lua Event Machine's way).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use mlua::thread::ThreadStatus;
use mlua::{
    Function, HookTriggers, IntoLuaMulti, Lua, MultiValue, StdLib, Table, Thread, Value, VmState,
};

use crate::error::{ConfigError, ErrorKind};
use crate::spawn::{self, ExitStatus, SpawnSpec, StdioSpec};

/// Limits applied to every evaluation and callback.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes the whole Lua state may allocate.
    pub memory: usize,
    /// VM instructions one task may run between two yields.
    pub instructions_per_slice: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            instructions_per_slice: 200_000_000,
        }
    }
}

/// The prelude as bytecode (see build.rs).
static PRELUDE_BYTECODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prelude.luac"));

/// How often the count hook runs, in VM instructions.
const HOOK_EVERY: u32 = 10_000;

/// What a task asks the event loop to do before resuming it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Resume after this long, with no values.
    Sleep(Duration),
    /// Resume with the exit code when this Lua-spawned child has been reaped.
    WaitPid(u32),
    /// Resume on the next netlink link/address event (true) or the timeout (false).
    Netlink(Option<Duration>),
    /// A plain `coroutine.yield()` at task level: resume on the next turn.
    Yield,
    /// Make `root` the new `/` and exec `init` there (initramfs handover).
    /// Resumed only on failure, with the error message.
    SwitchRoot { root: String, init: String },
    /// `task(fn)`: start `body` as a task of its own named `name`; resume
    /// the caller with its id (or nil and why not).
    Task { body: Function, name: String },
    /// Resume with true when [`Runtime::take_wakes`] yields `key`, or false
    /// at the timeout (`join`, and anything else that waits for Lua).
    Park { key: i64, timeout: Option<Duration> },
    /// Resume with true when `fd` is readable (writable), false at the
    /// timeout.
    Fd {
        fd: i32,
        write: bool,
        timeout: Option<Duration>,
    },
}

/// The most tasks that may exist at once (`task()` fails beyond it).
pub const MAX_TASKS: usize = 10_000;

/// The outcome of running a task until it stops.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Wait(Request),
    Done,
    Failed(String),
}

/// Something Lua asked of the init that only the init can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequest {
    Poweroff,
    Reboot,
    Halt,
    Start(String),
    Stop(String),
    Restart(String),
    /// Start an on-demand service now (as its timer or socket would).
    Trigger(String),
}

/// A task's handle.
pub type TaskId = u64;

struct Task {
    thread: Thread,
    name: String,
}

struct ChildSlot {
    status: Option<ExitStatus>,
    capture: Option<OwnedFd>,
}

/// State shared between the runtime and the Rust functions it gave Lua.
#[derive(Default)]
struct Shared {
    children: HashMap<u32, ChildSlot>,
    host: Vec<HostRequest>,
    /// True while a declaration module is evaluated: nothing may be spawned.
    declaring: bool,
    /// Live module state, owned by the init: module name -> (table, version).
    states: HashMap<String, (Table, i64)>,
    config_dir: std::path::PathBuf,
    /// `moonlit.setenv`: variables for every service started afterwards.
    service_env: std::collections::BTreeMap<String, String>,
    /// `moonlit.service_stats`: the init's reader of a service's cgroup.
    stats: Option<StatsFn>,
    /// Park keys woken since the loop last looked.
    woken: Vec<i64>,
    /// Tasks `h:cancel()` asked to end.
    cancels: Vec<TaskId>,
    /// Why the task being unwound now ends (its handle's error).
    ending: Option<String>,
}

/// A service's live cgroup figures (`None`: the file is absent, its
/// controller not enabled here).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStats {
    pub memory_current: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    pub pids_current: Option<u64>,
    pub populated: bool,
    pub oom_kills: Option<u64>,
}

/// Reads a service's figures by name, or says why there are none.
pub type StatsFn = Rc<dyn Fn(&str) -> Result<ServiceStats, String>>;

struct Budget {
    used: Cell<u64>,
    limit: Cell<u64>,
    tripped: RefCell<Option<String>>,
}

/// Installs a Lua module into a state (`moonlit_sys::register`, ...).
pub type Registrar = fn(&Lua) -> mlua::Result<()>;

/// Where log lines from Lua (`print`, `moonlit.log`) go.
pub type LogFn = Rc<dyn Fn(&str)>;

/// A declaration recorded while a module was evaluated.
#[derive(Debug, Clone)]
pub struct RawDecl {
    /// "service", "state", "network.interface", ...
    pub kind: String,
    pub name: Option<String>,
    pub body: Table,
    /// "services/web.lua:3"
    pub location: String,
}

/// `state(defaults, version)` as a module declared it.
#[derive(Debug, Clone)]
pub struct StateDecl {
    /// The table the module's code holds: filled with the live state at commit.
    pub proxy: Table,
    pub version: i64,
    pub location: String,
}

/// What evaluating one module produced.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub decls: Vec<RawDecl>,
    /// Its environment: where its hooks (`before_reload`, `after_reload`,
    /// `migrate`) and callbacks live.
    pub env: Table,
    /// Libraries it required: (path relative to the config dir, content hash).
    pub libs: Vec<(String, u64)>,
    pub state: Option<StateDecl>,
}

/// Facts about this boot that Lua sees as `moonlit.*`.
#[derive(Debug, Clone, Default)]
pub struct BootInfo {
    pub mode: String,
    pub config_dir: String,
    pub debug: bool,
    /// Kernel command line `key=value` pairs (a bare word maps to "").
    pub cmdline: Vec<(String, String)>,
}

/// The Lua runtime.
pub struct Runtime {
    /// What the last task that finished returned, as strings (for `ctl eval`).
    last_results: Vec<String>,
    lua: Lua,
    mark: Table,
    make_env: Function,
    tasks: HashMap<TaskId, Task>,
    next_id: TaskId,
    shared: Rc<RefCell<Shared>>,
    limits: Limits,
}

fn now_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// One line of a Lua error: "file:line: message", without the traceback.
pub fn error_summary(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_summary(cause),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.lines().next().unwrap_or("").to_string(),
        mlua::Error::MemoryError(_) => {
            "not enough memory (the Lua memory limit was reached)".into()
        }
        mlua::Error::WithContext { context, cause } => {
            format!("{context}: {}", error_summary(cause))
        }
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

fn stdio_from_lua(
    v: Value,
    which: &str,
    capture: &mut Option<OwnedFd>,
) -> Result<StdioSpec, String> {
    match v {
        Value::Nil => Ok(if which == "stdin" {
            StdioSpec::Null
        } else {
            StdioSpec::Inherit
        }),
        Value::String(s) => {
            let s = s.to_str().map_err(|e| e.to_string())?.to_string();
            match s.as_str() {
                "null" => Ok(StdioSpec::Null),
                "inherit" => Ok(StdioSpec::Inherit),
                "capture" if which != "stdin" => {
                    if capture.is_none() {
                        let fd = rustix::fs::memfd_create(
                            "moonlit-capture",
                            rustix::fs::MemfdFlags::CLOEXEC,
                        )
                        .map_err(|e| format!("memfd_create: {e}"))?;
                        *capture = Some(fd);
                    }
                    let fd = capture
                        .as_ref()
                        .map(|f| f.try_clone())
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    fd.map(StdioSpec::Fd).ok_or_else(|| "capture".to_string())
                }
                path => {
                    let f = if which == "stdin" {
                        File::open(path)
                    } else {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                    };
                    f.map(|f| StdioSpec::Fd(f.into()))
                        .map_err(|e| format!("{which} {path}: {e}"))
                }
            }
        }
        Value::Integer(fd) => {
            let fd = i32::try_from(fd).map_err(|_| format!("{which}: bad fd {fd}"))?;
            let owned = rustix::io::fcntl_dupfd_cloexec(
                // SAFETY-free borrow: a dup of a number the script gave; an invalid
                // one fails with EBADF.
                borrow_fd(fd),
                3,
            )
            .map_err(|e| format!("{which}: fd {fd}: {e}"))?;
            Ok(StdioSpec::Fd(owned))
        }
        other => Err(format!(
            "{which} must be \"null\", \"inherit\", \"capture\", a path or an fd, got {}",
            other.type_name()
        )),
    }
}

fn borrow_fd(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    crate::fdutil::borrow(fd)
}

/// Builds a [`SpawnSpec`] from `spawn{...}`'s table. `Err` is an argument
/// error (raised), not an OS failure.
fn spec_from_lua(t: &Table, capture: &mut Option<OwnedFd>) -> Result<SpawnSpec, String> {
    let mut argv = Vec::new();
    for v in t.sequence_values::<Value>() {
        match v.map_err(|e| e.to_string())? {
            Value::String(s) => argv.push(s.to_str().map_err(|e| e.to_string())?.to_string()),
            Value::Integer(i) => argv.push(i.to_string()),
            Value::Number(n) => argv.push(n.to_string()),
            other => {
                return Err(format!(
                    "argv entries must be strings, got {}",
                    other.type_name()
                ))
            }
        }
    }
    if argv.is_empty() {
        return Err(
            "argv is empty: give the program and its arguments as the table's list part".into(),
        );
    }
    let mut spec = SpawnSpec::new(argv);
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let key = match k {
            Value::Integer(_) => continue,
            Value::String(s) => s.to_str().map_err(|e| e.to_string())?.to_string(),
            other => return Err(format!("unexpected key of type {}", other.type_name())),
        };
        let as_str = |v: &Value| -> Result<String, String> {
            match v {
                Value::String(s) => Ok(s.to_str().map_err(|e| e.to_string())?.to_string()),
                Value::Integer(i) => Ok(i.to_string()),
                other => Err(format!("{key} must be a string, got {}", other.type_name())),
            }
        };
        match key.as_str() {
            "env" => {
                let Value::Table(env) = v else {
                    return Err(format!("env must be a table, got {}", v.type_name()));
                };
                for p in env.pairs::<String, Value>() {
                    let (name, val) = p.map_err(|e| format!("env: {e}"))?;
                    spec.env.insert(name, as_str(&val)?);
                }
            }
            "cwd" => spec.cwd = Some(as_str(&v)?.into()),
            "user" => spec.user = Some(as_str(&v)?),
            "group" => spec.group = Some(as_str(&v)?),
            "setsid" => match v {
                Value::Boolean(b) => spec.setsid = b,
                other => return Err(format!("setsid must be a boolean, got {}", other.type_name())),
            },
            "umask" => {
                spec.umask = Some(match &v {
                    Value::Integer(i) => *i as u32,
                    Value::String(s) => u32::from_str_radix(&s.to_string_lossy(), 8)
                        .map_err(|_| format!("umask must be an octal string like \"022\", got {:?}", s.to_string_lossy()))?,
                    other => return Err(format!("umask must be a number or octal string, got {}", other.type_name())),
                })
            }
            "limits" => spec.rlimits = spawn::rlimits_of(&crate::plan::parse_limits(v)?),
            "stdin" => spec.stdin = stdio_from_lua(v, "stdin", capture)?,
            "stdout" => spec.stdout = stdio_from_lua(v, "stdout", capture)?,
            "stderr" => spec.stderr = stdio_from_lua(v, "stderr", capture)?,
            other => {
                return Err(format!(
                    "unknown key '{other}' (expected env, cwd, user, group, setsid, umask, limits, stdin, stdout, stderr)"
                ))
            }
        }
    }
    Ok(spec)
}

impl Runtime {
    /// A new runtime: safe standard library, `sys`/`syscall`, `net`, the prelude,
    /// `moonlit.*`, limits in force.
    /// `modules` register extra Lua modules (`sys`, `net`) into the state.
    pub fn new(
        limits: Limits,
        info: &BootInfo,
        log: LogFn,
        modules: &[Registrar],
    ) -> Result<Runtime, ConfigError> {
        let lua = Lua::new_with(StdLib::ALL_SAFE, mlua::LuaOptions::default())
            .map_err(|e| ConfigError::internal(&e))?;
        let shared = Rc::new(RefCell::new(Shared::default()));
        let rt = Self::setup(lua, limits, info, log, shared, modules)
            .map_err(|e| ConfigError::internal(&e))?;
        Ok(rt)
    }

    fn setup(
        lua: Lua,
        limits: Limits,
        info: &BootInfo,
        log: LogFn,
        shared: Rc<RefCell<Shared>>,
        modules: &[Registrar],
    ) -> mlua::Result<Runtime> {
        lua.set_memory_limit(limits.memory)?;
        for register in modules {
            register(&lua)?;
        }
        let g = lua.globals();

        // Nothing in PID 1 may end the process or block the loop on a child.
        let os: Table = g.get("os")?;
        os.set("exit", Value::Nil)?;
        os.set("execute", Value::Nil)?;
        let io: Table = g.get("io")?;
        io.set("popen", Value::Nil)?;
        let package: Table = g.get("package")?;
        package.set("cpath", "")?;
        let dir = &info.config_dir;
        package.set(
            "path",
            format!("{dir}/lib/?.lua;{dir}/lib/?/init.lua;{dir}/?.lua"),
        )?;

        let log_print = log.clone();
        let tostring: Function = g.get("tostring")?;
        g.set(
            "print",
            lua.create_function(move |_, args: MultiValue| {
                let mut parts = Vec::new();
                for v in args {
                    parts.push(tostring.call::<mlua::LuaString>(v)?.to_string_lossy());
                }
                log_print(&parts.join("\t"));
                Ok(())
            })?,
        )?;

        // moonlit.*
        let m = lua.create_table()?;
        m.set("mode", info.mode.as_str())?;
        m.set("config_dir", info.config_dir.as_str())?;
        m.set("debug", info.debug)?;
        let args = lua.create_table()?;
        for (k, v) in &info.cmdline {
            args.set(k.as_str(), v.as_str())?;
        }
        m.set("cmdline", args)?;
        m.set("version", env!("CARGO_PKG_VERSION"))?;
        let log_fn = log.clone();
        m.set(
            "log",
            lua.create_function(move |_, msg: String| {
                log_fn(&msg);
                Ok(())
            })?,
        )?;
        for (name, req) in [
            ("poweroff", HostRequest::Poweroff),
            ("reboot", HostRequest::Reboot),
            ("halt", HostRequest::Halt),
        ] {
            let sh = shared.clone();
            m.set(
                name,
                lua.create_function(move |_, ()| {
                    sh.borrow_mut().host.push(req.clone());
                    Ok(())
                })?,
            )?;
        }
        type Ctor = fn(String) -> HostRequest;
        let svc_ops: [(&str, Ctor); 4] = [
            ("start", HostRequest::Start),
            ("stop", HostRequest::Stop),
            ("restart", HostRequest::Restart),
            ("trigger", HostRequest::Trigger),
        ];
        for (name, ctor) in svc_ops {
            let sh = shared.clone();
            m.set(
                name,
                lua.create_function(move |_, svc: String| {
                    sh.borrow_mut().host.push(ctor(svc));
                    Ok(())
                })?,
            )?;
        }
        let sh = shared.clone();
        m.set(
            "setenv",
            lua.create_function(move |_, (k, v): (String, Option<String>)| {
                if k.is_empty()
                    || k.contains('=')
                    || k.contains('\0')
                    || k.starts_with(|c: char| c.is_ascii_digit())
                {
                    return Err(mlua::Error::runtime(format!(
                        "setenv: '{k}' is not a variable name"
                    )));
                }
                if v.as_deref().is_some_and(|v| v.contains('\0')) {
                    return Err(mlua::Error::runtime(format!(
                        "setenv: the value of {k} contains a NUL byte"
                    )));
                }
                let mut sh = sh.borrow_mut();
                match v {
                    Some(v) => sh.service_env.insert(k, v),
                    None => sh.service_env.remove(&k),
                };
                Ok(())
            })?,
        )?;
        let sh = shared.clone();
        m.set(
            "getenv",
            lua.create_function(move |_, k: String| Ok(sh.borrow().service_env.get(&k).cloned()))?,
        )?;
        let sh = shared.clone();
        m.set(
            "service_stats",
            // A table of figures, or nil and the reason there is none.
            lua.create_function(move |lua, name: String| {
                let reader = sh.borrow().stats.clone();
                let res = match reader {
                    Some(f) => f(&name),
                    None => Err("cgroups are not set up".to_string()),
                };
                match res {
                    Ok(st) => {
                        let t = lua.create_table()?;
                        t.set("memory_current", st.memory_current)?;
                        t.set("cpu_usage_usec", st.cpu_usage_usec)?;
                        t.set("pids_current", st.pids_current)?;
                        t.set("populated", st.populated)?;
                        t.set("oom_kills", st.oom_kills)?;
                        Ok((Value::Table(t), Value::Nil))
                    }
                    Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e)?))),
                }
            })?,
        )?;
        g.set("moonlit", m)?;

        // Primitives for the prelude.
        let r = lua.create_table()?;
        r.set("now", lua.create_function(|_, ()| Ok(now_secs()))?)?;
        let sh = shared.clone();
        r.set(
            "wake",
            lua.create_function(move |_, key: i64| {
                sh.borrow_mut().woken.push(key);
                Ok(())
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "cancel",
            lua.create_function(move |_, id: TaskId| {
                sh.borrow_mut().cancels.push(id);
                Ok(())
            })?,
        )?;
        // The methods of `sys` fd objects (made when `sys` is first
        // required), for the prelude to make them wait instead of block.
        r.set(
            "fd_methods",
            lua.create_function(|lua, ()| {
                lua.named_registry_value::<Option<Table>>("moonlit.sys.fd_methods")
            })?,
        )?;
        r.set("max_tasks", MAX_TASKS)?;
        // Calendar timers for `at`: Unix time now, and the next elapse of
        // an expression after a Unix time (nil and why for a bad one).
        r.set(
            "unix_now",
            lua.create_function(|_, ()| {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
                Ok(t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
            })?,
        )?;
        r.set(
            "calendar_next",
            lua.create_function(|lua, (expr, after): (String, f64)| {
                match crate::timers::Calendar::parse(&expr) {
                    Ok(c) => {
                        let zone = crate::timers::Zone::local();
                        Ok(match c.next_after(after.floor() as i64, &zone) {
                            Some(t) => Value::Integer(t),
                            None => Value::Boolean(false),
                        })
                    }
                    Err(e) => Ok(Value::String(lua.create_string(e)?)),
                }
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "ending",
            lua.create_function(move |_, ()| Ok(sh.borrow().ending.clone()))?,
        )?;
        r.set(
            "exists",
            lua.create_function(|_, p: String| Ok(std::fs::symlink_metadata(p).is_ok()))?,
        )?;
        let sh = shared.clone();
        r.set(
            "spawn",
            // Returns pid | nil, os-error | nil, nil, argument-error: the Lua
            // side raises argument errors at the caller's line.
            lua.create_function(move |lua, t: Table| {
                let arg_err = |m: String| -> mlua::Result<(Value, Value, Value)> {
                    Ok((Value::Nil, Value::Nil, Value::String(lua.create_string(m)?)))
                };
                if sh.borrow().declaring {
                    return arg_err("a declaration module cannot start processes".into());
                }
                let mut capture = None;
                let spec = match spec_from_lua(&t, &mut capture) {
                    Ok(s) => s,
                    Err(m) => return arg_err(m),
                };
                match spawn::spawn(spec) {
                    Ok(pid) => {
                        sh.borrow_mut().children.insert(
                            pid,
                            ChildSlot {
                                status: None,
                                capture,
                            },
                        );
                        Ok((Value::Integer(pid as i64), Value::Nil, Value::Nil))
                    }
                    Err(e) => Ok((
                        Value::Nil,
                        Value::String(lua.create_string(e.to_string())?),
                        Value::Nil,
                    )),
                }
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "status",
            lua.create_function(move |_, pid: u32| {
                Ok(sh
                    .borrow()
                    .children
                    .get(&pid)
                    .and_then(|c| c.status)
                    .map(|s| s.code()))
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "take_output",
            lua.create_function(move |lua, pid: u32| {
                let slot = sh.borrow_mut().children.remove(&pid);
                let Some(fd) = slot.and_then(|s| s.capture) else {
                    return Ok(Value::Nil);
                };
                let mut out = Vec::new();
                let mut off = 0u64;
                let mut buf = vec![0u8; 65536];
                loop {
                    match rustix::io::pread(&fd, &mut buf, off) {
                        Ok(0) => break,
                        Ok(n) => {
                            out.extend_from_slice(&buf[..n]);
                            off += n as u64;
                        }
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(_) => break,
                    }
                }
                Ok(Value::String(lua.create_string(&out)?))
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "kill",
            lua.create_function(move |lua, (pid, sig): (u32, Value)| {
                let signo = match &sig {
                    Value::Integer(n) => Some(*n as i32),
                    Value::String(s) => spawn::parse_signal(&s.to_string_lossy()),
                    _ => None,
                }
                .ok_or_else(|| mlua::Error::runtime(format!("kill: unknown signal {sig:?}")))?;
                let alive = sh
                    .borrow()
                    .children
                    .get(&pid)
                    .map(|c| c.status.is_none())
                    .unwrap_or(false);
                if !alive {
                    return Ok((
                        Value::Nil,
                        Value::String(lua.create_string(format!(
                            "kill: {pid} is not a running child of this script"
                        ))?),
                    ));
                }
                let res = rustix::process::Pid::from_raw(pid as i32)
                    .zip(rustix::process::Signal::from_named_raw(signo))
                    .map(|(p, s)| rustix::process::kill_process(p, s));
                match res {
                    Some(Ok(())) => Ok((Value::Boolean(true), Value::Nil)),
                    Some(Err(e)) => Ok((
                        Value::Nil,
                        Value::String(lua.create_string(format!("kill {pid}: {e}"))?),
                    )),
                    None => Ok((
                        Value::Nil,
                        Value::String(lua.create_string(format!("kill: bad signal {signo}"))?),
                    )),
                }
            })?,
        )?;

        // "file:line" of the Lua function `level` frames up from the caller
        // of `where` (the `debug` library is not loaded: it could lift limits).
        r.set(
            "where",
            lua.create_function(|lua, level: usize| {
                Ok(lua
                    .inspect_stack(level, |d| {
                        let src = d.source();
                        format!(
                            "{}:{}",
                            src.short_src.as_deref().unwrap_or("?"),
                            d.current_line().unwrap_or(0)
                        )
                    })
                    .unwrap_or_else(|| "?".into()))
            })?,
        )?;
        shared.borrow_mut().config_dir = std::path::PathBuf::from(&info.config_dir);
        let sh = shared.clone();
        r.set(
            "read_lib",
            lua.create_function(move |lua, name: String| {
                let ok = !name.is_empty()
                    && !name.contains("..")
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
                if !ok {
                    return Ok((Value::Nil, Value::Nil, Value::Nil));
                }
                let rel = name.replace('.', "/");
                let dir = sh.borrow().config_dir.clone();
                for cand in [format!("lib/{rel}.lua"), format!("lib/{rel}/init.lua")] {
                    if let Ok(src) = std::fs::read(dir.join(&cand)) {
                        let hash = crate::modules::content_hash(&src);
                        return Ok((
                            Value::String(lua.create_string(&src)?),
                            Value::String(lua.create_string(&cand)?),
                            Value::Integer(hash as i64),
                        ));
                    }
                }
                Ok((Value::Nil, Value::Nil, Value::Nil))
            })?,
        )?;
        let sh = shared.clone();
        r.set(
            "state_snapshot",
            lua.create_function(move |lua, (module, defaults): (String, Table)| {
                let d = crate::plain::to_json(&Value::Table(defaults), "state", 0)
                    .map_err(mlua::Error::runtime)?;
                let live = sh.borrow().states.get(&module).map(|(t, _)| t.clone());
                let mut j = match live {
                    Some(t) => crate::plain::to_json(&Value::Table(t), "state", 0)
                        .map_err(mlua::Error::runtime)?,
                    None => d.clone(),
                };
                // New keys in the defaults appear; existing values are kept.
                if let (serde_json::Value::Object(cur), serde_json::Value::Object(def)) =
                    (&mut j, &d)
                {
                    for (k, v) in def {
                        cur.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                crate::plain::from_json(lua, &j)
            })?,
        )?;
        let mark = lua.create_table()?;
        // The prelude, precompiled by build.rs (the source is not kept in the
        // binary: 23 KB). Lua checks the bytecode's header (version, sizes
        // and number formats); a build whose build-script host disagreed with
        // the target on those would fail here, in every test, loudly.
        let prelude_fn = lua
            .load(PRELUDE_BYTECODE)
            .set_name("@moonlit/prelude.lua")
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .into_function()
            .map_err(|e| {
                mlua::Error::RuntimeError(format!(
                    "the prelude's bytecode (built by config/build.rs) was refused: {e}"
                ))
            })?;
        let prelude: Table = prelude_fn.call((mark.clone(), r))?;
        let make_env: Function = prelude.get("make_env")?;

        lua.set_app_data(Budget {
            used: Cell::new(0),
            limit: Cell::new(limits.instructions_per_slice),
            tripped: RefCell::new(None),
        });
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            |lua, dbg| {
                let Some(b) = lua.app_data_ref::<Budget>() else {
                    return Ok(VmState::Continue);
                };
                let used = b.used.get() + u64::from(HOOK_EVERY);
                b.used.set(used);
                if used <= b.limit.get() {
                    return Ok(VmState::Continue);
                }
                if b.tripped.borrow().is_none() {
                    let src = dbg.source();
                    let line = dbg.current_line().unwrap_or(0);
                    *b.tripped.borrow_mut() = Some(format!(
                        "{}:{line}",
                        src.short_src.as_deref().unwrap_or("?")
                    ));
                }
                Ok(VmState::Yield)
            },
        )?;

        Ok(Runtime {
            last_results: Vec::new(),
            lua,
            mark,
            make_env,
            tasks: HashMap::new(),
            next_id: 1,
            shared,
            limits,
        })
    }

    /// The Lua state, for registering extra modules.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs `thread` until it yields, ends or fails, under the slice budget.
    fn drive(&self, thread: &Thread, args: impl IntoLuaMulti) -> Step {
        self.drive_full(thread, args).0
    }

    /// As [`drive`](Self::drive), also returning what a finished thread returned.
    fn drive_full(&self, thread: &Thread, args: impl IntoLuaMulti) -> (Step, MultiValue) {
        let (step, vals) = self.drive_inner(thread, args);
        (step, vals.unwrap_or_default())
    }

    fn drive_inner(&self, thread: &Thread, args: impl IntoLuaMulti) -> (Step, Option<MultiValue>) {
        let res = self.resume_limited(thread, args);
        match res {
            Err(step) => (step, None),
            Ok(vals) => {
                if thread.status() != ThreadStatus::Resumable {
                    return (Step::Done, Some(vals));
                }
                (self.parse_yield(vals), None)
            }
        }
    }

    fn resume_limited(&self, thread: &Thread, args: impl IntoLuaMulti) -> Result<MultiValue, Step> {
        if let Some(b) = self.lua.app_data_ref::<Budget>() {
            b.used.set(0);
            *b.tripped.borrow_mut() = None;
        }
        let res = thread.resume::<MultiValue>(args);
        let tripped = self
            .lua
            .app_data_ref::<Budget>()
            .and_then(|b| b.tripped.borrow_mut().take());
        if let Some(loc) = tripped {
            let msg = format!(
                "{loc}: instruction limit exceeded ({} VM instructions without yielding)",
                self.limits.instructions_per_slice
            );
            // Unwind it: closes its to-be-closed variables (a task's handle
            // learns why it ended).
            self.shared.borrow_mut().ending = Some(msg.clone());
            if let Ok(f) = self.lua.create_function(|_, ()| Ok(())) {
                let _ = thread.reset(f);
            }
            self.shared.borrow_mut().ending = None;
            self.lua.gc_collect().ok();
            return Err(Step::Failed(msg));
        }
        res.map_err(|e| {
            self.lua.gc_collect().ok();
            Step::Failed(error_summary(&e))
        })
    }

    fn parse_yield(&self, vals: MultiValue) -> Step {
        let mut it = vals.into_iter();
        match it.next() {
            Some(Value::Table(t)) if t == self.mark => {}
            _ => return Step::Wait(Request::Yield),
        }
        let op = it.next();
        let arg = it.next();
        let op = match &op {
            Some(Value::String(s)) => s.to_string_lossy(),
            _ => return Step::Failed("bad scheduler request".into()),
        };
        let secs = |v: &Option<Value>| -> Option<Duration> {
            match v {
                // At most 1e9 s (31 years: forever for an init);
                // Duration::from_secs_f64 panics past u64 seconds.
                Some(Value::Number(n)) if *n >= 0.0 && n.is_finite() => {
                    Some(Duration::from_secs_f64(n.min(1e9)))
                }
                Some(Value::Integer(i)) if *i >= 0 => {
                    Some(Duration::from_secs((*i as u64).min(1_000_000_000)))
                }
                _ => None,
            }
        };
        match op.as_str() {
            "sleep" => Step::Wait(Request::Sleep(secs(&arg).unwrap_or_default())),
            "wait" => match arg {
                Some(Value::Integer(p)) if p > 0 => Step::Wait(Request::WaitPid(p as u32)),
                _ => Step::Failed("wait: bad pid".into()),
            },
            "netlink" => Step::Wait(Request::Netlink(secs(&arg))),
            "task" => match arg {
                Some(Value::Function(body)) => {
                    let name = match it.next() {
                        Some(Value::String(n)) => n.to_string_lossy(),
                        Some(Value::Function(f)) => {
                            let info = f.info();
                            format!(
                                "task {}:{}",
                                info.short_src.as_deref().unwrap_or("?"),
                                info.line_defined.unwrap_or(0)
                            )
                        }
                        _ => {
                            let info = body.info();
                            format!(
                                "task {}:{}",
                                info.short_src.as_deref().unwrap_or("?"),
                                info.line_defined.unwrap_or(0)
                            )
                        }
                    };
                    Step::Wait(Request::Task { body, name })
                }
                _ => Step::Failed("task: bad body".into()),
            },
            "park" => match arg {
                Some(Value::Integer(key)) => Step::Wait(Request::Park {
                    key,
                    timeout: secs(&it.next()),
                }),
                _ => Step::Failed("park: bad key".into()),
            },
            "fd" => {
                let write = matches!(it.next(), Some(Value::Boolean(true)));
                let timeout = secs(&it.next());
                match arg {
                    Some(Value::Integer(fd)) if (0..=i64::from(i32::MAX)).contains(&fd) => {
                        Step::Wait(Request::Fd {
                            fd: fd as i32,
                            write,
                            timeout,
                        })
                    }
                    _ => Step::Failed("wait on fd: bad descriptor".into()),
                }
            }
            "switch_root" => {
                let init = it.next();
                match (arg, init) {
                    (Some(Value::String(r)), Some(Value::String(i))) => {
                        Step::Wait(Request::SwitchRoot {
                            root: r.to_string_lossy(),
                            init: i.to_string_lossy(),
                        })
                    }
                    _ => Step::Failed("switch_root: bad arguments".into()),
                }
            }
            other => Step::Failed(format!("unknown scheduler request '{other}'")),
        }
    }

    /// Creates a task running `f` and runs it to its first stop.
    pub fn start_task(
        &mut self,
        name: &str,
        f: Function,
        args: impl IntoLuaMulti,
    ) -> (TaskId, Step) {
        let id = self.next_id;
        self.next_id += 1;
        let thread = match self.lua.create_thread(f) {
            Ok(t) => t,
            Err(e) => return (id, Step::Failed(error_summary(&e))),
        };
        let (step, vals) = self.drive_full(&thread, args);
        self.keep_results(&step, vals);
        if let Step::Wait(_) = step {
            self.tasks.insert(
                id,
                Task {
                    thread,
                    name: name.to_string(),
                },
            );
        }
        (id, step)
    }

    /// Resumes a waiting task with the loop's answer.
    pub fn resume(&mut self, id: TaskId, args: impl IntoLuaMulti) -> Step {
        let Some(task) = self.tasks.get(&id) else {
            return Step::Failed(format!("no task {id}"));
        };
        let thread = task.thread.clone();
        let (step, vals) = self.drive_full(&thread, args);
        self.keep_results(&step, vals);
        if !matches!(step, Step::Wait(_)) {
            self.tasks.remove(&id);
        }
        step
    }

    fn keep_results(&mut self, step: &Step, vals: MultiValue) {
        if *step != Step::Done {
            return;
        }
        let tostring: Option<Function> = self.lua.globals().get("tostring").ok();
        self.last_results = vals
            .into_iter()
            .map(|v| {
                tostring
                    .as_ref()
                    .and_then(|t| t.call::<mlua::LuaString>(v).ok())
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default()
            })
            .collect();
    }

    /// What the task that finished last returned, as strings.
    pub fn take_results(&mut self) -> Vec<String> {
        std::mem::take(&mut self.last_results)
    }

    /// Compiles a chunk sent by `ctl eval` (global environment); an
    /// expression alone is returned (`1 + 1` works like `return 1 + 1`).
    pub fn load_eval(&self, code: &str) -> Result<Function, ConfigError> {
        let as_expr = self
            .lua
            .load(format!("return {code}"))
            .set_name("=ctl eval")
            .into_function();
        match as_expr {
            Ok(f) => Ok(f),
            Err(_) => self
                .lua
                .load(code)
                .set_name("=ctl eval")
                .into_function()
                .map_err(|e| ConfigError::new(ErrorKind::Syntax, "ctl eval", error_summary(&e))),
        }
    }

    /// Park keys woken by Lua since the last call.
    pub fn take_wakes(&self) -> Vec<i64> {
        std::mem::take(&mut self.shared.borrow_mut().woken)
    }

    /// Tasks Lua asked to cancel since the last call.
    pub fn take_cancels(&self) -> Vec<TaskId> {
        std::mem::take(&mut self.shared.borrow_mut().cancels)
    }

    /// Ends a waiting task now: its to-be-closed variables are closed (a
    /// task's handle is marked cancelled that way). False if no such task.
    pub fn cancel(&mut self, id: TaskId) -> bool {
        let Some(task) = self.tasks.remove(&id) else {
            return false;
        };
        if let Ok(f) = self.lua.create_function(|_, ()| Ok(())) {
            let _ = task.thread.reset(f);
        }
        true
    }

    /// Every task waiting on the loop: (id, name), oldest first.
    pub fn task_list(&self) -> Vec<(TaskId, String)> {
        let mut v: Vec<(TaskId, String)> = self
            .tasks
            .iter()
            .map(|(id, t)| (*id, t.name.clone()))
            .collect();
        v.sort();
        v
    }

    /// The name a task was started with.
    pub fn task_name(&self, id: TaskId) -> Option<&str> {
        self.tasks.get(&id).map(|t| t.name.as_str())
    }

    /// Number of tasks waiting on the loop.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Loads a chunk for the boot script (global environment).
    pub fn load_script(&self, name: &str, source: &[u8]) -> Result<Function, ConfigError> {
        self.lua
            .load(source)
            .set_name(format!("@{name}"))
            .into_function()
            .map_err(|e| ConfigError::new(ErrorKind::Syntax, name, error_summary(&e)))
    }

    /// Evaluates a declaration module in a fresh environment and returns what
    /// it declared. Blocking calls and process creation are refused.
    pub fn eval_module(&self, name: &str, source: &[u8]) -> Result<Evaluated, ConfigError> {
        let internal = |e: mlua::Error| ConfigError::internal(&e);
        let (env, decls, meta): (Table, Table, Table) =
            self.make_env.call(name).map_err(internal)?;
        let f = self
            .lua
            .load(source)
            .set_name(format!("@{name}"))
            .set_environment(env.clone())
            .into_function()
            .map_err(|e| ConfigError::new(ErrorKind::Syntax, name, error_summary(&e)))?;
        let thread = self.lua.create_thread(f).map_err(internal)?;
        self.shared.borrow_mut().declaring = true;
        let step = self.drive(&thread, ());
        self.shared.borrow_mut().declaring = false;
        self.no_yield(&thread, name, step).map(|_| ())?;
        let mut out = Vec::new();
        for d in decls.sequence_values::<Table>() {
            let d = d.map_err(internal)?;
            let location: String = d.get("where").map_err(internal)?;
            // Kind and name come from the module (`network["..."]`, a
            // service's name): bytes that are not UTF-8 are the module's
            // error, not moonlit's.
            let text = |field: &str| -> Result<Option<String>, ConfigError> {
                let Some(s) = d.get::<Option<mlua::LuaString>>(field).map_err(internal)? else {
                    return Ok(None);
                };
                match s.to_str() {
                    Ok(t) => Ok(Some(t.to_string())),
                    Err(_) => Err(ConfigError::new(
                        ErrorKind::Schema,
                        name,
                        format!(
                            "{location}: declaration {field} \"{}\" is not valid UTF-8",
                            s.to_string_lossy()
                        ),
                    )),
                }
            };
            out.push(RawDecl {
                kind: text("kind")?.unwrap_or_default(),
                name: text("name")?,
                body: d.get("body").map_err(internal)?,
                location,
            });
        }
        let mut libs = Vec::new();
        let lib_list: Table = meta.get("libs").map_err(internal)?;
        for l in lib_list.sequence_values::<Table>() {
            let l = l.map_err(internal)?;
            let path: String = l.get(1).map_err(internal)?;
            let hash: i64 = l.get(2).map_err(internal)?;
            libs.push((path, hash as u64));
        }
        let state = match meta.get::<Option<Table>>("state").map_err(internal)? {
            Some(st) => Some(StateDecl {
                proxy: st.get("proxy").map_err(internal)?,
                version: st.get("version").map_err(internal)?,
                location: st.get("where").map_err(internal)?,
            }),
            None => None,
        };
        Ok(Evaluated {
            decls: out,
            env,
            libs,
            state,
        })
    }

    /// Turns a step of code that must not block into its result.
    fn no_yield(&self, thread: &Thread, name: &str, step: Step) -> Result<(), ConfigError> {
        match step {
            Step::Done => Ok(()),
            Step::Wait(_) => {
                if let Ok(f) = self.lua.create_function(|_, ()| Ok(())) {
                    let _ = thread.reset(f);
                }
                Err(ConfigError::new(
                    ErrorKind::Runtime,
                    name,
                    format!("{name}: a declaration module or hook must not block or yield (sleep, wait, sh...)"),
                ))
            }
            Step::Failed(msg) => {
                let kind = if msg.contains("instruction limit") || msg.contains("not enough memory")
                {
                    ErrorKind::Limit
                } else {
                    ErrorKind::Runtime
                };
                let msg = if msg.starts_with(name) {
                    msg
                } else {
                    format!("{name}: {msg}")
                };
                Err(ConfigError::new(kind, name, msg))
            }
        }
    }

    /// Calls the function `hook` of a module environment, if it defines one,
    /// under the limits and without letting it block. Returns its first
    /// result (`Ok(None)` when the module has no such hook).
    pub fn call_hook(
        &self,
        module: &str,
        env: &Table,
        hook: &str,
        args: impl IntoLuaMulti,
    ) -> Result<Option<Value>, ConfigError> {
        let f = match env.raw_get::<Value>(hook) {
            Ok(Value::Function(f)) => f,
            _ => return Ok(None),
        };
        let thread = self
            .lua
            .create_thread(f)
            .map_err(|e| ConfigError::internal(&e))?;
        let (step, vals) = self.drive_full(&thread, args);
        self.no_yield(&thread, &format!("{module} ({hook})"), step)?;
        Ok(Some(vals.into_iter().next().unwrap_or(Value::Nil)))
    }

    /// The live state of `module` as plain data, if it has one.
    pub fn live_state(&self, module: &str) -> Option<(serde_json::Value, i64)> {
        let (t, v) = self.shared.borrow().states.get(module).cloned()?;
        crate::plain::to_json(&Value::Table(t), "state", 0)
            .ok()
            .map(|j| (j, v))
    }

    /// Every live state (for a re-exec).
    pub fn live_states(&self) -> Vec<(String, serde_json::Value, i64)> {
        let names: Vec<String> = self.shared.borrow().states.keys().cloned().collect();
        names
            .into_iter()
            .filter_map(|n| self.live_state(&n).map(|(j, v)| (n, j, v)))
            .collect()
    }

    /// Makes `data` the live state of `module`, in the table its code holds.
    pub fn commit_state(
        &self,
        module: &str,
        proxy: &Table,
        data: &serde_json::Value,
        version: i64,
    ) -> Result<(), ConfigError> {
        crate::plain::fill(&self.lua, proxy, data).map_err(|e| ConfigError::internal(&e))?;
        self.shared
            .borrow_mut()
            .states
            .insert(module.to_string(), (proxy.clone(), version));
        Ok(())
    }

    /// Seeds a module's live state (from a re-exec handover), before evaluation.
    pub fn seed_state(
        &self,
        module: &str,
        data: &serde_json::Value,
        version: i64,
    ) -> Result<(), ConfigError> {
        let t = self
            .lua
            .create_table()
            .map_err(|e| ConfigError::internal(&e))?;
        self.commit_state(module, &t, data, version)
    }

    /// Plain-data check and conversion of a Lua value (a migrate result).
    pub fn to_plain(&self, v: &Value, what: &str) -> Result<serde_json::Value, String> {
        crate::plain::to_json(v, what, 0)
    }

    /// A fresh Lua copy of plain data.
    pub fn from_plain(&self, j: &serde_json::Value) -> Result<Value, ConfigError> {
        crate::plain::from_json(&self.lua, j).map_err(|e| ConfigError::internal(&e))
    }

    /// Tells the runtime a child was reaped. Returns true if it was one of
    /// Lua's (its status is then kept for `:wait()`).
    pub fn child_exited(&self, pid: u32, status: ExitStatus) -> bool {
        let mut sh = self.shared.borrow_mut();
        match sh.children.get_mut(&pid) {
            Some(slot) => {
                slot.status = Some(status);
                true
            }
            None => false,
        }
    }

    /// What `moonlit.setenv` set, for the services started from now on.
    pub fn service_env(&self) -> std::collections::BTreeMap<String, String> {
        self.shared.borrow().service_env.clone()
    }

    /// Where `moonlit.service_stats` reads from.
    pub fn set_stats_reader(&self, f: StatsFn) {
        self.shared.borrow_mut().stats = Some(f);
    }

    /// Restores `moonlit.setenv`'s variables (after a re-exec).
    pub fn set_service_env(&self, env: std::collections::BTreeMap<String, String>) {
        self.shared.borrow_mut().service_env = env;
    }

    /// Requests Lua made of the init since the last call.
    pub fn take_host_requests(&self) -> Vec<HostRequest> {
        std::mem::take(&mut self.shared.borrow_mut().host)
    }

    /// Memory the Lua state uses, in bytes.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Runs a full garbage collection.
    pub fn collect(&self) {
        self.lua.gc_collect().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::PRELUDE_BYTECODE;

    #[test]
    fn the_precompiled_prelude_is_what_gets_loaded() {
        // If this failed, no runtime could be created (there is no fallback).
        let lua = mlua::Lua::new();
        let f = lua
            .load(PRELUDE_BYTECODE)
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .into_function();
        assert!(f.is_ok(), "bytecode refused: {:?}", f.err());
    }
}
