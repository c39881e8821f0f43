//! Benchmark of the `sys` binding layer (run by bench/sys/run.sh, release, musl).
//!
//! Measures, in one process and one run: 1,000,000 `sys.getpid()` and 100,000
//! `sys.stat(path)` from Lua against the same raw calls made from Rust through
//! rustix, plus an empty Lua loop and a Lua call of a Rust no-op function to show
//! where the difference goes (a path call without a result table, a bare Lua
//! table constructor, a 1 KiB allocation). Each figure is the best of several rounds.

/// Small blocks from moonlit's own size-class allocator (as in the init).
#[global_allocator]
static ALLOC: moonlit_sys::alloc::Alloc = moonlit_sys::alloc::Alloc::new();

use std::hint::black_box;
use std::time::Instant;

const GETPIDS: u32 = 1_000_000;
const STATS: u32 = 100_000;
const ROUNDS: usize = 7;

fn best_ns_per_call(n: u32, mut f: impl FnMut() -> f64) -> f64 {
    (0..ROUNDS).map(|_| f()).fold(f64::INFINITY, f64::min) / f64::from(n)
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64
}

fn main() -> mlua::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/etc/hostname".to_string());
    let lua = mlua::Lua::new();
    moonlit_sys::register(&lua)?;
    lua.globals().set("PATH", path.as_str())?;
    lua.globals()
        .set("noop", lua.create_function(|_, ()| Ok(0i64))?)?;
    let lua_loop: mlua::Function = lua
        .load(
            r#"
            local sys = require "sys"
            local getpid, stat, noop = sys.getpid, sys.stat, noop
            local assert = assert
            assert(stat(PATH), "stat " .. PATH)
            return function(what, n)
              if what == "empty" then for _ = 1, n do end
              elseif what == "noop" then for _ = 1, n do noop() end
              elseif what == "getpid" then for _ = 1, n do getpid() end
              elseif what == "stat" then for _ = 1, n do stat(PATH) end
              elseif what == "access" then local a = sys.access for _ = 1, n do a(PATH) end
              elseif what == "table" then for _ = 1, n do local t = {a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11,l=12,m=13,n=14,o=15,p=16,q=17,r=18,s=19,t=20,u=21,v=22,w=23,x=24,y=25} end
              end
            end
            "#,
        )
        .eval()?;
    let run = |what: &str, n: u32| {
        time(|| {
            lua_loop.call::<()>((what, n)).expect("lua bench loop");
        })
    };

    let rust_getpid = best_ns_per_call(GETPIDS, || {
        time(|| {
            for _ in 0..GETPIDS {
                black_box(rustix::process::getpid());
            }
        })
    });
    let lua_empty = best_ns_per_call(GETPIDS, || run("empty", GETPIDS));
    let lua_noop = best_ns_per_call(GETPIDS, || run("noop", GETPIDS));
    let lua_getpid = best_ns_per_call(GETPIDS, || run("getpid", GETPIDS));
    let rust_stat = best_ns_per_call(STATS, || {
        time(|| {
            for _ in 0..STATS {
                black_box(rustix::fs::stat(black_box(path.as_str())).expect("stat"));
            }
        })
    });
    let lua_stat = best_ns_per_call(STATS, || run("stat", STATS));
    let lua_access = best_ns_per_call(STATS, || run("access", STATS));
    let rust_access = best_ns_per_call(STATS, || {
        time(|| {
            for _ in 0..STATS {
                black_box(
                    rustix::fs::access(black_box(path.as_str()), rustix::fs::Access::EXISTS).ok(),
                );
            }
        })
    });
    let lua_table = best_ns_per_call(STATS, || run("table", STATS));
    let rust_malloc = best_ns_per_call(STATS, || {
        time(|| {
            for _ in 0..STATS {
                black_box(vec![0u8; black_box(1024)]);
            }
        })
    });

    println!("sys binding benchmark (best of {ROUNDS} rounds), path {path}");
    println!("{:<34} {:>10}", "measurement", "ns/call");
    for (name, v) in [
        ("rust  rustix::process::getpid", rust_getpid),
        ("lua   empty loop iteration", lua_empty),
        ("lua   call of a Rust no-op", lua_noop),
        ("lua   sys.getpid()", lua_getpid),
        ("rust  rustix::fs::stat", rust_stat),
        ("lua   sys.stat(path)", lua_stat),
        ("rust  rustix::fs::access", rust_access),
        ("lua   sys.access(path)", lua_access),
        ("lua   25-field table constructor", lua_table),
        ("rust  1 KiB Vec alloc+free (global allocator)", rust_malloc),
    ] {
        println!("{name:<34} {v:>10.1}");
    }
    println!();
    println!(
        "getpid: binding overhead {:.1} ns/call ({GETPIDS} calls)",
        lua_getpid - rust_getpid
    );
    println!(
        "access: binding overhead {:.1} ns/call ({STATS} calls; a path call with no result table)",
        lua_access - rust_access
    );
    println!(
        "stat:   binding overhead {:.1} ns/call ({STATS} calls; includes building the result table)",
        lua_stat - rust_stat
    );
    Ok(())
}
