//! The handover decoders of the init's own types ([`Decode`]; the rules are
//! in `moonlit_net::json_decode`), replacing serde's derived `Deserialize`
//! (docs/DESIGN.md, "The handover's decoder"). Those of types with private
//! fields sit beside them: `Service` (supervisor.rs), `HealthState`
//! (supervisor/health.rs), `BootRecord` (analyze/record.rs) and the timers'
//! state file (init/timers.rs).

use moonlit_net::deserialize_by_decode;
use moonlit_net::json_decode::{fields, unknown_variant, variant, Decode, Obj, Result, Value};

use crate::analyze::record::{ServiceTimes, Step};
use crate::entry::MainCmd;
use crate::init::reexec::{Handover, LogHandover};
use crate::init::sockets::SocketHandover;
use crate::init::timers::Entry;
use crate::supervisor::Health;
use crate::supervisor::State;

deserialize_by_decode!(
    State,
    Health,
    MainCmd,
    LogHandover,
    Handover,
    Entry,
    SocketHandover,
    Step,
    ServiceTimes,
);

impl Decode for State {
    fn decode(v: &Value) -> Result<Self> {
        let what = "a service state";
        let (name, c) = variant(v, what)?;
        Ok(match name {
            "Stopped" => State::Stopped,
            "Waiting" => State::Waiting,
            "Starting" => State::Starting,
            "Running" => {
                let o = fields(name, c, what)?;
                State::Running {
                    pid: o.get("pid")?,
                    since: o.get("since")?,
                }
            }
            "Stopping" => {
                let o = fields(name, c, what)?;
                State::Stopping {
                    pid: o.get("pid")?,
                    deadline: o.get("deadline")?,
                    killed: o.get("killed")?,
                    then_start: o.get("then_start")?,
                }
            }
            "Backoff" => State::Backoff {
                until: fields(name, c, what)?.get("until")?,
            },
            "Exited" => State::Exited {
                status: fields(name, c, what)?.get("status")?,
            },
            "Failed" => State::Failed {
                reason: fields(name, c, what)?.get("reason")?,
            },
            _ => return Err(unknown_variant(name, what)),
        })
    }
}

impl Decode for Health {
    fn decode(v: &Value) -> Result<Self> {
        let (name, _) = variant(v, "a health status")?;
        Ok(match name {
            "starting" => Health::Starting,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            _ => return Err(unknown_variant(name, "a health status")),
        })
    }
}

impl Decode for MainCmd {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "the container's command")?;
        Ok(MainCmd {
            argv: o.get("argv")?,
            remap: o.get("remap")?,
        })
    }
}

impl Decode for LogHandover {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a service's log")?;
        Ok(LogHandover {
            service: o.get("service")?,
            read_fd: o.get("read_fd")?,
            write_fd: o.get("write_fd")?,
            lines: o.get("lines")?,
            total: o.get("total")?,
        })
    }
}

impl Decode for Handover {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a handover document")?;
        Ok(Handover {
            format: o.get("format")?,
            from_version: o.get("from_version")?,
            mode: o.get("mode")?,
            config_dir: o.get("config_dir")?,
            control_path: o.get("control_path")?,
            debug: o.get("debug")?,
            rescue: o.get("rescue")?,
            watch: o.get("watch")?,
            cmdline: o.get("cmdline")?,
            generation: o.get("generation")?,
            transactions: o.get("transactions")?,
            orphans: o.get("orphans")?,
            t0: o.get("t0")?,
            control_fd: o.get("control_fd")?,
            reply_fd: o.get("reply_fd")?,
            main_cmd: o.get("main_cmd")?,
            service_env: o.or_default("service_env")?,
            dhcp: o.or_default("dhcp")?,
            services: o.get("services")?,
            logs: o.get("logs")?,
            states: o.get("states")?,
            config_errors: o.get("config_errors")?,
            net_spec: o.or_default("net_spec")?,
            net_owned: o.or_default("net_owned")?,
            net_active: o.or_default("net_active")?,
            reexecs: o.or_default("reexecs")?,
            timers: o.or_default("timers")?,
            sockets: o.or_default("sockets")?,
            socket_instances: o.or_default("socket_instances")?,
            boot: o.get("boot")?,
        })
    }
}

impl Decode for Entry {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a timer's schedule")?;
        Ok(Entry {
            spec: o.get("spec")?,
            next: o.get("next")?,
            last: o.get("last")?,
            boot_done: o.get("boot_done")?,
        })
    }
}

impl Decode for SocketHandover {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a handed-over socket")?;
        Ok(SocketHandover {
            service: o.get("service")?,
            spec: o.get("spec")?,
            fd: o.get("fd")?,
        })
    }
}

impl Decode for Step {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a boot step")?;
        Ok(Step {
            name: o.get("name")?,
            start_ms: o.get("start_ms")?,
            end_ms: o.get("end_ms")?,
        })
    }
}

impl Decode for ServiceTimes {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a service's boot times")?;
        Ok(ServiceTimes {
            spawn_ms: o.get("spawn_ms")?,
            ready_ms: o.get("ready_ms")?,
            after: o.or_default("after")?,
            requires: o.or_default("requires")?,
            kind: o.or_default("kind")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use moonlit_config::spawn::ExitStatus;
    use moonlit_net::json_decode::round_trips;
    use serde_json::json;

    use super::*;
    use crate::analyze::record::BootRecord;

    /// Every part of `doc` is in `read` (which may add defaulted fields).
    fn kept(doc: &Value, read: &Value, path: &str) -> std::result::Result<(), String> {
        match (doc, read) {
            (Value::Object(d), Value::Object(r)) => d.iter().try_for_each(|(k, v)| {
                let p = format!("{path}.{k}");
                r.get(k)
                    .ok_or_else(|| format!("{p} was dropped"))
                    .and_then(|w| kept(v, w, &p))
            }),
            (Value::Array(d), Value::Array(r)) if d.len() == r.len() => d
                .iter()
                .zip(r)
                .enumerate()
                .try_for_each(|(i, (v, w))| kept(v, w, &format!("{path}[{i}]"))),
            (d, r) if d == r => Ok(()),
            (d, r) => Err(format!("{path}: written {d}, read back {r}")),
        }
    }

    #[test]
    fn handover_documents_read_back_as_written() {
        // The corpus's oldest document and a current one with every
        // section in use.
        let seeds = crate::init::reexec::fuzz::seeds();
        assert!(seeds.len() >= 2);
        for s in &seeds {
            let doc: Value = serde_json::from_str(s).expect("json");
            let h = Handover::decode(&doc).expect("a seed reads");
            let read = serde_json::to_value(&h).expect("json");
            assert_eq!(kept(&doc, &read, "handover"), Ok(()));
            assert_eq!(round_trips(&h), Ok(()));
        }
        // The negative control of `kept`: a changed value is seen.
        let doc: Value = serde_json::from_str(&seeds[0]).expect("json");
        let mut read = serde_json::to_value(Handover::decode(&doc).expect("reads")).expect("json");
        read["services"][0]["restarts"] = json!(99);
        assert!(kept(&doc, &read, "handover").is_err());
    }

    #[test]
    fn every_state_and_record_reads_back_as_written() {
        for s in [
            State::Stopped,
            State::Waiting,
            State::Starting,
            State::Running { pid: 7, since: 9 },
            State::Stopping {
                pid: 7,
                deadline: 10,
                killed: true,
                then_start: true,
            },
            State::Backoff { until: 11 },
            State::Exited {
                status: ExitStatus::Signaled(15),
            },
            State::Failed {
                reason: "no".into(),
            },
        ] {
            assert_eq!(round_trips(&s), Ok(()));
        }
        for h in [Health::Starting, Health::Healthy, Health::Unhealthy] {
            assert_eq!(round_trips(&h), Ok(()));
        }
        let mut hs = crate::supervisor::HealthState::default();
        hs.status = Health::Unhealthy;
        hs.failures = 3;
        hs.last_output = Some("refused".into());
        hs.last_ok = Some(false);
        hs.changed = Some(5);
        hs.checked = Some(6);
        hs.checks = 9;
        hs.unhealthy_count = 2;
        hs.history.push_back((5, Health::Unhealthy));
        assert_eq!(round_trips(&hs), Ok(()));
        let mut b = BootRecord::new(100, 3);
        b.exec_ms = Some(2);
        b.ready_ms = Some(40);
        b.frozen = true;
        assert_eq!(round_trips(&b), Ok(()));
        let m = MainCmd {
            argv: vec!["sh".into()],
            remap: vec![15, 2],
        };
        assert_eq!(round_trips(&m), Ok(()));
    }

    #[test]
    fn bad_handovers_are_refused_naming_the_field() {
        let seeds = crate::init::reexec::fuzz::seeds();
        let mut doc: Value = serde_json::from_str(&seeds[0]).expect("json");
        doc["services"][0]["state"] = json!({"Running": {"pid": -1, "since": 0}});
        let e = Handover::decode(&doc).err().expect("refused");
        assert_eq!(e, "services: [0]: state: pid: -1 is out of range for u32");
        doc["services"][0]["state"] = json!("Sleeping");
        let e = Handover::decode(&doc).err().expect("refused");
        assert!(
            e.ends_with("unknown variant `Sleeping` of a service state"),
            "{e}"
        );
    }
}
