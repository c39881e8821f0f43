//! The control socket: JSON lines over a unix stream socket.
//!
//! Owns the listening socket, the connected clients and their buffers, the
//! peer-credential check, the size limit and the idle timeout. It never
//! blocks: clients are read and written without blocking, edge-triggered,
//! and a client that stalls is dropped. What a request means is decided by
//! the init ([`crate::init`]); this module only frames, checks and delivers.
//!
//! Protocol (version 1): one request per connection, a JSON object on one
//! line: `{"v":1,"cmd":"status"}`; one reply line `{"v":1,"ok":true,...}` or
//! `{"v":1,"ok":false,"error":"..."}`; `logs` with `follow` then streams
//! `{"v":1,"log":"line","service":"name"}` lines until the client leaves.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use serde_json::{json, Value};

pub const PROTOCOL_VERSION: u64 = 1;
/// Largest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest backlog of output a (following) client may have.
const MAX_OUT: usize = 4 << 20;
/// A client must send its request within this time.
pub const REQUEST_TIMEOUT_MS: u64 = 5000;

pub struct Client {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    pub opened: u64,
    /// Streaming this service's log lines.
    pub follow: Option<String>,
    /// Close once the output is written.
    closing: bool,
    answered: bool,
}

impl Client {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What reading a client produced.
pub enum Incoming {
    /// A well-formed request for the init to answer.
    Request(Value),
    /// Nothing complete yet.
    Nothing,
    /// The client is gone or was dropped.
    Closed,
}

pub struct Control {
    listener: OwnedFd,
    pub path: PathBuf,
    pub clients: BTreeMap<u64, Client>,
    next: u64,
    /// Peers with this uid (and root) are served.
    allowed_uid: u32,
    pub refused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {op}: {source}")]
    Socket {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Control {
    /// Binds the socket at `path` (mode 0600), replacing a stale one.
    pub fn bind(path: &Path, allowed_uid: u32) -> Result<Control, ControlError> {
        let err = |op: &'static str| {
            let p = path.display().to_string();
            move |e: std::io::Error| ControlError::Socket {
                path: p.clone(),
                op,
                source: e,
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err("create directory"))?;
        }
        let _ = std::fs::remove_file(path);
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| err("socket")(e.into()))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| err("address")(e.into()))?;
        // Bind under a restrictive umask so the socket is never briefly open to all.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = rustix::net::bind(&fd, &addr);
        rustix::process::umask(old);
        bound.map_err(|e| err("bind")(e.into()))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(err("chmod"))?;
        rustix::net::listen(&fd, 64).map_err(|e| err("listen")(e.into()))?;
        Ok(Control {
            listener: fd,
            path: path.to_path_buf(),
            clients: BTreeMap::new(),
            next: 1,
            allowed_uid,
            refused: 0,
        })
    }

    /// Takes over a listening socket kept open across a re-exec.
    pub fn adopt(listener: OwnedFd, path: &Path, allowed_uid: u32) -> Control {
        let _ = rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::CLOEXEC);
        Control {
            listener,
            path: path.to_path_buf(),
            clients: BTreeMap::new(),
            next: 1,
            allowed_uid,
            refused: 0,
        }
    }

    /// Takes over a connected client (the one that asked for a re-exec) to
    /// send it the reply.
    pub fn adopt_client(&mut self, fd: OwnedFd, now: u64) -> u64 {
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
        self.add_client(fd, now, true)
    }

    fn add_client(&mut self, fd: OwnedFd, now: u64, answered: bool) -> u64 {
        let id = self.next;
        self.next += 1;
        self.clients.insert(
            id,
            Client {
                fd,
                inbuf: Vec::new(),
                out: VecDeque::new(),
                opened: now,
                follow: None,
                closing: false,
                answered,
            },
        );
        id
    }

    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Accepts pending connections. Returns the ids of new, authorised
    /// clients (to register with epoll); unauthorised ones get an error
    /// line and are closed at once.
    pub fn accept(&mut self, now: u64) -> Vec<u64> {
        let mut new = Vec::new();
        loop {
            let fd = match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => fd,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            // SO_PEERCRED through nix: rustix's UCred wants a non-zero pid,
            // and a peer outside this pid namespace (a sandbox's host) has
            // pid 0 here.
            let uid = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)
                .map(|c| c.uid())
                .unwrap_or(u32::MAX);
            if uid != 0 && uid != self.allowed_uid {
                self.refused += 1;
                let line = format!(
                    "{}\n",
                    json!({"v": PROTOCOL_VERSION, "ok": false, "error": format!("permission denied: uid {uid} may not control this init")})
                );
                let _ = rustix::io::write(&fd, line.as_bytes());
                continue;
            }
            if self.clients.len() >= 64 {
                let line = format!(
                    "{}\n",
                    json!({"v": PROTOCOL_VERSION, "ok": false, "error": "too many clients"})
                );
                let _ = rustix::io::write(&fd, line.as_bytes());
                continue;
            }
            new.push(self.add_client(fd, now, false));
        }
        new
    }

    /// Reads from a client; returns its request once a full line is there.
    pub fn read(&mut self, id: u64) -> Incoming {
        let Some(c) = self.clients.get_mut(&id) else {
            return Incoming::Closed;
        };
        let mut buf = [0u8; 8192];
        let mut eof = false;
        loop {
            match rustix::io::read(&c.fd, &mut buf) {
                Ok(0) => {
                    // Peer closed its side: a follower leaves; a client that
                    // has not asked anything yet is done.
                    if c.follow.is_some() || !c.answered && c.inbuf.is_empty() {
                        return Incoming::Closed;
                    }
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if c.answered {
                        continue; // ignore anything after the one request
                    }
                    c.inbuf.extend_from_slice(&buf[..n]);
                    if c.inbuf.len() > MAX_REQUEST && !c.inbuf[..MAX_REQUEST].contains(&b'\n') {
                        self.fail(
                            id,
                            &format!("request too large (limit {MAX_REQUEST} bytes)"),
                        );
                        return Incoming::Nothing;
                    }
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break,
                Err(_) => return Incoming::Closed,
            }
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return Incoming::Closed;
        };
        if c.answered {
            return Incoming::Nothing;
        }
        let line: Vec<u8> = match c.inbuf.iter().position(|b| *b == b'\n') {
            Some(pos) => {
                let mut l: Vec<u8> = c.inbuf.drain(..=pos).collect();
                l.pop();
                l
            }
            // End of stream ends the line: a client that half-closed after
            // a request without its newline is answered now, not dropped
            // silently at the request timeout.
            None if eof => std::mem::take(&mut c.inbuf),
            None => return Incoming::Nothing,
        };
        c.answered = true;
        let parsed: Result<Value, String> =
            serde_json::from_slice(&line).map_err(|e| format!("malformed request: {e}"));
        match parsed {
            Ok(v) if !v.is_object() => {
                self.fail(id, "malformed request: expected a JSON object");
                Incoming::Nothing
            }
            Ok(v) => match v.get("v").and_then(Value::as_u64) {
                Some(PROTOCOL_VERSION) => Incoming::Request(v),
                other => {
                    self.fail(id, &format!("unsupported protocol version {other:?} (this init speaks {PROTOCOL_VERSION})"));
                    Incoming::Nothing
                }
            },
            Err(e) => {
                self.fail(id, &e);
                Incoming::Nothing
            }
        }
    }

    fn fail(&mut self, id: u64, msg: &str) {
        self.send(
            id,
            &json!({"v": PROTOCOL_VERSION, "ok": false, "error": msg}),
            true,
        );
    }

    /// Queues a JSON line for a client; `close` closes it once written.
    pub fn send(&mut self, id: u64, v: &Value, close: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        // Nothing more for a client being closed: in particular a follower
        // dropped for its backlog must not get the rest of the batch that
        // overflowed it (its stream would go on after a silent gap).
        if c.closing {
            return;
        }
        let mut line = v.to_string();
        line.push('\n');
        if c.out.len() + line.len() > MAX_OUT {
            // A follower that does not read: drop it rather than grow.
            c.out.clear();
            c.closing = true;
            c.follow = None;
            return;
        }
        c.out.extend(line.as_bytes());
        c.answered = true;
        if close {
            c.closing = true;
        }
        self.flush(id);
    }

    /// Writes a client's pending output. Returns false when the client is
    /// finished (the caller drops it).
    pub fn flush(&mut self, id: u64) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        while !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match rustix::io::write(&c.fd, a) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return true,
                Err(_) => {
                    c.out.clear();
                    c.closing = true;
                    c.follow = None;
                    break;
                }
            }
        }
        !(c.closing && c.out.is_empty())
    }

    /// Clients to drop: finished, or silent past the request timeout.
    pub fn finished(&mut self, now: u64) -> Vec<u64> {
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            let alive = self.flush(id);
            let c = &self.clients[&id];
            if !alive || (!c.answered && now.saturating_sub(c.opened) > REQUEST_TIMEOUT_MS) {
                out.push(id);
            }
        }
        out
    }

    pub fn remove(&mut self, id: u64) -> Option<Client> {
        self.clients.remove(&id)
    }

    /// The earliest request timeout still pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.clients
            .values()
            .filter(|c| !c.answered)
            .map(|c| c.opened + REQUEST_TIMEOUT_MS + 1)
            .min()
    }
}

/// Client side: sends one request and returns the connected socket for
/// reading the reply (and the stream, for `logs -f`).
pub fn connect(path: &Path, req: &Value) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    let mut line = req.to_string();
    line.push('\n');
    // A refused client's request may meet a closed socket: the reply, read
    // next, says why.
    let _ = s.write_all(line.as_bytes());
    Ok(s)
}
