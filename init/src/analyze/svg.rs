//! The boot as an SVG Gantt chart: the boot steps as bars on top, one row
//! and bar per service (spawn to ready; links of the critical chain in
//! their own colour; a service never ready runs to the chart's end,
//! hatched), a time axis with ticks and labels, the READY mark as a
//! vertical line. Plain SVG 1.1 with crisp edges: every browser and
//! rsvg-convert show it the same.

use std::fmt::Write;

use super::Analysis;
use crate::supervisor::Ms;

/// Colours (also what a test looks for in the rendered picture).
pub const STEP: &str = "#4a90c2";
pub const SERVICE: &str = "#e8a33d";
pub const CHAIN: &str = "#c2452d";
pub const READY: &str = "#2e8b3a";

/// The label column's least width; longer names widen it (about 7 px a
/// character at 12 px sans-serif).
const LABEL_MIN: u32 = 120;
const CHART_W: u32 = 820;
const RIGHT_W: u32 = 90;
const ROW: u32 = 24;
const BAR: u32 = 16;
const TOP: u32 = 54;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick interval of 1, 2 or 5 times a power of ten giving at most ten ticks.
fn tick_step(span: Ms) -> Ms {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if span / (step * m) <= 10 {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// A tick's label: in ms up to a 2 s axis, else in seconds (with a decimal
/// when the ticks are less than a second apart).
fn time_label(ms: Ms, step: Ms, end: Ms) -> String {
    if end < 2000 {
        format!("{ms} ms")
    } else if step >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

pub fn render(an: &Analysis) -> String {
    let step = tick_step(an.span_ms().max(1));
    // The axis ends on the tick after the last event.
    let end = (an.span_ms() / step + 1) * step;
    let longest = an
        .record
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .chain(an.services.iter().map(|e| e.name.chars().count()))
        .max()
        .unwrap_or(0) as u32;
    let label_w = LABEL_MIN.max(longest * 7 + 24);
    let x = |ms: Ms| label_w + (ms.min(end) * u64::from(CHART_W) / end) as u32;
    let rows = an.record.steps.len() as u32 + an.services.len() as u32;
    let axis_y = TOP + rows * ROW + 8;
    let height = axis_y + 40;
    let width = label_w + CHART_W + RIGHT_W;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" shape-rendering="crispEdges">
<defs><pattern id="unready" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="{SERVICE}"/><rect width="3" height="6" fill="#ffffff"/></pattern></defs>
<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let title = match an.record.ready_ms {
        Some(t) => format!("moonlit boot ({} mode): READY at {t} ms", an.mode),
        None => format!("moonlit boot ({} mode): not READY yet", an.mode),
    };
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
        esc(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="40" fill="#555555">boot steps (blue); services from spawn to ready (orange; critical chain red); time after t0</text>"##
    );
    // Grid and axis.
    let mut t = 0;
    while t <= end {
        let gx = x(t);
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{gx}" y1="{TOP}" x2="{gx}" y2="{axis_y}" stroke="#dddddd" stroke-width="1"/>"##
        );
        let _ = writeln!(
            s,
            r##"<line class="tick" x1="{gx}" y1="{axis_y}" x2="{gx}" y2="{}" stroke="#333333" stroke-width="1"/><text class="tick-label" x="{gx}" y="{}" text-anchor="middle">{}</text>"##,
            axis_y + 6,
            axis_y + 20,
            time_label(t, step, end)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<line class="axis" x1="{label_w}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333333" stroke-width="1"/>"##,
        label_w + CHART_W
    );
    let mut row = 0;
    let mut bar = |s: &mut String,
                   class: &str,
                   name: &str,
                   from: Ms,
                   to: Ms,
                   fill: &str,
                   tip: &str,
                   note: &str| {
        let y = TOP + row * ROW + (ROW - BAR) / 2;
        let (x1, x2) = (x(from), x(to));
        let w = (x2.saturating_sub(x1)).max(3);
        let _ = writeln!(
            s,
            r##"<text class="label" x="{}" y="{}" text-anchor="end">{}</text>"##,
            label_w - 8,
            y + BAR - 4,
            esc(name)
        );
        let _ = writeln!(
            s,
            r##"<rect class="{class}" data-name="{}" x="{x1}" y="{y}" width="{w}" height="{BAR}" fill="{fill}"><title>{}</title></rect>"##,
            esc(name),
            esc(tip)
        );
        let _ = writeln!(
            s,
            r##"<text class="duration" x="{}" y="{}" fill="#333333">{}</text>"##,
            x1 + w + 4,
            y + BAR - 4,
            esc(note)
        );
        row += 1;
    };
    for st in &an.record.steps {
        let d = st.end_ms.saturating_sub(st.start_ms);
        let tip = format!("{}: {} to {} ms ({d} ms)", st.name, st.start_ms, st.end_ms);
        bar(
            &mut s,
            "step",
            &st.name,
            st.start_ms,
            st.end_ms,
            STEP,
            &tip,
            &format!("{d} ms"),
        );
    }
    let span = an.span_ms();
    for e in &an.services {
        let spawn = e.spawn_ms.unwrap_or(0);
        let in_chain = an.chain.iter().any(|l| l.name == e.name);
        let (to, fill, note) = match e.ready_ms {
            Some(r) => (
                r,
                if in_chain { CHAIN } else { SERVICE },
                format!("+{} ms", r.saturating_sub(spawn)),
            ),
            None => (span, "url(#unready)", "not ready".to_string()),
        };
        let tip = match e.ready_ms {
            Some(r) => format!(
                "{} ({}): spawned at {spawn} ms, ready at {r} ms (+{} ms){}",
                e.name,
                e.kind,
                r.saturating_sub(spawn),
                if in_chain { ", critical chain" } else { "" }
            ),
            None => format!("{} ({}): spawned at {spawn} ms, not ready", e.name, e.kind),
        };
        let class = if in_chain { "service chain" } else { "service" };
        bar(&mut s, class, &e.name, spawn, to, fill, &tip, &note);
    }
    if let Some(r) = an.record.ready_ms {
        let rx = x(r);
        // Near the right edge the label goes left of the line.
        let (lx, anchor) = if rx + 110 > width {
            (rx - 4, "end")
        } else {
            (rx + 4, "start")
        };
        let _ = writeln!(
            s,
            r##"<line class="ready" x1="{rx}" y1="{}" x2="{rx}" y2="{axis_y}" stroke="{READY}" stroke-width="2"/><text class="ready-label" x="{}" y="{}" text-anchor="{anchor}" fill="{READY}" font-weight="bold">READY {r} ms</text>"##,
            TOP - 6,
            lx,
            TOP - 8
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_few_and_round() {
        assert_eq!(tick_step(7), 1);
        assert_eq!(tick_step(95), 10);
        assert_eq!(tick_step(812), 100);
        assert_eq!(tick_step(1500), 200);
        assert_eq!(tick_step(45_000), 5000);
    }

    #[test]
    fn tick_labels_keep_one_unit() {
        assert_eq!(time_label(900, 100, 1000), "900 ms");
        assert_eq!(time_label(1000, 100, 1000), "1000 ms");
        assert_eq!(time_label(2500, 500, 3000), "2.5 s");
        assert_eq!(time_label(4000, 1000, 5000), "4 s");
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
    }
}
