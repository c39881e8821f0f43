//! DHCPv4 for declared interfaces: the message format ([`wire`]) and the
//! client's state machine ([`client`]). Both are pure; the socket and the
//! timers are the init's (init/src/init/dhcp.rs).

pub mod arp;
pub mod client;
pub mod wire;

pub use client::{Client, Dest, DhcpConfig, Lease, Output, Phase};
