//! An OCI runtime bundle (`rootfs/` + `config.json`, runtime-spec 1.0) with
//! moonlit as the container's PID 1, for runc.
//!
//! Owns: writing the rootfs and a config.json with the usual namespaces and
//! mounts (proc, a tmpfs /dev with devpts, shm and mqueue, read-only sysfs,
//! tmpfs /run and /tmp). Does not own: running it (the tests call `runc`)
//! or image registries (see `images/oci/Dockerfile` for the `FROM scratch`
//! image a user would build).

use std::path::Path;

use serde_json::{json, Value};

use crate::cpio::Archive;
use crate::{io_err, Result};

/// Options of [`make_bundle`].
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The container's hostname.
    pub hostname: String,
    /// Extra environment (`KEY=value`).
    pub env: Vec<String>,
    /// The command (default `/sbin/init`).
    pub args: Vec<String>,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            hostname: "moonlit".into(),
            env: Vec::new(),
            args: vec!["/sbin/init".into()],
        }
    }
}

/// The config.json of a bundle.
pub fn config_json(opts: &BundleOptions) -> Value {
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SYS_CHROOT",
        "CAP_AUDIT_WRITE"
    ]);
    let mut env = vec!["PATH=/bin:/sbin:/usr/bin:/usr/sbin".to_string()];
    env.extend(opts.env.iter().cloned());
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": opts.args,
            "env": env,
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": opts.hostname,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/run", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=755"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Writes a bundle at `dir`: `dir/rootfs` from `tree` and `dir/config.json`.
/// An existing bundle there is replaced.
pub fn make_bundle(tree: &Archive, dir: &Path, opts: &BundleOptions) -> Result<()> {
    let rootfs = dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    crate::rootfs::write_dir(tree, &rootfs)?;
    let cfg = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config_json(opts)).unwrap_or_default();
    std::fs::write(&cfg, text).map_err(io_err("write", &cfg))?;
    Ok(())
}
