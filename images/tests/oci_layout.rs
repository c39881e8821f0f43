//! The OCI *image layout* made by `moonlit_images::oci::make_layout`, checked
//! with standard tools from Debian that nobody here wrote:
//!
//! - umoci unpacks it into a runtime bundle whose rootfs is exactly our tree
//!   and whose config.json (umoci's own) runs the image's entrypoint; runc
//!   runs that bundle: moonlit is PID 1, the services start, `runc kill TERM`
//!   stops them in reverse dependency order and runc exits with moonlit's code;
//! - umoci refuses a layout whose layer or manifest bytes were changed
//!   (negative controls: its digests are really checked);
//! - skopeo reads the layout and its one-file `oci-archive` form, and copies
//!   the archive (verifying every blob) into a layout umoci unpacks again;
//! - buildah builds `images/oci/Dockerfile` (FROM scratch, in a network
//!   namespace with no network) and pushes it as an OCI layout, which goes
//!   through the same umoci + runc path.
//!
//! Needs root, runc, umoci, skopeo, buildah and busybox-static
//! (images/setup.sh); fails with a message when one is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::runc::Container;
use common::*;
use moonlit_images::cpio::{Archive, Kind};
use moonlit_images::oci::{self, Layout, LayoutOptions};
use moonlit_images::{rootfs, sha256};
use serde_json::Value;

/// The container test's tree (moonlit as /sbin/init, busybox, the
/// `configs/container` configuration), as `container.rs` builds it but
/// without the guest kernel's module tree (a container loads no modules).
fn container_tree() -> Archive {
    require_root();
    let s = rootfs::RootSpec {
        moonlit: moonlit_bin(),
        init_path: "sbin/init".into(),
        configs: vec![("etc/moonlit".into(), configs().join("container"))],
        busybox: Some(busybox()),
        module_tree: None,
        modules: Vec::new(),
        scan_modules: true,
        device_nodes: false,
        extra_files: Vec::new(),
    };
    rootfs::build(&s)
        .unwrap_or_else(|e| panic!("rootfs: {e}"))
        .archive
}

/// Builds the layout of the container tree in `dir/layout`.
fn make_layout(dir: &Path) -> (Archive, PathBuf, Layout) {
    let tree = container_tree();
    let layout = dir.join("layout");
    let l = oci::make_layout(&tree, &layout, &LayoutOptions::default())
        .unwrap_or_else(|e| panic!("make_layout: {e}"));
    eprintln!(
        "layout {}: {} bytes, layer {} bytes, manifest {}",
        layout.display(),
        l.size(),
        l.layer.size,
        l.manifest.digest
    );
    (tree, layout, l)
}

/// Runs a tool; returns its output (whatever the status).
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a tool and panics with its stderr unless it exits 0; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a tool that must fail; returns its stdout and stderr.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but must fail:\n{text}"
    );
    text
}

/// `umoci unpack --image IMAGE BUNDLE`.
fn umoci_unpack(image: &str, bundle: &Path) -> Command {
    let mut c = Command::new(require_program("umoci"));
    c.args(["unpack", "--image", image]).arg(bundle);
    c
}

fn image_ref(layout: &Path, tag: &str) -> String {
    format!("{}:{tag}", layout.display())
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every entry of `tree` is in `root` as it should be: type, mode, bytes,
/// link target (device nodes: the tree of a container has none).
fn assert_rootfs_is(tree: &Archive, root: &Path) {
    for e in tree.entries() {
        let p = root.join(&e.path);
        let md = std::fs::symlink_metadata(&p)
            .unwrap_or_else(|err| panic!("{} is missing from the unpacked rootfs: {err}", e.path));
        let mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
        match &e.kind {
            Kind::Dir => {
                assert!(md.is_dir(), "{} is not a directory", e.path);
                assert_eq!(mode, e.perm, "mode of {}", e.path);
            }
            Kind::File(data) => {
                assert!(md.is_file(), "{} is not a file", e.path);
                assert_eq!(mode, e.perm, "mode of {}", e.path);
                let got = std::fs::read(&p).expect("read");
                assert!(&got == data, "{} differs from the tree", e.path);
            }
            Kind::Symlink(t) => {
                let got = std::fs::read_link(&p).expect("readlink");
                assert_eq!(got.to_string_lossy(), *t, "target of {}", e.path);
            }
            Kind::CharDev(..) => panic!("unexpected device node {} in a container tree", e.path),
        }
    }
}

/// The checks on a bundle umoci made: /sbin/init is the moonlit used, its
/// config.json runs the entrypoint.
fn assert_umoci_bundle(bundle: &Path) {
    let init = std::fs::read(bundle.join("rootfs/sbin/init")).expect("read rootfs/sbin/init");
    let moonlit = std::fs::read(moonlit_bin()).expect("read moonlit");
    assert!(
        init == moonlit,
        "rootfs/sbin/init ({} bytes) is not the moonlit binary ({} bytes)",
        init.len(),
        moonlit.len()
    );
    let cfg = read_json(&bundle.join("config.json"));
    assert_eq!(
        cfg["process"]["args"],
        serde_json::json!(["/sbin/init"]),
        "umoci's config.json does not run the entrypoint: {cfg:#}"
    );
    // Whoever set it (the image or the builder), PATH reaches /bin.
    let path = cfg["process"]["env"]
        .as_array()
        .and_then(|e| e.iter().find_map(|v| v.as_str()?.strip_prefix("PATH=")))
        .unwrap_or_else(|| panic!("no PATH in umoci's config: {cfg:#}"));
    assert!(path.split(':').any(|d| d == "/bin"), "PATH={path}");
    assert_eq!(cfg["root"]["path"], "rootfs", "{cfg:#}");
    // umoci carries the image config's StopSignal over as an annotation.
    assert_eq!(
        cfg["annotations"]["org.opencontainers.image.stopSignal"], "SIGTERM",
        "{cfg:#}"
    );
}

/// Runs a bundle umoci made with runc and goes through the container
/// test's checks. umoci writes `process.terminal: true` (for an interactive
/// `runc run` on a tty); there is no tty here, so that one field is set to
/// false, as anyone running the bundle without a terminal does. Nothing
/// else of umoci's config.json changes; its hostname `umoci-default` in
/// moonlit's output shows that config is the one that ran.
fn boot_umoci_bundle(bundle: &Path, name: &str) {
    require_program("runc");
    let cfg_path = bundle.join("config.json");
    let mut cfg = read_json(&cfg_path);
    assert_eq!(
        cfg["process"]["terminal"], true,
        "umoci's config changed: the test's terminal edit may be stale"
    );
    cfg["process"]["terminal"] = Value::Bool(false);
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("json"))
        .expect("write config.json");
    let hostname = cfg["hostname"].as_str().unwrap_or_default().to_string();
    assert!(
        !hostname.is_empty() && hostname != "moonlit",
        "umoci's config has hostname '{hostname}': cannot tell it from ours"
    );

    let dir = bundle.parent().expect("bundle parent");
    let mut c = Container::start(bundle, dir, &format!("moonlit-oci-{name}"));
    // The main service ("second") exits 7 on TERM.
    assert_eq!(c.boot_and_stop(&hostname), 7);
}

#[test]
fn umoci_unpacks_the_layout_and_runc_boots_moonlit_from_it() {
    let dir = scratch("oci-layout-umoci");
    let (tree, layout, _) = make_layout(&dir);
    let bundle = dir.join("bundle");
    ok(&mut umoci_unpack(&image_ref(&layout, "latest"), &bundle));
    assert_rootfs_is(&tree, &bundle.join("rootfs"));
    assert_umoci_bundle(&bundle);
    let cfg = read_json(&bundle.join("config.json"));
    assert_eq!(
        cfg["process"]["env"][0],
        oci::PATH_ENV,
        "the image's Env did not reach umoci's config: {cfg:#}"
    );
    // Negative control for the tag: a tag the index does not name.
    let text = fails(&mut umoci_unpack(
        &image_ref(&layout, "nosuchtag"),
        &dir.join("nobundle"),
    ));
    assert!(text.contains("nosuchtag"), "{text}");
    boot_umoci_bundle(&bundle, "umoci");
}

/// Flips one byte of the file `path`, at its middle.
fn flip_middle_byte(path: &Path) {
    let mut b = std::fs::read(path).expect("read blob");
    let i = b.len() / 2;
    b[i] ^= 0x01;
    std::fs::write(path, b).expect("write blob");
}

#[test]
fn umoci_refuses_a_layout_whose_layer_or_manifest_changed() {
    let dir = scratch("oci-layout-corrupt");
    let (_, layout, l) = make_layout(&dir);
    // Positive control: the untouched layout unpacks.
    ok(&mut umoci_unpack(
        &image_ref(&layout, "latest"),
        &dir.join("good"),
    ));

    // One byte in the middle of the layer (inside a file's data: the tar
    // still parses, only the digest check can catch it).
    let bad_layer = dir.join("bad-layer");
    copy_dir(&layout, &bad_layer);
    flip_middle_byte(&bad_layer.join(l.layer.path()));
    let text = fails(&mut umoci_unpack(
        &image_ref(&bad_layer, "latest"),
        &dir.join("b1"),
    ));
    assert!(
        text.contains("digest mismatch") && text.contains(&l.layer.digest),
        "umoci refused the corrupted layer for another reason:\n{text}"
    );

    // The manifest's bytes change but not its meaning (a trailing space)
    // and index.json is given the new size: only the digest is wrong.
    let bad_manifest = dir.join("bad-manifest");
    copy_dir(&layout, &bad_manifest);
    let m = bad_manifest.join(l.manifest.path());
    let mut bytes = std::fs::read(&m).expect("read manifest");
    bytes.push(b' ');
    std::fs::write(&m, &bytes).expect("write manifest");
    let index = bad_manifest.join("index.json");
    let mut idx = read_json(&index);
    idx["manifests"][0]["size"] = Value::from(bytes.len());
    std::fs::write(&index, serde_json::to_vec(&idx).expect("json")).expect("write index");
    let text = fails(&mut umoci_unpack(
        &image_ref(&bad_manifest, "latest"),
        &dir.join("b2"),
    ));
    assert!(
        text.contains("digest mismatch") && text.contains(&l.manifest.digest),
        "umoci refused the changed manifest for another reason:\n{text}"
    );
}

fn skopeo() -> Command {
    Command::new(require_program("skopeo"))
}

#[test]
fn skopeo_reads_the_layout_and_the_oci_archive() {
    let dir = scratch("oci-layout-skopeo");
    let (tree, layout, l) = make_layout(&dir);
    let archive = dir.join("image.tar");
    let la = oci::make_layout_tar(&tree, &archive, &LayoutOptions::default())
        .unwrap_or_else(|e| panic!("make_layout_tar: {e}"));
    assert_eq!(la.manifest, l.manifest, "the archive holds another image");
    let oci_ref = format!("oci:{}:latest", layout.display());
    let archive_ref = format!("oci-archive:{}", archive.display());

    for r in [&oci_ref, &archive_ref] {
        let info: Value = serde_json::from_str(&ok(skopeo().args(["inspect", r]))).expect("json");
        assert_eq!(info["Digest"], l.manifest.digest.as_str(), "{r}: {info:#}");
        assert_eq!(info["Architecture"], "amd64", "{info:#}");
        assert_eq!(info["Os"], "linux", "{info:#}");
        assert_eq!(
            info["Layers"],
            serde_json::json!([l.layer.digest]),
            "{info:#}"
        );
    }
    // The raw manifest hashes to the digest the index names.
    let raw = run(skopeo().args(["inspect", "--raw", &oci_ref]));
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(sha256::oci_digest(&raw.stdout), l.manifest.digest);
    let cfg: Value =
        serde_json::from_str(&ok(skopeo().args(["inspect", "--config", &oci_ref]))).expect("json");
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/sbin/init"]),
        "{cfg:#}"
    );
    assert_eq!(cfg["config"]["StopSignal"], "SIGTERM", "{cfg:#}");
    assert_eq!(
        cfg["rootfs"]["diff_ids"],
        serde_json::json!([l.layer.digest]),
        "{cfg:#}"
    );
    // Negative control for the tag.
    fails(skopeo().args(["inspect", &format!("oci:{}:nosuchtag", layout.display())]));

    // skopeo copies the archive (checking every blob's digest on the way)
    // into a fresh layout, which umoci unpacks with the same /sbin/init.
    let copy = dir.join("copy");
    ok(skopeo()
        .args(["copy", &archive_ref])
        .arg(format!("oci:{}:v1", copy.display())));
    let bundle = dir.join("bundle-from-archive");
    ok(&mut umoci_unpack(&image_ref(&copy, "v1"), &bundle));
    assert_umoci_bundle(&bundle);

    // Negative control: skopeo copy refuses a corrupted layer blob.
    let bad = dir.join("bad");
    copy_dir(&layout, &bad);
    flip_middle_byte(&bad.join(l.layer.path()));
    let text = fails(
        skopeo()
            .args(["copy", &format!("oci:{}:latest", bad.display())])
            .arg(format!("oci:{}:latest", dir.join("bad-copy").display())),
    );
    assert!(text.contains("Digest did not match"), "{text}");
}

/// `images/oci/Dockerfile` built by buildah (vfs storage, chroot isolation,
/// in a new network namespace: FROM scratch needs no network and gets
/// none), pushed as an OCI layout, unpacked by umoci and run by runc.
#[test]
fn buildah_builds_the_dockerfile_into_a_layout_that_boots() {
    require_root();
    let buildah = require_program("buildah");
    let unshare = require_program("unshare");
    let dir = scratch("oci-layout-buildah");
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx).expect("mkdir context");
    std::fs::copy(moonlit_bin(), ctx.join("moonlit")).expect("copy moonlit");
    std::fs::copy(busybox(), ctx.join("busybox")).expect("copy busybox");
    copy_dir(&configs().join("container"), &ctx.join("config"));
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("oci/Dockerfile");
    let tag = format!("localhost/moonlit-oci-test-{}", std::process::id());
    let buildah_cmd = |args: &[&str]| {
        let mut c = Command::new(&unshare);
        c.arg("--net")
            .arg(&buildah)
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        c
    };
    ok(buildah_cmd(&["bud", "--isolation", "chroot", "-f"])
        .arg(&dockerfile)
        .args(["-t", &tag])
        .arg(&ctx));
    let layout = dir.join("layout");
    ok(buildah_cmd(&["push", &tag]).arg(format!("oci:{}:latest", layout.display())));

    let bundle = dir.join("bundle");
    ok(&mut umoci_unpack(&image_ref(&layout, "latest"), &bundle));
    assert_umoci_bundle(&bundle);
    let lua =
        std::fs::read(bundle.join("rootfs/etc/moonlit/init.lua")).expect("init.lua in the image");
    assert_eq!(
        lua,
        std::fs::read(configs().join("container/init.lua")).expect("init.lua"),
        "the image's /etc/moonlit is not the configuration"
    );
    // The Dockerfile's RUN step made busybox's applet links.
    let sh = std::fs::read_link(bundle.join("rootfs/bin/sh"))
        .expect("/bin/sh link from busybox --install");
    assert_eq!(sh, Path::new("/bin/busybox"));
    boot_umoci_bundle(&bundle, "buildah");
}
