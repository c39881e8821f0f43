//! Mutated handover documents through the real adoption path: the moonlit
//! binary started as PID 1 of a fresh pid/mount namespace with
//! `--handover 3` and a mutated document on descriptor 3 (as a re-exec
//! starts the new image). It must adopt ("re-executed: ...") or refuse
//! with a reason and boot afresh ("re-exec handover failed: ...; booting
//! afresh"), never crash, abort or report an internal error. The parser
//! itself is fuzzed in-process by `init/src/init/reexec.rs` (`mod fuzz`).
//!
//! Short pass: 24 documents. `MOONLIT_FUZZ_SCALE=N` multiplies;
//! `MOONLIT_FUZZ_SEED` replays. Needs root (namespaces).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BASE_DOCS: u64 = 24;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name} must be an integer"))
    })
}

/// The oldest format-1 document (the re-exec fixture), made to point at
/// this run's scratch directory and to hand over no descriptor (nothing is
/// open to hand over here); its services' pids are gone, as after a crash.
fn base_document(dir: &Path) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fuzz_handover/v1-oldest.json");
    let mut v: Value = serde_json::from_str(&common::read(&p)).expect("seed json");
    v["config_dir"] = json!(dir.join("config").display().to_string());
    v["control_path"] = json!(dir.join("adopted.sock").display().to_string());
    v["control_fd"] = Value::Null;
    v["reply_fd"] = Value::Null;
    v["logs"] = json!([]);
    v["mode"] = json!("container");
    v
}

struct Mutator {
    rng: fastrand::Rng,
}

impl Mutator {
    fn value(&mut self) -> Value {
        match self.rng.u8(0..10) {
            0 => Value::Null,
            1 => json!(self.rng.bool()),
            2 => json!(-1),
            3 => json!(u64::MAX),
            4 => json!(self.rng.i32(-3..100)),
            5 => json!(1e308),
            6 => json!("y".repeat(self.rng.usize(0..50))),
            7 => json!([]),
            8 => json!({"Running": {"pid": self.rng.u32(0..100)}}),
            _ => json!({}),
        }
    }

    fn mutate(&mut self, v: &mut Value, depth: u32) {
        let descend = depth < 10 && self.rng.u8(0..3) != 0;
        match v {
            Value::Object(m) if !m.is_empty() && descend => {
                let k = m
                    .keys()
                    .nth(self.rng.usize(0..m.len()))
                    .cloned()
                    .unwrap_or_default();
                // Keep the paths inside the scratch directory.
                if k == "config_dir" || k == "control_path" {
                    return;
                }
                if let Some(c) = m.get_mut(&k) {
                    self.mutate(c, depth + 1);
                }
            }
            Value::Array(a) if !a.is_empty() && descend => {
                let i = self.rng.usize(0..a.len());
                self.mutate(&mut a[i], depth + 1);
            }
            Value::Array(a) if !a.is_empty() && self.rng.bool() => {
                let i = self.rng.usize(0..a.len());
                let c = a[i].clone();
                a.push(c);
            }
            // Half the time a value of the same type (so that more
            // documents parse and reach the adoption itself).
            _ if self.rng.bool() => {
                *v = match &*v {
                    Value::Bool(b) => json!(!b),
                    Value::Number(_) => {
                        json!(
                            [0, 1, 2, 3, 7, 1000, u32::MAX as u64, u64::MAX][self.rng.usize(0..8)]
                        )
                    }
                    Value::String(_) => {
                        json!(["", "web", "job", "x".repeat(300).as_str()][self.rng.usize(0..4)])
                    }
                    _ => self.value(),
                }
            }
            _ => *v = self.value(),
        }
    }
}

/// The binary as PID 1 of new namespaces, adopting `doc` from fd 3.
fn start(dir: &Path, doc: &[u8], n: u64) -> (Child, PathBuf) {
    let file = dir.join(format!("doc-{n}.json"));
    std::fs::write(&file, doc).expect("write doc");
    let out = dir.join(format!("out-{n}.txt"));
    let log = std::fs::File::create(&out).expect("out");
    let child = Command::new("unshare")
        .args(["--pid", "--mount", "--mount-proc", "--kill-child", "--"])
        .args(["sh", "-c", "exec \"$0\" --handover 3 3<\"$1\""])
        .arg(common::BIN)
        .arg(&file)
        .current_dir(dir)
        .env("MOONLIT_CONFIG", dir.join("config"))
        .env("MOONLIT_CONTROL", dir.join("fresh.sock"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn unshare");
    (child, out)
}

fn read_out(p: &Path) -> String {
    let mut s = String::new();
    let _ = std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
    s
}

const ADOPTED: &str = "re-executed: moonlit";
const REFUSED: &str = "re-exec handover failed:";

/// Runs one document; returns which way it went.
fn run(dir: &Path, doc: &[u8], n: u64) -> &'static str {
    let (mut child, out) = start(dir, doc, n);
    let end = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        let text = read_out(&out);
        for bad in ["internal error", "panicked"] {
            assert!(!text.contains(bad), "document {n}: {bad}:\n{text}");
        }
        if let Some(st) = child.try_wait().expect("wait") {
            panic!(
                "document {n}: PID 1 ended ({st}) instead of carrying on:\n{text}\n{}",
                String::from_utf8_lossy(doc)
            );
        }
        if text.contains(ADOPTED) && text.contains("moonlit: READY") || text.contains(ADOPTED) {
            break "adopted";
        }
        if text.contains(REFUSED) && text.contains("booting afresh") {
            // The fresh boot comes up on its own control socket.
            if dir.join("fresh.sock").exists() && text.contains("moonlit: READY") {
                break "refused";
            }
        }
        assert!(
            Instant::now() < end,
            "document {n}: neither adopted nor refused within 20 s:\n{text}\n{}",
            String::from_utf8_lossy(doc)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Still there a moment later (an adoption's first turns have run).
    std::thread::sleep(Duration::from_millis(100));
    let text = read_out(&out);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "document {n}: PID 1 ended after the {outcome}:\n{text}"
    );
    for bad in ["internal error", "panicked"] {
        assert!(!text.contains(bad), "document {n}: {bad}:\n{text}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(dir.join("fresh.sock"));
    let _ = std::fs::remove_file(dir.join("adopted.sock"));
    outcome
}

#[test]
fn mutated_handovers_are_adopted_or_refused_by_a_live_pid1() {
    common::require_root();
    let seed = env_u64("MOONLIT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    });
    let docs = BASE_DOCS * env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1);
    eprintln!(
        "fuzz_handover: MOONLIT_FUZZ_SEED={seed}, {docs} documents through the adoption path"
    );
    let dir = common::scratch("fuzz-handover");
    std::fs::create_dir_all(dir.join("config/services")).expect("config");
    std::fs::write(
        dir.join("config/services/web.lua"),
        r#"service "web" { exec = { "/bin/sleep", "1000" } }"#,
    )
    .expect("service");
    let base = base_document(&dir);
    // Controls: the document as is is adopted; one handing over stdout as
    // the control socket, or a log pipe numbered -1 (which panicked in the
    // adoption before the descriptor check), is refused with the reason.
    assert_eq!(run(&dir, base.to_string().as_bytes(), 0), "adopted");
    let mut stdout_ctl = base.clone();
    stdout_ctl["control_fd"] = json!(1);
    assert_eq!(run(&dir, stdout_ctl.to_string().as_bytes(), 1), "refused");
    assert!(read_out(&dir.join("out-1.txt")).contains("descriptor 1 cannot be handed over"));
    let mut neg = base.clone();
    neg["logs"] =
        json!([{"service": "web", "read_fd": -1, "write_fd": -1, "lines": [], "total": 0}]);
    assert_eq!(run(&dir, neg.to_string().as_bytes(), 2), "refused");
    assert!(read_out(&dir.join("out-2.txt")).contains("descriptor -1 cannot be handed over"));
    assert_eq!(run(&dir, b"{\"format\": 1", 3), "refused");
    // A service whose pid is 1: stopping it would signal process group
    // -1, every process (seen while reviewing what mutated documents the
    // adoption accepted).
    let mut pid1 = base.clone();
    pid1["services"][1]["state"] = json!({"Running": {"pid": 1, "since": 0}});
    assert_eq!(run(&dir, pid1.to_string().as_bytes(), 4), "refused");
    assert!(read_out(&dir.join("out-4.txt")).contains("web: pid 1 cannot be adopted"));

    let mut m = Mutator {
        rng: fastrand::Rng::with_seed(seed),
    };
    let t0 = Instant::now();
    let (mut adopted, mut refused) = (0u64, 0u64);
    for n in 0..docs {
        let mut v = base.clone();
        for _ in 0..m.rng.usize(1..4) {
            m.mutate(&mut v, 0);
        }
        let mut doc = serde_json::to_vec(&v).expect("json");
        if m.rng.u8(0..6) == 0 && !doc.is_empty() {
            let i = m.rng.usize(0..doc.len());
            doc.truncate(i);
        }
        match run(&dir, &doc, 10 + n) {
            "adopted" => adopted += 1,
            _ => refused += 1,
        }
    }
    eprintln!(
        "fuzz_handover: seed {seed}: {docs} documents in {:.1} s: {adopted} adopted, {refused} refused; 0 crashes",
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
