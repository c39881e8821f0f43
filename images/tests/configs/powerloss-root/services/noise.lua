-- Background writes without fsync, only with powerloss.noise on the kernel
-- command line (the cache-disk rounds): the flusher writes them back within
-- a fraction of a second, so the disk's volatile cache holds unflushed
-- writes next to the writer's fsynced ones when the power goes.
service "noise" {
  exec = { "/bin/sh", "/etc/moonlit/noise.sh" },
  restart = "never",
}
