-- In a container with its own cgroup namespace: moonlit finds its cgroup
-- ("/" in the namespace), moves itself into init.scope and gives each
-- service a cgroup below it; the report is printed for the host to read.
service "a" {
  exec = { "/bin/sh", "-c", "echo a-cgroup: $(grep ^0:: /proc/self/cgroup); exec sleep 1000" },
}
service "b" {
  exec = { "/bin/sh", "-c", "echo b-cgroup: $(grep ^0:: /proc/self/cgroup); exec sleep 1000" },
}
service "report" {
  after = { "a", "b" },
  main = true, restart = "never",
  exec = { "/bin/sh", "-c", [[
    sleep 0.5
    echo "init-cgroup: $(grep ^0:: /proc/1/cgroup)"
    echo "root-procs: $(cat /sys/fs/cgroup/cgroup.procs | tr '\n' ' ')"
    echo "scope-procs: $(cat /sys/fs/cgroup/init.scope/cgroup.procs | tr '\n' ' ')"
    echo "a-procs: $(cat /sys/fs/cgroup/a.service/cgroup.procs | tr '\n' ' ')"
    /bin/moonlit ctl --json status | grep -o '"cgroups":{[^}]*}'
    sleep 3
  ]] },
}
