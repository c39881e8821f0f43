//! The console: where moonlit's own messages and service output are shown.
//!
//! Owns one descriptor (a dup of stdout, or /dev/console in system mode)
//! written without blocking: what the reader cannot take yet waits in a
//! bounded queue, flushed when the descriptor is writable; past the bound
//! the oldest lines are dropped and counted, so a stuck console never stalls
//! PID 1.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io::Errno;

const QUEUE_LIMIT: usize = 1 << 20;

pub struct Console {
    fd: OwnedFd,
    queue: VecDeque<u8>,
    pub dropped: u64,
    /// Whether the fd can be polled (pipes, ttys: yes; regular files: no).
    pub pollable: bool,
    /// Timestamps (seconds since boot) before each line.
    pub stamps: bool,
}

/// Seconds since boot, from CLOCK_BOOTTIME.
pub fn uptime() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

impl Console {
    /// A console writing to a duplicate of `fd`, made non-blocking.
    pub fn new(fd: OwnedFd) -> Console {
        if let Ok(fl) = rustix::fs::fcntl_getfl(&fd) {
            let _ = rustix::fs::fcntl_setfl(&fd, fl | OFlags::NONBLOCK);
        }
        Console {
            fd,
            queue: VecDeque::new(),
            dropped: 0,
            pollable: true,
            stamps: true,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Queues one line (a newline is added) and writes what it can now.
    pub fn line(&mut self, text: &str) {
        let mut buf = Vec::with_capacity(text.len() + 16);
        if self.stamps {
            buf.extend_from_slice(format!("[{:>9.3}] ", uptime()).as_bytes());
        }
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'\n');
        if self.queue.is_empty() {
            let n = self.write_some(&buf);
            if n == buf.len() {
                return;
            }
            buf.drain(..n);
        }
        if self.queue.len() + buf.len() > QUEUE_LIMIT {
            // Drop whole old lines until the new one fits.
            while self.queue.len() + buf.len() > QUEUE_LIMIT && !self.queue.is_empty() {
                match self.queue.iter().position(|b| *b == b'\n') {
                    Some(p) => {
                        self.queue.drain(..=p);
                    }
                    None => self.queue.clear(),
                }
                self.dropped += 1;
            }
        }
        self.queue.extend(buf);
    }

    fn write_some(&mut self, buf: &[u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::write(&self.fd, &buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break,
                // A gone reader (EPIPE, EIO on a hung-up tty): discard output.
                Err(_) => return buf.len(),
            }
        }
        done
    }

    /// Writes queued bytes; call when the fd is writable.
    pub fn flush(&mut self) {
        while !self.queue.is_empty() {
            let (a, _) = self.queue.as_slices();
            let chunk = a.to_vec();
            let n = self.write_some(&chunk);
            self.queue.drain(..n);
            if n < chunk.len() {
                break;
            }
        }
    }

    /// Writes everything, waiting for the reader as long as `budget_ms`
    /// (used at shutdown so the last lines are not lost).
    pub fn drain(&mut self, budget_ms: u64) {
        let start = std::time::Instant::now();
        while !self.queue.is_empty() && start.elapsed().as_millis() < u128::from(budget_ms) {
            self.flush();
            if !self.queue.is_empty() {
                let mut fds = [rustix::event::PollFd::new(
                    &self.fd,
                    rustix::event::PollFlags::OUT,
                )];
                let ts = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
        }
    }

    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }
}
