local t = {} t.self = t t[1] = t
local boom = setmetatable({}, { __index = function() error("meta boom") end, __len = function() error("len boom") end })
service "h1" (setmetatable({ exec = { "/bin/true" } }, { __index = function(_, k) error("index " .. tostring(k)) end }))
service "h2" { exec = boom }
service "h3" { exec = { "/bin/true" }, env = t }
service "h4" { exec = { "/bin/true" }, limits = { nofile = 0/0 }, stop_timeout = 1/0 }
service "h5" { exec = { "/bin/true" }, stop_timeout = -1, log_buffer = math.maxinteger, umask = math.mininteger }
service "h6" { exec = { string.rep("x", 100000) }, description = string.rep("\0", 1000) }
network.interface "h7" { mtu = 0/0, addresses = t }
network.veth "h8" { peer = boom }
-- Found by the fuzzer: an unknown key of 600 KB took 13 s in the
-- "did you mean" edit distance and was echoed whole in the error.
service "h9" { exec = { "/bin/true" }, [string.rep("\xbck/", 156897)] = 1 }
service "h10" { exec = { "/bin/true" }, limits = { [string.rep("n", 300000)] = 1 } }
-- Found by the fuzzer: a declaration name that is not UTF-8 was an
-- internal error.
network.bond "O\xb7J" { }
service "\xff\xfe" { exec = { "/bin/true" } }
network["\xff"] "x" { }
-- Found by the long pass: a timer interval past u64 seconds panicked in
-- Duration::from_secs_f64.
service "h11" { exec = { "/bin/true" }, timer = { every = 7.454966188562012e29, on_boot = 1e300 } }
