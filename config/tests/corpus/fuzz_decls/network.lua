network.interface "lo" { up = true }
network.veth "v0" { peer = "v1", addresses = { "10.9.0.1/24" }, up = true, mtu = 1400 }
network.bridge "br0" { addresses = { "192.168.50.1/24", "fd00::1/64" }, up = true }
network.interface "v1" { master = "br0", up = true }
network.interface "eth0" {
  up = true, mac = "02:00:00:00:00:01",
  dhcp = { hostname = "vm1", use_dns = true, use_routes = true, use_hostname = false, probe = true, release = false },
  ipv6 = { accept_ra = true },
  routes = { { to = "default", via = "10.9.0.254", metric = 100 }, { to = "10.10.0.0/16", via = "10.9.0.2", table = 100 } },
}
network.vlan "eth0.10" { link = "eth0", id = 10 }
network.macvlan "mv0" { link = "eth0", mode = "bridge" }
network.dummy "d0" { addresses = { "10.99.0.1/32" } }
network.bond "bond0" { mode = "active-backup" }
network.dns { servers = { "10.9.0.254", "2001:db8::53" }, search = { "example.org" } }
