//! The handover decoders of the configuration's types ([`Decode`]): each reads
//! what the type's derived `Serialize` writes (see `moonlit_net::json_decode`
//! for the rules). A field that carried `#[serde(default)]` before these
//! replaced the derived `Deserialize` keeps its default here: older
//! versions' documents lack it.

use moonlit_net::deserialize_by_decode;
use moonlit_net::json_decode::{
    content, fields, unknown_variant, variant, Decode, Obj, Result, Value,
};

use crate::cgroup_limits::{Amount, CgroupLimits, CpuMax};
use crate::error::{ConfigError, ErrorKind};
use crate::health_logs::{HealthAction, HealthCheck, HealthProbe, LogRotate};
use crate::plan::{
    default_ready_timeout, Backoff, Burst, Limit, OnChange, Readiness, RestartPolicy, ServiceSpec,
};
use crate::sockets::{Activation, Listen, SocketKind, SocketSpec, DEFAULT_MAX_CONNECTIONS};
use crate::spawn::{ExitStatus, Isolation, Namespace};
use crate::timers::TimerSpec;

deserialize_by_decode!(
    Amount,
    CpuMax,
    CgroupLimits,
    ErrorKind,
    ConfigError,
    HealthProbe,
    HealthAction,
    HealthCheck,
    LogRotate,
    RestartPolicy,
    OnChange,
    Backoff,
    Burst,
    Readiness,
    ServiceSpec,
    Limit,
    Listen,
    SocketKind,
    SocketSpec,
    Activation,
    Namespace,
    Isolation,
    ExitStatus,
    TimerSpec,
);

/// A unit-only enum: its variant is one of `names`, in declaration order.
fn unit<T: Copy>(v: &Value, what: &str, names: &[&str], values: &[T]) -> Result<T> {
    let (name, _) = variant(v, what)?;
    names
        .iter()
        .position(|n| *n == name)
        .map(|i| values[i])
        .ok_or_else(|| unknown_variant(name, what))
}

impl Decode for Amount {
    fn decode(v: &Value) -> Result<Self> {
        match variant(v, "a cgroup amount")? {
            ("max", _) => Ok(Amount::Max),
            ("of", c) => Ok(Amount::Of(u64::decode(content("of", c)?)?)),
            (name, _) => Err(unknown_variant(name, "a cgroup amount")),
        }
    }
}

impl Decode for CpuMax {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a cpu.max")?;
        Ok(CpuMax {
            quota: o.get("quota")?,
            period: o.get("period")?,
        })
    }
}

impl Decode for CgroupLimits {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "cgroup limits")?;
        Ok(CgroupLimits {
            memory_max: o.get("memory_max")?,
            memory_high: o.get("memory_high")?,
            swap_max: o.get("swap_max")?,
            cpu_weight: o.get("cpu_weight")?,
            cpu_max: o.get("cpu_max")?,
            pids_max: o.get("pids_max")?,
            io_weight: o.get("io_weight")?,
        })
    }
}

impl Decode for ErrorKind {
    fn decode(v: &Value) -> Result<Self> {
        use ErrorKind::*;
        unit(
            v,
            "an error kind",
            &[
                "io",
                "syntax",
                "runtime",
                "limit",
                "schema",
                "duplicate",
                "dependency",
                "cycle",
                "internal",
            ],
            &[
                Io, Syntax, Runtime, Limit, Schema, Duplicate, Dependency, Cycle, Internal,
            ],
        )
    }
}

impl Decode for ConfigError {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a config error")?;
        Ok(ConfigError {
            kind: o.get("kind")?,
            module: o.get("module")?,
            message: o.get("message")?,
        })
    }
}

impl Decode for HealthProbe {
    fn decode(v: &Value) -> Result<Self> {
        let what = "a health probe";
        let (name, c) = variant(v, what)?;
        Ok(match name {
            "exec" => HealthProbe::Exec {
                argv: fields(name, c, what)?.get("argv")?,
            },
            "tcp" => {
                let o = fields(name, c, what)?;
                HealthProbe::Tcp {
                    host: o.get("host")?,
                    port: o.get("port")?,
                }
            }
            "path" => HealthProbe::Path {
                path: fields(name, c, what)?.get("path")?,
            },
            _ => return Err(unknown_variant(name, what)),
        })
    }
}

impl Decode for HealthAction {
    fn decode(v: &Value) -> Result<Self> {
        use HealthAction::*;
        unit(v, "a health action", &["restart", "mark"], &[Restart, Mark])
    }
}

impl Decode for HealthCheck {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a health check")?;
        Ok(HealthCheck {
            probe: o.get("probe")?,
            every: o.get("every")?,
            timeout: o.get("timeout")?,
            retries: o.get("retries")?,
            action: o.get("action")?,
        })
    }
}

impl Decode for LogRotate {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a log rotation")?;
        Ok(LogRotate {
            max_size: o.get("max_size")?,
            keep: o.get("keep")?,
        })
    }
}

impl Decode for RestartPolicy {
    fn decode(v: &Value) -> Result<Self> {
        use RestartPolicy::*;
        let names = ["always", "on-failure", "never"];
        unit(v, "a restart policy", &names, &[Always, OnFailure, Never])
    }
}

impl Decode for OnChange {
    fn decode(v: &Value) -> Result<Self> {
        use OnChange::*;
        let names = ["restart", "reload", "defer"];
        unit(v, "an on_change", &names, &[Restart, Reload, Defer])
    }
}

impl Decode for Backoff {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a backoff")?;
        Ok(Backoff {
            initial: o.get("initial")?,
            max: o.get("max")?,
            reset_after: o.get("reset_after")?,
        })
    }
}

impl Decode for Burst {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a burst limit")?;
        Ok(Burst {
            count: o.get("count")?,
            interval: o.get("interval")?,
        })
    }
}

impl Decode for Readiness {
    fn decode(v: &Value) -> Result<Self> {
        let what = "a readiness";
        let (name, c) = variant(v, what)?;
        Ok(match name {
            "started" => Readiness::Started,
            "notify" => Readiness::Notify,
            "tcp" => {
                let o = fields(name, c, what)?;
                Readiness::Tcp {
                    host: o.get("host")?,
                    port: o.get("port")?,
                }
            }
            "path" => Readiness::Path {
                path: fields(name, c, what)?.get("path")?,
            },
            _ => return Err(unknown_variant(name, what)),
        })
    }
}

impl Decode for ServiceSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a service spec")?;
        Ok(ServiceSpec {
            name: o.get("name")?,
            location: o.get("location")?,
            description: o.get("description")?,
            exec: o.get("exec")?,
            env: o.get("env")?,
            cwd: o.get("cwd")?,
            user: o.get("user")?,
            group: o.get("group")?,
            umask: o.get("umask")?,
            limits: o.or_default("limits")?,
            restart: o.get("restart")?,
            stop_signal: o.get("stop_signal")?,
            stop_timeout: o.get("stop_timeout")?,
            reload_signal: o.get("reload_signal")?,
            after: o.get("after")?,
            requires: o.get("requires")?,
            oneshot: o.get("oneshot")?,
            main: o.get("main")?,
            enabled: o.get("enabled")?,
            on_change: o.get("on_change")?,
            backoff: o.get("backoff")?,
            burst: o.get("burst")?,
            log_file: o.get("log_file")?,
            log_buffer: o.get("log_buffer")?,
            console: o.get("console")?,
            readiness: o.or_default("readiness")?,
            ready_timeout: o.or_else("ready_timeout", default_ready_timeout)?,
            passthrough: o.or_default("passthrough")?,
            env_inherit: o.or_default("env_inherit")?,
            env_file: o.or_default("env_file")?,
            sandbox: o.or_default("sandbox")?,
            log_rotate: o.get("log_rotate")?,
            log_timestamps: o.or_default("log_timestamps")?,
            health: o.get("health")?,
            forking: o.or_default("forking")?,
            pid_file: o.get("pid_file")?,
            cgroup: o.or_default("cgroup")?,
            on_demand: o.or_default("on_demand")?,
            timer: o.get("timer")?,
            activation: o.or_default("activation")?,
        })
    }
}

impl Decode for Limit {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a resource limit")?;
        Ok(Limit {
            soft: o.get("soft")?,
            hard: o.get("hard")?,
        })
    }
}

impl Decode for Listen {
    fn decode(v: &Value) -> Result<Self> {
        match variant(v, "a listen address")? {
            ("inet", c) => Ok(Listen::Inet(Decode::decode(content("inet", c)?)?)),
            ("unix", c) => Ok(Listen::Unix(Decode::decode(content("unix", c)?)?)),
            (name, _) => Err(unknown_variant(name, "a listen address")),
        }
    }
}

impl Decode for SocketKind {
    fn decode(v: &Value) -> Result<Self> {
        use SocketKind::*;
        let names = ["stream", "dgram", "seqpacket"];
        unit(v, "a socket kind", &names, &[Stream, Dgram, Seqpacket])
    }
}

impl Decode for SocketSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a socket")?;
        Ok(SocketSpec {
            listen: o.get("listen")?,
            kind: o.or_default("kind")?,
            name: o.get("name")?,
            backlog: o.get("backlog")?,
            mode: o.get("mode")?,
            owner: o.get("owner")?,
            group: o.get("group")?,
        })
    }
}

impl Decode for Activation {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a socket activation")?;
        Ok(Activation {
            sockets: o.or_default("sockets")?,
            lazy: o.or_default("lazy")?,
            accept: o.or_default("accept")?,
            max_connections: o.or_else("max_connections", || DEFAULT_MAX_CONNECTIONS)?,
        })
    }
}

impl Decode for Namespace {
    fn decode(v: &Value) -> Result<Self> {
        use Namespace::*;
        let names = ["net", "mount", "pid", "uts", "ipc"];
        unit(v, "a namespace", &names, &[Net, Mount, Pid, Uts, Ipc])
    }
}

impl Decode for Isolation {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a sandbox")?;
        Ok(Isolation {
            capabilities: o.get("capabilities")?,
            no_new_privs: o.get("no_new_privs")?,
            namespaces: o.get("namespaces")?,
            private_tmp: o.get("private_tmp")?,
            root: o.get("root")?,
            read_only_paths: o.get("read_only_paths")?,
        })
    }
}

impl Decode for ExitStatus {
    fn decode(v: &Value) -> Result<Self> {
        match variant(v, "an exit status")? {
            ("Exited", c) => Ok(ExitStatus::Exited(i32::decode(content("Exited", c)?)?)),
            ("Signaled", c) => Ok(ExitStatus::Signaled(i32::decode(content("Signaled", c)?)?)),
            (name, _) => Err(unknown_variant(name, "an exit status")),
        }
    }
}

impl Decode for TimerSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a timer")?;
        Ok(TimerSpec {
            calendar: o.get("calendar")?,
            on_boot: o.get("on_boot")?,
            every: o.get("every")?,
            persistent: o.get("persistent")?,
            randomized_delay: o.get("randomized_delay")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use moonlit_net::json_decode::{round_trips, Decode};
    use serde_json::json;

    use super::*;
    use crate::sockets::parse_listen;

    /// A spec with every optional part present and no field at its default.
    fn full_spec() -> ServiceSpec {
        let mut s = ServiceSpec::new("web", "web.lua:3");
        s.description = Some("the web".into());
        s.exec = vec!["/bin/web".into(), "-v".into()];
        s.env.insert("A".into(), "1".into());
        s.cwd = Some("/srv".into());
        s.user = Some("www".into());
        s.group = Some("www".into());
        s.umask = Some(0o22);
        s.limits.insert(
            "nofile".into(),
            Limit {
                soft: Some(10),
                hard: None,
            },
        );
        s.restart = RestartPolicy::OnFailure;
        s.stop_signal = 3;
        s.stop_timeout = Duration::new(7, 250_000_000);
        s.reload_signal = 10;
        s.after = vec!["db".into()];
        s.requires = vec!["db".into()];
        s.oneshot = true;
        s.main = true;
        s.enabled = false;
        s.on_change = OnChange::Defer;
        s.backoff = Backoff {
            initial: Duration::from_millis(3),
            max: Duration::from_secs(9),
            reset_after: Duration::from_secs(60),
        };
        s.burst = Burst {
            count: 4,
            interval: Duration::from_secs(5),
        };
        s.log_file = Some("/var/log/web".into());
        s.log_buffer = 77;
        s.console = true;
        s.readiness = Readiness::Tcp {
            host: "127.0.0.1".into(),
            port: 80,
        };
        s.ready_timeout = Duration::from_secs(3);
        s.passthrough = true;
        s.env_inherit = vec!["PATH".into()];
        s.env_file = vec!["/etc/web.env".into()];
        s.sandbox = Isolation {
            capabilities: Some(1 << 10),
            no_new_privs: true,
            namespaces: vec![
                Namespace::Net,
                Namespace::Mount,
                Namespace::Pid,
                Namespace::Uts,
                Namespace::Ipc,
            ],
            private_tmp: true,
            root: Some("/srv/root".into()),
            read_only_paths: vec!["/etc".into()],
        };
        s.log_rotate = Some(LogRotate {
            max_size: 1 << 20,
            keep: 3,
        });
        s.log_timestamps = true;
        s.health = Some(HealthCheck {
            probe: HealthProbe::Tcp {
                host: "::1".into(),
                port: 8080,
            },
            every: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            retries: 5,
            action: HealthAction::Mark,
        });
        s.forking = true;
        s.pid_file = Some("/run/web.pid".into());
        s.cgroup = CgroupLimits {
            memory_max: Some(Amount::Of(1 << 30)),
            memory_high: Some(Amount::Max),
            swap_max: Some(Amount::Of(0)),
            cpu_weight: Some(50),
            cpu_max: Some(CpuMax {
                quota: Some(50_000),
                period: 100_000,
            }),
            pids_max: Some(Amount::Max),
            io_weight: Some(10),
        };
        s.on_demand = true;
        s.timer = Some(TimerSpec {
            calendar: vec!["*-*-* 03:00".into()],
            on_boot: Some(Duration::from_secs(60)),
            every: Some(Duration::from_secs(3600)),
            persistent: true,
            randomized_delay: Duration::from_secs(30),
        });
        s.activation = Activation {
            sockets: vec![SocketSpec {
                listen: parse_listen("127.0.0.1:8080").expect("inet"),
                kind: SocketKind::Seqpacket,
                name: "web".into(),
                backlog: 16,
                mode: Some(0o660),
                owner: Some("www".into()),
                group: Some("www".into()),
            }],
            lazy: true,
            accept: true,
            max_connections: 9,
        };
        s
    }

    #[test]
    fn every_field_and_variant_reads_back_as_written() {
        let full = full_spec();
        assert_eq!(round_trips(&full), Ok(()));
        assert_ne!(
            full,
            ServiceSpec::new("web", "web.lua:3"),
            "the sample is not a default"
        );
        assert_eq!(round_trips(&ServiceSpec::new("x", "y")), Ok(()));
        for r in [
            Readiness::Started,
            Readiness::Notify,
            Readiness::Path {
                path: "/run/r".into(),
            },
        ] {
            assert_eq!(round_trips(&r), Ok(()));
        }
        for p in [
            HealthProbe::Exec {
                argv: vec!["true".into()],
            },
            HealthProbe::Path { path: "/ok".into() },
        ] {
            assert_eq!(round_trips(&p), Ok(()));
        }
        for r in [RestartPolicy::Always, RestartPolicy::Never] {
            assert_eq!(round_trips(&r), Ok(()));
        }
        for c in [OnChange::Restart, OnChange::Reload] {
            assert_eq!(round_trips(&c), Ok(()));
        }
        for k in [SocketKind::Stream, SocketKind::Dgram] {
            assert_eq!(round_trips(&k), Ok(()));
        }
        assert_eq!(round_trips(&HealthAction::Restart), Ok(()));
        assert_eq!(
            round_trips(&parse_listen("/run/a.sock").expect("unix")),
            Ok(())
        );
        assert_eq!(
            round_trips(&parse_listen("[::1]:53").expect("inet6")),
            Ok(())
        );
        for s in [ExitStatus::Exited(3), ExitStatus::Signaled(9)] {
            assert_eq!(round_trips(&s), Ok(()));
        }
        use crate::error::ErrorKind::*;
        for kind in [
            Io, Syntax, Runtime, Limit, Schema, Duplicate, Dependency, Cycle, Internal,
        ] {
            let e = ConfigError {
                kind,
                module: "m".into(),
                message: "bad".into(),
            };
            assert_eq!(round_trips(&e), Ok(()));
        }
    }

    #[test]
    fn fields_added_later_take_their_defaults_when_missing() {
        let mut v = serde_json::to_value(full_spec()).expect("json");
        let m = v.as_object_mut().expect("object");
        for k in [
            "limits",
            "readiness",
            "ready_timeout",
            "passthrough",
            "env_inherit",
            "env_file",
            "sandbox",
            "log_rotate",
            "log_timestamps",
            "health",
            "forking",
            "pid_file",
            "cgroup",
            "on_demand",
            "timer",
            "activation",
        ] {
            assert!(m.remove(k).is_some(), "{k} is a field");
        }
        let s = ServiceSpec::decode(&v).expect("an older spec reads");
        let d = ServiceSpec::new("web", "web.lua:3");
        assert_eq!(s.ready_timeout, d.ready_timeout);
        assert_eq!(s.readiness, Readiness::Started);
        assert_eq!(s.activation, d.activation);
        assert_eq!(s.sandbox, d.sandbox);
        assert_eq!(s.cgroup, d.cgroup);
        assert_eq!(s.exec, full_spec().exec);
    }

    #[test]
    fn bad_documents_are_refused_naming_the_field() {
        let mut v = serde_json::to_value(full_spec()).expect("json");
        v["backoff"]["max"]["nanos"] = json!("x");
        let e = ServiceSpec::decode(&v).unwrap_err();
        assert_eq!(
            e,
            "backoff: max: nanos: expected an integer, found a string"
        );
        let mut v = serde_json::to_value(full_spec()).expect("json");
        v.as_object_mut().expect("object").remove("exec");
        assert_eq!(ServiceSpec::decode(&v).unwrap_err(), "missing field `exec`");
        assert_eq!(
            RestartPolicy::decode(&json!("sometimes")).unwrap_err(),
            "unknown variant `sometimes` of a restart policy"
        );
        assert!(Amount::decode(&json!({"of": "x"})).is_err());
        assert!(Readiness::decode(&json!({"tcp": null})).is_err());
        assert!(Listen::decode(&json!({"inet": "nonsense"})).is_err());
    }
}
