---@meta moonlit
-- LuaLS type stubs for moonlit's globals: the scheduler calls (they look
-- blocking and yield to the init's event loop), processes, the `moonlit`
-- table, and the declaration DSL of service modules. See docs/DESIGN.md.

---Sleeps `seconds` (a fraction is fine); other tasks and PID 1 keep running.
---@param seconds number
function sleep(seconds) end

---Waits until `path` exists, up to `timeout` seconds (forever if nil).
---@param path string
---@param timeout? number
---@return true|nil ok
---@return string? err
function wait_path(path, timeout) end

---@class moonlit.Process
---@field pid integer
local Process = {}

---Waits for the process to end (yields to the loop).
---@return integer code exit code, or 128 + signal number
---@return string? output what it wrote, when stdout/stderr = "capture"
function Process:wait() end

---Signals the process ("TERM" by default).
---@param sig? string|integer
---@return true|nil ok
---@return string? err
function Process:kill(sig) end

---Resource limits by setrlimit(2) name without RLIMIT_ (as, core, cpu, data,
---fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime,
---sigpending, stack): a number (soft = hard), "unlimited", or {soft=, hard=}
---(an absent one is inherited).
---@alias moonlit.Limits table<string, integer|"unlimited"|{soft?: integer|"unlimited", hard?: integer|"unlimited"}>

---@class moonlit.SpawnSpec
---@field [integer] string argv
---@field env? table<string, string>
---@field cwd? string
---@field user? string
---@field group? string
---@field setsid? boolean default true
---@field umask? string|integer
---@field limits? moonlit.Limits
---@field stdin? "null"|"inherit"|string|integer
---@field stdout? "null"|"inherit"|"capture"|string|integer
---@field stderr? "null"|"inherit"|"capture"|string|integer

---Starts a process with a clean signal state, its own session and only
---the descriptors meant for it. Returns at once.
---@param spec moonlit.SpawnSpec
---@return moonlit.Process|nil proc
---@return string? err
function spawn(spec) end

---Runs `/bin/sh -c cmd`, waits, returns its exit code and captured output.
---@param cmd string
---@return integer|nil code
---@return string output
function sh(cmd) end

---@class Task
local Task = {}
---Waits for the task; its function's results, or nil and the error.
---@param timeout? number seconds
---@return any ...
function Task:join(timeout) end
---Ends the task where it waits; false if it had ended.
---@return boolean
function Task:cancel() end

---Starts fn(...) in a task of its own beside the caller.
---@param fn function
---@return Task|nil task
---@return string|nil err
function task(fn, ...) end
---fn(...) every `seconds`, in a task of its own.
---@param seconds number
---@param fn function
---@return Task
function every(seconds, fn, ...) end
---fn(...) at each elapse of a calendar expression (systemd's OnCalendar subset).
---@param calendar string
---@param fn function
---@return Task
function at(calendar, fn, ...) end
---Waits until fd is readable; true, or nil and "timed out".
---@param fd integer|userdata
---@param timeout? number
---@return true|nil
---@return string|nil
function wait_readable(fd, timeout) end
---Waits until fd is writable; true, or nil and "timed out".
---@param fd integer|userdata
---@param timeout? number
---@return true|nil
---@return string|nil
function wait_writable(fd, timeout) end

---@class io.Stream
---@field read fun(self: io.Stream, what?: integer|"*l"|"*L"|"*a", timeout?: number): string|nil, any
---@field write fun(self: io.Stream, ...: string): integer|nil, any
---@field lines fun(self: io.Stream, timeout?: number): fun(): string|nil
---@field shutdown fun(self: io.Stream, how?: string): boolean|nil, any
---@field close fun(self: io.Stream): boolean|nil, any

---@class io.Server
---@field accept fun(self: io.Server, timeout?: number): io.Stream|nil, any
---@field autospawn fun(self: io.Server, fn: fun(client: io.Stream)): boolean|nil, any
---@field close fun(self: io.Server): boolean|nil, any

---@class io.tcp
---@field listen fun(host: string, port: integer, backlog?: integer): io.Server|nil, any
---@field connect fun(host: string, port: integer, timeout?: number): io.Stream|nil, any
---@class io.unix
---@field listen fun(path: string, mode?: string, backlog?: integer): io.Server|nil, any
---@field connect fun(path: string, timeout?: number): io.Stream|nil, any
---@type io.tcp
io.tcp = {}
---@type io.unix
io.unix = {}

---@class moonlit
---@field mode "system"|"container"|"sandbox"|"user"
---@field config_dir string
---@field debug boolean
---@field version string
---@field cmdline table<string, string> kernel command line pairs (a bare word maps to "")
moonlit = {}
---@param msg string
function moonlit.log(msg) end
function moonlit.poweroff() end
function moonlit.reboot() end
function moonlit.halt() end
---@param name string
function moonlit.start(name) end
---@param name string
function moonlit.stop(name) end
---@param name string
function moonlit.restart(name) end
---Starts an on-demand service (one with a timer or a lazy socket) now,
---unless a run of it is still going.
---@param name string
function moonlit.trigger(name) end
---@class moonlit.ServiceStats
---@field memory_current? integer bytes (memory.current; nil without the memory controller)
---@field cpu_usage_usec? integer CPU time used (cpu.stat usage_usec)
---@field pids_current? integer processes (pids.current; nil without the pids controller)
---@field populated boolean a process of it is in its cgroup
---@field oom_kills? integer OOM kills in its cgroup (memory.events oom_kill)

---A service's cgroup figures, read now.
---@param name string
---@return moonlit.ServiceStats|nil stats
---@return string|nil err why there are none (cgroups off, no such cgroup)
function moonlit.service_stats(name) end
---Hands the machine over to `root` (from an initramfs); returns only on failure.
---@param root string
---@param init? string default "/sbin/init"
---@return nil
---@return string err
function moonlit.switch_root(root, init) end

---@class moonlit.Socket
---@field listen string "IP:PORT" ("0.0.0.0:8080", "[::]:53") or an absolute path (a unix socket)
---@field type? "stream"|"dgram"|"seqpacket" default "stream"
---@field name? string its name in LISTEN_FDNAMES (default: the service's name)
---@field backlog? integer listen(2) backlog (default 4096)
---@field mode? string unix sockets: the file's mode (default "0666")
---@field owner? string unix sockets: the file's owner
---@field group? string unix sockets: the file's group

---@class moonlit.ServiceSpec
---@field exec string[] program and arguments (required)
---@field description? string
---@field env? table<string, string>
---@field cwd? string
---@field user? string
---@field group? string
---@field umask? string
---@field limits? moonlit.Limits resource limits (setrlimit); changing them restarts the service
---@field restart? "always"|"on-failure"|"never" default "always" ("never" for oneshot)
---@field stop_signal? string default "TERM"
---@field stop_timeout? number seconds, default 10, then KILL
---@field reload_signal? string default "HUP"
---@field after? string[] start after these have started (or failed)
---@field requires? string[] start only once these are up; stopped with them
---@field oneshot? boolean runs to completion; dependents wait for success
---@field main? boolean its end ends the system, with its exit code
---@field enabled? boolean
---@field on_change? "restart"|"reload"|"defer" what a reload does on argv/env/cwd/user changes
---@field backoff? {initial?: number, max?: number, reset_after?: number}
---@field burst? {count?: integer, interval?: number}
---@field log_file? string|{path: string, max_size?: string|integer, keep?: integer, timestamps?: boolean} absolute path; with max_size ("10M"), rotated to path.1 ... path.KEEP (keep default 5)
---@field log_buffer? integer bytes kept for `ctl logs`
---@field console? boolean echo output on the console (default true)
---@field notify? boolean ready when it sends READY=1 on $NOTIFY_SOCKET (sd_notify)
---@field ready? {tcp?: integer, host?: string, path?: string} ready when a TCP connect succeeds (tcp, host) or when path exists
---@field ready_timeout? number seconds to get ready, else killed (default 30)
---@field on_start? fun(name: string, pid: integer) runs as a task after each start
---@field on_exit? fun(name: string, code: integer, reason: "oom"|nil) runs as a task after each end (once its cgroup is empty)
---@field type? "simple"|"forking"|"oneshot"|"notify" "forking": the started process daemonizes and exits 0
---@field pid_file? string with type "forking": where the daemon writes its pid
---@field timer? string|{calendar?: string|string[], on_boot?: number, every?: number, persistent?: boolean, randomized_delay?: number} started on a schedule instead of at boot
---@field cgroup? {memory_max?: string|integer, memory_high?: string|integer, swap_max?: string|integer, cpu_weight?: integer, cpu_max?: string, pids_max?: integer|"max", io_weight?: integer} cgroup v2 limits, applied live on reload
---@field health? {exec?: string[], tcp?: integer, host?: string, path?: string, every?: number, timeout?: number, retries?: integer, action?: "restart"|"mark"} probes after readiness (every 10 s, timeout 2 s, 3 retries, "restart")
---@field on_health? fun(name: string, ok: boolean) runs as a task when it becomes healthy or unhealthy
---@field sockets? moonlit.Socket[] sockets moonlit binds and passes as fds 3, 4, ... (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), kept across restarts, reloads and re-exec
---@field lazy? boolean with sockets: not started at boot; the first connection starts it
---@field accept? boolean with stream sockets: one instance per connection, on stdin/stdout (inetd style)
---@field max_connections? integer with accept: instances at once, at most (default 64)

---Declares a service (in services/*.lua): `service "web" { exec = {...} }`.
---@param name string
---@return fun(spec: moonlit.ServiceSpec)
function service(name) end

---Declares the network: `network.interface "eth0" {...}`, `network.veth`,
---`network.bridge`, `network.vlan`, `network.macvlan`, `network.dummy`,
---`network.bond`, `network.dns {...}`. See docs/lua/net.md.
network = {}

---Declares the module's persistent state: plain data owned by the init,
---kept across reloads and re-execs. Returns the live table.
---@generic T: table
---@param defaults T
---@param version? integer
---@return T
function state(defaults, version) end
