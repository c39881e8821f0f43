//! Test and benchmark runner: `net-lua SCRIPT.lua [ARGS...]` runs a Lua script
//! with `net` and `syscall.nl` preloaded, plus a minimal `network.*` DSL and
//! `netplan.*` helpers exposing the declarative spec, plan and apply (the real
//! DSL lives in the config crate). Not part of the init binary.

/// Small blocks from moonlit's own size-class allocator (as in the init).
#[global_allocator]
static ALLOC: moonlit_sys::alloc::Alloc = moonlit_sys::alloc::Alloc::new();

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use mlua::{Lua, Table, Value};
use moonlit_net::{plan, Decl, Handle, KernelState, NetworkSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(script) = args.get(1) else {
        eprintln!("usage: net-lua SCRIPT.lua [ARGS...]");
        std::process::exit(2);
    };
    let lua = Lua::new();
    if let Err(e) = setup(&lua, &args[2..]) {
        eprintln!("net-lua: setup: {e}");
        std::process::exit(2);
    }
    let code = match std::fs::read_to_string(script) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("net-lua: {script}: {e}");
            std::process::exit(2);
        }
    };
    let name = format!("@{script}");
    if let Err(e) = lua.load(&code).set_name(name).exec() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn setup(lua: &Lua, args: &[String]) -> mlua::Result<()> {
    moonlit_net::register(lua)?;
    let arg = lua.create_table()?;
    for (i, a) in args.iter().enumerate() {
        arg.set(i + 1, a.as_str())?;
    }
    lua.globals().set("arg", arg)?;

    // network.<kind> "name" { ... } / network.dns { ... } collect Decls.
    let decls: Rc<RefCell<Vec<Decl>>> = Rc::new(RefCell::new(Vec::new()));
    let network = lua.create_table()?;
    for kind in [
        "interface",
        "veth",
        "bridge",
        "vlan",
        "macvlan",
        "dummy",
        "bond",
        "dns",
    ] {
        let decls = decls.clone();
        let f = lua.create_function(move |lua, first: Value| {
            let location = lua
                .inspect_stack(1, |d| {
                    format!(
                        "{}:{}",
                        d.source()
                            .short_src
                            .map(|s| s.into_owned())
                            .unwrap_or_default(),
                        d.current_line().unwrap_or(0)
                    )
                })
                .unwrap_or_default();
            match first {
                Value::Table(body) => {
                    decls.borrow_mut().push(Decl {
                        kind: kind.into(),
                        name: None,
                        body,
                        location,
                    });
                    Ok(Value::Nil)
                }
                Value::String(name) => {
                    let name = name.to_str()?.to_string();
                    let decls = decls.clone();
                    let f = lua.create_function(move |_, body: Table| {
                        decls.borrow_mut().push(Decl {
                            kind: kind.into(),
                            name: Some(name.clone()),
                            body,
                            location: location.clone(),
                        });
                        Ok(())
                    })?;
                    Ok(Value::Function(f))
                }
                v => Err(mlua::Error::runtime(format!(
                    "network.{kind}: expected a name or a table, got {}",
                    v.type_name()
                ))),
            }
        })?;
        network.set(kind, f)?;
    }
    lua.globals().set("network", network)?;

    // netplan.reset(), netplan.plan(owned) -> {lines}, netplan.apply(owned[, resolv]) -> report
    let np = lua.create_table()?;
    {
        let decls = decls.clone();
        np.set(
            "reset",
            lua.create_function(move |_, ()| {
                decls.borrow_mut().clear();
                Ok(())
            })?,
        )?;
    }
    let take_spec = {
        let decls = decls.clone();
        move || -> mlua::Result<NetworkSpec> {
            NetworkSpec::from_decls(&decls.borrow())
                .map_err(|e| mlua::Error::runtime(e.to_string()))
        }
    };
    let owned_of = |t: Option<Table>| -> mlua::Result<BTreeSet<String>> {
        let mut s = BTreeSet::new();
        if let Some(t) = t {
            for v in t.sequence_values::<String>() {
                s.insert(v?);
            }
        }
        Ok(s)
    };
    let handle: Rc<RefCell<Option<Handle>>> = Rc::new(RefCell::new(None));
    {
        let take_spec = take_spec.clone();
        np.set(
            "check",
            lua.create_function(move |_, ()| match take_spec() {
                Ok(_) => Ok((true, None)),
                Err(e) => Ok((false, Some(e.to_string()))),
            })?,
        )?;
    }
    {
        let take_spec = take_spec.clone();
        let handle = handle.clone();
        np.set(
            "apply",
            lua.create_function(
                move |lua, (owned, resolv, dry): (Option<Table>, Option<String>, Option<bool>)| {
                    let spec = take_spec()?;
                    let owned = owned_of(owned)?;
                    let mut hb = handle.borrow_mut();
                    if hb.is_none() {
                        *hb = Some(Handle::new().map_err(mlua::Error::external)?);
                    }
                    let Some(h) = hb.as_mut() else {
                        return Err(mlua::Error::runtime("no handle"));
                    };
                    let before = h.writes();
                    let state = KernelState::read(h).map_err(mlua::Error::external)?;
                    let changes = plan(&spec, &state, &owned);
                    let report = lua.create_table()?;
                    let lines = lua.create_table()?;
                    let errors = lua.create_table()?;
                    if dry == Some(true) {
                        for c in &changes {
                            lines.push(c.to_string())?;
                        }
                    } else {
                        for (c, r) in moonlit_net::apply(h, &changes) {
                            lines.push(c.to_string())?;
                            if let Err(e) = r {
                                errors.push(format!("{c}: {e}"))?;
                            }
                        }
                        if let (Some(path), Some(dns)) = (resolv, &spec.dns) {
                            let wrote =
                                moonlit_net::write_resolv_conf(std::path::Path::new(&path), dns)
                                    .map_err(mlua::Error::external)?;
                            report.set("dns_written", wrote)?;
                        }
                    }
                    report.set("changes", lines)?;
                    report.set("errors", errors)?;
                    report.set("writes", h.writes() - before)?;
                    let created = lua.create_table()?;
                    for n in spec.created_links() {
                        created.push(n)?;
                    }
                    report.set("owned", created)?;
                    Ok(report)
                },
            )?,
        )?;
    }
    lua.globals().set("netplan", np)?;
    Ok(())
}
