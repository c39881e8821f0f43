//! Service output: one pipe per service, held by PID 1 for the service's
//! whole life (across restarts), read without blocking into a ring buffer of
//! recent lines, the console (prefixed with the service's name) and an
//! optional log file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io::Errno;

/// Longest line kept whole; longer output is cut into pieces of this size.
const MAX_LINE: usize = 8192;

/// Recent lines, bounded in bytes.
#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    cap: usize,
    /// Lines ever pushed (the sequence number of the next one).
    pub total: u64,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            cap,
            ..Ring::default()
        }
    }
    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.bytes += line.len();
        self.lines.push_back(line);
        self.trim();
    }
    /// Every line held.
    pub fn all(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        self.trim();
    }
    fn trim(&mut self) {
        while self.bytes > self.cap {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.len(),
                None => break,
            }
        }
    }
}

/// One service's output channel.
pub struct ServiceLog {
    pub service: String,
    read: OwnedFd,
    write: OwnedFd,
    partial: Vec<u8>,
    pub ring: Ring,
    file: Option<File>,
    file_path: Option<String>,
    pub console: bool,
}

impl ServiceLog {
    /// A new pipe. The read end is non-blocking; the write end stays
    /// blocking (a service outrunning PID 1 waits, it loses nothing).
    pub fn new(service: &str, ring_cap: usize) -> std::io::Result<ServiceLog> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&read, OFlags::NONBLOCK)?;
        // A larger pipe absorbs bursts while the loop is busy elsewhere.
        let _ = rustix::pipe::fcntl_setpipe_size(&read, 1 << 20);
        Ok(ServiceLog {
            service: service.to_string(),
            read,
            write,
            partial: Vec::new(),
            ring: Ring::new(ring_cap),
            file: None,
            file_path: None,
            console: true,
        })
    }

    /// Takes over a pipe kept open across a re-exec, with its recent lines.
    pub fn adopt(
        service: &str,
        read: OwnedFd,
        write: OwnedFd,
        lines: Vec<String>,
        total: u64,
        cap: usize,
    ) -> ServiceLog {
        let mut ring = Ring::new(cap);
        for l in lines {
            ring.push(l);
        }
        ring.total = total;
        ServiceLog {
            service: service.to_string(),
            read,
            write,
            partial: Vec::new(),
            ring,
            file: None,
            file_path: None,
            console: true,
        }
    }

    /// Both ends of the pipe (to keep across a re-exec).
    pub fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.read.as_fd(), self.write.as_fd())
    }

    pub fn read_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// A descriptor for the child's stdout/stderr.
    pub fn writer(&self) -> std::io::Result<OwnedFd> {
        self.write.try_clone()
    }

    /// Sets (or clears) the log file; opened for appending on change.
    pub fn set_file(&mut self, path: Option<&str>) -> Result<(), String> {
        if self.file_path.as_deref() == path {
            return Ok(());
        }
        self.file = None;
        self.file_path = path.map(str::to_string);
        if let Some(p) = path {
            if let Some(parent) = std::path::Path::new(p).parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("log file {p}: {e}"))?;
            self.file = Some(f);
        }
        Ok(())
    }

    /// Reads what is there (at most `budget` bytes) and returns the
    /// complete lines, after storing them in the ring and the file.
    pub fn read_lines(&mut self, budget: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let mut total = 0;
        while total < budget {
            match rustix::io::read(&self.read, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.partial.extend_from_slice(&buf[..n]);
                    self.split(&mut out);
                }
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            if let Some(f) = &mut self.file {
                let mut block = String::with_capacity(out.iter().map(|l| l.len() + 1).sum());
                for l in &out {
                    block.push_str(l);
                    block.push('\n');
                }
                let _ = f.write_all(block.as_bytes());
            }
            for l in &out {
                self.ring.push(l.clone());
            }
        }
        out
    }

    fn split(&mut self, out: &mut Vec<String>) {
        let mut start = 0;
        while let Some(p) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line = &self.partial[start..start + p];
            out.push(String::from_utf8_lossy(line).into_owned());
            start += p + 1;
        }
        self.partial.drain(..start);
        while self.partial.len() >= MAX_LINE {
            let piece: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            out.push(String::from_utf8_lossy(&piece).into_owned());
        }
    }

    /// Flushes a final partial line (at shutdown).
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let l = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{l}");
        }
        self.ring.push(l.clone());
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_within_cap() {
        let mut r = Ring::new(10);
        for i in 0..20 {
            r.push(format!("l{i}"));
        }
        // 3 bytes a line, 10 bytes of room: the newest three.
        assert_eq!(r.tail(100), vec!["l17", "l18", "l19"]);
        assert_eq!(r.tail(2), vec!["l18", "l19"]);
        assert_eq!(r.total, 20);
    }

    #[test]
    fn pipe_lines_split_and_long_lines_cut() {
        let mut l = ServiceLog::new("t", 1 << 16).expect("pipe");
        let w = l.writer().expect("dup");
        rustix::io::write(&w, b"one\ntwo\npart").expect("write");
        assert_eq!(l.read_lines(1 << 20), vec!["one", "two"]);
        rustix::io::write(&w, b"ial\n").expect("write");
        assert_eq!(l.read_lines(1 << 20), vec!["partial"]);
        let long = vec![b'x'; MAX_LINE + 5];
        rustix::io::write(&w, &long).expect("write");
        let got = l.read_lines(1 << 20);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(l.finish().map(|s| s.len()), Some(5));
    }
}
