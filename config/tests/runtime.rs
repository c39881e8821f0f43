//! The Lua runtime and the plan, without an event loop: tasks are driven by
//! hand, declarations are evaluated from strings.

use std::rc::Rc;
use std::time::Duration;

use moonlit_config::plan::{self, ModuleResult, RestartPolicy};
use moonlit_config::runtime::{BootInfo, Limits, Request, Runtime, Step};
use moonlit_config::ErrorKind;

fn rt_with(limits: Limits) -> Runtime {
    let info = BootInfo {
        mode: "test".into(),
        config_dir: "/nonexistent".into(),
        ..Default::default()
    };
    Runtime::new(limits, &info, Rc::new(|_: &str| {}), &[]).expect("runtime")
}

fn rt() -> Runtime {
    rt_with(Limits::default())
}

fn task(rt: &mut Runtime, src: &str) -> (u64, Step) {
    let f = rt.load_script("t.lua", src.as_bytes()).expect("load");
    rt.start_task("t", f, ())
}

fn world(rt: &Runtime, modules: &[(&str, &str)]) -> (plan::Plan, Vec<moonlit_config::ConfigError>) {
    let results: Vec<ModuleResult> = modules
        .iter()
        .map(|(name, src)| ModuleResult {
            module: name.to_string(),
            decls: rt.eval_module(name, src.as_bytes()).map(|e| e.decls),
        })
        .collect();
    plan::build(&results)
}

#[test]
fn sleep_yields_to_the_loop_even_inside_coroutine_wrap() {
    let mut rt = rt();
    let (id, step) = task(
        &mut rt,
        "local g = coroutine.wrap(function() sleep(0.25); coroutine.yield('inner'); return 'last' end)\n\
         local a = g()\n local b = g()\n RESULT = a .. ',' .. b",
    );
    assert_eq!(step, Step::Wait(Request::Sleep(Duration::from_millis(250))));
    assert_eq!(rt.resume(id, ()), Step::Done);
    let r: String = rt.lua().globals().get("RESULT").expect("result");
    assert_eq!(r, "inner,last");
}

#[test]
fn plain_yield_at_task_level_is_a_turn_of_the_loop() {
    let mut rt = rt();
    let (id, step) = task(&mut rt, "coroutine.yield() X = 1");
    assert_eq!(step, Step::Wait(Request::Yield));
    assert_eq!(rt.resume(id, ()), Step::Done);
}

#[test]
fn runaway_loops_are_stopped_even_under_pcall() {
    let mut rt = rt_with(Limits {
        memory: 64 << 20,
        instructions_per_slice: 5_000_000,
    });
    for src in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
    ] {
        let (_, step) = task(&mut rt, src);
        match step {
            Step::Failed(m) => assert!(m.contains("t.lua:1: instruction limit exceeded"), "{m}"),
            other => panic!("{src}: expected a failure, got {other:?}"),
        }
    }
    // The runtime is still usable.
    let (_, step) = task(&mut rt, "X = 2");
    assert_eq!(step, Step::Done);
}

#[test]
fn a_memory_bomb_hits_the_limit_and_the_state_recovers() {
    let mut rt = rt_with(Limits {
        memory: 16 << 20,
        instructions_per_slice: 1_000_000_000,
    });
    let (_, step) = task(
        &mut rt,
        "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end",
    );
    match step {
        Step::Failed(m) => assert!(m.contains("not enough memory"), "{m}"),
        other => panic!("expected a memory failure, got {other:?}"),
    }
    rt.collect();
    assert!(
        rt.used_memory() < 4 << 20,
        "garbage was collected: {} bytes",
        rt.used_memory()
    );
    let (_, step) = task(&mut rt, "local t = {} for i = 1, 1000 do t[i] = i end");
    assert_eq!(step, Step::Done);
}

#[test]
fn dangerous_functions_are_gone() {
    let mut rt = rt();
    let (_, step) = task(
        &mut rt,
        "assert(os.exit == nil and os.execute == nil and io.popen == nil and debug == nil)",
    );
    assert_eq!(step, Step::Done);
}

#[test]
fn declarations_cannot_block_or_spawn() {
    let rt = rt();
    let e = rt
        .eval_module("services/a.lua", b"sleep(1)")
        .expect_err("blocking");
    assert!(e.message.contains("must not block"), "{e}");
    let e = rt
        .eval_module("services/b.lua", b"spawn{'/bin/true'}")
        .expect_err("spawn");
    assert!(
        e.message.contains("services/b.lua:1:") && e.message.contains("cannot start processes"),
        "{e}"
    );
}

#[test]
fn services_are_validated_with_locations() {
    let rt = rt();
    let cases: &[(&str, &str, ErrorKind)] = &[
        ("service 'a' { exce = {'/bin/x'} }", "services/t.lua:1: service \"a\": unknown key 'exce' (did you mean 'exec'?)", ErrorKind::Schema),
        ("service 'a' { argv = {'/bin/x'} }", "unknown key 'argv' (did you mean 'exec'?)", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, WorkingDirectory = '/' }", "unknown key 'WorkingDirectory' (did you mean 'cwd'?)", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, depends_on = {} }", "unknown key 'depends_on' (did you mean 'requires'?)", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, zzqx = 1 }", "unknown key 'zzqx'", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, limits = { nofiles = 10 } }", "limits: unknown limit 'nofiles' (did you mean 'nofile'?)", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, limits = { nofile = { soft = 10, hard = 5 } } }", "limits.nofile: soft limit 10 is above the hard limit 5", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, limits = { core = -1 } }", "limits.core must be a non-negative integer or \"unlimited\"", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, limits = { core = { max = 1 } } }", "limits.core: unknown key", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, limits = 5 }", "limits must be a table", ErrorKind::Schema),
        ("\nservice 'a' { exec = '/bin/x', restart = 'sometimes' }", "services/t.lua:2: service \"a\": restart must be", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, stop_timeout = -1 }", "stop_timeout must be between 0", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, stop_signal = 'BOGUS' }", "stop_signal: unknown signal 'BOGUS'", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, env = { A = {} } }", "env.A must be a string", ErrorKind::Schema),
        ("service 'a' { exec = {} }", "exec must not be empty", ErrorKind::Schema),
        ("service 'a' { }", "exec is required", ErrorKind::Schema),
        ("service 'a b' { exec = {'/bin/x'} }", "names use letters", ErrorKind::Schema),
        ("service 'a' { exec = {'/bin/x'}, requires = {'b'} }", "service \"a\" requires unknown service \"b\"", ErrorKind::Dependency),
        ("service 'a' { exec = {'/bin/x'}, after = {'b'} }\nservice 'b' { exec = {'/bin/x'}, after = {'c'} }\nservice 'c' { exec = {'/bin/x'}, requires = {'a'} }", "dependency cycle: a -> b -> c -> a", ErrorKind::Cycle),
        ("service 'a' { exec = {'/bin/x'} }\nservice 'a' { exec = {'/bin/y'} }", "services/t.lua:2: service \"a\" is already declared at services/t.lua:1", ErrorKind::Duplicate),
        ("service 'a' 'oops'", "services/t.lua:1: service \"a\": expected a table of settings", ErrorKind::Runtime),
    ];
    for (src, expect, kind) in cases {
        let (_, errors) = world(&rt, &[("services/t.lua", src)]);
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains(expect) && e.kind == *kind),
            "{src}: expected {kind:?} {expect:?}, got {errors:?}"
        );
    }
}

#[test]
fn a_valid_world_has_types_defaults_and_order() {
    let rt = rt();
    let (plan, errors) = world(
        &rt,
        &[
            ("services/db.lua", "service 'db' { exec = {'/bin/db', '--port', 5432}, env = { N = 3 }, stop_signal = 'INT' }"),
            ("services/web.lua", "service 'web' { exec = {'/bin/web'}, requires = 'db', stop_timeout = 2.5, restart = 'on-failure' }\nservice 'setup' { exec = {'/bin/s'}, oneshot = true }"),
        ],
    );
    assert!(errors.is_empty(), "{errors:?}");
    let web = &plan.services["web"];
    assert_eq!(web.requires, vec!["db"]);
    assert_eq!(web.stop_timeout, Duration::from_millis(2500));
    assert_eq!(web.restart, RestartPolicy::OnFailure);
    assert_eq!(web.location, "services/web.lua:1");
    let db = &plan.services["db"];
    assert_eq!(db.exec, vec!["/bin/db", "--port", "5432"]);
    assert_eq!(db.env["N"], "3");
    assert_eq!(db.stop_signal, 2);
    assert_eq!(db.restart, RestartPolicy::Always);
    assert_eq!(
        plan.services["setup"].restart,
        RestartPolicy::Never,
        "oneshot defaults to never"
    );
    let order = plan.start_order();
    assert!(order.iter().position(|n| n == "db") < order.iter().position(|n| n == "web"));
}

#[test]
fn a_broken_module_does_not_take_the_others_down_at_boot() {
    let rt = rt();
    let (plan, errors) = world(
        &rt,
        &[
            ("services/bad.lua", "service 'x' {"),
            ("services/good.lua", "service 'ok' { exec = {'/bin/ok'} }"),
        ],
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::Syntax);
    assert!(
        errors[0].message.starts_with("services/bad.lua:1:"),
        "{}",
        errors[0]
    );
    assert!(plan.services.contains_key("ok"));
}
