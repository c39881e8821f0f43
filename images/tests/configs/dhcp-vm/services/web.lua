service "web" {
  exec = { "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/run/www" },
}
-- The peer for the figure: busybox udhcpc asks the same server once the
-- interface is up (moonlit's own client holds the lease; udhcpc's script
-- is /bin/true, so it changes nothing). Its time is printed on the console.
service "udhcpc-figure" {
  exec = { "/bin/sh", "-c", [[
    until /bin/busybox ip -4 addr show eth0 | /bin/busybox grep -q inet; do /bin/busybox sleep 0.1; done
    t0=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
    /bin/busybox udhcpc -i eth0 -n -q -f -s /bin/true >/dev/null 2>&1; rc=$?
    t1=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
    echo "figure: udhcpc rc=$rc bound in $(/bin/busybox awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }") ms"
  ]] },
  oneshot = true, restart = "never",
}
