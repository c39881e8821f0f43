//! moonlit's Lua runtime and configuration model.
//!
//! Owns: the Lua state of PID 1 with its limits and tasks ([`runtime`]),
//! process creation for everything moonlit starts ([`spawn`]), reading the
//! configuration directory ([`modules`]) and turning declarations into a
//! validated plan ([`plan`]). Does not own the event loop, supervision or
//! the control socket: those live in the `moonlit` binary (`init/`).

pub mod cgroup_limits;
mod decode;
pub mod envfile;
pub mod error;
mod fdutil;
pub mod health_logs;
pub mod modules;
pub mod plain;
pub mod plan;
pub mod runtime;
pub mod sockets;
pub mod spawn;
pub mod timers;

pub use error::{ConfigError, ErrorKind};
pub use plan::{Plan, ServiceSpec};
pub use runtime::{BootInfo, Evaluated, HostRequest, Limits, Request, Runtime, Step, TaskId};
