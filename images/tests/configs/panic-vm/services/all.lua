service "a" { exec = { "/bin/sleep", "3600" } }
service "b" { exec = { "/bin/sleep", "3600" } }

service "probe" {
  exec = { "/bin/sh", "-c", [[
    echo "BEFORE $(/bin/moonlit ctl --json status)"
    /bin/moonlit ctl fault panic
    echo "fault request ended with $?"
    sleep 1
    echo "AFTER $(/bin/moonlit ctl --json status)"
    /bin/moonlit ctl poweroff
  ]] },
  after = { "a", "b" },
  oneshot = true,
  restart = "never",
}
