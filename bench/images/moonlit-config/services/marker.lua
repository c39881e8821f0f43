-- The benchmark's READY marker, written the same way as busybox init's: a
-- shell started once the service is up writes it to /dev/kmsg, so both
-- figures are read on the kernel's printk clock.
service "marker" {
  exec = { "/bin/sh", "-c", "echo moonlit-bench: READY > /dev/kmsg" },
  after = { "web" },
  oneshot = true,
  restart = "never",
}
