//! Numbered, checksummed records for the power-loss tests
//! (`images/tests/vm_powerloss.rs`): the format the guest's writer
//! (`src/bin/powerloss-writer.rs`) appends, and the scan that both the guest
//! (after the kernel replayed the journal) and the host (after e2fsprogs
//! replayed it, or after a clean power-off) run over a file.
//!
//! A record is [`RECORD_LEN`] bytes of text:
//! `R<number, 10 digits> <payload, 78 chars> <crc32, 8 hex>\n`. The payload
//! is derived from the file's name and the number, and the CRC-32 (IEEE)
//! covers everything before it, so a record is checkable on its own
//! (checksum) and against what it must be (the exact bytes). 100 bytes do not
//! divide the 4096-byte block, so records straddle block boundaries.
//!
//! Owns: the record bytes, CRC-32, the scan of a file. Does not own: the
//! I/O (the writer) or what counts as enough records (the test).

/// Length of one record in bytes.
pub const RECORD_LEN: usize = 100;
const PAYLOAD_LEN: usize = 78;
/// Bytes covered by the checksum: `R`, the number, a space, the payload.
const BODY_LEN: usize = 1 + 10 + 1 + PAYLOAD_LEN;

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Whether `name` may name a record file (it goes on the kernel command
/// line and into a path): 1-32 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Record `n` (from 1) of the file named `name`.
pub fn record(name: &str, n: u64) -> Vec<u8> {
    let mut payload = String::with_capacity(PAYLOAD_LEN + 8);
    let mut i = 0u32;
    while payload.len() < PAYLOAD_LEN {
        payload.push_str(&format!(
            "{:08x}",
            crc32(format!("{name}:{n}:{i}").as_bytes())
        ));
        i += 1;
    }
    payload.truncate(PAYLOAD_LEN);
    let body = format!("R{n:010} {payload}");
    debug_assert_eq!(body.len(), BODY_LEN);
    let mut r = body.into_bytes();
    let crc = crc32(&r);
    r.extend_from_slice(format!(" {crc:08x}\n").as_bytes());
    debug_assert_eq!(r.len(), RECORD_LEN);
    r
}

/// What [`scan`] found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Complete, valid records from the start, in order (1..=records).
    pub records: u64,
    /// Bytes after them that are a correct prefix of the next record (a
    /// write that was not complete, or not yet written back, at the crash).
    pub tail: usize,
    /// The first thing that is wrong, if any: nothing after it was read.
    pub problem: Option<String>,
}

impl Scan {
    /// One line for logs: `records=N tail=B ok` or `... BAD: why`.
    pub fn summary(&self) -> String {
        match &self.problem {
            None => format!("records={} tail={} ok", self.records, self.tail),
            Some(p) => format!("records={} tail={} BAD: {p}", self.records, self.tail),
        }
    }
}

/// Parses the number of a record-sized chunk, if it looks like one.
fn number_of(chunk: &[u8]) -> Option<u64> {
    if chunk.first() != Some(&b'R') {
        return None;
    }
    std::str::from_utf8(chunk.get(1..11)?).ok()?.parse().ok()
}

fn checksum_ok(chunk: &[u8]) -> bool {
    let Some(hex) = chunk.get(BODY_LEN + 1..BODY_LEN + 9) else {
        return false;
    };
    let Ok(hex) = std::str::from_utf8(hex) else {
        return false;
    };
    u32::from_str_radix(hex, 16).ok() == Some(crc32(&chunk[..BODY_LEN]))
}

/// Scans the contents of the record file `name`: every complete record
/// must be exactly the next one (1, 2, 3, ...); the bytes after the last
/// complete record must be a prefix of the one after it.
pub fn scan(name: &str, data: &[u8]) -> Scan {
    let mut s = Scan {
        records: 0,
        tail: 0,
        problem: None,
    };
    let mut chunks = data.chunks(RECORD_LEN);
    for chunk in chunks.by_ref() {
        let n = s.records + 1;
        let want = record(name, n);
        let at = s.records as usize * RECORD_LEN;
        if chunk.len() < RECORD_LEN {
            if want.starts_with(chunk) {
                s.tail = chunk.len();
            } else if chunk.iter().all(|&b| b == 0) {
                s.problem = Some(format!(
                    "{} zero bytes at offset {at} where record {n} begins",
                    chunk.len()
                ));
            } else {
                s.problem = Some(format!(
                    "the {} bytes at offset {at} are not the start of record {n}",
                    chunk.len()
                ));
            }
            break;
        }
        if chunk == want.as_slice() {
            s.records = n;
            continue;
        }
        s.problem = Some(if chunk.iter().all(|&b| b == 0) {
            format!("zero-filled block at offset {at} where record {n} belongs")
        } else if !checksum_ok(chunk) {
            format!("corrupt record at offset {at} (checksum mismatch) where record {n} belongs")
        } else {
            match number_of(chunk) {
                Some(m) if m != n => {
                    format!("record {m} at offset {at} where record {n} belongs (out of order)")
                }
                _ => format!("record at offset {at} has a valid checksum but not the content of record {n} (another file's?)"),
            }
        });
        break;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, n: u64) -> Vec<u8> {
        (1..=n).flat_map(|i| record(name, i)).collect()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_have_the_documented_shape() {
        let r = record("k1", 7);
        assert_eq!(r.len(), RECORD_LEN);
        assert!(r.starts_with(b"R0000000007 "));
        assert_eq!(r.last(), Some(&b'\n'));
        assert!(checksum_ok(&r));
        assert_ne!(record("k1", 7), record("k2", 7));
        assert_ne!(record("k1", 7), record("k1", 8));
    }

    #[test]
    fn a_whole_file_and_a_torn_tail_scan_clean() {
        let mut f = file("a", 50);
        assert_eq!(scan("a", &f).summary(), "records=50 tail=0 ok");
        f.extend_from_slice(&record("a", 51)[..37]);
        let s = scan("a", &f);
        assert_eq!((s.records, s.tail, s.problem), (50, 37, None));
        assert_eq!(scan("a", b"").records, 0);
    }

    // Negative controls: each kind of damage is reported, never passed.
    #[test]
    fn damage_is_reported() {
        let good = file("a", 20);
        let mut flip = good.clone();
        flip[10 * RECORD_LEN + 40] ^= 1;
        let s = scan("a", &flip);
        assert_eq!(s.records, 10);
        assert!(s.problem.unwrap().contains("checksum mismatch"));

        let mut swapped = file("a", 10);
        swapped.extend(record("a", 12));
        swapped.extend(record("a", 11));
        let s = scan("a", &swapped);
        assert_eq!(s.records, 10);
        assert!(s.problem.unwrap().contains("out of order"));

        let mut zeros = file("a", 5);
        zeros.extend(vec![0u8; 300]);
        let s = scan("a", &zeros);
        assert_eq!(s.records, 5);
        assert!(s.problem.unwrap().contains("zero-filled"));

        let mut torn = file("a", 5);
        torn.extend_from_slice(&record("a", 7)[..30]);
        let s = scan("a", &torn);
        assert_eq!((s.records, s.tail), (5, 0));
        assert!(s.problem.unwrap().contains("not the start of record 6"));

        let other = file("b", 3);
        let s = scan("a", &other);
        assert_eq!(s.records, 0);
        assert!(s.problem.unwrap().contains("another file"));
    }

    #[test]
    fn names() {
        assert!(valid_name("kill-3_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(33)));
    }
}
