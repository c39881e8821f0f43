//! `moonlit-images`: recipes that turn the static moonlit binary and a
//! configuration directory into something that boots.
//!
//! - [`rootfs`]: the file tree every image shares (moonlit as init, the
//!   configuration, optionally busybox and kernel modules), as an archive model;
//! - [`cpio`]: the initramfs format (newc), written without root;
//! - [`kmod`]: which module files a configuration needs (modules.dep closure);
//! - [`disk`]: an ext4 root filesystem image made by `mkfs.ext4 -d` (no loop mounts);
//! - [`oci`]: an OCI image layout (or one-file oci-archive) and a runc bundle
//!   (rootfs + config.json) with moonlit as PID 1;
//! - [`tar`], [`sha256`]: the layer archive and the blob digests of a layout;
//! - [`nbd`]: a disk with a volatile write cache (an NBD server for qemu)
//!   whose unflushed writes a power cut loses, in part;
//! - [`powerloss`]: the checksummed records of the power-loss tests and
//!   their scan (shared by the guest's writer and the host's checks);
//! - [`qemu`]: the VM runner (TCG, serial console captured, user network with
//!   a forwarded port, console markers, hard timeout);
//! - [`host`]: finding the tools and the Debian kernel on the host.
//!
//! Does not own: moonlit itself (built by `build-musl.sh`) or what the
//! configurations do (see `examples/`).

pub mod cpio;
pub mod disk;
pub mod host;
pub mod kmod;
pub mod nbd;
pub mod oci;
pub mod powerloss;
pub mod qemu;
pub mod rootfs;
pub mod sha256;
pub mod tar;

use std::path::PathBuf;

/// Everything that can go wrong while building or booting an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The operation ("read", "write", "create dir", ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Module resolution failed.
    #[error(transparent)]
    Kmod(#[from] kmod::KmodError),
    /// An external tool could not run or failed.
    #[error("{tool}: {detail}")]
    Tool {
        /// The command line (program and the key arguments).
        tool: String,
        /// Why (exit status and stderr, or the spawn error).
        detail: String,
    },
    /// Something the host must provide is missing.
    #[error("{what} is missing: {hint}")]
    Missing {
        /// What (a program, the kernel, ...).
        what: String,
        /// How to get it.
        hint: String,
    },
    /// A marker did not show on the console in time.
    #[error("timed out after {secs} s waiting for {what}; console tail:\n{tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        secs: u64,
        /// The last lines of the console.
        tail: String,
    },
    /// Bad input to a recipe.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// Runs a command to completion; fails with its stderr unless it exits 0.
pub(crate) fn run_tool(cmd: &mut std::process::Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: desc.clone(),
        detail: format!("cannot run: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: desc,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
