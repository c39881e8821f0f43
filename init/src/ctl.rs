//! `moonlit ctl`: the control client (the same binary as the init).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::control::{connect, PROTOCOL_VERSION};

const USAGE: &str = "usage: moonlit ctl [--socket PATH] [--json] COMMAND
commands:
  status [NAME]             services, their state, pids, restarts, config errors;
                            with NAME: that service in full (its environment's names too)
  start|stop|restart NAME   control one service (stop keeps it stopped)
  logs NAME [-f] [-n N]     recent output of a service; -f follows it
  reload [--dry-run] [MODULE...]
                            re-read changed modules and apply them atomically
  eval 'LUA'                run Lua inside the running init (as a task; it may
                            sleep or spawn); prints what it returns
  reexec [--binary PATH]    replace the running moonlit with PATH (default: the
                            same binary), keeping every service and its pid
  fault panic               inject a panic into PID 1 (only when started with
                            moonlit.faults or MOONLIT_FAULTS=1): it recovers
                            by re-executing
  poweroff|reboot|halt [--code N]
                            shut the system down (N: exit code in a container)";

/// The default control socket for this user.
pub fn default_socket() -> PathBuf {
    if let Ok(p) = std::env::var("MOONLIT_CONTROL") {
        return p.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/run/moonlit/control.sock".into();
    }
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(d) => Path::new(&d).join("moonlit/control.sock"),
        Err(_) => format!(
            "/tmp/moonlit-{}/control.sock",
            rustix::process::getuid().as_raw()
        )
        .into(),
    }
}

fn request(
    socket: &Path,
    req: &Value,
) -> Result<(Value, BufReader<std::os::unix::net::UnixStream>), (i32, String)> {
    let s = connect(socket, req).map_err(|e| {
        (
            3,
            format!("moonlit ctl: cannot reach {}: {e}", socket.display()),
        )
    })?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| (3, format!("moonlit ctl: reading reply: {e}")))?;
    if line.is_empty() {
        return Err((
            3,
            "moonlit ctl: the init closed the connection without a reply".into(),
        ));
    }
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| (3, format!("moonlit ctl: bad reply ({e}): {line}")))?;
    Ok((v, r))
}

/// `ctl status NAME`: one service, a field a line.
fn print_service(s: &Value) {
    let Some(map) = s.as_object() else { return };
    for (k, v) in map {
        let text = match v {
            Value::Null => continue,
            Value::String(t) => t.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        println!("{k:<14} {text}");
    }
}

fn print_status(v: &Value) {
    println!(
        "moonlit {} ({} mode), generation {}, {}",
        v["version"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
        v["generation"],
        if v["shutting_down"].as_bool() == Some(true) {
            "shutting down"
        } else if v["ready"].as_bool() == Some(true) {
            "ready"
        } else {
            "booting"
        }
    );
    let cg = &v["cgroups"];
    match (cg["enabled"].as_bool(), cg["reason"].as_str()) {
        (Some(true), _) => {
            let ctl: Vec<&str> = cg["controllers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("cgroups: on (controllers: {})", ctl.join(" "));
        }
        (Some(false), Some(r)) => println!("cgroups: off: {r}"),
        _ => {}
    }
    println!(
        "{:<20} {:<9} {:>8} {:>8}  DETAIL",
        "SERVICE", "STATE", "PID", "RESTARTS"
    );
    for s in v["services"].as_array().into_iter().flatten() {
        let mut detail = Vec::new();
        if let Some(d) = s["detail"].as_str() {
            detail.push(d.to_string());
        }
        if s["manual_stop"].as_bool() == Some(true) {
            detail.push("stopped by hand".into());
        }
        if s["needs_restart"].as_bool() == Some(true) {
            detail.push("needs restart".into());
        }
        if let Some(e) = s["last_exit"].as_str() {
            match s["last_exit_reason"].as_str() {
                Some("oom") => detail.push(format!("last {e}, OOM-killed")),
                _ => detail.push(format!("last {e}")),
            }
        }
        if let Some(t) = s["timer"].as_object() {
            if let Some(n) = t["next_local"].as_str() {
                let secs = t["next_in_s"].as_f64().unwrap_or(0.0);
                detail.push(format!("next run {n} (in {secs:.0} s)"));
            }
        }
        if let Some(c) = s["cgroup"].as_object() {
            let mut figs = Vec::new();
            if let Some(m) = c["memory_current"].as_u64() {
                figs.push(format!("mem {}", human_bytes(m)));
            }
            if let Some(u) = c["cpu_usage_usec"].as_u64() {
                figs.push(format!("cpu {:.2}s", u as f64 / 1e6));
            }
            if let Some(p) = c["pids_current"].as_u64() {
                figs.push(format!("pids {p}"));
            }
            if !figs.is_empty() {
                detail.push(figs.join(" "));
            }
        }
        if let Some(k) = s["sockets"].as_object() {
            let list: Vec<String> = k["list"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    let at = x["listen"].as_str().unwrap_or("?");
                    match (x["fd"].as_i64(), x["error"].as_str()) {
                        (Some(fd), _) => format!("{at} fd {fd}"),
                        (None, Some(e)) => format!("{at} unbound: {e}"),
                        (None, None) => format!("{at} unbound"),
                    }
                })
                .collect();
            let mut d = format!("sockets {}", list.join(", "));
            let watched = k["list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["watched"] == true));
            if watched && k["accept"] != true {
                d.push_str(" (starts on the first connection)");
            }
            if let Some(n) = k["instances"].as_u64() {
                d.push_str(&format!(
                    " ({n}/{} instances, {} served)",
                    k["max_connections"], k["served"]
                ));
            }
            detail.push(d);
        }
        if let Some(h) = s["health"].as_object() {
            let mut d = format!("health {}", h["state"].as_str().unwrap_or("?"));
            if let Some(n) = h["failures"].as_u64().filter(|n| *n > 0) {
                d.push_str(&format!(" ({n} failed in a row)"));
            }
            if let Some(o) = h["last_output"].as_str() {
                let first = o.lines().next().unwrap_or("");
                let cut: String = first.chars().take(60).collect();
                d.push_str(&format!(": {cut}"));
            }
            detail.push(d);
        }
        println!(
            "{:<20} {:<9} {:>8} {:>8}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s["restarts"],
            detail.join("; ")
        );
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        println!("config error: {}", e.as_str().unwrap_or("?"));
    }
    if v["last_reload"]["ok"].as_bool() == Some(false) {
        for e in v["last_reload"]["errors"].as_array().into_iter().flatten() {
            println!("last reload rejected: {}", e.as_str().unwrap_or("?"));
        }
    }
    for e in v["lua_errors"].as_array().into_iter().flatten() {
        println!("lua error: {}", e.as_str().unwrap_or("?"));
    }
}

/// Runs `moonlit ctl ARGS`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut socket = default_socket();
    let mut as_json = false;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = p.into(),
                None => return usage("--socket needs a path"),
            },
            "--json" => as_json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            _ => rest.push(a.clone()),
        }
    }
    let Some(cmd) = rest.first().cloned() else {
        return usage("no command");
    };
    let mut req = json!({"v": PROTOCOL_VERSION, "cmd": cmd});
    let mut follow = false;
    match cmd.as_str() {
        "status" => {
            if rest.len() > 2 {
                return usage("status takes at most one service name");
            }
        }
        "start" | "stop" | "restart" => match rest.get(1) {
            Some(n) => req["name"] = json!(n),
            None => return usage(&format!("{cmd} needs a service name")),
        },
        "logs" => {
            let mut i = 1;
            while i < rest.len() {
                match rest[i].as_str() {
                    "-f" | "--follow" => follow = true,
                    "-n" | "--lines" => {
                        i += 1;
                        match rest.get(i).and_then(|n| n.parse::<u64>().ok()) {
                            Some(n) => req["lines"] = json!(n),
                            None => return usage("-n needs a number"),
                        }
                    }
                    n if req.get("name").is_none() => req["name"] = json!(n),
                    other => return usage(&format!("unexpected argument '{other}'")),
                }
                i += 1;
            }
            if req.get("name").is_none() {
                return usage("logs needs a service name");
            }
            req["follow"] = json!(follow);
        }
        "reload" => {
            let mut mods = Vec::new();
            for a in &rest[1..] {
                if a == "--dry-run" || a == "-n" {
                    req["dry_run"] = json!(true);
                } else {
                    mods.push(a.clone());
                }
            }
            req["modules"] = json!(mods);
        }
        "eval" => match rest.get(1) {
            Some(code) if rest.len() == 2 => req["code"] = json!(code),
            _ => return usage("eval takes one argument: the Lua code (quote it)"),
        },
        "reexec" => match rest.get(1).map(String::as_str) {
            Some("--binary") => match rest.get(2) {
                Some(b) => req["binary"] = json!(b),
                None => return usage("--binary needs a path"),
            },
            Some(other) => return usage(&format!("unexpected argument '{other}'")),
            None => {}
        },
        "fault" => match rest.get(1) {
            Some(kind) if rest.len() == 2 => req["kind"] = json!(kind),
            _ => return usage("fault takes one argument: the kind (panic)"),
        },
        "poweroff" | "reboot" | "halt" => {
            if rest.get(1).map(String::as_str) == Some("--code") {
                match rest.get(2).and_then(|c| c.parse::<i64>().ok()) {
                    Some(c) => req["code"] = json!(c),
                    None => return usage("--code needs a number"),
                }
            }
        }
        other => return usage(&format!("unknown command '{other}'")),
    }
    let (reply, mut reader) = match request(&socket, &req) {
        Ok(r) => r,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return code;
        }
    };
    if reply["ok"].as_bool() != Some(true) {
        if as_json {
            println!("{reply}");
        } else if cmd == "reload" {
            for e in reply["errors"].as_array().into_iter().flatten() {
                eprintln!("error: {}", e.as_str().unwrap_or("?"));
            }
        }
        eprintln!(
            "moonlit ctl: {}",
            reply["error"].as_str().unwrap_or("request failed")
        );
        return 1;
    }
    if cmd == "status" {
        if let Some(name) = rest.get(1) {
            let Some(s) = reply["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["name"].as_str() == Some(name.as_str()))
            else {
                eprintln!("moonlit ctl: no service \"{name}\"");
                return 1;
            };
            if as_json {
                println!("{s}");
            } else {
                print_service(s);
            }
            return 0;
        }
    }
    if as_json {
        println!("{reply}");
    } else {
        match cmd.as_str() {
            "status" => print_status(&reply),
            "reload" => print_reload(&reply),
            "eval" => {
                for r in reply["results"].as_array().into_iter().flatten() {
                    println!("{}", r.as_str().unwrap_or(""));
                }
            }
            "logs" => {
                for l in reply["lines"].as_array().into_iter().flatten() {
                    println!("{}", l.as_str().unwrap_or(""));
                }
            }
            _ => {
                if let Some(m) = reply["message"].as_str() {
                    println!("{m}");
                }
            }
        }
    }
    if follow {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if as_json {
                        print!("{line}");
                    } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        println!("{}", v["log"].as_str().unwrap_or(""));
                    }
                }
            }
        }
    }
    0
}

fn print_reload(v: &Value) {
    if let Some(m) = v["message"].as_str() {
        println!("{m} (generation {})", v["generation"]);
        return;
    }
    let dry = v["dry_run"].as_bool() == Some(true);
    println!(
        "{} generation {}; modules changed: {}",
        if dry { "dry run against" } else { "now at" },
        v["generation"],
        v["changed"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    if let Some(r) = v["removed"].as_array().filter(|a| !a.is_empty()) {
        println!(
            "modules removed: {}",
            r.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (name, o) in v["services"].as_object().into_iter().flatten() {
        println!("  {name:<20} {}", o.as_str().unwrap_or("?"));
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("moonlit ctl: {msg}\n{USAGE}");
    2
}

/// "12.3M"-style bytes for the status table.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1}{unit}")
}
