//! The request socket: a [`Handle`] around neli's synchronous `NlSocketHandle`
//! (never `NlRouter`, which starts a thread). It numbers requests, matches replies
//! and ACKs by sequence number, turns NLMSG_ERROR into [`NetError::Kernel`] with the
//! kernel's extended-ACK text, retries interrupted dumps, and counts the requests
//! that change kernel state (so tests can prove a no-op reload writes nothing).
//!
//! It also holds the small attribute encoder ([`Attrs`]) shared by the link,
//! address and route modules. It does not know what the messages mean.

use std::fmt::{Debug, Display};
use std::io::Cursor;

use neli::{
    consts::{
        nl::{NlmF, NlmsgerrAttr},
        rtnl::{Ifla, Rtm},
        socket::NlFamily,
    },
    err::SocketError,
    nl::Nlmsghdr,
    nl::{NlPayload, NlmsghdrBuilder},
    rtnl::{Rtattr, RtattrBuilder},
    socket::{synchronous::NlSocketHandle, NlSocket},
    types::{Buffer, RtBuffer},
    utils::Groups,
    FromBytes, Size, ToBytes,
};

use crate::consts::{NLMSG_DONE, NLMSG_ERROR};
use crate::error::NetError;

/// One decoded message of a reply: its type and the bytes after the nlmsghdr.
#[derive(Debug)]
pub(crate) struct Reply {
    pub ty: u16,
    pub payload: Vec<u8>,
}

/// Receive buffer size: the most the kernel puts in one datagram (a dump's
/// skb is capped at 32 KiB; see netlink_dump()).
const RECV_BUF: usize = 32 * 1024;

/// A synchronous rtnetlink request socket (unicast only, no multicast groups).
///
/// Opened as neli's `NlSocketHandle`, then driven through the `NlSocket` under
/// it with two buffers kept for the socket's life: the handle's own receive
/// path takes a buffer from a pool and zero-fills 32 KiB back into it after
/// every datagram, which cost more user time than everything else in a
/// request (bench/net).
pub struct Handle {
    sock: NlSocket,
    seq: u32,
    writes: u64,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

fn socket_err(op: &'static str, target: &dyn Display, e: SocketError) -> NetError {
    match e {
        SocketError::Io(io) => NetError::Socket {
            op,
            target: target.to_string(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        other => NetError::Decode {
            op,
            target: target.to_string(),
            msg: other.to_string(),
        },
    }
}

impl Handle {
    /// Open a NETLINK_ROUTE socket (`socket(2)` + `bind(2)`, see rtnetlink(7)) in
    /// the caller's network namespace, with extended ACKs enabled.
    pub fn new() -> Result<Self, NetError> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| socket_err("open", &"rtnetlink socket", e))?;
        // Extended ACKs only improve error messages; an old kernel without them is fine.
        let _ = sock.enable_ext_ack(true);
        Ok(Handle {
            sock: NlSocket::from(sock),
            seq: 0,
            writes: 0,
            out: Vec::with_capacity(512),
            inbuf: vec![0; RECV_BUF],
        })
    }

    /// Number of state-changing requests (new/set/del) sent so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn send<P: Size + ToBytes + Debug>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
        op: &'static str,
        target: &dyn Display,
    ) -> Result<u32, NetError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags | NlmF::REQUEST)
            .nl_seq(self.seq)
            .nl_pid(0)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(|e| NetError::Decode {
                op,
                target: target.to_string(),
                msg: e.to_string(),
            })?;
        let mut cur = Cursor::new(std::mem::take(&mut self.out));
        cur.get_mut().clear();
        let built = msg.to_bytes(&mut cur);
        self.out = cur.into_inner();
        built.map_err(|e| socket_err(op, target, e.into()))?;
        loop {
            match self
                .sock
                .send(&self.out[..], neli::consts::socket::Msg::empty())
            {
                Ok(_) => return Ok(self.seq),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(socket_err(op, target, SocketError::from(e))),
            }
        }
    }

    /// Read replies to `seq` until its ACK / DONE / error. Returns the data
    /// messages and whether the kernel flagged the dump as interrupted.
    fn collect(
        &mut self,
        seq: u32,
        op: &'static str,
        target: &dyn Display,
    ) -> Result<(Vec<Reply>, bool), NetError> {
        let mut out = Vec::new();
        let mut intr = false;
        loop {
            let n = match self
                .sock
                .recv(&mut self.inbuf[..], neli::consts::socket::Msg::empty())
            {
                Ok((n, _)) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(socket_err(op, target, SocketError::from(e))),
            };
            if take_datagram(&self.inbuf[..n], seq, &mut out, &mut intr, op, target)? {
                return Ok((out, intr));
            }
        }
    }

    /// A state-changing request (`flags` | REQUEST | ACK); waits for the ACK.
    pub(crate) fn write<P: Size + ToBytes + Debug>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
        op: &'static str,
        target: &dyn Display,
    ) -> Result<(), NetError> {
        self.writes += 1;
        let seq = self.send(ty, flags | NlmF::ACK, payload, op, target)?;
        self.collect(seq, op, target).map(|_| ())
    }

    /// A non-dump query that answers with data then an ACK.
    pub(crate) fn query<P: Size + ToBytes + Debug>(
        &mut self,
        ty: Rtm,
        payload: P,
        op: &'static str,
        target: &dyn Display,
    ) -> Result<Vec<Reply>, NetError> {
        let seq = self.send(ty, NlmF::ACK, payload, op, target)?;
        self.collect(seq, op, target).map(|r| r.0)
    }

    /// A dump (NLM_F_DUMP), retried when the kernel reports it interrupted by a
    /// concurrent change.
    pub(crate) fn dump<P: Size + ToBytes + Debug + Clone>(
        &mut self,
        ty: Rtm,
        payload: P,
        op: &'static str,
    ) -> Result<Vec<Reply>, NetError> {
        let mut tries = 0;
        loop {
            let seq = self.send(ty, NlmF::DUMP, payload.clone(), op, &"dump")?;
            let (out, intr) = self.collect(seq, op, &"dump")?;
            tries += 1;
            if !intr || tries >= 5 {
                return Ok(out);
            }
        }
    }
}

/// A message of a datagram that cannot be parsed.
#[derive(Debug)]
pub(crate) struct Malformed {
    pub msg: String,
    pub seq: u32,
    /// An NLMSG_ERROR's code (negative errno), when the message was one.
    pub code: Option<i32>,
}

/// The next message of a datagram. Its lengths are checked first: neli's
/// parser subtracts header sizes from them unchecked (a header length
/// below 16, an error message's embedded request longer than the message,
/// or a DONE with NLM_F_MULTI and less than an error's size before more
/// messages panicked in a debug build and wrapped in a release one).
pub(crate) fn next_message(cur: &mut Cursor<&[u8]>) -> Result<Nlmsghdr<Rtm, Buffer>, Malformed> {
    let bytes = *cur.get_ref();
    let at = cur.position() as usize;
    let rest = bytes.get(at..).unwrap_or_default();
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .and_then(|x| x.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let u16_at = |b: &[u8], i: usize| {
        b.get(i..i + 2)
            .and_then(|x| x.try_into().ok())
            .map(u16::from_ne_bytes)
    };
    let bad = |msg: String, seq: u32, code: Option<i32>| Malformed { msg, seq, code };
    let (Some(len), Some(ty), Some(flags), Some(seq)) = (
        u32_at(rest, 0),
        u16_at(rest, 4),
        u16_at(rest, 6),
        u32_at(rest, 8),
    ) else {
        return Err(bad(
            format!("truncated message header ({} bytes)", rest.len()),
            0,
            None,
        ));
    };
    if len < 16 || len as usize > rest.len() {
        return Err(bad(
            format!(
                "message length {len} out of range (header 16, {} bytes left)",
                rest.len()
            ),
            seq,
            None,
        ));
    }
    let payload = &rest[16..len as usize];
    const MULTI: u16 = 0x2;
    match ty {
        NLMSG_ERROR => {
            let code = u32_at(payload, 0).map(|c| c as i32);
            let inner = u32_at(payload, 4);
            let fits = match (code, inner) {
                (Some(0), Some(_)) => payload.len() >= 20,
                (Some(_), Some(n)) => n >= 16 && 4 + (n as usize).div_ceil(4) * 4 <= payload.len(),
                _ => false,
            };
            if !fits {
                return Err(bad(
                    format!("malformed error message ({} bytes)", payload.len()),
                    seq,
                    code,
                ));
            }
        }
        NLMSG_DONE
            if flags & MULTI != 0 && at + (len as usize) < bytes.len() && payload.len() < 20 =>
        {
            return Err(bad("malformed DONE message".into(), seq, None));
        }
        _ => {}
    }
    Nlmsghdr::<Rtm, Buffer>::from_bytes(cur).map_err(|e| bad(e.to_string(), seq, None))
}

/// Reads one datagram of replies to `seq` into `out`: true once it holds
/// the request's end (ACK, DONE or the error that ends it). Messages for
/// other sequence numbers (late replies to abandoned requests) are skipped.
pub(crate) fn take_datagram(
    bytes: &[u8],
    seq: u32,
    out: &mut Vec<Reply>,
    intr: &mut bool,
    op: &'static str,
    target: &dyn Display,
) -> Result<bool, NetError> {
    let n = bytes.len();
    let mut cur = Cursor::new(bytes);
    while (cur.position() as usize) < n {
        let msg = match next_message(&mut cur) {
            Ok(m) => m,
            // An error answer to this request whose layout neli cannot take
            // still says what failed.
            Err(Malformed {
                seq: s,
                code: Some(code),
                ..
            }) if s == seq && code != 0 => {
                return Err(NetError::Kernel {
                    op,
                    target: target.to_string(),
                    errno: code.saturating_neg(),
                    ext: None,
                })
            }
            Err(m) => {
                return Err(NetError::Decode {
                    op,
                    target: target.to_string(),
                    msg: m.msg,
                })
            }
        };
        if *msg.nl_seq() != seq {
            continue; // a late reply to an earlier, abandoned request
        }
        if msg.nl_flags().contains(NlmF::DUMP_INTR) {
            *intr = true;
        }
        match msg.nl_payload() {
            NlPayload::Ack(_) => return Ok(true),
            NlPayload::Err(e) => {
                let ext = e
                    .ext_ack()
                    .get_attr_handle()
                    .get_attr_payload_as_with_len::<String>(NlmsgerrAttr::Msg)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string());
                return Err(NetError::Kernel {
                    op,
                    target: target.to_string(),
                    errno: e.error().saturating_neg(),
                    ext,
                });
            }
            NlPayload::DumpExtAck(a) => {
                if *a.error() != 0 {
                    return Err(NetError::Kernel {
                        op,
                        target: target.to_string(),
                        errno: a.error().saturating_neg(),
                        ext: None,
                    });
                }
                return Ok(true);
            }
            NlPayload::Empty => {
                if u16::from(*msg.nl_type()) == NLMSG_DONE {
                    return Ok(true);
                }
            }
            NlPayload::Payload(p) => out.push(Reply {
                ty: u16::from(*msg.nl_type()),
                payload: p.as_ref().to_vec(),
            }),
        }
    }
    Ok(false)
}

/// A list of rtnetlink attributes under construction (type, payload bytes).
#[derive(Debug, Default, Clone)]
pub(crate) struct Attrs(pub Vec<(u16, Vec<u8>)>);

impl Attrs {
    pub fn new() -> Self {
        Attrs(Vec::new())
    }
    pub fn bytes(mut self, ty: u16, b: &[u8]) -> Self {
        self.0.push((ty, b.to_vec()));
        self
    }
    pub fn u32(self, ty: u16, v: u32) -> Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    pub fn u16(self, ty: u16, v: u16) -> Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    pub fn u8(self, ty: u16, v: u8) -> Self {
        self.bytes(ty, &[v])
    }
    /// NUL-terminated string attribute.
    pub fn str(self, ty: u16, s: &str) -> Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.bytes(ty, &b)
    }
    /// Non-terminated string (IFLA_INFO_KIND is accepted both ways).
    pub fn nested(self, ty: u16, inner: &Attrs) -> Result<Self, NetError> {
        let b = inner.encode()?;
        Ok(self.bytes(ty, &b))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// As a neli attribute buffer of any rtnetlink attribute type.
    pub fn rtbuffer<T: From<u16> + Size>(&self) -> Result<RtBuffer<T, Buffer>, NetError> {
        let mut buf = RtBuffer::new();
        for (ty, payload) in &self.0 {
            let a: Rtattr<T, Buffer> = RtattrBuilder::default()
                .rta_type(T::from(*ty))
                .rta_payload(Buffer::from(payload.as_slice()))
                .build()
                .map_err(|e| NetError::Decode {
                    op: "encode",
                    target: "attribute".into(),
                    msg: e.to_string(),
                })?;
            buf.push(a);
        }
        Ok(buf)
    }
    /// The attributes' wire bytes (each padded to 4).
    pub fn encode(&self) -> Result<Vec<u8>, NetError> {
        let buf: RtBuffer<Ifla, Buffer> = self.rtbuffer()?;
        to_bytes(&buf)
    }
}

/// Serialize any neli value.
pub(crate) fn to_bytes<T: ToBytes + Size>(v: &T) -> Result<Vec<u8>, NetError> {
    let mut c = Cursor::new(Vec::with_capacity(v.padded_size()));
    v.to_bytes(&mut c).map_err(|e| NetError::Decode {
        op: "encode",
        target: "message".into(),
        msg: e.to_string(),
    })?;
    Ok(c.into_inner())
}

/// Split an attribute area into (type, payload) pairs using neli's parser.
pub(crate) fn parse_attrs(bytes: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, String> {
    use neli::FromBytesWithInput;
    let buf = RtBuffer::<Ifla, Buffer>::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len())
        .map_err(|e| e.to_string())?;
    Ok(buf
        .iter()
        .map(|a| {
            (
                u16::from(*a.rta_type()) & 0x3fff,
                a.rta_payload().as_ref().to_vec(),
            )
        })
        .collect())
}

/// Read a native-endian u32 payload.
pub(crate) fn ne_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// Read a NUL-terminated string payload.
pub(crate) fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
