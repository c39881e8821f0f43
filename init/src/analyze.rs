//! `moonlit analyze [--socket PATH] [--json] [--svg FILE]`: what
//! systemd-analyze tells, for a running moonlit. The boot record
//! ([`record::BootRecord`], kept by PID 1 and read from `ctl status`'s
//! `boot` key) gives the timeline; this module computes the blame list and
//! the critical chain from it and renders them as text, JSON (schema in
//! docs/analyze.md) or an SVG Gantt chart ([`svg`]).

pub mod record;
mod svg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use crate::control::{connect, PROTOCOL_VERSION};
use crate::supervisor::Ms;
use record::BootRecord;

/// Version of the `--json` document.
pub const SCHEMA: u32 = 1;

const USAGE: &str = "usage: moonlit analyze [--socket PATH] [--json] [--svg FILE]
  the running init's boot: timeline (steps, each service's spawn and ready,
  the READY mark), blame (services by start-to-ready time, slowest first) and
  the critical chain (the dependencies that decided when the last service
  was ready)
  --json        all of it as one JSON document (docs/analyze.md)
  --svg FILE    also write a Gantt chart of the boot to FILE
  --socket PATH the init's control socket (as for moonlit ctl)";

/// Why `analyze` could not report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the init at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad reply from the init: {0}")]
    Reply(String),
    #[error("the init keeps no boot record (moonlit {0} predates `analyze`)")]
    NoRecord(String),
    #[error(
        "the boot record was lost: this init took over by a re-exec from a binary that kept none"
    )]
    Lost,
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code: 2 bad usage, 3 no init to ask, 1 anything else.
    pub fn code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Connect { .. } | Error::Reply(_) => 3,
            _ => 1,
        }
    }
}

/// A service's first start in the boot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub spawn_ms: Option<Ms>,
    pub ready_ms: Option<Ms>,
    /// ready - spawn; none while it is not ready.
    pub start_to_ready_ms: Option<Ms>,
    pub after: Vec<String>,
    pub requires: Vec<String>,
}

/// One link of the critical chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub spawn_ms: Ms,
    pub ready_ms: Ms,
    /// Its own start-to-ready time.
    pub ms: Ms,
    /// From the previous link's ready to this one's spawn (0 for the first).
    pub gap_ms: Ms,
}

/// What `analyze` reports.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub mode: String,
    pub record: BootRecord,
    pub services: Vec<Entry>,
    /// Ready services, slowest first.
    pub blame: Vec<Entry>,
    /// From the first link to the service that was ready last.
    pub chain: Vec<Link>,
}

impl Analysis {
    pub fn new(record: BootRecord, mode: &str) -> Analysis {
        let services: Vec<Entry> = record
            .services
            .iter()
            .map(|(n, t)| Entry {
                name: n.clone(),
                kind: t.kind.clone(),
                spawn_ms: t.spawn_ms,
                ready_ms: t.ready_ms,
                start_to_ready_ms: match (t.spawn_ms, t.ready_ms) {
                    (Some(s), Some(r)) => Some(r.saturating_sub(s)),
                    _ => None,
                },
                after: t.after.clone(),
                requires: t.requires.clone(),
            })
            .collect();
        let mut blame: Vec<Entry> = services
            .iter()
            .filter(|e| e.start_to_ready_ms.is_some())
            .cloned()
            .collect();
        blame.sort_by(|a, b| {
            b.start_to_ready_ms
                .cmp(&a.start_to_ready_ms)
                .then_with(|| a.name.cmp(&b.name))
        });
        let chain = critical_chain(&services);
        Analysis {
            mode: mode.to_string(),
            record,
            services,
            blame,
            chain,
        }
    }

    /// The end of the chart and of the timeline: READY, or the last thing
    /// recorded.
    pub fn span_ms(&self) -> Ms {
        let steps = self.record.steps.iter().map(|s| s.end_ms);
        let svc = self
            .services
            .iter()
            .flat_map(|e| [e.spawn_ms, e.ready_ms])
            .flatten();
        steps
            .chain(svc)
            .chain(self.record.ready_ms)
            .max()
            .unwrap_or(0)
    }

    pub fn json(&self) -> Value {
        let r = &self.record;
        json!({
            "schema": SCHEMA,
            "mode": self.mode,
            "t0_boottime_ms": r.t0_boottime_ms,
            "exec_ms": r.exec_ms,
            "ready_ms": r.ready_ms,
            "complete": r.ready_ms.is_some(),
            "timeline": {
                "steps": r.steps,
                "services": self.services,
                "ready_ms": r.ready_ms,
            },
            "blame": self.blame.iter().map(|e| json!({
                "name": e.name,
                "ms": e.start_to_ready_ms,
                "spawn_ms": e.spawn_ms,
                "ready_ms": e.ready_ms,
            })).collect::<Vec<_>>(),
            "critical_chain": self.chain,
        })
    }

    pub fn text(&self) -> String {
        let r = &self.record;
        let mut out = String::new();
        let ms = |v: Option<Ms>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
        match r.ready_ms {
            Some(t) if self.mode == "system" => out.push_str(&format!(
                "Startup finished in {} ms (kernel) + {t} ms (moonlit) = {} ms; READY at {t} ms\n",
                r.t0_boottime_ms,
                r.t0_boottime_ms + t
            )),
            Some(t) => out.push_str(&format!("READY {t} ms after t0 ({} mode)\n", self.mode)),
            None => out.push_str(&format!(
                "not READY yet ({} mode; {} ms recorded so far)\n",
                self.mode,
                self.span_ms()
            )),
        }
        if let Some(e) = r.exec_ms {
            out.push_str(&format!("t0 is {e} ms after the process started\n"));
        }
        out.push_str("\nTimeline (ms after t0):\n");
        for s in &r.steps {
            out.push_str(&format!(
                "  {:>7} {:>7}  {:>6} ms  {}\n",
                s.start_ms,
                s.end_ms,
                s.end_ms.saturating_sub(s.start_ms),
                s.name
            ));
        }
        for e in &self.services {
            out.push_str(&format!(
                "  {:>7} {:>7}  {:>9}  {} ({})\n",
                e.spawn_ms.map_or("-".into(), |v| v.to_string()),
                e.ready_ms.map_or("-".into(), |v| v.to_string()),
                ms(e.start_to_ready_ms),
                e.name,
                e.kind
            ));
        }
        if let Some(t) = r.ready_ms {
            out.push_str(&format!("  {t:>7} {t:>7}  {:>9}  READY\n", ""));
        }
        out.push_str("\nBlame (start to ready):\n");
        for e in &self.blame {
            out.push_str(&format!("  {:>9}  {}\n", ms(e.start_to_ready_ms), e.name));
        }
        let not_ready: Vec<&str> = self
            .services
            .iter()
            .filter(|e| e.ready_ms.is_none())
            .map(|e| e.name.as_str())
            .collect();
        if !not_ready.is_empty() {
            out.push_str(&format!("  not ready: {}\n", not_ready.join(" ")));
        }
        out.push_str("\nCritical chain (@ ready, + start to ready):\n");
        for (depth, l) in self.chain.iter().rev().enumerate() {
            let lead = if depth == 0 {
                String::new()
            } else {
                format!("{}└─", "  ".repeat(depth - 1))
            };
            out.push_str(&format!(
                "  {lead}{} @{} ms +{} ms\n",
                l.name, l.ready_ms, l.ms
            ));
        }
        out
    }
}

/// The chain of services that decided when the last one was ready: from
/// the service ready last, back through the dependency (`after` or
/// `requires`) that became ready last before it was spawned, to one that
/// waited for none. Ties go to the name sorting first, so it is stable.
pub fn critical_chain(services: &[Entry]) -> Vec<Link> {
    let find = |n: &str| services.iter().find(|e| e.name == n);
    let key = |e: &Entry| (e.ready_ms, std::cmp::Reverse(e.name.clone()));
    let Some(mut cur) = services
        .iter()
        .filter(|e| e.ready_ms.is_some() && e.spawn_ms.is_some())
        .max_by_key(|e| key(e))
    else {
        return Vec::new();
    };
    let mut chain: Vec<&Entry> = vec![cur];
    loop {
        let spawn = cur.spawn_ms.unwrap_or(0);
        let prev = cur
            .after
            .iter()
            .chain(&cur.requires)
            .filter_map(|d| find(d))
            .filter(|d| d.spawn_ms.is_some() && d.ready_ms.is_some_and(|r| r <= spawn))
            .filter(|d| !chain.iter().any(|c| c.name == d.name))
            .max_by_key(|e| key(e));
        match prev {
            Some(p) => {
                chain.push(p);
                cur = p;
            }
            None => break,
        }
    }
    chain.reverse();
    let mut links = Vec::new();
    let mut last_ready = None;
    for e in chain {
        let (spawn, ready) = (e.spawn_ms.unwrap_or(0), e.ready_ms.unwrap_or(0));
        links.push(Link {
            name: e.name.clone(),
            spawn_ms: spawn,
            ready_ms: ready,
            ms: ready.saturating_sub(spawn),
            gap_ms: last_ready.map_or(0, |r: Ms| spawn.saturating_sub(r)),
        });
        last_ready = Some(ready);
    }
    links
}

/// Asks the init at `socket` for its status; returns (mode, record).
fn fetch(socket: &Path) -> Result<(String, BootRecord), Error> {
    let req = json!({"v": PROTOCOL_VERSION, "cmd": "status"});
    let s = connect(socket, &req).map_err(|source| Error::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| Error::Reply(e.to_string()))?;
    let v: Value = serde_json::from_str(&line).map_err(|e| Error::Reply(format!("{e}: {line}")))?;
    if v["ok"].as_bool() != Some(true) {
        return Err(Error::Reply(
            v["error"].as_str().unwrap_or("request failed").to_string(),
        ));
    }
    let mode = v["mode"].as_str().unwrap_or("?").to_string();
    let boot = match v.get("boot") {
        Some(b) if !b.is_null() => b.clone(),
        _ => {
            return Err(Error::NoRecord(
                v["version"].as_str().unwrap_or("?").to_string(),
            ))
        }
    };
    let record: BootRecord = moonlit_net::json_decode::Decode::decode(&boot)
        .map_err(|e| Error::Reply(format!("boot record: {e}")))?;
    if record.lost {
        return Err(Error::Lost);
    }
    Ok((mode, record))
}

struct Args {
    socket: PathBuf,
    json: bool,
    svg: Option<PathBuf>,
    help: bool,
}

fn parse(args: &[String]) -> Result<Args, Error> {
    let mut a = Args {
        socket: crate::ctl::default_socket(),
        json: false,
        svg: None,
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--svg" => match it.next() {
                Some(f) if !f.starts_with("--") => a.svg = Some(f.into()),
                _ => return Err(Error::Usage("--svg needs a file name".into())),
            },
            "--socket" => match it.next() {
                Some(p) => a.socket = p.into(),
                None => return Err(Error::Usage("--socket needs a path".into())),
            },
            "-h" | "--help" => a.help = true,
            other => return Err(Error::Usage(format!("unexpected argument '{other}'"))),
        }
    }
    Ok(a)
}

fn run(args: &[String]) -> Result<(), Error> {
    let a = parse(args)?;
    if a.help {
        println!("{USAGE}");
        return Ok(());
    }
    let (mode, record) = fetch(&a.socket)?;
    let an = Analysis::new(record, &mode);
    if let Some(path) = &a.svg {
        std::fs::write(path, svg::render(&an)).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    if a.json {
        println!("{}", an.json());
    } else {
        print!("{}", an.text());
        if let Some(p) = &a.svg {
            println!("\nchart written to {}", p.display());
        }
    }
    Ok(())
}

/// `moonlit analyze ...`; the exit code.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            match &e {
                Error::Usage(_) => eprintln!("moonlit analyze: {e}\n{USAGE}"),
                _ => eprintln!("moonlit analyze: {e}"),
            }
            e.code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, spawn: Ms, ready: Option<Ms>, after: &[&str], requires: &[&str]) -> Entry {
        Entry {
            name: name.into(),
            kind: "notify".into(),
            spawn_ms: Some(spawn),
            ready_ms: ready,
            start_to_ready_ms: ready.map(|r| r - spawn),
            after: after.iter().map(|s| s.to_string()).collect(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn chain_follows_the_dependency_ready_last() {
        let s = vec![
            e("base", 0, Some(300), &[], &[]),
            e("cache", 0, Some(100), &[], &[]),
            e("db", 301, Some(500), &["cache"], &["base"]),
            e("app", 502, Some(750), &["db", "cache"], &[]),
            e("worker", 101, Some(101), &["cache"], &[]),
        ];
        let c = critical_chain(&s);
        let names: Vec<&str> = c.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["base", "db", "app"]);
        assert_eq!(c[1].gap_ms, 1);
        assert_eq!(c[2].ms, 248);
    }

    #[test]
    fn a_dependency_ready_after_the_spawn_did_not_gate_it() {
        // `late` became ready after `x` started: not what x waited for.
        let s = vec![
            e("early", 0, Some(10), &[], &[]),
            e("late", 0, Some(900), &[], &[]),
            e("x", 20, Some(1000), &["early", "late"], &[]),
        ];
        let names: Vec<String> = critical_chain(&s).into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["early", "x"]);
    }

    #[test]
    fn nothing_ready_no_chain_and_blame_skips_unready() {
        let s = vec![e("a", 0, None, &[], &[])];
        assert!(critical_chain(&s).is_empty());
        let mut r = BootRecord::default();
        r.services.push((
            "a".into(),
            record::ServiceTimes {
                spawn_ms: Some(5),
                ..Default::default()
            },
        ));
        let an = Analysis::new(r, "sandbox");
        assert!(an.blame.is_empty());
        assert!(an.text().contains("not ready: a"), "{}", an.text());
    }

    #[test]
    fn bad_arguments() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(a(&["--svg"]), Err(Error::Usage(_))));
        assert!(matches!(a(&["--svg", "--json"]), Err(Error::Usage(_))));
        assert!(matches!(a(&["blame"]), Err(Error::Usage(_))));
        assert!(a(&["--svg", "x.svg", "--json"]).is_ok());
    }
}
