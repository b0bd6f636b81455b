//! What one reconcile of a DataJob does, decided purely: [`plan`] takes the DataJob,
//! what the caches hold ([`Observed`]) and the time, and returns a [`Plan`]: the
//! children to apply, the steps of its runs' lives (start, hold, end, revive, publish,
//! catch up, prune), the status to write with the events and metrics its change tells,
//! and when to look again. The operator's reconciler reads, plans and applies; it
//! decides nothing itself.
//!
//! The steps of a run's life are in [`lifecycle`]; the decisions they are made of
//! (dataflow, catch-up, status) in the sibling modules of `decide`.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datajob_api::{DataJob, DataJobStatus, RunRecord, RunState};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::admission::resolve_and_place;
use crate::decide::children::{self, Guards};
use crate::decide::dataflow::{self, Upstream};
use crate::decide::{cleanup, runs, watchdog};
use crate::group::Group;
use crate::labels::{self, JOB_NAME, TRIGGER};
use crate::schedule::Schedule;
use crate::validation::{Limits, Problems, Resolved};

pub mod lifecycle;
#[cfg(test)]
mod tests;

/// The most an event's note says (the Events API refuses longer ones).
pub const NOTE_LIMIT: usize = 1000;

/// What one reconcile reads: the caches' view of the DataJob, as plain values.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The node groups that can take work (parsed), for placement.
    pub groups: Vec<Group>,
    /// Every DataJob of the namespace; `None` while the DataJob cache is still filling
    /// (it then does not even hold the DataJob being reconciled).
    pub namespace: Option<Vec<Arc<DataJob>>>,
    /// The DataJob's Jobs: its runs and the Jobs that publish them.
    pub jobs: Vec<Arc<Job>>,
    /// The name of every Job of the namespace in the cache: a run is created only when
    /// no Job has its id.
    pub job_names: BTreeSet<String>,
    /// What each of the DataJob's inputs' Jobs say now, by input name.
    pub input_runs: BTreeMap<String, Vec<RunRecord>>,
    /// The pods of the DataJob's runs.
    pub pods: Vec<Arc<Pod>>,
    /// How far this process counted the DataJob's missed schedules: since when it
    /// follows this generation of the spec, and up to when it counted; `None` the first
    /// time (see `MissedCounted` in the operator).
    pub missed_counted: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The apiserver refused a child of this spec: its words and the fields to fix
    /// ([`children::rejection`]). Set when the reconciler plans again after a refusal.
    pub rejected: Option<String>,
}

/// The operator's settings a plan reads.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    pub limits: &'a Limits,
    pub guards: &'a Guards,
}

/// An event to publish on the DataJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// A CamelCase word: `RunStarted`, `RunSkipped`, `Invalid`, …
    pub reason: String,
    pub action: String,
    /// At most [`NOTE_LIMIT`] bytes.
    pub note: String,
}

impl Note {
    pub fn new(warning: bool, reason: &str, action: &str, note: &str) -> Note {
        Note {
            warning,
            reason: reason.into(),
            action: action.into(),
            note: labels::truncate(note, NOTE_LIMIT),
        }
    }
}

/// One write to the API (or to the metrics), in the order a plan lists them.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Server-side apply of the DataJob's CronJob.
    ApplyCronJob(Box<CronJob>),
    /// The DataJob has no schedule (any more): delete the CronJob `name` if the DataJob
    /// (`owner_uid`) owns it.
    RemoveCronJob { name: String, owner_uid: String },
    /// Server-side apply of the Job of a run the reconciler makes itself (a one-off or
    /// triggered run).
    ApplyRun {
        job: Box<Job>,
        logical_time: DateTime<Utc>,
    },
    /// Create a Job; one that exists already (the same run, or one still being deleted)
    /// is left to a later reconcile. `said` is logged and `then` published only once it
    /// was created.
    CreateJob {
        job: Box<Job>,
        said: String,
        then: Option<Note>,
    },
    /// A JSON merge patch of Job `name`; `verb` names it in errors ("start", "end").
    PatchJob {
        name: String,
        patch: serde_json::Value,
        verb: &'static str,
        said: Option<String>,
    },
    /// Delete Job `name` with this uid (not a newer one of the same name); gone is fine.
    DeleteJob {
        name: String,
        uid: String,
        said: Option<String>,
        then: Option<Note>,
    },
    /// Delete a finished Job beyond the history (its pods go with it).
    Prune { name: String, history: i32 },
    /// Publish an event on the DataJob.
    Event(Note),
    /// Create the DataJob's metric series at zero, so its first run, failure or missed
    /// schedule shows as an increase (a series that first appears with 1 shows none).
    InitSeries { scheduled: bool },
    /// Record that this process counted the DataJob's missed schedules up to now, and
    /// count `slots`, scheduled times whose starting deadline passed with no run.
    CountMissed {
        generation: Option<i64>,
        counted_to: DateTime<Utc>,
        slots: Vec<DateTime<Utc>>,
        deadline_seconds: i64,
    },
}

/// The status to write, and what its change tells.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusWrite {
    pub status: DataJobStatus,
    /// Published once the status is written.
    pub events: Vec<Note>,
    /// Runs started, finished and their lags, for the metrics, counted once written.
    pub changes: runs::RunChanges,
    /// The spec changed since the status was last written.
    pub spec_changed: bool,
}

/// Everything one reconcile does, in order: `children`, then `steps`, then the status,
/// then the cost; then it looks again after `requeue` (`None`: only when something
/// changes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The DataJob's CronJob and the Jobs of runs it makes itself. An apiserver refusal
    /// of one (400, 403, 422) is not an error: the reconciler plans again with it
    /// ([`Observed::rejected`]) and the status says `ChildRejected`.
    pub children: Vec<Step>,
    /// The steps of its runs' lives.
    pub steps: Vec<Step>,
    /// `None` when the status is as it should be.
    pub status: Option<StatusWrite>,
    /// The cost of the runs newly estimated on the status, on this node group, counted
    /// once the status is written.
    pub cost: Option<(String, f64)>,
    pub requeue: Option<Duration>,
}

impl Plan {
    /// Nothing to do but look again after `after`.
    fn look_again(after: Option<Duration>) -> Plan {
        Plan {
            requeue: after,
            ..Plan::default()
        }
    }
}

/// How long a reconcile waits for the DataJob cache to fill before it decides.
pub const CACHE_FILLING: Duration = Duration::from_secs(2);
/// The longest a DataJob goes unreconciled: its status (`nextRun`) stays fresh.
pub const MOST: Duration = Duration::from_secs(300);
/// How soon runs waiting for inputs or being published are looked at again, in case
/// what wakes them (an input's change, a Job's) was missed.
pub const MOST_WHILE_WAITING: Duration = Duration::from_secs(30);

/// What one reconcile of `dj` does at `now`.
pub fn plan(dj: &DataJob, o: &Observed, settings: &Settings<'_>, now: DateTime<Utc>) -> Plan {
    if dj.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        return Plan::look_again(None);
    }
    let Some((resolved, upstreams)) = resolve(dj, o, settings) else {
        // The DataJob cache is still filling: decide with it, not without.
        return Plan::look_again(Some(CACHE_FILLING));
    };
    let children = match (&resolved, &o.rejected) {
        (Ok(r), None) => children_of(dj, r, o, settings.guards, now),
        _ => Vec::new(),
    };
    let flow = resolved.as_ref().ok().map(|r| lifecycle::Flow {
        dj,
        r,
        guards: settings.guards,
        jobs: &o.jobs,
        pods: &o.pods,
        upstreams: &upstreams,
        now,
        followed: o.missed_counted.is_some(),
    });
    let mut steps = Vec::new();
    // Runs that could not start in time after downtime are deleted: no run, and no
    // record of one.
    let mut skipped = Vec::new();
    if let Some(flow) = &flow {
        let admitted = lifecycle::admit(flow);
        skipped = admitted.skipped;
        steps.extend(admitted.steps);
        let history = dj.status.as_ref().map_or(&[][..], |s| &s.recent_runs);
        steps.extend(lifecycle::revive(flow, history));
    }
    let run_jobs: Vec<&Arc<Job>> = o
        .jobs
        .iter()
        .filter(|j| !lifecycle::is_publish_job(j))
        .collect();
    let mut current = current_runs(dj, &run_jobs, &o.pods, &skipped);
    let schedule = resolved
        .as_ref()
        .ok()
        .filter(|r| !r.suspend)
        .and_then(|r| r.schedule.as_ref());
    steps.push(Step::InitSeries {
        scheduled: schedule.is_some(),
    });
    let (count, next_check) = missed(dj, schedule, &current, o.missed_counted, now);
    steps.push(count);

    let mut previous = dj.status.clone().unwrap_or_default();
    previous.recent_runs.retain(|r| !skipped.contains(&r.name));
    let (mut published, mut catch_up) = (previous.published.clone(), previous.catch_up.clone());
    let mut prune_pending = false;
    if let Some(flow) = &flow {
        // A succeeded run counts once its output is published.
        let publishing = lifecycle::publish(flow, &mut current);
        steps.extend(publishing.steps);
        published = dataflow::merge_publications(&published, publishing.new);
        let caught_up = lifecycle::catch_up(flow, &current, catch_up.as_ref());
        steps.extend(caught_up.steps);
        catch_up = caught_up.status;
        let pruning = prune(
            flow.r,
            &run_jobs,
            &current,
            dj.status.as_ref(),
            settings.guards.log_archive,
            now,
        );
        steps.extend(pruning.steps);
        prune_pending = pruning.pending;
    }
    let waiting = current
        .iter()
        .any(|r| r.state == RunState::Waiting || r.reason.as_deref() == Some(dataflow::PUBLISHING));
    let mut status = runs::desired_status(runs::Observed {
        generation: dj.metadata.generation,
        spec: resolved.as_ref(),
        previous: Some(&previous),
        runs: current,
        now,
        rejected: o.rejected.as_deref(),
        created: created(dj),
    });
    // Look again when the next run becomes due, so `Late` is told on time.
    let due = resolved
        .as_ref()
        .ok()
        .and_then(|r| runs::next_due(r, created(dj), now));
    let cost = attribute_cost(&mut status, resolved.as_ref().ok(), settings.guards);
    status.last_trigger = last_trigger(dj, resolved.is_ok());
    status.published = published;
    status.catch_up = catch_up;
    let scheduled: HashSet<String> = o
        .jobs
        .iter()
        .filter(|j| j.owner_references().iter().any(|o| o.kind == "CronJob"))
        .map(|j| j.name_any())
        .collect();
    Plan {
        children,
        steps,
        status: status_write(dj, status, &o.pods, &scheduled, now),
        cost: cost.filter(|(_, c)| *c > 0.0),
        requeue: Some(requeue(
            resolved.as_ref().ok().and_then(|r| r.schedule.as_ref()),
            next_check.into_iter().chain(due).min(),
            waiting,
            now,
        ))
        // A Job beyond the history waits for the status this pass writes (or for its
        // logs to be told): look again soon, not at the next schedule.
        .map(|d| match prune_pending {
            true => d.min(PRUNE_RECHECK),
            false => d,
        }),
    }
}

/// The DataJob resolved and placed, with its inputs checked against the namespace and
/// what they published; `None` while the DataJob cache is still filling and the
/// DataJob has inputs.
fn resolve(
    dj: &DataJob,
    o: &Observed,
    settings: &Settings<'_>,
) -> Option<(Result<Resolved, Problems>, BTreeMap<String, Upstream>)> {
    let mut resolved = resolve_and_place(dj, settings.limits, settings.guards, &o.groups);
    let mut upstreams = BTreeMap::new();
    // Dataflow: its inputs exist and make no cycle (admission's words), and what they
    // published decides when its runs start.
    if let Ok(r) = &mut resolved
        && !r.inputs.is_empty()
    {
        let all = o.namespace.as_ref()?;
        let problems = graph_problems(dj, all);
        if problems.is_empty() {
            upstreams = upstreams_of(&r.inputs, all, &o.input_runs);
            r.input_claims = dataflow::input_claims(&r.inputs, &upstreams);
        } else {
            resolved = Err(Problems(problems));
        }
    }
    Some((resolved, upstreams))
}

/// Inputs that do not exist or make a cycle, in admission's words.
pub fn graph_problems(dj: &DataJob, all: &[Arc<DataJob>]) -> Vec<crate::problem::Problem> {
    let graph: Vec<(String, Vec<String>)> = all
        .iter()
        .map(|d| (d.name_any(), d.spec.inputs.clone()))
        .collect();
    let ns = dj.namespace().unwrap_or_default();
    dataflow::check_graph(&dj.name_any(), &ns, &dj.spec.inputs, &graph)
}

/// What each input says now: its status, refreshed with its Jobs (`input_runs`).
pub fn upstreams_of(
    inputs: &[String],
    all: &[Arc<DataJob>],
    input_runs: &BTreeMap<String, Vec<RunRecord>>,
) -> BTreeMap<String, Upstream> {
    inputs
        .iter()
        .filter_map(|input| {
            let dj = all.iter().find(|d| d.name_any() == *input)?;
            let runs = input_runs.get(input).cloned().unwrap_or_default();
            Some((input.clone(), Upstream::of(dj, runs)))
        })
        .collect()
}

/// The CronJob (scheduled) or its removal (not scheduled), plus the Jobs of the runs the
/// reconciler makes itself: a one-off DataJob's run and a pending trigger.
fn children_of(
    dj: &DataJob,
    r: &Resolved,
    o: &Observed,
    guards: &Guards,
    now: DateTime<Utc>,
) -> Vec<Step> {
    let cronjob = children::cronjob(dj, r, guards);
    let job_exists = |id: &str| o.job_names.contains(id);
    let wanted = runs::runs_to_create(dj, cronjob.is_none(), &job_exists, now);
    let mut steps = vec![match cronjob {
        Some(cj) => Step::ApplyCronJob(Box::new(cj)),
        // A DataJob that lost its schedule loses its CronJob.
        None => Step::RemoveCronJob {
            name: dj.name_any(),
            owner_uid: dj.uid().unwrap_or_default(),
        },
    }];
    for (t, args) in wanted.runs {
        // A run with inputs waits (suspended) until they published: admission starts it.
        let job = children::job(dj, r, guards, t, !r.inputs.is_empty());
        steps.push(Step::ApplyRun {
            job: Box::new(children::with_args(job, r, t, &args)),
            logical_time: t,
        });
    }
    if let Some(why) = wanted.refused {
        steps.push(Step::Event(Note::new(
            true,
            "TriggerRefused",
            "Trigger",
            &format!("the trigger makes no run: {why}"),
        )));
    }
    steps
}

/// The runs as their Jobs say now, but those just skipped. The Job controller may fail
/// a Job before the watchdog has recorded why its last attempt died: that is read from
/// the pods, so the status and the RunFailed event say it the first time.
fn current_runs(
    dj: &DataJob,
    run_jobs: &[&Arc<Job>],
    pods: &[Arc<Pod>],
    skipped: &[String],
) -> Vec<RunRecord> {
    let name = dj.name_any();
    let mut current: Vec<RunRecord> = run_jobs
        .iter()
        .filter_map(|j| runs::run_of(j, &name))
        .filter(|r| !skipped.contains(&r.name))
        .collect();
    for run in current.iter_mut() {
        if runs::needs_attempt_reason(run) {
            let pods = pods_of(pods, &run.name);
            runs::set_attempt_reason(run, watchdog::attempt_failure(&pods));
        }
    }
    current
}

/// The pods of run `run`.
pub fn pods_of<'a>(pods: &'a [Arc<Pod>], run: &str) -> Vec<&'a Pod> {
    pods.iter()
        .map(Arc::as_ref)
        .filter(|p| p.labels().get(JOB_NAME).map(String::as_str) == Some(run))
        .collect()
}

/// The scheduled times that got no run ([`runs::missed_slots`]) since the last
/// reconcile, as a step, and when to look again. `schedule` is `None` for a DataJob
/// without a schedule, suspended or invalid: nothing is missed then (the step still
/// records that the DataJob was looked at).
fn missed(
    dj: &DataJob,
    schedule: Option<&Schedule>,
    current: &[RunRecord],
    counted: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> (Step, Option<DateTime<Utc>>) {
    let generation = dj.metadata.generation;
    let Some(schedule) = schedule else {
        let step = Step::CountMissed {
            generation,
            counted_to: now,
            slots: Vec::new(),
            deadline_seconds: 0,
        };
        return (step, None);
    };
    // First seen, or its spec changed: slots due from now on count.
    let (since, from) = counted.unwrap_or((now, now));
    let ran = runs::times_ran(current, dj.status.as_ref());
    let deadline = runs::starting_deadline(schedule, now);
    let missed = runs::missed_slots(schedule, deadline, &ran, since, from, now);
    let step = Step::CountMissed {
        generation,
        counted_to: now,
        slots: missed.slots,
        deadline_seconds: deadline.num_seconds(),
    };
    (step, missed.next_check)
}

/// Finished Jobs beyond the DataJob's history; runs still being published are not
/// pruned (their publish Job goes with them). Their outcome stays in `status.recentRuns`.
///
/// Only a Job whose run the stored status (`stored`, as read) already accounts for is
/// pruned: its finished outcome is there, or the stored history is full of newer runs
/// (the run fell out of it, [`runs::already_ran`]). The prune runs before this pass's
/// status write, and a Job pruned before its outcome was written (the operator stopped
/// in between) would leave no trace, and its run would be made again (with
/// `history: 0`, at once). With the log archive on (`logs_kept`), the stored outcome
/// must also say where the run's logs went: the archive says so on the Job, which must
/// still be there to be read.
///
/// The logs are waited for at most [`LOGS_WAIT`] after the run finished (a Job that
/// never had a pod is never told about). `pending` says a Job beyond the history
/// waits for one of these.
fn prune(
    r: &Resolved,
    run_jobs: &[&Arc<Job>],
    current: &[RunRecord],
    stored: Option<&DataJobStatus>,
    logs_kept: bool,
    now: DateTime<Utc>,
) -> Pruning {
    let busy: HashSet<&str> = current
        .iter()
        .filter(|r| !r.state.is_finished())
        .map(|r| r.name.as_str())
        .collect();
    let history = stored.map_or(&[][..], |s| &s.recent_runs);
    let accounted = |name: &str| match history.iter().find(|run| run.name == name) {
        Some(run) => {
            let logs_told = run.logs.is_some()
                || run
                    .finish_time
                    .as_deref()
                    .and_then(labels::parse_rfc3339)
                    .is_some_and(|t| {
                        now - t >= chrono::Duration::seconds(LOGS_WAIT.as_secs() as i64)
                    });
            run.state.is_finished() && (!logs_kept || logs_told)
        }
        None => labels::logical_time_of(&r.name, name)
            .is_some_and(|t| runs::already_ran(stored, name, t)),
    };
    let done: Vec<&Job> = run_jobs
        .iter()
        .filter(|j| !busy.contains(j.name_any().as_str()))
        .map(|j| j.as_ref())
        .collect();
    let pending = cleanup::jobs_beyond_history(&r.name, &done, r.history as usize)
        .iter()
        .any(|j| !accounted(j.name_any().as_str()));
    let prunable: Vec<&Job> = done
        .into_iter()
        .filter(|j| accounted(j.name_any().as_str()))
        .collect();
    let steps = cleanup::jobs_beyond_history(&r.name, &prunable, r.history as usize)
        .into_iter()
        .map(|job| Step::Prune {
            name: job.name_any(),
            history: r.history,
        })
        .collect();
    Pruning { steps, pending }
}

/// The prunes of one pass, and whether a Job beyond the history waits to be pruned.
struct Pruning {
    steps: Vec<Step>,
    pending: bool,
}

/// How soon a pass looks again while a Job beyond the history waits for the stored
/// status (its outcome, or where its logs went).
const PRUNE_RECHECK: Duration = Duration::from_secs(3);

/// The longest a finished run's Job is kept waiting for the log archive to say where
/// its logs went (the archive gives up on a copy well before).
const LOGS_WAIT: Duration = Duration::from_secs(10 * 60);

/// Writes each finished run's estimated cost from its node group's price, and returns
/// the cost of the runs estimated now, on that group.
fn attribute_cost(
    status: &mut DataJobStatus,
    resolved: Option<&Resolved>,
    guards: &Guards,
) -> Option<(String, f64)> {
    let r = resolved?;
    let group = r.placement.as_ref()?;
    let request = children::run_request(r, guards);
    let cost: f64 = runs::estimate_costs(&mut status.recent_runs, &request, group)
        .into_iter()
        .map(|(_, c)| c)
        .sum();
    status.last_run = status.recent_runs.first().cloned();
    Some((group.name.clone(), cost))
}

/// When the DataJob was created.
fn created(dj: &DataJob) -> Option<DateTime<Utc>> {
    dj.metadata
        .creation_timestamp
        .as_ref()
        .and_then(labels::from_k8s_time)
}

/// The trigger the status says was acted on: the annotation as it is, once the spec is
/// valid (its run was made); the one recorded before while it is not.
fn last_trigger(dj: &DataJob, valid: bool) -> Option<String> {
    match valid {
        true => dj.annotations().get(TRIGGER).map(|t| {
            let args = dj.annotations().get(labels::TRIGGER_ARGS);
            runs::trigger_key(t, args.map(String::as_str))
        }),
        false => dj.status.as_ref().and_then(|s| s.last_trigger.clone()),
    }
}

/// When to look again: just after the next scheduled time (so `nextRun` moves on) or
/// when a slot without a run runs out of time, whichever is first; at most
/// [`MOST_WHILE_WAITING`] while runs wait for inputs or are published, else [`MOST`].
fn requeue(
    schedule: Option<&Schedule>,
    next_check: Option<DateTime<Utc>>,
    waiting: bool,
    now: DateTime<Utc>,
) -> Duration {
    let next = schedule
        .and_then(|s| s.next_after(now))
        .into_iter()
        .chain(next_check)
        .min()
        .map(|t| (t - now).to_std().unwrap_or_default() + Duration::from_secs(1));
    let most = match waiting {
        true => MOST_WHILE_WAITING,
        false => MOST,
    };
    next.unwrap_or(most).min(most)
}

/// The status write, if `status` differs from the one read, with the events its change
/// deserves and what it means for the metrics. Counted from the change between the
/// status read and the one written, so a retried reconcile (whose write failed) or a
/// new leader counts nothing twice.
fn status_write(
    dj: &DataJob,
    status: DataJobStatus,
    pods: &[Arc<Pod>],
    scheduled: &HashSet<String>,
    now: DateTime<Utc>,
) -> Option<StatusWrite> {
    let previous = dj.status.clone().unwrap_or_default();
    if previous == status {
        return None;
    }
    let mut events: Vec<Note> = runs::run_events(&previous.recent_runs, &status.recent_runs)
        .into_iter()
        .map(|e| Note::new(e.warning, e.reason, "Run", &e.note))
        .collect();
    if let Some(invalid) = invalid_event(&previous, &status) {
        events.push(invalid);
    }
    events.extend(late_event(&previous, &status));
    let start_of = |run: &str| runs::Start {
        scheduled: scheduled.contains(run),
        container_started: runs::container_started(&pods_of(pods, run)),
    };
    let changes = runs::run_changes(&previous.recent_runs, &status.recent_runs, start_of, now);
    let spec_changed =
        dj.metadata.generation.is_some() && dj.metadata.generation != previous.observed_generation;
    Some(StatusWrite {
        status,
        events,
        changes,
        spec_changed,
    })
}

/// A Warning when the DataJob became late, or is late for another run (`RunLate`).
fn late_event(previous: &DataJobStatus, status: &DataJobStatus) -> Option<Note> {
    let late = |s: &DataJobStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Late" && c.status == "True")
            .map(|c| c.message.clone())
    };
    let now = late(status)?;
    // The message names the logical time ("… of <time> was expected by …"): the
    // lateness of one time is told once, whatever its run does next.
    let same_run = |m: &str| {
        m.split(" was expected")
            .next()
            .and_then(|head| head.rsplit(" of ").next())
            .map(str::to_string)
    };
    let before = late(previous);
    if before.as_deref().and_then(same_run) == same_run(&now) {
        return None;
    }
    Some(Note::new(true, "RunLate", "Expect", &now))
}

/// A Warning when the DataJob became invalid, or its problems changed: `Invalid`, or
/// `ChildRejected` when the apiserver refused a child.
fn invalid_event(previous: &DataJobStatus, status: &DataJobStatus) -> Option<Note> {
    let became_invalid = status.state == Some(RunState::Invalid)
        && (previous.state != status.state
            || previous.reason != status.reason
            || previous.message != status.message);
    if !became_invalid {
        return None;
    }
    let rejected = status.reason.as_deref() == Some(runs::CHILD_REJECTED);
    let (reason, action) = match rejected {
        true => (runs::CHILD_REJECTED, "Apply"),
        false => ("Invalid", "Validate"),
    };
    let message = status.message.as_deref().unwrap_or_default();
    Some(Note::new(true, reason, action, message))
}
