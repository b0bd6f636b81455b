//! The steps of a run's life after it was created, decided purely: start it once its
//! inputs published (or keep it waiting, or end it `UpstreamFailed`), start it again
//! when a failed input was fixed, publish its output when it succeeded, and run missed
//! times again (`catchUp: all`). Each returns [`Step`]s for the reconciler to apply;
//! the decisions they are made of are in [`crate::decide::dataflow`] and
//! [`crate::decide::catch_up`].
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datajob_api::{CatchUp, CatchUpStatus, DataJob, Publication, RunRecord, RunState};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;

use super::{Note, Step};
use crate::decide::catch_up::{self, MAX_CATCH_UP};
use crate::decide::children::{self, Guards};
use crate::decide::dataflow::{self, PublishStep, Upstream, Verdict};
use crate::decide::runs;
use crate::labels::{
    self, BACKFILL, CATCH_UP, END_MESSAGE, END_REASON, JOB_NAME, LOGICAL_TIME, PUBLISH_OF, RUN_ID,
    WAITING_MESSAGE, WAITING_REASON,
};
use crate::output::{self, Output};
use crate::validation::Resolved;

/// What the steps share: a valid DataJob and what the caches say of its runs.
pub struct Flow<'a> {
    pub dj: &'a DataJob,
    pub r: &'a Resolved,
    pub guards: &'a Guards,
    /// The DataJob's Jobs (runs and publish Jobs).
    pub jobs: &'a [Arc<Job>],
    /// The pods of its runs.
    pub pods: &'a [Arc<Pod>],
    pub upstreams: &'a BTreeMap<String, Upstream>,
    pub now: DateTime<Utc>,
    /// This process reconciled the DataJob before (this generation): a Job it sees for
    /// the first time was made since, so how late it is is told by the cluster's
    /// clocks (its creation against its logical time), not by the operator's.
    pub followed: bool,
}

/// Whether a Job publishes a run rather than being one.
pub fn is_publish_job(job: &Job) -> bool {
    job.labels().contains_key(PUBLISH_OF)
}

/// The verdict for a run of logical time `t`.
fn verdict(f: &Flow<'_>, t: DateTime<Utc>) -> Verdict {
    match f.r.inputs.is_empty() {
        true => Verdict::Ready(Vec::new()),
        false => dataflow::decide(t, &f.r.inputs, f.upstreams, f.now),
    }
}

fn input_annotations(locations: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    locations
        .iter()
        .map(|(i, l)| (output::input_annotation(i), json!(l)))
        .collect()
}

/// What admission does: its steps, and the ids of the CronJob's runs it deletes because
/// they can no longer start in time (they leave no record).
#[derive(Debug, Default)]
pub struct Admitted {
    pub steps: Vec<Step>,
    pub skipped: Vec<String>,
}

/// Starts, holds or ends the suspended runs: the CronJob's (after the catch-up policy
/// said it may still start) and the operator's own that wait for their inputs.
pub fn admit(f: &Flow<'_>) -> Admitted {
    let mut out = Admitted::default();
    // A missed time being run again (catchUp: all) goes first: never two at once.
    let replaying = f.jobs.iter().any(|j| {
        j.labels().contains_key(CATCH_UP)
            && runs::run_of(j, &f.r.name).is_some_and(|r| !r.state.is_finished())
    });
    for job in f.jobs {
        let Some(waiting) = waiting_run(f, job) else {
            continue;
        };
        if waiting.first_look
            && let Some(s) = &f.r.schedule
            && !catch_up::admissible(f.r.catch_up, s, waiting.t, seen_at(f, job))
        {
            out.steps.push(skip(f, job, &waiting.run));
            out.skipped.push(job.name_any());
            continue;
        }
        if waiting.from_cronjob && replaying {
            continue;
        }
        out.steps.extend(admission(f, job, &waiting));
    }
    out
}

/// The moment a scheduled run seen for the first time is judged at. While this process
/// follows the DataJob, the Job is new, so it is judged at its creation by the apiserver's
/// clock: a clock of the operator's that runs ahead of the CronJob controller's (by a
/// minute, say) does not make every run of an every-minute DataJob look too late to
/// start. On the first look after a start (the operator may have been down), at `now`.
fn seen_at(f: &Flow<'_>, job: &Job) -> DateTime<Utc> {
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(labels::from_k8s_time);
    match (f.followed, created) {
        (true, Some(c)) => c.min(f.now),
        _ => f.now,
    }
}

/// A suspended run admission looks at.
struct Waiting {
    run: RunRecord,
    t: DateTime<Utc>,
    from_cronjob: bool,
    /// A scheduled run seen for the first time: may it still start?
    first_look: bool,
}

/// `job` as a suspended run admission decides on: the CronJob's, or the operator's own
/// (stamped with its run id); not a publish Job, and not one already ended.
fn waiting_run(f: &Flow<'_>, job: &Job) -> Option<Waiting> {
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    if !suspended || is_publish_job(job) || job.annotations().contains_key(END_REASON) {
        return None;
    }
    let from_cronjob = job
        .owner_references()
        .iter()
        .any(|o| o.kind == "CronJob" && o.name == f.r.name);
    let stamped = job.labels().contains_key(RUN_ID);
    if !from_cronjob && !stamped {
        return None;
    }
    let run = runs::run_of(job, &f.r.name)?;
    let t = labels::parse_rfc3339(&run.logical_time)?;
    let first_look = from_cronjob && !stamped && !job.annotations().contains_key(WAITING_REASON);
    Some(Waiting {
        run,
        t,
        from_cronjob,
        first_look,
    })
}

/// Deletes a scheduled run that could not start in time (the operator or the cluster
/// was down), and says so once: the recorder makes a series of the same event seen
/// again (the cache may show the deleted Job once more).
fn skip(f: &Flow<'_>, job: &Job, run: &RunRecord) -> Step {
    let id = job.name_any();
    let policy = f.r.catch_up.as_str();
    let note = format!(
        "run {id} for {} could not start in time (the operator or the cluster was down) and was skipped (catchUp: {policy})",
        run.logical_time
    );
    Step::DeleteJob {
        name: id.clone(),
        uid: job.uid().unwrap_or_default(),
        said: Some(format!(
            "scheduled run {id} for {} skipped: it could not start in time (catchUp: {policy})",
            run.logical_time
        )),
        then: Some(Note::new(false, "RunSkipped", "Schedule", &note)),
    }
}

/// Starts a waiting run whose inputs published, notes why one still waits, or ends one
/// whose input failed.
fn admission(f: &Flow<'_>, job: &Job, w: &Waiting) -> Option<Step> {
    let id = job.name_any();
    match verdict(f, w.t) {
        Verdict::Ready(locations) => {
            let mut annotations = input_annotations(&locations);
            annotations.insert(LOGICAL_TIME.into(), json!(w.run.logical_time));
            let template = annotations.clone();
            annotations.insert(WAITING_REASON.into(), serde_json::Value::Null);
            annotations.insert(WAITING_MESSAGE.into(), serde_json::Value::Null);
            let patch = json!({
                "metadata": {"labels": {RUN_ID: id}, "annotations": annotations},
                "spec": {
                    "suspend": false,
                    "template": {"metadata": {"labels": {RUN_ID: id}, "annotations": template}},
                },
            });
            let said = format!(
                "run {id} for {} started ({} inputs)",
                w.run.logical_time,
                locations.len()
            );
            Some(Step::PatchJob {
                name: id,
                patch,
                verb: "start",
                said: Some(said),
            })
        }
        Verdict::Waiting { message, .. } => {
            if job.annotations().get(WAITING_MESSAGE) == Some(&message) {
                return None;
            }
            let patch = json!({"metadata": {"annotations": {
                WAITING_REASON: dataflow::WAITING_FOR_INPUT,
                WAITING_MESSAGE: message,
            }}});
            Some(Step::PatchJob {
                name: id,
                patch,
                verb: "annotate",
                said: None,
            })
        }
        Verdict::UpstreamFailed { message, .. } => {
            let said = format!(
                "run {id} for {} ended UpstreamFailed: {message}",
                w.run.logical_time
            );
            Some(end_upstream_failed(id, &message, said))
        }
    }
}

/// Ends a suspended run that must not start: it runs no pod (parallelism 0) and fails
/// at once (a 1-second active deadline), so the CronJob sees it finished.
fn end_upstream_failed(id: String, message: &str, said: String) -> Step {
    let patch = json!({
        "metadata": {"annotations": {
            END_REASON: dataflow::UPSTREAM_FAILED,
            END_MESSAGE: message,
            WAITING_REASON: null,
            WAITING_MESSAGE: null,
        }},
        "spec": {"parallelism": 0, "activeDeadlineSeconds": 1, "suspend": false},
    });
    Step::PatchJob {
        name: id,
        patch,
        verb: "end",
        said: Some(said),
    }
}

/// The Job of a new run of `t`, waiting for its inputs (suspended) when it has any.
fn new_run(f: &Flow<'_>, t: DateTime<Utc>, extra: &BTreeMap<String, String>) -> Job {
    let wait = !f.r.inputs.is_empty();
    children::with_inputs(children::job(f.dj, f.r, f.guards, t, wait), &[], extra)
}

/// Runs that ended `UpstreamFailed` go once their inputs published: the old Job (if
/// still there) is deleted and the run is created again, with the same id.
pub fn revive(f: &Flow<'_>, history: &[RunRecord]) -> Vec<Step> {
    let mut steps = Vec::new();
    if f.r.inputs.is_empty() {
        return steps;
    }
    let mut seen = HashSet::new();
    let from_jobs: Vec<(RunRecord, Option<&Arc<Job>>)> = f
        .jobs
        .iter()
        .filter(|j| !is_publish_job(j))
        .filter_map(|j| runs::run_of(j, &f.r.name).map(|r| (r, Some(j))))
        .collect();
    let from_history = history.iter().cloned().map(|r| (r, None));
    for (run, job) in from_jobs.into_iter().chain(from_history) {
        if !seen.insert(run.name.clone()) {
            continue;
        }
        if run.state != RunState::Failed || run.reason.as_deref() != Some(dataflow::UPSTREAM_FAILED)
        {
            continue;
        }
        let Some(t) = labels::parse_rfc3339(&run.logical_time) else {
            continue;
        };
        let Verdict::Ready(locations) = verdict(f, t) else {
            continue;
        };
        if let Some(j) = job {
            steps.push(Step::DeleteJob {
                name: run.name.clone(),
                uid: j.uid().unwrap_or_default(),
                said: None,
                then: None,
            });
        }
        let job = children::job(f.dj, f.r, f.guards, t, false);
        let job = children::with_inputs(job, &locations, &BTreeMap::new());
        let note = format!(
            "run {} for {} starts again: the inputs it waited for published",
            run.name, run.logical_time
        );
        steps.push(Step::CreateJob {
            job: Box::new(job),
            said: format!(
                "run {} for {} revived: its inputs published",
                run.name, run.logical_time
            ),
            then: Some(Note::new(false, "RunRevived", "Run", &note)),
        });
    }
    steps
}

/// What `catchUp: all` does: its steps, and what the status records.
#[derive(Debug, Default)]
pub struct CaughtUp {
    pub steps: Vec<Step>,
    pub status: Option<CatchUpStatus>,
}

/// `catchUp: all`: runs the oldest missed time again, when no run of the DataJob (but
/// a Backfill's) is going.
pub fn catch_up(f: &Flow<'_>, current: &[RunRecord], previous: Option<&CatchUpStatus>) -> CaughtUp {
    let mut out = CaughtUp::default();
    let Some(s) =
        f.r.schedule
            .as_ref()
            .filter(|_| f.r.catch_up == CatchUp::All)
    else {
        return out;
    };
    if f.r.suspend {
        out.status = previous.cloned();
        return out;
    }
    let key = format!("{} {}", s.expression, s.time_zone.name());
    let through = previous
        .filter(|p| p.schedule == key)
        .and_then(|p| labels::parse_rfc3339(&p.through))
        .unwrap_or(f.now);
    let ran = runs::times_ran(current, f.dj.status.as_ref());
    let plan = catch_up::catch_up(s, &ran, through, f.now, MAX_CATCH_UP);
    if plan.given_up {
        let note = format!(
            "more than {MAX_CATCH_UP} scheduled times were missed: only the last {MAX_CATCH_UP} run again (catchUp: all); backfill the older ones if they matter"
        );
        out.steps.push(Step::Event(Note::new(
            true,
            "CatchUpLimited",
            "Schedule",
            &note,
        )));
    }
    let busy = f.jobs.iter().any(|j| {
        !is_publish_job(j)
            && !j.labels().contains_key(BACKFILL)
            && runs::run_of(j, &f.r.name).is_some_and(|r| !r.state.is_finished())
    });
    if let Some(t) = plan.replay
        && !busy
    {
        let extra = BTreeMap::from([(CATCH_UP.to_string(), "true".to_string())]);
        out.steps.push(Step::CreateJob {
            job: Box::new(new_run(f, t, &extra)),
            said: format!(
                "missed scheduled time {} runs again (catchUp: all)",
                labels::rfc3339(t)
            ),
            then: None,
        });
    }
    out.status = Some(CatchUpStatus {
        through: labels::rfc3339(plan.through),
        schedule: key,
    });
    out
}

/// The name of the pod of `job` that succeeded (the attempt whose prefix is published).
fn succeeded_pod(f: &Flow<'_>, job: &Job) -> Option<String> {
    let uid = job.uid()?;
    f.pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p: &&Pod| {
            p.labels().get(JOB_NAME) == Some(&job.name_any())
                && p.owner_references().iter().any(|o| o.uid == uid)
        })
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(|p| p.name_any())
}

/// What publishing does: its steps, and the new publications.
#[derive(Debug, Default)]
pub struct Publishing {
    pub steps: Vec<Step>,
    pub new: Vec<Publication>,
}

/// For each run its Job calls Succeeded: what publishing it still needs. The run
/// record says Running (`Publishing`) until then, `PublishFailed` if it could not.
pub fn publish(f: &Flow<'_>, current: &mut [RunRecord]) -> Publishing {
    let mut out = Publishing::default();
    let output: Option<&Output> = f.r.output.as_ref();
    let previous: &[Publication] = f.dj.status.as_ref().map_or(&[], |s| s.published.as_slice());
    for run in current.iter_mut() {
        if run.state != RunState::Succeeded {
            continue;
        }
        let job = f
            .jobs
            .iter()
            .find(|j| j.name_any() == run.name && !is_publish_job(j));
        let publisher = children::publish_job_name(&run.name);
        let pj = f.jobs.iter().find(|j| j.name_any() == publisher);
        let pod = match (output, job) {
            (Some(Output::ObjectStore { .. }), Some(j)) => succeeded_pod(f, j),
            _ => None,
        };
        let step = dataflow::publish_step(
            run,
            job.map(|j| j.as_ref()),
            output,
            pj.map(|j| j.as_ref()),
            pod.as_deref(),
            previous,
            f.now,
        );
        match (&step, job) {
            (PublishStep::Start, Some(j)) => {
                let at = labels::parse_rfc3339(&run.logical_time).unwrap_or(f.now);
                if let Some(p) = children::publish_job(f.r, f.guards, j, at) {
                    out.steps.push(Step::CreateJob {
                        job: Box::new(p),
                        said: format!("publishing the output of run {} ({publisher})", run.name),
                        then: None,
                    });
                }
            }
            (PublishStep::Stale { uid }, _) => {
                out.steps.push(Step::DeleteJob {
                    name: publisher.clone(),
                    uid: uid.clone(),
                    said: None,
                    then: None,
                });
            }
            (PublishStep::Done(Some(p)), _) => out.new.push(p.clone()),
            _ => {}
        }
        dataflow::apply_step(run, &step, output);
    }
    out
}
