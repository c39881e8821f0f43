-- Run with DB_URL and OTHER in the container's process environment
-- (runc's config.json "env", as `docker run -e` sets it).
service "inherits" {
  exec = { "/bin/sh", "-c", "echo inherits: DB_URL=[$DB_URL] OTHER=[$OTHER]" },
  env_inherit = { "DB_*" },
  oneshot = true, restart = "never",
}
service "clean" {
  exec = { "/bin/sh", "-c", "echo clean: DB_URL=[$DB_URL]" },
  oneshot = true, restart = "never",
}
service "all" {
  exec = { "/bin/sh", "-c", "echo all: DB_URL=[$DB_URL] OTHER=[$OTHER]" },
  env_inherit = true,
  oneshot = true, restart = "never",
}
service "done" {
  exec = { "/bin/sh", "-c", "sleep 0.3; exit 0" },
  after = { "inherits", "clean", "all" },
  main = true, restart = "never",
}
