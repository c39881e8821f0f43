-- The network, declared: qemu's user network gives the guest 10.0.2.15/24
-- with the host (and the outside world) behind 10.0.2.2. Declarations have
-- no side effects while this file is evaluated; moonlit reconciles them.
network.interface "eth0" {
  up = true,
  addresses = { "10.0.2.15/24" },
  routes = { { to = "default", via = "10.0.2.2" } },
}
