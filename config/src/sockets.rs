//! The schema of socket activation: a service's `sockets = { ... }` and the
//! service-level `lazy`, `accept` and `max_connections` settings.
//!
//! Owns: the typed form ([`Activation`], [`SocketSpec`]), defaults and
//! validation (errors are plain messages; `plan.rs` adds the declaration's
//! `file:line`). Knows nothing of binding or passing descriptors: the init
//! does both (`init/src/init/sockets.rs`).

use std::net::SocketAddr;

use mlua::Value;

use crate::health_logs::describe;
use serde::Serialize;

/// The kernel's default cap on a listen backlog (`net.core.somaxconn`,
/// 4096 since Linux 5.4); a larger backlog is cut to it by the kernel.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Concurrent `accept = true` instances of one service, by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Listen {
    /// An IPv4 or IPv6 address with a port ("0.0.0.0:8080", "[::]:53").
    Inet(SocketAddr),
    /// A filesystem path (a unix socket).
    Unix(String),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Inet(a) => write!(f, "{a}"),
            Listen::Unix(p) => f.write_str(p),
        }
    }
}

/// The socket type (systemd's ListenStream=, ListenDatagram=,
/// ListenSequentialPacket=).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    #[default]
    Stream,
    Dgram,
    Seqpacket,
}

impl SocketKind {
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Stream => "stream",
            SocketKind::Dgram => "dgram",
            SocketKind::Seqpacket => "seqpacket",
        }
    }
    /// Whether it is listened on and accepted from (not a datagram socket).
    pub fn connected(self) -> bool {
        self != SocketKind::Dgram
    }
}

/// One `{ listen = ..., type = ..., name = ..., backlog = ..., mode = ...,
/// owner = ..., group = ... }` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketSpec {
    pub listen: Listen,
    pub kind: SocketKind,
    /// Its name in `LISTEN_FDNAMES` (default: the service's name).
    pub name: String,
    pub backlog: u32,
    /// Unix sockets: the socket file's permissions.
    pub mode: Option<u32>,
    /// Unix sockets: the socket file's owner and group (names or numbers).
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl SocketSpec {
    /// Two declarations that need the same kernel socket (an address and a
    /// type): the descriptor is kept when only the rest changes.
    pub fn same_socket(&self, other: &SocketSpec) -> bool {
        self.listen == other.listen && self.kind == other.kind
    }
}

/// A service's socket activation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// In declaration order: the service gets them as fds 3, 4, ...
    pub sockets: Vec<SocketSpec>,
    /// Not started at boot: the first connection (or datagram) starts it.
    pub lazy: bool,
    /// inetd style: one instance per connection, on stdin/stdout.
    pub accept: bool,
    /// With `accept`: instances running at once, at most.
    pub max_connections: u32,
}

impl Default for Activation {
    fn default() -> Activation {
        Activation {
            sockets: Vec::new(),
            lazy: false,
            accept: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

const SOCKET_KEYS: &[&str] = &[
    "listen", "type", "name", "backlog", "mode", "owner", "group",
];

fn string(key: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| format!("{key} must be valid UTF-8")),
        other => Err(format!("{key} must be a string, got {}", describe(&other))),
    }
}

/// Reads a listen address: a path for a unix socket, else `host:port`
/// with an IP address (IPv6 in brackets). No names: PID 1 never waits on DNS.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.starts_with('/') {
        if s.len() > 107 {
            return Err(format!(
                "listen: the unix socket path \"{s}\" is longer than 107 bytes"
            ));
        }
        if s.contains('\0') || s.ends_with('/') {
            return Err(format!("listen: \"{s}\" is not a file path"));
        }
        return Ok(Listen::Unix(s.to_string()));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("listen: \"{s}\" needs a port other than 0")),
        Ok(a) => Ok(Listen::Inet(a)),
        Err(_) => Err(format!(
            "listen: bad address \"{s}\" (expected \"IP:PORT\" such as \"0.0.0.0:8080\" or \"[::]:53\", or an absolute path for a unix socket)"
        )),
    }
}

/// Reads a file mode: an octal string ("0660") or a number.
fn parse_mode(key: &str, v: Value) -> Result<u32, String> {
    let m = match &v {
        Value::Integer(i) if (0..=0o7777).contains(i) => Some(*i as u32),
        Value::String(s) => {
            let s = s.to_string_lossy();
            if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                u32::from_str_radix(&s, 8).ok()
            } else {
                None
            }
        }
        _ => None,
    };
    m.ok_or_else(|| {
        format!(
            "{key} must be an octal mode string like \"0660\", got {}",
            describe(&v)
        )
    })
}

/// A name systemd's `sd_listen_fds_with_names` accepts: printable ASCII,
/// no ':', at most 255 bytes.
fn valid_fdname(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b':')
}

/// Reads one socket table (`what` names it in messages: "sockets[2]").
fn parse_socket(what: &str, v: Value, service: &str) -> Result<SocketSpec, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "{what} must be a table like {{ listen = \"0.0.0.0:8080\" }}, got {}",
            describe(&v)
        ));
    };
    let mut listen = None;
    let mut kind = SocketKind::Stream;
    let mut name = None;
    let mut backlog = DEFAULT_BACKLOG;
    let mut mode = None;
    let mut owner = None;
    let mut group = None;
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair.map_err(|e| format!("{what}: {e}"))?;
        let k = match k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "{what}: unexpected key of type {}",
                    other.type_name()
                ))
            }
        };
        let key = format!("{what}.{k}");
        match k.as_str() {
            "listen" => {
                listen =
                    Some(parse_listen(&string(&key, val)?).map_err(|m| format!("{what}: {m}"))?)
            }
            "type" => {
                kind = match string(&key, val)?.as_str() {
                    "stream" => SocketKind::Stream,
                    "dgram" | "datagram" => SocketKind::Dgram,
                    "seqpacket" => SocketKind::Seqpacket,
                    other => {
                        return Err(format!(
                            "{key} must be \"stream\", \"dgram\" or \"seqpacket\", got \"{other}\""
                        ))
                    }
                }
            }
            "name" => {
                let n = string(&key, val)?;
                if !valid_fdname(&n) {
                    return Err(format!(
                        "{key}: \"{n}\" is not a valid name (printable ASCII without ':' or spaces, at most 255 bytes)"
                    ));
                }
                name = Some(n);
            }
            "backlog" => {
                backlog = match val {
                    Value::Integer(i) if (1..=65535).contains(&i) => i as u32,
                    other => {
                        return Err(format!(
                            "{key} must be a whole number from 1 to 65535, got {}",
                            describe(&other)
                        ))
                    }
                }
            }
            "mode" => mode = Some(parse_mode(&key, val)?),
            "owner" => owner = Some(string(&key, val)?),
            "group" => group = Some(string(&key, val)?),
            other => {
                return Err(format!(
                    "{what}: unknown key '{other}' (expected one of: {})",
                    SOCKET_KEYS.join(", ")
                ))
            }
        }
    }
    let listen = listen.ok_or_else(|| {
        format!("{what} needs listen = \"IP:PORT\" or listen = \"/path/to.sock\"")
    })?;
    if !matches!(listen, Listen::Unix(_)) {
        for (k, set) in [
            ("mode", mode.is_some()),
            ("owner", owner.is_some()),
            ("group", group.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{what}.{k} applies to unix sockets (a path), not to {listen}"
                ));
            }
        }
    }
    Ok(SocketSpec {
        listen,
        kind,
        name: name.unwrap_or_else(|| service.to_string()),
        backlog,
        mode,
        owner,
        group,
    })
}

/// `sockets = { {...}, {...} }` (or one table `sockets = { listen = ... }`).
pub fn parse_sockets(v: Value, service: &str) -> Result<Vec<SocketSpec>, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "sockets must be a list of tables like {{ {{ listen = \"0.0.0.0:8080\" }} }}, got {}",
            describe(&v)
        ));
    };
    // A single socket written without the outer list.
    if t.contains_key("listen").unwrap_or(false) {
        return Ok(vec![parse_socket("sockets", Value::Table(t), service)?]);
    }
    let n = t.raw_len();
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| format!("sockets: {e}"))?;
        match k {
            Value::Integer(i) if i >= 1 && (i as usize) <= n => {}
            other => {
                return Err(format!(
                    "sockets: unexpected key {} (sockets is a list: {{ {{ listen = ... }}, ... }})",
                    describe(&other)
                ))
            }
        }
    }
    for i in 1..=n {
        let v: Value = t.raw_get(i).map_err(|e| format!("sockets: {e}"))?;
        out.push(parse_socket(&format!("sockets[{i}]"), v, service)?);
    }
    if out.is_empty() {
        return Err("sockets must not be empty (leave the key out instead)".into());
    }
    for (i, a) in out.iter().enumerate() {
        if let Some(j) = out[..i].iter().position(|b| b.same_socket(a)) {
            return Err(format!(
                "sockets[{}] and sockets[{}] both listen on {} ({})",
                j + 1,
                i + 1,
                a.listen,
                a.kind.name()
            ));
        }
    }
    Ok(out)
}

/// `max_connections = N`.
pub fn parse_max_connections(v: Value) -> Result<u32, String> {
    match v {
        Value::Integer(i) if (1..=65535).contains(&i) => Ok(i as u32),
        other => Err(format!(
            "max_connections must be a whole number from 1 to 65535, got {}",
            describe(&other)
        )),
    }
}

/// The checks across keys, once the whole declaration is read. Returns
/// whether the service is started on demand (`lazy` or `accept`).
pub fn check(a: &Activation) -> Result<bool, String> {
    if a.sockets.is_empty() {
        if a.lazy {
            return Err(
                "lazy = true needs sockets = { ... } (the first connection starts it)".into(),
            );
        }
        if a.accept {
            return Err("accept = true needs sockets = { ... }".into());
        }
        if a.max_connections != DEFAULT_MAX_CONNECTIONS {
            return Err("max_connections goes with accept = true and sockets".into());
        }
        return Ok(false);
    }
    if a.accept {
        if let Some((i, s)) = a
            .sockets
            .iter()
            .enumerate()
            .find(|(_, s)| !s.kind.connected())
        {
            return Err(format!(
                "accept = true needs stream (or seqpacket) sockets: sockets[{}] ({}) is {}",
                i + 1,
                s.listen,
                s.kind.name()
            ));
        }
    } else if a.max_connections != DEFAULT_MAX_CONNECTIONS {
        return Err("max_connections goes with accept = true".into());
    }
    Ok(a.lazy || a.accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str) -> Value {
        let lua = mlua::Lua::new();
        // Leaked: the values must outlive this helper in the tests.
        let lua = Box::leak(Box::new(lua));
        lua.load(src).eval().unwrap()
    }

    #[test]
    fn sockets_are_read_with_defaults() {
        let s = parse_sockets(
            eval(r#"{ { listen = "0.0.0.0:8080" }, { listen = "/run/web.sock", mode = "0660" }, { listen = "[::]:53", type = "dgram", name = "dns", backlog = 10 } }"#),
            "web",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].listen, Listen::Inet("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(s[0].name, "web");
        assert_eq!(s[0].backlog, DEFAULT_BACKLOG);
        assert_eq!(s[1].listen, Listen::Unix("/run/web.sock".into()));
        assert_eq!(s[1].mode, Some(0o660));
        assert_eq!(s[2].kind, SocketKind::Dgram);
        assert_eq!(s[2].name, "dns");
        assert_eq!(s[2].backlog, 10);
        let one = parse_sockets(eval(r#"{ listen = "127.0.0.1:1" }"#), "x").unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn bad_declarations_say_what_is_wrong() {
        let e = |src: &str| parse_sockets(eval(src), "web").unwrap_err();
        assert!(e(r#"{ { listen = "1.2.3.4:80", lisen = 1 } }"#).contains("unknown key 'lisen'"));
        assert!(e(r#"{ { listen = "localhost:80" } }"#).contains("bad address"));
        assert!(e(r#"{ { listen = "1.2.3.4" } }"#).contains("bad address"));
        assert!(e(r#"{ { listen = "/run/x", mode = "0968" } }"#).contains("octal mode"));
        assert!(e(r#"{ { listen = "1.2.3.4:80", mode = "0600" } }"#).contains("unix sockets"));
        assert!(e(r#"{ { listen = "/x", type = "raw" } }"#).contains("type must be"));
        assert!(e(r#"{ { listen = "/x", name = "a:b" } }"#).contains("not a valid name"));
        assert!(e(r#"{ { listen = "/x" }, { listen = "/x" } }"#).contains("both listen"));
        assert!(e(r#"{ { type = "dgram" } }"#).contains("needs listen"));
        let mut a = Activation {
            sockets: parse_sockets(eval(r#"{ { listen = "/x", type = "dgram" } }"#), "w").unwrap(),
            accept: true,
            ..Default::default()
        };
        assert!(check(&a)
            .unwrap_err()
            .contains("accept = true needs stream"));
        a.accept = false;
        a.lazy = true;
        assert!(check(&a).unwrap());
        a.sockets.clear();
        assert!(check(&a).unwrap_err().contains("needs sockets"));
    }
}
