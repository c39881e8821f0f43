//! Fuzzing what this crate reads from outside: rtnetlink reply datagrams
//! (link/address/route dumps, ACKs, errors with extended ACKs, DONE) into
//! [`take_datagram`](crate::socket::take_datagram) and the decoders behind
//! it, multicast event datagrams into `events::decode_datagram`, attribute
//! areas into `parse_attrs`, and DHCP server messages into
//! `dhcp::wire::decode` (plus ARP replies into `Arp::decode`).
//!
//! Seeds: the datagrams of `tests/corpus/fuzz_netlink/*.hex` (one hex
//! datagram a line, captured from a kernel), this kernel's own dumps taken
//! at test time, and hand-built messages. Every input must decode or give
//! an error, never panic or loop (each batch runs in a worker thread with
//! a bound on its progress).
//!
//! Short pass: 20,000 datagrams and 20,000 DHCP messages.
//! `MOONLIT_FUZZ_SCALE=N` multiplies; `MOONLIT_FUZZ_SEED` replays.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::Rtm;

use crate::consts::{NLMSG_DONE, NLMSG_OVERRUN};
use crate::dhcp::wire;
use crate::socket::{parse_attrs, take_datagram, Attrs, Handle, Reply};

const BASE: u64 = 20_000;
const SEQ: u32 = 77;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn seed() -> u64 {
    env_u64("MOONLIT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    })
}

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(payload);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

/// Messages built by hand: a link with its kind and stats, addresses of
/// both families, a route, an error with an extended ACK, an ACK, DONE.
fn hand_built() -> Vec<Vec<u8>> {
    let multi = 2u16; // NLM_F_MULTI
    let mut link = vec![0u8, 0, 1, 0];
    link.extend_from_slice(&2i32.to_ne_bytes());
    link.extend_from_slice(&0x10043u32.to_ne_bytes());
    link.extend_from_slice(&0u32.to_ne_bytes());
    link.extend(attr(3, b"eth0\0"));
    link.extend(attr(4, &1500u32.to_ne_bytes()));
    link.extend(attr(1, &[2, 0, 0, 0, 0, 1]));
    link.extend(attr(18, &attr(1, b"veth\0")));
    link.extend(attr(23, &[7u8; 64 + 8]));
    let mut addr4 = vec![2u8, 24, 0, 0];
    addr4.extend_from_slice(&2u32.to_ne_bytes());
    addr4.extend(attr(1, &[10, 0, 0, 1]));
    addr4.extend(attr(2, &[10, 0, 0, 1]));
    addr4.extend(attr(8, &0x80u32.to_ne_bytes()));
    let mut addr6 = vec![10u8, 64, 0, 0];
    addr6.extend_from_slice(&2u32.to_ne_bytes());
    addr6.extend(attr(
        1,
        &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ));
    let mut route = vec![2u8, 24, 0, 0, 254, 4, 0, 1];
    route.extend_from_slice(&0u32.to_ne_bytes());
    route.extend(attr(1, &[10, 1, 0, 0]));
    route.extend(attr(5, &[10, 0, 0, 254]));
    route.extend(attr(4, &2u32.to_ne_bytes()));
    route.extend(attr(6, &100u32.to_ne_bytes()));
    let mut err = (-17i32).to_ne_bytes().to_vec();
    err.extend(nlmsg(16, 5, SEQ, &[0u8; 16])[..16].iter());
    err.extend(attr(1, b"File exists\0"));
    let ack = [0u8; 4]
        .iter()
        .copied()
        .chain(nlmsg(16, 5, SEQ, &[]))
        .collect::<Vec<u8>>();
    let done = 0u32.to_ne_bytes();
    let mut dump = Vec::new();
    dump.extend(nlmsg(u16::from(Rtm::Newlink), multi, SEQ, &link));
    dump.extend(nlmsg(u16::from(Rtm::Newaddr), multi, SEQ, &addr4));
    dump.extend(nlmsg(u16::from(Rtm::Newaddr), multi, SEQ, &addr6));
    dump.extend(nlmsg(u16::from(Rtm::Newroute), multi, SEQ, &route));
    dump.extend(nlmsg(NLMSG_DONE, multi, SEQ, &done));
    vec![
        dump,
        nlmsg(2, 0x100, SEQ, &err),
        nlmsg(2, 0, SEQ, &ack),
        nlmsg(u16::from(Rtm::Newlink), 0, SEQ + 1, &link),
        nlmsg(NLMSG_OVERRUN, 0, 0, &[]),
    ]
}

/// This kernel's own link, address and route dumps, as datagrams.
fn live_dumps() -> Vec<Vec<u8>> {
    let Ok(mut h) = Handle::new() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut put = |rs: Vec<Reply>| {
        let mut d = Vec::new();
        for r in rs {
            d.extend(nlmsg(r.ty, 2, SEQ, &r.payload));
        }
        d.extend(nlmsg(NLMSG_DONE, 2, SEQ, &0u32.to_ne_bytes()));
        out.push(d);
    };
    let a = Attrs::new();
    if let Ok(m) = crate::link::ifinfomsg(0, 0, 0, &a) {
        put(h.dump(Rtm::Getlink, m, "fuzz seed").unwrap_or_default());
    }
    if let Ok(m) = crate::addr::ifaddrmsg(0, 0, 0, 0, &a) {
        put(h.dump(Rtm::Getaddr, m, "fuzz seed").unwrap_or_default());
    }
    let mut probe = crate::route::Route::new(0, None);
    probe.table = 0;
    probe.scope = Some(0);
    if let Ok(m) = crate::route::rtmsg(&probe, true) {
        put(h.dump(Rtm::Getroute, m, "fuzz seed").unwrap_or_default());
    }
    out
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fuzz_netlink");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(&f).expect("corpus").lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                (0..line.len() / 2)
                    .map(|i| u8::from_str_radix(&line[i * 2..i * 2 + 2], 16).expect("hex"))
                    .collect(),
            );
        }
    }
    out
}

fn mutate(rng: &mut fastrand::Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.usize(1..6) {
        if b.is_empty() {
            b.push(rng.u8(..));
            continue;
        }
        let i = rng.usize(0..b.len());
        match rng.u8(0..9) {
            0 => b[i] ^= 1 << rng.u8(0..8),
            1 => b[i] = rng.u8(..),
            2 => {
                b.remove(i);
            }
            3 => b.truncate(i),
            // Length fields: a u16/u32 at an aligned offset set to an edge.
            4 | 5 => {
                let at = i & !3;
                let v: u32 =
                    [0, 1, 3, 4, 15, 16, 17, 0xffff, 0xffff_ffff, rng.u32(..)][rng.usize(0..10)];
                let bytes = v.to_ne_bytes();
                let w = if rng.bool() { 2 } else { 4 };
                for (k, byte) in bytes.iter().take(w).enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            6 => {
                let j = rng.usize(i..b.len());
                let chunk = b[i..j].to_vec();
                b.splice(i..i, chunk);
            }
            7 => b
                .splice(i..i, (0..rng.usize(1..16)).map(|_| rng.u8(..)))
                .for_each(drop),
            _ => b.extend((0..rng.usize(0..64)).map(|_| rng.u8(..))),
        }
    }
    b
}

/// Everything done with one reply datagram.
fn feed_rtnetlink(b: &[u8]) {
    let mut out = Vec::new();
    let mut intr = false;
    let _ = take_datagram(b, SEQ, &mut out, &mut intr, "fuzz", &"datagram");
    for r in &out {
        match Rtm::from(r.ty) {
            Rtm::Newlink | Rtm::Dellink => {
                let _ = crate::link::decode_link(r);
            }
            Rtm::Newaddr | Rtm::Deladdr => {
                let _ = crate::addr::decode_addr(r);
            }
            Rtm::Newroute | Rtm::Delroute => {
                let _ = crate::route::decode_route(r);
            }
            _ => {}
        }
        // Every decoder on every payload, whatever its type says.
        let _ = crate::link::decode_link(r);
        let _ = crate::addr::decode_addr(r);
        let _ = crate::route::decode_route(r);
        let _ = parse_attrs(&r.payload);
    }
    let mut ev = Vec::new();
    let _ = crate::events::decode_datagram(b, &mut ev);
    let _ = parse_attrs(b);
}

fn dhcp_seeds() -> Vec<Vec<u8>> {
    // A server's ACK: BOOTP header, magic, options.
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p[16..20].copy_from_slice(&[10, 0, 2, 15]);
    p[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[99, 130, 83, 99]);
    let opts: &[&[u8]] = &[
        &[53, 1, 5],
        &[54, 4, 10, 0, 2, 2],
        &[1, 4, 255, 255, 255, 0],
        &[3, 4, 10, 0, 2, 2],
        &[6, 8, 10, 0, 2, 3, 8, 8, 8, 8],
        &[15, 7, b'e', b'x', b'.', b'o', b'r', b'g', 0],
        &[12, 3, b'v', b'm', b'1'],
        &[119, 9, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0],
        &[26, 2, 5, 220],
        &[51, 4, 0, 1, 81, 128],
        &[58, 4, 0, 0, 168, 192],
        &[59, 4, 0, 1, 39, 80],
        &[121, 13, 24, 10, 1, 0, 10, 0, 2, 2, 0, 10, 0, 2, 2],
        &[56, 2, b'n', b'o'],
        &[255],
    ];
    for o in opts {
        p.extend_from_slice(o);
    }
    let mut nak = p.clone();
    nak[240 + 2] = 6;
    // RFC 3396: a long option split over two instances; compression
    // pointers in the search list.
    let mut split = p[..240].to_vec();
    split.extend_from_slice(&[53, 1, 2, 119, 3, 3, b'f', b'o', 119, 3, b'o', 0, 0xc0, 255]);
    vec![p, nak, split]
}

fn feed_dhcp(b: &[u8]) {
    if let Ok(r) = wire::decode(b) {
        let _ = r.subnet_mask.map(wire::mask_prefix);
    }
    let _ = crate::dhcp::arp::Arp::decode(b);
}

/// Runs `cases` inputs through `feed` in a worker thread; the main thread
/// sees its progress and fails on a panic or a stall (with the input).
fn run(name: &str, seeds: Vec<Vec<u8>>, cases: u64, seed: u64, feed: fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let current = Arc::new(Mutex::new(Vec::new()));
    let cur = current.clone();
    let (tx, rx) = mpsc::channel::<u64>();
    let worker = std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        for s in &seeds {
            *cur.lock().expect("lock") = s.clone();
            feed(s);
        }
        for i in 0..cases {
            let b = match rng.u8(0..20) {
                0 => (0..rng.usize(0..512)).map(|_| rng.u8(..)).collect(),
                _ => {
                    let s = seeds[rng.usize(0..seeds.len())].clone();
                    mutate(&mut rng, s)
                }
            };
            *cur.lock().expect("lock") = b.clone();
            feed(&b);
            if i % 1000 == 0 && tx.send(i).is_err() {
                return;
            }
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let b = current.lock().map(|b| b.clone()).unwrap_or_default();
                panic!(
                    "{name} (seed {seed}): no progress for 60 s on input {}",
                    hex(&b)
                );
            }
        }
    }
    if worker.join().is_err() {
        let b = current
            .lock()
            .map(|b| b.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        panic!("{name} (seed {seed}): panic on input {}", hex(&b));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn rtnetlink_replies_decode_or_fail_cleanly() {
    let seed = seed();
    let cases = BASE * env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1);
    let mut seeds = corpus();
    let from_corpus = seeds.len();
    seeds.extend(hand_built());
    let live = live_dumps();
    assert!(!live.is_empty(), "no rtnetlink dump from this kernel");
    // `MOONLIT_FUZZ_WRITE_CORPUS=FILE` keeps this kernel's dumps as seeds
    // (how tests/corpus/fuzz_netlink/kernel-dumps.hex was made, in a fresh
    // network namespace: `unshare -n`).
    if let Some(f) = std::env::var_os("MOONLIT_FUZZ_WRITE_CORPUS") {
        let text: String = live.iter().map(|d| hex(d) + "\n").collect();
        std::fs::write(
            f,
            format!("# link, address and route dumps of a fresh network namespace\n{text}"),
        )
        .expect("write corpus");
    }
    seeds.extend(live);
    eprintln!(
        "fuzz_netlink: MOONLIT_FUZZ_SEED={seed}, {cases} datagrams from {} seeds ({from_corpus} from the corpus)",
        seeds.len()
    );
    // The seeds themselves decode: a dump ends and gives its messages.
    for s in hand_built().iter().take(1) {
        let mut out = Vec::new();
        let mut intr = false;
        assert_eq!(
            take_datagram(s, SEQ, &mut out, &mut intr, "seed", &"seed").ok(),
            Some(true)
        );
        assert_eq!(out.len(), 4);
        let l = crate::link::decode_link(&out[0]).expect("link");
        assert_eq!(
            (l.name.as_str(), l.mtu, l.kind.as_deref()),
            ("eth0", 1500, Some("veth"))
        );
        assert!(crate::route::decode_route(&out[3])
            .expect("route")
            .is_some());
    }
    run("rtnetlink", seeds, cases, seed, feed_rtnetlink);
    eprintln!("fuzz_netlink: {cases} datagrams, 0 panics, 0 stalls");
}

#[test]
fn dhcp_messages_decode_or_fail_cleanly() {
    let seed = seed();
    let cases = BASE * env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1);
    let seeds = dhcp_seeds();
    let r = wire::decode(&seeds[0]).expect("the ACK seed decodes");
    assert_eq!(r.lease_secs, Some(86400));
    assert_eq!(r.classless.len(), 2);
    eprintln!("fuzz_dhcp: MOONLIT_FUZZ_SEED={seed}, {cases} messages");
    run("dhcp", seeds, cases, seed, feed_dhcp);
    eprintln!("fuzz_dhcp: {cases} messages, 0 panics, 0 stalls");
}

/// Regression: a message header whose length is below the header's own
/// size must end the datagram with an error, not loop or panic.
#[test]
fn short_message_lengths_are_errors() {
    for len in [0u32, 1, 15] {
        let mut m = nlmsg(u16::from(Rtm::Newlink), 0, SEQ, &[0u8; 16]);
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let mut out = Vec::new();
        let mut intr = false;
        let r = take_datagram(&m, SEQ, &mut out, &mut intr, "t", &"t");
        assert!(r.is_err() || r.as_ref().is_ok_and(|d| !d), "{len}: {r:?}");
        let mut ev = Vec::new();
        let _ = crate::events::decode_datagram(&m, &mut ev);
    }
    let _ = NlmF::empty();
}
