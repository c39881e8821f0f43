//! PID 1 survives its own panics. The release binary is built with
//! `panic = "abort"` (no unwind tables), so a panic cannot be caught: instead
//! the loop keeps a checkpoint, the re-exec handover of its last settled
//! state (the JSON document and the descriptors it names), and the panic hook
//! re-executes this same binary (`/proc/self/exe`) on it, exactly as `ctl
//! reexec` does. The new image adopts the services (same pids), reaps what
//! died in between and carries on. Too many panics in a short time, or a
//! failed exec, end in the fatal path (rescue shell in system mode).
//!
//! The checkpoint is taken at the end of every turn in which the supervisor
//! acted (a spawn, a stop, a restart scheduled: what decides which pid is
//! which service), and within a second of any other turn (readiness, health,
//! leases, timers, Lua state). Serialising it costs about 0.3 ms with 20
//! services, so a flood of control requests must not pay it per request.
//! What is lost in a recovery: the log rings' history (not the unread
//! output: the pipes are kept), Lua tasks that were running, changes of the
//! last second that did not go through the supervisor, and the clients
//! connected at the time.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};

use super::now_ms;

/// More panics than this within [`WINDOW_MS`] stop the recovery.
const MAX_PANICS: usize = 5;
const WINDOW_MS: u64 = 60_000;

struct Checkpoint {
    doc: Vec<u8>,
    keep: Vec<RawFd>,
}

#[derive(Default)]
struct State {
    /// Set once the loop runs: only then is there state worth carrying.
    fatal: Option<fn(&str) -> !>,
    checkpoint: Option<Checkpoint>,
    /// Recent panics (ms since boot), carried from image to image.
    history: Vec<u64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The loop is running: a panic from now on re-executes; `fatal` is the way
/// out when that cannot help. `history` is what the previous image passed.
pub(crate) fn arm(fatal: fn(&str) -> !, history: Vec<u64>) {
    STATE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.fatal = Some(fatal);
            s.history = history;
        }
    });
}

/// Replaces the checkpoint.
pub(crate) fn store(doc: Vec<u8>, keep: Vec<RawFd>) {
    STATE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.checkpoint = Some(Checkpoint { doc, keep });
        }
    });
}

/// Parses the `--panics T1,T2,...` argument of a recovering image.
pub(crate) fn parse_history(arg: Option<&str>) -> Vec<u64> {
    arg.unwrap_or("")
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// From the panic hook (the message is already printed). Returns only when
/// the loop is not running (a subcommand, or PID 1 before its loop): the
/// panic then takes its normal course.
pub(crate) fn on_panic(what: &str) {
    let taken = STATE.with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        let fatal = s.fatal?;
        let now = now_ms();
        s.history.retain(|t| now.saturating_sub(*t) < WINDOW_MS);
        s.history.push(now);
        Some((fatal, s.checkpoint.take(), s.history.clone()))
    });
    let Some((fatal, checkpoint, history)) = taken else {
        return;
    };
    if history.len() > MAX_PANICS {
        fatal(&format!(
            "{} internal errors within {} s (last: {what})",
            history.len(),
            WINDOW_MS / 1000
        ));
    }
    let Some(cp) = checkpoint else {
        fatal(&format!(
            "internal error before the first checkpoint: {what}"
        ));
    };
    let why = match reexec(cp, what, &history) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    fatal(&format!("internal error ({what}); recovery failed: {why}"));
}

fn reexec(cp: Checkpoint, what: &str, history: &[u64]) -> Result<std::convert::Infallible, String> {
    use std::io::Write;
    let memfd = rustix::fs::memfd_create("moonlit-handover", rustix::fs::MemfdFlags::empty())
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut f = std::fs::File::from(memfd);
    f.write_all(&cp.doc)
        .map_err(|e| format!("writing the state: {e}"))?;
    let mut keep = cp.keep;
    keep.push(f.as_raw_fd());
    crate::sys::set_cloexec_except(&keep);
    eprintln!(
        "moonlit: recovering: re-executing on the last checkpoint ({} bytes)",
        cp.doc.len()
    );
    let fd = f.as_raw_fd().to_string();
    let times: Vec<String> = history.iter().map(u64::to_string).collect();
    let times = times.join(",");
    // One line of the panic, without newlines or NULs: it becomes an
    // argument (a NUL would make the exec fail).
    let what: String = what
        .chars()
        .take(300)
        .filter(|c| *c != '\n' && *c != '\0')
        .collect();
    let err = crate::sys::execv(
        "/proc/self/exe",
        &[
            "moonlit",
            "--handover",
            &fd,
            "--after-panic",
            &what,
            "--panics",
            &times,
        ],
    );
    Err(format!("exec /proc/self/exe: {err}"))
}

/// When the checkpoint was taken, whether the supervisor acted since, and
/// whether any turn ran since.
#[derive(Clone, Copy, Default)]
struct Freshness {
    last: u64,
    urgent: bool,
    dirty: bool,
}

thread_local! {
    static FRESH: std::cell::Cell<Freshness> = const {
        std::cell::Cell::new(Freshness { last: 0, urgent: false, dirty: false })
    };
}

/// Other changes reach the checkpoint at most this late.
const LAZY_MS: u64 = 1000;

/// The supervisor acted: the next checkpoint is taken at the end of this turn.
pub(crate) fn changed() {
    FRESH.with(|f| {
        let mut v = f.get();
        v.urgent = true;
        f.set(v);
    });
}

/// When the loop must wake for a lazy checkpoint.
pub(crate) fn due() -> Option<u64> {
    let v = FRESH.with(|f| f.get());
    v.dirty.then_some(v.last + LAZY_MS)
}

/// The exit of the non-system modes when recovery cannot help.
fn give_up(why: &str) -> ! {
    eprintln!("moonlit: fatal: {why}");
    rustix::fs::sync();
    std::process::exit(70)
}

impl super::Init {
    /// Before the first turn: panics re-execute from here on.
    pub(crate) fn arm_recovery(&mut self, history: Vec<u64>) {
        let fatal: fn(&str) -> ! = if self.opts.mode == crate::mode::Mode::System {
            crate::rescue
        } else {
            give_up
        };
        arm(fatal, history);
        changed();
        self.checkpoint();
    }

    /// After a turn: stores the state a recovery would carry on from, now
    /// if the supervisor acted, else once [`LAZY_MS`] have passed.
    pub(crate) fn checkpoint(&mut self) {
        let now = now_ms();
        let mut v = FRESH.with(|f| f.get());
        if !v.urgent && now.saturating_sub(v.last) < LAZY_MS {
            v.dirty = true;
            FRESH.with(|f| f.set(v));
            return;
        }
        FRESH.with(|f| {
            f.set(Freshness {
                last: now,
                urgent: false,
                dirty: false,
            })
        });
        let format = super::reexec::needed_format(&self.sup);
        let (h, keep) = self.handover(format, None, false);
        match serde_json::to_vec(&h) {
            Ok(doc) => store(doc, keep),
            Err(e) => self.log(&format!("checkpoint: serialising the state: {e}")),
        }
    }

    /// In an image that a panic re-executed.
    pub(crate) fn recovered(&self, what: &str, history: &[u64]) {
        self.log(&format!(
            "recovered from an internal error by re-executing ({} in the last {} s): {what}",
            history.len(),
            WINDOW_MS / 1000
        ));
    }

    /// `{"cmd":"fault","kind":"panic"}`: an injected fault, for the tests
    /// that prove recovery. Refused unless the system was started with
    /// `moonlit.faults` on the kernel command line or MOONLIT_FAULTS=1.
    pub(crate) fn fault(&mut self, req: &serde_json::Value) -> Result<(), String> {
        let allowed = self.opts.cmdline.iter().any(|(k, _)| k == "moonlit.faults")
            || std::env::var("MOONLIT_FAULTS").is_ok_and(|v| v == "1");
        if !allowed {
            return Err(
                "fault injection is off (start with moonlit.faults on the kernel command line or MOONLIT_FAULTS=1)"
                    .into(),
            );
        }
        match req.get("kind").and_then(serde_json::Value::as_str) {
            Some("panic") => panic!("injected fault (ctl fault panic)"),
            Some(other) => Err(format!("unknown fault kind \"{other}\" (known: panic)")),
            None => Err("'fault' needs \"kind\"".into()),
        }
    }
}
