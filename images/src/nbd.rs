//! A disk with a volatile write cache, for power-loss tests: a small NBD
//! server (fixed newstyle handshake, simple replies; READ, WRITE with FUA,
//! FLUSH, DISC) over a raw image file, which qemu attaches as its virtio
//! disk (`-drive file=nbd+unix:///?socket=PATH,...`).
//!
//! A write without FUA only lands in the cache (512-byte sectors in memory;
//! reads see it). FLUSH writes the whole cache to the image; a FUA write goes
//! to the image at once. The power is cut when qemu's connection ends
//! without a DISC (qemu was killed) or at once when [`CacheDisk::cut`] is
//! called (after the guest printed its power-down: what qemu sends after
//! that, such as its own flush at exit, is answered but not stored). At the
//! cut, each
//! cached write request reaches the image or not, independently, by a
//! seeded coin: as a disk's cache that wrote back some blocks, in any order,
//! before the power went. So after a cut the image holds exactly what was
//! flushed (or FUA-written), plus any subset of the rest.
//!
//! Owns: the socket, the protocol, the cache, the cut. Runs in a thread of
//! the host-side test (never in PID 1). Does not own: qemu's command line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::{io_err, Error, Result};

const SECTOR: u64 = 512;
const NBDMAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const INFO_EXPORT: u16 = 0;
const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_SEND_FLUSH: u16 = 4;
const TFLAG_SEND_FUA: u16 = 8;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_FLAG_FUA: u16 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// What the disk saw, returned by [`CacheDisk::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write requests (with FUA or not).
    pub writes: u64,
    /// Of those, with FUA.
    pub fua_writes: u64,
    /// FLUSH requests stored.
    pub flushes: u64,
    /// Requests answered after the cut and not stored.
    pub after_cut: u64,
    /// Whether the power was cut (else qemu disconnected cleanly).
    pub cut: bool,
    /// Cached write requests at the cut that reached the image.
    pub cut_applied: u64,
    /// Cached write requests at the cut that were lost.
    pub cut_dropped: u64,
}

/// A running NBD server over one image; see the module docs.
pub struct CacheDisk {
    socket: PathBuf,
    state: Arc<Mutex<Server>>,
    thread: Option<JoinHandle<Result<Stats>>>,
}

impl CacheDisk {
    /// Listens on `socket` (replaced if it exists) for one client serving
    /// `image`; `seed` decides which cached writes survive a cut.
    pub fn serve(image: &Path, socket: &Path, seed: u64) -> Result<CacheDisk> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .map_err(io_err("open", image))?;
        let size = file.metadata().map_err(io_err("stat", image))?.len();
        if size % SECTOR != 0 {
            return Err(Error::Invalid(format!(
                "{}: size {size} is not a multiple of {SECTOR}",
                image.display()
            )));
        }
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).map_err(io_err("bind", socket))?;
        let state = Arc::new(Mutex::new(Server {
            file,
            cache: BTreeMap::new(),
            next_id: 0,
            stats: Stats::default(),
            rng: seed,
        }));
        let s2 = state.clone();
        let thread = std::thread::spawn(move || {
            let (conn, _) = listener.accept().map_err(|e| Error::Tool {
                tool: "nbd accept".into(),
                detail: e.to_string(),
            })?;
            run(&s2, size, conn)
        });
        Ok(CacheDisk {
            socket: socket.to_path_buf(),
            state,
            thread: Some(thread),
        })
    }

    /// The socket path (for qemu's `-drive file=nbd+unix:///?socket=...`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The qemu `-drive` argument for this disk as virtio with a
    /// write-back cache (so the guest sends flushes).
    pub fn drive_arg(&self) -> String {
        format!(
            "file=nbd+unix:///?socket={},format=raw,if=virtio,cache=writeback",
            self.socket.display()
        )
    }

    /// Cuts the power now (the cache loses its share at once); later
    /// requests are answered but not stored.
    pub fn cut(&self) -> Result<()> {
        lock(&self.state).power_cut()
    }

    /// Waits until the client is gone (call after qemu ended) and returns
    /// the figures; the image then holds what survived.
    pub fn finish(mut self) -> Result<Stats> {
        let t = self
            .thread
            .take()
            .ok_or_else(|| Error::Invalid("nbd server already finished".into()))?;
        let r = t.join().map_err(|_| Error::Tool {
            tool: "nbd server".into(),
            detail: "the server thread panicked".into(),
        })?;
        let _ = std::fs::remove_file(&self.socket);
        r
    }
}

struct Server {
    file: File,
    /// sector -> (write request id, data): the volatile cache.
    cache: BTreeMap<u64, (u64, Vec<u8>)>,
    next_id: u64,
    stats: Stats,
    rng: u64,
}

fn lock(m: &Mutex<Server>) -> MutexGuard<'_, Server> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn proto(detail: impl Into<String>) -> Error {
    Error::Tool {
        tool: "nbd server".into(),
        detail: detail.into(),
    }
}

fn read_exact(c: &mut UnixStream, buf: &mut [u8]) -> std::io::Result<()> {
    c.read_exact(buf)
}

fn read_u32(c: &mut UnixStream) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    read_exact(c, &mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn opt_reply(c: &mut UnixStream, opt: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    let mut m = Vec::with_capacity(20 + data.len());
    m.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    c.write_all(&m)
}

fn tflags() -> u16 {
    TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA
}

fn run(state: &Mutex<Server>, size: u64, mut c: UnixStream) -> Result<Stats> {
    let clean = match handshake(&mut c, size) {
        Ok(true) => transmit(state, size, &mut c),
        Ok(false) => Ok(true),
        Err(e) => Err(e),
    };
    let mut s = lock(state);
    // A clean DISC keeps the cache's content as a flush would (qemu
    // flushes before it disconnects); anything else is a power cut.
    match clean {
        Ok(true) if !s.stats.cut => s
            .flush()
            .map_err(|e| proto(format!("write the image: {e}")))?,
        _ => s.power_cut()?,
    }
    Ok(s.stats.clone())
}

/// Negotiation; Ok(true) when transmission begins.
fn handshake(c: &mut UnixStream, size: u64) -> Result<bool> {
    let io = |e: std::io::Error| proto(format!("handshake: {e}"));
    let mut hello = Vec::new();
    hello.extend_from_slice(NBDMAGIC);
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    c.write_all(&hello).map_err(io)?;
    let client_flags = read_u32(c).map_err(io)?;
    let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
    loop {
        let mut h = [0u8; 16];
        read_exact(c, &mut h).map_err(io)?;
        let magic = u64::from_be_bytes(h[0..8].try_into().unwrap_or_default());
        if magic != IHAVEOPT {
            return Err(proto(format!("bad option magic {magic:#x}")));
        }
        let opt = u32::from_be_bytes(h[8..12].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(h[12..16].try_into().unwrap_or_default());
        if len > 65536 {
            return Err(proto(format!("option {opt} of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        read_exact(c, &mut data).map_err(io)?;
        match opt {
            OPT_EXPORT_NAME => {
                let mut m = Vec::new();
                m.extend_from_slice(&size.to_be_bytes());
                m.extend_from_slice(&tflags().to_be_bytes());
                if !no_zeroes {
                    m.extend_from_slice(&[0u8; 124]);
                }
                c.write_all(&m).map_err(io)?;
                return Ok(true);
            }
            OPT_GO | OPT_INFO => {
                let mut info = Vec::new();
                info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&tflags().to_be_bytes());
                opt_reply(c, opt, REP_INFO, &info).map_err(io)?;
                opt_reply(c, opt, REP_ACK, &[]).map_err(io)?;
                if opt == OPT_GO {
                    return Ok(true);
                }
            }
            OPT_ABORT => {
                let _ = opt_reply(c, opt, REP_ACK, &[]);
                return Ok(false);
            }
            _ => opt_reply(c, opt, REP_ERR_UNSUP, &[]).map_err(io)?,
        }
    }
}

/// Serves requests; Ok(true) after a DISC, Ok(false) when the connection
/// just ended (qemu died).
fn transmit(state: &Mutex<Server>, size: u64, c: &mut UnixStream) -> Result<bool> {
    loop {
        let mut h = [0u8; 28];
        if read_exact(c, &mut h).is_err() {
            return Ok(false);
        }
        let magic = u32::from_be_bytes(h[0..4].try_into().unwrap_or_default());
        if magic != REQUEST_MAGIC {
            return Err(proto(format!("bad request magic {magic:#x}")));
        }
        let flags = u16::from_be_bytes([h[4], h[5]]);
        let kind = u16::from_be_bytes([h[6], h[7]]);
        let cookie: [u8; 8] = h[8..16].try_into().unwrap_or_default();
        let offset = u64::from_be_bytes(h[16..24].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(h[24..28].try_into().unwrap_or_default());
        let in_range = offset % SECTOR == 0
            && u64::from(len) % SECTOR == 0
            && offset
                .checked_add(u64::from(len))
                .is_some_and(|e| e <= size)
            && len <= 32 << 20;
        let mut payload = Vec::new();
        if kind == CMD_WRITE {
            payload = vec![0u8; len as usize];
            if len > 32 << 20 || read_exact(c, &mut payload).is_err() {
                return Ok(false);
            }
        }
        let mut s = lock(state);
        let cut = s.stats.cut;
        let (err, data) = match kind {
            CMD_DISC => return Ok(true),
            _ if !in_range && kind != CMD_FLUSH => (EINVAL, Vec::new()),
            CMD_READ => match s.read(offset, len as usize) {
                Ok(d) => (0, d),
                Err(_) => (EIO, Vec::new()),
            },
            CMD_WRITE | CMD_FLUSH if cut => {
                s.stats.after_cut += 1;
                (0, Vec::new())
            }
            CMD_WRITE => {
                let fua = flags & CMD_FLAG_FUA != 0;
                match s.write(offset, &payload, fua) {
                    Ok(()) => (0, Vec::new()),
                    Err(_) => (EIO, Vec::new()),
                }
            }
            CMD_FLUSH => match s.flush() {
                Ok(()) => {
                    s.stats.flushes += 1;
                    (0, Vec::new())
                }
                Err(_) => (EIO, Vec::new()),
            },
            _ => (EINVAL, Vec::new()),
        };
        drop(s);
        let mut r = Vec::with_capacity(16 + data.len());
        r.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        r.extend_from_slice(&err.to_be_bytes());
        r.extend_from_slice(&cookie);
        // A read's data follows only when it succeeded (as qemu-nbd does
        // with simple replies, and as qemu's client expects).
        if kind == CMD_READ && err == 0 {
            r.extend_from_slice(&data);
        }
        if c.write_all(&r).is_err() {
            return Ok(false);
        }
    }
}

impl Server {
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut d = vec![0u8; len];
        self.file.read_exact_at(&mut d, offset)?;
        let first = offset / SECTOR;
        let last = (offset + len as u64) / SECTOR;
        for (s, (_, data)) in self.cache.range(first..last) {
            let at = ((s - first) * SECTOR) as usize;
            d[at..at + SECTOR as usize].copy_from_slice(data);
        }
        Ok(d)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> std::io::Result<()> {
        self.stats.writes += 1;
        let first = offset / SECTOR;
        if fua {
            self.stats.fua_writes += 1;
            self.file.write_all_at(data, offset)?;
            for i in 0..data.len() as u64 / SECTOR {
                self.cache.remove(&(first + i));
            }
            return Ok(());
        }
        let id = self.next_id;
        self.next_id += 1;
        for (i, chunk) in data.chunks(SECTOR as usize).enumerate() {
            self.cache.insert(first + i as u64, (id, chunk.to_vec()));
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for (s, (_, data)) in std::mem::take(&mut self.cache) {
            self.file.write_all_at(&data, s * SECTOR)?;
        }
        Ok(())
    }

    fn coin(&mut self) -> bool {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & 1 == 1
    }

    /// The cut (once): a seeded coin for each cached write request.
    fn power_cut(&mut self) -> Result<()> {
        if self.stats.cut {
            return Ok(());
        }
        self.stats.cut = true;
        let ids: BTreeSet<u64> = self.cache.values().map(|(id, _)| *id).collect();
        let mut keep = BTreeSet::new();
        for id in ids {
            if self.coin() {
                keep.insert(id);
                self.stats.cut_applied += 1;
            } else {
                self.stats.cut_dropped += 1;
            }
        }
        for (s, (id, data)) in std::mem::take(&mut self.cache) {
            if keep.contains(&id) {
                self.file
                    .write_all_at(&data, s * SECTOR)
                    .map_err(|e| proto(format!("write the image at the cut: {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal client: the handshake with NBD_OPT_GO, then requests.
    struct Client(UnixStream);

    impl Client {
        fn connect(path: &Path) -> Client {
            let mut c = None;
            for _ in 0..100 {
                if let Ok(s) = UnixStream::connect(path) {
                    c = Some(s);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let mut s = c.expect("connect to the nbd server");
            let mut hello = [0u8; 18];
            s.read_exact(&mut hello).unwrap();
            assert_eq!(&hello[..8], NBDMAGIC);
            s.write_all(&u32::from(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())
                .unwrap();
            // An unknown option first (structured replies): refused.
            let mut o = Vec::new();
            o.extend_from_slice(&IHAVEOPT.to_be_bytes());
            o.extend_from_slice(&8u32.to_be_bytes());
            o.extend_from_slice(&0u32.to_be_bytes());
            s.write_all(&o).unwrap();
            let mut r = [0u8; 20];
            s.read_exact(&mut r).unwrap();
            assert_eq!(
                u32::from_be_bytes(r[12..16].try_into().unwrap()),
                REP_ERR_UNSUP
            );
            let mut o = Vec::new();
            o.extend_from_slice(&IHAVEOPT.to_be_bytes());
            o.extend_from_slice(&OPT_GO.to_be_bytes());
            o.extend_from_slice(&6u32.to_be_bytes());
            o.extend_from_slice(&0u32.to_be_bytes()); // empty name
            o.extend_from_slice(&0u16.to_be_bytes()); // no info requests
            s.write_all(&o).unwrap();
            s.read_exact(&mut r).unwrap();
            assert_eq!(u32::from_be_bytes(r[12..16].try_into().unwrap()), REP_INFO);
            let mut info = [0u8; 12];
            s.read_exact(&mut info).unwrap();
            s.read_exact(&mut r).unwrap();
            assert_eq!(u32::from_be_bytes(r[12..16].try_into().unwrap()), REP_ACK);
            Client(s)
        }

        fn req(
            &mut self,
            kind: u16,
            flags: u16,
            offset: u64,
            data: &[u8],
            len: u32,
        ) -> (u32, Vec<u8>) {
            let mut m = Vec::new();
            m.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
            m.extend_from_slice(&flags.to_be_bytes());
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&7u64.to_be_bytes());
            m.extend_from_slice(&offset.to_be_bytes());
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(data);
            self.0.write_all(&m).unwrap();
            if kind == CMD_DISC {
                return (0, Vec::new());
            }
            let mut r = [0u8; 16];
            self.0.read_exact(&mut r).unwrap();
            assert_eq!(
                u32::from_be_bytes(r[0..4].try_into().unwrap()),
                SIMPLE_REPLY_MAGIC
            );
            let err = u32::from_be_bytes(r[4..8].try_into().unwrap());
            let mut d = Vec::new();
            if kind == CMD_READ && err == 0 {
                d = vec![0u8; len as usize];
                self.0.read_exact(&mut d).unwrap();
            }
            (err, d)
        }

        fn write(&mut self, offset: u64, data: &[u8], fua: bool) {
            let f = if fua { CMD_FLAG_FUA } else { 0 };
            assert_eq!(self.req(CMD_WRITE, f, offset, data, data.len() as u32).0, 0);
        }

        fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
            let (e, d) = self.req(CMD_READ, 0, offset, &[], len);
            assert_eq!(e, 0);
            d
        }
    }

    fn setup(name: &str) -> (PathBuf, PathBuf) {
        let d = std::env::temp_dir().join(format!("moonlit-nbd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let img = d.join("disk.img");
        std::fs::write(&img, vec![0u8; 64 * 1024]).unwrap();
        (img, d.join("sock"))
    }

    fn sector(b: u8) -> Vec<u8> {
        vec![b; SECTOR as usize]
    }

    #[test]
    fn flushed_and_fua_writes_survive_a_cut_unflushed_ones_only_by_chance() {
        let (img, sock) = setup("cut");
        let disk = CacheDisk::serve(&img, &sock, 1).unwrap();
        let mut c = Client::connect(&sock);
        c.write(0, &sector(1), false);
        assert_eq!(c.req(CMD_FLUSH, 0, 0, &[], 0).0, 0);
        c.write(SECTOR, &sector(2), true);
        // 64 unflushed one-sector writes: the reads see them all.
        for i in 0..64u64 {
            c.write((8 + i) * SECTOR, &sector(3), false);
        }
        let all = c.read(0, 72 * SECTOR as u32);
        assert_eq!(&all[..512], &sector(1)[..]);
        assert_eq!(&all[512..1024], &sector(2)[..]);
        assert!(all[8 * 512..].iter().all(|&b| b == 3));
        // Out of range and unaligned requests are refused.
        assert_eq!(c.req(CMD_READ, 0, 1 << 30, &[], 512).0, EINVAL);
        assert_eq!(c.req(CMD_READ, 0, 3, &[], 512).0, EINVAL);
        drop(c); // qemu killed: the power is cut.
        let st = disk.finish().unwrap();
        assert!(st.cut);
        assert_eq!((st.writes, st.fua_writes, st.flushes), (66, 1, 1));
        assert_eq!(st.cut_applied + st.cut_dropped, 64);
        // A fair coin over 64 writes: both outcomes happen (seed 1).
        assert!(st.cut_applied > 0 && st.cut_dropped > 0, "{st:?}");
        let on_disk = std::fs::read(&img).unwrap();
        assert_eq!(&on_disk[..512], &sector(1)[..]);
        assert_eq!(&on_disk[512..1024], &sector(2)[..]);
        let survived = (0..64).filter(|i| on_disk[(8 + i) * 512] == 3).count() as u64;
        assert_eq!(survived, st.cut_applied);
    }

    #[test]
    fn a_cut_ignores_later_flushes_and_a_clean_disconnect_keeps_everything() {
        let (img, sock) = setup("late");
        let disk = CacheDisk::serve(&img, &sock, 2).unwrap();
        let mut c = Client::connect(&sock);
        for i in 0..32u64 {
            c.write(i * SECTOR, &sector(9), false);
        }
        disk.cut().unwrap();
        assert_eq!(c.req(CMD_FLUSH, 0, 0, &[], 0).0, 0);
        c.req(CMD_DISC, 0, 0, &[], 0);
        let st = disk.finish().unwrap();
        assert!(st.cut);
        assert_eq!((st.flushes, st.after_cut), (0, 1));
        assert!(st.cut_dropped > 0, "{st:?}");

        let (img, sock) = setup("clean");
        let disk = CacheDisk::serve(&img, &sock, 3).unwrap();
        let mut c = Client::connect(&sock);
        c.write(0, &sector(5), false);
        c.req(CMD_DISC, 0, 0, &[], 0);
        let st = disk.finish().unwrap();
        assert!(!st.cut);
        assert_eq!(&std::fs::read(&img).unwrap()[..512], &sector(5)[..]);
    }
}
