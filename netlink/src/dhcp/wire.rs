//! DHCPv4 messages (RFC 2131 header, RFC 2132 options, RFC 3442 classless
//! routes): encode what the client sends, decode what servers answer.
//!
//! Written here rather than taken from dhcproto: that crate pulls in
//! hickory-proto and ICU's IDNA tables, 266 KB of a static binary measured
//! on 2026-12-06 (a 386 KB hello-world grew to 652 KB), for the dozen
//! options a client needs (docs/DESIGN.md, "DHCP").

use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const HEADER: usize = 236;

/// Option codes used here.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMS: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const T1: u8 = 58;
    pub const T2: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MsgType {
    fn from(n: u8) -> Option<MsgType> {
        use MsgType::*;
        Some(match n {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// A route from option 121.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClasslessRoute {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub router: Ipv4Addr,
}

/// A server's answer, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub xid: u32,
    pub kind: Option<MsgType>,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub server_id: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub lease_secs: Option<u32>,
    pub t1_secs: Option<u32>,
    pub t2_secs: Option<u32>,
    pub classless: Vec<ClasslessRoute>,
    pub message: Option<String>,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            xid: 0,
            kind: None,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 6],
            server_id: None,
            subnet_mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            domain: None,
            search: Vec::new(),
            hostname: None,
            mtu: None,
            lease_secs: None,
            t1_secs: None,
            t2_secs: None,
            classless: Vec::new(),
            message: None,
        }
    }
}

/// Why a packet is not a usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet too short ({0} bytes)")]
    Short(usize),
    #[error("not a BOOTREPLY")]
    NotReply,
    #[error("no DHCP magic cookie")]
    NoMagic,
    #[error("option {code} runs past the end of the packet")]
    Truncated { code: u8 },
    #[error("option {code} has a bad length {len}")]
    BadLength { code: u8, len: usize },
}

/// What the client puts in a message.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Option<MsgType>,
    pub xid: u32,
    pub secs: u16,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub client_id: Option<Vec<u8>>,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            kind: None,
            xid: 0,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 6],
            requested_ip: None,
            server_id: None,
            hostname: None,
            client_id: None,
        }
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[0] = 1; // BOOTREQUEST
        b[1] = 1; // ethernet
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        if self.broadcast {
            b[10] = 0x80;
        }
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[28..34].copy_from_slice(&self.chaddr);
        b.extend_from_slice(&MAGIC);
        let mut put = |code: u8, data: &[u8]| {
            for chunk in data.chunks(255) {
                b.push(code);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        };
        if let Some(k) = self.kind {
            put(opt::MESSAGE_TYPE, &[k as u8]);
        }
        let cid = self.client_id.clone().unwrap_or_else(|| {
            let mut v = vec![1u8];
            v.extend_from_slice(&self.chaddr);
            v
        });
        put(opt::CLIENT_ID, &cid);
        if let Some(ip) = self.requested_ip {
            put(opt::REQUESTED_IP, &ip.octets());
        }
        if let Some(ip) = self.server_id {
            put(opt::SERVER_ID, &ip.octets());
        }
        if let Some(h) = &self.hostname {
            put(opt::HOSTNAME, h.as_bytes());
        }
        if matches!(self.kind, Some(MsgType::Discover) | Some(MsgType::Request)) {
            put(opt::MAX_SIZE, &1500u16.to_be_bytes());
            put(
                opt::PARAMS,
                &[
                    opt::SUBNET_MASK,
                    opt::CLASSLESS_ROUTES,
                    opt::ROUTER,
                    opt::DNS,
                    opt::DOMAIN_NAME,
                    opt::DOMAIN_SEARCH,
                    opt::HOSTNAME,
                    opt::MTU,
                    opt::BROADCAST,
                    opt::LEASE_TIME,
                    opt::T1,
                    opt::T2,
                ],
            );
        }
        b.push(opt::END);
        // Some servers drop BOOTP packets under 300 bytes.
        while b.len() < 300 {
            b.push(opt::PAD);
        }
        b
    }
}

fn ip4(d: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(d[0], d[1], d[2], d[3])
}

fn ips(code: u8, d: &[u8]) -> Result<Vec<Ipv4Addr>, WireError> {
    if d.is_empty() || !d.len().is_multiple_of(4) {
        return Err(WireError::BadLength { code, len: d.len() });
    }
    Ok(d.chunks(4).map(ip4).collect())
}

fn one_ip(code: u8, d: &[u8]) -> Result<Ipv4Addr, WireError> {
    if d.len() != 4 {
        return Err(WireError::BadLength { code, len: d.len() });
    }
    Ok(ip4(d))
}

fn secs(code: u8, d: &[u8]) -> Result<u32, WireError> {
    if d.len() != 4 {
        return Err(WireError::BadLength { code, len: d.len() });
    }
    Ok(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d)
        .trim_end_matches('\0')
        .to_string()
}

/// RFC 1035 names as option 119 carries them (with compression pointers
/// into the option's own data).
fn domain_list(d: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let mut labels = Vec::new();
        let mut j = i;
        let mut next = None;
        let mut hops = 0;
        loop {
            let Some(&len) = d.get(j) else { return out };
            if len == 0 {
                j += 1;
                break;
            }
            if len & 0xc0 == 0xc0 {
                let Some(&lo) = d.get(j + 1) else { return out };
                if next.is_none() {
                    next = Some(j + 2);
                }
                j = (((len & 0x3f) as usize) << 8) | lo as usize;
                hops += 1;
                if hops > 32 {
                    return out;
                }
                continue;
            }
            let l = len as usize;
            let Some(label) = d.get(j + 1..j + 1 + l) else {
                return out;
            };
            labels.push(String::from_utf8_lossy(label).into_owned());
            j += 1 + l;
        }
        out.push(labels.join("."));
        i = next.unwrap_or(j);
    }
    out
}

fn classless(d: &[u8]) -> Result<Vec<ClasslessRoute>, WireError> {
    let bad = || WireError::BadLength {
        code: opt::CLASSLESS_ROUTES,
        len: d.len(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let prefix = d[i];
        if prefix > 32 {
            return Err(bad());
        }
        let n = (prefix as usize).div_ceil(8);
        let dest_bytes = d.get(i + 1..i + 1 + n).ok_or_else(bad)?;
        let router = d.get(i + 1 + n..i + 5 + n).ok_or_else(bad)?;
        let mut dest = [0u8; 4];
        dest[..n].copy_from_slice(dest_bytes);
        out.push(ClasslessRoute {
            dest: Ipv4Addr::from(dest),
            prefix,
            router: ip4(router),
        });
        i += 5 + n;
    }
    Ok(out)
}

/// Decodes a server's message.
pub fn decode(p: &[u8]) -> Result<Reply, WireError> {
    if p.len() < HEADER + 4 {
        return Err(WireError::Short(p.len()));
    }
    if p[0] != 2 {
        return Err(WireError::NotReply);
    }
    if p[HEADER..HEADER + 4] != MAGIC {
        return Err(WireError::NoMagic);
    }
    let mut r = Reply {
        xid: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        yiaddr: ip4(&p[16..20]),
        ..Default::default()
    };
    r.chaddr.copy_from_slice(&p[28..34]);
    // Options, long ones split over several instances concatenated (RFC 3396).
    let mut opts: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = HEADER + 4;
    while i < p.len() {
        let code = p[i];
        if code == opt::PAD {
            i += 1;
            continue;
        }
        if code == opt::END {
            break;
        }
        let len = *p.get(i + 1).ok_or(WireError::Truncated { code })? as usize;
        let data = p
            .get(i + 2..i + 2 + len)
            .ok_or(WireError::Truncated { code })?;
        match opts.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => v.extend_from_slice(data),
            None => opts.push((code, data.to_vec())),
        }
        i += 2 + len;
    }
    for (code, d) in &opts {
        let d = d.as_slice();
        match *code {
            opt::MESSAGE_TYPE => r.kind = d.first().and_then(|&k| MsgType::from(k)),
            opt::SERVER_ID => r.server_id = Some(one_ip(*code, d)?),
            opt::SUBNET_MASK => r.subnet_mask = Some(one_ip(*code, d)?),
            opt::ROUTER => r.routers = ips(*code, d)?,
            opt::DNS => r.dns = ips(*code, d)?,
            opt::DOMAIN_NAME => r.domain = Some(text(d)),
            opt::HOSTNAME => r.hostname = Some(text(d)),
            opt::DOMAIN_SEARCH => r.search = domain_list(d),
            opt::MTU if d.len() == 2 => r.mtu = Some(u16::from_be_bytes([d[0], d[1]])),
            opt::LEASE_TIME => r.lease_secs = Some(secs(*code, d)?),
            opt::T1 => r.t1_secs = Some(secs(*code, d)?),
            opt::T2 => r.t2_secs = Some(secs(*code, d)?),
            opt::CLASSLESS_ROUTES => r.classless = classless(d)?,
            opt::MESSAGE => r.message = Some(text(d)),
            _ => {}
        }
    }
    Ok(r)
}

/// Prefix length of a netmask (None if not contiguous).
pub fn mask_prefix(m: Ipv4Addr) -> Option<u8> {
    let v = u32::from(m);
    let n = v.leading_ones();
    (v.checked_shl(n).unwrap_or(0) == 0).then_some(n as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server reply built by hand, byte by byte, as RFC 2131 lays it out.
    fn reply(opts: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER];
        p[0] = 2;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(opts);
        p.push(255);
        p
    }

    #[test]
    fn decodes_an_ack() {
        let p = reply(&[
            53, 1, 5, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 8, 10, 0,
            2, 3, 1, 1, 1, 1, 51, 4, 0, 0, 0, 20, 26, 2, 5, 220, 15, 4, b'l', b'a', b'b', 0,
            // 121: 10.8.0.0/16 via 10.0.2.9, 0.0.0.0/0 via 10.0.2.2
            121, 12, 16, 10, 8, 10, 0, 2, 9, 0, 10, 0, 2, 2,
            // 119: "a.test", then "b" + pointer to "test" at offset 2
            119, 12, 1, b'a', 4, b't', b'e', b's', b't', 0, 1, b'b', 0xc0, 2,
        ]);
        let r = decode(&p).unwrap();
        assert_eq!(r.kind, Some(MsgType::Ack));
        assert_eq!(r.xid, 0x1234_5678);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(mask_prefix(r.subnet_mask.unwrap()), Some(24));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(r.dns.len(), 2);
        assert_eq!(r.lease_secs, Some(20));
        assert_eq!(r.mtu, Some(1500));
        assert_eq!(r.domain.as_deref(), Some("lab"));
        assert_eq!(
            r.classless,
            vec![
                ClasslessRoute {
                    dest: Ipv4Addr::new(10, 8, 0, 0),
                    prefix: 16,
                    router: Ipv4Addr::new(10, 0, 2, 9)
                },
                ClasslessRoute {
                    dest: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    router: Ipv4Addr::new(10, 0, 2, 2)
                },
            ]
        );
        assert_eq!(r.search, vec!["a.test".to_string(), "b.test".to_string()]);
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        assert!(matches!(decode(&[2; 10]), Err(WireError::Short(_))));
        let mut p = reply(&[]);
        p[0] = 1;
        assert_eq!(decode(&p), Err(WireError::NotReply));
        let p = reply(&[54, 3, 1, 2, 3]);
        assert!(matches!(
            decode(&p),
            Err(WireError::BadLength { code: 54, .. })
        ));
        let mut p = reply(&[]);
        p.pop();
        p.extend_from_slice(&[6, 200, 1]);
        assert!(matches!(decode(&p), Err(WireError::Truncated { code: 6 })));
        let p = reply(&[121, 3, 33, 1, 2]);
        assert!(decode(&p).is_err());
        // Every truncation of a good packet decodes or fails cleanly.
        let good = reply(&[
            53, 1, 5, 121, 12, 16, 10, 8, 10, 0, 2, 9, 0, 10, 0, 2, 2, 119, 3, 0xc0, 0, 0,
        ]);
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
    }

    #[test]
    fn requests_are_well_formed() {
        let r = Request {
            kind: Some(MsgType::Request),
            xid: 7,
            broadcast: true,
            chaddr: [2, 0, 0, 0, 0, 1],
            requested_ip: Some(Ipv4Addr::new(10, 0, 2, 15)),
            server_id: Some(Ipv4Addr::new(10, 0, 2, 2)),
            hostname: Some("vm".into()),
            ..Default::default()
        };
        let b = r.encode();
        assert!(b.len() >= 300);
        assert_eq!(b[0], 1);
        assert_eq!(b[10], 0x80);
        assert_eq!(&b[HEADER..HEADER + 4], &MAGIC);
        let o = &b[HEADER + 4..];
        assert_eq!(&o[..3], &[53, 1, 3]);
        assert!(o.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]));
        assert!(o.windows(6).any(|w| w == [54, 4, 10, 0, 2, 2]));
        assert!(o.windows(4).any(|w| w == [12, 2, b'v', b'm']));
        assert!(o.windows(9).any(|w| w == [61, 7, 1, 2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn netmask_prefixes() {
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
