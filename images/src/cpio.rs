//! A writer for the "newc" cpio format (`070701`), the one the Linux kernel
//! unpacks as an initramfs (see the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Owns: the archive's byte layout (headers, padding, the trailer), and the
//! rule that every parent directory appears before its children. Entries are
//! described, not read from disk: device nodes (`/dev/console`) can be put in
//! the archive without root and without `mknod` on the host. Does not own:
//! what goes in an initramfs (see [`crate::initramfs`]) or compression (the
//! kernel takes an uncompressed archive).

use std::collections::BTreeMap;
use std::io::Write;

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// One entry: a path inside the archive (no leading `/`), permission bits,
/// owner and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the archive root, like `dev/console`.
    pub path: String,
    /// Permission bits (`0o755`); the file type is added from [`Kind`].
    pub perm: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// What the entry is.
    pub kind: Kind,
}

/// An archive being assembled: entries keyed by path, so a later entry for
/// the same path replaces an earlier one and the output order is stable.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds (or replaces) an entry; missing parent directories are added
    /// with mode 0755.
    pub fn add(&mut self, mut e: Entry) {
        e.path = clean(&e.path);
        if e.path.is_empty() {
            return;
        }
        let mut parent = String::new();
        let comps: Vec<&str> = e.path.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            self.entries.entry(parent.clone()).or_insert_with(|| Entry {
                path: parent.clone(),
                perm: 0o755,
                uid: 0,
                gid: 0,
                kind: Kind::Dir,
            });
        }
        self.entries.insert(e.path.clone(), e);
    }

    /// A directory owned by root.
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.add(Entry {
            path: path.into(),
            perm,
            uid: 0,
            gid: 0,
            kind: Kind::Dir,
        });
    }

    /// A regular file owned by root.
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) {
        self.add(Entry {
            path: path.into(),
            perm,
            uid: 0,
            gid: 0,
            kind: Kind::File(data),
        });
    }

    /// A symbolic link owned by root.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(Entry {
            path: path.into(),
            perm: 0o777,
            uid: 0,
            gid: 0,
            kind: Kind::Symlink(target.into()),
        });
    }

    /// A character device node owned by root.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.add(Entry {
            path: path.into(),
            perm,
            uid: 0,
            gid: 0,
            kind: Kind::CharDev(major, minor),
        });
    }

    /// Whether `path` is in the archive.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&clean(path))
    }

    /// The entries in archive order (parents first: a path sorts after its
    /// prefix).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the archive in newc format, ending with the `TRAILER!!!`
    /// entry. Inode numbers count from 1; every mtime is 0 (reproducible).
    pub fn write_to<W: Write>(&self, w: &mut W) -> std::io::Result<u64> {
        let mut n = 0u64;
        for (ino, e) in self.entries.values().enumerate() {
            let (ftype, data, rdev): (u32, &[u8], (u32, u32)) = match &e.kind {
                Kind::Dir => (0o040000, &[], (0, 0)),
                Kind::File(d) => (0o100000, d, (0, 0)),
                Kind::Symlink(t) => (0o120000, t.as_bytes(), (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, &[], (*ma, *mi)),
            };
            let nlink = if e.kind == Kind::Dir { 2 } else { 1 };
            n += write_header(
                w,
                ino as u32 + 1,
                ftype | (e.perm & 0o7777),
                e.uid,
                e.gid,
                nlink,
                data.len() as u32,
                rdev,
                &e.path,
            )?;
            w.write_all(data)?;
            n += data.len() as u64;
            n += pad(w, n)?;
        }
        n += write_header(w, 0, 0, 0, 0, 1, 0, (0, 0), "TRAILER!!!")?;
        n += pad(w, n)?;
        Ok(n)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

#[allow(clippy::too_many_arguments)]
fn write_header<W: Write>(
    w: &mut W,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> std::io::Result<u64> {
    let namesize = name.len() as u32 + 1;
    let fields = [
        ino, mode, uid, gid, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    let mut h = String::with_capacity(110 + name.len() + 4);
    h.push_str("070701");
    for f in fields {
        h.push_str(&format!("{f:08x}"));
    }
    h.push_str(name);
    h.push('\0');
    w.write_all(h.as_bytes())?;
    let mut n = h.len() as u64;
    n += pad(w, n)?;
    Ok(n)
}

/// Pads to a multiple of 4 given `written` bytes so far; returns the padding.
fn pad<W: Write>(w: &mut W, written: u64) -> std::io::Result<u64> {
    let p = (4 - written % 4) % 4;
    w.write_all(&[0u8; 3][..p as usize])?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_are_created() {
        let mut a = Archive::new();
        a.file("etc/moonlit/init.lua", 0o644, b"print(1)".to_vec());
        a.char_dev("/dev/console", 0o600, 5, 1);
        let paths: Vec<&str> = a.entries().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/moonlit",
                "etc/moonlit/init.lua"
            ]
        );
    }

    #[test]
    fn header_layout_and_alignment() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"abcde".to_vec());
        let b = a.to_bytes();
        assert_eq!(&b[..6], b"070701");
        // mode field (second) = regular file 0755
        assert_eq!(&b[14..22], b"000081ed");
        // filesize field
        assert_eq!(&b[54..62], b"00000005");
        // name "init\0" starts at 110, header+name = 115 -> padded to 116
        assert_eq!(&b[110..115], b"init\0");
        assert_eq!(&b[116..121], b"abcde");
        assert_eq!(b.len() % 4, 0);
        let tail = String::from_utf8_lossy(&b);
        assert!(tail.contains("TRAILER!!!"));
    }

    #[test]
    fn device_numbers_go_in_rdev() {
        let mut a = Archive::new();
        a.char_dev("null", 0o666, 1, 3);
        let b = a.to_bytes();
        assert_eq!(&b[14..22], b"000021b6");
        assert_eq!(&b[78..86], b"00000001"); // rdevmajor
        assert_eq!(&b[86..94], b"00000003"); // rdevminor
    }

    /// Cross-check with a tool nobody here wrote: GNU cpio lists what we wrote.
    #[test]
    fn gnu_cpio_reads_it() {
        let mut a = Archive::new();
        a.file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec());
        a.symlink("bin/sh", "busybox");
        a.char_dev("dev/console", 0o600, 5, 1);
        let bytes = a.to_bytes();
        let mut child = match std::process::Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                panic!("this test needs GNU cpio (apt-get install cpio; images/setup.sh): {e}")
            }
        };
        if let Some(mut i) = child.stdin.take() {
            i.write_all(&bytes).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("bin/hello"), "{text}");
        assert!(text.contains("bin/sh -> busybox"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("crw") && l.contains("5,") && l.contains("dev/console")),
            "{text}"
        );
    }
}
