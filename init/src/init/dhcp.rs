//! DHCPv4 clients of declared interfaces (`network.interface "eth0" { dhcp =
//! true }`), driven by the loop: one UDP socket per interface (port 68,
//! bound to the device, broadcast allowed) in the epoll set, the pure
//! client of moonlit_net::dhcp told packets and deadlines. A lease is
//! applied like a declared address: the network spec in force plus the
//! leases is what the reconciler makes true, so a renewal that changes
//! nothing touches nothing, and a lost lease removes exactly its settings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};

use moonlit_net::dhcp::{Client, Dest, Lease, Output};
use moonlit_net::spec::RouteSpec;
use moonlit_net::{DnsSpec, IpNet, LinkRef, NetworkSpec};
use rustix::event::epoll::{self, EventData, EventFlags};
use serde_json::{json, Value};

use super::{now_ms, Init};

/// epoll token of a DHCP socket: T_DHCP | run id (| ARP_BIT for the
/// run's ARP socket, open while an offered address is probed).
pub(crate) const T_DHCP: u64 = 4 << 32;
const ARP_BIT: u32 = 1 << 31;

#[derive(Default)]
pub(crate) struct Dhcp {
    runs: BTreeMap<String, Run>,
    next_id: u32,
    /// `on_lease` calls waiting for the network to be applied (interface,
    /// lease or none, "bound" | "lost").
    hooks: Vec<(String, Option<Lease>, &'static str)>,
}

struct Run {
    client: Client,
    sock: Option<OwnedFd>,
    /// AF_PACKET (ARP) socket while probing.
    arp: Option<OwnedFd>,
    ifindex: u32,
    id: u32,
    carrier: bool,
    /// Why the socket could not be opened (shown in status).
    error: Option<String>,
}

fn open_socket(ifname: &str) -> Result<OwnedFd, String> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let s = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    sockopt::set_socket_reuseaddr(&s, true).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    sockopt::set_socket_broadcast(&s, true).map_err(|e| format!("SO_BROADCAST: {e}"))?;
    nix::sys::socket::setsockopt(
        &s,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(ifname),
    )
    .map_err(|e| format!("SO_BINDTODEVICE {ifname}: {e}"))?;
    rustix::net::bind(
        &s,
        &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, moonlit_net::dhcp::wire::CLIENT_PORT),
    )
    .map_err(|e| format!("bind 0.0.0.0:68: {e}"))?;
    Ok(s)
}

fn mac_bytes(mac: Option<&str>) -> Option<[u8; 6]> {
    moonlit_net::link::parse_mac(mac?)
}

impl Init {
    /// After the network was applied: a client for each declared link with
    /// `dhcp` that exists (and its socket), none for the others.
    pub(crate) fn dhcp_sync(&mut self) {
        let wanted: Vec<(String, moonlit_net::dhcp::DhcpConfig)> = self
            .net
            .spec
            .links
            .values()
            .filter_map(|l| l.dhcp.clone().map(|d| (l.name.clone(), d)))
            .collect();
        // Clients of links no longer declared with dhcp: released, closed.
        let gone: Vec<String> = self
            .dhcp
            .runs
            .keys()
            .filter(|n| !wanted.iter().any(|(w, _)| w == *n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut run) = self.dhcp.runs.remove(&name) {
                let out = run.client.release();
                self.dhcp.runs.insert(name.clone(), run);
                self.dhcp_outputs(&name, out);
                if let Some(run) = self.dhcp.runs.remove(&name) {
                    if let Some(s) = &run.sock {
                        let _ = epoll::delete(&self.epoll, s);
                    }
                }
                self.log(&format!("dhcp {name}: stopped"));
                self.net.again = true;
            }
        }
        let now = now_ms();
        for (name, cfg) in wanted {
            let link = match self.handle_link(&name) {
                Some(l) => l,
                None => {
                    if self.opts.debug {
                        self.log(&format!("dhcp {name}: no such link yet"));
                    }
                    continue; // configured when it appears
                }
            };
            if !self.dhcp.runs.contains_key(&name) {
                let Some(mac) = mac_bytes(link.mac.as_deref()) else {
                    self.log(&format!("dhcp {name}: the link has no MAC address"));
                    continue;
                };
                self.dhcp.next_id += 1;
                let seed = now ^ ((rustix::process::getpid().as_raw_nonzero().get() as u64) << 32);
                self.dhcp.runs.insert(
                    name.clone(),
                    Run {
                        client: Client::new(mac, cfg.clone(), seed),
                        sock: None,
                        arp: None,
                        ifindex: link.index,
                        id: self.dhcp.next_id,
                        carrier: false,
                        error: None,
                    },
                );
            }
            let Some(run) = self.dhcp.runs.get_mut(&name) else {
                continue;
            };
            run.client.cfg = cfg;
            run.ifindex = link.index;
            if run.sock.is_none() {
                match open_socket(&name) {
                    Ok(s) => {
                        if let Err(e) = epoll::add(
                            &self.epoll,
                            s.as_fd(),
                            EventData::new_u64(T_DHCP | u64::from(run.id)),
                            EventFlags::IN,
                        ) {
                            run.error = Some(format!("epoll: {e}"));
                            continue;
                        }
                        run.sock = Some(s);
                        run.error = None;
                    }
                    Err(e) => {
                        if run.error.as_ref() != Some(&e) {
                            self.log(&format!("dhcp {name}: {e}"));
                        }
                        if let Some(run) = self.dhcp.runs.get_mut(&name) {
                            run.error = Some(e);
                        }
                        continue;
                    }
                }
            }
            let Some(run) = self.dhcp.runs.get_mut(&name) else {
                continue;
            };
            // Carrier regained: ask again at once (keeping the lease until
            // it is answered or expires).
            let regained = link.carrier && !run.carrier;
            run.carrier = link.carrier;
            // Without carrier a DISCOVER goes nowhere (and its retransmission
            // would come seconds after the link is ready): wait for it.
            if !link.carrier {
                continue;
            }
            if run.client.deadline().is_none() || regained {
                let had_lease = run.client.lease.is_some();
                let out = run.client.start(now);
                self.log(&format!(
                    "dhcp {name}: {}",
                    if had_lease {
                        "carrier back: asking for the lease again"
                    } else {
                        "discovering"
                    }
                ));
                self.dhcp_outputs(&name, out);
            }
        }
        // The network now carries the leases: their hooks see them applied.
        self.run_lease_hooks();
    }

    /// The `on_lease` hook of `ifname`'s declaration in force (`dhcp = {
    /// on_lease = function(ifname, lease, event) ... end }`), if any.
    fn lease_hook(&self, ifname: &str) -> Option<mlua::Function> {
        self.modules.values().find_map(|m| {
            m.eval.decls.iter().find_map(|d| {
                if !d.kind.starts_with("network.") || d.name.as_deref() != Some(ifname) {
                    return None;
                }
                match d.body.raw_get::<mlua::Value>("dhcp") {
                    Ok(mlua::Value::Table(t)) => match t.raw_get::<mlua::Value>("on_lease") {
                        Ok(mlua::Value::Function(f)) => Some(f),
                        _ => None,
                    },
                    _ => None,
                }
            })
        })
    }

    /// Leases as `net.lease` shows them (after each change, and adoption).
    fn publish_lease(&mut self, name: &str) {
        let lease = self
            .dhcp
            .runs
            .get(name)
            .and_then(|r| r.client.lease.clone());
        if let Err(e) = moonlit_net::lua::publish_lease(self.rt.lua(), name, lease.as_ref()) {
            self.log(&format!("dhcp {name}: recording the lease for Lua: {e}"));
        }
    }

    /// Runs the queued `on_lease` hooks, each as a task (it may block).
    fn run_lease_hooks(&mut self) {
        for (name, lease, event) in std::mem::take(&mut self.dhcp.hooks) {
            let Some(f) = self.lease_hook(&name) else {
                continue;
            };
            let arg = match &lease {
                Some(l) => match moonlit_net::lua::lease_table(self.rt.lua(), l) {
                    Ok(t) => mlua::Value::Table(t),
                    Err(e) => {
                        self.log(&format!("dhcp {name}: on_lease: {e}"));
                        continue;
                    }
                },
                None => mlua::Value::Nil,
            };
            let label = format!("dhcp {name} on_lease");
            let (id, step) = self
                .rt
                .start_task(&label, f, (name.clone(), arg, event.to_string()));
            self.task_names.insert(id, label);
            self.handle_step(id, step);
        }
    }

    /// Option 12 as the system's hostname, when `use_hostname` asks.
    fn apply_hostname(&mut self, name: &str, lease: &Lease) {
        let asked = self
            .dhcp
            .runs
            .get(name)
            .is_some_and(|r| r.client.cfg.use_hostname);
        let Some(h) = lease.hostname.as_deref().filter(|_| asked) else {
            return;
        };
        let valid = !h.is_empty()
            && h.len() <= 64
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            self.log(&format!(
                "dhcp {name}: the lease's hostname {h:?} is not a valid hostname: not set"
            ));
            return;
        }
        let current = rustix::system::uname();
        if current.nodename().to_bytes() == h.as_bytes() {
            return;
        }
        match rustix::system::sethostname(h.as_bytes()) {
            Ok(()) => self.log(&format!(
                "dhcp {name}: hostname set to {h} (from the lease)"
            )),
            Err(e) => self.log(&format!("dhcp {name}: sethostname {h}: {e}")),
        }
    }

    fn handle_link(&mut self, name: &str) -> Option<moonlit_net::Link> {
        let h = self.handle().ok()?;
        h.link(&LinkRef::Name(name.to_string())).ok()
    }

    /// The earliest deadline of any client.
    pub(crate) fn dhcp_deadline(&self) -> Option<u64> {
        self.dhcp
            .runs
            .values()
            .filter(|r| r.sock.is_some())
            .filter_map(|r| r.client.deadline())
            .min()
    }

    /// Due retransmissions and lease times.
    pub(crate) fn dhcp_timers(&mut self) {
        let now = now_ms();
        let due: Vec<String> = self
            .dhcp
            .runs
            .iter()
            .filter(|(_, r)| r.sock.is_some() && r.client.deadline().is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let out = match self.dhcp.runs.get_mut(&name) {
                Some(r) => r.client.on_timer(now),
                None => continue,
            };
            self.dhcp_outputs(&name, out);
        }
    }

    /// A DHCP socket is readable.
    pub(crate) fn on_dhcp(&mut self, id: u32) {
        if id & ARP_BIT != 0 {
            return self.on_arp(id & !ARP_BIT);
        }
        let Some(name) = self.dhcp_run_named(id) else {
            return;
        };
        let mut buf = vec![0u8; 1500];
        for _ in 0..16 {
            let got = match self.dhcp.runs.get(&name).and_then(|r| r.sock.as_ref()) {
                Some(s) => rustix::net::recv(s, &mut buf[..], rustix::net::RecvFlags::empty()),
                None => return,
            };
            let n = match got {
                Ok((n, _)) => n,
                Err(_) => return, // EAGAIN: drained
            };
            let now = now_ms();
            let out = match self.dhcp.runs.get_mut(&name) {
                Some(r) => r.client.on_packet(now, &buf[..n]),
                None => return,
            };
            self.dhcp_outputs(&name, out);
        }
    }

    /// The interface whose DHCP run has this id.
    fn dhcp_run_named(&self, id: u32) -> Option<String> {
        self.dhcp
            .runs
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(n, _)| n.clone())
    }

    /// The ARP socket of a probing client is readable.
    fn on_arp(&mut self, id: u32) {
        let Some(name) = self.dhcp_run_named(id) else {
            return;
        };
        let mut buf = [0u8; 128];
        for _ in 0..64 {
            let got = match self.dhcp.runs.get(&name).and_then(|r| r.arp.as_ref()) {
                Some(s) => rustix::net::recv(s, &mut buf[..], rustix::net::RecvFlags::empty()),
                None => return,
            };
            let n = match got {
                Ok((n, _)) => n,
                Err(_) => return, // EAGAIN: drained
            };
            let now = now_ms();
            let out = match self.dhcp.runs.get_mut(&name) {
                Some(r) => r.client.on_arp(now, &buf[..n.min(buf.len())]),
                None => return,
            };
            let stop = !out.is_empty();
            self.dhcp_outputs(&name, out);
            if stop {
                return;
            }
        }
    }

    fn arp_probe(&mut self, name: &str, ip: Ipv4Addr) {
        let Some(run) = self.dhcp.runs.get_mut(name) else {
            return;
        };
        if run.arp.is_none() {
            match moonlit_net::dhcp::arp::socket(run.ifindex)
                .map_err(|e| format!("ARP socket: {e}"))
            {
                Ok(s) => {
                    if let Err(e) = epoll::add(
                        &self.epoll,
                        s.as_fd(),
                        EventData::new_u64(T_DHCP | u64::from(run.id | ARP_BIT)),
                        EventFlags::IN,
                    ) {
                        let msg = format!("dhcp {name}: ARP socket: epoll: {e}");
                        self.log(&msg);
                        return;
                    }
                    run.arp = Some(s);
                }
                Err(e) => {
                    // Probing then finds nothing: the address is taken
                    // unprobed, which is what a client without ACD does.
                    let msg = format!("dhcp {name}: {e}: {ip} not probed for conflicts");
                    self.log(&msg);
                    return;
                }
            }
        }
        let Some(run) = self.dhcp.runs.get(name) else {
            return;
        };
        let (Some(s), mac) = (run.arp.as_ref(), run.client.mac) else {
            return;
        };
        let pkt = moonlit_net::dhcp::arp::Arp::probe(mac, ip).encode();
        if let Err(e) = moonlit_net::dhcp::arp::send_broadcast(s, run.ifindex, &pkt) {
            if self.opts.debug {
                self.log(&format!("dhcp {name}: ARP probe for {ip}: {e}"));
            }
        }
    }

    fn arp_close(&mut self, name: &str) {
        if let Some(s) = self.dhcp.runs.get_mut(name).and_then(|r| r.arp.take()) {
            let _ = epoll::delete(&self.epoll, &s);
        }
    }

    fn dhcp_outputs(&mut self, name: &str, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send(dest, bytes) => {
                    let ip = match dest {
                        Dest::Broadcast => Ipv4Addr::BROADCAST,
                        Dest::Server(s) => s,
                    };
                    let to = SocketAddrV4::new(ip, moonlit_net::dhcp::wire::SERVER_PORT);
                    let sent = match self.dhcp.runs.get(name).and_then(|r| r.sock.as_ref()) {
                        Some(s) => {
                            rustix::net::sendto(s, &bytes, rustix::net::SendFlags::empty(), &to)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        }
                        None => Err("no socket".into()),
                    };
                    if let Err(e) = sent {
                        if self.opts.debug {
                            self.log(&format!("dhcp {name}: send to {to}: {e}"));
                        }
                    }
                }
                Output::Bound(l) => {
                    self.log(&format!(
                        "dhcp {name}: bound {}/{} from {} (lease {} s{})",
                        l.address,
                        l.prefix,
                        l.server,
                        l.lease_secs,
                        l.routers
                            .first()
                            .map(|r| format!(", router {r}"))
                            .unwrap_or_default()
                    ));
                    self.net.again = true;
                    self.publish_lease(name);
                    self.apply_hostname(name, &l);
                    self.dhcp.hooks.push((name.to_string(), Some(l), "bound"));
                }
                Output::Renewed(l) => {
                    self.publish_lease(name);
                    if self.opts.debug {
                        self.log(&format!(
                            "dhcp {name}: renewed {} ({} s)",
                            l.address, l.lease_secs
                        ));
                    }
                }
                Output::Lost(why) => {
                    self.log(&format!("dhcp {name}: lease lost: {why}"));
                    self.net.again = true;
                    self.publish_lease(name);
                    self.dhcp.hooks.push((name.to_string(), None, "lost"));
                }
                Output::ArpProbe(ip) => self.arp_probe(name, ip),
                Output::ArpDone => self.arp_close(name),
                Output::Declined { address, by } => {
                    let mac = by
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":");
                    self.log(&format!(
                        "dhcp {name}: {address} is in use by {mac}: declined, asking again in {} s",
                        moonlit_net::dhcp::client::DECLINE_WAIT_MS / 1000
                    ));
                }
                Output::Note(n) => {
                    if self.opts.debug {
                        self.log(&format!("dhcp {name}: {n}"));
                    }
                }
            }
        }
    }

    /// `spec` with every lease in it (and links with DHCP or SLAAC up
    /// unless declared otherwise): its address, its routes (classless
    /// ones if given, else the default route via the first router), its MTU
    /// where none is declared, its DNS servers and search domains.
    pub(crate) fn effective_spec(&self, spec: &NetworkSpec) -> NetworkSpec {
        let mut s = spec.clone();
        for l in s.links.values_mut() {
            // SLAAC needs the link up, as DHCP does: brought up unless
            // `up` is declared.
            let slaac = l.ipv6.as_ref().is_some_and(|v| v.accept_ra == Some(true));
            if l.up.is_none() && (slaac || l.dhcp.is_some()) {
                l.up = Some(true);
            }
            let Some(cfg) = l.dhcp.clone() else { continue };
            let mut addresses = l.addresses.clone().unwrap_or_default();
            let mut routes = l.routes.clone().unwrap_or_default();
            if let Some(lease) = self
                .dhcp
                .runs
                .get(&l.name)
                .and_then(|r| r.client.lease.as_ref())
            {
                addresses.push(IpNet {
                    addr: IpAddr::V4(lease.address),
                    prefix: lease.prefix,
                });
                if cfg.use_routes {
                    let route = |to: Option<IpNet>, via: Option<Ipv4Addr>| RouteSpec {
                        family: moonlit_net::consts::AF_INET,
                        to,
                        via: via.map(IpAddr::V4),
                        metric: None,
                        src: None,
                        scope: None,
                        table: moonlit_net::consts::RT_TABLE_MAIN,
                    };
                    if !lease.classless.is_empty() {
                        // RFC 3442: with option 121 the router option is ignored.
                        for c in &lease.classless {
                            let to = (c.prefix > 0).then_some(IpNet {
                                addr: IpAddr::V4(c.dest),
                                prefix: c.prefix,
                            });
                            let via = (!c.router.is_unspecified()).then_some(c.router);
                            routes.push(route(to, via));
                        }
                    } else if let Some(gw) = lease.routers.first() {
                        routes.push(route(None, Some(*gw)));
                    }
                }
                if l.mtu.is_none() {
                    l.mtu = lease.mtu.map(u32::from).filter(|m| *m >= 576);
                }
                if cfg.use_dns && (!lease.dns.is_empty() || !lease.search.is_empty()) {
                    let d = s.dns.get_or_insert_with(|| DnsSpec {
                        location: format!("dhcp {}", l.name),
                        ..DnsSpec::default()
                    });
                    for n in &lease.dns {
                        if !d.nameservers.contains(&IpAddr::V4(*n)) {
                            d.nameservers.push(IpAddr::V4(*n));
                        }
                    }
                    for sd in &lease.search {
                        if !d.search.contains(sd) {
                            d.search.push(sd.clone());
                        }
                    }
                }
            }
            l.addresses = Some(addresses);
            l.routes = Some(routes);
        }
        s
    }

    /// For `ctl status`: each client's phase and lease.
    pub(crate) fn dhcp_status(&self) -> Value {
        let now = now_ms();
        let m: serde_json::Map<String, Value> = self
            .dhcp
            .runs
            .iter()
            .map(|(n, r)| {
                let lease = r.client.lease.as_ref().map(|l| {
                    json!({
                        "address": format!("{}/{}", l.address, l.prefix),
                        "server": l.server.to_string(),
                        "routers": l.routers.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                        "dns": l.dns.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                        "search": l.search,
                        "lease_s": l.lease_secs,
                        "t1_in_ms": l.t1().saturating_sub(now),
                        "t2_in_ms": l.t2().saturating_sub(now),
                        "expires_in_ms": l.expiry().saturating_sub(now),
                    })
                });
                (
                    n.clone(),
                    json!({"state": r.client.phase.name(), "lease": lease, "error": r.error}),
                )
            })
            .collect();
        Value::Object(m)
    }

    /// The clients, for the re-exec handover.
    pub(crate) fn dhcp_clients(&self) -> Vec<(String, Client)> {
        self.dhcp
            .runs
            .iter()
            .map(|(n, r)| (n.clone(), r.client.clone()))
            .collect()
    }

    /// Adopted clients (their sockets are opened by the next `dhcp_sync`).
    pub(crate) fn dhcp_adopt(&mut self, clients: Vec<(String, Client)>) {
        for (name, client) in clients {
            if let Err(e) =
                moonlit_net::lua::publish_lease(self.rt.lua(), &name, client.lease.as_ref())
            {
                self.log(&format!("dhcp {name}: recording the lease for Lua: {e}"));
            }
            self.dhcp.next_id += 1;
            self.dhcp.runs.insert(
                name,
                Run {
                    client,
                    sock: None,
                    arp: None,
                    ifindex: 0,
                    id: self.dhcp.next_id,
                    carrier: true,
                    error: None,
                },
            );
        }
    }

    /// Shutdown: RELEASE where asked.
    pub(crate) fn dhcp_release_all(&mut self) {
        let names: Vec<String> = self.dhcp.runs.keys().cloned().collect();
        for n in names {
            let out = match self.dhcp.runs.get_mut(&n) {
                Some(r) => r.client.release(),
                None => continue,
            };
            self.dhcp_outputs(&n, out);
        }
    }
}
