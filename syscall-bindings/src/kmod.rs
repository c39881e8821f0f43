//! `sys.modprobe`: kernel module resolution and loading.
//!
//! Owns: reading `modules.dep`, `modules.alias` and `modules.builtin` of a module
//! tree (by default `/lib/modules/$(uname -r)`), normalising names (`-` = `_`),
//! resolving a name or alias to the files to load with dependencies first, and
//! loading them with finit_module(2). Compressed modules (`.ko.xz`, `.ko.zst`,
//! `.ko.gz`) are handed to the kernel with `MODULE_INIT_COMPRESSED_FILE` (Linux
//! 6.3+ built with CONFIG_MODULE_DECOMPRESS); they are not decompressed in user
//! space. A module that is already loaded (EEXIST) counts as success.
//! Does not own: module parameters beyond passing the string through, blacklists,
//! install/remove commands of modprobe.d (not supported).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use mlua::{Lua, Table, Value};
use nix::libc;
use rustix::fs::{Mode, OFlags};

use crate::errors::{OrSys, Res, SysError};
use crate::reg::{add, cstring};

/// Why a module name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// modules.dep (or another index) could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Neither a module, an alias nor a built-in.
    #[error("module '{name}' not found in {dir}/modules.dep, modules.alias or modules.builtin")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The tree searched.
        dir: String,
    },
    /// modules.dep names a dependency that has no entry.
    #[error("module '{module}' depends on '{dep}', which has no modules.dep entry")]
    MissingDep {
        /// The module.
        module: String,
        /// Its dependency.
        dep: String,
    },
    /// Dependencies nested deeper than any real module tree's.
    #[error(
        "module '{module}': dependencies nested deeper than {limit} levels (a broken modules.dep?)"
    )]
    TooDeep {
        /// The module asked for.
        module: String,
        /// The limit.
        limit: usize,
    },
}

/// How deep dependencies may nest (real trees: under 10). The walk is
/// recursive: this bounds its stack.
pub const MAX_DEPTH: usize = 256;

impl KmodError {
    fn errno(&self) -> i32 {
        match self {
            KmodError::Read { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            KmodError::NotFound { .. } | KmodError::MissingDep { .. } => libc::ENOENT,
            KmodError::TooDeep { .. } => libc::ELOOP,
        }
    }
}

/// `-` and `_` are the same in module names; the kernel uses `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// [`normalize`] for alias patterns: a `-` inside `[...]` is a range, kept.
pub fn normalize_pattern(pat: &str) -> String {
    let mut depth = 0;
    pat.chars()
        .map(|c| match c {
            '[' => {
                depth += 1;
                c
            }
            ']' => {
                depth = 0;
                c
            }
            '-' if depth == 0 => '_',
            c => c,
        })
        .collect()
}

/// The module name of a file path in modules.dep (`kernel/.../e1000.ko.xz` -> `e1000`).
pub fn name_of_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = match base.find(".ko") {
        Some(i) => &base[..i],
        None => base,
    };
    normalize(stem)
}

/// shell-style glob (`*`, `?`, `[...]`), as modules.alias uses.
///
/// Iterative, backtracking only to the last `*`: O(pattern x text) (the
/// recursive form was exponential in the number of stars).
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the text
    // position the star's match currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if pat.get(p) == Some(&b'*') {
            star = Some((p + 1, i));
            p += 1;
            continue;
        }
        if let Some(next) = glob_one(pat, p, s[i]) {
            p = next;
            i += 1;
            continue;
        }
        match star {
            // Let the star take one more character and try again.
            Some((sp, si)) => {
                star = Some((sp, si + 1));
                p = sp;
                i = si + 1;
            }
            None => return false,
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == b'*')
}

/// Whether the pattern element at `p` (not a `*`) matches `c`; the index
/// of the next element if so.
fn glob_one(pat: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pat.get(p)? {
        b'?' => Some(p + 1),
        b'[' => {
            let Some(end) = pat[p + 1..]
                .iter()
                .position(|&x| x == b']')
                .map(|e| p + 1 + e)
            else {
                // No closing bracket: a literal '['.
                return (c == b'[').then_some(p + 1);
            };
            let set = &pat[p + 1..end];
            let (neg, set) = match set.first() {
                Some(b'!') | Some(b'^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            (hit != neg).then_some(end + 1)
        }
        x => (x == c).then_some(p + 1),
    }
}

/// The indexes of one module tree.
#[derive(Debug, Default)]
pub struct ModDb {
    dir: PathBuf,
    /// name -> (relative path, dependency paths)
    deps: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
    aliases: Vec<(String, String)>,
    /// name -> (pre, post) soft dependencies (modules.softdep).
    softdeps: HashMap<String, (Vec<String>, Vec<String>)>,
}

/// One module file to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub path: PathBuf,
    /// A soft dependency, or a dependency of one: loaded if it can be,
    /// skipped otherwise (as modprobe does).
    pub soft: bool,
    /// The module asked for: it gets the parameters.
    pub target: bool,
}

fn read_opt(path: &Path) -> Result<String, KmodError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(KmodError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl ModDb {
    /// Reads `dir/modules.dep` (required), `modules.alias`, `modules.builtin`,
    /// `modules.softdep`.
    pub fn load(dir: &Path) -> Result<Self, KmodError> {
        let dep_path = dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).map_err(|source| KmodError::Read {
            path: dep_path,
            source,
        })?;
        Ok(ModDb::parse(
            dir,
            &dep,
            &read_opt(&dir.join("modules.alias"))?,
            &read_opt(&dir.join("modules.builtin"))?,
        )
        .with_softdeps(&read_opt(&dir.join("modules.softdep"))?))
    }

    /// Adds `softdep MODULE pre: A B post: C` lines (modules.softdep, or the
    /// same syntax of modprobe.d). Words before `pre:`/`post:` are ignored.
    pub fn with_softdeps(mut self, text: &str) -> Self {
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (w.next(), w.next()) else {
                continue;
            };
            let entry = self.softdeps.entry(normalize(module)).or_default();
            let mut list: Option<&mut Vec<String>> = None;
            for word in w {
                match word {
                    "pre:" => list = Some(&mut entry.0),
                    "post:" => list = Some(&mut entry.1),
                    name => {
                        if let Some(l) = list.as_mut() {
                            l.push(normalize(name));
                        }
                    }
                }
            }
        }
        self
    }

    /// Builds the index from the files' contents.
    pub fn parse(dir: &Path, dep: &str, alias: &str, builtin: &str) -> Self {
        let mut db = ModDb {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let ds = rest.split_whitespace().map(str::to_string).collect();
            db.deps.insert(name_of_path(path), (path.to_string(), ds));
        }
        for line in alias.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(pat), Some(m)) = (w.next(), w.next(), w.next()) {
                db.aliases.push((normalize_pattern(pat), normalize(m)));
            }
        }
        for line in builtin.lines() {
            let l = line.trim();
            if !l.is_empty() {
                db.builtin.insert(name_of_path(l));
            }
        }
        db
    }

    /// Appends `name` after its soft "pre" dependencies and its
    /// dependencies, then its soft "post" dependencies; each module once.
    fn visit(
        &self,
        name: &str,
        soft: bool,
        seen: &mut HashSet<String>,
        out: &mut Vec<Load>,
        depth: usize,
    ) -> Result<(), KmodError> {
        if depth > MAX_DEPTH {
            return Err(KmodError::TooDeep {
                module: name.to_string(),
                limit: MAX_DEPTH,
            });
        }
        if !seen.insert(name.to_string()) {
            // Planned already as a soft dependency, needed for real now:
            // its failure must count.
            if !soft {
                if let Some((path, _)) = self.deps.get(name) {
                    let p = self.dir.join(path);
                    if let Some(l) = out.iter_mut().find(|l| l.path == p) {
                        l.soft = false;
                    }
                }
            }
            return Ok(());
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return Err(KmodError::NotFound {
                name: name.to_string(),
                dir: self.dir.display().to_string(),
            });
        };
        let (pre, post) = self
            .softdeps
            .get(name)
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .unwrap_or_default();
        self.visit_soft(pre, seen, out, depth + 1);
        for d in deps {
            let dn = name_of_path(d);
            if !self.deps.contains_key(&dn) {
                return Err(KmodError::MissingDep {
                    module: name.to_string(),
                    dep: dn,
                });
            }
            self.visit(&dn, soft, seen, out, depth + 1)?;
        }
        out.push(Load {
            path: self.dir.join(path),
            soft,
            target: false,
        });
        self.visit_soft(post, seen, out, depth + 1);
        Ok(())
    }

    /// Soft dependencies: each one (a name or an alias) with its own
    /// dependencies if all of them resolve, else left out.
    fn visit_soft(
        &self,
        names: &[String],
        seen: &mut HashSet<String>,
        out: &mut Vec<Load>,
        depth: usize,
    ) {
        for s in names {
            let Ok(modules) = self.names(s) else {
                continue;
            };
            for m in modules {
                let mut try_seen = seen.clone();
                let mut try_out = Vec::new();
                if self
                    .visit(&m, true, &mut try_seen, &mut try_out, depth)
                    .is_ok()
                {
                    *seen = try_seen;
                    out.append(&mut try_out);
                }
            }
        }
    }

    /// The module names `name` stands for: itself, or the modules its alias names.
    /// Empty when it is built into the kernel.
    pub fn names(&self, name: &str) -> Result<Vec<String>, KmodError> {
        let n = normalize(name);
        if self.deps.contains_key(&n) {
            return Ok(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Ok(vec![]);
        }
        let mut hits: Vec<String> = Vec::new();
        for (pat, m) in &self.aliases {
            if glob(pat.as_bytes(), n.as_bytes()) && !hits.contains(m) {
                hits.push(m.clone());
            }
        }
        if hits.is_empty() {
            return Err(KmodError::NotFound {
                name: name.to_string(),
                dir: self.dir.display().to_string(),
            });
        }
        // An alias may point at a built-in module: nothing to load for it.
        Ok(hits
            .into_iter()
            .filter(|m| !self.builtin.contains(m))
            .collect())
    }

    /// What to load for `name`, in order: soft "pre" dependencies,
    /// dependencies, the module, soft "post" dependencies, recursively
    /// (empty: built in).
    pub fn plan(&self, name: &str) -> Result<Vec<Load>, KmodError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.names(name)? {
            self.visit(&m, false, &mut seen, &mut out, 0)?;
            if let Some((path, _)) = self.deps.get(&m) {
                let p = self.dir.join(path);
                if let Some(l) = out.iter_mut().find(|l| l.path == p) {
                    l.target = true;
                }
            }
        }
        Ok(out)
    }

    /// The files [`plan`](Self::plan) would load, in order.
    pub fn resolve(&self, name: &str) -> Result<Vec<PathBuf>, KmodError> {
        Ok(self.plan(name)?.into_iter().map(|l| l.path).collect())
    }
}

/// The running kernel's module tree.
pub fn default_dir() -> PathBuf {
    let u = rustix::system::uname();
    Path::new("/lib/modules").join(u.release().to_string_lossy().as_ref())
}

fn kmod_err(name: &[u8], e: KmodError) -> SysError {
    SysError::new("modprobe", e.errno())
        .path(name)
        .detail(e.to_string())
}

fn dir_arg(v: &Value) -> Res<PathBuf> {
    Ok(match v {
        Value::Nil => default_dir(),
        Value::String(s) => PathBuf::from(s.to_str()?.to_string()),
        other => {
            return Err(crate::errors::arg_error(format!(
                "modprobe: module directory must be a string, got {}",
                other.type_name()
            )))
        }
    })
}

fn resolve(name: &mlua::LuaString, dir: &Value) -> Res<Vec<Load>> {
    let n = name.as_bytes();
    let dir = dir_arg(dir)?;
    let db = ModDb::load(&dir).map_err(|e| kmod_err(&n, e))?;
    let name_s = String::from_utf8_lossy(&n).into_owned();
    Ok(db.plan(&name_s).map_err(|e| kmod_err(&n, e))?)
}

fn load_one(path: &Path, params: &std::ffi::CStr) -> Result<(), SysError> {
    let pb = path.as_os_str().as_encoded_bytes();
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .or_path("modprobe", pb)?;
    let compressed = [".xz", ".zst", ".gz"]
        .iter()
        .any(|ext| pb.ends_with(ext.as_bytes()));
    let flags = if compressed { 4 } else { 0 };
    match rustix::system::finit_module(&fd, params, flags) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::EXIST => Ok(()),
        Err(e) if compressed && (e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::INVAL) => {
            Err(SysError::new("modprobe", e.raw_os_error())
                .path(pb)
                .detail("the kernel cannot load compressed modules (needs Linux 6.3+ with CONFIG_MODULE_DECOMPRESS)"))
        }
        Err(e) => Err(SysError::new("modprobe", e.raw_os_error()).path(pb)),
    }
}

/// Registers `modprobe` and `modprobe_resolve` into `t`.
pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    add(
        lua,
        t,
        "modprobe_resolve",
        |lua, (name, dir): (mlua::LuaString, Value)| {
            let files = resolve(&name, &dir)?;
            let list: Vec<mlua::LuaString> = files
                .iter()
                .map(|l| lua.create_string(l.path.as_os_str().as_encoded_bytes()))
                .collect::<mlua::Result<_>>()?;
            Ok(list)
        },
    )?;
    add(
        lua,
        t,
        "modprobe",
        |_, (name, params, dir): (mlua::LuaString, Option<mlua::LuaString>, Value)| {
            let files = resolve(&name, &dir)?;
            let params = match &params {
                Some(p) => cstring("params", p)?,
                None => std::ffi::CString::default(),
            };
            let empty = std::ffi::CString::default();
            for l in &files {
                // Parameters belong to the module asked for, not its dependencies.
                let r = load_one(&l.path, if l.target { &params } else { &empty });
                // A soft dependency that cannot be loaded is skipped.
                if !l.soft {
                    r?;
                }
            }
            Ok(true)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/a/foo.ko.xz: kernel/b/bar-core.ko kernel/c/baz.ko.zst\n\
kernel/b/bar-core.ko: kernel/c/baz.ko.zst\n\
kernel/c/baz.ko.zst:\n\
kernel/d/e1000.ko:\n\
kernel/e/loop1.ko: kernel/e/loop2.ko\n\
kernel/e/loop2.ko: kernel/e/loop1.ko\n\
kernel/f/broken.ko: kernel/f/gone.ko\n";
    const ALIAS: &str = "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n\
alias fs-foo foo\n\
alias net-pf-[0-9] bar_core\n";
    const BUILTIN: &str = "kernel/x/veth.ko\n";

    fn db() -> ModDb {
        ModDb::parse(Path::new("/m"), DEP, ALIAS, BUILTIN)
    }

    #[test]
    fn deps_first_each_once() {
        let got = db().resolve("foo").unwrap();
        let want: Vec<PathBuf> = [
            "kernel/c/baz.ko.zst",
            "kernel/b/bar-core.ko",
            "kernel/a/foo.ko.xz",
        ]
        .iter()
        .map(|p| Path::new("/m").join(p))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn dash_and_underscore_are_one() {
        assert_eq!(db().resolve("bar-core").unwrap().len(), 2);
        assert_eq!(db().resolve("bar_core").unwrap().len(), 2);
    }

    #[test]
    fn aliases_with_globs() {
        let got = db()
            .resolve("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00")
            .unwrap();
        assert_eq!(got, vec![Path::new("/m/kernel/d/e1000.ko").to_path_buf()]);
        assert_eq!(db().resolve("fs-foo").unwrap().len(), 3);
        assert_eq!(db().resolve("net-pf-7").unwrap().len(), 2);
    }

    #[test]
    fn builtin_needs_nothing_and_unknown_fails() {
        assert!(db().resolve("veth").unwrap().is_empty());
        let e = db().resolve("nosuchmod").unwrap_err();
        assert!(e.to_string().contains("'nosuchmod'"), "{e}");
        assert_eq!(e.errno(), libc::ENOENT);
    }

    #[test]
    fn loops_terminate_and_missing_deps_are_named() {
        assert_eq!(db().resolve("loop1").unwrap().len(), 2);
        let e = db().resolve("broken").unwrap_err();
        assert!(e.to_string().contains("'gone'"), "{e}");
    }

    #[test]
    fn soft_dependencies_come_before_and_after_and_may_be_missing() {
        let db = db().with_softdeps(
            "softdep foo pre: fs-foo-helper e1000 post: loop1 no-such-thing\n\
             softdep bar_core pre: veth\n\
             softdep e1000 pre: broken post: baz\n\
             softdep cifs gcm\n",
        );
        let plan = db.plan("foo").unwrap();
        let short: Vec<(String, bool, bool)> = plan
            .iter()
            .map(|l| (name_of_path(&l.path.to_string_lossy()), l.soft, l.target))
            .collect();
        let s = |n: &str, soft, target| (n.to_string(), soft, target);
        assert_eq!(
            short,
            [
                // foo's pre: e1000 (its own pre "broken" cannot resolve: left
                // out; its post "baz" follows it, and is also a dependency of
                // bar_core, so it is not optional after all)
                s("e1000", true, false),
                s("baz", false, false),
                // foo's dependencies (baz already loaded), then foo
                s("bar_core", false, false),
                s("foo", false, true),
                // foo's post: loop1 with its dependency; the unknown one skipped
                s("loop2", true, false),
                s("loop1", true, false),
            ]
        );
        // The plain file list keeps the same order.
        assert_eq!(db.resolve("foo").unwrap().len(), 6);
        // Without soft dependencies nothing changes.
        assert_eq!(self::tests::db().resolve("foo").unwrap().len(), 3);
    }

    #[test]
    fn glob_basics() {
        assert!(glob(b"a*c", b"abbbc"));
        assert!(!glob(b"a*c", b"abbb"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"[!x]b", b"ab"));
        assert!(!glob(b"[!a]b", b"ab"));
    }
}
