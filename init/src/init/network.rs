//! The declared network, kept true: applied through rtnetlink after the boot
//! script, re-planned against the kernel's actual state on every reload (only
//! the difference is applied), re-applied when a declared link appears; and
//! the netlink event socket that wakes `net.wait_link` / `net.wait_address`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::PathBuf;

use moonlit_config::error::{ConfigError, ErrorKind};
use moonlit_net::{Change, Decl, EventSocket, Handle, KernelState, NetworkSpec};
use rustix::event::epoll::{self, EventData, EventFlags};

use super::{reload::Module, Init, T_NETLINK};
use crate::mode::Mode;

#[derive(Default)]
pub(crate) struct Net {
    handle: Option<Handle>,
    pub events: Option<EventSocket>,
    /// The spec in force.
    pub spec: NetworkSpec,
    /// Links this init created (deleted when no longer declared).
    pub owned: BTreeSet<String>,
    /// A network was ever declared: from then on it is reconciled.
    pub active: bool,
    /// Re-plan on the next turn (a declared link appeared).
    pub again: bool,
    pub applied: u64,
}

/// The network declared across all modules (in module order).
pub(crate) fn spec_of(
    modules: &BTreeMap<String, Module>,
) -> Result<(NetworkSpec, bool), ConfigError> {
    let mut decls = Vec::new();
    for m in modules.values() {
        for d in &m.eval.decls {
            if let Some(kind) = d.kind.strip_prefix("network.") {
                decls.push(Decl {
                    kind: kind.to_string(),
                    name: d.name.clone(),
                    body: d.body.clone(),
                    location: d.location.clone(),
                });
            }
        }
    }
    let any = !decls.is_empty();
    NetworkSpec::from_decls(&decls)
        .map(|s| (s, any))
        .map_err(|e| {
            ConfigError::new(
                ErrorKind::Schema,
                e.location.split(':').next().unwrap_or(""),
                e.to_string(),
            )
        })
}

impl Init {
    fn resolv_path(&self) -> PathBuf {
        match self.opts.mode {
            Mode::System | Mode::Container => "/etc/resolv.conf".into(),
            // A sandbox shares the host's files: keep its resolv.conf apart.
            _ => self.opts.control_path.with_file_name("resolv.conf"),
        }
    }

    pub(crate) fn handle(&mut self) -> Result<&mut Handle, String> {
        if self.net.handle.is_none() {
            self.net.handle = Some(Handle::new().map_err(|e| e.to_string())?);
        }
        self.net
            .handle
            .as_mut()
            .ok_or_else(|| "no netlink socket".to_string())
    }

    /// The changes that would make the kernel match `spec`.
    pub(crate) fn net_plan(&mut self, spec: &NetworkSpec) -> Result<Vec<Change>, String> {
        let owned = self.net.owned.clone();
        let h = self.handle()?;
        let actual =
            KernelState::read(h).map_err(|e| format!("reading the kernel's network state: {e}"))?;
        Ok(moonlit_net::plan(spec, &actual, &owned))
    }

    /// Applies `spec` (the difference only). Returns one line per change
    /// ("ok: ..." or "failed: ...") and resolv.conf's fate.
    pub(crate) fn net_apply(&mut self, spec: &NetworkSpec) -> Vec<String> {
        let mut report = Vec::new();
        // What is declared plus what DHCP leased.
        let declared = spec;
        let effective = self.effective_spec(declared);
        let spec = &effective;
        let changes = match self.net_plan(spec) {
            Ok(c) => c,
            Err(e) => {
                self.log(&format!("network: {e}"));
                return vec![format!("failed: {e}")];
            }
        };
        if !changes.is_empty() {
            let results = match self.handle() {
                Ok(h) => moonlit_net::apply(h, &changes),
                Err(e) => return vec![format!("failed: {e}")],
            };
            for (c, r) in results {
                match r {
                    Ok(()) => report.push(format!("ok: {c}")),
                    Err(e) => {
                        self.log(&format!("network: {c}: {e}"));
                        report.push(format!("failed: {c}: {e}"));
                    }
                }
            }
        }
        // Links we created and still declare stay ours; undeclared ones were deleted.
        let created = spec.created_links();
        self.net.owned.retain(|l| created.contains(l));
        self.net.owned.extend(created);
        if let Some(dns) = &spec.dns {
            let path = self.resolv_path();
            match moonlit_net::write_resolv_conf(&path, dns) {
                Ok(true) => report.push(format!("ok: wrote {}", path.display())),
                Ok(false) => {}
                Err(e) => report.push(format!("failed: {}: {e}", path.display())),
            }
        }
        self.net.spec = declared.clone();
        self.net.applied += 1;
        if !report.is_empty() {
            self.log(&format!("network: {}", report.join("; ")));
        }
        self.dhcp_sync();
        report
    }

    /// Opens the event socket and registers it in the loop (once).
    pub(crate) fn start_netlink_events(&mut self) {
        if self.net.events.is_some() {
            return;
        }
        match EventSocket::new() {
            Ok(s) => {
                if let Err(e) = epoll::add(
                    &self.epoll,
                    s.as_fd(),
                    EventData::new_u64(T_NETLINK),
                    EventFlags::IN,
                ) {
                    self.log(&format!("netlink events: epoll: {e}"));
                    return;
                }
                self.net.events = Some(s);
            }
            Err(e) => self.log(&format!("netlink events: {e}")),
        }
    }

    /// Link/address notifications: wake the Lua waiters; a declared link
    /// that appears gets its configuration.
    pub(crate) fn on_netlink(&mut self) {
        let Some(s) = self.net.events.as_mut() else {
            return;
        };
        let events = match s.drain() {
            Ok(ev) => ev,
            Err(e) => {
                self.log(&format!("netlink events: {e}"));
                return;
            }
        };
        if events.is_empty() {
            return;
        }
        for (id, _) in std::mem::take(&mut self.net_waiters) {
            self.seq += 1;
            self.sleepers
                .insert((super::now_ms(), self.seq), (id, true));
        }
        if self.net.active && self.boot_script_done {
            // A declared link appeared or changed: re-plan (reads only when
            // the kernel already matches, so this settles at once).
            self.net.again |= events.iter().any(|e| matches!(e, moonlit_net::Event::NewLink(l) if self.net.spec.links.contains_key(&l.name)));
        }
    }
}
