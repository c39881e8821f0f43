//! The schema of two service settings that PID 1 carries out after the
//! start: health checks (`health = { ... }`) and log files with rotation
//! (`log_file = { ... }`).
//!
//! Owns: their typed form, defaults and validation (errors are plain
//! messages; `plan.rs` adds the declaration's `file:line`), and the size
//! syntax ("512K", "10M", "1G", bytes). Knows nothing of probes or files:
//! the init performs both.

use std::time::Duration;

use mlua::Value;
use serde::Serialize;

/// How a health probe is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthProbe {
    /// A program run as the service's user, in its directory and
    /// environment; healthy when it exits 0 within the timeout.
    Exec { argv: Vec<String> },
    /// Healthy when a TCP connection to `host:port` succeeds in time.
    Tcp { host: String, port: u16 },
    /// Healthy when this path exists.
    Path { path: String },
}

/// What `retries` consecutive failed probes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthAction {
    /// The service is stopped its normal way and started again (a restart).
    Restart,
    /// The service is only marked unhealthy (status, `on_health`).
    Mark,
}

/// `health = { exec = {...} | tcp = PORT | path = FILE, every = 10,
/// timeout = 2, retries = 3, action = "restart" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// Between the end of one probe and the start of the next (the first
    /// comes this long after the service is ready).
    pub every: Duration,
    /// A probe not done by then has failed (an exec probe is killed).
    pub timeout: Duration,
    /// Consecutive failures that make the service unhealthy.
    pub retries: u32,
    pub action: HealthAction,
}

/// `log_file = { path = ..., max_size = "10M", keep = 5 }`: when a line would
/// take the file past `max_size`, the file becomes `path.1` (`.1` becomes
/// `.2` and so on up to `keep`; the oldest goes) and a new one is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogRotate {
    pub max_size: u64,
    pub keep: u32,
}

/// The smallest `max_size`: a line (cut at 8 KiB) with its timestamp always
/// fits, so no file ever exceeds its `max_size`.
pub const MIN_LOG_SIZE: u64 = 16 * 1024;
/// The most rotated files kept.
pub const MAX_KEEP: u32 = 100;

/// Reads a byte count: an integer, or a string of digits with an optional
/// `K`, `M`, `G` (powers of 1024, `KiB` style spellings and a trailing `B`
/// accepted, any case).
pub fn parse_size(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Integer(n) if *n >= 0 => return Ok(*n as u64),
        Value::String(s) => s.to_string_lossy(),
        other => {
            return Err(format!(
                "a size must be a byte count or a string like \"10M\", got {}",
                describe(other)
            ))
        }
    };
    size_of_str(&s).ok_or_else(|| {
        format!("bad size \"{s}\": expected digits with an optional K, M or G (\"512K\", \"10M\", \"1G\")")
    })
}

fn size_of_str(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A value as an error message shows it (numbers and strings as written).
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{}\"", s.to_string_lossy()),
        other => other.type_name().to_string(),
    }
}

fn absolute(key: &str, v: Value) -> Result<String, String> {
    let p = match v {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| format!("{key} must be valid UTF-8"))?,
        other => return Err(format!("{key} must be a string, got {}", describe(&other))),
    };
    if !p.starts_with('/') {
        return Err(format!("{key} must be an absolute path, got \"{p}\""));
    }
    Ok(p)
}

fn seconds(key: &str, v: &Value, min: f64) -> Result<Duration, String> {
    let n = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        other => {
            return Err(format!(
                "{key} must be a number of seconds, got {}",
                describe(other)
            ))
        }
    };
    if !(min..=1e6).contains(&n) {
        return Err(format!(
            "{key} must be between {min} and 1e6 seconds, got {n}"
        ));
    }
    Ok(Duration::from_secs_f64(n))
}

fn table_pairs(key: &str, v: Value) -> Result<Vec<(String, Value)>, String> {
    let Value::Table(t) = v else {
        return Err(format!("{key} must be a table, got {}", describe(&v)));
    };
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair.map_err(|e| format!("{key}: {e}"))?;
        match k {
            Value::String(s) => out.push((s.to_string_lossy(), val)),
            other => {
                return Err(format!(
                    "{key}: unexpected key {} (settings are name = value)",
                    describe(&other)
                ))
            }
        }
    }
    Ok(out)
}

/// The file, rotation and timestamps of a `log_file` setting: a plain path
/// (appended to, never rotated) or `{ path = ..., max_size = "10M",
/// keep = 5, timestamps = false }` (rotation when `max_size` is given;
/// `keep` defaults to 5).
pub fn parse_log_file(v: Value) -> Result<(String, Option<LogRotate>, bool), String> {
    if matches!(v, Value::String(_)) {
        return Ok((absolute("log_file", v)?, None, false));
    }
    if !matches!(v, Value::Table(_)) {
        return Err(format!(
            "log_file must be a path or a table like {{ path = \"/var/log/app.log\", max_size = \"10M\", keep = 5 }}, got {}",
            describe(&v)
        ));
    }
    let mut path = None;
    let mut max_size = None;
    let mut keep = None;
    let mut timestamps = false;
    for (k, val) in table_pairs("log_file", v)? {
        match k.as_str() {
            "path" => path = Some(absolute("log_file.path", val)?),
            "max_size" => {
                let n = parse_size(&val).map_err(|e| format!("log_file.max_size: {e}"))?;
                if n < MIN_LOG_SIZE {
                    return Err(format!(
                        "log_file.max_size must be at least {} KiB (a whole line always fits), got {n} bytes",
                        MIN_LOG_SIZE >> 10
                    ));
                }
                max_size = Some(n);
            }
            "keep" => {
                keep = Some(match val {
                    Value::Integer(i) if (1..=i64::from(MAX_KEEP)).contains(&i) => i as u32,
                    other => {
                        return Err(format!(
                            "log_file.keep must be a whole number from 1 to {MAX_KEEP}, got {}",
                            describe(&other)
                        ))
                    }
                })
            }
            "timestamps" => {
                timestamps = match val {
                    Value::Boolean(b) => b,
                    other => {
                        return Err(format!(
                            "log_file.timestamps must be true or false, got {}",
                            describe(&other)
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "log_file: unknown key '{other}' (expected one of: path, max_size, keep, timestamps)"
                ))
            }
        }
    }
    let path = path.ok_or("log_file needs path = \"/absolute/file\"")?;
    let rotate = match (max_size, keep) {
        (Some(max_size), keep) => Some(LogRotate {
            max_size,
            keep: keep.unwrap_or(5),
        }),
        (None, Some(_)) => return Err("log_file.keep goes with max_size (when to rotate)".into()),
        (None, None) => None,
    };
    Ok((path, rotate, timestamps))
}

/// Reads `health = { ... }`.
pub fn parse_health(v: Value) -> Result<HealthCheck, String> {
    let mut probes = Vec::new();
    let mut host = None;
    let mut every = Duration::from_secs(10);
    let mut timeout = Duration::from_secs(2);
    let mut retries = 3;
    let mut action = HealthAction::Restart;
    for (k, val) in table_pairs("health", v)? {
        match k.as_str() {
            "exec" => {
                let argv = match val {
                    Value::String(s) => vec![s.to_string_lossy()],
                    Value::Table(t) => {
                        let mut argv = Vec::new();
                        for i in 1..=t.raw_len() {
                            match t.raw_get::<Value>(i).map_err(|e| format!("health.exec: {e}"))? {
                                Value::String(s) => argv.push(s.to_string_lossy()),
                                Value::Integer(n) => argv.push(n.to_string()),
                                Value::Number(n) => argv.push(n.to_string()),
                                other => {
                                    return Err(format!(
                                        "health.exec[{i}] must be a string, got {}",
                                        describe(&other)
                                    ))
                                }
                            }
                        }
                        argv
                    }
                    other => {
                        return Err(format!(
                            "health.exec must be a list like {{ \"/bin/check\", \"--quick\" }}, got {}",
                            describe(&other)
                        ))
                    }
                };
                if argv.is_empty() {
                    return Err("health.exec must not be empty".into());
                }
                probes.push(HealthProbe::Exec { argv });
            }
            "tcp" => {
                let port = match val {
                    Value::Integer(p) if (1..=65535).contains(&p) => p as u16,
                    other => {
                        return Err(format!(
                            "health.tcp must be a port number, got {}",
                            describe(&other)
                        ))
                    }
                };
                probes.push(HealthProbe::Tcp {
                    host: String::new(),
                    port,
                });
            }
            "host" => {
                // An address, not a name: PID 1 never waits on DNS.
                let h = match val {
                    Value::String(s) => s.to_string_lossy(),
                    other => {
                        return Err(format!(
                            "health.host must be an IP address, got {}",
                            describe(&other)
                        ))
                    }
                };
                if h.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("health.host must be an IP address, got \"{h}\""));
                }
                host = Some(h);
            }
            "path" => probes.push(HealthProbe::Path {
                path: absolute("health.path", val)?,
            }),
            "every" => every = seconds("health.every", &val, 0.05)?,
            "timeout" => timeout = seconds("health.timeout", &val, 0.01)?,
            "retries" => {
                retries = match val {
                    Value::Integer(i) if (1..=1000).contains(&i) => i as u32,
                    other => {
                        return Err(format!(
                            "health.retries must be a whole number from 1 to 1000, got {}",
                            describe(&other)
                        ))
                    }
                }
            }
            "action" => {
                action = match &val {
                    Value::String(s) if s.to_string_lossy() == "restart" => HealthAction::Restart,
                    Value::String(s) if s.to_string_lossy() == "mark" => HealthAction::Mark,
                    other => {
                        return Err(format!(
                            "health.action must be \"restart\" or \"mark\", got {}",
                            describe(other)
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "health: unknown key '{other}' (expected one of: exec, tcp, host, path, every, timeout, retries, action)"
                ))
            }
        }
    }
    let mut probe =
        match probes.len() {
            1 => probes.remove(0),
            0 => return Err(
                "health needs exec = {...}, tcp = PORT or path = FILE (e.g. health = { tcp = 80 })"
                    .into(),
            ),
            _ => return Err("health takes one of exec, tcp or path, not several".into()),
        };
    match (&mut probe, host) {
        (HealthProbe::Tcp { host, .. }, h) => *host = h.unwrap_or_else(|| "127.0.0.1".into()),
        (_, Some(_)) => return Err("health.host goes with tcp".into()),
        (_, None) => {}
    }
    Ok(HealthCheck {
        probe,
        every,
        timeout,
        retries,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, n) in [
            ("512K", 512 << 10),
            ("10M", 10 << 20),
            ("1G", 1 << 30),
            ("1048576", 1 << 20),
            (" 2m ", 2 << 20),
            ("3KiB", 3 << 10),
            ("7B", 7),
        ] {
            assert_eq!(size_of_str(s), Some(n), "{s}");
        }
        for s in [
            "",
            "M",
            "10X",
            "1.5M",
            "-1",
            "10 MM",
            "99999999999999999999G",
        ] {
            assert_eq!(size_of_str(s), None, "{s}");
        }
    }
}
