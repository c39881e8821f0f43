-- A service that crashes a second after every start. moonlit restarts it
-- with a growing delay (0.5 s, 1 s, 2 s, 4 s), and gives up once it has been
-- restarted 5 times within 30 s: the console shows every step.
service "flaky" {
  exec = { "/bin/sh", "-c", "echo 'up; crashing in 1 s'; sleep 1; exit 1" },
  restart = "on-failure",
  backoff = { initial = 0.5, max = 4, reset_after = 30 },
  burst = { count = 5, interval = 30 },
}
