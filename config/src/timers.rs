//! Time for timers: calendar expressions in systemd's `OnCalendar=`
//! subset, the local time zone, and a service's `timer = { ... }`.
//!
//! Owns: parsing and validating calendar expressions (shorthands `minutely`,
//! `hourly`, `daily`, `weekly`, `monthly`, `quarterly`, `semiannually`,
//! `yearly`; `[WEEKDAYS] [YEAR-]MONTH-DAY [HOUR:MINUTE[:SECOND]] [UTC]` with
//! `*`, lists `a,b`, ranges `a..b` and repetitions `a/n`), the next time one
//! elapses after a given Unix time, the time zone (/etc/localtime, else
//! UTC; read with tz-rs), and the `timer` schema. Knows nothing of the
//! loop: the init keeps the schedule and triggers the services.
//!
//! Why not a crate for the expressions: the Rust calendar crates parse cron
//! syntax (not systemd's) and bring chrono with them, a large share of a
//! PID 1 that must stay under 2 MiB; this subset is small.

use std::time::Duration;

use mlua::Value;
use serde::Serialize;

/// One field of a calendar expression: values `lo..=hi` every `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field(Vec<(u32, u32, u32)>);

impl Field {
    fn any(lo: u32, hi: u32) -> Field {
        Field(vec![(lo, hi, 1)])
    }
    fn matches(&self, v: u32) -> bool {
        self.0
            .iter()
            .any(|&(lo, hi, step)| v >= lo && v <= hi && (v - lo).is_multiple_of(step))
    }
    /// The smallest matching value at or above `from`, if any up to `max`.
    fn first_from(&self, from: u32, max: u32) -> Option<u32> {
        (from..=max).find(|v| self.matches(*v))
    }
}

/// A parsed calendar expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Bit 0 = Monday ... bit 6 = Sunday.
    weekdays: u8,
    years: Field,
    months: Field,
    days: Field,
    hours: Field,
    minutes: Field,
    seconds: Field,
    /// `UTC` was given: local time zone ignored.
    utc: bool,
}

/// Monday first: `weekdays` bit i is `FULL_DAYS[i]`.
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// "Mon", "monday", any case.
fn weekday_of(name: &str) -> Option<u32> {
    let l = name.to_ascii_lowercase();
    FULL_DAYS
        .iter()
        .position(|f| *f == l || (l.len() == 3 && f.starts_with(&l)))
        .map(|i| i as u32)
}

fn parse_field(text: &str, lo: u32, hi: u32, what: &str) -> Result<Field, String> {
    let bad = |why: &str| format!("bad {what} \"{text}\": {why}");
    let num = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| bad("not a number"))?;
        if n < lo || n > hi {
            return Err(bad(&format!("must be from {lo} to {hi}")));
        }
        Ok(n)
    };
    let mut out = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .map_err(|_| bad("the repetition is not a number"))?;
                if s == 0 {
                    return Err(bad("a repetition of 0"));
                }
                (r, s)
            }
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once("..") {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad("a range must go upwards"));
            }
            (a, b)
        } else {
            let a = num(range)?;
            (a, if step > 1 { hi } else { a })
        };
        out.push((a, b, step));
    }
    Ok(Field(out))
}

fn parse_weekdays(text: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for item in text.split(',') {
        let day = |s: &str| weekday_of(s).ok_or_else(|| format!("unknown weekday \"{s}\""));
        match item.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    bits |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => bits |= 1 << day(item)?,
        }
    }
    Ok(bits)
}

impl Calendar {
    /// Parses an expression; errors say what part is wrong.
    pub fn parse(expr: &str) -> Result<Calendar, String> {
        let e = expr.trim();
        let lower = e.to_ascii_lowercase();
        let expanded = match lower.as_str() {
            "minutely" => "*-*-* *:*:00",
            "hourly" => "*-*-* *:00:00",
            "daily" => "*-*-* 00:00:00",
            "weekly" => "Mon *-*-* 00:00:00",
            "monthly" => "*-*-01 00:00:00",
            "quarterly" => "*-01,04,07,10-01 00:00:00",
            "semiannually" => "*-01,07-01 00:00:00",
            "yearly" | "annually" => "*-01-01 00:00:00",
            _ => e,
        };
        let mut cal = Calendar {
            weekdays: 0x7f,
            years: Field::any(1970, 2199),
            months: Field::any(1, 12),
            days: Field::any(1, 31),
            hours: Field::any(0, 0),
            minutes: Field::any(0, 0),
            seconds: Field::any(0, 0),
            utc: false,
        };
        let mut have_time = false;
        let mut have_date = false;
        let mut tokens: Vec<&str> = expanded.split_whitespace().collect();
        if tokens.is_empty() {
            return Err("an empty calendar expression".into());
        }
        if tokens.last().is_some_and(|t| t.eq_ignore_ascii_case("utc")) {
            cal.utc = true;
            tokens.pop();
        }
        for (i, tok) in tokens.iter().enumerate() {
            let where_ = |m: String| format!("calendar \"{expr}\": {m}");
            if tok.contains(':') {
                if have_time {
                    return Err(where_("two times".into()));
                }
                have_time = true;
                let parts: Vec<&str> = tok.split(':').collect();
                if !(2..=3).contains(&parts.len()) {
                    return Err(where_(format!("bad time \"{tok}\" (HH:MM or HH:MM:SS)")));
                }
                cal.hours = parse_field(parts[0], 0, 23, "hour").map_err(where_)?;
                cal.minutes = parse_field(parts[1], 0, 59, "minute").map_err(where_)?;
                cal.seconds = match parts.get(2) {
                    Some(s) => parse_field(s, 0, 59, "second").map_err(where_)?,
                    None => Field::any(0, 0),
                };
            } else if tok.contains('-') && tok.starts_with(|c: char| c.is_ascii_digit() || c == '*')
            {
                if have_date || have_time {
                    return Err(where_(format!(
                        "the date \"{tok}\" must come before the time"
                    )));
                }
                have_date = true;
                let parts: Vec<&str> = tok.split('-').collect();
                let (y, m, d) = match parts.as_slice() {
                    [y, m, d] => (Some(*y), *m, *d),
                    [m, d] => (None, *m, *d),
                    _ => return Err(where_(format!("bad date \"{tok}\" (YYYY-MM-DD or MM-DD)"))),
                };
                if let Some(y) = y {
                    cal.years = parse_field(y, 1970, 2199, "year").map_err(where_)?;
                }
                cal.months = parse_field(m, 1, 12, "month").map_err(where_)?;
                cal.days = parse_field(d, 1, 31, "day").map_err(where_)?;
            } else if i == 0 && tok.starts_with(|c: char| c.is_ascii_alphabetic()) {
                cal.weekdays = parse_weekdays(tok).map_err(where_)?;
            } else {
                return Err(where_(format!(
                    "cannot read \"{tok}\" (expected weekdays, a date YYYY-MM-DD or a time HH:MM:SS)"
                )));
            }
        }
        if !have_time && !have_date && cal.weekdays == 0x7f {
            return Err(format!("calendar \"{expr}\": nothing to go by"));
        }
        Ok(cal)
    }

    /// The first time after `after` (Unix seconds) that matches, in `tz`;
    /// `None` if nothing does within the next five years.
    pub fn next_after(&self, after: i64, tz: &Zone) -> Option<i64> {
        let off = |t: i64| if self.utc { 0 } else { tz.offset(t) };
        let start = after + 1;
        let local = start + off(start);
        let first_day = local.div_euclid(86_400);
        let first_sod = local.rem_euclid(86_400) as u32;
        for k in 0..(366 * 5) {
            let day = first_day + k;
            let (y, m, d) = civil_from_days(day);
            let wd = weekday_from_days(day);
            if y < 1970
                || !self.years.matches(y as u32)
                || !self.months.matches(m)
                || !self.days.matches(d)
                || self.weekdays & (1 << wd) == 0
            {
                continue;
            }
            let from = if k == 0 { first_sod } else { 0 };
            if let Some(sod) = self.first_time_from(from) {
                let cand_local = day * 86_400 + i64::from(sod);
                // Local to Unix: the offset at the guess, refined once.
                let guess = cand_local - off(start);
                let t = cand_local - off(guess);
                return Some(t.max(start));
            }
        }
        None
    }

    fn first_time_from(&self, from: u32) -> Option<u32> {
        let (fh, fm, fs) = (from / 3600, from / 60 % 60, from % 60);
        let mut h = self.hours.first_from(fh, 23)?;
        loop {
            let mut m = self.minutes.first_from(if h == fh { fm } else { 0 }, 59);
            while let Some(mm) = m {
                let s0 = if h == fh && mm == fm { fs } else { 0 };
                if let Some(s) = self.seconds.first_from(s0, 59) {
                    return Some(h * 3600 + mm * 60 + s);
                }
                m = self.minutes.first_from(mm + 1, 59);
            }
            h = self.hours.first_from(h + 1, 23)?;
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// 0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday).
fn weekday_from_days(z: i64) -> u32 {
    (z + 3).rem_euclid(7) as u32
}

/// The time zone calendar times are read in.
#[derive(Debug, Clone, Default)]
pub struct Zone(Option<tz::TimeZone>);

impl Zone {
    /// /etc/localtime if it can be read, else UTC.
    pub fn local() -> Zone {
        Self::from_file("/etc/localtime")
    }

    pub fn from_file(path: &str) -> Zone {
        Zone(
            std::fs::read(path)
                .ok()
                .and_then(|b| tz::TimeZone::from_tz_data(&b).ok()),
        )
    }

    pub fn utc() -> Zone {
        Zone(None)
    }

    /// Seconds east of UTC at Unix time `t`.
    pub fn offset(&self, t: i64) -> i64 {
        self.0
            .as_ref()
            .and_then(|z| z.find_local_time_type(t).ok())
            .map_or(0, |lt| i64::from(lt.ut_offset()))
    }

    /// "YYYY-MM-DD HH:MM:SS" local time (for status and logs).
    pub fn format(&self, t: i64) -> String {
        let l = t + self.offset(t);
        let (y, m, d) = civil_from_days(l.div_euclid(86_400));
        let s = l.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// `timer = { calendar = "daily", on_boot = 60, every = 3600, persistent
/// = true, randomized_delay = 30 }`: what triggers an on-demand service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimerSpec {
    /// Calendar expressions (checked, kept as written).
    pub calendar: Vec<String>,
    /// Once, this long after boot.
    pub on_boot: Option<Duration>,
    /// Again and again, this long after the previous trigger.
    pub every: Option<Duration>,
    /// A calendar elapse missed while the machine was off runs at boot.
    pub persistent: bool,
    /// Each elapse is delayed by a random time up to this.
    pub randomized_delay: Duration,
}

pub const TIMER_KEYS: &[&str] = &[
    "calendar",
    "on_boot",
    "every",
    "persistent",
    "randomized_delay",
];

fn seconds(key: &str, v: &Value) -> Result<Duration, String> {
    let s = match v {
        Value::Integer(i) if *i >= 0 => *i as f64,
        Value::Number(n) if *n >= 0.0 && n.is_finite() => *n,
        _ => {
            return Err(format!(
                "timer.{key} must be a number of seconds, got {}",
                v.type_name()
            ))
        }
    };
    // Duration::from_secs_f64 panics past u64 seconds.
    if s > 1e9 {
        return Err(format!("timer.{key} must be at most 1e9 seconds, got {s}"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Reads `timer = { ... }` (or a calendar string alone: `timer = "daily"`).
pub fn parse_timer(v: Value) -> Result<TimerSpec, String> {
    let mut t = TimerSpec::default();
    let table = match v {
        Value::String(s) => {
            let e = s.to_string_lossy();
            Calendar::parse(&e)?;
            t.calendar.push(e);
            return Ok(t);
        }
        Value::Table(t) => t,
        other => {
            return Err(format!(
            "timer must be a table like {{ calendar = \"daily\" }} or a calendar string, got {}",
            other.type_name()
        ))
        }
    };
    for pair in table.pairs::<Value, Value>() {
        let (k, val) = pair.map_err(|e| format!("timer: {e}"))?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(format!(
                    "timer: keys must be names, got {}",
                    other.type_name()
                ))
            }
        };
        match key.as_str() {
            "calendar" => {
                let list = match &val {
                    Value::String(s) => vec![s.to_string_lossy()],
                    Value::Table(l) => l
                        .sequence_values::<String>()
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| "timer.calendar: a list of strings".to_string())?,
                    other => {
                        return Err(format!(
                            "timer.calendar must be a calendar string or a list of them, got {}",
                            other.type_name()
                        ))
                    }
                };
                for e in &list {
                    Calendar::parse(e)?;
                }
                t.calendar = list;
            }
            "on_boot" => t.on_boot = Some(seconds("on_boot", &val)?),
            "every" => {
                let d = seconds("every", &val)?;
                if d < Duration::from_millis(10) {
                    return Err("timer.every must be at least 0.01 seconds".into());
                }
                t.every = Some(d);
            }
            "randomized_delay" => t.randomized_delay = seconds("randomized_delay", &val)?,
            "persistent" => {
                t.persistent = match val {
                    Value::Boolean(b) => b,
                    other => {
                        return Err(format!(
                            "timer.persistent must be true or false, got {}",
                            other.type_name()
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "timer: unknown key '{other}' (known: {})",
                    TIMER_KEYS.join(", ")
                ))
            }
        }
    }
    if t.calendar.is_empty() && t.on_boot.is_none() && t.every.is_none() {
        return Err("timer needs calendar, on_boot or every".into());
    }
    if t.persistent && t.calendar.is_empty() {
        return Err(
            "timer.persistent goes with calendar (a missed calendar time runs at boot)".into(),
        );
    }
    Ok(t)
}

impl TimerSpec {
    /// The next calendar elapse after `after` (Unix seconds), of any of
    /// its expressions.
    pub fn next_calendar(&self, after: i64, tz: &Zone) -> Option<i64> {
        self.calendar
            .iter()
            .filter_map(|e| Calendar::parse(e).ok())
            .filter_map(|c| c.next_after(after, tz))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(y: i64, m: u32, d: u32) -> i64 {
        // Inverse of civil_from_days by search around an estimate.
        let est = (y - 1970) * 365 + (y - 1969) / 4 + i64::from(m - 1) * 30;
        (est - 40..est + 40)
            .find(|z| civil_from_days(*z) == (y, m, d))
            .unwrap()
    }

    fn at(y: i64, m: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days(y, m, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    #[test]
    fn civil_dates_and_weekdays() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(weekday_from_days(0), 3); // Thursday
        assert_eq!(civil_from_days(days(2000, 2, 29)), (2000, 2, 29));
        // 2026-12-06 is a Sunday.
        assert_eq!(weekday_from_days(days(2026, 12, 6)), 6);
    }

    #[test]
    fn next_elapses() {
        let utc = Zone::utc();
        let now = at(2026, 12, 6, 13, 45, 10); // a Sunday
        let n = |e: &str| Calendar::parse(e).unwrap().next_after(now, &utc).unwrap();
        assert_eq!(n("daily"), at(2026, 12, 7, 0, 0, 0));
        assert_eq!(n("hourly"), at(2026, 12, 6, 14, 0, 0));
        assert_eq!(n("minutely"), at(2026, 12, 6, 13, 46, 0));
        assert_eq!(n("weekly"), at(2026, 12, 7, 0, 0, 0));
        assert_eq!(n("monthly"), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(n("*-*-* 02:00:00"), at(2026, 12, 7, 2, 0, 0));
        assert_eq!(n("*-*-* 13:45:30"), at(2026, 12, 6, 13, 45, 30));
        assert_eq!(n("Mon..Fri 09:00"), at(2026, 12, 7, 9, 0, 0));
        assert_eq!(n("Sat,Sun 20:00"), at(2026, 12, 6, 20, 0, 0));
        assert_eq!(n("*:0/15"), at(2026, 12, 6, 14, 0, 0));
        assert_eq!(n("*-02-29 12:00"), at(2028, 2, 29, 12, 0, 0));
        assert_eq!(n("2027-03-01"), at(2027, 3, 1, 0, 0, 0));
        // Strictly after.
        let c = Calendar::parse("*-*-* 13:45:10").unwrap();
        assert_eq!(c.next_after(now, &utc), Some(at(2026, 12, 7, 13, 45, 10)));
        // In the past: never again.
        let past = Calendar::parse("1999-01-01").unwrap();
        assert_eq!(past.next_after(now, &utc), None);
    }

    #[test]
    fn a_zone_moves_local_times() {
        // Central Europe: UTC+1 in December.
        let cet = Zone(Some(
            tz::TimeZone::from_posix_tz("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
        ));
        let now = at(2026, 12, 6, 12, 0, 0);
        let c = Calendar::parse("*-*-* 02:00:00").unwrap();
        assert_eq!(c.next_after(now, &cet), Some(at(2026, 12, 7, 1, 0, 0)));
        let u = Calendar::parse("*-*-* 02:00:00 UTC").unwrap();
        assert_eq!(u.next_after(now, &cet), Some(at(2026, 12, 7, 2, 0, 0)));
        // Summer: UTC+2.
        let summer = at(2026, 7, 1, 12, 0, 0);
        assert_eq!(c.next_after(summer, &cet), Some(at(2026, 7, 2, 0, 0, 0)));
        assert_eq!(cet.format(at(2026, 12, 7, 1, 0, 0)), "2026-12-07 02:00:00");
    }

    #[test]
    fn bad_expressions_are_named() {
        for (e, want) in [
            ("*-*-* 25:00", "bad hour \"25\""),
            ("Funday 10:00", "unknown weekday \"Funday\""),
            ("*-13-01", "bad month \"13\""),
            ("10:00 *-*-*", "must come before the time"),
            ("", "empty"),
            ("*:*/0", "repetition of 0"),
            ("soon", "unknown weekday \"soon\""),
            ("*-*-* 10:00 12:00", "two times"),
        ] {
            let err = Calendar::parse(e).unwrap_err();
            assert!(err.contains(want), "{e}: {err}");
        }
    }

    #[test]
    fn timer_tables() {
        let lua = mlua::Lua::new();
        let p = |s: &str| parse_timer(lua.load(s).eval().unwrap());
        let t = p(r#"{ calendar = "daily", on_boot = 60, every = 3600, persistent = true, randomized_delay = 30 }"#).unwrap();
        assert_eq!(t.calendar, vec!["daily"]);
        assert_eq!(t.every, Some(Duration::from_secs(3600)));
        assert!(p(r#""hourly""#).is_ok());
        assert!(p(r#"{ calendr = "daily" }"#)
            .unwrap_err()
            .contains("unknown key 'calendr'"));
        assert!(p(r#"{ persistent = true, every = 5 }"#)
            .unwrap_err()
            .contains("goes with calendar"));
        assert!(p(r#"{}"#).unwrap_err().contains("needs calendar"));
        assert!(p(r#"{ calendar = "*-*-* 99:00" }"#)
            .unwrap_err()
            .contains("bad hour"));
    }
}
