//! Schedules as Kubernetes CronJobs read them (standard 5-field cron, `@daily` and
//! friends), turned into the `cron` crate's form to compute run times in a time zone.
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as the user wrote it.
    pub expression: String,
    /// The same schedule as the CronJob controller reads it (`7` for Sunday is written
    /// `0`, which is what Kubernetes accepts): what the CronJob gets.
    pub cronjob: String,
    pub time_zone: Tz,
    inner: cron::Schedule,
}

const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses a standard cron expression. Errors are sentences that finish
    /// "spec.schedule "<expr>" ...".
    pub fn parse(expression: &str, time_zone: Tz) -> Result<Self, String> {
        let expr = expression.trim();
        let five = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            e if e.starts_with('@') => {
                return Err(format!(
                    "is not a schedule DataJob knows ({e}); use @hourly, @daily, @weekly, @monthly, @yearly or 5 cron fields"
                ));
            }
            e => e,
        };
        if five.contains("TZ=") || five.contains("CRON_TZ=") {
            return Err("sets a time zone inside the schedule; use spec.timeZone instead".into());
        }
        let fields: Vec<&str> = five.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "has {} fields; a schedule has 5: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 every day",
                fields.len()
            ));
        }
        let restricted = |f: &str| f != "*" && f != "?";
        if restricted(fields[2]) && restricted(fields[4]) {
            return Err(
                "restricts both day-of-month and day-of-week, which cron reads as either/or (it runs on every matching day of the month AND every matching weekday); set one of them to *"
                    .into(),
            );
        }
        for (i, (name, lo, hi)) in [("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31)]
            .into_iter()
            .enumerate()
        {
            check_numbers(fields[i], name, lo, hi)?;
        }
        let days = weekdays(fields[4])?;
        let six = format!(
            "0 {} {} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            crate_days(fields[4], &days)
        );
        // Kubernetes' cron parser counts weekdays 0-6 only: spell a 7 (Sunday) as 0.
        let cronjob = match has_seven(fields[4]) {
            false => expr.to_string(),
            true => format!(
                "{} {} {} {} {}",
                fields[0],
                fields[1],
                fields[2],
                fields[3],
                kubernetes_days(&days)
            ),
        };
        let inner = cron::Schedule::from_str(&six)
            .map_err(|e| format!("is not a valid cron expression ({e})"))?;
        let schedule = Schedule {
            expression: expr.to_string(),
            cronjob,
            time_zone,
            inner,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err("never fires (e.g. February 30th); pick a date that exists".into());
        }
        Ok(schedule)
    }

    /// Run times after `t`, in time order (see [`InOrder`]), all strictly after it.
    fn forward(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // The crate starts from a wall-clock time: after a fall-back, a repeated wall
        // time before `t`'s is still to come. Near a change, start a fold earlier.
        let start = match steady_around(self.time_zone, t) {
            true => t,
            false => t - chrono::Duration::seconds(FOLD_SECONDS),
        };
        let inner = self
            .inner
            .after(&start.with_timezone(&self.time_zone))
            .map(|d| d.with_timezone(&Utc));
        InOrder::new(inner, 1, self.time_zone).filter(move |d| *d > t)
    }

    /// Run times at or before `t`, newest first (see [`InOrder`]).
    fn backward(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut after = t + chrono::Duration::seconds(1);
        if !steady_around(self.time_zone, t) {
            after += chrono::Duration::seconds(FOLD_SECONDS);
        }
        let inner = self
            .inner
            .after(&after.with_timezone(&self.time_zone))
            .rev()
            .map(|d| d.with_timezone(&Utc));
        InOrder::new(inner, -1, self.time_zone).filter(move |d| *d <= t)
    }

    /// The first run time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.forward(t).next()
    }

    /// The next `n` run times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.forward(t).take(n).collect()
    }

    /// The latest run time at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.backward(t).next()
    }

    /// The run times in `[from, to]`, oldest first; at most `limit` of them (ask for one
    /// more than you allow to tell "too many").
    pub fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        self.forward(from - chrono::Duration::seconds(1))
            .take_while(|d| *d <= to)
            .take(limit)
            .collect()
    }

    /// The latest run times at or before `t`, newest first, at most `limit`.
    pub fn recent(&self, t: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        self.backward(t).take(limit).collect()
    }

    /// The smallest gap between two consecutive runs over the next few runs.
    pub fn min_interval(&self, t: DateTime<Utc>) -> Option<chrono::Duration> {
        let runs = self.upcoming(t, 8);
        runs.windows(2).map(|w| w[1] - w[0]).min()
    }
}

/// Parses an IANA time zone name.
/// The most two offsets of one zone differ by (a fall-back repeats at most this much
/// wall-clock time; 1 h almost everywhere, 30 min on Lord Howe Island).
const FOLD_SECONDS: i64 = 3 * 3600;

/// Run times in time order, each once. The `cron` crate walks wall-clock times: on a
/// fall-back day it gives each repeated wall time under both offsets before the next
/// wall time, so for `*/30 1 * * *` in New York it says 01:00 EDT, 01:00 EST, 01:30 EDT,
/// 01:30 EST, and 01:30 EDT comes after 01:00 EST, an hour later. Kubernetes' CronJob
/// controller (robfig/cron) runs them in time order, so this re-orders: a time is given
/// out once the times still to come cannot be earlier (they lag by at most
/// [`FOLD_SECONDS`]). `sign` is 1 for oldest first, -1 for newest first.
struct InOrder<I> {
    inner: I,
    pending: std::collections::BinaryHeap<std::cmp::Reverse<(i64, DateTime<Utc>)>>,
    sign: i64,
    frontier: Option<i64>,
    done: bool,
    last: Option<DateTime<Utc>>,
    zone: Tz,
}

impl<I: Iterator<Item = DateTime<Utc>>> InOrder<I> {
    fn new(inner: I, sign: i64, zone: Tz) -> Self {
        InOrder {
            inner,
            pending: std::collections::BinaryHeap::new(),
            sign,
            frontier: None,
            done: false,
            last: None,
            zone,
        }
    }
}

/// Whether `zone` keeps one offset from [`FOLD_SECONDS`] before `t` to as long after:
/// then wall-clock order is time order around `t` (the usual case, so a minutely
/// schedule is neither buffered nor walked back for hours).
fn steady_around(zone: Tz, t: DateTime<Utc>) -> bool {
    use chrono::{Offset, TimeZone};
    let offset = |d: DateTime<Utc>| {
        zone.offset_from_utc_datetime(&d.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let fold = chrono::Duration::seconds(FOLD_SECONDS);
    offset(t - fold) == offset(t + fold)
}

impl<I: Iterator<Item = DateTime<Utc>>> Iterator for InOrder<I> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(std::cmp::Reverse((key, t))) = self.pending.peek() {
                let settled = self.frontier.is_some_and(|f| f - key > FOLD_SECONDS)
                    || steady_around(self.zone, *t);
                if self.done || settled {
                    let std::cmp::Reverse((_, t)) = self.pending.pop()?;
                    if self.last == Some(t) {
                        continue;
                    }
                    self.last = Some(t);
                    return Some(t);
                }
            }
            if self.done {
                return None;
            }
            match self.inner.next() {
                Some(t) => {
                    let key = self.sign * t.timestamp();
                    self.frontier = Some(self.frontier.map_or(key, |f| f.max(key)));
                    self.pending.push(std::cmp::Reverse((key, t)));
                }
                None => self.done = true,
            }
        }
    }
}

pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        "is not an IANA time zone name; use a name such as UTC, Europe/London or America/New_York".to_string()
    })
}

/// Rejects numbers outside `lo..=hi` with a message naming the field.
fn check_numbers(field: &str, name: &str, lo: u32, hi: u32) -> Result<(), String> {
    for part in field.split([',', '-', '/']) {
        if part.is_empty() {
            return Err(format!(
                "has an empty {name} part; write lists as 1,15 and ranges as 1-5"
            ));
        }
        if let Ok(n) = part.parse::<u32>() {
            // the step after '/' is not a value of the field
            let is_step = field.contains(&format!("/{part}"));
            if !is_step && (n < lo || n > hi) {
                return Err(format!("has {name} {n}, outside {lo}-{hi}"));
            }
        }
    }
    Ok(())
}

/// Whether a day-of-week field names day 7 (Sunday, in standard cron) as a number.
fn has_seven(field: &str) -> bool {
    field
        .split([',', '-'])
        .map(|part| part.split('/').next().unwrap_or(part))
        .any(|n| n == "7")
}

/// The days as the `cron` crate counts them (1-7 from Sunday), `*` for every day.
fn crate_days(field: &str, days: &[bool; 7]) -> String {
    if field == "*" || field == "?" {
        return "*".into();
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    list.join(",")
}

/// The days as Kubernetes' cron parser counts them (0-6 from Sunday).
fn kubernetes_days(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "*".into();
    }
    let list: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| d.to_string()).collect();
    list.join(",")
}

/// Standard cron counts weekdays 0-7 with 0 and 7 both Sunday; expand the field to the
/// days it means (index 0 = Sunday).
fn weekdays(field: &str) -> Result<[bool; 7], String> {
    if field == "*" || field == "?" {
        return Ok([true; 7]);
    }
    let day = |s: &str| -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            return if n <= 7 {
                Ok(n % 7)
            } else {
                Err(format!("has day-of-week {n}, outside 0-7"))
            };
        }
        NAMES
            .iter()
            .position(|d| d.eq_ignore_ascii_case(s))
            .map(|p| p as u32)
            .ok_or_else(|| format!("has day-of-week '{s}'; use 0-7 or SUN-SAT"))
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("has a bad step in '{item}'"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (
                        day(a)?,
                        b.parse::<u32>()
                            .ok()
                            .filter(|n| *n == 7)
                            .map_or_else(|| day(b), |_| Ok(7))?,
                    );
                    if a > b {
                        return Err(format!("has a backwards day-of-week range '{r}'"));
                    }
                    (a, b)
                }
                None if step > 1 => (day(r)?, 6),
                None => {
                    let d = day(r)?;
                    (d, d)
                }
            },
        };
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The fall-back hour of New York, 1 November 2026, as robfig/cron v3 (Kubernetes'
    /// CronJob controller) runs `*/30 1 * * *`: 01:00 and 01:30 EDT, then 01:00 and
    /// 01:30 EST, in time order (`e2e/cron-oracle` gave these; `shared::schedules` asks it
    /// live for three zones).
    #[test]
    fn a_repeated_hour_runs_in_time_order_as_the_cronjob_controller_runs_it() {
        let s = Schedule::parse("*/30 1 * * *", chrono_tz::America::New_York).unwrap();
        let t = |v: &str| crate::labels::parse_rfc3339(v).unwrap();
        let want: Vec<DateTime<Utc>> = [
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-02T06:00:00Z",
            "2026-11-02T06:30:00Z",
        ]
        .map(t)
        .to_vec();
        assert_eq!(s.upcoming(t("2026-11-01T04:00:00Z"), 6), want);
        // One after the other, as the operator asks: none skipped.
        let mut chain = vec![];
        let mut at = t("2026-11-01T04:00:00Z");
        for _ in 0..6 {
            at = s.next_after(at).unwrap();
            chain.push(at);
        }
        assert_eq!(chain, want);
        // And backwards, as missed and late runs are found.
        let mut back = s.recent(want[5], 6);
        back.reverse();
        assert_eq!(back, want);
        assert_eq!(s.at_or_before(t("2026-11-01T06:10:00Z")), Some(want[2]));
        assert_eq!(
            s.between(want[1], want[3], 10),
            vec![want[1], want[2], want[3]]
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_london_follows_summer_time() {
        let s = Schedule::parse("0 3 * * *", chrono_tz::Europe::London).unwrap();
        assert_eq!(
            s.next_after(at("2026-11-25T10:00:00Z")),
            Some(at("2026-11-26T03:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-07-01T10:00:00Z")),
            Some(at("2026-07-02T02:00:00Z"))
        );
    }

    #[test]
    fn weekdays_use_standard_numbering() {
        // 2026-11-25 is a Wednesday; 0 and 7 are Sunday, 1 is Monday.
        let mon = Schedule::parse("0 0 * * 1", Tz::UTC).unwrap();
        assert_eq!(
            mon.next_after(at("2026-11-25T00:00:00Z")),
            Some(at("2026-11-30T00:00:00Z"))
        );
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "@weekly"] {
            let s = Schedule::parse(sunday, Tz::UTC).unwrap();
            assert_eq!(
                s.next_after(at("2026-11-25T00:00:00Z")),
                Some(at("2026-11-29T00:00:00Z")),
                "{sunday}"
            );
        }
        let weekdays = Schedule::parse("30 6 * * 1-5", Tz::UTC).unwrap();
        let runs = weekdays.upcoming(at("2026-11-27T07:00:00Z"), 2); // Friday after the run
        assert_eq!(
            runs,
            vec![at("2026-11-30T06:30:00Z"), at("2026-12-01T06:30:00Z")]
        );
        let fri_to_sun = Schedule::parse("0 0 * * 5-7", Tz::UTC).unwrap();
        assert_eq!(fri_to_sun.upcoming(at("2026-11-25T00:00:00Z"), 3).len(), 3);
        assert_eq!(
            fri_to_sun.next_after(at("2026-11-25T00:00:00Z")),
            Some(at("2026-11-27T00:00:00Z"))
        );
    }

    #[test]
    fn a_cronjob_gets_sunday_as_kubernetes_spells_it() {
        let cj = |e: &str| Schedule::parse(e, Tz::UTC).unwrap().cronjob;
        assert_eq!(cj("0 12 * * 7"), "0 12 * * 0");
        assert_eq!(cj("0 12 * * 5-7"), "0 12 * * 0,5,6");
        assert_eq!(cj("0 12 * * 1,7"), "0 12 * * 0,1");
        assert_eq!(cj("0 12 * * 0-7"), "0 12 * * *");
        // Spellings Kubernetes reads as they are stay as written.
        for e in [
            "0 12 * * 0",
            "0 12 * * MON-FRI",
            "30 6 * * 1-5",
            "@weekly",
            "*/17 * * * *",
        ] {
            assert_eq!(cj(e), e);
        }
    }

    #[test]
    fn every_minute_and_steps() {
        let s = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(at("2026-11-25T10:00:30Z")),
            Some(at("2026-11-25T10:01:00Z"))
        );
        let s = Schedule::parse("*/15 * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.min_interval(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            Some(chrono::Duration::minutes(15))
        );
    }

    #[test]
    fn slots_before_and_between() {
        let s = Schedule::parse("0 * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.at_or_before(at("2026-11-25T03:00:00Z")),
            Some(at("2026-11-25T03:00:00Z"))
        );
        assert_eq!(
            s.at_or_before(at("2026-11-25T03:59:59Z")),
            Some(at("2026-11-25T03:00:00Z"))
        );
        let daily = Schedule::parse("0 3 * * *", chrono_tz::Europe::London).unwrap();
        assert_eq!(
            daily.at_or_before(at("2026-07-02T01:00:00Z")),
            Some(at("2026-07-01T02:00:00Z")),
            "03:00 London in summer is 02:00 UTC"
        );
        let six = s.between(at("2026-11-25T00:00:00Z"), at("2026-11-25T05:00:00Z"), 100);
        assert_eq!(six.len(), 6);
        assert_eq!(six[0], at("2026-11-25T00:00:00Z"));
        assert_eq!(six[5], at("2026-11-25T05:00:00Z"));
        assert!(
            s.between(at("2026-11-25T00:30:00Z"), at("2026-11-25T00:40:00Z"), 9)
                .is_empty()
        );
        assert_eq!(
            s.between(at("2026-11-25T00:00:00Z"), at("2026-11-26T00:00:00Z"), 3)
                .len(),
            3
        );
        assert_eq!(
            s.recent(at("2026-11-25T05:30:00Z"), 2),
            vec![at("2026-11-25T05:00:00Z"), at("2026-11-25T04:00:00Z")]
        );
    }

    #[test]
    fn refusals_say_why() {
        let bad = |e: &str| Schedule::parse(e, Tz::UTC).unwrap_err();
        assert!(bad("61 * * * *").contains("minute 61"));
        assert!(bad("0 25 * * *").contains("hour 25"));
        assert!(bad("0 3 * *").contains("4 fields"));
        assert!(bad("0 3 13 * 5").contains("either/or"));
        assert!(bad("@every 5m").contains("@daily"));
        assert!(bad("0 0 30 2 *").contains("never fires"));
        assert!(bad("0 0 * * 8").contains("day-of-week 8"));
        assert!(bad("0 0 * * FUN").contains("FUN"));
        assert!(bad("CRON_TZ=UTC 0 0 * * *").contains("spec.timeZone"));
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(parse_time_zone("Europe/London").is_ok());
    }
}
