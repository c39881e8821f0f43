-- The Lua half of the `net` module: waits that cooperate with the init's
-- scheduler. Receives the table of Rust functions and returns the module.
local M = ...
local now = M._now

local function close(es)
  if es then es:close() end
end

-- Poll `check` until it returns a value (success), nil+err (failure) or the
-- timeout passes. Between checks, yield to the init's scheduler when it is
-- loaded (package.loaded["moonlit.sched"]), else block on a private event
-- socket with poll(2).
local function wait_for(what, name, timeout, check)
  local sched = package.loaded["moonlit.sched"]
  if sched ~= nil and type(sched) ~= "table" then sched = nil end
  if sched then sched = require("moonlit.sched") end
  local es
  if not sched then
    -- Subscribe before the first check so that no change can slip between the
    -- check and the wait.
    local err
    es, err = M.events()
    if not es then return nil, err end
  end
  local deadline = timeout and (now() + timeout)
  while true do
    local res, more = check()
    if res then close(es); return res, more end
    if res == nil then close(es); return nil, more end
    local remaining
    if deadline then
      remaining = deadline - now()
      if remaining <= 0 then close(es); return M._timeout(what, name, timeout) end
    end
    if sched then
      sched.wait_netlink(remaining)
    else
      local ok, werr = es:wait(remaining)
      if ok == nil then close(es); return nil, werr end
      local evs, rerr = es:read()
      if not evs then close(es); return nil, rerr end
    end
  end
end

local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("bad argument #2 to '" .. fname .. "' (table expected, got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error("bad argument to '" .. fname .. "': unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    error("bad argument to '" .. fname .. "': timeout must be a number >= 0", 3)
  end
  return opts
end

local function check_bool(fname, opts, k)
  local v = opts[k]
  if v ~= nil and type(v) ~= "boolean" then
    error("bad argument to '" .. fname .. "': option '" .. k .. "' must be a boolean", 3)
  end
  return v == true
end

--- Wait until link `name` exists (and is up / has carrier, if asked).
function M.wait_link(name, opts)
  if type(name) ~= "string" then
    error("bad argument #1 to 'wait_link' (interface name expected, got " .. type(name) .. ")", 2)
  end
  opts = check_opts("wait_link", opts, { up = true, carrier = true, timeout = true })
  local up, carrier = check_bool("wait_link", opts, "up"), check_bool("wait_link", opts, "carrier")
  return wait_for("wait_link", name, opts.timeout, function()
    return M._check_link(name, up, carrier)
  end)
end

--- Wait until link `name` has an address, and return it (a table as
--- net.addresses lists them) and the link. Two forms:
---   net.wait_address(name, want, opts): want is an address ("10.0.0.2" or
---     "10.0.0.2/24") or a family ("inet", "inet6"; nil = any family);
---   net.wait_address(name, { family =, scope =, address =, timeout =,
---     tentative = }): family "inet" unless given ("any" for either).
--- Without a scope, link-local addresses do not count when waiting for a
--- family. IPv6 addresses still in duplicate address detection do not count
--- unless opts.tentative is true.
function M.wait_address(name, want, opts)
  if type(name) ~= "string" then
    error("bad argument #1 to 'wait_address' (interface name expected, got " .. type(name) .. ")", 2)
  end
  local scope
  if type(want) == "table" then
    if opts ~= nil then
      error("bad argument #3 to 'wait_address' (no third argument after an options table)", 2)
    end
    opts = check_opts("wait_address", want,
      { timeout = true, tentative = true, family = true, scope = true, address = true })
    if opts.address ~= nil and opts.family ~= nil then
      error("bad argument to 'wait_address': give 'address' or 'family', not both", 2)
    end
    want = opts.address or opts.family or "inet"
    if type(want) ~= "string" and type(want) ~= "number" then
      error("bad argument to 'wait_address': 'address' and 'family' must be strings", 2)
    end
    scope = opts.scope
  elseif want ~= nil and type(want) ~= "string" and type(want) ~= "number" then
    error("bad argument #2 to 'wait_address' (address, family or options table expected, got " .. type(want) .. ")", 2)
  else
    opts = check_opts("wait_address", opts, { timeout = true, tentative = true, scope = true })
    scope = opts.scope
  end
  local tentative = check_bool("wait_address", opts, "tentative")
  -- validate the address/family/scope now so that a typo raises instead of timing out
  M._check_address("lo", want, tentative, scope)
  return wait_for("wait_address", name, opts.timeout, function()
    return M._check_address(name, want, tentative, scope)
  end)
end

return M
