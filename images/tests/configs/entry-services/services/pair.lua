-- Services beside an entrypoint's command: "second" needs "first", so it
-- starts after it and stops before it. Each logs the TERM that stops it;
-- /tmp/order records the start order (the console relay may lag); both
-- declare readiness, so "started first" means "up first".
service "first" {
  exec = { "/bin/sh", "-c", "trap 'echo first: got TERM; exit 0' TERM; mkdir -p /tmp; echo first >> /tmp/order; touch /tmp/first.up; echo first: up; while :; do sleep 0.1; done" },
  ready = { path = "/tmp/first.up" },
}
service "second" {
  exec = { "/bin/sh", "-c", "trap 'echo second: got TERM; exit 0' TERM; echo second >> /tmp/order; touch /tmp/second.up; echo second: up; while :; do sleep 0.1; done" },
  after = { "first" },
  requires = { "first" },
  ready = { path = "/tmp/second.up" },
}
