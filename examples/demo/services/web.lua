-- A supervised HTTP server: busybox httpd in the foreground, restarted
-- whenever it exits. qemu forwards a host port to guest port 80.
service "web" {
  exec = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/run/www" },
  restart = "always",
  stop_signal = "TERM",
  stop_timeout = 5,
}
