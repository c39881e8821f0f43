//! Readiness: the sd_notify protocol (a datagram socket per service that
//! asked for `notify = true`, named in its `$NOTIFY_SOCKET`; `READY=1` marks
//! it up, `STATUS=` is shown by `ctl status`) and TCP probes
//! (`ready = { tcp = PORT }`, tried every 100 ms with a non-blocking
//! connect whose outcome is read on a later probe: the loop never waits).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use moonlit_config::plan::Readiness;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::{now_ms, Init, T_MASK};
use crate::supervisor::Ms;

pub(crate) const T_NOTIFY: u64 = 3 << 32;
const PROBE_EVERY_MS: Ms = 100;

#[derive(Default)]
pub(crate) struct Ready {
    /// Service -> (token id, socket, path).
    sockets: HashMap<String, (u32, OwnedFd, PathBuf)>,
    by_id: HashMap<u32, String>,
    next: u32,
    pub next_probe: Option<Ms>,
    /// Connects in progress: service -> (socket, started).
    probes: HashMap<String, (OwnedFd, Ms)>,
}

/// How one non-blocking TCP probe stands.
enum Probe {
    Connected,
    Pending,
    Failed,
}

/// Starts a non-blocking connect to `addr`.
fn start_probe(addr: std::net::SocketAddr) -> Result<(OwnedFd, Probe), rustix::io::Errno> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let state = match rustix::net::connect(&fd, &addr) {
        Ok(()) => Probe::Connected,
        Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::INTR) => Probe::Pending,
        Err(_) => Probe::Failed,
    };
    Ok((fd, state))
}

/// Whether a pending connect finished, without waiting.
fn check_probe(fd: &OwnedFd) -> Probe {
    let mut fds = [rustix::event::PollFd::new(
        fd,
        rustix::event::PollFlags::OUT,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => Probe::Pending,
        Ok(_) => match rustix::net::sockopt::socket_error(fd) {
            Ok(Ok(())) => Probe::Connected,
            _ => Probe::Failed,
        },
        Err(_) => Probe::Failed,
    }
}

impl Init {
    /// The notify socket of `service`, made on first use; its path.
    pub(crate) fn notify_socket(
        &mut self,
        service: &str,
        uid: Option<u32>,
    ) -> Result<PathBuf, String> {
        if let Some((_, _, p)) = self.readiness.sockets.get(service) {
            return Ok(p.clone());
        }
        let path = self
            .opts
            .control_path
            .with_file_name(format!("notify-{service}.sock"));
        let _ = std::fs::remove_file(&path);
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| format!("notify socket: {e}"))?;
        let addr = SocketAddrUnix::new(&path)
            .map_err(|e| format!("notify socket {}: {e}", path.display()))?;
        rustix::net::bind(&fd, &addr)
            .map_err(|e| format!("notify socket {}: bind: {e}", path.display()))?;
        // Only the service (its user) and root may write to it.
        if let Some(uid) = uid {
            let _ = rustix::fs::chown(&path, Some(rustix::fs::Uid::from_raw(uid)), None);
        }
        let _ = rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(0o600));
        let id = self.readiness.next;
        self.readiness.next += 1;
        epoll::add(
            &self.epoll,
            fd.as_fd(),
            EventData::new_u64(T_NOTIFY | u64::from(id)),
            EventFlags::IN,
        )
        .map_err(|e| format!("notify socket: epoll: {e}"))?;
        self.readiness.by_id.insert(id, service.to_string());
        self.readiness
            .sockets
            .insert(service.to_string(), (id, fd, path.clone()));
        Ok(path)
    }

    /// Datagrams on a notify socket.
    pub(crate) fn on_notify(&mut self, token: u64) {
        let id = (token & T_MASK) as u32;
        let Some(service) = self.readiness.by_id.get(&id).cloned() else {
            return;
        };
        let mut messages = Vec::new();
        if let Some((_, fd, _)) = self.readiness.sockets.get(&service) {
            let mut buf = [0u8; 4096];
            while let Ok((n, _)) = rustix::net::recv(fd, &mut buf, rustix::net::RecvFlags::DONTWAIT)
            {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        for m in messages {
            for line in m.lines() {
                if line == "READY=1" {
                    if let Some(a) = self.sup.mark_ready(&service) {
                        self.perform(vec![a]);
                    }
                } else if let Some(text) = line.strip_prefix("STATUS=") {
                    if let Some(s) = self.sup.services.get_mut(&service) {
                        s.status_text = Some(text.to_string());
                    }
                }
            }
        }
    }

    /// TCP and path probes of services waiting to be ready; when the next
    /// is due.
    pub(crate) fn probe_ready(&mut self) {
        let now = now_ms();
        let waiting = self.sup.not_ready();
        let mut tcp: Vec<(String, String, u16)> = Vec::new();
        let mut paths: Vec<(String, String)> = Vec::new();
        for (n, r) in waiting {
            match r {
                Readiness::Tcp { host, port } => tcp.push((n, host, port)),
                Readiness::Path { path } => paths.push((n, path)),
                _ => {}
            }
        }
        if tcp.is_empty() && paths.is_empty() {
            self.readiness.next_probe = None;
            return;
        }
        if self.readiness.next_probe.is_some_and(|t| t > now) {
            return;
        }
        // A path probe is one stat(2): a dangling symlink does not count.
        for (name, path) in paths {
            if rustix::fs::stat(path.as_str()).is_ok() {
                if let Some(a) = self.sup.mark_ready(&name) {
                    self.perform(vec![a]);
                }
            }
        }
        let waiting: Vec<String> = tcp.iter().map(|(n, _, _)| n.clone()).collect();
        self.readiness.probes.retain(|n, _| waiting.contains(n));
        for (name, host, port) in tcp {
            let state = match self.readiness.probes.remove(&name) {
                // A connect still pending for a second is given up and retried.
                Some((fd, started)) if now.saturating_sub(started) < 1000 => match check_probe(&fd)
                {
                    Probe::Pending => {
                        self.readiness.probes.insert(name.clone(), (fd, started));
                        Probe::Pending
                    }
                    other => other,
                },
                _ => {
                    // The host was checked to be an IP address when declared.
                    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
                        continue;
                    };
                    match start_probe(std::net::SocketAddr::new(ip, port)) {
                        Ok((fd, Probe::Pending)) => {
                            self.readiness.probes.insert(name.clone(), (fd, now));
                            Probe::Pending
                        }
                        Ok((_, state)) => state,
                        Err(_) => Probe::Failed,
                    }
                }
            };
            if let Probe::Connected = state {
                if let Some(a) = self.sup.mark_ready(&name) {
                    self.perform(vec![a]);
                }
            }
        }
        self.readiness.next_probe = Some(now + PROBE_EVERY_MS);
    }
}
