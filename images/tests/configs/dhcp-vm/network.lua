-- No address, no route, no DNS declared: all of it from qemu's DHCP server.
network.interface "eth0" { dhcp = true }
