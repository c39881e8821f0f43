//! Fuzzing the declarations: generated and mutated service and network
//! modules, evaluated the way PID 1 evaluates a configuration
//! (`Runtime::eval_module` per file, `plan::build` over all of them, the
//! `network.*` declarations through `NetworkSpec::from_decls`), in one
//! long-lived runtime as PID 1 keeps one. Wrong types for every key, huge
//! numbers and strings, NaN/inf, negative values, deep nesting,
//! self-referencing tables, metatables whose `__index` raises, dependency
//! cycles. Each case must give a plan or typed errors that name the file
//! (and the key, when one key was made wrong), never a panic or an
//! internal error, and end within a bound.
//!
//! Short pass by default (2,000 configurations). Long pass:
//! `MOONLIT_FUZZ_SCALE=50 cargo test -p moonlit-config --test fuzz_decls --release -- --nocapture`
//! (10^5 configurations). `MOONLIT_FUZZ_SEED=N` replays a run.

use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moonlit_config::plan::{self, ModuleResult};
use moonlit_config::runtime::{BootInfo, Limits, Runtime};
use moonlit_config::{ConfigError, ErrorKind};

const BASE_CASES: u64 = 2_000;
/// No single configuration may take longer (a hang otherwise).
const CASE_BOUND: Duration = Duration::from_secs(60);
/// Longest error message accepted.
const MAX_MESSAGE: usize = moonlit_config::error::MAX_MESSAGE;

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

const NET_KINDS: &[&str] = &[
    "interface",
    "veth",
    "bridge",
    "vlan",
    "macvlan",
    "dummy",
    "bond",
    "dns",
];

const NET_KEYS: &[&str] = &[
    "up",
    "mtu",
    "mac",
    "master",
    "addresses",
    "routes",
    "dhcp",
    "ipv6",
    "peer",
    "link",
    "id",
    "mode",
    "servers",
    "search",
    "hostname",
    "client_id",
    "use_dns",
    "accept_ra",
];

/// Keys of nested tables, so that wrong values reach the inner readers too.
const INNER_KEYS: &[&str] = &[
    "initial",
    "max",
    "reset_after",
    "count",
    "interval",
    "tcp",
    "host",
    "path",
    "soft",
    "hard",
    "nofile",
    "stack",
    "core",
    "nproc",
    "memory_max",
    "cpu_max",
    "pids_max",
    "calendar",
    "every",
    "on_boot",
    "persistent",
    "listen",
    "backlog",
    "exec",
    "timeout",
    "retries",
    "to",
    "via",
    "metric",
    "table",
    "scope",
    "family",
    "file",
    "max_size",
    "keep",
];

/// A valid value for a key (so that a case with one wrong key isolates it).
fn good_value(key: &str) -> &'static str {
    match key {
        "exec" => r#"{ "/bin/true" }"#,
        "description" | "cwd" | "root" => r#""/""#,
        "user" | "group" => r#""0""#,
        "umask" => r#""022""#,
        "env" => r#"{ A = "1" }"#,
        "restart" => r#""on-failure""#,
        "stop_signal" | "reload_signal" => r#""TERM""#,
        "stop_timeout" | "ready_timeout" => "5",
        "backoff" => "{ initial = 1, max = 2 }",
        "burst" => "{ count = 3, interval = 10 }",
        "limits" => "{ nofile = 1024 }",
        "log_buffer" => "1024",
        "on_change" => r#""restart""#,
        "type" => r#""simple""#,
        "mtu" => "1500",
        "addresses" => r#"{ "10.0.0.1/24" }"#,
        "peer" => r#""p0""#,
        _ => "true",
    }
}

struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.usize(0..xs.len())]
    }

    fn lua_string(&mut self, max: usize) -> String {
        let n = self.rng.usize(0..=max);
        let mut s = String::from("\"");
        for _ in 0..n {
            match self.rng.u8(0..8) {
                0 => s.push_str(&format!("\\x{:02x}", self.rng.u8(..))),
                1 => s.push_str(
                    ["\\n", "\\0", "\\\"", "\\\\", "/", ":", "*", " "][self.rng.usize(0..8)],
                ),
                _ => s.push(self.rng.alphanumeric()),
            }
        }
        s.push('"');
        s
    }

    fn number(&mut self) -> String {
        match self.rng.u8(0..14) {
            0 => "0/0".into(),
            1 => "1/0".into(),
            2 => "-1/0".into(),
            3 => "math.maxinteger".into(),
            4 => "math.mininteger".into(),
            5 => "-1".into(),
            6 => "1e308".into(),
            7 => "2^63".into(),
            8 => "-0.0".into(),
            9 => "0.5".into(),
            10 => format!("{}", self.rng.i64(..)),
            11 => format!("{:e}", self.rng.f64() * 1e30),
            12 => "0".into(),
            _ => format!("{}", self.rng.i64(-100..100_000)),
        }
    }

    /// A Lua expression of any type, nested up to `depth`.
    fn value(&mut self, depth: u32) -> String {
        let k = if depth == 0 {
            self.rng.u8(0..7)
        } else {
            self.rng.u8(0..14)
        };
        match k {
            0 | 1 => self.number(),
            2 | 3 => self.lua_string(20),
            4 => ["true", "false", "nil"][self.rng.usize(0..3)].into(),
            5 => ["function() end", "print", "error", "coroutine.create(function() end)"]
                [self.rng.usize(0..4)]
            .into(),
            6 => format!("string.rep({}, {})", self.lua_string(3), self.rng.usize(0..200_000)),
            7..=9 => {
                // A list or a table with keys, of anything.
                let n = self.rng.usize(0..5);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        if self.rng.bool() {
                            self.value(depth - 1)
                        } else {
                            let key = if self.rng.bool() {
                                self.pick(INNER_KEYS).to_string()
                            } else {
                                format!("[{}]", self.value(0))
                            };
                            format!("{key} = {}", self.value(depth - 1))
                        }
                    })
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
            10 => format!(
                "(function() local t = {{}} for i = 1, {} do t = {{ t }} end return t end)()",
                self.rng.usize(1..5_000)
            ),
            11 => "(function() local t = {} t[1] = t t.self = t t.exec = t return t end)()".into(),
            12 => format!(
                "setmetatable({{ {} }}, {{ __index = function(_, k) error(\"index \" .. tostring(k)) end, \
                 __len = function() error(\"len\") end, __tostring = function() error(\"tostring\") end }})",
                self.value(0)
            ),
            _ => format!("{{ {} }}", self.lua_string(8)),
        }
    }

    fn service_name(&mut self, names: &[String]) -> String {
        match self.rng.u8(0..12) {
            0 => self.lua_string(10),
            1 => format!("\"{}\"", "n".repeat(self.rng.usize(60..70))),
            2 => self.value(1),
            _ => format!("\"{}\"", names[self.rng.usize(0..names.len())]),
        }
    }

    /// A service body: some keys good, some of a wrong type, some unknown;
    /// dependencies among `names` (cycles and self-references included).
    fn service_body(&mut self, names: &[String]) -> String {
        let mut items = vec![format!("exec = {}", good_value("exec"))];
        for _ in 0..self.rng.usize(0..6) {
            let key = self.pick(SERVICE_KEYS);
            let v = match self.rng.u8(0..4) {
                0 => good_value(key).to_string(),
                _ => self.value(3),
            };
            items.push(format!("{key} = {v}"));
        }
        for dep in ["after", "requires"] {
            if self.rng.u8(0..3) == 0 {
                let n = self.rng.usize(0..4);
                let deps: Vec<String> = (0..n)
                    .map(|_| format!("\"{}\"", names[self.rng.usize(0..names.len())]))
                    .collect();
                items.push(format!("{dep} = {{ {} }}", deps.join(", ")));
            }
        }
        if self.rng.u8(0..10) == 0 {
            items.push(format!("{} = {}", self.lua_string(6), self.value(1)));
        }
        if self.rng.u8(0..12) == 0 {
            items.push(format!("[{}] = 1", self.value(0)));
        }
        self.rng.shuffle(&mut items);
        format!("{{ {} }}", items.join(", "))
    }

    fn network_decl(&mut self) -> String {
        let kind = self.pick(NET_KINDS);
        let n = self.rng.usize(0..5);
        let items: Vec<String> = (0..n)
            .map(|_| format!("{} = {}", self.pick(NET_KEYS), self.value(2)))
            .collect();
        let body = format!("{{ {} }}", items.join(", "));
        if kind == "dns" && self.rng.u8(0..4) != 0 {
            format!("network.dns {body}")
        } else {
            let name = match self.rng.u8(0..6) {
                0 => self.value(1),
                1 => format!("\"{}\"", "i".repeat(self.rng.usize(10..20))),
                _ => format!(
                    "\"{}\"",
                    self.pick(&["eth0", "v0", "v1", "br0", "lo", "d0"])
                ),
            };
            format!("network.{kind}({name})({body})")
        }
    }

    /// One module's source: service and network declarations, now and then
    /// a statement that must be refused (blocking, an error, a runaway).
    fn module(&mut self, names: &[String]) -> String {
        let mut out = String::new();
        for _ in 0..self.rng.usize(1..4) {
            if self.rng.u8(0..4) == 0 {
                out.push_str(&self.network_decl());
            } else {
                let name = self.service_name(names);
                let body = if self.rng.u8(0..15) == 0 {
                    self.value(2)
                } else {
                    self.service_body(names)
                };
                out.push_str(&format!("service({name})({body})"));
            }
            out.push('\n');
        }
        match self.rng.u16(0..200) {
            0 => out.push_str("sleep(1)\n"),
            1 => out.push_str("error('module boom')\n"),
            2 => out.push_str(
                "error(setmetatable({}, { __tostring = function() error('inner') end }))\n",
            ),
            3 => out.push_str("local s = string.rep('x', 1 << 40)\n"),
            4 => out.push_str("network.interface = 1\n"),
            5 => out.push_str("coroutine.yield()\n"),
            _ => {}
        }
        out
    }

    fn mutate(&mut self, src: &str) -> String {
        let mut b = src.as_bytes().to_vec();
        match self.rng.u8(0..3) {
            // Replace the value after an `=` with a generated one.
            0 | 1 => {
                let eqs: Vec<usize> = b
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == b'=')
                    .map(|(i, _)| i)
                    .collect();
                for _ in 0..self.rng.usize(1..4) {
                    if eqs.is_empty() {
                        break;
                    }
                    let s = String::from_utf8_lossy(&b).into_owned();
                    let at = eqs[self.rng.usize(0..eqs.len())].min(s.len() - 1);
                    if !s.is_char_boundary(at + 1) {
                        continue;
                    }
                    let rest = &s[at + 1..];
                    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
                    let v = self.value(3);
                    b = format!("{} {v}{}", &s[..at + 1], &rest[end..]).into_bytes();
                    break;
                }
            }
            _ => {
                for _ in 0..self.rng.usize(1..5) {
                    if b.is_empty() {
                        break;
                    }
                    let i = self.rng.usize(0..b.len());
                    match self.rng.u8(0..4) {
                        0 => b[i] = self.rng.u8(..),
                        1 => {
                            b.remove(i);
                        }
                        2 => b.truncate(i),
                        _ => b.insert(i, [b'{', b'}', b'"', b',', b'='][self.rng.usize(0..5)]),
                    }
                }
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }
}

fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fuzz_decls");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| {
            let p = e.path();
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("corpus file"),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "corpus too small");
    out
}

/// What evaluating one configuration gave.
struct Outcome {
    services: Vec<String>,
    errors: Vec<ConfigError>,
    net_error: Option<String>,
    net_links: usize,
}

fn runtime() -> Runtime {
    let info = BootInfo {
        mode: "test".into(),
        config_dir: "/nonexistent".into(),
        ..Default::default()
    };
    Runtime::new(Limits::default(), &info, Rc::new(|_: &str| {}), &[]).expect("runtime")
}

/// Evaluates the modules as PID 1 does and checks the plan's invariants.
fn evaluate(rt: &Runtime, modules: &[(String, String)]) -> Result<Outcome, String> {
    let mut results = Vec::new();
    let mut net = Vec::new();
    for (name, src) in modules {
        let r = rt.eval_module(name, src.as_bytes());
        if let Ok(ev) = &r {
            for d in &ev.decls {
                if let Some(kind) = d.kind.strip_prefix("network.") {
                    net.push(moonlit_net::Decl {
                        kind: kind.to_string(),
                        name: d.name.clone(),
                        body: d.body.clone(),
                        location: d.location.clone(),
                    });
                }
            }
        }
        results.push(ModuleResult {
            module: name.clone(),
            decls: r.map(|e| e.decls),
        });
    }
    let (plan, errors) = plan::build(&results);
    // The plan's own invariants: every dependency is in it, and the start
    // order holds every service once with its dependencies before it.
    let order = plan.start_order();
    let mut seen = BTreeSet::new();
    for n in &order {
        let s = plan
            .services
            .get(n)
            .ok_or(format!("{n} in the order, not in the plan"))?;
        for d in s.deps() {
            if !seen.contains(d) {
                return Err(format!(
                    "{n} starts before its dependency {d} (cycle or unknown left in)"
                ));
            }
        }
        if !seen.insert(n.clone()) {
            return Err(format!("{n} twice in the start order"));
        }
    }
    if seen.len() != plan.services.len() {
        return Err(format!("start order {order:?} misses services of the plan"));
    }
    let (net_error, net_links) = match moonlit_net::NetworkSpec::from_decls(&net) {
        Ok(spec) => (None, spec.created_links().len()),
        // As the init turns it into a configuration error (init/src/init/network.rs).
        Err(e) => (
            Some(
                ConfigError::new(
                    ErrorKind::Schema,
                    e.location.split(':').next().unwrap_or(""),
                    e.to_string(),
                )
                .message,
            ),
            0,
        ),
    };
    Ok(Outcome {
        services: plan.services.keys().cloned().collect(),
        errors,
        net_error,
        net_links,
    })
}

/// Every error is typed, not internal, and names the file it is about.
fn check_errors(o: &Outcome, modules: &[(String, String)]) -> Result<(), String> {
    for e in &o.errors {
        if e.kind == ErrorKind::Internal {
            return Err(format!("internal error: {}", e.message));
        }
        if e.message.trim().is_empty() {
            return Err(format!("an error without a message: {e:?}"));
        }
        if !modules.iter().any(|(m, _)| e.message.contains(m.as_str())) {
            return Err(format!("error names no file: {:?}", e.message));
        }
        // A message is for a console line: what the module gave is clipped.
        if e.message.len() > MAX_MESSAGE {
            return Err(format!(
                "an error of {} bytes: {:?}...",
                e.message.len(),
                &e.message[..e.message.floor_char_boundary(300)]
            ));
        }
    }
    if let Some(ne) = &o.net_error {
        if !modules.iter().any(|(m, _)| ne.contains(m.as_str())) {
            return Err(format!("network error names no file: {ne:?}"));
        }
        if ne.len() > MAX_MESSAGE {
            return Err(format!(
                "a network error of {} bytes: {:?}...",
                ne.len(),
                &ne[..ne.floor_char_boundary(300)]
            ));
        }
    }
    Ok(())
}

enum Job {
    /// Modules, and (module, key) when exactly one key was made wrong.
    Case(Vec<(String, String)>, Option<(String, String)>),
    Stop,
}

/// Runs the cases in a thread of their own (the runtime lives there), so a
/// case that hangs is seen as such by the bound on its answer.
fn worker(rx: mpsc::Receiver<Job>, tx: mpsc::Sender<Result<(usize, usize, bool), String>>) {
    let mut rt = runtime();
    while let Ok(Job::Case(modules, one_key)) = rx.recv() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluate(&rt, &modules)));
        let r = match r {
            Ok(Ok(o)) => check_errors(&o, &modules).and_then(|_| {
                if let Some((m, key)) = &one_key {
                    for e in o
                        .errors
                        .iter()
                        .filter(|e| &e.module == m && e.kind == ErrorKind::Schema)
                    {
                        if !e.message.contains(key.as_str()) {
                            return Err(format!(
                                "the only wrong key is '{key}', the error does not name it: {:?}",
                                e.message
                            ));
                        }
                    }
                }
                Ok((
                    o.services.len(),
                    o.errors.len(),
                    o.net_error.is_some() || o.net_links > 0,
                ))
            }),
            Ok(Err(e)) => Err(format!("plan invariant: {e}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                rt = runtime();
                Err(format!("panic: {msg}"))
            }
        };
        let failed = r.is_err();
        if tx.send(r).is_err() || failed {
            break;
        }
    }
    // What PID 1 keeps across evaluations must not pile up.
    rt.collect();
    let used = rt.used_memory();
    let _ = tx.send(if used < 32 << 20 {
        Ok((0, used, false))
    } else {
        Err(format!("the runtime holds {used} bytes after the pass"))
    });
}

fn show(modules: &[(String, String)]) -> String {
    modules
        .iter()
        .map(|(n, s)| {
            let s = if s.len() > 2000 {
                &s[..s.floor_char_boundary(2000)]
            } else {
                s
            };
            format!("--- {n}\n{s}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn declarations_give_a_plan_or_errors_naming_the_file() {
    let seed = seed();
    let scale = env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1);
    let cases = BASE_CASES * scale;
    eprintln!(
        "fuzz_decls: MOONLIT_FUZZ_SEED={seed} MOONLIT_FUZZ_SCALE={scale} ({cases} configurations)"
    );
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
    };
    let (jtx, jrx) = mpsc::channel();
    let (rtx, rrx) = mpsc::channel();
    let th = std::thread::spawn(move || worker(jrx, rtx));
    let corpus = corpus();
    let names: Vec<String> = ["a", "b", "c", "db", "web", "x-1", "svc@2", "main"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t0 = Instant::now();
    let (mut ok_plans, mut with_errors, mut services, mut net_cases, mut slowest) =
        (0u64, 0u64, 0u64, 0u64, Duration::ZERO);
    let mut slowest_case = String::new();
    let total = corpus.len() as u64 + cases;
    for i in 0..total {
        let (modules, one_key) = if (i as usize) < corpus.len() {
            let (n, s) = &corpus[i as usize];
            (vec![(format!("services/{n}"), s.clone())], None)
        } else {
            match g.rng.u8(0..10) {
                // One key of one valid service made wrong.
                0 | 1 => {
                    let key = g.pick(SERVICE_KEYS).to_string();
                    let v = g.value(3);
                    let src = format!(
                        "service \"one\" {{ exec = {{ \"/bin/true\" }}, {} = {v} }}\n",
                        if key == "exec" {
                            "description"
                        } else {
                            key.as_str()
                        }
                    );
                    let key = if key == "exec" {
                        "description".into()
                    } else {
                        key
                    };
                    let m = "services/one.lua".to_string();
                    (vec![(m.clone(), src)], Some((m, key)))
                }
                // A mutated corpus module beside a generated one.
                2..=4 => {
                    let (n, s) = &corpus[g.rng.usize(0..corpus.len())];
                    let mutated = g.mutate(s);
                    (
                        vec![
                            (format!("services/{n}"), mutated),
                            ("services/gen.lua".into(), g.module(&names)),
                        ],
                        None,
                    )
                }
                _ => {
                    let n = g.rng.usize(1..5);
                    let mut ms: Vec<(String, String)> = (0..n)
                        .map(|k| (format!("services/m{k}.lua"), g.module(&names)))
                        .collect();
                    if g.rng.bool() {
                        ms.push(("network.lua".into(), g.network_decl()));
                    }
                    (ms, None)
                }
            }
        };
        let t = Instant::now();
        jtx.send(Job::Case(modules.clone(), one_key.clone()))
            .expect("worker alive");
        let r = rrx.recv_timeout(CASE_BOUND).unwrap_or_else(|_| {
            panic!(
                "case {i} (seed {seed}) did not end within {CASE_BOUND:?}:\n{}",
                show(&modules)
            )
        });
        if t.elapsed() > slowest {
            slowest = t.elapsed();
            slowest_case = show(&modules);
        }
        match r {
            Ok((s, e, net)) => {
                services += s as u64;
                if e == 0 {
                    ok_plans += 1;
                } else {
                    with_errors += 1;
                }
                net_cases += u64::from(net);
            }
            Err(e) => panic!("case {i} (seed {seed}): {e}\n{}", show(&modules)),
        }
    }
    jtx.send(Job::Stop).expect("stop");
    let mem = rrx.recv_timeout(CASE_BOUND).expect("final report");
    th.join().expect("worker");
    let mem = mem.unwrap_or_else(|e| panic!("{e}"));
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "fuzz_decls: seed {seed}: {total} configurations in {secs:.1} s ({:.0}/s), {ok_plans} clean, \
         {with_errors} with errors, {services} services planned, {net_cases} with a network, \
         slowest case {slowest:?}, runtime memory after the pass {} KiB; 0 panics, 0 hangs",
        total as f64 / secs,
        mem.1 >> 10
    );
    if std::env::var_os("MOONLIT_FUZZ_SHOW_SLOWEST").is_some() {
        eprintln!("fuzz_decls: slowest case:\n{slowest_case}");
    }
    // The generator reaches both sides.
    assert!(ok_plans > 0 && with_errors > 0 && services > 0 && net_cases > 0);
}

/// Negative controls for the checks above: a clean module plans its
/// services; a cycle and a wrong type are errors naming file and key; an
/// error that names no file is caught by the checker.
#[test]
fn the_checks_see_good_and_bad_configurations() {
    let rt = runtime();
    let good = vec![(
        "services/web.lua".to_string(),
        corpus()
            .into_iter()
            .find(|(n, _)| n == "web.lua")
            .expect("web")
            .1,
    )];
    let o = evaluate(&rt, &good).expect("invariants");
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(o.services, ["db", "migrate", "web"]);
    let bad = vec![(
        "services/c.lua".to_string(),
        "service \"a\" { exec = { \"/bin/true\" }, after = { \"b\" } }\n\
         service \"b\" { exec = { \"/bin/true\" }, after = { \"a\" } }\n\
         service \"w\" { exec = { \"/bin/true\" }, stop_timeout = \"soon\" }\n"
            .to_string(),
    )];
    let o = evaluate(&rt, &bad).expect("invariants");
    check_errors(&o, &bad).expect("errors name the file");
    assert!(o.services.is_empty(), "{:?}", o.services);
    let text: Vec<&str> = o.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(text.iter().any(|m| m.contains("cycle")), "{text:?}");
    assert!(text.iter().any(|m| m.contains("stop_timeout")), "{text:?}");
    // Regressions the fuzzer found: a name that is not UTF-8 is the
    // module's (schema) error; a 600 KB unknown key is named, clipped.
    let hostile = vec![(
        "services/h.lua".to_string(),
        "service \"\\xff\" { exec = { \"/bin/true\" } }".to_string(),
    )];
    let o2 = evaluate(&rt, &hostile).expect("invariants");
    check_errors(&o2, &hostile).expect("typed");
    assert_eq!(o2.errors.len(), 1, "{:?}", o2.errors);
    assert_eq!(o2.errors[0].kind, ErrorKind::Schema);
    assert!(
        o2.errors[0].message.contains("not valid UTF-8"),
        "{:?}",
        o2.errors
    );
    let long = vec![(
        "services/l.lua".to_string(),
        "service \"l\" { exec = { \"/bin/true\" }, [string.rep(\"k\", 600000)] = 1 }".to_string(),
    )];
    let o2 = evaluate(&rt, &long).expect("invariants");
    check_errors(&o2, &long).expect("clipped");
    assert!(
        o2.errors[0].message.contains("unknown key 'kkkk"),
        "{:?}",
        o2.errors
    );
    // A dependent of a cycle's member is left out too, and told why.
    let cyc = vec![(
        "services/cycles.lua".to_string(),
        corpus()
            .into_iter()
            .find(|(n, _)| n == "cycles.lua")
            .expect("cycles")
            .1,
    )];
    let o2 = evaluate(&rt, &cyc).expect("invariants");
    assert!(o2.services.is_empty(), "{:?}", o2.services);
    assert!(
        o2.errors.iter().any(|e| e
            .message
            .contains("service \"g\" is ordered after service \"d\", which is left out")),
        "{:?}",
        o2.errors
    );
    let mut o = o;
    o.errors.push(ConfigError::new(
        ErrorKind::Schema,
        "x",
        "something is wrong",
    ));
    assert!(check_errors(&o, &bad).is_err());
}

/// Found by the long pass next to the timer's: `sleep(1e300)` in a task
/// reached Duration::from_secs_f64 unchecked (a panic in PID 1's loop);
/// an enormous sleep is 1e9 s, forever for an init.
#[test]
fn enormous_sleeps_are_clamped() {
    use moonlit_config::runtime::{Request, Step};
    let mut rt = runtime();
    for arg in ["1e300", "math.maxinteger", "2^62"] {
        let f = rt
            .load_script("t.lua", format!("sleep({arg})").as_bytes())
            .expect("load");
        let (_, step) = rt.start_task("t", f, ());
        assert_eq!(
            step,
            Step::Wait(Request::Sleep(Duration::from_secs(1_000_000_000))),
            "sleep({arg})"
        );
    }
}
