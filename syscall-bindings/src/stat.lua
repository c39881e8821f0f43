-- Builds the stat result tables of `sys` in Lua from the raw numbers the Rust
-- side returns: a Lua table constructor is far cheaper than setting 26 fields
-- one by one through the C API. Chunk arguments: the sys table, the raw
-- functions, the metatable of device tables.
local sys, raw, devmt = ...
local setmetatable = setmetatable

local function dev(d)
  -- Linux's makedev encoding (major 12+20 bits, minor 8+24 bits)
  return setmetatable({
    device = d,
    major = ((d >> 8) & 0xfff) | ((d >> 32) & ~0xfff),
    minor = (d & 0xff) | ((d >> 12) & ~0xff),
  }, devmt)
end

local S_IFMT, S_IFREG, S_IFDIR, S_IFLNK = 0xf000, 0x8000, 0x4000, 0xa000
local S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK = 0x2000, 0x6000, 0x1000, 0xc000
local types = {
  [S_IFREG] = "reg", [S_IFDIR] = "dir", [S_IFLNK] = "lnk", [S_IFCHR] = "chr",
  [S_IFBLK] = "blk", [S_IFIFO] = "fifo", [S_IFSOCK] = "sock",
}

local function build(d, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks,
                     atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec)
  if d == nil then return nil, ino end
  local fmt = mode & S_IFMT
  return {
    dev = dev(d), ino = ino, mode = mode, perm = mode & 4095, type = types[fmt] or "unknown",
    nlink = nlink, uid = uid, gid = gid, rdev = dev(rdev), size = size,
    blksize = blksize, blocks = blocks,
    atime = atime, mtime = mtime, ctime = ctime,
    atime_nsec = atime_nsec, mtime_nsec = mtime_nsec, ctime_nsec = ctime_nsec,
    isreg = fmt == S_IFREG, isdir = fmt == S_IFDIR, islnk = fmt == S_IFLNK,
    ischr = fmt == S_IFCHR, isblk = fmt == S_IFBLK, isfifo = fmt == S_IFIFO,
    issock = fmt == S_IFSOCK,
  }
end

local stat, lstat, fstat, fstatat = raw.stat, raw.lstat, raw.fstat, raw.fstatat
function sys.stat(path) return build(stat(path)) end
function sys.lstat(path) return build(lstat(path)) end
function sys.fstat(fd) return build(fstat(fd)) end
function sys.fstatat(dirfd, path, flags) return build(fstatat(dirfd, path, flags)) end
