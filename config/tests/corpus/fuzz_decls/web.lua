service "db" {
  exec = { "/usr/bin/postgres", "-D", "/var/lib/pg" },
  user = "postgres", limits = { nofile = 65536, nproc = { soft = 50, hard = 100 }, stack = "unlimited" },
  notify = true,
  stop_signal = "INT", stop_timeout = 30,
}
service "web" {
  exec = { "/usr/sbin/nginx", "-g", "daemon off;" },
  requires = { "db" },
  ready = { tcp = 80 },
  restart = "always", backoff = { initial = 0.1, max = 30, reset_after = 10 },
  burst = { count = 5, interval = 10 },
  on_change = "reload", reload_signal = "HUP",
}
service "migrate" { exec = { "/usr/local/bin/migrate" }, oneshot = true, after = { "db" } }
