//! `moonlit analyze` against a sandboxed init: the JSON timeline agrees with
//! the console's own line stamps, blame and the critical chain come out as
//! the configuration's delays and dependencies make them, the SVG chart
//! renders (rsvg-convert) with one bar per service, the record is the first
//! boot's across a reload and a re-exec, and bad arguments are refused.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// Six services. The chain is base (ready after 600 ms) -> db (requires
/// base, after cache; +250 ms) -> app (after db; +400 ms), app last; cache
/// (+100 ms) gates only db and worker, and is ready long before base, so it
/// is on no chain; prep is a oneshot (+20 ms), worker is ready at its exec.
/// At least 100 ms between neighbours in blame keeps the order certain.
const SERVICES: &str = r#"
service "base" { notify = true, exec = { "/bin/sh", "-c", "sleep 0.6; systemd-notify --ready; exec sleep 1000" } }
service "cache" { notify = true, exec = { "/bin/sh", "-c", "sleep 0.1; systemd-notify --ready; exec sleep 1000" } }
service "db" { notify = true, requires = { "base" }, after = { "cache" }, exec = { "/bin/sh", "-c", "sleep 0.25; systemd-notify --ready; exec sleep 1000" } }
service "app" { notify = true, after = { "db" }, exec = { "/bin/sh", "-c", "sleep 0.4; systemd-notify --ready; exec sleep 1000" } }
service "worker" { after = { "cache" }, exec = { "/bin/sleep", "1000" } }
service "prep" { oneshot = true, exec = { "/bin/sh", "-c", "sleep 0.02" } }
"#;

const NAMES: [&str; 6] = ["base", "cache", "db", "app", "worker", "prep"];
/// Least start-to-ready time each must show (its sleep).
const AT_LEAST: [(&str, u64); 5] = [
    ("base", 600),
    ("cache", 100),
    ("db", 250),
    ("app", 400),
    ("prep", 20),
];
/// Stamps and records are whole ms of two clocks: they may disagree by this.
const ROUNDING: f64 = 2.0;
/// A recorded readiness comes after its console line ("NAME: ready", the
/// oneshot's exit), in the same turn of the loop: at most this much later.
const TOLERANCE: f64 = 25.0;
/// A spawn is recorded as it begins, its "started, pid N" line is written
/// once the child has exec'd: on an idle machine 1-2 ms later, on a loaded
/// one (the vfork-style parent waits for the child's exec) tens of ms.
const SPAWN_SLACK: f64 = 100.0;

fn need_systemd_notify() {
    assert!(
        Command::new("systemd-notify")
            .arg("--version")
            .output()
            .is_ok(),
        "this test needs systemd-notify (Debian package systemd) as the services' sd_notify client"
    );
}

fn boot(name: &str) -> Sandbox {
    need_systemd_notify();
    // --debug: the console then has a "NAME: started, pid N" line per spawn.
    let sb = Sandbox::start_with(
        name,
        &[
            ("services/all.lua", SERVICES),
            ("network.lua", r#"network.interface "lo" { up = true }"#),
            // Services are held until init.lua ends.
            ("init.lua", "sleep(0.05)"),
        ],
        &["--debug"],
    );
    sb.ready();
    sb
}

fn analyze(sb: &Sandbox, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("analyze")
        .arg("--socket")
        .arg(&sb.sock)
        .args(args)
        .output()
        .expect("run moonlit analyze")
}

fn analyze_json(sb: &Sandbox) -> Value {
    let out = analyze(sb, &["--json"]);
    assert!(
        out.status.success(),
        "analyze --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("analyze json")
}

/// The console stamp of the first line containing `pat`, in ms since boot
/// (CLOCK_BOOTTIME: the console writes `[ seconds.mmm] `).
fn stamp_ms(sb: &Sandbox, pat: &str) -> f64 {
    let line = sb.wait_line(pat, 10);
    let inner = line
        .strip_prefix('[')
        .and_then(|l| l.split_once(']'))
        .map(|(s, _)| s.trim())
        .unwrap_or_else(|| panic!("no stamp on {line:?}"));
    inner.parse::<f64>().expect("stamp") * 1000.0
}

/// The console line that shows `name` became ready.
fn ready_line(name: &str) -> String {
    match name {
        "prep" => "moonlit: prep: exited with code 0".to_string(),
        // Ready at its exec: no line of its own.
        "worker" => "moonlit: worker: started, pid".to_string(),
        n => format!("moonlit: {n}: ready"),
    }
}

/// A service's start-to-ready time by its console lines (shorter than
/// the real one by the time its spawn took).
fn logged_start_to_ready(sb: &Sandbox, name: &str) -> f64 {
    stamp_ms(sb, &ready_line(name)) - stamp_ms(sb, &format!("moonlit: {name}: started, pid"))
}

fn ms(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a time in ms: {v}"))
}

/// `recorded` is at most `before` ms before and `after` ms after `logged`.
fn near(what: &str, recorded: f64, logged: f64, before: f64, after: f64) {
    assert!(
        recorded >= logged - before && recorded <= logged + after,
        "{what}: recorded at {recorded} ms, logged at {logged} ms after t0 \
         (allowed: {before} ms before to {after} ms after)"
    );
}

#[test]
fn json_timeline_matches_the_log_and_blame_and_chain_are_right() {
    let sb = boot("analyze-json");
    let j = analyze_json(&sb);
    assert_eq!(j["schema"], 1);
    assert_eq!(j["mode"], "sandbox");
    assert_eq!(j["complete"], true);
    let t0 = ms(&j["t0_boottime_ms"]) as f64;
    let services: BTreeMap<String, Value> = j["timeline"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| (s["name"].as_str().expect("name").to_string(), s.clone()))
        .collect();
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut n = NAMES.to_vec();
            n.sort();
            n
        },
        "one entry per service"
    );

    // Each spawn and ready against the console's stamps.
    for name in NAMES {
        let s = &services[name];
        let spawn = ms(&s["spawn_ms"]) as f64;
        let started = stamp_ms(&sb, &format!("moonlit: {name}: started, pid")) - t0;
        near(
            &format!("{name} spawn"),
            spawn,
            started,
            SPAWN_SLACK,
            ROUNDING,
        );
        let ready = ms(&s["ready_ms"]) as f64;
        if name == "worker" {
            // Ready at its exec: no line of its own.
            assert_eq!(s["ready_ms"], s["spawn_ms"]);
        } else {
            let line = ready_line(name);
            let logged = stamp_ms(&sb, &line) - t0;
            near(&format!("{name} ready"), ready, logged, ROUNDING, TOLERANCE);
        }
        assert_eq!(
            ms(&s["start_to_ready_ms"]),
            ms(&s["ready_ms"]) - ms(&s["spawn_ms"])
        );
    }
    assert_eq!(services["worker"]["kind"], "started");
    assert_eq!(services["prep"]["kind"], "oneshot");
    assert_eq!(services["base"]["kind"], "notify");
    assert_eq!(services["db"]["requires"], serde_json::json!(["base"]));
    for (name, least) in AT_LEAST {
        let d = ms(&services[name]["start_to_ready_ms"]);
        assert!(
            d >= least,
            "{name}: start to ready {d} ms < its {least} ms sleep"
        );
    }
    // A dependent starts only once what it waits for is ready.
    for (dep, on) in [
        ("db", "base"),
        ("db", "cache"),
        ("app", "db"),
        ("worker", "cache"),
    ] {
        assert!(
            ms(&services[dep]["spawn_ms"]) >= ms(&services[on]["ready_ms"]),
            "{dep} spawned before {on} was ready: {j:#}"
        );
    }

    // READY: its line's stamp, and the boot line's total and steps.
    let ready = ms(&j["ready_ms"]);
    let logged = stamp_ms(&sb, "moonlit: READY") - t0;
    near("READY", ready as f64, logged, TOLERANCE, ROUNDING);
    let last_ready = services.values().map(|s| ms(&s["ready_ms"])).max();
    assert!(
        last_ready.is_some_and(|l| l <= ready),
        "READY at {ready} ms before the last service was ready ({last_ready:?})"
    );
    let line = sb.wait_line("moonlit: boot complete in ", 5);
    let rest = line.split("boot complete in ").nth(1).expect("total");
    let total: u64 = rest
        .split(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .expect("total ms");
    assert_eq!(ready, total, "READY is the boot line's total");
    let inside = rest
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(s, _)| s)
        .expect("steps");
    let steps = j["timeline"]["steps"].as_array().expect("steps");
    let logged: Vec<(String, u64)> = inside
        .split(", ")
        .map(|p| {
            let (name, d) = p.trim_end_matches(" ms").rsplit_once(' ').expect("step");
            (name.to_string(), d.parse().expect("step ms"))
        })
        .collect();
    // The boot line gives each step's duration, "lua runtime" from t0.
    let recorded: Vec<(String, u64)> = steps
        .iter()
        .map(|s| {
            let name = s["name"].as_str().expect("name").to_string();
            let from = if name == "lua runtime" {
                0
            } else {
                ms(&s["start_ms"])
            };
            (name, ms(&s["end_ms"]) - from)
        })
        .collect();
    assert_eq!(recorded, logged, "the steps are the boot line's");
    assert_eq!(
        recorded.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "stage 1",
            "lua runtime",
            "modules",
            "init.lua",
            "network",
            "services"
        ]
    );
    let step = |n: &str| steps.iter().find(|s| s["name"] == n).expect("step");
    let init_lua = step("init.lua");
    assert!(ms(&init_lua["end_ms"]) - ms(&init_lua["start_ms"]) >= 50);
    for name in NAMES {
        assert!(
            ms(&services[name]["spawn_ms"]) >= ms(&step("network")["end_ms"]),
            "{name} spawned before init.lua and the network were done"
        );
    }
    for w in steps.windows(2) {
        assert!(
            ms(&w[1]["start_ms"]) >= ms(&w[0]["end_ms"]),
            "steps overlap: {steps:?}"
        );
    }

    // Blame: slowest first. The sleeps make it base, app, db, cache, prep,
    // worker on an idle machine; on a loaded one process start-up can
    // stretch a service, so the oracle is the console: each service's
    // start-to-ready from its lines' stamps. Two services whose logged
    // times are further apart than the stamps' slack allows must be in
    // that order.
    let blame: Vec<&str> = j["blame"]
        .as_array()
        .expect("blame")
        .iter()
        .map(|b| b["name"].as_str().expect("name"))
        .collect();
    let mut sorted = blame.clone();
    sorted.sort();
    let mut all = NAMES.to_vec();
    all.sort();
    assert_eq!(sorted, all, "every service is in blame once");
    let times: Vec<u64> = j["blame"]
        .as_array()
        .expect("blame")
        .iter()
        .map(|b| ms(&b["ms"]))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "blame is slowest first: {times:?}"
    );
    for (i, a) in blame.iter().enumerate() {
        for b in &blame[i + 1..] {
            let (la, lb) = (logged_start_to_ready(&sb, a), logged_start_to_ready(&sb, b));
            assert!(
                la + SPAWN_SLACK + TOLERANCE >= lb,
                "blame puts {a} ({la} ms by the log) before {b} ({lb} ms): {blame:?}"
            );
        }
    }
    assert_eq!(blame.last(), Some(&"worker"), "ready at its exec: 0 ms");

    // The critical chain: base -> db -> app, with each link's times.
    let chain = j["critical_chain"].as_array().expect("chain");
    let names: Vec<&str> = chain
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["base", "db", "app"], "{j:#}");
    for l in chain {
        let s = &services[l["name"].as_str().expect("name")];
        assert_eq!(l["spawn_ms"], s["spawn_ms"]);
        assert_eq!(l["ready_ms"], s["ready_ms"]);
        assert_eq!(l["ms"], s["start_to_ready_ms"]);
    }
    assert_eq!(ms(&chain[0]["gap_ms"]), 0);
    for w in chain.windows(2) {
        assert_eq!(
            ms(&w[1]["gap_ms"]),
            ms(&w[1]["spawn_ms"]) - ms(&w[0]["ready_ms"])
        );
    }
    // Negative control: cache also gates db, but was ready long before base.
    for off in ["cache", "worker", "prep"] {
        assert!(!names.contains(&off), "{off} is on no chain: {names:?}");
    }

    // The text report says the same.
    let out = analyze(&sb, &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("READY {ready} ms after t0")),
        "{text}"
    );
    let blame_lines: Vec<&str> = text
        .split("Blame (start to ready):\n")
        .nth(1)
        .expect("blame section")
        .lines()
        .take(6)
        .map(|l| l.split_whitespace().last().unwrap_or(""))
        .collect();
    assert_eq!(blame_lines, blame);
    let chain_text = text.split("Critical chain").nth(1).expect("chain section");
    let app = chain_text.find("  app @").expect("app first");
    let db = chain_text.find("└─db @").expect("db under it");
    let base = chain_text.find("  └─base @").expect("base under db");
    assert!(app < db && db < base, "{chain_text}");
    assert!(!chain_text.contains("cache"), "{chain_text}");
}

/// Rows of pixels showing one of `colours` (RGB), as runs of consecutive
/// rows: a bar a run.
fn bar_runs(img: &Picture, colours: &[[u8; 3]]) -> usize {
    let mut runs = 0;
    let mut inside = false;
    for y in 0..img.height {
        let hit = (0..img.width).any(|x| colours.contains(&img.rgb(x, y)));
        if hit && !inside {
            runs += 1;
        }
        inside = hit;
    }
    runs
}

struct Picture {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl Picture {
    fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * self.channels;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

fn render_png(svg: &std::path::Path, png: &std::path::Path) -> Picture {
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(png)
        .arg(svg)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test renders the chart with rsvg-convert (Debian package librsvg2-bin): {e}"
            )
        });
    assert!(
        out.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(png).expect("png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut data = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut data).expect("png frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    data.truncate(info.buffer_size());
    Picture {
        width: info.width as usize,
        height: info.height as usize,
        channels,
        data,
    }
}

fn hex(c: &str) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).expect("hex colour");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[test]
fn svg_chart_renders_one_bar_per_service() {
    let sb = boot("analyze-svg");
    let j = analyze_json(&sb);
    let svg = sb.dir.join("boot.svg");
    let out = analyze(&sb, &["--svg", svg.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "analyze --svg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("chart written to"));
    let text = std::fs::read_to_string(&svg).expect("svg written");

    // As XML: one labelled bar element per service, one per step.
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    let rects: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .collect();
    let class_has = |n: &roxmltree::Node, c: &str| {
        n.attribute("class")
            .is_some_and(|v| v.split_whitespace().any(|w| w == c))
    };
    let mut bars: Vec<&str> = rects
        .iter()
        .filter(|n| class_has(n, "service"))
        .map(|n| n.attribute("data-name").expect("bar names its service"))
        .collect();
    bars.sort();
    let mut names = NAMES.to_vec();
    names.sort();
    assert_eq!(bars, names, "one bar per service");
    for r in rects.iter().filter(|n| class_has(n, "service")) {
        let name = r.attribute("data-name").expect("name");
        let title = r
            .children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|t| t.text())
            .unwrap_or_else(|| panic!("{name}'s bar has no title"));
        assert!(title.starts_with(name), "{title}");
        let w: f64 = r
            .attribute("width")
            .expect("width")
            .parse()
            .expect("number");
        assert!(w >= 3.0, "{name}'s bar is visible");
    }
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some("label"))
        .filter_map(|n| n.text())
        .collect();
    for n in NAMES {
        assert!(labels.contains(&n), "no label {n}: {labels:?}");
    }
    let chain_bars: Vec<&str> = rects
        .iter()
        .filter(|n| class_has(n, "chain"))
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    assert_eq!(chain_bars, ["base", "db", "app"]);
    let steps = j["timeline"]["steps"].as_array().expect("steps").len();
    assert_eq!(rects.iter().filter(|n| class_has(n, "step")).count(), steps);
    let ticks = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("tick-label"))
        .count();
    assert!(ticks >= 3, "a time axis with labelled ticks ({ticks})");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("ready"))
            .count(),
        1,
        "one READY line"
    );

    // As a picture: count the bars by colour, row by row.
    let colours = |key: &str| {
        let at = text.find(&format!("class=\"{key}\"")).expect("a bar");
        let fill = &text[at..];
        let f = fill.find("fill=\"").expect("fill") + 6;
        hex(&fill[f..f + 7])
    };
    let service = colours("service");
    let chain = colours("service chain");
    let step = colours("step");
    let img = render_png(&svg, &sb.dir.join("boot.png"));
    assert_eq!(
        bar_runs(&img, &[service, chain]),
        NAMES.len(),
        "service bars in the picture"
    );
    assert_eq!(bar_runs(&img, &[chain]), 3, "critical chain bars");
    assert_eq!(bar_runs(&img, &[step]), steps, "step bars");
    // The READY line: a tall column of its colour.
    let ready = hex("#2e8b3a");
    let tall = (0..img.width)
        .any(|x| (0..img.height).filter(|y| img.rgb(x, *y) == ready).count() > img.height / 2);
    assert!(tall, "no READY line in the picture");

    // Negative control: the same chart without worker's bar shows one bar less.
    let at = text.find("data-name=\"worker\"").expect("worker bar");
    let start = text[..at].rfind("<rect").expect("rect start");
    let end = at + text[at..].find("</rect>").expect("rect end") + "</rect>".len();
    let cut = format!("{}{}", &text[..start], &text[end..]);
    let svg2 = sb.dir.join("cut.svg");
    std::fs::write(&svg2, cut).expect("write");
    let img2 = render_png(&svg2, &sb.dir.join("cut.png"));
    assert_eq!(bar_runs(&img2, &[service, chain]), NAMES.len() - 1);

    // A chart that cannot be written is an error, not a silent success.
    let out = analyze(&sb, &["--svg", "/nonexistent-dir/x.svg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writing /nonexistent-dir/x.svg"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_record_is_the_first_boots_across_a_reload_and_a_reexec() {
    let sb = boot("analyze-reexec");
    let first = analyze_json(&sb);
    // A reload adds a service and restarts one: the boot record stays.
    sb.write(
        "services/late.lua",
        r#"service "late" { exec = { "/bin/sleep", "1000" } }"#,
    );
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0, "{v}");
    sb.wait_status("late running", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "late" && x["state"] == "running")
    });
    let out = sb.ctl(&["restart", "cache"]);
    assert!(out.status.success());
    let after_reload = analyze_json(&sb);
    assert_eq!(
        after_reload, first,
        "a reload or a restart changed the boot record"
    );
    let out = sb.ctl(&["reexec"]);
    assert!(
        out.status.success(),
        "reexec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sb.status()["reexecs"], 1);
    let after_reexec = analyze_json(&sb);
    assert_eq!(
        after_reexec, first,
        "the re-exec lost or changed the record"
    );
    // Control: the live status did move on (late is there now).
    assert!(sb.status()["services"]
        .as_array()
        .expect("services")
        .iter()
        .any(|s| s["name"] == "late"));
}

#[test]
fn bad_arguments_and_no_init_are_clear_errors() {
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("analyze")
            .args(args)
            .output()
            .expect("run analyze")
    };
    let out = run(&["--svg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--svg needs a file name"));
    let out = run(&["--svg", "--json"]);
    assert_eq!(out.status.code(), Some(2), "a flag is not a file name");
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--frobnicate'"));
    let dir = scratch("analyze-noinit");
    let sock = dir.join("nobody.sock");
    let out = run(&["--socket", sock.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the init at"), "{err}");
    assert!(out.stdout.is_empty(), "no report without an init");
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--svg FILE"));
}
