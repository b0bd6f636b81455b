//! The catch-up after downtime (`spec.catchUp`), decided purely: whether a run the
//! CronJob made late may still start, and which missed time `catchUp: all` runs again.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use datajob_api::CatchUp;

use crate::decide::runs;
use crate::schedule::Schedule;

/// The most missed times `catchUp: all` runs again: older ones are given up (and
/// counted as missed), so no number of missed schedules can stall a DataJob
/// (kubernetes#42649: a CronJob without a starting deadline stops after 100).
pub(crate) const MAX_CATCH_UP: usize = 100;
/// With `catchUp: none`, how late a scheduled run may still start.
pub(crate) const NONE_LATENESS: chrono::Duration = chrono::Duration::seconds(60);

/// Whether a run the CronJob made for `slot`, seen for the first time at `now`, may start.
pub(crate) fn admissible(
    policy: CatchUp,
    schedule: &Schedule,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let late = now - slot;
    let deadline = runs::starting_deadline(schedule, now);
    match policy {
        CatchUp::All => true,
        CatchUp::Latest => {
            late <= deadline && schedule.next_after(slot).is_none_or(|next| next > now)
        }
        CatchUp::None => late <= deadline.min(NONE_LATENESS),
    }
}

/// What `catchUp: all` does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUpPlan {
    /// The oldest missed time to run now, if any.
    pub replay: Option<DateTime<Utc>>,
    /// Every time up to this one has a run or was given up.
    pub through: DateTime<Utc>,
    /// More than [`MAX_CATCH_UP`] times were missed: the older ones were given up.
    pub given_up: bool,
}

/// The next missed time to run again, oldest first: times after `through` that have no
/// run (`ran`) and whose starting deadline passed. At most the newest `max` are looked at.
pub fn catch_up(
    schedule: &Schedule,
    ran: &BTreeSet<DateTime<Utc>>,
    through: DateTime<Utc>,
    now: DateTime<Utc>,
    max: usize,
) -> CatchUpPlan {
    let deadline = runs::starting_deadline(schedule, now) + runs::MISS_MARGIN;
    let recent: Vec<DateTime<Utc>> = schedule
        .recent(now, max + 1)
        .into_iter()
        .filter(|s| *s > through)
        .collect();
    let given_up = recent.len() > max;
    let mut candidates: Vec<DateTime<Utc>> = recent.into_iter().take(max).collect();
    candidates.reverse();
    let mut through = match (given_up, candidates.first()) {
        (true, Some(first)) => *first - chrono::Duration::seconds(1),
        _ => through,
    };
    for slot in candidates {
        if ran.contains(&slot) {
            through = slot;
            continue;
        }
        if slot + deadline > now {
            break;
        }
        return CatchUpPlan {
            replay: Some(slot),
            through,
            given_up,
        };
    }
    CatchUpPlan {
        replay: None,
        through,
        given_up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).unwrap()
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", chrono_tz::UTC).unwrap()
    }

    #[test]
    fn latest_runs_the_most_recent_missed_time_and_none_only_what_is_on_time() {
        let s = hourly();
        let now = t("2026-11-25T06:30:00Z");
        // A Job the CronJob made at 03:00 while the operator was down.
        assert!(!admissible(
            CatchUp::Latest,
            &s,
            t("2026-11-25T03:00:00Z"),
            now
        ));
        assert!(admissible(
            CatchUp::Latest,
            &s,
            t("2026-11-25T06:00:00Z"),
            now
        ));
        assert!(admissible(CatchUp::All, &s, t("2026-11-25T03:00:00Z"), now));
        assert!(!admissible(
            CatchUp::None,
            &s,
            t("2026-11-25T06:00:00Z"),
            now
        ));
        assert!(admissible(
            CatchUp::None,
            &s,
            t("2026-11-25T06:00:00Z"),
            t("2026-11-25T06:00:40Z")
        ));
    }

    #[test]
    fn all_replays_missed_times_oldest_first_one_at_a_time() {
        let s = hourly();
        let now = t("2026-11-25T06:30:00Z");
        let mut ran: BTreeSet<DateTime<Utc>> = [t("2026-11-25T02:00:00Z")].into();
        let through = t("2026-11-25T02:00:00Z");
        let p = catch_up(&s, &ran, through, now, MAX_CATCH_UP);
        assert_eq!(p.replay, Some(t("2026-11-25T03:00:00Z")));
        assert_eq!(p.through, through);
        // 03:00 got its run: next is 04:00; 06:00 is still within its deadline.
        ran.insert(t("2026-11-25T03:00:00Z"));
        let p = catch_up(&s, &ran, p.through, now, MAX_CATCH_UP);
        assert_eq!(
            (p.replay, p.through),
            (Some(t("2026-11-25T04:00:00Z")), t("2026-11-25T03:00:00Z"))
        );
        ran.insert(t("2026-11-25T04:00:00Z"));
        ran.insert(t("2026-11-25T05:00:00Z"));
        let p = catch_up(&s, &ran, p.through, now, MAX_CATCH_UP);
        assert_eq!(
            (p.replay, p.through, p.given_up),
            (None, t("2026-11-25T05:00:00Z"), false)
        );
    }

    #[test]
    fn thousands_of_missed_times_never_stall_and_only_the_newest_are_replayed() {
        let every_minute = Schedule::parse("* * * * *", chrono_tz::UTC).unwrap();
        let through = t("2026-11-20T00:00:00Z");
        let now = t("2026-11-25T00:00:30Z");
        let started = std::time::Instant::now();
        let p = catch_up(&every_minute, &BTreeSet::new(), through, now, MAX_CATCH_UP);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(p.given_up);
        // The newest 100 minutes are kept (00:00 back to 22:21); the oldest runs first.
        assert_eq!(p.replay, Some(t("2026-11-24T22:21:00Z")));
        assert_eq!(p.through, t("2026-11-24T22:20:59Z"));
    }
}
