service "box" {
  description = "an isolated service",
  exec = { "/bin/sh", "-c", "exec sleep 1000" },
  env = { A = "1", B = "two" }, env_inherit = { "LANG", "LC_*" }, env_file = "-/etc/box.env",
  capabilities = { "net_bind_service" }, no_new_privs = true,
  namespaces = { "net", "mount", "uts" }, private_tmp = true, read_only_paths = { "/usr" },
  cwd = "/", group = "0", umask = "027",
  log_file = "/var/log/box.log", log_buffer = 4096, console = false,
  ready = { path = "/run/box.ready" }, ready_timeout = 5,
  enabled = true, main = false,
  on_start = function(name, pid) end, on_exit = function(name, code, reason) end,
}
