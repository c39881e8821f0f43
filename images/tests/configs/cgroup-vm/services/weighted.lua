-- An idle service whose cpu_weight /cgi-bin/reweight changes (then reloads).
-- Its io_weight is the only limit that needs the io controller: moonlit
-- enables io when this service starts, and no other controller beyond the
-- default memory, cpu and pids.
service "weighted" {
  cgroup = { cpu_weight = 100, memory_high = "64M", cpu_max = "50%", io_weight = 50 },
  exec = { "/bin/busybox", "sleep", "100000" },
}
