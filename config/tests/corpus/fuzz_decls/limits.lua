service "capped" {
  exec = { "/bin/true" },
  type = "forking", pid_file = "/run/capped.pid",
  cgroup = { memory_max = "64M", memory_high = "48M", swap_max = 0, cpu_weight = 100, cpu_max = "50%", pids_max = 64, io_weight = 100 },
  health = { exec = { "/bin/true" }, interval = 5, timeout = 2, retries = 3 },
  on_health = function(name, ok) end,
}
service "tick" { exec = { "/bin/date" }, timer = { calendar = "*-*-* *:00:00", persistent = true, randomized_delay = 1 } }
service "every" { exec = { "/bin/date" }, timer = { every = 60, on_boot = 5 } }
service "sock" {
  exec = { "/usr/sbin/sshd", "-i" },
  sockets = { { listen = "127.0.0.1:2222", type = "stream", name = "ssh", backlog = 16, mode = "0660" } },
  lazy = true, accept = true, max_connections = 8,
}
