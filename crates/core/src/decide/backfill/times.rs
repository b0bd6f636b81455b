//! A Backfill's times without listing them: per DataJob its schedule, its bounds and
//! how many times they hold, so that a pass steps from the cursor (`next`) a few times
//! ahead instead of enumerating the whole range (issue 25 item 7: every Backfill used to
//! re-plan all its times, up to 100 000, on every pass).
use std::cell::Cell;

use chrono::{DateTime, Utc};

use super::{Member, Names, Range, no_time_in_range, range, target, too_many};
use crate::labels;
use crate::schedule::Schedule;
use crate::validation::Problems;
use datajob_api::{BackfillProgress, BackfillSpec, BackfillStatus};

/// One DataJob's scheduled times in a Backfill's range: `[from, until]` of its schedule.
#[derive(Debug)]
pub struct Times<'a> {
    pub datajob: String,
    schedule: &'a Schedule,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    count: usize,
    /// The schedule times looked at so far (counting, stepping): the planning cost.
    examined: Cell<usize>,
}

impl<'a> Times<'a> {
    /// How many times the range holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The schedule times looked at through this value so far.
    pub fn examined(&self) -> usize {
        self.examined.get()
    }

    fn look(&self, n: usize) {
        self.examined.set(self.examined.get().saturating_add(n));
    }

    /// The first time of the range.
    pub fn first(&self) -> Option<DateTime<Utc>> {
        self.look(1);
        self.schedule
            .between(self.from, self.until, 1)
            .first()
            .copied()
    }

    /// The time of the range after `t`.
    pub fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.look(1);
        self.schedule
            .next_after(t.max(self.from - chrono::Duration::seconds(1)))
            .filter(|n| *n <= self.until)
    }

    /// Whether `t` is one of the range's times.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        if t < self.from || t > self.until {
            return false;
        }
        self.look(1);
        self.schedule.at_or_before(t) == Some(t)
    }

    /// Every time of the range, oldest first: O(N), for the plugin's one look.
    pub fn all(&self) -> Vec<DateTime<Utc>> {
        self.look(self.count);
        self.schedule.between(self.from, self.until, self.count)
    }
}

/// The times a Backfill runs, as [`super::plan`] decides them (the same refusals), but
/// counted once: the counts of `previous` (the status of the same generation) are kept
/// when they cannot have changed, so a pass after the first looks at no time to plan.
pub fn times<'a>(
    spec: &BackfillSpec,
    namespace: &str,
    members: &'a [Member],
    now: DateTime<Utc>,
    names: Names,
    previous: &BackfillStatus,
) -> Result<Vec<Times<'a>>, Problems> {
    let (range, mut p) = range(spec, names);
    let (target, schedule) = match target(spec, namespace, members, names) {
        Ok(found) => found,
        Err(problem) => {
            p.push(problem);
            return Err(Problems(p));
        }
    };
    let Some(Range { from, to, max }) = range.filter(|_| p.is_empty()) else {
        return Err(Problems(p));
    };
    let until = to.min(now);
    let limit = usize::try_from(max.max(1)).unwrap_or(1);
    // The counts are final once the range ended before the Backfill started: every later
    // pass has the same `until`.
    let settled = previous
        .start_time
        .as_deref()
        .and_then(labels::parse_rfc3339)
        .is_some_and(|started| to <= started);
    let count = |name: &str, schedule: &'a Schedule| {
        let times = Times {
            datajob: name.to_string(),
            schedule,
            from,
            until,
            count: 0,
            examined: Cell::new(0),
        };
        let known = previous
            .data_jobs
            .iter()
            .find(|p| p.data_job == name)
            .filter(|p| settled && on_schedule(p, &times));
        let count = match known {
            Some(p) => usize::try_from(p.slots).unwrap_or(0),
            None => {
                let n = schedule.between(from, until, limit + 1).len();
                times.look(n + 1);
                n
            }
        };
        Times { count, ..times }
    };
    let mut out = vec![count(&target.name, schedule)];
    if out[0].is_empty() {
        return Err(Problems(vec![no_time_in_range(
            spec, schedule, from, to, now, names,
        )]));
    }
    if spec.downstream.unwrap_or(true) {
        out.extend(
            downstream(&target.name, members)
                .into_iter()
                .map(|(name, schedule)| count(&name, schedule)),
        );
    }
    let total: usize = out.iter().map(Times::len).sum();
    if total > limit {
        return Err(Problems(vec![too_many(spec, max, out.len() > 1, names)]));
    }
    Ok(out)
}

/// The scheduled DataJobs downstream of `target`, nearest first, with their schedules.
fn downstream<'a>(target: &str, members: &'a [Member]) -> Vec<(String, &'a Schedule)> {
    let graph: Vec<(String, Vec<String>)> = members
        .iter()
        .map(|m| (m.name.clone(), m.inputs.clone()))
        .collect();
    crate::decide::dataflow::downstream_of(target, &graph)
        .into_iter()
        .filter_map(|name| {
            let schedule = members
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.schedule.as_ref())?;
            Some((name, schedule))
        })
        .collect()
}

/// Whether the progress kept for a DataJob still follows its schedule: its cursor is one
/// of the range's times (a schedule changed since would count other times).
fn on_schedule(p: &BackfillProgress, times: &Times) -> bool {
    match p.next.as_deref() {
        None => true,
        Some(next) => labels::parse_rfc3339(next).is_some_and(|t| times.contains(t)),
    }
}
