//! The steps of a run's life the DataJob reconciler acts on after creating it: start
//! it once its inputs published (or keep it waiting, or end it `UpstreamFailed`), start
//! it again when a failed input was fixed, publish its output when it succeeded, and
//! run missed times again (`catchUp: all`). Every decision is in [`datajob_core::decide::dataflow`] and
//! [`datajob_core::decide::slots`]; this file reads the caches and writes to the API.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::datajob_context::DataJobContext;
use crate::{Error, Result};
use datajob_api::{CatchUp, CatchUpStatus, DataJob, Publication, RunRecord, RunState};
use datajob_core::decide::dataflow::{self, PublishStep, Upstream, Verdict};
use datajob_core::decide::{children, runs, slots};
use datajob_core::labels::{
    self, BACKFILL, CATCH_UP, END_MESSAGE, END_REASON, FIELD_MANAGER, JOB_NAME, LOGICAL_TIME, NAME,
    PUBLISH_OF, RUN_ID, WAITING_MESSAGE, WAITING_REASON,
};
use datajob_core::output::{self, Output};
use datajob_core::validation::{Problem, Resolved};

/// What the steps share.
pub struct Flow<'a> {
    pub ctx: &'a DataJobContext,
    pub dj: &'a DataJob,
    pub r: &'a Resolved,
    pub ns: &'a str,
    /// The DataJob's Jobs (runs and publish Jobs).
    pub jobs: &'a [Arc<Job>],
    pub upstreams: &'a BTreeMap<String, Upstream>,
    pub now: DateTime<Utc>,
}

/// Whether a Job publishes a run rather than being one.
pub fn is_publish_job(job: &Job) -> bool {
    job.labels().contains_key(PUBLISH_OF)
}

/// The runs of DataJob `name` in `ns` as their Jobs say now.
pub fn job_runs(jobs: &Store<Job>, ns: &str, name: &str) -> Vec<RunRecord> {
    jobs.state()
        .iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(ns)
                && j.labels().get(NAME).map(String::as_str) == Some(name)
                && !is_publish_job(j)
        })
        .filter_map(|j| runs::run_of(j, name))
        .collect()
}

/// The DataJobs of namespace `ns` in the shared cache; `None` before it has synced (it
/// then does not even hold the DataJob being reconciled).
pub fn namespace_datajobs(
    datajobs: &Store<DataJob>,
    ns: &str,
    name: &str,
) -> Option<Vec<Arc<DataJob>>> {
    let all: Vec<Arc<DataJob>> = datajobs
        .state()
        .into_iter()
        .filter(|d| d.namespace().as_deref() == Some(ns))
        .collect();
    all.iter().any(|d| d.name_any() == name).then_some(all)
}

/// Inputs that do not exist or make a cycle, in admission's words.
pub fn graph_problems(dj: &DataJob, ns: &str, all: &[Arc<DataJob>]) -> Vec<Problem> {
    let graph: Vec<(String, Vec<String>)> = all
        .iter()
        .map(|d| (d.name_any(), d.spec.inputs.clone()))
        .collect();
    dataflow::check_graph(&dj.name_any(), ns, &dj.spec.inputs, &graph)
}

/// What each input of `inputs` says now: its status, refreshed with its Jobs.
pub fn upstreams(
    jobs: &Store<Job>,
    ns: &str,
    inputs: &[String],
    all: &[Arc<DataJob>],
) -> BTreeMap<String, Upstream> {
    inputs
        .iter()
        .filter_map(|input| {
            let dj = all.iter().find(|d| d.name_any() == *input)?;
            Some((input.clone(), Upstream::of(dj, job_runs(jobs, ns, input))))
        })
        .collect()
}

/// The DataJobs to reconcile when `changed` changed: those that read it.
pub fn downstream_refs(changed: &DataJob, all: &[Arc<DataJob>]) -> Vec<ObjectRef<DataJob>> {
    let (name, ns) = (changed.name_any(), changed.namespace());
    all.iter()
        .filter(|d| d.namespace() == ns && d.spec.inputs.contains(&name))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn delete_exactly(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

/// Creates `job`; one that exists already (the same run, or one still being deleted) is
/// left to the next reconcile. Returns whether it was created.
pub async fn create_job(api: &Api<Job>, job: &Job, ns: &str) -> Result<bool> {
    let name = job.name_any();
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::api("create", "Job", ns, &name)(e)),
    }
}

/// Deletes the Job with this uid (not a newer one of the same name); gone is fine.
pub async fn delete_job(api: &Api<Job>, name: &str, uid: &str, ns: &str) -> Result<()> {
    match api.delete(name, &delete_exactly(uid)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(Error::api("delete", "Job", ns, name)(e)),
    }
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

/// Starts, holds or ends the suspended runs: the CronJob's (after the catch-up policy
/// said it may still start) and the operator's own that wait for their inputs. Returns
/// the ids of the CronJob's runs it deleted because they could no longer start in time.
pub async fn admit(f: &Flow<'_>) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    let api: Api<Job> = Api::namespaced(f.ctx.base.client.clone(), f.ns);
    // A missed time being run again (catchUp: all) goes first: never two at once.
    let replaying = f.jobs.iter().any(|j| {
        j.labels().contains_key(CATCH_UP)
            && runs::run_of(j, &f.r.name).is_some_and(|r| !r.state.is_finished())
    });
    for job in f.jobs {
        let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        if !suspended || is_publish_job(job) || job.annotations().contains_key(END_REASON) {
            continue;
        }
        let from_cronjob = job
            .owner_references()
            .iter()
            .any(|o| o.kind == "CronJob" && o.name == f.r.name);
        let stamped = job.labels().contains_key(RUN_ID);
        if !from_cronjob && !stamped {
            continue;
        }
        let id = job.name_any();
        let Some(run) = runs::run_of(job, &f.r.name) else {
            continue;
        };
        let Some(t) = labels::parse_rfc3339(&run.logical_time) else {
            continue;
        };
        // A scheduled run seen for the first time: may it still start?
        let first_look =
            from_cronjob && !stamped && !job.annotations().contains_key(WAITING_REASON);
        if first_look
            && let Some(s) = &f.r.schedule
            && !slots::admissible(f.r.catch_up, s, t, f.now)
        {
            let uid = job.uid().unwrap_or_default();
            delete_job(&api, &id, &uid, f.ns).await?;
            info!(run = %id, logical_time = %run.logical_time, catch_up = f.r.catch_up.as_str(), "scheduled run skipped: it could not start in time");
            let note = format!(
                "run {id} for {} could not start in time (the operator or the cluster was down) and was skipped (catchUp: {})",
                run.logical_time,
                f.r.catch_up.as_str()
            );
            // Told once: the recorder makes a series of the same event seen again (the
            // cache may show the deleted Job once more).
            f.ctx
                .base
                .event(&f.dj.object_ref(&()), false, "RunSkipped", "Schedule", note)
                .await;
            skipped.push(id);
            continue;
        }
        if from_cronjob && replaying {
            continue;
        }
        match verdict(f, t) {
            Verdict::Ready(locations) => {
                let mut annotations = input_annotations(&locations);
                annotations.insert(LOGICAL_TIME.into(), json!(run.logical_time));
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
                api.patch(&id, &merge_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::api("start", "Job", f.ns, &id))?;
                info!(run = %id, logical_time = %run.logical_time, inputs = locations.len(), "run started");
            }
            Verdict::Waiting { message, .. } => {
                if job.annotations().get(WAITING_MESSAGE) != Some(&message) {
                    let patch = json!({"metadata": {"annotations": {
                        WAITING_REASON: dataflow::WAITING_FOR_INPUT,
                        WAITING_MESSAGE: message,
                    }}});
                    api.patch(&id, &merge_params(), &Patch::Merge(&patch))
                        .await
                        .map_err(Error::api("annotate", "Job", f.ns, &id))?;
                }
            }
            Verdict::UpstreamFailed { message, .. } => {
                end_upstream_failed(&api, &id, &message, f.ns).await?;
                info!(run = %id, logical_time = %run.logical_time, %message, "run ended UpstreamFailed");
            }
        }
    }
    Ok(skipped)
}

/// Ends a suspended run that must not start: it runs no pod (parallelism 0) and fails
/// at once (a 1-second active deadline), so the CronJob sees it finished.
async fn end_upstream_failed(api: &Api<Job>, id: &str, message: &str, ns: &str) -> Result<()> {
    let patch = json!({
        "metadata": {"annotations": {
            END_REASON: dataflow::UPSTREAM_FAILED,
            END_MESSAGE: message,
            WAITING_REASON: null,
            WAITING_MESSAGE: null,
        }},
        "spec": {"parallelism": 0, "activeDeadlineSeconds": 1, "suspend": false},
    });
    api.patch(id, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api("end", "Job", ns, id))?;
    Ok(())
}

/// The Job of a new run of `t`, waiting for its inputs (suspended) when it has any.
fn new_run(f: &Flow<'_>, t: DateTime<Utc>, extra: &BTreeMap<String, String>) -> Job {
    let wait = !f.r.inputs.is_empty();
    children::with_inputs(
        children::job(f.dj, f.r, &f.ctx.base.guards, t, wait),
        &[],
        extra,
    )
}

/// Runs that ended `UpstreamFailed` go once their inputs published: the old Job (if
/// still there) is deleted and the run is created again, with the same id.
pub async fn revive(f: &Flow<'_>, history: &[RunRecord]) -> Result<()> {
    if f.r.inputs.is_empty() {
        return Ok(());
    }
    let api: Api<Job> = Api::namespaced(f.ctx.base.client.clone(), f.ns);
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
            delete_job(&api, &run.name, &j.uid().unwrap_or_default(), f.ns).await?;
        }
        let mut job = children::job(f.dj, f.r, &f.ctx.base.guards, t, false);
        job = children::with_inputs(job, &locations, &BTreeMap::new());
        if create_job(&api, &job, f.ns).await? {
            info!(run = %run.name, logical_time = %run.logical_time, "run revived: its inputs published");
            let note = format!(
                "run {} for {} starts again: the inputs it waited for published",
                run.name, run.logical_time
            );
            f.ctx
                .base
                .event(&f.dj.object_ref(&()), false, "RunRevived", "Run", note)
                .await;
        }
    }
    Ok(())
}

/// `catchUp: all`: runs the oldest missed time again, when no run of the DataJob (but
/// a Backfill's) is going. Returns what the status records.
pub async fn catch_up(
    f: &Flow<'_>,
    current: &[RunRecord],
    previous: Option<&CatchUpStatus>,
) -> Result<Option<CatchUpStatus>> {
    let Some(s) =
        f.r.schedule
            .as_ref()
            .filter(|_| f.r.catch_up == CatchUp::All)
    else {
        return Ok(None);
    };
    if f.r.suspend {
        return Ok(previous.cloned());
    }
    let key = format!("{} {}", s.expression, s.time_zone.name());
    let through = previous
        .filter(|p| p.schedule == key)
        .and_then(|p| labels::parse_rfc3339(&p.through))
        .unwrap_or(f.now);
    let ran: BTreeSet<DateTime<Utc>> = current
        .iter()
        .chain(f.dj.status.iter().flat_map(|s| s.recent_runs.iter()))
        .filter_map(|r| labels::parse_rfc3339(&r.logical_time))
        .collect();
    let plan = slots::catch_up(s, &ran, through, f.now, slots::MAX_CATCH_UP);
    if plan.given_up {
        let note = format!(
            "more than {} scheduled times were missed: only the last {} run again (catchUp: all); backfill the older ones if they matter",
            slots::MAX_CATCH_UP,
            slots::MAX_CATCH_UP
        );
        f.ctx
            .base
            .event(
                &f.dj.object_ref(&()),
                true,
                "CatchUpLimited",
                "Schedule",
                note,
            )
            .await;
    }
    let busy = f.jobs.iter().any(|j| {
        !is_publish_job(j)
            && !j.labels().contains_key(BACKFILL)
            && runs::run_of(j, &f.r.name).is_some_and(|r| !r.state.is_finished())
    });
    if let Some(t) = plan.replay
        && !busy
    {
        let api: Api<Job> = Api::namespaced(f.ctx.base.client.clone(), f.ns);
        let extra = BTreeMap::from([(CATCH_UP.to_string(), "true".to_string())]);
        if create_job(&api, &new_run(f, t, &extra), f.ns).await? {
            info!(logical_time = %labels::rfc3339(t), "missed scheduled time runs again (catchUp: all)");
        }
    }
    Ok(Some(CatchUpStatus {
        through: labels::rfc3339(plan.through),
        schedule: key,
    }))
}

/// The name of the pod of `job` that succeeded (the attempt whose prefix is published).
fn succeeded_pod(f: &Flow<'_>, job: &Job) -> Option<String> {
    let uid = job.uid()?;
    f.ctx
        .pods
        .state()
        .iter()
        .map(|p| p.as_ref())
        .filter(|p: &&Pod| {
            p.namespace().as_deref() == Some(f.ns)
                && p.labels().get(JOB_NAME) == Some(&job.name_any())
                && p.owner_references().iter().any(|o| o.uid == uid)
        })
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(|p| p.name_any())
}

/// For each run its Job calls Succeeded: what publishing it still needs, done; the run
/// record says Running (`Publishing`) until then, `PublishFailed` if it could not.
/// Returns the new publications.
pub async fn publish(f: &Flow<'_>, current: &mut [RunRecord]) -> Result<Vec<Publication>> {
    let out: Option<&Output> = f.r.output.as_ref();
    let previous: &[Publication] = f.dj.status.as_ref().map_or(&[], |s| s.published.as_slice());
    let api: Api<Job> = Api::namespaced(f.ctx.base.client.clone(), f.ns);
    let mut new = Vec::new();
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
        let pod = match (out, job) {
            (Some(Output::ObjectStore { .. }), Some(j)) => succeeded_pod(f, j),
            _ => None,
        };
        let step = dataflow::publish_step(
            run,
            job.map(|j| j.as_ref()),
            out,
            pj.map(|j| j.as_ref()),
            pod.as_deref(),
            previous,
            f.now,
        );
        match (&step, job) {
            (PublishStep::Start, Some(j)) => {
                let at = labels::parse_rfc3339(&run.logical_time).unwrap_or(f.now);
                if let Some(p) = children::publish_job(f.r, &f.ctx.base.guards, j, at)
                    && create_job(&api, &p, f.ns).await?
                {
                    info!(run = %run.name, job = %publisher, "publishing the run's output");
                }
            }
            (PublishStep::Stale { uid }, _) => {
                delete_job(&api, &publisher, uid, f.ns).await?;
            }
            (PublishStep::Done(Some(p)), _) => {
                if !previous.contains(p) {
                    info!(run = %run.name, location = %p.location, "published");
                }
                new.push(p.clone());
            }
            _ => {}
        }
        dataflow::apply_step(run, &step, out);
    }
    Ok(new)
}
