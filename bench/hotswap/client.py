#!/usr/bin/env python3
"""Control-socket client for bench/hotswap/run.sh.

Talks moonlit's control protocol (one JSON request line per connection, one
JSON reply line) straight over the unix socket and times it with
time.perf_counter, so no process start-up is in the figures. The CLI
(`moonlit ctl`) is timed separately, for reference only.

  client.py ready   SOCK N TIMEOUT_S
  client.py reload  SOCK CFGDIR SERVICE TRIALS CLI_TRIALS MOONLIT OUT.json
  client.py reexec  SOCK TRIALS CLI_TRIALS MOONLIT OUT.json
  client.py poweroff SOCK
  client.py table   RELOAD.json REEXEC.json   (prints the markdown table)

Checks print a line starting with "FAIL:" on stderr and make the exit status
1; a benchmark never fails on a slow figure.
"""

import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import time

failures = []
# HOTSWAP_NEGATIVE=1: break one expectation on purpose (see run.sh).
NEGATIVE = os.environ.get("HOTSWAP_NEGATIVE") == "1"


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def connect(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    return s


def read_line(s):
    """Reads one reply line; None on EOF before a full line."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            return None
        buf += chunk
    return json.loads(buf)


def request(sock_path, cmd, **extra):
    s = connect(sock_path)
    try:
        s.sendall((json.dumps({"v": 1, "cmd": cmd, **extra}) + "\n").encode())
        return read_line(s)
    finally:
        s.close()


def status(sock_path):
    st = request(sock_path, "status")
    if st is None:
        raise RuntimeError("status: connection closed without a reply")
    return st.get("status", st)


def svc_map(st):
    return {s["name"]: s for s in st["services"]}


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def summary(values):
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": pct(values, 90),
        "min": min(values),
        "max": max(values),
    }


def cli_time(moonlit, sock_path, cmd):
    t0 = time.perf_counter()
    p = subprocess.run(
        [moonlit, "ctl", "--socket", sock_path, "--json", cmd],
        capture_output=True,
        text=True,
    )
    ms = (time.perf_counter() - t0) * 1000
    return ms, p


def cmd_ready(sock_path, n, timeout_s):
    end = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < end:
        try:
            st = status(sock_path)
            running = sum(1 for s in st["services"] if s["state"] == "running")
            last = f"ready={st.get('ready')} running={running}/{len(st['services'])}"
            if st.get("ready") and running == n and len(st["services"]) == n:
                log(f"sandbox ready: {running} services running")
                return 0
        except (OSError, RuntimeError, ValueError) as e:
            last = str(e)
        time.sleep(0.05)
    fail(f"sandbox not ready with {n} running services after {timeout_s} s ({last})")
    return 1


def set_arg(path, value):
    with open(path) as f:
        text = f.read()
    new, k = re.subn(r'"/bin/sleep", "\d+"', f'"/bin/sleep", "{value}"', text)
    if k != 1:
        raise RuntimeError(f"{path}: cannot find the sleep argument")
    with open(path, "w") as f:
        f.write(new)


def cmd_reload(sock_path, cfgdir, target, trials, cli_trials, moonlit, out):
    module = os.path.join(cfgdir, "services", f"{target}.lua")
    base = svc_map(status(sock_path))
    others = {n: s for n, s in base.items() if n != target}
    for n, s in base.items():
        if s["state"] != "running" or not s["pid"]:
            fail(f"before the reloads: {n} is {s['state']}, not running")
    rtt, init_ms, respawn = [], [], []
    gen_before = status(sock_path)["generation"]
    args = ["100001", "100000"]
    for t in range(trials + cli_trials):
        set_arg(module, args[t % 2])
        if t == 0 and NEGATIVE:
            # Negative control: a second module changes too; the checks
            # below must report it.
            other = sorted(others)[0]
            set_arg(os.path.join(cfgdir, "services", f"{other}.lua"), "100002")
            log(f"negative control: {other}.lua edited as well")
        old_pid = svc_map(status(sock_path))[target]["pid"]
        use_cli = t >= trials
        t0 = time.perf_counter()
        if use_cli:
            ms, p = cli_time(moonlit, sock_path, "reload")
            try:
                reply = json.loads(p.stdout)
            except ValueError:
                fail(f"ctl reload printed no JSON (exit {p.returncode}): {p.stdout!r} {p.stderr!r}")
                continue
            if p.returncode != 0:
                fail(f"ctl reload exited {p.returncode}")
        else:
            reply = request(sock_path, "reload")
            ms = (time.perf_counter() - t0) * 1000
        # Time until the changed service runs again with a new pid
        # (polled with status requests right after the reply).
        new_pid = None
        while time.perf_counter() - t0 < 10:
            s = svc_map(status(sock_path))[target]
            if s["state"] == "running" and s["pid"] and s["pid"] != old_pid:
                new_pid = s["pid"]
                break
        back_ms = (time.perf_counter() - t0) * 1000
        label = "ctl reload (CLI)" if use_cli else "reload"
        if reply is None or not reply.get("ok"):
            fail(f"trial {t + 1}: {label} failed: {reply}")
            continue
        if len(reply.get("changed", [])) != 1 or target not in reply["changed"][0]:
            fail(f"trial {t + 1}: changed modules {reply.get('changed')}, expected only {target}")
        outs = reply.get("services", {})
        if outs.get(target) != "restarted":
            fail(f"trial {t + 1}: {target} outcome {outs.get(target)!r}, expected 'restarted'")
        bad = {n: o for n, o in outs.items() if n != target and o != "unchanged"}
        if bad or len(outs) != len(base):
            fail(f"trial {t + 1}: outcomes other than 'unchanged' {bad} ({len(outs)} services in the reply)")
        if new_pid is None:
            fail(f"trial {t + 1}: {target} not running again with a new pid within 10 s")
        now = svc_map(status(sock_path))
        for n, s in others.items():
            c = now.get(n)
            if c is None or c["pid"] != s["pid"] or c["restarts"] != 0 or c["state"] != "running":
                fail(f"trial {t + 1}: {n} changed: before {s['pid']}/{s['restarts']} now {c}")
        if use_cli:
            log(f"{label} trial {t - trials + 1}: {ms:.2f} ms wall (process start included)")
            rtt_cli = out.setdefault("cli_reload_ms", [])
            rtt_cli.append(ms)
        else:
            rtt.append(ms)
            init_ms.append(reply.get("ms"))
            respawn.append(back_ms)
            log(f"{label} trial {t + 1}: {ms:.3f} ms request->reply (init's ms={reply.get('ms')}), "
                f"{target} running again after {back_ms:.2f} ms")
        time.sleep(0.05)
    gen_after = status(sock_path)["generation"]
    if gen_after - gen_before != trials + cli_trials:
        fail(f"generation went from {gen_before} to {gen_after}, expected +{trials + cli_trials}")
    out["reload_ms"] = rtt
    out["reload_init_ms"] = init_ms
    out["reload_respawn_ms"] = respawn
    out["services"] = len(base)
    out["trials"] = trials


def reexec_once(sock_path, before):
    """One re-exec. Returns (ms until a new connection's status is answered
    by the new image, ms until the reexec reply, status polls, new status)."""
    a = connect(sock_path)
    t0 = time.perf_counter()
    a.sendall(b'{"v":1,"cmd":"reexec"}\n')
    reply_ms, reply, new_ms, new_st, polls = None, None, None, None, 0
    abuf = b""
    while new_ms is None or reply_ms is None:
        if time.perf_counter() - t0 > 10:
            raise RuntimeError("re-exec not finished within 10 s")
        if new_ms is None:
            polls += 1
            try:
                b = connect(sock_path)
            except OSError:
                continue
            b.sendall(b'{"v":1,"cmd":"status"}\n')
            bbuf = b""
        else:
            b = None
        while True:
            rl = [a] if reply_ms is None else []
            if b is not None:
                rl.append(b)
            if not rl:
                break
            r, _, _ = select.select(rl, [], [], 10)
            if not r:
                raise RuntimeError("no reply within 10 s")
            if a in r:
                chunk = a.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("reexec connection closed without a reply")
                abuf += chunk
                if abuf.endswith(b"\n"):
                    reply_ms = (time.perf_counter() - t0) * 1000
                    reply = json.loads(abuf)
                    a.close()
            if b is not None and b in r:
                chunk = b.recv(1 << 20)
                if chunk:
                    bbuf += chunk
                if not chunk or bbuf.endswith(b"\n"):
                    tb = time.perf_counter()
                    b.close()
                    if chunk:
                        st = json.loads(bbuf)
                        st = st.get("status", st)
                        if st.get("reexecs", 0) > before:
                            new_ms = (tb - t0) * 1000
                            new_st = st
                    b = None
                    break
    return new_ms, reply_ms, reply, polls, new_st


def cmd_reexec(sock_path, trials, cli_trials, moonlit, out):
    st0 = status(sock_path)
    base = svc_map(st0)
    for n, s in base.items():
        if s["state"] != "running" or not s["pid"]:
            fail(f"before the re-execs: {n} is {s['state']}, not running")
    new_l, reply_l = [], []
    count = st0["reexecs"]
    for t in range(trials + cli_trials):
        use_cli = t >= trials
        if use_cli:
            ms, p = cli_time(moonlit, sock_path, "reexec")
            try:
                reply = json.loads(p.stdout)
            except ValueError:
                reply = None
            if p.returncode != 0 or not reply or not reply.get("ok"):
                fail(f"ctl reexec (CLI) failed, exit {p.returncode}: {p.stdout!r} {p.stderr!r}")
            out.setdefault("cli_reexec_ms", []).append(ms)
            log(f"ctl reexec (CLI) trial {t - trials + 1}: {ms:.2f} ms wall (process start included)")
            st = status(sock_path)
        else:
            if t == 0 and NEGATIVE:
                # Negative control: one service gets a new pid before the
                # first re-exec; the checks below must report it.
                victim = sorted(base)[0]
                r = request(sock_path, "restart", name=victim)
                log(f"negative control: restarted {victim}: {r}")
                time.sleep(0.2)
            new_ms, reply_ms, reply, polls, st = reexec_once(sock_path, count)
            if not reply or not reply.get("ok") or reply.get("message") != "re-executed":
                fail(f"trial {t + 1}: reexec reply {reply}")
            new_l.append(new_ms)
            reply_l.append(reply_ms)
            log(f"reexec trial {t + 1}: new image answered status after {new_ms:.2f} ms "
                f"({polls} status requests), reexec reply after {reply_ms:.2f} ms")
        if st.get("reexecs") != count + 1:
            fail(f"trial {t + 1}: reexecs counter {st.get('reexecs')}, expected {count + 1}")
        count = st.get("reexecs", count + 1)
        if st.get("pid") != 1:
            fail(f"trial {t + 1}: the init's pid is {st.get('pid')}, not 1")
        now = svc_map(st)
        for n, s in base.items():
            c = now.get(n)
            if c is None or c["pid"] != s["pid"] or c["restarts"] != 0 or c["state"] != "running":
                fail(f"trial {t + 1}: {n} changed: before pid {s['pid']}, now {c}")
        if len(now) != len(base):
            fail(f"trial {t + 1}: {len(now)} services after the re-exec, {len(base)} before")
        time.sleep(0.05)
    # Every pid again, from a fresh status after the last re-exec.
    now = svc_map(status(sock_path))
    same = sum(1 for n, s in base.items() if n in now and now[n]["pid"] == s["pid"])
    log(f"after {trials + cli_trials} re-execs: {same}/{len(base)} services have their first pid")
    out["reexec_status_ms"] = new_l
    out["reexec_reply_ms"] = reply_l
    out["services"] = len(base)
    out["trials"] = trials
    out["same_pids"] = same


def fmt(d, key, unit="ms"):
    s = d.get(key + "_summary")
    if not s:
        return "n/a"
    return (f"median {s['median']:.2f} {unit}, p90 {s['p90']:.2f}, "
            f"min {s['min']:.2f}, max {s['max']:.2f} ({s['n']} trials)")


def cmd_table(reload_path, reexec_path):
    rl = json.load(open(reload_path))
    rx = json.load(open(reexec_path))
    n, m = rl.get("services", "?"), rx.get("services", "?")
    im = rl.get("reload_init_ms") or []
    im_txt = (f"median {statistics.median(im):.0f} ms, max {max(im)} ms"
              if im else "n/a")
    rows = [
        ("Figure", "Measured", "Goal"),
        ("---", "---", "---"),
        (f"Reload, {n} modules, 1 changed (argv): request to reply, direct socket client",
         fmt(rl, "reload_ms"), "< 10 ms"),
        ("Same reloads: the init's own `ms` field (whole milliseconds)", im_txt, "-"),
        ("Same reloads: request until the changed service runs again with a new pid",
         fmt(rl, "reload_respawn_ms"), "-"),
        (f"Same reloads: restarts of the other {n - 1 if isinstance(n, int) else '?'} services",
         "0 (every trial; pids unchanged, restarts == 0)" if not rl["failures"]
         else f"**FAILED**: {len(rl['failures'])} check(s)", "0"),
        ("Reload via `moonlit ctl --json reload` (CLI wall time, process start included)",
         fmt(rl, "cli_reload_ms"), "-"),
        (f"Re-exec, {m} services: request until the new image answers `status` on a new connection",
         fmt(rx, "reexec_status_ms"), "< 50 ms"),
        ("Same re-execs: request until the reexec reply (sent by the new image)",
         fmt(rx, "reexec_reply_ms"), "-"),
        ("Same re-execs: service pids unchanged",
         f"{rx.get('same_pids')}/{m} after every re-exec" if not rx["failures"]
         else f"**FAILED**: {len(rx['failures'])} check(s)", "all"),
        ("Re-exec via `moonlit ctl --json reexec` (CLI wall time, process start included)",
         fmt(rx, "cli_reexec_ms"), "-"),
    ]
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    return 0


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, sock_path = argv[1], argv[2]
    if cmd == "ready":
        return cmd_ready(sock_path, int(argv[3]), float(argv[4]))
    if cmd == "table":
        return cmd_table(argv[2], argv[3])
    if cmd == "poweroff":
        r = request(sock_path, "poweroff")
        if not r or not r.get("ok"):
            fail(f"poweroff: {r}")
        return 1 if failures else 0
    out = {}
    if cmd == "reload":
        _, _, _, cfgdir, target, trials, cli, moonlit, path = argv
        cmd_reload(sock_path, cfgdir, target, int(trials), int(cli), moonlit, out)
    elif cmd == "reexec":
        _, _, _, trials, cli, moonlit, path = argv
        cmd_reexec(sock_path, int(trials), int(cli), moonlit, out)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for k in list(out):
        if isinstance(out[k], list) and out[k] and all(isinstance(x, (int, float)) for x in out[k]):
            out[k + "_summary"] = summary(out[k])
    out["failures"] = failures
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
