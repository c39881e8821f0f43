//! Fuzzing the control protocol against a live PID 1 (`moonlit run
//! --sandbox`): wrong types in every field of every request shape, unknown
//! commands, mutated and truncated JSON, invalid UTF-8, huge lines, partial
//! writes with pauses, pipelined requests, floods of connections dropped
//! unanswered, clients that half-close. Before, periodically during and
//! after: PID 1 answers `status`, is the same process, keeps its services
//! as they were, its descriptor count returns to the baseline and its
//! console shows no internal error.
//!
//! Short pass by default (~10^4 messages). Long pass:
//! `MOONLIT_FUZZ_SCALE=100 cargo test -p moonlit --test fuzz_control -- --nocapture`
//! (10^6 messages). `MOONLIT_FUZZ_SEED=N` replays a run.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::{json, Value};

const BASE_MESSAGES: u64 = 10_000;

fn scale() -> u64 {
    std::env::var("MOONLIT_FUZZ_SCALE")
        .ok()
        .map(|s| {
            s.parse()
                .expect("MOONLIT_FUZZ_SCALE must be a positive integer")
        })
        .unwrap_or(1)
}

fn seed() -> u64 {
    std::env::var("MOONLIT_FUZZ_SEED")
        .ok()
        .map(|s| s.parse().expect("MOONLIT_FUZZ_SEED must be an integer"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        })
}

/// The services the sandbox runs; none of their names is ever sent to
/// start/stop/restart, so their state must not change.
const SERVICES: &[&str] = &["alpha", "beta"];

/// Commands that would end or replace the image under test: never sent.
const FORBIDDEN: &[&str] = &["poweroff", "reboot", "halt", "reexec"];

const COMMANDS: &[&str] = &[
    "status", "start", "stop", "restart", "logs", "reload", "eval",
];

/// Fields each command reads (all of them get wrong types in turn).
fn fields(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "start" | "stop" | "restart" => &["name"],
        "logs" => &["name", "lines", "follow"],
        "reload" => &["modules", "dry_run"],
        "eval" => &["code"],
        _ => &[],
    }
}

struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn string(&mut self, max: usize) -> String {
        let n = self.rng.usize(0..=max);
        (0..n)
            .map(|_| match self.rng.u8(0..10) {
                0 => self.rng.char(..),
                1 => ['"', '\\', '\n', '\0', '\u{7f}', '{', '}'][self.rng.usize(0..7)],
                _ => self.rng.alphanumeric(),
            })
            .collect()
    }

    fn number(&mut self) -> Value {
        match self.rng.u8(0..8) {
            0 => json!(u64::MAX),
            1 => json!(i64::MIN),
            2 => json!(-1),
            3 => json!(0),
            4 => json!(self.rng.f64() * 1e300),
            5 => json!(-0.5),
            6 => json!(self.rng.u64(..)),
            _ => json!(self.rng.i64(-1000..1000)),
        }
    }

    /// Any JSON value, nested up to `depth`.
    fn value(&mut self, depth: u32) -> Value {
        let k = if depth == 0 {
            self.rng.u8(0..4)
        } else {
            self.rng.u8(0..6)
        };
        match k {
            0 => Value::Null,
            1 => json!(self.rng.bool()),
            2 => self.number(),
            3 => json!(self.string(40)),
            4 => Value::Array(
                (0..self.rng.usize(0..5))
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => {
                let mut m = serde_json::Map::new();
                for _ in 0..self.rng.usize(0..5) {
                    let key = if self.rng.bool() {
                        ["v", "cmd", "name", "code", "follow", "lines"][self.rng.usize(0..6)]
                            .to_string()
                    } else {
                        self.string(8)
                    };
                    m.insert(key, self.value(depth - 1));
                }
                Value::Object(m)
            }
        }
    }

    /// A name that is none of the real services.
    fn name(&mut self) -> Value {
        let n = match self.rng.u8(0..4) {
            0 => String::new(),
            1 => format!("{}x", SERVICES[self.rng.usize(0..SERVICES.len())]),
            2 => "a".repeat(self.rng.usize(1..2000)),
            _ => self.string(20),
        };
        if SERVICES.contains(&n.as_str()) {
            json!("nosuch")
        } else {
            json!(n)
        }
    }

    /// A request of a known shape, each field valid or of a wrong type.
    fn request(&mut self) -> Value {
        let cmd = COMMANDS[self.rng.usize(0..COMMANDS.len())];
        let mut v = json!({"v": 1, "cmd": cmd});
        for f in fields(cmd) {
            if self.rng.u8(0..4) == 0 {
                continue; // missing
            }
            let good = self.rng.bool();
            let val = match (*f, good) {
                ("name", true) if cmd == "logs" => json!(SERVICES[self.rng.usize(0..2)]),
                ("name", true) => self.name(),
                ("lines", true) => json!(self.rng.u64(..)),
                ("follow", true) => json!(self.rng.bool()),
                ("dry_run", true) => json!(true),
                ("modules", true) => json!([self.string(10), "services/alpha.lua"]),
                ("code", true) => json!(
                    [
                        "",
                        "return 1",
                        "1 +",
                        "error('boom')",
                        "return nil",
                        "return {1,2}"
                    ][self.rng.usize(0..6)]
                ),
                (_, _) => self.value(3),
            };
            v[*f] = val;
        }
        // The envelope too: a wrong version, a wrong-typed cmd, extra keys.
        match self.rng.u8(0..12) {
            0 => v["v"] = self.value(1),
            1 => v["cmd"] = self.value(2),
            2 => {
                let k = self.string(6);
                v[k] = self.value(2);
            }
            3 => {
                if let Some(o) = v.as_object_mut() {
                    o.remove(if self.rng.bool() { "v" } else { "cmd" });
                }
            }
            4 => v["cmd"] = json!(self.string(12)),
            _ => {}
        }
        v
    }

    fn mutate(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        for _ in 0..self.rng.usize(1..6) {
            if b.is_empty() {
                b.push(self.rng.u8(..));
                continue;
            }
            let i = self.rng.usize(0..b.len());
            match self.rng.u8(0..7) {
                0 => b[i] ^= 1 << self.rng.u8(0..8),
                1 => {
                    b.remove(i);
                }
                2 => b.insert(i, self.rng.u8(..)),
                3 => b.truncate(i),
                4 => {
                    let j = self.rng.usize(i..b.len());
                    let chunk = b[i..j].to_vec();
                    b.splice(i..i, chunk);
                }
                5 => b.insert(
                    i,
                    [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\'][self.rng.usize(0..8)],
                ),
                _ => {
                    // Invalid UTF-8.
                    let bad: &[u8] = [
                        &[0xff][..],
                        &[0xc3],
                        &[0xed, 0xa0, 0x80],
                        &[0xf8, 0x88, 0x80, 0x80, 0x80],
                    ][self.rng.usize(0..4)];
                    b.splice(i..i, bad.iter().copied());
                }
            }
        }
        b.retain(|&c| c != b'\n');
        b
    }
}

/// Whether the init would act on `line` in a way that changes what is
/// under test (ends it, replaces its image, touches the real services).
fn forbidden(line: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let cmd = v.get("cmd").and_then(Value::as_str).unwrap_or("");
    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
    FORBIDDEN.contains(&cmd)
        || (["start", "stop", "restart"].contains(&cmd) && SERVICES.contains(&name))
        || (cmd == "eval"
            && v.get("code")
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains("while")))
}

fn connect(sock: &Path) -> UnixStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                s.set_write_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                return s;
            }
            // The listen backlog can be full for a moment after a flood.
            Err(e) if Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("connect to the control socket: {e}"),
        }
    }
}

/// Reads what the init answers until it closes (or, for a follower, the
/// first line). Returns the lines and whether the connection was reset
/// (the init closed with our unread bytes still queued: what it had sent
/// before is still read first).
fn replies(s: &mut UnixStream, follow: bool) -> Result<(Vec<String>, bool), std::io::Error> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let mut reset = false;
    loop {
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                reset = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if follow && out.contains(&b'\n') {
            break;
        }
    }
    let lines = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect();
    Ok((lines, reset))
}

/// At most 300 characters of a message, for failure reports.
fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 300 {
        format!(
            "{}... ({} bytes)",
            s.chars().take(300).collect::<String>(),
            b.len()
        )
    } else {
        s.into_owned()
    }
}

/// Checks one reply line: a JSON object of protocol version 1 with `ok`,
/// and a non-empty `error` when not ok.
fn check_reply(line: &str, sent: &[u8]) {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}\nsent: {:?}", show(sent)));
    assert_eq!(v["v"], 1, "reply {line} to {:?}", show(sent));
    let ok = v["ok"]
        .as_bool()
        .unwrap_or_else(|| panic!("no ok in {line}"));
    if !ok {
        let e = v["error"].as_str().unwrap_or("");
        assert!(!e.is_empty(), "an error reply without a reason: {line}");
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read PID 1's fds")
        .count()
}

struct Watch {
    pid: u32,
    fds: usize,
    services: Vec<(String, Value, Value, Value)>,
}

fn services(st: &Value) -> Vec<(String, Value, Value, Value)> {
    st["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["pid"].clone(),
                s["state"].clone(),
                s["restarts"].clone(),
            )
        })
        .collect()
}

/// The init's health: same pid, answers status, same services, fd count back
/// at the baseline (idle clients time out after 5 s: wait up to 15 s), no
/// internal error on its console.
fn checkpoint(sb: &Sandbox, w: &Watch, when: &str) {
    assert_eq!(sb.init_pid(), w.pid, "{when}: PID 1 was replaced");
    let st = sb.status();
    assert_eq!(st["pid"], 1, "{when}: status from PID 1");
    assert_eq!(services(&st), w.services, "{when}: services changed");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let n = fd_count(w.pid);
        if n == w.fds {
            break;
        }
        assert!(
            Instant::now() < end,
            "{when}: PID 1 holds {n} descriptors, baseline {}: {:?}",
            w.fds,
            std::fs::read_dir(format!("/proc/{}/fd", w.pid))
                .map(|d| d
                    .flatten()
                    .map(|e| std::fs::read_link(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>())
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let console = sb.console();
    for bad in ["internal error", "panicked", "panic"] {
        assert!(
            !console.contains(bad),
            "{when}: console shows {bad:?}:\n{console}"
        );
    }
}

/// The seed corpus: one raw message per line of each file (`\n` kept as the
/// terminator; a line `@@HEX <hex>` is raw bytes).
fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fuzz_control");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read(&f).expect("corpus file");
        for line in text.split(|&b| b == b'\n') {
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if let Some(hex) = line.strip_prefix(b"@@HEX ") {
                let hex = String::from_utf8_lossy(hex);
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex"))
                    .collect();
                out.push(bytes);
            } else {
                out.push(line.to_vec());
            }
        }
    }
    assert!(out.len() >= 10, "corpus too small: {}", out.len());
    out
}

#[derive(Default)]
struct Stats {
    messages: u64,
    connections: u64,
    replies: u64,
    errors: u64,
    huge: u64,
    partial: u64,
    pipelined: u64,
    flooded: u64,
    half_closed: u64,
    resets: u64,
    refused: u64,
}

/// Sends `line` (newline added) and checks the one reply.
fn one(sb: &Sandbox, line: &[u8], st: &mut Stats, g: &mut Gen) {
    let mut s = connect(&sb.sock);
    st.connections += 1;
    st.messages += 1;
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    let follow = serde_json::from_slice::<Value>(line)
        .ok()
        .is_some_and(|v| v["cmd"] == "logs" && v["follow"] == true);
    let mut closed = false;
    match g.rng.u8(0..20) {
        // Partial writes with pauses, for lines short enough to end well
        // within the request timeout (and under the size limit, past
        // which the init answers and closes before the line ends).
        0 if bytes.len() <= 4096 => {
            st.partial += 1;
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let k = g.rng.usize(1..=rest.len().min(16));
                if !write_line(&mut s, &rest[..k]) {
                    closed = true;
                    break;
                }
                rest = &rest[k..];
                std::thread::sleep(Duration::from_millis(g.rng.u64(0..3)));
            }
        }
        1 => {
            // Half-close after the request, then read the answer.
            st.half_closed += 1;
            closed = !write_line(&mut s, &bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        _ => closed = !write_line(&mut s, &bytes),
    }
    let (lines, reset) = replies(&mut s, follow)
        .unwrap_or_else(|e| panic!("no reply to {:?}: {e}\n{}", show(line), sb.console()));
    if reset {
        st.resets += 1;
    }
    assert_eq!(
        lines.len(),
        1,
        "one reply line to {:?}, got {lines:?}",
        show(line)
    );
    check_reply(&lines[0], line);
    // Closed on us under the size limit: only a refused client (the flood
    // before it may still fill the 64 client slots for a moment).
    if closed && bytes.len() <= 64 * 1024 {
        assert!(
            lines[0].contains("too many clients"),
            "closed early: {}",
            lines[0]
        );
        st.refused += 1;
    }
    st.replies += 1;
    if lines[0].contains("\"ok\":false") {
        st.errors += 1;
    }
}

/// Writes (part of) a request line; false when the init has closed the
/// connection (past the size limit it answers and closes while the rest is
/// still being written; a refused client is closed at once). What it
/// answered is read and checked next. Any other failure fails the test.
fn write_line(s: &mut UnixStream, bytes: &[u8]) -> bool {
    match s.write_all(bytes) {
        Ok(()) => true,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            false
        }
        Err(e) => panic!("writing a request of {} bytes: {e}", bytes.len()),
    }
}

/// Several requests on one connection: only the first is answered.
fn pipelined(sb: &Sandbox, lines: &[Vec<u8>], st: &mut Stats) {
    let mut s = connect(&sb.sock);
    st.connections += 1;
    st.pipelined += 1;
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    st.messages += lines.len() as u64;
    // The init closes after its answer; the rest may meet a closed socket.
    let _ = s.write_all(&bytes);
    // A first request that follows logs keeps the connection open.
    let follow = serde_json::from_slice::<Value>(&lines[0])
        .ok()
        .is_some_and(|v| v["cmd"] == "logs" && v["follow"] == true);
    let (r, reset) = replies(&mut s, follow).unwrap_or_else(|e| panic!("pipelined: {e}"));
    if reset {
        st.resets += 1;
    }
    // A reset may come before the init even read our first line only if
    // it never answered: it always answers the first line.
    assert_eq!(r.len(), 1, "pipelined: one reply, got {r:?}");
    check_reply(&r[0], &lines[0]);
    st.replies += 1;
}

/// A line of `len` bytes: over the limit it must be refused as too large.
fn huge(sb: &Sandbox, len: usize, newline: bool, st: &mut Stats, g: &mut Gen) {
    let mut s = connect(&sb.sock);
    st.connections += 1;
    st.messages += 1;
    st.huge += 1;
    let mut bytes = b"{\"v\":1,\"cmd\":\"status\",\"pad\":\"".to_vec();
    let fill = [b'a', b'\xff', b' '][g.rng.usize(0..3)];
    bytes.resize(len, fill);
    if newline {
        bytes.push(b'\n');
    }
    let _ = s.write_all(&bytes);
    let (r, reset) = replies(&mut s, false).unwrap_or_else(|e| panic!("huge line: {e}"));
    if reset {
        st.resets += 1;
    }
    assert_eq!(r.len(), 1, "huge line of {len} bytes: one reply, got {r:?}");
    assert!(r[0].contains("request too large"), "huge line: {}", r[0]);
    st.replies += 1;
}

/// Connections opened and dropped at once, some with a partial request.
fn flood(sb: &Sandbox, n: usize, st: &mut Stats, g: &mut Gen) {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect(&sb.sock);
        st.connections += 1;
        st.flooded += 1;
        if g.rng.bool() {
            let _ = s.write_all(b"{\"v\":1,\"cmd\":\"sta");
            st.messages += 1;
        }
        if g.rng.bool() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        held.push(s);
    }
    drop(held);
}

#[test]
fn control_protocol_survives_fuzzing() {
    let seed = seed();
    let scale = scale();
    let target = BASE_MESSAGES * scale;
    eprintln!(
        "fuzz_control: MOONLIT_FUZZ_SEED={seed} MOONLIT_FUZZ_SCALE={scale} ({target} messages)"
    );
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
    };
    let mut sb = Sandbox::start(
        "fuzz-control",
        &[
            (
                "services/alpha.lua",
                r#"service "alpha" { exec = { "/bin/sh", "-c", "echo alpha up; exec sleep 100000" } }"#,
            ),
            (
                "services/beta.lua",
                r#"service "beta" { exec = { "/bin/sleep", "100000" } }"#,
            ),
        ],
    );
    sb.ready();
    sb.wait_line("alpha: alpha up", 30);
    let pid = sb.init_pid();
    let st0 = sb.wait_status("both services running", 30, |s| {
        services(s)
            .iter()
            .filter(|(_, p, state, _)| p.is_u64() && state == "running")
            .count()
            == 2
    });
    // Let the boot's own descriptors settle, then take the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let w = Watch {
        pid,
        fds: fd_count(pid),
        services: services(&st0),
    };
    // Negative control: the probe sees a client's descriptor.
    {
        let idle: Vec<UnixStream> = (0..3).map(|_| connect(&sb.sock)).collect();
        let end = Instant::now() + Duration::from_secs(5);
        while fd_count(pid) < w.fds + 3 {
            assert!(
                Instant::now() < end,
                "the fd probe does not see 3 idle clients"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(idle);
    }
    checkpoint(&sb, &w, "before");

    let corpus = corpus();
    let mut st = Stats::default();
    let t0 = Instant::now();
    let mut next_check = 1000 * scale.min(10);
    // Every corpus entry once, then generated and mutated messages.
    for c in &corpus {
        if !forbidden(c) {
            one(&sb, c, &mut st, &mut g);
        }
    }
    while st.messages < target {
        let line: Vec<u8> = match g.rng.u16(0..1000) {
            0 => {
                let len = g.rng.usize(100_000..4_000_000);
                huge(&sb, len, g.rng.bool(), &mut st, &mut g);
                continue;
            }
            1..=4 => {
                let n = g.rng.usize(1..100);
                flood(&sb, n, &mut st, &mut g);
                continue;
            }
            5..=24 => {
                let n = g.rng.usize(2..200);
                let lines: Vec<Vec<u8>> = (0..n)
                    .map(|_| serde_json::to_vec(&g.request()).expect("json"))
                    .filter(|l| !forbidden(l))
                    .collect();
                if !lines.is_empty() {
                    pipelined(&sb, &lines, &mut st);
                }
                continue;
            }
            25..=400 => {
                let base = if g.rng.bool() {
                    corpus[g.rng.usize(0..corpus.len())].clone()
                } else {
                    serde_json::to_vec(&g.request()).expect("json")
                };
                g.mutate(base)
            }
            401..=430 => serde_json::to_vec(&g.value(6)).expect("json"),
            431..=440 => {
                // Nesting past serde's recursion limit.
                let d = g.rng.usize(100..20_000);
                let open = if g.rng.bool() { "[" } else { "{\"a\":" };
                format!("{{\"v\":1,\"cmd\":\"status\",\"x\":{}", open.repeat(d)).into_bytes()
            }
            _ => serde_json::to_vec(&g.request()).expect("json"),
        };
        if forbidden(&line) {
            continue;
        }
        one(&sb, &line, &mut st, &mut g);
        if st.messages >= next_check {
            checkpoint(&sb, &w, &format!("after {} messages", st.messages));
            next_check += 1000 * scale.min(10);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    checkpoint(&sb, &w, "after");
    eprintln!(
        "fuzz_control: seed {seed}: {} messages on {} connections in {secs:.1} s ({:.0} messages/s); \
         {} replies ({} errors), {} huge, {} partial, {} pipelined, {} flooded, {} half-closed, {} resets, {} refused (too many clients); \
         0 leaked fds, same PID 1, services unchanged",
        st.messages,
        st.connections,
        st.messages as f64 / secs,
        st.replies,
        st.errors,
        st.huge,
        st.partial,
        st.pipelined,
        st.flooded,
        st.half_closed,
        st.resets,
        st.refused,
    );
    assert!(
        st.replies > 0 && st.errors > 0,
        "the fuzzer reached the init"
    );
    assert_eq!(sb.poweroff(&[]), 0);
}

/// A request without its newline, then a half-close: the init answers it
/// at once (end of stream ends the line) instead of holding the client
/// until the request timeout.
#[test]
fn a_half_closed_request_without_newline_is_answered() {
    let sb = Sandbox::start("fuzz-halfclose", &[]);
    sb.ready();
    for (req, want) in [
        (&b"{\"v\":1,\"cmd\":\"status\"}"[..], "\"ok\":true"),
        (b"{\"v\":1,\"cmd\":\"sta", "malformed request"),
    ] {
        let mut s = connect(&sb.sock);
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s.write_all(req).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let (r, _) = replies(&mut s, false).unwrap_or_else(|e| {
            panic!(
                "no answer to a half-closed {:?} within 3 s: {e}",
                String::from_utf8_lossy(req)
            )
        });
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains(want),
            "{:?}: {}",
            String::from_utf8_lossy(req),
            r[0]
        );
    }
    // Negative control: an open client that sent half a line gets nothing
    // yet (its request may still come).
    let mut s = connect(&sb.sock);
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s.write_all(b"{\"v\":1,").expect("write");
    let mut b = [0u8; 16];
    let e = s.read(&mut b).expect_err("no answer to half a request");
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
}
