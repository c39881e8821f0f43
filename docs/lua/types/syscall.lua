---@meta syscall
-- LuaLS type stubs for `require "syscall"`: moonlit's ljsyscall-compatible view
-- of `sys` (see docs/lua/sys.md, "ljsyscall compatibility"). Every function of
-- `sys` is present with the same arguments; the calls below differ in the shape
-- of their results, as in ljsyscall.

---@class syscall: sys
---@field nl table netlink (`require "syscall.nl"`, loaded on first use; raises "syscall.nl not available" without the netlink module)
---@field t {device: fun(major: integer, minor?: integer): {major: integer, minor: integer, device: integer}}
---@field abi {os: "linux", arch: string, abi64: boolean, le: boolean, types: string}
local S = {}

---pipe2(2), ljsyscall shape.
---@param flags? sys.flags
---@return true|nil ok
---@return sys.err? err
---@return sys.fd r
---@return sys.fd w
function S.pipe(flags) end

---Same as pipe.
---@param flags? sys.flags
---@return true|nil ok
---@return sys.err? err
---@return sys.fd r
---@return sys.fd w
function S.pipe2(flags) end

---waitpid(2), ljsyscall shape.
---@param pid? integer
---@param options? sys.flags
---@return integer|nil pid
---@return sys.err? err
---@return sys.waitstatus status
function S.waitpid(pid, options) end

---socketpair(2), ljsyscall shape.
---@param domain sys.flags
---@param stype? sys.flags
---@param protocol? sys.flags
---@return true|nil ok
---@return sys.err? err
---@return sys.fd a
---@return sys.fd b
function S.socketpair(domain, stype, protocol) end

return S
