//! How this moonlit runs: as the machine's PID 1, as PID 1 of a container or
//! sandbox (a pid namespace), or as a subreaper for a user.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a machine: mounts everything, ends with reboot(2).
    System,
    /// PID 1 of a pid namespace made by a container runtime: ends with exit.
    Container,
    /// PID 1 of `moonlit run --sandbox`'s namespaces: ends with exit.
    Sandbox,
    /// `moonlit run DIR`: a child subreaper, no root needed.
    User,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::Container => "container",
            Mode::Sandbox => "sandbox",
            Mode::User => "user",
        }
    }
    /// Ends by exiting with a code instead of reboot(2).
    pub fn exits(self) -> bool {
        self != Mode::System
    }
}

/// PID 1 of the machine, or of a pid namespace? `reboot(CAD_OFF)` tells:
/// it works on a machine (and makes ctrl-alt-del a SIGINT to us); in a pid
/// namespace it fails with EINVAL, and without CAP_SYS_BOOT with EPERM.
pub fn detect_pid1() -> Mode {
    match rustix::system::reboot(rustix::system::RebootCommand::CadOff) {
        Ok(()) => Mode::System,
        Err(_) => Mode::Container,
    }
}
