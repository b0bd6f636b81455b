//! A Backfill's times, decided purely: its plan (every time in the range, refusals in
//! the field's words; [`times`] counts them once and steps from the cursor) and its
//! next step, oldest first and a few at a time, with the DataJobs downstream following;
//! [`turns`] says which Backfills may start runs.
use std::collections::BTreeMap;

mod times;
pub mod turns;

pub use times::{Times, times};

use chrono::{DateTime, Utc};

use crate::decide::dataflow::Upstream;
use crate::decide::runs::condition;
use crate::labels;
use crate::schedule::Schedule;
use crate::validation::{Problem, Problems};
use datajob_api::{
    ActiveSlot, BackfillProgress, BackfillSpec, BackfillState, BackfillStatus, FailedSlot, RunState,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The field names a door uses in its words: the Backfill's spec, or the plugin's flags.
#[derive(Clone, Copy, Debug)]
pub struct Names {
    pub datajob: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub max_slots: &'static str,
}

/// The most failed times a Backfill's status lists (the latest; `failed` counts them
/// all): a range of thousands of failing times would otherwise outgrow the object
/// (etcd's 1.5 MiB) and every status write would fail.
pub const MAX_FAILED_SLOTS: usize = 100;

/// Words about a Backfill object.
pub const SPEC: Names = Names {
    datajob: "spec.dataJob",
    from: "spec.from",
    to: "spec.to",
    max_slots: "spec.maxSlots",
};

/// Words about `kubectl datajob backfill`.
pub const FLAGS: Names = Names {
    datajob: "NAME",
    from: "--from",
    to: "--to",
    max_slots: "--max-slots",
};

/// Per DataJob (the target first, then those downstream), its times in the range.
pub type Plan = Vec<(String, Vec<DateTime<Utc>>)>;

/// A DataJob of the namespace, as a Backfill sees it.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub schedule: Option<Schedule>,
    pub inputs: Vec<String>,
}

/// The times a Backfill runs: for the DataJob and (with `downstream`) each DataJob that
/// reads it, directly or not, nearest first; each with its scheduled times in the range
/// up to `now`, oldest first. Refused with the field, the value and the fix.
pub fn plan(
    spec: &BackfillSpec,
    namespace: &str,
    members: &[Member],
    now: DateTime<Utc>,
    names: Names,
) -> Result<Plan, Problems> {
    let times = times(
        spec,
        namespace,
        members,
        now,
        names,
        &BackfillStatus::default(),
    )?;
    Ok(times.iter().map(|t| (t.datajob.clone(), t.all())).collect())
}

/// A Backfill's range, read.
struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: i32,
}

/// `from`, `to` and `maxSlots` read, with what is wrong with them; the range is `None`
/// when a time does not parse.
fn range(spec: &BackfillSpec, names: Names) -> (Option<Range>, Vec<Problem>) {
    let mut p = Vec::new();
    let time = |field: &str, value: &str, p: &mut Vec<Problem>| {
        let t = labels::parse_rfc3339(value);
        if t.is_none() {
            p.push(Problem::new(
                field,
                value,
                "is not a time",
                "write an RFC 3339 time such as 2026-11-01T00:00:00Z (or, with the plugin, a date such as 2026-11-01)",
            ));
        }
        t
    };
    let from = time(names.from, &spec.from, &mut p);
    let to = time(names.to, &spec.to, &mut p);
    let max = spec
        .max_slots
        .unwrap_or(datajob_api::backfill::DEFAULT_MAX_SLOTS);
    if max < 1 {
        p.push(Problem::new(
            names.max_slots,
            max,
            "is less than 1",
            "allow at least one time",
        ));
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        p.push(Problem::new(
            names.from,
            &spec.from,
            format!("is after {} {:?}", names.to, spec.to),
            format!(
                "swap them: {} is the first time, {} the last",
                names.from, names.to
            ),
        ));
    }
    let range = match (from, to) {
        (Some(from), Some(to)) => Some(Range { from, to, max }),
        _ => None,
    };
    (range, p)
}

/// The DataJob the Backfill names, and its schedule; or why it cannot be backfilled.
fn target<'a>(
    spec: &BackfillSpec,
    namespace: &str,
    members: &'a [Member],
    names: Names,
) -> Result<(&'a Member, &'a Schedule), Problem> {
    let Some(target) = members.iter().find(|m| m.name == spec.data_job) else {
        let close =
            crate::suggest::closest(&spec.data_job, members.iter().map(|m| m.name.as_str()));
        let fix = match close.is_empty() {
            true => {
                "name a DataJob of this namespace (`kubectl datajob status` lists them)".to_string()
            }
            false => format!("did you mean {}?", crate::suggest::or_list(&close)),
        };
        return Err(Problem::new(
            names.datajob,
            &spec.data_job,
            format!("is not a DataJob in namespace {namespace}"),
            fix,
        ));
    };
    let Some(schedule) = &target.schedule else {
        return Err(Problem::new(
            names.datajob,
            &spec.data_job,
            "has no schedule, so it has no times to backfill",
            format!(
                "run one time with `kubectl datajob trigger {} --at TIME`",
                spec.data_job
            ),
        ));
    };
    Ok((target, schedule))
}

/// A range with no time of the schedule in it (up to now): the nearest times it has.
fn no_time_in_range(
    spec: &BackfillSpec,
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    names: Names,
) -> Problem {
    let before = schedule.at_or_before(from).map(labels::rfc3339);
    let after = schedule.next_after(to).map(labels::rfc3339);
    let nearest = [before, after].into_iter().flatten().collect::<Vec<_>>();
    let what = match from > now {
        true => format!(
            "is in the future: {} has no time in it to backfill yet (the schedule will run them)",
            spec.data_job
        ),
        false => format!(
            "holds no time of {}'s schedule {:?} ({}) up to now",
            spec.data_job,
            schedule.expression,
            schedule.time_zone.name()
        ),
    };
    let fix = match nearest.is_empty() {
        true => "widen the range".to_string(),
        false => format!(
            "widen the range; the nearest times are {}",
            nearest.join(" and ")
        ),
    };
    Problem::new(
        format!("{}..{}", names.from, names.to),
        format!("{}..{}", spec.from, spec.to),
        what,
        fix,
    )
}

/// More times than `maxSlots` allows.
fn too_many(spec: &BackfillSpec, max: i32, downstream: bool, names: Names) -> Problem {
    Problem::new(
        format!("{}..{}", names.from, names.to),
        format!("{}..{}", spec.from, spec.to),
        format!(
            "holds more than {max} scheduled times{}",
            match downstream {
                true => " (its DataJob's and those of the DataJobs downstream together)",
                false => "",
            }
        ),
        format!(
            "narrow the range, or raise {} if you mean it",
            names.max_slots
        ),
    )
}

/// What a time of a DataJob is, as far as a Backfill can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Its run succeeded (and its output is published).
    Succeeded,
    /// Its run failed, for this reason, at this time.
    Failed {
        reason: String,
        finished: Option<DateTime<Utc>>,
    },
    /// A run is going or waiting (or its output is being published).
    Active,
    /// No run is known.
    Absent,
}

/// The state of time `t` of the DataJob `view` describes.
pub(crate) fn slot_state(view: &Upstream, t: DateTime<Utc>) -> SlotState {
    let at = labels::rfc3339(t);
    if view.published.iter().any(|p| p.logical_time == at) {
        return SlotState::Succeeded;
    }
    match view.runs.iter().find(|r| r.logical_time == at) {
        None => SlotState::Absent,
        Some(r) if r.state == RunState::Succeeded && view.output.is_none() => SlotState::Succeeded,
        Some(r) if r.state == RunState::Failed => SlotState::Failed {
            reason: r.reason.clone().unwrap_or_else(|| "Failed".into()),
            finished: r.finish_time.as_deref().and_then(labels::parse_rfc3339),
        },
        Some(_) => SlotState::Active,
    }
}

/// A run a Backfill starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub datajob: String,
    pub logical_time: DateTime<Utc>,
    /// Its time failed before: the old run's Job (if still there) goes first.
    pub rerun: bool,
}

/// One step of a Backfill: the runs to start now and the status that records it.
/// `plan` is [`times`]'s answer; `views` what each DataJob says now; `inputs_of` their
/// inputs; `previous` the Backfill's status (empty after a spec change).
pub fn step(
    spec: &BackfillSpec,
    plan: &[Times],
    views: &BTreeMap<String, Upstream>,
    inputs_of: &BTreeMap<String, Vec<String>>,
    previous: &BackfillStatus,
    now: DateTime<Utc>,
) -> (BackfillStatus, Vec<Start>) {
    step_in_turn(spec, plan, views, inputs_of, previous, now, turns::Turn::Go)
}

/// [`step`] for a Backfill whose [`turns::Turn`] is `turn`: one that waits for a place
/// follows the runs it has but starts no new time, and its message says why.
pub fn step_in_turn(
    spec: &BackfillSpec,
    plan: &[Times],
    views: &BTreeMap<String, Upstream>,
    inputs_of: &BTreeMap<String, Vec<String>>,
    previous: &BackfillStatus,
    now: DateTime<Utc>,
    turn: turns::Turn,
) -> (BackfillStatus, Vec<Start>) {
    let parallel = usize::try_from(
        spec.parallel
            .unwrap_or(datajob_api::backfill::DEFAULT_PARALLEL)
            .max(1),
    )
    .unwrap_or(1);
    let mut s = Stepper {
        plan,
        views,
        inputs_of,
        parallel,
        rerun_failed: spec.rerun_failed.unwrap_or(false),
        stamp: labels::rfc3339(now),
        room: turn == turns::Turn::Go,
        starts: Vec::new(),
        failed_slots: previous.failed_slots.clone(),
        progress: Vec::new(),
    };
    for times in plan {
        s.datajob(times, previous);
    }
    let starts = std::mem::take(&mut s.starts);
    let mut status = s.status(previous);
    if status.state == Some(BackfillState::Running)
        && let Some(waiting) = turn.message(
            status.succeeded + status.skipped + status.failed,
            status.total,
        )
    {
        status.message = Some(waiting);
    }
    (status, starts)
}

/// One step of a Backfill, DataJob by DataJob (inputs first, as the plan lists them).
struct Stepper<'a> {
    plan: &'a [Times<'a>],
    views: &'a BTreeMap<String, Upstream>,
    inputs_of: &'a BTreeMap<String, Vec<String>>,
    parallel: usize,
    rerun_failed: bool,
    stamp: String,
    /// It may start new times (it has a place, [`turns`]).
    room: bool,
    starts: Vec<Start>,
    failed_slots: Vec<FailedSlot>,
    /// The DataJobs stepped so far.
    progress: Vec<BackfillProgress>,
}

impl Stepper<'_> {
    /// Follows the runs DataJob `name` waits for, then starts new ones while there is room.
    fn datajob(&mut self, slots: &Times, previous: &BackfillStatus) {
        let name = slots.datajob.as_str();
        let mut prog = previous
            .data_jobs
            .iter()
            .find(|p| p.data_job == name)
            .cloned()
            .unwrap_or_else(|| BackfillProgress {
                data_job: name.to_string(),
                next: slots.first().map(labels::rfc3339),
                ..Default::default()
            });
        prog.slots = i32::try_from(slots.len()).unwrap_or(i32::MAX);
        let empty = Upstream {
            name: name.to_string(),
            schedule: None,
            output: None,
            published: vec![],
            runs: vec![],
        };
        let view = self.views.get(name).unwrap_or(&empty);
        self.follow(&mut prog, view);
        self.start_more(&mut prog, slots, view);
        self.progress.push(prog);
    }

    fn start(&mut self, datajob: &str, logical_time: DateTime<Utc>, rerun: bool) {
        self.starts.push(Start {
            datajob: datajob.to_string(),
            logical_time,
            rerun,
        });
    }

    fn fail(&mut self, prog: &mut BackfillProgress, at: &str, reason: String) {
        prog.failed += 1;
        self.failed_slots.push(FailedSlot {
            data_job: prog.data_job.clone(),
            logical_time: at.to_string(),
            reason,
        });
    }

    /// The runs it waits for: done, failed, going, or to start (again).
    fn follow(&mut self, prog: &mut BackfillProgress, view: &Upstream) {
        let mut still = Vec::new();
        for a in std::mem::take(&mut prog.active) {
            let Some(t) = labels::parse_rfc3339(&a.logical_time) else {
                continue;
            };
            let since = labels::parse_rfc3339(&a.since);
            match slot_state(view, t) {
                SlotState::Succeeded => prog.succeeded += 1,
                SlotState::Failed { finished, .. }
                    if finished.zip(since).is_some_and(|(f, s)| f < s) =>
                {
                    // The failure of the run it replaces: start the new one again.
                    self.start(&prog.data_job, t, true);
                    still.push(a);
                }
                SlotState::Failed { reason, .. } => self.fail(prog, &a.logical_time, reason),
                SlotState::Active => still.push(a),
                SlotState::Absent => {
                    self.start(&prog.data_job, t, false);
                    still.push(a);
                }
            }
        }
        prog.active = still;
    }

    /// New runs, oldest first, while there is room.
    fn start_more(&mut self, prog: &mut BackfillProgress, slots: &Times, view: &Upstream) {
        while self.room && prog.active.len() < self.parallel {
            let Some(t) = prog.next.as_deref().and_then(labels::parse_rfc3339) else {
                prog.next = None;
                break;
            };
            if !self.inputs_started(&prog.data_job, t) {
                break;
            }
            prog.next = slots.after(t).map(labels::rfc3339);
            let at = labels::rfc3339(t);
            let active = ActiveSlot {
                logical_time: at.clone(),
                since: self.stamp.clone(),
            };
            match slot_state(view, t) {
                SlotState::Succeeded => prog.skipped += 1,
                SlotState::Active => prog.active.push(active),
                SlotState::Failed { .. } if self.rerun_failed => {
                    self.start(&prog.data_job, t, true);
                    prog.active.push(active);
                }
                SlotState::Failed { reason, .. } => self.fail(
                    prog,
                    &at,
                    format!("{reason} (before this backfill; set rerunFailed to run it again)"),
                ),
                SlotState::Absent => {
                    self.start(&prog.data_job, t, false);
                    prog.active.push(active);
                }
            }
        }
    }

    /// A DataJob downstream starts a time once the times it reads of the inputs the
    /// Backfill also runs were started (or found done).
    fn inputs_started(&self, name: &str, t: DateTime<Utc>) -> bool {
        self.inputs_of.get(name).into_iter().flatten().all(|input| {
            let Some(input_slots) = self.plan.iter().find(|p| p.datajob == *input) else {
                return true;
            };
            let Some(matched) = self.views.get(input).and_then(|v| v.matched(t)) else {
                return true;
            };
            !input_slots.contains(matched) || self.seen_going(input, matched)
        })
    }

    /// Whether the input's run of `matched` was started by this Backfill and is seen
    /// going (or done). Its inputs come first in the plan, so their progress is known.
    /// One just started (or started again) that the caches do not show yet would look
    /// failed or absent.
    fn seen_going(&self, input: &str, matched: DateTime<Utc>) -> bool {
        let at = labels::rfc3339(matched);
        let Some(p) = self.progress.iter().find(|p| p.data_job == input) else {
            return false;
        };
        let passed = p
            .next
            .as_deref()
            .and_then(labels::parse_rfc3339)
            .is_none_or(|n| n > matched);
        let unseen = p
            .active
            .iter()
            .find(|a| a.logical_time == at)
            .is_some_and(|a| {
                let since = labels::parse_rfc3339(&a.since);
                match self.views.get(input).map(|v| slot_state(v, matched)) {
                    Some(SlotState::Absent) | None => true,
                    Some(SlotState::Failed { finished, .. }) => {
                        finished.zip(since).is_some_and(|(f, s)| f < s)
                    }
                    _ => false,
                }
            });
        passed && !unseen
    }

    /// The Backfill's status once every DataJob was stepped.
    fn status(mut self, previous: &BackfillStatus) -> BackfillStatus {
        let mut failed_slots = std::mem::take(&mut self.failed_slots);
        failed_slots.sort_by(|a, b| {
            a.logical_time
                .cmp(&b.logical_time)
                .then_with(|| a.data_job.cmp(&b.data_job))
        });
        failed_slots.dedup();
        // The latest ones, still oldest first.
        let over = failed_slots.len().saturating_sub(MAX_FAILED_SLOTS);
        failed_slots.drain(..over);
        let progress = self.progress;
        let sum = |f: fn(&BackfillProgress) -> i32| progress.iter().map(f).sum::<i32>();
        let total = sum(|p| p.slots);
        let (succeeded, skipped, failed) =
            (sum(|p| p.succeeded), sum(|p| p.skipped), sum(|p| p.failed));
        let active = progress.iter().map(|p| p.active.len() as i32).sum::<i32>();
        let complete = progress
            .iter()
            .all(|p| p.next.is_none() && p.active.is_empty());
        let done = succeeded + skipped + failed;
        let (parallel, stamp) = (self.parallel, self.stamp);
        BackfillStatus {
            observed_generation: previous.observed_generation,
            state: Some(match complete {
                true => BackfillState::Complete,
                false => BackfillState::Running,
            }),
            message: Some(match complete {
                true => format!(
                    "every time has an outcome: {succeeded} succeeded, {skipped} had succeeded before, {failed} failed"
                ),
                false => format!(
                    "{done} of {total} times done, {active} going or waiting for inputs, at most {parallel} at a time per DataJob"
                ),
            }),
            progress: Some(format!("{done}/{total}")),
            total,
            succeeded,
            skipped,
            failed,
            active,
            data_jobs: progress,
            failed_slots,
            start_time: previous.start_time.clone().or(Some(stamp.clone())),
            completion_time: match complete {
                true => previous.completion_time.clone().or(Some(stamp)),
                false => None,
            },
            conditions: previous.conditions.clone(),
        }
    }
}

/// The status a step starts from: the Backfill's `previous` status, or, after a spec
/// change (`generation` not yet observed), an empty one that keeps only the conditions: a
/// new spec is a new backfill, every time is looked at again (what already succeeded is
/// skipped, so nothing runs twice).
pub fn starting_status(
    previous: Option<&BackfillStatus>,
    generation: Option<i64>,
) -> BackfillStatus {
    let previous = previous.cloned().unwrap_or_default();
    if previous.observed_generation == generation {
        return previous;
    }
    BackfillStatus {
        conditions: previous.conditions,
        ..Default::default()
    }
}

/// The Backfill's conditions for `status`: `Complete` (with why not yet) and `Invalid`
/// (with the refusal), their transition times kept from `previous` while they hold.
pub fn conditions(
    previous: &[Condition],
    status: &BackfillStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let state = status.state.unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    vec![
        condition(
            previous,
            "Complete",
            state == BackfillState::Complete,
            match state {
                BackfillState::Complete => "AllTimesDone",
                BackfillState::Running if message.starts_with(turns::WAITING) => "WaitingForPlace",
                BackfillState::Running => "InProgress",
                BackfillState::Invalid => "Invalid",
            },
            message.clone(),
            generation,
            now,
        ),
        condition(
            previous,
            "Invalid",
            state == BackfillState::Invalid,
            match state {
                BackfillState::Invalid => "Invalid",
                _ => "Valid",
            },
            match state {
                BackfillState::Invalid => message,
                _ => "the spec is valid".into(),
            },
            generation,
            now,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{Publication, RunRecord};

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).unwrap()
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", chrono_tz::UTC).unwrap()
    }

    fn member(name: &str, schedule: Option<&str>, inputs: &[&str]) -> Member {
        Member {
            name: name.into(),
            schedule: schedule.map(|s| Schedule::parse(s, chrono_tz::UTC).unwrap()),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn spec(from: &str, to: &str) -> BackfillSpec {
        BackfillSpec {
            data_job: "raw".into(),
            from: from.into(),
            to: to.into(),
            ..Default::default()
        }
    }

    fn chain() -> Vec<Member> {
        vec![
            member("raw", Some("0 * * * *"), &[]),
            member("clean", Some("0 * * * *"), &["raw"]),
            member("report", Some("0 * * * *"), &["clean"]),
            member("once", None, &["raw"]),
        ]
    }

    #[test]
    fn a_plan_covers_the_range_and_the_datajobs_downstream() {
        let now = t("2026-11-25T12:00:00Z");
        let p = plan(
            &spec("2026-11-25T00:00:00Z", "2026-11-25T05:00:00Z"),
            "ns",
            &chain(),
            now,
            SPEC,
        )
        .unwrap();
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["raw", "clean", "report"]);
        assert!(p.iter().all(|(_, s)| s.len() == 6));
        // Times after now are the schedule's.
        let p = plan(
            &spec("2026-11-25T10:00:00Z", "2026-11-26T00:00:00Z"),
            "ns",
            &chain(),
            now,
            SPEC,
        )
        .unwrap();
        assert_eq!(p[0].1.len(), 3);
    }

    #[test]
    fn bad_ranges_are_refused_with_the_field_the_value_and_the_fix() {
        let now = t("2026-11-25T12:00:00Z");
        let words = |s: BackfillSpec| {
            plan(&s, "analytics", &chain(), now, FLAGS)
                .unwrap_err()
                .to_string()
        };
        let w = words(spec("2026-11-25T05:00:00Z", "2026-11-25T01:00:00Z"));
        assert!(
            w.starts_with(
                "--from \"2026-11-25T05:00:00Z\" is after --to \"2026-11-25T01:00:00Z\"; swap them"
            ),
            "{w}"
        );
        let w = words(BackfillSpec {
            data_job: "rwa".into(),
            ..spec("2026-11-25T00:00:00Z", "2026-11-25T01:00:00Z")
        });
        assert!(
            w.starts_with(
                "NAME \"rwa\" is not a DataJob in namespace analytics; did you mean raw?"
            ),
            "{w}"
        );
        let w = words(spec("2026-11-25T00:10:00Z", "2026-11-25T00:20:00Z"));
        assert!(
            w.contains("holds no time of raw's schedule \"0 * * * *\" (UTC)"),
            "{w}"
        );
        assert!(
            w.contains("2026-11-25T00:00:00Z and 2026-11-25T01:00:00Z"),
            "{w}"
        );
        let w = words(BackfillSpec {
            max_slots: Some(10),
            ..spec("2026-11-25T00:00:00Z", "2026-11-25T05:00:00Z")
        });
        assert!(
            w.contains("holds more than 10 scheduled times") && w.contains("raise --max-slots"),
            "{w}"
        );
        let w = words(BackfillSpec {
            data_job: "once".into(),
            ..spec("2026-11-25T00:00:00Z", "2026-11-25T01:00:00Z")
        });
        assert!(w.contains("has no schedule"), "{w}");
        let w = words(spec("yesterday", "2026-11-25T01:00:00Z"));
        assert!(w.starts_with("--from \"yesterday\" is not a time"), "{w}");
    }

    fn view(name: &str, runs: Vec<RunRecord>, published: &[&str], output: bool) -> Upstream {
        Upstream {
            name: name.into(),
            schedule: Some(hourly()),
            output: output.then(|| crate::output::Output::parse("pvc://lake/x", false).unwrap()),
            published: published
                .iter()
                .map(|at| Publication {
                    logical_time: at.to_string(),
                    ..Default::default()
                })
                .collect(),
            runs,
        }
    }

    fn rec(at: &str, state: RunState, reason: Option<&str>, finished: &str) -> RunRecord {
        RunRecord {
            name: format!("x-{at}"),
            logical_time: at.into(),
            state,
            reason: reason.map(Into::into),
            finish_time: Some(finished.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_backfill_starts_times_oldest_first_a_few_at_a_time_and_skips_what_succeeded() {
        let now = t("2026-11-25T12:00:00Z");
        let members = chain();
        let s = BackfillSpec {
            parallel: Some(2),
            ..spec("2026-11-25T00:00:00Z", "2026-11-25T05:00:00Z")
        };
        let p = times(&s, "ns", &members, now, SPEC, &BackfillStatus::default()).unwrap();
        let inputs: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|m| (m.name.clone(), m.inputs.clone()))
            .collect();
        // 00:00 of raw succeeded before; nothing else is known.
        let mut views = BTreeMap::from([
            (
                "raw".to_string(),
                view("raw", vec![], &["2026-11-25T00:00:00Z"], true),
            ),
            ("clean".to_string(), view("clean", vec![], &[], true)),
            ("report".to_string(), view("report", vec![], &[], true)),
        ]);
        let (st, starts) = step(&s, &p, &views, &inputs, &BackfillStatus::default(), now);
        let at = |d: &str, i: usize| {
            starts
                .iter()
                .filter(|s| s.datajob == d)
                .nth(i)
                .map(|s| labels::rfc3339(s.logical_time))
        };
        assert_eq!(at("raw", 0).as_deref(), Some("2026-11-25T01:00:00Z"));
        assert_eq!(at("raw", 1).as_deref(), Some("2026-11-25T02:00:00Z"));
        assert_eq!(at("raw", 2), None, "two at a time");
        // clean starts the times raw had (00:00), not those raw's new runs are not seen at.
        assert_eq!(at("clean", 0).as_deref(), Some("2026-11-25T00:00:00Z"));
        assert_eq!(at("clean", 1), None);
        assert_eq!(st.data_jobs[0].skipped, 1);
        assert_eq!(st.state, Some(BackfillState::Running));
        assert_eq!(st.total, 18);

        // raw 01:00 failed, 02:00 succeeded: both settle, two more start.
        views.insert(
            "raw".into(),
            view(
                "raw",
                vec![rec(
                    "2026-11-25T01:00:00Z",
                    RunState::Failed,
                    Some("RetriesExhausted"),
                    "2026-11-25T12:03:00Z",
                )],
                &["2026-11-25T00:00:00Z", "2026-11-25T02:00:00Z"],
                true,
            ),
        );
        let later = t("2026-11-25T12:05:00Z");
        let (st2, starts) = step(&s, &p, &views, &inputs, &st, later);
        assert_eq!(st2.data_jobs[0].failed, 1);
        assert_eq!(st2.data_jobs[0].succeeded, 1);
        assert_eq!(
            starts.iter().filter(|s| s.datajob == "raw").count(),
            2,
            "{starts:?}"
        );
        assert_eq!(st2.failed_slots[0].reason, "RetriesExhausted");
        // The same step again (the new runs not seen yet) asks only for the same runs
        // again, which the apiserver refuses as existing: each time once.
        let (st3, again) = step(&s, &p, &views, &inputs, &st2, later);
        let active: Vec<&str> = st2.data_jobs[0]
            .active
            .iter()
            .map(|a| a.logical_time.as_str())
            .collect();
        assert!(
            again
                .iter()
                .filter(|a| a.datajob == "raw")
                .all(|a| active.contains(&labels::rfc3339(a.logical_time).as_str())),
            "{again:?} {active:?}"
        );
        assert_eq!(st3.data_jobs[0].next, st2.data_jobs[0].next);
    }

    #[test]
    fn a_reader_starts_again_only_once_the_new_run_of_its_input_is_seen() {
        let now = t("2026-11-25T12:00:00Z");
        let members = chain();
        let failed = |name: &str, reason: &str| {
            view(
                name,
                vec![rec(
                    "2026-11-25T00:00:00Z",
                    RunState::Failed,
                    Some(reason),
                    "2026-11-25T08:00:00Z",
                )],
                &[],
                true,
            )
        };
        let mut views = BTreeMap::from([
            ("raw".to_string(), failed("raw", "RetriesExhausted")),
            ("clean".to_string(), failed("clean", "UpstreamFailed")),
            ("report".to_string(), failed("report", "UpstreamFailed")),
        ]);
        let inputs: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|m| (m.name.clone(), m.inputs.clone()))
            .collect();
        let s = BackfillSpec {
            rerun_failed: Some(true),
            ..spec("2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z")
        };
        let p = times(&s, "ns", &members, now, SPEC, &BackfillStatus::default()).unwrap();
        let (st, starts) = step(&s, &p, &views, &inputs, &BackfillStatus::default(), now);
        let names: Vec<&str> = starts.iter().map(|s| s.datajob.as_str()).collect();
        assert_eq!(names, vec!["raw"], "clean waits until raw's new run shows");
        // raw's new run is seen: clean goes; report waits for clean's.
        views.insert(
            "raw".into(),
            view(
                "raw",
                vec![RunRecord {
                    name: "raw-1".into(),
                    logical_time: "2026-11-25T00:00:00Z".into(),
                    state: RunState::Running,
                    ..Default::default()
                }],
                &[],
                true,
            ),
        );
        let (_, starts) = step(&s, &p, &views, &inputs, &st, t("2026-11-25T12:00:05Z"));
        let names: Vec<&str> = starts.iter().map(|s| s.datajob.as_str()).collect();
        assert_eq!(names, vec!["clean"]);
        assert!(starts[0].rerun);
    }

    #[test]
    fn a_failed_time_runs_again_only_when_asked_and_its_old_failure_does_not_count() {
        let now = t("2026-11-25T12:00:00Z");
        let members = vec![member("raw", Some("0 * * * *"), &[])];
        let views = BTreeMap::from([(
            "raw".to_string(),
            view(
                "raw",
                vec![rec(
                    "2026-11-25T00:00:00Z",
                    RunState::Failed,
                    Some("OutOfMemory"),
                    "2026-11-25T08:00:00Z",
                )],
                &[],
                false,
            ),
        )]);
        let inputs = BTreeMap::new();
        let s = spec("2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z");
        let p = times(&s, "ns", &members, now, SPEC, &BackfillStatus::default()).unwrap();
        let (st, starts) = step(&s, &p, &views, &inputs, &BackfillStatus::default(), now);
        assert!(starts.is_empty());
        assert_eq!(st.state, Some(BackfillState::Complete));
        assert!(st.failed_slots[0].reason.contains("set rerunFailed"));

        let s = BackfillSpec {
            rerun_failed: Some(true),
            ..s
        };
        let (st, starts) = step(&s, &p, &views, &inputs, &BackfillStatus::default(), now);
        assert_eq!(
            starts,
            vec![Start {
                datajob: "raw".into(),
                logical_time: t("2026-11-25T00:00:00Z"),
                rerun: true
            }]
        );
        // The status still shows the old failure (finished before the rerun started):
        // it is the old run's, so the rerun is asked for again, not counted as failed.
        let (st, starts) = step(&s, &p, &views, &inputs, &st, t("2026-11-25T12:01:00Z"));
        assert_eq!(starts.len(), 1);
        assert_eq!(st.failed, 0);
        assert_eq!(st.state, Some(BackfillState::Running));
    }

    #[test]
    fn a_new_spec_starts_a_new_backfill_that_keeps_only_its_conditions() {
        let now = t("2026-12-01T03:00:00Z");
        let mut was = BackfillStatus {
            state: Some(BackfillState::Complete),
            observed_generation: Some(1),
            message: Some("done".into()),
            ..Default::default()
        };
        was.conditions = conditions(&[], &was, Some(1), now);
        assert_eq!(starting_status(Some(&was), Some(1)), was);
        let fresh = starting_status(Some(&was), Some(2));
        assert_eq!(fresh.state, None);
        assert_eq!(fresh.message, None);
        assert_eq!(fresh.conditions, was.conditions);
        assert_eq!(starting_status(None, Some(1)), BackfillStatus::default());
    }

    #[test]
    fn conditions_say_complete_or_why_not_and_invalid_with_the_refusal() {
        let now = t("2026-12-01T03:00:00Z");
        let later = t("2026-12-01T04:00:00Z");
        let invalid = BackfillStatus {
            state: Some(BackfillState::Invalid),
            message: Some("spec.from: not a time".into()),
            ..Default::default()
        };
        let cs = conditions(&[], &invalid, Some(3), now);
        let by = |cs: &[Condition], t: &str| cs.iter().find(|c| c.type_ == t).cloned().unwrap();
        assert_eq!(by(&cs, "Complete").status, "False");
        assert_eq!(by(&cs, "Complete").reason, "Invalid");
        assert_eq!(by(&cs, "Invalid").status, "True");
        assert_eq!(by(&cs, "Invalid").message, "spec.from: not a time");
        assert_eq!(by(&cs, "Invalid").observed_generation, Some(3));
        let running = BackfillStatus {
            state: Some(BackfillState::Running),
            ..Default::default()
        };
        let next = conditions(&cs, &running, Some(4), later);
        assert_eq!(by(&next, "Complete").reason, "InProgress");
        assert_eq!(by(&next, "Invalid").message, "the spec is valid");
        // Complete stayed False: its transition time is kept; Invalid changed: it moves.
        assert_eq!(
            by(&next, "Complete").last_transition_time,
            by(&cs, "Complete").last_transition_time
        );
        assert_ne!(
            by(&next, "Invalid").last_transition_time,
            by(&cs, "Invalid").last_transition_time
        );
        let done = BackfillStatus {
            state: Some(BackfillState::Complete),
            ..Default::default()
        };
        let fin = conditions(&next, &done, Some(4), later);
        assert_eq!(by(&fin, "Complete").status, "True");
        assert_eq!(by(&fin, "Complete").reason, "AllTimesDone");
    }

    /// Issue 25 item 7: 10 000 hourly times, 4 at a time; each pass is a reconcile.
    fn ten_thousand() -> (BackfillSpec, Vec<Member>, DateTime<Utc>) {
        let s = BackfillSpec {
            parallel: Some(4),
            max_slots: Some(10_000),
            downstream: Some(false),
            // 10 000 hours: 416 days and 16 hours.
            ..spec("2025-01-01T00:00:00Z", "2026-02-21T15:00:00Z")
        };
        (
            s,
            vec![member("raw", Some("0 * * * *"), &[])],
            t("2026-12-01T00:00:00Z"),
        )
    }

    #[test]
    fn a_pass_over_ten_thousand_times_looks_at_a_few_of_them_not_all() {
        let (s, members, now) = ten_thousand();
        let inputs = BTreeMap::new();
        let p = times(&s, "ns", &members, now, SPEC, &BackfillStatus::default()).unwrap();
        assert_eq!(p[0].len(), 10_000);
        let mut views = BTreeMap::from([("raw".to_string(), view("raw", vec![], &[], true))]);
        let (mut st, starts) = step(&s, &p, &views, &inputs, &BackfillStatus::default(), now);
        assert_eq!(starts.len(), 4);
        let mut published: Vec<String> = Vec::new();
        for pass in 1..=20 {
            // The runs started last pass succeeded.
            published.extend(
                st.data_jobs[0]
                    .active
                    .iter()
                    .map(|a| a.logical_time.clone()),
            );
            let refs: Vec<&str> = published.iter().map(String::as_str).collect();
            views.insert("raw".into(), view("raw", vec![], &refs, true));
            let at = now + chrono::Duration::seconds(pass);
            let p = times(&s, "ns", &members, at, SPEC, &st).unwrap();
            let (next, starts) = step(&s, &p, &views, &inputs, &st, at);
            let examined: usize = p.iter().map(Times::examined).sum();
            assert!(
                examined <= 2 * 4,
                "pass {pass} looked at {examined} times of 10 000 to start {}",
                starts.len()
            );
            assert_eq!(starts.len(), 4);
            assert_eq!(next.total, 10_000);
            assert_eq!(next.succeeded, 4 * pass as i32);
            // The same answer as counting the whole range again (the old planner).
            let all = times(&s, "ns", &members, at, SPEC, &BackfillStatus::default()).unwrap();
            assert!(all[0].examined() > 10_000);
            assert_eq!(
                step(&s, &all, &views, &inputs, &st, at),
                (next.clone(), starts)
            );
            st = next;
        }
    }

    #[test]
    fn a_backfill_waiting_for_a_place_follows_its_runs_but_starts_none() {
        let (s, members, now) = ten_thousand();
        let inputs = BTreeMap::new();
        let views = BTreeMap::from([(
            "raw".to_string(),
            view("raw", vec![], &["2025-01-01T00:00:00Z"], true),
        )]);
        let p = times(&s, "ns", &members, now, SPEC, &BackfillStatus::default()).unwrap();
        let wait = turns::Turn::Wait { limit: 8, ahead: 1 };
        let (st, starts) = step_in_turn(
            &s,
            &p,
            &views,
            &inputs,
            &BackfillStatus::default(),
            now,
            wait,
        );
        assert!(starts.is_empty());
        assert_eq!((st.active, st.state), (0, Some(BackfillState::Running)));
        let message = st.message.clone().unwrap_or_default();
        assert!(
            message.starts_with("waiting: 8 Backfills are running (the operator runs at most 8 at once), 1 waits before this one"),
            "{message}"
        );
        let cs = conditions(&[], &st, Some(1), now);
        assert_eq!(cs[0].reason, "WaitingForPlace");
        // Given a place, it starts; then, waiting again, it still counts what finished.
        let (going, starts) = step(&s, &p, &views, &inputs, &st, now);
        assert_eq!(
            starts.len(),
            4,
            "four at a time, after 00:00 that had succeeded before"
        );
        assert_eq!(going.skipped, 1);
        let done = BTreeMap::from([(
            "raw".to_string(),
            view(
                "raw",
                vec![],
                &["2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"],
                true,
            ),
        )]);
        let (st, starts) = step_in_turn(&s, &p, &done, &inputs, &going, now, wait);
        // Only its own runs not seen yet are asked for again (the apiserver refuses a
        // second one): no new time.
        assert!(
            starts.iter().all(|x| going.data_jobs[0]
                .active
                .iter()
                .any(|a| a.logical_time == labels::rfc3339(x.logical_time))),
            "{starts:?}"
        );
        assert_eq!((st.succeeded, st.active), (1, 3));
    }

    #[test]
    fn the_status_lists_the_latest_failed_times_and_counts_them_all() {
        let many: Vec<FailedSlot> = (0..150)
            .map(|i| FailedSlot {
                data_job: "raw".into(),
                logical_time: format!("2026-01-01T{:02}:{:02}:00Z", i / 60, i % 60),
                reason: "RetriesExhausted".into(),
            })
            .collect();
        let previous = BackfillStatus {
            failed_slots: many.clone(),
            ..BackfillStatus::default()
        };
        let s = Stepper {
            plan: &[],
            views: &BTreeMap::new(),
            inputs_of: &BTreeMap::new(),
            parallel: 1,
            rerun_failed: false,
            stamp: "2026-01-02T00:00:00Z".into(),
            room: true,
            starts: Vec::new(),
            failed_slots: previous.failed_slots.clone(),
            progress: vec![BackfillProgress {
                data_job: "raw".into(),
                failed: 150,
                ..BackfillProgress::default()
            }],
        };
        let status = s.status(&previous);
        assert_eq!(status.failed, 150, "every failure counts");
        assert_eq!(status.failed_slots.len(), MAX_FAILED_SLOTS);
        assert_eq!(
            status.failed_slots[..],
            many[50..],
            "the latest, oldest first"
        );
    }
}
