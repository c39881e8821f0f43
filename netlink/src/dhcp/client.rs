//! The DHCPv4 client as a pure state machine (RFC 2131 section 4.4): it is
//! told packets and the time, and answers with packets to send and lease
//! events. No socket, no clock, no thread: the init's loop owns those
//! (init/src/init/dhcp.rs), as the supervisor owns no process.
//!
//! INIT -> SELECTING (DISCOVER, first OFFER wins) -> REQUESTING (REQUEST,
//! broadcast) -> BOUND; at T1 RENEWING (REQUEST unicast to the server), at T2
//! REBINDING (REQUEST broadcast), at expiry the lease is lost and the client
//! starts over. Retransmissions back off 4, 8, 16, 32, 64 s with +-1 s of
//! jitter (RFC 2131 4.1); in RENEWING and REBINDING they come at half the
//! time left to T2 / expiry, at least 1 s (4.4.5 says 60 s; short lab leases
//! need less).
//!
//! With `probe` (the default for `dhcp = true`), an acknowledged address
//! that is new to the client is first probed for (RFC 5227, with shorter
//! times: three ARP probes 200 ms apart, then 400 ms of listening, where the
//! RFC's PROBE_MIN/MAX and ANNOUNCE_WAIT come to 3-7 s). PROBING ends in
//! BOUND, or, when another host answers for the address or probes for it
//! too, in a DECLINE and INIT again after 10 s (RFC 2131 3.1.5).

use std::net::Ipv4Addr;

use serde::Serialize;

use super::arp::Arp;
use super::wire::{self, ClasslessRoute, MsgType, Reply, Request};

/// ARP probes sent for an acknowledged address.
pub const PROBE_NUM: u32 = 3;
/// Between two probes.
pub const PROBE_GAP_MS: Ms = 200;
/// After the last probe, before the address is taken.
pub const PROBE_WAIT_MS: Ms = 400;
/// From a DECLINE to the next DISCOVER (RFC 2131 3.1.5: at least 10 s).
pub const DECLINE_WAIT_MS: Ms = 10_000;

/// Milliseconds on the monotonic clock.
pub type Ms = u64;

/// What `dhcp = { ... }` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DhcpConfig {
    /// Sent in option 12.
    pub hostname: Option<String>,
    /// Option 61 (default: type 1 + the MAC).
    pub client_id: Option<Vec<u8>>,
    /// Use the lease's DNS servers and search domains.
    pub use_dns: bool,
    /// Use the lease's router and classless routes.
    pub use_routes: bool,
    /// Send a RELEASE when moonlit shuts down.
    pub release: bool,
    /// Set the system's hostname from the lease's option 12.
    pub use_hostname: bool,
    /// ARP-probe an acknowledged address before using it; DECLINE it when
    /// another host has it.
    pub probe: bool,
}

/// A lease as bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub mtu: Option<u16>,
    pub classless: Vec<ClasslessRoute>,
    /// Option 12, as the server gave it.
    pub hostname: Option<String>,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
    /// When the REQUEST that got this ACK was sent (times count from it).
    pub start_ms: Ms,
}

impl Lease {
    pub fn t1(&self) -> Ms {
        self.start_ms + self.t1_secs as Ms * 1000
    }
    pub fn t2(&self) -> Ms {
        self.start_ms + self.t2_secs as Ms * 1000
    }
    pub fn expiry(&self) -> Ms {
        self.start_ms + self.lease_secs as Ms * 1000
    }
    /// Same address, prefix, routes and servers: a renewal changes nothing
    /// on the link.
    pub fn same_config(&self, o: &Lease) -> bool {
        self.address == o.address
            && self.prefix == o.prefix
            && self.routers == o.routers
            && self.dns == o.dns
            && self.search == o.search
            && self.mtu == o.mtu
            && self.classless == o.classless
            && self.hostname == o.hostname
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    /// An ACK is in hand; ARP probes check that nobody else has the address.
    Probing,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Selecting => "selecting",
            Phase::Requesting => "requesting",
            Phase::Bound => "bound",
            Phase::Renewing => "renewing",
            Phase::Rebinding => "rebinding",
            Phase::Probing => "probing",
        }
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Broadcast,
    Server(Ipv4Addr),
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(Dest, Vec<u8>),
    /// A new lease, or a renewal that changed the configuration.
    Bound(Lease),
    /// A renewal with the same configuration (nothing to apply).
    Renewed(Lease),
    /// The lease is gone (expired, NAK'd, released): remove its settings.
    Lost(String),
    /// Send an ARP probe for this address on the interface.
    ArpProbe(Ipv4Addr),
    /// Probing is over: the ARP socket may be closed.
    ArpDone,
    /// Another host (this MAC) has the offered address: declined.
    Declined {
        address: Ipv4Addr,
        by: [u8; 6],
    },
    /// For the log.
    Note(String),
}

/// The client of one interface; serializable, so a re-exec keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub mac: [u8; 6],
    pub cfg: DhcpConfig,
    pub phase: Phase,
    pub lease: Option<Lease>,
    /// The offer being requested.
    offered: Option<(Ipv4Addr, Ipv4Addr)>,
    xid: u32,
    /// Start of the current exchange (for `secs` and lease times).
    exchange_start: Ms,
    attempt: u32,
    next: Option<Ms>,
    rng: u64,
    /// The acknowledged lease being probed for (PROBING).
    probing: Option<Lease>,
    probes: u32,
}

crate::deserialize_by_decode!(Client);

impl crate::json_decode::Decode for Client {
    fn decode(v: &crate::json_decode::Value) -> crate::json_decode::Result<Self> {
        let o = crate::json_decode::Obj::of(v, "a dhcp client")?;
        Ok(Client {
            mac: o.get("mac")?,
            cfg: o.get("cfg")?,
            phase: o.get("phase")?,
            lease: o.get("lease")?,
            offered: o.get("offered")?,
            xid: o.get("xid")?,
            exchange_start: o.get("exchange_start")?,
            attempt: o.get("attempt")?,
            next: o.get("next")?,
            rng: o.get("rng")?,
            probing: o.get("probing")?,
            probes: o.or_default("probes")?,
        })
    }
}

impl Client {
    pub fn new(mac: [u8; 6], cfg: DhcpConfig, seed: u64) -> Client {
        let mut rng =
            seed ^ u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
        if rng == 0 {
            rng = 0x9e37_79b9_7f4a_7c15;
        }
        Client {
            mac,
            cfg,
            phase: Phase::Init,
            lease: None,
            offered: None,
            xid: 0,
            exchange_start: 0,
            attempt: 0,
            next: None,
            rng,
            probing: None,
            probes: 0,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: jitter and transaction ids, not cryptography.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The next time `on_timer` wants to run.
    pub fn deadline(&self) -> Option<Ms> {
        self.next
    }

    fn backoff(&mut self) -> Ms {
        let base = 4000u64 << self.attempt.min(4);
        let jitter = self.random() % 2001;
        base + jitter - 1000
    }

    fn request(&self, kind: MsgType, now: Ms) -> Request {
        Request {
            kind: Some(kind),
            xid: self.xid,
            secs: (now.saturating_sub(self.exchange_start) / 1000).min(u16::MAX as u64) as u16,
            broadcast: true,
            chaddr: self.mac,
            hostname: self.cfg.hostname.clone(),
            client_id: self.cfg.client_id.clone(),
            ..Default::default()
        }
    }

    fn new_exchange(&mut self, now: Ms) {
        self.xid = self.random() as u32;
        self.exchange_start = now;
        self.attempt = 0;
    }

    /// Starts (or restarts, after a carrier loss) from INIT: DISCOVER now.
    pub fn start(&mut self, now: Ms) -> Vec<Output> {
        self.phase = Phase::Selecting;
        self.offered = None;
        self.probing = None;
        self.new_exchange(now);
        self.discover(now)
    }

    fn discover(&mut self, now: Ms) -> Vec<Output> {
        let mut r = self.request(MsgType::Discover, now);
        // Ask for the address we had, if any (INIT-REBOOT's hint).
        r.requested_ip = self.lease.as_ref().map(|l| l.address);
        self.next = Some(now + self.backoff());
        vec![Output::Send(Dest::Broadcast, r.encode())]
    }

    fn send_request(&mut self, now: Ms) -> Vec<Output> {
        let mut r = self.request(MsgType::Request, now);
        let out = match self.phase {
            Phase::Requesting => {
                let (ip, server) = self.offered.expect("an offer in REQUESTING");
                r.requested_ip = Some(ip);
                r.server_id = Some(server);
                self.next = Some(now + self.backoff());
                Dest::Broadcast
            }
            Phase::Renewing | Phase::Rebinding => {
                let l = self.lease.clone().expect("a lease in RENEWING/REBINDING");
                r.ciaddr = l.address;
                r.broadcast = false;
                let until = if self.phase == Phase::Renewing {
                    l.t2()
                } else {
                    l.expiry()
                };
                let wait = (until.saturating_sub(now) / 2).max(1000);
                self.next = Some((now + wait).min(until.max(now + 1)));
                if self.phase == Phase::Renewing {
                    Dest::Server(l.server)
                } else {
                    Dest::Broadcast
                }
            }
            _ => return Vec::new(),
        };
        vec![Output::Send(out, r.encode())]
    }

    /// A packet arrived on the interface's DHCP socket.
    pub fn on_packet(&mut self, now: Ms, bytes: &[u8]) -> Vec<Output> {
        let r = match wire::decode(bytes) {
            Ok(r) => r,
            Err(e) => return vec![Output::Note(format!("ignored a packet: {e}"))],
        };
        if r.xid != self.xid || r.chaddr != self.mac {
            return Vec::new();
        }
        match (self.phase, r.kind) {
            (Phase::Selecting, Some(MsgType::Offer)) => {
                let Some(server) = r.server_id else {
                    return vec![Output::Note("an OFFER without a server id: ignored".into())];
                };
                if r.yiaddr.is_unspecified() {
                    return Vec::new();
                }
                self.offered = Some((r.yiaddr, server));
                self.phase = Phase::Requesting;
                self.attempt = 0;
                let mut out = vec![Output::Note(format!("offer {} from {server}", r.yiaddr))];
                out.extend(self.send_request(now));
                out
            }
            (Phase::Requesting | Phase::Renewing | Phase::Rebinding, Some(MsgType::Ack)) => {
                self.on_ack(now, &r)
            }
            (Phase::Requesting | Phase::Renewing | Phase::Rebinding, Some(MsgType::Nak)) => {
                let why = format!(
                    "NAK from the server{}",
                    r.message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                let mut out = Vec::new();
                if self.lease.take().is_some() {
                    out.push(Output::Lost(why.clone()));
                } else {
                    out.push(Output::Note(why));
                }
                out.extend(self.start(now));
                out
            }
            _ => Vec::new(),
        }
    }

    fn on_ack(&mut self, now: Ms, r: &Reply) -> Vec<Output> {
        let lease_secs = r.lease_secs.unwrap_or(u32::MAX).max(1);
        let prefix = r
            .subnet_mask
            .and_then(wire::mask_prefix)
            .unwrap_or(if r.yiaddr.octets()[0] < 128 { 8 } else { 24 });
        let t1 = r.t1_secs.unwrap_or(lease_secs / 2);
        let t2 = r
            .t2_secs
            .unwrap_or((lease_secs as u64 * 7 / 8) as u32)
            .max(t1);
        let server = r
            .server_id
            .or(self.offered.map(|(_, s)| s))
            .or(self.lease.as_ref().map(|l| l.server))
            .unwrap_or(Ipv4Addr::BROADCAST);
        let lease = Lease {
            address: r.yiaddr,
            prefix,
            server,
            routers: r.routers.clone(),
            dns: r.dns.clone(),
            search: if r.search.is_empty() {
                r.domain.iter().cloned().collect()
            } else {
                r.search.clone()
            },
            mtu: r.mtu,
            classless: r.classless.clone(),
            hostname: r.hostname.clone(),
            lease_secs,
            t1_secs: t1,
            t2_secs: t2,
            start_ms: self.exchange_start,
        };
        // A new address is probed for first; one we hold already is not
        // (our own kernel would not answer, anyone else is a conflict we
        // cannot resolve by declining what we use).
        let known = self
            .lease
            .as_ref()
            .is_some_and(|old| old.address == lease.address);
        if self.cfg.probe && self.phase == Phase::Requesting && !known {
            self.phase = Phase::Probing;
            self.offered = None;
            self.probes = 1;
            self.next = Some(now + PROBE_GAP_MS);
            let addr = lease.address;
            self.probing = Some(lease);
            return vec![
                Output::Note(format!("ACK for {addr}: probing for conflicts")),
                Output::ArpProbe(addr),
            ];
        }
        self.bind(now, lease)
    }

    fn bind(&mut self, now: Ms, lease: Lease) -> Vec<Output> {
        let renewal = self
            .lease
            .as_ref()
            .is_some_and(|old| old.same_config(&lease));
        self.phase = Phase::Bound;
        self.offered = None;
        self.next = Some(lease.t1().max(now + 1));
        self.lease = Some(lease.clone());
        vec![if renewal {
            Output::Renewed(lease)
        } else {
            Output::Bound(lease)
        }]
    }

    /// The deadline came: retransmit, or move on (T1, T2, expiry).
    pub fn on_timer(&mut self, now: Ms) -> Vec<Output> {
        if self.next.is_none_or(|t| t > now) {
            return Vec::new();
        }
        // Expiry first: whatever the phase, a lease past its end is gone.
        if let Some(l) = &self.lease {
            if now >= l.expiry() {
                self.lease = None;
                let mut out = vec![Output::Lost("the lease expired".into())];
                out.extend(self.start(now));
                return out;
            }
        }
        match self.phase {
            Phase::Init => self.start(now),
            Phase::Selecting => {
                self.attempt += 1;
                self.discover(now)
            }
            Phase::Requesting => {
                self.attempt += 1;
                if self.attempt >= 4 {
                    let mut out = vec![Output::Note("no ACK to the REQUEST: starting over".into())];
                    out.extend(self.start(now));
                    out
                } else {
                    self.send_request(now)
                }
            }
            Phase::Bound => {
                self.phase = Phase::Renewing;
                self.new_exchange(now);
                self.send_request(now)
            }
            Phase::Renewing => {
                let t2 = self.lease.as_ref().map_or(now, Lease::t2);
                if now >= t2 {
                    self.phase = Phase::Rebinding;
                    self.new_exchange(now);
                }
                self.send_request(now)
            }
            Phase::Rebinding => self.send_request(now),
            Phase::Probing => {
                let Some(l) = self.probing.clone() else {
                    return self.start(now);
                };
                if self.probes < PROBE_NUM {
                    self.probes += 1;
                    let wait = if self.probes == PROBE_NUM {
                        PROBE_WAIT_MS
                    } else {
                        PROBE_GAP_MS
                    };
                    self.next = Some(now + wait);
                    vec![Output::ArpProbe(l.address)]
                } else {
                    self.probing = None;
                    let mut out = vec![Output::ArpDone];
                    out.extend(self.bind(now, l));
                    out
                }
            }
        }
    }

    /// An ARP packet heard on the interface while probing: a conflict
    /// declines the address (DECLINE broadcast with the address and the
    /// server id, RFC 2131 4.4.1) and starts over after DECLINE_WAIT_MS.
    pub fn on_arp(&mut self, now: Ms, bytes: &[u8]) -> Vec<Output> {
        if self.phase != Phase::Probing {
            return Vec::new();
        }
        let (Some(l), Some(a)) = (self.probing.clone(), Arp::decode(bytes)) else {
            return Vec::new();
        };
        if !a.conflicts(self.mac, l.address) {
            return Vec::new();
        }
        let mut r = self.request(MsgType::Decline, now);
        r.requested_ip = Some(l.address);
        r.server_id = Some(l.server);
        r.broadcast = false;
        r.hostname = None;
        self.probing = None;
        self.phase = Phase::Init;
        self.next = Some(now + DECLINE_WAIT_MS);
        vec![
            Output::ArpDone,
            Output::Send(Dest::Broadcast, r.encode()),
            Output::Declined {
                address: l.address,
                by: a.sender_mac,
            },
        ]
    }

    /// moonlit shuts down (or the interface is no longer declared): a
    /// RELEASE if configured and bound.
    pub fn release(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if let (true, Some(l)) = (self.cfg.release, self.lease.take()) {
            let mut r = self.request(MsgType::Release, self.exchange_start);
            r.ciaddr = l.address;
            r.broadcast = false;
            r.server_id = Some(l.server);
            out.push(Output::Send(Dest::Server(l.server), r.encode()));
            out.push(Output::Lost("released".into()));
        }
        self.phase = Phase::Init;
        self.next = None;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::arp::Arp;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    /// What a server answers to `req` (the client's last packet).
    fn answer(req: &[u8], kind: u8, lease: u32) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p[0] = 2;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&req[4..8]);
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[28..34].copy_from_slice(&MAC);
        p.extend_from_slice(&[
            99, 130, 83, 99, 53, 1, kind, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0,
        ]);
        p.extend_from_slice(&[3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3, 51, 4]);
        p.extend_from_slice(&lease.to_be_bytes());
        p.push(255);
        p
    }

    fn sent(out: &[Output]) -> (Dest, Vec<u8>) {
        out.iter()
            .find_map(|o| match o {
                Output::Send(d, b) => Some((*d, b.clone())),
                _ => None,
            })
            .expect("a packet to send")
    }

    #[test]
    fn a_probed_address_is_bound_after_the_probes_or_declined_on_a_conflict() {
        let cfg = DhcpConfig {
            probe: true,
            ..Default::default()
        };
        let mut c = Client::new(MAC, cfg.clone(), 11);
        let (_, discover) = sent(&c.start(0));
        let (_, request) = sent(&c.on_packet(5, &answer(&discover, 2, 20)));
        let out = c.on_packet(10, &answer(&request, 5, 20));
        assert_eq!(c.phase, Phase::Probing);
        let ip = Ipv4Addr::new(10, 0, 2, 15);
        assert!(out.contains(&Output::ArpProbe(ip)), "{out:?}");
        // two more probes, then bound; our own probes heard back change nothing
        assert!(c.on_arp(20, &Arp::probe(MAC, ip).encode()).is_empty());
        let mut probes = 1;
        let mut bound = None;
        while bound.is_none() {
            let t = c.deadline().unwrap();
            for o in c.on_timer(t) {
                match o {
                    Output::ArpProbe(a) => {
                        assert_eq!(a, ip);
                        probes += 1;
                    }
                    Output::Bound(l) => bound = Some((t, l)),
                    _ => {}
                }
            }
        }
        let (t, l) = bound.unwrap();
        assert_eq!(probes, PROBE_NUM);
        assert_eq!(t, 10 + 2 * PROBE_GAP_MS + PROBE_WAIT_MS);
        assert_eq!(l.address, ip);
        assert_eq!(c.phase, Phase::Bound);
        // a renewal of the same address is not probed again
        let (_, req) = sent(&c.on_timer(l.t1()));
        let out = c.on_packet(l.t1() + 1, &answer(&req, 5, 20));
        assert!(matches!(&out[..], [Output::Renewed(_)]), "{out:?}");

        // conflict: another host answers for the address
        let mut c = Client::new(MAC, cfg, 12);
        let (_, discover) = sent(&c.start(0));
        let (_, request) = sent(&c.on_packet(5, &answer(&discover, 2, 20)));
        c.on_packet(10, &answer(&request, 5, 20));
        let other = [2, 0, 0, 0, 0, 9];
        let out = c.on_arp(50, &Arp::announce(other, ip).encode());
        let (d, decline) = sent(&out);
        assert_eq!(d, Dest::Broadcast);
        assert!(out.contains(&Output::Declined {
            address: ip,
            by: other
        }));
        assert!(out.contains(&Output::ArpDone));
        // option 53 = 4 (DECLINE), 50 = the address, 54 = the server
        let opts = &decline[240..];
        assert_eq!(&opts[..3], &[53, 1, 4]);
        assert!(opts.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
        assert!(opts.windows(6).any(|w| w == [54, 4, 10, 0, 2, 2]));
        assert_eq!(&decline[12..16], &[0, 0, 0, 0], "ciaddr 0");
        assert!(c.lease.is_none());
        assert_eq!(c.phase, Phase::Init);
        assert_eq!(c.deadline(), Some(50 + DECLINE_WAIT_MS));
        // and starts over then, without asking for the declined address
        let (_, again) = sent(&c.on_timer(50 + DECLINE_WAIT_MS));
        assert_eq!(c.phase, Phase::Selecting);
        assert!(!again[240..].windows(2).any(|w| w == [50, 4]));
    }

    fn bind(c: &mut Client, now: Ms) -> Lease {
        let (d, discover) = sent(&c.start(now));
        assert_eq!(d, Dest::Broadcast);
        let (_, request) = sent(&c.on_packet(now + 5, &answer(&discover, 2, 20)));
        assert_eq!(c.phase, Phase::Requesting);
        let out = c.on_packet(now + 10, &answer(&request, 5, 20));
        match &out[..] {
            [Output::Bound(l)] => l.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn discover_offer_request_ack() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 42);
        let l = bind(&mut c, 1000);
        assert_eq!(l.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.server, SERVER);
        assert_eq!((l.t1_secs, l.t2_secs), (10, 17));
        assert_eq!(c.deadline(), Some(1000 + 10_000));
    }

    #[test]
    fn renewal_is_unicast_and_changes_nothing() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 1);
        let l = bind(&mut c, 0);
        let out = c.on_timer(l.t1());
        assert_eq!(c.phase, Phase::Renewing);
        let (d, req) = sent(&out);
        assert_eq!(d, Dest::Server(SERVER));
        assert_eq!(
            &req[12..16],
            &[10, 0, 2, 15],
            "ciaddr is the leased address"
        );
        let out = c.on_packet(l.t1() + 3, &answer(&req, 5, 20));
        assert!(matches!(&out[..], [Output::Renewed(_)]), "{out:?}");
        assert_eq!(c.phase, Phase::Bound);
        assert_eq!(c.deadline(), Some(l.t1() + 10_000));
    }

    #[test]
    fn no_server_rebinds_then_expires_then_starts_over() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 7);
        let l = bind(&mut c, 0);
        let mut now = l.t1();
        let mut phases = Vec::new();
        let mut lost = None;
        while now < l.expiry() + 5000 {
            for o in c.on_timer(now) {
                if let Output::Lost(why) = o {
                    lost.get_or_insert((now, why));
                }
            }
            phases.push(c.phase);
            now = c.deadline().unwrap();
        }
        assert!(
            phases.contains(&Phase::Renewing) && phases.contains(&Phase::Rebinding),
            "{phases:?}"
        );
        let (at, why) = lost.expect("the lease is lost");
        assert_eq!(at, l.expiry(), "lost exactly at expiry");
        assert!(why.contains("expired"));
        assert_eq!(c.phase, Phase::Selecting);
        assert!(c.lease.is_none());
    }

    #[test]
    fn nak_drops_the_lease_and_stray_packets_are_ignored() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 9);
        let l = bind(&mut c, 0);
        let (_, req) = sent(&c.on_timer(l.t1()));
        let mut other = answer(&req, 5, 20);
        other[4] ^= 0xff; // another transaction
        assert!(c.on_packet(l.t1() + 1, &other).is_empty());
        assert!(c
            .on_packet(l.t1() + 1, b"garbage")
            .iter()
            .all(|o| matches!(o, Output::Note(_))));
        let out = c.on_packet(l.t1() + 2, &answer(&req, 6, 20));
        assert!(matches!(out[0], Output::Lost(_)), "{out:?}");
        assert_eq!(c.phase, Phase::Selecting);
    }

    #[test]
    fn retransmissions_back_off_with_jitter() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 3);
        let mut now = 0;
        c.start(now);
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let next = c.deadline().unwrap();
            gaps.push(next - now);
            now = next;
            c.on_timer(now);
        }
        for (i, g) in gaps.iter().enumerate() {
            let base = 4000u64 << (i as u32).min(4);
            assert!((base - 1000..=base + 1000).contains(g), "gap {i}: {g}");
        }
    }

    #[test]
    fn the_client_survives_serialization() {
        let mut c = Client::new(MAC, DhcpConfig::default(), 5);
        let l = bind(&mut c, 0);
        let j = serde_json::to_string(&c).unwrap();
        let mut back: Client = serde_json::from_str(&j).unwrap();
        assert_eq!(back.lease, Some(l.clone()));
        assert_eq!(back.deadline(), c.deadline());
        let (d, _) = sent(&back.on_timer(l.t1()));
        assert_eq!(d, Dest::Server(SERVER));
        // Every field, the private ones too, reads back as written.
        c.offered = Some((l.address, SERVER));
        c.probing = Some(l.clone());
        c.probes = 2;
        c.cfg = DhcpConfig {
            hostname: Some("h".into()),
            client_id: Some(vec![1, 2]),
            use_dns: true,
            use_routes: true,
            release: true,
            use_hostname: true,
            probe: true,
        };
        assert_eq!(crate::json_decode::round_trips(&c), Ok(()));
        for p in [
            Phase::Init,
            Phase::Selecting,
            Phase::Requesting,
            Phase::Renewing,
        ] {
            assert_eq!(crate::json_decode::round_trips(&p), Ok(()));
        }
        for p in [Phase::Rebinding, Phase::Probing, Phase::Bound] {
            assert_eq!(crate::json_decode::round_trips(&p), Ok(()));
        }
    }
}
