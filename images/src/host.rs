//! What the host must provide: programs (qemu, mkfs.ext4, runc, curl,
//! busybox) and the Debian guest kernel with its module tree.
//!
//! Owns: looking these up (PATH, the usual sbin directories, `/boot`) and
//! saying how to get what is missing (`images/setup.sh` installs all of it).
//! Does not own: installing anything.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The hint printed for anything missing.
pub const SETUP_HINT: &str = "run images/setup.sh (apt-get install linux-image-amd64 qemu-system-x86 busybox-static cpio e2fsprogs runc curl umoci skopeo buildah)";

/// Finds a program on PATH or in the sbin directories (root's tools live
/// there and PATH may lack them).
pub fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .iter()
            .map(PathBuf::from),
        );
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Missing {
        what: format!("program '{name}'"),
        hint: SETUP_HINT.into(),
    })
}

/// Debian's static busybox (package busybox-static): `/bin/busybox`, checked
/// to be statically linked (the dynamic one from package busybox would not
/// run in an initramfs without its libc).
pub fn static_busybox() -> Result<PathBuf> {
    let p = std::env::var_os("MOONLIT_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    if !p.is_file() {
        return Err(Error::Missing {
            what: format!("static busybox at {}", p.display()),
            hint: SETUP_HINT.into(),
        });
    }
    if !is_static_elf(&p)? {
        return Err(Error::Missing {
            what: format!("a static busybox ({} is dynamically linked)", p.display()),
            hint: "apt-get install busybox-static (it replaces the dynamic busybox)".into(),
        });
    }
    Ok(p)
}

/// Whether an ELF file has no PT_INTERP program header (a static program).
pub fn is_static_elf(path: &Path) -> Result<bool> {
    let b = std::fs::read(path).map_err(crate::io_err("read", path))?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return Err(Error::Invalid(format!(
            "{} is not a 64-bit ELF file",
            path.display()
        )));
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(x) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            break;
        }
        if u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// The guest kernel: `$MOONLIT_KERNEL`, else the newest `/boot/vmlinuz-*`
/// (Debian's linux-image-amd64) whose `/lib/modules/<version>` exists.
/// Returns the kernel image and its module tree.
pub fn debian_kernel() -> Result<(PathBuf, PathBuf)> {
    if let Some(k) = std::env::var_os("MOONLIT_KERNEL").map(PathBuf::from) {
        let ver = k
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "MOONLIT_KERNEL={} is not named vmlinuz-<version>",
                    k.display()
                ))
            })?
            .to_string();
        let m = PathBuf::from("/lib/modules").join(&ver);
        if !k.is_file() || !m.join("modules.dep").is_file() {
            return Err(Error::Missing {
                what: format!("kernel {} with modules in {}", k.display(), m.display()),
                hint: SETUP_HINT.into(),
            });
        }
        return Ok((k, m));
    }
    let mut found: Vec<(Vec<u64>, PathBuf, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/boot") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ver) = name.strip_prefix("vmlinuz-") else {
                continue;
            };
            let m = PathBuf::from("/lib/modules").join(ver);
            if m.join("modules.dep").is_file() {
                let key = ver
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|x| x.parse().ok())
                    .collect();
                found.push((key, e.path(), m));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, k, m)| (k, m))
        .ok_or_else(|| Error::Missing {
            what: "a Debian kernel (/boot/vmlinuz-* with /lib/modules/<version>/modules.dep)"
                .into(),
            hint: SETUP_HINT.into(),
        })
}

/// A free TCP port on 127.0.0.1 (bound, read, released: the caller uses it
/// right away).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Tool {
        tool: "bind 127.0.0.1:0".into(),
        detail: e.to_string(),
    })?;
    let port = l
        .local_addr()
        .map_err(|e| Error::Tool {
            tool: "getsockname".into(),
            detail: e.to_string(),
        })?
        .port();
    Ok(port)
}
