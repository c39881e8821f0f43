//! Routes: list (any table), add, replace, delete (RTM_NEWROUTE/DELROUTE/GETROUTE),
//! IPv4 and IPv6, default routes, gateway, device, metric, preferred source,
//! scope and table. Multipath routes are listed by their first hop only.

use std::fmt;
use std::io::Cursor;
use std::net::IpAddr;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{RtAddrFamily, RtScope, RtTable, Rtm, RtmF, Rtn, Rtprot},
    },
    rtnl::{Rtmsg, RtmsgBuilder},
    FromBytesWithInput,
};
use serde::{Deserialize, Serialize};

use crate::addr::{ip_from, IpNet};
use crate::consts::*;
use crate::error::NetError;
use crate::socket::{ne_u32, Attrs, Handle, Reply};

/// A route, as listed or as requested.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    /// AF_INET or AF_INET6
    pub family: u8,
    /// destination; `None` is the default route (0.0.0.0/0, ::/0)
    pub dst: Option<IpNet>,
    /// RTA_GATEWAY
    pub gateway: Option<IpAddr>,
    /// RTA_OIF (ifindex)
    pub oif: Option<u32>,
    /// RTA_PRIORITY; `None` when adding means the kernel default (0 / 1024)
    pub metric: Option<u32>,
    /// RTA_PREFSRC
    pub prefsrc: Option<IpAddr>,
    /// rtm_scope; `None` when adding: link for a v4 route without gateway, else universe
    pub scope: Option<u8>,
    /// table id (RTA_TABLE); 254 is main
    pub table: u32,
    /// rtm_protocol (2 kernel, 3 boot, 4 static ...)
    pub protocol: u8,
    /// rtm_type (1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable ...)
    pub kind: u8,
}

impl Route {
    /// A unicast route in the main table to `dst` (None = default) of `family`.
    pub fn new(family: u8, dst: Option<IpNet>) -> Self {
        Route {
            family,
            dst: dst.map(|d| d.network()),
            gateway: None,
            oif: None,
            metric: None,
            prefsrc: None,
            scope: None,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_STATIC,
            kind: RTN_UNICAST,
        }
    }

    /// "default", "10.0.0.0/24", "fd00::/64".
    pub fn dst_text(&self) -> String {
        match &self.dst {
            None => "default".into(),
            Some(d) if d.prefix == 0 => "default".into(),
            Some(d) => d.to_string(),
        }
    }

    /// The metric the kernel will report for this route.
    pub fn effective_metric(&self) -> u32 {
        self.metric.unwrap_or(if self.family == AF_INET6 {
            IP6_RT_PRIO_USER
        } else {
            0
        })
    }

    fn effective_scope(&self) -> u8 {
        self.scope
            .unwrap_or(if self.family == AF_INET && self.gateway.is_none() {
                RT_SCOPE_LINK
            } else {
                RT_SCOPE_UNIVERSE
            })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dst_text())?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " dev #{o}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if let Some(s) = self.prefsrc {
            write!(f, " src {s}")?;
        }
        if self.table != RT_TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

pub(crate) fn rtmsg(r: &Route, deleting: bool) -> Result<Rtmsg, NetError> {
    let mut a = Attrs::new();
    let dst_len = match &r.dst {
        Some(d) if d.prefix > 0 => {
            a = a.bytes(RTA_DST, &ip_octets(&d.network().addr));
            d.prefix
        }
        _ => 0,
    };
    if let Some(g) = &r.gateway {
        a = a.bytes(RTA_GATEWAY, &ip_octets(g));
    }
    if let Some(o) = r.oif {
        a = a.u32(RTA_OIF, o);
    }
    if let Some(m) = r.metric {
        a = a.u32(RTA_PRIORITY, m);
    }
    if let Some(s) = &r.prefsrc {
        a = a.bytes(RTA_PREFSRC, &ip_octets(s));
    }
    a = a.u32(RTA_TABLE, r.table);
    let (scope, proto, kind) = if deleting {
        (r.scope.unwrap_or(255 /* RT_SCOPE_NOWHERE: any */), 0, 0)
    } else {
        (r.effective_scope(), r.protocol, r.kind)
    };
    RtmsgBuilder::default()
        .rtm_family(RtAddrFamily::from(r.family))
        .rtm_dst_len(dst_len)
        .rtm_src_len(0)
        .rtm_tos(0)
        .rtm_table(RtTable::from(if r.table < 256 { r.table as u8 } else { 0 }))
        .rtm_protocol(Rtprot::from(proto))
        .rtm_scope(RtScope::from(scope))
        .rtm_type(Rtn::from(kind))
        .rtm_flags(RtmF::empty())
        .rtattrs(a.rtbuffer()?)
        .build()
        .map_err(|e| NetError::Decode {
            op: "encode",
            target: "rtmsg".into(),
            msg: e.to_string(),
        })
}

fn ip_octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub(crate) fn decode_route(r: &Reply) -> Result<Option<Route>, String> {
    let msg = Rtmsg::from_bytes_with_input(&mut Cursor::new(&r.payload), r.payload.len())
        .map_err(|e| e.to_string())?;
    let family = u8::from(*msg.rtm_family());
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    if u32::from(*msg.rtm_flags()) & RTM_F_CLONED != 0 {
        return Ok(None);
    }
    let dst_len = *msg.rtm_dst_len();
    let mut rt = Route {
        family,
        dst: None,
        gateway: None,
        oif: None,
        metric: None,
        prefsrc: None,
        scope: Some(u8::from(*msg.rtm_scope())),
        table: u32::from(u8::from(*msg.rtm_table())),
        protocol: u8::from(*msg.rtm_protocol()),
        kind: u8::from(*msg.rtm_type()),
    };
    let mut dst = None;
    for at in msg.rtattrs().iter() {
        let ty = u16::from(*at.rta_type()) & 0x3fff;
        let p = at.rta_payload().as_ref();
        match ty {
            RTA_DST => dst = ip_from(family, p),
            RTA_GATEWAY => rt.gateway = ip_from(family, p),
            RTA_OIF => rt.oif = ne_u32(p),
            RTA_PRIORITY => rt.metric = ne_u32(p),
            RTA_PREFSRC => rt.prefsrc = ip_from(family, p),
            RTA_TABLE => rt.table = ne_u32(p).unwrap_or(rt.table),
            _ => {}
        }
    }
    if dst_len > 0 {
        let addr = dst.ok_or("route with dst_len but no RTA_DST")?;
        rt.dst = IpNet::new(addr, dst_len);
    }
    Ok(Some(rt))
}

impl Handle {
    /// Routes of `family` (None: both) in `table` (None: every table), without
    /// cache clones.
    pub fn routes(
        &mut self,
        family: Option<u8>,
        table: Option<u32>,
    ) -> Result<Vec<Route>, NetError> {
        let mut probe = Route::new(family.unwrap_or(AF_UNSPEC), None);
        probe.table = RT_TABLE_UNSPEC;
        probe.scope = Some(0);
        let msg = rtmsg(&probe, true)?;
        let rs = self.dump(Rtm::Getroute, msg, "list routes")?;
        let mut out = Vec::new();
        for r in rs.iter().filter(|r| r.ty == u16::from(Rtm::Newroute)) {
            match decode_route(r) {
                Ok(Some(rt)) => {
                    if family.is_none_or(|f| f == rt.family) && table.is_none_or(|t| t == rt.table)
                    {
                        out.push(rt)
                    }
                }
                Ok(None) => {}
                Err(msg) => {
                    return Err(NetError::Decode {
                        op: "list routes",
                        target: "dump".into(),
                        msg,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Add a route (CREATE|EXCL): EEXIST if an equal one exists. `target`
    /// describes it in errors (the Lua layer passes the device name in).
    pub fn add_route(&mut self, r: &Route, target: &str) -> Result<(), NetError> {
        let msg = rtmsg(r, false)?;
        self.write(
            Rtm::Newroute,
            NlmF::CREATE | NlmF::EXCL,
            msg,
            "add route",
            &target,
        )
    }

    /// Add or replace a route (CREATE|REPLACE).
    pub fn replace_route(&mut self, r: &Route, target: &str) -> Result<(), NetError> {
        let msg = rtmsg(r, false)?;
        self.write(
            Rtm::Newroute,
            NlmF::CREATE | NlmF::REPLACE,
            msg,
            "replace route",
            &target,
        )
    }

    /// Delete a route: ESRCH if none matches.
    pub fn del_route(&mut self, r: &Route, target: &str) -> Result<(), NetError> {
        let msg = rtmsg(r, true)?;
        self.write(Rtm::Delroute, NlmF::empty(), msg, "delete route", &target)
    }
}
