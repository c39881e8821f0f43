-- `require "syscall"`: ljsyscall's names and result shapes over `sys`.
-- Built once from the `sys` table passed as the chunk argument.
local sys = ...
local S = {}
for k, v in pairs(sys) do S[k] = v end

-- ljsyscall: pipe() returns true, nil, r, w
function S.pipe(flags)
  local r, w = sys.pipe(flags)
  if not r then return nil, w end
  return true, nil, r, w
end
S.pipe2 = S.pipe

-- ljsyscall: waitpid returns pid, nil, status
function S.waitpid(pid, options)
  local p, st = sys.waitpid(pid, options)
  if not p then return nil, st end
  return p, nil, st
end

-- ljsyscall: socketpair returns true, nil, a, b
function S.socketpair(domain, stype, protocol)
  local a, b = sys.socketpair(domain, stype, protocol)
  if not a then return nil, b end
  return true, nil, a, b
end

-- ljsyscall's type constructors that scripts use as arguments.
S.t = {
  device = function(major, minor)
    local dev = sys.makedev(major, minor or 0)
    return { major = major, minor = minor or 0, device = dev }
  end,
}

S.abi = { os = "linux", arch = "x64", abi64 = true, le = true, types = "linux" }

return setmetatable(S, {
  __index = function(t, k)
    if k == "nl" then
      if package.loaded["syscall.nl"] == nil and package.preload["syscall.nl"] == nil then
        error("syscall.nl not available (no package.preload[\"syscall.nl\"]: the netlink module is not registered)", 2)
      end
      local m = require "syscall.nl"
      rawset(t, "nl", m)
      return m
    end
    return nil
  end,
})
