-- The container's job: runs once "first" is up, then exits with code 7 on
-- its own. It is the main service: moonlit stops the rest and exits with 7.
service "job" {
  exec = { "/bin/sh", "-c", "sleep 0.5; echo job: done; exit 7" },
  after = { "first" },
  requires = { "first" },
  main = true,
  restart = "never",
}
