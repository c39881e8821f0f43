-- The panic-recovery VM test (issue 13): two long-running services, then a
-- probe that records their pids, injects a panic into PID 1 (the kernel
-- command line carries moonlit.faults), and records them again.
print("panic-vm: boot script ran")
