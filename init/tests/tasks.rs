//! Lua tasks on PID 1's loop, in the Lua Event Machine's style: `task()`,
//! `join`, `cancel`, waits on descriptors, `io.tcp` sockets and the LEM
//! chat example, as PID 1 of fresh namespaces. Needs root.

mod common;

use common::Sandbox;

const LO_UP: &str = "assert(require(\"net\").link(\"lo\"):up())\n";

#[test]
fn a_thousand_tasks_finish_in_the_order_of_their_deadlines() {
    // Each task sleeps until its own absolute deadline (3 ms apart, given
    // in a shuffled order) and then writes its number through a pipe.
    let init = r#"
local sys = require "sys"
local r, w = assert(sys.pipe())
local N = 1000
local t0 = sys.clock_gettime("monotonic").time + 0.5
local hs = {}
for i = 1, N do
  local k = (i * 7919) % N
  hs[i] = assert(task(function()
    sleep(math.max(0, t0 + k * 0.003 - sys.clock_gettime("monotonic").time))
    assert(w:write(k .. "\n"))
    return k
  end))
end
print("started " .. N)
task(function()
  local sum = 0
  for i = 1, N do sum = sum + hs[i]:join() end
  local bad = 0
  for i = 0, N - 1 do
    if tonumber(r:read("*l")) ~= i then bad = bad + 1 end
  end
  print("order: " .. bad .. " out of place, sum " .. sum)
end)
"#;
    let mut sb = Sandbox::start("tasks-1000", &[("init.lua", init)]);
    sb.wait_line("started 1000", 20);
    // Services start while the tasks run: the boot script has returned.
    sb.ready();
    let st = sb.status();
    assert!(
        st["tasks"].as_array().is_some_and(|t| t.len() > 100),
        "{}",
        st["tasks"]
    );
    sb.wait_line("order: 0 out of place, sum 499500", 30);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_task_blocked_on_a_socket_does_not_hold_up_a_sleeping_one() {
    // A client reads from a server that never writes; beside it a task
    // sleeps 10 ms fifty times and reports how late it woke at worst.
    let init = format!(
        r#"{LO_UP}
local sys = require "sys"
local function now() return sys.clock_gettime("monotonic").time end
local server = assert(io.tcp.listen("127.0.0.1", 7001))
task(function() local c = server:accept(); sleep(3600) end)
local reader = task(function()
  local c = assert(io.tcp.connect("127.0.0.1", 7001))
  print("reader: waiting")
  return c:read("*l")
end)
task(function()
  local worst = 0
  for i = 1, 50 do
    local t = now()
    sleep(0.01)
    worst = math.max(worst, now() - t - 0.01)
  end
  print(string.format("sleeper: worst lateness %.1f ms", worst * 1000))
  print("reader still waiting: " .. tostring(not reader.done))
  -- A timed read gives up with "timed out".
  local c = assert(io.tcp.connect("127.0.0.1", 7001))
  print("timed read: " .. tostring(select(2, c:read("*l", 0.2))))
end)
"#
    );
    let mut sb = Sandbox::start("tasks-sock", &[("init.lua", &init)]);
    sb.wait_line("reader: waiting", 20);
    let line = sb.wait_line("sleeper: worst lateness", 20);
    let ms: f64 = line
        .split("lateness ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // Blocking the loop on the read would make this infinite.
    assert!(ms < 25.0, "{line}");
    sb.wait_line("reader still waiting: true", 5);
    sb.wait_line("timed read: timed out", 5);
    let st = sb.status();
    let tasks = st["tasks"].as_array().expect("tasks");
    assert!(
        tasks.iter().any(|t| t["waits"] == "fd"),
        "the reader waits on its socket: {tasks:?}"
    );
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_runaway_task_is_stopped_by_the_budget_and_the_others_run_on() {
    let init = r#"
local looping = task(function() local n = 0 while true do n = n + 1 end end)
task(function()
  for i = 1, 5 do sleep(0.1) end
  print("ticker done")
  local r, err = looping:join()
  print("join: " .. tostring(r) .. " " .. tostring(err))
  -- Errors end only their task; join gives the message with its place.
  local bad = task(function() sleep(0.01); error("boom") end)
  print("bad: " .. tostring(select(2, bad:join())))
  local good = task(function(a, b) sleep(0.01); return a + b, "x" end, 2, 3)
  print("good: " .. table.concat({ good:join() }, ","))
  local long = task(function() sleep(60) end)
  print("cancel: " .. tostring(long:cancel()))
  print("cancelled: " .. tostring(select(2, long:join(1))))
end)
"#;
    let mut sb = Sandbox::start("tasks-budget", &[("init.lua", init)]);
    let l = sb.wait_line("instruction limit exceeded", 60);
    assert!(l.contains("init.lua:2"), "{l}");
    sb.wait_line("ticker done", 20);
    sb.wait_line("join: nil init.lua:2: instruction limit exceeded", 10);
    sb.wait_line("bad: init.lua:9: boom", 10);
    sb.wait_line("Lua error in task init.lua:9: init.lua:9: boom", 10);
    sb.wait_line("good: 5,x", 10);
    sb.wait_line("cancel: true", 10);
    sb.wait_line("cancelled: cancelled", 10);
    // ctl eval can start a task that outlives the eval.
    let out = sb.ctl(&[
        "eval",
        "task(function() sleep(0.3) print('from eval task') end) return 'started'",
    ]);
    assert!(out.status.success(), "{out:?}");
    sb.wait_line("from eval task", 10);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_background_task_from_init_lua_runs_while_services_start() {
    let init = r#"
task(function()
  for i = 1, 5 do print("background " .. i); sleep(0.3) end
end)
"#;
    let svc = r#"service "s" { exec = { "/bin/sh", "-c", "echo service-up; exec sleep 3600" } }"#;
    let mut sb = Sandbox::start("tasks-bg", &[("init.lua", init), ("services/s.lua", svc)]);
    sb.wait_line("service-up", 20);
    // The service came up while the task still had lines to print.
    assert_eq!(sb.count("background 5"), 0, "{}", sb.console());
    let st = sb.status();
    assert!(
        st["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("task init.lua:2")))),
        "{}",
        st["tasks"]
    );
    sb.wait_line("background 5", 10);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn the_lem_chat_example_serves_three_clients() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chat/init.lua"),
    )
    .expect("examples/chat/init.lua");
    let init = format!("{LO_UP}{example}");
    // Three clients nobody here wrote the server for: python sockets.
    let clients = r#"
import socket, time
cs = []
for i in range(3):
    c = socket.create_connection(("127.0.0.1", 5555), timeout=10)
    f = c.makefile("r")
    assert f.readline().startswith("Welcome"), "no welcome"
    cs.append((c, f))
time.sleep(0.2)
for i, (c, f) in enumerate(cs):
    c.sendall(f"hello from {i}\n".encode())
    time.sleep(0.1)
for i, (c, f) in enumerate(cs):
    got = sorted(f.readline().strip() for _ in range(2))
    want = sorted(f"hello from {j}" for j in range(3) if j != i)
    assert got == want, (i, got, want)
    print(f"client {i} got {got}", flush=True)
print("chat ok", flush=True)
"#;
    let svc = format!(
        "service \"clients\" {{ oneshot = true, exec = {{ \"python3\", \"-c\", [[{clients}]] }} }}\n"
    );
    let mut sb = Sandbox::start(
        "tasks-chat",
        &[("init.lua", &init), ("services/c.lua", &svc)],
    );
    sb.wait_line("chat: listening on port 5555", 20);
    sb.wait_line("chat ok", 30);
    assert_eq!(sb.count("client "), 3, "{}", sb.console());
    // The three connection tasks ended with their clients.
    sb.wait_status("only the server task left", 10, |v| {
        v["tasks"].as_array().is_some_and(|t| t.len() == 1)
    });
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn moonlit_lua_runs_a_script_on_the_loop_and_exits_when_its_tasks_end() {
    let dir = common::scratch("lua-cli");
    let script = dir.join("s.lua");
    std::fs::write(
        &script,
        r#"
local a, b = ...
print("args " .. arg[0]:match("[^/]+$") .. " " .. arg[1] .. " " .. tostring(a) .. " " .. tostring(b))
local t = task(function() sleep(0.3); print("task done"); return 42 end)
task(function() print("joined " .. t:join()) end)
print("main done")
"#,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new(common::BIN)
        .arg("lua")
        .arg(&script)
        .args(["x", "y"])
        .output()
        .expect("moonlit lua");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // Only the script's own lines: no boot report around them.
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(
        lines,
        ["args s.lua x x y", "main done", "task done", "joined 42"],
        "{so}"
    );
    assert!(t0.elapsed() >= std::time::Duration::from_millis(300));
    // An error: exit status 1, the message with its place.
    std::fs::write(
        &script,
        "task(function() sleep(0.05) error('late boom') end)\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("lua")
        .arg(&script)
        .output()
        .expect("moonlit lua");
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("s.lua:1: late boom"), "{all}");
    // A script with nothing to wait for ends at once.
    std::fs::write(&script, "print('hi')\n").unwrap();
    let out = std::process::Command::new("timeout")
        .args(["10", common::BIN, "lua"])
        .arg(&script)
        .output()
        .expect("moonlit lua");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // A script that is not there.
    let out = std::process::Command::new(common::BIN)
        .args(["lua", "/nonexistent/x.lua"])
        .output()
        .expect("moonlit lua");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_tasks_sockets_close_when_it_ends_and_the_task_cap_is_an_error() {
    let init = format!(
        r#"{LO_UP}
local server = assert(io.tcp.listen("127.0.0.1", 7002))
task(function()
  local c = assert(server:accept())
  -- The peer's task ended with an error: its socket was closed, so the
  -- server reads the end of the stream.
  print("server read: " .. tostring(c:read("*l", 5)))
end)
task(function()
  local c = assert(io.tcp.connect("127.0.0.1", 7002))
  sleep(0.1)
  error("client gives up")
end)
task(function()
  sleep(0.5)
  local hs, refused = {{}}, nil
  for i = 1, 10001 do
    local h, err = task(function() sleep(60) end)
    if not h then refused = err break end
    hs[#hs + 1] = h
  end
  print("started " .. #hs .. ", then: " .. tostring(refused))
  for _, h in ipairs(hs) do h:cancel() end
  sleep(0.1)
  print("after cancel")
end)
"#
    );
    let mut sb = Sandbox::start("tasks-own", &[("init.lua", &init)]);
    sb.wait_line("client gives up", 10);
    sb.wait_line("server read: nil", 10);
    let l = sb.wait_line("started ", 60);
    assert!(
        l.contains("then: task: too many tasks (the limit is 10000)"),
        "{l}"
    );
    sb.wait_line("after cancel", 20);
    sb.wait_status("the cancelled tasks are gone", 10, |v| {
        v["tasks"].as_array().is_some_and(|t| t.len() < 5)
    });
    assert_eq!(sb.poweroff(&[]), 0);
}
