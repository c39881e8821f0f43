//! `moonlit lua SCRIPT [ARGS...]`: the loop without a system around it.
//! The script runs as the first task (with `arg` and `...` as the
//! standalone Lua interpreter gives them); no configuration, services or
//! control socket; `print` writes plain lines to stdout; the process exits
//! once no task is left, with 1 if a Lua error happened, else 0.

use std::io::Write;

use super::Init;

/// `print` in a script: the line on stdout, as `lua` would.
pub(super) fn print_line(m: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{m}");
    let _ = out.flush();
}

impl Init {
    /// Starts the script as the first task.
    pub fn script_boot(&mut self) {
        let Some((path, args)) = self.opts.script.clone() else {
            return;
        };
        self.sup.hold = false;
        self.boot_script_done = true;
        let name = path.display().to_string();
        let src = match std::fs::read(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("moonlit: {name}: {e}");
                std::process::exit(1);
            }
        };
        // Lua's `lua` sets arg[0] to the script and arg[1..] to its arguments.
        let lua = self.rt.lua();
        if let Ok(t) = lua.create_table() {
            let _ = t.raw_set(0, name.as_str());
            for (i, a) in args.iter().enumerate() {
                let _ = t.raw_set(i + 1, a.as_str());
            }
            let _ = lua.globals().set("arg", t);
        }
        match self.rt.load_script(&name, &src) {
            Ok(f) => {
                let (id, step) = self
                    .rt
                    .start_task(&name, f, mlua::Variadic::from_iter(args));
                self.task_names.insert(id, name);
                self.handle_step(id, step);
            }
            Err(e) => {
                eprintln!("moonlit: {e}");
                std::process::exit(1);
            }
        }
    }

    /// In script mode: exits once every task has ended.
    pub(super) fn script_exit_if_done(&mut self) {
        if self.opts.script.is_none() || self.rt.task_count() > 0 {
            return;
        }
        self.console.borrow_mut().drain(1000);
        std::process::exit(i32::from(!self.lua_errors.is_empty()));
    }
}
