//! moonlit's rtnetlink layer: a synchronous Rust API over neli's low-level
//! socket (no `NlRouter`, no threads), an event socket for the init's epoll loop,
//! the declarative network spec with its pure diff and its apply step, and the Lua
//! modules `net` and `syscall.nl` ([`register`]).
//!
//! Not here: the evaluation of configuration files, the reload transaction, the
//! event loop (all in the config/init crates).

pub mod addr;
pub mod consts;
mod decode;
pub mod dhcp;
pub mod error;
pub mod events;
pub mod json_decode;
pub mod link;
pub mod lua;
pub mod plan;
pub mod route;
mod socket;
pub mod spec;
mod sys;

pub use addr::{AddrOpts, Address, IpNet};
pub use error::NetError;
pub use events::{Event, EventSocket};
pub use link::{Link, LinkChange, LinkKind, LinkRef, LinkStats, Netns, NewLink};
pub use lua::register;
pub use plan::{apply, plan, resolv_conf, write_resolv_conf, Change, KernelState};
pub use route::Route;
pub use socket::Handle;
pub use spec::{Decl, DnsSpec, NetworkSpec, SpecError};

#[cfg(test)]
mod fuzz_tests;
