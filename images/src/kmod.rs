//! Picking kernel modules for an image: which files a set of module names
//! needs (the `modules.dep` closure), and the trimmed index files that let
//! moonlit's `sys.modprobe` resolve them inside the image.
//!
//! Owns: parsing `modules.dep`, `modules.alias` and `modules.builtin` of a
//! module tree (`/lib/modules/<kver>`), resolving a name or alias, the closure,
//! and writing a `modules.dep`/`modules.alias` that mention only the copied
//! modules. Also finds the module names a configuration asks for, by scanning
//! its Lua for `modprobe("name")` calls with a literal name. Soft
//! dependencies (`modules.softdep`, e.g. `softdep ext4 pre: crypto-crc32c`)
//! are copied too when they resolve, with their lines, so the guest's
//! `sys.modprobe` loads them as modprobe would. Does not own: loading
//! anything (moonlit does that in the guest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a module set could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// An index file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A name that is neither a module, an alias nor built in.
    #[error("module '{name}' is not in {}/modules.dep, modules.alias or modules.builtin", dir.display())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The tree searched.
        dir: PathBuf,
    },
    /// modules.dep names a dependency without its own entry.
    #[error("module file {file} (a dependency in {}/modules.dep) has no entry of its own", dir.display())]
    MissingDep {
        /// The dependency's file.
        file: String,
        /// The tree.
        dir: PathBuf,
    },
}

/// `-` and `_` are the same in module names (the `sys` module's rule).
pub use moonlit_sys::kmod::normalize;

/// The module name of a modules.dep path (`kernel/a/e1000.ko.xz` -> `e1000`).
pub fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalize(stem)
}

/// Shell-style glob match (`*`, `?`, `[...]`) as modules.alias uses: the
/// `sys` module's matcher, so images and `sys.modprobe` resolve alike.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    moonlit_sys::kmod::glob(pat, s)
}

/// A module tree's indexes.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    /// The directory (`/lib/modules/<kver>`).
    pub dir: PathBuf,
    /// module name -> (file relative to dir, dependency files).
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// (pattern, module name) from modules.alias.
    aliases: Vec<(String, String)>,
    /// Built-in module names.
    builtin: BTreeSet<String>,
    /// module name -> the names (or aliases) of its soft dependencies, and
    /// the modules.softdep line they came from.
    softdeps: BTreeMap<String, (Vec<String>, String)>,
    /// modules.builtin as read, to copy into the image.
    pub builtin_text: String,
}

fn read(path: &Path, required: bool) -> Result<String, KmodError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(KmodError::Read {
            path: path.into(),
            source: e,
        }),
    }
}

impl ModuleTree {
    /// Reads `dir/modules.dep` (required), `modules.alias` and `modules.builtin`.
    pub fn load(dir: &Path) -> Result<ModuleTree, KmodError> {
        let dep = read(&dir.join("modules.dep"), true)?;
        let alias = read(&dir.join("modules.alias"), false)?;
        let builtin_text = read(&dir.join("modules.builtin"), false)?;
        let mut deps = BTreeMap::new();
        for line in dep.lines() {
            let Some((file, rest)) = line.split_once(':') else {
                continue;
            };
            let file = file.trim().to_string();
            let d = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(&file), (file, d));
        }
        let aliases = alias
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("alias")).then_some(())?;
                Some((w.next()?.to_string(), normalize(w.next()?)))
            })
            .collect();
        let builtin = builtin_text.lines().map(module_name).collect();
        let mut softdeps = BTreeMap::new();
        for line in read(&dir.join("modules.softdep"), false)?.lines() {
            let mut w = line.split_whitespace();
            if let (Some("softdep"), Some(m)) = (w.next(), w.next()) {
                let names = w
                    .filter(|x| *x != "pre:" && *x != "post:")
                    .map(str::to_string)
                    .collect();
                softdeps.insert(normalize(m), (names, line.trim().to_string()));
            }
        }
        Ok(ModuleTree {
            dir: dir.into(),
            deps,
            aliases,
            builtin,
            builtin_text,
            softdeps,
        })
    }

    /// Resolves a name or alias to module names (several for an alias that
    /// matches several modules). Built-in modules resolve to nothing.
    pub fn resolve(&self, name: &str) -> Result<Vec<String>, KmodError> {
        let n = normalize(name);
        if self.deps.contains_key(&n) {
            return Ok(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Ok(Vec::new());
        }
        let hits: BTreeSet<String> = self
            .aliases
            .iter()
            .filter(|(pat, _)| {
                glob_match(pat.as_bytes(), name.as_bytes())
                    || glob_match(pat.as_bytes(), n.as_bytes())
            })
            .map(|(_, m)| m.clone())
            .collect();
        if hits.is_empty() {
            return Err(KmodError::NotFound {
                name: name.into(),
                dir: self.dir.clone(),
            });
        }
        Ok(hits
            .into_iter()
            .filter(|m| self.deps.contains_key(m))
            .collect())
    }

    /// Adds module `m`'s file and its dependencies' files to `files`.
    fn add_with_deps(&self, m: &str, files: &mut BTreeSet<String>) -> Result<(), KmodError> {
        if let Some((file, d)) = self.deps.get(m) {
            files.insert(file.clone());
            for dep in d {
                if !self.deps.contains_key(&module_name(dep)) {
                    return Err(KmodError::MissingDep {
                        file: dep.clone(),
                        dir: self.dir.clone(),
                    });
                }
                files.insert(dep.clone());
            }
        }
        Ok(())
    }

    /// The files (relative to the tree) needed to load `names`, with every
    /// dependency, and the soft dependencies of everything in the set that
    /// resolve (with theirs), sorted.
    pub fn closure(&self, names: &[String]) -> Result<BTreeSet<String>, KmodError> {
        let mut files = BTreeSet::new();
        for name in names {
            for m in self.resolve(name)? {
                self.add_with_deps(&m, &mut files)?;
            }
        }
        // Soft dependencies, best effort, until nothing new comes in.
        loop {
            let before = files.len();
            let modules: Vec<String> = files.iter().map(|f| module_name(f)).collect();
            for m in modules {
                let Some((soft, _)) = self.softdeps.get(&m) else {
                    continue;
                };
                for s in soft {
                    for sm in self.resolve(s).unwrap_or_default() {
                        let mut trial = files.clone();
                        if self.add_with_deps(&sm, &mut trial).is_ok() {
                            files = trial;
                        }
                    }
                }
            }
            if files.len() == before {
                return Ok(files);
            }
        }
    }

    /// A modules.softdep with the lines of the copied modules.
    pub fn trimmed_softdep(&self, files: &BTreeSet<String>) -> String {
        let mut out = String::new();
        for f in files {
            if let Some((_, line)) = self.softdeps.get(&module_name(f)) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// A modules.dep with only the lines of `files` (in the original order).
    pub fn trimmed_dep(&self, files: &BTreeSet<String>) -> String {
        let mut out = String::new();
        for (file, d) in self.deps.values() {
            if files.contains(file) {
                out.push_str(file);
                out.push(':');
                for x in d {
                    out.push(' ');
                    out.push_str(x);
                }
                out.push('\n');
            }
        }
        out
    }

    /// A modules.alias with only the aliases of the copied modules.
    pub fn trimmed_alias(&self, files: &BTreeSet<String>) -> String {
        let names: BTreeSet<String> = files.iter().map(|f| module_name(f)).collect();
        let mut out = String::new();
        for (pat, m) in &self.aliases {
            if names.contains(m) {
                out.push_str(&format!("alias {pat} {m}\n"));
            }
        }
        out
    }
}

/// Module names a configuration asks for: every `modprobe("name")` or
/// `modprobe "name"` with a literal string in its `.lua` files (any depth).
pub fn scan_config(dir: &Path) -> Result<BTreeSet<String>, KmodError> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| KmodError::Read {
            path: d.clone(),
            source: e,
        })?;
        for ent in rd.flatten() {
            let p = ent.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "lua") {
                let text = read(&p, true)?;
                out.extend(scan_lua(&text));
            }
        }
    }
    Ok(out)
}

/// The literal names in `modprobe("x")` / `modprobe "x"` / `modprobe('x')`
/// calls of one Lua source (comments starting a line are skipped).
pub fn scan_lua(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("--") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("modprobe") {
            let after = rest[i + "modprobe".len()..].trim_start();
            let after = after
                .strip_prefix('(')
                .map(str::trim_start)
                .unwrap_or(after);
            if let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let body = &after[1..];
                if let Some(end) = body.find(q) {
                    let name = &body[..end];
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.*?[]:".contains(c))
                    {
                        out.push(name.to_string());
                    }
                }
            }
            rest = &rest[i + "modprobe".len()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> ModuleTree {
        let dir = std::env::temp_dir().join(format!("moonlit-images-kmod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/drivers/net/e1000.ko:\nkernel/crypto/crc32c_generic.ko:\n\
             kernel/x/broken.ko: kernel/x/gone.ko\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.softdep"),
            "# Soft dependencies extracted from modules themselves.\n\
             softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: broken nosuch\n\
             softdep e1000 pre: crc16\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.alias"),
            "alias crypto-crc32c crc32c_generic\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\nalias fs-ext4 ext4\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/tty/serial/8250.ko\n",
        )
        .unwrap();
        let t = ModuleTree::load(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        t
    }

    #[test]
    fn closure_follows_modules_dep() {
        let t = tree();
        let f = t.closure(&["ext4".into()]).unwrap();
        // ext4, its 3 dependencies and its soft dependency crc32c_generic (an
        // alias); jbd2's unresolvable soft dependencies are left out.
        assert_eq!(f.len(), 5, "{f:?}");
        assert!(f.contains("kernel/fs/jbd2/jbd2.ko"));
        assert!(f.contains("kernel/crypto/crc32c_generic.ko"));
        assert_eq!(
            t.trimmed_softdep(&f),
            "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: broken nosuch\n"
        );
        let dep = t.trimmed_dep(&f);
        assert!(dep.contains("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko"));
        assert!(!dep.contains("e1000"));
        let alias = t.trimmed_alias(&f);
        assert_eq!(
            alias,
            "alias crypto-crc32c crc32c_generic\nalias fs-ext4 ext4\n"
        );
    }

    #[test]
    fn aliases_builtins_and_unknown_names() {
        let t = tree();
        assert_eq!(t.resolve("crypto-crc32c").unwrap(), ["crc32c_generic"]);
        assert_eq!(
            t.resolve("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00")
                .unwrap(),
            ["e1000"]
        );
        assert!(t.resolve("8250").unwrap().is_empty());
        assert!(matches!(t.resolve("nope"), Err(KmodError::NotFound { .. })));
        assert!(matches!(
            t.closure(&["broken".into()]),
            Err(KmodError::MissingDep { .. })
        ));
    }

    #[test]
    fn scans_literal_modprobe_calls() {
        let src = "local sys = require 'sys'\nsys.modprobe(\"e1000\")\nsys.modprobe 'virtio-blk'\n-- sys.modprobe('commented')\nlocal ok = sys.modprobe( \"ext4\", \"opt=1\") modprobe(name)\n";
        assert_eq!(scan_lua(src), ["e1000", "virtio-blk", "ext4"]);
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"v[0-9]x", b"v7x"));
        assert!(!glob_match(b"v[!0-9]x", b"v7x"));
        assert!(!glob_match(b"abc", b"abd"));
    }
}
