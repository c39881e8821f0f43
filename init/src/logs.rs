//! Service output: one pipe per service, held by PID 1 for the service's
//! whole life (across restarts), read without blocking into a ring buffer of
//! recent lines, the console (prefixed with the service's name) and an
//! optional log file, rotated by size (`path` -> `path.1` -> ... -> `path.KEEP`)
//! between two whole lines, and optionally timestamped.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use moonlit_config::plan::LogRotate;
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
    rotate: Option<LogRotate>,
    timestamps: bool,
    /// A failure to write or rotate the file, for the loop to report once.
    file_error: Option<String>,
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
            rotate: None,
            timestamps: false,
            file_error: None,
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
            rotate: None,
            timestamps: false,
            file_error: None,
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

    /// Sets the log file's rotation and timestamps (applied from the next line on).
    pub fn set_file_options(&mut self, rotate: Option<LogRotate>, timestamps: bool) {
        self.rotate = rotate;
        self.timestamps = timestamps;
    }

    /// A write or rotation failure since the last call.
    pub fn take_file_error(&mut self) -> Option<String> {
        self.file_error.take()
    }

    /// Appends whole lines to the log file. With rotation, a line that would
    /// take the file past `max_size` goes to a fresh file: lines are never
    /// split across files, and every line read is written to one of them.
    fn write_file(&mut self, lines: &[String]) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let stamp = self.timestamps.then(timestamp_now);
        let prefix = stamp.as_ref().map_or(0, |s| s.len() + 1);
        // What the file holds: asked each time, so that a file truncated or
        // replaced by someone else is measured as it is.
        let mut size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut block = String::new();
        let mut rotating = self.rotate;
        for l in lines {
            let len = (prefix + l.len() + 1) as u64;
            if let Some(r) = rotating {
                if size + block.len() as u64 + len > r.max_size && size + block.len() as u64 > 0 {
                    if let Err(e) = Self::flush(self.file.as_mut(), &mut block) {
                        self.file_error = Some(e);
                    }
                    match self.rotate_now(r) {
                        Ok(()) => size = 0,
                        Err(e) => {
                            // Carry on in the old file rather than lose lines
                            // (and try again with the next batch, not each line).
                            self.file_error = Some(e);
                            rotating = None;
                            size = self
                                .file
                                .as_ref()
                                .and_then(|f| f.metadata().ok())
                                .map_or(0, |m| m.len());
                        }
                    }
                }
            }
            if let Some(s) = &stamp {
                block.push_str(s);
                block.push(' ');
            }
            block.push_str(l);
            block.push('\n');
        }
        if let Err(e) = Self::flush(self.file.as_mut(), &mut block) {
            self.file_error = Some(e);
        }
    }

    fn flush(f: Option<&mut File>, block: &mut String) -> Result<(), String> {
        let r = match f {
            Some(f) if !block.is_empty() => f.write_all(block.as_bytes()),
            _ => Ok(()),
        };
        block.clear();
        r.map_err(|e| format!("writing the log file: {e}"))
    }

    /// `path.(keep-1)` -> `path.keep`, ..., `path` -> `path.1` (each rename
    /// replaces its target, so the oldest goes), then a new `path`. Older
    /// numbers past `keep` (from a larger `keep` before) are removed.
    fn rotate_now(&mut self, r: LogRotate) -> Result<(), String> {
        let Some(path) = self.file_path.clone() else {
            return Ok(());
        };
        let numbered = |i: u32| format!("{path}.{i}");
        let mut extra = r.keep + 1;
        while extra <= moonlit_config::health_logs::MAX_KEEP + 1
            && std::fs::remove_file(numbered(extra)).is_ok()
        {
            extra += 1;
        }
        for i in (1..r.keep).rev() {
            match std::fs::rename(numbered(i), numbered(i + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("rotating {}: {e}", numbered(i))),
            }
        }
        std::fs::rename(&path, numbered(1)).map_err(|e| format!("rotating {path}: {e}"))?;
        // The old file stays open (and written to) until the new one is.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("log file {path}: {e}"))?;
        self.file = Some(f);
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
            self.write_file(&out);
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
        self.write_file(std::slice::from_ref(&l));
        self.ring.push(l.clone());
        Some(l)
    }
}

/// The time now as RFC 3339 UTC with milliseconds ("2026-12-06T12:24:27.123Z").
fn timestamp_now() -> String {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    format_utc(t.tv_sec, (t.tv_nsec / 1_000_000) as u32)
}

fn format_utc(secs: i64, ms: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01, by 400-year
/// eras of 146097 days (each era repeats the same calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

    #[test]
    fn utc_timestamps() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_700_000_000, "2023-11-14T22:13:20.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
            (-86_400, "1969-12-31T00:00:00.000Z"),
            (253_402_300_799, "9999-12-31T23:59:59.000Z"),
        ] {
            assert_eq!(format_utc(secs, 0), want);
        }
        assert_eq!(format_utc(1, 7), "1970-01-01T00:00:01.007Z");
        assert_eq!(timestamp_now().len(), 24);
    }

    #[test]
    fn rotation_keeps_whole_lines_in_order_and_bounded() {
        let dir = std::env::temp_dir().join(format!("moonlit-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.log");
        let p = path.to_str().expect("utf8");
        // A stale file past `keep` (from a larger keep before) goes.
        std::fs::write(format!("{p}.3"), "stale\n").expect("stale");
        let mut l = ServiceLog::new("t", 1 << 16).expect("pipe");
        l.set_file(Some(p)).expect("open");
        let max = 16 * 1024;
        l.set_file_options(
            Some(LogRotate {
                max_size: max,
                keep: 2,
            }),
            false,
        );
        let w = l.writer().expect("dup");
        let mut n = 0;
        for _ in 0..40 {
            let mut chunk = String::new();
            for _ in 0..100 {
                n += 1;
                chunk.push_str(&format!("line {n:06} {}\n", "x".repeat(n % 37)));
            }
            rustix::io::write(&w, chunk.as_bytes()).expect("write");
            l.read_lines(1 << 20);
        }
        assert_eq!(l.take_file_error(), None);
        assert!(!std::path::Path::new(&format!("{p}.3")).exists());
        let mut all = String::new();
        for f in [format!("{p}.2"), format!("{p}.1"), p.to_string()] {
            let s = std::fs::read_to_string(&f).expect("read");
            assert!(s.len() as u64 <= max, "{f}: {} bytes", s.len());
            assert!(
                s.len() as u64 > max / 2,
                "{f} is too small to have rotated at the limit"
            );
            assert!(s.ends_with('\n'));
            all.push_str(&s);
        }
        let nums: Vec<usize> = all
            .lines()
            .map(|x| x[5..11].parse().expect("number"))
            .collect();
        assert_eq!(nums.last(), Some(&n));
        for w in nums.windows(2) {
            assert_eq!(w[0] + 1, w[1], "a gap or a duplicate");
        }
        // With timestamps, each line starts with one.
        l.set_file_options(None, true);
        rustix::io::write(&w, b"stamped\n").expect("write");
        l.read_lines(1 << 20);
        let last = std::fs::read_to_string(&path).expect("read");
        let last = last.lines().last().expect("a line");
        assert_eq!(&last[24..], " stamped", "{last}");
        assert_eq!(&last[23..24], "Z");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
