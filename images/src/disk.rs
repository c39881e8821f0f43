//! An ext4 root filesystem image made with `mkfs.ext4 -d` (e2fsprogs copies
//! a directory into the new filesystem: no loop mount, no root needed for
//! the image itself).
//!
//! Owns: staging the tree in a directory next to the output, sizing the
//! image, running mkfs.ext4, removing the staging directory. Does not own:
//! what the tree holds ([`crate::rootfs`]).

use std::path::Path;
use std::process::Command;

use crate::cpio::Archive;
use crate::{io_err, run_tool, Error, Result};

/// Options of [`make_ext4`].
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Image size in MiB.
    pub size_mib: u64,
    /// Filesystem label.
    pub label: String,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            size_mib: 64,
            label: "moonlit-root".into(),
        }
    }
}

/// Writes `tree` as an ext4 filesystem image at `out` (replacing it).
pub fn make_ext4(tree: &Archive, out: &Path, opts: &DiskOptions) -> Result<()> {
    let mkfs = crate::host::find_program("mkfs.ext4")?;
    if opts.size_mib < 8 {
        return Err(Error::Invalid(format!(
            "disk size {} MiB is too small (at least 8)",
            opts.size_mib
        )));
    }
    let staging = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    crate::rootfs::write_dir(tree, &staging)?;
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(io_err("create", out))?;
    f.set_len(opts.size_mib * 1024 * 1024)
        .map_err(io_err("resize", out))?;
    drop(f);
    let r = run_tool(
        Command::new(mkfs)
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                &opts.label,
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(&staging)
            .arg(out),
    );
    let _ = std::fs::remove_dir_all(&staging);
    r.map(|_| ())
}

/// Checks that an image was left clean: `e2fsck -fn` exits 0 without
/// skipping a journal recovery, and the superblock (`dumpe2fs -h`) says
/// "clean" with no `needs_recovery` feature (e2fsck -n alone reports a
/// filesystem that still needs its journal replayed as clean).
/// Ok(report) when clean, Err with the report otherwise.
pub fn fsck(image: &Path) -> Result<String> {
    let e2fsck = crate::host::find_program("e2fsck")?;
    let dumpe2fs = crate::host::find_program("dumpe2fs")?;
    let out = Command::new(&e2fsck)
        .arg("-fn")
        .arg(image)
        .output()
        .map_err(|e| Error::Tool {
            tool: "e2fsck -fn".into(),
            detail: format!("cannot run: {e}"),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sb = run_tool(Command::new(&dumpe2fs).arg("-h").arg(image))?;
    let state = sb
        .lines()
        .find(|l| l.starts_with("Filesystem state:"))
        .unwrap_or("Filesystem state: (missing)");
    let features = sb
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or("");
    let mut problems = Vec::new();
    if !out.status.success() {
        problems.push(format!("e2fsck -fn: {}", out.status));
    }
    if text.contains("journal recovery") {
        problems.push("the journal needs recovery".to_string());
    }
    if state.split(':').nth(1).map(str::trim) != Some("clean") {
        problems.push(state.trim().to_string());
    }
    if features.contains("needs_recovery") {
        problems.push("superblock feature needs_recovery is set".to_string());
    }
    if problems.is_empty() {
        Ok(format!("{text}{state}\n"))
    } else {
        Err(Error::Tool {
            tool: format!("e2fsck -fn {}", image.display()),
            detail: format!("{}\n{text}", problems.join("; ")),
        })
    }
}

/// Reads one file out of an ext4 image with `debugfs -R "cat PATH"` (no
/// mount). Fails when the file is not there.
pub fn read_file(image: &Path, path: &str) -> Result<Vec<u8>> {
    let debugfs = crate::host::find_program("debugfs")?;
    // debugfs prints errors on stderr and still exits 0: check `stat` first.
    let stat = Command::new(&debugfs)
        .args(["-R", &format!("stat {path}")])
        .arg(image)
        .output()
        .map_err(|e| Error::Tool {
            tool: "debugfs".into(),
            detail: format!("cannot run: {e}"),
        })?;
    let err = String::from_utf8_lossy(&stat.stderr);
    if !stat.status.success() || err.contains("File not found") {
        return Err(Error::Tool {
            tool: format!("debugfs stat {path} in {}", image.display()),
            detail: err.trim().to_string(),
        });
    }
    let out = Command::new(&debugfs)
        .args(["-R", &format!("cat {path}")])
        .arg(image)
        .output()
        .map_err(|e| Error::Tool {
            tool: "debugfs".into(),
            detail: format!("cannot run: {e}"),
        })?;
    Ok(out.stdout)
}
