//! The handover decoders of the network's types ([`Decode`], rules in
//! [`crate::json_decode`]): the declared network and the DHCP clients with
//! their leases. `Client`'s, which needs its private fields, is in
//! `dhcp/client.rs`.

use crate::addr::IpNet;
use crate::deserialize_by_decode;
use crate::dhcp::client::{DhcpConfig, Lease, Phase};
use crate::dhcp::wire::ClasslessRoute;
use crate::json_decode::{fields, unknown_variant, variant, Decode, Obj, Result, Value};
use crate::spec::{DnsSpec, Ipv6Spec, KindSpec, LinkSpec, NetworkSpec, RouteSpec};

deserialize_by_decode!(
    IpNet,
    KindSpec,
    RouteSpec,
    LinkSpec,
    Ipv6Spec,
    DnsSpec,
    NetworkSpec,
    DhcpConfig,
    Lease,
    Phase,
    ClasslessRoute,
);

impl Decode for IpNet {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "an address with its prefix")?;
        Ok(IpNet {
            addr: o.get("addr")?,
            prefix: o.get("prefix")?,
        })
    }
}

impl Decode for KindSpec {
    fn decode(v: &Value) -> Result<Self> {
        let what = "a link kind";
        let (name, c) = variant(v, what)?;
        Ok(match name {
            "Existing" => KindSpec::Existing,
            "Dummy" => KindSpec::Dummy,
            "Veth" => KindSpec::Veth {
                peer: fields(name, c, what)?.get("peer")?,
            },
            "Bridge" => KindSpec::Bridge {
                stp: fields(name, c, what)?.get("stp")?,
            },
            "Vlan" => {
                let o = fields(name, c, what)?;
                KindSpec::Vlan {
                    link: o.get("link")?,
                    id: o.get("id")?,
                }
            }
            "Macvlan" => {
                let o = fields(name, c, what)?;
                KindSpec::Macvlan {
                    link: o.get("link")?,
                    mode: o.get("mode")?,
                }
            }
            "Bond" => KindSpec::Bond {
                mode: fields(name, c, what)?.get("mode")?,
            },
            _ => return Err(unknown_variant(name, what)),
        })
    }
}

impl Decode for RouteSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a route")?;
        Ok(RouteSpec {
            family: o.get("family")?,
            to: o.get("to")?,
            via: o.get("via")?,
            metric: o.get("metric")?,
            src: o.get("src")?,
            scope: o.get("scope")?,
            table: o.get("table")?,
        })
    }
}

impl Decode for LinkSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a link")?;
        Ok(LinkSpec {
            name: o.get("name")?,
            kind: o.get("kind")?,
            up: o.get("up")?,
            mtu: o.get("mtu")?,
            mac: o.get("mac")?,
            master: o.get("master")?,
            addresses: o.get("addresses")?,
            routes: o.get("routes")?,
            ports: o.get("ports")?,
            dhcp: o.get("dhcp")?,
            ipv6: o.get("ipv6")?,
            location: o.get("location")?,
        })
    }
}

impl Decode for Ipv6Spec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "an ipv6 declaration")?;
        Ok(Ipv6Spec {
            accept_ra: o.get("accept_ra")?,
        })
    }
}

impl Decode for DnsSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a dns declaration")?;
        Ok(DnsSpec {
            nameservers: o.get("nameservers")?,
            search: o.get("search")?,
            options: o.get("options")?,
            location: o.get("location")?,
        })
    }
}

impl Decode for NetworkSpec {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a network")?;
        Ok(NetworkSpec {
            links: o.get("links")?,
            dns: o.get("dns")?,
        })
    }
}

impl Decode for DhcpConfig {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a dhcp declaration")?;
        Ok(DhcpConfig {
            hostname: o.get("hostname")?,
            client_id: o.get("client_id")?,
            use_dns: o.get("use_dns")?,
            use_routes: o.get("use_routes")?,
            release: o.get("release")?,
            use_hostname: o.or_default("use_hostname")?,
            probe: o.or_default("probe")?,
        })
    }
}

impl Decode for Lease {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a lease")?;
        Ok(Lease {
            address: o.get("address")?,
            prefix: o.get("prefix")?,
            server: o.get("server")?,
            routers: o.get("routers")?,
            dns: o.get("dns")?,
            search: o.get("search")?,
            mtu: o.get("mtu")?,
            classless: o.get("classless")?,
            hostname: o.get("hostname")?,
            lease_secs: o.get("lease_secs")?,
            t1_secs: o.get("t1_secs")?,
            t2_secs: o.get("t2_secs")?,
            start_ms: o.get("start_ms")?,
        })
    }
}

impl Decode for Phase {
    fn decode(v: &Value) -> Result<Self> {
        use Phase::*;
        let (name, _) = variant(v, "a dhcp phase")?;
        Ok(match name {
            "Init" => Init,
            "Selecting" => Selecting,
            "Requesting" => Requesting,
            "Bound" => Bound,
            "Renewing" => Renewing,
            "Rebinding" => Rebinding,
            "Probing" => Probing,
            _ => return Err(unknown_variant(name, "a dhcp phase")),
        })
    }
}

impl Decode for ClasslessRoute {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a classless route")?;
        Ok(ClasslessRoute {
            dest: o.get("dest")?,
            prefix: o.get("prefix")?,
            router: o.get("router")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::json_decode::round_trips;

    fn link(kind: KindSpec) -> LinkSpec {
        LinkSpec {
            name: "eth0".into(),
            kind,
            up: Some(true),
            mtu: Some(1400),
            mac: Some("02:00:00:00:00:01".into()),
            master: Some("br0".into()),
            addresses: Some(vec![
                "10.0.0.2/24".parse().expect("net"),
                "fd00::2/64".parse().expect("net"),
            ]),
            routes: Some(vec![RouteSpec {
                family: 2,
                to: Some("0.0.0.0/0".parse().expect("net")),
                via: Some("10.0.0.1".parse().expect("addr")),
                metric: Some(10),
                src: Some("10.0.0.2".parse().expect("addr")),
                scope: Some(0),
                table: 254,
            }]),
            ports: vec!["eth1".into()],
            dhcp: Some(DhcpConfig {
                hostname: Some("vm".into()),
                client_id: Some(vec![1, 2, 3]),
                use_dns: true,
                use_routes: false,
                release: true,
                use_hostname: true,
                probe: true,
            }),
            ipv6: Some(Ipv6Spec {
                accept_ra: Some(false),
            }),
            location: "net.lua:1".into(),
        }
    }

    #[test]
    fn every_field_and_variant_reads_back_as_written() {
        let kinds = [
            KindSpec::Existing,
            KindSpec::Veth { peer: "p".into() },
            KindSpec::Bridge { stp: Some(true) },
            KindSpec::Vlan {
                link: "eth0".into(),
                id: 7,
            },
            KindSpec::Macvlan {
                link: "eth0".into(),
                mode: Some("bridge".into()),
            },
            KindSpec::Dummy,
            KindSpec::Bond { mode: None },
        ];
        let mut spec = NetworkSpec {
            dns: Some(DnsSpec {
                nameservers: vec!["10.0.0.1".parse().expect("addr")],
                search: vec!["lan".into()],
                options: vec!["ndots:2".into()],
                location: "net.lua:9".into(),
            }),
            ..Default::default()
        };
        for (i, k) in kinds.into_iter().enumerate() {
            spec.links.insert(format!("l{i}"), link(k));
        }
        assert_eq!(round_trips(&spec), Ok(()));
        assert_eq!(round_trips(&NetworkSpec::default()), Ok(()));
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            server: Ipv4Addr::new(10, 0, 2, 2),
            routers: vec![Ipv4Addr::new(10, 0, 2, 2)],
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            search: vec!["lan".into()],
            mtu: Some(1500),
            classless: vec![ClasslessRoute {
                dest: Ipv4Addr::new(10, 9, 0, 0),
                prefix: 16,
                router: Ipv4Addr::new(10, 0, 2, 2),
            }],
            hostname: Some("vm".into()),
            lease_secs: 86400,
            t1_secs: 43200,
            t2_secs: 75600,
            start_ms: 12,
        };
        assert_eq!(round_trips(&lease), Ok(()));
    }

    #[test]
    fn bad_documents_are_refused_naming_the_field() {
        let mut v = serde_json::to_value(link(KindSpec::Dummy)).expect("json");
        v["routes"][0]["via"] = "10.0.0.300".into();
        assert_eq!(
            LinkSpec::decode(&v).unwrap_err(),
            "routes: [0]: via: `10.0.0.300` is not an IP address"
        );
        v["kind"] = "Tunnel".into();
        assert_eq!(
            LinkSpec::decode(&v).unwrap_err(),
            "kind: unknown variant `Tunnel` of a link kind"
        );
        assert!(KindSpec::decode(&serde_json::json!({"Vlan": {"link": "e"}})).is_err());
    }
}
