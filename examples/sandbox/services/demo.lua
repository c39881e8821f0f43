-- Services of the sandbox demo: declarative.
service "clock" {
  description = "prints the time every 2 seconds",
  exec = { "/bin/sh", "-c", "while :; do date '+tick %T'; sleep 2; done" },
}

service "flaky" {
  description = "crashes after a second; restarted with backoff, then failed",
  exec = { "/bin/sh", "-c", "echo 'flaky: up'; sleep 1; echo 'flaky: crashing'; exit 1" },
  backoff = { initial = 0.5, max = 4 },
  burst = { count = 4, interval = 30 },
}

service "setup" {
  oneshot = true,
  exec = { "/bin/sh", "-c", "echo preparing; sleep 0.2; echo prepared" },
}

service "app" {
  requires = { "setup" },
  exec = { "/bin/sh", "-c", "echo app running; exec sleep infinity" },
  stop_timeout = 3,
}
