-- Verifies the record files left by earlier boots, then (with
-- powerloss.name= on the kernel command line) appends fsynced records until
-- the machine is killed or powered off. Without a name it exits after the
-- verification; it is the main service, so that powers the machine off.
service "writer" {
  exec = { "/usr/bin/powerloss-writer", "/var/lib/powerloss" },
  main = true,
  restart = "never",
}
