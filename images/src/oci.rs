//! OCI artifacts with moonlit as the container's PID 1: a runtime *bundle*
//! for runc (`rootfs/` + `config.json`, runtime-spec 1.0) and an *image
//! layout* (image-spec 1.0/1.1) for image tools (umoci, skopeo, podman,
//! containerd, registries).
//!
//! Owns: writing the bundle's rootfs and a config.json with the usual
//! namespaces and mounts (proc, a tmpfs /dev with devpts, shm and mqueue,
//! read-only sysfs, tmpfs /run and /tmp) ([`make_bundle`]); and the image
//! layout ([`make_layout`], [`make_layout_tar`]): `oci-layout`,
//! `index.json` (one manifest, tagged through the
//! `org.opencontainers.image.ref.name` annotation), and under
//! `blobs/sha256/` one uncompressed layer tar (the tree, see [`crate::tar`]),
//! the image config (`Entrypoint` `/sbin/init`, `Env` PATH, `StopSignal`
//! SIGTERM, `WorkingDir` `/`, the layer's diff_id, one history entry) and
//! the manifest, every blob named by its SHA-256 ([`crate::sha256`]). The
//! layout can also be written as one tar file, the `oci-archive` format of
//! `skopeo copy oci-archive:FILE` and `podman load -i FILE`. Output is
//! deterministic: the same tree and options give the same digests.
//!
//! Does not own: running a bundle (the tests call `runc`), unpacking or
//! pushing an image (umoci, skopeo, podman do), compression, or other
//! architectures than amd64. `images/oci/Dockerfile` is the `FROM scratch`
//! recipe for users who build with Docker/Buildah instead.

use std::path::Path;

use serde_json::{json, Value};

use crate::cpio::Archive;
use crate::sha256::oci_digest;
use crate::{io_err, Error, Result};

/// The PATH in a bundle's and an image's environment.
pub const PATH_ENV: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";

/// Options of [`make_bundle`].
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The container's hostname.
    pub hostname: String,
    /// Extra environment (`KEY=value`).
    pub env: Vec<String>,
    /// The command (default `/sbin/init`).
    pub args: Vec<String>,
    /// A cgroup namespace and a writable cgroup2 on /sys/fs/cgroup (what
    /// `docker run --cgroupns=private` gives on a cgroup2 host).
    pub cgroupns: bool,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            hostname: "moonlit".into(),
            env: Vec::new(),
            args: vec!["/sbin/init".into()],
            cgroupns: false,
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
    let mut env = vec![PATH_ENV.to_string()];
    env.extend(opts.env.iter().cloned());
    let mut v = json!({
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
    });
    if opts.cgroupns {
        if let Some(ns) = v["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({ "type": "cgroup" }));
        }
        if let Some(m) = v["mounts"].as_array_mut() {
            m.push(
                json!({ "destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
                           "options": ["nosuid", "noexec", "nodev", "rw"] }),
            );
        }
    }
    v
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

/// Media types of image-spec 1.0.
pub mod media {
    /// `oci-layout`'s version.
    pub const LAYOUT_VERSION: &str = "1.0.0";
    /// An image index (`index.json`).
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// An uncompressed layer tar.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// The index annotation naming a manifest (the tag).
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
}

/// Options of [`make_layout`].
#[derive(Debug, Clone)]
pub struct LayoutOptions {
    /// The tag (`org.opencontainers.image.ref.name`), default `latest`: the
    /// image is then `oci:DIR:latest` for skopeo, `DIR:latest` for umoci.
    pub tag: String,
    /// The config's `Entrypoint` (default `/sbin/init`).
    pub entrypoint: Vec<String>,
    /// Extra environment (`KEY=value`) after PATH.
    pub env: Vec<String>,
    /// Seconds since the epoch for every file's mtime in the layer and the
    /// config's `created` (default 0: reproducible).
    pub created: u64,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions {
            tag: "latest".into(),
            entrypoint: vec!["/sbin/init".into()],
            env: Vec::new(),
            created: 0,
        }
    }
}

/// A blob's descriptor parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Blob {
    fn of(data: &[u8]) -> Blob {
        Blob {
            digest: oci_digest(data),
            size: data.len() as u64,
        }
    }

    /// The blob's path inside a layout (`blobs/sha256/<hex>`).
    pub fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// What [`layout`] made: the layout's files and the image's descriptors.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout as files: `oci-layout`, `index.json`, `blobs/sha256/*`.
    pub files: Archive,
    /// The manifest (what `index.json` points to; its digest is the image's).
    pub manifest: Blob,
    /// The image config.
    pub config: Blob,
    /// The layer (uncompressed: its digest is also its diff_id).
    pub layer: Blob,
}

impl Layout {
    /// The total size of the layout's files.
    pub fn size(&self) -> u64 {
        self.files
            .entries()
            .map(|e| match &e.kind {
                crate::cpio::Kind::File(d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

/// Whether `tag` is a valid tag (the Docker/OCI distribution grammar
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// RFC 3339 UTC time of `secs` since the epoch (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The image config (image-spec `config.md`) for a layer with `diff_id`.
pub fn image_config(opts: &LayoutOptions, diff_id: &str) -> Value {
    let mut env = vec![PATH_ENV.to_string()];
    env.extend(opts.env.iter().cloned());
    let created = rfc3339(opts.created);
    json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": opts.entrypoint,
            "WorkingDir": "/",
            "StopSignal": "SIGTERM"
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{
            "created": created,
            "created_by": "moonlit-images oci --layout",
            "comment": "moonlit as /sbin/init with its configuration"
        }]
    })
}

fn to_json_bytes(v: &Value) -> Vec<u8> {
    // Serializing a Value built here cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Builds the image layout of `tree` in memory (see [`make_layout`]).
pub fn layout(tree: &Archive, opts: &LayoutOptions) -> Result<Layout> {
    if !valid_tag(&opts.tag) {
        return Err(Error::Invalid(format!(
            "'{}' is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})",
            opts.tag
        )));
    }
    if opts.entrypoint.is_empty() {
        return Err(Error::Invalid("the image's entrypoint is empty".into()));
    }
    let layer_bytes = crate::tar::to_bytes(tree, opts.created);
    let layer = Blob::of(&layer_bytes);
    let config_bytes = to_json_bytes(&image_config(opts, &layer.digest));
    let config = Blob::of(&config_bytes);
    let manifest_bytes = to_json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": {
            "mediaType": media::CONFIG,
            "digest": config.digest,
            "size": config.size
        },
        "layers": [{
            "mediaType": media::LAYER_TAR,
            "digest": layer.digest,
            "size": layer.size
        }]
    }));
    let manifest = Blob::of(&manifest_bytes);
    let index_bytes = to_json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": [{
            "mediaType": media::MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": { (media::REF_NAME): opts.tag }
        }]
    }));
    let mut files = Archive::new();
    files.file(
        "oci-layout",
        0o644,
        to_json_bytes(&json!({ "imageLayoutVersion": media::LAYOUT_VERSION })),
    );
    files.file("index.json", 0o644, index_bytes);
    files.file(&layer.path(), 0o644, layer_bytes);
    files.file(&config.path(), 0o644, config_bytes);
    files.file(&manifest.path(), 0o644, manifest_bytes);
    Ok(Layout {
        files,
        manifest,
        config,
        layer,
    })
}

/// Writes the image layout of `tree` into directory `dir` (created if
/// missing). An earlier layout there is replaced: `oci-layout`, `index.json`
/// and `blobs/` are removed first; nothing else in `dir` is touched.
pub fn make_layout(tree: &Archive, dir: &Path, opts: &LayoutOptions) -> Result<Layout> {
    let l = layout(tree, opts)?;
    let blobs = dir.join("blobs");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).map_err(io_err("remove", &blobs))?;
    }
    for f in ["oci-layout", "index.json"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
    }
    crate::rootfs::write_dir(&l.files, dir)?;
    Ok(l)
}

/// Writes the image layout of `tree` as one tar file (an `oci-archive`:
/// the layout directory's files at the top of the tar), replacing `file`.
pub fn make_layout_tar(tree: &Archive, file: &Path, opts: &LayoutOptions) -> Result<Layout> {
    let l = layout(tree, opts)?;
    let bytes = crate::tar::to_bytes(&l.files, opts.created);
    std::fs::write(file, bytes).map_err(io_err("write", file))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256::hex_digest;

    fn tree() -> Archive {
        let mut a = Archive::new();
        a.file("sbin/init", 0o755, b"moonlit".to_vec());
        a.symlink("bin/moonlit", "/sbin/init");
        a.file("etc/moonlit/init.lua", 0o644, b"print(1)\n".to_vec());
        a
    }

    fn file<'a>(l: &'a Layout, path: &str) -> &'a [u8] {
        match l.files.entries().find(|e| e.path == path).map(|e| &e.kind) {
            Some(crate::cpio::Kind::File(d)) => d,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn json_of(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn every_blob_is_named_by_its_digest_and_linked_with_its_size() {
        let l = layout(&tree(), &LayoutOptions::default()).unwrap();
        for e in l.files.entries() {
            if let (Some(hex), crate::cpio::Kind::File(d)) =
                (e.path.strip_prefix("blobs/sha256/"), &e.kind)
            {
                assert_eq!(hex_digest(d), hex, "{}", e.path);
            }
        }
        let index = json_of(file(&l, "index.json"));
        assert_eq!(index["schemaVersion"], 2);
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], l.manifest.digest.as_str());
        assert_eq!(m["size"], l.manifest.size);
        assert_eq!(m["annotations"][media::REF_NAME], "latest");
        assert_eq!(m["mediaType"], media::MANIFEST);

        let manifest = json_of(file(&l, &l.manifest.path()));
        assert_eq!(manifest["config"]["digest"], l.config.digest.as_str());
        assert_eq!(manifest["config"]["size"], l.config.size);
        assert_eq!(manifest["layers"][0]["digest"], l.layer.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], l.layer.size);
        assert_eq!(manifest["layers"][0]["mediaType"], media::LAYER_TAR);
        let layer = file(&l, &l.layer.path());
        assert_eq!(layer.len() as u64, l.layer.size);
        assert_eq!(layer, crate::tar::to_bytes(&tree(), 0));

        let config = json_of(file(&l, &l.config.path()));
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], json!(["/sbin/init"]));
        assert_eq!(config["config"]["Env"], json!([PATH_ENV]));
        assert_eq!(config["config"]["StopSignal"], "SIGTERM");
        assert_eq!(config["config"]["WorkingDir"], "/");
        assert_eq!(
            config["rootfs"],
            json!({ "type": "layers", "diff_ids": [l.layer.digest] })
        );
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["history"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            json_of(file(&l, "oci-layout")),
            json!({ "imageLayoutVersion": "1.0.0" })
        );
        assert!(l.size() > l.layer.size);
    }

    #[test]
    fn deterministic_and_sensitive_to_content() {
        let o = LayoutOptions::default();
        let a = layout(&tree(), &o).unwrap();
        let b = layout(&tree(), &o).unwrap();
        assert_eq!(a.manifest, b.manifest);
        let mut t = tree();
        t.file("etc/moonlit/init.lua", 0o644, b"print(2)\n".to_vec());
        let c = layout(&t, &o).unwrap();
        assert_ne!(a.layer, c.layer);
        assert_ne!(a.manifest, c.manifest);
        let d = layout(
            &tree(),
            &LayoutOptions {
                created: 1,
                ..o.clone()
            },
        )
        .unwrap();
        assert_ne!(a.manifest, d.manifest);
    }

    #[test]
    fn bad_tags_and_empty_entrypoints_are_refused() {
        for tag in ["", "-x", ".x", "a b", "a:b", "a/b", &"x".repeat(129)] {
            let o = LayoutOptions {
                tag: tag.into(),
                ..Default::default()
            };
            assert!(layout(&tree(), &o).is_err(), "tag '{tag}' was accepted");
        }
        for tag in ["latest", "v1.2.3-rc_1", "_x", &"x".repeat(128)] {
            assert!(valid_tag(tag), "{tag}");
        }
        let o = LayoutOptions {
            entrypoint: Vec::new(),
            ..Default::default()
        };
        assert!(layout(&tree(), &o).is_err());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    /// The layout on disk and as an oci-archive tar hold the same files.
    #[test]
    fn written_layout_and_archive() {
        let dir = std::env::temp_dir().join(format!("moonlit-layout-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = LayoutOptions::default();
        // A stale blob from an earlier layout is removed.
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256/stale"), b"x").unwrap();
        let l = make_layout(&tree(), &dir, &o).unwrap();
        assert!(!dir.join("blobs/sha256/stale").exists());
        let mut blobs: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        blobs.sort();
        assert_eq!(blobs.len(), 3);
        for b in &blobs {
            let data = std::fs::read(dir.join("blobs/sha256").join(b)).unwrap();
            assert_eq!(&hex_digest(&data), b);
        }
        let tar = dir.join("image.tar");
        let t = make_layout_tar(&tree(), &tar, &o).unwrap();
        assert_eq!(t.manifest, l.manifest);
        assert_eq!(
            std::fs::read(&tar).unwrap(),
            crate::tar::to_bytes(&l.files, 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
