//! The schema of a service's cgroup v2 limits (`cgroup = { ... }`).
//!
//! Owns: their typed form, validation (errors are plain messages; `plan.rs`
//! adds the declaration's `file:line`) and the interface file each one is
//! written to, with the value the kernel expects. Knows nothing of the
//! cgroup filesystem: the init writes the files and checks that each
//! controller is there.

use mlua::Value;
use serde::Serialize;

use crate::health_logs::{describe, parse_size};

/// A byte count or an integer that may also be "max" (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Amount {
    Max,
    Of(u64),
}

impl Amount {
    fn file_value(self) -> String {
        match self {
            Amount::Max => "max".into(),
            Amount::Of(n) => n.to_string(),
        }
    }
}

/// `cpu.max`: at most `quota` microseconds of CPU per `period` (None: no
/// quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuMax {
    pub quota: Option<u64>,
    pub period: u64,
}

/// `cgroup = { memory_max = "256M", cpu_weight = 100, ... }`; an unset key
/// leaves the kernel's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CgroupLimits {
    pub memory_max: Option<Amount>,
    pub memory_high: Option<Amount>,
    pub swap_max: Option<Amount>,
    pub cpu_weight: Option<u64>,
    pub cpu_max: Option<CpuMax>,
    pub pids_max: Option<Amount>,
    pub io_weight: Option<u64>,
}

/// One limit as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The Lua key ("memory_max").
    pub key: &'static str,
    /// The interface file ("memory.max").
    pub file: &'static str,
    /// The controller that provides the file ("memory").
    pub controller: &'static str,
    /// What is written: the limit, or the kernel's default when unset.
    pub value: String,
    /// The key was given.
    pub set: bool,
}

pub const KEYS: &[&str] = &[
    "memory_max",
    "memory_high",
    "swap_max",
    "cpu_weight",
    "cpu_max",
    "pids_max",
    "io_weight",
];

/// The default CFS period, as the kernel's.
const DEFAULT_PERIOD: u64 = 100_000;

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == CgroupLimits::default()
    }

    /// Every limit with its file and value (defaults for unset keys, so a
    /// key removed by a reload is put back to the kernel's default).
    pub fn settings(&self) -> Vec<Setting> {
        let amount = |a: Option<Amount>| a.map(Amount::file_value);
        let rows: [(
            &'static str,
            &'static str,
            &'static str,
            Option<String>,
            &str,
        ); 7] = [
            (
                "memory_max",
                "memory.max",
                "memory",
                amount(self.memory_max),
                "max",
            ),
            (
                "memory_high",
                "memory.high",
                "memory",
                amount(self.memory_high),
                "max",
            ),
            (
                "swap_max",
                "memory.swap.max",
                "memory",
                amount(self.swap_max),
                "max",
            ),
            (
                "cpu_weight",
                "cpu.weight",
                "cpu",
                self.cpu_weight.map(|w| w.to_string()),
                "100",
            ),
            (
                "cpu_max",
                "cpu.max",
                "cpu",
                self.cpu_max.map(|c| {
                    let q = c.quota.map_or("max".to_string(), |q| q.to_string());
                    format!("{q} {}", c.period)
                }),
                "max 100000",
            ),
            ("pids_max", "pids.max", "pids", amount(self.pids_max), "max"),
            (
                "io_weight",
                "io.weight",
                "io",
                self.io_weight.map(|w| format!("default {w}")),
                "default 100",
            ),
        ];
        rows.into_iter()
            .map(|(key, file, controller, v, default)| Setting {
                key,
                file,
                controller,
                set: v.is_some(),
                value: v.unwrap_or_else(|| default.to_string()),
            })
            .collect()
    }

    /// The settings that differ from `old` (what a reload writes).
    pub fn changes_from(&self, old: &CgroupLimits) -> Vec<Setting> {
        let before = old.settings();
        self.settings()
            .into_iter()
            .zip(before)
            .filter(|(new, old)| new.value != old.value)
            .map(|(new, _)| new)
            .collect()
    }
}

/// Reads `cgroup = { ... }`.
pub fn parse_cgroup(v: Value) -> Result<CgroupLimits, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "cgroup must be a table like {{ memory_max = \"256M\", pids_max = 64 }}, got {}",
            v.type_name()
        ));
    };
    let mut out = CgroupLimits::default();
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair.map_err(|e| format!("cgroup: {e}"))?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "cgroup: keys must be names, got {}",
                    other.type_name()
                ))
            }
        };
        let at = |m: String| format!("cgroup.{key}: {m}");
        match key.as_str() {
            "memory_max" => out.memory_max = Some(size_or_max(&val).map_err(at)?),
            "memory_high" => out.memory_high = Some(size_or_max(&val).map_err(at)?),
            "swap_max" => out.swap_max = Some(size_or_max(&val).map_err(at)?),
            "cpu_weight" => out.cpu_weight = Some(weight(&val).map_err(at)?),
            "io_weight" => out.io_weight = Some(weight(&val).map_err(at)?),
            "cpu_max" => out.cpu_max = Some(cpu_max(&val).map_err(at)?),
            "pids_max" => {
                out.pids_max = Some(match &val {
                    Value::Integer(n) if *n >= 1 => Amount::Of(*n as u64),
                    Value::String(s) if s.to_string_lossy().eq_ignore_ascii_case("max") => {
                        Amount::Max
                    }
                    other => {
                        return Err(at(format!(
                            "expected a number of processes (at least 1) or \"max\", got {}",
                            describe(other)
                        )))
                    }
                })
            }
            other => {
                return Err(format!(
                    "cgroup: unknown key '{other}' (known: {})",
                    KEYS.join(", ")
                ))
            }
        }
    }
    Ok(out)
}

fn size_or_max(v: &Value) -> Result<Amount, String> {
    if let Value::String(s) = v {
        if s.to_string_lossy().eq_ignore_ascii_case("max") {
            return Ok(Amount::Max);
        }
    }
    parse_size(v)
        .map(Amount::Of)
        .map_err(|e| format!("{e}, or \"max\""))
}

fn weight(v: &Value) -> Result<u64, String> {
    match v {
        Value::Integer(n) if (1..=10_000).contains(n) => Ok(*n as u64),
        other => Err(format!(
            "expected a weight from 1 to 10000 (100 is the default), got {}",
            describe(other)
        )),
    }
}

/// "QUOTA PERIOD", "max", "max PERIOD", "QUOTA" (period 100000) or "N%" of
/// one CPU.
fn cpu_max(v: &Value) -> Result<CpuMax, String> {
    let bad = || {
        format!(
            "expected \"QUOTA PERIOD\" in microseconds (\"50000 100000\"), \"max\" or a share of one CPU (\"50%\"), got {}",
            describe(v)
        )
    };
    let Value::String(s) = v else {
        return Err(bad());
    };
    let s = s.to_string_lossy();
    let s = s.trim();
    if let Some(pct) = s.strip_suffix('%') {
        let p: u64 = pct.trim().parse().map_err(|_| bad())?;
        if p == 0 {
            return Err(bad());
        }
        return Ok(CpuMax {
            quota: Some(p * DEFAULT_PERIOD / 100),
            period: DEFAULT_PERIOD,
        });
    }
    let mut parts = s.split_whitespace();
    let quota = match parts.next().ok_or_else(bad)? {
        q if q.eq_ignore_ascii_case("max") => None,
        q => Some(q.parse::<u64>().map_err(|_| bad())?),
    };
    let period = match parts.next() {
        Some(p) => p.parse::<u64>().map_err(|_| bad())?,
        None => DEFAULT_PERIOD,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    // The kernel's bounds: period 1 ms .. 1 s, quota at least 1 ms.
    if !(1_000..=1_000_000).contains(&period) {
        return Err(format!(
            "the period must be from 1000 to 1000000 microseconds, got {period}"
        ));
    }
    if quota.is_some_and(|q| q < 1_000) {
        return Err(format!(
            "the quota must be at least 1000 microseconds, got {}",
            quota.unwrap_or_default()
        ));
    }
    Ok(CpuMax { quota, period })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    fn parse(src: &str) -> Result<CgroupLimits, String> {
        let lua = Lua::new();
        let v: Value = lua.load(src).eval().unwrap();
        parse_cgroup(v)
    }

    #[test]
    fn reads_every_key() {
        let l = parse(
            r#"{ memory_max = "256M", memory_high = "200M", swap_max = 0, cpu_weight = 50,
                 cpu_max = "50000 100000", pids_max = 64, io_weight = 200 }"#,
        )
        .unwrap();
        let files: Vec<(&str, String)> = l
            .settings()
            .into_iter()
            .filter(|s| s.set)
            .map(|s| (s.file, s.value))
            .collect();
        assert_eq!(
            files,
            vec![
                ("memory.max", (256u64 << 20).to_string()),
                ("memory.high", (200u64 << 20).to_string()),
                ("memory.swap.max", "0".to_string()),
                ("cpu.weight", "50".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                ("pids.max", "64".to_string()),
                ("io.weight", "default 200".to_string()),
            ]
        );
    }

    #[test]
    fn cpu_max_forms() {
        let q = |s: &str| cpu_max(&Lua::new().create_string(s).map(Value::String).unwrap());
        assert_eq!(
            q("50%").unwrap(),
            CpuMax {
                quota: Some(50_000),
                period: 100_000
            }
        );
        assert_eq!(
            q("max").unwrap(),
            CpuMax {
                quota: None,
                period: 100_000
            }
        );
        assert_eq!(
            q("max 20000").unwrap(),
            CpuMax {
                quota: None,
                period: 20_000
            }
        );
        assert!(q("50000 10").is_err());
        assert!(q("fast").is_err());
        assert!(q("1 2 3").is_err());
    }

    #[test]
    fn bad_input_is_named() {
        let e = parse(r#"{ memory_maxx = "1G" }"#).unwrap_err();
        assert!(
            e.contains("unknown key 'memory_maxx'") && e.contains("memory_max"),
            "{e}"
        );
        let e = parse(r#"{ memory_max = "lots" }"#).unwrap_err();
        assert!(e.starts_with("cgroup.memory_max: bad size \"lots\""), "{e}");
        let e = parse(r#"{ cpu_weight = 0 }"#).unwrap_err();
        assert!(
            e.contains("cgroup.cpu_weight") && e.contains("1 to 10000"),
            "{e}"
        );
        let e = parse(r#"{ pids_max = 0 }"#).unwrap_err();
        assert!(e.contains("cgroup.pids_max"), "{e}");
        assert!(parse("5").unwrap_err().contains("cgroup must be a table"));
    }

    #[test]
    fn changes_write_defaults_back() {
        let a = parse(r#"{ cpu_weight = 50, pids_max = 10 }"#).unwrap();
        let b = parse(r#"{ cpu_weight = 300 }"#).unwrap();
        let ch: Vec<(&str, String)> = b
            .changes_from(&a)
            .into_iter()
            .map(|s| (s.file, s.value))
            .collect();
        assert_eq!(
            ch,
            vec![("cpu.weight", "300".into()), ("pids.max", "max".into())]
        );
        assert!(b.changes_from(&b).is_empty());
    }
}
