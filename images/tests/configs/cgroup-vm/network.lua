-- The host reaches the web server through a forward to 10.0.2.15.
network.interface "eth0" { dhcp = true }
