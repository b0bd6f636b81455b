//! Expected-by times (`spec.expectBy`): when the run of a logical time is due to have
//! succeeded, and whether the DataJob is `Late` now. Late only tells; it never ends a
//! run. What counts is the run of the newest scheduled time (or a one-off DataJob's one
//! run) whose due time has passed: a triggered run, a run with parameters and a
//! backfill's run are not held to it.
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use datajob_api::{RunRecord, RunState};

use crate::labels;
use crate::schedule::Schedule;

/// The shortest and longest `expectBy` duration.
pub const MIN_AFTER: Duration = Duration::minutes(1);
pub const MAX_AFTER: Duration = Duration::days(31);

/// When a run must have succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectBy {
    /// This long after its logical time, e.g. `3h`.
    After(Duration),
    /// The first time this time of day comes (in the DataJob's zone) after its logical
    /// time, e.g. `06:00`.
    TimeOfDay(NaiveTime),
}

impl ExpectBy {
    /// `06:00` (a time of day, 24-hour) or a duration such as `3h`, `90m`.
    pub fn parse(s: &str) -> Result<ExpectBy, String> {
        let s = s.trim();
        if s.contains(':') {
            return NaiveTime::parse_from_str(s, "%H:%M")
                .map(ExpectBy::TimeOfDay)
                .map_err(|_| {
                    "is not a time of day: write it as HH:MM, 24-hour, e.g. 06:00".to_string()
                });
        }
        let d = crate::units::parse_duration(s)
            .map_err(|e| format!("{e}; or write a time of day such as 06:00"))?;
        let d = Duration::from_std(d).unwrap_or(MAX_AFTER + MAX_AFTER);
        if d < MIN_AFTER || d > MAX_AFTER {
            return Err("is not between 1m and 31d after the logical time".into());
        }
        Ok(ExpectBy::After(d))
    }

    /// When the run of `logical_time` is due, with times of day read in `tz`.
    pub fn due(self, logical_time: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            ExpectBy::After(d) => logical_time + d,
            ExpectBy::TimeOfDay(at) => {
                let local = logical_time.with_timezone(&tz);
                let mut date = local.date_naive();
                for _ in 0..3 {
                    // A time a DST change skips is due at the first instant after it.
                    let candidate = tz
                        .from_local_datetime(&date.and_time(at))
                        .earliest()
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or_else(|| (date.and_time(at) + Duration::hours(1)).and_utc());
                    if candidate > logical_time {
                        return candidate;
                    }
                    date = date.succ_opt().unwrap_or(date);
                }
                logical_time + Duration::days(1)
            }
        }
    }

    /// `06:00 Europe/London` or `3h after the logical time`.
    pub fn describe(self, tz: Tz) -> String {
        match self {
            ExpectBy::After(d) => format!(
                "{} after the logical time",
                crate::units::format_duration(d.to_std().unwrap_or_default())
            ),
            ExpectBy::TimeOfDay(at) => format!("{} {}", at.format("%H:%M"), tz.name()),
        }
    }
}

/// Why an `expectBy` cannot work with `schedule`: a time of day for a schedule that runs
/// more than once a day, or one that comes at or before a run's own time of day (the run
/// would be due the next day: a duration says that plainly).
pub fn schedule_problem(
    expect: ExpectBy,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Option<String> {
    let ExpectBy::TimeOfDay(at) = expect else {
        return None;
    };
    if schedule
        .min_interval(now)
        .is_some_and(|i| i < Duration::hours(24))
    {
        return Some(format!(
            "is a time of day, and schedule {:?} runs more than once a day; write a duration after each run's logical time instead, e.g. 2h",
            schedule.expression
        ));
    }
    let before = schedule.upcoming(now, 8).into_iter().find_map(|slot| {
        let run_at = slot.with_timezone(&schedule.time_zone).time();
        (run_at >= at).then_some(run_at)
    })?;
    let hours = ((at - before).num_minutes().rem_euclid(24 * 60) + 59) / 60;
    Some(format!(
        "is earlier in the day than the run it is for, which starts at {}: it would be due the next day; if that is meant, write it as a duration after the logical time, e.g. {}h",
        before.format("%H:%M"),
        hours.max(1)
    ))
}

/// Whether the DataJob is late now, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lateness {
    pub late: bool,
    /// `Late` or `OnTime`.
    pub reason: &'static str,
    pub message: String,
}

/// The run held to `expect` now: the newest scheduled time at or after `since` (the
/// DataJob's creation) whose due time has passed, or, without a schedule, the one run
/// of `one_off` (its logical time). `runs` are the DataJob's records.
pub fn lateness(
    expect: ExpectBy,
    tz: Tz,
    schedule: Option<&Schedule>,
    one_off: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    runs: &[RunRecord],
    now: DateTime<Utc>,
) -> Lateness {
    let due_slot = match schedule {
        Some(s) => newest_due_slot(expect, tz, s, since, now),
        None => one_off.filter(|t| expect.due(*t, tz) <= now),
    };
    let Some(slot) = due_slot else {
        return Lateness {
            late: false,
            reason: "OnTime",
            message: "no run is due yet".into(),
        };
    };
    let by = format!(
        "expected by {} ({})",
        expect.describe(tz),
        labels::rfc3339(expect.due(slot, tz))
    );
    let time = labels::rfc3339(slot);
    let run = runs
        .iter()
        .find(|r| r.logical_time == time && r.params.is_empty() && r.backfill.is_none());
    match run {
        Some(r) if r.state == RunState::Succeeded => Lateness {
            late: false,
            reason: "OnTime",
            message: format!("the run of {time}, {by}, succeeded"),
        },
        Some(r) => Lateness {
            late: true,
            reason: "Late",
            message: format!(
                "run {} of {time} was {by} and is {}{}",
                r.name,
                r.state,
                r.reason
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            ),
        },
        None => Lateness {
            late: true,
            reason: "Late",
            message: format!("the run of {time} was {by} and has not started"),
        },
    }
}

/// The newest slot of `schedule` at or after `since` whose due time has passed: the slot
/// at or before `now - d` for a duration; for a time of day (schedules that run at most
/// daily, due within a day) the newer of the last two slots that is due.
fn newest_due_slot(
    expect: ExpectBy,
    tz: Tz,
    schedule: &Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slot = match expect {
        ExpectBy::After(d) => schedule.at_or_before(now - d),
        ExpectBy::TimeOfDay(_) => schedule
            .recent(now, 2)
            .into_iter()
            .filter(|s| expect.due(*s, tz) <= now)
            .max(),
    };
    slot.filter(|s| *s >= since)
}

/// When the next run becomes due after `now` (to look again then), if one does: the
/// due time of the slot after the newest due one.
pub fn next_due(
    expect: ExpectBy,
    tz: Tz,
    schedule: Option<&Schedule>,
    one_off: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slot = match schedule {
        Some(s) => {
            let after = newest_due_slot(expect, tz, s, since, now)
                .unwrap_or(since - Duration::seconds(1))
                .max(since - Duration::seconds(1));
            s.next_after(after)
        }
        None => one_off,
    };
    slot.map(|s| expect.due(s, tz)).filter(|due| *due > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).unwrap()
    }

    fn run(time: &str, state: RunState) -> RunRecord {
        RunRecord {
            name: format!("r-{time}"),
            logical_time: time.into(),
            state,
            ..Default::default()
        }
    }

    #[test]
    fn expect_by_is_a_time_of_day_or_a_duration() {
        assert_eq!(
            ExpectBy::parse("06:00"),
            Ok(ExpectBy::TimeOfDay(
                NaiveTime::from_hms_opt(6, 0, 0).unwrap()
            ))
        );
        assert_eq!(
            ExpectBy::parse("3h"),
            Ok(ExpectBy::After(Duration::hours(3)))
        );
        assert!(ExpectBy::parse("25:00").unwrap_err().contains("HH:MM"));
        assert!(
            ExpectBy::parse("30s")
                .unwrap_err()
                .contains("between 1m and 31d")
        );
        assert!(ExpectBy::parse("soon").is_err());
    }

    #[test]
    fn a_run_is_due_after_its_logical_time_in_its_zone() {
        let six = ExpectBy::parse("06:00").unwrap();
        let london = chrono_tz::Europe::London;
        // Summer time: 06:00 in London is 05:00 UTC.
        assert_eq!(
            six.due(t("2026-07-01T02:00:00Z"), london),
            t("2026-07-01T05:00:00Z")
        );
        // A run at 23:00 is due the next morning.
        assert_eq!(
            six.due(t("2026-12-01T23:00:00Z"), london),
            t("2026-12-02T06:00:00Z")
        );
        let after = ExpectBy::parse("90m").unwrap();
        assert_eq!(
            after.due(t("2026-12-01T03:00:00Z"), london),
            t("2026-12-01T04:30:00Z")
        );
    }

    #[test]
    fn a_time_of_day_must_come_after_the_run_and_suit_a_daily_schedule() {
        let tz = chrono_tz::UTC;
        let now = t("2026-12-01T00:00:00Z");
        let daily = Schedule::parse("0 3 * * *", tz).unwrap();
        assert_eq!(
            schedule_problem(ExpectBy::parse("06:00").unwrap(), &daily, now),
            None
        );
        let p = schedule_problem(ExpectBy::parse("02:00").unwrap(), &daily, now).unwrap();
        assert!(
            p.contains("starts at 03:00") && p.contains("e.g. 23h"),
            "{p}"
        );
        assert!(schedule_problem(ExpectBy::parse("03:00").unwrap(), &daily, now).is_some());
        let hourly = Schedule::parse("@hourly", tz).unwrap();
        let p = schedule_problem(ExpectBy::parse("06:00").unwrap(), &hourly, now).unwrap();
        assert!(p.contains("more than once a day"), "{p}");
        assert_eq!(
            schedule_problem(ExpectBy::parse("30m").unwrap(), &hourly, now),
            None
        );
    }

    #[test]
    fn the_newest_due_run_decides_whether_the_datajob_is_late() {
        let tz = chrono_tz::UTC;
        let daily = Schedule::parse("0 3 * * *", tz).unwrap();
        let six = ExpectBy::parse("06:00").unwrap();
        let since = t("2026-11-01T00:00:00Z");
        let at = |now: &str, runs: &[RunRecord]| {
            lateness(six, tz, Some(&daily), None, since, runs, t(now))
        };
        // Before 06:00 the run of today is not due; yesterday's succeeded.
        let ok = [run("2026-12-01T03:00:00Z", RunState::Succeeded)];
        assert!(!at("2026-12-02T05:59:00Z", &ok).late);
        // At 06:00 today's run is due and still running: late.
        let running = [
            run("2026-12-02T03:00:00Z", RunState::Running),
            run("2026-12-01T03:00:00Z", RunState::Succeeded),
        ];
        let l = at("2026-12-02T06:00:00Z", &running);
        assert!(l.late, "{l:?}");
        assert!(
            l.message
                .contains("was expected by 06:00 UTC (2026-12-02T06:00:00Z) and is Running"),
            "{l:?}"
        );
        // No run at all: late too.
        let l = at("2026-12-02T06:00:00Z", &ok);
        assert!(l.late && l.message.contains("has not started"), "{l:?}");
        // It succeeded late: on time again, Late only tells.
        let done = [run("2026-12-02T03:00:00Z", RunState::Succeeded)];
        assert!(!at("2026-12-02T07:00:00Z", &done).late);
        // A backfill's or a parameterised run of that time does not count.
        let mut backfill = run("2026-12-02T03:00:00Z", RunState::Succeeded);
        backfill.backfill = Some("nov".into());
        assert!(at("2026-12-02T07:00:00Z", &[backfill]).late);
        // Slots before the DataJob existed are not held to it.
        let fresh = lateness(
            six,
            tz,
            Some(&daily),
            None,
            t("2026-12-02T04:00:00Z"),
            &[],
            t("2026-12-02T07:00:00Z"),
        );
        assert!(!fresh.late, "{fresh:?}");
        // A frequent schedule with a long duration: the slot two hours back is due.
        let minutely = Schedule::parse("* * * * *", tz).unwrap();
        let two_h = ExpectBy::parse("2h").unwrap();
        let l = lateness(
            two_h,
            tz,
            Some(&minutely),
            None,
            since,
            &[],
            t("2026-12-02T06:00:30Z"),
        );
        assert!(
            l.late && l.message.contains("2026-12-02T04:00:00Z"),
            "{l:?}"
        );
        assert_eq!(
            next_due(
                two_h,
                tz,
                Some(&minutely),
                None,
                since,
                t("2026-12-02T06:00:30Z")
            ),
            Some(t("2026-12-02T06:01:00Z"))
        );
        // Look again when the next run is due.
        assert_eq!(
            next_due(
                six,
                tz,
                Some(&daily),
                None,
                since,
                t("2026-12-02T06:00:00Z")
            ),
            Some(t("2026-12-03T06:00:00Z"))
        );
        assert_eq!(
            next_due(
                six,
                tz,
                Some(&daily),
                None,
                since,
                t("2026-12-02T05:00:00Z")
            ),
            Some(t("2026-12-02T06:00:00Z"))
        );
    }

    #[test]
    fn a_one_off_run_is_late_once_its_time_passed() {
        let tz = chrono_tz::UTC;
        let after = ExpectBy::parse("1m").unwrap();
        let created = t("2026-12-01T02:00:00Z");
        let l = |now: &str, runs: &[RunRecord]| {
            lateness(after, tz, None, Some(created), created, runs, t(now))
        };
        let running = [run("2026-12-01T02:00:00Z", RunState::Running)];
        assert!(!l("2026-12-01T02:00:59Z", &running).late);
        assert!(l("2026-12-01T02:01:00Z", &running).late);
        let done = [run("2026-12-01T02:00:00Z", RunState::Succeeded)];
        assert!(!l("2026-12-01T02:05:00Z", &done).late);
    }
}
