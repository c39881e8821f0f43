-- An idle service whose cpu_weight /cgi-bin/reweight changes (then reloads).
service "weighted" {
  cgroup = { cpu_weight = 100, memory_high = "64M", cpu_max = "50%" },
  exec = { "/bin/busybox", "sleep", "100000" },
}
