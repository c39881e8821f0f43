-- Minimal test helpers for the Lua-written tests of `sys`.
-- Each test script ends with T.done(), which prints "ALL OK <n>" that the Rust
-- runner (tests/lua.rs) requires: a script that stops early cannot pass.
local sys = require "sys"
local T = { n = 0 }

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

function T.ok(v, msg)
  T.n = T.n + 1
  if not v then fail("expected true: " .. tostring(msg)) end
  return v
end

function T.eq(a, b, msg)
  T.n = T.n + 1
  if a ~= b then
    fail(string.format("%s: expected %s, got %s", msg or "eq", tostring(b), tostring(a)))
  end
end

-- v, err from a sys call: must be an OS failure with err[sym] true.
function T.fails(sym, v, err, msg)
  T.n = T.n + 1
  if v ~= nil then fail((msg or "call") .. ": expected failure " .. sym .. ", got " .. tostring(v)) end
  if type(err) ~= "userdata" then fail((msg or "call") .. ": no error object, got " .. tostring(err)) end
  if not err[sym] then fail((msg or "call") .. ": expected " .. sym .. ", got " .. tostring(err.sym) .. " (" .. tostring(err) .. ")") end
  return err
end

-- f(...) must raise an error whose text contains `pattern` (plain).
function T.raises(pattern, f, ...)
  T.n = T.n + 1
  local ok, e = pcall(f, ...)
  if ok then fail("expected an error containing '" .. pattern .. "', got success") end
  if not tostring(e):find(pattern, 1, true) then
    fail("expected an error containing '" .. pattern .. "', got: " .. tostring(e))
  end
end

-- A fresh directory under the runner's temp root (argv[1]) or /tmp.
local seq = 0
function T.tmpdir()
  seq = seq + 1
  local base = arg and arg[1] or "/tmp"
  local d = string.format("%s/sys-lua-%d-%d", base, sys.getpid(), seq)
  assert(sys.util.mkdir_p(d, "0755"))
  return d
end

-- Recursive delete (tests clean up after themselves).
function T.rm_rf(path)
  local st = sys.lstat(path)
  if not st then return end
  if st.isdir then
    for _, name in ipairs(assert(sys.util.ls(path))) do T.rm_rf(path .. "/" .. name) end
    assert(sys.rmdir(path))
  else
    assert(sys.unlink(path))
  end
end

function T.need_root()
  if sys.geteuid() ~= 0 then error("this test needs root (run cargo test as root)") end
end

function T.done()
  print("ALL OK " .. T.n)
end

return T
