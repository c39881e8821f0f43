service "a" { exec = { "/bin/true" }, after = { "b" } }
service "b" { exec = { "/bin/true" }, requires = { "c" } }
service "c" { exec = { "/bin/true" }, after = { "a" } }
service "d" { exec = { "/bin/true" }, requires = { "d" } }
service "e" { exec = { "/bin/true" }, requires = { "nosuch" } }
service "f" { exec = { "/bin/true" }, after = { "e" } }
-- Found by the fuzzer: a service ordered after a member of a cycle stayed
-- in the plan with a dependency that was not (its start order was wrong).
service "g" { exec = { "/bin/true" }, after = { "d" } }
service "h" { exec = { "/bin/true" }, requires = { "g" } }
