//! Due runs: the next run of each scheduled DataJob placed on a group, and the warm-up
//! they ask for (`spec.warmUpBefore`).
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::group::Group;
use crate::resources::Request;

/// How long after a scheduled time its run still counts as due (its pod is on the way).
pub const WARM_GRACE: Duration = Duration::from_secs(60);

/// A scheduled DataJob placed on a group: what one run asks for, and when it runs.
pub struct Scheduled<'a> {
    /// `namespace/name`, as the status names it.
    pub datajob: String,
    pub request: Request,
    pub schedule: &'a crate::schedule::Schedule,
    /// The logical time of its latest run: a due time it has reached has run.
    pub last_run: Option<DateTime<Utc>>,
    /// That run was started and has not ended yet (`Pending` or `Running`): its pod is
    /// on the way, so its due time still counts (for [`WARM_GRACE`]).
    pub last_run_in_flight: bool,
    /// When the DataJob was made: its schedule's times before that never run.
    pub since: Option<DateTime<Utc>>,
}

/// A scheduled run that has no pod yet.
#[derive(Clone, Debug, PartialEq)]
pub struct DueRun {
    /// `namespace/name` of its DataJob.
    pub datajob: String,
    pub request: Request,
    pub due: DateTime<Utc>,
}

/// The next run of each scheduled DataJob: its first due time since [`WARM_GRACE`] ago
/// (a run due that little ago still counts: its pod is on the way) and since the DataJob
/// was made, that it has not run. Callers leave out DataJobs that already have a pod.
pub fn next_runs(scheduled: &[Scheduled<'_>], now: DateTime<Utc>) -> Vec<DueRun> {
    let grace = chrono::Duration::from_std(WARM_GRACE).unwrap_or_default();
    scheduled
        .iter()
        .filter_map(|s| {
            let from = s.since.map_or(now - grace, |t| t.max(now - grace));
            let mut due = s.schedule.next_after(from)?;
            // The run at `due` has run, or has started and its pod is not coming (any
            // more): the one after it is next.
            let coming = s.last_run_in_flight && s.last_run == Some(due);
            if s.last_run.is_some_and(|l| l >= due) && !coming {
                due = s.schedule.next_after(due)?;
            }
            Some(DueRun {
                datajob: s.datajob.clone(),
                request: s.request,
                due,
            })
        })
        .collect()
}

/// The runs due within `warmUpBefore` (or overdue, within [`WARM_GRACE`]), the runs due
/// later, and when the next warm-up begins. Without `warmUpBefore` every run is later.
pub(super) fn split_due<'a>(
    group: &Group,
    due: &'a [DueRun],
    now: DateTime<Utc>,
) -> (Vec<&'a DueRun>, Vec<&'a DueRun>, Option<DateTime<Utc>>) {
    let lead = group
        .warm_up_before
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut warm = Vec::new();
    let mut later: Vec<&DueRun> = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for d in due {
        match lead {
            Some(lead) if d.due - lead <= now => warm.push(d),
            Some(lead) => {
                later.push(d);
                next = Some(next.map_or(d.due - lead, |n| n.min(d.due - lead)));
            }
            None => later.push(d),
        }
    }
    later.sort_by_key(|d| d.due);
    (warm, later, next)
}

/// Warm-up for scheduled runs: the requests of runs due within the group's
/// `warmUpBefore` (or due less than [`WARM_GRACE`] ago, while their pods are made), and
/// when the next warm-up begins.
pub fn warm_up(
    group: &Group,
    due: &[DueRun],
    now: DateTime<Utc>,
) -> (Vec<Request>, Option<DateTime<Utc>>) {
    let (warm, _, next) = split_due(group, due, now);
    (warm.into_iter().map(|d| d.request).collect(), next)
}

#[cfg(test)]
#[path = "due_tests.rs"]
mod tests;
