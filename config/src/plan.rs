//! From what the modules declared to a validated, typed plan.
//!
//! Owns: the service schema (every key, its type, its default), validation
//! of the whole world (duplicates, unknown dependencies, cycles) and the
//! dependency order. Knows nothing of processes or Lua beyond reading the
//! recorded declaration tables.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mlua::{Table, Value};
use serde::Serialize;

pub use crate::cgroup_limits::CgroupLimits;
use crate::error::{ConfigError, ErrorKind};
pub use crate::health_logs::{HealthAction, HealthCheck, HealthProbe, LogRotate};
use crate::runtime::RawDecl;
use crate::spawn::parse_signal;

/// When a stopped process is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// What a reload does to a running service whose process-defining fields
/// changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnChange {
    Restart,
    Reload,
    Defer,
}

/// Restart delays: the first restart is immediate, then `initial`, doubling
/// up to `max`; a run longer than `reset_after` forgets past failures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// More than `count` restarts within `interval` marks the service failed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Burst {
    pub count: u32,
    pub interval: Duration,
}

/// When a started service counts as up for its dependents.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// As soon as it has been started (exec succeeded).
    #[default]
    Started,
    /// When it sends `READY=1` on `$NOTIFY_SOCKET` (the sd_notify protocol).
    Notify,
    /// When a TCP connection to `host:port` succeeds.
    Tcp { host: String, port: u16 },
    /// When this path exists (a socket, a pid file, a flag file).
    Path { path: String },
}

/// One validated service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Where it was declared ("services/web.lua:3"); not part of its identity.
    pub location: String,
    pub description: Option<String>,
    pub exec: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<u32>,
    /// Resource limits (setrlimit), by name without RLIMIT_ ("nofile").
    pub limits: BTreeMap<String, Limit>,
    pub restart: RestartPolicy,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub reload_signal: i32,
    pub after: Vec<String>,
    pub requires: Vec<String>,
    pub oneshot: bool,
    /// Its exit ends the system, with its exit code (container semantics).
    pub main: bool,
    pub enabled: bool,
    pub on_change: OnChange,
    pub backoff: Backoff,
    pub burst: Burst,
    pub log_file: Option<String>,
    /// Bytes of recent output kept in memory for `ctl logs`.
    pub log_buffer: usize,
    /// Echo its output on the console.
    pub console: bool,
    pub readiness: Readiness,
    /// Not ready within this time: killed, and its restart policy applies.
    pub ready_timeout: Duration,
    /// Standard streams and environment inherited from the init (an
    /// entrypoint's main command), no log pipe.
    pub passthrough: bool,
    /// Names (or `PREFIX_*` patterns; `*` for all) taken from PID 1's own
    /// environment.
    pub env_inherit: Vec<String>,
    /// Environment files read at each start (`-PATH`: may be missing).
    pub env_file: Vec<String>,
    /// Privileges and isolation applied between clone and exec.
    pub sandbox: crate::spawn::Isolation,
    /// Rotation of `log_file` (the table form with `max_size`).
    pub log_rotate: Option<LogRotate>,
    /// Each line of `log_file` starts with the time PID 1 read it.
    pub log_timestamps: bool,
    /// Probes after readiness, for the service's whole life.
    pub health: Option<HealthCheck>,
    /// `type = "forking"`: the started process daemonizes and exits 0; the
    /// service is what stays in its cgroup (or the pid in `pid_file`).
    pub forking: bool,
    /// Where a forking daemon writes its main pid.
    pub pid_file: Option<String>,
    /// cgroup v2 limits of the service's cgroup (applied live on reload).
    pub cgroup: CgroupLimits,
    /// Started only when something triggers it (a timer, a first
    /// connection to its socket), not at boot.
    pub on_demand: bool,
    /// What starts it on a schedule (makes it on demand).
    pub timer: Option<crate::timers::TimerSpec>,
    /// Socket activation: sockets bound by moonlit and passed with
    /// systemd's protocol, `lazy`, `accept` (`sockets.rs`).
    pub activation: crate::sockets::Activation,
}

/// One resource limit: `None` keeps what the process inherits; `u64::MAX` is
/// "unlimited" (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Reads a `limits = { nofile = 65536, core = 0, nproc = { soft = 50, hard = 100 },
/// stack = "unlimited" }` table (services and `spawn{}`).
pub fn parse_limits(v: Value) -> Result<BTreeMap<String, Limit>, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "limits must be a table like {{ nofile = 65536 }}, got {}",
            v.type_name()
        ));
    };
    let mut out = BTreeMap::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair.map_err(|e| format!("limits: {e}"))?;
        let name = match k {
            Value::String(s) => s.to_string_lossy().to_ascii_lowercase(),
            other => {
                return Err(format!(
                    "limits: unexpected key of type {}",
                    other.type_name()
                ))
            }
        };
        let name = name.strip_prefix("rlimit_").unwrap_or(&name).to_string();
        if crate::spawn::resource_of(&name).is_none() {
            let known: Vec<&str> = crate::spawn::LIMITS.iter().map(|(n, _)| *n).collect();
            let hint = suggest(&name, &known)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(format!(
                "limits: unknown limit '{}'{hint}; known: {}",
                clip(&name),
                known.join(", ")
            ));
        }
        let one = |what: &str, v: Value| -> Result<u64, String> {
            match v {
                Value::Integer(n) if n >= 0 => Ok(n as u64),
                Value::String(s)
                    if matches!(s.to_string_lossy().as_str(), "unlimited" | "infinity") =>
                {
                    Ok(u64::MAX)
                }
                other => Err(format!(
                    "limits.{name}{what} must be a non-negative integer or \"unlimited\", got {other:?}"
                )),
            }
        };
        let lim = match val {
            Value::Table(st) => {
                let mut l = Limit {
                    soft: None,
                    hard: None,
                };
                for p in st.pairs::<Value, Value>() {
                    let (sk, sv) = p.map_err(|e| format!("limits.{name}: {e}"))?;
                    match sk {
                        Value::String(s) if s.to_string_lossy() == "soft" => {
                            l.soft = Some(one(".soft", sv)?)
                        }
                        Value::String(s) if s.to_string_lossy() == "hard" => {
                            l.hard = Some(one(".hard", sv)?)
                        }
                        other => {
                            return Err(format!(
                                "limits.{name}: unknown key {other:?} (soft, hard)"
                            ))
                        }
                    }
                }
                l
            }
            other => {
                let n = one("", other)?;
                Limit {
                    soft: Some(n),
                    hard: Some(n),
                }
            }
        };
        if let (Some(a), Some(b)) = (lim.soft, lim.hard) {
            if a > b {
                return Err(format!(
                    "limits.{name}: soft limit {a} is above the hard limit {b}"
                ));
            }
        }
        out.insert(name, lim);
    }
    Ok(out)
}

pub(crate) fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}

impl ServiceSpec {
    /// A service with every default: what `service "NAME" {}` declares.
    pub fn new(name: &str, location: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            location: location.to_string(),
            description: None,
            exec: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            group: None,
            umask: None,
            limits: BTreeMap::new(),
            restart: RestartPolicy::Always,
            stop_signal: 15,
            stop_timeout: Duration::from_secs(10),
            reload_signal: 1,
            after: Vec::new(),
            requires: Vec::new(),
            oneshot: false,
            main: false,
            enabled: true,
            on_change: OnChange::Restart,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(30),
                reset_after: Duration::from_secs(10),
            },
            burst: Burst {
                count: 5,
                interval: Duration::from_secs(10),
            },
            log_file: None,
            log_buffer: 64 * 1024,
            console: true,
            readiness: Readiness::Started,
            ready_timeout: default_ready_timeout(),
            passthrough: false,
            env_inherit: Vec::new(),
            env_file: Vec::new(),
            sandbox: Default::default(),
            log_rotate: None,
            log_timestamps: false,
            health: None,
            forking: false,
            pid_file: None,
            cgroup: CgroupLimits::default(),
            on_demand: false,
            timer: None,
            activation: Default::default(),
        }
    }

    /// An entrypoint's command as the `main` service: started after every
    /// other service, never restarted, its end the system's end; it keeps
    /// the init's own standard streams and environment.
    pub fn main_command(argv: Vec<String>, after: Vec<String>) -> ServiceSpec {
        let mut s = ServiceSpec::new("main", "command line");
        s.exec = argv;
        s.after = after;
        s.main = true;
        s.restart = RestartPolicy::Never;
        s.console = false;
        s.passthrough = true;
        s
    }
    /// The fields that define the process: changing one needs a new process.
    pub fn process_differs(&self, other: &ServiceSpec) -> bool {
        self.exec != other.exec
            || self.env != other.env
            || self.cwd != other.cwd
            || self.user != other.user
            || self.group != other.group
            || self.umask != other.umask
            || self.limits != other.limits
            || self.oneshot != other.oneshot
            || self.forking != other.forking
            || self.pid_file != other.pid_file
            || self.activation.sockets != other.activation.sockets
            || self.activation.accept != other.activation.accept
    }

    /// Equal as far as the running system is concerned (location aside).
    pub fn same_as(&self, other: &ServiceSpec) -> bool {
        let mut a = self.clone();
        a.location.clone_from(&other.location);
        &a == other
    }

    /// Every service this one must wait for at start.
    pub fn deps(&self) -> impl Iterator<Item = &String> {
        self.after.iter().chain(self.requires.iter())
    }
}

const SERVICE_KEYS: &[&str] = &[
    "description",
    "exec",
    "env",
    "env_inherit",
    "env_file",
    "capabilities",
    "no_new_privs",
    "namespaces",
    "private_tmp",
    "root",
    "read_only_paths",
    "cwd",
    "user",
    "group",
    "umask",
    "limits",
    "restart",
    "stop_signal",
    "stop_timeout",
    "reload_signal",
    "after",
    "requires",
    "oneshot",
    "type",
    "pid_file",
    "cgroup",
    "timer",
    "main",
    "enabled",
    "on_change",
    "backoff",
    "burst",
    "log_file",
    "log_buffer",
    "console",
    "on_start",
    "on_exit",
    "notify",
    "ready",
    "ready_timeout",
    "health",
    "on_health",
    "sockets",
    "lazy",
    "accept",
    "max_connections",
];

struct Reader<'a> {
    name: &'a str,
    location: &'a str,
    module: &'a str,
}

impl Reader<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(
            ErrorKind::Schema,
            self.module,
            format!("{}: service \"{}\": {msg}", self.location, clip(self.name)),
        )
    }

    /// An error of a key's sub-reader, naming the key when its message
    /// does not already.
    fn key_err(&self, key: &str, msg: String) -> ConfigError {
        if msg.contains(key) {
            self.err(msg)
        } else {
            self.err(format!("{key}: {msg}"))
        }
    }

    fn string(&self, key: &str, v: Value) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => s
                .to_str()
                .map(|s| s.to_string())
                .map_err(|_| self.err(format!("{key} must be valid UTF-8"))),
            other => Err(self.err(format!("{key} must be a string, got {}", other.type_name()))),
        }
    }

    fn boolean(&self, key: &str, v: Value) -> Result<bool, ConfigError> {
        match v {
            Value::Boolean(b) => Ok(b),
            other => Err(self.err(format!(
                "{key} must be true or false, got {}",
                other.type_name()
            ))),
        }
    }

    fn seconds(&self, key: &str, v: Value) -> Result<Duration, ConfigError> {
        let n = match v {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            other => {
                return Err(self.err(format!(
                    "{key} must be a number of seconds, got {}",
                    other.type_name()
                )))
            }
        };
        if !(0.0..=1e9).contains(&n) {
            return Err(self.err(format!("{key} must be between 0 and 1e9 seconds, got {n}")));
        }
        Ok(Duration::from_secs_f64(n))
    }

    fn signal(&self, key: &str, v: Value) -> Result<i32, ConfigError> {
        let s = match v {
            Value::Integer(i) => i.to_string(),
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(self.err(format!(
                    "{key} must be a signal name like \"TERM\", got {}",
                    other.type_name()
                )))
            }
        };
        parse_signal(&s).ok_or_else(|| self.err(format!("{key}: unknown signal '{s}'")))
    }

    fn list(&self, key: &str, v: Value) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::String(_) => Ok(vec![self.string(key, v)?]),
            Value::Table(t) => {
                let mut out = Vec::new();
                let n = t.raw_len();
                for pair in t.pairs::<Value, Value>() {
                    let (k, val) = pair.map_err(|e| self.err(format!("{key}: {e}")))?;
                    match k {
                        Value::Integer(i) if i >= 1 && (i as usize) <= n => {}
                        _ => return Err(self.err(format!("{key} must be a list of strings"))),
                    }
                    let _ = val;
                }
                for i in 1..=n {
                    let val: Value = t
                        .raw_get(i)
                        .map_err(|e| self.err(format!("{key}[{i}]: {e}")))?;
                    match val {
                        // Numbers are fine in an argv ({"--port", 80}).
                        Value::Integer(n) => out.push(n.to_string()),
                        Value::Number(n) => out.push(n.to_string()),
                        v => out.push(self.string(&format!("{key}[{i}]"), v)?),
                    }
                }
                Ok(out)
            }
            other => Err(self.err(format!(
                "{key} must be a list of strings, got {}",
                other.type_name()
            ))),
        }
    }

    fn subtable<F: FnMut(&str, Value) -> Result<(), ConfigError>>(
        &self,
        key: &str,
        v: Value,
        allowed: &[&str],
        mut f: F,
    ) -> Result<(), ConfigError> {
        let Value::Table(t) = v else {
            return Err(self.err(format!("{key} must be a table, got {}", v.type_name())));
        };
        for pair in t.pairs::<Value, Value>() {
            let (k, val) = pair.map_err(|e| self.err(format!("{key}: {e}")))?;
            let k = match k {
                Value::String(s) => s.to_string_lossy(),
                other => {
                    return Err(self.err(format!(
                        "{key}: unexpected key of type {}",
                        other.type_name()
                    )))
                }
            };
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(format!(
                    "{key}: unknown key '{k}' (expected one of: {})",
                    allowed.join(", ")
                )));
            }
            f(&k, val)?;
        }
        Ok(())
    }
}

/// Suggests the closest known key for a misspelled one.
/// moonlit's name for a service setting other inits spell differently
/// (systemd units, s6/runit/dinit habits, docker-compose), compared without
/// case or separators.
fn synonym(key: &str) -> Option<&'static str> {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match k.as_str() {
        "argv" | "args" | "cmd" | "command" | "execstart" | "program" | "run" | "entrypoint" => {
            "exec"
        }
        "environment" | "vars" => "env",
        "workingdirectory" | "workdir" | "dir" | "chdir" | "directory" => "cwd",
        "uid" | "runas" => "user",
        "gid" => "group",
        "depends" | "dependson" | "dependencies" | "wants" | "needs" => "requires",
        "restartpolicy" => "restart",
        "killsignal" | "stopsig" => "stop_signal",
        "timeoutstopsec" | "killtimeout" => "stop_timeout",
        "servicetype" | "kind" => "type",
        "pidfile" => "pid_file",
        "cgroups" | "resources" | "resourcelimits" => "cgroup",
        "oncalendar" | "schedule" | "cron" | "timers" => "timer",
        "logfile" | "standardoutput" | "log" => "log_file",
        "readiness" | "readycheck" => "ready",
        "healthcheck" | "liveness" | "livenessprobe" => "health",
        _ => return None,
    })
}

/// At most 64 characters of a name taken from a module, for a message.
fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()).into(),
        None => s.into(),
    }
}

fn suggest(key: &str, known: &[&str]) -> Option<String> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    // Within distance 2 the lengths differ by at most 2: a long key is
    // never compared (the distance is quadratic in the key's length).
    let len = key.chars().count();
    known
        .iter()
        .filter(|k| k.chars().count().abs_diff(len) <= 2)
        .map(|k| (dist(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.to_string())
}

/// Validates one `service "name" {...}` declaration.
pub fn parse_service(
    name: &str,
    body: &Table,
    location: &str,
    module: &str,
) -> Result<ServiceSpec, ConfigError> {
    let r = Reader {
        name,
        location,
        module,
    };
    let mut spec = ServiceSpec::new(name, location);
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(r.err("names use letters, digits and - _ . @ (at most 64 characters)"));
    }
    let mut restart_given = false;
    for pair in body.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| r.err(e))?;
        let key = match k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => return Err(r.err(format!("unexpected list entry #{i}: settings are key = value (did you mean exec = {{...}}?)"))),
            other => return Err(r.err(format!("unexpected key of type {}", other.type_name()))),
        };
        match key.as_str() {
            "description" => spec.description = Some(r.string(&key, v)?),
            "exec" => {
                spec.exec = r.list(&key, v)?;
                if spec.exec.is_empty() {
                    return Err(r.err("exec must not be empty"));
                }
            }
            // Read below, with per-variable errors.
            "env" => {}
            "cwd" => spec.cwd = Some(r.string(&key, v)?),
            "user" => spec.user = Some(r.string(&key, v)?),
            "group" => spec.group = Some(r.string(&key, v)?),
            "umask" => {
                spec.umask = Some(match v {
                    Value::Integer(i) if (0..=0o777).contains(&i) => i as u32,
                    Value::String(s) => u32::from_str_radix(&s.to_string_lossy(), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| {
                            r.err(format!(
                                "umask must be an octal string like \"022\", got {:?}",
                                s.to_string_lossy()
                            ))
                        })?,
                    other => {
                        return Err(r.err(format!(
                            "umask must be an octal string, got {}",
                            other.type_name()
                        )))
                    }
                })
            }
            "limits" => spec.limits = parse_limits(v).map_err(|m| r.key_err(&key, m))?,
            "restart" => {
                restart_given = true;
                spec.restart = match r.string(&key, v)?.as_str() {
                    "always" => RestartPolicy::Always,
                    "on-failure" => RestartPolicy::OnFailure,
                    "never" => RestartPolicy::Never,
                    other => {
                        return Err(r.err(format!(
                        "restart must be \"always\", \"on-failure\" or \"never\", got \"{other}\""
                    )))
                    }
                }
            }
            "stop_signal" => spec.stop_signal = r.signal(&key, v)?,
            "reload_signal" => spec.reload_signal = r.signal(&key, v)?,
            "stop_timeout" => spec.stop_timeout = r.seconds(&key, v)?,
            "after" => spec.after = r.list(&key, v)?,
            "requires" => spec.requires = r.list(&key, v)?,
            "oneshot" => spec.oneshot = r.boolean(&key, v)?,
            "type" => match r.string(&key, v)?.as_str() {
                "simple" => {}
                "oneshot" => spec.oneshot = true,
                "forking" => spec.forking = true,
                "notify" => spec.readiness = Readiness::Notify,
                other => {
                    return Err(r.err(format!(
                        "type must be \"simple\", \"forking\", \"oneshot\" or \"notify\", got \"{other}\""
                    )))
                }
            },
            "pid_file" => {
                let p = r.string(&key, v)?;
                if !p.starts_with('/') {
                    return Err(r.err(format!("pid_file must be an absolute path, got \"{p}\"")));
                }
                spec.pid_file = Some(p);
            }
            "cgroup" => {
                spec.cgroup = crate::cgroup_limits::parse_cgroup(v).map_err(|m| r.key_err(&key, m))?
            }
            "timer" => {
                spec.timer = Some(crate::timers::parse_timer(v).map_err(|m| r.key_err(&key, m))?);
                spec.on_demand = true;
            }
            "main" => spec.main = r.boolean(&key, v)?,
            "enabled" => spec.enabled = r.boolean(&key, v)?,
            "on_change" => {
                spec.on_change = match r.string(&key, v)?.as_str() {
                    "restart" => OnChange::Restart,
                    "reload" => OnChange::Reload,
                    "defer" => OnChange::Defer,
                    other => {
                        return Err(r.err(format!(
                        "on_change must be \"restart\", \"reload\" or \"defer\", got \"{other}\""
                    )))
                    }
                }
            }
            "backoff" => {
                let mut b = spec.backoff;
                r.subtable(&key, v, &["initial", "max", "reset_after"], |k, v| {
                    let d = r.seconds(&format!("backoff.{k}"), v)?;
                    match k {
                        "initial" => b.initial = d,
                        "max" => b.max = d,
                        _ => b.reset_after = d,
                    }
                    Ok(())
                })?;
                spec.backoff = b;
            }
            "burst" => {
                let mut b = spec.burst;
                r.subtable(&key, v, &["count", "interval"], |k, v| {
                    if k == "count" {
                        b.count = match v {
                            Value::Integer(i) if (1..=1_000_000).contains(&i) => i as u32,
                            other => {
                                return Err(r.err(format!(
                                    "burst.count must be a whole number >= 1, got {other:?}"
                                )))
                            }
                        };
                    } else {
                        b.interval = r.seconds("burst.interval", v)?;
                    }
                    Ok(())
                })?;
                spec.burst = b;
            }
            "env_inherit" => {
                spec.env_inherit = match v {
                    Value::Boolean(true) => vec!["*".into()],
                    Value::Boolean(false) => Vec::new(),
                    other => r.list(&key, other)?,
                };
                for n in &spec.env_inherit {
                    let name = n.strip_suffix('*').unwrap_or(n);
                    if name.contains('*')
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(r.err(format!(
                            "env_inherit: '{n}' is not a variable name or a PREFIX_* pattern"
                        )));
                    }
                }
            }
            "env_file" => {
                spec.env_file = r.list(&key, v)?;
                for f in &spec.env_file {
                    if !f.trim_start_matches('-').starts_with('/') {
                        return Err(r.err(format!(
                            "env_file must be an absolute path (\"-/path\" if it may be missing), got \"{f}\""
                        )));
                    }
                }
            }
            "capabilities" => {
                let caps = r.list(&key, v)?;
                let mut bits = 0u64;
                for c in &caps {
                    bits |= crate::spawn::capability_bit(c).map_err(|m| r.key_err(&key, m))?;
                }
                spec.sandbox.capabilities = Some(bits);
            }
            "no_new_privs" => spec.sandbox.no_new_privs = r.boolean(&key, v)?,
            "namespaces" => {
                for n in r.list(&key, v)? {
                    let ns = crate::spawn::Namespace::parse(&n).map_err(|m| r.key_err(&key, m))?;
                    if !spec.sandbox.namespaces.contains(&ns) {
                        spec.sandbox.namespaces.push(ns);
                    }
                }
            }
            "private_tmp" => spec.sandbox.private_tmp = r.boolean(&key, v)?,
            "root" => {
                let d = r.string(&key, v)?;
                if !d.starts_with('/') {
                    return Err(r.err(format!("root must be an absolute path, got \"{d}\"")));
                }
                spec.sandbox.root = Some(d);
            }
            "read_only_paths" => {
                spec.sandbox.read_only_paths = r.list(&key, v)?;
                for p in &spec.sandbox.read_only_paths {
                    if !p.starts_with('/') {
                        return Err(r.err(format!(
                            "read_only_paths entries must be absolute paths, got \"{p}\""
                        )));
                    }
                }
            }
            "log_file" => {
                let (path, rotate, stamps) =
                    crate::health_logs::parse_log_file(v).map_err(|m| r.key_err(&key, m))?;
                spec.log_file = Some(path);
                spec.log_rotate = rotate;
                spec.log_timestamps = stamps;
            }
            "health" => {
                spec.health = Some(crate::health_logs::parse_health(v).map_err(|m| r.key_err(&key, m))?)
            }
            "console" => spec.console = r.boolean(&key, v)?,
            "notify" => {
                if r.boolean(&key, v)? {
                    spec.readiness = Readiness::Notify;
                }
            }
            "ready" => {
                let mut host = None;
                let mut port = None;
                let mut path = None;
                r.subtable(&key, v, &["tcp", "host", "path"], |k, v| {
                    if k == "tcp" {
                        port = match v {
                            Value::Integer(p) if (1..=65535).contains(&p) => Some(p as u16),
                            other => {
                                return Err(r.err(format!(
                                    "ready.tcp must be a port number, got {other:?}"
                                )))
                            }
                        };
                    } else if k == "path" {
                        let p = r.string("ready.path", v)?;
                        if !p.starts_with('/') {
                            return Err(
                                r.err(format!("ready.path must be an absolute path, got \"{p}\""))
                            );
                        }
                        path = Some(p);
                    } else {
                        // An address, not a name: PID 1 never waits on DNS.
                        let h = r.string("ready.host", v)?;
                        if h.parse::<std::net::IpAddr>().is_err() {
                            return Err(
                                r.err(format!("ready.host must be an IP address, got \"{h}\""))
                            );
                        }
                        host = Some(h);
                    }
                    Ok(())
                })?;
                spec.readiness = match (port, path) {
                    (Some(port), None) => Readiness::Tcp {
                        host: host.unwrap_or_else(|| "127.0.0.1".into()),
                        port,
                    },
                    (None, Some(path)) if host.is_none() => Readiness::Path { path },
                    (None, Some(_)) => return Err(r.err("ready.host goes with tcp, not path")),
                    (Some(_), Some(_)) => {
                        return Err(r.err("ready takes tcp = PORT or path = FILE, not both"))
                    }
                    (None, None) => {
                        return Err(r.err(
                            "ready needs tcp = PORT or path = FILE (e.g. ready = { tcp = 80 })",
                        ))
                    }
                };
            }
            "ready_timeout" => spec.ready_timeout = r.seconds(&key, v)?,
            "sockets" => {
                spec.activation.sockets =
                    crate::sockets::parse_sockets(v, name).map_err(|m| r.key_err(&key, m))?
            }
            "lazy" => spec.activation.lazy = r.boolean(&key, v)?,
            "accept" => spec.activation.accept = r.boolean(&key, v)?,
            "max_connections" => {
                spec.activation.max_connections =
                    crate::sockets::parse_max_connections(v).map_err(|m| r.key_err(&key, m))?
            }
            // Callbacks stay Lua functions; the init takes them from the
            // declaration (they are not part of the spec's identity).
            "on_start" | "on_exit" | "on_health" => {
                if !matches!(v, Value::Function(_)) {
                    return Err(r.err(format!("{key} must be a function, got {}", v.type_name())));
                }
            }
            "log_buffer" => {
                spec.log_buffer = match v {
                    Value::Integer(i) if (0..=(64 << 20)).contains(&i) => i as usize,
                    other => {
                        return Err(r.err(format!(
                            "log_buffer must be a byte count from 0 to 64 MiB, got {other:?}"
                        )))
                    }
                }
            }
            other => {
                let hint = synonym(other)
                    .map(str::to_string)
                    .or_else(|| suggest(other, SERVICE_KEYS))
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                return Err(r.err(format!("unknown key '{}'{hint}", clip(other))));
            }
        }
    }
    spec.on_demand |= crate::sockets::check(&spec.activation).map_err(|m| r.err(m))?;
    // env needs string values; read it separately for precise errors.
    if let Ok(Value::Table(env)) = body.get::<Value>("env") {
        for pair in env.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| r.err(e))?;
            let k = match k {
                Value::String(s) => s.to_string_lossy(),
                other => {
                    return Err(r.err(format!(
                        "env: names must be strings, got {}",
                        other.type_name()
                    )))
                }
            };
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(r.err(format!("env: bad variable name '{k}'")));
            }
            let v = match v {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(r.err(format!(
                        "env.{k} must be a string, got {}",
                        other.type_name()
                    )))
                }
            };
            spec.env.insert(k, v);
        }
    } else if let Ok(v) = body.get::<Value>("env") {
        if !v.is_nil() {
            return Err(r.err(format!("env must be a table, got {}", v.type_name())));
        }
    }
    let type_notify = matches!(body.get::<Value>("type"), Ok(Value::String(t)) if t.to_str().is_ok_and(|t| t == "notify"));
    if (body.contains_key("notify").unwrap_or(false) || type_notify)
        && body.contains_key("ready").unwrap_or(false)
    {
        return Err(r.err("give either notify = true or ready = { ... }, not both"));
    }
    if spec.exec.is_empty() {
        return Err(r.err("exec is required: the program and its arguments, e.g. exec = { \"/bin/daemon\", \"-f\" }"));
    }
    if spec.forking && spec.oneshot {
        return Err(r.err("a service is either type = \"forking\" or a oneshot, not both"));
    }
    if spec.pid_file.is_some() && !spec.forking {
        return Err(r.err("pid_file goes with type = \"forking\""));
    }
    if spec.oneshot && spec.health.is_some() {
        return Err(r.err("health checks are for long-running services, not a oneshot"));
    }
    if spec.oneshot && !restart_given {
        spec.restart = RestartPolicy::Never;
    }
    if spec.backoff.max < spec.backoff.initial {
        return Err(r.err("backoff.max must be at least backoff.initial"));
    }
    Ok(spec)
}

/// The validated world.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub services: BTreeMap<String, ServiceSpec>,
    /// Module each service came from.
    pub module_of: BTreeMap<String, String>,
}

impl Plan {
    /// Services in an order where every dependency comes first.
    pub fn start_order(&self) -> Vec<String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(p: &Plan, n: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
            if !seen.insert(n.to_string()) {
                return;
            }
            if let Some(s) = p.services.get(n) {
                for d in s.deps() {
                    visit(p, d, seen, order);
                }
                order.push(n.to_string());
            }
        }
        for n in self.services.keys() {
            visit(self, n, &mut seen, &mut order);
        }
        order
    }
}

/// What one module declared, or why it could not be evaluated.
pub struct ModuleResult {
    pub module: String,
    pub decls: Result<Vec<RawDecl>, ConfigError>,
}

/// Builds the plan. In `strict` mode (a reload) any error rejects the whole
/// world; otherwise (boot) bad modules and services are left out, their
/// dependents too, and every error is returned alongside what remains.
pub fn build(modules: &[ModuleResult]) -> (Plan, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut plan = Plan::default();
    for m in modules {
        let decls = match &m.decls {
            Ok(d) => d,
            Err(e) => {
                errors.push(e.clone());
                continue;
            }
        };
        for d in decls {
            if d.kind != "service" {
                continue;
            }
            let name = d.name.clone().unwrap_or_default();
            match parse_service(&name, &d.body, &d.location, &m.module) {
                Ok(spec) => {
                    if let Some(prev) = plan.services.get(&name) {
                        errors.push(ConfigError::new(
                            ErrorKind::Duplicate,
                            &m.module,
                            format!(
                                "{}: service \"{name}\" is already declared at {}",
                                d.location, prev.location
                            ),
                        ));
                        continue;
                    }
                    plan.module_of.insert(name.clone(), m.module.clone());
                    plan.services.insert(name, spec);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    // Unknown dependencies: drop the dependent (and, transitively, its own);
    // then cycles, whose dependents are dropped in turn, until neither is left.
    let mut left_out: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut bad = Vec::new();
        for s in plan.services.values() {
            for d in s.deps() {
                if !plan.services.contains_key(d) {
                    let how = if s.requires.contains(d) {
                        "requires"
                    } else {
                        "is ordered after"
                    };
                    let what = if left_out.contains(d) {
                        format!("service \"{d}\", which is left out (see its error)")
                    } else {
                        format!("unknown service \"{d}\"")
                    };
                    bad.push((
                        s.name.clone(),
                        ConfigError::new(
                            ErrorKind::Dependency,
                            plan.module_of.get(&s.name).cloned().unwrap_or_default(),
                            format!("{}: service \"{}\" {how} {what}", s.location, s.name),
                        ),
                    ));
                    break;
                }
            }
        }
        if !bad.is_empty() {
            for (n, e) in bad {
                plan.services.remove(&n);
                plan.module_of.remove(&n);
                left_out.insert(n);
                errors.push(e);
            }
            continue;
        }
        let Some(cycle) = find_cycle(&plan) else {
            break;
        };
        let first = &plan.services[&cycle[0]];
        errors.push(ConfigError::new(
            ErrorKind::Cycle,
            plan.module_of.get(&cycle[0]).cloned().unwrap_or_default(),
            format!(
                "{}: dependency cycle: {} -> {}",
                first.location,
                cycle.join(" -> "),
                cycle[0]
            ),
        ));
        for n in cycle {
            plan.services.remove(&n);
            plan.module_of.remove(&n);
            left_out.insert(n);
        }
    }
    (plan, errors)
}

fn find_cycle(plan: &Plan) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = plan
        .services
        .keys()
        .map(|k| (k.as_str(), Mark::New))
        .collect();
    fn dfs<'a>(
        p: &'a Plan,
        n: &'a str,
        mark: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Active);
        stack.push(n);
        if let Some(s) = p.services.get(n) {
            for d in s.deps() {
                match mark.get(d.as_str()).copied() {
                    Some(Mark::Active) => {
                        let start = stack.iter().position(|x| *x == d.as_str()).unwrap_or(0);
                        return Some(stack[start..].iter().map(|s| s.to_string()).collect());
                    }
                    Some(Mark::New) => {
                        if let Some(c) = dfs(p, d, mark, stack) {
                            return Some(c);
                        }
                    }
                    _ => {}
                }
            }
        }
        stack.pop();
        mark.insert(n, Mark::Done);
        None
    }
    let names: Vec<&str> = plan.services.keys().map(String::as_str).collect();
    for n in names {
        if mark[n] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = dfs(plan, n, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}
