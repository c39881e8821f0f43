//! `moonlit-images`: the command line over the recipes in the library.
//!
//! ```text
//! moonlit-images initramfs --moonlit BIN --config DIR -o OUT.cpio [options]
//! moonlit-images disk      --moonlit BIN --config DIR -o OUT.img  [options]
//! moonlit-images oci       --moonlit BIN --config DIR -o BUNDLE   [options]
//! moonlit-images oci --layout [-o DIR] [--tar FILE] [--tag TAG] --moonlit BIN --config DIR
//! moonlit-images boot      --initrd OUT.cpio [--disk IMG] [--forward H:G] ...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use moonlit_images::{disk, host, oci, qemu, rootfs, Error, Result};

const USAGE: &str = "usage:
  moonlit-images initramfs|disk|oci -o OUT --moonlit BIN --config DIR [options]
      --config DIR          configuration for /etc/moonlit
      --extra-config D=DIR  another configuration at /D (e.g. etc/moonlit-alt=DIR)
      --busybox [PATH]      add a static busybox (default /bin/busybox) with applet links
      --module NAME         add a kernel module (with its dependencies); repeatable.
                            Modules named in the config's modprobe(\"...\") calls are added too
      --modules-dir DIR     module tree (default: /lib/modules/<version> of the Debian kernel)
      --size MIB            disk image size (disk; default 64)
  moonlit-images oci --layout [-o DIR] [--tar FILE] [--tag TAG] --moonlit BIN --config DIR [options]
      Without --layout, oci writes a runc bundle (OUT/rootfs, OUT/config.json).
      --layout              write an OCI image layout instead: DIR/oci-layout, index.json,
                            blobs/sha256/ (one uncompressed layer, config, manifest);
                            use it as oci:DIR:TAG (skopeo, podman) or DIR:TAG (umoci)
      --tar FILE            (with --layout) also/instead write the layout as one tar file,
                            an oci-archive (podman load -i FILE, skopeo copy oci-archive:FILE ...)
      --tag TAG             the image's tag (default latest)
      Files get mtime $SOURCE_DATE_EPOCH (default 0): the same input gives the same digests.
  moonlit-images boot [--kernel K] [--initrd I] [--disk IMG] [--append ARGS]
      [--forward HOSTPORT:GUESTPORT]... [--console FILE] [--timeout SECS]
      [--expect MARKER]... [--quiet]
      Boots under qemu (TCG). The console is shown (unless --quiet) and written
      to FILE. With --expect, exits 0 once every marker appeared (in order),
      else 1 at the timeout. Without, runs until the guest powers off; type on
      the console through stdin. Forwards bind 127.0.0.1 only.";

#[derive(Default)]
struct Args {
    out: Option<PathBuf>,
    moonlit: Option<PathBuf>,
    config: Option<PathBuf>,
    extra: Vec<(String, PathBuf)>,
    busybox: Option<PathBuf>,
    modules: Vec<String>,
    modules_dir: Option<PathBuf>,
    size: Option<u64>,
    layout: bool,
    tar: Option<PathBuf>,
    tag: Option<String>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    disk: Option<PathBuf>,
    append: String,
    forwards: Vec<(u16, u16)>,
    console: Option<PathBuf>,
    timeout: Option<u64>,
    expect: Vec<String>,
    quiet: bool,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Invalid(format!("{}\n{USAGE}", msg.into()))
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args::default();
    let mut i = 0;
    let need = |i: usize, name: &str| -> Result<String> {
        argv.get(i + 1)
            .cloned()
            .ok_or_else(|| bad(format!("{name} needs a value")))
    };
    while i < argv.len() {
        let arg = argv[i].as_str();
        // Options take one value unless they say otherwise.
        let mut step = 2;
        match arg {
            "-o" | "--out" => a.out = Some(need(i, arg)?.into()),
            "--moonlit" => a.moonlit = Some(need(i, arg)?.into()),
            "--config" => a.config = Some(need(i, arg)?.into()),
            "--extra-config" => {
                let v = need(i, arg)?;
                let (d, p) = v
                    .split_once('=')
                    .ok_or_else(|| bad("--extra-config wants DEST=DIR"))?;
                a.extra.push((d.trim_matches('/').to_string(), p.into()));
            }
            "--busybox" => match argv.get(i + 1).filter(|v| !v.starts_with('-')) {
                Some(p) => a.busybox = Some(p.into()),
                None => {
                    a.busybox = Some(host::static_busybox()?);
                    step = 1;
                }
            },
            "--module" => a.modules.push(need(i, arg)?),
            "--modules-dir" => a.modules_dir = Some(need(i, arg)?.into()),
            "--size" => a.size = Some(need(i, arg)?.parse().map_err(|_| bad("--size wants MiB"))?),
            "--layout" => {
                a.layout = true;
                step = 1;
            }
            "--tar" => a.tar = Some(need(i, arg)?.into()),
            "--tag" => a.tag = Some(need(i, arg)?),
            "--kernel" => a.kernel = Some(need(i, arg)?.into()),
            "--initrd" => a.initrd = Some(need(i, arg)?.into()),
            "--disk" => a.disk = Some(need(i, arg)?.into()),
            "--append" => a.append = need(i, arg)?,
            "--forward" => {
                let v = need(i, arg)?;
                let (h, g) = v
                    .split_once(':')
                    .ok_or_else(|| bad("--forward wants HOSTPORT:GUESTPORT"))?;
                let h = h.parse().map_err(|_| bad("bad host port"))?;
                let g = g.parse().map_err(|_| bad("bad guest port"))?;
                a.forwards.push((h, g));
            }
            "--console" => a.console = Some(need(i, arg)?.into()),
            "--timeout" => {
                a.timeout = Some(
                    need(i, arg)?
                        .parse()
                        .map_err(|_| bad("--timeout wants seconds"))?,
                )
            }
            "--expect" => a.expect.push(need(i, arg)?),
            "--quiet" => {
                a.quiet = true;
                step = 1;
            }
            other => return Err(bad(format!("unexpected argument '{other}'"))),
        }
        i += step;
    }
    Ok(a)
}

fn spec(a: &Args, init_path: &str, device_nodes: bool) -> Result<rootfs::RootSpec> {
    let moonlit = a
        .moonlit
        .clone()
        .ok_or_else(|| bad("--moonlit BIN is required (build it with build-musl.sh)"))?;
    if !host::is_static_elf(&moonlit)? {
        return Err(Error::Invalid(format!(
            "{} is not a static program: build it with build-musl.sh",
            moonlit.display()
        )));
    }
    let config = a
        .config
        .clone()
        .ok_or_else(|| bad("--config DIR is required"))?;
    let mut configs = vec![("etc/moonlit".to_string(), config)];
    configs.extend(a.extra.iter().cloned());
    let module_tree = match &a.modules_dir {
        Some(d) => Some(d.clone()),
        None => host::debian_kernel().ok().map(|(_, m)| m),
    };
    Ok(rootfs::RootSpec {
        moonlit,
        init_path: init_path.into(),
        configs,
        busybox: a.busybox.clone(),
        module_tree,
        modules: a.modules.clone(),
        scan_modules: true,
        device_nodes,
        extra_files: Vec::new(),
    })
}

fn report(c: &rootfs::Contents, out: &std::path::Path) {
    eprintln!(
        "{}: {} entries, {} busybox applets, modules: {}",
        out.display(),
        c.archive.len(),
        c.applets,
        if c.module_files.is_empty() {
            "none".to_string()
        } else {
            c.module_files
                .iter()
                .map(|f| moonlit_images::kmod::module_name(f))
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
}

fn cmd_initramfs(a: &Args) -> Result<()> {
    let out = a.out.clone().ok_or_else(|| bad("-o OUT is required"))?;
    let c = rootfs::build(&spec(a, "init", true)?)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out).map_err(|e| Error::Io {
        what: "create",
        path: out.clone(),
        source: e,
    })?);
    c.archive.write_to(&mut f).map_err(|e| Error::Io {
        what: "write",
        path: out.clone(),
        source: e,
    })?;
    std::io::Write::flush(&mut f).map_err(|e| Error::Io {
        what: "write",
        path: out.clone(),
        source: e,
    })?;
    report(&c, &out);
    Ok(())
}

fn cmd_disk(a: &Args) -> Result<()> {
    let out = a.out.clone().ok_or_else(|| bad("-o OUT is required"))?;
    let c = rootfs::build(&spec(a, "sbin/init", false)?)?;
    let opts = disk::DiskOptions {
        size_mib: a.size.unwrap_or(64),
        ..Default::default()
    };
    disk::make_ext4(&c.archive, &out, &opts)?;
    report(&c, &out);
    Ok(())
}

fn cmd_oci(a: &Args) -> Result<()> {
    if a.layout {
        return cmd_oci_layout(a);
    }
    if a.tar.is_some() || a.tag.is_some() {
        return Err(bad("--tar and --tag need --layout"));
    }
    let out = a.out.clone().ok_or_else(|| bad("-o BUNDLE is required"))?;
    let c = rootfs::build(&spec(a, "sbin/init", false)?)?;
    oci::make_bundle(&c.archive, &out, &oci::BundleOptions::default())?;
    report(&c, &out);
    Ok(())
}

fn cmd_oci_layout(a: &Args) -> Result<()> {
    if a.out.is_none() && a.tar.is_none() {
        return Err(bad("oci --layout needs -o DIR, --tar FILE or both"));
    }
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| bad(format!("SOURCE_DATE_EPOCH={v} is not a number of seconds")))?,
        Err(_) => 0,
    };
    let opts = oci::LayoutOptions {
        tag: a.tag.clone().unwrap_or_else(|| "latest".into()),
        created,
        ..Default::default()
    };
    if !oci::valid_tag(&opts.tag) {
        return Err(bad(format!("'{}' is not a valid tag", opts.tag)));
    }
    let c = rootfs::build(&spec(a, "sbin/init", false)?)?;
    let mut made = Vec::new();
    if let Some(dir) = &a.out {
        made.push((dir.clone(), oci::make_layout(&c.archive, dir, &opts)?));
    }
    if let Some(file) = &a.tar {
        made.push((file.clone(), oci::make_layout_tar(&c.archive, file, &opts)?));
    }
    for (path, l) in &made {
        report(&c, path);
        eprintln!(
            "{}: image {} (tag {}), layer {} bytes, layout {} bytes",
            path.display(),
            l.manifest.digest,
            opts.tag,
            l.layer.size,
            l.size()
        );
    }
    Ok(())
}

fn cmd_boot(a: &Args) -> Result<ExitCode> {
    let kernel = match &a.kernel {
        Some(k) => k.clone(),
        None => host::debian_kernel()?.0,
    };
    let mut cfg = qemu::VmConfig::new(kernel);
    cfg.initrd = a.initrd.clone();
    cfg.disk = a.disk.clone();
    cfg.append = a.append.clone();
    cfg.forwards = a.forwards.clone();
    cfg.console_log = a.console.clone();
    cfg.echo = !a.quiet;
    cfg.inherit_stdin = a.expect.is_empty();
    let mut vm = qemu::Vm::start(&cfg)?;
    let timeout = a.timeout.map(Duration::from_secs);
    if !a.expect.is_empty() {
        let t = timeout.unwrap_or(Duration::from_secs(300));
        let mut at = 0;
        for m in &a.expect {
            at = vm.wait_for_from(at, m, t.saturating_sub(vm.elapsed()))?;
            eprintln!(
                "\nmoonlit-images: saw '{m}' after {:.1} s",
                vm.elapsed().as_secs_f64()
            );
        }
        vm.kill();
        return Ok(ExitCode::SUCCESS);
    }
    // Interactive: qemu reads the terminal itself (stdin inherited).
    let st = vm.wait_exit(timeout.unwrap_or(Duration::from_secs(u64::MAX / 4)))?;
    if qemu::shows_panic(&vm.console()) {
        eprintln!("moonlit-images: the console shows a kernel panic");
        return Ok(ExitCode::from(3));
    }
    Ok(if st.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let r = parse(&argv[1..]).and_then(|a| match cmd.as_str() {
        "initramfs" => cmd_initramfs(&a).map(|_| ExitCode::SUCCESS),
        "disk" => cmd_disk(&a).map(|_| ExitCode::SUCCESS),
        "oci" => cmd_oci(&a).map(|_| ExitCode::SUCCESS),
        "boot" => cmd_boot(&a),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(bad(format!("unknown command '{other}'"))),
    });
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moonlit-images: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_without_values_and_values() {
        let a = parse(&args(&[
            "--quiet",
            "--busybox",
            "/x/busybox",
            "--forward",
            "8080:80",
            "-o",
            "out",
        ]))
        .unwrap();
        assert!(a.quiet);
        assert_eq!(a.busybox, Some(PathBuf::from("/x/busybox")));
        assert_eq!(a.forwards, [(8080, 80)]);
        assert_eq!(a.out, Some(PathBuf::from("out")));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse(&args(&["--forward", "80"])).is_err());
        assert!(parse(&args(&["-o"])).is_err());
        assert!(parse(&args(&["--frobnicate"])).is_err());
        assert!(parse(&args(&["--size", "big"])).is_err());
        assert!(parse(&args(&["--tar"])).is_err());
        assert!(parse(&args(&["--tag"])).is_err());
    }

    #[test]
    fn layout_flags() {
        let a = parse(&args(&[
            "--layout", "--tar", "img.tar", "--tag", "v1", "-o", "dir",
        ]))
        .unwrap();
        assert!(a.layout);
        assert_eq!(a.tar, Some(PathBuf::from("img.tar")));
        assert_eq!(a.tag.as_deref(), Some("v1"));
        // Layout flags without --layout, and --layout without an output,
        // are refused before anything is built.
        let no_layout = parse(&args(&["--tar", "x.tar", "-o", "b"])).unwrap();
        assert!(cmd_oci(&no_layout).is_err());
        let no_out = parse(&args(&["--layout"])).unwrap();
        let e = cmd_oci(&no_out).unwrap_err().to_string();
        assert!(e.contains("needs -o DIR"), "{e}");
    }
}
