-- Boot script of the sandbox demo: runs once, imperative.
local sys = require "sys"
sys.sethostname("moonlit-demo")
print("hostname set to " .. sys.uname().nodename)
local code, out = sh("ip -brief link 2>/dev/null || echo 'no ip(8) here'")
print("links in this namespace:\n" .. out)
sleep(0.1)
print("boot script done; services start now")
