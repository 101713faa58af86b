//! Cron schedules as CronJobs read them (robfig/cron v3 `ParseStandard`): five fields with ranges, steps and
//! names, `@hourly`-style descriptors and `@every <duration>`, evaluated in a time zone with jiff.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every <duration>`: a constant delay of whole seconds.
    Every(i64),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a schedule. `TZ=`/`CRON_TZ=` prefixes are refused: CronJobs name their zone in `spec.timeZone`.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(d) = spec.strip_prefix('@') {
        let fields = match d {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => match d.strip_prefix("every ") {
                Some(dur) => return parse_every(dur.trim()).map(Schedule::Every),
                None => return Err(format!("unrecognized descriptor: {spec}")),
            },
        };
        return parse(fields);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule::Fields {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
    })
}

fn parse_every(s: &str) -> Result<i64, String> {
    let mut total = 0i64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(format!("failed to parse duration @every {s}"));
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value: i64 = rest[..n]
            .parse()
            .map_err(|_| format!("failed to parse duration @every {s}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => return Err(format!("failed to parse duration @every {s}: unknown unit")),
        };
        rest = &rest[u..];
        total = total.saturating_add(value.saturating_mul(unit));
    }
    Ok(total.max(1))
}

fn field(f: &str, b: &Bounds) -> Result<u64, String> {
    let mut bits = 0;
    for expr in f.split(',') {
        bits |= range(expr, b)?;
    }
    Ok(bits)
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (b.min, b.max)
    } else {
        let start = value(low_high[0], b)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, value(low_high[1], b)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1], expr)?;
            if low_high.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = extra;
    let mut i = start;
    while i <= end {
        bits |= 1 << i;
        i += step;
    }
    Ok(bits)
}

fn value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(pos) = b.names.iter().position(|n| *n == lower) {
        return Ok(pos as u32 + b.min);
    }
    number(s, s)
}

fn number(s: &str, expr: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: invalid syntax in {expr}"
        ));
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}: value out of range in {expr}"))
}

fn has(bits: u64, i: i8) -> bool {
    bits & (1 << i) != 0
}

impl Schedule {
    /// The first activation strictly after `after`, in `tz`; None when there is none within five years.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match *self {
            Schedule::Every(secs) => {
                let t = Timestamp::from_second(after.as_second()).ok()?;
                return t.checked_add(SignedDuration::from_secs(secs)).ok();
            }
            Schedule::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let day_matches = |d: DateTime| {
            let dom_match = has(dom, d.day());
            let dow_match = has(dow, d.weekday().to_sunday_zero_offset());
            if dom & STAR != 0 || dow & STAR != 0 {
                dom_match && dow_match
            } else {
                dom_match || dow_match
            }
        };
        let local = tz.to_datetime(after);
        // The next whole minute after `after`, as a wall-clock time.
        let mut d = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = local.year() + 5;
        while d.year() <= limit {
            if !has(month, d.month()) {
                d = d
                    .first_of_month()
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.month())
                    .ok()?;
                continue;
            }
            if !day_matches(d) {
                d = d
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !has(hour, d.hour()) {
                d = d
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(minute, d.minute()) {
                d = d.checked_add(1.minute()).ok()?;
                continue;
            }
            // Wall times skipped by a DST gap resolve forward; a repeated hour may land before `after`.
            let t = tz.to_ambiguous_timestamp(d).compatible().ok()?;
            if t > after {
                return Some(t);
            }
            d = d.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_utc(spec: &str, after: &str) -> String {
        parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn fields_ranges_steps_names() {
        assert_eq!(
            next_utc("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next_utc("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next_utc("5-10/5 3 * * *", "2024-01-01T03:06:00Z"),
            "2024-01-01T03:10:00Z"
        );
        assert_eq!(
            next_utc("0 0 * * mon", "2024-01-01T00:00:00Z"),
            "2024-01-08T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 12 1 feb *", "2024-01-15T00:00:00Z"),
            "2024-02-01T12:00:00Z"
        );
        assert_eq!(
            next_utc("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next_utc("30 1,13 * * *", "2024-01-01T02:00:00Z"),
            "2024-01-01T13:30:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // 2024-01-05 is a Friday: day 10 or any Friday, whichever comes first.
        assert_eq!(
            next_utc("0 0 10 * fri", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        // With the day of week a star, only the 10th.
        assert_eq!(
            next_utc("0 0 10 * *", "2024-01-01T00:00:00Z"),
            "2024-01-10T00:00:00Z"
        );
        // A step of more than one is no star: OR applies (robfig's rule).
        assert_eq!(
            next_utc("0 0 */2 * 3", "2024-01-01T00:00:00Z"),
            "2024-01-03T00:00:00Z"
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next_utc("@hourly", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next_utc("@daily", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next_utc("@midnight", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next_utc("@weekly", "2024-01-01T10:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next_utc("@monthly", "2024-01-01T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@yearly", "2024-01-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@annually", "2024-01-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@every 1h30m", "2024-01-01T10:00:00.5Z"),
            "2024-01-01T11:30:00Z"
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(
            parse("* * * *")
                .unwrap_err()
                .contains("expected exactly 5 fields")
        );
        assert!(parse("60 * * * *").unwrap_err().contains("above maximum"));
        assert!(parse("* * 0 * *").unwrap_err().contains("below minimum"));
        assert!(parse("5-1 * * * *").unwrap_err().contains("beyond end"));
        assert!(parse("*/0 * * * *").unwrap_err().contains("positive"));
        assert!(
            parse("x * * * *")
                .unwrap_err()
                .contains("failed to parse int")
        );
        assert!(
            parse("@fortnightly")
                .unwrap_err()
                .contains("unrecognized descriptor")
        );
        assert!(parse("TZ=UTC * * * * *").unwrap_err().contains("timeZone"));
        assert!(
            parse("CRON_TZ=Europe/Paris 0 * * * *")
                .unwrap_err()
                .contains("timeZone")
        );
        assert!(parse("* * * * 7").is_err());
    }

    #[test]
    fn time_zones_and_impossible_dates() {
        let tz = jiff::tz::db()
            .get("America/New_York")
            .expect("the system tz database has America/New_York");
        let next = parse("0 9 * * *")
            .unwrap()
            .next(ts("2024-07-01T00:00:00Z"), &tz)
            .unwrap();
        assert_eq!(next.to_string(), "2024-07-01T13:00:00Z");
        // 02:30 does not exist on 2024-03-10 in New York: the run moves forward an hour, as the clock does.
        let next = parse("30 2 * * *")
            .unwrap()
            .next(ts("2024-03-10T05:00:00Z"), &tz)
            .unwrap();
        assert_eq!(next.to_string(), "2024-03-10T07:30:00Z");
        assert!(
            parse("0 0 31 2 *")
                .unwrap()
                .next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC)
                .is_none()
        );
    }
}
