service "web" {
  exec = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/run/www" },
}

-- Doubles a string until its cgroup's memory_max stops it: the kernel's OOM
-- killer ends it, and moonlit reports the end as an OOM kill.
service "hog" {
  restart = "never",
  cgroup = { memory_max = "32M", swap_max = 0 },
  exec = { "/bin/sh", "-c", "echo hog-start; x=0123456789abcdef; while :; do x=\"$x$x\"; done" },
  on_exit = function(name, code, reason)
    print("on_exit " .. name .. " " .. code .. " " .. tostring(reason))
  end,
}

-- Forks until its cgroup refuses: 64 processes (itself and 63 children)
-- are allowed, the 65th fork fails and ash gives up.
service "pidlim" {
  restart = "never",
  cgroup = { pids_max = 64 },
  exec = { "/bin/sh", "-c", [[
    i=1
    while [ $i -le 80 ]; do /bin/busybox sleep 1000 & echo "fork $i ok"; i=$((i+1)); done
    echo "forked them all"
  ]] },
}
