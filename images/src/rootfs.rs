//! The file tree every image shares, built as a [`cpio::Archive`] model and
//! then written as an initramfs, an ext4 image or an OCI rootfs.
//!
//! Owns: where moonlit goes (`/init` or `/sbin/init`, plus a `/bin/moonlit`
//! link for `moonlit ctl`), where configurations go (`/etc/moonlit` and any
//! extra directories), busybox and its applet links, kernel modules with the
//! trimmed index files, the base directories and device nodes, a minimal
//! `/etc/passwd` and `/etc/group`. Does not own: the output formats (see
//! [`crate::disk`], [`crate::oci`], [`Archive::write_to`]).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cpio::{Archive, Kind};
use crate::kmod::ModuleTree;
use crate::{io_err, Error, Result};

/// What goes into a root tree.
#[derive(Debug, Clone, Default)]
pub struct RootSpec {
    /// The static moonlit binary.
    pub moonlit: PathBuf,
    /// Where it goes: `init` for an initramfs, `sbin/init` for a disk or container.
    pub init_path: String,
    /// Configuration directories: (destination inside the tree, source).
    /// The first is normally `etc/moonlit`.
    pub configs: Vec<(String, PathBuf)>,
    /// A static busybox to install as `/bin/busybox` with its applet links.
    pub busybox: Option<PathBuf>,
    /// The kernel module tree to copy from (`/lib/modules/<kver>`).
    pub module_tree: Option<PathBuf>,
    /// Module names to copy (with their dependencies), in addition to the
    /// ones found by scanning the configurations for `modprobe("...")`.
    pub modules: Vec<String>,
    /// Whether to scan the configurations for module names.
    pub scan_modules: bool,
    /// Whether to add `/dev/console` and `/dev/null` nodes (initramfs: yes;
    /// the kernel starts init with them, before devtmpfs is mounted).
    pub device_nodes: bool,
    /// Extra files: (path, mode, content).
    pub extra_files: Vec<(String, u32, Vec<u8>)>,
}

/// What [`build`] put in, for reports.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// The archive.
    pub archive: Archive,
    /// Module files copied (relative to the module tree).
    pub module_files: BTreeSet<String>,
    /// Module names asked for (given and scanned).
    pub modules_asked: BTreeSet<String>,
    /// Busybox applet links made.
    pub applets: usize,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(io_err("read", path))
}

fn mode_of(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .map_err(io_err("stat", path))?
        .permissions()
        .mode()
        & 0o7777)
}

/// Adds the files under `src` to `a` below `dest` (recursively; symlinks
/// are followed: a configuration is copied as plain files).
pub fn add_tree(a: &mut Archive, dest: &str, src: &Path) -> Result<()> {
    a.dir(dest, 0o755);
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(io_err("read dir", src))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_err("read dir", src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let d = format!("{dest}/{name}");
        if p.is_dir() {
            add_tree(a, &d, &p)?;
        } else {
            a.file(&d, mode_of(&p)? & 0o755 | 0o644, read(&p)?);
        }
    }
    Ok(())
}

/// Busybox's applets as paths (`bin/sh`, `usr/sbin/httpd`), from
/// `busybox --list-full`.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = crate::run_tool(std::process::Command::new(busybox).arg("--list-full"))?;
    Ok(out
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Builds the tree described by `spec`.
pub fn build(spec: &RootSpec) -> Result<Contents> {
    let mut c = Contents::default();
    let a = &mut c.archive;
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "run", "var", "root", "mnt", "usr/bin",
        "usr/sbin",
    ] {
        a.dir(d, 0o755);
    }
    a.dir("tmp", 0o1777);
    if spec.device_nodes {
        a.char_dev("dev/console", 0o600, 5, 1);
        a.char_dev("dev/null", 0o666, 1, 3);
    }
    a.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            .to_vec(),
    );
    a.file(
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    );

    if let Some(bb) = &spec.busybox {
        a.file("bin/busybox", 0o755, read(bb)?);
        for applet in busybox_applets(bb)? {
            // Never let busybox be the init or shadow moonlit.
            if matches!(
                applet.as_str(),
                "linuxrc" | "sbin/init" | "init" | "bin/busybox"
            ) {
                continue;
            }
            a.symlink(&applet, "/bin/busybox");
            c.applets += 1;
        }
    }

    if spec.init_path.is_empty() {
        return Err(Error::Invalid(
            "the init path (init or sbin/init) is empty".into(),
        ));
    }
    a.file(&spec.init_path, 0o755, read(&spec.moonlit)?);
    let init_abs = format!("/{}", spec.init_path.trim_start_matches('/'));
    if init_abs != "/bin/moonlit" {
        a.symlink("bin/moonlit", &init_abs);
    }

    for (dest, src) in &spec.configs {
        if !src.is_dir() {
            return Err(Error::Invalid(format!(
                "configuration directory {} does not exist",
                src.display()
            )));
        }
        add_tree(a, dest, src)?;
    }

    c.modules_asked.extend(spec.modules.iter().cloned());
    if spec.scan_modules {
        for (_, src) in &spec.configs {
            c.modules_asked.extend(crate::kmod::scan_config(src)?);
        }
    }
    if !c.modules_asked.is_empty() {
        let Some(dir) = &spec.module_tree else {
            return Err(Error::Invalid(format!(
                "the configuration loads kernel modules ({}) but no module tree was given",
                c.modules_asked
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let tree = ModuleTree::load(dir)?;
        let names: Vec<String> = c.modules_asked.iter().cloned().collect();
        c.module_files = tree.closure(&names)?;
        let kver = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::Invalid(format!("module tree {} has no version name", dir.display()))
            })?;
        let base = format!("lib/modules/{kver}");
        for f in &c.module_files {
            a.file(&format!("{base}/{f}"), 0o644, read(&dir.join(f))?);
        }
        a.file(
            &format!("{base}/modules.dep"),
            0o644,
            tree.trimmed_dep(&c.module_files).into_bytes(),
        );
        a.file(
            &format!("{base}/modules.alias"),
            0o644,
            tree.trimmed_alias(&c.module_files).into_bytes(),
        );
        a.file(
            &format!("{base}/modules.builtin"),
            0o644,
            tree.builtin_text.clone().into_bytes(),
        );
        a.file(
            &format!("{base}/modules.softdep"),
            0o644,
            tree.trimmed_softdep(&c.module_files).into_bytes(),
        );
    }

    for (path, mode, data) in &spec.extra_files {
        a.file(path, *mode, data.clone());
    }
    Ok(c)
}

/// Writes the tree into directory `dir` (which must not exist yet or be
/// empty). Device nodes are skipped: a disk or container gets its /dev from
/// devtmpfs or the runtime.
pub fn write_dir(a: &Archive, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err("create dir", dir))?;
    for e in a.entries() {
        let p = dir.join(&e.path);
        match &e.kind {
            Kind::Dir => std::fs::create_dir_all(&p).map_err(io_err("create dir", &p))?,
            Kind::File(data) => std::fs::write(&p, data).map_err(io_err("write", &p))?,
            Kind::Symlink(t) => {
                let _ = std::fs::remove_file(&p);
                std::os::unix::fs::symlink(t, &p).map_err(io_err("symlink", &p))?
            }
            Kind::CharDev(..) => continue,
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.perm))
                .map_err(io_err("chmod", &p))?;
        }
    }
    Ok(())
}
