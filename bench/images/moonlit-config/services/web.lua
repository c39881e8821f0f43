service "web" {
  exec = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www" },
  restart = "always",
}
