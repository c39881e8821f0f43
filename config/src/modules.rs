//! Finding and reading the configuration's modules.
//!
//! Layout of a configuration directory:
//! - `init.lua`: the boot script, run once per boot (imperative).
//! - `services/*.lua`: declaration modules (services, network, state).
//! - `network.lua`: a declaration module too, by convention for the network.
//! - `lib/*.lua`: libraries reached by `require`.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ErrorKind};

/// One declaration module as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Path relative to the configuration directory ("services/web.lua").
    pub name: String,
    pub path: PathBuf,
    pub source: Vec<u8>,
    /// Content hash of exactly these bytes.
    pub hash: u64,
}

/// FNV-1a, 64 bits: a stable content hash (the same across moonlit builds,
/// which matters across a re-exec).
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads every declaration module of `dir`, sorted by name. A missing
/// `services/` is an empty configuration, not an error.
pub fn discover(dir: &Path) -> (Vec<ModuleFile>, Vec<ConfigError>) {
    let mut names = Vec::new();
    let services = dir.join("services");
    match std::fs::read_dir(&services) {
        Ok(rd) => {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.ends_with(".lua") && !n.starts_with('.') {
                    names.push(format!("services/{n}"));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return (
                Vec::new(),
                vec![ConfigError::new(
                    ErrorKind::Io,
                    "services",
                    format!("{}: {e}", services.display()),
                )],
            )
        }
    }
    if dir.join("network.lua").exists() {
        names.push("network.lua".into());
    }
    names.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match std::fs::read(&path) {
            Ok(source) => files.push(ModuleFile {
                hash: content_hash(&source),
                name,
                path,
                source,
            }),
            Err(e) => errors.push(ConfigError::new(
                ErrorKind::Io,
                &name,
                format!("{name}: cannot read: {e}"),
            )),
        }
    }
    (files, errors)
}
