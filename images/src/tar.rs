//! A POSIX tar writer (ustar headers, pax extended headers when a field does
//! not fit) for the entries of a [`cpio::Archive`](crate::cpio::Archive):
//! the layer format of OCI images and the container of an `oci-archive`.
//!
//! Owns: the byte layout (512-byte headers with their checksum, data padded
//! to 512 bytes, two zero blocks at the end), the split of long paths into
//! ustar's prefix and name, and the pax records (`path`, `linkpath`, `size`,
//! `uid`, `gid`, `mtime`) used only when a value does not fit its ustar
//! field. Output is deterministic: entries in the archive's sorted order
//! (parents first), one fixed mtime for every entry, owners as numbers with
//! empty user and group names. Does not own: compression (OCI layers may be
//! uncompressed), hard links, xattrs, or reading tar files.

use std::io::Write;

use crate::cpio::{Archive, Entry, Kind};

const BLOCK: usize = 512;

/// Writes `a` as a tar stream with every entry's mtime set to `mtime`
/// (seconds since the epoch). Returns the number of bytes written.
pub fn write<W: Write>(a: &Archive, mtime: u64, w: &mut W) -> std::io::Result<u64> {
    let mut n = 0u64;
    for e in a.entries() {
        n += write_entry(e, mtime, w)?;
    }
    w.write_all(&[0u8; 2 * BLOCK])?;
    Ok(n + 2 * BLOCK as u64)
}

/// The tar stream of `a` as bytes (see [`write`]).
pub fn to_bytes(a: &Archive, mtime: u64) -> Vec<u8> {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write(a, mtime, &mut v);
    v
}

/// The largest value an octal field of `len` bytes holds (len - 1 digits and
/// a NUL).
fn octal_max(len: usize) -> u64 {
    (1u64 << (3 * (len as u32 - 1))) - 1
}

/// Puts `v` in octal, zero-padded, NUL-terminated, into `field`; returns
/// false (leaving zeros) when it does not fit.
fn put_octal(field: &mut [u8], v: u64) -> bool {
    if v > octal_max(field.len()) {
        return false;
    }
    let digits = format!("{v:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
    true
}

/// Splits `path` into ustar (prefix, name) if it fits: name at most 100
/// bytes, prefix at most 155, split at a `/`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    // The name part must be non-empty and at most 100 bytes; try the
    // leftmost slash that leaves a short enough name.
    let bytes = path.as_bytes();
    (0..bytes.len())
        .filter(|&i| bytes[i] == b'/')
        .find(|&i| i <= 155 && path.len() - i - 1 <= 100 && i + 1 < path.len())
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// One pax record: "<len> key=value\n", where len counts the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let total = body + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    format!("{len} {key}={value}\n")
}

struct Header {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: String,
    dev: (u32, u32),
}

impl Header {
    /// The 512-byte ustar header; the pax records needed for what did not fit.
    fn encode(&self) -> ([u8; BLOCK], Vec<String>) {
        let mut h = [0u8; BLOCK];
        let mut pax = Vec::new();
        match split_path(&self.name) {
            Some((prefix, name)) => {
                h[..name.len()].copy_from_slice(name.as_bytes());
                h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
            }
            None => {
                pax.push(pax_record("path", &self.name));
                // A readable stand-in for readers without pax support.
                let tail = tail_fitting(&self.name, 100);
                h[..tail.len()].copy_from_slice(tail.as_bytes());
            }
        }
        put_octal(&mut h[100..108], u64::from(self.mode & 0o7777));
        if !put_octal(&mut h[108..116], self.uid) {
            pax.push(pax_record("uid", &self.uid.to_string()));
        }
        if !put_octal(&mut h[116..124], self.gid) {
            pax.push(pax_record("gid", &self.gid.to_string()));
        }
        if !put_octal(&mut h[124..136], self.size) {
            pax.push(pax_record("size", &self.size.to_string()));
        }
        if !put_octal(&mut h[136..148], self.mtime) {
            pax.push(pax_record("mtime", &self.mtime.to_string()));
        }
        h[156] = self.typeflag;
        if self.linkname.len() <= 100 {
            h[157..157 + self.linkname.len()].copy_from_slice(self.linkname.as_bytes());
        } else {
            pax.push(pax_record("linkpath", &self.linkname));
        }
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if self.typeflag == b'3' || self.typeflag == b'4' {
            put_octal(&mut h[329..337], u64::from(self.dev.0));
            put_octal(&mut h[337..345], u64::from(self.dev.1));
        }
        // The checksum: the byte sum with the field itself read as spaces,
        // written as six octal digits, a NUL and a space.
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let digits = format!("{sum:06o}");
        h[148..154].copy_from_slice(digits.as_bytes());
        h[154] = 0;
        h[155] = b' ';
        (h, pax)
    }
}

/// The longest suffix of `s` of at most `max` bytes on a char boundary.
fn tail_fitting(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

fn write_entry<W: Write>(e: &Entry, mtime: u64, w: &mut W) -> std::io::Result<u64> {
    let (typeflag, data, linkname, dev): (u8, &[u8], &str, (u32, u32)) = match &e.kind {
        Kind::Dir => (b'5', &[], "", (0, 0)),
        Kind::File(d) => (b'0', d, "", (0, 0)),
        Kind::Symlink(t) => (b'2', &[], t.as_str(), (0, 0)),
        Kind::CharDev(ma, mi) => (b'3', &[], "", (*ma, *mi)),
    };
    let name = if e.kind == Kind::Dir {
        format!("{}/", e.path)
    } else {
        e.path.clone()
    };
    let h = Header {
        name,
        mode: e.perm,
        uid: u64::from(e.uid),
        gid: u64::from(e.gid),
        size: data.len() as u64,
        mtime,
        typeflag,
        linkname: linkname.to_string(),
        dev,
    };
    let (block, pax) = h.encode();
    let mut n = 0u64;
    if !pax.is_empty() {
        let body: String = pax.concat();
        let ph = Header {
            name: format!("PaxHeaders/{}", tail_fitting(&e.path, 80)),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: body.len() as u64,
            mtime,
            typeflag: b'x',
            linkname: String::new(),
            dev: (0, 0),
        };
        let (pblock, _) = ph.encode();
        w.write_all(&pblock)?;
        w.write_all(body.as_bytes())?;
        let p = padding(body.len() as u64);
        w.write_all(&[0u8; BLOCK][..p])?;
        n += (BLOCK + body.len() + p) as u64;
    }
    w.write_all(&block)?;
    w.write_all(data)?;
    let p = padding(data.len() as u64);
    w.write_all(&[0u8; BLOCK][..p])?;
    n += (BLOCK + data.len() + p) as u64;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("sbin/init", 0o755, b"\x7fELF not really".to_vec());
        a.file("etc/moonlit/init.lua", 0o644, b"print(1)\n".to_vec());
        a.dir("tmp", 0o1777);
        a.symlink("bin/moonlit", "/sbin/init");
        a.char_dev("dev/null", 0o666, 1, 3);
        // 130 bytes: fits as ustar prefix + name.
        let split = format!("{}/{}", "d".repeat(60), "f".repeat(69));
        a.file(&split, 0o600, b"split".to_vec());
        // A single component of 120 bytes cannot be split: needs pax.
        let long = format!("long/{}", "x".repeat(120));
        a.file(&long, 0o640, vec![7u8; 1000]);
        a.symlink("long/link", &format!("/{}", "t".repeat(150)));
        a
    }

    #[test]
    fn header_fields_and_checksum() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"abcde".to_vec());
        let b = to_bytes(&a, 1234);
        // Header, one data block, two zero blocks.
        assert_eq!(b.len(), 4 * BLOCK);
        assert_eq!(&b[..5], b"init\0");
        assert_eq!(&b[100..108], b"0000755\0");
        assert_eq!(&b[124..136], b"00000000005\0");
        assert_eq!(&b[136..148], b"00000002322\0"); // 1234 in octal
        assert_eq!(b[156], b'0');
        assert_eq!(&b[257..265], b"ustar\x0000");
        let mut h = b[..BLOCK].to_vec();
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&x| u64::from(x)).sum::<u64>());
        assert_eq!(&b[BLOCK..BLOCK + 5], b"abcde");
        assert!(b[BLOCK + 5..].iter().all(|&x| x == 0));
    }

    #[test]
    fn deterministic_and_pax_only_when_needed() {
        let a = sample();
        assert_eq!(to_bytes(&a, 0), to_bytes(&a, 0));
        assert_ne!(to_bytes(&a, 0), to_bytes(&a, 1));
        let b = to_bytes(&a, 0);
        let headers: Vec<u8> = b
            .chunks(BLOCK)
            .filter(|c| &c[257..263] == b"ustar\0")
            .map(|c| c[156])
            .collect();
        // Two pax headers: the long path and the long link target.
        assert_eq!(headers.iter().filter(|&&t| t == b'x').count(), 2);
        let mut short = Archive::new();
        short.file("a/b", 0o644, vec![]);
        assert!(!to_bytes(&short, 0)
            .chunks(BLOCK)
            .any(|c| &c[257..263] == b"ustar\0" && c[156] == b'x'));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "abc"), "12 path=abc\n");
        assert_eq!(pax_record("path", "ab"), "11 path=ab\n");
        let r = pax_record("path", &"p".repeat(95));
        assert_eq!(r.len().to_string(), r.split(' ').next().unwrap());
    }

    fn gnu_tar(args: &[&str], input: &[u8]) -> String {
        let mut child = Command::new("tar")
            .args(args)
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs GNU tar: {e}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("feed tar");
        let out = child.wait_with_output().expect("tar");
        assert!(
            out.status.success(),
            "tar {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Cross-check with a tool nobody here wrote: GNU tar lists and extracts
    /// what we wrote, long names, link targets, modes and devices included.
    #[test]
    fn gnu_tar_reads_it() {
        let a = sample();
        let bytes = to_bytes(&a, 1_700_000_000);
        let list = gnu_tar(&["-tv", "--numeric-owner", "-f", "-"], &bytes);
        let long = format!("long/{}", "x".repeat(120));
        let split = format!("{}/{}", "d".repeat(60), "f".repeat(69));
        for want in [
            "-rwxr-xr-x 0/0",
            "sbin/init",
            "drwxrwxrwt 0/0",
            "bin/moonlit -> /sbin/init",
            &format!("long/link -> /{}", "t".repeat(150)),
            &long,
            &split,
            "2023-11-14",
        ] {
            assert!(list.contains(want), "'{want}' not in:\n{list}");
        }
        assert!(
            list.lines().any(|l| l.starts_with("crw-rw-rw- 0/0")
                && l.contains("1,3")
                && l.ends_with("dev/null")),
            "{list}"
        );
        // Every archive entry and nothing else (no PaxHeaders entries).
        assert_eq!(list.lines().count(), a.len(), "{list}");

        // Extract (devices left out: that needs root) and compare.
        let mut no_dev = Archive::new();
        for e in a.entries().filter(|e| !matches!(e.kind, Kind::CharDev(..))) {
            no_dev.add(e.clone());
        }
        let dir: PathBuf =
            std::env::temp_dir().join(format!("moonlit-tar-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let d = dir.to_string_lossy().into_owned();
        gnu_tar(
            &["-x", "-p", "--no-same-owner", "-f", "-", "-C", &d],
            &to_bytes(&no_dev, 0),
        );
        for e in no_dev.entries() {
            let p = dir.join(&e.path);
            let md = std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{p:?}: {err}"));
            match &e.kind {
                Kind::File(data) => {
                    assert_eq!(&std::fs::read(&p).unwrap(), data, "{p:?}");
                    assert_eq!(md.permissions().mode() & 0o7777, e.perm, "{p:?}");
                }
                Kind::Dir => {
                    assert!(md.is_dir(), "{p:?}");
                    assert_eq!(md.permissions().mode() & 0o7777, e.perm, "{p:?}");
                }
                Kind::Symlink(t) => {
                    assert_eq!(std::fs::read_link(&p).unwrap().to_string_lossy(), *t)
                }
                Kind::CharDev(..) => unreachable!(),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);

        // Negative control: a damaged header checksum is refused.
        let mut bad = bytes.clone();
        bad[10] ^= 0x20;
        let st = Command::new("tar")
            .args(["-t", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(&bad)?;
                c.wait()
            })
            .expect("tar");
        assert!(!st.success(), "GNU tar accepted a bad checksum");
    }
}
