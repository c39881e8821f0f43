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
