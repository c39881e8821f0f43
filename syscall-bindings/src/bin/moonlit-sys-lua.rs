//! Test helper, not part of `moonlit`: runs a Lua script with `sys` and
//! `syscall` registered, so the Lua-written tests can run in a subprocess (in
//! fresh namespaces through unshare(1)). Usage: `moonlit-sys-lua SCRIPT [ARGS...]`.
//!
//! Extra global for tests only: `testutil.spawn(argv...)` starts a program and
//! returns its pid without waiting (Lua itself has no fork); the child gets its
//! own process group.

/// Small blocks from moonlit's own size-class allocator (as in the init).
#[global_allocator]
static ALLOC: moonlit_sys::alloc::Alloc = moonlit_sys::alloc::Alloc::new();

use std::process::ExitCode;

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let script = args
        .next()
        .ok_or("usage: moonlit-sys-lua SCRIPT [ARGS...]")?;
    // Like the init (which blocks every async signal and reads them from a
    // signalfd), keep SIGHUP from ending the runner: giving up a controlling
    // terminal as session leader (TIOCNOTTY) sends it to our process group.
    let mut hup = nix::sys::signal::SigSet::empty();
    hup.add(nix::sys::signal::Signal::SIGHUP);
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&hup), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let lua = mlua::Lua::new();
    moonlit_sys::register(&lua).map_err(|e| e.to_string())?;
    let setup = || -> mlua::Result<()> {
        let argt = lua.create_table()?;
        argt.raw_set(0, script.to_string_lossy().into_owned())?;
        for (i, a) in args.enumerate() {
            argt.raw_set(i + 1, a.to_string_lossy().into_owned())?;
        }
        lua.globals().set("arg", argt)?;
        let dir = std::path::Path::new(&script)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into());
        let package: mlua::Table = lua.globals().get("package")?;
        package.set(
            "path",
            format!("{dir}/?.lua;{}", package.get::<String>("path")?),
        )?;
        let tu = lua.create_table()?;
        tu.set(
            "spawn",
            lua.create_function(|_, argv: mlua::Variadic<String>| {
                let (prog, rest) = argv
                    .split_first()
                    .ok_or_else(|| mlua::Error::runtime("spawn: argv required"))?;
                use std::os::unix::process::CommandExt;
                let child = std::process::Command::new(prog)
                    .args(rest)
                    .process_group(0)
                    .spawn()
                    .map_err(|e| mlua::Error::runtime(format!("spawn {prog}: {e}")))?;
                Ok(child.id())
            })?,
        )?;
        lua.globals().set("testutil", tu)?;
        Ok(())
    };
    setup().map_err(|e| e.to_string())?;
    let code = std::fs::read(&script).map_err(|e| format!("{}: {e}", script.to_string_lossy()))?;
    lua.load(&code[..])
        .set_name(format!("@{}", script.to_string_lossy()))
        .exec()
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moonlit-sys-lua: {e}");
            ExitCode::FAILURE
        }
    }
}
