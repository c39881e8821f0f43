//! Readiness: the sd_notify protocol (a datagram socket per service that
//! asked for `notify = true`, named in its `$NOTIFY_SOCKET`; `READY=1` marks
//! it up, `STATUS=` is shown by `ctl status`) and TCP probes
//! (`ready = { tcp = PORT }`, tried every 100 ms, a loopback connect that
//! never blocks the loop).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

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

    /// TCP probes of services waiting to be ready; when the next is due.
    pub(crate) fn probe_ready(&mut self) {
        let now = now_ms();
        let waiting = self.sup.not_ready();
        let tcp: Vec<(String, String, u16)> = waiting
            .into_iter()
            .filter_map(|(n, r)| match r {
                Readiness::Tcp { host, port } => Some((n, host, port)),
                _ => None,
            })
            .collect();
        if tcp.is_empty() {
            self.readiness.next_probe = None;
            return;
        }
        if self.readiness.next_probe.is_some_and(|t| t > now) {
            return;
        }
        for (name, host, port) in tcp {
            let addr = format!("{host}:{port}");
            let ok = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| {
                    std::net::TcpStream::connect_timeout(&a, Duration::from_millis(20)).is_ok()
                });
            if ok {
                if let Some(a) = self.sup.mark_ready(&name) {
                    self.perform(vec![a]);
                }
            }
        }
        self.readiness.next_probe = Some(now + PROBE_EVERY_MS);
    }
}
