//! The VM runner: the Debian kernel under `qemu-system-x86_64` with TCG
//! (KVM is not usable on the machines this runs on), the serial console on
//! qemu's stdio captured to memory and to a file, a NIC on qemu's user
//! network with host ports forwarded (bound to 127.0.0.1 only), an optional
//! virtio disk, markers awaited on the console and a hard timeout.
//!
//! Owns: the qemu command line, the console capture (a reader thread: this
//! runs on the host, never in PID 1), feeding text to the console, waiting
//! for markers and for qemu's exit, killing qemu when dropped. Does not own:
//! building the images.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The kernel image (`/boot/vmlinuz-<version>`).
    pub kernel: PathBuf,
    /// The initramfs (cpio).
    pub initrd: Option<PathBuf>,
    /// A raw disk image attached as virtio (`/dev/vda` in the guest).
    pub disk: Option<PathBuf>,
    /// Kernel command line after `console=ttyS0`.
    pub append: String,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// NIC model on the user network (`e1000`, `virtio-net-pci`), or None for no NIC.
    pub nic: Option<String>,
    /// Forwards (host port on 127.0.0.1, guest port).
    pub forwards: Vec<(u16, u16)>,
    /// Where the console transcript goes (appended as it arrives).
    pub console_log: Option<PathBuf>,
    /// Also copy the console to this process's stdout.
    pub echo: bool,
    /// Let qemu read this process's stdin (interactive use) instead of a
    /// pipe that [`Vm::send`] writes to.
    pub inherit_stdin: bool,
    /// Extra qemu arguments.
    pub extra: Vec<String>,
}

impl VmConfig {
    /// Defaults: 512 MiB, an e1000 NIC, no forwards, no disk.
    pub fn new(kernel: impl Into<PathBuf>) -> VmConfig {
        VmConfig {
            kernel: kernel.into(),
            initrd: None,
            disk: None,
            append: String::new(),
            mem_mib: 512,
            nic: Some("e1000".into()),
            forwards: Vec::new(),
            console_log: None,
            echo: false,
            inherit_stdin: false,
            extra: Vec::new(),
        }
    }

    /// The qemu arguments (after the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-accel",
            "tcg",
            "-m",
            &self.mem_mib.to_string(),
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-chardev",
            "stdio,id=con0,signal=off",
            "-serial",
            "chardev:con0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push("-kernel".into());
        a.push(self.kernel.display().to_string());
        if let Some(i) = &self.initrd {
            a.push("-initrd".into());
            a.push(i.display().to_string());
        }
        // panic=-1: a kernel panic reboots at once, and -no-reboot turns that
        // into qemu exiting: bounded time; the console says "Kernel panic".
        a.push("-append".into());
        a.push(
            format!("console=ttyS0 panic=-1 {}", self.append)
                .trim()
                .to_string(),
        );
        if let Some(model) = &self.nic {
            let mut nic = format!("user,model={model}");
            for (h, g) in &self.forwards {
                nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
            }
            a.push("-nic".into());
            a.push(nic);
        } else {
            a.push("-nic".into());
            a.push("none".into());
        }
        if let Some(d) = &self.disk {
            a.push("-drive".into());
            a.push(format!(
                "file={},format=raw,if=virtio,cache=writeback",
                d.display()
            ));
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

#[derive(Default)]
struct Console {
    bytes: Vec<u8>,
    closed: bool,
}

/// A running VM.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<(Mutex<Console>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    status: Option<ExitStatus>,
}

fn lock(c: &Mutex<Console>) -> std::sync::MutexGuard<'_, Console> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vm {
    /// Starts qemu.
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        let qemu = crate::host::find_program("qemu-system-x86_64")?;
        for (what, p) in [
            ("kernel", Some(&cfg.kernel)),
            ("initramfs", cfg.initrd.as_ref()),
            ("disk", cfg.disk.as_ref()),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    return Err(Error::Missing {
                        what: format!("{what} {}", p.display()),
                        hint: crate::host::SETUP_HINT.into(),
                    });
                }
            }
        }
        let mut log = match &cfg.console_log {
            Some(p) => Some(std::fs::File::create(p).map_err(crate::io_err("create", p))?),
            None => None,
        };
        let mut child = Command::new(&qemu)
            .args(cfg.args())
            .stdin(if cfg.inherit_stdin {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Tool {
                tool: format!("{}", qemu.display()),
                detail: format!("cannot start: {e}"),
            })?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| Error::Invalid("qemu stdout not piped".into()))?;
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        let c2 = console.clone();
        let echo = cfg.echo;
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(&buf[..n]);
                }
                if echo {
                    let mut so = std::io::stdout();
                    let _ = so.write_all(&buf[..n]);
                    let _ = so.flush();
                }
                lock(&c2.0).bytes.extend_from_slice(&buf[..n]);
                c2.1.notify_all();
            }
            lock(&c2.0).closed = true;
            c2.1.notify_all();
        });
        let stdin = child.stdin.take();
        Ok(Vm {
            child,
            stdin,
            console,
            reader: Some(reader),
            started: Instant::now(),
            status: None,
        })
    }

    /// The console transcript so far (lossy UTF-8, `\r` removed).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&lock(&self.console.0).bytes).replace('\r', "")
    }

    /// The console between byte offsets `from` and `to` (as returned by
    /// [`Vm::console_len`] and [`Vm::wait_for_from`]), cleaned like [`Vm::console`].
    pub fn console_range(&self, from: usize, to: usize) -> String {
        let g = lock(&self.console.0);
        let to = to.min(g.bytes.len());
        String::from_utf8_lossy(&g.bytes[from.min(to)..to]).replace('\r', "")
    }

    /// The last `n` lines of the console.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&self.console(), n)
    }

    /// Seconds since qemu started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the console contains `marker` (anywhere after byte
    /// `from`); returns the offset just past it. Fails on timeout or when
    /// qemu ends first.
    pub fn wait_for_from(&self, from: usize, marker: &str, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.console;
        let mut g = lock(m);
        loop {
            let start = from.min(g.bytes.len());
            if let Some(i) = find(&g.bytes[start..], marker.as_bytes()) {
                return Ok(start + i + marker.len());
            }
            let now = Instant::now();
            if g.closed || now >= deadline {
                let closed = g.closed;
                drop(g);
                return Err(Error::Timeout {
                    what: format!(
                        "'{marker}' on the console{}",
                        if closed { " (qemu ended first)" } else { "" }
                    ),
                    secs: timeout.as_secs(),
                    tail: self.tail(40),
                });
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// [`Vm::wait_for_from`] from the start of the console.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Result<usize> {
        self.wait_for_from(0, marker, timeout)
    }

    /// Current length of the console transcript in bytes.
    pub fn console_len(&self) -> usize {
        lock(&self.console.0).bytes.len()
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let s = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Invalid("qemu's stdin is closed".into()))?;
        s.write_all(text.as_bytes())
            .and_then(|_| s.flush())
            .map_err(|e| Error::Tool {
                tool: "write to the serial console".into(),
                detail: e.to_string(),
            })
    }

    /// Waits for qemu to exit; kills it after `timeout` and fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(Error::Timeout {
                    what: "qemu to exit".into(),
                    secs: timeout.as_secs(),
                    tail: self.tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(st) = self.status {
            return Ok(Some(st));
        }
        let st = self.child.try_wait().map_err(|e| Error::Tool {
            tool: "waitpid(qemu)".into(),
            detail: e.to_string(),
        })?;
        if let Some(st) = st {
            self.status = Some(st);
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
        Ok(st)
    }

    /// Kills qemu (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The timestamp of a console line: the kernel's `[    1.234567] ...` or
/// moonlit's `[    1.234] moonlit: ...`, in seconds of uptime.
pub fn line_stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (num, _) = rest.split_once(']')?;
    num.trim().parse().ok()
}

/// The stamp of the first console line containing `needle`: the `[...]`
/// nearest before the needle on that line (another program's output may
/// share the line, as the console is not line-buffered across writers).
pub fn stamp_of(console: &str, needle: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains(needle))?;
    let at = line.find(needle)?;
    let open = line[..at].rfind('[')?;
    line_stamp(&line[open..])
}

/// Whether the console shows a kernel panic or an oops.
pub fn shows_panic(console: &str) -> bool {
    console.contains("Kernel panic")
        || console.contains("---[ end trace")
        || console.contains("BUG: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_args_bind_forwards_to_loopback_and_use_tcg() {
        let mut c = VmConfig::new("/boot/vmlinuz-x");
        c.initrd = Some("/tmp/i.cpio".into());
        c.forwards.push((8080, 80));
        c.append = "moonlit.debug".into();
        let a = c.args();
        let s = a.join(" ");
        assert!(s.contains("-accel tcg"));
        assert!(s.contains("hostfwd=tcp:127.0.0.1:8080-:80"));
        assert!(s.contains("console=ttyS0 panic=-1 moonlit.debug"));
        assert!(!s.contains("kvm"));
    }

    #[test]
    fn stamps() {
        assert_eq!(line_stamp("[    1.234] moonlit: READY"), Some(1.234));
        assert_eq!(
            line_stamp("[    0.512345] Run /init as init process"),
            Some(0.512345)
        );
        assert_eq!(line_stamp("no stamp"), None);
        let c = "[ 0.1] a\n[ 0.5] Run /init as init process\n[ 1.5] moonlit: READY\n";
        assert_eq!(stamp_of(c, "READY"), Some(1.5));
        let shared = "\rcan't run 'x': No such file[    2.161284] busybox-init: READY";
        assert_eq!(stamp_of(shared, "busybox-init: READY"), Some(2.161284));
        assert!(!shows_panic(c));
        assert!(shows_panic(
            "[ 2.0] Kernel panic - not syncing: Attempted to kill init!"
        ));
    }
}
