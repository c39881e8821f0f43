-- moonlit's Lua prelude: runs once when the runtime is created.
-- Receives the scheduler marker and the Rust-side primitives; defines the
-- blocking-looking calls (which yield to the init's event loop), makes the
-- user's own coroutines forward those yields, and builds module environments
-- for declarations.
local MARK, R = ...

local co_create, co_resume, co_yield, co_status, co_close =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.close
local type, error, select, setmetatable, tostring = type, error, select, setmetatable, tostring

-- A request to the event loop. Only ever called from inside a task.
local function request(...)
  return co_yield(MARK, ...)
end

-- User coroutines: a scheduler request made inside them is passed outward
-- to the loop, and the loop's answer is fed back in, so `coroutine.wrap`
-- around `sleep` behaves as if the wrap were not there.
local function pass(co, ok, ...)
  if ok and select("#", ...) > 0 and (...) == MARK and co_status(co) == "suspended" then
    return pass(co, co_resume(co, co_yield(...)))
  end
  return ok, ...
end

coroutine.resume = function(co, ...)
  return pass(co, co_resume(co, ...))
end

local function wrap_result(co, ok, ...)
  if not ok then
    co_close(co)
    error((...), 0)
  end
  return ...
end

coroutine.wrap = function(f)
  local co = co_create(f)
  return function(...)
    return wrap_result(co, pass(co, co_resume(co, ...)))
  end
end

local function seconds(v, fname, argn)
  if type(v) ~= "number" or v ~= v or v < 0 then
    error(fname .. ": argument #" .. argn .. " must be a non-negative number of seconds, got " .. type(v), 3)
  end
  return v
end

function sleep(s)
  seconds(s, "sleep", 1)
  request("sleep", s)
end

function wait_path(path, timeout)
  if type(path) ~= "string" then
    error("wait_path: argument #1 must be a path string, got " .. type(path), 2)
  end
  if timeout ~= nil then seconds(timeout, "wait_path", 2) end
  local deadline = R.now() + (timeout or math.huge)
  while not R.exists(path) do
    local left = deadline - R.now()
    if left <= 0 then
      return nil, "wait_path: timed out waiting for " .. path
    end
    request("sleep", left < 0.02 and left or 0.02)
  end
  return true
end

local Proc = {}
Proc.__index = Proc

function Proc:wait()
  if self.code == nil then
    local code = R.status(self.pid)
    if code == nil then
      code = request("wait", self.pid)
    end
    self.code = code
    self.output = R.take_output(self.pid)
  end
  return self.code, self.output
end

function Proc:kill(sig)
  if self.code ~= nil then
    return nil, "process " .. self.pid .. " has already exited"
  end
  return R.kill(self.pid, sig or "TERM")
end

Proc.__tostring = function(self)
  return "process " .. self.pid .. (self.code and (" (exited " .. self.code .. ")") or "")
end

function spawn(spec)
  if type(spec) ~= "table" then
    error("spawn: argument #1 must be a table {argv..., env=, cwd=, ...}, got " .. type(spec), 2)
  end
  local pid, err, argerr = R.spawn(spec)
  if argerr then error("spawn: " .. argerr, 2) end
  if not pid then return nil, err end
  return setmetatable({ pid = pid }, Proc)
end

function sh(cmd)
  if type(cmd) ~= "string" then
    error("sh: argument #1 must be a command string, got " .. type(cmd), 2)
  end
  local p, err, argerr = R.spawn({ "/bin/sh", "-c", cmd, stdout = "capture", stderr = "capture" })
  if argerr then error("sh: " .. argerr, 2) end
  if not p then return nil, err end
  return setmetatable({ pid = p }, Proc):wait()
end

-- Hands the machine over to the system on `root` (from an initramfs):
-- /dev, /proc, /sys and /run move there, it becomes /, and `init` (default
-- /sbin/init) replaces this PID 1. Returns only on failure: nil, message.
moonlit.switch_root = function(root, init)
  if type(root) ~= "string" then
    error("switch_root: argument #1 must be the new root directory, got " .. type(root), 2)
  end
  if init ~= nil and type(init) ~= "string" then
    error("switch_root: argument #2 must be the init path, got " .. type(init), 2)
  end
  return nil, request("switch_root", root, init or "/sbin/init")
end

-- Tasks, in the Lua Event Machine's style: coroutines on the one loop.
-- task(fn, ...) starts fn beside the caller and returns a handle with
-- :join([timeout]) and :cancel(). An error ends only that task (logged by
-- the loop with the task's name); :join() then returns nil, err.
local co_running, pack, unpack = coroutine.running, table.pack, table.unpack
local Task = {}
Task.__index = Task
Task.__name = "task"
local next_key = 0
local function new_key()
  next_key = next_key + 1
  return next_key
end
-- What each task's thread owns (sockets from io.tcp/io.unix): closed when
-- the task ends, however it ends.
local owned = setmetatable({}, { __mode = "k" })
local own, disown -- (defined with io.tcp below)

function task(fn, ...)
  if type(fn) ~= "function" then
    error("task: argument #1 must be a function, got " .. type(fn), 2)
  end
  local n, args = select("#", ...), { ... }
  local h = setmetatable({ key = new_key(), done = false }, Task)
  local function body()
    local me = co_running()
    local guard <close> = setmetatable({}, {
      __close = function()
        local mine = owned[me]
        owned[me] = nil
        if mine then
          for obj in pairs(mine) do obj:close() end
        end
        if not h.done then
          h.done, h.err = true, R.ending() or "cancelled"
          R.wake(h.key)
        end
      end,
    })
    local res = pack(pcall(fn, unpack(args, 1, n)))
    h.done = true
    if res[1] then h.results = res else h.err = res[2] end
    R.wake(h.key)
    if not res[1] then error(res[2], 0) end
  end
  local id, err = request("task", body, fn)
  if not id then return nil, err end
  h.id = id
  return h
end

function Task:join(timeout)
  if timeout ~= nil then seconds(timeout, "join", 1) end
  local deadline = timeout and R.now() + timeout
  while not self.done do
    local left = deadline and deadline - R.now()
    if left and left <= 0 then return nil, "join: timed out" end
    request("park", self.key, left)
  end
  if self.err ~= nil then return nil, self.err end
  return unpack(self.results, 2, self.results.n)
end

function Task:cancel()
  if self.done then return false end
  R.cancel(self.id)
  return true
end

Task.__tostring = function(self)
  return "task " .. tostring(self.id) .. (self.done and " (done)" or "")
end

-- every(seconds, fn, ...): fn every so often, in a task of its own (its
-- handle: :cancel() stops it). Fixed cadence; a late run is not caught up.
function every(interval, fn, ...)
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    error("every: argument #1 must be a positive number of seconds, got " .. tostring(interval), 2)
  end
  if type(fn) ~= "function" then
    error("every: argument #2 must be a function, got " .. type(fn), 2)
  end
  local n, args = select("#", ...), { ... }
  return task(function()
    local due = R.now()
    while true do
      due = due + interval
      local left = due - R.now()
      if left > 0 then
        request("sleep", left)
      else
        due = R.now()
      end
      fn(unpack(args, 1, n))
    end
  end)
end

-- at("calendar expression", fn, ...): fn at each elapse (systemd's
-- OnCalendar subset, local time), in a task of its own.
function at(expr, fn, ...)
  if type(expr) ~= "string" then
    error("at: argument #1 must be a calendar expression, got " .. type(expr), 2)
  end
  local first = R.calendar_next(expr, R.unix_now())
  if type(first) == "string" then error("at: " .. first, 2) end
  if type(fn) ~= "function" then
    error("at: argument #2 must be a function, got " .. type(fn), 2)
  end
  local n, args = select("#", ...), { ... }
  return task(function()
    local last = 0
    while true do
      local target = R.calendar_next(expr, math.max(R.unix_now(), last))
      if not target then return end
      local left = target - R.unix_now()
      if left > 0 then request("sleep", left) end
      last = target
      fn(unpack(args, 1, n))
    end
  end)
end

-- Waits without blocking the loop: true when ready, nil and "timed out".
local function fdnum(fd, fname)
  if type(fd) == "number" then return fd end
  if type(fd) == "userdata" and fd.getfd then return fd:getfd() end
  if type(fd) == "table" and fd.fd then return fdnum(fd.fd, fname) end
  error(fname .. ": argument #1 must be an fd, got " .. type(fd), 3)
end
local function wait_fd(fd, write, timeout, fname)
  if timeout ~= nil then seconds(timeout, fname, 2) end
  if request("fd", fdnum(fd, fname), write, timeout) then return true end
  return nil, "timed out"
end
function wait_readable(fd, timeout) return wait_fd(fd, false, timeout, "wait_readable") end
function wait_writable(fd, timeout) return wait_fd(fd, true, timeout, "wait_writable") end

-- sys fd objects' read/write/accept/connect wait on the loop instead of
-- blocking (the fd is made non-blocking on first use); sys.read & co stay
-- the raw calls.
local EAGAIN, EINPROGRESS, EINTR = 11, 115, 4
local nonblocking = setmetatable({}, { __mode = "k" })
local bufs = setmetatable({}, { __mode = "k" })
local function patch_fd_methods(sys)
  local M = R.fd_methods()
  if not M or M.__moonlit_io then return end
  M.__moonlit_io = true
  local raw_read, raw_write, raw_accept, raw_connect = M.read, M.write, M.accept, M.connect
  local NONBLOCK = sys.c.O.NONBLOCK
  local function nb(fd)
    if nonblocking[fd] then return end
    local fl = sys.fcntl(fd, "getfl")
    if fl and fl & NONBLOCK == 0 then sys.fcntl(fd, "setfl", fl | NONBLOCK) end
    nonblocking[fd] = true
  end
  local function deadline_of(timeout, fname)
    if timeout == nil then return nil end
    seconds(timeout, fname, 3)
    return R.now() + timeout
  end
  local function wait(fd, write, deadline)
    local left = deadline and deadline - R.now()
    if left and left <= 0 then return nil end
    return request("fd", fd:getfd(), write, left)
  end
  -- One chunk: data, "" at the end of the stream, or nil, err.
  local function chunk(fd, deadline)
    while true do
      local d, err = raw_read(fd, 65536)
      if d then return d end
      if err.errno ~= EAGAIN and err.errno ~= EINTR then return nil, err end
      if not wait(fd, false, deadline) then return nil, "timed out" end
    end
  end
  M.read = function(fd, what, timeout)
    nb(fd)
    local deadline = deadline_of(timeout, "read")
    local buf = bufs[fd] or ""
    if what == nil or type(what) == "number" then
      if #buf > 0 then
        local n = what or #buf
        bufs[fd] = buf:sub(n + 1)
        return buf:sub(1, n)
      end
      local d, err = chunk(fd, deadline)
      if not d then return nil, err end
      if what and #d > what then
        bufs[fd] = d:sub(what + 1)
        return d:sub(1, what)
      end
      return d
    end
    if what == "*l" or what == "l" or what == "*L" or what == "L" then
      while true do
        local i = buf:find("\n", 1, true)
        if i then
          bufs[fd] = buf:sub(i + 1)
          return (what == "*L" or what == "L") and buf:sub(1, i) or buf:sub(1, i - 1)
        end
        local d, err = chunk(fd, deadline)
        if not d then
          bufs[fd] = buf
          return nil, err
        end
        if d == "" then
          bufs[fd] = nil
          if buf == "" then return nil end
          return buf
        end
        buf = buf .. d
      end
    end
    if what == "*a" or what == "a" then
      local parts = { buf }
      bufs[fd] = nil
      while true do
        local d, err = chunk(fd, deadline)
        if not d then return nil, err end
        if d == "" then return table.concat(parts) end
        parts[#parts + 1] = d
      end
    end
    error("read: argument #1 must be a count, \"*l\", \"*L\" or \"*a\", got " .. tostring(what), 2)
  end
  M.write = function(fd, data, timeout)
    if type(data) ~= "string" then data = tostring(data) end
    nb(fd)
    local deadline = deadline_of(timeout, "write")
    local off = 1
    while off <= #data do
      local n, err = raw_write(fd, off == 1 and data or data:sub(off))
      if n then
        off = off + n
      elseif err.errno ~= EAGAIN and err.errno ~= EINTR then
        return nil, err
      elseif not wait(fd, true, deadline) then
        return nil, "timed out"
      end
    end
    return #data
  end
  M.accept = function(fd, flags, timeout)
    nb(fd)
    local deadline = deadline_of(timeout, "accept")
    while true do
      local c, addr = raw_accept(fd, flags or "nonblock,cloexec")
      if c then
        nonblocking[c] = true
        return c, addr
      end
      local err = addr
      if err.errno ~= EAGAIN and err.errno ~= EINTR then return nil, err end
      if not wait(fd, false, deadline) then return nil, "timed out" end
    end
  end
  M.accept4 = M.accept
  M.connect = function(fd, addr, port, timeout)
    nb(fd)
    local ok, err = raw_connect(fd, addr, port)
    if ok then return true end
    if err.errno ~= EINPROGRESS and err.errno ~= EAGAIN then return nil, err end
    if not wait(fd, true, deadline_of(timeout, "connect")) then return nil, "timed out" end
    local soerr = sys.getsockopt(fd, "socket", "error")
    if soerr and soerr ~= 0 then
      return nil, "connect: " .. (sys.strerror and sys.strerror(soerr) or ("errno " .. soerr))
    end
    return true
  end
end
for _, name in ipairs({ "sys", "syscall" }) do
  local loader = package.preload[name]
  if loader then
    package.preload[name] = function(...)
      local m = loader(...)
      patch_fd_methods(name == "sys" and m or require("sys"))
      return m
    end
  end
end

-- io.tcp and io.unix: sockets whose calls wait on the loop (LEM's lem.io
-- in spirit). Built on first use. Each socket belongs to the task that
-- made it (or was handed it by autospawn) and is closed when that task
-- ends; at most MAX_SOCKETS are open at once.
local MAX_SOCKETS = 1024
local owner = setmetatable({}, { __mode = "k" })
local function give(obj, thread)
  local prev = owner[obj]
  if prev and owned[prev] then owned[prev][obj] = nil end
  owner[obj] = thread
  local t = owned[thread]
  if not t then
    t = {}
    owned[thread] = t
  end
  t[obj] = true
end
own = function(obj) give(obj, co_running()) end
disown = function(obj)
  local prev = owner[obj]
  if prev and owned[prev] then owned[prev][obj] = nil end
  owner[obj] = nil
end

local function build_sockets()
  local sys = require "sys"
  local open = 0
  local Stream, Server = {}, {}
  Stream.__index, Server.__index = Stream, Server
  Stream.__name, Server.__name = "io.stream", "io.server"

  local function admit(fd, mt, what)
    open = open + 1
    local obj = setmetatable({ fd = fd, what = what }, mt)
    own(obj)
    return obj
  end
  local function room()
    if open >= MAX_SOCKETS then
      return nil, "too many open sockets (the limit is " .. MAX_SOCKETS .. ")"
    end
    return true
  end
  local function close(self)
    if self.closed then return true end
    self.closed = true
    open = open - 1
    disown(self)
    return self.fd:close()
  end

  function Stream:read(what, timeout)
    if self.closed then return nil, "closed" end
    return self.fd:read(what, timeout)
  end
  function Stream:lines(timeout)
    return function() return self:read("*l", timeout) end
  end
  function Stream:write(...)
    if self.closed then return nil, "closed" end
    local n = select("#", ...)
    local s = n == 1 and (...) or table.concat({ ... })
    return self.fd:write(s)
  end
  function Stream:shutdown(how)
    return sys.shutdown(self.fd, how or "wr")
  end
  Stream.close, Stream.__close = close, close
  Stream.__tostring = function(self) return "io.stream(" .. self.what .. ")" end

  function Server:accept(timeout)
    if self.closed then return nil, "closed" end
    local ok, err = room()
    if not ok then return nil, err end
    local c, addr = self.fd:accept(nil, timeout)
    if not c then return nil, addr end
    if self.tcp then sys.setsockopt(c, "tcp", "nodelay", true) end
    local peer = type(addr) == "table" and (addr.addr and (addr.addr .. ":" .. tostring(addr.port)) or addr.path) or "?"
    return admit(c, Stream, peer or "?")
  end
  -- One task per connection, each given its connection (closed when the
  -- task ends); returns when the server is closed, or nil, err.
  function Server:autospawn(fn)
    if type(fn) ~= "function" then
      error("autospawn: argument #1 must be a function, got " .. type(fn), 2)
    end
    while true do
      local c, err = self:accept()
      if not c then
        if self.closed then return true end
        if err and tostring(err):find("too many", 1, true) then
          sleep(0.05)
        else
          return nil, err
        end
      else
        local t, terr = task(function()
          give(c, co_running())
          return fn(c)
        end)
        if not t then
          c:close()
          moonlit.log("autospawn: " .. tostring(terr))
        end
      end
    end
  end
  Server.close, Server.__close = close, close
  Server.__tostring = function(self) return "io.server(" .. self.what .. ")" end

  local function listen(domain, addr, port, backlog, what)
    local ok, err = room()
    if not ok then return nil, err end
    local fd, e = sys.socket(domain, "stream,nonblock,cloexec")
    if not fd then return nil, e end
    if domain ~= "unix" then sys.setsockopt(fd, "socket", "reuseaddr", true) end
    local okb, eb = sys.bind(fd, addr, port)
    if not okb then fd:close() return nil, eb end
    local okl, el = sys.listen(fd, backlog or 128)
    if not okl then fd:close() return nil, el end
    return admit(fd, Server, what)
  end
  local function connect(domain, addr, port, timeout, what)
    local ok, err = room()
    if not ok then return nil, err end
    local fd, e = sys.socket(domain, "stream,nonblock,cloexec")
    if not fd then return nil, e end
    local okc, ec = fd:connect(addr, port, timeout)
    if not okc then fd:close() return nil, ec end
    -- Lines and small requests: no Nagle delay.
    if domain ~= "unix" then sys.setsockopt(fd, "tcp", "nodelay", true) end
    return admit(fd, Stream, what)
  end
  local function host_of(h)
    if h == nil or h == "*" then return "0.0.0.0", "inet" end
    if h == "localhost" then return "127.0.0.1", "inet" end
    if type(h) ~= "string" then
      error("io.tcp: the host must be an IP address string, got " .. type(h), 3)
    end
    return h, h:find(":", 1, true) and "inet6" or "inet"
  end
  local function port_of(p, fname)
    if math.type(p) ~= "integer" or p < 0 or p > 65535 then
      error(fname .. ": the port must be an integer from 0 to 65535, got " .. tostring(p), 3)
    end
    return p
  end
  local tcp = {
    listen = function(host, port, backlog)
      local h, fam = host_of(host)
      port = port_of(port, "io.tcp.listen")
      local srv, err = listen(fam, h, port, backlog, h .. ":" .. port)
      if srv then srv.tcp = true end
      return srv, err
    end,
    connect = function(host, port, timeout)
      local h, fam = host_of(host)
      port = port_of(port, "io.tcp.connect")
      return connect(fam, h, port, timeout, h .. ":" .. port)
    end,
  }
  local unix = {
    listen = function(path, mode, backlog)
      if type(path) ~= "string" then
        error("io.unix.listen: argument #1 must be a path, got " .. type(path), 2)
      end
      local srv, err = listen("unix", path, nil, backlog, path)
      if srv and mode then sys.chmod(path, mode) end
      return srv, err
    end,
    connect = function(path, timeout)
      if type(path) ~= "string" then
        error("io.unix.connect: argument #1 must be a path, got " .. type(path), 2)
      end
      return connect("unix", path, nil, timeout, path)
    end,
  }
  return tcp, unix
end

if io then
  local built
  setmetatable(io, {
    __index = function(t, k)
      if k ~= "tcp" and k ~= "unix" then return nil end
      if not built then
        local tcp, unix = build_sockets()
        rawset(t, "tcp", tcp)
        rawset(t, "unix", unix)
        built = true
      end
      return rawget(t, k)
    end,
  })
end

package.loaded["moonlit.sched"] = {
  sleep = sleep,
  wait_path = wait_path,
  wait_netlink = function(timeout)
    return request("netlink", timeout)
  end,
}

-- Declarations. Each module is evaluated in a fresh environment whose
-- `service`, `network` and `state` only record what was declared.
local where = R.where

local G = _G
local global_require = require
local function make_env(modname)
  local decls = {}
  local meta = { libs = {} }
  local env = setmetatable({}, { __index = G })
  local function add(kind, name, body, loc)
    if type(body) ~= "table" then
      error(kind .. (name and (' "' .. name .. '"') or "") .. ": expected a table of settings, got " .. type(body), 3)
    end
    decls[#decls + 1] = { kind = kind, name = name, body = body, where = loc }
  end
  env.service = function(name)
    if type(name) ~= "string" or name == "" then
      error("service: expected a service name string, got " .. type(name), 2)
    end
    local loc = where(2)
    return function(body) add("service", name, body, loc) end
  end
  env.network = setmetatable({}, {
    __index = function(_, kind)
      return function(arg)
        local loc = where(2)
        if type(arg) == "table" then
          return add("network." .. kind, nil, arg, loc)
        end
        if type(arg) ~= "string" then
          error("network." .. kind .. ": expected a name string or a table, got " .. type(arg), 2)
        end
        return function(body) add("network." .. kind, arg, body, loc) end
      end
    end,
    __newindex = function() error("network: declarations are calls, not assignments", 2) end,
  })
  -- state(defaults [, version]): plain data owned by the init; survives
  -- reloads and re-exec. Returns the table the module's code should use.
  env.state = function(defaults, version)
    if type(defaults) ~= "table" then
      error("state: expected a table of defaults, got " .. type(defaults), 2)
    end
    if version ~= nil and math.type(version) ~= "integer" then
      error("state: the version must be an integer, got " .. type(version), 2)
    end
    if meta.state then
      error("state: declared twice in " .. modname .. " (first at " .. meta.state.where .. ")", 2)
    end
    local proxy = R.state_snapshot(modname, defaults)
    meta.state = { proxy = proxy, version = version or 1, where = where(2) }
    return proxy
  end
  -- Libraries from lib/ are loaded fresh for each evaluation and recorded,
  -- so a changed library re-evaluates the modules that use it.
  local loaded = {}
  env.require = function(name)
    if loaded[name] ~= nil then return loaded[name] end
    local src, path, hash = R.read_lib(name)
    if not src then return global_require(name) end
    meta.libs[#meta.libs + 1] = { path, hash }
    local f, err = load(src, "@" .. path, "t", setmetatable({}, { __index = env }))
    if not f then error(err, 2) end
    local r = f(name)
    if r == nil then r = true end
    loaded[name] = r
    return r
  end
  env.MODULE = modname
  return env, decls, meta
end

return { make_env = make_env, request = request }
