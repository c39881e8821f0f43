//! When PID 1 gives back the pages of its binary that only rare work used.
//!
//! Owns: the decision of when to call `sys::drop_binary_pages`: at once
//! when the boot is complete, and otherwise once the loop has been quiet
//! for `QUIET_MS` after work that runs code the idle loop does not (a
//! supervisor action such as a spawn or a kill, a reload, a re-exec's
//! adoption). Does not own: the dropping (`sys`), or which code is idle
//! code (the link order, init/link-order.txt, from bench/core/order.sh).
//! docs/DESIGN.md, "Memory: the binary's pages".

use crate::supervisor::Ms;

/// How long the loop must be quiet after rare work before the drop: long
/// enough that a burst (a restart storm, a reload's spawns) pays it once.
pub const QUIET_MS: Ms = 1000;

#[derive(Debug, Default)]
pub struct IdlePages {
    due: Option<Ms>,
    drops: u64,
}

impl IdlePages {
    /// Rare work ran at `now`: drop once the loop has been quiet after it.
    pub fn touched(&mut self, now: Ms) {
        self.due = Some(now + QUIET_MS);
    }

    /// The boot (or an adoption) is over: drop now.
    pub fn settled(&mut self) {
        self.due = None;
        self.drop_now();
    }

    /// When the loop must wake for the drop.
    pub fn next_deadline(&self) -> Option<Ms> {
        self.due
    }

    /// Drops the pages if the quiet period is over.
    pub fn run_due(&mut self, now: Ms) {
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
            self.drop_now();
        }
    }

    /// How many drops so far (for `ctl status --json`'s `memory` object).
    pub fn drops(&self) -> u64 {
        self.drops
    }

    fn drop_now(&mut self) {
        if crate::sys::drop_binary_pages() > 0 {
            self.drops += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_waits_for_quiet_and_a_new_touch_postpones_it() {
        let mut p = IdlePages::default();
        assert_eq!(p.next_deadline(), None);
        p.touched(100);
        assert_eq!(p.next_deadline(), Some(100 + QUIET_MS));
        p.run_due(100 + QUIET_MS - 1);
        assert_eq!(p.drops(), 0, "not quiet long enough");
        p.touched(600);
        p.run_due(100 + QUIET_MS);
        assert_eq!(p.drops(), 0, "postponed by the second touch");
        p.run_due(600 + QUIET_MS);
        assert_eq!(p.drops(), 1);
        assert_eq!(p.next_deadline(), None);
        p.settled();
        assert_eq!(p.drops(), 2);
    }
}
