-- A service: moonlit's own binary printing its version.
service "hello" {
  exec = { "/bin/moonlit", "--version" },
  oneshot = true,
  restart = "never",
}

-- Then the configuration powers the machine off, through the control socket.
service "off" {
  exec = { "/bin/moonlit", "ctl", "poweroff" },
  after = { "hello" },
  requires = { "hello" },
  oneshot = true,
  restart = "never",
}
