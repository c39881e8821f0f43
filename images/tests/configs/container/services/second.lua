-- Needs "first"; stopped before it. Its exit code (7 on TERM) becomes the
-- container's exit status: it is the main service.
service "second" {
  exec = { "/bin/sh", "-c", "trap 'echo second: got TERM; exit 7' TERM; echo second: up; while :; do sleep 0.2; done" },
  after = { "first" },
  requires = { "first" },
  main = true,
  restart = "never",
}
