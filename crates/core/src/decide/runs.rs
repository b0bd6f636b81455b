//! From the Jobs a DataJob has to what its status says: run records, the DataJob's
//! state, conditions, and the events a change of state deserves. Pure functions.
use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use regex::Regex;

use crate::decide::late;
use crate::labels::{
    self, CRONJOB_SCHEDULED, END_MESSAGE, END_REASON, LAST_FAILURE_MESSAGE, LAST_FAILURE_REASON,
    LOGICAL_TIME, WAITING_MESSAGE, WAITING_REASON,
};
use crate::params;
use crate::schedule::Schedule;
use crate::validation::{Problems, Resolved};
use datajob_api::{DataJob, DataJobStatus, RunRecord, RunState};

/// How many runs `status.recentRuns` keeps.
pub(crate) const RECENT_RUNS: usize = 10;

static EXIT_CODE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"exit code (\d+)").unwrap_or_else(|e| unreachable!("{e}")));

/// The run a Job stands for. `None` for a Job that is not a run of `datajob`.
pub fn run_of(job: &Job, datajob: &str) -> Option<RunRecord> {
    let name = job.name_any();
    let annotations = job.annotations();
    let logical_time = annotations
        .get(LOGICAL_TIME)
        .or_else(|| annotations.get(CRONJOB_SCHEDULED))
        .and_then(|s| labels::parse_rfc3339(s))
        .or_else(|| labels::logical_time_of(datajob, &name))?;
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);

    let mut record = RunRecord {
        backfill: job.labels().get(labels::BACKFILL).cloned(),
        params: annotations
            .get(labels::PARAMS)
            .and_then(|a| params::parse_annotation(a).ok())
            .unwrap_or_default(),
        logs: annotations
            .get(crate::decide::archive::LOGS)
            .and_then(|k| crate::decide::archive::Kept::parse(k))
            .map(|k| k.as_str().to_string()),
        name,
        logical_time: labels::rfc3339(logical_time),
        start_time: status
            .start_time
            .as_ref()
            .and_then(labels::from_k8s_time)
            .map(labels::rfc3339),
        ..Default::default()
    };
    if let Some(c) = cond("Complete").or_else(|| cond("SuccessCriteriaMet")) {
        record.state = RunState::Succeeded;
        record.finish_time = status
            .completion_time
            .as_ref()
            .or(c.last_transition_time.as_ref())
            .and_then(labels::from_k8s_time)
            .map(labels::rfc3339);
    } else if let Some(c) = cond("Failed").or_else(|| cond("FailureTarget")) {
        record_failure(&mut record, c, &status, annotations);
    } else if let Some(reason) = annotations.get(WAITING_REASON).filter(|_| suspended) {
        // Held by the operator: its inputs have not published yet.
        record.state = RunState::Waiting;
        record.reason = Some(reason.clone());
        record.message = annotations.get(WAITING_MESSAGE).cloned();
    } else if suspended {
        record.state = RunState::Pending;
        record.reason = Some("WaitingToStart".into());
        record.message = Some("the run is waiting for the operator to start it".into());
    } else if status.ready.unwrap_or(0) > 0 {
        record.state = RunState::Running;
    } else {
        record.state = RunState::Pending;
    }
    // What the operator itself decided (it ended the run, and said why) wins.
    if let Some(reason) = annotations.get(END_REASON) {
        record.state = RunState::Failed;
        record.reason = Some(reason.clone());
        record.message = annotations.get(END_MESSAGE).cloned().or(record.message);
    }
    Some(record)
}

/// A failed run's finish time and reason: the Job controller's, or the last attempt's
/// own (e.g. OutOfMemory) when the Job says only that retries ran out.
fn record_failure(
    record: &mut RunRecord,
    c: &JobCondition,
    status: &JobStatus,
    annotations: &BTreeMap<String, String>,
) {
    record.state = RunState::Failed;
    record.finish_time = c
        .last_transition_time
        .as_ref()
        .and_then(labels::from_k8s_time)
        .map(labels::rfc3339);
    let (reason, message) = failure_reason(
        c.reason.as_deref().unwrap_or_default(),
        c.message.as_deref().unwrap_or_default(),
        // Failed pods the Job controller has not counted yet are failures too.
        status.failed.unwrap_or(0).saturating_add(
            status
                .uncounted_terminated_pods
                .as_ref()
                .and_then(|u| u.failed.as_ref())
                .map_or(0, |f| i32::try_from(f.len()).unwrap_or(i32::MAX)),
        ),
    );
    record.reason = Some(reason);
    record.message = Some(message);
    // An attempt's own failure (e.g. OutOfMemory) says more than "retries exhausted".
    if let Some(r) = annotations
        .get(LAST_FAILURE_REASON)
        .filter(|_| record.reason.as_deref() == Some(RETRIES_EXHAUSTED))
    {
        record.reason = Some(r.clone());
        record.message = annotations
            .get(LAST_FAILURE_MESSAGE)
            .cloned()
            .or(record.message.take());
    }
}

/// Whether `run` failed for want of retries with no word yet on why its last attempt
/// died (the watchdog records that on the Job, sometimes after the Job failed).
pub(crate) fn needs_attempt_reason(run: &RunRecord) -> bool {
    run.state == RunState::Failed && run.reason.as_deref() == Some(RETRIES_EXHAUSTED)
}

/// Gives a run that [`needs_attempt_reason`] the reason its last attempt died, when
/// one is known.
pub(crate) fn set_attempt_reason(run: &mut RunRecord, failure: Option<(&str, String)>) {
    if let Some((reason, message)) = failure.filter(|_| needs_attempt_reason(run)) {
        run.reason = Some(reason.into());
        run.message = Some(message);
    }
}

const RETRIES_EXHAUSTED: &str = "RetriesExhausted";

/// A Job controller failure reason in plain words.
fn failure_reason(reason: &str, message: &str, failed_pods: i32) -> (String, String) {
    match reason {
        "DeadlineExceeded" => (
            "DeadlineExceeded".into(),
            "the run took longer than its deadline and was stopped; raise spec.deadline or make the job faster".into(),
        ),
        "BackoffLimitExceeded" => (
            RETRIES_EXHAUSTED.into(),
            format!("the run failed {failed_pods} time(s) and has no retries left; see `kubectl datajob logs`"),
        ),
        "PodFailurePolicy" => {
            let code = EXIT_CODE_RE.captures(message).and_then(|c| c.get(1)).map(|m| m.as_str().to_string());
            let what = match code.as_deref() {
                Some("127") => "the command was not found in the image (exit code 127)".to_string(),
                Some("126") => "the command could not be executed (exit code 126)".to_string(),
                Some(c) => format!("the container exited with code {c}"),
                None => message.to_string(),
            };
            ("CommandNotRunnable".into(), format!("{what}; retrying cannot fix it, so the run was not retried"))
        }
        "" => ("Failed".into(), message.to_string()),
        other => (other.to_string(), message.to_string()),
    }
}

/// Adds an estimated cost to finished runs that have none yet.
pub(crate) fn estimate_costs(
    runs: &mut [RunRecord],
    request: &crate::resources::Request,
    group: &crate::group::Group,
) -> Vec<(String, f64)> {
    let mut added = Vec::new();
    for run in runs
        .iter_mut()
        .filter(|r| r.state.is_finished() && r.estimated_cost.is_none())
    {
        let start = run.start_time.as_deref().and_then(labels::parse_rfc3339);
        let finish = run.finish_time.as_deref().and_then(labels::parse_rfc3339);
        if let (Some(s), Some(f)) = (start, finish) {
            let cost = crate::decide::nodegroup::run_cost(
                request,
                group,
                (f - s).to_std().unwrap_or_default(),
            );
            run.estimated_cost = Some(format!("{cost:.4}"));
            added.push((run.name.clone(), cost));
        }
    }
    added
}

/// Whether the one-off run `id` at `logical_time` has run already, as far as the status
/// can tell once its Job is gone: it is in `recentRuns`, or `recentRuns` is full and
/// every run there is newer (the run fell out of the history). Without this, a one-off
/// run whose Job was pruned or expired would be created again, and again.
pub(crate) fn already_ran(
    status: Option<&DataJobStatus>,
    id: &str,
    logical_time: DateTime<Utc>,
) -> bool {
    let Some(s) = status else {
        return false;
    };
    if s.recent_runs.iter().any(|r| r.name == id) {
        return true;
    }
    let oldest = s
        .recent_runs
        .iter()
        .filter_map(|r| labels::parse_rfc3339(&r.logical_time))
        .min();
    s.recent_runs.len() >= RECENT_RUNS && oldest.is_some_and(|o| logical_time < o)
}

/// What `status.lastTrigger` records for the trigger annotations `time` and `args`
/// (`datajob.dev/trigger-args`, raw): [`params::trigger_key`], with arguments that do not
/// parse standing for themselves, so that a refused trigger, too, acts once.
pub fn trigger_key(time: &str, args: Option<&str>) -> String {
    let args = args.map_or_else(params::Args::new, |raw| {
        params::parse_annotation(raw)
            .unwrap_or_else(|_| params::Args::from([(String::new(), raw.to_string())]))
    });
    params::trigger_key(time, &args)
}

/// The run a `datajob.dev/trigger` annotation (`time`, with `args` from
/// `datajob.dev/trigger-args`) asks for, unless the status says that request was handled
/// already (`status.lastTrigger`): a trigger acts once. `Err` says why it is refused:
/// arguments that are not JSON, or not what the DataJob (`spec`) takes. A time
/// that does not parse asks for nothing.
pub(crate) fn pending_trigger(
    time: Option<&str>,
    args: Option<&str>,
    spec: &datajob_api::DataJobSpec,
    status: Option<&DataJobStatus>,
) -> Option<Result<(DateTime<Utc>, params::Args), String>> {
    let value = time?;
    let handled = status.and_then(|s| s.last_trigger.as_deref()) == Some(&trigger_key(value, args));
    if handled {
        return None;
    }
    let t = labels::parse_rfc3339(value).map(labels::truncate_to_minute)?;
    let given = match args.map(params::parse_annotation).transpose() {
        Ok(given) => given.unwrap_or_default(),
        Err(e) => return Some(Err(format!("{} {e}", labels::TRIGGER_ARGS))),
    };
    let problems = params::check_trigger(spec, &given);
    if !problems.is_empty() {
        let words: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Some(Err(words.join("; ")));
    }
    Some(Ok((t, given)))
}

/// The logical times that had their run, from the runs now (`current`) and the history:
/// a run with parameters is not the run of its time, so it neither fills a scheduled
/// time nor keeps it from being caught up.
pub(crate) fn times_ran(
    current: &[RunRecord],
    status: Option<&DataJobStatus>,
) -> std::collections::BTreeSet<DateTime<Utc>> {
    current
        .iter()
        .chain(status.iter().flat_map(|s| s.recent_runs.iter()))
        .filter(|r| r.params.is_empty())
        .filter_map(|r| labels::parse_rfc3339(&r.logical_time))
        .collect()
}

/// Merges what the Jobs say with the history in the status, newest first.
pub fn merge_runs(previous: &[RunRecord], current: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut by_name: BTreeMap<String, RunRecord> = previous
        .iter()
        .map(|r| (r.name.clone(), r.clone()))
        .collect();
    for mut run in current {
        // A cost, once estimated, is kept (and counted once).
        if run.estimated_cost.is_none() {
            run.estimated_cost = by_name
                .get(&run.name)
                .and_then(|p| p.estimated_cost.clone());
        }
        // So is where its logs went, once the Job said so.
        if run.logs.is_none() {
            run.logs = by_name.get(&run.name).and_then(|p| p.logs.clone());
        }
        by_name.insert(run.name.clone(), run);
    }
    let mut runs: Vec<RunRecord> = by_name.into_values().collect();
    runs.sort_by(|a, b| {
        b.logical_time
            .cmp(&a.logical_time)
            .then_with(|| b.name.cmp(&a.name))
    });
    runs.truncate(RECENT_RUNS);
    runs
}

/// Everything the reconciler knows, to compute the status from.
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub spec: Result<&'a Resolved, &'a Problems>,
    pub previous: Option<&'a DataJobStatus>,
    /// Runs read from the DataJob's Jobs now.
    pub runs: Vec<RunRecord>,
    pub now: DateTime<Utc>,
    /// The apiserver refused a child the valid spec made: its words, and what to fix.
    pub rejected: Option<&'a str>,
    /// When the DataJob was created: scheduled times before it are not held to
    /// `expectBy`, and a one-off DataJob's run has it as its logical time.
    pub created: Option<DateTime<Utc>>,
}

/// The reason on a DataJob whose CronJob or Job the apiserver refused.
pub(crate) const CHILD_REJECTED: &str = "ChildRejected";

/// The status the DataJob should have. Condition transition times are kept from the
/// previous status when nothing changed, so an unchanged status compares equal.
pub(crate) fn desired_status(o: Observed<'_>) -> DataJobStatus {
    let empty = DataJobStatus::default();
    let prev = o.previous.unwrap_or(&empty);
    let recent_runs = merge_runs(&prev.recent_runs, o.runs);
    let last_run = recent_runs.first().cloned();
    let active_runs: Vec<String> = recent_runs
        .iter()
        .filter(|r| !r.state.is_finished())
        .map(|r| r.name.clone())
        .collect();

    let mut s = DataJobStatus {
        observed_generation: o.generation,
        last_run: last_run.clone(),
        recent_runs,
        active_runs,
        ..Default::default()
    };
    let mut conditions = Vec::new();
    spec_status(
        &mut s,
        o.spec,
        o.rejected,
        o.now,
        &last_run,
        &mut conditions,
    );
    run_conditions(&s, &last_run, &mut conditions);
    if let Ok(r) = o.spec
        && let Some(l) = lateness(r, &s.recent_runs, o.created, o.now)
    {
        conditions.push(("Late", l.late, l.reason, l.message));
    }
    s.conditions = conditions
        .into_iter()
        .map(|(t, status, reason, message)| {
            condition(
                &prev.conditions,
                t,
                status,
                reason,
                message,
                o.generation,
                o.now,
            )
        })
        .collect();
    s
}

/// The status a DataJob's spec decides: invalid (with its problems), or valid with its
/// node group, next run and state (the last run's, or suspended, scheduled, pending;
/// invalid when the apiserver refused a child); and the `Invalid` and `Ready` conditions.
fn spec_status<'a>(
    s: &mut DataJobStatus,
    spec: Result<&Resolved, &Problems>,
    rejected: Option<&str>,
    now: DateTime<Utc>,
    last_run: &'a Option<RunRecord>,
    conditions: &mut Vec<(&'static str, bool, &'a str, String)>,
) {
    match spec {
        Err(problems) => {
            s.state = Some(RunState::Invalid);
            s.reason = Some("Invalid".into());
            s.message = Some(problems.to_string());
            conditions.push(("Invalid", true, "Invalid", problems.to_string()));
            conditions.push((
                "Ready",
                false,
                "Invalid",
                "the spec is invalid; no run is created until it is fixed".into(),
            ));
        }
        Ok(r) => {
            conditions.push(("Invalid", false, "Valid", "the spec is valid".into()));
            s.node_group = r.placement.as_ref().map(|g| g.name.clone());
            conditions.push(match rejected {
                None => (
                    "Ready",
                    true,
                    "Reconciled",
                    "the DataJob's CronJob or Job is up to date".into(),
                ),
                Some(why) => ("Ready", false, CHILD_REJECTED, why.to_string()),
            });
            if !r.suspend {
                s.next_run = r
                    .schedule
                    .as_ref()
                    .and_then(|sc| sc.next_after(now))
                    .map(labels::rfc3339);
            }
            let (state, reason, message) = match (&last_run, r.suspend) {
                (_, true) if s.active_runs.is_empty() => (RunState::Suspended, None, None),
                (Some(run), _) => (run.state, run.reason.clone(), run.message.clone()),
                (None, _) if r.schedule.is_some() => (RunState::Scheduled, None, None),
                (None, _) => (RunState::Pending, None, None),
            };
            s.state = Some(state);
            s.reason = reason;
            s.message = message;
            if let Some(why) = rejected {
                s.state = Some(RunState::Invalid);
                s.reason = Some(CHILD_REJECTED.into());
                s.message = Some(why.to_string());
            }
        }
    }
}

/// What `spec.expectBy` holds a DataJob to: the expected-by time, since when (its
/// creation), and a one-off DataJob's logical time; `None` without an `expectBy`, and
/// while it is suspended (no run is expected).
fn held_to(
    r: &Resolved,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(late::ExpectBy, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let expect = r.expect_by.filter(|_| !r.suspend)?;
    let since = created.unwrap_or(now);
    let one_off = r
        .schedule
        .is_none()
        .then(|| labels::truncate_to_minute(since));
    Some((expect, since, one_off))
}

/// Whether the DataJob is late (`spec.expectBy`), from its runs; `None` when it is not
/// held to an expected-by time.
pub(crate) fn lateness(
    r: &Resolved,
    runs: &[RunRecord],
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<late::Lateness> {
    let (expect, since, one_off) = held_to(r, created, now)?;
    let schedule = r.schedule.as_ref();
    Some(late::lateness(
        expect,
        r.time_zone,
        schedule,
        one_off,
        since,
        runs,
        now,
    ))
}

/// When the next run becomes due (`spec.expectBy`), to look again then.
pub(crate) fn next_due(
    r: &Resolved,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (expect, since, one_off) = held_to(r, created, now)?;
    late::next_due(
        expect,
        r.time_zone,
        r.schedule.as_ref(),
        one_off,
        since,
        now,
    )
}

/// The `Running` and `Failed` conditions: whether a run is active, and whether the last
/// one failed (and why).
fn run_conditions<'a>(
    s: &DataJobStatus,
    last_run: &'a Option<RunRecord>,
    conditions: &mut Vec<(&'static str, bool, &'a str, String)>,
) {
    let running = !s.active_runs.is_empty();
    conditions.push((
        "Running",
        running,
        if running { "RunActive" } else { "NoRunActive" },
        if running {
            format!("run {} is active", s.active_runs.join(", "))
        } else {
            "no run is active".into()
        },
    ));
    let failed = last_run
        .as_ref()
        .is_some_and(|r| r.state == RunState::Failed);
    conditions.push((
        "Failed",
        failed,
        if failed {
            last_run
                .as_ref()
                .and_then(|r| r.reason.as_deref())
                .unwrap_or("Failed")
        } else {
            "LastRunNotFailed"
        },
        if failed {
            last_run
                .as_ref()
                .and_then(|r| r.message.clone())
                .unwrap_or_default()
        } else {
            "the last run did not fail".into()
        },
    ));
}

/// A status condition; its transition time moves only when its status changes from the
/// one in `previous`.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let old = previous.iter().find(|c| c.type_ == type_);
    let last_transition_time = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => labels::to_k8s_time(now),
    };
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// An event a change of run state deserves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    pub run: String,
}

/// Runs that started, succeeded or failed between two statuses.
pub(crate) fn run_events(previous: &[RunRecord], current: &[RunRecord]) -> Vec<RunEvent> {
    let mut events = Vec::new();
    for run in current {
        let before = previous.iter().find(|p| p.name == run.name);
        if before.is_none() {
            events.push(RunEvent {
                warning: false,
                reason: "RunStarted",
                note: format!(
                    "run {} for logical time {} created",
                    run.name, run.logical_time
                ),
                run: run.name.clone(),
            });
        }
        let was_finished = before.is_some_and(|p| p.state.is_finished());
        if run.state.is_finished() && !was_finished {
            let (warning, reason, note) = match run.state {
                RunState::Succeeded => {
                    (false, "RunSucceeded", format!("run {} succeeded", run.name))
                }
                _ => (
                    true,
                    "RunFailed",
                    format!(
                        "run {} failed: {}: {}",
                        run.name,
                        run.reason.as_deref().unwrap_or("Failed"),
                        run.message.as_deref().unwrap_or("")
                    ),
                ),
            };
            events.push(RunEvent {
                warning,
                reason,
                note,
                run: run.name.clone(),
            });
        }
    }
    events
}

/// How a run started, as the reconciler sees it: whether its CronJob made it (a
/// scheduled run), and when its first container started (read from its pods).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Start {
    pub scheduled: bool,
    pub container_started: Option<DateTime<Utc>>,
}

/// A run that finished, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub state: RunState,
    /// Empty on success.
    pub reason: String,
    /// From the Job's start to its end, when both are known.
    pub seconds: Option<f64>,
}

/// What a status change says happened to runs, for the metrics. Computed from the status
/// written before and the one written now, so a retried reconcile (whose write failed)
/// or a new leader (which reads what the old one wrote) counts nothing twice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunChanges {
    /// Runs the status lists for the first time.
    pub appeared: u64,
    pub finished: Vec<Finished>,
    /// Seconds from the logical time to the first container start, of each scheduled run
    /// that started.
    pub lags: Vec<f64>,
}

fn started(state: RunState) -> bool {
    matches!(
        state,
        RunState::Running | RunState::Succeeded | RunState::Failed
    )
}

/// The runs that appeared, started and finished between two statuses. `start_of` says
/// how a run started; it is asked only about runs that started now. A run is started
/// once the status shows it running or finished; its lag is counted only when it is a
/// scheduled run and its container start is known (a run whose container never started,
/// e.g. its image could not be pulled, has no lag), or it is running (its container has
/// started by `now`).
pub(crate) fn run_changes(
    previous: &[RunRecord],
    current: &[RunRecord],
    start_of: impl Fn(&str) -> Start,
    now: DateTime<Utc>,
) -> RunChanges {
    let mut changes = RunChanges::default();
    for run in current {
        let before = previous.iter().find(|p| p.name == run.name);
        if before.is_none() {
            changes.appeared += 1;
        }
        if started(run.state) && !before.is_some_and(|p| started(p.state)) {
            let start = start_of(&run.name);
            let at = match (start.container_started, run.state) {
                (Some(t), _) => Some(t),
                (None, RunState::Running) => Some(now),
                (None, _) => None,
            };
            let logical = labels::parse_rfc3339(&run.logical_time);
            if let (true, Some(at), Some(logical)) = (start.scheduled, at, logical) {
                let lag = (at - logical).num_milliseconds().max(0) as f64 / 1000.0;
                changes.lags.push(lag);
            }
        }
        if run.state.is_finished() && !before.is_some_and(|p| p.state.is_finished()) {
            let time = |t: &Option<String>| t.as_deref().and_then(labels::parse_rfc3339);
            let seconds = match (time(&run.start_time), time(&run.finish_time)) {
                (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0) as f64 / 1000.0),
                _ => None,
            };
            changes.finished.push(Finished {
                state: run.state,
                reason: run.reason.clone().unwrap_or_default(),
                seconds,
            });
        }
    }
    changes
}

/// When the first container of a run's pods started (running now, or finished).
pub(crate) fn container_started(pods: &[&Pod]) -> Option<DateTime<Utc>> {
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .flat_map(|c| {
            let state = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
                let s = s?;
                s.running
                    .as_ref()
                    .and_then(|r| r.started_at.as_ref())
                    .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.as_ref()))
                    .and_then(labels::from_k8s_time)
            };
            [state(c.state.as_ref()), state(c.last_state.as_ref())]
        })
        .flatten()
        .min()
}

/// `startingDeadlineSeconds` of a DataJob's CronJob, as `children::cronjob` sets it (a
/// test holds them equal): the shortest gap between two runs, clamped to 60 s – 1 h.
pub(crate) fn starting_deadline(schedule: &Schedule, now: DateTime<Utc>) -> chrono::Duration {
    let gap = schedule.min_interval(now).map_or(3600, |d| d.num_seconds());
    chrono::Duration::seconds(gap.clamp(60, 3600))
}

/// Added to the starting deadline before a slot counts as missed: the Job the CronJob
/// controller made at the last moment needs a moment to reach the operator's cache.
pub(crate) const MISS_MARGIN: chrono::Duration = chrono::Duration::seconds(10);

/// Scheduled times that got no run, and when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missed {
    /// Slots whose starting deadline (plus [`MISS_MARGIN`]) ran out in `(from, now]`
    /// without a run of their logical time.
    pub slots: Vec<DateTime<Utc>>,
    /// When the next slot without a run so far runs out of time.
    pub next_check: Option<DateTime<Utc>>,
}

/// The most slots one call looks at (a schedule every minute, over a week).
const MAX_SLOTS: usize = 10_080;

/// Which scheduled slots were missed in `(from, now]`: a slot `t` is missed when no run
/// has logical time `t` (`ran`) once `t + deadline + MISS_MARGIN` has passed, which is
/// when the CronJob controller gives up on it (`startingDeadlineSeconds`; it skips a
/// slot while the previous run is still active, `concurrencyPolicy: Forbid`). Each slot
/// runs out of time at one moment, so consecutive windows count it once. Only slots
/// after `since` count: the CronJob controller never runs a time before its CronJob
/// existed (or had this schedule).
pub(crate) fn missed_slots(
    schedule: &Schedule,
    deadline: chrono::Duration,
    ran: &std::collections::BTreeSet<DateTime<Utc>>,
    since: DateTime<Utc>,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Missed {
    let window = deadline + MISS_MARGIN;
    let mut missed = Missed::default();
    let mut t = (from - window).max(since);
    for _ in 0..MAX_SLOTS {
        let Some(slot) = schedule.next_after(t) else {
            break;
        };
        if slot > now {
            break;
        }
        if !ran.contains(&slot) {
            if slot + window <= now {
                missed.slots.push(slot);
            } else if missed.next_check.is_none() {
                missed.next_check = Some(slot + window);
            }
        }
        t = slot;
    }
    missed
}

/// The runs a reconcile creates itself, each a logical time and its arguments, and why
/// a trigger was refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ToCreate {
    /// Oldest first.
    pub runs: Vec<(DateTime<Utc>, params::Args)>,
    /// Why the pending trigger makes no run, in words.
    pub refused: Option<String>,
}

/// The runs a reconcile creates itself (the CronJob makes the scheduled ones): a
/// one-off DataJob's single run, at the minute it was created, and a pending
/// `datajob.dev/trigger` with its arguments; each only when it has no Job (`job_exists`,
/// by run id) and is not in the history. Oldest first, each run once.
pub(crate) fn runs_to_create(
    dj: &DataJob,
    one_off: bool,
    job_exists: &dyn Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> ToCreate {
    let name = dj.name_any();
    let mut wanted = ToCreate::default();
    if one_off {
        // One run, now: its logical time is when the DataJob was created.
        let created = dj
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(labels::from_k8s_time)
            .unwrap_or(now);
        let t = labels::truncate_to_minute(created);
        let id = labels::run_id(&name, t);
        if !job_exists(&id) && !already_ran(dj.status.as_ref(), &id, t) {
            wanted.runs.push((t, params::Args::new()));
        }
    }
    let annotation = |key: &str| dj.annotations().get(key).map(String::as_str);
    match pending_trigger(
        annotation(labels::TRIGGER),
        annotation(labels::TRIGGER_ARGS),
        &dj.spec,
        dj.status.as_ref(),
    ) {
        Some(Ok((t, args))) => {
            // Acted on once; a run that has a Job or is in the history has run.
            let id = params::run_id(&name, t, &args);
            let recorded = dj
                .status
                .as_ref()
                .is_some_and(|s| s.recent_runs.iter().any(|r| r.name == id));
            let run = (t, args);
            if !job_exists(&id) && !recorded && !wanted.runs.contains(&run) {
                wanted.runs.push(run);
            }
        }
        Some(Err(why)) => wanted.refused = Some(why),
        None => {}
    }
    wanted.runs.sort();
    wanted
}

#[cfg(test)]
mod tests {
    fn history(times: &[&str]) -> DataJobStatus {
        DataJobStatus {
            recent_runs: times
                .iter()
                .map(|t| RunRecord {
                    name: format!("dj-{t}"),
                    logical_time: (*t).to_string(),
                    state: RunState::Succeeded,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_run_that_fell_out_of_the_history_is_not_run_again() {
        let t = |s: &str| labels::parse_rfc3339(s).unwrap();
        let newer: Vec<String> = (10..20).map(|d| format!("2026-11-{d}T03:00:00Z")).collect();
        let newer: Vec<&str> = newer.iter().map(String::as_str).collect();
        let full = history(&newer);
        assert!(!already_ran(None, "dj-x", t("2026-11-01T03:00:00Z")));
        // Older than a full history: it ran and was dropped.
        assert!(already_ran(Some(&full), "dj-x", t("2026-11-01T03:00:00Z")));
        // Newer than the oldest: it would be there, so it did not run.
        assert!(!already_ran(Some(&full), "dj-x", t("2026-11-15T04:00:00Z")));
        // A history that is not full keeps every run.
        let short = history(&newer[5..]);
        assert!(!already_ran(
            Some(&short),
            "dj-x",
            t("2026-11-01T03:00:00Z")
        ));
        assert!(already_ran(
            Some(&short),
            "dj-2026-11-19T03:00:00Z",
            t("2026-11-19T03:00:00Z")
        ));
    }

    #[test]
    fn a_trigger_acts_once() {
        let at = "2026-11-25T10:12:30Z";
        let none = params::Args::new();
        let spec = datajob_api::DataJobSpec {
            params: params::Args::from([("day".into(), "".into())]),
            ..Default::default()
        };
        let pending = |time, args, s: Option<&DataJobStatus>| pending_trigger(time, args, &spec, s);
        let mut s = DataJobStatus::default();
        let minute = labels::parse_rfc3339("2026-11-25T10:12:00Z").unwrap();
        assert_eq!(
            pending(Some(at), None, Some(&s)),
            Some(Ok((minute, none.clone())))
        );
        s.last_trigger = Some(at.into());
        assert_eq!(pending(Some(at), None, Some(&s)), None);
        assert!(pending(Some("2026-11-25T11:00:00Z"), None, Some(&s)).is_some());
        assert_eq!(pending(Some("tomorrow"), None, None), None);
        assert_eq!(pending(None, None, None), None);
        // The same time with arguments is another request, acted on once too.
        let args = Some(r#"{"day":"2026-11-01"}"#);
        let given = params::Args::from([("day".into(), "2026-11-01".into())]);
        assert_eq!(pending(Some(at), args, Some(&s)), Some(Ok((minute, given))));
        s.last_trigger = Some(trigger_key(at, args));
        assert_eq!(pending(Some(at), args, Some(&s)), None);
        assert!(pending(Some(at), None, Some(&s)).is_some());
    }

    #[test]
    fn a_trigger_with_arguments_not_declared_is_refused_once() {
        let at = "2026-11-25T10:12:30Z";
        let declared = datajob_api::DataJobSpec {
            params: params::Args::from([("day".into(), "".into())]),
            ..Default::default()
        };
        let why = pending_trigger(Some(at), Some(r#"{"region":"eu"}"#), &declared, None)
            .unwrap()
            .unwrap_err();
        assert!(
            why.contains("parameter region") && why.contains("day"),
            "{why}"
        );
        let why = pending_trigger(Some(at), Some("day=1"), &declared, None)
            .unwrap()
            .unwrap_err();
        assert!(
            why.starts_with("datajob.dev/trigger-args") && why.contains("JSON"),
            "{why}"
        );
        let s = DataJobStatus {
            last_trigger: Some(trigger_key(at, Some("day=1"))),
            ..Default::default()
        };
        assert_eq!(
            pending_trigger(Some(at), Some("day=1"), &declared, Some(&s)),
            None
        );
    }

    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use kube::core::ObjectMeta;

    fn job(name: &str, conditions: Vec<(&str, &str, &str)>, ready: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                suspend: Some(false),
                ..Default::default()
            }),
            status: Some(JobStatus {
                ready: Some(ready),
                failed: Some(2),
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(t, reason, message)| JobCondition {
                            type_: t.into(),
                            status: "True".into(),
                            reason: Some(reason.into()),
                            message: Some(message.into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn job_states() {
        let r = run_of(&job("dj-29926260", vec![], 0), "dj").unwrap();
        assert_eq!(
            (r.state, r.logical_time.as_str()),
            (RunState::Pending, "2026-11-25T03:00:00Z")
        );
        assert_eq!(
            run_of(&job("dj-29926260", vec![], 1), "dj").unwrap().state,
            RunState::Running
        );
        assert_eq!(
            run_of(&job("dj-29926260", vec![("Complete", "", "")], 0), "dj")
                .unwrap()
                .state,
            RunState::Succeeded
        );
        let f = run_of(
            &job(
                "dj-29926260",
                vec![("Failed", "BackoffLimitExceeded", "")],
                0,
            ),
            "dj",
        )
        .unwrap();
        assert_eq!(
            (f.state, f.reason.as_deref()),
            (RunState::Failed, Some("RetriesExhausted"))
        );
        let p = run_of(
            &job("dj-29926260", vec![("Failed", "PodFailurePolicy", "Container main for pod x failed with exit code 127 matching FailJob rule at index 1")], 0),
            "dj",
        )
        .unwrap();
        assert!(p.message.unwrap().contains("not found"));
        assert!(run_of(&job("other-name", vec![], 0), "dj").is_none());
    }

    #[test]
    fn a_failed_run_takes_the_reason_its_last_attempt_died_of() {
        let failed = |conditions| run_of(&job("dj-29926260", conditions, 0), "dj").unwrap();
        let oom = Some((
            "OutOfMemory",
            "the container ran out of memory (256Mi)".to_string(),
        ));
        let mut r = failed(vec![("Failed", "BackoffLimitExceeded", "")]);
        assert!(needs_attempt_reason(&r));
        set_attempt_reason(&mut r, None);
        assert_eq!(
            r.reason.as_deref(),
            Some("RetriesExhausted"),
            "nothing known"
        );
        set_attempt_reason(&mut r, oom.clone());
        assert_eq!(r.reason.as_deref(), Some("OutOfMemory"));
        assert!(r.message.unwrap().contains("256Mi"));
        assert!(!needs_attempt_reason(
            &run_of(&job("dj-29926260", vec![], 1), "dj").unwrap()
        ));
        // A reason of its own (here: the command could not run) is kept.
        let mut p = failed(vec![("Failed", "PodFailurePolicy", "exit code 127")]);
        set_attempt_reason(&mut p, oom);
        assert_eq!(p.reason.as_deref(), Some("CommandNotRunnable"));
    }

    #[test]
    fn a_run_held_for_its_inputs_is_waiting() {
        let mut j = job("dj-29926260", vec![], 0);
        j.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            suspend: Some(true),
            ..Default::default()
        });
        j.metadata.annotations = Some(BTreeMap::from([
            (WAITING_REASON.to_string(), "WaitingForInput".to_string()),
            (
                WAITING_MESSAGE.to_string(),
                "waiting for input raw to run for 2026-11-25T03:00:00Z".to_string(),
            ),
        ]));
        let r = run_of(&j, "dj").unwrap();
        assert_eq!(
            (r.state, r.reason.as_deref()),
            (RunState::Waiting, Some("WaitingForInput"))
        );
        assert!(r.message.unwrap().contains("input raw"));
    }

    #[test]
    fn operator_decisions_win() {
        let mut j = job("dj-29926260", vec![], 0);
        j.metadata.annotations = Some(BTreeMap::from([
            (END_REASON.to_string(), "ImageNotFound".to_string()),
            (
                END_MESSAGE.to_string(),
                "image x could not be pulled".to_string(),
            ),
        ]));
        let r = run_of(&j, "dj").unwrap();
        assert_eq!(
            (r.state, r.reason.as_deref()),
            (RunState::Failed, Some("ImageNotFound"))
        );
    }

    #[test]
    fn history_is_kept_newest_first_and_bounded() {
        let rec = |n: i64| RunRecord {
            name: format!("dj-{n}"),
            logical_time: labels::rfc3339(DateTime::from_timestamp(n * 60, 0).unwrap()),
            state: RunState::Succeeded,
            ..Default::default()
        };
        let old: Vec<RunRecord> = (0..10).map(rec).collect();
        let merged = merge_runs(&old, vec![rec(10), rec(11)]);
        assert_eq!(merged.len(), RECENT_RUNS);
        assert_eq!(merged[0].name, "dj-11");
        assert_eq!(merged.last().unwrap().name, "dj-2");
    }

    #[test]
    fn events_on_transitions_only() {
        let pending = RunRecord {
            name: "a".into(),
            state: RunState::Pending,
            ..Default::default()
        };
        let done = RunRecord {
            state: RunState::Succeeded,
            ..pending.clone()
        };
        let ev = run_events(&[], std::slice::from_ref(&pending));
        assert_eq!(
            ev.iter().map(|e| e.reason).collect::<Vec<_>>(),
            vec!["RunStarted"]
        );
        assert_eq!(
            run_events(std::slice::from_ref(&pending), std::slice::from_ref(&done))[0].reason,
            "RunSucceeded"
        );
        assert!(run_events(std::slice::from_ref(&done), std::slice::from_ref(&done)).is_empty());
    }

    fn t(s: &str) -> DateTime<Utc> {
        labels::parse_rfc3339(s).unwrap()
    }

    fn record(name: &str, logical: &str, state: RunState) -> RunRecord {
        RunRecord {
            name: name.into(),
            logical_time: logical.into(),
            state,
            ..Default::default()
        }
    }

    #[test]
    fn run_changes_count_each_run_once() {
        let now = t("2026-11-25T03:00:40Z");
        let scheduled = |_: &str| Start {
            scheduled: true,
            container_started: Some(t("2026-11-25T03:00:12Z")),
        };
        let pending = record("a", "2026-11-25T03:00:00Z", RunState::Pending);
        let c = run_changes(&[], std::slice::from_ref(&pending), scheduled, now);
        assert_eq!((c.appeared, c.finished.len(), c.lags.len()), (1, 0, 0));
        // Started: its lag is from the logical time to the container's start.
        let running = record("a", "2026-11-25T03:00:00Z", RunState::Running);
        let c = run_changes(
            std::slice::from_ref(&pending),
            std::slice::from_ref(&running),
            scheduled,
            now,
        );
        assert_eq!((c.appeared, c.lags.clone()), (0, vec![12.0]));
        // Written again (a retried reconcile, a new leader): nothing more.
        assert_eq!(
            run_changes(
                std::slice::from_ref(&running),
                std::slice::from_ref(&running),
                scheduled,
                now
            ),
            RunChanges::default()
        );
        let mut done = record("a", "2026-11-25T03:00:00Z", RunState::Failed);
        done.reason = Some("OutOfMemory".into());
        done.start_time = Some("2026-11-25T03:00:01Z".into());
        done.finish_time = Some("2026-11-25T03:01:31Z".into());
        let c = run_changes(&[running], std::slice::from_ref(&done), scheduled, now);
        assert_eq!(
            c.finished,
            vec![Finished {
                state: RunState::Failed,
                reason: "OutOfMemory".into(),
                seconds: Some(90.0)
            }]
        );
        assert!(c.lags.is_empty(), "its start was counted already");
        assert_eq!(
            run_changes(
                std::slice::from_ref(&done),
                std::slice::from_ref(&done),
                scheduled,
                now
            ),
            RunChanges::default()
        );
        // A run seen for the first time finished counts as started and finished at once.
        let c = run_changes(&[], std::slice::from_ref(&done), scheduled, now);
        assert_eq!((c.appeared, c.lags.len(), c.finished.len()), (1, 1, 1));
    }

    #[test]
    fn only_scheduled_runs_that_really_started_have_a_lag() {
        let now = t("2026-11-25T03:00:40Z");
        let running = record("a", "2026-11-25T03:00:00Z", RunState::Running);
        let one_off = |_: &str| Start {
            scheduled: false,
            container_started: Some(now),
        };
        assert!(
            run_changes(&[], std::slice::from_ref(&running), one_off, now)
                .lags
                .is_empty()
        );
        // Running, and the pod cache has not seen the container start yet: by now it has.
        let unknown = |_: &str| Start {
            scheduled: true,
            container_started: None,
        };
        assert_eq!(run_changes(&[], &[running], unknown, now).lags, vec![40.0]);
        // Failed before any container started (the image could not be pulled): no lag.
        let mut ended = record("a", "2026-11-25T03:00:00Z", RunState::Failed);
        ended.reason = Some("ImageNotFound".into());
        let c = run_changes(&[], &[ended], unknown, now);
        assert!(c.lags.is_empty());
        assert_eq!(c.finished[0].seconds, None, "no start and end times");
        // A run that started early (a trigger with a future time) has no negative lag.
        let early = |_: &str| Start {
            scheduled: true,
            container_started: Some(t("2026-11-25T02:59:00Z")),
        };
        let running = record("a", "2026-11-25T03:00:00Z", RunState::Running);
        assert_eq!(run_changes(&[], &[running], early, now).lags, vec![0.0]);
    }

    #[test]
    fn the_first_container_start_of_a_runs_pods() {
        let pod = |state: serde_json::Value, last: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "status": {"containerStatuses": [{"name": "main", "image": "x", "imageID": "",
                    "ready": false, "restartCount": 1, "state": state, "lastState": last}]},
            }))
            .unwrap()
        };
        let waiting = pod(
            serde_json::json!({"waiting": {"reason": "ImagePullBackOff"}}),
            serde_json::json!({}),
        );
        assert_eq!(container_started(&[&waiting]), None);
        let retried = pod(
            serde_json::json!({"running": {"startedAt": "2026-11-25T03:00:30Z"}}),
            serde_json::json!({"terminated": {"exitCode": 137, "startedAt": "2026-11-25T03:00:05Z"}}),
        );
        let second = pod(
            serde_json::json!({"terminated": {"exitCode": 0, "startedAt": "2026-11-25T03:00:50Z"}}),
            serde_json::json!({}),
        );
        assert_eq!(
            container_started(&[&waiting, &second, &retried]),
            Some(t("2026-11-25T03:00:05Z"))
        );
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr, chrono_tz::UTC).unwrap()
    }

    #[test]
    fn the_starting_deadline_is_the_cronjobs() {
        use crate::decide::children::{Guards, cronjob};
        use crate::validation::{Limits, resolve};
        use datajob_api::DataJobSpec;
        for expr in [
            "* * * * *",
            "*/5 * * * *",
            "0 3 * * *",
            "0 */2 * * *",
            "@weekly",
        ] {
            let mut d = datajob_api::DataJob::new(
                "dj",
                DataJobSpec {
                    image: "busybox".into(),
                    schedule: Some(expr.into()),
                    ..Default::default()
                },
            );
            d.metadata.namespace = Some("ns".into());
            let r = resolve(&d, &Limits::default()).unwrap();
            let cj = cronjob(&d, &r, &Guards::default()).unwrap();
            let ours = starting_deadline(r.schedule.as_ref().unwrap(), Utc::now());
            assert_eq!(
                cj.spec.starting_deadline_seconds,
                Some(ours.num_seconds()),
                "{expr}"
            );
        }
    }

    #[test]
    fn a_slot_without_a_run_is_missed_once_its_deadline_passed() {
        let every_minute = schedule("* * * * *");
        let deadline = chrono::Duration::seconds(60);
        let mut ran = std::collections::BTreeSet::new();
        ran.insert(t("2026-11-25T03:00:00Z"));
        ran.insert(t("2026-11-25T03:02:00Z"));
        // 03:01 got no run (the 03:00 run was still active): missed at 03:02:10.
        let from = t("2026-11-25T03:00:30Z");
        let since = t("2026-11-25T02:59:50Z");
        let early = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            from,
            t("2026-11-25T03:02:05Z"),
        );
        assert!(early.slots.is_empty());
        assert_eq!(early.next_check, Some(t("2026-11-25T03:02:10Z")));
        let m = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            from,
            t("2026-11-25T03:02:10Z"),
        );
        assert_eq!(m.slots, vec![t("2026-11-25T03:01:00Z")]);
        // The next window does not count it again; 03:03 has time until 03:04:10.
        let next = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            t("2026-11-25T03:02:10Z"),
            t("2026-11-25T03:03:30Z"),
        );
        assert!(next.slots.is_empty());
        assert_eq!(next.next_check, Some(t("2026-11-25T03:04:10Z")));
        // Two windows that split the same span count the same slots as one.
        let whole = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            from,
            t("2026-11-25T03:10:00Z"),
        );
        let a = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            from,
            t("2026-11-25T03:05:07Z"),
        );
        let b = missed_slots(
            &every_minute,
            deadline,
            &ran,
            since,
            t("2026-11-25T03:05:07Z"),
            t("2026-11-25T03:10:00Z"),
        );
        assert_eq!([a.slots, b.slots].concat(), whole.slots);
        assert_eq!(whole.slots.len(), 7, "03:01 and 03:03 to 03:08");
        // A daily schedule: one slot a day; its run arrived late but within the hour.
        let daily = schedule("0 3 * * *");
        let mut late = std::collections::BTreeSet::new();
        late.insert(t("2026-11-25T03:00:00Z"));
        let m = missed_slots(
            &daily,
            chrono::Duration::seconds(3600),
            &late,
            t("2026-11-25T02:00:00Z"),
            t("2026-11-25T02:00:00Z"),
            t("2026-11-27T12:00:00Z"),
        );
        assert_eq!(
            m.slots,
            vec![t("2026-11-26T03:00:00Z"), t("2026-11-27T03:00:00Z")]
        );
        assert_eq!(m.next_check, None);
        // A slot before the schedule was followed (the DataJob did not exist yet, or had
        // another schedule) is never missed, though its deadline runs out in the window.
        let created = t("2026-11-25T03:00:20Z");
        let m = missed_slots(
            &every_minute,
            deadline,
            &std::collections::BTreeSet::new(),
            created,
            created,
            t("2026-11-25T03:01:30Z"),
        );
        assert!(m.slots.is_empty(), "03:00 was before it existed: {m:?}");
        assert_eq!(m.next_check, Some(t("2026-11-25T03:02:10Z")));
    }

    fn one_off(created: &str, trigger: Option<&str>) -> DataJob {
        let mut d = DataJob::new("load", datajob_api::DataJobSpec::default());
        d.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created.parse().expect("a time"),
        ));
        if let Some(v) = trigger {
            d.metadata.annotations = Some([(labels::TRIGGER.to_string(), v.to_string())].into());
        }
        d
    }

    fn times(c: ToCreate) -> Vec<DateTime<Utc>> {
        c.runs.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn a_one_off_runs_once_at_the_minute_it_was_created_and_never_again() {
        let now = t("2026-12-01T02:05:00Z");
        let dj = one_off("2026-12-01T02:00:45Z", None);
        let none = |_: &str| false;
        assert_eq!(
            times(runs_to_create(&dj, true, &none, now)),
            [t("2026-12-01T02:00:00Z")]
        );
        // Its Job exists: nothing to create.
        let exists = |id: &str| id == labels::run_id("load", t("2026-12-01T02:00:00Z"));
        assert!(runs_to_create(&dj, true, &exists, now).runs.is_empty());
        // Scheduled: the CronJob makes the runs.
        assert!(runs_to_create(&dj, false, &none, now).runs.is_empty());
    }

    #[test]
    fn a_trigger_runs_once_beside_the_one_off_and_not_twice_for_the_same_minute() {
        let now = t("2026-12-01T03:00:00Z");
        let none = |_: &str| false;
        let dj = one_off("2026-12-01T02:00:00Z", Some("2026-12-01T01:00:00Z"));
        assert_eq!(
            times(runs_to_create(&dj, true, &none, now)),
            [t("2026-12-01T01:00:00Z"), t("2026-12-01T02:00:00Z")],
            "oldest first"
        );
        let same = one_off("2026-12-01T02:00:00Z", Some("2026-12-01T02:00:00Z"));
        assert_eq!(runs_to_create(&same, true, &none, now).runs.len(), 1);
        // A trigger whose run is in the history ran.
        let mut recorded = one_off("2026-12-01T02:00:00Z", Some("2026-12-01T01:00:00Z"));
        recorded.status = Some(DataJobStatus {
            recent_runs: vec![RunRecord {
                name: labels::run_id("load", t("2026-12-01T01:00:00Z")),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(
            !times(runs_to_create(&recorded, false, &none, now))
                .contains(&t("2026-12-01T01:00:00Z"))
        );
    }
}
