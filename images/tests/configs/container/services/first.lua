-- Started first, stopped last. Logs the signal that stops it.
service "first" {
  exec = { "/bin/sh", "-c", "trap 'echo first: got TERM; exit 0' TERM; echo first: up; while :; do sleep 0.2; done" },
  restart = "always",
}
