//! The one flag and mode parser of the `sys` module.
//!
//! Owns: the named constant sets (`sys.c.O`, `sys.c.MS`, ...), and turning what a
//! script passes for a flag argument into a number: an integer as is, or a string
//! that is a comma list of names (any case, with or without the C prefix) and
//! numbers (`"rdonly,creat"`, `"nosuid,nodev"`, `"0755"`, `"fchr,0666"`).
//! Unknown names are reported as [`FlagError::Unknown`] ("unknown O flag 'foo'").
//! Does not own: what the numbers mean to the kernel (the call sites do).

use crate::tables;

/// How the items of a flag string combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bit flags: items are OR'd together.
    Bits,
    /// One value (a signal, a clock, a resource): exactly one item.
    Single,
}

/// A named set of constants, e.g. the `O` set of open(2) flags.
#[derive(Debug)]
pub struct FlagSet {
    /// Name shown in errors and used as the `sys.c` key ("O", "MS", ...).
    pub name: &'static str,
    /// C prefixes accepted (and ignored) in front of a name, e.g. `O_`.
    pub prefixes: &'static [&'static str],
    /// Names without prefix (upper case) and their values.
    pub entries: &'static [(&'static str, i64)],
    /// Bit flags or a single value.
    pub kind: Kind,
    /// Bare digit strings are octal ("755") as in permission modes.
    pub octal: bool,
    /// A name may also be written without this leading text (the mode set lets
    /// "fchr" stand for "IFCHR" as ljsyscall does).
    pub implied: &'static str,
}

macro_rules! set {
    ($id:ident, $name:expr, $prefixes:expr, $entries:expr, $kind:expr) => {
        set!($id, $name, $prefixes, $entries, $kind, false, "");
    };
    ($id:ident, $name:expr, $prefixes:expr, $entries:expr, $kind:expr, $octal:expr, $implied:expr) => {
        #[doc = concat!("The `", $name, "` constant set.")]
        pub static $id: FlagSet = FlagSet {
            name: $name,
            prefixes: $prefixes,
            entries: $entries,
            kind: $kind,
            octal: $octal,
            implied: $implied,
        };
    };
}

use Kind::{Bits, Single};

set!(O, "O", &["O_"], tables::O, Bits);
set!(MS, "MS", &["MS_"], tables::MS, Bits);
set!(UMOUNT, "UMOUNT", &["MNT_", "UMOUNT_"], tables::UMOUNT, Bits);
set!(CLONE, "CLONE", &["CLONE_"], tables::CLONE, Bits);
set!(MODE, "MODE", &["S_"], tables::S, Bits, true, "I");
set!(AT, "AT", &["AT_"], tables::AT, Bits);
set!(SEEK, "SEEK", &["SEEK_"], tables::SEEK, Single);
set!(OK, "OK", &[], tables::OK, Bits);
set!(SOCK, "SOCK", &["SOCK_"], tables::SOCK, Bits);
set!(AF, "AF", &["AF_", "PF_"], tables::AF, Single);
set!(SOL, "SOL", &["SOL_"], tables::SOL, Single);
set!(SO, "SO", &["SO_"], tables::SO, Single);
set!(IPPROTO, "IPPROTO", &["IPPROTO_"], tables::IPPROTO, Single);
set!(TCP, "TCP", &["TCP_"], tables::TCP, Single);
set!(MSG, "MSG", &["MSG_"], tables::MSG, Bits);
set!(SHUT, "SHUT", &["SHUT_"], tables::SHUT, Single);
set!(F, "F", &["F_"], tables::F, Single);
set!(FD, "FD", &["FD_"], tables::FD, Bits);
set!(PR, "PR", &["PR_"], tables::PR, Single);
set!(RLIMIT, "RLIMIT", &["RLIMIT_"], tables::RLIMIT, Single);
set!(PRIO, "PRIO", &["PRIO_"], tables::PRIO, Single);
set!(RB, "RB", &["LINUX_REBOOT_CMD_", "RB_"], tables::RB, Single);
set!(CLOCK, "CLOCK", &["CLOCK_"], tables::CLOCK, Single);
set!(W, "W", &["W"], tables::W, Bits);
set!(IOCTL, "IOCTL", &[], tables::IOCTL, Single);
set!(SWAP, "SWAP", &["SWAP_FLAG_"], tables::SWAP, Bits);
set!(E, "E", &["E"], tables::E, Single);
set!(SIG, "SIG", &["SIG"], tables::SIG, Single);
set!(
    MODULE_INIT,
    "MODULE_INIT",
    &["MODULE_INIT_"],
    tables::MODULE_INIT,
    Bits
);
set!(FSOPEN, "FSOPEN", &["FSOPEN_"], tables::FSOPEN, Bits);
set!(FSMOUNT, "FSMOUNT", &["FSMOUNT_"], tables::FSMOUNT, Bits);
set!(
    MOUNT_ATTR,
    "MOUNT_ATTR",
    &["MOUNT_ATTR_"],
    tables::MOUNT_ATTR,
    Bits
);
set!(
    MOVE_MOUNT,
    "MOVE_MOUNT",
    &["MOVE_MOUNT_"],
    tables::MOVE_MOUNT,
    Bits
);
set!(
    OPEN_TREE,
    "OPEN_TREE",
    &["OPEN_TREE_", "AT_"],
    tables::OPEN_TREE,
    Bits
);
set!(
    FSCONFIG,
    "FSCONFIG",
    &["FSCONFIG_", "CMD_"],
    tables::FSCONFIG,
    Single
);
set!(RLIM, "RLIM", &["RLIM_"], tables::RLIM, Single);
set!(
    SYSLOG_ACTION,
    "SYSLOG_ACTION",
    &["SYSLOG_ACTION_"],
    tables::SYSLOG_ACTION,
    Single
);

/// Every set, under the key it has in `sys.c`. The `S` table holds the same
/// values as `MODE` (C names without `S_`), `MNT` is `UMOUNT`.
pub static ALL: &[(&str, &FlagSet)] = &[
    ("O", &O),
    ("MS", &MS),
    ("UMOUNT", &UMOUNT),
    ("MNT", &UMOUNT),
    ("CLONE", &CLONE),
    ("S", &MODE),
    ("MODE", &MODE),
    ("AT", &AT),
    ("SEEK", &SEEK),
    ("OK", &OK),
    ("SOCK", &SOCK),
    ("AF", &AF),
    ("SOL", &SOL),
    ("SO", &SO),
    ("IPPROTO", &IPPROTO),
    ("TCP", &TCP),
    ("MSG", &MSG),
    ("SHUT", &SHUT),
    ("F", &F),
    ("FD", &FD),
    ("PR", &PR),
    ("RLIMIT", &RLIMIT),
    ("RLIM", &RLIM),
    ("PRIO", &PRIO),
    ("RB", &RB),
    ("CLOCK", &CLOCK),
    ("W", &W),
    ("IOCTL", &IOCTL),
    ("SWAP", &SWAP),
    ("E", &E),
    ("SIG", &SIG),
    ("MODULE_INIT", &MODULE_INIT),
    ("FSOPEN", &FSOPEN),
    ("FSMOUNT", &FSMOUNT),
    ("MOUNT_ATTR", &MOUNT_ATTR),
    ("MOVE_MOUNT", &MOVE_MOUNT),
    ("OPEN_TREE", &OPEN_TREE),
    ("FSCONFIG", &FSCONFIG),
    ("SYSLOG_ACTION", &SYSLOG_ACTION),
];

/// A flag argument that cannot be turned into a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// A name that is not in the set.
    #[error("unknown {set} flag '{name}'")]
    Unknown {
        /// The set ("O").
        set: &'static str,
        /// The name as written.
        name: String,
    },
    /// A number that does not parse.
    #[error("bad number '{text}' in {set} flags")]
    BadNumber {
        /// The set.
        set: &'static str,
        /// The text as written.
        text: String,
    },
    /// Several items where one value is expected.
    #[error("{set} takes one value, got '{text}'")]
    NotSingle {
        /// The set.
        set: &'static str,
        /// The text as written.
        text: String,
    },
}

impl FlagSet {
    /// Looks a name up: case-insensitive, C prefix optional.
    pub fn lookup(&self, name: &str) -> Option<i64> {
        let up = name.to_ascii_uppercase();
        let find = |n: &str| {
            self.entries
                .iter()
                .find(|(k, _)| *k == n)
                .map(|&(_, v)| v)
                .or_else(|| {
                    if self.implied.is_empty() {
                        None
                    } else {
                        let with = format!("{}{}", self.implied, n);
                        self.entries
                            .iter()
                            .find(|(k, _)| *k == with)
                            .map(|&(_, v)| v)
                    }
                })
        };
        if let Some(v) = find(&up) {
            return Some(v);
        }
        self.prefixes
            .iter()
            .find_map(|p| up.strip_prefix(p).and_then(&find))
    }

    /// The first name carrying `value` (for errno and signal names).
    pub fn name_of(&self, value: i64) -> Option<&'static str> {
        self.entries
            .iter()
            .find(|&&(_, v)| v == value)
            .map(|&(k, _)| k)
    }

    /// Parses a flag string (see the module doc).
    pub fn parse_str(&self, text: &str) -> Result<i64, FlagError> {
        let mut acc = 0i64;
        let mut count = 0;
        for item in text.split([',', '|', ' ', '\t']) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            count += 1;
            let v = if item.as_bytes()[0].is_ascii_digit() || item.starts_with('-') {
                self.parse_number(item)?
            } else if let Some(v) = self.lookup(item) {
                v
            } else {
                return Err(FlagError::Unknown {
                    set: self.name,
                    name: item.to_string(),
                });
            };
            acc |= v;
        }
        if self.kind == Kind::Single && count > 1 {
            return Err(FlagError::NotSingle {
                set: self.name,
                text: text.to_string(),
            });
        }
        Ok(acc)
    }

    fn parse_number(&self, item: &str) -> Result<i64, FlagError> {
        let bad = || FlagError::BadNumber {
            set: self.name,
            text: item.to_string(),
        };
        let (neg, digits) = match item.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, item),
        };
        let v = if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            i64::from_str_radix(hex, 16).map_err(|_| bad())?
        } else if self.octal || (digits.len() > 1 && digits.starts_with('0')) {
            i64::from_str_radix(digits, 8).map_err(|_| bad())?
        } else {
            digits.parse::<i64>().map_err(|_| bad())?
        };
        Ok(if neg { -v } else { v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc;

    #[test]
    fn open_flags_any_case_with_or_without_prefix() {
        let want = (libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC) as i64;
        assert_eq!(O.parse_str("rdonly,creat,cloexec"), Ok(want));
        assert_eq!(O.parse_str("O_RDONLY, O_Creat |cloexec"), Ok(want));
    }

    #[test]
    fn modes_are_octal_and_take_type_names() {
        assert_eq!(MODE.parse_str("0755"), Ok(0o755));
        assert_eq!(MODE.parse_str("755"), Ok(0o755));
        assert_eq!(
            MODE.parse_str("fchr,0666"),
            Ok(libc::S_IFCHR as i64 | 0o666)
        );
        assert_eq!(
            MODE.parse_str("IFIFO,rusr"),
            Ok((libc::S_IFIFO | libc::S_IRUSR) as i64)
        );
        assert_eq!(MODE.parse_str("S_IFREG"), Ok(libc::S_IFREG as i64));
    }

    #[test]
    fn numbers_in_other_sets() {
        assert_eq!(MS.parse_str("0x1"), Ok(1));
        assert_eq!(MS.parse_str("010"), Ok(8));
        assert_eq!(MS.parse_str("10"), Ok(10));
        assert!(matches!(
            MS.parse_str("0x"),
            Err(FlagError::BadNumber { .. })
        ));
    }

    #[test]
    fn unknown_names_are_named() {
        let e = O.parse_str("rdonly,foo").unwrap_err();
        assert_eq!(e.to_string(), "unknown O flag 'foo'");
        assert!(MS.parse_str("nosuid,nodev,noexec").is_ok());
        assert!(CLONE.parse_str("newnet,newns").is_ok());
        assert!(CLONE.parse_str("newfoo").is_err());
    }

    #[test]
    fn single_sets_refuse_lists() {
        assert_eq!(SIG.parse_str("term"), Ok(libc::SIGTERM as i64));
        assert_eq!(SIG.parse_str("SIGKILL"), Ok(libc::SIGKILL as i64));
        assert!(matches!(
            SIG.parse_str("term,kill"),
            Err(FlagError::NotSingle { .. })
        ));
    }

    #[test]
    fn errno_names_prefer_primary() {
        assert_eq!(E.name_of(libc::EAGAIN as i64), Some("AGAIN"));
        assert_eq!(E.lookup("wouldblock"), Some(libc::EAGAIN as i64));
        assert_eq!(E.name_of(libc::ENOENT as i64), Some("NOENT"));
    }

    #[test]
    fn empty_string_is_zero() {
        assert_eq!(O.parse_str(""), Ok(0));
    }
}
