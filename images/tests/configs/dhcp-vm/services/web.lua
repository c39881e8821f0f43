service "web" {
  exec = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/run/www" },
}
